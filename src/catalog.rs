//! The catalog database: a pool of connections and the one read each
//! request makes.
//!
//! Each read is one network round trip: `BEGIN READ ONLY` with a
//! transaction-local `statement_timeout` (and JIT off), the statement
//! (unnamed, so it works through PgBouncer's transaction pooling and RDS
//! Proxy without pinning), and `COMMIT` are written together before any
//! reply is read.
//! The time limit is the server's, so a runaway query is cancelled there.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{error, warn};

use crate::config::{CatalogSettings, TlsSettings};
use crate::error::ApiError;
use crate::query::{Param, Plan};
use crate::secrets::CatalogRotation;

/// One log line as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    pub flow_name: String,
    pub error_message: String,
    pub error_type: String,
    /// `error_timestamp` as milliseconds since the epoch (read as UTC).
    pub error_ms: i64,
}

/// What one read returns: the page (newest first), how many rows match the
/// filters, and how many of those are newer than the page's newest row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsPage {
    pub rows: Vec<LogRow>,
    pub total: i64,
    pub newer: i64,
}

pub struct Catalog {
    pool: Pool,
    tls: Option<MakeRustlsConnect>,
    statement_timeout: Duration,
    /// Bounds a request's whole wait for a connection.
    connect_budget: Duration,
    rotation: Option<Arc<CatalogRotation>>,
}

/// Time the server limit leaves for the reply to travel back.
const REPLY_GRACE: Duration = Duration::from_millis(250);

impl Catalog {
    /// Builds the pool; connects to nothing until the first request.
    pub fn new(settings: &CatalogSettings) -> Result<Catalog, String> {
        let tls = settings.tls.as_ref().map(tls_connector).transpose()?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match (&settings.rotation, &tls) {
            (Some(rotation), _) => Manager::from_connect(
                settings.pg.clone(),
                rotation.connector(tls.clone()),
                manager_config,
            ),
            (None, Some(tls)) => {
                Manager::from_config(settings.pg.clone(), tls.clone(), manager_config)
            }
            (None, None) => Manager::from_config(settings.pg.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.pool_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        Ok(Catalog {
            pool,
            tls,
            statement_timeout: settings.statement_timeout,
            connect_budget: settings.pool_timeout + settings.connect_timeout,
            rotation: settings.rotation.clone(),
        })
    }

    /// Runs `plan`, finishing before `deadline` (the Lambda invocation's,
    /// when there is one). A connection found dead (the execution
    /// environment was frozen, Postgres restarted, the backend was
    /// terminated) is replaced and the read retried once. Credentials the
    /// catalog refuses are re-read from their secret, if they have one,
    /// and the read retried with the new ones.
    pub async fn read(&self, plan: &Plan, deadline: Option<Instant>) -> Result<LogsPage, ApiError> {
        let result = match self.attempt(plan, deadline).await {
            Err(Failure::Stale(e)) => {
                warn!(error = %e, "catalog connection was dead; retrying on a fresh one");
                self.attempt(plan, deadline).await
            }
            other => other,
        };
        match (result, &self.rotation) {
            (Err(Failure::Other(e)), Some(rotation)) if is_auth_failure(&e) => {
                if rotation.refresh().await {
                    self.attempt(plan, deadline).await
                } else {
                    Err(Failure::Other(e))
                }
            }
            (result, _) => result,
        }
        .map_err(Failure::into_api)
    }

    async fn attempt(&self, plan: &Plan, deadline: Option<Instant>) -> Result<LogsPage, Failure> {
        let now = Instant::now();
        let deadline =
            deadline.unwrap_or(now + self.connect_budget + self.statement_timeout + REPLY_GRACE);
        let client = tokio::time::timeout_at(deadline, self.pool.get())
            .await
            .map_err(|_| Failure::Deadline)?
            .map_err(Failure::from_pool)?;

        // What is left after connecting, less the time the reply needs.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(REPLY_GRACE);
        let limit = self.statement_timeout.min(left);
        if limit < Duration::from_millis(10) {
            return Err(Failure::Deadline);
        }
        let params: Vec<(&(dyn ToSql + Sync), Type)> = plan
            .params
            .iter()
            .map(|p| match p {
                Param::Text(s) => (s as &(dyn ToSql + Sync), Type::TEXT),
                Param::Int(i) => (i as &(dyn ToSql + Sync), Type::INT8),
            })
            .collect();
        // JIT compiling the statement's many expressions costs more than it
        // saves: over a second on a ten-million-row catalog, where the
        // planner's estimates pass the thresholds that turn it on.
        let begin = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL jit = off",
            limit.as_millis()
        );
        let pipeline = async {
            // `biased`: the messages must be written in this order.
            tokio::join!(
                biased;
                client.batch_execute(&begin),
                client.query_typed(&plan.sql, &params),
                client.batch_execute("COMMIT"),
            )
        };
        match tokio::time::timeout(limit + REPLY_GRACE, pipeline).await {
            Ok((Ok(()), Ok(rows), Ok(()))) => page_from_rows(&rows).map_err(Failure::Other),
            Ok((begin, rows, commit)) => {
                let e = begin
                    .err()
                    .or(rows.err())
                    .or(commit.err())
                    .expect("one of them failed");
                Err(Failure::from_query(e))
            }
            Err(_) => {
                // The server did not stop it in time: cancel it there, and
                // drop the connection, which is mid-transaction.
                let cancel = client.cancel_token();
                let tls = self.tls.clone();
                drop(Object::take(client));
                tokio::spawn(async move {
                    let result = match tls {
                        Some(tls) => cancel.cancel_query(tls).await,
                        None => cancel.cancel_query(NoTls).await,
                    };
                    if let Err(e) = result {
                        warn!(error = %e, "could not cancel a query past its time limit");
                    }
                });
                Err(Failure::Deadline)
            }
        }
    }
}

fn page_from_rows(rows: &[Row]) -> Result<LogsPage, tokio_postgres::Error> {
    let first = rows
        .first()
        .expect("the statement always returns the stats row");
    let mut page = LogsPage {
        rows: Vec::with_capacity(rows.len()),
        total: first.try_get(0)?,
        newer: first.try_get(1)?,
    };
    for row in rows {
        if let Some(id) = row.try_get::<_, Option<i64>>(2)? {
            page.rows.push(LogRow {
                id,
                flow_name: row.try_get(3)?,
                error_message: row.try_get(4)?,
                error_type: row.try_get(5)?,
                error_ms: row.try_get(6)?,
            });
        }
    }
    Ok(page)
}

/// Why an attempt failed, as far as retrying and the caller are concerned.
#[derive(Debug)]
enum Failure {
    /// The connection was dead before the read began: retry once.
    Stale(tokio_postgres::Error),
    /// No connection could be had in time.
    Unreachable(String),
    /// The statement, or the invocation, ran out of time.
    Deadline,
    Other(tokio_postgres::Error),
}

impl Failure {
    fn from_pool(e: PoolError) -> Failure {
        match e {
            PoolError::Timeout(TimeoutType::Wait) => {
                Failure::Unreachable("no pooled connection was free in time".into())
            }
            PoolError::Timeout(_) => {
                Failure::Unreachable("connecting to the catalog timed out".into())
            }
            PoolError::Backend(e) if is_auth_failure(&e) => Failure::Other(e),
            PoolError::Backend(e) => {
                Failure::Unreachable(format!("cannot connect to the catalog: {}", describe(&e)))
            }
            other => Failure::Unreachable(other.to_string()),
        }
    }

