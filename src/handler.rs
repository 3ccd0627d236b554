//! The endpoints, reached once routed and authenticated. Logs: read the
//! body, decode it, run its statement, encode the page. Names: run the
//! names statement.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use lambda_http::RequestExt;
use tokio::time::Instant;
use tracing::warn;

use crate::error::ApiError;
use crate::response::{encode_page, Encoding};
use crate::startup::App;
use crate::{query, request};

/// Time kept back from Lambda's deadline to send the answer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// What a request did, for its log line; in the response's extensions.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: usize,
    pub total: i64,
    pub db_time: Option<Duration>,
}

pub async fn logs(State(app): State<Arc<App>>, req: Request) -> Response {
    let (deadline, encoding) = (deadline_of(&req), encoding_of(&app, &req));
    let mut outcome = Outcome::default();
    let result = serve(&app, req.into_body(), deadline, encoding, &mut outcome).await;
    respond(result, outcome)
}

/// `{"names": [...]}`. A body or query string is ignored.
pub async fn names(State(app): State<Arc<App>>, req: Request) -> Response {
    let deadline = deadline_of(&req);
    let started = Instant::now();
    let names = app.catalog.names(&query::mirror_names(), deadline).await;
    let mut outcome = Outcome {
        db_time: Some(started.elapsed()),
        ..Outcome::default()
    };
    let encoding = encoding_of(&app, &req);
    let result = names.map_err(ApiError::from).map(|names| {
        outcome.rows = names.len();
        outcome.total = names.len() as i64;
        encoding.apply(
            serde_json::json!({ "names": names })
                .to_string()
                .into_bytes(),
        )
    });
    respond(result, outcome)
}

/// A JSON body in its encoding, or the error's answer.
fn respond(result: Result<(Vec<u8>, Encoding), ApiError>, outcome: Outcome) -> Response {
    let mut response = match result {
        Ok((body, encoding)) => {
            let mut response = Response::new(Body::from(body));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
            if let Some(coding) = encoding.header() {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
            }
            response
        }
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(outcome);
    response
}

/// The coding the caller accepts, if any, unless compression is off.
fn encoding_of(app: &App, req: &Request) -> Encoding {
    if !app.compress {
        return Encoding::Identity;
    }
    Encoding::negotiate(
        req.headers()
            .get(ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A little before the Lambda invocation's deadline, when there is one.
fn deadline_of(req: &Request) -> Option<Instant> {
    req.lambda_context_ref()
        .map(|c| c.deadline())
        .and_then(instant_before)
}

async fn serve(
    app: &App,
    body: Body,
    deadline: Option<Instant>,
    encoding: Encoding,
    outcome: &mut Outcome,
) -> Result<(Vec<u8>, Encoding), ApiError> {
    let body = read_body(body, app.limits.max_body_bytes).await?;
    let req = request::decode(&body, app.limits.max_page_size)?;
    let db_started = Instant::now();
    let page = app.catalog.read(&req, deadline).await;
    outcome.db_time = Some(db_started.elapsed());
    let encoded = encode_page(&req, &page?, encoding);
    if encoded.dropped > 0 || encoded.cut {
        warn!(
            dropped_rows = encoded.dropped,
            message_cut = encoded.cut,
            "page truncated to stay under Lambda's 6 MB response limit"
        );
    }
    outcome.rows = encoded.rows;
    outcome.total = encoded.total;
    Ok((encoded.body, encoded.encoding))
}

/// The body, read no further than `limit` bytes (in local mode it is still
/// arriving; in Lambda it is already whole).
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<LengthLimitError>()) {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::bad_request("the request body could not be read")
        }
    })
}

/// The monotonic instant a little before Lambda's deadline.
fn instant_before(deadline: SystemTime) -> Option<Instant> {
    // A context without a deadline (0, as in tests) has none, nor has one
    // already past on arrival: Lambda never sends that, but `cargo lambda
    // watch` sends a constant 600000 (ms since the epoch, so 1970).
    let left = deadline.duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN))
}
