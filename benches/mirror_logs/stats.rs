//! Summaries of timings. Nothing here sorts the caller's samples: each
//! summary reads them as they are.

use std::time::Duration;

/// The `p` quantile (0 to 1) of `samples`, nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn min(samples: &[Duration]) -> Duration {
    samples.iter().copied().min().expect("samples")
}

pub fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().expect("samples")
}

/// Milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Microseconds, one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}
