//! The one SQL statement a request becomes. Pure: text and parameters,
//! run by `catalog`.
//!
//! One statement means one snapshot: the page, `total` and the count that
//! gives `page` cannot disagree, even while PeerDB appends rows.
//!
//! The `flowJobName` filter is a substring match, which no index serves.
//! Mirror names are few, so the statement first lists the distinct names
//! with a skip scan of `idx_flow_errors_flow_name` (one index probe per
//! name), keeps those that contain the filter, and then filters rows with
//! `flow_name = ANY(names)`, which the index does serve.
//!
//! How a mirror's rows are read is decided inside the statement, from the
//! mirror's size (counted in that index) and the table's id span: its page
//! through the name index or by walking the primary key; with a level, a
//! small mirror's rows read once for both page and count, and a mirror of
//! over a tenth of the table counted in one sequential pass.
//!
//! [`plan`] first picks a `Strategy` from the request's shape, then builds
//! that strategy's statement from one function per CTE.

use crate::accelerator::Accelerator;
use crate::request::{Cursor, LogsRequest};

/// A statement and its parameters, in `$n` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sql: String,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

const TABLE: &str = "peerdb_stats.flow_errors";
/// The accelerator's summary: rows per mirror, level and id bucket.
const COUNTS: &str = "peerdb_stats.mirror_logs_counts";
/// The accelerator's hourly counts: rows per hour of `error_timestamp`,
/// level and stripe (`id & 7`), with their ids' bounds.
const HOURS: &str = "peerdb_stats.mirror_logs_hours";
const HOUR: &str = "INTERVAL '1 hour'";
const LOG_COLUMNS: &str = "id, flow_name, error_message, error_type, error_timestamp";
const MIRROR_FILTER: &str = "flow_name = ANY((SELECT names FROM flows)::text[])";
/// Whether a mirror's page reads the mirror's rows rather than walking
/// the primary key; decided inside the statement, in the `gate` CTE.
const BY_NAME: &str = "(SELECT by_name FROM gate)";
/// Whether a narrowed mirror holds over a tenth of the rows.
const BIG: &str = "(SELECT big FROM gate)";
/// Whether the probe holds the page.
const FOUND: &str = "(SELECT found FROM gate)";
/// Whether the matching ids are kept from one sequential pass.
const SCAN: &str = "(SELECT scan FROM gate)";
/// Whether the matching ids are kept, by either way.
const KEEPS: &str = "(SELECT by_name OR scan FROM gate)";
const NEWER_THAN_PAGE: &str = "id > (SELECT max(id) FROM page)";
/// Between the first and last id a time range's matches hold.
const RANGED_IDS: &str = "id >= (SELECT first FROM ranged) AND id <= (SELECT last FROM ranged)";

/// The result rows, columns in the order `catalog` reads them: `total` and
/// `newer` (rows matching the filters with an id above the page's newest)
/// repeat on every row; the log columns are NULL on the single row of an
/// empty page.
const RESULT: &str = "SELECT s.total, s.newer, p.id, p.flow_name, p.error_message, p.error_type, \
                      floor(extract(epoch FROM p.error_timestamp) * 1000)::int8 AS error_ms\n\
                      FROM stats s LEFT JOIN page p ON true ORDER BY p.id DESC";

// What the statement weighs, in `gate`, to choose how a mirror is read.

/// What reading a mirror's row through the name index costs, in rows read
/// by walking the primary key: the index visits them scattered over the
/// heap, the walk in heap order. "About 3" is the estimate of 54c3e83, which
/// replaced a flat "under 5% of the span"; the history keeps no run behind
/// it. README, Speed: one mirror at 0.07x PeerDB's time at a million rows.
const NAME_INDEX_ROW_COST: f64 = 3.0;

/// The same weight with a level, where counting reads the mirror's rows
/// anyway: the name branch then only keeps their ids (a fraction of a row
/// each), while the walk reads 20 rows a match (a level guessed to keep one
/// row in 20, the benchmark's share of errors); 0.005 x 20 puts a kept id at
/// a tenth of a walked row. Set by 95ee7a2; README, Speed: one mirror with
/// a level at 0.22x PeerDB's time at a million rows.
const KEPT_ID_COST: f64 = 0.005;

/// A mirror is big when it holds over one in this many of the table's ids:
/// its rows then lie on most of the heap's pages (README, Speed: at a
/// million rows a 1% mirror's are on 7,800 of 17,900), so one sequential
/// pass, as PeerDB makes, beats visiting them through the name index. With
/// a level, counting the mirror's size stops there, as it only picks the
/// plan (95ee7a2).
const BIG_MIRROR_ONE_IN: i64 = 10;

/// The probe reads up to this many rows of the primary key from the
/// cursor, or [`PROBE_ROWS_PER_WANTED`] for each row of the page and its
/// offset if more: enough to find a page of 50 among matches one in 200
/// (an error among the rows of a quarter of the mirrors).
const PROBE_ROWS: f64 = 10_000.0;
const PROBE_ROWS_PER_WANTED: f64 = 20.0;
/// At most this many: a deep deprecated page is not worth a longer probe.
const PROBE_ROWS_MAX: f64 = 1_000_000.0;

/// The rows from the cursor whose names estimate a narrowed mirror's size
/// (counting it in the name index would read up to a tenth of the index
/// to tell a big mirror, and make the skip scan of its names besides).
const SAMPLE_ROWS: i64 = 1_000;

// What the accelerated statement weighs, in its `gate`, to choose between
// walking the primary key and merging each (mirror, level)'s newest ids
// from the accelerator's index. Both in rows read by the walk.

/// Finding one (mirror, level)'s first id in the index: a descent.
const PAIR_PROBE_COST: f64 = 4.0;

/// Each further id read there: index-only, many to a page.
const MERGED_ID_COST: f64 = 0.1;

/// The walk reads at most this many times the rows the summary predicts,
/// plus [`WALK_SLACK`]: matching rows can be denser near the newest ids
/// than on average, or sparser, when the merge is used after all.
const WALK_MARGIN: f64 = 4.0;
const WALK_SLACK: f64 = 100.0;

