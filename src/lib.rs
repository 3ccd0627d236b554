//! PeerDB's mirror logs API (`POST /api/v1/mirrors/logs`) as an AWS Lambda
//! function. A request goes through the modules in this order:
//! [`route`] → [`auth`] → [`request`] → [`query`] → [`catalog`] →
//! [`response`], driven by [`handler`]. [`local`] serves the same handler
//! over plain HTTP where no Lambda runtime is present.

pub mod auth;
pub mod bearer;
pub mod catalog;
pub mod config;
pub mod error;
pub mod handler;
pub mod local;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
pub mod secrets;
pub mod throwaway_pg;
