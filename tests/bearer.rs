//! Bearer tokens end to end: real RSA and EC P-256 keys made here with the
//! `openssl` CLI, tokens signed with jsonwebtoken, and a key set served on
//! 127.0.0.1 by a tiny server that can change the set, count fetches, fail
//! and hang. Uses only `peerdb_mirror_logs::bearer`.

#[path = "api/helpers/tokens.rs"]
mod tokens;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use peerdb_mirror_logs::bearer::*;
use serde_json::json;
use tokens::*;

#[tokio::test]
async fn accepts_an_rs256_token_from_the_inline_set() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims(ISSUER))).await, Ok(()));
}

#[tokio::test]
async fn accepts_an_es256_token_from_the_inline_set() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    assert_eq!(bearer.verify(&k.ec_a.sign(&claims(ISSUER))).await, Ok(()));
}

#[tokio::test]
async fn accepts_every_rsa_algorithm_from_an_rsa_key_without_alg() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let token = k.rsa_a.sign_as(alg, "rsa-a", &claims(ISSUER));
        assert_eq!(bearer.verify(&token).await, Ok(()), "{alg:?}");
    }
}

#[tokio::test]
async fn accepts_bearer_in_any_case_and_a_bare_token() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k.rsa_a.sign(&claims(ISSUER));
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        token.clone(),
    ] {
        let presented = token_of(&header).expect("a token");
        assert_eq!(presented, token);
        assert_eq!(bearer.verify(presented).await, Ok(()));
    }
    assert_eq!(token_of("Basic OnBlZXJkYg=="), None);
    assert_eq!(token_of(""), None);
}

#[tokio::test]
async fn accepts_a_token_whose_claim_is_the_configured_string() {
    let k = keys();
    let mut config = inline_config(&jwks(&[&k.rsa_a]));
    config.claim = Some(("org".into(), "acme".into()));
    let bearer = Bearer::new(config, LIMIT).await.unwrap();
    let token = k.rsa_a.sign(&with(claims(ISSUER), "org", json!("acme")));
    assert_eq!(bearer.verify(&token).await, Ok(()));
}

// ---------------------------------------------------- refused: claims

#[tokio::test]
async fn refuses_an_expired_token() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k.rsa_a.sign(&with(claims(ISSUER), "exp", json!(now() - 1)));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::Expired));
}

#[tokio::test]
async fn refuses_a_token_without_exp() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k.rsa_a.sign(&without(claims(ISSUER), "exp"));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::NoExp));
    let token = k
        .rsa_a
        .sign(&with(claims(ISSUER), "exp", json!("9999999999")));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::Malformed));
}

#[tokio::test]
async fn refuses_a_token_not_valid_yet() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k
        .rsa_a
        .sign(&with(claims(ISSUER), "nbf", json!(now() + 30)));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::NotYetValid));
}

#[tokio::test]
async fn refuses_a_token_issued_in_the_future() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k
        .rsa_a
        .sign(&with(claims(ISSUER), "iat", json!(now() + 30)));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::IssuedInFuture));
}

#[tokio::test]
async fn refuses_another_issuer_and_a_missing_one() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    for issuer in [
        json!("https://evil.example/tenant/"),
        json!("https://idp.example/tenant"), // not exactly the issuer
        json!([ISSUER]),
        json!(null),
    ] {
        let token = k.rsa_a.sign(&with(claims(ISSUER), "iss", issuer.clone()));
        assert_eq!(
            bearer.verify(&token).await,
            Err(Refusal::WrongIssuer),
            "{issuer}"
        );
    }
    let token = k.rsa_a.sign(&without(claims(ISSUER), "iss"));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongIssuer));
}

#[tokio::test]
async fn refuses_the_claim_with_another_value_missing_or_not_a_string() {
    let k = keys();
    let mut config = inline_config(&jwks(&[&k.rsa_a]));
    config.claim = Some(("org".into(), "acme".into()));
    let bearer = Bearer::new(config, LIMIT).await.unwrap();
    for value in [
        json!("other"),
        json!("ACME"),
        json!(["acme"]),
        json!(1),
        json!(null),
    ] {
        let token = k.rsa_a.sign(&with(claims(ISSUER), "org", value.clone()));
        assert_eq!(
            bearer.verify(&token).await,
            Err(Refusal::ClaimMismatch),
            "{value}"
        );
    }
    let token = k.rsa_a.sign(&claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::ClaimMismatch));
}