/// How a request's rows are read, chosen from its shape alone; what depends
/// on the data (the mirror's size) is decided inside the statement, in
/// `gate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// No filter at all: the page walks the primary key, and `total`
    /// counts every row.
    WholeTable,
    /// No mirror filter, but a level, a time range or a message substring:
    /// read as [`Strategy::MirrorNarrowed`] reads a big mirror.
    Narrowed,
    /// A mirror filter, every level: `total` is the mirror's count in the
    /// name index; the page is read through that index or by walking the
    /// primary key, whichever reads fewer rows.
    Mirror,
    /// A mirror filter narrowed further, by a level, a time range or a
    /// message substring, which no index of PeerDB's holds, so counting
    /// visits the mirror's rows in the heap. First a probe: the first rows
    /// of the primary key from the cursor, which give the page when matches
    /// are dense, and the mirror's share of the rows. Then one of:
    /// - the page from the probe, and the count in one sequential pass
    ///   (as PeerDB counts) for a mirror of over a tenth of the rows, or
    ///   through the mirror's rows otherwise;
    /// - for a small mirror, its matching ids kept from one visit through
    ///   the name index, for both page and count;
    /// - for a big one, when the probe found too few matches, the matching
    ///   ids kept from one sequential pass, for both page and count (so a
    ///   sparse or empty answer costs one pass, where PeerDB's page walks
    ///   the whole primary key before its count reads the table);
    /// - for a mirror between the two, the page by walking the primary key
    ///   on, when that costs less than keeping its ids.
    MirrorNarrowed,
    /// The accelerator is installed and nothing but a mirror and a level
    /// filters the rows: `total` is summed from its summary, the page is a
    /// short walk of the primary key or, where the matches are sparse, the
    /// newest ids of each (mirror, level) merged from its index.
    Summary(Accelerator),
    /// The accelerator is installed and a time range, but no message
    /// substring, narrows the rows: the range's matches are counted and
    /// their ids bounded from its hourly counts, summing the hours the
    /// range holds whole and reading only its two end hours in its time
    /// index (the index alone); with a mirror filter, whose rows the
    /// hours do not tell apart, by one pass over the whole range in that
    /// index, the names from the summary. The page walks the primary key
    /// inside those bounds or, where matches are too sparse there, sorts
    /// their ids from the time index.
    Timed(Accelerator),
}

impl Strategy {
    fn of(req: &LogsRequest, accelerator: Option<Accelerator>) -> Strategy {
        if let Some(a) = accelerator {
            if !req.filters_by_content() {
                return Strategy::Summary(a);
            }
            if req.message_contains.is_empty() {
                return Strategy::Timed(a);
            }
        }
        match (req.flow_job_name.is_empty(), req.narrows_rows()) {
            (true, false) => Strategy::WholeTable,
            (true, true) => Strategy::Narrowed,
            (false, false) => Strategy::Mirror,
            (false, true) => Strategy::MirrorNarrowed,
        }
    }
}

/// The names endpoint's statement: every distinct `flow_name` but the
/// initial-load flows, in the order the database gives text, found by the
/// same skip scan of the name index (one probe per name). `clone_` is a
/// literal prefix: the reference's `NOT LIKE 'clone_%'` reads `_` as a
/// wildcard and also hides a mirror named `cloneXsync`.
pub fn mirror_names() -> Plan {
    Plan {
        sql: format!(
            "WITH RECURSIVE\n{}\nSELECT n FROM names WHERE n IS NOT NULL AND NOT starts_with(n, 'clone_') ORDER BY n",
            names()
        ),
        params: Vec::new(),
    }
}

/// The statement for `req`: its strategy's CTEs, then the result rows.
/// `accelerator` is what the catalog holds, if anything.
pub fn plan(req: &LogsRequest, accelerator: Option<Accelerator>) -> Plan {
    let strategy = Strategy::of(req, accelerator);
    let mut params = Vec::new();
    let q = Bound::new(req, &mut params);
    let ctes = match strategy {
        Strategy::Summary(a) => summarized(&q, a),
        Strategy::Timed(a) => timed(&q, a),
        Strategy::WholeTable => whole_table(&q),
        Strategy::Narrowed => narrowed(&q, false),
        Strategy::Mirror => mirror(&q),
        Strategy::MirrorNarrowed => narrowed(&q, true),
    };
    Plan {
        sql: statement(&ctes),
        params,
    }
}

/// [`Strategy::WholeTable`]'s CTEs.
fn whole_table(q: &Bound) -> Vec<String> {
    vec![
        page(&q.page_of(&logs(), &q.filters(), "id")),
        stats(&q.counted(&rows(&q.filters()))),
    ]
}

/// [`Strategy::Mirror`]'s CTEs.
fn mirror(q: &Bound) -> Vec<String> {
    vec![
        names(),
        flows("names", q.needle()),
        span(),
        mirror_size(&mirror_rows()),
        gate(&[format!(
            "{} AS by_name",
            q.walk_costs_more(NAME_INDEX_ROW_COST)
        )]),
        page_either(
            &q.page_of(&logs(), &q.filters(), "id + 0"),
            &q.page_of(&logs(), &q.filters(), "id"),
        ),
        stats(&q.counted_in_index()),
    ]
}

/// [`Strategy::MirrorNarrowed`]'s CTEs, and [`Strategy::Narrowed`]'s
/// without a `mirror` filter (every row is then the mirror's: it is big).
fn narrowed(q: &Bound, mirror: bool) -> Vec<String> {
    let found = format!("(SELECT count(*) FROM probe) = {}", q.limit);
    let gate = if mirror {
        mirror_gate(q, &found)
    } else {
        format!("gate AS (SELECT found, NOT found AS scan, false AS by_name, true AS big FROM (SELECT {found} AS found) p)")
    };
    let mut kept = vec![only_if(
        &fenced(&format!("SELECT id FROM {}", rows(&q.filters_by_text()))),
        "scanned",
        SCAN,
    )];
    let mut counts = vec![
        only_if(&q.counted("matched"), "kept", KEEPS),
        only_if(
            &q.counted(&rows(&q.filters_by_text())),
            "whole",
            &format!("{BIG} AND NOT {SCAN}"),
        ),
    ];
    let mut pages = vec![
        only_if(&rows_with_ids_in("probe"), "probed", FOUND),
        only_if(
            &rows_with_ids_in_page_of(q, "matched", &[], "id"),
            "kept",
            KEEPS,
        ),
    ];
    let mut ctes = Vec::new();
    if mirror {
        ctes.extend([names(), flows("names", q.needle()), span(), sample(q)]);
        kept.insert(
            0,
            only_if(
                &fenced(&format!("SELECT id FROM {}", rows(&q.filters()))),
                "named",
                BY_NAME,
            ),
        );
        counts.push(only_if(
            &q.counted(&rows(&q.filters())),
            "named",
            &format!("NOT ({KEEPS} OR {BIG})"),
        ));
        pages.push(only_if(
            &q.page_of(&logs(), &q.filters(), "id"),
            "walked",
            &format!("NOT ({FOUND} OR {KEEPS})"),
        ));
    }
    ctes.extend([
        probe(q),
        gate,
        format!("matched AS MATERIALIZED ({})", union_all(&kept)),
        page(&union_all(&pages)),
        stats(&union_all(&counts)),
    ]);
    ctes
}

