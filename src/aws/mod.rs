//! The AWS account side of a load test: `aws setup`, `aws teardown` and `aws cleanup` (AWS SDK for Rust).
//!
//! - [`setup`] creates (or reuses) what the seed tutorial creates by hand: provisioning role,
//!   fleet provisioning template, claim certificate and policy; it writes a ready-to-run scenario
//!   and a state file that [`teardown`] reads to remove exactly what setup made.
//! - [`metrics`] reads AWS's own per-minute view of a run from CloudWatch (`cloudwatch.csv`).
//! - [`cleanup`] removes exactly what a run created, from the run's `created.csv` ([`created`]),
//!   paced below the control-plane quotas and retried with jitter on throttling ([`pace`]).
//!
//! Every call goes through the standard credential chain of `aws-config` (environment, profile,
//! SSO, instance role); `--endpoint-url` points every client at another control plane (the mock,
//! moto). `--dry-run` never builds a client: no credentials, no network.

pub mod cleanup;
pub mod command;
pub mod created;
pub mod metrics;
pub mod pace;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod resume;
pub mod setup;
pub mod state;
pub mod teardown;

use std::time::Duration;

use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};

/// Amazon Root CA 1, the trust anchor of `iot:Data-ATS` endpoints (public; copied from Debian's
/// `ca-certificates`, the file amazontrust.com publishes: SHA-256 8ECDE688...98196E, valid to 2038).
pub const AMAZON_ROOT_CA_1: &str = include_str!("../../assets/AmazonRootCA1.pem");

/// Where and as whom to call AWS.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Control-plane endpoint override (the mock's `--control` address, moto, ...).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
}

impl Connection {
    /// The shared SDK configuration: credential chain, region, endpoint override. The SDK's own
    /// retries are off: [`pace::Pacer`] retries, so every throttle is counted and paced.
    pub async fn load(&self) -> Result<aws_config::SdkConfig, AwsError> {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::Usage(
                "no AWS region: pass --region, set AWS_REGION, or set one in the profile".into(),
            ));
        }
        Ok(config)
    }

    /// The region named on the command line or in the environment, for plans and messages.
    pub fn region_hint(&self) -> Option<String> {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
    }

    /// `--endpoint-url URL --region R --profile P` for the printed `aws` CLI equivalents.
    pub fn cli_flags(&self) -> String {
        let mut flags = String::new();
        if let Some(url) = &self.endpoint_url {
            flags.push_str(&format!(" --endpoint-url {url}"));
        }
        if let Some(region) = &self.region {
            flags.push_str(&format!(" --region {region}"));
        }
        if let Some(profile) = &self.profile {
            flags.push_str(&format!(" --profile {profile}"));
        }
        flags
    }
}

/// What went wrong; each kind maps to one exit code (docs/reference/exit-codes.md).
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// Bad command-line usage that clap cannot express (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An input file (created.csv, state file, template) is unreadable or malformed (exit 3).
    #[error("{0}")]
    Input(String),
    /// A PEM file is unusable (exit 4).
    #[error("{0}")]
    Pem(String),
    /// AWS refused or the network failed, or local output could not be written (exit 1).
    #[error("{0}")]
    Runtime(String),
}

/// Each kind's exit code is in [`crate::exit`].
impl AwsError {
    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        AwsError::Runtime(format!("{}: {e}", path.display()))
    }
}

/// How an AWS error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `ThrottlingException`, `TooManyRequestsException`, HTTP 429: back off and retry.
    Throttled,
    /// HTTP 5xx, timeouts, a connection dropped mid-request: back off and retry.
    Transient,
    /// `ResourceNotFoundException` (IAM: `NoSuchEntity`): the resource does not exist, for an
    /// operation whose model lists that error ([`pace::Api::answers_not_found`]). Never a bare
    /// status: a 404 without an AWS error code is [`ErrorClass::SetUp`].
    NotFound,
    /// `DeleteConflictException`: still attached (detaching is asynchronous on AWS).
    Conflict,
    /// The command cannot work at all, so it stops at once: no credentials, an endpoint that
    /// cannot be built or refuses the connection, access denied, or an answer that is not the
    /// AWS IoT control plane's (`UnknownOperationException`, a 404 without an error code).
    SetUp,
    /// Anything else: reported for that item, not retried.
    Fatal,
}

/// Error codes that say the caller may not call AWS at all (bad, expired or denied credentials).
const DENIED: [&str; 10] = [
    "UnauthorizedException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "MissingAuthenticationTokenException",
];

