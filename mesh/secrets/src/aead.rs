//! AES-256-GCM through aws-lc-rs, the provider rustls already uses here,
//! so the workspace keeps one crypto stack.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const TAG_LEN: usize = 16;

pub(crate) type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

pub(crate) fn random_key() -> Result<KeyBytes> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| Error::Crypto("random source failed"))?;
    Ok(key)
}

pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Crypto("random source failed"))?;
    Ok(nonce)
}

fn key(bytes: &[u8]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Crypto("not a 256-bit AES key"))
}

/// Encrypts under a fresh random nonce; returns the nonce and
/// ciphertext‖tag.
pub(crate) fn seal(
    key_bytes: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
    let key = key(key_bytes)?;
    let nonce = random_nonce()?;
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut in_out,
    )
    .map_err(|_| Error::Crypto("encryption failed"))?;
    Ok((nonce, in_out))
}

/// Decrypts and authenticates; any change to key, nonce, AAD or ciphertext
/// is [`Error::Decrypt`].
pub(crate) fn open(
    key_bytes: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let key = key(key_bytes)?;
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| Error::Malformed(format!("the nonce must be {NONCE_LEN} bytes")))?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| Error::Decrypt)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_changes() {
        let k = random_key().unwrap();
        let (nonce, ct) = seal(k.as_ref(), b"ctx", b"hello").unwrap();
        assert_eq!(&*open(k.as_ref(), &nonce, b"ctx", &ct).unwrap(), b"hello");
        assert!(matches!(
            open(k.as_ref(), &nonce, b"other", &ct),
            Err(Error::Decrypt)
        ));
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(matches!(
            open(k.as_ref(), &nonce, b"ctx", &bad),
            Err(Error::Decrypt)
        ));
        let other = random_key().unwrap();
        assert!(matches!(
            open(other.as_ref(), &nonce, b"ctx", &ct),
            Err(Error::Decrypt)
        ));
    }
}
