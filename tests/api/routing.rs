use serde_json::json;

use crate::helpers::*;

async fn seeded() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m1", "m2"]).await;
    catalog
}

#[tokio::test]
async fn every_event_source_and_stage_form_reaches_the_endpoint() {
    let catalog = seeded().await;
    let app = catalog.app(&[]).await;
    for source in SOURCES {
        for path in ["/api/v1/mirrors/logs", "/v1/mirrors/logs"] {
            let call = Call::logs(json!({"numPerPage": 3})).path(path);
            let reply = invoke(&app, &call.event(source)).await;
            assert_eq!(reply.status, 200, "{source:?} {path}: {}", reply.json);
            assert_eq!(reply.ids(), vec![10, 9, 8], "{source:?} {path}");
            assert_eq!(reply.headers["content-type"], "application/json");
        }
    }
}

#[tokio::test]
async fn other_paths_are_404() {
    let app = seeded().await.app(&[]).await;
    for source in SOURCES {
        for path in [
            "/",
            "/api/v1/mirrors",
            "/api/v1/mirrors/logs/extra",
            "/api/v1/mirrors/logz",
            "/v1/mirrors/namez",
            "/api/v1/mirrors/names/extra",
        ] {
            let reply = invoke(&app, &Call::logs(json!({})).path(path).event(source)).await;
            reply.error(404, 5);
        }
    }
}

#[tokio::test]
async fn other_methods_on_the_endpoint_are_405_with_allow_post() {
    let app = seeded().await.app(&[]).await;
    for source in SOURCES {
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let reply = invoke(&app, &Call::logs(json!({})).method(method).event(source)).await;
            reply.error(405, 12);
            assert_eq!(reply.headers["allow"], "POST", "{source:?} {method}");
        }
    }
}

#[tokio::test]
async fn a_base64_encoded_body_is_decoded() {
    let app = seeded().await.app(&[]).await;
    for source in SOURCES {
        let reply = invoke(
            &app,
            &Call::logs(json!({"numPerPage": 1})).base64().event(source),
        )
        .await;
        assert_eq!(reply.status, 200, "{source:?}");
        assert_eq!(reply.ids(), vec![10]);
    }
}