/// [`Strategy::Summary`]'s CTEs.
fn summarized(q: &Bound, a: Accelerator) -> Vec<String> {
    vec![
        pairs(&q.summary_filters(), a),
        span(),
        summary_gate(q),
        walked(q),
        merged(q),
        page(&union_all(&[
            only_if(&rows_with_ids_in("walked"), "walked", &q.walk_found_page()),
            only_if(
                &rows_with_ids_in("merged"),
                "merged",
                &format!("NOT {}", q.walk_found_page()),
            ),
        ])),
        newest(),
        stats(&q.counted_in_summary(a)),
    ]
}

/// [`Strategy::Timed`]'s CTEs.
fn timed(q: &Bound, a: Accelerator) -> Vec<String> {
    let mut ctes = Vec::new();
    // Fenced: the walk keeps to the primary key, inside the matches' ids.
    let walk = format!(
        "({}) w",
        fenced(&format!(
            "SELECT {LOG_COLUMNS} FROM {TABLE}{} ORDER BY id {}",
            where_clause(&filters_with(
                &[RANGED_IDS.to_string()],
                q.cursor().as_deref()
            )),
            q.order
        ))
    );
    // `newer` from the same pass, through the rows on the cursor's far
    // side (`past`): below it, the page holds the newest matches under
    // the cursor, so the newer ones are those past it; above it, those
    // beyond the cursor less the page.
    let past = q.past_side_on("id");
    let newer = match &past {
        Some(_) => {
            let beyond = if q.order == "DESC" {
                "(SELECT past FROM ranged)"
            } else {
                "(SELECT n - past FROM ranged) - (SELECT count(*) FROM page)"
            };
            format!("CASE WHEN EXISTS (SELECT FROM page) THEN {beyond} ELSE 0 END")
        }
        None => "0::int8".to_string(),
    };
    // The count, the ids' bounds and `past` of the rows passing `filters`.
    let counted = |filters: &[String]| {
        let past = past
            .as_ref()
            .map(|cursor| format!(", count(*) FILTER (WHERE NOT ({cursor})) AS past"));
        format!(
            "SELECT count(*) AS n, min(id) AS first, max(id) AS last{} FROM {}",
            past.unwrap_or_default(),
            rows(filters)
        )
    };
    let ranged = match &q.needle {
        Some(needle) => {
            ctes.push(flows(&summarized_names(a), needle));
            counted(&q.filters())
        }
        None => {
            ctes.push(hours(q));
            // An hour not summed is counted in the time index, within the
            // range.
            let in_hour: Vec<String> = q
                .level
                .iter()
                .cloned()
                .chain(q.time_filters_within(Some("h.hour")))
                .chain(["NOT h.summed".to_string()])
                .collect();
            // A summed hour's ids all lie on one side of the cursor.
            let (past_summed, past_sum) = match q.past_side_on("h.first") {
                Some(near) => (
                    format!(", CASE WHEN {near} THEN 0 ELSE h.n END AS past"),
                    ", coalesce(sum(c.past), 0)::int8 AS past",
                ),
                None => (String::new(), ""),
            };
            format!(
                "SELECT coalesce(sum(c.n), 0)::int8 AS n, min(c.first) AS first, max(c.last) AS last{past_sum} \
                 FROM hours h CROSS JOIN LATERAL ({}) c",
                union_all(&[
                    format!("SELECT h.n, h.first, h.last{past_summed} WHERE h.summed"),
                    counted(&in_hour),
                ])
            )
        }
    };
    ctes.extend([
        format!("ranged AS ({ranged})"),
        // Walking reads about rows_wanted * span / n rows; sorting, the
        // span's ids at MERGED_ID_COST each.
        format!(
            "gate AS (SELECT {} <= {MERGED_ID_COST} * n AS walk FROM ranged)",
            q.rows_wanted()
        ),
        page(&union_all(&[
            only_if(
                &q.page_of(&format!("* FROM {walk}"), &q.filters(), "id"),
                "walked",
                "(SELECT walk FROM gate)",
            ),
            only_if(
                &rows_with_ids_in_page_of(q, TABLE, &q.filters(), "id + 0"),
                "sorted",
                "NOT (SELECT walk FROM gate)",
            ),
        ])),
        stats(&format!(
            "SELECT (SELECT n FROM ranged) AS total, {newer} AS newer"
        )),
    ]);
    ctes
}

