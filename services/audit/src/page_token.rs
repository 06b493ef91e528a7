//! Opaque, unforgeable page tokens, as the documents service makes them.
//!
//! A token is `base64url(payload || HMAC-SHA256(key, domain || payload))`
//! where the payload is a version byte, the last listed `seq` and a digest
//! of the tenant and the list's filters, so a token works only for the
//! tenant and the query that produced it. The key is generated on first
//! start and kept in the audit database (`audit_secret`), so tokens
//! survive restarts and work on every replica.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The key's length in bytes.
pub const KEY_BYTES: usize = 32;
/// Bumped when the payload layout changes, so old tokens fail cleanly.
const VERSION: u8 = 1;
/// Keeps these MACs apart from any other use of the same key.
const DOMAIN: &[u8] = b"cloudsec.audit.page_token\0";
const SCOPE_LEN: usize = 32;
const PAYLOAD_LEN: usize = 1 + 8 + SCOPE_LEN;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = PAYLOAD_LEN + TAG_LEN;
/// Anything longer cannot be a token; refuse it before decoding.
const MAX_ENCODED_LEN: usize = TOKEN_LEN.div_ceil(3) * 4;

/// A stored key of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page token key must be {KEY_BYTES} bytes, got {0}")]
pub struct BadKey(pub usize);

/// The token was not issued by us for this tenant and these filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid page_token")]
pub struct InvalidPageToken;

/// Seals and opens page tokens with one HMAC key.
#[derive(Clone)]
pub struct PageTokenKey {
    /// Keyed once; each use works on a clone.
    keyed: HmacSha256,
}

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenKey(***)")
    }
}

impl PageTokenKey {
    /// A key of exactly [`KEY_BYTES`] bytes.
    pub fn new(key: &[u8]) -> Result<Self, BadKey> {
        if key.len() != KEY_BYTES {
            return Err(BadKey(key.len()));
        }
        let keyed = HmacSha256::new_from_slice(key).map_err(|_| BadKey(key.len()))?;
        Ok(Self { keyed })
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    /// A token for the page after `seq` of `tenant`'s list with the
    /// canonical `filters`.
    pub fn seal(&self, tenant: &str, filters: &str, seq: i64) -> String {
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.push(VERSION);
        token.extend_from_slice(&seq.to_be_bytes());
        token.extend_from_slice(&scope(tenant, filters));
        let tag = self.mac(&token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The `seq` after which the page starts, if we sealed `token` for
    /// this tenant and these filters.
    pub fn open(&self, token: &str, tenant: &str, filters: &str) -> Result<i64, InvalidPageToken> {
        if token.len() > MAX_ENCODED_LEN {
            return Err(InvalidPageToken);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        if bytes.len() != TOKEN_LEN {
            return Err(InvalidPageToken);
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        // `verify_slice` compares in constant time.
        self.mac(payload)
            .verify_slice(tag)
            .map_err(|_| InvalidPageToken)?;
        let (version, rest) = payload.split_at(1);
        let (seq, token_scope) = rest.split_at(8);
        if version != [VERSION] {
            return Err(InvalidPageToken);
        }
        if !bool::from(token_scope.ct_eq(&scope(tenant, filters))) {
            return Err(InvalidPageToken);
        }
        let seq = <[u8; 8]>::try_from(seq).map_err(|_| InvalidPageToken)?;
        Ok(i64::from_be_bytes(seq))
    }
}

/// Binds a token to a tenant and a query; lengths are prefixed so that no
/// two (tenant, filters) pairs hash the same input.
fn scope(tenant: &str, filters: &str) -> [u8; SCOPE_LEN] {
    let mut hash = Sha256::new();
    for part in [tenant, filters] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PageTokenKey {
        PageTokenKey::new(&[byte; KEY_BYTES]).unwrap()
    }

    #[test]
    fn keys_must_have_the_right_length() {
        assert_eq!(PageTokenKey::new(&[0; 31]).unwrap_err(), BadKey(31));
        assert!(PageTokenKey::new(&[0; 33]).is_err());
    }

    #[test]
    fn round_trips_and_hides_the_tenant() {
        let token = key(1).seal("acme", "f", 42);
        assert_eq!(key(1).open(&token, "acme", "f"), Ok(42));
        assert!(token.len() <= MAX_ENCODED_LEN);
        assert!(!token.contains("acme"));
    }

    #[test]
    fn other_tenant_filters_or_key_fail() {
        let token = key(1).seal("acme", "f", 1);
        assert_eq!(key(1).open(&token, "globex", "f"), Err(InvalidPageToken));
        assert_eq!(key(1).open(&token, "acme", "g"), Err(InvalidPageToken));
        assert_eq!(key(2).open(&token, "acme", "f"), Err(InvalidPageToken));
        let token = key(1).seal("ab", "c", 1);
        assert_eq!(key(1).open(&token, "a", "bc"), Err(InvalidPageToken));
    }

    #[test]
    fn tampered_and_garbage_tokens_fail() {
        let token = key(1).seal("acme", "", 7);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert_eq!(
                key(1).open(&URL_SAFE_NO_PAD.encode(&flipped), "acme", ""),
                Err(InvalidPageToken),
                "byte {i}"
            );
        }
        for garbage in ["", "x", "!!!!", "AAAA", &"A".repeat(10_000), "é"] {
            assert_eq!(key(1).open(garbage, "acme", ""), Err(InvalidPageToken));
        }
    }
}
