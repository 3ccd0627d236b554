//! OAuth bearer tokens (JWTs), as PeerDB's flow API checks them in
//! cloud-hosted deployments, with the contract's fixes (spec,
//! "Authentication").
//!
//! Configured by `PEERDB_OAUTH_ISSUER_URL` (on when set),
//! `PEERDB_OAUTH_KEYSET_JSON` (an inline JWKS document),
//! `PEERDB_OAUTH_DISCOVERY_ENABLED` (fetch the set at
//! `<issuer>/.well-known/jwks.json`) and `PEERDB_OAUTH_JWT_CLAIM_KEY` /
//! `PEERDB_OAUTH_JWT_CLAIM_VALUE`.
//!
//! A token is accepted when, in this order (cheap checks first, so that a
//! token that could never pass does not cause a key set fetch):
//!
//! 1. it is at most [`MAX_TOKEN_BYTES`] long and is three base64url parts
//!    with a JSON header and a JSON object payload, and no `crit` header;
//! 2. its header's `alg` is one of RS256/384/512, PS256/384/512, ES256,
//!    ES384 (`none`, every HMAC algorithm, EdDSA and anything else refused);
//! 3. `iss` is a string equal to the issuer exactly; `exp` is present and
//!    after now; `nbf` and `iat`, when present, not after now (no leeway);
//!    the configured claim, if any, is a string equal to the value;
//! 4. its header names a `kid` found in the inline set, or else in the
//!    discovered one (fetched again when the kid is unknown, see
//!    [`MIN_REFETCH_INTERVAL`], or the set older than [`MAX_KEY_SET_AGE`]);
//! 5. that key's type allows the algorithm (RSA: RS*/PS*; EC P-256: ES256;
//!    EC P-384: ES384) and the key's own `alg`, when it has one, is it;
//! 6. the signature verifies (`jsonwebtoken::crypto::verify`, on `ring`).
//!
//! A token, or any part of it, never appears in a log line, an error, a
//! `Debug` output or a panic message: nothing here logs per token, and a
//! [`Refusal`] carries no data.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::Uri;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::{error, info, warn};

use crate::error::describe;

/// Tokens longer than this (8 KiB) are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The least time between two fetches of the published key set (counted
/// from the end of one attempt, and also from its start, to the next).
///
/// A token naming an unknown `kid` makes the function fetch the set again
/// so that a key rotated in at the identity provider is picked up without a
/// restart; this bound keeps a flood of made-up kids from hammering the
/// provider: whatever the traffic, one execution environment fetches at
/// most once per interval. It is also how soon a key set that was down is
/// tried again.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// A discovered key set older than this is fetched again by the next
/// verification that needs it (so that a key the provider removed stops
/// being accepted). If that fetch fails, the set in hand stays in use.
pub const MAX_KEY_SET_AGE: Duration = Duration::from_secs(15 * 60);

/// The most of a key set response body that is read (256 KiB; real sets
/// are a few kilobytes, ones with certificate chains tens of kilobytes).
pub const MAX_KEY_SET_BYTES: usize = 256 * 1024;

/// Joined to the issuer URL for discovery, as the reference does.
pub const DISCOVERY_PATH: &str = "/.well-known/jwks.json";

const ISSUER_VAR: &str = "PEERDB_OAUTH_ISSUER_URL";
const KEYSET_VAR: &str = "PEERDB_OAUTH_KEYSET_JSON";
const DISCOVERY_VAR: &str = "PEERDB_OAUTH_DISCOVERY_ENABLED";
const CLAIM_KEY_VAR: &str = "PEERDB_OAUTH_JWT_CLAIM_KEY";
const CLAIM_VALUE_VAR: &str = "PEERDB_OAUTH_JWT_CLAIM_VALUE";

