//! Test harness: one throwaway Postgres per test run (or the server named
//! by `TEST_DATABASE_URL`, a superuser URL), a fresh database per test
//! with PeerDB's schema, and the function reading it as a role that has
//! only `SELECT` on the table. Requests go in as real Lambda events,
//! through `lambda_http`'s own deserialization. With `TEST_VIA_PGBOUNCER=1`
//! the function reaches the catalog through a PgBouncer in transaction
//! pooling mode; the tests' own admin connection stays direct.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use base64::Engine;
use lambda_http::http::{HeaderMap, StatusCode};
use lambda_http::{Body, IntoResponse, Request};
use peerdb_mirror_logs::config::Config;
use peerdb_mirror_logs::startup;
use serde_json::{json, Value};
use testkit::{provision, ThrowawayPg, SUPERUSER};
use tokio_postgres::{Client, NoTls};
use tower::ServiceExt;

mod local_server;
mod pgbouncer;
pub mod tokens;

pub use local_server::{Connection, Server, DOCS_HEAD};
pub use pgbouncer::PgBouncer;

pub const READER: &str = "logs_reader";
pub const READER_PASSWORD: &str = "reader-pw";
pub const TEMPLATE: &str = "peerdb_template";
/// The docs' password and header.
pub const AUTH: &str = "Basic OnBlZXJkYg==";

/// A Basic `Authorization` value carrying `credentials` (`user:password`).
pub fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

struct Cluster {
    /// The server's superuser, signed in to its `postgres` database.
    admin: tokio_postgres::Config,
    _server: Option<ThrowawayPg>,
    bouncer: Option<PgBouncer>,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        search_every_log_line();
        let (admin, server) = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => (
                url.parse::<tokio_postgres::Config>()
                    .expect("TEST_DATABASE_URL is a Postgres URL"),
                None,
            ),
            Err(_) => {
                let pg = ThrowawayPg::start(&["max_connections=300"])
                    .expect("start a throwaway Postgres");
                (pg.url(SUPERUSER, "postgres").parse().unwrap(), Some(pg))
            }
        };
        // The template database, with the schema and the reader role, made
        // once per run on a thread of its own (tests each have their own
        // runtime).
        let setup = admin.clone();
        on_own_runtime(async move {
            let client = connect(&setup).await;
            for statement in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
                client
                    .batch_execute(&format!("{statement} {TEMPLATE}"))
                    .await
                    .unwrap();
            }
            let mut in_template = setup.clone();
            in_template.dbname(TEMPLATE);
            provision(&connect(&in_template).await, READER, READER_PASSWORD)
                .await
                .unwrap();
        })
        .unwrap();
        let bouncer = std::env::var("TEST_VIA_PGBOUNCER")
            .is_ok_and(|v| v == "1")
            .then(|| {
                let server = (tcp_host(&admin), admin.get_ports()[0]);
                PgBouncer::start((&server.0, server.1), &[(READER, READER_PASSWORD)], 20)
            });
        Cluster {
            admin,
            _server: server,
            bouncer,
        }
    })
}

/// Runs `work` on a thread and runtime of its own, for what tests share
/// (each test has its own runtime); `Err` if it panicked.
pub fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
}

pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("connect to the test Postgres");
    tokio::spawn(connection);
    client
}

fn tcp_host(config: &tokio_postgres::Config) -> String {
    match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("tests need a TCP host, not {other:?}"),
    }
}

/// A fresh database holding PeerDB's schema, for one test.
pub struct TestCatalog {
    pub name: String,
    /// A superuser connection to the test's database, to arrange data.
    pub admin: Client,
}

impl TestCatalog {
    pub async fn new() -> TestCatalog {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let cluster = cluster();
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let postgres = connect(&cluster.admin).await;
        postgres
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .await
            .unwrap();
        let mut config = cluster.admin.clone();
        config.dbname(&name);
        TestCatalog {
            admin: connect(&config).await,
            name,
        }
    }

    pub fn port(&self) -> u16 {
        cluster().admin.get_ports()[0]
    }

    /// The test server's own host, even in a run through PgBouncer.
    pub fn host(&self) -> String {
        tcp_host(&cluster().admin)
    }

    /// The URL the function uses: the read-only role, through PgBouncer
    /// when the run asks for it.
    pub fn reader_url(&self) -> String {
        let (host, port) = match &cluster().bouncer {
            Some(bouncer) => ("127.0.0.1".to_string(), bouncer.port),
            None => (self.host(), self.port()),
        };
        format!(
            "postgres://{READER}:{READER_PASSWORD}@{host}:{port}/{}",
            self.name
        )
    }