/// The request's values, each bound once as a parameter, and the clauses
/// made of them.
struct Bound {
    /// The mirror filter's placeholder.
    needle: Option<String>,
    /// `error_type = $n`, when a level is asked for.
    level: Option<String>,
    /// The time range's bounds, as timestamps: `error_timestamp` at or
    /// after `from`, before `to`.
    from: Option<String>,
    to: Option<String>,
    /// `strpos(error_message, $n) > 0`, for a message substring.
    message: Option<String>,
    /// The cursor's comparison and its placeholder: `id < $n` or `id > $n`.
    cursor: Option<(&'static str, String)>,
    order: &'static str,
    limit: String,
    offset: String,
    /// `newer` only matters when `page` is computed from it: a cursor page
    /// with no deprecated `page`. Without a cursor the first row returned
    /// is the newest match, so nothing is newer.
    needs_newer: bool,
}

impl Bound {
    fn new(req: &LogsRequest, params: &mut Vec<Param>) -> Bound {
        let mut bind = |p: Param| {
            params.push(p);
            format!("${}", params.len())
        };
        let needle =
            (!req.flow_job_name.is_empty()).then(|| bind(Param::Text(req.flow_job_name.clone())));
        let level = req
            .level
            .error_type()
            .map(|error_type| format!("error_type = {}", bind(Param::Text(error_type.into()))));
        // Whole milliseconds after the epoch, exact in an interval (and a
        // bound an index on `error_timestamp` can use).
        let mut instant = |ms: Option<i64>| {
            ms.map(|ms| {
                format!(
                    "TIMESTAMP 'epoch' + {}::int8 * INTERVAL '1 millisecond'",
                    bind(Param::Int(ms))
                )
            })
        };
        let (from, to) = (instant(req.from_ms), instant(req.to_ms));
        let message = (!req.message_contains.is_empty()).then(|| {
            let needle = bind(Param::Text(req.message_contains.clone()));
            format!("strpos(error_message, {needle}) > 0")
        });
        let (cursor, order) = match req.cursor {
            Cursor::Newest => (None, "DESC"),
            Cursor::Before(id) => (Some(("<", bind(Param::Int(id)))), "DESC"),
            Cursor::After(id) => (Some((">", bind(Param::Int(id)))), "ASC"),
        };
        let limit = bind(Param::Int(req.num_per_page));
        let offset = bind(Param::Int(if req.page > 0 {
            (req.page - 1).saturating_mul(req.num_per_page)
        } else {
            0
        }));
        Bound {
            needle,
            level,
            from,
            to,
            message,
            cursor,
            order,
            limit,
            offset,
            needs_newer: req.num_per_page > 0 && req.page == 0 && req.cursor != Cursor::Newest,
        }
    }

    /// The cursor's filter: `id < $n` or `id > $n`.
    fn cursor(&self) -> Option<String> {
        self.cursor_on("id")
    }

    /// The cursor's filter on another id column.
    fn cursor_on(&self, column: &str) -> Option<String> {
        self.cursor
            .as_ref()
            .map(|(op, id)| format!("{column} {op} {id}"))
    }

    /// The cursor's filter on `column` when `newer` is counted from the
    /// matches past the cursor (a time range's `past`), else nothing.
    fn past_side_on(&self, column: &str) -> Option<String> {
        self.cursor_on(column).filter(|_| self.needs_newer)
    }

    fn needle(&self) -> &str {
        self.needle
            .as_deref()
            .expect("a mirror strategy has a filter")
    }

    /// The request's filters, the mirror's through the names in `flows`.
    fn filters(&self) -> Vec<String> {
        self.with_row_filters(self.needle.as_ref().map(|_| MIRROR_FILTER.to_string()))
    }

    /// The mirror filter as PeerDB writes it, for reading the whole table.
    fn filters_by_text(&self) -> Vec<String> {
        self.with_row_filters(
            self.needle
                .as_ref()
                .map(|n| format!("strpos(flow_name, {n}) > 0")),
        )
    }

    fn with_row_filters(&self, mirror: Option<String>) -> Vec<String> {
        mirror
            .into_iter()
            .chain(self.level.iter().cloned())
            .chain(self.time_filters())
            .chain(self.message.iter().cloned())
            .collect()
    }

    /// The time range, as filters on `error_timestamp`.
    fn time_filters(&self) -> Vec<String> {
        self.time_filters_within(None)
    }

    /// The time range within the hour starting at `hour`, if given.
    fn time_filters_within(&self, hour: Option<&str>) -> Vec<String> {
        let bound = |own: &Option<String>, edge: Option<String>, tighter: &str| match (own, edge) {
            (Some(own), Some(edge)) => Some(format!("{tighter}({own}, {edge})")),
            (own, edge) => own.clone().or(edge),
        };
        let from = bound(&self.from, hour.map(str::to_string), "greatest");
        let to = bound(&self.to, hour.map(|h| format!("{h} + {HOUR}")), "least");
        from.map(|from| format!("error_timestamp >= {from}"))
            .into_iter()
            .chain(to.map(|to| format!("error_timestamp < {to}")))
            .collect()
    }

    /// The mirror and level filters, which the summary's columns hold too.
    fn summary_filters(&self) -> Vec<String> {
        self.needle
            .as_ref()
            .map(|n| format!("strpos(flow_name, {n}) > 0"))
            .into_iter()
            .chain(self.level.iter().cloned())
            .collect()
    }

    /// `limit + offset` as a float, for weighing costs without overflow.
    fn rows_wanted(&self) -> String {
        format!("({}::float8 + {}::float8)", self.limit, self.offset)
    }

    /// Whether the walk filled the page (on a page of 0 rows, trivially).
    fn walk_found_page(&self) -> String {
        format!("((SELECT count(*) FROM walked) = {})", self.limit)
    }

    /// `total` summed from the summary, and `newer`: the rows above the
    /// page's newest id. Whole coarsest buckets above its own; then, at
    /// each finer width down to single ids, the buckets above its own
    /// inside the enclosing one, read on the shorter side: those above,
    /// or the enclosing bucket's count less those up to its own. Single
    /// ids are counted in the table. The summary's key leads with the
    /// width and the bucket, so each sum reads one range of buckets
    /// whatever the table's size.
    fn counted_in_summary(&self, a: Accelerator) -> String {
        let newer = if self.needs_newer {
            let x = "(SELECT id FROM newest)";
            let last = "(SELECT last FROM span)";
            let bucket_of = |id: &str, bits: i16| match bits {
                0 => id.to_string(),
                _ => format!("({id} >> {bits})"),
            };
            // The matching rows in `buckets` of width `bits`; of width 0,
            // the rows with those ids.
            let rows_in = |bits: i16, buckets: &dyn Fn(&str) -> String| {
                if bits == 0 {
                    self.counted_in_table(&buckets("id"))
                } else {
                    let filters = filters_with(&self.summary_filters(), Some(&buckets("bucket")));
                    format!(
                        "(SELECT coalesce(sum(n), 0) FROM {COUNTS} WHERE bits = {bits} AND {})",
                        filters.join(" AND ")
                    )
                }
            };
            let top = a.coarsest();
            let own_top = bucket_of(x, top);
            let mut terms = vec![rows_in(top, &|b| format!("{b} > {own_top}"))];
            for (bits, outer) in std::iter::once(0).chain(a.bits).zip(a.bits) {
                let (own, enclosing) = (bucket_of(x, bits), bucket_of(x, outer));
                let per = outer - bits;
                // The enclosing bucket's first, and past its last that
                // holds an id now.
                let first = format!("({enclosing} << {per})");
                let end = format!(
                    "least(({enclosing} + 1) << {per}, {} + 1)",
                    bucket_of(last, bits)
                );
                terms.push(format!(
                    "CASE WHEN {own} - {first} + 2 < {end} - {own} - 1 THEN {} - {} ELSE {} END",
                    rows_in(outer, &|b| format!("{b} = {enclosing}")),
                    rows_in(bits, &|b| format!("{b} >= {first} AND {b} <= {own}")),
                    rows_in(bits, &|b| format!("{b} > {own} AND {b} < {end}")),
                ));
            }
            format!("({})::int8", terms.join(" + "))
        } else {
            "0::int8".to_string()
        };
        format!("SELECT (SELECT total FROM gate) AS total, {newer} AS newer")
    }

