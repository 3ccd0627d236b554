//! Secrets kept the AWS way, resolved by one async step at start
//! ([`settings`]) before the handler's state is built:
//!
//! - `PEERDB_KMS_KEY_ID`: `PEERDB_CATALOG_PASSWORD` and `PEERDB_PASSWORD`
//!   hold base64 KMS ciphertext (PeerDB's rule: trim, decode, `Decrypt`).
//! - `PEERDB_CATALOG_SECRET_ID`: a secret in the format RDS writes fills in
//!   the catalog settings, and is read again when the catalog refuses them
//!   (a rotation), through [`CatalogRotation`].
//! - `PEERDB_PASSWORD_SECRET_ID`: the API password, re-read as it ages and
//!   when a request presents one that does not match ([`PasswordSecret`]).
//!
//! With none of the three set, no AWS SDK code runs. Secret values reach
//! no log line, error message or panic: errors about a secret's content
//! are written here, never passed on from a parser that might quote it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use base64::Engine;
use deadpool_postgres::{ConfigConnectImpl, Connect};
use lambda_http::http::header::{HeaderMap, AUTHORIZATION};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{error, info, warn};

use crate::auth::Authenticator;
use crate::config::{self, ConfigError, Settings};
use crate::error::ApiError;

const KMS_KEY_ID: &str = "PEERDB_KMS_KEY_ID";
pub const CATALOG_SECRET_ID: &str = "PEERDB_CATALOG_SECRET_ID";
const PASSWORD_SECRET_ID: &str = "PEERDB_PASSWORD_SECRET_ID";
const PASSWORD_MAX_AGE: &str = "PEERDB_PASSWORD_SECRET_MAX_AGE_SECONDS";
const DEFAULT_PASSWORD_MAX_AGE: Duration = Duration::from_secs(300);

/// Least time between two re-reads of a secret caused by a refused
/// password, so a wrong one cannot make every request call AWS.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// The catalog settings a secret in RDS's format fills in.
const CATALOG_FIELDS: [(&str, &str); 5] = [
    ("host", "PEERDB_CATALOG_HOST"),
    ("port", "PEERDB_CATALOG_PORT"),
    ("username", "PEERDB_CATALOG_USER"),
    ("password", "PEERDB_CATALOG_PASSWORD"),
    ("dbname", "PEERDB_CATALOG_DATABASE"),
];

