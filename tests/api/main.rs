//! The function end to end: real Lambda events in, the caller's response
//! out, against a real Postgres holding PeerDB's schema.

mod helpers;

mod auth;
mod aws;
mod bearer;
mod compression;
mod decoding;
mod events;
mod faults;
mod filters;
mod fuzz_inputs;
mod ignored;
mod lambda_watch;
mod limits;
mod local_mode;
mod log_line;
mod metrics;
mod names;
mod paging;
mod peerdb_ui;
mod pgbouncer;
mod properties;
mod routing;
mod security;
mod tls;
