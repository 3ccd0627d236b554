//! The accelerator (`sql/accelerator-install.sql`, `sql/accelerator-uninstall.sql`)
//! against a real throwaway Postgres holding PeerDB's exact schema: the SQL
//! files run through `psql -f` as the catalog's owner runs them, PeerDB
//! writes as a role of its own with only `INSERT`, and after every change
//! the summary is compared bucket by bucket with `count(*)` on the table,
//! and the counts the function will derive from it (`total`, and the rows
//! newer than an id) with the same counts taken on the table.
//!
//! One server per run, a database per test.

use std::path::Path;
use std::sync::OnceLock;

use testkit::{add_reader, provision, psql, psql_outcome, seed, ThrowawayPg, SUPERUSER};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Owns PeerDB's schema and table, and runs the SQL files.
const OWNER: &str = "catalog_owner";
/// The role PeerDB writes as: `INSERT` on the table, nothing else.
const WRITER: &str = "peerdb_writer";
/// The function's role: `SELECT` only.
const READER: &str = "logs_reader";
const PASSWORD: &str = "secret-pw";

/// PeerDB's own statement (flow/alerting/alerting.go, `InsertFlowLog`).
const PEERDB_INSERT: &str =
    "INSERT INTO peerdb_stats.flow_errors(flow_name,error_message,error_type) VALUES($1,$2,$3)";

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/accelerator-install.sql");
const UNINSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/accelerator-uninstall.sql");
const INSTALL_TEXT: &str = include_str!("../sql/accelerator-install.sql");

/// 2^22, the coarse bucket width: tests start ids just below it, so that
/// their rows cross buckets of both widths.
const COARSE: i64 = 1 << 22;

struct Server {
    pg: ThrowawayPg,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let pg = ThrowawayPg::start(&["max_connections=200"]).expect("start a throwaway Postgres");
        let url = pg.url(SUPERUSER, "postgres");
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let admin = connect(&url).await;
                    for role in [OWNER, WRITER, READER, PLAIN_READER] {
                        admin
                            .batch_execute(&format!(
                                "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"
                            ))
                            .await
                            .unwrap();
                    }
                })
        })
        .join()
        .unwrap();
        Server { pg }
    })
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own with PeerDB's schema, owned by [`OWNER`].
struct Catalog {
    db: String,
    owner: Client,
}

impl Catalog {
    /// PeerDB's schema, its ids starting at `first_id`, and `rows` seeded
    /// log lines over `mirrors` mirrors.
    async fn new(name: &str, first_id: i64, rows: i64, mirrors: i32) -> Catalog {
        Catalog::spaced(name, first_id, 1, rows, mirrors).await
    }

