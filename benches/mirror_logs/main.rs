//! The speed benchmark: our function, through its real entry point,
//! against PeerDB's own statement sequence, on the same seeded catalog,
//! interleaved.
//!
//! `cargo bench --bench mirror_logs` (1,000,000 rows), or
//! `cargo bench --bench mirror_logs -- --rows 10000000 --iterations 10`.
//! Prints markdown tables; the README carries the latest output. Exits
//! non-zero, after printing everything, if any answer was wrong.
//!
//! - `entry`: "ours", the router `startup::build` returns, fed real Lambda
//!   events as the runtime feeds it.
//! - `reference`: PeerDB's statement sequence.
//! - `relay`: the round-trip counting relay in front of Postgres.
//! - `writer`: the pass with a writer appending rows.
//! - `handler_cost`: everything but the database, through the router.
//! - `compression`: a 1000-row page's sizes and the time compressing takes.
//! - `insert_cost`: PeerDB's insert with the accelerator and without.
//! - `cold_start` and `runtime_api`: the real `bootstrap` binary started
//!   against a small Lambda runtime API of our own.
//! - The scenarios are testkit's, shared with `tests/load.rs`.

mod cold_start;
mod compression;
mod entry;
mod handler_cost;
mod insert_cost;
mod reference;
mod relay;
mod runtime_api;
mod stats;
mod writer;

use std::path::Path;
use std::time::Instant;

use axum::Router;
use testkit::{
    provision, psql, psql_outcome, seed, CatalogShape, Scenario, ThrowawayPg, SUPERUSER,
};
use tokio_postgres::{Client, NoTls};

use crate::reference::Reference;
use crate::relay::Relay;
use crate::stats::{ms, percentile};

const READER: &str = "bench_reader";
const READER_PASSWORD: &str = "bench";

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

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The scenarios and the names endpoint, ours and PeerDB's interleaved:
/// the same answers first, then the table.
async fn measure(
    title: &str,
    relay: &Relay,
    app: &Router,
    reference: &mut Reference,
    scenarios: &[Scenario],
    iterations: usize,
    wrong: &mut Vec<String>,
) {
    let events: Vec<String> = scenarios.iter().map(entry::scenario_event).collect();
    let names = entry::names_event();
    // Same answers first: the benchmark compares equals.
    let mut differ = Vec::new();
    for (s, event) in scenarios.iter().zip(&events) {
        let ours = entry::invoke(app, event).await.page();
        let theirs = reference.request(s).await;
        if ours.as_ref() != Ok(&theirs) {
            differ.push(format!("{}: ours {ours:?}, PeerDB's {theirs:?}", s.name));
        }
    }
    let ours = entry::invoke(app, &names).await.names();
    let theirs = reference.names().await;
    if ours.as_ref() != Ok(&theirs) {
        differ.push(format!("names: ours {ours:?}, PeerDB's {theirs:?}"));
    }
    assert!(
        differ.is_empty(),
        "not the same answers, nothing to compare:\n{}",
        differ.join("\n")
    );

    println!("{title}");
    println!("| scenario | ours p50 ms | ours p99 ms | PeerDB p50 ms | PeerDB p99 ms | p50 ratio | round trips ours / PeerDB |");
    println!("|---|---|---|---|---|---|---|");
    let rows = scenarios
        .iter()
        .zip(&events)
        .map(|(s, e)| (s.name, Some(s), e))
        .chain([("names endpoint", None, &names)]);
    for (name, s, event) in rows {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut trips_a, mut trips_b) = (0, 0);
        for _ in 0..iterations {
            let before = relay.trips();
            let t = Instant::now();
            let answer = entry::invoke(app, event).await;
            a.push(t.elapsed());
            let mid = relay.trips();
            let t = Instant::now();
            match s {
                Some(s) => drop(reference.request(s).await),
                None => drop(reference.names().await),
            }
            b.push(t.elapsed());
            trips_a += mid - before;
            trips_b += relay.trips() - mid;
            if answer.status != 200 {
                wrong.push(format!("{name}: status {}: {}", answer.status, answer.body));
            }
        }
        let n = iterations as f64;
        let (pa, pb) = (percentile(&a, 0.5), percentile(&b, 0.5));
        println!(
            "| {name} | {} | {} | {} | {} | {:.3} | {} / {} |",
            ms(pa),
            ms(percentile(&a, 0.99)),
            ms(pb),
            ms(percentile(&b, 0.99)),
            pa.as_secs_f64() / pb.as_secs_f64(),
            trips_a as f64 / n,
            trips_b as f64 / n
        );
    }
}

