//! The function end to end: real Lambda events in, the caller's response
//! out, against a real Postgres holding PeerDB's schema.

mod helpers;

mod auth;
mod decoding;
mod events;
mod faults;
mod filters;
mod fuzz_inputs;
mod limits;
mod local_mode;
mod paging;
mod properties;
mod routing;
