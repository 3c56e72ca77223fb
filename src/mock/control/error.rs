//! AWS IoT's error shapes: HTTP status, `x-amzn-ErrorType` header and `{"message": ...}` body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::mock::registry::control::Refusal;

/// The namespace AWS appends to the error type header (clients keep what precedes the colon).
const ERROR_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazonaws.iot/";

/// One error as the AWS IoT control plane returns it (botocore `iot` model error shapes).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the shape (`resourceId`, `resourceArn` of ResourceAlreadyExistsException).
    pub extra: Vec<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidRequestException", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "ResourceNotFoundException", message)
    }

    pub fn already_exists(message: impl Into<String>, id: &str, arn: &str) -> ApiError {
        let mut e = ApiError::new(409, "ResourceAlreadyExistsException", message);
        e.extra = vec![
            ("resourceId", id.to_string()),
            ("resourceArn", arn.to_string()),
        ];
        e
    }

    pub fn malformed_policy(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "MalformedPolicyException", message)
    }

    /// Over the mock's control-plane quota. The model gives ThrottlingException status 400;
    /// clients retry on the code.
    pub fn throttled() -> ApiError {
        ApiError::new(400, "ThrottlingException", "Rate exceeded")
    }

    pub fn unknown_operation() -> ApiError {
        ApiError::new(404, "UnknownOperationException", "")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalFailureException", message)
    }

    /// The HTTP response: status, `x-amzn-ErrorType`, JSON body with `message`.
    pub fn response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut body = serde_json::Map::new();
        body.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.extra {
            body.insert((*k).into(), v.clone().into());
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST))
            .header("content-type", "application/json")
            .header("x-amzn-RequestId", request_id)
            .header(
                "x-amzn-ErrorType",
                format!("{}:{ERROR_NAMESPACE}", self.code),
            )
            .body(Full::new(Bytes::from(bytes)))
            .unwrap_or_default()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::NotFound(m) => ApiError::not_found(m),
            Refusal::AlreadyExists(m) => ApiError::new(409, "ResourceAlreadyExistsException", m),
            Refusal::DeleteConflict(m) => ApiError::new(409, "DeleteConflictException", m),
            Refusal::CertificateState(m) => ApiError::new(406, "CertificateStateException", m),
            Refusal::InvalidRequest(m) => ApiError::invalid(m),
            Refusal::VersionConflict(m) => ApiError::new(409, "VersionConflictException", m),
            Refusal::VersionsLimit(m) => ApiError::new(409, "VersionsLimitExceededException", m),
        }
    }
}
