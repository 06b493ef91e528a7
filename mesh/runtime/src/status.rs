//! The one table from an error kind to a gRPC code and an HTTP status.
//!
//! Services classify their typed errors into an [`ErrorKind`]; the gateway
//! maps the gRPC code it receives back to HTTP with [`http_status`]. Both use
//! the table below, which is grpc-gateway's.

use tonic::Code;

/// What went wrong, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    /// An optimistic-concurrency check failed (stale etag).
    Aborted,
    FailedPrecondition,
    ResourceExhausted,
    /// A dependency (database, peer service) is down; the caller may retry.
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl ErrorKind {
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Aborted => Code::Aborted,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::Internal => Code::Internal,
        }
    }

    pub fn http_status(self) -> http::StatusCode {
        http_status(self.grpc_code())
    }
}

/// grpc-gateway's mapping of a gRPC code to an HTTP status.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        Code::Unknown => S::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => S::BAD_REQUEST,
        Code::Aborted => S::CONFLICT,
        Code::OutOfRange => S::BAD_REQUEST,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Internal => S::INTERNAL_SERVER_ERROR,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

/// A service's typed error: its row of the status table, and what a
/// client may be told. Every service implements this one trait and turns
/// its errors into statuses with [`into_status`], so the table, the
/// opacity of internal causes and the logging are written once.
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// Which row of the status table.
    fn kind(&self) -> ErrorKind;

    /// The violations of a bad request, sent as `google.rpc.BadRequest`:
    /// by default the error's direct source when that is a
    /// [`FieldViolations`] (a variant `Invalid(#[from] FieldViolations)`).
    fn violations(&self) -> Option<&FieldViolations> {
        std::error::Error::source(self)?.downcast_ref()
    }

    /// Further `google.rpc` details for the client, such as the
    /// `RetryInfo` of a lockout.
    fn details(&self) -> Option<tonic_types::ErrorDetails> {
        None
    }
}

/// The status a client gets for `error`.
///
/// A client's mistake (every kind but `Internal` and `Unavailable`) says
/// what is wrong in the error's own words. An `Internal` or `Unavailable`
/// error may name tables, hosts, keys or data: the client gets a fixed
/// message with the request id to quote, and the log gets the error with
/// its whole source chain.
pub fn into_status<E: ServiceError>(error: E) -> tonic::Status {
    use tonic_types::StatusExt;
    let kind = error.kind();
    if let Some(violations) = error.violations() {
        return violations.clone().into_status();
    }
    match kind {
        ErrorKind::Internal | ErrorKind::Unavailable => {
            let request_id = crate::grpc::current_request_id();
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(
                error = %chain,
                kind = ?kind,
                request_id = request_id.as_deref(),
                "request failed"
            );
            let message = match kind {
                ErrorKind::Unavailable => "service temporarily unavailable, retry later",
                _ => "internal error",
            };
            let message = match request_id {
                Some(id) => format!("{message} (request id {id})"),
                None => message.to_owned(),
            };
            tonic::Status::new(kind.grpc_code(), message)
        }
        _ => match error.details() {
            Some(details) => {
                tonic::Status::with_error_details(kind.grpc_code(), error.to_string(), details)
            }
            None => tonic::Status::new(kind.grpc_code(), error.to_string()),
        },
    }
}

/// Whether a database error is the database being out of reach (the pool
/// could not connect) rather than a statement that failed: worth a retry.
pub fn database_unavailable(error: &sea_orm::DbErr) -> bool {
    matches!(
        error,
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
    )
}

/// Field-level validation failures, reported as `google.rpc.BadRequest`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (a dotted path such as `document.title`) is bad.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// `Ok(())` when nothing was recorded.
    pub fn check(self) -> Result<(), FieldViolations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// An `InvalidArgument` status whose message names every field and whose
    /// details carry one violation per field.
    pub fn into_status(self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        let message = format!(
            "invalid request: {}",
            self.0
                .iter()
                .map(|(f, d)| format!("{f}: {d}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let mut details = ErrorDetails::new();
        for (field, description) in self.0 {
            details.add_bad_request_violation(field, description);
        }
        tonic::Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

impl std::error::Error for FieldViolations {}

impl std::fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (field, description)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {description}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_grpc_gateway() {
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::Unauthenticated), 401);
        assert_eq!(http_status(Code::PermissionDenied), 403);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::AlreadyExists), 409);
        assert_eq!(http_status(Code::Aborted), 409);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::Cancelled), 499);
        assert_eq!(http_status(Code::Unavailable), 503);
        assert_eq!(http_status(Code::DeadlineExceeded), 504);
        assert_eq!(ErrorKind::Aborted.http_status(), 409);
    }

    #[derive(Debug, thiserror::Error)]
    enum Example {
        #[error("no such thing")]
        Missing,
        #[error("database: {0}")]
        Database(#[source] std::io::Error),
        #[error("vault at 10.0.0.5 refused")]
        Down,
        #[error("invalid request: {0}")]
        Invalid(#[from] FieldViolations),
    }

    impl ServiceError for Example {
        fn kind(&self) -> ErrorKind {
            match self {
                Example::Missing => ErrorKind::NotFound,
                Example::Database(_) => ErrorKind::Internal,
                Example::Down => ErrorKind::Unavailable,
                Example::Invalid(_) => ErrorKind::InvalidArgument,
            }
        }
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        let status = into_status(Example::Missing);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such thing");
        let status = into_status(Example::Database(std::io::Error::other(
            "relation \"users\" secret",
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        let status = into_status(Example::Down);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            !status.message().contains("10.0.0.5"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn violations_become_bad_request_details() {
        use tonic_types::StatusExt;
        let mut v = FieldViolations::new();
        v.add("document.title", "must not be empty");
        let status = v.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("document.title: must not be empty")
        );
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "document.title");
    }

    #[test]
    fn a_service_error_carrying_violations_answers_with_them() {
        use tonic_types::StatusExt;
        let mut v = FieldViolations::new();
        v.add("page_size", "must be at most 100");
        let status = into_status(Example::from(v));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "page_size");
        // Only a direct source counts: an internal error is not turned into
        // a bad request by a cause deeper down.
        assert!(Example::Down.violations().is_none());
        assert!(
            Example::Database(std::io::Error::other("x"))
                .violations()
                .is_none()
        );
    }
}
