//! The named requests the benchmark and the load test both send: one list,
//! so that the README's speed and load figures are about the same eight
//! requests. Each is a request body as PeerDB's UI sends it (every field
//! given); what the right answer is, each user works out on its own.

use serde_json::{json, Value};
use tokio_postgres::Client;

/// One request, as a client sends it and as PeerDB reads it. `-1` means
/// "not set" for `before_id` and `after_id`; `level` is `""` for every
/// level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub flow_job_name: String,
    pub level: &'static str,
    pub page: i64,
    pub num_per_page: i64,
    pub before_id: i64,
    pub after_id: i64,
    /// Beyond PeerDB: `fromTimestamp` and `toTimestamp`, ms since the epoch.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Beyond PeerDB: `messageContains`, `""` for none.
    pub message_contains: &'static str,
}

/// Which rows a scenario's cursor keeps, for the values this list uses
/// (`-1`, or an id above 0; the spec's other cases are the API tests').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    None,
    /// `id < before`.
    Before(i64),
    /// `id > after`: the rows nearest above it.
    After(i64),
}

impl Scenario {
    /// The JSON request body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "flowJobName": self.flow_job_name,
            "level": self.level,
            "page": self.page,
            "numPerPage": self.num_per_page,
            "beforeId": self.before_id,
            "afterId": self.after_id,
        });
        if let Some(from) = self.from_ms {
            body["fromTimestamp"] = json!(from);
        }
        if let Some(to) = self.to_ms {
            body["toTimestamp"] = json!(to);
        }
        if !self.message_contains.is_empty() {
            body["messageContains"] = json!(self.message_contains);
        }
        body
    }

    pub fn cursor(&self) -> Cursor {
        if self.before_id > 0 {
            Cursor::Before(self.before_id)
        } else if self.after_id > 0 {
            Cursor::After(self.after_id)
        } else {
            Cursor::None
        }
    }

    /// The mirror filter, if any.
    pub fn flow(&self) -> Option<&str> {
        Some(self.flow_job_name.as_str()).filter(|f| !f.is_empty())
    }

    /// The level filter, if any, as the catalog spells it.
    pub fn level(&self) -> Option<&'static str> {
        Some(self.level).filter(|l| !l.is_empty() && *l != "all")
    }
}

/// What the scenarios are built from: the ids the catalog holds and one
/// mirror's name.
#[derive(Debug, Clone)]
pub struct CatalogShape {
    pub min_id: i64,
    pub max_id: i64,
    /// A mirror with 1% of the rows in a catalog [`seed`](crate::seed)ed
    /// with 100 mirrors (and its `clone_` flows, which its name is part of).
    pub mirror: String,
    /// The `error_timestamp` of the row halfway up the ids, in ms.
    pub mid_ms: i64,
    /// The `error_timestamp` of the newest row (the highest id), in ms.
    pub newest_ms: i64,
}

impl CatalogShape {
    /// The shape of a catalog seeded with at least 34 mirrors.
    pub async fn of(client: &Client) -> Result<CatalogShape, tokio_postgres::Error> {
        let bounds = client
            .query_one("SELECT min(id), max(id) FROM peerdb_stats.flow_errors", &[])
            .await?;
        let mirror = client
            .query_one(
                "SELECT flow_name FROM peerdb_stats.flow_errors WHERE flow_name LIKE 'users%\\_v05' LIMIT 1",
                &[],
            )
            .await?;
        let (min_id, max_id): (i64, i64) = (bounds.get(0), bounds.get(1));
        // The time of the first row from `id` up.
        let ms_from = |id: i64| async move {
            client
                .query_one(
                    "SELECT floor(extract(epoch FROM error_timestamp) * 1000)::int8 FROM peerdb_stats.flow_errors
                     WHERE id >= $1 ORDER BY id LIMIT 1",
                    &[&id],
                )
                .await
                .map(|row| row.get(0))
        };
        Ok(CatalogShape {
            min_id,
            max_id,
            mirror: mirror.get(0),
            mid_ms: ms_from((min_id + max_id) / 2).await?,
            newest_ms: ms_from(max_id).await?,
        })
    }
}

/// The eight scenarios, in the order they are reported.
pub fn scenarios(shape: &CatalogShape) -> Vec<Scenario> {
    let (min, max) = (shape.min_id, shape.max_id);
    let base = Scenario {
        name: "",
        flow_job_name: String::new(),
        level: "",
        page: 0,
        num_per_page: 50,
        before_id: -1,
        after_id: -1,
        from_ms: None,
        to_ms: None,
        message_contains: "",
    };
    vec![
        Scenario {
            name: "newest page of 50",
            ..base.clone()
        },
        Scenario {
            name: "level: error",
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "one mirror",
            flow_job_name: shape.mirror.clone(),
            ..base.clone()
        },
        Scenario {
            name: "one mirror, level: error",
            flow_job_name: shape.mirror.clone(),
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "deep cursor (oldest 1%)",
            before_id: min + (max - min) / 100,
            ..base.clone()
        },
        Scenario {
            name: "previous page (afterId mid-table)",
            after_id: (min + max) / 2,
            ..base.clone()
        },
        Scenario {
            name: "total only (numPerPage 0)",
            num_per_page: 0,
            ..base.clone()
        },
        Scenario {
            name: "deprecated page: 50",
            page: 50,
            ..base
        },
    ]
}

/// The benchmark's further requests, beyond the shared eight: broad
/// mirror filters with sparse and empty answers, and the filters beyond
/// PeerDB's. Their answers are compared with PeerDB's statements extended
/// by the same filters.
pub fn more_scenarios(shape: &CatalogShape) -> Vec<Scenario> {
    const DAY_MS: i64 = 86_400_000;
    let base = scenarios(shape).remove(0);
    let day = Scenario {
        from_ms: Some(shape.mid_ms - DAY_MS / 2),
        to_ms: Some(shape.mid_ms + DAY_MS / 2),
        ..base.clone()
    };
    vec![
        Scenario {
            name: "a quarter of the mirrors (`_cdc`), newest page",
            flow_job_name: "_cdc".into(),
            ..base.clone()
        },
        Scenario {
            name: "a quarter of the mirrors (`_cdc`), level: error",
            flow_job_name: "_cdc".into(),
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "healthy mirrors (`_to_bigquery`), level: error (none)",
            flow_job_name: "_to_bigquery".into(),
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "every mirror by substring (`_`), level: error",
            flow_job_name: "_".into(),
            level: "error",
            ..base.clone()
        },
        Scenario {
            name: "UI: level: warning, next page of 10",
            level: "warning",
            num_per_page: 10,
            before_id: (shape.min_id + shape.max_id) / 2,
            ..base.clone()
        },
        Scenario {
            name: "one day (mid-table)",
            ..day.clone()
        },
        // A dashboard's "last 24 hours", up to the newest row.
        Scenario {
            name: "the last day",
            from_ms: Some(shape.newest_ms + 1 - DAY_MS),
            to_ms: Some(shape.newest_ms + 1),
            ..base.clone()
        },
        Scenario {
            name: "one day, one mirror, level: error",
            flow_job_name: shape.mirror.clone(),
            level: "error",
            ..day
        },
        Scenario {
            name: "message contains `deadlock`",
            message_contains: "deadlock",
            ..base
        },
    ]
}
