//! The request's path: route, authenticate, decode, query, encode. The
//! state is built once per execution environment and borrowed by every
//! request.

use std::future::Future;
use std::time::{Duration, SystemTime};

use lambda_http::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use lambda_http::http::request::Parts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::config::{ConfigError, Settings};
use crate::error::ApiError;
use crate::response::{encode_error, encode_page, BODY_BUDGET};
use crate::secrets::PasswordSecret;
use crate::{query, request, route};

/// Time kept back from Lambda's deadline to send the answer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

pub struct App {
    auth: Authenticator,
    /// Replaces `auth` when the password comes from Secrets Manager.
    password_secret: Option<PasswordSecret>,
    /// `None` when the settings are unusable; said in the log at start.
    catalog: Option<Catalog>,
    max_page_size: i64,
    max_body_bytes: usize,
}

/// What a served request did, for its log line.
#[derive(Default)]
struct Outcome {
    rows: usize,
    total: Option<i64>,
    db_time: Option<Duration>,
}

impl App {
    /// Builds the state; touches no network.
    pub fn new(settings: Result<Settings, ConfigError>) -> App {
        let settings = match settings {
            Ok(settings) => settings,
            Err(e) => {
                error!(problem = %e, "not configured: every request will get a 500 until this is fixed");
                return App {
                    auth: Authenticator::NotConfigured,
                    password_secret: None,
                    catalog: None,
                    max_page_size: 0,
                    max_body_bytes: 0,
                };
            }
        };
        match settings.auth {
            Authenticator::NotConfigured => error!(
                "no API password: set PEERDB_PASSWORD (or PEERDB_LOGS_DISABLE_AUTH=true when API Gateway \
                 authorizes callers); every request will get a 500 until then"
            ),
            Authenticator::Disabled => warn!("authentication is disabled (PEERDB_LOGS_DISABLE_AUTH)"),
            Authenticator::Password(_) => {}
        }
        let catalog = Catalog::new(&settings.catalog)
            .inspect_err(|e| error!(problem = %e, "not configured: every request will get a 500 until this is fixed"))
            .ok();
        App {
            auth: settings.auth,
            password_secret: settings.password_secret,
            catalog,
            max_page_size: settings.max_page_size,
            max_body_bytes: settings.max_body_bytes,
        }
    }

    /// The largest body `serve` accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Handles a Lambda event's request.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let (parts, body) = req.into_parts();
        self.respond(&parts, async { Ok(body) }).await
    }

    /// Answers a request whose body is read by `body` only once the request
    /// is routed and authenticated.
    pub async fn respond<F>(&self, parts: &Parts, body: F) -> Response<Body>
    where
        F: Future<Output = Result<Body, ApiError>>,
    {
        let started = Instant::now();
        let context = parts.lambda_context_ref();
        let deadline = context.map(|c| c.deadline()).and_then(instant_before);
        let mut outcome = Outcome::default();
        let result = async {
            route::route(parts)?;
            let catalog = self.catalog.as_ref().ok_or(ApiError::Internal(
                "the function is not configured; see its log",
            ))?;
            match &self.password_secret {
                Some(secret) => secret.check(&parts.headers).await?,
                None => self.auth.check(&parts.headers)?,
            }
            let body = body.await?;
            self.serve(catalog, body.as_ref(), deadline, &mut outcome)
                .await
        }
        .await;

        let status = result
            .as_ref()
            .map_or_else(ApiError::status, |_| StatusCode::OK);
        let request_id = context.map_or("", |c| c.request_id.as_str());
        let total_ms = millis(started.elapsed());
        let db_ms = outcome.db_time.map(millis);
        match &result {
            Err(e) if status.is_server_error() => {
                warn!(request_id, status = status.as_u16(), error = %e.message(), db_ms, total_ms, "request failed")
            }
            Err(e) => {
                info!(request_id, status = status.as_u16(), error = %e.message(), total_ms, "request refused")
            }
            Ok(_) => info!(
                request_id,
                status = status.as_u16(),
                rows = outcome.rows,
                total = outcome.total,
                db_ms,
                total_ms,
                "request served"
            ),
        }
        match result {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => error_response(&e),
        }
    }

    async fn serve(
        &self,
        catalog: &Catalog,
        body: &[u8],
        deadline: Option<Instant>,
        outcome: &mut Outcome,
    ) -> Result<String, ApiError> {
        if body.len() > self.max_body_bytes {
            return Err(ApiError::PayloadTooLarge(self.max_body_bytes));
        }
        let req = request::decode(body, self.max_page_size)?;
        let plan = query::plan(&req);
        let db_started = Instant::now();
        let page = catalog.read(&plan, deadline).await;
        outcome.db_time = Some(db_started.elapsed());
        let encoded = encode_page(&req, &page?, BODY_BUDGET);
        if encoded.dropped > 0 || encoded.cut {
            warn!(
                dropped_rows = encoded.dropped,
                message_cut = encoded.cut,
                "page truncated to stay under Lambda's 6 MB response limit"
            );
        }
        outcome.rows = encoded.rows;
        outcome.total = Some(encoded.total);
        Ok(encoded.body)
    }
}

/// Milliseconds to the microsecond, for the log.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The monotonic instant a little before Lambda's deadline.
fn instant_before(deadline: SystemTime) -> Option<Instant> {
    // A context without a deadline (0, as in tests) has none, nor has one
    // already past on arrival: Lambda never sends that, but `cargo lambda
    // watch` sends a constant 600000 (ms since the epoch, so 1970).
    let left = deadline.duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN))
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The spec's error body and status, with the headers each status needs.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let mut response = json_response(err.status(), encode_error(err));
    let headers = response.headers_mut();
    match err {
        ApiError::Unauthenticated => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="PeerDB", charset="UTF-8""#),
            );
        }
        ApiError::MethodNotAllowed => {
            headers.insert(ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    response
}
