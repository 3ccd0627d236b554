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

use crate::request::{Cursor, Level, LogsRequest};

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
const LOG_COLUMNS: &str = "id, flow_name, error_message, error_type, error_timestamp";
const MIRROR_FILTER: &str = "flow_name = ANY((SELECT names FROM flows)::text[])";
/// Whether a mirror's page reads the mirror's rows rather than walking
/// the primary key; decided inside the statement, in the `gate` CTE.
const BY_NAME: &str = "(SELECT by_name FROM gate)";
/// Whether a mirror (with a level) is counted by reading the whole table.
const BIG: &str = "(SELECT big FROM gate)";

pub fn plan(req: &LogsRequest) -> Plan {
    let mut params = Vec::new();
    let mut bind = |p: Param| {
        params.push(p);
        format!("${}", params.len())
    };

    let mut ctes = Vec::new();
    let mut filters = Vec::new();
    // The mirror filter as PeerDB writes it, for reading the whole table.
    let mut mirror_by_text = String::new();
    let by_mirror = !req.flow_job_name.is_empty();
    if by_mirror {
        let needle = bind(Param::Text(req.flow_job_name.clone()));
        mirror_by_text = format!("strpos(flow_name, {needle}) > 0");
        ctes.push(format!(
            "names(n) AS ( \
               (SELECT flow_name FROM {TABLE} ORDER BY flow_name LIMIT 1) \
               UNION ALL \
               SELECT (SELECT f.flow_name FROM {TABLE} f WHERE f.flow_name > names.n ORDER BY f.flow_name LIMIT 1) \
               FROM names WHERE names.n IS NOT NULL), \
             flows AS (SELECT coalesce(array_agg(n), '{{}}') AS names FROM names WHERE strpos(n, {needle}) > 0)"
        ));
        filters.push(MIRROR_FILTER.to_string());
    }
    if let Some(error_type) = req.level.error_type() {
        let level = bind(Param::Text(error_type.into()));
        filters.push(format!("error_type = {level}"));
    }

    let (cursor, order) = match req.cursor {
        Cursor::Newest => (None, "DESC"),
        Cursor::Before(id) => (Some(format!("id < {}", bind(Param::Int(id)))), "DESC"),
        Cursor::After(id) => (Some(format!("id > {}", bind(Param::Int(id)))), "ASC"),
    };
    let limit = bind(Param::Int(req.num_per_page));
    let offset = bind(Param::Int(if req.page > 0 {
        (req.page - 1).saturating_mul(req.num_per_page)
    } else {
        0
    }));
    let logs = format!("{LOG_COLUMNS} FROM {TABLE}");
    let page_of = |source: &str, filters: &[String], order_by: &str| {
        format!(
            "SELECT {source} {} ORDER BY {order_by} {order} LIMIT {limit} OFFSET {offset}",
            where_clause(&filters_with(filters, cursor.as_deref()))
        )
    };
    // With a mirror and a level, counting reads every row of the mirror
    // from the heap (no index holds `error_type`): when the mirror is
    // small, that one pass keeps the matching ids, and the count and the
    // page both come from them.
    let single_pass = by_mirror && req.level != Level::All;
    if by_mirror {
        // Walking the primary key from the cursor reads about
        // (limit + offset) * span / matches rows, in heap order; going
        // through the name index reads every row of the mirror, scattered
        // over the heap (about 3 times the cost a row). With a level, the
        // count reads the mirror's rows anyway and the name branch only
        // keeps the matching ids (a fraction of a row's cost each), while
        // the walk reads more rows (a level guessed to keep one in 20): the
        // walk then pays only for a mirror far bigger than the page. The
        // planner cannot weigh this (the names are only known while the
        // statement runs), so the statement does. `id + 0` keeps the
        // primary key out of the name branch.
        let rows_weight = if single_pass { "0.005" } else { "3" };
        let by_name = format!(
            "({limit}::float8 + {offset}::float8) * s.n > {rows_weight} * (m.n::float8 ^ 2)"
        );
        // A mirror with over a tenth of the rows has them on most of the
        // heap's pages: one sequential pass, as PeerDB makes, then beats
        // visiting them through the name index.
        let big = "10 * m.n > s.n";
        let gate = if single_pass {
            format!("{by_name} AND NOT {big} AS by_name, {big} AS big")
        } else {
            format!("{by_name} AS by_name")
        };
        // With a level, the mirror's size only picks the plan, so counting
        // it stops once the mirror is big.
        let mirror_rows = if single_pass {
            format!("(SELECT FROM {TABLE} WHERE {MIRROR_FILTER} LIMIT (SELECT n FROM span) / 10 + 1) capped")
        } else {
            format!("{TABLE} WHERE {MIRROR_FILTER}")
        };
        ctes.push(format!(
            "span AS (SELECT coalesce(max(id) - min(id) + 1, 0) AS n FROM {TABLE}), \
             mirror AS (SELECT count(*) AS n FROM {mirror_rows}), \
             gate AS (SELECT {gate} FROM mirror m, span s)"
        ));
        let by_name = if single_pass {
            ctes.push(format!(
                "matched AS MATERIALIZED (SELECT id FROM {TABLE} {})",
                where_clause(&filters)
            ));
            format!(
                "SELECT {logs} WHERE id IN ({})",
                page_of("id FROM matched", &[], "id")
            )
        } else {
            page_of(&logs, &filters, "id + 0")
        };
        ctes.push(format!(
            "page AS ( \
               SELECT * FROM ({by_name}) by_name WHERE {BY_NAME} \
               UNION ALL \
               SELECT * FROM ({}) by_id WHERE NOT {BY_NAME})",
            page_of(&logs, &filters, "id")
        ));
    } else {
        ctes.push(format!("page AS ({})", page_of(&logs, &filters, "id")));
    }

    // `newer` only matters when `page` is computed from it: a cursor
    // page with no deprecated `page`. Without a cursor the first row
    // returned is the newest match, so nothing is newer.
    let needs_newer = req.num_per_page > 0 && req.page == 0 && req.cursor != Cursor::Newest;
    let newer_than_page = "id > (SELECT max(id) FROM page)";
    // Where every matching row is read to count it anyway: one pass for
    // `total` and `newer`.
    let counted = |rows: &str| {
        let newer = if needs_newer {
            format!("count(*) FILTER (WHERE {newer_than_page})")
        } else {
            "0::int8".to_string()
        };
        format!("SELECT count(*) AS total, {newer} AS newer FROM {rows}")
    };
    let stats = if single_pass {
        let by_text: Vec<String> = std::iter::once(mirror_by_text)
            .chain(filters[1..].iter().cloned())
            .collect();
        format!(
            "SELECT * FROM ({}) kept WHERE {BY_NAME} \
             UNION ALL SELECT * FROM ({}) whole WHERE {BIG} \
             UNION ALL SELECT * FROM ({}) named WHERE NOT ({BY_NAME} OR {BIG})",
            counted("matched"),
            counted(&format!("{TABLE} {}", where_clause(&by_text))),
            counted(&format!("{TABLE} {}", where_clause(&filters)))
        )
    } else if by_mirror {
        // The mirror's count from the name index is its total.
        let newer = if needs_newer {
            format!(
                "(SELECT count(*) FROM {TABLE} {})",
                where_clause(&filters_with(&filters, Some(newer_than_page)))
            )
        } else {
            "0::int8".to_string()
        };
        format!("SELECT (SELECT n FROM mirror) AS total, {newer} AS newer")
    } else {
        counted(&format!("{TABLE} {}", where_clause(&filters)))
    };
    ctes.push(format!("stats AS ({stats})"));

    let sql = format!(
        "WITH RECURSIVE {} \
         SELECT s.total, s.newer, p.id, p.flow_name, p.error_message, p.error_type, \
                floor(extract(epoch FROM p.error_timestamp) * 1000)::int8 AS error_ms \
         FROM stats s LEFT JOIN page p ON true ORDER BY p.id DESC",
        ctes.join(", ")
    );
    Plan { sql, params }
}

