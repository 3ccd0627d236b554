//! Encoding the answer: the page of logs, or an error, as JSON bytes.
//! Pure, so every rule here is tested without a database.

use serde::Serialize;

use crate::catalog::{LogRow, LogsPage};
use crate::request::{Cursor, LogsRequest};

/// What Lambda may return from a synchronous invocation.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;
/// Room left for the rest of the Lambda response around the body
/// (status, headers, the envelope's own keys).
const ENVELOPE_ALLOWANCE: usize = 16 * 1024;
/// The body's size bound, counted as it travels inside the envelope.
pub const BODY_BUDGET: usize = LAMBDA_RESPONSE_LIMIT - ENVELOPE_ALLOWANCE;

/// An encoded page and what the log line should say about it.
#[derive(Debug)]
pub struct Encoded {
    pub body: String,
    pub rows: usize,
    pub total: i64,
    /// Rows left out to stay under the budget.
    pub dropped: usize,
    /// Messages cut because one alone was over the budget.
    pub cut: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRow<'a> {
    flow_name: &'a str,
    error_message: &'a str,
    error_type: &'a str,
    error_timestamp: i64,
    id: i64,
}

impl<'a> From<&'a LogRow> for WireRow<'a> {
    fn from(row: &'a LogRow) -> Self {
        WireRow {
            flow_name: &row.flow_name,
            error_message: &row.error_message,
            error_type: &row.error_type,
            error_timestamp: row.error_ms,
            id: row.id,
        }
    }
}