/// Why the bearer configuration cannot be used. Names the variable at
/// fault, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerConfigError {
    #[error("{var} must be true or false")]
    NotABool { var: &'static str },
    #[error("{CLAIM_KEY_VAR} is set but {CLAIM_VALUE_VAR} is not")]
    ClaimValueMissing,
    #[error("{CLAIM_VALUE_VAR} is set but {CLAIM_KEY_VAR} is not")]
    ClaimKeyMissing,
    #[error(
        "{ISSUER_VAR} is set but there are no keys: set {KEYSET_VAR}, or {DISCOVERY_VAR}=true"
    )]
    NoKeySource,
    #[error("{KEYSET_VAR} is not a JWKS document ({0})")]
    KeySetJson(String),
    #[error(
        "{KEYSET_VAR} holds no key usable for signatures (RSA, EC P-256 or P-384, with a kid)"
    )]
    NoUsableKey,
    #[error("{ISSUER_VAR} cannot be used for discovery: {0}")]
    DiscoveryUrl(&'static str),
    #[error("TLS setup for key set discovery failed: {0}")]
    Tls(String),
}

/// Why a token was refused, for the log. Carries no part of the token.
///
/// The caller maps it to HTTP with [`Refusal::http_status`]: every refusal
/// is a 401 (`WWW-Authenticate: Bearer realm="PeerDB",
/// error="invalid_token"`) **except [`Refusal::KeySetUnavailable`], which
/// should be a 503** (code 14, with `Retry-After: 5`, the
/// [`MIN_REFETCH_INTERVAL`]). Reasons: the token may be perfectly good;
/// what failed is a dependency of the server (the identity provider), like
/// the catalog, which the contract answers with 503. A 401 tells the client
/// its credentials are bad, so a UI drops the token and sends the user to
/// log in again (which cannot help), and monitoring counts an outage as
/// auth failures. A 503 says "try again shortly", which is true: the set is
/// fetched again within [`MIN_REFETCH_INTERVAL`]. It leaks nothing useful:
/// it only arises when the token's kid is in no set in hand *and* the
/// latest fetch failed. This departs from the contract's "anything else:
/// 401" and should be confirmed there; to follow the contract literally,
/// map it to 401 like the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is longer than 8 KiB")]
    TooLarge,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted for it")]
    WrongAlgorithm,
    #[error("the token names no key id")]
    NoKid,
    #[error("the token's key id is in no key set")]
    UnknownKid,
    #[error("the key set cannot be fetched")]
    KeySetUnavailable,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is missing or not the configured one")]
    WrongIssuer,
    #[error("the token has no expiry")]
    NoExp,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is issued in the future")]
    IssuedInFuture,
    #[error("the token's required claim is missing or does not match")]
    ClaimMismatch,
}

impl Refusal {
    /// The HTTP status to answer with: 503 for
    /// [`Refusal::KeySetUnavailable`], 401 for the rest (see the type's
    /// documentation for why).
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::KeySetUnavailable => 503,
            _ => 401,
        }
    }
}

/// Parsed from the environment by the caller; an empty variable counts as
/// unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    pub issuer: String,
    pub keyset_json: Option<String>,
    pub discovery: bool,
    pub claim: Option<(String, String)>,
}

impl OAuthConfig {
    /// None when `PEERDB_OAUTH_ISSUER_URL` is unset or empty (with a warning
    /// when other OAuth variables are set, since they then do nothing). Err
    /// names the variable, never a value.
    ///
    /// Stricter than the reference, which ignores the mistakes: a
    /// `PEERDB_OAUTH_DISCOVERY_ENABLED` that is not a boolean (Go's
    /// `strconv.ParseBool` spellings are accepted), a claim key without a
    /// value or the other way round (the operator believes a claim is
    /// checked), and an issuer with neither an inline set nor discovery.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OAuthConfig>, BearerConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let Some(issuer) = get(ISSUER_VAR) else {
            let others = [KEYSET_VAR, DISCOVERY_VAR, CLAIM_KEY_VAR, CLAIM_VALUE_VAR];
            if let Some(set) = others.iter().find(|name| get(name).is_some()) {
                warn!("{set} is set but {ISSUER_VAR} is not: bearer tokens are off");
            }
            return Ok(None);
        };
        let keyset_json = get(KEYSET_VAR);
        let discovery = match get(DISCOVERY_VAR) {
            None => false,
            Some(v) => parse_bool(&v).ok_or(BearerConfigError::NotABool { var: DISCOVERY_VAR })?,
        };
        let claim = match (get(CLAIM_KEY_VAR), get(CLAIM_VALUE_VAR)) {
            (Some(key), Some(value)) => Some((key, value)),
            (None, None) => None,
            (Some(_), None) => return Err(BearerConfigError::ClaimValueMissing),
            (None, Some(_)) => return Err(BearerConfigError::ClaimKeyMissing),
        };
        if keyset_json.is_none() && !discovery {
            return Err(BearerConfigError::NoKeySource);
        }
        Ok(Some(OAuthConfig {
            issuer,
            keyset_json,
            discovery,
            claim,
        }))
    }
}