fn filters_with(filters: &[String], extra: Option<&str>) -> Vec<String> {
    filters
        .iter()
        .cloned()
        .chain(extra.map(str::to_string))
        .collect()
}

fn where_clause(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Level;

    fn req(flow: &str, level: Level, page: i64, num_per_page: i64, cursor: Cursor) -> LogsRequest {
        LogsRequest {
            flow_job_name: flow.into(),
            level,
            page,
            num_per_page,
            cursor,
        }
    }

    #[test]
    fn user_input_only_ever_travels_as_parameters() {
        let evil = "'; DROP TABLE peerdb_stats.flow_errors; --";
        let p = plan(&req(evil, Level::Warn, 2, 10, Cursor::After(7)));
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
        assert!(p.sql.contains("strpos(n, $1)") && p.sql.contains("error_type = $2"));
        assert!(p.sql.contains("id > $3") && p.sql.contains("ORDER BY id ASC LIMIT $4 OFFSET $5"));
    }

    #[test]
    fn a_mirror_page_goes_through_whichever_index_reads_less() {
        let p = plan(&req("m", Level::All, 0, 50, Cursor::Newest));
        assert!(p.sql.contains(
            "gate AS (SELECT ($2::float8 + $3::float8) * s.n > 3 * (m.n::float8 ^ 2) AS by_name FROM mirror m, span s)"
        ));
        assert!(p.sql.contains(
            "ORDER BY id + 0 DESC LIMIT $2 OFFSET $3) by_name WHERE (SELECT by_name FROM gate)"
        ));
        assert!(p.sql.contains(
            "ORDER BY id DESC LIMIT $2 OFFSET $3) by_id WHERE NOT (SELECT by_name FROM gate)"
        ));
        // The mirror's count is its total when no level narrows it.
        assert!(p
            .sql
            .contains("SELECT (SELECT n FROM mirror) AS total, 0::int8 AS newer"));
        assert!(!p.sql.contains("matched"));
    }

    #[test]
    fn with_a_level_a_small_mirror_is_read_once_and_a_big_one_in_one_sequential_pass() {
        let p = plan(&req("m", Level::Error, 0, 50, Cursor::Before(9)));
        assert!(p.sql.contains(
            "mirror AS (SELECT count(*) AS n FROM (SELECT FROM peerdb_stats.flow_errors \
             WHERE flow_name = ANY((SELECT names FROM flows)::text[]) LIMIT (SELECT n FROM span) / 10 + 1) capped)"
        ));
        assert!(p.sql.contains(
            "gate AS (SELECT ($4::float8 + $5::float8) * s.n > 0.005 * (m.n::float8 ^ 2) AND NOT 10 * m.n > s.n AS by_name, \
             10 * m.n > s.n AS big FROM mirror m, span s)"
        ));
        assert!(p.sql.contains(
            "matched AS MATERIALIZED (SELECT id FROM peerdb_stats.flow_errors \
             WHERE flow_name = ANY((SELECT names FROM flows)::text[]) AND error_type = $2)"
        ));
        assert!(p.sql.contains(
            "WHERE id IN (SELECT id FROM matched WHERE id < $3 ORDER BY id DESC LIMIT $4 OFFSET $5)) by_name"
        ));
        assert!(p.sql.contains(
            "SELECT * FROM (SELECT count(*) AS total, count(*) FILTER (WHERE id > (SELECT max(id) FROM page)) AS newer \
             FROM matched) kept WHERE (SELECT by_name FROM gate) \
             UNION ALL SELECT * FROM (SELECT count(*) AS total, count(*) FILTER (WHERE id > (SELECT max(id) FROM page)) AS newer \
             FROM peerdb_stats.flow_errors WHERE strpos(flow_name, $1) > 0 AND error_type = $2) whole \
             WHERE (SELECT big FROM gate) \
             UNION ALL SELECT * FROM (SELECT count(*) AS total, count(*) FILTER (WHERE id > (SELECT max(id) FROM page)) AS newer \
             FROM peerdb_stats.flow_errors WHERE flow_name = ANY((SELECT names FROM flows)::text[]) AND error_type = $2) named \
             WHERE NOT ((SELECT by_name FROM gate) OR (SELECT big FROM gate))"
        ));
    }

    #[test]
    fn no_filters_no_cursor() {
        let p = plan(&req("", Level::All, 0, 50, Cursor::Newest));
        assert_eq!(p.params, vec![Param::Int(50), Param::Int(0)]);
        assert!(p.sql.contains("ORDER BY id DESC LIMIT $1 OFFSET $2"));
        assert!(!p.sql.contains("names"));
    }

    #[test]
    fn deprecated_page_skips_whole_pages_after_the_cursor() {
        let p = plan(&req("", Level::All, 3, 20, Cursor::Before(100)));
        assert_eq!(
            p.params,
            vec![Param::Int(100), Param::Int(20), Param::Int(40)]
        );
        let p = plan(&req("", Level::All, i64::MAX, 1000, Cursor::Newest));
        assert_eq!(p.params, vec![Param::Int(1000), Param::Int(i64::MAX)]);
    }

    #[test]
    fn zero_page_size_reads_no_rows_and_only_the_count() {
        let p = plan(&req("m", Level::Error, 4, 0, Cursor::Before(9)));
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
        assert!(p.sql.contains("AS total, 0::int8 AS newer"));
    }

    #[test]
    fn newer_is_counted_only_for_a_cursor_page_and_where_it_is_cheapest() {
        let newest = plan(&req("", Level::All, 0, 50, Cursor::Newest));
        assert!(newest.sql.contains("0::int8 AS newer"));
        let deprecated_page = plan(&req("", Level::All, 3, 50, Cursor::Before(9)));
        assert!(deprecated_page.sql.contains("0::int8 AS newer"));
        let cursor = plan(&req("", Level::Info, 0, 50, Cursor::Before(9)));
        assert!(cursor
            .sql
            .contains("count(*) FILTER (WHERE id > (SELECT max(id) FROM page)) AS newer"));
        let mirror = plan(&req("m", Level::All, 0, 50, Cursor::After(9)));
        assert!(mirror.sql.contains(
            "(SELECT count(*) FROM peerdb_stats.flow_errors WHERE flow_name = ANY((SELECT names FROM flows)::text[]) \
             AND id > (SELECT max(id) FROM page)) AS newer"
        ));
        let mirror_and_level = plan(&req("m", Level::Warn, 0, 50, Cursor::Newest));
        assert!(mirror_and_level
            .sql
            .contains("SELECT count(*) AS total, 0::int8 AS newer FROM matched"));
    }
}