    /// The matching rows with ids in `range`: per (mirror, level) pair
    /// through its index when the summary's filters apply, else through
    /// the primary key.
    fn counted_in_table(&self, range: &str) -> String {
        if self.summary_filters().is_empty() {
            format!("(SELECT count(*) FROM {TABLE} WHERE {range})")
        } else {
            format!(
                "(SELECT coalesce(sum((SELECT count(*) FROM {TABLE} f \
                 WHERE f.flow_name = p.flow_name AND f.error_type = p.error_type AND {range})), 0) FROM pairs p)"
            )
        }
    }

    /// One page of `source`, from the cursor.
    fn page_of(&self, source: &str, filters: &[String], order_by: &str) -> String {
        let (order, limit, offset) = (self.order, &self.limit, &self.offset);
        format!(
            "SELECT {source}{} ORDER BY {order_by} {order} LIMIT {limit} OFFSET {offset}",
            where_clause(&filters_with(filters, self.cursor().as_deref()))
        )
    }

    /// `total` and `newer` in one pass, where every matching row is read
    /// to count it anyway.
    fn counted(&self, rows: &str) -> String {
        let newer = if self.needs_newer {
            format!("count(*) FILTER (WHERE {NEWER_THAN_PAGE})")
        } else {
            "0::int8".to_string()
        };
        format!("SELECT count(*) AS total, {newer} AS newer FROM {rows}")
    }

    /// `total` from the mirror's count in the name index, and `newer`
    /// counted apart.
    fn counted_in_index(&self) -> String {
        let newer = if self.needs_newer {
            format!(
                "(SELECT count(*) FROM {})",
                rows(&filters_with(&self.filters(), Some(NEWER_THAN_PAGE)))
            )
        } else {
            "0::int8".to_string()
        };
        format!("SELECT (SELECT n FROM mirror) AS total, {newer} AS newer")
    }

