//! The auth service's one error type and its mapping to gRPC.

use cloudsec_runtime::{ErrorKind, FieldViolations};

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
    #[error("password hashing is saturated, try again")]
    Busy,
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("signing key error: {0}")]
    Key(#[from] cloudsec_runtime::token::SignerError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The outbox or the event bus.
    #[error("event bus: {0}")]
    Events(#[from] cloudsec_bus::BusError),
}

impl AuthError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Invalid(_) => ErrorKind::InvalidArgument,
            AuthError::EmailTaken | AuthError::TenantTaken(_) => ErrorKind::AlreadyExists,
            AuthError::BadCredentials => ErrorKind::Unauthenticated,
            AuthError::Busy => ErrorKind::Unavailable,
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
