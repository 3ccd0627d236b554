//! Start-up, in one place, for the Lambda binary, local mode and the tests
//! alike: the configuration read once, the secrets it names resolved (and,
//! beside them, the bearer tokens' key set fetched), and the application
//! built from them. Nothing here connects to the catalog:
//! the pool connects on the first request, so a catalog down at start is a
//! 503 per request until it is up.

use std::sync::Arc;

use axum::Router;
use tracing::{error, warn};

use crate::auth::{Auth, Password, RotatingPassword, WayIn};
use crate::bearer::{Bearer, BearerConfigError};
use crate::catalog::{Catalog, SetupError};
use crate::config::{Config, ConfigError, Limits};
use crate::error::describe;
use crate::metrics::Metrics;
use crate::route;
use crate::secrets::{self, PasswordSecret, SecretsError};

/// The state every request borrows, built once per execution environment.
pub(crate) struct App {
    pub(crate) auth: Auth,
    pub(crate) catalog: Catalog,
    pub(crate) limits: Limits,
    /// Whether a body may go compressed (`PEERDB_LOGS_DISABLE_COMPRESSION`).
    pub(crate) compress: bool,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Catalog(#[from] SetupError),
    #[error(transparent)]
    OAuth(#[from] BearerConfigError),
}

/// The application as the process's environment configures it.
pub async fn from_env() -> Router {
    build(Config::from_env()).await
}

/// The application `config` describes. One that cannot be used is said
/// once in the log; every request then gets a 500. The metrics go on
/// whenever the configuration itself parsed, so that a secret that cannot
/// be read shows as 5xx in them too.
pub async fn build(config: Result<Config, ConfigError>) -> Router {
    let metrics = config
        .as_ref()
        .ok()
        .and_then(|c| c.metrics_namespace.clone())
        .map(|namespace| Arc::new(Metrics::new(namespace)));
    match app(config).await {
        Ok(app) => route::router(Some(Arc::new(app)), metrics),
        Err(e) => {
            error!(problem = %describe(&e), "not configured: every request will get a 500 until this is fixed");
            route::router(None, metrics)
        }
    }
}

async fn app(config: Result<Config, ConfigError>) -> Result<App, StartupError> {
    let config = config?;
    // The key set is fetched beside the secrets: both are on the cold start.
    let (oauth, connect_timeout) = (config.oauth.clone(), config.catalog.connect_timeout);
    let bearer = async {
        match oauth {
            Some(oauth) => Bearer::new(oauth, connect_timeout).await.map(Some),
            None => Ok(None),
        }
    };
    let (resolved, bearer) = tokio::join!(secrets::resolve(config), bearer);
    let (resolved, bearer) = (resolved?, bearer?);
    let config = resolved.config;
    Ok(App {
        auth: auth(&config, resolved.password_secret, bearer),
        catalog: Catalog::new(&config.catalog, resolved.catalog_secret)?,
        limits: config.limits,
        compress: !config.compression_disabled,
    })
}

fn auth(config: &Config, password_secret: Option<PasswordSecret>, bearer: Option<Bearer>) -> Auth {
    if config.auth_disabled {
        // Nothing is then checked, so a secret holding the password is not re-read.
        warn!("authentication is disabled (PEERDB_LOGS_DISABLE_AUTH)");
        return Auth::Disabled;
    }
    let password = config
        .api_password
        .as_ref()
        .map(|password| match password_secret {
            Some(secret) => WayIn::PasswordSecret(RotatingPassword::new(secret, password.expose())),
            None => WayIn::Password(Password::new(password.expose())),
        });
    let ways: Vec<WayIn> = password
        .into_iter()
        .chain(bearer.map(|b| WayIn::Bearer(Box::new(b))))
        .collect();
    if ways.is_empty() {
        error!(
            "no API password: set PEERDB_PASSWORD or PEERDB_OAUTH_ISSUER_URL (or PEERDB_LOGS_DISABLE_AUTH=true \
             when API Gateway authorizes callers); every request will get a 500 until then"
        );
        return Auth::NotConfigured;
    }
    Auth::Required(ways)
}
