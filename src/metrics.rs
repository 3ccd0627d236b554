//! CloudWatch metrics in the embedded metric format (EMF): one JSON
//! document per request, written by the log layer (`route`) as a line of
//! its own on stdout, where Lambda sends it to the function's log group and
//! CloudWatch Logs extracts the metrics from it. Not through `tracing`: a
//! document inside a tracing line (JSON or text) is not one CloudWatch
//! reads.
//!
//! Written here, with serde, rather than with a crate: the most used Rust
//! EMF crate, `metrics_cloudwatch_embedded`, is a backend for the
//! `metrics` facade, a process-wide recorder that aggregates all that was
//! recorded between two flushes, so requests served at once (local mode,
//! the tests) would share a document; AWS's `metrique` is a framework (a
//! background queue, tracing-subscriber, rand, hashbrown, ...) for what
//! is here one fixed document of four metrics.
//!
//! The document holds the figures of the request's log line and the cold
//! start flag: the endpoint and status class as dimensions (a fixed set of
//! values each, never the path), the times and the row count as metrics,
//! and Lambda's request id as a plain member (not a dimension), to find
//! the log line. Nothing the caller sent goes in it.
//!
//! A document has no `level`: with the JSON log format Lambda counts it as
//! INFO, so an application log level of WARN or ERROR drops it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The namespace when `PEERDB_LOGS_METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "PeerDBMirrorLogs";

/// The one dimension set: every metric is per endpoint and status class.
/// Both have a handful of values, so this is at most a few dozen metrics;
/// CloudWatch cannot add them up across dimension values for percentiles,
/// which is why the cold start is a metric and not a third dimension.
const DIMENSIONS: [&str; 2] = ["Endpoint", "StatusClass"];

/// Which endpoint a request was for, as a dimension value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Logs,
    Names,
    /// Any other path (a 404): the path itself is the caller's, and a
    /// dimension value per path would be a metric per path.
    Other,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Logs => "logs",
            Endpoint::Names => "names",
            Endpoint::Other => "other",
        }
    }
}

/// What the log layer measured of one request when it ended, in the log
/// line's units.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    pub endpoint: Endpoint,
    pub status: u16,
    /// The request's whole time in the function (the log line's
    /// `total_ms`).
    pub total_ms: f64,
    /// The catalog's share, when the request reached it (`db_ms`).
    pub db_ms: Option<f64>,
    /// Rows returned, when the request was served (`rows`).
    pub rows: Option<usize>,
    /// Lambda's request id; empty in local mode.
    pub request_id: &'a str,
    pub cold_start: bool,
}

/// Metrics on: the namespace, and whether a request has come yet.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    started: AtomicBool,
}

impl Metrics {
    /// `namespace` as config checked it.
    pub fn new(namespace: String) -> Metrics {
        Metrics {
            namespace,
            started: AtomicBool::new(false),
        }
    }

    /// Whether this is the first request of the process (of this router:
    /// Lambda builds one per execution environment), as each request comes
    /// in; true once.
    pub fn first_request(&self) -> bool {
        !self.started.swap(true, Ordering::Relaxed)
    }

    /// Writes the document for `request` as one line on stdout. A failed
    /// write is ignored: metrics never fail a request.
    pub fn emit(&self, request: &Measured) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Ok(mut line) = serde_json::to_vec(&document(&self.namespace, request, timestamp))
        else {
            return;
        };
        line.push(b'\n');
        // One write of a whole line, under stdout's lock, as tracing's
        // lines are: the two never interleave.
        let _ = std::io::stdout().lock().write_all(&line);
    }
}

/// The EMF document for `request`, at `timestamp` (ms since the epoch).
fn document<'a>(namespace: &'a str, request: &Measured<'a>, timestamp: u64) -> Document<'a> {
    let mut metrics = vec![Definition::millis("Latency")];
    if request.db_ms.is_some() {
        metrics.push(Definition::millis("CatalogTime"));
    }
    if request.rows.is_some() {
        metrics.push(Definition::count("Rows"));
    }
    metrics.push(Definition::count("ColdStart"));
    Document {
        aws: Aws {
            timestamp,
            cloud_watch_metrics: [Directive {
                namespace,
                dimensions: [DIMENSIONS],
                metrics,
            }],
        },
        endpoint: request.endpoint.as_str(),
        status_class: status_class(request.status),
        latency: request.total_ms,
        catalog_time: request.db_ms,
        rows: request.rows,
        cold_start: u8::from(request.cold_start),
        request_id: request.request_id,
    }
}

