//! The metrics as CloudWatch gets them: one embedded metric format (EMF)
//! document per request, a line of its own on the real binary's stdout.
//! Here local mode's, with the metrics asked for; the Lambda binary's,
//! beside its JSON log lines, in `lambda_watch.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::helpers::*;

/// The EMF documents among a process's output `lines`, in order, each
/// checked as CloudWatch checks it: a JSON object alone on its line, a
/// timestamp of now, and every dimension and metric the metadata names
/// present, as a string and a number, with a unit CloudWatch knows.
pub fn emf_documents(lines: &[String]) -> Vec<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    lines
        .iter()
        .filter(|line| line.contains("\"_aws\""))
        .map(|line| {
            let doc: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("an EMF line that is not JSON alone ({e}): {line}"));
            let timestamp = doc["_aws"]["Timestamp"].as_u64().expect(line);
            assert!(now.abs_diff(timestamp) < 600_000, "{line}");
            let directives = doc["_aws"]["CloudWatchMetrics"].as_array().expect(line);
            assert!(!directives.is_empty(), "{line}");
            for directive in directives {
                assert!(directive["Namespace"].is_string(), "{line}");
                for set in directive["Dimensions"].as_array().expect(line) {
                    for name in set.as_array().expect(line) {
                        assert!(
                            doc[name.as_str().expect(line)].is_string(),
                            "{name}: {line}"
                        );
                    }
                }
                for metric in directive["Metrics"].as_array().expect(line) {
                    let name = metric["Name"].as_str().expect(line);
                    assert!(doc[name].is_number(), "{name}: {line}");
                    assert!(
                        ["Milliseconds", "Count"].contains(&metric["Unit"].as_str().expect(line)),
                        "{metric}: {line}"
                    );
                }
            }
            doc
        })
        .collect()
}

/// The metrics a document declares, by name.
pub fn declared(doc: &Value) -> Vec<&str> {
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn local_mode_asked_for_metrics_writes_one_document_per_request() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(5, &["m", "n"]).await;
    let server = Server::start(&[
        ("DATABASE_URL", &catalog.reader_url()),
        ("PEERDB_PASSWORD", "peerdb"),
        ("PEERDB_LOGS_DISABLE_METRICS", "false"),
        ("PEERDB_LOGS_METRICS_NAMESPACE", "PeerDB/MirrorLogsTest"),
    ]);
    let wrong = "POST /api/v1/mirrors/logs HTTP/1.1\r\nAuthorization: Basic Ondyb25n";
    let names = "GET /api/v1/mirrors/names HTTP/1.1\r\nAuthorization: Basic OnBlZXJkYg==";
    let elsewhere = "POST /api/v1/elsewhere-secret-path HTTP/1.1";
    // Each request: its status, its endpoint and status class, and the
    // rows its document must carry (none unless served).
    let mut expected = Vec::new();
    let (status, page) = server.request(DOCS_HEAD, br#"{"numPerPage": 3}"#).await;
    let rows = page["errors"].as_array().unwrap().len();
    assert_eq!((status, rows), (200, 3));
    expected.push(("logs", "2xx", Some(rows)));
    let (status, _) = server.request(wrong, b"{}").await;
    assert_eq!(status, 401);
    expected.push(("logs", "4xx", None));
    let (status, list) = server.request(names, b"").await;
    assert_eq!((status, list["names"].as_array().unwrap().len()), (200, 2));
    expected.push(("names", "2xx", Some(2)));
    let (status, _) = server.request(elsewhere, b"").await;
    assert_eq!(status, 404);
    expected.push(("other", "4xx", None));
    let (status, _) = server.request(DOCS_HEAD, br#"{"numPerPage": -1}"#).await;
    assert_eq!(status, 400);
    expected.push(("logs", "4xx", None));
    let (status, count) = server.request(DOCS_HEAD, br#"{"numPerPage": 0}"#).await;
    assert_eq!((status, count["total"].as_i64()), (200, Some(5)));
    expected.push(("logs", "2xx", Some(0)));

    let output = server.terminate();
    let docs = emf_documents(&output);
    assert_eq!(
        docs.len(),
        expected.len(),
        "one document per request: {output:#?}"
    );
    for (i, (doc, (endpoint, class, rows))) in docs.iter().zip(&expected).enumerate() {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "PeerDB/MirrorLogsTest", "{doc}");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Endpoint", "StatusClass"]])
        );
        assert_eq!(
            (doc["Endpoint"].as_str(), doc["StatusClass"].as_str()),
            (Some(*endpoint), Some(*class)),
            "{doc}"
        );
        assert_eq!(doc["Rows"].as_u64(), rows.map(|r| r as u64), "{doc}");
        assert_eq!(doc["ColdStart"], u64::from(i == 0), "{doc}");
        let latency = doc["Latency"].as_f64().unwrap();
        assert!(latency > 0.0, "{doc}");
        // The catalog's time is part of the whole, and only served
        // requests (here) reached the catalog.
        match doc["CatalogTime"].as_f64() {
            Some(catalog) => assert!(rows.is_some() && catalog <= latency, "{doc}"),
            None => assert!(rows.is_none(), "{doc}"),
        }
        let mut metrics = vec!["Latency"];
        metrics.extend(rows.map(|_| ["CatalogTime", "Rows"]).into_iter().flatten());
        metrics.push("ColdStart");
        assert_eq!(declared(doc), metrics, "{doc}");
        // No Lambda context in local mode, so no request id; and nothing
        // of what the caller sent.
        assert!(doc.get("request_id").is_none(), "{doc}");
        let text = doc.to_string();
        for sent in ["Basic", "OnBlZXJkYg", "Ondyb25n", "elsewhere", "numPerPage"] {
            assert!(!text.contains(sent), "{sent} in {text}");
        }
    }
}

/// A function whose start-up failed answers every request with a 500: the
/// metrics, whose own setting parsed, count them, so an alarm on 5xx sees
/// a deployment that cannot read its CA file (or its secrets).
#[tokio::test]
async fn a_function_that_failed_to_start_still_counts_its_500s() {
    let server = Server::start(&[
        ("PEERDB_CATALOG_HOST", "127.0.0.1"),
        ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
        ("PEERDB_CATALOG_CA_FILE", "/nonexistent/ca.pem"),
        ("PEERDB_PASSWORD", "peerdb"),
        ("PEERDB_LOGS_DISABLE_METRICS", "false"),
    ]);
    let (status, _) = server.request(DOCS_HEAD, b"{}").await;
    assert_eq!(status, 500);
    let output = server.terminate();
    let docs = emf_documents(&output);
    assert_eq!(docs.len(), 1, "{output:#?}");
    let doc = &docs[0];
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "PeerDBMirrorLogs"
    );
    assert_eq!(
        (doc["Endpoint"].as_str(), doc["StatusClass"].as_str()),
        (Some("logs"), Some("5xx")),
        "{doc}"
    );
    assert_eq!(declared(doc), ["Latency", "ColdStart"], "{doc}");
    assert_eq!(doc["ColdStart"], 1);
}
