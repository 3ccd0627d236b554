//! Load test: the real binary in local mode, serving a throwaway Postgres
//! seeded like PeerDB's catalog, driven by concurrent keep-alive clients
//! over loopback through a mix of the speed scenarios. Every response is
//! checked against an answer computed by plain SQL; it fails on any error,
//! any wrong answer, or memory at the end more than 10% above memory after
//! warm-up.
//!
//! `cargo test` runs it short (5 s, 100,000 rows). The full run, whose
//! figures are in the README:
//!
//! ```sh
//! cargo test --release --test load -- --seconds 60 --rows 1000000
//! ```
//!
//! A test target of its own (no libtest harness) so that it runs alone,
//! after the integration suite rather than beside it, and can take the
//! real binary's path from Cargo. Being the last test binary `cargo test`
//! runs (the lib has no doc tests), it ends the run by naming the tests of
//! tests/api that were ignored (those the run's filters would have picked;
//! none after `--ignored` or `--include-ignored`, which ran them), what
//! each needs and how to run them, from tests/api/ignored.rs. Its output
//! is libtest's, "test result:" line included, which `.ci/run` counts.
//!
//! It is one test, named `load::mixed_scenarios_under_concurrent_clients`,
//! and takes libtest's options as `cargo test -- …` passes them to every
//! test binary:
//!
//! - A filter (`cargo test NAME`) selects it as libtest's would (the filter
//!   is part of the name; with `--exact`, the whole name), except that the
//!   part must be whole words: it must start and end at the name's ends, at
//!   `::` or at `_`. So `cargo test load`, `cargo test load::` or
//!   `cargo test concurrent_clients` run it, but `cargo test a`, `cargo test
//!   lo` or `cargo test client` do not start a load run. `--skip NAME` skips
//!   it by libtest's own rule, any part of the name.
//! - It is not an ignored test: `--include-ignored` runs it, `--ignored`
//!   (only the ignored tests) does not. It stays in a plain `cargo test`,
//!   the only run most people make, because it is the suite's only check
//!   of concurrency and of a leak.
//! - `--list` lists it and runs nothing; `--bench` (`cargo bench`) reports
//!   it ignored, not being a benchmark; `--format terse|json` and `-q` are
//!   followed. Other libtest options are accepted and have nothing to do
//!   here; an unknown one is an error, as in libtest.
//! - `--seconds`, `--rows` and `--clients` are its own.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{provision, seed, ThrowawayPg, SUPERUSER};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};

#[path = "api/ignored.rs"]
mod ignored;

/// The test's full name, for filters and `--list`.
const NAME: &str = "load::mixed_scenarios_under_concurrent_clients";
const MIRRORS: i32 = 100;
/// Requests per client at most, whatever the duration: the loop is bounded.
const MAX_REQUESTS_PER_CLIENT: usize = 1_000_000;

/// With `--format json`, stdout is libtest's JSON events and the report
/// goes to stderr.
static JSON: AtomicBool = AtomicBool::new(false);