/// `2xx`, `4xx`, `5xx` (and `1xx`, `3xx`, which the function never
/// answers).
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The document: the metadata, then the dimensions' and the metrics'
/// values as top-level members, as EMF wants them. A metric without a
/// value (no catalog time for a 401) is left out of the metadata too: EMF
/// refuses a document that names a member it lacks.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    #[serde(rename = "Endpoint")]
    endpoint: &'static str,
    #[serde(rename = "StatusClass")]
    status_class: &'static str,
    #[serde(rename = "Latency")]
    latency: f64,
    #[serde(rename = "CatalogTime", skip_serializing_if = "Option::is_none")]
    catalog_time: Option<f64>,
    #[serde(rename = "Rows", skip_serializing_if = "Option::is_none")]
    rows: Option<usize>,
    /// 1 on the first request of an execution environment, else 0: a
    /// metric rather than a dimension. Its Sum is the number of cold
    /// starts and its Average their share of requests, each one alarm; as
    /// a dimension it would split every other metric in two, and a p99
    /// latency over all requests could no longer be had (CloudWatch does
    /// not combine percentiles across dimension values).
    #[serde(rename = "ColdStart")]
    cold_start: u8,
    #[serde(skip_serializing_if = "str::is_empty")]
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [[&'static str; 2]; 1],
    metrics: Vec<Definition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    name: &'static str,
    unit: &'static str,
}

impl Definition {
    fn millis(name: &'static str) -> Definition {
        Definition {
            name,
            unit: "Milliseconds",
        }
    }

    fn count(name: &'static str) -> Definition {
        Definition {
            name,
            unit: "Count",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn served() -> Measured<'static> {
        Measured {
            endpoint: Endpoint::Logs,
            status: 200,
            total_ms: 12.345,
            db_ms: Some(8.5),
            rows: Some(50),
            request_id: "c0ffee-request",
            cold_start: true,
        }
    }

    fn parsed(request: &Measured) -> Value {
        serde_json::to_value(document("PeerDBMirrorLogs", request, 1748972135285)).unwrap()
    }

    #[test]
    fn a_served_request_is_this_document() {
        assert_eq!(
            parsed(&served()),
            json!({
                "_aws": {
                    "Timestamp": 1748972135285u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "PeerDBMirrorLogs",
                        "Dimensions": [["Endpoint", "StatusClass"]],
                        "Metrics": [
                            {"Name": "Latency", "Unit": "Milliseconds"},
                            {"Name": "CatalogTime", "Unit": "Milliseconds"},
                            {"Name": "Rows", "Unit": "Count"},
                            {"Name": "ColdStart", "Unit": "Count"}
                        ]
                    }]
                },
                "Endpoint": "logs",
                "StatusClass": "2xx",
                "Latency": 12.345,
                "CatalogTime": 8.5,
                "Rows": 50,
                "ColdStart": 1,
                "request_id": "c0ffee-request"
            })
        );
    }

    #[test]
    fn a_refused_request_declares_only_the_metrics_it_has() {
        let refused = Measured {
            status: 401,
            db_ms: None,
            rows: None,
            request_id: "",
            cold_start: false,
            ..served()
        };
        let doc = parsed(&refused);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([
                {"Name": "Latency", "Unit": "Milliseconds"},
                {"Name": "ColdStart", "Unit": "Count"}
            ])
        );
        let mut members: Vec<&str> = doc
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["ColdStart", "Endpoint", "Latency", "StatusClass", "_aws"]
        );
        assert_eq!(
            (doc["StatusClass"].as_str(), doc["ColdStart"].as_u64()),
            (Some("4xx"), Some(0))
        );
    }

    /// What CloudWatch checks: every dimension named is a string member,
    /// every metric named a number member.
    #[test]
    fn every_member_the_metadata_names_is_there_with_its_type() {
        for endpoint in [Endpoint::Logs, Endpoint::Names, Endpoint::Other] {
            for (status, db_ms, rows) in [
                (200, Some(1.0), Some(0)),
                (404, None, None),
                (503, Some(3000.0), None),
                (400, None, None),
            ] {
                let doc = parsed(&Measured {
                    endpoint,
                    status,
                    db_ms,
                    rows,
                    ..served()
                });
                let directive = &doc["_aws"]["CloudWatchMetrics"][0];
                for set in directive["Dimensions"].as_array().unwrap() {
                    for name in set.as_array().unwrap() {
                        assert!(doc[name.as_str().unwrap()].is_string(), "{name}: {doc}");
                    }
                }
                for metric in directive["Metrics"].as_array().unwrap() {
                    assert!(
                        doc[metric["Name"].as_str().unwrap()].is_number(),
                        "{metric}: {doc}"
                    );
                }
            }
        }
    }

    #[test]
    fn dimension_values() {
        let value = |endpoint, status| {
            let doc = parsed(&Measured {
                endpoint,
                status,
                ..served()
            });
            format!(
                "{} {}",
                doc["Endpoint"].as_str().unwrap(),
                doc["StatusClass"].as_str().unwrap()
            )
        };
        assert_eq!(value(Endpoint::Logs, 200), "logs 2xx");
        assert_eq!(value(Endpoint::Names, 200), "names 2xx");
        assert_eq!(value(Endpoint::Logs, 405), "logs 4xx");
        assert_eq!(value(Endpoint::Logs, 413), "logs 4xx");
        assert_eq!(value(Endpoint::Other, 404), "other 4xx");
        for status in [500, 503, 504] {
            assert_eq!(value(Endpoint::Logs, status), "logs 5xx");
        }
    }

    #[test]
    fn the_cold_start_is_the_first_request_only() {
        let metrics = Metrics::new(DEFAULT_NAMESPACE.into());
        assert!(metrics.first_request());
        assert!(!metrics.first_request());
        assert!(!metrics.first_request());
        // Requests that come together (local mode): still exactly one.
        let metrics = std::sync::Arc::new(Metrics::new(DEFAULT_NAMESPACE.into()));
        let firsts: usize = (0..8)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || metrics.first_request())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(firsts, 1);
    }
}
