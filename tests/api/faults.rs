use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_http::{Context, RequestExt};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_catalog_that_refuses_connections_is_a_503() {
    let catalog = TestCatalog::new().await;
    let url = format!("postgres://nobody@127.0.0.1:{}/none", closed_port());
    let app = catalog.app(&[("DATABASE_URL", &url)]).await;
    let started = Instant::now();
    let message = send(&app, Call::logs(json!({}))).await.error(503, 14);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        !message.contains("127.0.0.1") && !message.contains(&url),
        "{message}"
    );
}

#[tokio::test]
async fn a_catalog_that_never_answers_is_a_503_within_the_connect_timeout() {
    // Accepts connections and says nothing, like a black-holed route.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let catalog = TestCatalog::new().await;
    let app = catalog
        .app(&[
            (
                "DATABASE_URL",
                &format!("postgres://nobody@127.0.0.1:{port}/none"),
            ),
            ("PEERDB_CATALOG_CONNECT_TIMEOUT_MS", "500"),
        ])
        .await;
    let started = Instant::now();
    send(&app, Call::logs(json!({}))).await.error(503, 14);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    held.abort();
}

/// Holds an exclusive lock on the table until dropped, so that any read
/// of it waits: a query that runs as long as the test wants.
async fn lock_table(catalog: &TestCatalog) {
    catalog
        .admin
        .batch_execute("BEGIN; LOCK TABLE peerdb_stats.flow_errors IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
}

async fn active_reads(catalog: &TestCatalog) -> i64 {
    catalog
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE usename = $1 AND datname = current_database() AND state <> 'idle'",
            &[&READER],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_query_past_its_time_limit_is_a_504_and_is_cancelled_on_the_server() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m"]).await;
    let app = catalog
        .app(&[("PEERDB_CATALOG_STATEMENT_TIMEOUT_MS", "300")])
        .await;
    assert_eq!(logs(&app, json!({"numPerPage": 1})).await.ids(), vec![10]);

    lock_table(&catalog).await;
    let started = Instant::now();
    let message = send(&app, Call::logs(json!({"numPerPage": 1})))
        .await
        .error(504, 4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(message, "the query ran past its time limit");
    assert_eq!(
        active_reads(&catalog).await,
        0,
        "the query still runs on the server"
    );

    catalog.admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(logs(&app, json!({"numPerPage": 1})).await.ids(), vec![10]);
}

#[tokio::test]
async fn near_the_lambda_deadline_the_answer_is_a_504_in_time() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m"]).await;
    let app = catalog.app(&[]).await;
    lock_table(&catalog).await;

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = Context::default();
    context.deadline = now_ms + 1000;
    context.request_id = "deadline-test".into();
    let event = Call::logs(json!({"numPerPage": 1})).event(Source::HttpApiDefault);
    let request = lambda_http::request::from_str(&event)
        .unwrap()
        .with_lambda_context(context);
    let started = Instant::now();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        took < Duration::from_millis(950),
        "answered after {took:?}, past the deadline"
    );
    assert_eq!(active_reads(&catalog).await, 0);
    catalog.admin.batch_execute("ROLLBACK").await.unwrap();
}

/// Ends the reader's connections to `catalog`'s database; how many.
async fn terminate_reader_connections(catalog: &TestCatalog) -> i64 {
    catalog
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()",
            &[&READER],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_terminated_pooled_connection_is_replaced_unseen() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(5, &["m"]).await;
    let app = catalog.app(&[]).await;
    assert_eq!(logs(&app, json!({"numPerPage": 1})).await.ids(), vec![5]);
    assert_eq!(terminate_reader_connections(&catalog).await, 1);
    assert_eq!(logs(&app, json!({"numPerPage": 1})).await.ids(), vec![5]);
}

#[tokio::test]
async fn connections_terminated_mid_request_are_replaced_unseen() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(5, &["m"]).await;
    let app = catalog.app(&[]).await;
    // The termination lands at every point of a read in turn: before it,
    // between its messages, as its reply comes back.
    for _ in 0..200 {
        let (reply, _) = tokio::join!(
            logs(&app, json!({"numPerPage": 1})),
            terminate_reader_connections(&catalog)
        );
        assert_eq!(reply.ids(), vec![5]);
    }
}