    /// Whether walking the primary key from the cursor, which reads about
    /// (limit + offset) * span / matches rows, would cost more than reading
    /// the mirror's rows at `row_cost` each. In floats, so that a huge page
    /// cannot overflow.
    fn walk_costs_more(&self, row_cost: f64) -> String {
        let (limit, offset) = (&self.limit, &self.offset);
        format!("({limit}::float8 + {offset}::float8) * s.n > {row_cost} * (m.n::float8 ^ 2)")
    }
}

/// The distinct mirror names, by a skip scan of the name index.
fn names() -> String {
    format!(
        "names(n) AS ({})",
        union_all(&[
            format!("(SELECT flow_name FROM {TABLE} ORDER BY flow_name LIMIT 1)"),
            format!(
                "SELECT (SELECT f.flow_name FROM {TABLE} f WHERE f.flow_name > names.n ORDER BY f.flow_name LIMIT 1) \
                 FROM names WHERE names.n IS NOT NULL"
            ),
        ])
    )
}

/// The names in `names` (a relation of one column, `n`) that contain the
/// filter.
fn flows(names: &str, needle: &str) -> String {
    format!(
        "flows AS (SELECT coalesce(array_agg(n), '{{}}') AS names FROM {names} WHERE strpos(n, {needle}) > 0)"
    )
}

/// Every name in the summary's coarsest buckets: a few rows per name,
/// where the skip scan probes the name index once per name. A name whose
/// rows are all deleted may stay there; it matches no row.
fn summarized_names(a: Accelerator) -> String {
    format!(
        "(SELECT DISTINCT flow_name AS n FROM {COUNTS} WHERE bits = {}) names",
        a.coarsest()
    )
}

/// The time range's hours in the accelerator's hourly counts, the level's
/// (or every level's) rows summed over the stripes, with their ids'
/// bounds. An hour is `summed` when the range holds all of it, and, when
/// `past` is counted, its ids all lie on one side of the cursor; an hour
/// at either end of the range is counted in the time index instead.
fn hours(q: &Bound) -> String {
    let kept = q
        .level
        .iter()
        .cloned()
        .chain(
            q.from
                .iter()
                .map(|from| format!("hour >= date_trunc('hour', {from})")),
        )
        .chain(q.to.iter().map(|to| format!("hour < {to}")));
    let one_side = q
        .past_side_on("min(first)")
        .zip(q.past_side_on("max(last)"))
        .map(|(first, last)| format!("({first}) = ({last})"));
    let summed: Vec<String> = q
        .from
        .iter()
        .map(|from| format!("hour >= {from}"))
        .chain(q.to.iter().map(|to| format!("hour + {HOUR} <= {to}")))
        .chain(one_side)
        .collect();
    format!(
        "hours AS (SELECT hour, sum(n)::int8 AS n, min(first) AS first, max(last) AS last, {} AS summed \
         FROM {HOURS}{} GROUP BY hour)",
        summed.join(" AND "),
        where_clause(&kept.collect::<Vec<_>>())
    )
}

/// The table's id span, which a walk of the primary key crosses, and its
/// last id.
fn span() -> String {
    format!(
        "span AS (SELECT coalesce(max(id) - min(id) + 1, 0) AS n, max(id) AS last FROM {TABLE})"
    )
}

/// The mirror's size, counted in the name index.
fn mirror_size(rows: &str) -> String {
    format!("mirror AS (SELECT count(*) AS n FROM {rows})")
}

/// The mirror's rows, all of them.
fn mirror_rows() -> String {
    format!("{TABLE} WHERE {MIRROR_FILTER}")
}

/// The page from walking the primary key from the cursor, reading no more
/// than [`PROBE_ROWS`] (or [`PROBE_ROWS_PER_WANTED`] a row wanted): it
/// stops at the page, as PeerDB's walk does, and falls short where
/// matches are sparse.
fn probe(q: &Bound) -> String {
    let walk = format!(
        "(SELECT * FROM {TABLE}{} ORDER BY id {} LIMIT least(greatest({PROBE_ROWS}, {PROBE_ROWS_PER_WANTED} * {}), {PROBE_ROWS_MAX})::int8) w",
        where_clause(&filters_with(&[], q.cursor().as_deref())),
        q.order,
        q.rows_wanted()
    );
    format!(
        "probe AS ({})",
        q.page_of(&format!("id FROM {walk}"), &q.filters_by_text(), "id")
    )
}

/// The mirror's share of the [`SAMPLE_ROWS`] rows from the cursor, which
/// estimates its size.
fn sample(q: &Bound) -> String {
    format!(
        "sample AS MATERIALIZED (SELECT count(*) FILTER (WHERE strpos(flow_name, {}) > 0)::float8 / greatest(count(*), 1) AS share \
         FROM (SELECT flow_name FROM {TABLE}{} ORDER BY id {} LIMIT {SAMPLE_ROWS}) s)",
        q.needle(),
        where_clause(&filters_with(&[], q.cursor().as_deref())),
        q.order
    )
}

/// How a narrowed mirror is read, from its size as the sample estimates
/// it. A small mirror's ids are kept (the probe is not walked); a bigger
/// one's page is probed first, then (when the probe falls short) its ids
/// are kept from one pass if it is big, or the walk goes on. A mirror
/// absent from the sample's rows counts as small: its ids are then kept
/// from a visit through the name index, exact but slower if it is big
/// further from the cursor.
fn mirror_gate(q: &Bound, found: &str) -> String {
    let size = "(SELECT share FROM sample) * s.n";
    format!(
        "gate AS (SELECT found, NOT found AND NOT by_name AND big AS scan, by_name, big \
         FROM (SELECT *, CASE WHEN by_name THEN false ELSE {found} END AS found \
         FROM (SELECT {BIG_MIRROR_ONE_IN} * z.n > z.span AS big, \
         NOT {BIG_MIRROR_ONE_IN} * z.n > z.span AND {} * z.span > {KEPT_ID_COST} * (z.n ^ 2) AS by_name \
         FROM (SELECT {size} AS n, s.n AS span FROM span s) z) g) f)",
        q.rows_wanted()
    )
}

/// The log rows of one page of the ids in `source` that pass `filters`,
/// ordered by `order_by` (`id + 0` to keep the primary key out).
fn rows_with_ids_in_page_of(q: &Bound, source: &str, filters: &[String], order_by: &str) -> String {
    format!(
        "SELECT {} WHERE id IN ({})",
        logs(),
        q.page_of(&format!("id FROM {source}"), filters, order_by)
    )
}

/// Each (mirror, level) the filters keep, with its rows, from the
/// summary's coarse buckets (a few rows per pair).
fn pairs(filters: &[String], a: Accelerator) -> String {
    let bits = format!("bits = {}", a.coarsest());
    format!(
        "pairs AS MATERIALIZED (SELECT flow_name, error_type, sum(n)::int8 AS n FROM {COUNTS}{} GROUP BY flow_name, error_type)",
        where_clause(&filters_with(filters, Some(&bits)))
    )
}

/// `total`, and how many rows the walk reads: none when merging the
/// pairs' ids costs less than the walk the summary predicts, from the
/// matches' share of the id span.
fn summary_gate(q: &Bound) -> String {
    let wanted = q.rows_wanted();
    format!(
        "gate AS (SELECT total, CASE WHEN walk <= merge THEN least({WALK_MARGIN} * walk + {WALK_SLACK}, 9e18)::int8 ELSE 0 END AS walk_rows \
         FROM (SELECT t.n AS total, {wanted} * s.n / greatest(t.n, 1) AS walk, \
         t.pairs * ({PAIR_PROBE_COST} + {wanted} * {MERGED_ID_COST}) AS merge \
         FROM (SELECT coalesce(sum(n), 0)::int8 AS n, count(*) AS pairs FROM pairs) t, span s) costs)"
    )
}

/// The page's ids from walking the primary key from the cursor, reading no
/// more rows than `gate` allows.
fn walked(q: &Bound) -> String {
    let walk = format!(
        "(SELECT id, flow_name, error_type FROM {TABLE}{} ORDER BY id {} LIMIT (SELECT walk_rows FROM gate)) w",
        where_clause(&filters_with(&[], q.cursor().as_deref())),
        q.order
    );
    format!(
        "walked AS ({})",
        q.page_of(&format!("id FROM {walk}"), &q.filters_by_text(), "id")
    )
}

/// The page's ids from the newest of each pair, in the accelerator's
/// `(flow_name, error_type, id)` index, merged.
fn merged(q: &Bound) -> String {
    let (l, o) = (&q.limit, &q.offset);
    let first = format!(
        "(SELECT id FROM {TABLE} f{} ORDER BY id {} LIMIT least({o}, 9223372036854775807 - {l}) + {l}) c",
        where_clause(&filters_with(
            &["f.flow_name = p.flow_name AND f.error_type = p.error_type".to_string()],
            q.cursor().as_deref()
        )),
        q.order
    );
    format!(
        "merged AS ({})",
        q.page_of(
            &format!("c.id FROM pairs p CROSS JOIN LATERAL {first}"),
            &[],
            "c.id"
        )
    )
}

/// The log rows whose ids the CTE `ids` holds.
fn rows_with_ids_in(ids: &str) -> String {
    format!("SELECT {} WHERE id IN (SELECT id FROM {ids})", logs())
}

/// The page's newest id, which `newer` counts above.
fn newest() -> String {
    "newest AS (SELECT max(id) AS id FROM page)".to_string()
}

/// How the mirror's rows are read, decided from its size and the span:
/// the planner cannot, as the names are only known while the statement
/// runs.
fn gate(columns: &[String]) -> String {
    format!(
        "gate AS (SELECT {} FROM mirror m, span s)",
        columns.join(", ")
    )
}

/// The page's rows, in cursor order.
fn page(rows: &str) -> String {
    format!("page AS ({rows})")
}

/// The page through the mirror's rows or by walking the primary key, as
/// `gate` says. `id + 0` keeps the primary key out of the name branch.
fn page_either(by_name: &str, by_id: &str) -> String {
    page(&union_all(&[
        only_if(by_name, "by_name", BY_NAME),
        only_if(by_id, "by_id", &format!("NOT {BY_NAME}")),
    ]))
}

/// `rows` kept whole below a condition on them: `OFFSET 0` stops the
/// planner pushing the condition down into a parallel scan, which would
/// start its workers only to find it false.
fn fenced(rows: &str) -> String {
    format!("{rows} OFFSET 0")
}

/// `rows` when `condition` holds: one branch of a choice made in `gate`.
fn only_if(rows: &str, alias: &str, condition: &str) -> String {
    format!("SELECT * FROM ({rows}) {alias} WHERE {condition}")
}

/// `total` and `newer`, on one row.
fn stats(counts: &str) -> String {
    format!("stats AS ({counts})")
}

/// One CTE a line, for whoever reads the statement (in a snapshot, in
/// `pg_stat_activity`); Postgres reads any whitespace alike.
fn statement(ctes: &[String]) -> String {
    format!("WITH RECURSIVE\n{}\n{RESULT}", ctes.join(",\n"))
}

/// The branches, each on a line of its own.
fn union_all(branches: &[String]) -> String {
    let branches: Vec<String> = branches.iter().map(|b| format!("\n  {b}")).collect();
    branches.join("\n  UNION ALL")
}

/// The log columns, to read from the table.
fn logs() -> String {
    format!("{LOG_COLUMNS} FROM {TABLE}")
}

/// The table's rows that pass `filters`.
fn rows(filters: &[String]) -> String {
    format!("{TABLE}{}", where_clause(filters))
}

fn filters_with(filters: &[String], extra: Option<&str>) -> Vec<String> {
    filters
        .iter()
        .cloned()
        .chain(extra.map(str::to_string))
        .collect()
}

/// ` WHERE` and the filters, or nothing without any.
fn where_clause(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_skip_scan_the_name_index() {
        insta::assert_snapshot!(mirror_names().sql);
    }

    use crate::request::Level;

    fn req(flow: &str, level: Level, page: i64, num_per_page: i64, cursor: Cursor) -> LogsRequest {
        LogsRequest {
            flow_job_name: flow.into(),
            level,
            page,
            num_per_page,
            cursor,
            ..LogsRequest::default()
        }
    }

    /// `r` narrowed to a day and a message substring.
    fn in_a_day_containing(r: LogsRequest, message: &str) -> LogsRequest {
        LogsRequest {
            from_ms: Some(1_748_908_800_000),
            to_ms: Some(1_748_995_200_000),
            message_contains: message.into(),
            ..r
        }
    }

    /// The statement as sent, after comment lines naming the request and
    /// the parameters: a snapshot that reads as SQL.
    fn shown(req: &LogsRequest) -> String {
        shown_with(req, None)
    }

    fn shown_with(req: &LogsRequest, accelerator: Option<Accelerator>) -> String {
        let p = plan(req, accelerator);
        let params: Vec<String> = p
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| format!("${} = {p:?}", i + 1))
            .collect();
        format!(
            "-- {:?}: {req:?}\n-- {}\n{}",
            Strategy::of(req, accelerator),
            params.join(", "),
            p.sql
        )
    }

