//! Secrets kept the AWS way, resolved by one async step at start
//! ([`resolve`]) before the application's state is built:
//!
//! - `PEERDB_KMS_KEY_ID`: `PEERDB_CATALOG_PASSWORD` and `PEERDB_PASSWORD`
//!   hold base64 KMS ciphertext (PeerDB's rule: trim, decode, `Decrypt`).
//! - `PEERDB_CATALOG_SECRET_ID`: a secret in the format RDS writes fills in
//!   the catalog settings, and is read again when the catalog refuses them
//!   (a rotation), through [`CatalogSecret`].
//! - `PEERDB_PASSWORD_SECRET_ID`: the API password, re-read by `auth` as it
//!   ages and when a request presents one that does not match, through
//!   [`PasswordSecret`].
//!
//! With none of the three set, no AWS SDK code runs. Secret values reach
//! no log line, error message or panic: errors about a secret's content
//! are written here, never passed on from a parser that might quote it.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::primitives::Blob;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use base64::Engine;
use serde_json::Value;
use tracing::{error, info};

use crate::config::{CatalogConfig, CatalogFields, CatalogTarget, Config, ConfigError, Secret};

/// Least time between two re-reads of a secret caused by a refused
/// password, so a wrong one cannot make every request call AWS.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

type Source = Box<dyn std::error::Error + Send + Sync>;

/// A secret that cannot be resolved. Says which setting and why, never a
/// secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{variable} cannot be decrypted with PEERDB_KMS_KEY_ID: {why}")]
    Decrypt {
        variable: &'static str,
        why: &'static str,
    },
    #[error("{variable} cannot be decrypted with PEERDB_KMS_KEY_ID")]
    Kms {
        variable: &'static str,
        #[source]
        source: Source,
    },
    #[error("{variable} ({id}): cannot read the secret")]
    Read {
        variable: &'static str,
        id: String,
        #[source]
        source: Source,
    },
    #[error("{variable} ({id}): {why}")]
    Content {
        variable: &'static str,
        id: String,
        why: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The configuration with every secret in place, and what re-reads them.
pub struct Resolved {
    pub config: Config,
    pub catalog_secret: Option<CatalogSecret>,
    pub password_secret: Option<PasswordSecret>,
}

/// Resolves the secrets `config` names.
pub async fn resolve(mut config: Config) -> Result<Resolved, SecretsError> {
    let refs = config.secrets.clone();
    if refs.kms_key_id.is_none()
        && refs.catalog_secret_id.is_none()
        && refs.password_secret_id.is_none()
    {
        return Ok(Resolved {
            config,
            catalog_secret: None,
            password_secret: None,
        });
    }
    let aws = Aws::load().await;

    // Independent round trips, made together to keep the cold start short.
    let decrypt = |variable: &'static str, value: Option<&Secret>| {
        let (aws, key, value) = (&aws, refs.kms_key_id.as_deref(), value.cloned());
        async move {
            match (key, value) {
                (Some(key), Some(value)) => {
                    let plaintext = aws.decrypt(key, variable, value.expose()).await?;
                    info!(variable, "decrypted with KMS");
                    Ok(Some(Secret::new(plaintext)))
                }
                (_, value) => Ok::<_, SecretsError>(value),
            }
        }
    };
    let catalog_password = match &config.catalog.target {
        CatalogTarget::Fields(fields) => fields.password.as_ref(),
        CatalogTarget::Url(_) => None,
    };
    let read = |variable: &'static str, id: Option<String>| {
        let aws = &aws;
        async move {
            match id {
                Some(id) => {
                    Ok::<_, SecretsError>(Some((aws.secret_string(variable, &id, None).await?, id)))
                }
                None => Ok(None),
            }
        }
    };
    let (catalog_password, api_password, password_secret, catalog_secret) = tokio::join!(
        decrypt("PEERDB_CATALOG_PASSWORD", catalog_password),
        decrypt("PEERDB_PASSWORD", config.api_password.as_ref()),
        read("PEERDB_PASSWORD_SECRET_ID", refs.password_secret_id.clone()),
        read("PEERDB_CATALOG_SECRET_ID", refs.catalog_secret_id.clone()),
    );
    let (catalog_password, api_password) = (catalog_password?, api_password?);
    if let CatalogTarget::Fields(fields) = &mut config.catalog.target {
        fields.password = catalog_password;
    }
    config.api_password = api_password;

    let password_secret = match password_secret? {
        Some((text, id)) => {
            let password = api_password_of(text).map_err(|why| SecretsError::Content {
                variable: "PEERDB_PASSWORD_SECRET_ID",
                id: id.clone(),
                why,
            })?;
            info!(secret = %id, "read the API password from Secrets Manager");
            config.api_password = Some(Secret::new(password));
            Some(PasswordSecret {
                aws: aws.clone(),
                id,
                max_age: refs.password_max_age,
            })
        }
        None => None,
    };
    let catalog_secret = match catalog_secret? {
        Some((text, id)) => {
            let base = config.catalog.clone();
            let content = |why: String| SecretsError::Content {
                variable: "PEERDB_CATALOG_SECRET_ID",
                id: id.clone(),
                why,
            };
            config.catalog = with_catalog_secret(&text, &base).map_err(content)?;
            let pg = config.catalog.pg()?;
            info!(secret = %id, "read the catalog settings from Secrets Manager");
            Some(CatalogSecret {
                aws,
                id,
                base,
                current: RwLock::new(pg),
                last_refresh: tokio::sync::Mutex::new(None),
            })
        }
        None => None,
    };
    Ok(Resolved {
        config,
        catalog_secret,
        password_secret,
    })
}