/// Go's `strconv.ParseBool`, which the reference reads the variable with.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The token of an `Authorization` value: `Bearer <t>` with the scheme word
/// in any case, or a bare token (as the reference accepts). None for a
/// `Basic ...` value (or any other scheme) or an empty one. The caller
/// refuses a request with two `Authorization` headers, as the reference
/// does and as [`crate::auth`] does for Basic.
pub fn token_of(authorization: &str) -> Option<&str> {
    let value = authorization.trim_matches([' ', '\t']);
    let token = match value.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            rest.trim_start_matches([' ', '\t'])
        }
        // Another scheme (Basic, Digest, ...), or white space inside: not a
        // bearer token.
        Some(_) => return None,
        // A scheme word alone.
        None if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("basic") => {
            return None
        }
        None => value,
    };
    (!token.is_empty() && !token.contains([' ', '\t'])).then_some(token)
}

/// `<issuer>/.well-known/jwks.json`. https, or plain http to a loopback IP
/// address (a name such as `localhost` is not trusted to be one); no user
/// information, query or fragment.
fn discovery_url(issuer: &str) -> Result<Uri, BearerConfigError> {
    use BearerConfigError::DiscoveryUrl;
    if issuer.contains(['?', '#']) {
        return Err(DiscoveryUrl("it has a query or fragment"));
    }
    let uri: Uri = issuer
        .parse()
        .map_err(|_| DiscoveryUrl("it is not a URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(DiscoveryUrl("it is not an absolute URL"));
    };
    if authority.as_str().contains('@') {
        return Err(DiscoveryUrl("it carries user information"));
    }
    let host = authority.host();
    let loopback = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(DiscoveryUrl(
                "plain http is allowed only to a loopback address",
            ))
        }
        _ => return Err(DiscoveryUrl("it is not an https URL")),
    }
    let path = uri.path().trim_end_matches('/');
    format!("{scheme}://{authority}{path}{DISCOVERY_PATH}")
        .parse()
        .map_err(|_| DiscoveryUrl("it is not a URL"))
}

/// What a key's type allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
        }
    }
}

/// The header algorithms ever accepted; `none`, HMAC and the rest are not.
fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        _ => return None,
    })
}

struct Key {
    kind: KeyKind,
    /// The key's own `alg`, when it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Usable keys by kid.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    skipped: usize,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

/// Parses a JWKS document. Each key is parsed on its own with
/// `jsonwebtoken::jwk::Jwk`, so that one key of a type or algorithm this
/// does not support (an encryption key, OKP, P-521, ...) is skipped rather
/// than making the whole set unusable, as parsing it as a `JwkSet` would.
/// Kept: RSA (at least 2048 bits) and EC P-256/P-384 keys with a kid, no
/// `use` other than `sig`, `key_ops` (if any) including `verify`, and an
/// `alg` (if any) that the key type allows. The first of two keys with
/// the same kid wins.
fn parse_key_set(json: &[u8]) -> Result<KeySet, String> {
    let raw: RawKeySet = serde_json::from_slice(json).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "not an object with a \"keys\" array",
            _ => "not valid JSON",
        };
        format!("{what}, at line {} column {}", e.line(), e.column())
    })?;
    let mut set = KeySet::default();
    for value in raw.keys {
        match serde_json::from_value::<Jwk>(value).ok().and_then(usable) {
            Some((kid, key)) if !set.keys.contains_key(&kid) => {
                set.keys.insert(kid, Arc::new(key));
            }
            _ => set.skipped += 1,
        }
    }
    Ok(set)
}

