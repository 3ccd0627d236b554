//! The speed benchmark: our handler against PeerDB's own statement
//! sequence, on the same seeded catalog, interleaved.
//!
//! `cargo bench --bench mirror_logs` (1,000,000 rows), or
//! `cargo bench --bench mirror_logs -- --rows 10000000 --iterations 10`.
//! Prints markdown tables; the README carries the latest output.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerdb_mirror_logs::auth::Authenticator;
use peerdb_mirror_logs::catalog::{LogRow, LogsPage};
use peerdb_mirror_logs::handler::App;
use peerdb_mirror_logs::local::demo::{reader_grants, seed, PEERDB_SCHEMA};
use peerdb_mirror_logs::throwaway_pg::{ThrowawayPg, SUPERUSER};
use peerdb_mirror_logs::{config, query, request, response, route};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::{Client, NoTls, Statement};

const READER: &str = "bench_reader";
const READER_PASSWORD: &str = "bench";
/// The API password `peerdb`, as PeerDB's docs send it.
const CREDENTIALS: &str = "Basic OnBlZXJkYg==";

struct Options {
    rows: i64,
    iterations: usize,
}

fn options() -> Options {
    let mut o = Options {
        rows: 1_000_000,
        iterations: 40,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--rows" => o.rows = pair[1].parse().expect("--rows N"),
            "--iterations" => o.iterations = pair[1].parse().expect("--iterations N"),
            _ => {}
        }
    }
    o
}

/// One request, as our clients send it and as PeerDB reads it.
#[derive(Clone)]
struct Scenario {
    name: &'static str,
    flow: String,
    level: &'static str,
    page: i64,
    num_per_page: i64,
    before_id: i64,
    after_id: i64,
}

impl Scenario {
    fn body(&self) -> Value {
        json!({"flowJobName": self.flow, "level": self.level, "page": self.page, "numPerPage": self.num_per_page,
               "beforeId": self.before_id, "afterId": self.after_id})
    }

    /// An HTTP API event carrying this request.
    fn event(&self) -> String {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/api/v1/mirrors/logs", "rawQueryString": "",
            "headers": {"authorization": CREDENTIALS, "content-type": "application/json"},
            "requestContext": {"accountId": "123456789012", "apiId": "bench", "domainName": "bench.example",
                "domainPrefix": "bench", "http": {"method": "POST", "path": "/api/v1/mirrors/logs",
                "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                "requestId": "bench", "routeKey": "$default", "stage": "$default", "time": "", "timeEpoch": 0},
            "body": self.body().to_string(), "isBase64Encoded": false
        })
        .to_string()
    }
}

/// PeerDB's ListMirrorLogs, statement for statement: the page, then a
/// count over every matching row; each statement prepared once per
/// connection and cached, as pgx does by default.
struct Reference {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Reference {
    async fn statement(&mut self, sql: String) -> Statement {
        if let Some(s) = self.prepared.get(&sql) {
            return s.clone();
        }
        let s = self.client.prepare(&sql).await.unwrap();
        self.prepared.insert(sql, s.clone());
        s
    }