/// Reads settings through `var`, as [`config::from_vars`] does, once the
/// secrets it names are resolved.
pub async fn settings<V>(var: V) -> Result<Settings, ConfigError>
where
    V: Fn(&str) -> Option<String> + Send + Sync + 'static,
{
    let get = |name: &str| var(name).filter(|v| !v.is_empty());
    let (kms_key, catalog_id, password_id) = (
        get(KMS_KEY_ID),
        get(CATALOG_SECRET_ID),
        get(PASSWORD_SECRET_ID),
    );
    if kms_key.is_none() && catalog_id.is_none() && password_id.is_none() {
        return config::from_vars(var);
    }
    if catalog_id.is_some() && get("DATABASE_URL").is_some() {
        return Err(ConfigError(format!(
            "set either DATABASE_URL or {CATALOG_SECRET_ID}, not both"
        )));
    }
    let max_age = match get(PASSWORD_MAX_AGE) {
        None => DEFAULT_PASSWORD_MAX_AGE,
        Some(v) => Duration::from_secs(
            v.trim()
                .parse()
                .map_err(|_| ConfigError(format!("{PASSWORD_MAX_AGE} must be a whole number")))?,
        ),
    };
    let aws = Aws::load().await;

    // Independent round trips, made together to keep the cold start short.
    let decrypt = |name: &'static str| {
        let (key, ciphertext) = (kms_key.as_deref(), get(name));
        let aws = &aws;
        async move {
            let (Some(key), Some(ciphertext)) = (key, ciphertext) else {
                return Ok(None);
            };
            let plaintext = aws.decrypt(key, name, &ciphertext).await?;
            info!(variable = name, "decrypted with KMS");
            Ok::<_, ConfigError>(Some((name, plaintext)))
        }
    };
    let api_password = async {
        match &password_id {
            Some(id) => {
                let text = aws.secret_string(id, None).await;
                text.and_then(|t| api_password(t.unwrap_or_default()))
                    .map(Some)
                    .map_err(|e| ConfigError(format!("{PASSWORD_SECRET_ID} ({id}): {e}")))
            }
            None => Ok(None),
        }
    };
    let catalog = async {
        match &catalog_id {
            Some(id) => aws.secret_string(id, None).await,
            None => Ok(None),
        }
    };
    let (catalog_password, peerdb_password, api_password, catalog) = tokio::join!(
        decrypt("PEERDB_CATALOG_PASSWORD"),
        decrypt("PEERDB_PASSWORD"),
        api_password,
        catalog
    );
    let mut resolved: HashMap<_, _> = [catalog_password?, peerdb_password?]
        .into_iter()
        .flatten()
        .collect();
    if let Some(password) = api_password? {
        resolved.insert("PEERDB_PASSWORD", password);
        info!(
            secret = password_id.as_deref(),
            "read the API password from Secrets Manager"
        );
    }
    let base = layer(resolved, Arc::new(var));
    let vars = match catalog {
        Ok(Some(text)) => with_catalog_secret(&text, &base),
        Ok(None) => Ok(base.clone()),
        Err(e) => Err(e),
    }
    .map_err(|e| {
        let id = catalog_id.as_deref().unwrap_or_default();
        ConfigError(format!("{CATALOG_SECRET_ID} ({id}): {e}"))
    })?;
    let mut settings = config::from_vars(&*vars)?;

    if let Some(id) = catalog_id {
        info!(secret = %id, "read the catalog settings from Secrets Manager");
        settings.catalog.rotation = Some(Arc::new(CatalogRotation {
            aws: aws.clone(),
            id,
            base,
            current: RwLock::new(settings.catalog.pg.clone()),
            last_refresh: tokio::sync::Mutex::new(None),
        }));
    }
    // With authentication off the password is not checked, so not re-read.
    if let (Some(id), Authenticator::Password(_)) = (password_id, &settings.auth) {
        settings.password_secret = Some(PasswordSecret {
            aws,
            id,
            max_age,
            state: tokio::sync::Mutex::new(PasswordState {
                auth: settings.auth.clone(),
                read_at: Instant::now(),
                retried_at: None,
            }),
        });
    }
    Ok(settings)
}

type Vars = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// `vars` with `resolved` in place, and the secrets' ids consumed: what
/// [`config::from_vars`] reads.
fn layer(resolved: HashMap<&'static str, String>, vars: Vars) -> Vars {
    Arc::new(move |name| match resolved.get(name) {
        Some(value) => Some(value.clone()),
        None if [KMS_KEY_ID, CATALOG_SECRET_ID, PASSWORD_SECRET_ID].contains(&name) => None,
        None => vars(name),
    })
}

/// `base` with a catalog secret's fields in place. A PEERDB_CATALOG_HOST
/// of its own (RDS Proxy or PgBouncer in front of the database the secret
/// describes) keeps its host and port.
fn with_catalog_secret(text: &str, base: &Vars) -> Result<Vars, String> {
    let mut fields = catalog_fields(text)?;
    if base("PEERDB_CATALOG_HOST").is_some_and(|host| !host.is_empty()) {
        fields.remove("PEERDB_CATALOG_HOST");
        fields.remove("PEERDB_CATALOG_PORT");
    }
    Ok(layer(fields, base.clone()))
}

/// The catalog variables a secret in RDS's format sets.
fn catalog_fields(text: &str) -> Result<HashMap<&'static str, String>, String> {
    let json: Value = serde_json::from_str(text)
        .map_err(|_| "the secret is not JSON in the format RDS writes".to_string())?;
    let object = json
        .as_object()
        .ok_or("the secret is not a JSON object in the format RDS writes")?;
    let mut out = HashMap::new();
    for (field, name) in CATALOG_FIELDS {
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                out.insert(name, s.clone());
            }
            Some(Value::Number(n)) if field == "port" => {
                out.insert(name, n.to_string());
            }
            Some(_) => return Err(format!("the secret's \"{field}\" is not a string")),
        }
    }
    Ok(out)
}