/// `base` with a catalog secret's fields in place. A PEERDB_CATALOG_HOST
/// of its own (RDS Proxy or PgBouncer in front of the database the secret
/// describes) keeps its host and port.
fn with_catalog_secret(text: &str, base: &CatalogConfig) -> Result<CatalogConfig, String> {
    let secret = catalog_fields(text)?;
    let own = match &base.target {
        CatalogTarget::Fields(fields) => fields.clone(),
        CatalogTarget::Url(_) => CatalogFields::default(),
    };
    let (host, port) = match own.host {
        Some(host) => (Some(host), own.port),
        None => (secret.host, secret.port.or(own.port)),
    };
    Ok(CatalogConfig {
        target: CatalogTarget::Fields(CatalogFields {
            host,
            port,
            user: secret.user.or(own.user),
            password: secret.password.or(own.password),
            dbname: secret.dbname.or(own.dbname),
        }),
        ..base.clone()
    })
}

/// The catalog settings a secret in RDS's format holds.
fn catalog_fields(text: &str) -> Result<CatalogFields, String> {
    let json: Value = serde_json::from_str(text)
        .map_err(|_| "the secret is not JSON in the format RDS writes".to_string())?;
    let object = json
        .as_object()
        .ok_or("the secret is not a JSON object in the format RDS writes")?;
    let string = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("the secret's \"{field}\" is not a string")),
    };
    let port = match object.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("the secret's \"port\" is not a port number".into()),
    };
    Ok(CatalogFields {
        host: string("host")?,
        port: port
            .map(|p| p.trim().parse::<u16>())
            .transpose()
            .map_err(|_| "the secret's \"port\" is not a port number".to_string())?,
        user: string("username")?,
        password: string("password")?.map(Secret::new),
        dbname: string("dbname")?,
    })
}

/// The API password a secret holds: the whole string, or the `password` of
/// a JSON object.
fn api_password_of(text: String) -> Result<String, String> {
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => match object.get("password") {
            Some(Value::String(password)) => Ok(password.clone()),
            _ => Err("the secret is a JSON object without a \"password\" string".into()),
        },
        _ if text.is_empty() => Err("the secret holds no string".into()),
        _ => Ok(text),
    }
}

