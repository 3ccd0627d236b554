use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn missing_malformed_or_wrong_credentials_are_401_with_a_challenge() {
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[]).await;
    let wrong = [
        basic(":wrong"),
        basic("admin:peerdb"),
        basic("peerdb"),
        basic(":peerdb\n"),
        "Basic".into(),
        "Basic ".into(),
        "Bearer OnBlZXJkYg==".into(),
        "Basic ###".into(),
    ];
    for source in SOURCES {
        let missing = invoke(
            &app,
            &Call::logs(json!({}))
                .without_header("authorization")
                .event(source),
        )
        .await;
        missing.error(401, 16);
        assert_eq!(
            missing.headers["www-authenticate"],
            r#"Basic realm="PeerDB", charset="UTF-8""#
        );
        for header in &wrong {
            let reply = invoke(&app, &Call::logs(json!({})).auth(header).event(source)).await;
            reply.error(401, 16);
            assert_eq!(
                reply.headers["www-authenticate"], r#"Basic realm="PeerDB", charset="UTF-8""#,
                "{header}"
            );
        }
    }
}

#[tokio::test]
async fn scheme_in_any_case_and_unpadded_base64_are_accepted() {
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[]).await;
    for header in ["basic OnBlZXJkYg==", "BASIC OnBlZXJkYg", "Basic OnBlZXJkYg"] {
        assert_eq!(
            send(&app, Call::logs(json!({})).auth(header)).await.status,
            200,
            "{header}"
        );
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    // HTTP APIs and Function URLs join repeated headers with a comma. (A
    // REST API event also lists them, but lambda_http keeps only the last.)
    let app = TestCatalog::new().await.app(&[]).await;
    for source in [
        Source::HttpApiDefault,
        Source::HttpApiNamed,
        Source::FunctionUrl,
    ] {
        let call = Call::logs(json!({})).header("authorization", AUTH);
        invoke(&app, &call.event(source)).await.error(401, 16);
    }
}

#[tokio::test]
async fn unauthenticated_requests_never_reach_the_catalog() {
    // A catalog that is down would answer 503 if it were tried.
    let catalog = TestCatalog::new().await;
    let app = catalog
        .app(&[("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")])
        .await;
    let started = Instant::now();
    send(&app, Call::logs(json!({})).auth(&basic(":guess")))
        .await
        .error(401, 16);
    send(&app, Call::logs(json!({})).without_header("authorization"))
        .await
        .error(401, 16);
    // Nor is the body looked at: a malformed one still gets 401.
    send(
        &app,
        Call::raw(b"{not json").without_header("authorization"),
    )
    .await
    .error(401, 16);
    assert!(started.elapsed() < Duration::from_millis(200));
    send(&app, Call::logs(json!({}))).await.error(503, 14);
}

#[tokio::test]
async fn without_a_password_nothing_is_served() {
    let catalog = TestCatalog::new().await;
    let app = catalog.app(&[("PEERDB_PASSWORD", "")]).await;
    for call in [
        Call::logs(json!({})),
        Call::logs(json!({})).without_header("authorization"),
    ] {
        let message = send(&app, call).await.error(500, 13);
        assert!(message.contains("not configured"), "{message}");
    }
}

#[tokio::test]
async fn authentication_can_be_turned_off_explicitly() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(3, &["m"]).await;
    let app = catalog
        .app(&[
            ("PEERDB_PASSWORD", ""),
            ("PEERDB_LOGS_DISABLE_AUTH", "true"),
        ])
        .await;
    let reply = send(
        &app,
        Call::logs(json!({"numPerPage": 5})).without_header("authorization"),
    )
    .await;
    assert_eq!(reply.ids(), vec![3, 2, 1]);
}
