//! What the accelerator costs PeerDB's writes: PeerDB's own insert (one
//! row per statement, autocommit, prepared as pgx prepares it) from many
//! sessions at once, by `pgbench` with a script of that one statement,
//! with the accelerator and then without it, on the same catalog.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::{ThrowawayPg, SUPERUSER};
use tokio_postgres::Client;

use crate::stats::{ms, percentile};

const SESSIONS: usize = 8;
const SECONDS: u64 = 15;

/// One workload: the names its sessions write under, and what it is.
struct Workload {
    what: &'static str,
    names: Vec<String>,
    level_of_twenty: &'static str,
}

struct Run {
    per_second: f64,
    mean: Duration,
    p99: Duration,
}

/// The rows of the report for both workloads, `with` the accelerator or
/// without; `None` when pgbench is not installed.
pub async fn measure(pg: &ThrowawayPg, admin: &Client, with: bool) -> Option<String> {
    if Command::new("pgbench").arg("--version").output().is_err() {
        return None;
    }
    let mirrors: Vec<String> = admin
        .query(
            "SELECT DISTINCT flow_name FROM peerdb_stats.flow_errors WHERE NOT starts_with(flow_name, 'clone_') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let workloads = [
        Workload {
            what: "8 sessions over every mirror, 80% info, 15% warn, 5% error",
            names: mirrors.clone(),
            level_of_twenty: "CASE WHEN :l < 16 THEN 'info' WHEN :l < 19 THEN 'warn' ELSE 'error' END",
        },
        Workload {
            what: "8 sessions on one mirror and level",
            names: mirrors[..1].to_vec(),
            level_of_twenty: "'info'",
        },
    ];
    let regime = if with { "with" } else { "without" };
    let mut rows = String::new();
    for w in &workloads {
        let r = run(pg, w);
        rows.push_str(&format!(
            "| {} | {regime} | {:.0} | {} | {} |\n",
            w.what,
            r.per_second,
            ms(r.mean),
            ms(r.p99)
        ));
    }
    Some(rows)
}

/// The report's table head.
pub fn head() -> String {
    format!(
        "### PeerDB's insert, {SESSIONS} sessions for {SECONDS} s each (pgbench, one row per INSERT, autocommit, prepared)\n\n\
         | workload | accelerator | inserts/s | mean ms | p99 ms |\n|---|---|---|---|---|\n"
    )
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
            w.level_of_twenty
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
        if !path.file_name().unwrap().to_string_lossy().starts_with("log") {
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
