//! Settings, read once per execution environment from the environment
//! variables PeerDB's own services read (and a few more in the same
//! style). An empty variable counts as unset, as SAM passes every
//! parameter whether given or not.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;

use crate::auth::Authenticator;
use crate::secrets::{CatalogRotation, PasswordSecret};

/// Everything the handler needs to know, decided at start.
pub struct Settings {
    pub auth: Authenticator,
    /// Set when the API password comes from Secrets Manager: it replaces
    /// `auth`, which holds the password as first read.
    pub password_secret: Option<PasswordSecret>,
    pub catalog: CatalogSettings,
    pub max_page_size: i64,
    pub max_body_bytes: usize,
}

pub struct CatalogSettings {
    pub pg: tokio_postgres::Config,
    /// `Some` when the connection may or must use TLS.
    pub tls: Option<TlsSettings>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub pool_timeout: Duration,
    pub statement_timeout: Duration,
    /// Set when the settings come from Secrets Manager: re-read when the
    /// catalog refuses them.
    pub rotation: Option<Arc<CatalogRotation>>,
}

pub struct TlsSettings {
    /// PEM bundle of the CA(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// A setting that is missing or malformed. Says which variable and why,
/// never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_MAX_PAGE_SIZE: i64 = 1000;

/// Reads settings through `var`, which returns a variable's value. The
/// secrets a variable names are resolved by [`crate::secrets::settings`].
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let get = |name: &str| var(name).filter(|v| !v.is_empty());
    let number = |name: &str, default: u64| -> Result<u64, ConfigError> {
        get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|_| ConfigError(format!("{name} must be a whole number")))
        })
    };
    let flag = |name: &str| -> Result<bool, ConfigError> {
        match get(name).as_deref().map(str::trim) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(_) => Err(ConfigError(format!("{name} must be true or false"))),
        }
    };

    // Left unresolved: refuse them rather than use ciphertext or a
    // secret's name as a password.
    for name in [
        "PEERDB_KMS_KEY_ID",
        "PEERDB_CATALOG_SECRET_ID",
        "PEERDB_PASSWORD_SECRET_ID",
    ] {
        if get(name).is_some() {
            return Err(ConfigError(format!("{name} is set, but was not resolved")));
        }
    }
    let auth = match (get("PEERDB_PASSWORD"), flag("PEERDB_LOGS_DISABLE_AUTH")?) {
        (_, true) => Authenticator::Disabled,
        (Some(password), false) => Authenticator::password(&password),
        (None, false) => Authenticator::NotConfigured,
    };

    let require_tls = flag("PEERDB_CATALOG_REQUIRE_TLS")?;
    let mut pg = match get("DATABASE_URL") {
        Some(url) => tokio_postgres::Config::from_str(&url)
            // The parser's message can quote the URL, password included.
            .map_err(|_| {
                ConfigError("DATABASE_URL is not a valid Postgres connection string".into())
            })?,
        None => {
            let host = get("PEERDB_CATALOG_HOST").ok_or_else(|| {
                ConfigError(
                    "set PEERDB_CATALOG_HOST (or DATABASE_URL) to the catalog database".into(),
                )
            })?;
            let port = u16::try_from(number("PEERDB_CATALOG_PORT", 5432)?)
                .map_err(|_| ConfigError("PEERDB_CATALOG_PORT must be a port number".into()))?;
            let mut pg = tokio_postgres::Config::new();
            pg.host(&host)
                .port(port)
                .user(get("PEERDB_CATALOG_USER").as_deref().unwrap_or("postgres"))
                .dbname(
                    get("PEERDB_CATALOG_DATABASE")
                        .as_deref()
                        .unwrap_or("postgres"),
                )
                .ssl_mode(SslMode::Disable);
            if let Some(password) = get("PEERDB_CATALOG_PASSWORD") {
                pg.password(password);
            }
            pg
        }
    };
    if require_tls {
        pg.ssl_mode(SslMode::Require);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("peerdb-mirror-logs");
    }
    let connect_timeout = Duration::from_millis(number("PEERDB_CATALOG_CONNECT_TIMEOUT_MS", 3000)?);
    pg.connect_timeout(connect_timeout);
    let tls = (pg.get_ssl_mode() != SslMode::Disable).then(|| TlsSettings {
        ca_file: get("PEERDB_CATALOG_CA_FILE").map(PathBuf::from),
    });

    let pool_size = number("PEERDB_CATALOG_POOL_SIZE", 4)?;
    if pool_size == 0 {
        return Err(ConfigError(
            "PEERDB_CATALOG_POOL_SIZE must be at least 1".into(),
        ));
    }
    let max_page_size = number("PEERDB_LOGS_MAX_PAGE_SIZE", DEFAULT_MAX_PAGE_SIZE as u64)?;
    Ok(Settings {
        auth,
        password_secret: None,
        catalog: CatalogSettings {
            pg,
            tls,
            pool_size: pool_size as usize,
            connect_timeout,
            pool_timeout: Duration::from_millis(number("PEERDB_CATALOG_POOL_TIMEOUT_MS", 2000)?),
            statement_timeout: Duration::from_millis(number(
                "PEERDB_CATALOG_STATEMENT_TIMEOUT_MS",
                5000,
            )?),
            rotation: None,
        },
        max_page_size: i64::try_from(max_page_size)
            .map_err(|_| ConfigError("PEERDB_LOGS_MAX_PAGE_SIZE is too large".into()))?,
        max_body_bytes: number("PEERDB_LOGS_MAX_BODY_BYTES", 64 * 1024)? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn peerdb_catalog_variables() {
        let s = settings(&[
            ("PEERDB_CATALOG_HOST", "catalog.internal"),
            ("PEERDB_CATALOG_PORT", "6432"),
            ("PEERDB_CATALOG_USER", "logs_reader"),
            ("PEERDB_CATALOG_PASSWORD", "s3cret"),
            ("PEERDB_CATALOG_DATABASE", "peerdb"),
            ("PEERDB_PASSWORD", "peerdb"),
        ])
        .unwrap();
        assert_eq!(s.catalog.pg.get_ports(), &[6432]);
        assert_eq!(s.catalog.pg.get_user(), Some("logs_reader"));
        assert_eq!(s.catalog.pg.get_dbname(), Some("peerdb"));
        assert_eq!(s.catalog.pg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(s.catalog.pg.get_ssl_mode(), SslMode::Disable);
        assert!(s.catalog.tls.is_none());
        assert!(matches!(s.auth, Authenticator::Password(_)));
        assert_eq!(s.max_page_size, 1000);
    }

    #[test]
    fn require_tls_means_verified_tls_with_an_optional_ca_file() {
        let s = settings(&[
            ("PEERDB_CATALOG_HOST", "h"),
            ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
            ("PEERDB_CATALOG_CA_FILE", "/opt/rds.pem"),
        ])
        .unwrap();
        assert_eq!(s.catalog.pg.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            s.catalog.tls.unwrap().ca_file,
            Some(PathBuf::from("/opt/rds.pem"))
        );
    }

    #[test]
    fn database_url_replaces_the_catalog_variables() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://u:p@db:7777/cat"),
            ("PEERDB_CATALOG_HOST", "ignored"),
        ])
        .unwrap();
        assert_eq!(s.catalog.pg.get_ports(), &[7777]);
        assert_eq!(s.catalog.pg.get_dbname(), Some("cat"));
        let err = settings(&[("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")])
            .err()
            .unwrap();
        assert!(!err.0.contains("hunter2"));
    }

    #[test]
    fn fail_closed_unless_auth_is_explicitly_off() {
        let s = settings(&[("PEERDB_CATALOG_HOST", "h"), ("PEERDB_PASSWORD", "")]).unwrap();
        assert!(matches!(s.auth, Authenticator::NotConfigured));
        let s = settings(&[
            ("PEERDB_CATALOG_HOST", "h"),
            ("PEERDB_LOGS_DISABLE_AUTH", "true"),
        ])
        .unwrap();
        assert!(matches!(s.auth, Authenticator::Disabled));
    }

    #[test]
    fn missing_or_malformed_settings_name_the_variable() {
        assert!(settings(&[])
            .err()
            .unwrap()
            .0
            .contains("PEERDB_CATALOG_HOST"));
        let err = settings(&[
            ("PEERDB_CATALOG_HOST", "h"),
            ("PEERDB_CATALOG_PORT", "70000"),
        ])
        .err()
        .unwrap();
        assert!(err.0.contains("PEERDB_CATALOG_PORT"));
        let err = settings(&[
            ("PEERDB_CATALOG_HOST", "h"),
            ("PEERDB_LOGS_MAX_PAGE_SIZE", "many"),
        ])
        .err()
        .unwrap();
        assert!(err.0.contains("PEERDB_LOGS_MAX_PAGE_SIZE"));
    }
}
