//! The configuration, read once per execution environment from the
//! environment variables PeerDB's own services read (and a few more in the
//! same style). Only parsing: what names a secret is resolved later, by
//! `secrets`. An empty variable counts as unset, as SAM passes every
//! parameter whether given or not.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode;

use crate::bearer::{BearerConfigError, OAuthConfig};
use crate::metrics::DEFAULT_NAMESPACE;

/// What the environment says, typed.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PEERDB_PASSWORD`: plain, or KMS ciphertext when `kms_key_id` is set.
    pub api_password: Option<Secret>,
    /// `PEERDB_LOGS_DISABLE_AUTH`: for deployments that authorize at API
    /// Gateway, or are reachable only inside a private network.
    pub auth_disabled: bool,
    /// `PEERDB_LOGS_DISABLE_COMPRESSION`: never compress, whatever the
    /// caller accepts. PeerDB's UI needs it: its proxy's fetch accepts gzip,
    /// decodes the body, and passes the `Content-Encoding` on to the browser.
    pub compression_disabled: bool,
    /// `PEERDB_OAUTH_*`: bearer tokens, beside the password.
    pub oauth: Option<OAuthConfig>,
    pub catalog: CatalogConfig,
    pub secrets: SecretRefs,
    pub limits: Limits,
    /// `PEERDB_LOGS_METRICS_NAMESPACE`, checked to be one CloudWatch takes;
    /// `None` when `PEERDB_LOGS_DISABLE_METRICS` turns the metrics off.
    pub metrics_namespace: Option<String>,
}

