//! Local mode (`cargo run`): the function's own router served over plain
//! HTTP on 127.0.0.1:$PORT, against the configured catalog or, when none is
//! configured, a demo catalog: a throwaway PostgreSQL with PeerDB's schema
//! and a few thousand realistic log lines. Nothing here runs in Lambda.

use std::collections::HashMap;

use peerdb_mirror_logs::config::Config;
use peerdb_mirror_logs::startup;
use testkit::{provision, seed, ThrowawayPg, SUPERUSER};
use tokio::net::TcpListener;
use tracing::info;

/// Demo catalog size: enough to page through, small enough to seed in a
/// blink.
const DEMO_ROWS: i64 = 5000;
const DEMO_MIRRORS: i32 = 6;
const DEMO_READER: &str = "peerdb_logs_reader";
const DEMO_READER_PASSWORD: &str = "demo-reader";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves until Ctrl-C or SIGTERM, then removes the demo catalog, if any.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // Lambda's own log settings; on stderr, as stdout says where to send
    // requests.
    lambda_http::tracing::init_default_subscriber_with_writer(std::io::stderr);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let port: u16 = env("PORT")
        .map_or(Ok(3000), |p| p.parse())
        .map_err(|_| "PORT must be a port number")?;

    let mut overrides = HashMap::new();
    let demo = if env("DATABASE_URL").is_none()
        && env("PEERDB_CATALOG_HOST").is_none()
        && env("PEERDB_CATALOG_SECRET_ID").is_none()
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
    // No CloudWatch here to read the metrics documents, and stdout is the
    // user's terminal: off unless asked for (PEERDB_LOGS_DISABLE_METRICS=false).
    if env("PEERDB_LOGS_DISABLE_METRICS").is_none() {
        overrides.insert("PEERDB_LOGS_DISABLE_METRICS", "true".to_string());
    }
    let app = startup::build(Config::from_vars(|name| {
        overrides.get(name).cloned().or_else(|| env(name))
    }))
    .await;

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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    info!("shutting down");
    drop(demo);
    Ok(())
}

async fn start_demo_catalog() -> Result<ThrowawayPg, BoxError> {
    let pg = ThrowawayPg::start(&[])?;
    let (client, connection) =
        tokio_postgres::connect(&pg.url(SUPERUSER, "postgres"), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    provision(&client, DEMO_READER, DEMO_READER_PASSWORD).await?;
    seed(&client, DEMO_ROWS, DEMO_MIRRORS).await?;
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
