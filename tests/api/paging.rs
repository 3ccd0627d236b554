use serde_json::json;

use crate::helpers::*;

async fn hundred() -> (TestCatalog, axum::Router) {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(100, &["m1", "m2", "m3"]).await;
    let app = catalog.app(&[]).await;
    (catalog, app)
}

fn range(from: i64, to: i64) -> Vec<i64> {
    (to..=from).rev().collect()
}

#[tokio::test]
async fn newest_first_without_a_cursor() {
    let (_c, app) = hundred().await;
    for cursor in [
        json!({}),
        json!({"beforeId": -1, "afterId": -1}),
        json!({"beforeId": 0, "afterId": 0}),
        json!({"beforeId": 0, "afterId": -1}),
    ] {
        let mut body = cursor.clone();
        body["numPerPage"] = json!(5);
        let reply = logs(&app, body).await;
        assert_eq!(reply.ids(), range(100, 96), "{cursor}");
        assert_eq!((reply.total(), reply.page()), (100, 1), "{cursor}");
    }
}

#[tokio::test]
async fn before_id_pages_toward_older_rows() {
    let (_c, app) = hundred().await;
    let reply = logs(
        &app,
        json!({"beforeId": 71, "afterId": -1, "numPerPage": 10}),
    )
    .await;
    assert_eq!(reply.ids(), range(70, 61));
    // 30 newer rows: the fourth page of ten.
    assert_eq!((reply.total(), reply.page()), (100, 4));
    // beforeId wins when both are set (as in the reference).
    assert_eq!(
        logs(
            &app,
            json!({"beforeId": 71, "afterId": 20, "numPerPage": 10})
        )
        .await
        .ids(),
        range(70, 61)
    );
}

#[tokio::test]
async fn after_id_returns_the_nearest_newer_rows_newest_first() {
    let (_c, app) = hundred().await;
    let reply = logs(
        &app,
        json!({"beforeId": -1, "afterId": 40, "numPerPage": 10}),
    )
    .await;
    assert_eq!(reply.ids(), range(50, 41));
    assert_eq!(reply.page(), 6);
    // The reference's "from the oldest end": afterId 0 with beforeId -1.
    assert_eq!(
        logs(&app, json!({"beforeId": -1, "afterId": 0, "numPerPage": 3}))
            .await
            .ids(),
        vec![3, 2, 1]
    );
}

#[tokio::test]
async fn after_id_works_without_before_id_minus_one() {
    // (fix) The reference turns this into `id < 0` and returns nothing.
    let (_c, app) = hundred().await;
    for body in [
        json!({"afterId": 40, "numPerPage": 10}),
        json!({"afterId": 40, "beforeId": 0, "numPerPage": 10}),
    ] {
        assert_eq!(
            logs(&app, body.clone()).await.ids(),
            range(50, 41),
            "{body}"
        );
    }
}

#[tokio::test]
async fn ids_below_minus_one_are_a_400() {
    let (_c, app) = hundred().await;
    assert!(send(&app, Call::logs(json!({"beforeId": -2})))
        .await
        .error(400, 3)
        .starts_with("beforeId"));
    assert!(send(&app, Call::logs(json!({"after_id": -7})))
        .await
        .error(400, 3)
        .starts_with("after_id"));
}

#[tokio::test]
async fn the_ui_pages_forward_and_back_by_cursor() {
    let (_c, app) = hundred().await;
    let ui = |before: i64, after: i64| json!({"level": "all", "flowJobName": "", "beforeId": before, "afterId": after, "numPerPage": 15, "page": 0});
    let first = logs(&app, ui(-1, -1)).await;
    assert_eq!((first.ids(), first.page()), (range(100, 86), 1));
    let second = logs(&app, ui(*first.ids().last().unwrap(), -1)).await;
    assert_eq!((second.ids(), second.page()), (range(85, 71), 2));
    let third = logs(&app, ui(*second.ids().last().unwrap(), -1)).await;
    assert_eq!(third.page(), 3);
    let back = logs(&app, ui(-1, third.ids()[0])).await;
    assert_eq!((back.ids(), back.page()), (second.ids(), 2));
    let last = logs(&app, ui(11, -1)).await;
    assert_eq!((last.ids(), last.page()), (range(10, 1), 7));
    let past_the_end = logs(&app, ui(1, -1)).await;
    assert_eq!(
        (
            past_the_end.ids(),
            past_the_end.page(),
            past_the_end.total()
        ),
        (vec![], 1, 100)
    );
}

#[tokio::test]
async fn the_deprecated_page_skips_whole_pages_after_the_cursor() {
    let (_c, app) = hundred().await;
    let reply = logs(&app, json!({"page": 3, "numPerPage": 10})).await;
    assert_eq!((reply.ids(), reply.page()), (range(80, 71), 3));
    let reply = logs(&app, json!({"page": 2, "numPerPage": 10, "beforeId": 51})).await;
    assert_eq!((reply.ids(), reply.page()), (range(40, 31), 2));
    let reply = logs(
        &app,
        json!({"page": 2, "numPerPage": 10, "beforeId": -1, "afterId": 50}),
    )
    .await;
    assert_eq!(reply.ids(), range(70, 61));
    let reply = logs(&app, json!({"page": 1000000, "numPerPage": 1000})).await;
    assert_eq!(
        (reply.ids(), reply.page(), reply.total()),
        (vec![], 1000000, 100)
    );
    // A page past any offset, with a mirror filter too (whose plan once
    // overflowed on it).
    let reply = logs(
        &app,
        json!({"flowJobName": "m1", "page": i64::MAX, "numPerPage": 2}),
    )
    .await;
    assert_eq!(
        (reply.ids(), reply.page(), reply.total()),
        (vec![], i64::MAX, 33)
    );
    assert!(send(&app, Call::logs(json!({"page": -1})))
        .await
        .error(400, 3)
        .starts_with("page must not be negative"));
}