/// The SDK clients, built once.
#[derive(Clone)]
struct Aws {
    kms: aws_sdk_kms::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    /// Region, credentials and endpoint come from the environment as the
    /// SDK reads it (`AWS_REGION`, Lambda's credentials, `AWS_ENDPOINT_URL`).
    async fn load() -> Aws {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        // Short limits: these calls are on the cold start and, after a
        // rotation, on a request's path.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(4))
            .build();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .load()
            .await;
        Aws {
            kms: aws_sdk_kms::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    /// `variable`'s value decrypted by PeerDB's rule.
    async fn decrypt(
        &self,
        key_id: &str,
        variable: &'static str,
        ciphertext: &str,
    ) -> Result<String, SecretsError> {
        let fail = |why| SecretsError::Decrypt { variable, why };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ciphertext.trim())
            .map_err(|_| fail("it is not base64 KMS ciphertext"))?;
        let output = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| SecretsError::Kms {
                variable,
                source: aws_sdk_kms::error::DisplayErrorContext(e)
                    .to_string()
                    .into(),
            })?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| fail("KMS returned no plaintext"))?;
        String::from_utf8(plaintext.into_inner()).map_err(|_| fail("the plaintext is not UTF-8"))
    }

    /// The secret's string at `stage` (AWSCURRENT when `None`). With a
    /// stage, `Ok(None)` when no version is at it.
    async fn secret_string(
        &self,
        variable: &'static str,
        id: &str,
        stage: Option<&str>,
    ) -> Result<String, SecretsError> {
        self.staged_secret_string(variable, id, stage)
            .await?
            .ok_or_else(|| SecretsError::Content {
                variable,
                id: id.to_string(),
                why: "the secret has no current version".into(),
            })
    }

    async fn staged_secret_string(
        &self,
        variable: &'static str,
        id: &str,
        stage: Option<&str>,
    ) -> Result<Option<String>, SecretsError> {
        match self
            .secrets
            .get_secret_value()
            .secret_id(id)
            .set_version_stage(stage.map(str::to_owned))
            .send()
            .await
        {
            Ok(output) => match output.secret_string {
                Some(text) => Ok(Some(text)),
                None => Err(SecretsError::Content {
                    variable,
                    id: id.to_string(),
                    why: "the secret holds binary data, not a string".into(),
                }),
            },
            Err(e)
                if stage.is_some()
                    && e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(SecretsError::Read {
                variable,
                id: id.to_string(),
                source: aws_sdk_kms::error::DisplayErrorContext(e)
                    .to_string()
                    .into(),
            }),
        }
    }
}

