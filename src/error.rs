//! The one error type every step returns, and its mapping to the spec's
//! error table. Messages are written for the caller: they never carry SQL,
//! host names, connection strings or secrets. Detail goes to the log.

use lambda_http::http::StatusCode;

/// Everything that can stop a request, each with the status and gRPC-style
/// code PeerDB's gateway would answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The request is invalid; the message names the field and why.
    BadRequest(String),
    /// Credentials missing, malformed or wrong.
    Unauthenticated,
    NotFound,
    MethodNotAllowed,
    /// The body is larger than the configured bound (in bytes).
    PayloadTooLarge(usize),
    /// Something the caller cannot fix: a bug, a broken catalog, missing
    /// configuration. The detail was logged where it happened.
    Internal(&'static str),
    /// The catalog could not be reached in time.
    Unavailable,
    /// The query ran past its time limit.
    Timeout,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The gRPC status code PeerDB's gateway puts in `code`.
    pub fn code(&self) -> u8 {
        match self {
            ApiError::BadRequest(_) | ApiError::PayloadTooLarge(_) => 3, // INVALID_ARGUMENT
            ApiError::Unauthenticated => 16,                             // UNAUTHENTICATED
            ApiError::NotFound => 5,                                     // NOT_FOUND
            ApiError::MethodNotAllowed => 12,                            // UNIMPLEMENTED
            ApiError::Internal(_) => 13,                                 // INTERNAL
            ApiError::Unavailable => 14,                                 // UNAVAILABLE
            ApiError::Timeout => 4,                                      // DEADLINE_EXCEEDED
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(message) => message.clone(),
            ApiError::Unauthenticated => {
                "authentication required: HTTP Basic with the PeerDB password".into()
            }
            ApiError::NotFound => "no such endpoint; POST /api/v1/mirrors/logs".into(),
            ApiError::MethodNotAllowed => "method not allowed; use POST".into(),
            ApiError::PayloadTooLarge(limit) => {
                format!("request body is larger than {limit} bytes")
            }
            ApiError::Internal(what) => (*what).into(),
            ApiError::Unavailable => "the catalog database cannot be reached; try again".into(),
            ApiError::Timeout => "the query ran past its time limit".into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for ApiError {}