/// A line of the report, for people.
macro_rules! say {
    ($($arg:tt)*) => {
        if JSON.load(Ordering::Relaxed) {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}

#[derive(Clone, Copy)]
struct Args {
    seconds: u64,
    rows: i64,
    clients: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Pretty,
    Terse,
    Json,
}

/// The command line: the load's own options and libtest's.
struct Options {
    load: Args,
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
    /// `--ignored`: only the ignored tests.
    ignored_only: bool,
    include_ignored: bool,
    bench: bool,
    format: Format,
}

const HELP: &str = "\
Usage: load [OPTIONS] [FILTERS...]

The load test, one test named load::mixed_scenarios_under_concurrent_clients
(tests/load.rs says how filters select it). Its own options:
    --seconds N     how long to measure (5)
    --rows N        rows to seed (100000)
    --clients N     concurrent clients (32)
libtest's, as cargo test -- ... passes them:
    --exact --skip FILTER --list --ignored --include-ignored --bench
    --format pretty|terse|json -q --quiet
and, with nothing to do here, --test --nocapture --no-capture --show-output
--test-threads N --color WHEN --logfile PATH --report-time --ensure-time
--shuffle --shuffle-seed N --exclude-should-panic --force-run-in-process -Z FLAG";

fn options(given: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        load: Args {
            seconds: 5,
            rows: 100_000,
            clients: 32,
        },
        filters: Vec::new(),
        skip: Vec::new(),
        exact: false,
        list: false,
        ignored_only: false,
        include_ignored: false,
        bench: false,
        format: Format::Pretty,
    };
    let mut given = given.into_iter();
    while let Some(arg) = given.next() {
        if !arg.starts_with('-') {
            options.filters.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| given.next())
                .ok_or(format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--seconds" => options.load.seconds = number(value()?)?,
            "--rows" => options.load.rows = number(value()?)? as i64,
            "--clients" => options.load.clients = number(value()?)? as usize,
            "--skip" => options.skip.push(value()?),
            "--exact" => options.exact = true,
            "--list" => options.list = true,
            "--ignored" => options.ignored_only = true,
            "--include-ignored" => options.include_ignored = true,
            "--bench" => options.bench = true,
            "-q" | "--quiet" => options.format = Format::Terse,
            "--format" => {
                options.format = match value()?.as_str() {
                    "pretty" => Format::Pretty,
                    "terse" => Format::Terse,
                    "json" => Format::Json,
                    other => return Err(format!("--format {other}: not pretty, terse or json")),
                }
            }
            "--test"
            | "--nocapture"
            | "--no-capture"
            | "--show-output"
            | "--report-time"
            | "--ensure-time"
            | "--shuffle"
            | "--exclude-should-panic"
            | "--force-run-in-process" => {}
            "--test-threads" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                value()?;
            }
            "-h" | "--help" => return Err(String::new()),
            // -Zunstable-options
            z if z.starts_with("-Z") => {}
            other => return Err(format!("Unrecognized option: '{other}'")),
        }
    }
    Ok(options)
}

/// libtest's rule: `pattern` is part of `name`, or with `--exact` all of it.
fn libtest_matches(name: &str, pattern: &str, exact: bool) -> bool {
    if exact {
        name == pattern
    } else {
        name.contains(pattern)
    }
}

/// libtest's rule, but the part of `name` must be whole words: it starts
/// and ends at an end of `name`, at `::` or at `_`.
fn matches_whole_words(name: &str, filter: &str, exact: bool) -> bool {
    if exact || filter.is_empty() {
        return libtest_matches(name, filter, exact);
    }
    let separator = |c: Option<char>| c.is_none_or(|c| c == ':' || c == '_');
    let first = filter.chars().next();
    let last = filter.chars().next_back();
    name.match_indices(filter).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + filter.len()..].chars().next();
        (separator(before) || separator(first)) && (separator(after) || separator(last))
    })
}

impl Options {
    /// Whether the filters and `--skip` leave the load test in.
    fn selects_load(&self) -> bool {
        (self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| matches_whole_words(NAME, f, self.exact)))
            && !self
                .skip
                .iter()
                .any(|s| libtest_matches(NAME, s, self.exact))
    }

    /// Whether libtest, given the same filters, would have picked a test
    /// of tests/api named `name`.
    fn selects_api_test(&self, name: &str) -> bool {
        (self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| libtest_matches(name, f, self.exact)))
            && !self
                .skip
                .iter()
                .any(|s| libtest_matches(name, s, self.exact))
    }
}

