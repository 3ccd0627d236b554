//! The writer pass: the same scenarios while a writer appends 200 rows a
//! second, as a live PeerDB does; every answer's `total` and `page`
//! checked against the rows afterwards (rows are only appended, so counts
//! up to an id are stable). Every answer is checked and counted: the
//! report says how many were exact, and returns what was wrong in the
//! others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use testkit::{Scenario, SUPERUSER};
use tokio_postgres::Client;

use crate::entry::{self, Answer};
use crate::reference::Reference;
use crate::stats::{ms, percentile};
use crate::{connect, max_id};

/// Runs the pass; returns what each wrong answer got wrong.
pub async fn pass(
    port: u16,
    admin: &Client,
    app: &Router,
    reference: &mut Reference,
    scenarios: &[Scenario],
    iterations: usize,
) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(port, stop.clone()));
    let events: Vec<String> = scenarios.iter().map(entry::scenario_event).collect();
    let mut answers = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        for (s, event) in scenarios.iter().zip(&events) {
            let lo = max_id(admin).await;
            let t = Instant::now();
            let answer = entry::invoke(app, event).await;
            a.push(t.elapsed());
            let hi = max_id(admin).await;
            let t = Instant::now();
            reference.request(s).await;
            b.push(t.elapsed());
            answers.push((s, answer, lo, hi));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();

    let mut wrong = Vec::new();
    for (s, answer, lo, hi) in &answers {
        if let Err(e) = check(admin, s, answer, *lo, *hi).await {
            wrong.push(format!("{}: {e}", s.name));
        }
    }
    println!(
        "\n### With a writer appending 200 rows a second ({written} rows written during the pass)\n\n\
         All scenarios together: ours p50 {} ms, PeerDB p50 {} ms. `total` and `page` exact in {} of {} answers \
         (each checked against the rows afterwards).",
        ms(percentile(&a, 0.5)),
        ms(percentile(&b, 0.5)),
        answers.len() - wrong.len(),
        answers.len()
    );
    wrong
}

/// Appends 20 rows every 100 ms until `stop`; how many it wrote.
async fn write_until(port: u16, stop: Arc<AtomicBool>) -> u64 {
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
    while !stop.load(Ordering::SeqCst) {
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
}

/// Whether `answer`, given while the table's newest id went from `lo` to
/// `hi`, has a `total` and `page` the rows allow.
async fn check(
    admin: &Client,
    s: &Scenario,
    answer: &Answer,
    lo: i64,
    hi: i64,
) -> Result<(), String> {
    let (ids, total, page) = answer.page()?;
    let count_to = |upto: i64| async move {
        admin
            .query_one(
                "SELECT count(*) FROM peerdb_stats.flow_errors WHERE id <= $1
                   AND ($2::text IS NULL OR strpos(flow_name, $2) > 0) AND ($3::text IS NULL OR error_type = $3)",
                &[&upto, &s.flow(), &s.level()],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let (at_lo, at_hi) = (count_to(lo).await, count_to(hi).await);
    if !(at_lo <= total && total <= at_hi) {
        return Err(format!(
            "total {total} outside its snapshot ({at_lo} to {at_hi})"
        ));
    }
    if let Some(&first) = ids.first() {
        let newer = total - count_to(first).await;
        let expected = if s.page > 0 {
            s.page
        } else {
            newer / s.num_per_page + 1
        };
        if page != expected {
            return Err(format!("page {page}, not {expected}"));
        }
        if s.before_id == -1 && s.after_id == -1 && s.page == 0 && newer != 0 {
            return Err(format!("{newer} rows newer than the newest page's first"));
        }
    }
    Ok(())
}
