//! Function instances sharing PgBouncer's one server connection (the
//! PgBouncer itself is in helpers). The test is ignored unless asked for
//! (`cargo test -- --include-ignored`): it needs `pgbouncer`, which a fresh
//! machine lacks (tests/api/ignored.rs).

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs pgbouncer: apt-get install pgbouncer"]
async fn function_instances_sharing_one_server_connection_through_pgbouncer_are_all_served() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(30, &["a", "b"]).await;
    let server = (catalog.host(), catalog.port());
    let bouncer = tokio::task::spawn_blocking(move || {
        PgBouncer::start((&server.0, server.1), &[(READER, READER_PASSWORD)], 1)
    })
    .await
    .unwrap();
    let url = format!(
        "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/{}",
        bouncer.port, catalog.name
    );
    // Two execution environments (processes: statement names are only
    // unique within one), their transactions interleaved on PgBouncer's
    // single server connection: a named prepared statement or a session
    // setting would collide or leak between them.
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PEERDB_PASSWORD", "peerdb"),
    ];
    let servers = [Server::start(&env), Server::start(&env)];
    // In step, so that both use the same statement names at the same time.
    for i in 0..20 {
        let flow = ["a", "b"][i % 2];
        let before = 31 - i as i64 / 2;
        let body = json!({"flowJobName": flow, "numPerPage": 3, "beforeId": before}).to_string();
        let replies = tokio::join!(
            servers[0].request(DOCS_HEAD, body.as_bytes()),
            servers[1].request(DOCS_HEAD, body.as_bytes())
        );
        // insert_many gives even ids to "a", odd ones to "b".
        let expected: Vec<i64> = (1..before)
            .rev()
            .filter(|id| (id % 2 == 0) == (flow == "a"))
            .take(3)
            .collect();
        for (status, json) in [replies.0, replies.1] {
            assert_eq!(status, 200, "{json}");
            assert_eq!(ids_of(&json), expected, "{flow}");
            assert_eq!(json["total"], 15);
        }
    }
    let backends: i64 = catalog
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()",
            &[&READER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        backends, 1,
        "PgBouncer opened more than its one server connection"
    );
    for server in servers {
        server.terminate();
    }
}