// ---------------------------------------------- refused: keys, algorithms

#[tokio::test]
async fn refuses_an_unknown_kid_and_a_token_without_kid() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let token = k
        .rsa_a
        .sign_as(Algorithm::RS256, "no-such-kid", &claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::UnknownKid));
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(ISSUER),
        &k.rsa_a.encoding(),
    )
    .unwrap();
    assert_eq!(bearer.verify(&token).await, Err(Refusal::NoKid));
}

#[tokio::test]
async fn refuses_a_token_signed_by_a_key_not_in_the_set() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    // Under its own kid: unknown.
    let token = k.rsa_c.sign(&claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::UnknownKid));
    // Under the kid of a key in the set: the signature does not verify.
    let token = k.rsa_c.sign_as(Algorithm::RS256, "rsa-a", &claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::BadSignature));
}

#[tokio::test]
async fn never_accepts_alg_none() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    for alg in ["none", "None", "NONE"] {
        for header in [json!({"alg": alg, "kid": "rsa-a"}), json!({"alg": alg})] {
            let token = raw_token(&header, &claims(ISSUER), b"");
            assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongAlgorithm));
        }
    }
    // An unsigned token whose signature part is cut off entirely.
    let token = raw_token(
        &json!({"alg": "none", "kid": "rsa-a"}),
        &claims(ISSUER),
        b"",
    );
    let cut = token.trim_end_matches('.');
    assert_eq!(bearer.verify(cut).await, Err(Refusal::Malformed));
}

#[tokio::test]
async fn never_accepts_hmac_even_keyed_with_the_rsa_public_key() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let n = k.rsa_a.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let secrets = [
        k.rsa_a.public_pem.clone(),
        k.rsa_a.public_der.clone(),
        n,
        k.rsa_a.jwk.to_string().into_bytes(),
    ];
    for secret in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("rsa-a".into());
            let token =
                jsonwebtoken::encode(&header, &claims(ISSUER), &EncodingKey::from_secret(secret))
                    .unwrap();
            assert_eq!(
                bearer.verify(&token).await,
                Err(Refusal::WrongAlgorithm),
                "{alg:?}"
            );
        }
    }
}

#[tokio::test]
async fn refuses_an_algorithm_the_named_key_type_does_not_allow() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    // An RS256 header naming the EC key's kid.
    let token = k.rsa_a.sign_as(Algorithm::RS256, "ec-a", &claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongAlgorithm));
    // An ES256 header naming the RSA key's kid.
    let token = k.ec_a.sign_as(Algorithm::ES256, "rsa-a", &claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongAlgorithm));
    // EdDSA and ES512 are never accepted.
    for alg in ["EdDSA", "ES512"] {
        let token = raw_token(&json!({"alg": alg, "kid": "ec-a"}), &claims(ISSUER), b"x");
        assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongAlgorithm));
    }
}

#[tokio::test]
async fn refuses_an_algorithm_other_than_the_keys_own_alg() {
    let k = keys();
    let mut pinned = k.rsa_a.jwk.clone();
    pinned["alg"] = json!("RS256");
    let bearer = Bearer::new(inline_config(&json!({"keys": [pinned]})), LIMIT)
        .await
        .unwrap();
    let token = k.rsa_a.sign_as(Algorithm::PS256, "rsa-a", &claims(ISSUER));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::WrongAlgorithm));
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims(ISSUER))).await, Ok(()));
}

#[tokio::test]
async fn refuses_a_tampered_token() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    for key in [&k.rsa_a, &k.ec_a] {
        let token = key.sign(&claims(ISSUER));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(with(claims(ISSUER), "sub", json!("admin"))
            .to_string()
            .as_bytes());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(bearer.verify(&tampered).await, Err(Refusal::BadSignature));
        // The signature of another token.
        let other = key.sign(&with(claims(ISSUER), "sub", json!("user-2")));
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.split('.').nth(2).unwrap()
        );
        assert_eq!(bearer.verify(&swapped).await, Err(Refusal::BadSignature));
        // A signature that is not base64url.
        let broken = format!("{}.{}.!!!", parts[0], parts[1]);
        assert_eq!(bearer.verify(&broken).await, Err(Refusal::BadSignature));
    }
}

