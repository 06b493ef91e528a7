//! The auth service's one error type and its mapping to gRPC.

use std::time::Duration;

use cloudsec_runtime::status::database_unavailable;
use cloudsec_runtime::token::TokenError;
use cloudsec_runtime::{ErrorKind, FieldViolations, ServiceError, into_status};
use tonic_types::ErrorDetails;

pub type Result<T> = std::result::Result<T, AuthError>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(#[from] FieldViolations),
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
    /// Configuration the machine refuses at start (never a request's).
    #[error("{0}")]
    Config(String),
    /// A back end (Vault) is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The outbox or the event bus.
    #[error("event bus: {0}")]
    Events(#[from] cloudsec_bus::BusError),
}

impl ServiceError for AuthError {
    fn kind(&self) -> ErrorKind {
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
            AuthError::Database(e) if database_unavailable(e) => ErrorKind::Unavailable,
            AuthError::Busy | AuthError::Unavailable(_) => ErrorKind::Unavailable,
            AuthError::Database(_)
            | AuthError::Key(_)
            | AuthError::Internal(_)
            | AuthError::Config(_)
            | AuthError::Events(_) => ErrorKind::Internal,
        }
    }

    /// RetryInfo lets the gateway and clients wait the right time.
    fn details(&self) -> Option<ErrorDetails> {
        match self {
            AuthError::LockedOut { retry_after } => {
                Some(ErrorDetails::with_retry_info(Some(*retry_after)))
            }
            _ => None,
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        into_status(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn internal_causes_stay_in_the_log() {
        // What keys.rs raises when Vault is down: the cause names a host.
        let status = tonic::Status::from(AuthError::Unavailable(
            "sealing secrets: vault at https://10.0.0.5:8200 refused".into(),
        ));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            !status.message().contains("10.0.0.5"),
            "{}",
            status.message()
        );
        let status = tonic::Status::from(AuthError::Database(sea_orm::DbErr::Custom(
            "relation \"users\" column \"password_hash\"".into(),
        )));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
        let status = tonic::Status::from(AuthError::Internal("os random: /dev/urandom".into()));
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn client_mistakes_say_what_is_wrong() {
        let status = tonic::Status::from(AuthError::LockedOut {
            retry_after: std::time::Duration::from_secs(30),
        });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("30 s"));
        assert!(status.get_error_details().retry_info().is_some());
        let mut v = FieldViolations::new();
        v.add("email", "is required");
        let status = tonic::Status::from(AuthError::from(v));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            tonic::Status::from(AuthError::BadCredentials).message(),
            "invalid email or password"
        );
    }
}
