//! The one error type of the documents service and its mapping to gRPC.

use cloudsec_runtime::db::DbError;
use cloudsec_runtime::host::HostError;
use cloudsec_runtime::status::database_unavailable;
use cloudsec_runtime::{ErrorKind, FieldViolations, ServiceError, into_status};

use crate::content::ContentError;
use cloudsec_runtime::page_token::KeyTooShort;

pub type Result<T, E = DocumentsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error("invalid request: {0}")]
    Invalid(#[from] FieldViolations),
    /// Also what another tenant's document looks like.
    #[error("document not found")]
    NotFound,
    #[error("etag mismatch: the document changed since it was read")]
    EtagMismatch,
    /// Making a document restricted without being allowed to see one.
    #[error(
        "restricted documents need membership of the restricted group or the tenant:admin scope"
    )]
    Restricted,
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// A stored row that the code cannot read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("invalid configuration: {0}")]
    PageTokenKey(#[from] KeyTooShort),
    #[error(transparent)]
    Connect(#[from] DbError),
    #[error(transparent)]
    Host(#[from] HostError),
    /// The outbox or the event bus.
    #[error("event bus: {0}")]
    Events(#[from] cloudsec_bus::BusError),
    /// The object store or the keys; tampered and shredded content land
    /// here too and are answered as an internal error, never as content.
    #[error("content: {0}")]
    Content(#[from] ContentError),
}

impl ServiceError for DocumentsError {
    fn kind(&self) -> ErrorKind {
        match self {
            DocumentsError::Invalid(_) => ErrorKind::InvalidArgument,
            DocumentsError::Restricted => ErrorKind::PermissionDenied,
            DocumentsError::NotFound => ErrorKind::NotFound,
            DocumentsError::EtagMismatch => ErrorKind::Aborted,
            DocumentsError::Database(e) if database_unavailable(e) => ErrorKind::Unavailable,
            DocumentsError::Connect(_) => ErrorKind::Unavailable,
            DocumentsError::Content(e) if e.is_unavailable() => ErrorKind::Unavailable,
            // A server's own configuration is never the client's to fix.
            DocumentsError::PageTokenKey(_)
            | DocumentsError::Database(_)
            | DocumentsError::Corrupt(_)
            | DocumentsError::Host(_)
            | DocumentsError::Events(_)
            | DocumentsError::Content(_) => ErrorKind::Internal,
        }
    }
}

impl From<DocumentsError> for tonic::Status {
    fn from(error: DocumentsError) -> Self {
        into_status(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_the_status_table() {
        let status = tonic::Status::from(DocumentsError::EtagMismatch);
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert_eq!(
            status.message(),
            "etag mismatch: the document changed since it was read"
        );
        assert_eq!(
            tonic::Status::from(DocumentsError::NotFound).code(),
            tonic::Code::NotFound
        );
        let mut v = FieldViolations::new();
        v.add("document.title", "must not be empty");
        assert_eq!(
            tonic::Status::from(DocumentsError::from(v)).code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn database_errors_stay_opaque() {
        let error = DocumentsError::Database(sea_orm::DbErr::Custom(
            "relation \"documents\" secret detail".into(),
        ));
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn tampered_content_is_an_opaque_internal_error() {
        let error = DocumentsError::Content(ContentError::Keys(cloudsec_secrets::Error::Decrypt));
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
        let down = DocumentsError::Content(ContentError::Object {
            operation: "read",
            key: "k".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(down.kind(), ErrorKind::Unavailable);
    }
}
