use serde_json::{json, Value};

use crate::helpers::*;
use peerdb_mirror_logs::response::{wire_len, LAMBDA_RESPONSE_LIMIT};

/// The body as the Lambda runtime would send it, inside its envelope.
fn envelope_len(reply: &Reply) -> usize {
    serde_json::to_string(&json!({"statusCode": 200, "body": reply.json.to_string()}))
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_page_over_six_megabytes_drops_the_rows_farthest_from_the_cursor() {
    let catalog = TestCatalog::new().await;
    // 40 stack traces of 200 kB, quotes and newlines included: 8 MB raw,
    // more once escaped twice.
    catalog
        .admin
        .batch_execute(
            r#"INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
               SELECT 'big', repeat(E'panic: "boom"\n\tat main.go:1\n', 7000), 'error' FROM generate_series(1, 40)"#,
        )
        .await
        .unwrap();
    let app = catalog.app(&[]).await;

    let newest = logs(&app, json!({"numPerPage": 40})).await;
    let ids = newest.ids();
    assert_eq!(newest.json["truncated"], true);
    assert!(ids.len() > 10 && ids.len() < 40, "{}", ids.len());
    assert_eq!(
        ids,
        (41 - ids.len() as i64..=40).rev().collect::<Vec<_>>(),
        "the newest rows are kept"
    );
    assert!(envelope_len(&newest) < LAMBDA_RESPONSE_LIMIT);
    assert_eq!((newest.total(), newest.page()), (40, 1));
    // Every row kept is whole.
    assert!(newest.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["errorMessage"].as_str().unwrap().len() == 7000 * 28));

    // Paging backwards, the rows nearest the cursor are the oldest ones.
    let older = logs(
        &app,
        json!({"beforeId": -1, "afterId": 0, "numPerPage": 40}),
    )
    .await;
    let ids = older.ids();
    assert_eq!(older.json["truncated"], true);
    assert_eq!(ids, (1..=ids.len() as i64).rev().collect::<Vec<_>>());
    assert_eq!(older.page(), (40 - ids.len() as i64) / 40 + 1);

    // A page that fits says nothing of truncation.
    let small = logs(&app, json!({"numPerPage": 2})).await;
    assert_eq!(
        small.json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["errors", "page", "total"]
    );
}

#[tokio::test]
async fn a_single_message_too_large_alone_is_cut_with_a_marker() {
    let catalog = TestCatalog::new().await;
    catalog
        .admin
        .batch_execute(
            r#"INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
               VALUES ('huge', 'small', 'info'), ('huge', repeat('"x', 4000000), 'error')"#,
        )
        .await
        .unwrap();
    let app = catalog.app(&[]).await;
    // The huge row is the nearest to the cursor, so it is kept, cut; the
    // small one no longer fits beside it.
    let reply = logs(&app, json!({"numPerPage": 2})).await;
    assert_eq!(reply.ids(), vec![2]);
    assert_eq!(reply.json["truncated"], true);
    let message = reply.json["errors"][0]["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("\"x\"x"));
    assert!(
        message.ends_with("of 8000000 bytes shown, the response size limit]"),
        "{}",
        &message[message.len() - 100..]
    );
    assert!(message.len() > 2_000_000);
    assert!(envelope_len(&reply) < LAMBDA_RESPONSE_LIMIT);
    assert!(wire_len(reply.json.to_string().as_bytes()) < LAMBDA_RESPONSE_LIMIT);
}

#[tokio::test]
async fn a_body_over_the_bound_is_a_413() {
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("PEERDB_LOGS_MAX_BODY_BYTES", "1024")]).await;
    let padding = "x".repeat(2000);
    let reply = send(
        &app,
        Call::logs(json!({"numPerPage": 1, "padding": padding})),
    )
    .await;
    let message = reply.error(413, 3);
    assert!(message.contains("1024 bytes"), "{message}");
    let ok: Value = send(&app, Call::logs(json!({"numPerPage": 1}))).await.json;
    assert_eq!(ok["total"], 0);
}
