//! Which requests are ours, and the layers every request passes: one axum
//! router, which `lambda_http` runs in Lambda and `axum::serve` runs in
//! local mode. The outermost layer sees each request whole, and writes its
//! log line and its metrics document.
//!
//! Each endpoint (logs, names) has two paths, and behind API Gateway the
//! path may carry the stage (`/prod/api/v1/mirrors/logs`): `lambda_http`
//! adds it for REST APIs and named HTTP API stages. The stage is taken off
//! before routing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{describe, ApiError};
use crate::handler::{self, Outcome};
use crate::metrics::{Endpoint, Measured, Metrics};
use crate::startup::App;

/// The UI's path and the flow API's own path: the same endpoint.
pub const LOGS_PATHS: [&str; 2] = ["/api/v1/mirrors/logs", "/v1/mirrors/logs"];
/// PeerDB's `ListMirrorNames`, which the UI's Logs page calls first.
pub const NAMES_PATHS: [&str; 2] = ["/api/v1/mirrors/names", "/v1/mirrors/names"];

/// The whole application: 404 for any other path, 405 for any other method
/// on ours, authentication before the body is read, one log line per
/// request, and one metrics document with `metrics` on. Without an `app`
/// (its configuration is unusable), every request for an endpoint gets a
/// 500.
pub fn router(app: Option<Arc<App>>, metrics: Option<Arc<Metrics>>) -> Router {
    let (logs, names) = match app {
        Some(app) => {
            let auth = middleware::from_fn_with_state(app.clone(), authenticate);
            (
                post(handler::logs)
                    .route_layer(auth.clone())
                    .with_state(app.clone()),
                get(handler::names).route_layer(auth).with_state(app),
            )
        }
        None => (post(not_configured), get(not_configured)),
    };
    let logs = logs.fallback(|| async { ApiError::MethodNotAllowed("POST") });
    let names = names.fallback(|| async { ApiError::MethodNotAllowed("GET") });
    let routes = LOGS_PATHS
        .iter()
        .map(|path| (path, &logs))
        .chain(NAMES_PATHS.iter().map(|path| (path, &names)))
        .fold(Router::new(), |routes, (path, endpoint)| {
            routes.route(path, endpoint.clone())
        })
        .fallback(|| async { ApiError::NotFound });
    // Rewriting the path must come before routing, so it wraps the routes.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(unstage))
        .layer(middleware::from_fn_with_state(metrics, log_request))
}

async fn not_configured() -> ApiError {
    ApiError::NotConfigured
}

async fn authenticate(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    match app.auth.check(req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The request with the stage taken off its path, when that names one of
/// ours.
async fn unstage(mut req: Request) -> Request {
    if let Some(path) = our_path(&req) {
        *req.uri_mut() = Uri::from_static(path);
    }
    req
}

/// Which of our paths the request is for, its stage taken into account.
fn our_path(req: &Request) -> Option<&'static str> {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.as_deref(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    endpoint(req.uri().path(), stage)
}

/// The endpoint one of our paths belongs to, for the metrics.
fn endpoint_of(path: Option<&str>) -> Endpoint {
    match path {
        Some(p) if LOGS_PATHS.contains(&p) => Endpoint::Logs,
        Some(p) if NAMES_PATHS.contains(&p) => Endpoint::Names,
        _ => Endpoint::Other,
    }
}

/// Which of our paths `path` names, with or without the stage and a
/// trailing slash.
fn endpoint(path: &str, stage: Option<&str>) -> Option<&'static str> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let unstaged = stage
        .filter(|s| !s.is_empty() && *s != "$default")
        .and_then(|s| path.strip_prefix('/')?.strip_prefix(s));
    LOGS_PATHS
        .into_iter()
        .chain(NAMES_PATHS)
        .find(|p| path == *p || unstaged == Some(*p))
}