/// Where secrets kept the AWS way are, resolved by `secrets`.
#[derive(Debug, Clone, Default)]
pub struct SecretRefs {
    /// `PEERDB_KMS_KEY_ID`: the passwords are base64 KMS ciphertext.
    pub kms_key_id: Option<String>,
    /// `PEERDB_CATALOG_SECRET_ID`: catalog settings in RDS's format.
    pub catalog_secret_id: Option<String>,
    /// `PEERDB_PASSWORD_SECRET_ID`: the API password.
    pub password_secret_id: Option<String>,
    /// How long a copy of the API password secret is trusted.
    pub password_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page_size: i64,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub target: CatalogTarget,
    /// `PEERDB_CATALOG_REQUIRE_TLS`: TLS with the certificate and host name
    /// verified.
    pub require_tls: bool,
    /// PEM bundle of the CA(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub pool_timeout: Duration,
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogTarget {
    /// `DATABASE_URL`, already checked to parse.
    Url(Secret),
    /// The `PEERDB_CATALOG_*` variables (and a catalog secret's fields).
    Fields(CatalogFields),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogFields {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub dbname: Option<String>,
}

/// A value never shown: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A setting that is missing or malformed. Names the variable, never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be a whole number")]
    NotANumber(&'static str),
    #[error("{0} must be true or false")]
    NotAFlag(&'static str),
    #[error("{0} must be a port number")]
    NotAPort(&'static str),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{0} is too large")]
    TooLarge(&'static str),
    #[error(
        "{0} must be at most 255 letters, digits, spaces and . - _ / # : (not only spaces), \
         and must not start with AWS/"
    )]
    BadNamespace(&'static str),
    // The parser's message can quote the URL, password included.
    #[error("DATABASE_URL is not a valid Postgres connection string")]
    BadUrl,
    #[error("set PEERDB_CATALOG_HOST (or DATABASE_URL) to the catalog database")]
    NoCatalog,
    #[error("set either DATABASE_URL or PEERDB_CATALOG_SECRET_ID, not both")]
    UrlAndSecret,
    #[error(transparent)]
    OAuth(#[from] BearerConfigError),
}

pub const DEFAULT_MAX_PAGE_SIZE: i64 = 1000;

impl Config {
    /// The process's environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var`, which returns a variable's
    /// value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(&var);
        let url = vars.get("DATABASE_URL");
        let catalog_secret_id = vars.get("PEERDB_CATALOG_SECRET_ID");
        if url.is_some() && catalog_secret_id.is_some() {
            return Err(ConfigError::UrlAndSecret);
        }
        let target = match url {
            Some(url) => {
                tokio_postgres::Config::from_str(&url).map_err(|_| ConfigError::BadUrl)?;
                CatalogTarget::Url(Secret(url))
            }
            None => CatalogTarget::Fields(CatalogFields {
                host: vars.get("PEERDB_CATALOG_HOST"),
                port: vars.port("PEERDB_CATALOG_PORT")?,
                user: vars.get("PEERDB_CATALOG_USER"),
                password: vars.get("PEERDB_CATALOG_PASSWORD").map(Secret),
                dbname: vars.get("PEERDB_CATALOG_DATABASE"),
            }),
        };
        let pool_size = vars.number("PEERDB_CATALOG_POOL_SIZE", 4)?;
        if pool_size == 0 {
            return Err(ConfigError::Zero("PEERDB_CATALOG_POOL_SIZE"));
        }
        let max_page_size =
            vars.number("PEERDB_LOGS_MAX_PAGE_SIZE", DEFAULT_MAX_PAGE_SIZE as u64)?;
        Ok(Config {
            api_password: vars.get("PEERDB_PASSWORD").map(Secret),
            auth_disabled: vars.flag("PEERDB_LOGS_DISABLE_AUTH")?,
            compression_disabled: vars.flag("PEERDB_LOGS_DISABLE_COMPRESSION")?,
            oauth: OAuthConfig::from_vars(|name| vars.get(name))?,
            catalog: CatalogConfig {
                target,
                require_tls: vars.flag("PEERDB_CATALOG_REQUIRE_TLS")?,
                ca_file: vars.get("PEERDB_CATALOG_CA_FILE").map(PathBuf::from),
                pool_size: pool_size as usize,
                connect_timeout: vars.millis("PEERDB_CATALOG_CONNECT_TIMEOUT_MS", 3000)?,
                pool_timeout: vars.millis("PEERDB_CATALOG_POOL_TIMEOUT_MS", 2000)?,
                statement_timeout: vars.millis("PEERDB_CATALOG_STATEMENT_TIMEOUT_MS", 5000)?,
            },
            secrets: SecretRefs {
                kms_key_id: vars.get("PEERDB_KMS_KEY_ID"),
                catalog_secret_id,
                password_secret_id: vars.get("PEERDB_PASSWORD_SECRET_ID"),
                password_max_age: Duration::from_secs(
                    vars.number("PEERDB_PASSWORD_SECRET_MAX_AGE_SECONDS", 300)?,
                ),
            },
            limits: Limits {
                max_page_size: i64::try_from(max_page_size)
                    .map_err(|_| ConfigError::TooLarge("PEERDB_LOGS_MAX_PAGE_SIZE"))?,
                max_body_bytes: vars.number("PEERDB_LOGS_MAX_BODY_BYTES", 64 * 1024)? as usize,
            },
            metrics_namespace: if vars.flag("PEERDB_LOGS_DISABLE_METRICS")? {
                None
            } else {
                Some(vars.namespace("PEERDB_LOGS_METRICS_NAMESPACE")?)
            },
        })
    }
}

impl CatalogConfig {
    /// The connection settings, once secrets are resolved.
    pub fn pg(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let mut pg = match &self.target {
            CatalogTarget::Url(url) => {
                tokio_postgres::Config::from_str(url.expose()).map_err(|_| ConfigError::BadUrl)?
            }
            CatalogTarget::Fields(fields) => {
                let host = fields.host.as_deref().ok_or(ConfigError::NoCatalog)?;
                let mut pg = tokio_postgres::Config::new();
                pg.host(host)
                    .port(fields.port.unwrap_or(5432))
                    .user(fields.user.as_deref().unwrap_or("postgres"))
                    .dbname(fields.dbname.as_deref().unwrap_or("postgres"))
                    .ssl_mode(SslMode::Disable);
                if let Some(password) = &fields.password {
                    pg.password(password.expose());
                }
                pg
            }
        };
        if self.require_tls {
            pg.ssl_mode(SslMode::Require);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("peerdb-mirror-logs");
        }
        pg.connect_timeout(self.connect_timeout);
        Ok(pg)
    }
}

/// The variables, with the parsing rules every setting shares.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        self.get(name).map_or(Ok(default), |v| {
            v.trim().parse().map_err(|_| ConfigError::NotANumber(name))
        })
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(name, default).map(Duration::from_millis)
    }

    fn port(&self, name: &'static str) -> Result<Option<u16>, ConfigError> {
        self.get(name)
            .map(|v| v.trim().parse().map_err(|_| ConfigError::NotAPort(name)))
            .transpose()
    }

