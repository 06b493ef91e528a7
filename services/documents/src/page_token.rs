//! Opaque, unforgeable page tokens.
//!
//! A token is `base64url(payload || HMAC-SHA256(key, domain || payload))`.
//! The payload holds the keyset cursor (the last row's create time in
//! microseconds and its id) and a digest of the tenant and the list's
//! filters, so a token works only for the tenant and the query that
//! produced it. The digest hides the tenant's name from anyone who decodes
//! the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::config::MIN_PAGE_TOKEN_KEY_BYTES;

type HmacSha256 = Hmac<Sha256>;

/// Bumped when the payload layout changes, so old tokens fail cleanly.
const VERSION: u8 = 1;
/// Keeps these MACs apart from any other use of the same key.
const DOMAIN: &[u8] = b"cloudsec.documents.page_token\0";
const SCOPE_LEN: usize = 32;
const PAYLOAD_LEN: usize = 1 + 8 + 16 + SCOPE_LEN;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = PAYLOAD_LEN + TAG_LEN;
/// Anything longer cannot be a token; refuse it before decoding.
const MAX_ENCODED_LEN: usize = TOKEN_LEN.div_ceil(3) * 4;

/// Where the next page starts: just after this row in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub create_time_micros: i64,
    pub id: Uuid,
}

/// The key is shorter than [`MIN_PAGE_TOKEN_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_token_key must be at least {MIN_PAGE_TOKEN_KEY_BYTES} bytes, got {0}")]
pub struct KeyTooShort(pub usize);

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
    pub fn new(key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < MIN_PAGE_TOKEN_KEY_BYTES {
            return Err(KeyTooShort(key.len()));
        }
        let keyed = HmacSha256::new_from_slice(key).map_err(|_| KeyTooShort(key.len()))?;
        Ok(Self { keyed })
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    /// A token for the page after `cursor` of `tenant`'s list with the
    /// canonical `filters`.
    pub fn seal(&self, tenant: &str, filters: &str, cursor: Cursor) -> String {
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.push(VERSION);
        token.extend_from_slice(&cursor.create_time_micros.to_be_bytes());
        token.extend_from_slice(cursor.id.as_bytes());
        token.extend_from_slice(&scope(tenant, filters));
        let tag = self.mac(&token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor of `token`, if we sealed it for this tenant and filters.
    pub fn open(
        &self,
        token: &str,
        tenant: &str,
        filters: &str,
    ) -> Result<Cursor, InvalidPageToken> {
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
        let (micros, rest) = rest.split_at(8);
        let (id, token_scope) = rest.split_at(16);
        if version != [VERSION] {
            return Err(InvalidPageToken);
        }
        let expected = scope(tenant, filters);
        if !bool::from(token_scope.ct_eq(&expected)) {
            return Err(InvalidPageToken);
        }
        let micros = <[u8; 8]>::try_from(micros).map_err(|_| InvalidPageToken)?;
        let id = Uuid::from_slice(id).map_err(|_| InvalidPageToken)?;
        Ok(Cursor {
            create_time_micros: i64::from_be_bytes(micros),
            id,
        })
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
        PageTokenKey::new(&[byte; 32]).unwrap()
    }

    fn cursor() -> Cursor {
        Cursor {
            create_time_micros: 1_700_000_000_123_456,
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn round_trips() {
        let c = cursor();
        let token = key(1).seal("acme", "c=1", c);
        assert_eq!(key(1).open(&token, "acme", "c=1"), Ok(c));
        assert!(token.len() <= MAX_ENCODED_LEN);
        assert!(!token.contains("acme"));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(PageTokenKey::new(&[0; 31]).unwrap_err(), KeyTooShort(31));
        assert!(PageTokenKey::new(&[0; 32]).is_ok());
    }

    #[test]
    fn other_tenant_or_filters_fail() {
        let token = key(1).seal("acme", "c=1", cursor());
        assert_eq!(key(1).open(&token, "globex", "c=1"), Err(InvalidPageToken));
        assert_eq!(key(1).open(&token, "acme", "c=2"), Err(InvalidPageToken));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        let token = key(1).seal("ab", "c", cursor());
        assert_eq!(key(1).open(&token, "a", "bc"), Err(InvalidPageToken));
    }

    #[test]
    fn other_key_fails() {
        let token = key(1).seal("acme", "", cursor());
        assert_eq!(key(2).open(&token, "acme", ""), Err(InvalidPageToken));
    }

    #[test]
    fn tampered_tokens_fail() {
        let token = key(1).seal("acme", "", cursor());
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            let forged = URL_SAFE_NO_PAD.encode(&flipped);
            assert_eq!(
                key(1).open(&forged, "acme", ""),
                Err(InvalidPageToken),
                "byte {i}"
            );
        }
        assert_eq!(
            key(1).open(&token[..token.len() - 2], "acme", ""),
            Err(InvalidPageToken)
        );
        assert_eq!(
            key(1).open(&format!("{token}AA"), "acme", ""),
            Err(InvalidPageToken)
        );
    }

    #[test]
    fn forged_and_garbage_tokens_fail() {
        let k = key(1);
        for garbage in ["", "x", "!!!!", "AAAA", &"A".repeat(10_000), "é"] {
            assert_eq!(
                k.open(garbage, "acme", ""),
                Err(InvalidPageToken),
                "{garbage:?}"
            );
        }
        // A well-formed payload with a made-up tag.
        let mut forged = vec![VERSION];
        forged.extend_from_slice(&0i64.to_be_bytes());
        forged.extend_from_slice(Uuid::nil().as_bytes());
        forged.extend_from_slice(&scope("acme", ""));
        forged.extend_from_slice(&[0u8; TAG_LEN]);
        assert_eq!(
            k.open(&URL_SAFE_NO_PAD.encode(&forged), "acme", ""),
            Err(InvalidPageToken)
        );
        // A correct tag made with another key.
        let other = key(9).seal("acme", "", cursor());
        assert_eq!(k.open(&other, "acme", ""), Err(InvalidPageToken));
    }
}