    /// The function, configured for this catalog plus `extra` settings.
    pub async fn app(&self, extra: &[(&str, &str)]) -> Router {
        app_with(
            &[
                ("DATABASE_URL", &self.reader_url()),
                ("PEERDB_PASSWORD", "peerdb"),
            ],
            extra,
        )
        .await
    }

    /// Inserts rows `(id, flow_name, error_type, message)`, timestamped
    /// `id % 1000000` seconds after 2025-06-03 17:35:00 UTC.
    pub async fn insert(&self, rows: &[(i64, &str, &str, &str)]) {
        for (id, flow, kind, message) in rows {
            self.admin
                .execute(
                    "INSERT INTO peerdb_stats.flow_errors (id, flow_name, error_type, error_message, error_timestamp)
                     OVERRIDING SYSTEM VALUE
                     VALUES ($1::int8, $2, $3, $4, TIMESTAMP '2025-06-03 17:35:00' + make_interval(secs => ($1::int8 % 1000000)::float8))",
                    &[id, flow, kind, message],
                )
                .await
                .unwrap();
        }
    }

    /// Inserts `n` rows with ids 1..=n, cycling through `flows` and the
    /// three types, as PeerDB would write them.
    pub async fn insert_many(&self, n: i64, flows: &[&str]) {
        let flows: Vec<String> = flows.iter().map(|f| f.to_string()).collect();
        self.admin
            .execute(
                "INSERT INTO peerdb_stats.flow_errors (id, flow_name, error_type, error_message, error_timestamp)
                 OVERRIDING SYSTEM VALUE
                 SELECT g, ($2::text[])[1 + g % array_length($2::text[], 1)],
                        (ARRAY['info','warn','error'])[1 + g % 3], 'message ' || g,
                        TIMESTAMP '2025-06-03 17:35:00' + make_interval(secs => g)
                 FROM generate_series(1, $1::int8) g",
                &[&n, &flows],
            )
            .await
            .unwrap();
    }
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        // Leave an external server as it was found.
        if cluster()._server.is_none() {
            let admin = cluster().admin.clone();
            let name = self.name.clone();
            let _ = on_own_runtime(async move {
                let client = connect(&admin).await;
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        }
    }
}

/// How the request reaches Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// API Gateway REST API, payload 1.0, stage `prod`.
    RestApi,
    /// HTTP API, payload 2.0, `$default` stage.
    HttpApiDefault,
    /// HTTP API, payload 2.0, stage `prod` in `rawPath`.
    HttpApiNamed,
    Alb,
    FunctionUrl,
}

pub const SOURCES: [Source; 5] = [
    Source::RestApi,
    Source::HttpApiDefault,
    Source::HttpApiNamed,
    Source::Alb,
    Source::FunctionUrl,
];

/// A request to send: built into a real event of any source.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub base64: bool,
}

impl Call {
    /// `POST /api/v1/mirrors/logs` with the docs' credentials and `body`.
    pub fn logs(body: Value) -> Call {
        Call::raw(body.to_string().as_bytes())
    }

