//! The handler's own cost: routing, authentication, decoding, planning and
//! encoding a 50-row page, everything but the database, measured through
//! the real entry point.
//!
//! What is measured, and why so. The router cannot serve a page without a
//! catalog, and the handler's steps are not called one by one here (that
//! is what made the old benchmark drift). So the router serves a real page
//! from a real catalog that holds just that page (the 50 rows the old
//! measurement encoded, on the same server as the benchmark's catalog,
//! before that is seeded), and the catalog's time is taken off each
//! request: the time the function itself logs as `db_ms` in the request's
//! log line (its `catalog.read`: the pool checkout, the one round trip and
//! reading the rows into a page), caught by a minimal tracing subscriber
//! that records that one field and writes nothing. So the figure is what
//! the whole router does around the catalog (axum's routing and layers,
//! taking the stage off, authentication, reading and decoding the body,
//! planning, encoding, the log line's fields) plus `lambda_http`'s
//! conversion of the response for the runtime; `lambda_http`'s parsing of
//! the event is timed apart, as before. `db_ms` is to the microsecond
//! (truncated), so each request's own cost can read up to 1 µs high.
//!
//! Two answers that never reach the catalog, a 401 and a 400, are timed
//! the same way without any subtraction, as a check on the figure that
//! needs none.

use std::cell::Cell;
use std::time::{Duration, Instant};

use axum::Router;
use serde_json::json;
use testkit::{provision, ThrowawayPg, SUPERUSER};
use tokio_postgres::Client;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::entry::{self, CREDENTIALS, WRONG_CREDENTIALS};
use crate::stats::{percentile, us};
use crate::{connect, READER, READER_PASSWORD};

/// Medians of batches, so that a moment of other work on the machine does
/// not count.
const BATCHES: usize = 20;
const BATCH: usize = 1000;

