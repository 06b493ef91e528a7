//! Where and as whom to reach AWS: the one SDK configuration loader of the
//! bus (SNS, SQS, EventBridge), the documents store (S3), the audit
//! store (DynamoDB) and the KMS key service.

use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Deserialize;

/// Where and as whom to reach AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The region; the SDK's usual sources when absent.
    pub region: Option<String>,
    /// Another endpoint for every service (moto, LocalStack).
    pub endpoint_url: Option<String>,
    /// Use fixed dummy credentials instead of the SDK's provider chain;
    /// for emulators, which check none.
    #[serde(default)]
    pub dummy_credentials: bool,
}

/// Loads the SDK configuration for `settings`; with `timeout`, every
/// operation and connection attempt is bounded by it, so that a backend
/// that stops answering fails a call instead of hanging it.
pub async fn sdk_config(
    settings: &AwsSettings,
    timeout: Option<Duration>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if settings.dummy_credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "cloudsec", "cloudsec", None, None, "dummy",
        ));
    }
    if let Some(timeout) = timeout {
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .connect_timeout(timeout)
                .build(),
        );
    }
    loader.load().await
}

/// What a failed AWS call means for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer, a server fault or throttling: a later try may work.
    Unavailable { reason: String },
    /// The service refused: its error code and message (which never carry
    /// a request's payload).
    Refused { code: String, message: String },
}

/// The one reading of SDK errors. `transient` names the service's error
/// codes that mean "try again later" (its internal errors, throttling);
/// every other code is a refusal.
pub fn classify<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>, transient: &[&str]) -> Failure {
    let reason = match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or_default().to_owned();
            if transient.contains(&code.as_str()) {
                return Failure::Unavailable {
                    reason: format!("{code}: {message}"),
                };
            }
            return Failure::Refused { code, message };
        }
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out",
        SdkError::DispatchFailure(_) => "cannot connect",
        _ => "no valid answer",
    };
    Failure::Unavailable {
        reason: reason.to_owned(),
    }
}
