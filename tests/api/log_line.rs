//! The one log line each request ends with, as operators search for it.

use lambda_http::{Context, RequestExt};
use serde_json::json;
use tower::ServiceExt;

use crate::helpers::*;

#[tokio::test]
async fn each_request_logs_one_line_with_its_ids_method_path_and_outcome() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(3, &["m"]).await;
    let app = catalog.app(&[]).await;
    for (call, status, outcome) in [
        (Call::logs(json!({"numPerPage": 2})), 200, "request served"),
        (
            Call::logs(json!({})).path("/api/v1/nowhere"),
            404,
            "request refused",
        ),
        (
            Call::logs(json!({})).method("DELETE"),
            405,
            "request refused",
        ),
        (
            Call::logs(json!({"numPerPage": -1})),
            400,
            "request refused",
        ),
    ] {
        let mut context = Context::default();
        context.request_id = "c0ffee-request".into();
        context.xray_trace_id = Some("Root=1-6650a2b3-0f1e2d3c4b5a69788796a5b4".into());
        let request = lambda_http::request::from_str(&call.event(Source::HttpApiDefault))
            .unwrap()
            .with_lambda_context(context);
        let log = LogCapture::start();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status);
        let text = log.text();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("request_id=")).collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = lines[0];
        for needle in [
            outcome,
            "request_id=\"c0ffee-request\"",
            "trace_id=\"Root=1-6650a2b3-0f1e2d3c4b5a69788796a5b4\"",
            &format!("status={status}"),
        ] {
            assert!(line.contains(needle), "{needle} not in {line}");
        }
        if status != 200 {
            assert!(
                line.contains(&format!("method={} path={}", call.method, call.path)),
                "{line}"
            );
        }
    }
}