#[tokio::test]
async fn postgres_restarted_between_two_requests_is_unseen() {
    let (mut pg, url) = dedicated_catalog(3).await;
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("DATABASE_URL", &url)]).await;
    assert_eq!(
        logs(&app, json!({"numPerPage": 5})).await.ids(),
        vec![3, 2, 1]
    );
    pg.halt();
    pg.resume().unwrap();
    assert_eq!(
        logs(&app, json!({"numPerPage": 5})).await.ids(),
        vec![3, 2, 1]
    );
}

#[tokio::test]
async fn postgres_restarted_under_a_full_pool_is_unseen() {
    let (mut pg, url) = dedicated_catalog(3).await;
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("DATABASE_URL", &url)]).await;
    let page = || logs(&app, json!({"numPerPage": 5}));
    let _ = tokio::join!(page(), page(), page(), page());
    let watcher = connect(&url.parse().unwrap()).await;
    let pooled: i64 = watcher
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pooled, 4, "the pool holds a connection per request");
    drop(watcher);
    // Every pooled connection dies at once, unnoticed: the halt blocks
    // this runtime, as a frozen Lambda environment is.
    pg.halt();
    pg.resume().unwrap();
    assert_eq!(page().await.ids(), vec![3, 2, 1]);
}

#[tokio::test]
async fn a_catalog_that_is_down_is_a_503_then_served_once_it_is_up() {
    let (mut pg, url) = dedicated_catalog(2).await;
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("DATABASE_URL", &url)]).await;
    assert_eq!(logs(&app, json!({"numPerPage": 5})).await.ids(), vec![2, 1]);
    pg.halt();
    send(&app, Call::logs(json!({}))).await.error(503, 14);
    pg.resume().unwrap();
    assert_eq!(logs(&app, json!({"numPerPage": 5})).await.ids(), vec![2, 1]);
}

#[tokio::test]
async fn wrong_catalog_credentials_are_a_500_that_shows_no_secret() {
    let catalog = TestCatalog::new().await;
    let url = catalog
        .reader_url()
        .replace(READER_PASSWORD, "not-the-password");
    let app = catalog.app(&[("DATABASE_URL", &url)]).await;
    let message = send(&app, Call::logs(json!({}))).await.error(500, 13);
    assert!(
        !message.contains("not-the-password") && !message.contains(READER),
        "{message}"
    );
}

#[tokio::test]
async fn an_unconfigured_catalog_is_a_500() {
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("DATABASE_URL", "")]).await;
    let message = send(&app, Call::logs(json!({}))).await.error(500, 13);
    assert!(message.contains("not configured"), "{message}");
}

#[tokio::test]
async fn requests_beyond_the_pool_wait_the_pool_timeout_then_get_a_503() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(3, &["m"]).await;
    let server = Server::start(&[
        ("DATABASE_URL", &catalog.reader_url()),
        ("PEERDB_PASSWORD", "peerdb"),
        ("PEERDB_CATALOG_POOL_SIZE", "2"),
        ("PEERDB_CATALOG_POOL_TIMEOUT_MS", "500"),
        ("PEERDB_CATALOG_STATEMENT_TIMEOUT_MS", "30000"),
    ]);
    let request = || server.request(DOCS_HEAD, br#"{"numPerPage": 5}"#);
    lock_table(&catalog).await;

    // Two requests hold both pooled connections, waiting on the lock.
    let holders = async { tokio::join!(request(), request()) };
    let extras = async {
        // Within the admin's transaction the statistics are a snapshot.
        while {
            catalog
                .admin
                .batch_execute("SELECT pg_stat_clear_snapshot()")
                .await
                .unwrap();
            active_reads(&catalog).await < 2
        } {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let timed = || async {
            let started = Instant::now();
            let (status, json) = request().await;
            (status, json["code"].clone(), started.elapsed())
        };
        let answers = tokio::join!(timed(), timed(), timed(), timed());
        catalog.admin.batch_execute("ROLLBACK").await.unwrap();
        answers
    };
    let (held, extras) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(holders, extras)
    })
    .await
    .expect("a request hung");

    for (status, code, took) in [extras.0, extras.1, extras.2, extras.3] {
        assert_eq!((status, code), (503, json!(14)));
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
    // The held ones are served once the lock goes, and so is the next one.
    for (status, json) in [held.0, held.1, request().await] {
        assert_eq!(status, 200, "{json}");
        assert_eq!(ids_of(&json), vec![3, 2, 1]);
    }
    let logged = server.terminate();
    assert_eq!(
        logged
            .iter()
            .filter(|l| l.contains("no pooled connection was free in time"))
            .count(),
        4,
        "{logged:#?}"
    );
}
