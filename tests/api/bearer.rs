//! Bearer tokens through the function, as scripts against a cloud-hosted
//! PeerDB send them; the verifier's own rules are pinned in tests/bearer.rs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::tokens::*;
use crate::helpers::*;

const BASIC_CHALLENGE: &str = r#"Basic realm="PeerDB", charset="UTF-8""#;
const BEARER_REFUSED: &str = r#"Bearer realm="PeerDB", error="invalid_token""#;

/// The function with the inline key set (both test keys) and, unless
/// `basic` is false, the docs' password too.
async fn app(catalog: &TestCatalog, basic: bool) -> axum::Router {
    let k = keys();
    let set = jwks(&[&k.rsa_a, &k.ec_a]).to_string();
    let mut vars = vec![
        ("PEERDB_OAUTH_ISSUER_URL", ISSUER),
        ("PEERDB_OAUTH_KEYSET_JSON", set.as_str()),
    ];
    if !basic {
        vars.push(("PEERDB_PASSWORD", ""));
    }
    catalog.app(&vars).await
}

fn challenges(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

async fn seeded() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(5, &["m"]).await;
    catalog
}

#[tokio::test]
async fn rs256_and_es256_tokens_get_in_behind_every_event_source_in_any_spelling() {
    let catalog = seeded().await;
    let app = app(&catalog, true).await;
    let k = keys();
    for key in [&k.rsa_a, &k.ec_a] {
        let token = key.sign(&claims(ISSUER));
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER  {token}"),
            token.clone(),
        ] {
            for source in SOURCES {
                let call = Call::logs(json!({"numPerPage": 2})).auth(&header);
                let reply = invoke(&app, &call.event(source)).await;
                assert_eq!(reply.status, 200, "{source:?}: {}", reply.json);
                assert_eq!(reply.ids(), vec![5, 4]);
            }
        }
    }
    // The names endpoint asks the same.
    let token = k.rsa_a.sign(&claims(ISSUER));
    let names = Call::logs(json!({}))
        .method("GET")
        .path("/api/v1/mirrors/names");
    assert_eq!(
        send(&app, names.auth(&format!("Bearer {token}")))
            .await
            .json,
        json!({"names": ["m"]})
    );
}

