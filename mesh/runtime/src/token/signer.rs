//! RS256 signing keys: generation, PEM storage and the public JWK.
//!
//! The private key is parsed once, when the key is loaded, and the JWS
//! header once per key: signing a token is then one RSA signature, not a
//! key parse (with its consistency checks) and a signature, as
//! jsonwebtoken's `encode` does for every token.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cloudsec_proto::auth::v1::Jwk;

use super::Claims;

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("key generation failed")]
    Generate,
    #[error("not a usable RSA private key: {0}")]
    BadKey(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One RSA signing key and its id.
pub struct Signer {
    kid: String,
    pem: String,
    pair: KeyPair,
    /// base64url of `{"typ":"JWT","alg":"RS256","kid":...}`.
    header: String,
    jwk: Jwk,
}

/// The JWS header of every token, in the order jsonwebtoken writes it.
#[derive(serde::Serialize)]
struct JwsHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh 2048-bit key with a random key id.
    pub fn generate() -> Result<Self, SignerError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| SignerError::Generate)?;
        let der = pair.as_der().map_err(|_| SignerError::Generate)?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD
                .encode(der.as_ref())
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Self::from_pem(&uuid::Uuid::new_v4().simple().to_string(), &pem)
    }

    /// Loads a PKCS#8 PEM key under the id `kid`.
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, SignerError> {
        let bad = |e: &dyn std::fmt::Display| SignerError::BadKey(e.to_string());
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body.trim()).map_err(|e| bad(&e))?;
        let pair = KeyPair::from_pkcs8(&der).map_err(|e| bad(&e))?;
        let public = pair.public_key();
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: kid.to_owned(),
            r#use: "sig".into(),
            alg: "RS256".into(),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        };
        let header = serde_json::to_vec(&JwsHeader {
            typ: "JWT",
            alg: "RS256",
            kid,
        })
        .map_err(|e| bad(&e))?;
        Ok(Self {
            kid: kid.to_owned(),
            pem: pem.to_owned(),
            pair,
            header: URL_SAFE_NO_PAD.encode(header),
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key in PKCS#8 PEM, for storage.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public half, for the JWKS.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A compact JWS of `claims` with `kid` in the header.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignerError> {
        self.sign_claims(claims)
    }

    /// Like [`Signer::sign`], for any claim set such as
    /// [`AccessClaims`](super::AccessClaims).
    pub fn sign_claims<C: serde::Serialize>(&self, claims: &C) -> Result<String, SignerError> {
        let payload = serde_json::to_vec(claims).map_err(|e| SignerError::Sign(e.to_string()))?;
        let mut token = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(payload));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        // PKCS#1 v1.5 is deterministic; the generator is only for blinding.
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut signature)
            .map_err(|e| SignerError::Sign(e.to_string()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenError, TokenVerifier};
    use cloudsec_proto::auth::v1::Jwks;

    /// Other JWT libraries read our tokens: jsonwebtoken's own decoder
    /// checks the signature and finds the header it expects.
    #[test]
    fn tokens_verify_with_jsonwebtoken_too() {
        let signer = Signer::generate().unwrap();
        let token = signer.sign(&claims(60, "aud")).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
        let key = jsonwebtoken::DecodingKey::from_rsa_components(&signer.jwk().n, &signer.jwk().e)
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["aud"]);
        let read = jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();
        assert_eq!(read.claims.sub, "user");
        let other = Signer::generate().unwrap();
        let wrong =
            jsonwebtoken::DecodingKey::from_rsa_components(&other.jwk().n, &other.jwk().e).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&token, &wrong, &validation).is_err());
    }

    fn claims(exp_offset: i64, aud: &str) -> Claims {
        let now = chrono_now();
        Claims {
            iss: "iss".into(),
            sub: "user".into(),
            aud: aud.into(),
            exp: now + exp_offset,
            iat: now,
            nbf: None,
            jti: "j".into(),
            tenant: "t".into(),
            scope: String::new(),
        }
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[tokio::test]
    async fn signs_and_verifies_and_rejects_tampering() {
        let signer = Signer::generate().unwrap();
        let reloaded = Signer::from_pem(signer.kid(), signer.pem()).unwrap();
        assert_eq!(reloaded.jwk(), signer.jwk());
        let verifier = TokenVerifier::fixed("iss", "aud");
        verifier.set_keys(&Jwks {
            keys: vec![signer.jwk().clone()],
        });
        let token = signer.sign(&claims(60, "aud")).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub, "user");

        let expired = signer.sign(&claims(-60, "aud")).unwrap();
        assert_eq!(verifier.verify(&expired).await, Err(TokenError::Expired));
        let wrong_aud = signer.sign(&claims(60, "other")).unwrap();
        assert_eq!(verifier.verify(&wrong_aud).await, Err(TokenError::Audience));

        let other = Signer::from_pem(signer.kid(), Signer::generate().unwrap().pem()).unwrap();
        let forged = other.sign(&claims(60, "aud")).unwrap();
        assert_eq!(verifier.verify(&forged).await, Err(TokenError::Signature));

        let mut nbf = claims(600, "aud");
        nbf.nbf = Some(chrono_now() + 300);
        let early = signer.sign(&nbf).unwrap();
        assert_eq!(verifier.verify(&early).await, Err(TokenError::NotYetValid));
    }

    #[tokio::test]
    async fn access_claims_are_additive_both_ways() {
        let signer = Signer::generate().unwrap();
        let verifier = TokenVerifier::fixed("iss", "aud");
        verifier.set_keys(&Jwks {
            keys: vec![signer.jwk().clone()],
        });

        // A token from before the Cognito claims reads with their defaults.
        let original = claims(60, "aud");
        let old = signer.sign(&original).unwrap();
        let read = verifier.verify_access(&old).await.unwrap();
        assert_eq!(read.base, original);
        assert_eq!(read.token_use, "");
        assert_eq!(read.auth_time, None);
        assert!(read.groups.is_empty());

        // A new token still satisfies the plain verifier.
        let access = crate::token::AccessClaims {
            base: claims(60, "aud"),
            token_use: "access".into(),
            client_id: "cloudsec".into(),
            auth_time: Some(1_700_000_000),
            groups: Vec::new(),
            generation: 0,
        };
        let token = signer.sign_claims(&access).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub, "user");
        let read = verifier.verify_access(&token).await.unwrap();
        assert_eq!(read.token_use, "access");
        assert_eq!(read.client_id, "cloudsec");
        assert_eq!(read.auth_time, Some(1_700_000_000));

        // Cognito's claim names on the wire.
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["token_use"], "access");
        assert_eq!(json["cognito:groups"], serde_json::json!([]));
        assert_eq!(json["tenant"], "t");
    }
}