    pub fn raw(body: &[u8]) -> Call {
        Call {
            method: "POST".into(),
            path: "/api/v1/mirrors/logs".into(),
            headers: vec![
                ("authorization".into(), AUTH.into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(body.to_vec()),
            base64: false,
        }
    }

    pub fn without_header(mut self, name: &str) -> Call {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn auth(self, value: &str) -> Call {
        self.without_header("authorization")
            .header("authorization", value)
    }

    pub fn method(mut self, method: &str) -> Call {
        self.method = method.into();
        self
    }

    pub fn path(mut self, path: &str) -> Call {
        self.path = path.into();
        self
    }

    pub fn base64(mut self) -> Call {
        self.base64 = true;
        self
    }

    /// The Lambda event JSON for `source`, from the matching file in
    /// `events/`, with this call's method, path, headers and body.
    pub fn event(&self, source: Source) -> String {
        let file = match source {
            Source::RestApi => "rest-api-stage.json",
            Source::HttpApiDefault => "http-api-default-stage.json",
            Source::HttpApiNamed => "http-api-named-stage.json",
            Source::Alb => "alb.json",
            Source::FunctionUrl => "function-url.json",
        };
        let mut e: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        )
        .unwrap();
        let (m, p) = (self.method.as_str(), self.path.as_str());
        let mut single = serde_json::Map::new();
        let mut multi: serde_json::Map<String, Value> = serde_json::Map::new();
        for (name, value) in &self.headers {
            let key = name.to_ascii_lowercase();
            // HTTP APIs join repeated headers with commas; the others keep the last.
            let joined = match (source, single.get(&key)) {
                (
                    Source::HttpApiDefault | Source::HttpApiNamed | Source::FunctionUrl,
                    Some(Value::String(prev)),
                ) => {
                    format!("{prev},{value}")
                }
                _ => value.clone(),
            };
            single.insert(key.clone(), json!(joined));
            multi
                .entry(key)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap()
                .push(json!(value));
        }
        e["headers"] = Value::Object(single);
        match source {
            Source::RestApi => {
                e["httpMethod"] = json!(m);
                e["path"] = json!(p);
                e["resource"] = json!(p);
                e["multiValueHeaders"] = Value::Object(multi);
                e["requestContext"]["httpMethod"] = json!(m);
                e["requestContext"]["path"] = json!(format!("/prod{p}"));
                e["requestContext"]["resourcePath"] = json!(p);
            }
            Source::HttpApiDefault | Source::FunctionUrl | Source::HttpApiNamed => {
                let raw = if source == Source::HttpApiNamed {
                    format!("/prod{p}")
                } else {
                    p.to_string()
                };
                e["rawPath"] = json!(raw);
                e["requestContext"]["http"]["method"] = json!(m);
                e["requestContext"]["http"]["path"] = json!(raw);
            }
            Source::Alb => {
                e["httpMethod"] = json!(m);
                e["path"] = json!(p);
            }
        }
        match &self.body {
            None => e["body"] = Value::Null,
            Some(b) if self.base64 => {
                e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Some(b) => {
                e["body"] = json!(
                    String::from_utf8(b.clone()).expect("a text body; use base64() for bytes")
                )
            }
        }
        e["isBase64Encoded"] = json!(self.base64);
        e.to_string()
    }
}

/// What a caller gets back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    /// The body's `Content-Encoding`, when it came compressed.
    pub compressed: Option<String>,
}

impl Reply {
    /// The ids of the rows returned, in order.
    pub fn ids(&self) -> Vec<i64> {
        ids_of(&self.json)
    }

    pub fn total(&self) -> i64 {
        self.json["total"].as_i64().unwrap()
    }

    pub fn page(&self) -> i64 {
        self.json["page"].as_i64().unwrap()
    }

    /// Asserts the spec's error shape and returns the message.
    pub fn error(&self, status: u16, code: i64) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.headers["content-type"], "application/json");
        let obj = self.json.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{}", self.json);
        assert_eq!(self.json["code"], code, "{}", self.json);
        assert_eq!(self.json["details"], json!([]));
        self.json["message"].as_str().unwrap().to_string()
    }
}

/// The ids of the rows in a response body, in order.
pub fn ids_of(json: &Value) -> Vec<i64> {
    json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {json}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// The function as start-up builds it from `vars`, with `extra` on top;
/// its metrics off unless they say otherwise, as their documents go to
/// stdout, the test harness's own (tests/api/metrics.rs reads them from
/// the real binaries).
pub async fn app_with(vars: &[(&str, &str)], extra: &[(&str, &str)]) -> Router {
    let vars: HashMap<&str, &str> = [("PEERDB_LOGS_DISABLE_METRICS", "true")]
        .iter()
        .chain(vars)
        .chain(extra)
        .copied()
        .collect();
    startup::build(Config::from_vars(|k| vars.get(k).map(|v| v.to_string()))).await
}

/// Sends a Lambda event through `lambda_http`'s deserialization, the
/// router, and the conversion to what Lambda returns, as the runtime does.
pub async fn invoke(app: &Router, event: &str) -> Reply {
    let request: Request = lambda_http::request::from_str(event).expect("a valid Lambda event");
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_response().await.into_parts();
    // JSON goes as text; only a compressed body goes as binary (base64).
    let coding = parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let text = match (body, coding.as_deref()) {
        (Body::Text(t), None) => t,
        (Body::Binary(b), Some(coding)) => decompress(coding, &b),
        (other, coding) => panic!("a {coding:?} body as {other:?}"),
    };
    check_for_secrets(&text);
    assert_no_secret_leaked();
    Reply {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        compressed: coding,
    }
}

/// A compressed body, decoded as a caller's HTTP client would.
pub fn decompress(coding: &str, body: &[u8]) -> String {
    let mut text = String::new();
    match coding {
        "gzip" => std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text),
        "br" => {
            std::io::Read::read_to_string(&mut brotli::Decompressor::new(body, 4096), &mut text)
        }
        other => panic!("an unexpected Content-Encoding: {other}"),
    }
    .unwrap_or_else(|e| panic!("not {coding} ({e})"));
    text
}

