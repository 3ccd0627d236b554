//! Every file in `events/` is a request users replay with `sam local
//! invoke` or `cargo lambda invoke`: each must still get its answer.

use crate::helpers::*;

/// A catalog holding the rows the sample events' answers are checked
/// against.
pub async fn sample_catalog() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog
        .insert(&[
            (
                1,
                "mirror_staging",
                "error",
                "failed to connect to Postgres",
            ),
            (2, "m", "info", "ok"),
        ])
        .await;
    catalog
        .insert(&[(
            3,
            "mirror_development",
            "error",
            "failed to push data to ClickHouse",
        )])
        .await;
    catalog
}

/// Every file in `events/`, with the status events/README.md says it gets.
pub fn sample_events() -> Vec<(std::path::PathBuf, u16)> {
    let expected = |file: &str| match file {
        "wrong-password.json" => Some(401),
        "malformed-body.json" => Some(400),
        "rest-api-stage.json"
        | "http-api-default-stage.json"
        | "http-api-named-stage.json"
        | "alb.json"
        | "function-url.json" => Some(200),
        _ => None,
    };
    let dir = format!("{}/events", env!("CARGO_MANIFEST_DIR"));
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let status = expected(&file)
            .unwrap_or_else(|| panic!("events/{file} has no expected answer in this test"));
        events.push((path, status));
    }
    assert_eq!(events.len(), 7);
    events
}

#[tokio::test]
async fn every_sample_event_gets_its_documented_answer() {
    let catalog = sample_catalog().await;
    let app = catalog.app(&[]).await;
    for (path, status) in sample_events() {
        let file = path.file_name().unwrap().to_string_lossy();
        let reply = invoke(&app, &std::fs::read_to_string(&path).unwrap()).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "events/{file}: {}",
            reply.json
        );
        if status == 200 {
            // The docs' body: errors only, two per page, newest first.
            assert_eq!(reply.ids(), vec![3, 1], "events/{file}");
            assert_eq!((reply.total(), reply.page()), (2, 1));
        }
    }
}
