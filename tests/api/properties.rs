//! Random catalogs and random requests, answered by a plain in-memory model
//! written from the spec's text and by the function on a real Postgres,
//! compared row for row. `PROPTEST_CASES` sets the number of catalogs.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::helpers::*;

/// Catalogs tried when `PROPTEST_CASES` is not set; each gets up to 12
/// requests. About ten seconds.
const CASES: u32 = 64;
const MAX_PAGE_SIZE: i64 = 1000;
/// `TestCatalog::insert`'s timestamps: 2025-06-03 17:35:00 UTC plus
/// `id % 1000000` seconds.
const EPOCH_MS: i64 = 1_748_972_100_000;

/// Mirror names and filters share one small alphabet, so that substrings
/// match often; `%`, `_` and `\` are ordinary characters, `A` is not `a`.
const NAME_CHARS: &[char] = &['a', 'b', 'A', '%', '_', '\\'];
const MESSAGE_CHARS: &[char] = &['x', '"', '\\', '\n', '\t', '\u{7}', 'é', '\u{1F600}'];
const LEVELS: &[&str] = &[
    "", "all", "ALL", "info", "INFO", "Info", "warn", "WARN", "warning", "WARNING", "error",
    "eRRoR",
];
const BAD_LEVELS: &[&str] = &["debug", "warnings", " info"];

#[derive(Debug, Clone)]
struct Row {
    flow: String,
    kind: &'static str,
    message: String,
}

/// A request, and how it is sent: bit i of each mask is about field i of
/// `FIELDS`: its snake_case spelling, `null` rather than left out when
/// `None`, an integer as a string.
#[derive(Debug, Clone)]
struct Req {
    flow: Option<String>,
    level: Option<&'static str>,
    page: Option<i64>,
    num_per_page: Option<i64>,
    before_id: Option<i64>,
    after_id: Option<i64>,
    snake: u8,
    nulls: u8,
    quoted: u8,
}

/// Ids near 1, either side of 2^31 and 2^32, and at the top of BIGINT.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![
        1i64..40,
        (1i64 << 31) - 3..(1i64 << 31) + 3,
        (1i64 << 32) - 2..(1i64 << 32) + 2,
        i64::MAX - 3..=i64::MAX,
    ]
}

fn text(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(select(chars), len).prop_map(|c| c.into_iter().collect())
}

fn rows() -> impl Strategy<Value = BTreeMap<i64, Row>> {
    let row = (
        text(NAME_CHARS, 1..4),
        select(&["info", "warn", "error"][..]),
        text(MESSAGE_CHARS, 0..6),
    )
        .prop_map(|(flow, kind, message)| Row {
            flow,
            kind,
            message,
        });
    btree_map(id(), row, 0..30)
}

fn request() -> impl Strategy<Value = Req> {
    // Mostly valid requests; each field is now and then a 400.
    let cursor = prop_oneof![
        4 => Just(-1i64),
        4 => Just(0),
        12 => id(),
        1 => Just(-2),
        1 => Just(i64::MIN),
    ];
    (
        option::of(text(NAME_CHARS, 0..3)),
        option::of(prop_oneof![20 => select(LEVELS), 1 => select(BAD_LEVELS)]),
        option::of(prop_oneof![
            12 => Just(0i64),
            6 => 1i64..4,
            1 => Just(i64::MAX),
            1 => Just(-1),
        ]),
        option::weighted(
            0.9,
            prop_oneof![
                2 => Just(0i64),
                16 => 1i64..6,
                1 => Just(MAX_PAGE_SIZE),
                1 => Just(MAX_PAGE_SIZE + 1),
                1 => Just(-1),
            ],
        ),
        option::of(cursor.clone()),
        option::of(cursor),
        any::<(u8, u8, u8)>(),
    )
        .prop_map(
            |(flow, level, page, num_per_page, before_id, after_id, (snake, nulls, quoted))| Req {
                flow,
                level,
                page,
                num_per_page,
                before_id,
                after_id,
                snake,
                nulls,
                quoted,
            },
        )
}

/// Each field's two spellings, in the order of the bits of `Req`'s masks.
const FIELDS: [(&str, &str); 6] = [
    ("flowJobName", "flow_job_name"),
    ("level", "level"),
    ("page", "page"),
    ("numPerPage", "num_per_page"),
    ("beforeId", "before_id"),
    ("afterId", "after_id"),
];

