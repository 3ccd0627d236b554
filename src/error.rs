//! The one error type every step returns, and its mapping to the spec's
//! error table. The message is written for the caller: it never carries
//! SQL, host names, connection strings or secrets. The cause stays in the
//! error, for the one log line written where the request ends.

use std::sync::Arc;

use axum::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::bearer::Refusal;
use crate::catalog::CatalogError;

/// The ways in a 401 names in `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Challenges {
    pub basic: bool,
    /// `Some(true)` when a token was presented and refused (RFC 6750's
    /// `invalid_token`).
    pub bearer: Option<bool>,
}

fn unauthenticated_hint(challenges: &Challenges) -> &'static str {
    match (challenges.basic, challenges.bearer.is_some()) {
        (true, true) => "HTTP Basic with the PeerDB password, or a bearer token",
        (false, true) => "a bearer token",
        _ => "HTTP Basic with the PeerDB password",
    }
}

/// Everything that can stop a request, each with the status and gRPC-style
/// code PeerDB's gateway would answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid; the message names the field and why.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials missing, malformed or wrong; a challenge for each way in.
    #[error("authentication required: {}", unauthenticated_hint(.challenges))]
    Unauthenticated {
        challenges: Challenges,
        /// Why a bearer token was refused, for the log.
        #[source]
        refusal: Option<Refusal>,
    },
    /// Bearer tokens are configured, but their key set cannot be fetched:
    /// the token may well be good, so this is not a 401.
    #[error("the token's signing keys cannot be fetched; try again")]
    KeySetUnavailable,
    #[error("no such endpoint; POST /api/v1/mirrors/logs or GET /api/v1/mirrors/names")]
    NotFound,
    /// With the methods the endpoint allows.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// The body is larger than the configured bound (in bytes).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Configuration the function cannot work without; said in the log at
    /// start.
    #[error("the function is not configured; see its log")]
    NotConfigured,
    #[error("the function is not configured: no API password is set")]
    NoPassword,
    /// The catalog could not be reached in time.
    #[error("the catalog database cannot be reached; try again")]
    Unavailable(#[source] CatalogError),
    /// The query ran past its time limit.
    #[error("the query ran past its time limit")]
    Timeout,
    #[error("the function cannot sign in to the catalog; see its log")]
    CatalogCredentials(#[source] CatalogError),
    #[error("reading the catalog failed; see the function's log")]
    Catalog(#[source] CatalogError),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotConfigured
            | ApiError::NoPassword
            | ApiError::CatalogCredentials(_)
            | ApiError::Catalog(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) | ApiError::KeySetUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The gRPC status code PeerDB's gateway puts in `code`.
    pub fn code(&self) -> u8 {
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => 3, // INVALID_ARGUMENT
            StatusCode::UNAUTHORIZED => 16,                               // UNAUTHENTICATED
            StatusCode::NOT_FOUND => 5,                                   // NOT_FOUND
            StatusCode::METHOD_NOT_ALLOWED => 12,                         // UNIMPLEMENTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                        // UNAVAILABLE
            StatusCode::GATEWAY_TIMEOUT => 4,                             // DEADLINE_EXCEEDED
            _ => 13,                                                      // INTERNAL
        }
    }

    /// The error body PeerDB's gateway sends.
    pub fn body(&self) -> String {
        serde_json::json!({"code": self.code(), "message": self.to_string(), "details": []})
            .to_string()
    }
}

/// The spec's error body and status, with the headers each status needs.
/// The error itself rides along in the response's extensions, for the log
/// line.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status(), self.body());
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthenticated { challenges, .. } => {
                if challenges.basic {
                    headers.append(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Basic realm="PeerDB", charset="UTF-8""#),
                    );
                }
                match challenges.bearer {
                    Some(true) => headers.append(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="PeerDB", error="invalid_token""#),
                    ),
                    Some(false) => headers.append(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="PeerDB""#),
                    ),
                    None => false,
                };
            }
            ApiError::KeySetUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error and its causes on one line, for the log.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Deadline => ApiError::Timeout,
            CatalogError::Credentials(_) => ApiError::CatalogCredentials(e),
            CatalogError::PoolExhausted
            | CatalogError::ConnectTimeout
            | CatalogError::Connect(_)
            | CatalogError::Pool(_)
            | CatalogError::Stale(_) => ApiError::Unavailable(e),
            CatalogError::Query(_) | CatalogError::NoStatsRow => ApiError::Catalog(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_error_shape() {
        let body: serde_json::Value =
            serde_json::from_str(&ApiError::bad_request("numPerPage must not be negative").body())
                .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code":3,"message":"numPerPage must not be negative","details":[]})
        );
    }

    #[test]
    fn each_error_has_the_specs_status_and_code() {
        for (e, status, code) in [
            (ApiError::bad_request("x"), 400, 3),
            (
                ApiError::Unauthenticated {
                    challenges: Challenges::default(),
                    refusal: None,
                },
                401,
                16,
            ),
            (ApiError::KeySetUnavailable, 503, 14),
            (ApiError::NotFound, 404, 5),
            (ApiError::MethodNotAllowed("POST"), 405, 12),
            (ApiError::PayloadTooLarge(1), 413, 3),
            (ApiError::NotConfigured, 500, 13),
            (ApiError::Unavailable(CatalogError::PoolExhausted), 503, 14),
            (ApiError::Timeout, 504, 4),
        ] {
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e}");
        }
    }
}
