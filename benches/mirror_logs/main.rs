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
//! - `cold_start` and `runtime_api`: the real `bootstrap` binary started
//!   against a small Lambda runtime API of our own.
//! - The scenarios are testkit's, shared with `tests/load.rs`.

mod cold_start;
mod entry;
mod handler_cost;
mod reference;
mod relay;
mod runtime_api;
mod stats;
mod writer;

use std::time::Instant;

use testkit::{provision, seed, CatalogShape, ThrowawayPg, SUPERUSER};
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
    let pg = ThrowawayPg::start(&["shared_buffers=1GB", "max_wal_size=4GB", "work_mem=16MB"])
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
    let app = entry::app(&url).await;
    let mut reference = Reference::new(connect(&url).await);
    let scenarios = testkit::scenarios(&CatalogShape::of(&admin).await.unwrap());
    let events: Vec<String> = scenarios.iter().map(entry::scenario_event).collect();

    // Same answers first: the benchmark compares equals.
    let mut differ = Vec::new();
    for (s, event) in scenarios.iter().zip(&events) {
        let ours = entry::invoke(&app, event).await.page();
        let theirs = reference.request(s).await;
        if ours.as_ref() != Ok(&theirs) {
            differ.push(format!("{}: ours {ours:?}, PeerDB's {theirs:?}", s.name));
        }
    }
    assert!(
        differ.is_empty(),
        "not the same answers, nothing to compare:\n{}",
        differ.join("\n")
    );

    println!(
        "### {} rows, {} requests per scenario and side, interleaved\n",
        o.rows, o.iterations
    );
    println!("| scenario | ours p50 ms | ours p99 ms | PeerDB p50 ms | PeerDB p99 ms | p50 ratio | round trips ours / PeerDB |");
    println!("|---|---|---|---|---|---|---|");
    for (s, event) in scenarios.iter().zip(&events) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut trips_a, mut trips_b) = (0, 0);
        for _ in 0..o.iterations {
            let before = relay.trips();
            let t = Instant::now();
            let answer = entry::invoke(&app, event).await;
            a.push(t.elapsed());
            let mid = relay.trips();
            let t = Instant::now();
            reference.request(s).await;
            b.push(t.elapsed());
            trips_a += mid - before;
            trips_b += relay.trips() - mid;
            if answer.status != 200 {
                wrong.push(format!(
                    "{}: status {}: {}",
                    s.name, answer.status, answer.body
                ));
            }
        }
        let n = o.iterations as f64;
        let (pa, pb) = (percentile(&a, 0.5), percentile(&b, 0.5));
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {} / {} |",
            s.name,
            ms(pa),
            ms(percentile(&a, 0.99)),
            ms(pb),
            ms(percentile(&b, 0.99)),
            pa.as_secs_f64() / pb.as_secs_f64(),
            trips_a as f64 / n,
            trips_b as f64 / n
        );
    }

    wrong.extend(
        writer::pass(
            pg.port(),
            &admin,
            &app,
            &mut reference,
            &scenarios,
            o.iterations.div_ceil(4),
        )
        .await,
    );
    println!("{handler_cost}");
    let direct = pg.url(&format!("{READER}:{READER_PASSWORD}"), "postgres");
    cold_start::measure(&direct, &scenarios).await;

    if !wrong.is_empty() {
        eprintln!("\n{} wrong answers:", wrong.len());
        for w in &wrong {
            eprintln!("- {w}");
        }
        drop(pg);
        std::process::exit(1);
    }
}
