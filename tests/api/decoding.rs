use serde_json::json;

use crate::helpers::*;

async fn app() -> (TestCatalog, axum::Router) {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(20, &["m1", "m2"]).await;
    let app = catalog.app(&[]).await;
    (catalog, app)
}

#[tokio::test]
async fn an_empty_body_means_all_defaults() {
    let (_c, app) = app().await;
    for body in [&b""[..], b"   \n", b"{}"] {
        let reply = send(&app, Call::raw(body).without_header("content-type")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json, json!({"errors": [], "total": 20, "page": 0}));
    }
    let mut no_body = Call::raw(b"");
    no_body.body = None;
    assert_eq!(
        send(&app, no_body).await.json,
        json!({"errors": [], "total": 20, "page": 0})
    );
}

#[tokio::test]
async fn camel_and_snake_case_fields_are_the_same_request() {
    let (_c, app) = app().await;
    let camel = logs(
        &app,
        json!({"flowJobName": "m1", "numPerPage": 3, "beforeId": 15, "afterId": -1}),
    )
    .await;
    let snake = logs(
        &app,
        json!({"flow_job_name": "m1", "num_per_page": 3, "before_id": 15, "after_id": -1}),
    )
    .await;
    assert_eq!(camel.json, snake.json);
    assert_eq!(camel.ids(), vec![14, 12, 10]);
}

#[tokio::test]
async fn a_field_in_both_spellings_is_a_400() {
    let (_c, app) = app().await;
    let message = send(&app, Call::raw(br#"{"numPerPage": 3, "num_per_page": 3}"#))
        .await
        .error(400, 3);
    assert!(
        message.contains("numPerPage") && message.contains("num_per_page"),
        "{message}"
    );
}

#[tokio::test]
async fn integers_as_protobuf_json_accepts_them() {
    let (_c, app) = app().await;
    for n in [json!(2), json!(2.0), json!("2"), json!(2e0)] {
        assert_eq!(
            logs(&app, json!({"numPerPage": n})).await.ids(),
            vec![20, 19],
            "{n}"
        );
    }
    assert_eq!(
        send(&app, Call::raw(br#"{"numPerPage": 2e0, "page": "1"}"#))
            .await
            .ids(),
        vec![20, 19]
    );
}

#[tokio::test]
async fn non_integers_are_a_400_naming_the_field() {
    let (_c, app) = app().await;
    for (field, value) in [
        ("numPerPage", "5.5"),
        ("page", "\"abc\""),
        ("beforeId", "true"),
        ("after_id", "[1]"),
    ] {
        let body = format!(r#"{{"{field}": {value}}}"#);
        let message = send(&app, Call::raw(body.as_bytes())).await.error(400, 3);
        assert!(
            message.starts_with(&format!("{field} must be an integer")),
            "{body}: {message}"
        );
    }
    let message = send(&app, Call::raw(br#"{"flowJobName": 7}"#))
        .await
        .error(400, 3);
    assert_eq!(message, "flowJobName must be a string");
}

#[tokio::test]
async fn null_means_the_default_and_unknown_fields_are_ignored() {
    let (_c, app) = app().await;
    let reply = logs(
        &app,
        json!({"numPerPage": 2, "flowJobName": null, "level": null, "page": null,
                                  "beforeId": null, "somethingElse": {"deep": [1, 2, 3]}}),
    )
    .await;
    assert_eq!(reply.ids(), vec![20, 19]);
    assert_eq!(reply.total(), 20);
}

#[tokio::test]
async fn bodies_that_are_not_a_json_object_are_a_400() {
    let (catalog, _) = app().await;
    let app = catalog
        .app(&[("PEERDB_LOGS_MAX_BODY_BYTES", "1000000")])
        .await;
    let deep = "[".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[1,2]".to_vec(),
        b"\"text\"".to_vec(),
        b"null".to_vec(),
        b"{\"flowJobName\": \"\xff\xfe\"}".to_vec(),
        format!(r#"{{"x": {deep}"#).into_bytes(),
        format!(r#"{{"page": {deep}"#).into_bytes(),
        b"{\"numPerPage\": 1} trailing".to_vec(),
    ];
    for body in bodies {
        let reply = invoke(
            &app,
            &Call {
                body: Some(body.clone()),
                ..Call::raw(b"")
            }
            .base64()
            .event(Source::HttpApiDefault),
        )
        .await;
        let message = reply.error(400, 3);
        assert!(message.starts_with("request body"), "{message}");
    }
}

#[tokio::test]
async fn numbers_are_read_exactly_however_many_digits_they_have() {
    let catalog = TestCatalog::new().await;
    // Ids either side of 2^53, past which a float no longer holds them.
    let ids: Vec<i64> = (9_007_199_254_740_990..=9_007_199_254_740_995).collect();
    let rows: Vec<(i64, &str, &str, &str)> = ids.iter().map(|&id| (id, "m", "info", "x")).collect();
    catalog.insert(&rows).await;
    let app = catalog.app(&[]).await;
    for before in ["9007199254740993.0", "\"9007199254740993e0\""] {
        let body = format!(r#"{{"beforeId": {before}, "numPerPage": 1}}"#);
        assert_eq!(
            send(&app, Call::raw(body.as_bytes())).await.ids(),
            vec![9_007_199_254_740_992],
            "{body}"
        );
    }
    let zeros = "0".repeat(400);
    let body = format!(r#"{{"numPerPage": 2.{zeros}, "page": 1{zeros}e-400}}"#);
    assert_eq!(
        send(&app, Call::raw(body.as_bytes())).await.ids(),
        vec![9_007_199_254_740_995, 9_007_199_254_740_994]
    );
    let nines = "9".repeat(400);
    for (field, value) in [
        ("page", nines.clone()),
        ("afterId", format!("\"{nines}\"")),
        ("numPerPage", format!("0.{nines}")),
    ] {
        let body = format!(r#"{{"{field}": {value}}}"#);
        let message = send(&app, Call::raw(body.as_bytes())).await.error(400, 3);
        assert_eq!(
            message,
            format!("{field} must be an integer (a 64-bit whole number)")
        );
    }
}

#[tokio::test]
async fn sql_and_control_characters_in_strings_are_only_data() {
    let (catalog, app) = app().await;
    for name in [
        "'; DROP TABLE peerdb_stats.flow_errors; --",
        "a\\b",
        "%",
        "_",
        "m1' OR '1'='1",
    ] {
        let reply = logs(&app, json!({"flowJobName": name, "numPerPage": 5})).await;
        assert_eq!((reply.total(), reply.ids().len()), (0, 0), "{name}");
    }
    // Postgres text cannot hold NUL: a clear 400, not a database error.
    let message = send(&app, Call::logs(json!({"flowJobName": "nul\u{0}byte"})))
        .await
        .error(400, 3);
    assert_eq!(message, "flowJobName must not contain NUL characters");
    let rows: i64 = catalog
        .admin
        .query_one("SELECT count(*) FROM peerdb_stats.flow_errors", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 20);
}