/// Classify an SDK error by its error code and HTTP status, or by why no answer came.
pub fn classify<E, R>(err: &SdkError<E, R>) -> ErrorClass
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    match err {
        SdkError::TimeoutError(_) => return ErrorClass::Transient,
        SdkError::DispatchFailure(e) => {
            return match e.as_connector_error() {
                Some(c) if c.is_timeout() => ErrorClass::Transient,
                Some(c) if c.is_io() && !connection_refused(c) => ErrorClass::Transient,
                // Refused, no credentials, an endpoint that cannot be resolved: set-up errors.
                _ => ErrorClass::SetUp,
            };
        }
        // An answer that does not parse: transient from a failing server, otherwise not an
        // answer of this API.
        SdkError::ResponseError(_) => {
            let status = err.raw_response().map(HasStatus::status_code);
            return if status.is_some_and(|s| s >= 500) {
                ErrorClass::Transient
            } else {
                ErrorClass::SetUp
            };
        }
        SdkError::ConstructionFailure(_) => return ErrorClass::SetUp,
        _ => {}
    }
    let status = err.raw_response().map(HasStatus::status_code);
    classify_parts(err.code(), status)
}

/// Whether a connector error is a refused connection (nothing listens there).
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// [`classify`] on the error code and HTTP status alone.
pub fn classify_parts(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    match code {
        Some(
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "LimitExceededException",
        ) => return ErrorClass::Throttled,
        Some("ResourceNotFoundException" | "NoSuchEntity" | "NoSuchEntityException") => {
            return ErrorClass::NotFound;
        }
        Some("DeleteConflictException") => return ErrorClass::Conflict,
        Some("ServiceUnavailableException" | "InternalFailureException" | "InternalFailure") => {
            return ErrorClass::Transient;
        }
        Some("UnknownOperationException") => return ErrorClass::SetUp,
        Some(c) if DENIED.contains(&c) => return ErrorClass::SetUp,
        Some(_) => {
            return match status {
                Some(429) => ErrorClass::Throttled,
                Some(s) if s >= 500 => ErrorClass::Transient,
                _ => ErrorClass::Fatal,
            };
        }
        None => {}
    }
    // No AWS error code: whatever answered is not (or not only) the AWS control plane.
    match status {
        Some(429) => ErrorClass::Throttled,
        Some(s) if s >= 500 => ErrorClass::Transient,
        Some(401 | 403 | 404 | 405) => ErrorClass::SetUp,
        _ => ErrorClass::Fatal,
    }
}

/// The HTTP status of a raw response (lets [`classify`] stay generic over the SDK's response type).
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_iot::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// One line for an SDK error: code, message, HTTP status.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    let status = err
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status_code()))
        .unwrap_or_default();
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}{status}"),
        (Some(code), None) => format!("{code}{status}"),
        _ => format!("{}{status}", aws_sdk_iot::error::DisplayErrorContext(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_classify() {
        assert_eq!(
            classify_parts(Some("ThrottlingException"), Some(400)),
            ErrorClass::Throttled
        );
        assert_eq!(classify_parts(None, Some(429)), ErrorClass::Throttled);
        assert_eq!(
            classify_parts(Some("ResourceNotFoundException"), Some(404)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify_parts(Some("NoSuchEntity"), Some(404)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify_parts(Some("DeleteConflictException"), Some(409)),
            ErrorClass::Conflict
        );
        assert_eq!(classify_parts(None, Some(503)), ErrorClass::Transient);
        assert_eq!(
            classify_parts(Some("InvalidRequestException"), Some(400)),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn a_bare_404_or_an_unknown_operation_is_never_not_found() {
        assert_eq!(classify_parts(None, Some(404)), ErrorClass::SetUp);
        assert_eq!(
            classify_parts(Some("UnknownOperationException"), Some(404)),
            ErrorClass::SetUp
        );
        for denied in [
            "UnauthorizedException",
            "AccessDeniedException",
            "ExpiredTokenException",
        ] {
            assert_eq!(classify_parts(Some(denied), Some(403)), ErrorClass::SetUp);
        }
        assert_eq!(classify_parts(None, Some(403)), ErrorClass::SetUp);
        assert_eq!(
            classify_parts(Some("SomethingElse"), Some(404)),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn the_shipped_root_ca_is_amazon_root_ca_1() {
        use sha2::Digest;
        let der = pem::parse(AMAZON_ROOT_CA_1).expect("PEM");
        let digest = hex::encode_upper(sha2::Sha256::digest(der.contents()));
        assert_eq!(
            digest,
            "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E"
        );
    }
}
