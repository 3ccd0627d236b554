//! The catalog database: a pool of connections and the one read each
//! request makes.
//!
//! Each read is one network round trip: `BEGIN READ ONLY` with a
//! transaction-local `statement_timeout` (and JIT off), the statement
//! (unnamed, so it works through PgBouncer's transaction pooling and RDS
//! Proxy without pinning), and `COMMIT` are written together before any
//! reply is read.
//! The time limit is the server's, so a runaway query is cancelled there.
//! A read that is due to look for the accelerator again (the first, then
//! one each 30 s) runs its detection query first, the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    ConfigConnectImpl, Connect, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
    Runtime, TimeoutType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use crate::accelerator::{self, Accelerator, Detected};
use crate::config::{CatalogConfig, ConfigError};
use crate::query::{self, Param, Plan};
use crate::request::LogsRequest;
use crate::secrets::CatalogSecret;

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
    secret: Option<Arc<CatalogSecret>>,
    accelerator: Detected,
}

/// Why a read failed. Host names may appear in the causes; secrets never
/// do. Logged once, where the request ends.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no pooled connection was free in time")]
    PoolExhausted,
    #[error("connecting to the catalog timed out")]
    ConnectTimeout,
    #[error("cannot connect to the catalog")]
    Connect(#[source] tokio_postgres::Error),
    #[error("the connection pool failed")]
    Pool(#[source] PoolError),
    /// The connection was dead before the read began: retried once.
    #[error("the catalog connection was dead")]
    Stale(#[source] tokio_postgres::Error),
    #[error("the catalog refused the configured credentials")]
    Credentials(#[source] tokio_postgres::Error),
    /// The statement, or the invocation, ran out of time.
    #[error("the read ran out of time")]
    Deadline,
    #[error("catalog read failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("the statement returned no row")]
    NoStatsRow,
}

/// Why the catalog's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read PEERDB_CATALOG_CA_FILE")]
    CaFile(#[source] std::io::Error),
    #[error("PEERDB_CATALOG_CA_FILE is not a PEM bundle")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    #[error("PEERDB_CATALOG_CA_FILE holds a bad certificate")]
    CaCert(#[source] rustls::Error),
    #[error("PEERDB_CATALOG_CA_FILE holds no certificate")]
    CaEmpty,
    #[error("TLS setup failed")]
    Tls(#[source] rustls::Error),
    #[error("cannot build the connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
}

/// Time the server limit leaves for the reply to travel back.
const REPLY_GRACE: Duration = Duration::from_millis(250);

impl Catalog {
    /// Builds the pool; connects to nothing until the first request. With
    /// a `secret`, connections use its newest settings.
    pub fn new(
        config: &CatalogConfig,
        secret: Option<CatalogSecret>,
    ) -> Result<Catalog, SetupError> {
        let pg = config.pg()?;
        let tls = (pg.get_ssl_mode() != tokio_postgres::config::SslMode::Disable)
            .then(|| tls_connector(config))
            .transpose()?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let secret = secret.map(Arc::new);
        let inner: Box<dyn Connect> = match tls.clone() {
            Some(tls) => Box::new(ConfigConnectImpl { tls }),
            None => Box::new(ConfigConnectImpl { tls: NoTls }),
        };
        let manager = Manager::from_connect(
            pg,
            RotatingConnect {
                secret: secret.clone(),
                inner,
            },
            manager_config,
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(SetupError::Pool)?;
        Ok(Catalog {
            pool,
            tls,
            statement_timeout: config.statement_timeout,
            connect_budget: config.pool_timeout + config.connect_timeout,
            secret,
            accelerator: Detected::default(),
        })
    }

    /// The page `req` asks for, planned for the accelerator when the
    /// catalog has one. One removed since it was found fails the read
    /// with an undefined table: the read is then planned without it.
    pub async fn read(
        &self,
        req: &LogsRequest,
        deadline: Option<Instant>,
    ) -> Result<LogsPage, CatalogError> {
        let accelerator = self.accelerator(deadline).await?;
        let rows = match self.run(&query::plan(req, accelerator), deadline).await {
            Err(CatalogError::Query(e)) if accelerator.is_some() && is_undefined_table(&e) => {
                warn!("the accelerator was removed; reading without it");
                self.accelerator.forget();
                self.run(&query::plan(req, None), deadline).await
            }
            rows => rows,
        };
        page_from_rows(&rows?)
    }

    /// The accelerator, as last found, or found now if that was over
    /// [`accelerator::RECHECK_AFTER`] ago.
    async fn accelerator(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<Accelerator>, CatalogError> {
        let now = Instant::now();
        if let Some(found) = self.accelerator.fresh(now) {
            return Ok(found);
        }
        let detection = Plan {
            sql: accelerator::DETECTION.to_string(),
            params: Vec::new(),
        };
        let found = match self.run(&detection, deadline).await {
            Ok(rows) => match rows.first() {
                Some(row) => {
                    let bits: Vec<i16> = row.try_get(1).map_err(CatalogError::Query)?;
                    let found =
                        Accelerator::from_row(row.try_get(0).map_err(CatalogError::Query)?, &bits);
                    if found.is_none() {
                        warn!("the accelerator installed is of another version; reading without it (run this version's sql/accelerator-install.sql)");
                    }
                    found
                }
                None => None,
            },
            Err(CatalogError::Query(e)) if is_undefined_table(&e) => None,
            Err(CatalogError::Query(e)) if e.code() == Some(&SqlState::UNDEFINED_COLUMN) => {
                warn!("the accelerator installed is version 1; reading without it (run sql/accelerator-install.sql again to upgrade it)");
                None
            }
            Err(CatalogError::Query(e)) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                warn!("the accelerator is installed but this role may not read it (install it with -v reader=<this role>)");
                None
            }
            Err(e) => return Err(e),
        };
        self.accelerator.record(now, found);
        Ok(found)
    }

    /// The mirror names `plan` lists, in its order.
    pub async fn names(
        &self,
        plan: &Plan,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, CatalogError> {
        self.run(plan, deadline)
            .await?
            .iter()
            .map(|row| row.try_get(0).map_err(CatalogError::Query))
            .collect()
    }

    /// Runs `plan`, finishing before `deadline` (the Lambda invocation's,
    /// when there is one). A connection found dead (the execution
    /// environment was frozen, Postgres restarted, the backend was
    /// terminated) is replaced and the read retried once. Credentials the
    /// catalog refuses are re-read from their secret, if they have one,
    /// and the read retried with the new ones.
    async fn run(&self, plan: &Plan, deadline: Option<Instant>) -> Result<Vec<Row>, CatalogError> {
        let result = match self.attempt(plan, deadline).await {
            Err(CatalogError::Stale(e)) => {
                warn!(error = %crate::error::describe(&e), "catalog connection was dead; retrying on a fresh one");
                self.attempt(plan, deadline).await
            }
            other => other,
        };
        match (result, &self.secret) {
            (Err(CatalogError::Credentials(_)), Some(secret)) if secret.refresh().await => {
                self.attempt(plan, deadline).await
            }
            (result, _) => result,
        }
    }

    async fn attempt(
        &self,
        plan: &Plan,
        deadline: Option<Instant>,
    ) -> Result<Vec<Row>, CatalogError> {
        let now = Instant::now();
        let deadline =
            deadline.unwrap_or(now + self.connect_budget + self.statement_timeout + REPLY_GRACE);
        let client = tokio::time::timeout_at(deadline, self.pool.get())
            .await
            .map_err(|_| CatalogError::Deadline)?
            .map_err(from_pool)?;

        // What is left after connecting, less the time the reply needs.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(REPLY_GRACE);
        let limit = self.statement_timeout.min(left);
        if limit < Duration::from_millis(10) {
            return Err(CatalogError::Deadline);
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
            Ok((Ok(()), Ok(rows), Ok(()))) => Ok(rows),
            Ok((Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e))) => {
                let e = from_query(e);
                if matches!(e, CatalogError::Stale(_)) {
                    // Its task may not have seen the socket close yet: back
                    // in the pool, it would pass the recycle check and fail
                    // the retry too.
                    drop(Object::take(client));
                }
                Err(e)
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
                Err(CatalogError::Deadline)
            }
        }
    }
}

fn page_from_rows(rows: &[Row]) -> Result<LogsPage, CatalogError> {
    // The statement always returns the stats row, on an empty page too.
    let first = rows.first().ok_or(CatalogError::NoStatsRow)?;
    let column = CatalogError::Query;
    let mut page = LogsPage {
        rows: Vec::with_capacity(rows.len()),
        total: first.try_get(0).map_err(column)?,
        newer: first.try_get(1).map_err(column)?,
    };
    for row in rows {
        if let Some(id) = row.try_get::<_, Option<i64>>(2).map_err(column)? {
            page.rows.push(LogRow {
                id,
                flow_name: row.try_get(3).map_err(column)?,
                error_message: row.try_get(4).map_err(column)?,
                error_type: row.try_get(5).map_err(column)?,
                error_ms: row.try_get(6).map_err(column)?,
            });
        }
    }
    Ok(page)
}

fn from_pool(e: PoolError) -> CatalogError {
    match e {
        PoolError::Timeout(TimeoutType::Wait) => CatalogError::PoolExhausted,
        PoolError::Timeout(_) => CatalogError::ConnectTimeout,
        PoolError::Backend(e) if is_auth_failure(&e) => CatalogError::Credentials(e),
        PoolError::Backend(e) => CatalogError::Connect(e),
        other => CatalogError::Pool(other),
    }
}

fn from_query(e: tokio_postgres::Error) -> CatalogError {
    let code = e.code();
    if code == Some(&SqlState::QUERY_CANCELED) {
        CatalogError::Deadline
    } else if is_auth_failure(&e) {
        CatalogError::Credentials(e)
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
        CatalogError::Stale(e)
    } else {
        CatalogError::Query(e)
    }
}

fn is_undefined_table(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNDEFINED_TABLE)
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

type ConnectFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// Connects with the catalog secret's current settings, when there is one,
/// instead of the pool's.
struct RotatingConnect {
    secret: Option<Arc<CatalogSecret>>,
    inner: Box<dyn Connect>,
}

impl Connect for RotatingConnect {
    fn connect(&self, pg: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let pg = match &self.secret {
            Some(secret) => secret.current(),
            None => pg.clone(),
        };
        Box::pin(async move { self.inner.connect(&pg).await })
    }
}

fn tls_connector(config: &CatalogConfig) -> Result<MakeRustlsConnect, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(SetupError::CaFile)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(SetupError::CaPem)?)
                    .map_err(SetupError::CaCert)?;
            }
            if roots.is_empty() {
                return Err(SetupError::CaEmpty);
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
        .map_err(SetupError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