    /// Returns (ids, total, page) as PeerDB would answer.
    async fn request(&mut self, s: &Scenario) -> (Vec<i64>, i64, i64) {
        let mut filters: Vec<String> = Vec::new();
        let mut args: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        if !s.flow.is_empty() {
            args.push(Box::new(s.flow.clone()));
            filters.push("position($1 in flow_name) > 0".into());
        }
        if !s.level.is_empty() && s.level != "all" {
            args.push(Box::new(s.level.to_string()));
            filters.push(format!("error_type = ${}", args.len()));
        }
        let count_filters = filters.clone();
        let count_args = args.len();
        let mut order = "desc";
        if s.before_id != 0 || s.after_id != 0 {
            if s.before_id != -1 {
                args.push(Box::new(s.before_id));
                filters.push(format!("id < ${}", args.len()));
            } else if s.after_id != -1 {
                args.push(Box::new(s.after_id));
                filters.push(format!("id > ${}", args.len()));
                order = "";
            }
        }
        let offset = if s.page != 0 {
            format!(" offset {}", (s.page - 1) * s.num_per_page)
        } else {
            String::new()
        };
        let sql = format!(
            "select id, flow_name, error_message, error_type, error_timestamp from peerdb_stats.flow_errors{} order by id {order} limit {}{offset}",
            where_of(&filters),
            s.num_per_page
        );
        let stmt = self.statement(sql).await;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a.as_ref() as _).collect();
        let rows = self.client.query(&stmt, &params).await.unwrap();
        let mut logs: Vec<(i64, String, String, String, std::time::SystemTime)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        if order.is_empty() {
            logs.reverse();
        }
        let mut count_params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params[..count_args].to_vec();
        let (total, newer) = if let Some(first) = logs.first().map(|l| l.0) {
            let sql = format!(
                "select count(*), count(*) filter (where id > ${}) from peerdb_stats.flow_errors{}",
                count_args + 1,
                where_of(&count_filters)
            );
            let stmt = self.statement(sql).await;
            count_params.push(&first);
            let row = self.client.query_one(&stmt, &count_params).await.unwrap();
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        } else {
            let sql = format!(
                "select count(*) from peerdb_stats.flow_errors{}",
                where_of(&count_filters)
            );
            let stmt = self.statement(sql).await;
            (
                self.client
                    .query_one(&stmt, &count_params)
                    .await
                    .unwrap()
                    .get::<_, i64>(0),
                0,
            )
        };
        let page = if s.page == 0 && s.num_per_page != 0 {
            newer / s.num_per_page + 1
        } else {
            s.page
        };
        (logs.iter().map(|l| l.0).collect(), total, page)
    }
}

async fn max_id(c: &Client) -> i64 {
    c.query_one("SELECT max(id) FROM peerdb_stats.flow_errors", &[])
        .await
        .unwrap()
        .get(0)
}

fn where_of(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}