#[tokio::test]
async fn num_per_page_zero_returns_only_the_total() {
    let (_c, app) = hundred().await;
    assert_eq!(
        logs(&app, json!({"numPerPage": 0, "level": "error"}))
            .await
            .json,
        json!({"errors": [], "total": 33, "page": 0})
    );
    assert_eq!(
        logs(&app, json!({"numPerPage": 0, "page": 4})).await.json,
        json!({"errors": [], "total": 100, "page": 4})
    );
}

#[tokio::test]
async fn num_per_page_is_bounded() {
    let (catalog, app) = hundred().await;
    assert!(send(&app, Call::logs(json!({"numPerPage": -1})))
        .await
        .error(400, 3)
        .contains("must not be negative"));
    assert!(send(&app, Call::logs(json!({"numPerPage": 1001})))
        .await
        .error(400, 3)
        .contains("at most 1000"));
    assert_eq!(
        logs(&app, json!({"numPerPage": 1000})).await.ids().len(),
        100
    );
    let small = catalog.app(&[("PEERDB_LOGS_MAX_PAGE_SIZE", "20")]).await;
    assert!(send(&small, Call::logs(json!({"numPerPage": 21})))
        .await
        .error(400, 3)
        .contains("at most 20"));
}

#[tokio::test]
async fn total_counts_the_filters_not_the_cursor_or_page() {
    let (_c, app) = hundred().await;
    for body in [
        json!({"flowJobName": "m2", "numPerPage": 5}),
        json!({"flowJobName": "m2", "numPerPage": 5, "beforeId": 30}),
        json!({"flowJobName": "m2", "numPerPage": 5, "afterId": 90}),
        json!({"flowJobName": "m2", "numPerPage": 5, "page": 9}),
    ] {
        assert_eq!(logs(&app, body.clone()).await.total(), 34, "{body}");
    }
    // With a filter, `page` counts only matching newer rows: m3 is every
    // third id from 2, so 10 of its rows are newer than 68.
    let reply = logs(
        &app,
        json!({"flowJobName": "m3", "numPerPage": 4, "beforeId": 71}),
    )
    .await;
    assert_eq!(reply.ids(), vec![68, 65, 62, 59]);
    assert_eq!(reply.page(), 10 / 4 + 1);
}

#[tokio::test]
async fn ids_past_two_to_the_31_work_both_ways() {
    // (fix) The reference reads ids as int32.
    let catalog = TestCatalog::new().await;
    let big = [
        2_147_483_647_i64,
        2_147_483_648,
        3_000_000_000,
        1 << 40,
        i64::MAX - 1,
    ];
    for id in big {
        catalog.insert(&[(id, "m", "info", "x")]).await;
    }
    let app = catalog.app(&[]).await;
    let reply = logs(&app, json!({"numPerPage": 10})).await;
    assert_eq!(reply.ids(), big.iter().rev().copied().collect::<Vec<_>>());
    let reply = logs(&app, json!({"beforeId": "1099511627776", "numPerPage": 10})).await;
    assert_eq!(
        reply.ids(),
        vec![3_000_000_000, 2_147_483_648, 2_147_483_647]
    );
    // Two newer rows: still the first page.
    assert_eq!(reply.page(), 1);
    let reply = logs(&app, json!({"afterId": 2_147_483_648_i64, "numPerPage": 2})).await;
    assert_eq!(reply.ids(), vec![1 << 40, 3_000_000_000]);
    let reply = logs(&app, json!({"beforeId": i64::MAX, "numPerPage": 1})).await;
    assert_eq!(reply.ids(), vec![i64::MAX - 1]);
}

#[tokio::test]
async fn a_small_mirror_pages_the_same_through_the_name_index() {
    // 40 mirrors of 10 rows: each holds under 5% of the table, so its
    // pages are read through the name index rather than the primary key.
    let catalog = TestCatalog::new().await;
    let flows: Vec<String> = (0..40).map(|i| format!("mirror_{i:02}")).collect();
    catalog
        .insert_many(400, &flows.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let app = catalog.app(&[]).await;
    // mirror_07 holds ids 7, 47, ..., 367 (insert_many cycles from id % 40).
    let mirror: Vec<i64> = (0..10).map(|k| 367 - 40 * k).collect();
    let reply = logs(&app, json!({"flowJobName": "mirror_07", "numPerPage": 4})).await;
    assert_eq!(
        (reply.ids(), reply.total(), reply.page()),
        (mirror[..4].to_vec(), 10, 1)
    );
    let reply = logs(
        &app,
        json!({"flowJobName": "mirror_07", "numPerPage": 4, "beforeId": mirror[3]}),
    )
    .await;
    assert_eq!((reply.ids(), reply.page()), (mirror[4..8].to_vec(), 2));
    let reply = logs(
        &app,
        json!({"flowJobName": "mirror_07", "numPerPage": 3, "afterId": mirror[6]}),
    )
    .await;
    assert_eq!((reply.ids(), reply.page()), (mirror[3..6].to_vec(), 2));
    let reply = logs(
        &app,
        json!({"flowJobName": "mirror_07", "numPerPage": 4, "page": 3}),
    )
    .await;
    assert_eq!((reply.ids(), reply.page()), (mirror[8..].to_vec(), 3));
    let errors: Vec<i64> = mirror.iter().copied().filter(|id| id % 3 == 2).collect();
    let reply = logs(
        &app,
        json!({"flowJobName": "mirror_07", "level": "error", "numPerPage": 10}),
    )
    .await;
    assert_eq!(
        (reply.ids(), reply.total()),
        (errors.clone(), errors.len() as i64)
    );
}