#[tokio::test]
async fn basic_works_beside_tokens_and_is_refused_when_only_tokens_are_configured() {
    let catalog = seeded().await;
    let both = app(&catalog, true).await;
    assert_eq!(send(&both, Call::logs(json!({}))).await.status, 200);
    let only_tokens = app(&catalog, false).await;
    let reply = send(&only_tokens, Call::logs(json!({}))).await;
    reply.error(401, 16);
    assert_eq!(challenges(&reply), [r#"Bearer realm="PeerDB""#]);
    let token = keys().ec_a.sign(&claims(ISSUER));
    let reply = send(
        &only_tokens,
        Call::logs(json!({})).auth(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn refused_tokens_are_a_401_with_a_challenge_for_each_way_in() {
    let catalog = seeded().await;
    let app = app(&catalog, true).await;
    let k = keys();
    let expired = k
        .rsa_a
        .sign(&with(claims(ISSUER), "exp", json!(now() - 10)));
    let no_exp = k.rsa_a.sign(&without(claims(ISSUER), "exp"));
    let other_issuer = k.ec_a.sign(&claims("https://elsewhere.example/"));
    let unknown_key = k.rsa_b.sign(&claims(ISSUER));
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(7000),
        "e".repeat(7000),
        "e".repeat(6000)
    );
    for token in [
        expired.as_str(),
        &no_exp,
        &other_issuer,
        &unknown_key,
        "garbage.not.jwt",
        &huge,
    ] {
        let reply = send(&app, Call::logs(json!({})).auth(&format!("Bearer {token}"))).await;
        assert_eq!(
            reply.error(401, 16),
            "authentication required: HTTP Basic with the PeerDB password, or a bearer token"
        );
        assert_eq!(
            challenges(&reply),
            [BASIC_CHALLENGE, BEARER_REFUSED],
            "{}",
            &token[..20]
        );
    }
    // No credentials at all: both challenges, no error attribute.
    let reply = send(&app, Call::logs(json!({})).without_header("authorization")).await;
    assert_eq!(
        challenges(&reply),
        [BASIC_CHALLENGE, r#"Bearer realm="PeerDB""#]
    );
    // Two Authorization headers, even both good, are refused.
    let good = format!("Bearer {}", k.rsa_a.sign(&claims(ISSUER)));
    let reply = send(
        &app,
        Call::logs(json!({}))
            .auth(&good)
            .header("authorization", &good),
    )
    .await;
    reply.error(401, 16);
}

#[tokio::test]
async fn a_refused_token_never_reaches_the_catalog_or_the_log() {
    // A catalog that is down would answer 503 if it were tried.
    let catalog = TestCatalog::new().await;
    let k = keys();
    let set = jwks(&[&k.rsa_a]).to_string();
    let app = catalog
        .app(&[
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none"),
            ("PEERDB_OAUTH_ISSUER_URL", ISSUER),
            ("PEERDB_OAUTH_KEYSET_JSON", &set),
        ])
        .await;
    let log = LogCapture::start();
    let tokens = [
        k.rsa_a.sign(&with(claims(ISSUER), "exp", json!(now() - 1))),
        k.rsa_b.sign(&claims(ISSUER)),
        k.rsa_a.sign(&claims("https://elsewhere.example/")),
    ];
    let started = Instant::now();
    for token in &tokens {
        send(
            &app,
            Call::raw(b"{not json").auth(&format!("Bearer {token}")),
        )
        .await
        .error(401, 16);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = log.text();
    assert!(
        text.contains("the token has expired"),
        "the refusal's reason is logged: {text}"
    );
    for token in &tokens {
        for part in token.split('.') {
            assert!(!text.contains(part), "a token's part is in the log: {text}");
        }
    }
}

#[tokio::test]
async fn with_discovery_a_key_set_down_is_a_503_in_time_and_tokens_get_in_once_it_is_up() {
    let catalog = seeded().await;
    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.ec_a]), Mode::Hang).await;
    let issuer = server.issuer();
    let app = catalog
        .app(&[
            ("PEERDB_OAUTH_ISSUER_URL", &issuer),
            ("PEERDB_OAUTH_DISCOVERY_ENABLED", "true"),
            ("PEERDB_CATALOG_CONNECT_TIMEOUT_MS", "500"),
        ])
        .await;
    let token = k.ec_a.sign(&claims(&issuer));
    wait_out_the_refetch_interval().await;
    let started = Instant::now();
    let reply = send(&app, Call::logs(json!({})).auth(&format!("Bearer {token}"))).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reply.error(503, 14),
        "the token's signing keys cannot be fetched; try again"
    );
    assert_eq!(reply.headers["retry-after"], "5");
    server.set_mode(Mode::Serve);
    wait_out_the_refetch_interval().await;
    let reply = send(
        &app,
        Call::logs(json!({"numPerPage": 1})).auth(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["errors"][0]["id"], Value::from(5));
}

#[tokio::test]
async fn the_real_binary_lets_good_tokens_in_and_writes_no_token_anywhere() {
    let catalog = seeded().await;
    let k = keys();
    let set = jwks(&[&k.rsa_a, &k.ec_a]).to_string();
    let url = catalog.reader_url();
    let server = Server::start(&[
        ("DATABASE_URL", &url),
        ("PEERDB_PASSWORD", ""),
        ("PEERDB_OAUTH_ISSUER_URL", ISSUER),
        ("PEERDB_OAUTH_KEYSET_JSON", &set),
        // Everything the function and its crates log.
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
    ]);
    let good = [k.rsa_a.sign(&claims(ISSUER)), k.ec_a.sign(&claims(ISSUER))];
    let bad = [
        k.rsa_a.sign(&with(claims(ISSUER), "exp", json!(now() - 5))),
        k.rsa_b.sign(&claims(ISSUER)),
        format!("{}x", good[0]),
    ];
    let head = |token: &str| {
        format!("POST /api/v1/mirrors/logs HTTP/1.1\r\nAuthorization: Bearer {token}")
    };
    for token in &good {
        let (status, json) = server.request(&head(token), br#"{"numPerPage": 1}"#).await;
        assert_eq!(
            (status, json["errors"][0]["id"].as_i64()),
            (200, Some(5)),
            "{json}"
        );
    }
    for token in &bad {
        let (status, json) = server.request(&head(token), br#"{"numPerPage": 1}"#).await;
        assert_eq!((status, json["code"].as_i64()), (401, Some(16)), "{json}");
        let body = json.to_string();
        assert!(
            token.split('.').all(|part| !body.contains(part)),
            "a token in a body: {body}"
        );
    }
    let log = server.terminate().join("\n");
    assert!(
        log.contains("request served") && log.contains("the token has expired"),
        "{log}"
    );
    for token in good.iter().chain(&bad) {
        for part in token.split('.') {
            assert!(!log.contains(part), "a token's part in the output");
        }
    }
}