/// A TCP relay in front of Postgres that counts round trips: each time the
/// client speaks after the server has, a new round trip begins.
async fn counting_proxy(upstream: u16) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let trips = Arc::new(AtomicU64::new(0));
    let counter = trips.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let turn = Arc::new(AtomicU8::new(1)); // 1: the server spoke last
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (client_turn, client_trips) = (turn.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client_turn.swap(0, Ordering::SeqCst) == 1 {
                        client_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    turn.store(1, Ordering::SeqCst);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, trips)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn ours(app: &App, event: &str) -> Value {
    let request = lambda_http::request::from_str(event).unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

fn ids_of(v: &Value) -> Vec<i64> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

// One thread, as the function runs in Lambda and in local mode.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = options();
    let handler_cost = handler_cost();
    println!(
        "Seeding {} rows (100 mirrors and their clone_ flows)...",
        o.rows
    );
    let started = Instant::now();
    let pg = ThrowawayPg::start(&["shared_buffers=1GB", "max_wal_size=4GB", "work_mem=16MB"])
        .expect("a throwaway Postgres");
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(PEERDB_SCHEMA).await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'; {}",
            reader_grants(READER)
        ))
        .await
        .unwrap();
    seed(&admin, o.rows, 100).await.unwrap();
    println!("Seeded in {:.0} s.\n", started.elapsed().as_secs_f64());

    let (proxy_port, trips) = counting_proxy(pg.port()).await;
    let url = format!("postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{proxy_port}/postgres");
    let app = App::new(config::from_vars(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PEERDB_PASSWORD" => Some("peerdb".into()),
        _ => None,
    }));
    let mut reference = Reference {
        client: connect(&url).await,
        prepared: HashMap::new(),
    };

    let bounds = admin
        .query_one("SELECT min(id), max(id) FROM peerdb_stats.flow_errors", &[])
        .await
        .unwrap();
    let (min_id, max_id): (i64, i64) = (bounds.get(0), bounds.get(1));
    let mirror: String = admin
        .query_one("SELECT flow_name FROM peerdb_stats.flow_errors WHERE flow_name LIKE 'users%\\_v05' LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let base = Scenario {
        name: "",
        flow: String::new(),
        level: "",
        page: 0,
        num_per_page: 50,
        before_id: -1,
        after_id: -1,
    };
    let scenarios = vec![
        Scenario {
            name: "newest page of 50",
            ..base.clone()
        },
        Scenario {
            name: "level: error",
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "one mirror",
            flow: mirror.clone(),
            ..base.clone()
        },
        Scenario {
            name: "one mirror, level: error",
            flow: mirror.clone(),
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "deep cursor (oldest 1%)",
            before_id: min_id + (max_id - min_id) / 100,
            ..base.clone()
        },
        Scenario {
            name: "previous page (afterId mid-table)",
            after_id: (min_id + max_id) / 2,
            ..base.clone()
        },
        Scenario {
            name: "total only (numPerPage 0)",
            num_per_page: 0,
            ..base.clone()
        },
        Scenario {
            name: "deprecated page: 50",
            page: 50,
            ..base.clone()
        },
    ];

    // Same answers first: the benchmark compares equals.
    for s in &scenarios {
        let v = ours(&app, &s.event()).await;
        let (ids, total, page) = reference.request(s).await;
        assert_eq!(
            (
                ids_of(&v),
                v["total"].as_i64().unwrap(),
                v["page"].as_i64().unwrap()
            ),
            (ids, total, page),
            "{}",
            s.name
        );
    }

    println!(
        "### {} rows, {} requests per scenario and side, interleaved\n",
        o.rows, o.iterations
    );
    println!("| scenario | ours p50 ms | ours p99 ms | PeerDB p50 ms | PeerDB p99 ms | p50 ratio | round trips ours / PeerDB |");
    println!("|---|---|---|---|---|---|---|");
    for s in &scenarios {
        let event = s.event();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut trips_a, mut trips_b) = (0, 0);
        for _ in 0..o.iterations {
            let before = trips.load(Ordering::SeqCst);
            let t = Instant::now();
            ours(&app, &event).await;
            a.push(t.elapsed());
            let mid = trips.load(Ordering::SeqCst);
            let t = Instant::now();
            reference.request(s).await;
            b.push(t.elapsed());
            trips_a += mid - before;
            trips_b += trips.load(Ordering::SeqCst) - mid;
        }
        let n = o.iterations as f64;
        let (pa, pb) = (percentile(&mut a, 0.5), percentile(&mut b, 0.5));
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {} / {} |",
            s.name,
            ms(pa),
            ms(percentile(&mut a, 0.99)),
            ms(pb),
            ms(percentile(&mut b, 0.99)),
            pa.as_secs_f64() / pb.as_secs_f64(),
            trips_a as f64 / n,
            trips_b as f64 / n
        );
    }

    writer_pass(
        pg.port(),
        &admin,
        &app,
        &mut reference,
        &scenarios,
        o.iterations.div_ceil(4),
    )
    .await;
    println!("{handler_cost}");
    cold_start_and_memory(&pg, &scenarios).await;
}

