//! The one error type of the audit service and its mapping to gRPC.

use cloudsec_bus::BusError;
use cloudsec_runtime::db::DbError;
use cloudsec_runtime::host::HostError;
use cloudsec_runtime::status::database_unavailable;
use cloudsec_runtime::{ErrorKind, FieldViolations, ServiceError, into_status};

use crate::{ADMIN_SCOPE, READ_SCOPE};
use cloudsec_runtime::page_token::KeyTooShort;

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid request: {0}")]
    Invalid(#[from] FieldViolations),
    /// A valid token without the tenant admin scope.
    #[error("the audit log needs the `{ADMIN_SCOPE}` or `{READ_SCOPE}` scope")]
    NotAdmin,
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// A stored row that the code cannot read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("stored page token key: {0}")]
    PageTokenKey(#[from] KeyTooShort),
    /// The contracts compiled into the binary do not decode: a build bug.
    #[error("descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    #[error(transparent)]
    Connect(#[from] DbError),
    #[error("event subscriber: {0}")]
    Bus(#[from] BusError),
    /// DynamoDB answered with an error (its code and message).
    #[error("dynamodb refused {operation}: {code}: {message}")]
    Dynamo {
        operation: String,
        code: String,
        message: String,
    },
    /// DynamoDB could not be reached, or was overloaded, for one call.
    #[error("dynamodb is unavailable for {operation}: {reason}")]
    DynamoUnavailable { operation: String, reason: String },
    /// The head signing key refused, or cannot be used.
    #[error("audit head signing: {0}")]
    Signing(String),
    /// The head signing key's service (KMS) could not be reached.
    #[error("audit head signing unavailable: {0}")]
    SigningUnavailable(String),
    /// Other writers kept winning the race for a chain head.
    #[error("audit append contended: {0}")]
    Contended(String),
    #[error("event subscriber stopped: {0}")]
    SubscriberStopped(String),
    /// A setting the service cannot start without.
    #[error(transparent)]
    Config(#[from] cloudsec_runtime::ConfigError),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl ServiceError for AuditError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Invalid(_) => ErrorKind::InvalidArgument,
            AuditError::NotAdmin => ErrorKind::PermissionDenied,
            AuditError::Database(e) if database_unavailable(e) => ErrorKind::Unavailable,
            AuditError::Connect(_)
            | AuditError::DynamoUnavailable { .. }
            | AuditError::SigningUnavailable(_)
            | AuditError::Contended(_) => ErrorKind::Unavailable,
            AuditError::Database(_)
            | AuditError::Corrupt(_)
            | AuditError::PageTokenKey(_)
            | AuditError::Descriptors(_)
            | AuditError::Bus(_)
            | AuditError::Dynamo { .. }
            | AuditError::Signing(_)
            | AuditError::SubscriberStopped(_)
            | AuditError::Config(_)
            | AuditError::Host(_) => ErrorKind::Internal,
        }
    }
}

impl From<AuditError> for tonic::Status {
    fn from(error: AuditError) -> Self {
        into_status(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_the_status_table() {
        let status = tonic::Status::from(AuditError::NotAdmin);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "the audit log needs the `tenant:admin` or `audit:read` scope"
        );
        assert_eq!(AuditError::NotAdmin.kind().http_status().as_u16(), 403);
        let mut v = FieldViolations::new();
        v.add("page_size", "must be between 0 and 500");
        assert_eq!(
            tonic::Status::from(AuditError::from(v)).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            AuditError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(
                "down".into()
            )))
            .kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn database_errors_stay_opaque() {
        let error = AuditError::Database(sea_orm::DbErr::Custom(
            "relation \"audit_record\" secret detail".into(),
        ));
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