/// The API password a secret holds: the whole string, or the `password` of
/// a JSON object.
fn api_password(text: String) -> Result<String, String> {
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

    /// `name`'s value decrypted by PeerDB's rule.
    async fn decrypt(
        &self,
        key_id: &str,
        name: &str,
        ciphertext: &str,
    ) -> Result<String, ConfigError> {
        let fail = |why: String| {
            ConfigError(format!(
                "{name} cannot be decrypted with {KMS_KEY_ID}: {why}"
            ))
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ciphertext.trim())
            .map_err(|_| fail("it is not base64 KMS ciphertext".into()))?;
        let output = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| fail("KMS returned no plaintext".into()))?;
        String::from_utf8(plaintext.into_inner())
            .map_err(|_| fail("the plaintext is not UTF-8".into()))
    }

    /// The secret's string at `stage` (AWSCURRENT when `None`); `Ok(None)`
    /// when there is no version at that stage.
    async fn secret_string(&self, id: &str, stage: Option<&str>) -> Result<Option<String>, String> {
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
                None => Err("the secret holds binary data, not a string".into()),
            },
            Err(e)
                if stage.is_some()
                    && e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!(
                "cannot read the secret: {}",
                DisplayErrorContext(&e)
            )),
        }
    }
}

/// The catalog settings from `PEERDB_CATALOG_SECRET_ID`, re-read when the
/// catalog refuses them. New connections use the newest settings; open
/// ones, which a password change does not end, stay in the pool.
pub struct CatalogRotation {
    aws: Aws,
    id: String,
    /// The variables, KMS and the API password resolved, without this secret.
    base: Vars,
    current: RwLock<tokio_postgres::Config>,
    /// When the last re-read was, and whether it changed the settings.
    last_refresh: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

type ConnectFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// Connects with the rotation's current settings instead of the pool's.
struct RotatingConnect {
    rotation: Arc<CatalogRotation>,
    inner: Box<dyn Connect>,
}

impl Connect for RotatingConnect {
    fn connect(&self, _: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let pg = self.rotation.current.read().expect("not poisoned").clone();
        Box::pin(async move { self.inner.connect(&pg).await })
    }
}

impl CatalogRotation {
    /// What the pool connects through.
    pub fn connector(self: &Arc<Self>, tls: Option<MakeRustlsConnect>) -> impl Connect {
        let inner: Box<dyn Connect> = match tls {
            Some(tls) => Box::new(ConfigConnectImpl { tls }),
            None => Box::new(ConfigConnectImpl { tls: NoTls }),
        };
        RotatingConnect {
            rotation: self.clone(),
            inner,
        }
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
                *self.current.write().expect("not poisoned") = pg;
                info!(secret = %self.id, stage, "the catalog refused its credentials; using the secret's new ones");
                true
            }
            Ok(None) => {
                error!(secret = %self.id, "the catalog refused its credentials and the secret holds no others");
                false
            }
            Err(e) => {
                error!(secret = %self.id, error = %e, "the catalog refused its credentials and the secret cannot be re-read");
                false
            }
        };
        *last = Some((Instant::now(), changed));
        changed
    }

    async fn newer_settings(
        &self,
    ) -> Result<Option<(&'static str, tokio_postgres::Config)>, String> {
        let current = self.current.read().expect("not poisoned").clone();
        for stage in [None, Some("AWSPENDING")] {
            let Some(text) = self.aws.secret_string(&self.id, stage).await? else {
                continue;
            };
            let pg = config::from_vars(&*with_catalog_secret(&text, &self.base)?)
                .map_err(|e| e.0)?
                .catalog
                .pg;
            if pg != current {
                return Ok(Some((stage.unwrap_or("AWSCURRENT"), pg)));
            }
        }
        Ok(None)
    }
}

/// The API password from `PEERDB_PASSWORD_SECRET_ID`. A rotated password
/// is accepted within [`RETRY_INTERVAL`] (a request presenting one that
/// does not match re-reads the secret), and the old one is refused once
/// the copy here is older than `PEERDB_PASSWORD_SECRET_MAX_AGE_SECONDS`.
pub struct PasswordSecret {
    aws: Aws,
    id: String,
    max_age: Duration,
    state: tokio::sync::Mutex<PasswordState>,
}

struct PasswordState {
    auth: Authenticator,
    read_at: Instant,
    /// The last re-read caused by a password that did not match.
    retried_at: Option<Instant>,
}

