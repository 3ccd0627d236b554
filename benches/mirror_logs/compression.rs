//! What compressing costs: the newest 1000-row page the function serves
//! from the seeded catalog, its size plain, gzip and brotli, and the time
//! each coding takes in `response::Encoding::apply` (median of 50).

use std::time::Instant;

use axum::Router;
use peerdb_mirror_logs::response::Encoding;
use serde_json::json;

use crate::entry::{self, CREDENTIALS};
use crate::stats::{ms, percentile};

const RUNS: usize = 50;

pub async fn measure(app: &Router) -> String {
    let body = json!({"numPerPage": 1000}).to_string();
    let page = entry::invoke(app, &entry::event(&body, CREDENTIALS)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let plain = page.body.into_bytes();
    let mut report = format!(
        "\n### Compressing a 1000-row page\n\nThe newest 1000 rows, {} bytes of JSON plain:\n",
        plain.len()
    );
    for (name, coding) in [
        ("gzip (level 5)", Encoding::Gzip),
        ("brotli (quality 5)", Encoding::Brotli),
    ] {
        let mut times = Vec::with_capacity(RUNS);
        let mut size = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let (compressed, used) = coding.apply(plain.clone());
            times.push(t.elapsed());
            assert_eq!(used, coding);
            size = compressed.len();
        }
        report.push_str(&format!(
            "- {name}: {size} bytes ({:.1}% of plain), {} ms to compress\n",
            100.0 * size as f64 / plain.len() as f64,
            ms(percentile(&times, 0.5))
        ));
    }
    report
}
