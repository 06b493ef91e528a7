//! One error type for the crate, with messages an operator can act on.
//!
//! Messages name the Vault address, the path or the reference involved and
//! never a secret value. Errors from vaultrs are translated here rather than
//! passed through: their sources can carry response bodies (which may hold
//! credentials), so only the status and Vault's own error strings survive.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (bad address, unreadable CA file, ...).
    #[error("invalid secrets configuration: {0}")]
    Config(String),

    /// Vault could not be reached at start, after the configured retries.
    #[error(
        "vault at {address} is unreachable after {attempts} attempts ({reason}); \
         check that it is running and that `address` is right"
    )]
    Unreachable {
        address: String,
        attempts: u32,
        reason: String,
    },

    /// Vault could not be reached for one operation (network, timeout,
    /// sealed or standby server).
    #[error("vault at {address} is unavailable for {operation}: {reason}")]
    Unavailable {
        address: String,
        operation: String,
        reason: String,
    },

    /// Vault answered with an error status.
    #[error("vault at {address} refused {operation} (HTTP {status}): {message}")]
    Vault {
        address: String,
        operation: String,
        status: u16,
        message: String,
    },

    /// Logging in to Vault failed for a reason other than reachability.
    #[error("vault login with {method} at {address} failed: {reason}")]
    Login {
        address: String,
        method: &'static str,
        reason: String,
    },

    /// The Vault token expired and the auth method cannot log in again.
    #[error(
        "the vault token for {address} expired and cannot be renewed with {method} auth; \
         give the service a new token"
    )]
    TokenExpired {
        address: String,
        method: &'static str,
    },

    /// A `vault:` reference is malformed.
    #[error("invalid secret reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A reference names a secret or field that does not exist.
    #[error("secret `{reference}` not found")]
    NotFound { reference: String },

    /// A value that could not be refreshed and whose cached copy expired.
    #[error(
        "secret `{reference}` is unavailable: its cached copy expired {expired_ago:?} ago \
         and the source cannot be read ({reason})"
    )]
    Expired {
        reference: String,
        expired_ago: Duration,
        reason: String,
    },

    /// Resolving the `vault:` references of a configuration failed.
    #[error("cannot resolve the secret at configuration key `{key}`: {source}")]
    Resolve {
        key: String,
        #[source]
        source: Box<Error>,
    },

    /// The local keystore or its key file cannot be used.
    #[error("local keystore {path}: {reason}")]
    Keystore { path: String, reason: String },

    /// Authenticated decryption failed: the ciphertext, its nonce, its
    /// associated data (document binding) or its wrapped key were altered,
    /// or the content belongs to another document.
    #[error("decryption failed: the content was modified or does not belong to this context")]
    Decrypt,

    /// The data key of sealed content is gone (crypto-shredded).
    #[error("the content was shredded: its data key no longer exists")]
    Shredded,

    /// A wrapped key or envelope is not in a known format.
    #[error("malformed envelope: {0}")]
    Malformed(String),

    /// A key name that the key service does not know.
    #[error("unknown key `{0}`")]
    UnknownKey(String),

    /// AWS KMS answered with an error (its code and message, no payload).
    #[error("kms refused {operation}: {code}: {message}")]
    Kms {
        operation: String,
        code: String,
        message: String,
    },

    /// AWS KMS could not be reached (or answered a server fault) for one
    /// operation.
    #[error("kms is unavailable for {operation}: {reason}")]
    KmsUnavailable { operation: String, reason: String },

    /// Local cryptography failed (random source, key setup).
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// Whether retrying later may succeed: Vault or the network is down,
    /// not a permission or input problem. Cached values are served only
    /// across errors of this kind.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Unavailable { .. } | Self::KmsUnavailable { .. } => {
                true
            }
            Self::Vault { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether Vault rejected the token (expired, revoked, wrong policy).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Self::Vault { status, .. } => *status == 403,
            Self::Kms { code, .. } => code == "AccessDeniedException",
            _ => false,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Vault { status: 404, .. } | Self::NotFound { .. }
        )
    }

    /// Translates a vaultrs error without keeping its source (see the
    /// module doc).
    pub(crate) fn from_vault(
        address: &str,
        operation: &str,
        err: vaultrs::error::ClientError,
    ) -> Self {
        use vaultrs::error::ClientError as C;
        let address = address.to_owned();
        let operation = operation.to_owned();
        match err {
            C::APIError { code, errors } => Self::Vault {
                address,
                operation,
                status: code,
                message: vault_message(code, &errors),
            },
            C::RestClientError { source } => rest_error(address, operation, source),
            C::ResponseEmptyError | C::ResponseDataEmptyError => Self::Vault {
                address,
                operation,
                status: 204,
                message: "the response carried no data".into(),
            },
            other => Self::Vault {
                address,
                operation,
                status: 0,
                // The Display of these variants is a fixed phrase without
                // the payload.
                message: other.to_string(),
            },
        }
    }

    /// Translates a transport error of a request made with reqwest directly.
    pub(crate) fn from_transport(address: &str, operation: &str, err: &reqwest::Error) -> Self {
        Self::Unavailable {
            address: address.to_owned(),
            operation: operation.to_owned(),
            reason: transport_reason(err),
        }
    }
}

fn rest_error(address: String, operation: String, source: rustify::errors::ClientError) -> Error {
    use rustify::errors::ClientError as R;
    match source {
        R::RequestError { source, .. } | R::ResponseError { source } => Error::Unavailable {
            address,
            operation,
            reason: match source.downcast_ref::<reqwest::Error>() {
                Some(e) => transport_reason(e),
                None => source.to_string(),
            },
        },
        R::ServerResponseError { code, .. } => Error::Vault {
            address,
            operation,
            status: code,
            message: vault_message(code, &[]),
        },
        other => Error::Vault {
            address,
            operation,
            status: 0,
            message: other.to_string(),
        },
    }
}

/// Vault's own error strings, or a phrase for the status when it sent none.
pub(crate) fn vault_message(status: u16, errors: &[String]) -> String {
    let joined = errors
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if !joined.is_empty() {
        return joined;
    }
    match status {
        400 => "bad request".into(),
        403 => "permission denied".into(),
        404 => "not found".into(),
        503 => "vault is sealed or in standby".into(),
        _ => format!("status {status}"),
    }
}

/// The most specific cause of a reqwest failure, without the URL (which
/// the error names once already).
fn transport_reason(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut deepest = None;
    while let Some(c) = cause {
        deepest = Some(c.to_string());
        cause = c.source();
    }
    match deepest {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_availability() {
        let down = Error::Unavailable {
            address: "http://v".into(),
            operation: "read".into(),
            reason: "connection refused".into(),
        };
        assert!(down.is_unavailable());
        let sealed = Error::Vault {
            address: "http://v".into(),
            operation: "read".into(),
            status: 503,
            message: "sealed".into(),
        };
        assert!(sealed.is_unavailable());
        let denied = Error::Vault {
            address: "http://v".into(),
            operation: "read".into(),
            status: 403,
            message: "permission denied".into(),
        };
        assert!(!denied.is_unavailable());
        assert!(denied.is_permission_denied());
    }

    #[test]
    fn api_errors_keep_vaults_message_only() {
        let e = Error::from_vault(
            "http://127.0.0.1:8200",
            "read secret/app",
            vaultrs::error::ClientError::APIError {
                code: 403,
                errors: vec!["permission denied".into()],
            },
        );
        assert_eq!(
            e.to_string(),
            "vault at http://127.0.0.1:8200 refused read secret/app (HTTP 403): permission denied"
        );
    }
}
