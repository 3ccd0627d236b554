//! "Ours": the application exactly as Lambda runs it. The router
//! `startup::build` returns (the one `lambda_http::run` runs in the
//! `bootstrap` binary), fed real HTTP API events through `lambda_http`'s
//! own event parsing, its response converted as the runtime converts it,
//! as `tests/api/helpers.rs` does. Nothing of the handler is repeated here.

use std::sync::OnceLock;

use axum::Router;
use lambda_http::{Body, IntoResponse};
use peerdb_mirror_logs::config::Config;
use peerdb_mirror_logs::startup;
use serde_json::{json, Value};
use testkit::Scenario;
use tower::ServiceExt;

/// The API password `peerdb`, as PeerDB's docs send it.
pub const CREDENTIALS: &str = "Basic OnBlZXJkYg==";
/// Another password.
pub const WRONG_CREDENTIALS: &str = "Basic Ondyb25n";

/// The application configured as a deployment with a `DATABASE_URL` and
/// the API password `peerdb`; without its metrics documents, which would
/// go to stdout, into the report (the `bootstrap` targets write them, to
/// /dev/null).
pub async fn app(database_url: &str) -> Router {
    let database_url = database_url.to_string();
    startup::build(Config::from_vars(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "PEERDB_PASSWORD" => Some("peerdb".into()),
        "PEERDB_LOGS_DISABLE_METRICS" => Some("true".into()),
        _ => None,
    }))
    .await
}

/// An HTTP API (`$default` stage) event as API Gateway sends it
/// (`events/http-api-default-stage.json`), carrying `body` with the
/// `authorization` header given.
pub fn event(body: &str, authorization: &str) -> String {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/http-api-default-stage.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    });
    let mut e = template.clone();
    e["headers"]["authorization"] = json!(authorization);
    e["headers"]["content-length"] = json!(body.len().to_string());
    e["body"] = json!(body);
    e["isBase64Encoded"] = json!(false);
    e.to_string()
}

/// The names endpoint's event: the same, as `GET /api/v1/mirrors/names`.
pub fn names_event() -> String {
    let mut e: Value = serde_json::from_str(&event("", CREDENTIALS)).unwrap();
    e["routeKey"] = json!("GET /api/v1/mirrors/names");
    e["rawPath"] = json!("/api/v1/mirrors/names");
    e["requestContext"]["http"]["method"] = json!("GET");
    e["requestContext"]["http"]["path"] = json!("/api/v1/mirrors/names");
    e["requestContext"]["routeKey"] = json!("GET /api/v1/mirrors/names");
    e["body"] = Value::Null;
    e.to_string()
}

/// The event for a scenario, with the docs' credentials.
pub fn scenario_event(s: &Scenario) -> String {
    event(&s.body().to_string(), CREDENTIALS)
}

/// What the function returned to Lambda.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body's ids, `total` and `page`, if it is a 200 with a page.
    pub fn page(&self) -> Result<(Vec<i64>, i64, i64), String> {
        let fail = || format!("status {}: {}", self.status, self.body);
        if self.status != 200 {
            return Err(fail());
        }
        let v: Value = serde_json::from_str(&self.body).map_err(|_| fail())?;
        let ids = v["errors"]
            .as_array()
            .ok_or_else(fail)?
            .iter()
            .map(|r| r["id"].as_i64().ok_or_else(fail))
            .collect::<Result<Vec<i64>, String>>()?;
        let total = v["total"].as_i64().ok_or_else(fail)?;
        let page = v["page"].as_i64().ok_or_else(fail)?;
        Ok((ids, total, page))
    }

    /// The names endpoint's list, if it is a 200.
    pub fn names(&self) -> Result<Vec<String>, String> {
        let fail = || format!("status {}: {}", self.status, self.body);
        if self.status != 200 {
            return Err(fail());
        }
        let v: Value = serde_json::from_str(&self.body).map_err(|_| fail())?;
        serde_json::from_value(v["names"].clone()).map_err(|_| fail())
    }
}

/// The request `lambda_http` makes of `event`.
pub fn parse(event: &str) -> lambda_http::Request {
    lambda_http::request::from_str(event).expect("a valid Lambda event")
}

/// `request` through the router, and its response converted to what
/// Lambda returns.
pub async fn respond(app: &Router, request: lambda_http::Request) -> lambda_http::Response<Body> {
    let response = app.clone().oneshot(request).await.unwrap();
    response.into_response().await
}

impl From<lambda_http::Response<Body>> for Answer {
    fn from(response: lambda_http::Response<Body>) -> Answer {
        Answer {
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(response.body().as_ref()).into_owned(),
        }
    }
}

/// `event` as Lambda hands it to the function: parsed, routed, answered.
pub async fn invoke(app: &Router, event: &str) -> Answer {
    respond(app, parse(event)).await.into()
}
