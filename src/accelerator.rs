//! The optional accelerator (`sql/accelerator-install.sql`): what the
//! function knows of it. Found by a query the catalog runs at the first
//! request and again once [`RECHECK_AFTER`] has passed, so one installed
//! or removed later is noticed without a restart. No I/O here.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// An installed, kept accelerator: its summary's bucket widths, in bits
/// of the id, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accelerator {
    pub bits: [i16; LEVELS],
}

/// How many bucket widths the summary keeps.
pub const LEVELS: usize = 3;

/// The install file's detection query: one row when the summary is kept
/// for the table there now (its marker names this table, its four
/// triggers are enabled), none otherwise. A missing marker is an
/// undefined-table error, which means none as well.
pub const DETECTION: &str = "SELECT a.version, a.bits \
     FROM peerdb_stats.mirror_logs_accelerator a \
     WHERE a.table_oid = to_regclass('peerdb_stats.flow_errors') \
       AND (SELECT count(*) FROM pg_catalog.pg_trigger t \
            WHERE t.tgrelid = a.table_oid AND t.tgenabled IN ('O', 'A') \
              AND t.tgname IN ('mirror_logs_count_inserts', 'mirror_logs_count_deletes', \
                               'mirror_logs_count_updates_old', 'mirror_logs_count_updates_new', \
                               'mirror_logs_count_truncate')) = 5";

/// The one version this function reads: 3, which keeps hours beside the
/// id buckets. Version 1's marker has no `bits` column: its detection
/// fails as an undefined column.
const VERSION: i32 = 3;

/// How long what was found is trusted: "within a minute", with room for
/// the check itself.
pub const RECHECK_AFTER: Duration = Duration::from_secs(30);

impl Accelerator {
    /// The accelerator a detection row describes, if this function can
    /// read it: version 3, and each width's buckets inside the next's.
    pub fn from_row(version: i32, bits: &[i16]) -> Option<Accelerator> {
        let bits: [i16; LEVELS] = bits.try_into().ok()?;
        let nested = bits.windows(2).all(|w| w[0] < w[1]);
        (version == VERSION && nested && 0 < bits[0] && bits[LEVELS - 1] < 63)
            .then_some(Accelerator { bits })
    }

    /// The widest buckets: the fewest rows for a whole-table sum.
    pub fn coarsest(&self) -> i16 {
        self.bits[LEVELS - 1]
    }
}

/// What the last detection found, and when.
#[derive(Debug, Default)]
pub struct Detected(Mutex<Option<(Instant, Option<Accelerator>)>>);

impl Detected {
    /// What was found, unless it is older than [`RECHECK_AFTER`] at `now`
    /// (or nothing was looked for yet): then `None`, and the caller looks.
    pub fn fresh(&self, now: Instant) -> Option<Option<Accelerator>> {
        let found = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        found.and_then(|(at, accelerator)| {
            (now.duration_since(at) < RECHECK_AFTER).then_some(accelerator)
        })
    }

    pub fn record(&self, at: Instant, accelerator: Option<Accelerator>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, accelerator));
    }

    /// The accelerator was found gone mid-use (uninstalled): look again on
    /// the next request.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3: Accelerator = Accelerator { bits: [14, 18, 22] };

    #[test]
    fn the_detection_is_the_install_files() {
        let file = include_str!("../sql/accelerator-install.sql");
        let block = file
            .split("-- detection:begin\n")
            .nth(1)
            .and_then(|rest| rest.split("-- detection:end").next())
            .expect("the install file documents its detection query");
        let words = |sql: &str| {
            sql.replace("--", " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(DETECTION), words(block));
    }

    #[test]
    fn only_version_3_with_three_nested_widths_is_read() {
        assert_eq!(Accelerator::from_row(3, &[14, 18, 22]), Some(V3));
        assert_eq!(Accelerator::from_row(2, &[14, 18, 22]), None);
        assert_eq!(Accelerator::from_row(3, &[16, 22]), None);
        assert_eq!(Accelerator::from_row(3, &[14, 22, 18]), None);
        assert_eq!(Accelerator::from_row(3, &[14, 14, 22]), None);
        assert_eq!(Accelerator::from_row(3, &[0, 18, 22]), None);
        assert_eq!(Accelerator::from_row(3, &[14, 18, 64]), None);
    }

    #[test]
    fn what_was_found_is_trusted_for_thirty_seconds_then_looked_for_again() {
        let d = Detected::default();
        let t = Instant::now();
        assert_eq!(d.fresh(t), None, "nothing looked for yet");
        d.record(t, Some(V3));
        assert_eq!(d.fresh(t + Duration::from_secs(29)), Some(Some(V3)));
        assert_eq!(d.fresh(t + RECHECK_AFTER), None);
        d.record(t, None);
        assert_eq!(d.fresh(t), Some(None), "absence is remembered as well");
        d.forget();
        assert_eq!(d.fresh(t), None);
    }
}
