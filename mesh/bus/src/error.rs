//! The bus's one error type.

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The database under the outbox, the inbox or the embedded bus.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// An envelope that breaks the CloudEvents rules.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A message that cannot be read as an event.
    #[error("cannot decode event: {0}")]
    Decode(String),
    /// `Envelope::decode` asked for the wrong payload type.
    #[error("event is of type `{actual}`, not `{expected}`")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    /// An event that no transport would accept (SNS, SQS and EventBridge
    /// all stop at 256 KiB).
    #[error("event of {size} bytes is larger than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// A call to an AWS service failed.
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
    },
    /// In `existing` mode, a topic, queue or bus that is not there.
    #[error("{kind} `{name}` does not exist")]
    Missing { kind: &'static str, name: String },
    /// A configuration value that cannot work.
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

/// The bus's result type.
pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// Maps an AWS SDK error to [`BusError::Aws`], keeping the whole cause
/// chain in the message (the SDK's own `Display` shows only the top).
pub(crate) fn aws<E>(service: &'static str, operation: &'static str) -> impl FnOnce(E) -> BusError
where
    E: std::error::Error,
{
    move |error| BusError::Aws {
        service,
        operation,
        message: aws_sdk_sqs::error::DisplayErrorContext(&error).to_string(),
    }
}