/// One of the accelerator's files (`install` or `uninstall`), run as the
/// catalog's owner runs it.
fn accelerator(pg: &ThrowawayPg, action: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sql/accelerator-{action}.sql"));
    let out = psql(&pg.url(SUPERUSER, "postgres"), &file, &[("reader", READER)])
        .output()
        .expect("psql");
    psql_outcome(&file, &out).unwrap();
}

async fn max_id(c: &Client) -> i64 {
    c.query_one("SELECT max(id) FROM peerdb_stats.flow_errors", &[])
        .await
        .unwrap()
        .get(0)
}

// One thread, as the function runs in Lambda and in local mode.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = options();
    // What went wrong, reported after everything was measured.
    let mut wrong: Vec<String> = Vec::new();
    // fsync on, unlike other throwaway servers: the insert cost is measured
    // with durable commits (the reads' sessions commit without waiting).
    let pg = ThrowawayPg::start(&[
        "shared_buffers=1GB",
        "max_wal_size=4GB",
        "work_mem=16MB",
        "fsync=on",
    ])
    .expect("a throwaway Postgres");
    let handler_cost = handler_cost::measure(&pg).await;
    println!(
        "Seeding {} rows (100 mirrors and their clone_ flows)...",
        o.rows
    );
    let started = Instant::now();
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    provision(&admin, READER, READER_PASSWORD).await.unwrap();
    seed(&admin, o.rows, 100).await.unwrap();
    println!("Seeded in {:.0} s.\n", started.elapsed().as_secs_f64());

    let relay = Relay::start(pg.port()).await;
    let url = format!(
        "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/postgres",
        relay.port
    );
    let mut reference = Reference::new(connect(&url).await);
    let shape = CatalogShape::of(&admin).await.unwrap();
    let shared = testkit::scenarios(&shape);
    let scenarios: Vec<Scenario> = shared
        .iter()
        .cloned()
        .chain(testkit::more_scenarios(&shape))
        .collect();

    for accelerated in [false, true] {
        if accelerated {
            let started = Instant::now();
            accelerator(&pg, "install");
            println!(
                "\n## With the accelerator\n\nInstalled (`psql -f sql/accelerator-install.sql`) in {:.1} s.\n",
                started.elapsed().as_secs_f64()
            );
        } else {
            println!("## PeerDB's schema as it ships\n");
        }
        // A new function: it looks for the accelerator at its first request.
        let app = entry::app(&url).await;
        let title = format!(
            "### {} rows, {} requests per scenario and side, interleaved{}\n",
            o.rows,
            o.iterations,
            if accelerated {
                ", with the accelerator"
            } else {
                ""
            }
        );
        measure(
            &title,
            &relay,
            &app,
            &mut reference,
            &scenarios,
            o.iterations,
            &mut wrong,
        )
        .await;
        if !accelerated {
            println!("{}", compression::measure(&app).await);
        }
        wrong.extend(
            writer::pass(
                pg.port(),
                &admin,
                &app,
                &mut reference,
                &shared,
                o.iterations.div_ceil(4),
            )
            .await,
        );
    }
    println!("{handler_cost}");
    let direct = pg.url(&format!("{READER}:{READER_PASSWORD}"), "postgres");
    cold_start::measure(&direct, &scenarios).await;
    // Last, as it adds rows: PeerDB's insert with the accelerator, then
    // without it.
    println!(
        "{}",
        insert_cost::report(&pg, &mut reference, || accelerator(&pg, "uninstall")).await
    );

    if !wrong.is_empty() {
        eprintln!("\n{} wrong answers:", wrong.len());
        for w in &wrong {
            eprintln!("- {w}");
        }
        drop(pg);
        std::process::exit(1);
    }
}