#[tokio::test]
async fn refuses_garbage_empty_and_oversized_tokens() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a]).await;
    let good = k.rsa_a.sign(&claims(ISSUER));
    for garbage in [
        "",
        "garbage",
        "a.b.c",
        "..",
        &format!("{good}.extra"),
        &good.replacen('.', "", 1),
        &format!("{}.{}.", b64(b"[]"), b64(b"{}")),
        &format!(
            "{}.{}.",
            b64(br#"{"alg":"RS256","kid":"rsa-a"}"#),
            b64(b"[1]")
        ),
        &format!("=={good}"),
    ] {
        assert_eq!(
            bearer.verify(garbage).await,
            Err(Refusal::Malformed),
            "{garbage:.40}"
        );
    }
    let crit = raw_token(
        &json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"]}),
        &claims(ISSUER),
        b"x",
    );
    assert_eq!(bearer.verify(&crit).await, Err(Refusal::Malformed));

    let huge = "a".repeat(20 * 1024);
    assert_eq!(bearer.verify(&huge).await, Err(Refusal::TooLarge));
    let padded = with(claims(ISSUER), "pad", json!("x".repeat(9000)));
    assert_eq!(
        bearer.verify(&k.rsa_a.sign(&padded)).await,
        Err(Refusal::TooLarge)
    );
    assert_eq!(
        bearer.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)).await,
        Err(Refusal::TooLarge)
    );
    assert_eq!(
        bearer.verify(&"a".repeat(MAX_TOKEN_BYTES)).await,
        Err(Refusal::Malformed)
    );
}

// ----------------------------------------------------------- discovery

#[tokio::test]
async fn accepts_keys_from_the_published_set_beside_the_inline_one() {
    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.ec_a]), Mode::Serve).await;
    let config = OAuthConfig {
        issuer: server.issuer(),
        keyset_json: Some(jwks(&[&k.rsa_a]).to_string()),
        discovery: true,
        claim: None,
    };
    let bearer = Bearer::new(config, LIMIT).await.unwrap();
    assert_eq!(server.fetches(), 1, "fetched once at start");
    let claims = claims(&server.issuer());
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims)).await, Ok(()));
    assert_eq!(bearer.verify(&k.ec_a.sign(&claims)).await, Ok(()));
    assert_eq!(server.fetches(), 1, "known keys cost no fetch");
}

#[tokio::test]
async fn picks_up_a_key_added_to_the_published_set_without_a_restart() {
    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.rsa_a]), Mode::Serve).await;
    let bearer = discovery_bearer(&server).await;
    let claims = claims(&server.issuer());
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims)).await, Ok(()));

    wait_out_the_refetch_interval().await;
    server.publish(&jwks(&[&k.rsa_a, &k.rsa_b]));
    assert_eq!(bearer.verify(&k.rsa_b.sign(&claims)).await, Ok(()));
    assert_eq!(server.fetches(), 2);
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims)).await, Ok(()));

    // A key removed from the published set is no longer accepted once the
    // set is fetched again.
    wait_out_the_refetch_interval().await;
    server.publish(&jwks(&[&k.rsa_b]));
    let unknown = k.rsa_c.sign(&claims);
    assert_eq!(bearer.verify(&unknown).await, Err(Refusal::UnknownKid));
    assert_eq!(server.fetches(), 3);
    assert_eq!(
        bearer.verify(&k.rsa_a.sign(&claims)).await,
        Err(Refusal::UnknownKid)
    );
    assert_eq!(bearer.verify(&k.rsa_b.sign(&claims)).await, Ok(()));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_interval() {
    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.rsa_a]), Mode::Serve).await;
    let bearer = Arc::new(discovery_bearer(&server).await);
    let claims = claims(&server.issuer());
    wait_out_the_refetch_interval().await;

    // Thirty at once: they share one fetch.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let token = k
            .rsa_a
            .sign_as(Algorithm::RS256, &format!("made-up-{i}"), &claims);
        let bearer = bearer.clone();
        tasks.spawn(async move { bearer.verify(&token).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), Err(Refusal::UnknownKid));
    }
    assert_eq!(server.fetches(), 2, "one at start, one for the flood");

    // Thirty more one after another, within the interval: no fetch at all.
    let started = Instant::now();
    for i in 0..30 {
        let token = k
            .rsa_a
            .sign_as(Algorithm::RS256, &format!("again-{i}"), &claims);
        assert_eq!(bearer.verify(&token).await, Err(Refusal::UnknownKid));
    }
    assert!(started.elapsed() < MIN_REFETCH_INTERVAL);
    assert_eq!(server.fetches(), 2);
    // Known keys keep working throughout.
    assert_eq!(bearer.verify(&k.rsa_a.sign(&claims)).await, Ok(()));
}