    /// As [`Catalog::new`], with ids `step` apart: a few rows then span
    /// many buckets.
    async fn spaced(name: &str, first_id: i64, step: i64, rows: i64, mirrors: i32) -> Catalog {
        let server = server();
        let db = format!("acc_{name}");
        let admin = connect(&server.pg.url(SUPERUSER, "postgres")).await;
        for statement in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db} OWNER {OWNER}"),
        ] {
            admin.batch_execute(&statement).await.unwrap();
        }
        let catalog = Catalog {
            owner: connect(&url(OWNER, &db)).await,
            db,
        };
        provision(&catalog.owner, READER, PASSWORD).await.unwrap();
        catalog
            .owner
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA peerdb_stats TO {WRITER};
                 GRANT INSERT ON peerdb_stats.flow_errors TO {WRITER};
                 ALTER TABLE peerdb_stats.flow_errors ALTER COLUMN id SET INCREMENT BY {step} RESTART WITH {first_id};"
            ))
            .await
            .unwrap();
        if rows > 0 {
            // seed ends with a CHECKPOINT, which needs the superuser.
            let superuser = connect(&url(SUPERUSER, &catalog.db)).await;
            seed(&superuser, rows, mirrors).await.unwrap();
        }
        catalog
    }

    async fn connect_as(&self, role: &str) -> Client {
        connect(&url(role, &self.db)).await
    }

    /// Runs a SQL file as the catalog's owner does; its output on failure.
    async fn psql(&self, file: &str, reader: Option<&str>) -> Result<(), String> {
        let vars: Vec<(&str, &str)> = reader.map(|r| ("reader", r)).into_iter().collect();
        let mut command = psql(&url(OWNER, &self.db), Path::new(file), &vars);
        command.env("PGPASSWORD", PASSWORD);
        let out = tokio::process::Command::from(command)
            .output()
            .await
            .expect("run psql");
        psql_outcome(Path::new(file), &out)
    }

    async fn install(&self) {
        self.psql(INSTALL, Some(READER)).await.unwrap();
    }

    async fn uninstall(&self) {
        self.psql(UNINSTALL, None).await.unwrap();
    }

    async fn rows(&self) -> i64 {
        self.owner
            .query_one("SELECT count(*) FROM peerdb_stats.flow_errors", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Makes the summary lie, as only a bypassed trigger could: which of
    /// summary and table the function reads then shows in its `total`.
    async fn falsify_summary(&self) {
        self.owner
            .batch_execute("UPDATE peerdb_stats.mirror_logs_counts SET n = n + 1000 WHERE bits = 22 AND error_type = 'info'")
            .await
            .unwrap();
    }

    /// The health check, as the install file documents it.
    async fn health(&self, client: &Client) -> String {
        client
            .query_one(&documented("health-check"), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The summary equals the table: every bucket of every width, and
    /// `total` for every name and level, all names, all levels. How the
    /// function combines the buckets is the alike test's to check.
    async fn assert_exact(&self, when: &str) {
        let c = &self.owner;
        let differing: i64 = c
            .query_one(
                "WITH actual AS (
                     SELECT flow_name, error_type, b.bits::smallint AS bits, id >> b.bits AS bucket, count(*) AS n
                     FROM peerdb_stats.flow_errors, (VALUES (14), (18), (22)) b(bits) GROUP BY 1, 2, 3, 4),
                 kept AS (SELECT flow_name, error_type, bits, bucket, n FROM peerdb_stats.mirror_logs_counts)
                 SELECT count(*) FROM ((TABLE actual EXCEPT ALL TABLE kept) UNION ALL (TABLE kept EXCEPT ALL TABLE actual)) d",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            differing, 0,
            "{when}: summary buckets differ from the table"
        );
        let hours_wrong: i64 = c
            .query_one(
                "WITH actual AS (
                     SELECT date_trunc('hour', error_timestamp) AS hour, error_type, (id & 7)::smallint AS stripe,
                            count(*) AS n, min(id) AS first, max(id) AS last
                     FROM peerdb_stats.flow_errors GROUP BY 1, 2, 3)
                 SELECT count(*) FROM actual a FULL JOIN peerdb_stats.mirror_logs_hours k USING (hour, error_type, stripe)
                 WHERE a.n IS DISTINCT FROM k.n OR NOT (k.first <= a.first AND a.last <= k.last)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            hours_wrong, 0,
            "{when}: hours miscounted or their ids out of bounds"
        );
        assert_eq!(self.health(c).await, "ok", "{when}: the health check");

        let names: Vec<String> = c
            .query(
                "SELECT DISTINCT flow_name FROM peerdb_stats.flow_errors",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut sets: Vec<(Vec<String>, Option<&str>)> = vec![(names.clone(), None)];
        for level in ["info", "warn", "error"] {
            sets.push((names.clone(), Some(level)));
        }
        for name in names.iter().take(3) {
            sets.push((vec![name.clone()], Some("error")));
            sets.push((vec![name.clone()], None));
        }
        for (names, level) in &sets {
            let row = c
                .query_one(
                    "SELECT (SELECT coalesce(sum(n), 0)::int8 FROM peerdb_stats.mirror_logs_counts
                             WHERE flow_name = ANY($1) AND ($2::text IS NULL OR error_type = $2) AND bits = 22),
                            (SELECT count(*) FROM peerdb_stats.flow_errors
                             WHERE flow_name = ANY($1) AND ($2::text IS NULL OR error_type = $2))",
                    &[names, level],
                )
                .await
                .unwrap();
            let (kept, actual): (i64, i64) = (row.get(0), row.get(1));
            assert_eq!(kept, actual, "{when}: total for {names:?} {level:?}");
        }
    }
}

/// The table's lowest and highest ids.
async fn id_bounds(c: &Client) -> (i64, i64) {
    let r = c
        .query_one("SELECT min(id), max(id) FROM peerdb_stats.flow_errors", &[])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn url(role: &str, db: &str) -> String {
    let base = server().pg.url(role, db);
    if role == SUPERUSER {
        base
    } else {
        base.replacen(&format!("{role}@"), &format!("{role}:{PASSWORD}@"), 1)
    }
}

/// A query the install file documents in its header, between
/// `-- <name>:begin` and `-- <name>:end`, so that what operators and the
/// function are told to run is what is tested.
fn documented(name: &str) -> String {
    let begin = format!("-- {name}:begin\n");
    let end = format!("-- {name}:end\n");
    let from = INSTALL_TEXT.find(&begin).expect("begin marker") + begin.len();
    let to = INSTALL_TEXT.find(&end).expect("end marker");
    INSTALL_TEXT[from..to]
        .lines()
        .map(|l| l.strip_prefix("--").expect("a comment line").trim_start())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the catalog holds beyond PostgreSQL's own schemas: every relation
/// (with its kind and grants; TOAST tables by kind, their names carry an
/// oid), function, trigger and index, and the table's columns.
async fn catalog_objects(c: &Client) -> Vec<String> {
    c.query(
        "SELECT 'class ' || n.nspname || '.' || regexp_replace(c.relname, '^pg_toast_[0-9]+', 'pg_toast_<oid>')
                || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
         UNION ALL
         SELECT 'schema ' || nspname || ' ' || coalesce(nspacl::text, '') FROM pg_namespace
         UNION ALL
         SELECT 'proc ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
         UNION ALL
         SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
         UNION ALL
         SELECT 'index ' || pg_get_indexdef(indexrelid) || ' ' || indisvalid FROM pg_index
         WHERE indrelid = 'peerdb_stats.flow_errors'::regclass
         UNION ALL
         SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || attidentity::text
                || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = 'peerdb_stats.flow_errors'::regclass AND a.attnum > 0
         ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// PeerDB's own part of it: the table's columns and PeerDB's two indexes.
async fn peerdb_objects(c: &Client) -> Vec<String> {
    catalog_objects(c)
        .await
        .into_iter()
        .filter(|o| {
            o.starts_with("column ")
                || o.contains("flow_errors_pkey")
                || o.contains("idx_flow_errors_flow_name")
        })
        .collect()
}

async fn rows_digest(c: &Client) -> String {
    c.query_one(
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(f::text, E'\\n' ORDER BY id)), '')
         FROM peerdb_stats.flow_errors f",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// A small deterministic generator (xorshift), so that runs repeat.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const MIRRORS: [&str; 5] = [
    "orders_cdc",
    "users_to_snowflake",
    "clone_orders_cdc_public.orders",
    "events_to_clickhouse",
    "billing_to_bigquery",
];
const LEVELS: [&str; 3] = ["info", "warn", "error"];

#[tokio::test]
async fn installing_on_a_catalog_that_already_holds_rows_counts_them_exactly() {
    let catalog = Catalog::new("seeded", COARSE - 60_000, 120_000, 20).await;
    catalog.install().await;
    catalog.assert_exact("after install").await;
    let summary_rows: i64 = catalog
        .owner
        .query_one("SELECT count(*) FROM peerdb_stats.mirror_logs_counts", &[])
        .await
        .unwrap()
        .get(0);
    assert!(summary_rows > 0);
}

#[tokio::test]
async fn installing_twice_is_harmless_and_leaves_one_of_everything() {
    let catalog = Catalog::new("twice", COARSE - 20_000, 40_000, 10).await;
    catalog.install().await;
    let once = catalog_objects(&catalog.owner).await;
    catalog.install().await;
    assert_eq!(catalog_objects(&catalog.owner).await, once);
    catalog.assert_exact("after the second install").await;
    let marker: Vec<(i32, Vec<i16>)> = catalog
        .owner
        .query(
            "SELECT version, bits FROM peerdb_stats.mirror_logs_accelerator",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(marker, [(3, vec![14, 18, 22])]);
    // And rows written between the two still count once.
    let writer = catalog.connect_as(WRITER).await;
    writer
        .execute(PEERDB_INSERT, &[&"orders_cdc", &"between", &"info"])
        .await
        .unwrap();
    catalog.install().await;
    catalog.assert_exact("after a third install").await;
}

#[tokio::test]
async fn uninstall_removes_every_object_it_made_and_leaves_peerdb_untouched() {
    let catalog = Catalog::new("uninstall", 1, 30_000, 10).await;
    let before = catalog_objects(&catalog.owner).await;
    let peerdb_before = peerdb_objects(&catalog.owner).await;
    let rows_before = rows_digest(&catalog.owner).await;

    catalog.install().await;
    assert_eq!(peerdb_objects(&catalog.owner).await, peerdb_before);
    assert_eq!(rows_digest(&catalog.owner).await, rows_before);
    let added: Vec<String> = catalog_objects(&catalog.owner)
        .await
        .into_iter()
        .filter(|o| !before.contains(o))
        .collect();
    assert!(
        added.iter().any(|o| o.contains("mirror_logs_counts")),
        "{added:#?}"
    );

    catalog.uninstall().await;
    assert_eq!(catalog_objects(&catalog.owner).await, before);
    assert_eq!(rows_digest(&catalog.owner).await, rows_before);
    // Harmless again, and PeerDB's insert still works without it.
    catalog.uninstall().await;
    assert_eq!(catalog_objects(&catalog.owner).await, before);
    let writer = catalog.connect_as(WRITER).await;
    writer
        .execute(PEERDB_INSERT, &[&"orders_cdc", &"after", &"warn"])
        .await
        .unwrap();
}

#[tokio::test]
async fn install_without_a_reader_role_fails_and_makes_nothing() {
    let catalog = Catalog::new("no_reader", 1, 1_000, 5).await;
    let before = catalog_objects(&catalog.owner).await;
    let missing = catalog.psql(INSTALL, None).await.unwrap_err();
    assert!(missing.contains("reader"), "{missing}");
    let unknown = catalog
        .psql(INSTALL, Some("no_such_role"))
        .await
        .unwrap_err();
    assert!(unknown.contains("no_such_role"), "{unknown}");
    assert_eq!(catalog_objects(&catalog.owner).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sessions_inserting_at_once_with_deletes_lose_no_count() {
    let catalog = Catalog::new("concurrent", COARSE - 4_000, 2_000, 5).await;
    catalog.install().await;
    let start = catalog.rows().await;
    let mut sessions = Vec::new();
    for session in 0..16u64 {
        let writer = catalog.connect_as(WRITER).await;
        sessions.push(tokio::spawn(async move {
            let insert = writer.prepare(PEERDB_INSERT).await.unwrap();
            let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (session + 1));
            for i in 0..500 {
                // Few mirrors and levels: sessions collide on the same buckets.
                let mirror = MIRRORS[dice.below(MIRRORS.len() as u64) as usize];
                let level = LEVELS[dice.below(LEVELS.len() as u64) as usize];
                writer
                    .execute(
                        &insert,
                        &[&mirror, &format!("line {i} of {session}"), &level],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    // An operator purging at the same time, by id range and by mirror.
    let operator = catalog.connect_as(OWNER).await;
    let purge = tokio::spawn(async move {
        let mut deleted = 0u64;
        for round in 0..40 {
            let statement = if round % 4 == 3 {
                "DELETE FROM peerdb_stats.flow_errors WHERE flow_name = 'users_to_snowflake' AND id % 3 = 0"
            } else {
                "DELETE FROM peerdb_stats.flow_errors
                 WHERE id IN (SELECT id FROM peerdb_stats.flow_errors ORDER BY random() LIMIT 25)"
            };
            deleted += operator.execute(statement, &[]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        deleted
    });
    for session in sessions {
        session.await.unwrap();
    }
    let deleted = purge.await.unwrap() as i64;
    assert!(deleted > 0);
    assert_eq!(catalog.rows().await, start + 16 * 500 - deleted);
    catalog
        .assert_exact("after 16 sessions × 500 inserts and deletes")
        .await;
}

#[tokio::test]
async fn multi_row_inserts_are_counted_across_buckets() {
    let catalog = Catalog::new("multi_row", COARSE - 70_000, 0, 1).await;
    catalog.install().await;
    catalog
        .owner
        .batch_execute(
            "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
             SELECT (ARRAY['a', 'b', 'c', 'clone_a'])[g % 4 + 1], 'm' || g, (ARRAY['info', 'warn', 'error'])[g % 3 + 1]
             FROM generate_series(1, 140000) g;
             INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
             VALUES ('a', 'x', 'info'), ('a', 'y', 'info'), ('d', 'z', 'error');",
        )
        .await
        .unwrap();
    catalog
        .assert_exact("after INSERT ... SELECT and VALUES lists")
        .await;
    // A rolled-back insert counts nothing.
    catalog
        .owner
        .batch_execute(
            "BEGIN;
             INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
             SELECT 'e', 'gone', 'warn' FROM generate_series(1, 500);
             ROLLBACK;",
        )
        .await
        .unwrap();
    catalog.assert_exact("after a rolled-back insert").await;
}

#[tokio::test]
async fn deletes_a_rolled_back_delete_and_truncate_keep_counts_exact() {
    let catalog = Catalog::new("deletes", COARSE - 50_000, 100_000, 10).await;
    catalog.install().await;
    let c = &catalog.owner;
    let (lo, hi) = id_bounds(c).await;
    c.execute(
        "DELETE FROM peerdb_stats.flow_errors WHERE id BETWEEN $1 AND $2",
        &[&(lo + 10_000), &(lo + 60_000)],
    )
    .await
    .unwrap();
    catalog.assert_exact("after a DELETE by id range").await;

    let mirror: String = c
        .query_one(
            "SELECT flow_name FROM peerdb_stats.flow_errors GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "DELETE FROM peerdb_stats.flow_errors WHERE flow_name = $1",
        &[&mirror],
    )
    .await
    .unwrap();
    catalog.assert_exact("after a DELETE of a mirror").await;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM peerdb_stats.mirror_logs_counts WHERE flow_name = $1",
            &[&mirror],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "a deleted mirror leaves no empty buckets behind");

    c.batch_execute(&format!(
        "BEGIN;
         DELETE FROM peerdb_stats.flow_errors WHERE id > {};
         ROLLBACK;",
        hi - 30_000
    ))
    .await
    .unwrap();
    catalog.assert_exact("after a rolled-back DELETE").await;

    c.batch_execute(
        "BEGIN;
         DELETE FROM peerdb_stats.flow_errors WHERE error_type = 'info' AND id % 2 = 0;
         INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
         SELECT 'orders_cdc', 'in the same transaction', 'info' FROM generate_series(1, 300);
         COMMIT;",
    )
    .await
    .unwrap();
    catalog
        .assert_exact("after a DELETE and INSERT in one transaction")
        .await;

    c.batch_execute("BEGIN; TRUNCATE peerdb_stats.flow_errors; ROLLBACK;")
        .await
        .unwrap();
    catalog.assert_exact("after a rolled-back TRUNCATE").await;

    c.batch_execute("TRUNCATE peerdb_stats.flow_errors")
        .await
        .unwrap();
    catalog.assert_exact("after TRUNCATE").await;
    let summary_rows: i64 = c
        .query_one("SELECT count(*) FROM peerdb_stats.mirror_logs_counts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(summary_rows, 0);

    let writer = catalog.connect_as(WRITER).await;
    for (i, level) in LEVELS.iter().cycle().take(30).enumerate() {
        writer
            .execute(PEERDB_INSERT, &[&MIRRORS[i % 5], &"after truncate", level])
            .await
            .unwrap();
    }
    catalog
        .assert_exact("after inserts following TRUNCATE")
        .await;
}

#[tokio::test]
async fn updates_moving_rows_between_mirrors_levels_hours_or_ids_keep_counts_exact() {
    let catalog = Catalog::new("updates", COARSE - 30_000, 60_000, 8).await;
    catalog.install().await;
    let c = &catalog.owner;
    c.batch_execute(
        "UPDATE peerdb_stats.flow_errors SET flow_name = 'renamed_mirror' WHERE id % 7 = 0;
         UPDATE peerdb_stats.flow_errors SET error_type = 'error' WHERE error_type = 'warn' AND id % 2 = 0;
         UPDATE peerdb_stats.flow_errors SET error_timestamp = error_timestamp - INTERVAL '3 hours' WHERE id % 5 = 0;",
    )
    .await
    .unwrap();
    catalog
        .assert_exact("after UPDATEs of flow_name, error_type and error_timestamp")
        .await;
    // A new id moves a row to the newest bucket.
    c.batch_execute("UPDATE peerdb_stats.flow_errors SET id = DEFAULT WHERE id % 11 = 0")
        .await
        .unwrap();
    catalog
        .assert_exact("after UPDATE ... SET id = DEFAULT")
        .await;
    let before: Vec<String> = c
        .query(
            "SELECT format('%s %s %s %s', flow_name, error_type, bits, bucket) || ' ' || n
             FROM peerdb_stats.mirror_logs_counts ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute("UPDATE peerdb_stats.flow_errors SET ack = true")
        .await
        .unwrap();
    let after: Vec<String> = c
        .query(
            "SELECT format('%s %s %s %s', flow_name, error_type, bits, bucket) || ' ' || n
             FROM peerdb_stats.mirror_logs_counts ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(after, before, "an UPDATE of ack changes no count");
}

#[tokio::test]
async fn the_reader_can_read_the_summary_and_marker_but_not_write_them() {
    let catalog = Catalog::new("reader", 1, 5_000, 5).await;
    catalog.install().await;
    let reader = catalog.connect_as(READER).await;
    let total: i64 = reader
        .query_one(
            "SELECT (SELECT sum(n)::int8 FROM peerdb_stats.mirror_logs_counts WHERE bits = 22)
                  + (SELECT sum(n)::int8 FROM peerdb_stats.mirror_logs_hours)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2 * catalog.rows().await);
    let found = reader
        .query_one(
            "SELECT to_regclass('peerdb_stats.mirror_logs_accelerator') IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(found.get::<_, bool>(0));
    let detected = reader.query(&documented("detection"), &[]).await.unwrap();
    assert_eq!(detected.len(), 1);
    assert_eq!(detected[0].get::<_, i32>("version"), 3);
    assert_eq!(catalog.health(&reader).await, "ok");

    for statement in [
        "INSERT INTO peerdb_stats.mirror_logs_counts VALUES ('x', 'info', 14, 0, 1)",
        "UPDATE peerdb_stats.mirror_logs_counts SET n = n + 1",
        "DELETE FROM peerdb_stats.mirror_logs_counts",
        "TRUNCATE peerdb_stats.mirror_logs_counts",
        "UPDATE peerdb_stats.mirror_logs_hours SET n = n + 1",
        "UPDATE peerdb_stats.mirror_logs_accelerator SET version = 4",
        "DELETE FROM peerdb_stats.mirror_logs_accelerator",
        "DROP TABLE peerdb_stats.mirror_logs_counts",
        "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type) VALUES ('x', 'y', 'info')",
    ] {
        let err = reader.batch_execute(statement).await.unwrap_err();
        assert!(
            matches!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE)
            ),
            "{statement}: {err:?}"
        );
    }
    catalog.assert_exact("after the reader's attempts").await;
}

#[tokio::test]
async fn peerdbs_own_insert_works_unchanged_for_a_role_with_only_insert() {
    let catalog = Catalog::new("peerdb_insert", 1, 0, 1).await;
    let writer = catalog.connect_as(WRITER).await;
    writer
        .execute(PEERDB_INSERT, &[&"orders_cdc", &"before install", &"info"])
        .await
        .unwrap();
    catalog.install().await;
    // A new session and a pooled one that prepared the statement before.
    let fresh = catalog.connect_as(WRITER).await;
    for client in [&writer, &fresh] {
        let inserted = client
            .execute(
                PEERDB_INSERT,
                &[
                    &"orders_cdc",
                    &"failed to sync: ERROR: deadlock detected",
                    &"error",
                ],
            )
            .await
            .unwrap();
        assert_eq!(inserted, 1);
    }
    let stored: Vec<(String, String, bool)> = catalog
        .owner
        .query(
            "SELECT flow_name, error_type, ack FROM peerdb_stats.flow_errors ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|(f, _, ack)| f == "orders_cdc" && !ack));
    catalog.assert_exact("after PeerDB's inserts").await;
}

#[tokio::test]
async fn a_disabled_trigger_is_detected_and_reinstalling_repairs_the_summary() {
    let catalog = Catalog::new("drift", 1, 5_000, 5).await;
    catalog.install().await;
    let reader = catalog.connect_as(READER).await;
    let c = &catalog.owner;
    c.batch_execute(
        "ALTER TABLE peerdb_stats.flow_errors DISABLE TRIGGER mirror_logs_count_inserts",
    )
    .await
    .unwrap();
    assert!(
        reader
            .query(&documented("detection"), &[])
            .await
            .unwrap()
            .is_empty(),
        "a disabled trigger: the function must not use the summary"
    );
    c.batch_execute(
        "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type)
         SELECT 'orders_cdc', 'uncounted', 'warn' FROM generate_series(1, 7)",
    )
    .await
    .unwrap();
    let health = catalog.health(&reader).await;
    assert!(health.starts_with("drifted"), "{health}");
    assert!(health.contains("7 rows miscounted"), "{health}");
    assert!(!health.ends_with(" 0 hours differ"), "{health}");

    c.batch_execute(
        "ALTER TABLE peerdb_stats.flow_errors ENABLE TRIGGER mirror_logs_count_inserts",
    )
    .await
    .unwrap();
    catalog.install().await;
    assert_eq!(
        reader
            .query(&documented("detection"), &[])
            .await
            .unwrap()
            .len(),
        1
    );
    catalog.assert_exact("after reinstalling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installing_while_peerdb_writes_misses_and_doubles_no_row() {
    let catalog = Catalog::new("live_install", COARSE - 30_000, 20_000, 5).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for session in 0..4u64 {
        let writer = catalog.connect_as(WRITER).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ (session + 1));
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mirror = MIRRORS[dice.below(MIRRORS.len() as u64) as usize];
                let level = LEVELS[dice.below(LEVELS.len() as u64) as usize];
                writer
                    .execute(PEERDB_INSERT, &[&mirror, &"during install", &level])
                    .await
                    .unwrap();
                written += 1;
            }
            written
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    catalog.install().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    assert!(written > 0);
    assert_eq!(catalog.rows().await, 20_000 + written as i64);
    catalog
        .assert_exact("after installing while PeerDB wrote")
        .await;
}

// The function reading the accelerator: its answers against the same
// function reading as a role the install did not grant it to, which
// therefore reads PeerDB's table alone, as it does without an accelerator.

/// The function's role that the accelerator was not granted to.
const PLAIN_READER: &str = "plain_reader";

/// The function as start-up builds it, reading as `role`, authentication
/// off (as behind PeerDB's UI).
async fn function(catalog: &Catalog, role: &str) -> axum::Router {
    let url = url(role, &catalog.db);
    peerdb_mirror_logs::startup::build(peerdb_mirror_logs::config::Config::from_vars(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PEERDB_LOGS_DISABLE_AUTH" => Some("true".into()),
        // Its documents would go to the test's stdout, uncaptured.
        "PEERDB_LOGS_DISABLE_METRICS" => Some("true".into()),
        _ => None,
    }))
    .await
}

/// The function's answer to `body`, which must be a 200.
async fn answer(app: &axum::Router, body: &serde_json::Value) -> serde_json::Value {
    use tower::ServiceExt;
    let request = axum::http::Request::post("/api/v1/mirrors/logs")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{body} -> {json}");
    json
}

/// `total` of every row, as `app` answers it.
async fn total(app: &axum::Router) -> i64 {
    answer(app, &serde_json::json!({"numPerPage": 0})).await["total"]
        .as_i64()
        .unwrap()
}

/// Requests of every shape the summary serves: each level, one mirror, a
/// substring naming several, one naming none; newest, cursors at both
/// ends, across bucket edges and past the newest id ("previous" on the
/// first page); page sizes 0, 1 and 50; a deprecated page. Then some of
/// those in time ranges, which the accelerator's time index serves.
async fn shapes(catalog: &Catalog) -> Vec<serde_json::Value> {
    let c = &catalog.owner;
    let (lo, hi) = id_bounds(c).await;
    let mirror: String = c
        .query_one(
            "SELECT flow_name FROM peerdb_stats.flow_errors WHERE flow_name NOT LIKE 'clone%' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let cursors = [
        (-1, -1),
        (hi, -1),
        ((lo + hi) / 2, -1),
        (COARSE, -1),
        (COARSE + (1 << 14), -1),
        (COARSE + 14 * (1 << 14), -1),
        (COARSE + 2 * (1 << 18), -1),
        (lo + 3, -1),
        (-1, hi),
        (-1, COARSE - 1),
        (-1, COARSE + (1 << 18)),
        (-1, (lo + hi) / 2),
        (-1, lo - 1),
    ];
    // Time ranges (ms since the epoch) from the rows' own times: the
    // middle half, the newest quarter, the oldest quarter, and none.
    let quartile = |q: f64| {
        format!(
            "SELECT floor(extract(epoch FROM error_timestamp) * 1000)::int8 FROM peerdb_stats.flow_errors
             ORDER BY error_timestamp OFFSET (SELECT (count(*) * {q})::int8 FROM peerdb_stats.flow_errors) LIMIT 1"
        )
    };
    let mut at = Vec::new();
    for q in [0.25, 0.75] {
        at.push(
            c.query_one(&quartile(q), &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
        );
    }
    let ranges = [
        serde_json::json!({"fromTimestamp": at[0], "toTimestamp": at[1]}),
        serde_json::json!({"fromTimestamp": at[1]}),
        serde_json::json!({"toTimestamp": at[0]}),
        serde_json::json!({"fromTimestamp": 0, "toTimestamp": 1}),
    ];
    let mut shapes = Vec::new();
    for flow in ["", mirror.as_str(), "_cdc", "no_such_mirror"] {
        for level in ["all", "error", "warning", "info"] {
            for (before, after) in cursors {
                for (n, page) in [(50, 0), (1, 0), (0, 0), (20, 3)] {
                    shapes.push(serde_json::json!({
                        "flowJobName": flow, "level": level, "beforeId": before,
                        "afterId": after, "numPerPage": n, "page": page,
                    }));
                }
            }
            for range in &ranges {
                for (before, after) in [
                    (-1, -1),
                    (hi, -1),
                    ((lo + hi) / 2, -1),
                    (-1, (lo + hi) / 2),
                    (-1, lo - 1),
                ] {
                    for (n, page) in [(50, 0), (20, 3)] {
                        let mut shape = serde_json::json!({
                            "flowJobName": flow, "level": level, "beforeId": before,
                            "afterId": after, "numPerPage": n, "page": page,
                        });
                        shape
                            .as_object_mut()
                            .unwrap()
                            .extend(range.as_object().unwrap().clone());
                        shapes.push(shape);
                    }
                }
            }
        }
    }
    shapes
}

/// Every shape answered alike by `accelerated` and `plain`.
async fn assert_alike(
    catalog: &Catalog,
    accelerated: &axum::Router,
    plain: &axum::Router,
    when: &str,
) {
    let mut differ = Vec::new();
    let shapes = shapes(catalog).await;
    for body in &shapes {
        let (a, p) = (answer(accelerated, body).await, answer(plain, body).await);
        if a != p {
            differ.push(format!(
                "{body}: accelerated total {} page {}, plain total {} page {}",
                a["total"], a["page"], p["total"], p["page"]
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{when}: {} of {} answers differ:\n{}",
        differ.len(),
        shapes.len(),
        differ.join("\n")
    );
}

async fn with_plain_reader(catalog: &Catalog) {
    add_reader(&catalog.owner, PLAIN_READER, PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_function_answers_alike_with_and_without_the_accelerator() {
    // Ids 16 apart: the rows reach five 18-bit buckets past the coarse
    // edge, so that the shapes' cursors sum `newer` on both sides of the
    // page's bucket at every width.
    let catalog = Catalog::spaced("function_alike", COARSE - 100_000, 16, 80_000, 12).await;
    with_plain_reader(&catalog).await;
    catalog.install().await;
    let (accelerated, plain) = (
        function(&catalog, READER).await,
        function(&catalog, PLAIN_READER).await,
    );
    assert_alike(&catalog, &accelerated, &plain, "after install").await;
    // An operator's delete, one rolled back, and PeerDB writing again.
    catalog
        .owner
        .batch_execute(
            "DELETE FROM peerdb_stats.flow_errors WHERE id % 7 = 0 OR error_type = 'warn' AND id > 4194304;
             BEGIN; DELETE FROM peerdb_stats.flow_errors WHERE id % 3 = 0; ROLLBACK;",
        )
        .await
        .unwrap();
    let writer = catalog.connect_as(WRITER).await;
    for (i, mirror) in MIRRORS.iter().cycle().take(40).enumerate() {
        writer
            .execute(
                PEERDB_INSERT,
                &[mirror, &"after the delete", &LEVELS[i % 3]],
            )
            .await
            .unwrap();
    }
    // And rows written late with earlier rows' times, from all over the
    // table (an operator's import, a writer's clock): time order is not
    // id order.
    catalog
        .owner
        .batch_execute(
            "INSERT INTO peerdb_stats.flow_errors (flow_name, error_message, error_type, error_timestamp)
             SELECT flow_name, 'late', error_type, error_timestamp
             FROM peerdb_stats.flow_errors WHERE id % 97 = 5 ORDER BY md5(id::text) LIMIT 300",
        )
        .await
        .unwrap();
    assert_alike(&catalog, &accelerated, &plain, "after deletes and inserts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accelerator_installed_while_serving_is_used_within_a_minute_and_one_removed_at_once() {
    let catalog = Catalog::new("function_live", COARSE - 20_000, 40_000, 8).await;
    with_plain_reader(&catalog).await;
    let (served, plain) = (
        function(&catalog, READER).await,
        function(&catalog, PLAIN_READER).await,
    );
    let truth = total(&plain).await;
    assert_eq!(total(&served).await, truth);

    // PeerDB writes throughout; the function serves throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for session in 0..4usize {
        let writer = catalog.connect_as(WRITER).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (mirror, level) = (MIRRORS[(session + written) % 5], LEVELS[written % 3]);
                writer
                    .execute(PEERDB_INSERT, &[&mirror, &"while serving", &level])
                    .await
                    .unwrap();
                written += 1;
            }
        }));
    }
    let serving = {
        let (served, stop) = (served.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for level in ["all", "error"] {
                    answer(
                        &served,
                        &serde_json::json!({"level": level, "numPerPage": 10}),
                    )
                    .await;
                    answered += 1;
                }
            }
            answered
        })
    };
    catalog.install().await;
    catalog.uninstall().await;
    catalog.install().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(serving.await.unwrap() > 0);
    assert_alike(&catalog, &served, &plain, "after installs while serving").await;

    // Within a minute of the install, the function's total is the
    // summary's.
    let truth = total(&plain).await;
    catalog.falsify_summary().await;
    let started = std::time::Instant::now();
    while total(&served).await == truth {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the installed accelerator was not used within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Removed, it is read no more from the next request on.
    catalog.uninstall().await;
    assert_eq!(total(&served).await, truth);
}

#[tokio::test]
async fn an_older_install_is_read_around_until_the_install_file_runs_again() {
    // Version 1's marker, as its install file made it; and version 2's
    // state, with no hours and one update trigger.
    let older = [
        format!(
            "DROP TABLE peerdb_stats.mirror_logs_accelerator;
             CREATE TABLE peerdb_stats.mirror_logs_accelerator (
                 one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), version INTEGER NOT NULL,
                 fine_bits SMALLINT NOT NULL, coarse_bits SMALLINT NOT NULL, table_oid OID NOT NULL,
                 installed_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO peerdb_stats.mirror_logs_accelerator (version, fine_bits, coarse_bits, table_oid)
             VALUES (1, 16, 22, 'peerdb_stats.flow_errors'::regclass);
             GRANT SELECT ON peerdb_stats.mirror_logs_accelerator TO {READER};"
        ),
        "DROP TABLE peerdb_stats.mirror_logs_hours;
         DROP TRIGGER mirror_logs_count_updates_new ON peerdb_stats.flow_errors;
         ALTER TRIGGER mirror_logs_count_updates_old ON peerdb_stats.flow_errors RENAME TO mirror_logs_count_updates;
         UPDATE peerdb_stats.mirror_logs_accelerator SET version = 2;"
            .to_string(),
    ];
    let catalog = Catalog::new("upgrade", COARSE - 20_000, 40_000, 8).await;
    for (version, state) in (1..).zip(older) {
        catalog.install().await;
        catalog.owner.batch_execute(&state).await.unwrap();
        catalog.falsify_summary().await;
        let truth = catalog.rows().await;
        assert_eq!(
            total(&function(&catalog, READER).await).await,
            truth,
            "version {version} is read around"
        );

        catalog.install().await;
        catalog
            .assert_exact(&format!("after the upgrade from version {version}"))
            .await;
        catalog.falsify_summary().await;
        assert!(
            total(&function(&catalog, READER).await).await > truth,
            "the summary upgraded from version {version} is read"
        );
    }
}
