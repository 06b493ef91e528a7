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
}