    // Each strategy's whole statement, on a cursor page, where `newer` is
    // counted too.

    #[test]
    fn whole_table() {
        let r = req("", Level::All, 0, 50, Cursor::Before(9));
        assert_eq!(Strategy::of(&r, None), Strategy::WholeTable);
        insta::assert_snapshot!(shown(&r));
    }

    #[test]
    fn narrowed() {
        let r = req("", Level::Info, 0, 50, Cursor::Before(9));
        assert_eq!(Strategy::of(&r, None), Strategy::Narrowed);
        insta::assert_snapshot!(shown(&r));
    }

    #[test]
    fn mirror() {
        let r = req("m", Level::All, 0, 50, Cursor::After(9));
        assert_eq!(Strategy::of(&r, None), Strategy::Mirror);
        insta::assert_snapshot!(shown(&r));
    }

    #[test]
    fn mirror_and_level() {
        let r = req("m", Level::Error, 0, 50, Cursor::Before(9));
        assert_eq!(Strategy::of(&r, None), Strategy::MirrorNarrowed);
        insta::assert_snapshot!(shown(&r));
    }

    #[test]
    fn a_time_range_and_a_message_narrow_like_a_level() {
        let whole = in_a_day_containing(req("", Level::All, 0, 50, Cursor::Newest), "deadlock");
        assert_eq!(Strategy::of(&whole, None), Strategy::Narrowed);
        insta::assert_snapshot!(shown(&whole));
        let mirror = in_a_day_containing(req("m", Level::All, 0, 50, Cursor::Newest), "");
        assert_eq!(Strategy::of(&mirror, None), Strategy::MirrorNarrowed);
        insta::assert_snapshot!(shown(&mirror));
    }

    const ACCELERATOR: Accelerator = Accelerator { bits: [14, 18, 22] };
    const INSTALLED: Option<Accelerator> = Some(ACCELERATOR);

    #[test]
    fn with_the_accelerator_a_cursor_page_counts_from_the_summary() {
        let every = req("", Level::All, 0, 50, Cursor::Before(9));
        assert_eq!(
            Strategy::of(&every, INSTALLED),
            Strategy::Summary(ACCELERATOR)
        );
        insta::assert_snapshot!(shown_with(&every, INSTALLED));
        let mirror_errors = req("m", Level::Error, 0, 50, Cursor::After(9));
        assert_eq!(
            Strategy::of(&mirror_errors, INSTALLED),
            Strategy::Summary(ACCELERATOR)
        );
        insta::assert_snapshot!(shown_with(&mirror_errors, INSTALLED));
    }