/// Without a harness there are no unit tests: main checks, in
/// microseconds, that the filter rule and the parsing of options do what
/// this file's doc comment says.
fn check_what_the_doc_comment_says() {
    for (filter, runs) in [
        ("load", true),
        ("load::", true),
        ("::mixed", true),
        ("concurrent_clients", true),
        (NAME, true),
        ("", true),
        ("a", false),
        ("lo", false),
        ("client", false),
        ("paging", false),
    ] {
        assert_eq!(
            matches_whole_words(NAME, filter, false),
            runs,
            "the filter {filter:?}"
        );
    }
    assert!(matches_whole_words(NAME, NAME, true));
    assert!(!matches_whole_words(NAME, "load", true));
    let parse = |args: &[&str]| options(args.iter().map(|a| a.to_string()));
    let given = parse(&["--test-threads", "2", "--skip=a", "load", "--seconds", "60"]).unwrap();
    assert_eq!(
        (given.filters, given.skip),
        (vec!["load".into()], vec!["a".into()])
    );
    assert_eq!(given.load.seconds, 60);
    assert!(parse(&["--format=terse", "-Zunstable-options", "--color", "never"]).is_ok());
    assert!(parse(&["--bogus"]).is_err() && parse(&["--rows", "many"]).is_err());
}

fn main() {
    check_what_the_doc_comment_says();
    let options = match options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) if e.is_empty() => {
            println!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            std::process::exit(101);
        }
    };
    JSON.store(options.format == Format::Json, Ordering::Relaxed);
    let selected = options.selects_load() && !options.ignored_only;

    if options.list {
        if selected {
            println!("{NAME}: test");
        }
        if options.format == Format::Pretty {
            let n = usize::from(selected);
            let s = if n == 1 { "" } else { "s" };
            if n > 0 {
                println!();
            }
            println!("{n} test{s}, 0 benchmarks");
        }
        return;
    }

    let started = Instant::now();
    start(&options, usize::from(selected));
    let outcome = if !selected {
        None
    } else if options.bench {
        Some(Outcome::Ignored)
    } else {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(options.load))
        }));
        Some(if run.is_ok() {
            Outcome::Passed
        } else {
            Outcome::Failed
        })
    };
    let failed = finish(&options, outcome, started.elapsed());

    // The closing words of `cargo test`: what it did not run, and how to.
    let ran_ignored = options.ignored_only || options.include_ignored;
    if !ran_ignored && !options.bench {
        if let Some(summary) = ignored::summary(|name| options.selects_api_test(name)) {
            say!("{summary}");
        }
    }
    if failed {
        std::process::exit(101);
    }
}

enum Outcome {
    Passed,
    Failed,
    Ignored,
}

