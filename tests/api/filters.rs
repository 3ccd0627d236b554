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

/// Row `id`'s message in [`timed_catalog`].
fn message(id: i64) -> String {
    match id % 3 {
        0 => format!("deadlock detected in batch {id}"),
        1 => format!("synced 100% of batch_{id} \\o/"),
        _ => format!("pulled {id} records"),
    }
}

/// Rows 1..=60 of three mirrors, odd ids errors; row `id` at `id` seconds
/// after 17:35:00 (helpers' `insert`), each 0.2857 s later still, so that
/// the millisecond boundaries fall inside a row's own millisecond.
async fn timed_catalog() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    let messages: Vec<String> = (1..=60).map(message).collect();
    let flows = ["orders_cdc", "events_cdc", "billing"];
    let levels = ["info", "error"];
    let rows: Vec<(i64, &str, &str, &str)> = (1..=60)
        .map(|id| {
            let i = id as usize - 1;
            (
                id,
                flows[i.wrapping_add(1) % 3],
                levels[(id % 2) as usize],
                messages[i].as_str(),
            )
        })
        .collect();
    catalog.insert(&rows).await;
    catalog
        .admin
        .batch_execute(
            "UPDATE peerdb_stats.flow_errors SET error_timestamp = error_timestamp + INTERVAL '285.7 milliseconds'",
        )
        .await
        .unwrap();
    catalog
}

/// Row `id`'s `errorTimestamp`.
fn at(id: i64) -> i64 {
    1_748_972_100_000 + id * 1000 + 285
}

#[tokio::test]
async fn a_time_range_holds_the_rows_whose_errortimestamp_is_in_it() {
    let app = timed_catalog().await.app(&[]).await;
    let ids = |from: i64, to: i64| {
        let app = app.clone();
        async move {
            let r = logs(
                &app,
                json!({"fromTimestamp": from, "toTimestamp": to, "numPerPage": 100}),
            )
            .await;
            (r.ids(), r.total())
        }
    };
    // From is inclusive, to exclusive, to the millisecond a row shows.
    assert_eq!(ids(at(10), at(13)).await, (vec![12, 11, 10], 3));
    assert_eq!(ids(at(10) + 1, at(13) + 1).await, (vec![13, 12, 11], 3));
    assert_eq!(ids(at(10), at(10)).await, (vec![], 0));
    // Either bound alone; strings and the snake spelling too.
    let r = logs(
        &app,
        json!({"from_timestamp": at(58).to_string(), "numPerPage": 100}),
    )
    .await;
    assert_eq!(r.ids(), vec![60, 59, 58]);
    let r = logs(&app, json!({"toTimestamp": at(3), "numPerPage": 100})).await;
    assert_eq!(r.ids(), vec![2, 1]);
    // The timestamps the answer shows are the ones filtered on.
    let r = logs(
        &app,
        json!({"fromTimestamp": at(7), "toTimestamp": at(8), "numPerPage": 1}),
    )
    .await;
    assert_eq!(r.json["errors"][0]["errorTimestamp"], at(7));
}

#[tokio::test]
async fn message_contains_is_a_literal_case_sensitive_substring() {
    let app = timed_catalog().await.app(&[]).await;
    for (needle, some) in [
        ("deadlock", true),
        ("Deadlock", false),
        ("100%", true),
        ("batch_1", true),
        ("\\o/", true),
        ("%", true),
        ("_", true),
        ("deadlock%", false),
    ] {
        let expected = (1..=60).filter(|&id| message(id).contains(needle)).count();
        assert_eq!(expected > 0, some, "{needle}");
        let r = logs(&app, json!({"messageContains": needle, "numPerPage": 0})).await;
        assert_eq!(r.total(), expected as i64, "{needle}");
    }
}

#[tokio::test]
async fn the_new_filters_combine_with_the_mirror_level_and_cursor_and_count_within_them() {
    let catalog = timed_catalog().await;
    let app = catalog.app(&[]).await;
    // orders_cdc is id % 3 == 0, as are the deadlocks; errors are odd ids.
    let body = json!({"flowJobName": "orders", "level": "error", "messageContains": "deadlock",
                      "fromTimestamp": at(10), "toTimestamp": at(50), "numPerPage": 2});
    let first = logs(&app, body.clone()).await;
    let expected: Vec<i64> = (10..50)
        .rev()
        .filter(|id| id % 3 == 0 && id % 2 == 1)
        .collect();
    assert_eq!(first.total(), expected.len() as i64);
    assert_eq!((first.ids(), first.page()), (expected[..2].to_vec(), 1));
    let mut next = body.clone();
    next["beforeId"] = json!(expected[1]);
    let second = logs(&app, next).await;
    assert_eq!(
        (second.ids(), second.total(), second.page()),
        (expected[2..4].to_vec(), expected.len() as i64, 2)
    );
    // The same, counted by plain SQL.
    let counted: i64 = catalog
        .admin
        .query_one(
            "SELECT count(*) FROM peerdb_stats.flow_errors WHERE strpos(flow_name, 'orders') > 0
               AND error_type = 'error' AND strpos(error_message, 'deadlock') > 0
               AND floor(extract(epoch FROM error_timestamp) * 1000)::int8 >= $1
               AND floor(extract(epoch FROM error_timestamp) * 1000)::int8 < $2",
            &[&at(10), &at(50)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, first.total());
}

#[tokio::test]
async fn bad_or_extreme_time_and_message_filters_get_a_400_or_an_answer_never_a_500() {
    let app = timed_catalog().await.app(&[]).await;
    for (body, needle) in [
        (
            json!({"fromTimestamp": 1.5}),
            "fromTimestamp must be an integer",
        ),
        (
            json!({"toTimestamp": "noon"}),
            "toTimestamp must be an integer",
        ),
        (
            json!({"fromTimestamp": 10, "toTimestamp": 9}),
            "toTimestamp must not be below fromTimestamp",
        ),
        (
            json!({"messageContains": "a\u{0}b"}),
            "messageContains must not contain NUL",
        ),
        (
            json!({"messageContains": ["deadlock"]}),
            "messageContains must be a string",
        ),
    ] {
        let message = send(&app, Call::logs(body.clone())).await.error(400, 3);
        assert!(message.contains(needle), "{body}: {message}");
    }
    for (from, to, total) in [
        (i64::MIN, i64::MAX, 60),
        (i64::MIN, i64::MIN, 0),
        (i64::MAX, i64::MAX, 0),
        (0, at(1) + 1, 1),
        (-62_135_596_800_000, 253_402_300_799_999, 60),
    ] {
        let r = logs(
            &app,
            json!({"fromTimestamp": from, "toTimestamp": to, "numPerPage": 0}),
        )
        .await;
        assert_eq!(r.total(), total, "{from}..{to}");
    }
}