/// Measures on a database of its own on `pg`; returns the report.
pub async fn measure(pg: &ThrowawayPg) -> String {
    let app = entry::app(&one_page_catalog(pg).await).await;
    // Only the page's rows' level, as the old measurement asked: a level
    // is decoded and planned for.
    let page = json!({"flowJobName": "", "level": "info", "page": 0, "numPerPage": 50,
                      "beforeId": -1, "afterId": -1})
    .to_string();
    let page_event = entry::event(&page, CREDENTIALS);
    let refused = entry::event(&page, WRONG_CREDENTIALS);
    let malformed = entry::event(r#"{"numPerPage": "fifty"}"#, CREDENTIALS);

    let _subscriber = tracing::subscriber::set_default(DbTime);
    // Warm: the pool's connection made, the statement prepared.
    for _ in 0..100 {
        entry::invoke(&app, &page_event).await;
    }
    let page = timed(&app, &page_event, 200, true, None).await;
    let own_401 = timed(&app, &refused, 401, false, None).await.own;
    let own_400 = timed(&app, &malformed, 400, false, None).await.own;
    // The page's requests each wait for the catalog, and resume with the
    // caches as that left them; these do not. The same 401, each after a
    // round trip of another connection, shows what that costs.
    let other = connect(&pg.url(SUPERUSER, "handler_cost")).await;
    let own_401_after_trip = timed(&app, &refused, 401, false, Some(&other)).await.own;
    format!(
        "\n### The handler's own cost\n\nRouting, authentication, decoding, planning and encoding a 50-row page \
         ({} bytes): {} µs per request ({} µs of it inside the router's log layer, its `total_ms` less \
         `db_ms`); lambda_http's parsing of the event before that: {} µs \
         (medians of {BATCHES} batches of {BATCH}, measured before seeding). Through the real router and \
         lambda_http's conversion of its response, serving the page from a catalog holding just those rows, \
         less the catalog's time the function logs (`db_ms`). Answered before the catalog, through the same \
         router and nothing taken off: a 401 (wrong password) {} µs, a 400 (a malformed body, after \
         authentication) {} µs; the same 401, each right after a round trip to the catalog (untimed) as a \
         served page resumes after one: {} µs.",
        page.bytes,
        us(page.own),
        us(page.logged),
        us(page.parse),
        us(own_401),
        us(own_400),
        us(own_401_after_trip)
    )
}

/// A database of its own holding only the 50 rows the old measurement
/// encoded; the reader's URL for it.
async fn one_page_catalog(pg: &ThrowawayPg) -> String {
    let postgres = connect(&pg.url(SUPERUSER, "postgres")).await;
    postgres
        .batch_execute("CREATE DATABASE handler_cost")
        .await
        .unwrap();
    let admin = connect(&pg.url(SUPERUSER, "handler_cost")).await;
    provision(&admin, READER, READER_PASSWORD).await.unwrap();
    admin
        .batch_execute(
            "INSERT INTO peerdb_stats.flow_errors (id, flow_name, error_message, error_type, error_timestamp)
             OVERRIDING SYSTEM VALUE
             SELECT 702169 - i, 'orders_to_snowflake_v05',
                    format('pulled %s records from source for batch %s', 1000 + i, 7000 + i), 'info',
                    to_timestamp(1748972135.285) AT TIME ZONE 'UTC'
             FROM generate_series(0, 49) i",
        )
        .await
        .unwrap();
    // On its own: VACUUM cannot run in the implicit transaction of a batch.
    admin
        .batch_execute("VACUUM ANALYZE peerdb_stats.flow_errors")
        .await
        .unwrap();
    pg.url(&format!("{READER}:{READER_PASSWORD}"), "handler_cost")
}

/// Medians over the batches, per request.
struct Timings {
    /// `lambda_http`'s parsing of the event.
    parse: Duration,
    /// The router and the response's conversion, less the catalog's time.
    own: Duration,
    /// What the log line says the router took, less the catalog's time.
    logged: Duration,
    /// The answer's size.
    bytes: usize,
}

/// `event`'s timings (less the catalog's time when `from_catalog`); with
/// `between`, a round trip on that connection before each request,
/// untimed. Panics on another status than `status`.
async fn timed(
    app: &Router,
    event: &str,
    status: u16,
    from_catalog: bool,
    between: Option<&Client>,
) -> Timings {
    let (mut parse, mut own, mut logged) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..BATCHES {
        let started = Instant::now();
        let requests: Vec<_> = (0..BATCH).map(|_| entry::parse(event)).collect();
        parse.push(started.elapsed() / BATCH as u32);
        let (mut total, mut inside) = (Duration::ZERO, Duration::ZERO);
        for request in requests {
            if let Some(client) = between {
                client.simple_query("SELECT 1").await.unwrap();
            }
            DB_MS.set(None);
            TOTAL_MS.set(None);
            let started = Instant::now();
            let response = entry::respond(app, request).await;
            let took = started.elapsed();
            let db = match (DB_MS.take(), from_catalog) {
                (Some(ms), true) => Duration::from_secs_f64(ms / 1000.0),
                (None, false) => Duration::ZERO,
                (db_ms, _) => panic!("db_ms {db_ms:?} in the log line of a {status}"),
            };
            total += took.saturating_sub(db);
            let logged = TOTAL_MS.take().expect("total_ms in the log line");
            inside += Duration::from_secs_f64(logged / 1000.0).saturating_sub(db);
            assert_eq!(response.status(), status, "{:?}", response.body());
            bytes = response.body().len();
        }
        own.push(total / BATCH as u32);
        logged.push(inside / BATCH as u32);
    }
    Timings {
        parse: percentile(&parse, 0.5),
        own: percentile(&own, 0.5),
        logged: percentile(&logged, 0.5),
        bytes,
    }
}

thread_local! {
    /// The `db_ms` of the last request's log line on this thread (the
    /// benchmark's runtime has one).
    static DB_MS: Cell<Option<f64>> = const { Cell::new(None) };
    /// Its `total_ms`.
    static TOTAL_MS: Cell<Option<f64>> = const { Cell::new(None) };
}

/// Takes `db_ms` and `total_ms` from the function's request log lines; nothing else is
/// enabled, nothing written.
struct DbTime;

impl DbTime {
    fn wanted(metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target().starts_with("peerdb_mirror_logs::route")
    }
}

impl Subscriber for DbTime {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if DbTime::wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        DbTime::wanted(metadata)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        struct Times;
        impl Visit for Times {
            fn record_f64(&mut self, field: &Field, value: f64) {
                match field.name() {
                    "db_ms" => DB_MS.set(Some(value)),
                    "total_ms" => TOTAL_MS.set(Some(value)),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut Times);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