/// libtest's opening lines.
fn start(options: &Options, tests: usize) {
    match options.format {
        Format::Json => {
            println!(r#"{{ "type": "suite", "event": "started", "test_count": {tests} }}"#);
            if tests > 0 {
                println!(r#"{{ "type": "test", "event": "started", "name": "{NAME}" }}"#);
            }
        }
        _ => println!(
            "\nrunning {tests} test{}",
            if tests == 1 { "" } else { "s" }
        ),
    }
}

/// libtest's closing lines, which `.ci/run` counts; whether the test failed.
fn finish(options: &Options, outcome: Option<Outcome>, took: Duration) -> bool {
    let (passed, failed, ignored, filtered) = match outcome {
        Some(Outcome::Passed) => (1, 0, 0, 0),
        Some(Outcome::Failed) => (0, 1, 0, 0),
        Some(Outcome::Ignored) => (0, 0, 1, 0),
        None => (0, 0, 0, 1),
    };
    let (word, mark, event) = match outcome {
        Some(Outcome::Passed) => ("ok", ".", "ok"),
        Some(Outcome::Failed) => ("FAILED", "F", "failed"),
        Some(Outcome::Ignored) => ("ignored", "i", "ignored"),
        None => ("", "", ""),
    };
    let result = if failed > 0 { "FAILED" } else { "ok" };
    let seconds = took.as_secs_f64();
    match options.format {
        Format::Json => {
            if outcome.is_some() {
                println!(r#"{{ "type": "test", "name": "{NAME}", "event": "{event}" }}"#);
            }
            let event = if failed > 0 { "failed" } else { "ok" };
            println!(
                r#"{{ "type": "suite", "event": "{event}", "passed": {passed}, "failed": {failed}, "ignored": {ignored}, "measured": 0, "filtered_out": {filtered}, "exec_time": {seconds} }}"#
            );
        }
        format => {
            if outcome.is_some() {
                if format == Format::Terse {
                    println!("{mark}");
                } else {
                    println!("test {NAME} ... {word}");
                }
            }
            if failed > 0 {
                println!("\nfailures:\n    {NAME}");
            }
            println!(
                "\ntest result: {result}. {passed} passed; {failed} failed; {ignored} ignored; \
                 0 measured; {filtered} filtered out; finished in {seconds:.2}s\n"
            );
        }
    }
    failed > 0
}

/// A request and the answer plain SQL says it must get.
struct Scenario {
    name: &'static str,
    body: String,
    num_per_page: usize,
    ids: Vec<i64>,
    total: i64,
    page: i64,
    flow: Option<String>,
    level: Option<&'static str>,
}

async fn run(args: Args) {
    let started = Instant::now();
    let pg = ThrowawayPg::start(&["shared_buffers=256MB"]).expect("start a throwaway Postgres");
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    provision(&admin, "reader", "reader").await.unwrap();
    seed(&admin, args.rows, MIRRORS).await.unwrap();
    let scenarios = scenarios(&admin).await;
    say!(
        "seeded {} rows over {MIRRORS} mirrors in {:.1} s",
        args.rows,
        started.elapsed().as_secs_f64()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("DATABASE_URL", pg.url("reader:reader", "postgres"))
        .env("PEERDB_PASSWORD", "peerdb")
        // Requests queue for a connection here rather than 503 after the
        // 2 s that suit Lambda, where an instance serves one at a time.
        .env("PEERDB_CATALOG_POOL_TIMEOUT_MS", "60000")
        .env("PORT", port.to_string())
        // Local mode logs on stderr (stdout says where to send requests).
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let log = drain_log(server.stderr.take().unwrap());
    tokio::time::timeout(Duration::from_secs(30), async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server listens");

    // Warm-up is a tenth of the run, at least a second.
    let run_for = Duration::from_secs(args.seconds);
    let warmup = (run_for / 10).max(Duration::from_secs(1));
    let begin = Instant::now();
    let measure_from = begin + warmup;
    let end = begin + warmup + run_for;
    let scenarios = Arc::new(scenarios);
    let mut clients = JoinSet::new();
    for client in 0..args.clients {
        clients.spawn(drive(port, client, scenarios.clone(), end));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let rss_after_warmup = rss_kb(pid);
    tokio::time::sleep_until((end - Duration::from_millis(200)).into()).await;
    let rss_at_end = rss_kb(pid);

    let mut timings: Vec<Vec<Duration>> = vec![Vec::new(); scenarios.len()];
    let (mut requests, mut errors) = (0, Vec::new());
    while let Some(seen) = clients.join_next().await {
        let seen = seen.unwrap();
        requests += seen.answered.len();
        errors.extend(seen.errors);
        for (scenario, took, finished) in seen.answered {
            if (measure_from..=end).contains(&finished) {
                timings[scenario].push(took);
            }
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let (lines, problems) = log.join().unwrap();

    say!(
        "{} clients for {} s after {} s of warm-up, {} build",
        args.clients,
        args.seconds,
        warmup.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    say!(
        "{:<34} {:>9} {:>8} {:>8}",
        "scenario",
        "requests",
        "p50 ms",
        "p99 ms"
    );
    let mut all = Vec::new();
    for (scenario, took) in scenarios.iter().zip(&mut timings) {
        report(scenario.name, took);
        all.extend_from_slice(took);
    }
    report("all", &mut all);
    say!(
        "throughput {:.0} requests/s; {requests} requests, {} errors",
        all.len() as f64 / run_for.as_secs_f64(),
        errors.len()
    );
    let growth = (rss_at_end as f64 / rss_after_warmup as f64 - 1.0) * 100.0;
    say!(
        "server memory (VmRSS): {:.1} MB after warm-up, {:.1} MB at the end ({growth:+.1}%)",
        rss_after_warmup as f64 / 1024.0,
        rss_at_end as f64 / 1024.0
    );

    assert!(
        errors.is_empty(),
        "{} wrong answers or failed requests, the first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(lines, requests, "one log line per request");
    assert!(problems.is_empty(), "the server warned: {problems:#?}");
    assert!(
        growth < 10.0,
        "memory grew {growth:.1}% after warm-up: a leak"
    );
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The shared scenarios (testkit's, the benchmark's too), each with its
/// answer from plain SQL.
async fn scenarios(admin: &Client) -> Vec<Scenario> {
    let shape = testkit::CatalogShape::of(admin).await.unwrap();
    let mut out = Vec::new();
    for scenario in testkit::scenarios(&shape) {
        let (name, body) = (scenario.name, scenario.body());
        // The filters and cursor plain SQL applies.
        let (flow, level) = (scenario.flow(), scenario.level());
        let cursor = match scenario.cursor() {
            testkit::Cursor::None => "true".to_string(),
            testkit::Cursor::Before(id) => format!("id < {id}"),
            testkit::Cursor::After(id) => format!("id > {id}"),
        };
        let (num_per_page, page) = (scenario.num_per_page, scenario.page);
        let filter = "($1::text IS NULL OR strpos(flow_name, $1) > 0) AND ($2::text IS NULL OR error_type = $2)";
        let total: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM peerdb_stats.flow_errors WHERE {filter}"),
                &[&flow, &level],
            )
            .await
            .unwrap()
            .get(0);
        // afterId takes the rows nearest above it.
        let order = if cursor.starts_with("id >") {
            "ASC"
        } else {
            "DESC"
        };
        let skip = (page.max(1) - 1) * num_per_page;
        let mut ids: Vec<i64> = admin
            .query(
                &format!(
                    "SELECT id FROM peerdb_stats.flow_errors WHERE {filter} AND {cursor}
                     ORDER BY id {order} LIMIT {num_per_page} OFFSET {skip}"
                ),
                &[&flow, &level],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let page = if page > 0 {
            page
        } else if num_per_page == 0 {
            0
        } else if ids.is_empty() {
            1
        } else {
            let newer: i64 = admin
                .query_one(
                    &format!(
                        "SELECT count(*) FROM peerdb_stats.flow_errors WHERE {filter} AND id > $3"
                    ),
                    &[&flow, &level, &ids[0]],
                )
                .await
                .unwrap()
                .get(0);
            newer / num_per_page + 1
        };
        // A full page, or (at the default size, a mirror's errors) every
        // row the filters match.
        assert!(
            num_per_page == 0
                || ids.len() == num_per_page as usize
                || (cursor == "true" && page == 1 && ids.len() as i64 == total && total > 0),
            "{name}: too few rows seeded ({} of {num_per_page}, {total} in all)",
            ids.len()
        );
        out.push(Scenario {
            name,
            body: body.to_string(),
            num_per_page: num_per_page as usize,
            ids,
            total,
            page,
            flow: flow.map(str::to_string),
            level,
        });
    }
    out
}

/// What one client saw: each answered request's scenario, time and
/// finishing instant, and every error.
#[derive(Default)]
struct Seen {
    answered: Vec<(usize, Duration, Instant)>,
    errors: Vec<String>,
}

/// One client: a keep-alive connection sending the scenarios in turn
/// until `end`.
async fn drive(port: u16, client: usize, scenarios: Arc<Vec<Scenario>>, end: Instant) -> Seen {
    let mut seen = Seen::default();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut stream = tokio::io::BufStream::new(stream);
    for n in 0..MAX_REQUESTS_PER_CLIENT {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let index = (client + n) % scenarios.len();
        let scenario = &scenarios[index];
        let (status, body) = match roundtrip(&mut stream, &scenario.body).await {
            Ok(answer) => answer,
            Err(e) => {
                seen.errors
                    .push(format!("{}: connection failed: {e}", scenario.name));
                break;
            }
        };
        seen.answered.push((index, now.elapsed(), Instant::now()));
        if let Err(e) = check(scenario, status, &body) {
            seen.errors.push(format!("{}: {e}", scenario.name));
        }
    }
    seen
}

macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// The response's status, shape, order and content, against the
/// scenario's answer.
fn check(scenario: &Scenario, status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    ensure!(status == 200, "status {status}: {text}");
    let json: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let object = json.as_object().ok_or("not an object")?;
    ensure!(object.len() == 3, "not errors, total and page: {text}");
    let rows = json["errors"].as_array().ok_or("no errors array")?;
    ensure!(rows.len() <= scenario.num_per_page, "{} rows", rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let row = row.as_object().ok_or("a row is not an object")?;
        let (Some(flow), Some(level), Some(_), Some(_), Some(id)) = (
            row.get("flowName").and_then(Value::as_str),
            row.get("errorType").and_then(Value::as_str),
            row.get("errorMessage").and_then(Value::as_str),
            row.get("errorTimestamp").and_then(Value::as_i64),
            row.get("id").and_then(Value::as_i64),
        ) else {
            return Err(format!("a row of the wrong shape: {row:?}"));
        };
        ensure!(
            row.len() == 5,
            "a row with more than its five fields: {row:?}"
        );
        ensure!(["info", "warn", "error"].contains(&level), "level {level}");
        ensure!(
            scenario
                .flow
                .as_ref()
                .is_none_or(|f| flow.contains(f.as_str())),
            "a row of mirror {flow}"
        );
        ensure!(
            scenario.level.is_none_or(|l| l == level),
            "a row of level {level}"
        );
        ids.push(id);
    }
    ensure!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    ensure!(ids == scenario.ids, "rows {ids:?}, not {:?}", scenario.ids);
    ensure!(
        json["total"] == scenario.total,
        "total {}, not {}",
        json["total"],
        scenario.total
    );
    ensure!(
        json["page"] == scenario.page,
        "page {}, not {}",
        json["page"],
        scenario.page
    );
    Ok(())
}

/// One HTTP/1.1 request on a kept-alive connection: status and body.
async fn roundtrip(
    stream: &mut tokio::io::BufStream<TcpStream>,
    body: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST /api/v1/mirrors/logs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic OnBlZXJkYg==\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;

    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("status line {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(bad("the connection closed mid-answer".into()));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let mut body = vec![0; length.ok_or_else(|| bad("no Content-Length".into()))?];
    stream.read_exact(&mut body).await?;
    Ok((status, body))
}

/// Reads the server's log lines as they come (a full pipe would stall
/// it): how many, and those that are not INFO.
fn drain_log(stderr: std::process::ChildStderr) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut served = 0;
        let mut problems = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("request served") {
                served += 1;
            } else if line.contains("WARN") || line.contains("ERROR") {
                problems.push(line);
            }
        }
        (served, problems)
    })
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn report(name: &str, took: &mut [Duration]) {
    took.sort_unstable();
    let at = |q: f64| {
        took[((took.len() as f64 * q) as usize).min(took.len() - 1)].as_secs_f64() * 1000.0
    };
    say!(
        "{name:<34} {:>9} {:>8.2} {:>8.2}",
        took.len(),
        at(0.50),
        at(0.99)
    );
}