fn usable(jwk: Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone()?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return None;
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (kind, size) = match ec.curve {
                EllipticCurve::P256 => (KeyKind::EcP256, 32),
                EllipticCurve::P384 => (KeyKind::EcP384, 48),
                _ => return None,
            };
            let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == size);
            if !coordinate(&ec.x) || !coordinate(&ec.y) {
                return None;
            }
            kind
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => {
            let alg = accepted_algorithm(&a.to_string())?;
            if !kind.allows(alg) {
                return None;
            }
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, Key { kind, alg, key }))
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The published key set and when it was last fetched.
struct Discovery {
    url: Uri,
    client: HttpsClient,
    timeout: Duration,
    /// Held only for short, non-async sections.
    state: Mutex<Fetched>,
    /// Held across a fetch: concurrent requests needing one share it (the
    /// first fetches, the rest wait and then find the fresh result).
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Fetched {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    /// Set at the start of an attempt and again at its end.
    last_attempt: Option<Instant>,
    /// Whether the latest finished attempt got a key set.
    last_ok: bool,
}

/// What the discovered set says about one kid, at one moment.
struct Lookup {
    key: Option<Arc<Key>>,
    stale: bool,
    fetched_at: Option<Instant>,
    last_ok: bool,
}

/// Whether a fetch may start now: never within [`MIN_REFETCH_INTERVAL`] of
/// the last attempt.
fn fetch_allowed(now: Instant, last_attempt: Option<Instant>) -> bool {
    last_attempt.is_none_or(|t| now.saturating_duration_since(t) >= MIN_REFETCH_INTERVAL)
}

/// Whether a set fetched at `fetched_at` is old enough to fetch again.
fn stale(now: Instant, fetched_at: Option<Instant>) -> bool {
    fetched_at.is_none_or(|t| now.saturating_duration_since(t) >= MAX_KEY_SET_AGE)
}

impl Discovery {
    fn lookup(&self, kid: &str) -> Lookup {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Lookup {
            key: state.keys.as_ref().and_then(|s| s.keys.get(kid).cloned()),
            stale: stale(Instant::now(), state.fetched_at),
            fetched_at: state.fetched_at,
            last_ok: state.last_ok,
        }
    }