    fn from_query(e: tokio_postgres::Error) -> Failure {
        let code = e.code();
        if code == Some(&SqlState::QUERY_CANCELED) {
            Failure::Deadline
        } else if e.is_closed()
            || code.is_some_and(|c| {
                [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(c)
                    || c.code().starts_with("08")
            })
            || source_is_io(&e)
        {
            Failure::Stale(e)
        } else {
            Failure::Other(e)
        }
    }

    fn into_api(self) -> ApiError {
        match self {
            Failure::Deadline => ApiError::Timeout,
            Failure::Stale(e) => {
                error!(error = %describe(&e), "catalog connection failed again after a retry");
                ApiError::Unavailable
            }
            Failure::Unreachable(why) => {
                error!(error = %why, "catalog unavailable");
                ApiError::Unavailable
            }
            Failure::Other(e) if is_auth_failure(&e) => {
                error!(error = %describe(&e), "the catalog refused the configured credentials");
                ApiError::Internal("the function cannot sign in to the catalog; see its log")
            }
            Failure::Other(e) => {
                error!(error = %describe(&e), "catalog read failed");
                ApiError::Internal("reading the catalog failed; see the function's log")
            }
        }
    }
}

fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("28") => true,
        // PgBouncer 1.18 refuses a password with a protocol-violation code.
        Some(db) => {
            db.code() == &SqlState::PROTOCOL_VIOLATION
                && db.message().ends_with("authentication failed")
        }
        None => false,
    }
}

fn source_is_io(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The error and its causes on one line, for the log.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn tls_connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read PEERDB_CATALOG_CA_FILE: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| format!("PEERDB_CATALOG_CA_FILE is not a PEM bundle: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("PEERDB_CATALOG_CA_FILE holds a bad certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("PEERDB_CATALOG_CA_FILE holds no certificate".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "while loading the system's CA certificates");
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
