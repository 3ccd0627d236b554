//! Which requests are ours. The endpoint has two paths, and behind API
//! Gateway the path may carry the stage (`/prod/api/v1/mirrors/logs`):
//! `lambda_http` adds it for REST APIs and named HTTP API stages.

use lambda_http::http::request::Parts;
use lambda_http::http::Method;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

use crate::error::ApiError;

/// The UI's path and the flow API's own path: the same endpoint.
pub const PATHS: [&str; 2] = ["/api/v1/mirrors/logs", "/v1/mirrors/logs"];

/// 404 for any other path, 405 for any other method on ours.
pub fn route(req: &Parts) -> Result<(), ApiError> {
    let stage = stage(req);
    if !is_endpoint(req.uri.path(), stage.as_deref()) {
        return Err(ApiError::NotFound);
    }
    if req.method != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(())
}

fn stage(req: &Parts) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV1(ctx) => ctx.stage.clone(),
        RequestContext::ApiGatewayV2(ctx) => ctx.stage.clone(),
        _ => None,
    }
}

fn is_endpoint(path: &str, stage: Option<&str>) -> bool {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let unstaged = stage
        .filter(|s| !s.is_empty() && *s != "$default")
        .and_then(|s| path.strip_prefix('/')?.strip_prefix(s));
    PATHS.iter().any(|p| path == *p || unstaged == Some(*p))
}

#[cfg(test)]
mod tests {
    use super::is_endpoint;

    #[test]
    fn both_paths_with_and_without_a_stage() {
        for path in [
            "/api/v1/mirrors/logs",
            "/v1/mirrors/logs",
            "/v1/mirrors/logs/",
        ] {
            assert!(is_endpoint(path, None), "{path}");
            assert!(is_endpoint(path, Some("$default")), "{path}");
            assert!(is_endpoint(path, Some("prod")), "{path}");
        }
        assert!(is_endpoint("/prod/api/v1/mirrors/logs", Some("prod")));
        assert!(is_endpoint("/prod/v1/mirrors/logs", Some("prod")));
    }

    #[test]
    fn other_paths_are_not_ours() {
        assert!(!is_endpoint("/prod/api/v1/mirrors/logs", None));
        assert!(!is_endpoint("/prod/api/v1/mirrors/logs", Some("dev")));
        assert!(!is_endpoint("/api/v1/mirrors", Some("prod")));
        assert!(!is_endpoint("/api/v1/mirrors/logsx", None));
        assert!(!is_endpoint("/prodapi/v1/mirrors/logs", Some("prod")));
        assert!(!is_endpoint("/", None));
    }
}
