//! Opaque, unforgeable page tokens, the one kind every list RPC hands out.
//!
//! A token is `base64url(payload || HMAC-SHA256(key, domain || payload))`
//! where the payload is a version byte, the list's keyset cursor and a
//! digest of the tenant and the list's filters: a token works only for the
//! service (the domain), the tenant and the query that produced it, and
//! the digest hides the tenant's name from anyone who decodes it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted: the HMAC's own output size.
pub const MIN_KEY_BYTES: usize = 32;
/// Bumped when the payload layout changes, so old tokens fail cleanly.
const VERSION: u8 = 1;
const SCOPE_LEN: usize = 32;
const TAG_LEN: usize = 32;

/// Where a list's next page starts, in a fixed number of bytes.
pub trait PageCursor: Sized {
    /// The encoded length; a token of any other length is refused.
    const LEN: usize;
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads exactly [`Self::LEN`] bytes; `None` for a value that cannot be.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// A sequence number: the last one listed.
impl PageCursor for i64 {
    const LEN: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(i64::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// The page size of a list request: 0 asks for `default`; a negative size
/// or one above `max` is a violation of `page_size`, and `default` stands
/// in so that the request's other fields are still checked.
pub fn page_size(
    requested: i32,
    default: u64,
    max: u64,
    violations: &mut crate::FieldViolations,
) -> u64 {
    match u64::try_from(requested) {
        Ok(0) => default,
        Ok(n) if n <= max => n,
        _ => {
            violations.add("page_size", format!("must be between 0 and {max}"));
            default
        }
    }
}

/// The key is shorter than [`MIN_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_token_key must be at least {MIN_KEY_BYTES} bytes, got {0}")]
pub struct KeyTooShort(pub usize);

/// The token was not issued by this service for this tenant and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid page_token")]
pub struct InvalidPageToken;

/// Seals and opens one service's page tokens with one HMAC key.
#[derive(Clone)]
pub struct PageTokenKey {
    /// Keyed and fed the domain once; each use works on a clone.
    keyed: HmacSha256,
}

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenKey(***)")
    }
}

impl PageTokenKey {
    /// A key for the tokens of `domain` (say `cloudsec.documents`): the
    /// domain is MACed first, so one service's token never opens at
    /// another's even if they share a key.
    pub fn new(domain: &str, key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort(key.len()));
        }
        let mut keyed = HmacSha256::new_from_slice(key).map_err(|_| KeyTooShort(key.len()))?;
        keyed.update(domain.as_bytes());
        keyed.update(b".page_token\0");
        Ok(Self { keyed })
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac
    }

    /// A token for the page after `cursor` of `tenant`'s list with the
    /// canonical `filters`.
    pub fn seal<C: PageCursor>(&self, tenant: &str, filters: &str, cursor: C) -> String {
        let mut token = Vec::with_capacity(1 + C::LEN + SCOPE_LEN + TAG_LEN);
        token.push(VERSION);
        cursor.encode(&mut token);
        token.extend_from_slice(&scope(tenant, filters));
        let tag = self.mac(&token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor of `token`, if this key sealed it for this tenant and
    /// these filters.
    pub fn open<C: PageCursor>(
        &self,
        token: &str,
        tenant: &str,
        filters: &str,
    ) -> Result<C, InvalidPageToken> {
        let payload_len = 1 + C::LEN + SCOPE_LEN;
        // Anything longer cannot be a token; refused before decoding.
        if token.len() > (payload_len + TAG_LEN).div_ceil(3) * 4 {
            return Err(InvalidPageToken);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        if bytes.len() != payload_len + TAG_LEN {
            return Err(InvalidPageToken);
        }
        let (payload, tag) = bytes.split_at(payload_len);
        // `verify_slice` compares in constant time.
        self.mac(payload)
            .verify_slice(tag)
            .map_err(|_| InvalidPageToken)?;
        let (version, rest) = payload.split_at(1);
        let (cursor, token_scope) = rest.split_at(C::LEN);
        if version != [VERSION] || !bool::from(token_scope.ct_eq(&scope(tenant, filters))) {
            return Err(InvalidPageToken);
        }
        C::decode(cursor).ok_or(InvalidPageToken)
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
        PageTokenKey::new("test", &[byte; MIN_KEY_BYTES]).unwrap()
    }

    /// A wider cursor, as the documents service's (time and id).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Pair(i64, i64);

    impl PageCursor for Pair {
        const LEN: usize = 16;
        fn encode(&self, out: &mut Vec<u8>) {
            self.0.encode(out);
            self.1.encode(out);
        }
        fn decode(bytes: &[u8]) -> Option<Self> {
            let (a, b) = bytes.split_at(8);
            Some(Pair(i64::decode(a)?, i64::decode(b)?))
        }
    }

    #[test]
    fn short_keys_are_refused() {
        let short = PageTokenKey::new("test", &[0; 31]).unwrap_err();
        assert_eq!(short, KeyTooShort(31));
        assert!(PageTokenKey::new("test", &[0; 64]).is_ok());
    }

    #[test]
    fn round_trips_and_hides_the_tenant() {
        let token = key(1).seal("acme", "f", 42i64);
        assert_eq!(key(1).open::<i64>(&token, "acme", "f"), Ok(42));
        assert!(!token.contains("acme"));
        let token = key(1).seal("acme", "f", Pair(-1, 7));
        assert_eq!(key(1).open(&token, "acme", "f"), Ok(Pair(-1, 7)));
    }

    #[test]
    fn other_tenant_filters_key_domain_or_cursor_kind_fail() {
        let token = key(1).seal("acme", "f", 1i64);
        assert_eq!(
            key(1).open::<i64>(&token, "globex", "f"),
            Err(InvalidPageToken)
        );
        assert_eq!(
            key(1).open::<i64>(&token, "acme", "g"),
            Err(InvalidPageToken)
        );
        assert_eq!(
            key(2).open::<i64>(&token, "acme", "f"),
            Err(InvalidPageToken)
        );
        let elsewhere = PageTokenKey::new("other", &[1; MIN_KEY_BYTES]).unwrap();
        assert_eq!(
            elsewhere.open::<i64>(&token, "acme", "f"),
            Err(InvalidPageToken)
        );
        assert_eq!(
            key(1).open::<Pair>(&token, "acme", "f"),
            Err(InvalidPageToken)
        );
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        let token = key(1).seal("ab", "c", 1i64);
        assert_eq!(key(1).open::<i64>(&token, "a", "bc"), Err(InvalidPageToken));
    }

    #[test]
    fn tampered_forged_and_garbage_tokens_fail() {
        let token = key(1).seal("acme", "", 7i64);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            let forged = URL_SAFE_NO_PAD.encode(&flipped);
            assert_eq!(
                key(1).open::<i64>(&forged, "acme", ""),
                Err(InvalidPageToken),
                "byte {i}"
            );
        }
        let truncated = &token[..token.len() - 2];
        assert_eq!(
            key(1).open::<i64>(truncated, "acme", ""),
            Err(InvalidPageToken)
        );
        let extended = format!("{token}AA");
        assert_eq!(
            key(1).open::<i64>(&extended, "acme", ""),
            Err(InvalidPageToken)
        );
        for garbage in ["", "x", "!!!!", "AAAA", &"A".repeat(10_000), "é"] {
            assert_eq!(
                key(1).open::<i64>(garbage, "acme", ""),
                Err(InvalidPageToken)
            );
        }
        // A well-formed payload with a made-up tag.
        let mut forged = vec![VERSION];
        forged.extend_from_slice(&0i64.to_be_bytes());
        forged.extend_from_slice(&scope("acme", ""));
        forged.extend_from_slice(&[0u8; TAG_LEN]);
        let forged = URL_SAFE_NO_PAD.encode(&forged);
        assert_eq!(
            key(1).open::<i64>(&forged, "acme", ""),
            Err(InvalidPageToken)
        );
    }
}