    /// A CloudWatch namespace: what PutMetricData takes, but the `AWS/`
    /// namespaces, which are AWS's own. One it refuses would drop every
    /// document silently, so it is refused here instead.
    fn namespace(&self, name: &'static str) -> Result<String, ConfigError> {
        let namespace = self
            .get(name)
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let allowed = |c: char| c.is_ascii_alphanumeric() || " .-_/#:".contains(c);
        if namespace.len() > 255
            || !namespace.chars().all(allowed)
            || namespace.trim().is_empty()
            || namespace.starts_with("AWS/")
        {
            return Err(ConfigError::BadNamespace(name));
        }
        Ok(namespace)
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(_) => Err(ConfigError::NotAFlag(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn peerdb_catalog_variables() {
        let c = config(&[
            ("PEERDB_CATALOG_HOST", "catalog.internal"),
            ("PEERDB_CATALOG_PORT", "6432"),
            ("PEERDB_CATALOG_USER", "logs_reader"),
            ("PEERDB_CATALOG_PASSWORD", "s3cret"),
            ("PEERDB_CATALOG_DATABASE", "peerdb"),
            ("PEERDB_PASSWORD", "peerdb"),
        ])
        .unwrap();
        let pg = c.catalog.pg().unwrap();
        assert_eq!(pg.get_ports(), &[6432]);
        assert_eq!(pg.get_user(), Some("logs_reader"));
        assert_eq!(pg.get_dbname(), Some("peerdb"));
        assert_eq!(pg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(pg.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.api_password, Some(Secret::new("peerdb")));
        assert_eq!(c.limits.max_page_size, 1000);
    }

    #[test]
    fn require_tls_means_verified_tls_with_an_optional_ca_file() {
        let c = config(&[
            ("PEERDB_CATALOG_HOST", "h"),
            ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
            ("PEERDB_CATALOG_CA_FILE", "/opt/rds.pem"),
        ])
        .unwrap();
        assert_eq!(c.catalog.pg().unwrap().get_ssl_mode(), SslMode::Require);
        assert_eq!(c.catalog.ca_file, Some(PathBuf::from("/opt/rds.pem")));
    }

    #[test]
    fn database_url_replaces_the_catalog_variables() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:p@db:7777/cat"),
            ("PEERDB_CATALOG_HOST", "ignored"),
        ])
        .unwrap();
        let pg = c.catalog.pg().unwrap();
        assert_eq!(pg.get_ports(), &[7777]);
        assert_eq!(pg.get_dbname(), Some("cat"));
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{c:?}").contains("postgres://"));
    }

    #[test]
    fn auth_is_off_only_when_said_so() {
        let c = config(&[("PEERDB_CATALOG_HOST", "h"), ("PEERDB_PASSWORD", "")]).unwrap();
        assert!(c.api_password.is_none() && !c.auth_disabled);
        let c = config(&[("PEERDB_LOGS_DISABLE_AUTH", "true")]).unwrap();
        assert!(c.auth_disabled);
    }

    #[test]
    fn compression_is_off_only_when_said_so() {
        assert!(!config(&[]).unwrap().compression_disabled);
        let c = config(&[("PEERDB_LOGS_DISABLE_COMPRESSION", "true")]).unwrap();
        assert!(c.compression_disabled);
    }

    #[test]
    fn missing_or_malformed_settings_name_the_variable() {
        let no_host = config(&[]).unwrap();
        assert_eq!(no_host.catalog.pg().unwrap_err(), ConfigError::NoCatalog);
        assert!(no_host
            .catalog
            .pg()
            .unwrap_err()
            .to_string()
            .contains("PEERDB_CATALOG_HOST"));
        for (name, value) in [
            ("PEERDB_LOGS_DISABLE_METRICS", "off"),
            ("PEERDB_LOGS_METRICS_NAMESPACE", "AWS/Lambda"),
            ("PEERDB_CATALOG_PORT", "70000"),
            ("PEERDB_LOGS_MAX_PAGE_SIZE", "many"),
            ("PEERDB_CATALOG_POOL_SIZE", "0"),
            ("PEERDB_LOGS_DISABLE_AUTH", "yes"),
            ("PEERDB_LOGS_DISABLE_COMPRESSION", "no thanks"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        assert_eq!(
            config(&[
                ("DATABASE_URL", "postgres://h/d"),
                ("PEERDB_CATALOG_SECRET_ID", "s")
            ])
            .unwrap_err(),
            ConfigError::UrlAndSecret
        );
    }

    #[test]
    fn metrics_are_on_in_their_namespace_unless_turned_off() {
        assert_eq!(
            config(&[]).unwrap().metrics_namespace.as_deref(),
            Some("PeerDBMirrorLogs")
        );
        let ns = |value: &str| {
            config(&[("PEERDB_LOGS_METRICS_NAMESPACE", value)]).map(|c| c.metrics_namespace)
        };
        for good in [
            "Team/PeerDB Logs",
            "peerdb.logs-prod_1#a:b",
            &"x".repeat(255),
        ] {
            assert_eq!(ns(good), Ok(Some(good.to_string())));
        }
        // Empty is unset, as for every variable: the default.
        assert_eq!(ns(""), Ok(Some("PeerDBMirrorLogs".into())));
        for bad in [
            "AWS/Lambda",
            "logs\u{e9}",
            "a{b}",
            "   ",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert_eq!(
                ns(bad),
                Err(ConfigError::BadNamespace("PEERDB_LOGS_METRICS_NAMESPACE")),
                "{bad:?}"
            );
        }
        for off in ["true", "1", "TRUE"] {
            let c = config(&[
                ("PEERDB_LOGS_DISABLE_METRICS", off),
                ("PEERDB_LOGS_METRICS_NAMESPACE", "AWS/not-checked-when-off"),
            ])
            .unwrap();
            assert_eq!(c.metrics_namespace, None, "{off}");
        }
        let on = config(&[("PEERDB_LOGS_DISABLE_METRICS", "false")]).unwrap();
        assert!(on.metrics_namespace.is_some());
    }
}
