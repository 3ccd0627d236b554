//! PeerDB's mirror logs API (`POST /api/v1/mirrors/logs`, and
//! `GET /api/v1/mirrors/names` beside it) as an AWS Lambda function. [`startup`] builds the application once; a request then goes
//! through the modules in this order: [`route`] (paths, stage, the log
//! line and the [`metrics`] document) → [`auth`] → [`handler`], which drives [`request`] (decoding) →
//! [`query`] → [`catalog`] → [`response`] (encoding). [`error`] maps every
//! failure to the spec's status and body; [`accelerator`] is what the
//! catalog found of the optional accelerator, which [`query`] plans for.

pub mod accelerator;
pub mod auth;
pub mod bearer;
mod catalog;
pub mod config;
pub mod error;
mod handler;
mod metrics;
pub mod query;
pub mod request;
pub mod response;
mod route;
mod secrets;
pub mod startup;
