//! Start-up, size and memory of the real `bootstrap` binary (the release
//! build Cargo makes for this benchmark), which is Lambda only: it is
//! started against the small runtime API in `runtime_api`, 20 times.

use std::time::Instant;

use testkit::Scenario;

use crate::entry::{self, WRONG_CREDENTIALS};
use crate::runtime_api::RuntimeApi;
use crate::stats::{max, min, ms, percentile};

const RUNS: usize = 20;

/// Process start to its first answer, a 401 that needs no database, and
/// to its first page, one mirror's (a cheap query, so that start-up is
/// what is measured); then the peak memory after it served every
/// scenario; then the binary's size. `database_url` is the reader's, direct.
pub async fn measure(database_url: &str, scenarios: &[Scenario]) {
    let bin = env!("CARGO_BIN_EXE_bootstrap");
    let mirror = scenarios
        .iter()
        .find(|s| s.name == "one mirror")
        .expect("the one-mirror scenario");
    let page = entry::scenario_event(mirror);
    let refused = entry::event(&mirror.body().to_string(), WRONG_CREDENTIALS);
    let api = RuntimeApi::start().await;
    let (mut to_refusal, mut to_page) = (Vec::new(), Vec::new());
    let mut peak_kb = 0;
    for run in 0..RUNS {
        let mut events = vec![refused.clone(), page.clone()];
        if run == 0 {
            events.extend(scenarios.iter().map(entry::scenario_event));
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
            .env("DATABASE_URL", database_url)
            .env("PEERDB_PASSWORD", "peerdb")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let answers = api.serve(&events).await;
        let statuses: Vec<u64> = answers.iter().map(|a| a.1).collect();
        assert_eq!(statuses[0], 401, "{statuses:?}");
        assert!(statuses[1..].iter().all(|s| *s == 200), "{statuses:?}");
        to_refusal.push(answers[0].0 - started);
        to_page.push(answers[1].0 - started);
        if run == 0 {
            peak_kb = vm_hwm_kb(child.id().unwrap());
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
         - Cold start, process start to the first answer posted to the runtime API, median of {RUNS}: \
         {} ms to a 401 (no database); {} ms to the first page (one mirror, connecting to the catalog included; \
         min {}, max {}).\n\
         - Peak memory (VmHWM) after serving all {} scenarios: {:.1} MB.\n\
         - Release binary: {:.2} MB; deflated (gzip -9, as in the zip): {:.2} MB.",
        ms(percentile(&to_refusal, 0.5)),
        ms(percentile(&to_page, 0.5)),
        ms(min(&to_page)),
        ms(max(&to_page)),
        scenarios.len(),
        peak_kb as f64 / 1024.0,
        size as f64 / 1e6,
        gz as f64 / 1e6
    );
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
