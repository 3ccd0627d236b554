-- The mirror logs accelerator, version 3: opt-in, installed by the owner of
-- PeerDB's catalog table peerdb_stats.flow_errors.
--
--   psql "$CATALOG_URL" -v reader=<the function's role> -f sql/accelerator-install.sql
--
-- Idempotent: running it again rebuilds the summary from the table (so it
-- also repairs a summary that drifted, see the health check below, and
-- upgrades versions 1 and 2, which kept no hours).
-- sql/accelerator-uninstall.sql removes every object it makes. It never
-- changes PeerDB's columns, rows or indexes. It needs PostgreSQL 11 or later.
--
-- What it makes, all in schema peerdb_stats, all named mirror_logs_*:
--   mirror_logs_flow_type_id_idx  btree (flow_name, error_type, id) on
--       flow_errors: a mirror's rows of one level in id order (pages, and
--       the exact count inside one summary bucket). Built CONCURRENTLY.
--   mirror_logs_time_idx  btree (error_timestamp) INCLUDE (id, error_type)
--       on flow_errors: a time range's rows of a level counted, and their
--       ids bounded or sorted, from the index alone (a mirror filter reads
--       the range's rows, or meets the index above in a bitmap). Built
--       CONCURRENTLY. (Installs before it made a BRIN index,
--       mirror_logs_time_brin, in its place: running this file drops it.)
--   mirror_logs_counts  the summary: rows per (flow_name, error_type,
--       bucket) at three bucket widths, each 16 of the one below: bits = 14
--       (bucket = id >> 14, 16,384 ids wide), 18 (262,144) and 22 (4,194,304).
--   mirror_logs_hours  rows per (hour of error_timestamp, error_type,
--       stripe), stripe = id & 7, with bounds on their ids (first, last):
--       a time range's whole hours summed, its ids bounded, without
--       reading its rows.
--   mirror_logs_count_changes(), mirror_logs_count_truncate()  the trigger
--       functions (SECURITY DEFINER, so that PeerDB's inserts work whatever
--       role PeerDB writes as).
--   mirror_logs_count_inserts, _deletes, _updates_old, _updates_new
--       statement-level AFTER triggers with transition tables;
--       mirror_logs_count_truncate  AFTER TRUNCATE. They keep both
--       summaries exact in the same transaction as the change, so one
--       snapshot sees all three tables alike.
--   mirror_logs_accelerator  one row: the version and the bucket widths
--       (bits, finest first).
-- and grants the reader SELECT on the three tables (and USAGE on the
-- schema).
--
-- Using it (the function). total for names N and level L:
--   SELECT sum(n) FROM peerdb_stats.mirror_logs_counts
--   WHERE flow_name = ANY(N) AND error_type = L AND bits = 22
-- and the rows with id > X among them: whole 22-bit buckets above X's,
-- plus, at 18 bits, 14 bits and single ids in turn, those above X's inside
-- the enclosing bucket (or, when fewer, the enclosing bucket less those up
-- to X's), the ids counted in an index (at most 16,384 of them):
--   bits = 22 AND bucket > X >> 22
--   bits = 18 AND bucket > X >> 18 AND bucket < ((X >> 22) + 1) << 4
--   bits = 14 AND bucket > X >> 14 AND bucket < ((X >> 18) + 1) << 4
--   flow_errors: id > X AND id < ((X >> 14) + 1) << 14
-- The key leads with the width and the bucket, so each is one range of it.
-- A time range T with level L (or every level): the hours T holds whole
-- summed, the hours at its ends counted in mirror_logs_time_idx, and the
-- ids bounded by both; then the page walks the primary key between those
-- bounds:
--   SELECT sum(n), min(first), max(last) FROM peerdb_stats.mirror_logs_hours
--   WHERE hour >= T.from AND hour + INTERVAL '1 hour' <= T.to AND error_type = L
--   SELECT count(*), min(id), max(id) FROM peerdb_stats.flow_errors
--   WHERE error_timestamp >= T.from AND error_timestamp < date_trunc('hour', T.from) + INTERVAL '1 hour' AND ...
-- With a mirror filter too, names N: its count and bounds in one pass of
-- mirror_logs_time_idx (the hours do not hold the mirrors):
--   SELECT count(*), min(id), max(id) FROM peerdb_stats.flow_errors
--   WHERE error_timestamp >= T.from AND error_timestamp < T.to AND flow_name = ANY(N) ...
--
-- Detection (the function, at its first request and again after 30 s, as
-- src/accelerator.rs does; a missing marker table means none): when
-- to_regclass('peerdb_stats.mirror_logs_accelerator') is not null, this
-- returns one row if the summary is kept for the table there now, none if
-- not (table recreated, a trigger dropped or disabled):
-- detection:begin
--   SELECT a.version, a.bits
--   FROM peerdb_stats.mirror_logs_accelerator a
--   WHERE a.table_oid = to_regclass('peerdb_stats.flow_errors')
--     AND (SELECT count(*) FROM pg_catalog.pg_trigger t
--          WHERE t.tgrelid = a.table_oid AND t.tgenabled IN ('O', 'A')
--            AND t.tgname IN ('mirror_logs_count_inserts', 'mirror_logs_count_deletes',
--                             'mirror_logs_count_updates_old', 'mirror_logs_count_updates_new',
--                             'mirror_logs_count_truncate')) = 5
-- detection:end
--
-- Health check (any role that can read the tables; one statement, so one
-- snapshot; it reads the whole table twice, about 30 s at ten million
-- rows on two cores, so run it off-peak): every bucket of every width,
-- and every hour, against a real count (and an hour's id bounds against
-- its rows' ids). One row, 'ok' or how many drifted.
-- Repair: run this file again.
-- health-check:begin
--   WITH actual AS (
--       SELECT flow_name, error_type, b.bits, id >> b.bits AS bucket, count(*) AS n
--       FROM peerdb_stats.flow_errors, (VALUES (14), (18), (22)) b(bits)
--       GROUP BY 1, 2, 3, 4),
--   kept AS (
--       SELECT flow_name, error_type, bits, bucket, n FROM peerdb_stats.mirror_logs_counts),
--   buckets AS (
--       SELECT count(*) AS differ,
--              coalesce(sum(abs(coalesce(a.n, 0) - coalesce(k.n, 0))) FILTER (WHERE bits = 22), 0) AS miscounted
--       FROM actual a FULL JOIN kept k USING (flow_name, error_type, bits, bucket)
--       WHERE a.n IS DISTINCT FROM k.n),
--   hours AS (
--       SELECT count(*) AS differ
--       FROM (SELECT date_trunc('hour', error_timestamp) AS hour, error_type, (id & 7)::smallint AS stripe,
--                    count(*) AS n, min(id) AS first, max(id) AS last
--             FROM peerdb_stats.flow_errors GROUP BY 1, 2, 3) a
--       FULL JOIN peerdb_stats.mirror_logs_hours k USING (hour, error_type, stripe)
--       WHERE a.n IS DISTINCT FROM k.n OR k.first > a.first OR k.last < a.last)
--   SELECT CASE WHEN b.differ + h.differ = 0 THEN 'ok'
--               ELSE 'drifted: ' || b.differ || ' buckets differ, ' || b.miscounted
--                    || ' rows miscounted, ' || h.differ || ' hours differ'
--          END AS health
--   FROM buckets b, hours h
-- health-check:end
--
-- Drift has only these causes: triggers disabled or bypassed
-- (ALTER TABLE ... DISABLE TRIGGER, session_replication_role = replica, as
-- pg_restore --disable-triggers sets), or the table dropped and recreated.
--
-- Locks: the two indexes are built without blocking PeerDB (CONCURRENTLY;
-- a build that failed half-way is dropped and redone on the next run).
-- The summaries are then built in one transaction holding SHARE ROW
-- EXCLUSIVE on flow_errors: reads go on, PeerDB's inserts wait (they do
-- not fail, unless PeerDB's session has a lock or statement timeout)
-- until it commits: two aggregates of the table, 1.8 s (the buckets) and
-- 1.6 s (the hours) per million rows, measured on two slow cores.
-- The index builds before it took 45 s (flow_name, error_type, id) and 7 s
-- (the time index) there.

\set ON_ERROR_STOP on
\if :{?reader}
\else
  \echo 'usage: psql "$CATALOG_URL" -v reader=<role the function reads as> -f sql/accelerator-install.sql'
  DO $$ BEGIN RAISE EXCEPTION 'the reader role is not set (psql -v reader=<role>)'; END $$;
\endif

SET client_min_messages = warning;
SET statement_timeout = 0;
-- The reader must exist before anything is made (its name as written:
-- GRANT below quotes it).
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'reader') AS reader_exists \gset
\if :reader_exists
\else
  \echo 'no role named' :'reader'
  DO $$ BEGIN RAISE EXCEPTION 'the reader role does not exist'; END $$;
\endif

-- A concurrent build that failed leaves an invalid index behind, which
-- IF NOT EXISTS would keep: drop it first.
DO $$
DECLARE
    invalid regclass;
BEGIN
    FOR invalid IN
        SELECT x.indexrelid::regclass
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
        JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
        WHERE s.nspname = 'peerdb_stats'
          AND c.relname IN ('mirror_logs_flow_type_id_idx', 'mirror_logs_time_idx')
          AND NOT x.indisvalid
    LOOP
        EXECUTE format('DROP INDEX %s', invalid);
    END LOOP;
END $$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS mirror_logs_flow_type_id_idx
    ON peerdb_stats.flow_errors (flow_name, error_type, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS mirror_logs_time_idx
    ON peerdb_stats.flow_errors (error_timestamp) INCLUDE (id, error_type);
DROP INDEX CONCURRENTLY IF EXISTS peerdb_stats.mirror_logs_time_brin;

BEGIN;
-- Waits for writers in flight, then holds new ones until COMMIT: the
-- summary built below and the triggers start from the same rows.
LOCK TABLE peerdb_stats.flow_errors IN SHARE ROW EXCLUSIVE MODE;

DROP TRIGGER IF EXISTS mirror_logs_count_inserts ON peerdb_stats.flow_errors;
DROP TRIGGER IF EXISTS mirror_logs_count_deletes ON peerdb_stats.flow_errors;
DROP TRIGGER IF EXISTS mirror_logs_count_updates ON peerdb_stats.flow_errors; -- version 2's
DROP TRIGGER IF EXISTS mirror_logs_count_updates_old ON peerdb_stats.flow_errors;
DROP TRIGGER IF EXISTS mirror_logs_count_updates_new ON peerdb_stats.flow_errors;
DROP TRIGGER IF EXISTS mirror_logs_count_truncate ON peerdb_stats.flow_errors;
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_accelerator;
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_counts;
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_hours;

CREATE TABLE peerdb_stats.mirror_logs_counts (
    flow_name TEXT NOT NULL,
    error_type TEXT NOT NULL,
    bits SMALLINT NOT NULL CHECK (bits IN (14, 18, 22)),
    bucket BIGINT NOT NULL, -- id >> bits
    n BIGINT NOT NULL,
    -- Width and bucket first: a range of ids, for every name and level,
    -- is one range of the key, however many buckets the table has.
    PRIMARY KEY (bits, bucket, flow_name, error_type)
) WITH (fillfactor = 70); -- room for HOT updates of n

CREATE TABLE peerdb_stats.mirror_logs_hours (
    hour TIMESTAMP NOT NULL, -- date_trunc('hour', error_timestamp)
    error_type TEXT NOT NULL,
    -- id & 7: PeerDB's sessions inserting at once hold consecutive ids,
    -- so each adds to a row of its own, not all to one.
    stripe SMALLINT NOT NULL CHECK (stripe BETWEEN 0 AND 7),
    n BIGINT NOT NULL,
    -- Every id of these rows lies in [first, last]: a delete leaves the
    -- bounds as they were, still true if no longer tight.
    first BIGINT NOT NULL,
    last BIGINT NOT NULL,
    PRIMARY KEY (hour, error_type, stripe)
) WITH (fillfactor = 70);

-- One function for every change: the rows a statement added (TG_ARGV[0]
-- = 1) or removed (-1), as the transition table `changed`; an UPDATE
-- fires it twice, for its old rows and its new. The net change per
-- bucket and per hour, applied with one upsert each. Keys are taken in
-- one order, so two statements never wait for each other in a cycle;
-- ON CONFLICT ... DO UPDATE under READ COMMITTED adds to the latest
-- committed n, so no update is lost. Rows that reach 0 are removed.
CREATE OR REPLACE FUNCTION peerdb_stats.mirror_logs_count_changes()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sign CONSTANT int8 := TG_ARGV[0]::int8;
BEGIN
    INSERT INTO peerdb_stats.mirror_logs_counts AS c (flow_name, error_type, bits, bucket, n)
    SELECT r.flow_name, r.error_type, b.bits, r.id >> b.bits, sign * count(*)
    FROM changed r, (VALUES (14::smallint), (18::smallint), (22::smallint)) b(bits)
    GROUP BY 1, 2, 3, 4
    ORDER BY 3, 4, 1, 2 -- the primary key's order
    ON CONFLICT (bits, bucket, flow_name, error_type) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO peerdb_stats.mirror_logs_hours AS h (hour, error_type, stripe, n, first, last)
    SELECT date_trunc('hour', r.error_timestamp), r.error_type, (r.id & 7)::smallint,
           sign * count(*), min(r.id), max(r.id)
    FROM changed r
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3 -- the primary key's order
    ON CONFLICT (hour, error_type, stripe) DO UPDATE
    SET n = h.n + excluded.n, first = least(h.first, excluded.first), last = greatest(h.last, excluded.last);
    IF sign < 0 THEN
        DELETE FROM peerdb_stats.mirror_logs_counts c
        USING (SELECT DISTINCT b.bits, r.id >> b.bits AS bucket, r.flow_name, r.error_type
               FROM changed r, (VALUES (14::smallint), (18::smallint), (22::smallint)) b(bits)) k
        WHERE (c.bits, c.bucket, c.flow_name, c.error_type) = (k.bits, k.bucket, k.flow_name, k.error_type)
          AND c.n = 0;
        DELETE FROM peerdb_stats.mirror_logs_hours h
        USING (SELECT DISTINCT date_trunc('hour', error_timestamp) AS hour, error_type, (id & 7)::smallint AS stripe
               FROM changed) k
        WHERE (h.hour, h.error_type, h.stripe) = (k.hour, k.error_type, k.stripe)
          AND h.n = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION peerdb_stats.mirror_logs_count_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    TRUNCATE peerdb_stats.mirror_logs_counts, peerdb_stats.mirror_logs_hours;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION peerdb_stats.mirror_logs_count_changes() FROM PUBLIC;
REVOKE ALL ON FUNCTION peerdb_stats.mirror_logs_count_truncate() FROM PUBLIC;

-- The rows already there: one hash aggregate over the table (about 350
-- thousand groups at ten million rows; the planner expects far
-- more, and with the default work_mem spills them all to disk), written
-- in the key's order so that a range of buckets is a few pages (as the
-- triggers' rows, appended bucket after bucket, will be too).
SET LOCAL work_mem = '128MB';
INSERT INTO peerdb_stats.mirror_logs_counts (flow_name, error_type, bits, bucket, n)
SELECT flow_name, error_type, 14, id >> 14, count(*)
FROM peerdb_stats.flow_errors
GROUP BY 1, 2, 3, 4
ORDER BY 3, 4, 1, 2;
-- Each wider width from the one below it.
WITH mid AS (
    SELECT flow_name, error_type, 18::smallint AS bits, bucket >> 4 AS bucket, sum(n)::int8 AS n
    FROM peerdb_stats.mirror_logs_counts WHERE bits = 14 GROUP BY 1, 2, 3, 4)
INSERT INTO peerdb_stats.mirror_logs_counts (flow_name, error_type, bits, bucket, n)
SELECT * FROM mid
UNION ALL
SELECT flow_name, error_type, 22, bucket >> 4, sum(n) FROM mid GROUP BY 1, 2, 3, 4
ORDER BY 3, 4, 1, 2;

-- The hours, from the same rows (the time index holds what they need).
INSERT INTO peerdb_stats.mirror_logs_hours (hour, error_type, stripe, n, first, last)
SELECT date_trunc('hour', error_timestamp), error_type, (id & 7)::smallint, count(*), min(id), max(id)
FROM peerdb_stats.flow_errors
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

CREATE TRIGGER mirror_logs_count_inserts
    AFTER INSERT ON peerdb_stats.flow_errors
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peerdb_stats.mirror_logs_count_changes('1');
CREATE TRIGGER mirror_logs_count_deletes
    AFTER DELETE ON peerdb_stats.flow_errors
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peerdb_stats.mirror_logs_count_changes('-1');
-- PeerDB never updates, but an update by hand must not skew the counts.
CREATE TRIGGER mirror_logs_count_updates_old
    AFTER UPDATE ON peerdb_stats.flow_errors
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peerdb_stats.mirror_logs_count_changes('-1');
CREATE TRIGGER mirror_logs_count_updates_new
    AFTER UPDATE ON peerdb_stats.flow_errors
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peerdb_stats.mirror_logs_count_changes('1');
CREATE TRIGGER mirror_logs_count_truncate
    AFTER TRUNCATE ON peerdb_stats.flow_errors
    FOR EACH STATEMENT EXECUTE FUNCTION peerdb_stats.mirror_logs_count_truncate();

CREATE TABLE peerdb_stats.mirror_logs_accelerator (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    version INTEGER NOT NULL,
    bits SMALLINT[] NOT NULL,      -- the summary's widths, finest first
    table_oid OID NOT NULL,        -- the flow_errors the triggers are on
    installed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO peerdb_stats.mirror_logs_accelerator (version, bits, table_oid)
VALUES (3, '{14, 18, 22}', 'peerdb_stats.flow_errors'::regclass);

GRANT USAGE ON SCHEMA peerdb_stats TO :"reader";
GRANT SELECT ON peerdb_stats.mirror_logs_counts, peerdb_stats.mirror_logs_hours,
    peerdb_stats.mirror_logs_accelerator TO :"reader";
COMMIT;

ANALYZE peerdb_stats.mirror_logs_counts, peerdb_stats.mirror_logs_hours;