impl Req {
    fn body(&self) -> Value {
        let bit = |mask: u8, i: usize| mask >> i & 1 == 1;
        let int = |i: usize, n: Option<i64>| {
            n.map(|n| {
                if bit(self.quoted, i) {
                    json!(n.to_string())
                } else {
                    json!(n)
                }
            })
        };
        let values = [
            self.flow.clone().map(Value::from),
            self.level.map(Value::from),
            int(2, self.page),
            int(3, self.num_per_page),
            int(4, self.before_id),
            int(5, self.after_id),
        ];
        let mut body = Map::new();
        for (i, ((camel, snake), value)) in FIELDS.into_iter().zip(values).enumerate() {
            let key = if bit(self.snake, i) { snake } else { camel };
            match value {
                Some(value) => {
                    body.insert(key.into(), value);
                }
                None if bit(self.nulls, i) => {
                    body.insert(key.into(), Value::Null);
                }
                None => {}
            }
        }
        Value::Object(body)
    }
}

/// The spec's rules, read off its text: the body a caller gets, or `None`
/// for a 400.
fn model(rows: &BTreeMap<i64, Row>, req: &Req) -> Option<Value> {
    let flow = req.flow.clone().unwrap_or_default();
    let kind = match req.level.unwrap_or("").to_lowercase().as_str() {
        "" | "all" => None,
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" => Some("error"),
        _ => return None,
    };
    let page = req.page.unwrap_or(0);
    let per_page = req.num_per_page.unwrap_or(0);
    let before = req.before_id.unwrap_or(0);
    let after = req.after_id.unwrap_or(0);
    if page < 0 || !(0..=MAX_PAGE_SIZE).contains(&per_page) || before < -1 || after < -1 {
        return None;
    }

    // Newest first.
    let matching: Vec<(i64, &Row)> = rows
        .iter()
        .rev()
        .filter(|(_, r)| r.flow.contains(&flow) && kind.is_none_or(|k| r.kind == k))
        .map(|(id, r)| (*id, r))
        .collect();
    // Nearest to the cursor first.
    let candidates: Vec<(i64, &Row)> = if before > 0 {
        matching
            .iter()
            .filter(|(id, _)| *id < before)
            .copied()
            .collect()
    } else if after > 0 || (after == 0 && before == -1) {
        matching
            .iter()
            .rev()
            .filter(|(id, _)| *id > after)
            .copied()
            .collect()
    } else {
        matching.clone()
    };
    let skip = if page > 0 {
        (page - 1).saturating_mul(per_page)
    } else {
        0
    };
    let mut returned: Vec<(i64, &Row)> = candidates
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(per_page as usize)
        .collect();
    returned.sort_by_key(|(id, _)| Reverse(*id));

    let page = if page > 0 {
        page
    } else if per_page == 0 {
        0
    } else if let Some((first, _)) = returned.first() {
        let newer = matching.iter().filter(|(id, _)| id > first).count() as i64;
        newer / per_page + 1
    } else {
        1
    };
    let errors: Vec<Value> = returned
        .iter()
        .map(|(id, r)| {
            json!({"flowName": r.flow, "errorMessage": r.message, "errorType": r.kind,
                   "errorTimestamp": EPOCH_MS + id % 1_000_000 * 1000, "id": id})
        })
        .collect();
    Some(json!({"errors": errors, "total": matching.len(), "page": page}))
}

#[test]
fn the_function_answers_as_a_model_of_the_spec_does() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let catalog = runtime.block_on(TestCatalog::new());
    let app = runtime.block_on(catalog.app(&[]));
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&(rows(), vec(request(), 1..12)), |(rows, requests)| {
        runtime.block_on(async {
            catalog
                .admin
                .batch_execute("TRUNCATE peerdb_stats.flow_errors")
                .await
                .unwrap();
            let inserted: Vec<(i64, &str, &str, &str)> = rows
                .iter()
                .map(|(id, r)| (*id, r.flow.as_str(), r.kind, r.message.as_str()))
                .collect();
            catalog.insert(&inserted).await;
            for req in &requests {
                let body = req.body();
                let reply = send(&app, Call::logs(body.clone())).await;
                match model(&rows, req) {
                    Some(expected) => {
                        prop_assert_eq!(reply.status, 200, "{} -> {}", body, reply.json);
                        prop_assert_eq!(&reply.json, &expected, "{}", body);
                    }
                    None => {
                        prop_assert_eq!(reply.status, 400, "{} -> {}", body, reply.json);
                    }
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
