//! PeerDB's ListMirrorLogs, statement for statement: the page, then a
//! count over every matching row; each statement prepared once per
//! connection and cached, as pgx does by default.

use std::collections::HashMap;

use testkit::Scenario;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// PeerDB's ListMirrorNames (flow/cmd/mirror_status.go), verbatim.
const NAMES: &str = "select distinct flow_name from peerdb_stats.flow_errors where flow_name not like 'clone_%' order by flow_name";

/// What PeerDB answers: the page's ids, newest first; `total`; `page`.
pub type Answer = (Vec<i64>, i64, i64);

pub struct Reference {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Reference {
    pub fn new(client: Client) -> Reference {
        Reference {
            client,
            prepared: HashMap::new(),
        }
    }

    async fn statement(&mut self, sql: String) -> Statement {
        if let Some(s) = self.prepared.get(&sql) {
            return s.clone();
        }
        let s = self.client.prepare(&sql).await.unwrap();
        self.prepared.insert(sql, s.clone());
        s
    }

    /// `s` as PeerDB would answer it.
    pub async fn request(&mut self, s: &Scenario) -> Answer {
        let mut filters: Vec<String> = Vec::new();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if !s.flow_job_name.is_empty() {
            args.push(Box::new(s.flow_job_name.clone()));
            filters.push("position($1 in flow_name) > 0".into());
        }
        if let Some(level) = s.level() {
            // PeerDB matches the level as sent, and so finds nothing for
            // the UI's `warning`; what is measured is its statement for
            // the rows the function returns.
            let level = if level == "warning" { "warn" } else { level };
            args.push(Box::new(level.to_string()));
            filters.push(format!("error_type = ${}", args.len()));
        }
        // The filters beyond PeerDB's, as PeerDB would have written them
        // in its WHERE clause.
        for (bound, op) in [(s.from_ms, ">="), (s.to_ms, "<")] {
            if let Some(ms) = bound {
                args.push(Box::new(ms));
                filters.push(format!(
                    "error_timestamp {op} timestamp 'epoch' + ${}::int8 * interval '1 millisecond'",
                    args.len()
                ));
            }
        }
        if !s.message_contains.is_empty() {
            args.push(Box::new(s.message_contains.to_string()));
            filters.push(format!("position(${} in error_message) > 0", args.len()));
        }
        let count_filters = filters.clone();
        let count_args = args.len();
        let mut order = "desc";
        if s.before_id != 0 || s.after_id != 0 {
            if s.before_id != -1 {
                args.push(Box::new(s.before_id));
                filters.push(format!("id < ${}", args.len()));
            } else if s.after_id != -1 {
                args.push(Box::new(s.after_id));
                filters.push(format!("id > ${}", args.len()));
                order = "";
            }
        }
        let offset = if s.page != 0 {
            format!(" offset {}", (s.page - 1) * s.num_per_page)
        } else {
            String::new()
        };
        let sql = format!(
            "select id, flow_name, error_message, error_type, error_timestamp from peerdb_stats.flow_errors{} order by id {order} limit {}{offset}",
            where_of(&filters),
            s.num_per_page
        );
        let stmt = self.statement(sql).await;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
        let rows = self.client.query(&stmt, &params).await.unwrap();
        let mut logs: Vec<(i64, String, String, String, std::time::SystemTime)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        if order.is_empty() {
            logs.reverse();
        }
        let mut count_params: Vec<&(dyn ToSql + Sync)> = params[..count_args].to_vec();
        let (total, newer) = if let Some(first) = logs.first().map(|l| l.0) {
            let sql = format!(
                "select count(*), count(*) filter (where id > ${}) from peerdb_stats.flow_errors{}",
                count_args + 1,
                where_of(&count_filters)
            );
            let stmt = self.statement(sql).await;
            count_params.push(&first);
            let row = self.client.query_one(&stmt, &count_params).await.unwrap();
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        } else {
            let sql = format!(
                "select count(*) from peerdb_stats.flow_errors{}",
                where_of(&count_filters)
            );
            let stmt = self.statement(sql).await;
            (
                self.client
                    .query_one(&stmt, &count_params)
                    .await
                    .unwrap()
                    .get::<_, i64>(0),
                0,
            )
        };
        let page = if s.page == 0 && s.num_per_page != 0 {
            newer / s.num_per_page + 1
        } else {
            s.page
        };
        (logs.iter().map(|l| l.0).collect(), total, page)
    }

    /// PeerDB's answer to the names endpoint.
    pub async fn names(&mut self) -> Vec<String> {
        let stmt = self.statement(NAMES.to_string()).await;
        let rows = self.client.query(&stmt, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
}

fn where_of(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}