/// The catalog settings from `PEERDB_CATALOG_SECRET_ID`, re-read when the
/// catalog refuses them. New connections use the newest settings; open
/// ones, which a password change does not end, stay in the pool.
pub struct CatalogSecret {
    aws: Aws,
    id: String,
    /// The catalog settings, KMS resolved, without this secret.
    base: CatalogConfig,
    current: RwLock<tokio_postgres::Config>,
    /// When the last re-read was, and whether it changed the settings.
    last_refresh: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl CatalogSecret {
    /// The settings new connections use.
    pub fn current(&self) -> tokio_postgres::Config {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Called when the catalog refused the credentials: re-reads the
    /// secret (at most once per [`RETRY_INTERVAL`]) and says whether the
    /// settings changed, so that signing in again may succeed. During an
    /// RDS rotation the new password is set on the database before the
    /// secret's AWSCURRENT moves to it, so AWSPENDING is tried too.
    pub async fn refresh(&self) -> bool {
        let mut last = self.last_refresh.lock().await;
        if let Some((at, changed)) = *last {
            if at.elapsed() < RETRY_INTERVAL {
                return changed;
            }
        }
        let changed = match self.newer_settings().await {
            Ok(Some((stage, pg))) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = pg;
                info!(secret = %self.id, stage, "the catalog refused its credentials; using the secret's new ones");
                true
            }
            Ok(None) => {
                error!(secret = %self.id, "the catalog refused its credentials and the secret holds no others");
                false
            }
            Err(e) => {
                error!(secret = %self.id, error = %crate::error::describe(&e), "the catalog refused its credentials and the secret cannot be re-read");
                false
            }
        };
        *last = Some((Instant::now(), changed));
        changed
    }

    async fn newer_settings(
        &self,
    ) -> Result<Option<(&'static str, tokio_postgres::Config)>, SecretsError> {
        const VARIABLE: &str = "PEERDB_CATALOG_SECRET_ID";
        let current = self.current();
        for stage in [None, Some("AWSPENDING")] {
            let Some(text) = self
                .aws
                .staged_secret_string(VARIABLE, &self.id, stage)
                .await?
            else {
                continue;
            };
            let pg = with_catalog_secret(&text, &self.base)
                .map_err(|why| SecretsError::Content {
                    variable: VARIABLE,
                    id: self.id.clone(),
                    why,
                })?
                .pg()?;
            if pg != current {
                return Ok(Some((stage.unwrap_or("AWSCURRENT"), pg)));
            }
        }
        Ok(None)
    }
}

/// Where the API password is kept, for `auth` to re-read.
pub struct PasswordSecret {
    aws: Aws,
    id: String,
    /// How long a copy read from it is trusted.
    pub max_age: Duration,
}

impl PasswordSecret {
    /// The password the secret holds now.
    pub async fn read(&self) -> Result<String, SecretsError> {
        const VARIABLE: &str = "PEERDB_PASSWORD_SECRET_ID";
        let text = self.aws.secret_string(VARIABLE, &self.id, None).await?;
        api_password_of(text).map_err(|why| SecretsError::Content {
            variable: VARIABLE,
            id: self.id.clone(),
            why,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(config: &CatalogConfig) -> &CatalogFields {
        match &config.target {
            CatalogTarget::Fields(fields) => fields,
            CatalogTarget::Url(_) => panic!("fields expected"),
        }
    }

    fn base(host: Option<&str>) -> CatalogConfig {
        let mut vars = vec![];
        if let Some(host) = host {
            vars.push(("PEERDB_CATALOG_HOST", host));
        }
        Config::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
        .catalog
    }

    #[test]
    fn an_rds_secret_fills_in_the_catalog_settings() {
        let c = with_catalog_secret(
            r#"{"engine":"postgres","host":"db.example","port":5433,"username":"reader",
                "password":"p@ss","dbname":"peerdb","dbInstanceIdentifier":"x"}"#,
            &base(None),
        )
        .unwrap();
        let f = fields(&c);
        assert_eq!(f.host.as_deref(), Some("db.example"));
        assert_eq!(f.port, Some(5433));
        assert_eq!(f.user.as_deref(), Some("reader"));
        assert_eq!(f.password, Some(Secret::new("p@ss")));
        assert_eq!(f.dbname.as_deref(), Some("peerdb"));
        let partial = catalog_fields(r#"{"username":"u","password":"p","port":"6432"}"#).unwrap();
        assert_eq!((partial.port, partial.host), (Some(6432), None));
    }

    #[test]
    fn a_malformed_catalog_secret_is_described_without_its_content() {
        for text in [
            "hunter2",
            "[\"hunter2\"]",
            r#"{"password": ["hunter2"]}"#,
            r#"{"port": "x", "password": 7}"#,
        ] {
            let e = catalog_fields(text).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains('7'), "{e}");
        }
    }

    #[test]
    fn the_api_password_is_a_plain_string_or_a_json_password() {
        assert_eq!(api_password_of("s3cret {x".into()).unwrap(), "s3cret {x");
        assert_eq!(
            api_password_of(r#"{"password":"pw","user":"u"}"#.into()).unwrap(),
            "pw"
        );
        assert!(api_password_of(r#"{"pass":"hunter2"}"#.into())
            .unwrap_err()
            .contains("password"));
        assert!(api_password_of(String::new()).is_err());
    }

    #[test]
    fn a_catalog_host_of_its_own_keeps_its_host_and_port() {
        let secret = r#"{"host":"db.internal","port":5433,"username":"u","password":"p"}"#;
        let proxied = with_catalog_secret(secret, &base(Some("proxy.internal"))).unwrap();
        let f = fields(&proxied);
        assert_eq!(f.host.as_deref(), Some("proxy.internal"));
        assert_eq!(f.port, None);
        assert_eq!(f.user.as_deref(), Some("u"));
        let direct = with_catalog_secret(secret, &base(None)).unwrap();
        assert_eq!(fields(&direct).host.as_deref(), Some("db.internal"));
        assert_eq!(fields(&direct).port, Some(5433));
    }
}