/// The one log line of a request, written when it ends: what was asked,
/// what came of it, and the cause of a failure; then, with metrics on, its
/// metrics document, of the same figures.
async fn log_request(
    axum::extract::State(metrics): axum::extract::State<Option<Arc<Metrics>>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let cold_start = metrics.as_ref().is_some_and(|m| m.first_request());
    let endpoint = endpoint_of(our_path(&req));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let context = req.lambda_context_ref();
    let request_id = context.map(|c| c.request_id.clone()).unwrap_or_default();
    let trace_id = context.and_then(|c| c.xray_trace_id.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let total_ms = millis(started.elapsed());
    let outcome = response.extensions().get::<Outcome>();
    let db_ms = outcome.and_then(|o| o.db_time).map(millis);
    let failure = response.extensions().get::<Arc<ApiError>>();
    match failure {
        Some(e) if response.status().is_server_error() => {
            let error = describe(e.as_ref());
            warn!(request_id, trace_id, status, %method, %path, %error, db_ms, total_ms, "request failed")
        }
        Some(e) => {
            let error = describe(e.as_ref());
            info!(request_id, trace_id, status, %method, %path, %error, total_ms, "request refused")
        }
        None => info!(
            request_id,
            trace_id,
            status,
            rows = outcome.map(|o| o.rows),
            total = outcome.map(|o| o.total),
            db_ms,
            total_ms,
            "request served"
        ),
    }
    if let Some(metrics) = &metrics {
        metrics.emit(&Measured {
            endpoint,
            status,
            total_ms,
            db_ms,
            // As the log line: rows only for a request served.
            rows: outcome.filter(|_| failure.is_none()).map(|o| o.rows),
            request_id: &request_id,
            cold_start,
        });
    }
    response
}

/// Milliseconds to the microsecond, for the log.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::{endpoint, endpoint_of};
    use crate::metrics::Endpoint;

    #[test]
    fn the_metrics_endpoint_of_each_path() {
        for (path, stage, expected) in [
            ("/api/v1/mirrors/logs", None, Endpoint::Logs),
            ("/prod/v1/mirrors/logs/", Some("prod"), Endpoint::Logs),
            ("/api/v1/mirrors/names", None, Endpoint::Names),
            ("/v1/mirrors/names", Some("$default"), Endpoint::Names),
            ("/api/v1/mirrors/logsx", None, Endpoint::Other),
            ("/", None, Endpoint::Other),
        ] {
            assert_eq!(endpoint_of(endpoint(path, stage)), expected, "{path}");
        }
    }

    #[test]
    fn both_paths_with_and_without_a_stage() {
        for path in [
            "/api/v1/mirrors/logs",
            "/v1/mirrors/logs",
            "/v1/mirrors/logs/",
        ] {
            let canonical = path.trim_end_matches('/');
            assert_eq!(endpoint(path, None), Some(canonical), "{path}");
            assert_eq!(endpoint(path, Some("$default")), Some(canonical), "{path}");
            assert_eq!(endpoint(path, Some("prod")), Some(canonical), "{path}");
        }
        assert_eq!(
            endpoint("/prod/api/v1/mirrors/logs", Some("prod")),
            Some("/api/v1/mirrors/logs")
        );
        assert_eq!(
            endpoint("/prod/v1/mirrors/logs", Some("prod")),
            Some("/v1/mirrors/logs")
        );
        assert_eq!(
            endpoint("/prod/api/v1/mirrors/names", Some("prod")),
            Some("/api/v1/mirrors/names")
        );
    }

    #[test]
    fn other_paths_are_not_ours() {
        for (path, stage) in [
            ("/prod/api/v1/mirrors/logs", None),
            ("/prod/api/v1/mirrors/logs", Some("dev")),
            ("/api/v1/mirrors", Some("prod")),
            ("/api/v1/mirrors/logsx", None),
            ("/api/v1/mirrors/name", None),
            ("/prodapi/v1/mirrors/logs", Some("prod")),
            ("/", None),
        ] {
            assert_eq!(endpoint(path, stage), None, "{path} {stage:?}");
        }
    }
}
