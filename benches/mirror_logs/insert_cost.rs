//! What the accelerator costs PeerDB's writes: PeerDB's own insert (one
//! row per statement, autocommit, prepared as pgx prepares it) from many
//! sessions at once, by `pgbench` with a script of that one statement,
//! with the accelerator and then without it, on the same catalog.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::reference::Reference;
use crate::stats::{ms, percentile};
use testkit::{ThrowawayPg, SUPERUSER};

const SESSIONS: usize = 8;
const SECONDS: u64 = 15;

/// One workload: what it is, the names its sessions write under, and
/// the level (an SQL expression of `:l`, uniform in 0 to 19).
struct Workload {
    what: &'static str,
    names: Vec<String>,
    level: &'static str,
}

struct Run {
    per_second: f64,
    mean: Duration,
    p99: Duration,
}

/// The report: both workloads with the accelerator, then (after
/// `uninstall`) without it. pgbench's commits are durable, as PeerDB's
/// are (the server runs with fsync for this): a summary row's lock is
/// held until the commit's flush.
pub async fn report(
    pg: &ThrowawayPg,
    reference: &mut Reference,
    uninstall: impl FnOnce(),
) -> String {
    if Command::new("pgbench").arg("--version").output().is_err() {
        return "\nPeerDB's insert: not measured (no pgbench here).".to_string();
    }
    // The mirrors as PeerDB lists them.
    let mirrors = reference.names().await;
    let workloads = [
        Workload {
            what: "over every mirror, 80% info, 15% warn, 5% error",
            names: mirrors.clone(),
            level: "CASE WHEN :l < 16 THEN 'info' WHEN :l < 19 THEN 'warn' ELSE 'error' END",
        },
        Workload {
            what: "all on one mirror and level",
            names: mirrors[..1].to_vec(),
            level: "'info'",
        },
    ];
    let mut report = format!(
        "\n### PeerDB's insert, {SESSIONS} sessions, {SECONDS} s each (pgbench: one row per INSERT, autocommit, prepared, durable commits)\n\n\
         | workload | accelerator | inserts/s | mean ms | p99 ms |\n|---|---|---|---|---|\n"
    );
    report.push_str(&rows(pg, &workloads, "with"));
    uninstall();
    report.push_str(&rows(pg, &workloads, "without"));
    report
}

/// The report's rows for each workload, run in turn.
fn rows(pg: &ThrowawayPg, workloads: &[Workload], regime: &str) -> String {
    workloads
        .iter()
        .map(|w| {
            let r = run(pg, w);
            format!(
                "| {} | {regime} | {:.0} | {} | {} |\n",
                w.what,
                r.per_second,
                ms(r.mean),
                ms(r.p99)
            )
        })
        .collect()
}

fn run(pg: &ThrowawayPg, w: &Workload) -> Run {
    let dir = std::env::temp_dir().join(format!("insert-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = w.names.iter().map(|n| format!("'{n}'")).collect();
    let script = dir.join("insert.sql");
    std::fs::write(
        &script,
        format!(
            "\\set m random(1, {})\n\\set l random(0, 19)\n\
             INSERT INTO peerdb_stats.flow_errors(flow_name,error_message,error_type) \
             VALUES((ARRAY[{}])[:m], 'synced 1 records to destination, sync batch 1', {});\n",
            names.len(),
            names.join(","),
            w.level
        ),
    )
    .unwrap();
    let prefix = dir.join("log");
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-l"])
        .args(["-c", &SESSIONS.to_string(), "-j", "2"])
        .args(["-T", &SECONDS.to_string()])
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("-f")
        .arg(&script)
        .arg(pg.url(SUPERUSER, "postgres"))
        .env("PGOPTIONS", "-c synchronous_commit=on")
        .output()
        .expect("pgbench");
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latencies = latencies(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    Run {
        per_second: latencies.len() as f64 / SECONDS as f64,
        mean: latencies.iter().sum::<Duration>() / latencies.len() as u32,
        p99: percentile(&latencies, 0.99),
    }
}

/// Every transaction's latency from pgbench's per-transaction logs
/// (`client transaction latency_us script epoch epoch_us`).
fn latencies(dir: &Path) -> Vec<Duration> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("log")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(us) = line.split(' ').nth(2).and_then(|f| f.parse().ok()) {
                all.push(Duration::from_micros(us));
            }
        }
    }
    assert!(!all.is_empty(), "pgbench logged no transactions");
    all
}
