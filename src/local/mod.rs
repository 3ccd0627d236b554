//! Local mode: where no Lambda runtime is present, the same handler serves
//! plain HTTP on 127.0.0.1:$PORT, against the configured catalog or, when
//! none is configured, an embedded demo catalog. Nothing here runs in
//! Lambda.

pub mod demo;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::error::ApiError;
use crate::handler::App;
use crate::secrets;
use crate::throwaway_pg::{ThrowawayPg, SUPERUSER};

/// Demo catalog size: enough to page through, small enough to seed in a
/// blink.
const DEMO_ROWS: i64 = 5000;
const DEMO_MIRRORS: i32 = 6;
const DEMO_READER: &str = "peerdb_logs_reader";
const DEMO_READER_PASSWORD: &str = "demo-reader";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves until Ctrl-C or SIGTERM, then removes the demo catalog, if any.
pub async fn run() -> Result<(), BoxError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let port: u16 = env("PORT")
        .map_or(Ok(3000), |p| p.parse())
        .map_err(|_| "PORT must be a port number")?;

    let mut overrides = HashMap::new();
    let demo = if env("DATABASE_URL").is_none()
        && env("PEERDB_CATALOG_HOST").is_none()
        && env(secrets::CATALOG_SECRET_ID).is_none()
    {
        println!("No DATABASE_URL or PEERDB_CATALOG_HOST: starting a demo catalog with {DEMO_ROWS} log lines...");
        let pg = start_demo_catalog().await?;
        overrides.insert(
            "DATABASE_URL",
            pg.url(&format!("{DEMO_READER}:{DEMO_READER_PASSWORD}"), "postgres"),
        );
        if env("PEERDB_PASSWORD").is_none() {
            overrides.insert("PEERDB_PASSWORD", "peerdb".to_string());
        }
        Some(pg)
    } else {
        None
    };
    let app = Arc::new(App::new(
        secrets::settings(move |name| overrides.get(name).cloned().or_else(|| env(name))).await,
    ));

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://localhost:{port}/api/v1/mirrors/logs");
    println!("Serving PeerDB mirror logs on {url}");
    if demo.is_some() {
        // The docs' header holds the default password; a password of the
        // user's own is left to their shell rather than printed.
        let credentials = if env("PEERDB_PASSWORD").is_none() {
            "--header 'Authorization: Basic OnBlZXJkYg=='"
        } else {
            "--user \":$PEERDB_PASSWORD\""
        };
        println!(
            "Try:\n  curl --request POST --url {url} {credentials} \
             --header 'Content-Type: application/json' \
             --data '{{\"level\":\"error\",\"flowJobName\":\"\",\"beforeId\":-1,\"afterId\":-1,\"numPerPage\":2,\"page\":0}}'"
        );
    }

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => { debug!(error = %e, "accept failed"); continue; }
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(serve_http(&app, req).await) }
                    });
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    info!("shutting down");
    drop(demo);
    Ok(())
}

/// One HTTP request through the handler; the body is read only once the
/// request is routed and authenticated, and no further than the bound.
pub async fn serve_http(app: &App, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let limit = app.max_body_bytes();
    let response = app
        .respond(&parts, async move {
            match Limited::new(body, limit).collect().await {
                Ok(collected) => Ok(Body::Binary(collected.to_bytes().to_vec())),
                Err(e) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
                Err(_) => Err(ApiError::bad_request("the request body could not be read")),
            }
        })
        .await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(binary) => Bytes::from(binary),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

async fn start_demo_catalog() -> Result<ThrowawayPg, BoxError> {
    let pg = ThrowawayPg::start(&[])?;
    let (client, connection) =
        tokio_postgres::connect(&pg.url(SUPERUSER, "postgres"), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client.batch_execute(demo::PEERDB_SCHEMA).await?;
    client
        .batch_execute(&format!(
            "CREATE ROLE {DEMO_READER} LOGIN PASSWORD '{DEMO_READER_PASSWORD}'; {}",
            demo::reader_grants(DEMO_READER)
        ))
        .await?;
    demo::seed(&client, DEMO_ROWS, DEMO_MIRRORS).await?;
    drop(client);
    let _ = connection.await;
    Ok(pg)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
