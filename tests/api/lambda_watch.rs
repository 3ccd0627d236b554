//! The function behind the real Lambda runtime API: `cargo lambda watch`
//! emulates it, the `bootstrap` binary polls it as it does in Lambda, and
//! every file in `events/` goes in through `cargo lambda invoke
//! --data-file`. Its log is Lambda's JSON format, one line per request
//! with the runtime's request id, and beside each its metrics document,
//! a line of its own on the same stdout.
//!
//! Ignored unless asked for (`cargo test -- --include-ignored`): it needs
//! cargo-lambda, which a fresh machine lacks (tests/api/ignored.rs).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value;

use crate::events::{sample_catalog, sample_events};
use crate::helpers::*;
use crate::metrics::emf_documents;

/// Children killed when the test ends, however it ends.
struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn cargo_lambda() -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("lambda")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    command
}

/// Invokes the function with `event`; the response Lambda would return.
fn invoke(port: u16, event: &Path) -> Value {
    let out = cargo_lambda()
        .args(["invoke", "--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(event)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
#[ignore = "needs cargo-lambda: pip install cargo-lambda"]
async fn every_sample_event_through_cargo_lambda_watch() {
    let catalog = sample_catalog().await;
    let port = closed_port();
    let mut children = Killed(Vec::new());
    children.0.push(
        cargo_lambda()
            .args([
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run cargo lambda ({e}): pip install cargo-lambda (.ci/run does)")
            }),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = children.0[0].try_wait() {
            panic!("cargo lambda watch exited ({status}); is cargo-lambda installed? pip install cargo-lambda");
        }
        assert!(
            Instant::now() < until,
            "cargo lambda watch did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = sample_events();
    // One function process per configuration the events need, one after
    // the other: the emulator hands an invocation to whichever process
    // polls for it.
    let mut configurations: Vec<&[(&str, &str)]> = Vec::new();
    for (_, answer) in &events {
        if !configurations.contains(&answer.settings()) {
            configurations.push(answer.settings());
        }
    }
    for settings in configurations {
        let group: Vec<_> = events
            .iter()
            .filter(|(_, answer)| answer.settings() == settings)
            .collect();
        // The variables `cargo lambda watch --only-lambda-apis` says to set.
        let mut function = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("DATABASE_URL", catalog.reader_url())
            .env("PEERDB_PASSWORD", "peerdb")
            .envs(settings.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(function.stdout.take().unwrap());
        let function = Killed(vec![function]);

        for (path, answer) in &group {
            let file = path.file_name().unwrap().to_string_lossy();
            let response = invoke(port, path);
            assert_eq!(
                response["statusCode"],
                answer.status(),
                "events/{file}: {response}"
            );
            let body = response["body"].as_str().unwrap();
            // What API Gateway or the ALB gets: base64 exactly when compressed.
            let body = match response["headers"]["content-encoding"].as_str() {
                Some(coding) => {
                    assert_eq!(response["isBase64Encoded"], true, "events/{file}");
                    decompress(coding, &BASE64.decode(body).unwrap())
                }
                None => body.to_string(),
            };
            let body: Value = serde_json::from_str(&body).unwrap();
            if answer.status() == 200 {
                assert_eq!(ids_of(&body), answer.ids(), "events/{file}: {body}");
            } else {
                assert!(body["code"].is_u64(), "events/{file}: {body}");
            }
        }

        drop(function);
        let output: Vec<String> = stdout.lines().map_while(Result::ok).collect();
        let lines: Vec<Value> = output
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line: &Value| line["fields"]["status"].is_u64())
            .collect();
        assert_eq!(
            lines.len(),
            group.len(),
            "one log line per request: {lines:#?}"
        );
        for ((_, answer), line) in group.iter().zip(&lines) {
            let fields = &line["fields"];
            assert_eq!(fields["status"], answer.status(), "{line}");
            assert!(!fields["request_id"].as_str().unwrap().is_empty(), "{line}");
            assert!(fields["total_ms"].is_f64(), "{line}");
            if answer.status() == 200 {
                assert_eq!(
                    (fields["rows"].as_u64(), fields["total"].as_u64()),
                    (Some(answer.ids().len() as u64), Some(answer.total() as u64)),
                    "{line}"
                );
                assert!(fields["db_ms"].is_f64(), "{line}");
            }
        }

        // The metrics: one document per request, of the log line's figures;
        // each process has its own cold start.
        let documents = emf_documents(&output);
        assert_eq!(
            documents.len(),
            group.len(),
            "one document per request: {output:#?}"
        );
        for (i, (((_, answer), line), doc)) in group.iter().zip(&lines).zip(&documents).enumerate()
        {
            let fields = &line["fields"];
            assert_eq!(
                doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
                "PeerDBMirrorLogs"
            );
            assert_eq!(doc["request_id"], fields["request_id"], "{doc}");
            assert_eq!(doc["Latency"], fields["total_ms"], "{doc}");
            assert_eq!(
                doc["CatalogTime"].as_f64(),
                fields["db_ms"].as_f64(),
                "{doc}"
            );
            assert_eq!(doc["Rows"], fields["rows"], "{doc}");
            assert_eq!(doc["Endpoint"], "logs", "{doc}");
            let class = format!("{}xx", answer.status() / 100);
            assert_eq!(doc["StatusClass"], class.as_str(), "{doc}");
            assert_eq!(doc["ColdStart"], u64::from(i == 0), "{doc}");
        }
    }
}
