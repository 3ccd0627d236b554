//! `Accept-Encoding`: a JSON body over a small size goes compressed, as a
//! binary (base64) Lambda body, behind every event source.

use serde_json::json;

use crate::helpers::*;

async fn catalog() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog
        .insert_many(300, &["orders_cdc", "events_to_snowflake"])
        .await;
    catalog
}

#[tokio::test]
async fn a_page_goes_gzip_or_brotli_as_asked_behind_every_event_source() {
    let app = catalog().await.app(&[]).await;
    let request = json!({"numPerPage": 200});
    let plain = logs(&app, request.clone()).await;
    assert_eq!(plain.compressed, None);
    assert_eq!(plain.headers["vary"], "accept-encoding");
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("br;q=0, gzip", "gzip"),
    ] {
        for source in SOURCES {
            let call = Call::logs(request.clone()).header("accept-encoding", accept);
            let reply = invoke(&app, &call.event(source)).await;
            assert_eq!(reply.status, 200, "{source:?} {accept}");
            assert_eq!(
                reply.compressed.as_deref(),
                Some(coding),
                "{source:?} {accept}"
            );
            assert_eq!(reply.headers["vary"], "accept-encoding");
            assert_eq!(reply.headers["content-type"], "application/json");
            assert_eq!(reply.json, plain.json, "{source:?} {accept}");
        }
    }
}

#[tokio::test]
async fn small_answers_and_errors_go_as_they_are() {
    let app = catalog().await.app(&[]).await;
    let small = send(
        &app,
        Call::logs(json!({"numPerPage": 2})).header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(
        (small.status.as_u16(), small.compressed.as_deref()),
        (200, None)
    );
    assert_eq!(small.ids(), vec![300, 299]);
    let refused = send(
        &app,
        Call::logs(json!({"numPerPage": -1})).header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(refused.compressed, None);
    refused.error(400, 3);
}

#[tokio::test]
async fn a_coding_refused_or_unknown_is_not_used() {
    let app = catalog().await.app(&[]).await;
    for accept in ["gzip;q=0", "deflate", "identity", "compress"] {
        let reply = send(
            &app,
            Call::logs(json!({"numPerPage": 200})).header("accept-encoding", accept),
        )
        .await;
        assert_eq!(reply.compressed, None, "{accept}");
        assert_eq!(reply.ids().len(), 200);
    }
}

#[tokio::test]
async fn with_compression_turned_off_a_page_goes_plain_whatever_is_accepted() {
    // As behind PeerDB's UI, whose proxy (Node's fetch) asks for gzip,
    // decodes the answer, and passes the header on to the browser.
    let app = catalog()
        .await
        .app(&[("PEERDB_LOGS_DISABLE_COMPRESSION", "true")])
        .await;
    for source in SOURCES {
        let call =
            Call::logs(json!({"numPerPage": 200})).header("accept-encoding", "gzip, deflate");
        let reply = invoke(&app, &call.event(source)).await;
        assert_eq!(
            (reply.status.as_u16(), reply.compressed.as_deref()),
            (200, None),
            "{source:?}"
        );
        assert_eq!(reply.ids().len(), 200);
    }
}
