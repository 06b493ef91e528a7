//! The auth service's one error type and its mapping to gRPC.

use std::time::Duration;

use cloudsec_runtime::token::TokenError;
use cloudsec_runtime::{ErrorKind, FieldViolations};
use tonic_types::{ErrorDetails, StatusExt};

pub type Result<T> = std::result::Result<T, AuthError>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(FieldViolations),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("tenant `{0}` already exists; ask its admin to add you")]
    TenantTaken(String),
    /// The same answer for an unknown email and a wrong password, so that
    /// the response does not reveal which accounts exist.
    #[error("invalid email or password")]
    BadCredentials,
    /// One answer for unknown, expired, revoked and reused refresh tokens:
    /// which of them it was is logged, never told.
    #[error("invalid refresh token")]
    BadRefreshToken,
    /// Given for an email after repeated failures, whether or not an
    /// account has it, so that the lockout does not reveal accounts.
    #[error("too many failed attempts, try again in {} s", retry_after.as_secs().max(1))]
    LockedOut { retry_after: Duration },
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Only after the right password, so it reveals nothing new.
    #[error("the user is not confirmed: enter the code sent to the email, or ask for a new one")]
    NotConfirmed,
    /// A federated sign-in that did not prove who the user is.
    #[error("{0}")]
    Federation(String),
    /// One answer for unknown, expired, spent and exhausted sessions.
    #[error("invalid or expired session: log in again")]
    BadSession,
    #[error("MFA is off for this tenant")]
    MfaOff,
    #[error("no authenticator is being enrolled: call AssociateSoftwareToken first")]
    NoPendingMfa,
    #[error("no authenticator is enrolled")]
    NoAuthenticator,
    #[error("the tenant requires MFA: ask a tenant admin to reset it instead")]
    MfaRequired,
    #[error("this needs the tenant:admin scope")]
    NotAdmin,
    /// Also for users of other tenants, which must look missing.
    #[error("user `{0}` not found")]
    UserNotFound(String),
    #[error("password hashing is saturated, try again")]
    Busy,
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("signing key error: {0}")]
    Key(#[from] cloudsec_runtime::token::SignerError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A back end (Vault) is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The outbox or the event bus.
    #[error("event bus: {0}")]
    Events(#[from] cloudsec_bus::BusError),
}

impl AuthError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Invalid(_) => ErrorKind::InvalidArgument,
            AuthError::EmailTaken | AuthError::TenantTaken(_) => ErrorKind::AlreadyExists,
            AuthError::BadCredentials | AuthError::BadRefreshToken => ErrorKind::Unauthenticated,
            AuthError::LockedOut { .. } => ErrorKind::ResourceExhausted,
            AuthError::Token(TokenError::KeysUnavailable) => ErrorKind::Unavailable,
            AuthError::Token(_) => ErrorKind::Unauthenticated,
            AuthError::NotConfirmed
            | AuthError::MfaOff
            | AuthError::NoPendingMfa
            | AuthError::NoAuthenticator
            | AuthError::MfaRequired => ErrorKind::FailedPrecondition,
            AuthError::BadSession | AuthError::Federation(_) => ErrorKind::Unauthenticated,
            AuthError::NotAdmin => ErrorKind::PermissionDenied,
            AuthError::UserNotFound(_) => ErrorKind::NotFound,
            AuthError::Busy | AuthError::Unavailable(_) => ErrorKind::Unavailable,
            AuthError::Database(_)
            | AuthError::Key(_)
            | AuthError::Internal(_)
            | AuthError::Events(_) => ErrorKind::Internal,
        }
    }
}

impl From<FieldViolations> for AuthError {
    fn from(v: FieldViolations) -> Self {
        AuthError::Invalid(v)
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Invalid(violations) => violations.into_status(),
            // RetryInfo lets the gateway and clients wait the right time.
            AuthError::LockedOut { retry_after } => tonic::Status::with_error_details(
                error.kind().grpc_code(),
                error.to_string(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            AuthError::Database(ref cause) if is_unavailable(cause) => {
                tracing::error!(%error, "database unavailable");
                tonic::Status::unavailable("database unavailable, try again")
            }
            ref e if e.kind() == ErrorKind::Internal => {
                tracing::error!(error = %e, "internal error");
                tonic::Status::internal("internal error")
            }
            e => tonic::Status::new(e.kind().grpc_code(), e.to_string()),
        }
    }
}

fn is_unavailable(error: &sea_orm::DbErr) -> bool {
    matches!(
        error,
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
    )
}
