use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn flow_job_name_matches_a_case_sensitive_substring() {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (1, "orders", "info", "a"),
            (2, "clone_orders_public.orders", "info", "b"),
            (3, "users", "info", "c"),
            (4, "ORDERS_upper", "info", "d"),
            (5, "preorders_sync", "error", "e"),
        ])
        .await;
    let app = catalog.app(&[]).await;
    let ids = |r: Reply| (r.ids(), r.total());
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "orders", "numPerPage": 10})).await),
        (vec![5, 2, 1], 3)
    );
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "ORDERS", "numPerPage": 10})).await),
        (vec![4], 1)
    );
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "clone_", "numPerPage": 10})).await),
        (vec![2], 1)
    );
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "users", "numPerPage": 10})).await),
        (vec![3], 1)
    );
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "nomatch", "numPerPage": 10})).await),
        (vec![], 0)
    );
    assert_eq!(
        ids(logs(&app, json!({"flowJobName": "", "numPerPage": 10})).await),
        (vec![5, 4, 3, 2, 1], 5)
    );
}

#[tokio::test]
async fn percent_underscore_and_backslash_are_ordinary_characters() {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (1, "a%b", "info", "x"),
            (2, "a_b", "info", "x"),
            (3, "axb", "info", "x"),
            (4, "a\\b", "info", "x"),
        ])
        .await;
    let app = catalog.app(&[]).await;
    for (needle, expect) in [
        ("%", vec![1]),
        ("_", vec![2]),
        ("\\", vec![4]),
        ("a_b", vec![2]),
        ("a%", vec![1]),
        ("a", vec![4, 3, 2, 1]),
    ] {
        assert_eq!(
            logs(&app, json!({"flowJobName": needle, "numPerPage": 10}))
                .await
                .ids(),
            expect,
            "{needle}"
        );
    }
}

#[tokio::test]
async fn level_matches_in_every_spelling_peerdb_clients_use() {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (1, "m", "info", "i"),
            (2, "m", "warn", "w"),
            (3, "m", "error", "e"),
            (4, "m", "info", "i2"),
        ])
        .await;
    let app = catalog.app(&[]).await;
    for (level, expect) in [
        ("", vec![4, 3, 2, 1]),
        ("all", vec![4, 3, 2, 1]),
        ("ALL", vec![4, 3, 2, 1]),
        ("info", vec![4, 1]),
        ("INFO", vec![4, 1]),
        ("warn", vec![2]),
        ("WARN", vec![2]),
        ("warning", vec![2]),
        ("WARNING", vec![2]),
        ("error", vec![3]),
        ("ERROR", vec![3]),
        ("Error", vec![3]),
    ] {
        let reply = logs(&app, json!({"level": level, "numPerPage": 10})).await;
        assert_eq!(reply.ids(), expect, "{level}");
        assert_eq!(reply.total(), expect.len() as i64, "{level}");
    }
    let message = send(&app, Call::logs(json!({"level": "debug"})))
        .await
        .error(400, 3);
    assert!(
        message.contains("ALL, INFO, WARN") && message.contains("ERROR"),
        "{message}"
    );
}

#[tokio::test]
async fn filters_combine_with_and() {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (1, "m1", "error", "a"),
            (2, "m2", "error", "b"),
            (3, "m1", "info", "c"),
            (4, "m1", "error", "d"),
        ])
        .await;
    let app = catalog.app(&[]).await;
    let reply = logs(
        &app,
        json!({"flowJobName": "m1", "level": "error", "numPerPage": 10}),
    )
    .await;
    assert_eq!((reply.ids(), reply.total()), (vec![4, 1], 2));
}

#[tokio::test]
async fn rows_carry_all_five_fields_with_millisecond_utc_timestamps() {
    let catalog = TestCatalog::new().await;
    catalog
        .admin
        .batch_execute(
            "INSERT INTO peerdb_stats.flow_errors (id, flow_name, error_message, error_type, error_timestamp)
             OVERRIDING SYSTEM VALUE
             VALUES (702169, 'mirror_development', 'failed to push data to ClickHouse: table users does not exist',
                     'error', '2025-06-03 17:35:35.285999')",
        )
        .await
        .unwrap();
    let app = catalog.app(&[]).await;
    let reply = logs(&app, json!({"numPerPage": 1})).await;
    assert_eq!(
        reply.json,
        json!({"errors": [{"flowName": "mirror_development",
                           "errorMessage": "failed to push data to ClickHouse: table users does not exist",
                           "errorType": "error", "errorTimestamp": 1748972135285_i64, "id": 702169}],
               "total": 1, "page": 1})
    );
}

#[tokio::test]
async fn a_mirror_and_a_level_are_exact_however_big_the_mirror_is() {
    // "small" holds 5% of the rows, "big" the rest; even ids are errors.
    let rows: Vec<(i64, &str, &str, &str)> = (1..=200)
        .map(|id| {
            let flow = if id % 20 == 0 { "small" } else { "big" };
            (id, flow, if id % 2 == 0 { "error" } else { "info" }, "m")
        })
        .collect();
    let catalog = TestCatalog::new().await;
    catalog.insert(&rows).await;
    let app = catalog.app(&[]).await;
    let answer = |r: Reply| (r.ids(), r.total(), r.page());
    for (body, expect) in [
        // A small mirror's page and count from one read of its rows.
        (
            json!({"flowJobName": "small", "level": "error", "numPerPage": 3}),
            (vec![200, 180, 160], 10, 1),
        ),
        (
            json!({"flowJobName": "small", "level": "error", "numPerPage": 3, "beforeId": 160}),
            (vec![140, 120, 100], 10, 2),
        ),
        // Only counted.
        (
            json!({"flowJobName": "small", "level": "error", "numPerPage": 0}),
            (vec![], 10, 0),
        ),
        // A big mirror counted in one pass over the table.
        (
            json!({"flowJobName": "big", "level": "error", "numPerPage": 3}),
            (vec![198, 196, 194], 90, 1),
        ),
        (
            json!({"flowJobName": "big", "level": "error", "numPerPage": 3, "beforeId": 190}),
            (vec![188, 186, 184], 90, 2),
        ),
        (
            json!({"flowJobName": "big", "level": "info", "numPerPage": 2, "afterId": 10}),
            (vec![13, 11], 100, 47),
        ),
    ] {
        assert_eq!(answer(logs(&app, body.clone()).await), expect, "{body}");
    }
}
