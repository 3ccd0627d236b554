//! What each fuzz target checks of one input. Also compiled into the test
//! suite (`tests/api/fuzz_inputs.rs`), which replays the kept inputs.

use lambda_http::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use std::sync::OnceLock;
use std::time::Duration;

use peerdb_mirror_logs::accelerator::Accelerator;
use peerdb_mirror_logs::auth::{self, Password};
use peerdb_mirror_logs::bearer::{token_of, Bearer, OAuthConfig};
use peerdb_mirror_logs::error::ApiError;
use peerdb_mirror_logs::query;
use peerdb_mirror_logs::request::{self, Cursor};

const MAX_PAGE_SIZE: i64 = 1000;

/// The request decoder on any body: it refuses only with a 400, and what it
/// accepts is within the spec's bounds and becomes a statement with a
/// parameter for every placeholder.
pub fn decode(body: &[u8]) {
    let req = match request::decode(body, MAX_PAGE_SIZE) {
        Ok(req) => req,
        Err(e) => {
            assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
            return;
        }
    };
    assert!((0..=MAX_PAGE_SIZE).contains(&req.num_per_page), "{req:?}");
    assert!(req.page >= 0, "{req:?}");
    assert!(!req.flow_job_name.contains('\0'), "{req:?}");
    match req.cursor {
        Cursor::Before(id) => assert!(id > 0, "{req:?}"),
        Cursor::After(id) => assert!(id >= 0, "{req:?}"),
        Cursor::Newest => {}
    }
    // Planned for a catalog without the accelerator and for one with it.
    for accelerator in [None, Accelerator::from_row(2, &[14, 18, 22])] {
        let plan = query::plan(&req, accelerator);
        for n in 1..=plan.params.len() {
            assert!(plan.sql.contains(&format!("${n}")), "{req:?}: ${n} unused");
        }
        assert!(!plan.sql.contains(&format!("${}", plan.params.len() + 1)));
    }
}

/// An RSA public key made for this and nothing else: whose private key was
/// never kept, so that no token can be signed by it.
const PUBLIC_KEY_SET: &str = r#"{"keys":[{"kty":"RSA","kid":"fuzz","use":"sig","e":"AQAB","n":"77YiVrm7RUuori28YD3gmdZJbyLthNR4AI_t3Y-XO5Ndog-1f7DrTQ_u1GaM5_UO296lrIIl68FlWV6NcuIDAEoi8puMA9t-ssPlAUnskPx9d1LZCt9PYtF6cKONMgahvsxXUjtkLpykzlyfnFPdadHFBajUcblb1E-o0CGejy4qb8zU8vGz-EHuQVrJ5kOkg754MTXHYU1UMfy-1UbcKuV71a2BaNGr027fQk-nf7oGzoz1YBNGGX8TGb8pOM4q3hMvjNcckn4AVhKT6vfWLOyFidVyLvPbZE6Idxzy3zXEDwOMcJ2UCC3CrluVhcEjKR1AaIiquB-Yu3RHuY62bQ"}]}"#;

/// Bearer checks against [`PUBLIC_KEY_SET`], on a runtime of their own.
fn bearer() -> &'static (tokio::runtime::Runtime, Bearer) {
    static BEARER: OnceLock<(tokio::runtime::Runtime, Bearer)> = OnceLock::new();
    BEARER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = OAuthConfig {
            issuer: "https://idp.example/".into(),
            keyset_json: Some(PUBLIC_KEY_SET.into()),
            discovery: false,
            claim: None,
        };
        let bearer = runtime
            .block_on(Bearer::new(config, Duration::from_secs(1)))
            .unwrap();
        (runtime, bearer)
    })
}

/// The `Authorization` parser on any header bytes: it lets in only a single
/// header carrying the password's own credentials, and no bearer token at
/// all (nobody holds the key that could sign one). A newline (which no
/// header value can hold) separates headers, so that several are sent too.
pub fn authorization(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for value in data.split(|&b| b == b'\n') {
        // What HTTP cannot carry never reaches the function.
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.append(AUTHORIZATION, value);
    }
    if auth::authorization(&headers).is_some_and(|value| Password::new("peerdb").admits(value)) {
        let values: Vec<&[u8]> = headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        // base64(":peerdb") without its padding.
        assert!(
            values.len() == 1 && values[0].windows(10).any(|w| w == b"OnBlZXJkYg"),
            "let in: {values:?}"
        );
    }
    if let Some(token) = auth::authorization(&headers).and_then(token_of) {
        let (runtime, bearer) = bearer();
        assert!(
            runtime.block_on(bearer.verify(token)).is_err(),
            "a token let in"
        );
    }
}