#[tokio::test]
async fn starts_while_the_key_set_is_down_and_accepts_tokens_once_it_is_up() {
    let k = keys();
    for down in [Mode::Close, Mode::Error500] {
        let server = KeyServer::start(&jwks(&[&k.rsa_a]), down).await;
        let bearer = discovery_bearer(&server).await; // not fatal
        let token = k.rsa_a.sign(&claims(&server.issuer()));
        let started = Instant::now();
        assert_eq!(
            bearer.verify(&token).await,
            Err(Refusal::KeySetUnavailable),
            "{down:?}"
        );
        assert!(
            started.elapsed() < LIMIT,
            "answered at once, not retried yet"
        );
        assert_eq!(Refusal::KeySetUnavailable.http_status(), 503);

        server.set_mode(Mode::Serve);
        wait_out_the_refetch_interval().await;
        assert_eq!(bearer.verify(&token).await, Ok(()), "{down:?}");
        assert_eq!(server.fetches(), 2);
    }
}

#[tokio::test]
async fn a_key_set_that_never_answers_refuses_within_the_time_limit() {
    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.rsa_a]), Mode::Hang).await;
    let started = Instant::now();
    let bearer = Arc::new(discovery_bearer(&server).await);
    let start_up = started.elapsed();
    assert!(
        start_up >= LIMIT && start_up < LIMIT + Duration::from_millis(500),
        "{start_up:?}"
    );

    let token = k.rsa_a.sign(&claims(&server.issuer()));
    wait_out_the_refetch_interval().await;
    // Several requests during one hanging fetch: each is answered within
    // the limit, and they share the one fetch.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (bearer, token) = (bearer.clone(), token.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            (bearer.verify(&token).await, started.elapsed())
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        let (outcome, took) = outcome.unwrap();
        assert_eq!(outcome, Err(Refusal::KeySetUnavailable));
        assert!(took < LIMIT + Duration::from_millis(500), "{took:?}");
    }
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_key_set_response_over_the_size_bound_is_not_used() {
    let k = keys();
    let mut set = jwks(&[&k.rsa_a]);
    set["padding"] = json!("x".repeat(MAX_KEY_SET_BYTES));
    let server = KeyServer::start(&set, Mode::Serve).await;
    let bearer = discovery_bearer(&server).await;
    let token = k.rsa_a.sign(&claims(&server.issuer()));
    assert_eq!(bearer.verify(&token).await, Err(Refusal::KeySetUnavailable));
}

// ------------------------------------------------------- configuration

#[tokio::test]
async fn malformed_configuration_is_an_error_at_start() {
    let k = keys();
    let bad_json = OAuthConfig {
        keyset_json: Some("{not json".into()),
        ..inline_config(&json!({}))
    };
    assert!(matches!(
        Bearer::new(bad_json, LIMIT).await,
        Err(BearerConfigError::KeySetJson(_))
    ));
    let no_keys = inline_config(&json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}));
    assert_eq!(
        Bearer::new(no_keys, LIMIT).await.unwrap_err(),
        BearerConfigError::NoUsableKey
    );
    for issuer in [
        "http://idp.example/",
        "http://localhost:1/",
        "ftp://idp.example/",
    ] {
        let config = OAuthConfig {
            issuer: issuer.into(),
            keyset_json: Some(jwks(&[&k.rsa_a]).to_string()),
            discovery: true,
            claim: None,
        };
        let err = Bearer::new(config, LIMIT).await.unwrap_err();
        assert!(
            matches!(err, BearerConfigError::DiscoveryUrl(_)),
            "{issuer}"
        );
        assert!(!err.to_string().contains(issuer));
    }
}

