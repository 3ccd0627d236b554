//! PeerDB's catalog as the function finds it: PeerDB's own schema, a role
//! that may only read it, and realistic log lines.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use tokio_postgres::Client;

/// PeerDB's catalog table, exactly as PeerDB creates it.
pub const PEERDB_SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS peerdb_stats;
CREATE TABLE peerdb_stats.flow_errors (
    id BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    flow_name TEXT NOT NULL,
    error_message TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_timestamp TIMESTAMP NOT NULL DEFAULT now(),
    ack BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX idx_flow_errors_flow_name ON peerdb_stats.flow_errors (flow_name);
";

/// PeerDB's schema, and a reader role for it (see [`add_reader`]).
pub async fn provision(
    client: &Client,
    role: &str,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(PEERDB_SCHEMA).await?;
    add_reader(client, role, password).await
}

/// `role` (made if it does not exist yet: roles are the cluster's, shared
/// by its databases) with the least privilege the function needs: reading
/// the table.
pub async fn add_reader(
    client: &Client,
    role: &str,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} LOGIN PASSWORD '{password}';
               END IF;
             END $$;
             GRANT USAGE ON SCHEMA peerdb_stats TO {role};
             GRANT SELECT ON peerdb_stats.flow_errors TO {role};"
        ))
        .await
}

/// Appends `rows` log lines over `mirrors` mirrors (and their `clone_`
/// initial-load flows), two seconds apart and ending now: 80% info, 15%
/// warn, 5% error (but the quarter of mirrors named `*_to_bigquery*`,
/// whose would-be errors are warnings), 2% of all rows carrying a
/// multi-kilobyte stack trace.
/// Deterministic for given sizes. Leaves the table as autovacuum keeps a
/// live catalog: analyzed, and its pages marked all-visible.
pub async fn seed(client: &Client, rows: i64, mirrors: i32) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("SELECT setseed(0.4242)").await?;
    client
        .execute(
            r#"
WITH mirrors AS (
    SELECT i,
           (ARRAY['orders','users','events','billing','inventory','payments','sessions','audit'])[i % 8 + 1]
           || (ARRAY['_to_snowflake','_to_clickhouse','_cdc','_to_bigquery'])[(i + i / 8) % 4 + 1]
           -- Zero-padded, so that no suffixed name contains another.
           || CASE WHEN i >= 8 THEN '_v' || lpad((i / 8 + 1)::text, 2, '0') ELSE '' END AS name,
           (ARRAY['orders','users','events','invoices','stock','payments','sessions','audit_log'])[i % 8 + 1] AS tbl
    FROM generate_series(0, $2::int - 1) i
), src AS (
    SELECT g, random() AS kind, random() AS flow, floor(random() * $2::int)::int AS mirror,
           (random() * 5000)::int AS n
    FROM generate_series(1, $1::int8) g
)
INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type, error_timestamp)
SELECT CASE WHEN s.flow < 0.1 THEN 'clone_' || m.name || '_public.' || m.tbl ELSE m.name END,
       CASE
         WHEN s.kind < 0.40 THEN format('pulled %s records from source for batch %s', s.n, s.g / 7)
         WHEN s.kind < 0.60 THEN format('normalized %s records into public.%s', s.n, m.tbl)
         WHEN s.kind < 0.80 THEN format('synced %s records to destination, sync batch %s, lsn 0/%s', s.n, s.g / 7, to_hex(s.g * 4096))
         WHEN s.kind < 0.90 THEN format('replication slot peerflow_slot_%s lag is %s MB', m.name, s.n / 10)
         WHEN s.kind < 0.95 THEN format('retrying batch %s after destination timeout (attempt %s of 5)', s.g / 7, s.n % 5 + 1)
         WHEN s.kind < 0.98 THEN format('failed to push records to destination: table %s does not exist', m.tbl)
         ELSE format(E'failed to sync records for mirror %s: ERROR: deadlock detected (SQLSTATE 40P01)\n\ngoroutine %s [running]:\n', m.name, s.n)
              || repeat(format(E'github.com/PeerDB-io/peerdb/flow/connectors/postgres.(*PostgresConnector).SyncRecords(0xc000%s, {0x2b4c9a0, 0xc0012e4f00})\n\t/root/flow/connectors/postgres/postgres.go:%s +0x1a4\n', to_hex(s.n), s.n % 900), 24)
       END,
       -- The BigQuery mirrors are healthy: they log no errors, only warnings.
       CASE WHEN s.kind < 0.80 THEN 'info' WHEN s.kind < 0.95 OR m.name LIKE '%\_to\_bigquery%' THEN 'warn' ELSE 'error' END,
       (now() AT TIME ZONE 'UTC') - make_interval(secs => ($1::int8 - s.g) * 2)
FROM src s JOIN mirrors m ON m.i = s.mirror
ORDER BY s.g
"#,
            &[&rows, &mirrors],
        )
        .await?;
    // The throwaway server commits asynchronously, and VACUUM marks a page
    // all-visible only once its rows' commit is flushed: CHECKPOINT does.
    client.batch_execute("CHECKPOINT").await?;
    client
        .batch_execute("VACUUM ANALYZE peerdb_stats.flow_errors")
        .await
}

/// `psql` running the SQL file `file` against `url` as a catalog's owner
/// runs the accelerator's files, with `vars` as psql variables.
pub fn psql(url: &str, file: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-q", "-d", url, "-f"])
        .arg(file)
        .stdin(Stdio::null());
    for (name, value) in vars {
        command.args(["-v", &format!("{name}={value}")]);
    }
    command
}

/// What went wrong in [`psql`]'s run of `file`, with its output.
pub fn psql_outcome(file: &Path, out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "psql -f {} failed ({}): {}{}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