/// `call` as an HTTP API `$default` event.
pub async fn send(app: &Router, call: Call) -> Reply {
    invoke(app, &call.event(Source::HttpApiDefault)).await
}

/// Shorthand: a logs request with `body`, answered 200; the reply.
pub async fn logs(app: &Router, body: Value) -> Reply {
    let reply = send(app, Call::logs(body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{body} -> {}", reply.json);
    reply
}

/// A Postgres of the test's own, for tests that stop or restart it,
/// holding PeerDB's schema with `rows` rows; and the reader's URL.
pub async fn dedicated_catalog(rows: i64) -> (ThrowawayPg, String) {
    dedicated_catalog_with(&[], rows).await
}

/// As `dedicated_catalog`, with extra server `settings`.
pub async fn dedicated_catalog_with(settings: &[&str], rows: i64) -> (ThrowawayPg, String) {
    let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
    let pg = tokio::task::spawn_blocking(move || {
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        ThrowawayPg::start(&settings).expect("start a throwaway Postgres")
    })
    .await
    .unwrap();
    let admin = connect(&pg.url(SUPERUSER, "postgres").parse().unwrap()).await;
    provision(&admin, READER, READER_PASSWORD).await.unwrap();
    admin
        .execute(
            "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
             SELECT 'm', 'message ' || g, 'info' FROM generate_series(1, $1::int8) g",
            &[&rows],
        )
        .await
        .unwrap();
    let url = format!(
        "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/postgres",
        pg.port()
    );
    (pg, url)
}

/// A free TCP port on 127.0.0.1 with nothing listening on it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Logs: every line any test makes the function write is searched for
// secrets, and a test can capture the lines written on its own thread.

/// What no log line or error body may hold: the catalog passwords the
/// tests configure (faults.rs's wrong one too). The API password most
/// tests use is the docs' public one, which the demo prints on purpose;
/// security.rs checks a secret one.
const SECRETS: [&str; 2] = [READER_PASSWORD, "not-the-password"];

/// Leaks found, each with the name of the thread that wrote it: libtest
/// names a test's thread after the test, and threads a test starts to read
/// a process's output take its name (see [`test_thread`]).
static LEAKS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string()
}

/// A thread named after the test that starts it, so that what it finds is
/// blamed on that test.
pub fn test_thread(work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(thread_name())
        .spawn(work)
        .unwrap();
}

/// Records `text` if it holds one of the secrets.
pub fn check_for_secrets(text: &str) {
    if SECRETS.iter().any(|s| text.contains(s)) {
        LEAKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((thread_name(), text.to_string()));
    }
}

/// Fails the calling test if it, or a thread it started, leaked a secret.
pub fn assert_no_secret_leaked() {
    let name = thread_name();
    let mut all = LEAKS.lock().unwrap_or_else(|e| e.into_inner());
    let (mine, others): (Vec<_>, Vec<_>) = all.drain(..).partition(|(thread, _)| *thread == name);
    *all = others;
    drop(all);
    let mine: Vec<String> = mine.into_iter().map(|(_, text)| text).collect();
    assert!(mine.is_empty(), "secrets in the log or a body: {mine:?}");
}

/// Where the function's log lines go in tests: searched, and kept when a
/// test captures them.
#[derive(Clone)]
struct LogSink(Option<Arc<Mutex<String>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        check_for_secrets(&text);
        if let Some(kept) = &self.0 {
            kept.lock().unwrap().push_str(&text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The format the function logs in, at DEBUG (more than it logs in
/// production), into `sink`.
fn log_subscriber(sink: LogSink) -> impl tracing::Subscriber + Send + Sync {
    lambda_http::tracing::subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish()
}

fn search_every_log_line() {
    let _ = tracing::subscriber::set_global_default(log_subscriber(LogSink(None)));
}

/// The log lines written on this thread (all of a `#[tokio::test]`'s
/// tasks) while it is alive, instead of the global sink.
pub struct LogCapture {
    kept: Arc<Mutex<String>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let kept = Arc::new(Mutex::new(String::new()));
        let guard = tracing::subscriber::set_default(log_subscriber(LogSink(Some(kept.clone()))));
        LogCapture {
            kept,
            _guard: guard,
        }
    }

    pub fn text(&self) -> String {
        self.kept.lock().unwrap().clone()
    }
}
