//! Remote JSON Web Key Sets (RFC 7517): the one fetcher for keys published
//! over HTTP(S) (a Cognito user pool, the gateway's `jwks_url`, a federated
//! identity provider) and the one rule for which keys sign tokens we accept.

use std::time::Duration;

use cloudsec_proto::auth::v1::{Jwk, Jwks};
use serde::Deserialize;

/// The longest a JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The set as RFC 7517 spells it; absent members read as empty, so one
/// odd key does not cost the whole set.
#[derive(Debug, Deserialize)]
struct Document {
    keys: Vec<KeyDocument>,
}

#[derive(Debug, Deserialize)]
struct KeyDocument {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: String,
    #[serde(default, rename = "use")]
    use_: String,
    #[serde(default)]
    alg: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

/// The RS256 key that signed `token` (its header's `kid`), found with
/// `key`. A `kid` not in the set refreshes it once (the refresh limits
/// its own rate), since a rotation publishes the new key before anything
/// is signed with it.
pub(super) async fn signing_key<K>(
    token: &str,
    key: impl Fn(&str) -> Option<K>,
    refresh: impl AsyncFnOnce() -> Result<(), super::TokenError>,
) -> Result<K, super::TokenError> {
    use super::TokenError;
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    if let Some(found) = key(&kid) {
        return Ok(found);
    }
    refresh().await?;
    key(&kid).ok_or(TokenError::UnknownKey)
}

/// An HTTP client for JWKS fetches, bounded by [`FETCH_TIMEOUT`].
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()
}

/// Fetches the set published at `url`, in the form the auth service's
/// `GetJwks` answers with. A non-2xx answer is an error.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Jwks, reqwest::Error> {
    let document: Document = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(Jwks {
        keys: document
            .keys
            .into_iter()
            .map(|k| Jwk {
                kty: k.kty,
                kid: k.kid,
                r#use: k.use_,
                alg: k.alg,
                n: k.n,
                e: k.e,
            })
            .collect(),
    })
}

/// Whether `jwk` may verify our tokens: RSA, and RS256 when it names an
/// algorithm. Keys for other algorithms are skipped, never tried, so a
/// published HMAC or EC key cannot be turned into an algorithm confusion.
pub fn is_rs256(jwk: &Jwk) -> bool {
    jwk.kty == "RSA" && (jwk.alg.is_empty() || jwk.alg == "RS256")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_keys_for_rs256_are_used() {
        let key = |kty: &str, alg: &str| Jwk {
            kty: kty.into(),
            alg: alg.into(),
            ..Jwk::default()
        };
        assert!(is_rs256(&key("RSA", "RS256")));
        assert!(is_rs256(&key("RSA", "")));
        assert!(!is_rs256(&key("RSA", "PS256")));
        assert!(!is_rs256(&key("oct", "HS256")));
        assert!(!is_rs256(&key("EC", "")));
    }

    #[tokio::test]
    async fn a_missing_or_garbled_set_is_an_error() {
        let client = client().unwrap();
        // Nothing listens on the discard port.
        assert!(
            fetch(&client, "http://127.0.0.1:9/jwks.json")
                .await
                .is_err()
        );
    }
}
