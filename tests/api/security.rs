//! Security: no unauthenticated request reaches the database, and no
//! secret reaches a log line or an error body.

use serde_json::json;

use crate::helpers::*;

/// The API password of these tests: unlike the docs' one, secret.
const API_PASSWORD: &str = "api-s3cret-5f0c";

/// Every kind of bad credentials, each a 401.
fn bad_credentials() -> Vec<Call> {
    let call = || Call::logs(json!({"numPerPage": 5}));
    vec![
        call().without_header("authorization"),
        call().auth(&basic(":wrong")),
        call().auth(&basic(&format!("user:{API_PASSWORD}"))),
        call().auth(&basic(&format!(":{API_PASSWORD}x"))),
        call().auth("Basic"),
        call().auth("Basic "),
        call().auth("Basic !!!not-base64"),
        call().auth(&format!("Bearer {API_PASSWORD}")),
        // (An ALB without multi-value headers passes on only the last.)
        call()
            .auth(&basic(&format!(":{API_PASSWORD}")))
            .header("authorization", &basic(":wrong")),
    ]
}

#[tokio::test]
async fn unauthenticated_requests_reach_no_database() {
    let (pg, url) = dedicated_catalog_with(
        &[
            "log_connections=on",
            "log_statement=all",
            "log_line_prefix=%u: ",
        ],
        3,
    )
    .await;
    let catalog = TestCatalog::new().await;
    let app = catalog
        .app(&[("DATABASE_URL", &url), ("PEERDB_PASSWORD", API_PASSWORD)])
        .await;
    let server_log = || std::fs::read_to_string(pg.log_path()).unwrap();
    // What the server logs for a connection and for each statement.
    let reached = |log: &str| {
        log.lines()
            .filter(|l| l.contains("connection received") || l.starts_with(&format!("{READER}: ")))
            .count()
    };
    let before = server_log();

    for _ in 0..10 {
        for call in bad_credentials() {
            for source in SOURCES {
                invoke(&app, &call.event(source)).await.error(401, 16);
            }
        }
    }
    let after_burst = server_log();
    assert_eq!(
        reached(&after_burst[before.len()..]),
        0,
        "{}",
        &after_burst[before.len()..]
    );

    // The count does see the function when it is let in.
    let ok = Call::logs(json!({"numPerPage": 5})).auth(&basic(&format!(":{API_PASSWORD}")));
    assert_eq!(send(&app, ok).await.ids(), vec![3, 2, 1]);
    assert!(reached(&server_log()[after_burst.len()..]) >= 3);
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_an_error_body() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(3, &["m"]).await;
    let good = catalog.reader_url();
    let wrong_password = good.replace(READER_PASSWORD, "catalog-s3cret-wrong");
    let down = format!(
        "postgres://{READER}:catalog-s3cret-down@127.0.0.1:{}/x",
        closed_port()
    );
    let malformed = format!("postgres://{READER}:catalog-s3cret-bad@127.0.0.1:notaport/x");
    let credentials = basic(&format!(":{API_PASSWORD}"));
    let secrets = [
        API_PASSWORD,
        credentials
            .trim_start_matches("Basic ")
            .trim_end_matches('='),
        READER_PASSWORD,
        "catalog-s3cret-wrong",
        "catalog-s3cret-down",
        "catalog-s3cret-bad",
    ];
    // Each path that logs: served, refused, invalid, and each catalog failure.
    let ok = || Call::logs(json!({"numPerPage": 2})).auth(&credentials);
    let cases = [
        (&good, ok(), 200),
        (
            &good,
            ok().auth(&basic(&format!("admin:{API_PASSWORD}"))),
            401,
        ),
        (&good, ok().auth(&basic(":guess")), 401),
        (
            &good,
            Call::logs(json!({"numPerPage": -1})).auth(&credentials),
            400,
        ),
        (&wrong_password, ok(), 500),
        (&down, ok(), 503),
        (&malformed, ok(), 500),
    ];

    let in_process = LogCapture::start();
    let mut bodies = Vec::new();
    for (url, call, status) in cases.clone() {
        let app = catalog
            .app(&[("DATABASE_URL", url), ("PEERDB_PASSWORD", API_PASSWORD)])
            .await;
        let reply = send(&app, call).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.json);
        bodies.push(reply.json.to_string());
    }
    let mut logged = in_process.text();

    // The real binary, its output as an operator sees it, at DEBUG.
    for url in [&good, &wrong_password, &down, &malformed] {
        let server = Server::start(&[
            ("DATABASE_URL", url),
            ("PEERDB_PASSWORD", API_PASSWORD),
            ("RUST_LOG", "debug"),
        ]);
        for (_, call, status) in cases.iter().filter(|(u, ..)| *u == url) {
            let head = call.headers.iter().fold(
                "POST /api/v1/mirrors/logs HTTP/1.1".to_string(),
                |head, (name, value)| format!("{head}\r\n{name}: {value}"),
            );
            let (got, json) = server.request(&head, call.body.as_deref().unwrap()).await;
            assert_eq!(got, *status, "{json}");
            bodies.push(json.to_string());
        }
        logged.extend(server.terminate().iter().map(|l| format!("{l}\n")));
    }

    for needle in [
        "request served",
        "request refused",
        "the catalog refused the configured credentials",
        "the catalog database cannot be reached",
        "DATABASE_URL is not a valid Postgres connection string",
    ] {
        assert!(
            logged.contains(needle),
            "no {needle:?} in the log: {logged}"
        );
    }
    for secret in secrets {
        assert!(!logged.contains(secret), "{secret:?} in the log: {logged}");
        for body in &bodies {
            assert!(!body.contains(secret), "{secret:?} in {body}");
        }
    }
}
