//! The documents list's page tokens: the runtime's
//! [`PageTokenKey`] under the documents domain, with a keyset cursor of
//! the last row's create time and id.

use cloudsec_runtime::page_token::{KeyTooShort, PageCursor, PageTokenKey};
use uuid::Uuid;

/// Keeps the documents list's page tokens apart from every other service's.
const DOMAIN: &str = "cloudsec.documents";

/// The documents list's token key, from `page_token_key`.
pub fn key(secret: &[u8]) -> Result<PageTokenKey, KeyTooShort> {
    PageTokenKey::new(DOMAIN, secret)
}

/// Where the next page starts: just after this row in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub create_time_micros: i64,
    pub id: Uuid,
}

impl PageCursor for Cursor {
    const LEN: usize = 8 + 16;

    fn encode(&self, out: &mut Vec<u8>) {
        self.create_time_micros.encode(out);
        out.extend_from_slice(self.id.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (micros, id) = bytes.split_at_checked(8)?;
        Some(Cursor {
            create_time_micros: i64::decode(micros)?,
            id: Uuid::from_slice(id).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use cloudsec_runtime::page_token::InvalidPageToken;

    use super::*;

    #[test]
    fn cursors_round_trip_and_bind_to_the_documents_domain() {
        let cursor = Cursor {
            create_time_micros: 1_700_000_000_123_456,
            id: Uuid::now_v7(),
        };
        let key = key(&[1; 32]).unwrap();
        let token = key.seal("acme", "c=1", cursor);
        assert_eq!(key.open(&token, "acme", "c=1"), Ok(cursor));
        // The same secret under another service's domain opens nothing.
        let audit = PageTokenKey::new("cloudsec.audit", &[1; 32]).unwrap();
        assert_eq!(
            audit.open::<Cursor>(&token, "acme", "c=1"),
            Err(InvalidPageToken)
        );
    }
}