    #[test]
    fn with_the_accelerator_a_time_range_is_counted_in_its_index() {
        let r = in_a_day_containing(req("m", Level::Error, 0, 50, Cursor::Before(9)), "");
        assert_eq!(Strategy::of(&r, INSTALLED), Strategy::Timed(ACCELERATOR));
        insta::assert_snapshot!(shown_with(&r, INSTALLED));
    }

    #[test]
    fn with_the_accelerator_a_time_range_without_a_mirror_sums_its_whole_hours() {
        let r = in_a_day_containing(req("", Level::Error, 0, 50, Cursor::Before(9)), "");
        assert_eq!(Strategy::of(&r, INSTALLED), Strategy::Timed(ACCELERATOR));
        insta::assert_snapshot!(shown_with(&r, INSTALLED));
    }

    #[test]
    fn with_the_accelerator_a_message_filter_reads_as_without_it() {
        for r in [
            LogsRequest {
                message_contains: "deadlock".into(),
                ..req("", Level::All, 0, 50, Cursor::Newest)
            },
            in_a_day_containing(req("m", Level::Error, 0, 50, Cursor::Newest), "deadlock"),
        ] {
            assert_eq!(plan(&r, INSTALLED), plan(&r, None), "{r:?}");
        }
    }

    /// Every shape of request the decoder lets through, near enough.
    fn requests() -> impl Iterator<Item = LogsRequest> {
        let levels = [Level::All, Level::Info, Level::Warn, Level::Error];
        let cursors = [
            Cursor::Newest,
            Cursor::Before(9),
            Cursor::After(9),
            Cursor::After(0),
        ];
        levels.into_iter().flat_map(move |level| {
            ["", "m"].into_iter().flat_map(move |flow| {
                cursors.into_iter().flat_map(move |cursor| {
                    [(0, 0), (0, 50), (3, 0), (3, 50)]
                        .into_iter()
                        .map(move |(page, n)| req(flow, level, page, n, cursor))
                })
            })
        })
    }

    #[test]
    fn the_strategy_follows_the_mirror_filter_and_the_level() {
        for r in requests() {
            let expected = match (r.flow_job_name.as_str(), r.level) {
                ("", Level::All) => Strategy::WholeTable,
                ("", _) => Strategy::Narrowed,
                (_, Level::All) => Strategy::Mirror,
                _ => Strategy::MirrorNarrowed,
            };
            assert_eq!(Strategy::of(&r, None), expected, "{r:?}");
        }
    }

    #[test]
    fn with_the_accelerator_every_request_without_content_filters_uses_the_summary() {
        for r in requests() {
            assert_eq!(
                Strategy::of(&r, INSTALLED),
                Strategy::Summary(ACCELERATOR),
                "{r:?}"
            );
        }
    }

    #[test]
    fn every_parameter_has_its_placeholder_and_no_placeholder_is_left_over() {
        for (r, accelerator) in requests().flat_map(|r| [(r.clone(), None), (r, INSTALLED)]) {
            let p = plan(&r, accelerator);
            for n in 1..=p.params.len() {
                assert!(p.sql.contains(&format!("${n}")), "{r:?}: ${n} unused");
            }
            assert!(
                !p.sql.contains(&format!("${}", p.params.len() + 1)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn user_input_only_ever_travels_as_parameters() {
        let evil = "'; DROP TABLE peerdb_stats.flow_errors; --";
        for accelerator in [None, INSTALLED] {
            let p = plan(
                &req(evil, Level::Warn, 2, 10, Cursor::After(7)),
                accelerator,
            );
            assert!(!p.sql.contains("DROP"));
            assert_eq!(
                p.params,
                vec![
                    Param::Text(evil.into()),
                    Param::Text("warn".into()),
                    Param::Int(7),
                    Param::Int(10),
                    Param::Int(10)
                ]
            );
            // The text does not depend on the values at all.
            let plain = plan(
                &req("m", Level::Error, 5, 20, Cursor::After(1)),
                accelerator,
            );
            assert_eq!(p.sql, plain.sql);
        }
    }

    #[test]
    fn no_filters_no_cursor() {
        let p = plan(&req("", Level::All, 0, 50, Cursor::Newest), None);
        assert_eq!(p.params, vec![Param::Int(50), Param::Int(0)]);
    }

    #[test]
    fn deprecated_page_skips_whole_pages_after_the_cursor() {
        let p = plan(&req("", Level::All, 3, 20, Cursor::Before(100)), None);
        assert_eq!(
            p.params,
            vec![Param::Int(100), Param::Int(20), Param::Int(40)]
        );
        let p = plan(&req("", Level::All, i64::MAX, 1000, Cursor::Newest), None);
        assert_eq!(p.params, vec![Param::Int(1000), Param::Int(i64::MAX)]);
    }

    #[test]
    fn zero_page_size_reads_no_rows_and_only_the_count() {
        let p = plan(&req("m", Level::Error, 4, 0, Cursor::Before(9)), None);
        assert_eq!(
            p.params,
            vec![
                Param::Text("m".into()),
                Param::Text("error".into()),
                Param::Int(9),
                Param::Int(0),
                Param::Int(0)
            ]
        );
        assert!(!counts_newer(&p));
    }

    fn counts_newer(p: &Plan) -> bool {
        !p.sql.contains("0::int8 AS newer")
    }

    #[test]
    fn newer_is_counted_only_for_a_cursor_page() {
        for r in requests() {
            let cursor_page = r.num_per_page > 0 && r.page == 0 && r.cursor != Cursor::Newest;
            assert_eq!(counts_newer(&plan(&r, None)), cursor_page, "{r:?}");
            assert_eq!(counts_newer(&plan(&r, INSTALLED)), cursor_page, "{r:?}");
            let timed = in_a_day_containing(r, "");
            assert_eq!(
                counts_newer(&plan(&timed, INSTALLED)),
                cursor_page,
                "{timed:?}"
            );
        }
    }
}
