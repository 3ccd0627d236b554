//! Bearer tokens for the tests: real RSA and EC P-256 keys made with the
//! `openssl` CLI, tokens signed with jsonwebtoken, and a key set served on
//! 127.0.0.1 by a tiny server that can change the set, count fetches, fail
//! and hang. Shared by tests/api and tests/bearer.rs (the module's own),
//! each of which uses a part of it.
#![allow(dead_code)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use peerdb_mirror_logs::bearer::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://idp.example/tenant/";
/// The time limit given to `Bearer::new` in these tests.
pub const LIMIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- keys

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub private_der: Vec<u8>,
    pub public_pem: Vec<u8>,
    pub public_der: Vec<u8>,
    pub jwk: Value,
}

impl TestKey {
    pub fn encoding(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&self.private_der),
            _ => EncodingKey::from_rsa_der(&self.private_der),
        }
    }

    /// A token signed by this key, naming its kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, &self.kid, claims)
    }

    pub fn sign_as(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
    }
}

pub struct Keys {
    pub rsa_a: TestKey,
    pub rsa_b: TestKey,
    pub rsa_c: TestKey,
    pub ec_a: TestKey,
}

pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn rsa_key(kid: &str) -> TestKey {
    let pem = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        b"",
    );
    let modulus = String::from_utf8(openssl(&["rsa", "-noout", "-modulus"], &pem)).unwrap();
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(n.len(), 256);
    TestKey {
        kid: kid.to_string(),
        alg: Algorithm::RS256,
        // PKCS#1, which ring's RSA signing key reads.
        private_der: openssl(&["rsa", "-traditional", "-outform", "DER"], &pem),
        public_pem: openssl(&["pkey", "-pubout"], &pem),
        public_der: openssl(&["pkey", "-pubout", "-outform", "DER"], &pem),
        // openssl's default public exponent is 65537.
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&n), "e": "AQAB"}),
    }
}

/// The DER inside a one-object PEM document.
pub fn pem_body(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

pub fn ec_key(kid: &str) -> TestKey {
    let pem = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        b"",
    );
    let public_der = openssl(&["pkey", "-pubout", "-outform", "DER"], &pem);
    // SubjectPublicKeyInfo ends with the uncompressed point 04 || x || y.
    let point = &public_der[public_der.len() - 65..];
    assert_eq!(point[0], 4);
    TestKey {
        kid: kid.to_string(),
        alg: Algorithm::ES256,
        // genpkey's PKCS#8 as it is (ring reads it; `pkey -outform DER`
        // would write SEC1 instead).
        private_der: pem_body(&pem),
        public_pem: openssl(&["pkey", "-pubout"], &pem),
        jwk: json!({
            "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }),
        public_der,
    }
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let b = std::thread::spawn(|| rsa_key("rsa-b"));
        let c = std::thread::spawn(|| rsa_key("rsa-c"));
        Keys {
            rsa_a: rsa_key("rsa-a"),
            ec_a: ec_key("ec-a"),
            rsa_b: b.join().unwrap(),
            rsa_c: c.join().unwrap(),
        }
    })
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims that pass: the issuer, an hour of validity, issued a minute ago.
pub fn claims(issuer: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "sub": "user-1", "exp": now + 3600, "iat": now - 60, "nbf": now - 60})
}

pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

pub fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// A token from its parts, signed by nobody.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

// ------------------------------------------------------------- bearers

pub fn inline_config(set: &Value) -> OAuthConfig {
    OAuthConfig {
        issuer: ISSUER.to_string(),
        keyset_json: Some(set.to_string()),
        discovery: false,
        claim: None,
    }
}

pub async fn inline_bearer(keys: &[&TestKey]) -> Bearer {
    Bearer::new(inline_config(&jwks(keys)), LIMIT)
        .await
        .unwrap()
}

pub async fn discovery_bearer(server: &KeyServer) -> Bearer {
    let config = OAuthConfig {
        issuer: server.issuer(),
        keyset_json: None,
        discovery: true,
        claim: None,
    };
    Bearer::new(config, LIMIT).await.unwrap()
}

// ---------------------------------------------------------- key server

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Serve,
    /// Accepts the connection and closes it without an answer.
    Close,
    Error500,
    /// Accepts the connection and never answers.
    Hang,
}

pub struct ServerState {
    pub body: Mutex<String>,
    pub mode: Mutex<Mode>,
    pub fetches: AtomicUsize,
}

/// Serves a key set at `/tenant/.well-known/jwks.json` on 127.0.0.1.
pub struct KeyServer {
    pub addr: std::net::SocketAddr,
    pub state: Arc<ServerState>,
}

impl KeyServer {
    pub async fn start(set: &Value, mode: Mode) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            body: Mutex::new(set.to_string()),
            mode: Mutex::new(mode),
            fetches: AtomicUsize::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, shared.clone()));
            }
        });
        KeyServer { addr, state }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}/tenant", self.addr)
    }

    pub fn publish(&self, set: &Value) {
        *self.state.body.lock().unwrap() = set.to_string();
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

pub async fn answer(mut socket: tokio::net::TcpStream, state: Arc<ServerState>) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split(' ').nth(1).unwrap_or("");
    let (status, body) = if path == "/tenant/.well-known/jwks.json" {
        state.fetches.fetch_add(1, Ordering::SeqCst);
        let mode = *state.mode.lock().unwrap();
        match mode {
            Mode::Serve => ("200 OK", state.body.lock().unwrap().clone()),
            Mode::Error500 => ("500 Internal Server Error", "{}".to_string()),
            Mode::Close => return,
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
    } else {
        ("404 Not Found", String::new())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Until the refetch interval has passed since now.
pub async fn wait_out_the_refetch_interval() {
    tokio::time::sleep(MIN_REFETCH_INTERVAL + Duration::from_millis(200)).await;
}

// ------------------------------------------------------------ accepted
