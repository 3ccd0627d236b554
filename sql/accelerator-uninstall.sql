-- Removes the mirror logs accelerator (sql/accelerator-install.sql): every
-- object it made, nothing else. PeerDB's table, rows and index stay as
-- they are; the reader keeps USAGE on peerdb_stats (it had it before: the
-- function reads flow_errors there). Idempotent.
--
--   psql "$CATALOG_URL" -f sql/accelerator-uninstall.sql
--
-- The marker and the triggers go first, in one transaction, so that the
-- function stops using the summary at the moment it stops being kept; the
-- indexes are then dropped without blocking PeerDB (CONCURRENTLY).

\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET statement_timeout = 0;

BEGIN;
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_accelerator;
DO $$
BEGIN
    IF to_regclass('peerdb_stats.flow_errors') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS mirror_logs_count_inserts ON peerdb_stats.flow_errors;
        DROP TRIGGER IF EXISTS mirror_logs_count_deletes ON peerdb_stats.flow_errors;
        DROP TRIGGER IF EXISTS mirror_logs_count_updates_old ON peerdb_stats.flow_errors;
        DROP TRIGGER IF EXISTS mirror_logs_count_updates_new ON peerdb_stats.flow_errors;
        -- Made in their place by installs before version 3.
        DROP TRIGGER IF EXISTS mirror_logs_count_updates ON peerdb_stats.flow_errors;
        DROP TRIGGER IF EXISTS mirror_logs_count_truncate ON peerdb_stats.flow_errors;
    END IF;
END $$;
DROP FUNCTION IF EXISTS peerdb_stats.mirror_logs_count_changes();
DROP FUNCTION IF EXISTS peerdb_stats.mirror_logs_count_truncate();
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_counts;
DROP TABLE IF EXISTS peerdb_stats.mirror_logs_hours;
COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS peerdb_stats.mirror_logs_flow_type_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS peerdb_stats.mirror_logs_time_idx;
-- Made in its place by installs before it.
DROP INDEX CONCURRENTLY IF EXISTS peerdb_stats.mirror_logs_time_brin;
