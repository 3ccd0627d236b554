//! What local mode, the tests and the benchmark share, apart from the
//! product: a throwaway PostgreSQL from the machine's own server binaries,
//! and PeerDB's catalog schema in it, with a read-only role and realistic
//! log lines; and the named requests the benchmark and the load test send.

mod catalog;
mod scenarios;
mod throwaway_pg;

pub use catalog::{add_reader, provision, psql, psql_outcome, seed, PEERDB_SCHEMA};
pub use scenarios::{more_scenarios, scenarios, CatalogShape, Cursor, Scenario};
pub use throwaway_pg::{server_owner, stop_when_parent_dies, ThrowawayPg, SUPERUSER};