/// Encodes `page` (rows newest first) within `budget` bytes as counted by
/// [`wire_len`]. Rows farthest from the cursor go first when it must; a
/// single message too large alone is cut with a visible marker.
pub fn encode_page(req: &LogsRequest, page: &LogsPage, budget: usize) -> Encoded {
    // Fixed part with the widest numbers it can hold.
    let frame = wire_len(br#"{"errors":[],"total":-9223372036854775808,"page":-9223372036854775808,"truncated":true}"#);
    let mut room = budget.saturating_sub(frame);

    // Nearest to the cursor first: that is the order in which rows are kept.
    let nearest_first: Vec<&LogRow> = match req.cursor {
        Cursor::After(_) => page.rows.iter().rev().collect(),
        Cursor::Newest | Cursor::Before(_) => page.rows.iter().collect(),
    };
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(nearest_first.len());
    let mut cut = false;
    for row in &nearest_first {
        let mut encoded = to_json(&WireRow::from(*row));
        let separator = usize::from(!kept.is_empty());
        let cost = wire_len(&encoded) + separator;
        if cost > room {
            if !kept.is_empty() {
                break;
            }
            encoded = to_json(&WireRow {
                error_message: &cut_message(row, room),
                ..WireRow::from(*row)
            });
            cut = true;
        }
        room = room.saturating_sub(wire_len(&encoded) + separator);
        kept.push(encoded);
    }
    let dropped = nearest_first.len() - kept.len();
    if matches!(req.cursor, Cursor::Newest | Cursor::Before(_)) {
        // Back to newest first.
    } else {
        kept.reverse();
    }
    // Dropping the newest rows of an `afterId` page makes them "newer".
    let newer = match req.cursor {
        Cursor::After(_) => page.newer + dropped as i64,
        _ => page.newer,
    };

    let mut body = Vec::with_capacity(kept.iter().map(Vec::len).sum::<usize>() + 96);
    body.extend_from_slice(br#"{"errors":["#);
    for (i, row) in kept.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(row);
    }
    let page_number = page_number(req, kept.len(), newer);
    body.extend_from_slice(format!(r#"],"total":{},"page":{page_number}"#, page.total).as_bytes());
    if dropped > 0 || cut {
        body.extend_from_slice(br#","truncated":true"#);
    }
    body.push(b'}');
    Encoded {
        // serde_json writes UTF-8 and the rest is ASCII.
        body: String::from_utf8(body).expect("JSON is UTF-8"),
        rows: kept.len(),
        total: page.total,
        dropped,
        cut,
    }
}

/// The spec's `page`: the request's own when given; 0 for a count-only
/// request; else which page of `numPerPage` the first row returned is on.
fn page_number(req: &LogsRequest, rows: usize, newer: i64) -> i64 {
    if req.page > 0 {
        req.page
    } else if req.num_per_page == 0 {
        0
    } else if rows == 0 {
        1
    } else {
        newer / req.num_per_page + 1
    }
}

/// The message of `row` cut so that the whole row fits in `room`.
fn cut_message(row: &LogRow, room: usize) -> String {
    let empty = wire_len(&to_json(&WireRow {
        error_message: "",
        ..WireRow::from(row)
    }));
    let total = row.error_message.len();
    // The marker's digits are bounded by the message's length.
    let marker_room = wire_len(&to_json(&cut_marker(total, total)));
    let mut left = room.saturating_sub(empty + marker_room);
    let mut end = 0;
    for (i, c) in row.error_message.char_indices() {
        let cost = wire_cost(c);
        if cost > left {
            break;
        }
        left -= cost;
        end = i + c.len_utf8();
    }
    format!("{}{}", &row.error_message[..end], cut_marker(end, total))
}

fn cut_marker(shown: usize, total: usize) -> String {
    format!("\n[... message cut: {shown} of {total} bytes shown, the response size limit]")
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs serialize")
}

/// Bytes that `json` takes once the Lambda runtime embeds it as a JSON
/// string in its response envelope (each `"` and `\` gains a `\`).
pub fn wire_len(json: &[u8]) -> usize {
    json.len() + json.iter().filter(|&&b| b == b'"' || b == b'\\').count()
}

/// Bytes that one character of a message takes on the wire: escaped by
/// serde_json, then escaped again by the envelope. Agrees with `wire_len`.
fn wire_cost(c: char) -> usize {
    match c {
        '"' | '\\' => 4,
        '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 3,
        c if c < ' ' => 7,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Level;
    use serde_json::{json, Value};

    fn row(id: i64, message: &str) -> LogRow {
        LogRow {
            id,
            flow_name: "m1".into(),
            error_message: message.into(),
            error_type: "error".into(),
            error_ms: 1_748_972_135_285,
        }
    }

    fn req(page: i64, num_per_page: i64, cursor: Cursor) -> LogsRequest {
        LogsRequest {
            flow_job_name: String::new(),
            level: Level::All,
            page,
            num_per_page,
            cursor,
        }
    }

    fn json_of(e: &Encoded) -> Value {
        serde_json::from_str(&e.body).unwrap()
    }

    #[test]
    fn the_documented_shape() {
        let page = LogsPage {
            rows: vec![row(702169, "boom")],
            total: 63,
            newer: 0,
        };
        let e = encode_page(&req(0, 2, Cursor::Newest), &page, BODY_BUDGET);
        assert_eq!(
            json_of(&e),
            json!({"errors":[{"flowName":"m1","errorMessage":"boom","errorType":"error",
                              "errorTimestamp":1748972135285_i64,"id":702169}],"total":63,"page":1})
        );
    }

    #[test]
    fn page_number_rules() {
        let rows = LogsPage {
            rows: vec![row(5, "a")],
            total: 100,
            newer: 45,
        };
        let empty = LogsPage {
            rows: vec![],
            total: 100,
            newer: 0,
        };
        let page = |r: LogsRequest, p: &LogsPage| {
            json_of(&encode_page(&r, p, BODY_BUDGET))["page"].clone()
        };
        assert_eq!(page(req(7, 10, Cursor::Newest), &rows), 7);
        assert_eq!(page(req(0, 0, Cursor::Newest), &empty), 0);
        assert_eq!(page(req(0, 10, Cursor::Newest), &empty), 1);
        assert_eq!(page(req(0, 10, Cursor::Before(50)), &rows), 45 / 10 + 1);
        assert_eq!(page(req(0, 50, Cursor::Before(50)), &rows), 1);
    }

    #[test]
    fn wire_len_agrees_with_a_real_envelope() {
        let message = "quote \" backslash \\ newline \n tab \t bell \u{7} snowman \u{2603}";
        let body = encode_page(
            &req(0, 1, Cursor::Newest),
            &LogsPage {
                rows: vec![row(1, message)],
                total: 1,
                newer: 0,
            },
            BODY_BUDGET,
        )
        .body;
        let envelope = serde_json::to_string(&json!({ "body": body })).unwrap();
        assert_eq!(
            wire_len(body.as_bytes()),
            envelope.len() - r#"{"body":""}"#.len()
        );
        let per_char: usize = message.chars().map(wire_cost).sum();
        let escaped = serde_json::to_vec(message).unwrap();
        assert_eq!(wire_len(&escaped), per_char + 4);
    }

    #[test]
    fn over_budget_drops_rows_farthest_from_the_cursor() {
        let rows: Vec<LogRow> = (1..=10)
            .rev()
            .map(|id| row(id, &"x".repeat(1000)))
            .collect();
        let page = LogsPage {
            rows,
            total: 10,
            newer: 0,
        };
        let budget = 4 * 1100;

        let before = encode_page(&req(0, 10, Cursor::Newest), &page, budget);
        let ids: Vec<i64> = json_of(&before)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert!(ids.len() < 10 && !ids.is_empty());
        assert_eq!(
            ids,
            (10 - ids.len() as i64 + 1..=10).rev().collect::<Vec<_>>(),
            "newest kept"
        );
        assert_eq!(json_of(&before)["truncated"], true);
        assert!(wire_len(before.body.as_bytes()) <= budget);
        assert_eq!(before.dropped, 10 - ids.len());

        let after = encode_page(&req(0, 10, Cursor::After(0)), &page, budget);
        let v = json_of(&after);
        let ids: Vec<i64> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ids,
            (1..=ids.len() as i64).rev().collect::<Vec<_>>(),
            "oldest kept, newest first"
        );
        // The dropped rows are newer than the first one shown.
        assert_eq!(v["page"], (10 - ids.len() as i64) / 10 + 1);
    }

    #[test]
    fn one_message_too_large_alone_is_cut_with_a_marker() {
        let big = "\"é\n".repeat(100_000);
        let page = LogsPage {
            rows: vec![row(1, &big), row(0, "small")],
            total: 2,
            newer: 0,
        };
        let budget = 50_000;
        let e = encode_page(&req(0, 10, Cursor::Newest), &page, budget);
        assert!(wire_len(e.body.as_bytes()) <= budget);
        assert!(e.cut && e.rows == 1);
        let v = json_of(&e);
        let message = v["errors"][0]["errorMessage"].as_str().unwrap();
        assert!(message.starts_with("\"é\n\"é\n"));
        assert!(message.ends_with(&format!(
            "of {} bytes shown, the response size limit]",
            big.len()
        )));
        assert!(message.len() > 10_000, "uses the room it has");
        assert_eq!(v["truncated"], true);
    }
}
