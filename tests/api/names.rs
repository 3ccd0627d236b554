//! `GET /api/v1/mirrors/names`: what PeerDB's UI fills its mirror filter
//! with.

use serde_json::json;

use crate::helpers::*;

/// Mirrors as PeerDB names them, with their initial-load flows, one whose
/// name only looks like one, and one since dropped (its rows remain).
const FLOWS: [&str; 7] = [
    "orders_to_snowflake",
    "clone_orders_to_snowflake_public.orders",
    "clone_events_cdc_public.events",
    "cloneXsync",
    "events_cdc",
    "Billing_to_bigquery",
    "dropped_mirror",
];

async fn catalog() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(70, &FLOWS).await;
    catalog
}

fn names_call() -> Call {
    Call::logs(json!({}))
        .method("GET")
        .path("/api/v1/mirrors/names")
}

#[tokio::test]
async fn every_mirror_but_initial_load_flows_in_the_databases_text_order() {
    let catalog = catalog().await;
    let app = catalog.app(&[]).await;
    let reply = send(&app, names_call()).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    // The database's own order (this catalog's collation), clone_ taken
    // literally: cloneXsync is a mirror.
    let expected: Vec<String> = catalog
        .admin
        .query(
            "SELECT DISTINCT flow_name FROM peerdb_stats.flow_errors
             WHERE left(flow_name, 6) <> 'clone_' ORDER BY flow_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        expected,
        [
            "Billing_to_bigquery",
            "cloneXsync",
            "dropped_mirror",
            "events_cdc",
            "orders_to_snowflake"
        ]
    );
    assert_eq!(reply.json, json!({ "names": expected }));
}

#[tokio::test]
async fn an_empty_catalog_has_no_names() {
    let app = TestCatalog::new().await.app(&[]).await;
    assert_eq!(send(&app, names_call()).await.json, json!({"names": []}));
}

#[tokio::test]
async fn both_paths_behind_every_event_source_and_stage() {
    let app = catalog().await.app(&[]).await;
    for source in SOURCES {
        for path in [
            "/api/v1/mirrors/names",
            "/v1/mirrors/names",
            "/v1/mirrors/names/",
        ] {
            let reply = invoke(&app, &names_call().path(path).event(source)).await;
            assert_eq!(reply.status, 200, "{source:?} {path}: {}", reply.json);
            assert_eq!(
                reply.json["names"].as_array().unwrap().len(),
                5,
                "{source:?} {path}"
            );
        }
    }
}

#[tokio::test]
async fn a_body_or_query_string_is_ignored() {
    let app = catalog().await.app(&[]).await;
    let plain = send(&app, names_call()).await.json;
    for call in [
        Call::raw(b"not json at all")
            .method("GET")
            .path("/api/v1/mirrors/names"),
        names_call().path("/api/v1/mirrors/names?flowJobName=orders&x=%ZZ"),
    ] {
        let reply = send(&app, call).await;
        assert_eq!(reply.status, 200, "{}", reply.json);
        assert_eq!(reply.json, plain);
    }
}

#[tokio::test]
async fn it_asks_the_same_credentials_as_the_logs() {
    let app = catalog().await.app(&[]).await;
    for call in [
        names_call().without_header("authorization"),
        names_call().auth("Basic Ondyb25n"),
    ] {
        let reply = send(&app, call).await;
        reply.error(401, 16);
        assert_eq!(
            reply.headers["www-authenticate"],
            r#"Basic realm="PeerDB", charset="UTF-8""#
        );
    }
}

#[tokio::test]
async fn other_methods_are_405_with_allow_get() {
    let app = catalog().await.app(&[]).await;
    for source in SOURCES {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let reply = invoke(&app, &names_call().method(method).event(source)).await;
            reply.error(405, 12);
            assert_eq!(reply.headers["allow"], "GET", "{source:?} {method}");
        }
    }
}