/// The same scenarios while a writer appends 200 rows a second, as a live
/// PeerDB does; every answer's `total` and `page` checked against the
/// rows afterwards (rows are only appended, so counts up to an id are
/// stable).
async fn writer_pass(
    port: u16,
    admin: &Client,
    app: &App,
    reference: &mut Reference,
    scenarios: &[Scenario],
    iterations: usize,
) {
    let stop = Arc::new(AtomicU8::new(0));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let w = connect(&format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres")).await;
            let names: Vec<String> = w
                .query(
                    "SELECT DISTINCT flow_name FROM peerdb_stats.flow_errors",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut written = 0u64;
            while stop.load(Ordering::SeqCst) == 0 {
                tick.tick().await;
                w.execute(
                    "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
                     SELECT ($1::text[])[1 + floor(random() * array_length($1::text[], 1))::int],
                            'pulled ' || g || ' records', (ARRAY['info','info','info','warn','error'])[1 + floor(random() * 5)::int]
                     FROM generate_series(1, 20) g",
                    &[&names],
                )
                .await
                .unwrap();
                written += 20;
            }
            written
        })
    };
    let mut checks = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        for s in scenarios {
            let lo = max_id(admin).await;
            let t = Instant::now();
            let v = ours(app, &s.event()).await;
            a.push(t.elapsed());
            let hi = max_id(admin).await;
            let t = Instant::now();
            reference.request(s).await;
            b.push(t.elapsed());
            checks.push((s.clone(), v, lo, hi));
        }
    }
    stop.store(1, Ordering::SeqCst);
    let written = writer.await.unwrap();

    let mut exact = 0;
    for (s, v, lo, hi) in &checks {
        let level = if s.level.is_empty() {
            None
        } else {
            Some(s.level)
        };
        let count_to = |upto: i64| {
            let flow = s.flow.clone();
            async move {
                admin
                    .query_one(
                        "SELECT count(*) FROM peerdb_stats.flow_errors WHERE id <= $1
                           AND ($2 = '' OR strpos(flow_name, $2) > 0) AND ($3::text IS NULL OR error_type = $3)",
                        &[&upto, &flow, &level],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        let (total, page) = (v["total"].as_i64().unwrap(), v["page"].as_i64().unwrap());
        assert!(
            count_to(*lo).await <= total && total <= count_to(*hi).await,
            "{}: total {total} outside its snapshot",
            s.name
        );
        if let Some(&first) = ids_of(v).first() {
            let newer = total - count_to(first).await;
            let expected = if s.page > 0 {
                s.page
            } else {
                newer / s.num_per_page + 1
            };
            assert_eq!(page, expected, "{}: page", s.name);
            if s.before_id == -1 && s.after_id == -1 && s.page == 0 {
                assert_eq!(newer, 0, "{}: the newest page has nothing newer", s.name);
            }
        }
        exact += 1;
    }
    let (pa, pb) = (percentile(&mut a, 0.5), percentile(&mut b, 0.5));
    println!(
        "\n### With a writer appending 200 rows a second ({written} rows written during the pass)\n\n\
         All scenarios together: ours p50 {} ms, PeerDB p50 {} ms. `total` and `page` exact in {exact} of {} answers \
         (each checked against the rows afterwards).",
        ms(pa),
        ms(pb),
        checks.len()
    );
}

/// Decode, authenticate, plan and encode a 50-row page: everything but
/// the database. Returns the report.
fn handler_cost() -> String {
    let rows: Vec<LogRow> = (0..50)
        .map(|i| LogRow {
            id: 702_169 - i,
            flow_name: "orders_to_snowflake_v05".into(),
            error_message: format!(
                "pulled {} records from source for batch {}",
                1000 + i,
                7000 + i
            ),
            error_type: "info".into(),
            error_ms: 1_748_972_135_285,
        })
        .collect();
    let page = LogsPage {
        rows,
        total: 1_000_000,
        newer: 0,
    };
    let auth = Authenticator::password("peerdb");
    let event = Scenario {
        name: "",
        flow: String::new(),
        level: "error",
        page: 0,
        num_per_page: 50,
        before_id: -1,
        after_id: -1,
    }
    .event();
    // Medians of 20 batches of 1000, so that a moment of other work on
    // the machine does not count. lambda_http's parsing of the event,
    // which happens before the handler is called, is timed apart.
    let (batches, batch) = (20, 1000);
    let (mut parse, mut own) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..batches {
        let started = Instant::now();
        let requests: Vec<_> = (0..batch)
            .map(|_| lambda_http::request::from_str(&event).unwrap().into_parts())
            .collect();
        parse.push(started.elapsed() / batch);
        let started = Instant::now();
        for (parts, body) in &requests {
            route::route(parts).unwrap();
            auth.check(&parts.headers).unwrap();
            let req = request::decode(body.as_ref(), 1000).unwrap();
            std::hint::black_box(query::plan(&req));
            bytes = response::encode_page(&req, &page, response::BODY_BUDGET)
                .body
                .len();
        }
        own.push(started.elapsed() / batch);
    }
    format!(
        "\n### The handler's own cost\n\nRouting, authentication, decoding, planning and encoding a 50-row page \
         ({bytes} bytes): {:.1} µs per request; lambda_http's parsing of the event before that: {:.1} µs \
         (medians of {batches} batches of {batch}, measured before seeding).",
        percentile(&mut own, 0.5).as_secs_f64() * 1e6,
        percentile(&mut parse, 0.5).as_secs_f64() * 1e6
    )
}

/// Starts the release binary against a small Lambda runtime API of our
/// own, 20 times: process start to its first answer, a 401 that needs no
/// database, and to its first page, one mirror's (a cheap query, so that
/// start-up is what is measured); then the peak memory after it served
/// every scenario.
async fn cold_start_and_memory(pg: &ThrowawayPg, scenarios: &[Scenario]) {
    let bin = env!("CARGO_BIN_EXE_bootstrap");
    let url = format!(
        "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/postgres",
        pg.port()
    );
    let mirror = scenarios.iter().find(|s| s.name == "one mirror").unwrap();
    let refused = mirror.event().replace(CREDENTIALS, "Basic Ondyb25n");
    let api = runtime_api::RuntimeApi::start().await;
    let (mut to_refusal, mut to_page) = (Vec::new(), Vec::new());
    let mut peak_kb = 0;
    for run in 0..20 {
        let mut events = vec![refused.clone(), mirror.event()];
        if run == 0 {
            events.extend(scenarios.iter().map(Scenario::event));
        }
        let started = Instant::now();
        let mut child = tokio::process::Command::new(bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "mirror-logs")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
            .env("DATABASE_URL", &url)
            .env("PEERDB_PASSWORD", "peerdb")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let answers = api.serve(&events).await;
        let statuses: Vec<u64> = answers.iter().map(|a| a.1).collect();
        assert_eq!(statuses[0], 401);
        assert!(statuses[1..].iter().all(|s| *s == 200), "{statuses:?}");
        to_refusal.push(answers[0].0 - started);
        to_page.push(answers[1].0 - started);
        if run == 0 {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
            peak_kb = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
        child.kill().await.unwrap();
    }
    let size = std::fs::metadata(bin).unwrap().len();
    let gz = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -9 -c '{bin}' | wc -c"))
        .output()
        .unwrap();
    let gz: u64 = String::from_utf8_lossy(&gz.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "\n### Start-up, size and memory (x86_64 release build here)\n\n\
         - Cold start, process start to the first answer posted to the runtime API, median of 20: \
         {} ms to a 401 (no database); {} ms to the first page (one mirror, connecting to the catalog included; \
         min {}, max {}).\n\
         - Peak memory (VmHWM) after serving all {} scenarios: {:.1} MB.\n\
         - Release binary: {:.2} MB; deflated (gzip -9, as in the zip): {:.2} MB.",
        ms(percentile(&mut to_refusal, 0.5)),
        ms(percentile(&mut to_page, 0.5)),
        ms(to_page[0]),
        ms(to_page[to_page.len() - 1]),
        scenarios.len(),
        peak_kb as f64 / 1024.0,
        size as f64 / 1e6,
        gz as f64 / 1e6
    );
}

mod runtime_api {
    //! Just enough of the Lambda runtime API to hand events to the
    //! function and take its answers.

    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Instant;

    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::sync::{mpsc, Mutex};

    pub struct RuntimeApi {
        port: u16,
        events: mpsc::Sender<String>,
        answers: Mutex<mpsc::Receiver<(Instant, u64)>>,
    }

    struct Shared {
        events: Mutex<mpsc::Receiver<String>>,
        answers: mpsc::Sender<(Instant, u64)>,
    }

    impl RuntimeApi {
        pub async fn start() -> RuntimeApi {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (events, events_rx) = mpsc::channel(64);
            let (answers_tx, answers) = mpsc::channel(64);
            let shared = Arc::new(Shared {
                events: Mutex::new(events_rx),
                answers: answers_tx,
            });
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            RuntimeApi {
                port,
                events,
                answers: Mutex::new(answers),
            }
        }

        pub fn address(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// Hands out `events` one by one; when each answer came back, and
        /// its status.
        pub async fn serve(&self, events: &[String]) -> Vec<(Instant, u64)> {
            let mut answers = self.answers.lock().await;
            let mut times = Vec::new();
            for e in events {
                self.events.send(e.clone()).await.unwrap();
                times.push(answers.recv().await.unwrap());
            }
            times
        }
    }

    async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if path.ends_with("/invocation/next") {
            let event = shared.events.lock().await.recv().await.unwrap();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 10_000;
            return Response::builder()
                .header("lambda-runtime-aws-request-id", "bench-request")
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:mirror-logs",
                )
                .body(Full::new(Bytes::from(event)))
                .unwrap();
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if path.ends_with("/response") {
            let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let status = envelope["statusCode"].as_u64().unwrap();
            shared.answers.send((Instant::now(), status)).await.unwrap();
        } else {
            panic!(
                "the function reported an error at {path}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Response::builder()
            .status(202)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}
