//! Local mode, as users run it: the real binary serving HTTP.

use crate::helpers::*;

/// The request PeerDB's docs show, byte for byte as curl sends it.
const DOCS_BODY: &str = "{\n  \"level\": \"error\",\n  \"flowJobName\": \"\",\n  \"beforeId\": -1,\n  \"afterId\": -1,\n  \"numPerPage\": 2,\n  \"page\": 0\n}\n  ";

#[tokio::test]
async fn local_mode_serves_a_configured_catalog_over_http() {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (1, "mirror_staging", "error", "e1"),
            (2, "m", "info", "i"),
            (3, "mirror_development", "error", "e2"),
        ])
        .await;
    let server = Server::start(&[
        ("DATABASE_URL", &catalog.reader_url()),
        ("PEERDB_PASSWORD", "peerdb"),
    ]);

    let (status, json) = server.request(DOCS_HEAD, DOCS_BODY.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(
        json["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [3, 1]
    );
    assert_eq!(
        (json["total"].as_i64(), json["page"].as_i64()),
        (Some(2), Some(1))
    );

    let (status, json) = server
        .request(
            "POST /api/v1/mirrors/logs HTTP/1.1\r\nAuthorization: Basic Ondyb25n",
            b"{}",
        )
        .await;
    assert_eq!((status, json["code"].as_i64()), (401, Some(16)));

    // 10 MB is refused at the bound, not read to the end: the answer comes
    // while all but the first 256 kB are still unsent.
    let big = vec![b' '; 10 * 1024 * 1024];
    let (status, json) = server.request(DOCS_HEAD, &big).await;
    assert_eq!((status, json["code"].as_i64()), (413, Some(3)));
    let (status, json) = server
        .request_declaring(DOCS_HEAD, big.len(), &big[..256 * 1024])
        .await;
    assert_eq!((status, json["code"].as_i64()), (413, Some(3)));

    let (status, _) = server
        .request("GET /api/v1/mirrors/logs HTTP/1.1", b"")
        .await;
    assert_eq!(status, 405);
    let (status, _) = server.request("POST /elsewhere HTTP/1.1", b"").await;
    assert_eq!(status, 404);
    // Metrics are off unless asked for (tests/api/metrics.rs asks).
    let output = server.terminate();
    assert!(
        !output.iter().any(|line| line.contains("\"_aws\"")),
        "{output:#?}"
    );
}

#[tokio::test]
async fn with_no_catalog_configured_local_mode_serves_a_demo_catalog_and_removes_it() {
    let server = Server::start(&[("PEERDB_PASSWORD", "")]);
    let (status, json) = server.request(DOCS_HEAD, DOCS_BODY.as_bytes()).await;
    assert_eq!(status, 200, "{json}");
    let rows = json["errors"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["errorType"] == "error"));
    assert!(json["total"].as_i64().unwrap() > 100, "{json}");
    let (_, all) = server.request(DOCS_HEAD, br#"{"numPerPage": 0}"#).await;
    assert_eq!(all["total"], 5000);
    let (_, clones) = server
        .request(DOCS_HEAD, br#"{"flowJobName": "clone_", "numPerPage": 0}"#)
        .await;
    assert!(clones["total"].as_i64().unwrap() > 0);

    let pid = server.child.id();
    server.terminate();
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("peerdb-mirror-logs-pg-{pid}-"))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the demo catalog was left behind: {leftovers:?}"
    );
}
