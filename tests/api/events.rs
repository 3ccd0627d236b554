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
    // Enough info lines for an answer worth compressing.
    for id in 4..=40 {
        let message = format!("pulled {id} records from source for batch {id}, lsn 0/{id:x}000");
        catalog.insert(&[(id, "m", "info", &message)]).await;
    }
    catalog
}

/// What a sample event's answer must be.
pub enum Answer {
    /// The docs' body: errors only, two per page, newest first.
    DocsPage,
    /// `http-api-gzip.json`: the 38 info lines, 50 a page, compressed.
    InfoPage,
    /// `alb-peerdb-ui.json`: PeerDB's UI's first Logs page, 15 lines of
    /// every level, from a function configured as the UI deployment is.
    UiFirstPage,
    Error(u16),
}

/// What the template sets in the UI deployment (`PeerdbUiAlb=true`).
pub const UI_SETTINGS: [(&str, &str); 2] = [
    ("PEERDB_LOGS_DISABLE_AUTH", "true"),
    ("PEERDB_LOGS_DISABLE_COMPRESSION", "true"),
];

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::DocsPage | Answer::InfoPage | Answer::UiFirstPage => 200,
            Answer::Error(status) => *status,
        }
    }

    /// The row ids a 200 carries.
    pub fn ids(&self) -> Vec<i64> {
        match self {
            Answer::DocsPage => vec![3, 1],
            Answer::InfoPage => (4..=40).rev().chain([2]).collect(),
            Answer::UiFirstPage => (26..=40).rev().collect(),
            Answer::Error(_) => vec![],
        }
    }

    /// The `total` a 200 carries.
    pub fn total(&self) -> usize {
        match self {
            Answer::UiFirstPage => 40,
            _ => self.ids().len(),
        }
    }

    /// The settings the function needs, beside the catalog and
    /// `PEERDB_PASSWORD=peerdb`, to give this answer.
    pub fn settings(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Answer::UiFirstPage => &UI_SETTINGS,
            _ => &[],
        }
    }
}

/// Every file in `events/`, with the answer events/README.md says it gets.
pub fn sample_events() -> Vec<(std::path::PathBuf, Answer)> {
    let expected = |file: &str| match file {
        "wrong-password.json" => Some(Answer::Error(401)),
        "malformed-body.json" => Some(Answer::Error(400)),
        "http-api-gzip.json" => Some(Answer::InfoPage),
        "alb-peerdb-ui.json" => Some(Answer::UiFirstPage),
        "rest-api-stage.json"
        | "http-api-default-stage.json"
        | "http-api-named-stage.json"
        | "alb.json"
        | "function-url.json" => Some(Answer::DocsPage),
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
        let answer = expected(&file)
            .unwrap_or_else(|| panic!("events/{file} has no expected answer in this test"));
        events.push((path, answer));
    }
    assert_eq!(events.len(), 9);
    events
}

#[tokio::test]
async fn every_sample_event_gets_its_documented_answer() {
    let catalog = sample_catalog().await;
    for (path, answer) in sample_events() {
        let file = path.file_name().unwrap().to_string_lossy();
        let app = catalog.app(answer.settings()).await;
        let reply = invoke(&app, &std::fs::read_to_string(&path).unwrap()).await;
        assert_eq!(
            reply.status.as_u16(),
            answer.status(),
            "events/{file}: {}",
            reply.json
        );
        match answer {
            Answer::DocsPage => {
                assert_eq!(reply.ids(), answer.ids(), "events/{file}");
                assert_eq!((reply.total(), reply.page()), (2, 1));
                assert_eq!(reply.compressed, None);
            }
            Answer::InfoPage => {
                assert_eq!(reply.ids(), answer.ids(), "events/{file}");
                assert_eq!(reply.compressed.as_deref(), Some("br"));
            }
            Answer::UiFirstPage => {
                assert_eq!(reply.ids(), answer.ids(), "events/{file}");
                assert_eq!((reply.total(), reply.page()), (40, 1));
                // It accepts gzip, and the page is over 1 KiB.
                assert_eq!(reply.compressed, None);
            }
            Answer::Error(_) => {}
        }
    }
}