#[test]
fn configuration_from_the_environment_variables() {
    let env = |name: &str| match name {
        "PEERDB_OAUTH_ISSUER_URL" => Some("https://idp.example/".to_string()),
        "PEERDB_OAUTH_DISCOVERY_ENABLED" => Some("true".to_string()),
        "PEERDB_OAUTH_KEYSET_JSON" => Some(String::new()),
        _ => None,
    };
    let config = OAuthConfig::from_vars(env).unwrap().unwrap();
    assert_eq!(config.issuer, "https://idp.example/");
    assert!(config.discovery);
    assert_eq!(config.keyset_json, None, "empty counts as unset");
    assert_eq!(OAuthConfig::from_vars(|_| None), Ok(None));
}

// ----------------------------------------------------------------- logs

/// The log, at TRACE, of one test's thread.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<String>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_fetch_is_logged_and_no_token_ever_is() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = lambda_http::tracing::subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let k = keys();
    let server = KeyServer::start(&jwks(&[&k.rsa_a]), Mode::Error500).await;
    let bearer = discovery_bearer(&server).await;
    let claims = claims(&server.issuer());
    let mut tokens = vec![
        k.rsa_a.sign(&claims),
        k.rsa_c.sign(&claims),
        k.rsa_a.sign(&with(claims.clone(), "exp", json!(1))),
    ];
    let mut refusals = Vec::new();
    for token in &tokens {
        refusals.push(bearer.verify(token).await.unwrap_err());
    }
    server.set_mode(Mode::Serve);
    wait_out_the_refetch_interval().await;
    tokens.push(k.rsa_c.sign_as(Algorithm::RS256, "rsa-a", &claims));
    refusals.push(bearer.verify(&tokens[3]).await.unwrap_err());
    assert_eq!(bearer.verify(&tokens[0]).await, Ok(()));

    let log = sink.0.lock().unwrap().clone();
    assert!(
        log.contains("ERROR") && log.contains("key set cannot be fetched"),
        "{log}"
    );
    assert!(log.contains(&format!("{}/.well-known/jwks.json", server.issuer())));
    let shown = format!(
        "{log}{refusals:?}{}{bearer:?}",
        refusals.iter().map(|r| r.to_string()).collect::<String>()
    );
    for token in &tokens {
        for part in token.split('.') {
            assert!(!shown.contains(part), "a token's part was shown");
        }
    }
}

// ------------------------------------------------------------- measure

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Run by hand: `cargo test --release --test bearer -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a measurement, not a check"]
async fn measure_verify_time_and_start_up_cost() {
    let k = keys();
    let bearer = inline_bearer(&[&k.rsa_a, &k.ec_a]).await;
    for key in [&k.rsa_a, &k.ec_a] {
        let token = key.sign(&claims(ISSUER));
        let mut samples = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let started = Instant::now();
            assert_eq!(bearer.verify(&token).await, Ok(()));
            samples.push(started.elapsed());
        }
        println!("verify {:?}: median of 1000 {:?}", key.alg, median(samples));
    }

    let inline = jwks(&[&k.rsa_a, &k.ec_a]);
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        Bearer::new(inline_config(&inline), LIMIT).await.unwrap();
        samples.push(started.elapsed());
    }
    println!(
        "Bearer::new, inline set of 2: median of 50 {:?}",
        median(samples)
    );

    let server = KeyServer::start(&inline, Mode::Serve).await;
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        discovery_bearer(&server).await;
        samples.push(started.elapsed());
    }
    println!(
        "Bearer::new, discovery from loopback http (one fetch): median of 50 {:?}",
        median(samples)
    );

    // What an https issuer adds at start, before its fetch: the system's
    // CA certificates.
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        assert!(added > 0);
        samples.push(started.elapsed());
    }
    println!(
        "loading the system's CA certificates: median of 20 {:?}",
        median(samples)
    );
}