    /// Fetches the set unless one was attempted within
    /// [`MIN_REFETCH_INTERVAL`] or another fetch is under way: then, with
    /// `wait`, waits for that one (and does not fetch again); without, goes
    /// on at once with the set in hand. The wait and the fetch end by
    /// `deadline`.
    async fn refresh(&self, why: &str, wait: bool, deadline: tokio::time::Instant) {
        let _guard = if wait {
            match tokio::time::timeout_at(deadline, self.fetch_lock.lock()).await {
                Ok(guard) => guard,
                Err(_) => return,
            }
        } else {
            match self.fetch_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !fetch_allowed(Instant::now(), state.last_attempt) {
                return;
            }
            state.last_attempt = Some(Instant::now());
        }
        info!(url = %self.url, "fetching the bearer token key set ({why})");
        let outcome = match tokio::time::timeout_at(deadline, self.fetch()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_attempt = Some(Instant::now());
        match outcome {
            Ok(set) => {
                info!(
                    url = %self.url,
                    keys = set.keys.len(),
                    skipped = set.skipped,
                    "bearer token key set loaded"
                );
                state.keys = Some(Arc::new(set));
                state.fetched_at = Some(Instant::now());
                state.last_ok = true;
            }
            Err(reason) => {
                error!(
                    url = %self.url,
                    "the bearer token key set cannot be fetched: {reason}; \
                     tokens whose key is not in hand are refused until it can be \
                     (tried again after {MIN_REFETCH_INTERVAL:?} at the earliest)"
                );
                state.last_ok = false;
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let request = axum::http::Request::get(self.url.clone())
            .header(axum::http::header::ACCEPT, "application/json")
            .header(axum::http::header::USER_AGENT, "peerdb-mirror-logs")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe(&e))?;
        if response.status() != axum::http::StatusCode::OK {
            return Err(format!("the server answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_KEY_SET_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
            .to_bytes();
        let set = parse_key_set(&body)?;
        if set.keys.is_empty() {
            return Err(format!(
                "it holds no usable signing key ({} skipped)",
                set.skipped
            ));
        }
        Ok(set)
    }
}

/// The client for `url` (already checked by [`discovery_url`]): the
/// system's CA certificates are loaded only for https.
fn https_client(url: &Uri) -> Result<HttpsClient, BearerConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    if url.scheme_str() == Some("https") {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "while loading the system's CA certificates");
        }
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            warn!("no CA certificates found: https key set discovery will fail");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BearerConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        // The scheme was checked by `discovery_url`: http only to loopback.
        .https_or_http()
        .enable_http1()
        .build();
    // No idle connections: fetches are minutes apart, and a pooled
    // connection does not survive a frozen Lambda environment.
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector))
}

/// Checks bearer tokens. Built once per execution environment.
pub struct Bearer {
    issuer: String,
    claim: Option<(String, String)>,
    inline: Option<KeySet>,
    discovery: Option<Discovery>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("issuer", &self.issuer)
            .field("claim_key", &self.claim.as_ref().map(|(k, _)| k))
            .field("inline_keys", &self.inline.as_ref().map(|s| s.keys.len()))
            .field("discovery_url", &self.discovery.as_ref().map(|d| &d.url))
            .finish()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Bearer {
    /// Built once per execution environment at start: parses the inline key
    /// set, and with discovery fetches the published set once within
    /// `connect_timeout` (which bounds the whole fetch: connection, TLS,
    /// answer and body; and, later, every verification's wait for one). A
    /// failed fetch is logged (`error!`) and is not fatal: fetching is
    /// retried when a token needs a key not in hand (or the set in hand is
    /// older than [`MAX_KEY_SET_AGE`]), no sooner than
    /// [`MIN_REFETCH_INTERVAL`] after the last attempt. Malformed
    /// configuration (a `PEERDB_OAUTH_KEYSET_JSON` that is not a JWKS or
    /// holds no usable key, a discovery URL that is not https, except plain
    /// http to a loopback address) is an Err.
    pub async fn new(
        config: OAuthConfig,
        connect_timeout: Duration,
    ) -> Result<Bearer, BearerConfigError> {
        let inline = match &config.keyset_json {
            None => None,
            Some(json) => {
                let set = parse_key_set(json.as_bytes()).map_err(BearerConfigError::KeySetJson)?;
                if set.keys.is_empty() {
                    return Err(BearerConfigError::NoUsableKey);
                }
                info!(
                    keys = set.keys.len(),
                    skipped = set.skipped,
                    "bearer token key set from {KEYSET_VAR} loaded"
                );
                Some(set)
            }
        };
        let discovery = if config.discovery {
            let url = discovery_url(&config.issuer)?;
            let discovery = Discovery {
                client: https_client(&url)?,
                url,
                timeout: connect_timeout,
                state: Mutex::new(Fetched::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
            };
            let deadline = tokio::time::Instant::now() + connect_timeout;
            discovery.refresh("start-up", true, deadline).await;
            Some(discovery)
        } else {
            None
        };
        Ok(Bearer {
            issuer: config.issuer,
            claim: config.claim,
            inline,
            discovery,
        })
    }

    /// Checks one token (already taken out of the Authorization header, see
    /// [`token_of`]). Never logs the token. Answers within the time limit
    /// given to [`Bearer::new`] even when the key set cannot be fetched.
    pub async fn verify(&self, token: &str) -> Result<(), Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let header: Header = decode_json(header_b64)?;
        if header.crit.is_some() {
            // Extensions this does not understand must not be ignored
            // (RFC 7515, 4.1.11).
            return Err(Refusal::Malformed);
        }
        let alg = accepted_algorithm(&header.alg).ok_or(Refusal::WrongAlgorithm)?;
        let claims: Map<String, Value> = decode_json(payload_b64)?;
        self.check_claims(&claims, now_seconds())?;
        let kid = header.kid.ok_or(Refusal::NoKid)?;
        let key = self.key(&kid).await?;
        if !key.kind.allows(alg) || key.alg.is_some_and(|a| a != alg) {
            return Err(Refusal::WrongAlgorithm);
        }
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &key.key, alg) {
            Ok(true) => Ok(()),
            _ => Err(Refusal::BadSignature),
        }
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: f64) -> Result<(), Refusal> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            _ => return Err(Refusal::WrongIssuer),
        }
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(Refusal::Malformed),
            Some(_) => Err(Refusal::Malformed),
        };
        match time("exp")? {
            None => return Err(Refusal::NoExp),
            Some(exp) if exp <= now => return Err(Refusal::Expired),
            Some(_) => {}
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now) {
            return Err(Refusal::NotYetValid);
        }
        if time("iat")?.is_some_and(|iat| iat > now) {
            return Err(Refusal::IssuedInFuture);
        }
        if let Some((key, value)) = &self.claim {
            match claims.get(key) {
                Some(Value::String(v)) if v == value => {}
                _ => return Err(Refusal::ClaimMismatch),
            }
        }
        Ok(())
    }

    /// The key named `kid`: the inline set first, then the discovered one,
    /// fetched again (within the limits of [`Discovery::refresh`]) when the
    /// kid is not in it or it is older than [`MAX_KEY_SET_AGE`].
    async fn key(&self, kid: &str) -> Result<Arc<Key>, Refusal> {
        if let Some(key) = self.inline.as_ref().and_then(|s| s.keys.get(kid)) {
            return Ok(key.clone());
        }
        let Some(discovery) = &self.discovery else {
            return Err(Refusal::UnknownKid);
        };
        let before = discovery.lookup(kid);
        // An unknown kid waits for a fetch under way; a stale set does not
        // (the key in hand is used if another request is fetching).
        let (why, wait) = match &before.key {
            Some(key) if !before.stale => return Ok(key.clone()),
            Some(_) => ("it is older than the maximum age", false),
            None => ("a token names a key id not in it", true),
        };
        let deadline = tokio::time::Instant::now() + discovery.timeout;
        discovery.refresh(why, wait, deadline).await;
        let after = discovery.lookup(kid);
        // A set fetched since replaces the one in hand (a removed key is no
        // longer accepted); when none could be fetched, the old one stays.
        let key = if after.fetched_at != before.fetched_at {
            after.key
        } else {
            after.key.or(before.key)
        };
        match key {
            Some(key) => Ok(key),
            None if after.last_ok => Err(Refusal::UnknownKid),
            None => Err(Refusal::KeySetUnavailable),
        }
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn token_of_takes_bearer_in_any_case_and_a_bare_token() {
        assert_eq!(token_of("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of("bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of("BEARER  abc.def.ghi "), Some("abc.def.ghi"));
        assert_eq!(token_of("Bearer\tabc"), Some("abc"));
        assert_eq!(token_of("abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of(" abc.def.ghi "), Some("abc.def.ghi"));
    }

    #[test]
    fn token_of_refuses_basic_other_schemes_and_empty_values() {
        assert_eq!(token_of("Basic OnBlZXJkYg=="), None);
        assert_eq!(token_of("basic OnBlZXJkYg=="), None);
        assert_eq!(token_of("Digest x"), None);
        assert_eq!(token_of(""), None);
        assert_eq!(token_of("   "), None);
        assert_eq!(token_of("Bearer"), None);
        assert_eq!(token_of("basic"), None);
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of("Bearer a b"), None);
    }

    #[test]
    fn config_is_off_without_an_issuer() {
        assert_eq!(OAuthConfig::from_vars(vars(&[])), Ok(None));
        let empty = [(ISSUER_VAR, ""), (KEYSET_VAR, "{}")];
        assert_eq!(OAuthConfig::from_vars(vars(&empty)), Ok(None));
    }

    #[test]
    fn config_reads_every_variable() {
        let all = [
            (ISSUER_VAR, "https://idp.example/"),
            (KEYSET_VAR, "{\"keys\":[]}"),
            (DISCOVERY_VAR, "true"),
            (CLAIM_KEY_VAR, "org"),
            (CLAIM_VALUE_VAR, "acme"),
        ];
        assert_eq!(
            OAuthConfig::from_vars(vars(&all)),
            Ok(Some(OAuthConfig {
                issuer: "https://idp.example/".into(),
                keyset_json: Some("{\"keys\":[]}".into()),
                discovery: true,
                claim: Some(("org".into(), "acme".into())),
            }))
        );
        let discovery_only = [(ISSUER_VAR, "https://idp"), (DISCOVERY_VAR, "1")];
        let config = OAuthConfig::from_vars(vars(&discovery_only))
            .unwrap()
            .unwrap();
        assert!(config.discovery && config.keyset_json.is_none() && config.claim.is_none());
    }

    #[test]
    fn config_errors_name_the_variable_and_never_the_value() {
        let cases: [(&[(&str, &str)], BearerConfigError); 4] = [
            (
                &[(ISSUER_VAR, "https://i"), (DISCOVERY_VAR, "yes-secret")],
                BearerConfigError::NotABool { var: DISCOVERY_VAR },
            ),
            (
                &[
                    (ISSUER_VAR, "https://i"),
                    (KEYSET_VAR, "{}"),
                    (CLAIM_KEY_VAR, "org"),
                ],
                BearerConfigError::ClaimValueMissing,
            ),
            (
                &[
                    (ISSUER_VAR, "https://i"),
                    (KEYSET_VAR, "{}"),
                    (CLAIM_VALUE_VAR, "acme"),
                ],
                BearerConfigError::ClaimKeyMissing,
            ),
            (
                &[(ISSUER_VAR, "https://i"), (DISCOVERY_VAR, "false")],
                BearerConfigError::NoKeySource,
            ),
        ];
        for (pairs, expected) in cases {
            let err = OAuthConfig::from_vars(vars(pairs)).unwrap_err();
            assert_eq!(err, expected);
            let text = err.to_string();
            assert!(text.contains("PEERDB_OAUTH_"), "{text}");
            for (_, value) in pairs {
                assert!(!text.contains(value), "{text} shows {value}");
            }
        }
    }

    #[test]
    fn discovery_flag_takes_go_parse_bool_spellings() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        for v in ["yes", "on", "tRUE", " true", "2"] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }

    #[test]
    fn discovery_url_joins_the_well_known_path() {
        let url = |i: &str| discovery_url(i).map(|u| u.to_string());
        assert_eq!(
            url("https://idp.example").unwrap(),
            "https://idp.example/.well-known/jwks.json"
        );
        assert_eq!(
            url("https://idp.example/").unwrap(),
            "https://idp.example/.well-known/jwks.json"
        );
        assert_eq!(
            url("https://idp.example:8443/realms/peerdb/").unwrap(),
            "https://idp.example:8443/realms/peerdb/.well-known/jwks.json"
        );
    }

    #[test]
    fn discovery_url_is_https_or_http_to_loopback_only() {
        assert!(discovery_url("http://127.0.0.1:9000").is_ok());
        assert!(discovery_url("http://127.8.9.10/x").is_ok());
        assert!(discovery_url("http://[::1]:9000/").is_ok());
        for bad in [
            "http://idp.example",
            "http://localhost:9000",
            "http://10.0.0.1",
            "http://[::2]",
            "ftp://idp.example",
            "https://user:pw@idp.example",
            "https://idp.example/?tenant=1",
            "https://idp.example/#x",
            "idp.example",
            "/relative",
            "not a url",
        ] {
            assert!(
                matches!(discovery_url(bad), Err(BearerConfigError::DiscoveryUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn fetches_are_spaced_and_sets_age() {
        let now = Instant::now() + Duration::from_secs(3600);
        assert!(fetch_allowed(now, None));
        assert!(!fetch_allowed(now, Some(now - Duration::from_secs(4))));
        assert!(fetch_allowed(now, Some(now - MIN_REFETCH_INTERVAL)));
        assert!(stale(now, None));
        assert!(!stale(now, Some(now - Duration::from_secs(60))));
        assert!(stale(now, Some(now - MAX_KEY_SET_AGE)));
    }

    fn rsa_jwk(kid: &str, extra: &str) -> String {
        let n = URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{n}","e":"AQAB"{extra}}}"#)
    }

    #[test]
    fn key_set_keeps_signing_keys_and_skips_the_rest() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let short_n = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let keys = [
            rsa_jwk("rsa", r#","alg":"RS256","use":"sig""#),
            format!(r#"{{"kty":"EC","kid":"ec","crv":"P-256","x":"{x}","y":"{x}"}}"#),
            rsa_jwk("rsa", r#","alg":"PS256""#), // duplicate kid: first wins
            rsa_jwk("enc", r#","use":"enc""#),
            rsa_jwk("oaep", r#","alg":"RSA-OAEP""#),
            rsa_jwk("hs", r#","alg":"HS256""#),
            rsa_jwk("ops", r#","key_ops":["sign"]"#),
            rsa_jwk("unknown-alg", r#","alg":"RS1""#),
            format!(r#"{{"kty":"RSA","kid":"short","n":"{short_n}","e":"AQAB"}}"#),
            format!(r#"{{"kty":"RSA","n":"{x}","e":"AQAB"}}"#),
            r#"{"kty":"oct","kid":"secret","k":"c2VjcmV0"}"#.to_string(),
            format!(r#"{{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"{x}"}}"#),
            format!(r#"{{"kty":"EC","kid":"p521","crv":"P-521","x":"{x}","y":"{x}"}}"#),
            format!(r#"{{"kty":"EC","kid":"p384-short","crv":"P-384","x":"{x}","y":"{x}"}}"#),
            format!(
                r#"{{"kty":"EC","kid":"ec-rs","crv":"P-256","alg":"RS256","x":"{x}","y":"{x}"}}"#
            ),
        ];
        let json = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
        let set = parse_key_set(json.as_bytes()).unwrap();
        let mut kids: Vec<_> = set.keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["ec", "rsa"]);
        assert_eq!(set.skipped, keys.len() - 2);
        assert_eq!(set.keys["rsa"].alg, Some(Algorithm::RS256));
        assert_eq!(set.keys["ec"].kind, KeyKind::EcP256);
    }

    #[test]
    fn key_set_that_is_not_a_jwks_is_an_error() {
        assert!(parse_key_set(b"not json").is_err());
        assert!(parse_key_set(b"{\"keys\":{}}").is_err());
        assert!(parse_key_set(b"[]").is_err());
        assert_eq!(parse_key_set(b"{\"keys\":[]}").unwrap().keys.len(), 0);
    }

    #[test]
    fn only_asymmetric_algorithms_are_ever_accepted() {
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "EdDSA", "ES512", "rs256", "",
        ] {
            assert_eq!(accepted_algorithm(name), None, "{name}");
        }
        assert!(KeyKind::Rsa.allows(Algorithm::PS512));
        assert!(!KeyKind::Rsa.allows(Algorithm::ES256));
        assert!(!KeyKind::EcP256.allows(Algorithm::RS256));
        assert!(!KeyKind::EcP256.allows(Algorithm::ES384));
        assert!(KeyKind::EcP384.allows(Algorithm::ES384));
    }

    #[test]
    fn refusals_say_why_in_a_few_words_and_map_to_status() {
        assert_eq!(Refusal::Expired.to_string(), "the token has expired");
        assert_eq!(Refusal::KeySetUnavailable.http_status(), 503);
        assert_eq!(Refusal::BadSignature.http_status(), 401);
    }
}