impl PasswordSecret {
    /// [`Authenticator::check`] against the secret's current password.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut state = self.state.lock().await;
        if state.read_at.elapsed() >= self.max_age {
            self.reread(&mut state).await;
        }
        let result = state.auth.check(headers);
        let may_retry = state
            .retried_at
            .is_none_or(|at| at.elapsed() >= RETRY_INTERVAL);
        if result == Err(ApiError::Unauthenticated)
            && headers.contains_key(AUTHORIZATION)
            && may_retry
        {
            state.retried_at = Some(Instant::now());
            self.reread(&mut state).await;
            return state.auth.check(headers);
        }
        result
    }

    /// On failure the password read before stays in force.
    async fn reread(&self, state: &mut PasswordState) {
        match self.aws.secret_string(&self.id, None).await {
            Ok(text) => match api_password(text.unwrap_or_default()) {
                Ok(password) => state.auth = Authenticator::password(&password),
                Err(e) => {
                    error!(secret = %self.id, error = %e, "the API password secret is unusable; keeping the password read before")
                }
            },
            Err(e) => {
                warn!(secret = %self.id, error = %e, "cannot re-read the API password; keeping the one read before")
            }
        }
        state.read_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rds_secret_fills_in_the_catalog_variables() {
        let fields = catalog_fields(
            r#"{"engine":"postgres","host":"db.example","port":5433,"username":"reader",
                "password":"p@ss","dbname":"peerdb","dbInstanceIdentifier":"x"}"#,
        )
        .unwrap();
        assert_eq!(fields["PEERDB_CATALOG_HOST"], "db.example");
        assert_eq!(fields["PEERDB_CATALOG_PORT"], "5433");
        assert_eq!(fields["PEERDB_CATALOG_USER"], "reader");
        assert_eq!(fields["PEERDB_CATALOG_PASSWORD"], "p@ss");
        assert_eq!(fields["PEERDB_CATALOG_DATABASE"], "peerdb");
        let partial = catalog_fields(r#"{"username":"u","password":"p","port":"6432"}"#).unwrap();
        assert_eq!(partial.len(), 3);
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
        assert_eq!(api_password("s3cret {x".into()).unwrap(), "s3cret {x");
        assert_eq!(
            api_password(r#"{"password":"pw","user":"u"}"#.into()).unwrap(),
            "pw"
        );
        assert!(api_password(r#"{"pass":"hunter2"}"#.into())
            .unwrap_err()
            .contains("password"));
        assert!(api_password(String::new()).is_err());
    }

    #[test]
    fn a_catalog_host_of_its_own_keeps_its_host_and_port() {
        let secret = r#"{"host":"db.internal","port":5433,"username":"u","password":"p"}"#;
        let proxied: Vars = Arc::new(|name| match name {
            "PEERDB_CATALOG_HOST" => Some("proxy.internal".into()),
            _ => None,
        });
        let vars = with_catalog_secret(secret, &proxied).unwrap();
        assert_eq!(
            vars("PEERDB_CATALOG_HOST").as_deref(),
            Some("proxy.internal")
        );
        assert_eq!(vars("PEERDB_CATALOG_PORT"), None);
        assert_eq!(vars("PEERDB_CATALOG_USER").as_deref(), Some("u"));
        let direct = with_catalog_secret(secret, &(Arc::new(|_: &str| None) as Vars)).unwrap();
        assert_eq!(
            direct("PEERDB_CATALOG_HOST").as_deref(),
            Some("db.internal")
        );
        assert_eq!(direct("PEERDB_CATALOG_PORT").as_deref(), Some("5433"));
    }

    #[test]
    fn resolved_values_replace_the_variables_and_the_ids_are_consumed() {
        let vars: Vars = Arc::new(|name| Some(format!("env:{name}")));
        let layered = layer(HashMap::from([("PEERDB_PASSWORD", "plain".into())]), vars);
        assert_eq!(layered("PEERDB_PASSWORD").as_deref(), Some("plain"));
        assert_eq!(
            layered("PEERDB_CATALOG_HOST").as_deref(),
            Some("env:PEERDB_CATALOG_HOST")
        );
        assert_eq!(layered(KMS_KEY_ID), None);
        assert_eq!(layered(CATALOG_SECRET_ID), None);
    }
}
