//! Encoding the answer: the page of logs as JSON bytes, compressed when
//! the caller accepts it, within what Lambda can return. Pure, so every
//! rule here is tested without a database.

use std::io::Write;

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
/// Bodies smaller than this are sent as they are: compressing them saves
/// a few hundred bytes at most.
pub const MIN_COMPRESSED: usize = 1024;
/// Each further try at a compressed page that did not fit keeps rows worth
/// this share of what the last one's ratio says would fit.
const SHRINK: f64 = 0.9;

/// How a body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The coding to send for an `Accept-Encoding` value: brotli, then gzip,
    /// among those it accepts (a q-value of 0 refuses one; `*` accepts any).
    pub fn negotiate(accept_encoding: Option<&str>) -> Encoding {
        let accepts = |coding: &str| {
            accept_encoding.is_some_and(|value| {
                let mut verdict = None;
                for item in value.split(',') {
                    let mut parts = item.split(';').map(str::trim);
                    let name = parts.next().unwrap_or("");
                    let q = parts
                        .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                        .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
                    if name.eq_ignore_ascii_case(coding) {
                        return q > 0.0;
                    }
                    if name == "*" {
                        verdict = Some(q > 0.0);
                    }
                }
                verdict.unwrap_or(false)
            })
        };
        if accepts("br") {
            Encoding::Brotli
        } else if accepts("gzip") {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// Its `Content-Encoding` value.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }

    /// `json` in this coding, or as it is when it is small.
    pub fn apply(self, json: Vec<u8>) -> (Vec<u8>, Encoding) {
        if self == Encoding::Identity || json.len() < MIN_COMPRESSED {
            return (json, Encoding::Identity);
        }
        let compressed = match self {
            Encoding::Identity => unreachable!("returned above"),
            Encoding::Gzip => {
                // Level 5: close to 6's size at well under its time.
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
                gz.write_all(&json).and_then(|()| gz.finish())
            }
            Encoding::Brotli => {
                // Quality 5: brotli's fast end, still smaller than gzip.
                let mut br = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, 5, 22);
                br.write_all(&json)
                    .and_then(|()| br.flush())
                    .map(|()| br.into_inner())
            }
        };
        // Writing to memory cannot fail.
        (compressed.unwrap_or(json), self)
    }
}

/// An encoded page and what the log line should say about it.
#[derive(Debug)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub encoding: Encoding,
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

/// How a body's size counts toward Lambda's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// As text in the response envelope: a JSON string, so each `"` and
    /// `\` in the body gains a `\`.
    Envelope,
    /// As its own bytes, compressed afterwards (and then base64).
    Plain,
}

impl Measure {
    fn len(self, json: &[u8]) -> usize {
        match self {
            Measure::Envelope => wire_len(json),
            Measure::Plain => json.len(),
        }
    }

    /// Bytes one character of a message takes in the body, escaped by
    /// serde_json (and, for the envelope, escaped again).
    fn char_cost(self, c: char) -> usize {
        let json = match c {
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if c < ' ' => 6,
            c => c.len_utf8(),
        };
        match (self, c) {
            (Measure::Envelope, '"' | '\\') => 4,
            (Measure::Envelope, c) if c < ' ' => json + 1,
            _ => json,
        }
    }
}

/// Encodes `page` (rows newest first) in `encoding` within what Lambda can
/// return, counted as Lambda counts it: escaped in the envelope, or, once
/// compressed, as base64. Rows farthest from the cursor go first when it
/// must; a single message too large alone is cut with a visible marker.
pub fn encode_page(req: &LogsRequest, page: &LogsPage, encoding: Encoding) -> Encoded {
    encode_sent_within(req, page, encoding, BODY_BUDGET)
}

/// [`encode_page`] within `limit` bytes sent.
fn encode_sent_within(
    req: &LogsRequest,
    page: &LogsPage,
    encoding: Encoding,
    limit: usize,
) -> Encoded {
    if encoding == Encoding::Identity {
        return encode_within(req, page, limit, Measure::Envelope);
    }
    // Compressed size is only known once compressed: the whole page first,
    // then fewer rows, each try sized by the ratio of the last. Messages
    // that hardly compress gain nothing once base64 is counted: then the
    // page goes as it is, if that keeps more rows.
    let mut budget = usize::MAX;
    let compressed = loop {
        let plain = encode_within(req, page, budget, Measure::Plain);
        let plain_len = plain.body.len();
        let (body, used) = encoding.apply(plain.body);
        let sent = match used {
            Encoding::Identity => wire_len(&body),
            _ => body.len().div_ceil(3) * 4,
        };
        if sent <= limit {
            break Encoded {
                body,
                encoding: used,
                ..plain
            };
        }
        budget = (plain_len as f64 * SHRINK * limit as f64 / sent as f64) as usize;
    };
    if compressed.dropped == 0 && !compressed.cut {
        return compressed;
    }
    let identity = encode_within(req, page, limit, Measure::Envelope);
    if identity.rows > compressed.rows {
        identity
    } else {
        compressed
    }
}

/// Encodes `page` within `budget` bytes as `measure` counts them.
fn encode_within(req: &LogsRequest, page: &LogsPage, budget: usize, measure: Measure) -> Encoded {
    // Fixed part with the widest numbers it can hold.
    let frame = measure.len(
        br#"{"errors":[],"total":-9223372036854775808,"page":-9223372036854775808,"truncated":true}"#,
    );
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
        let cost = measure.len(&encoded) + separator;
        if cost > room {
            if !kept.is_empty() {
                break;
            }
            encoded = to_json(&WireRow {
                error_message: &cut_message(row, room, measure),
                ..WireRow::from(*row)
            });
            cut = true;
        }
        room = room.saturating_sub(measure.len(&encoded) + separator);
        kept.push(encoded);
    }
    let dropped = nearest_first.len() - kept.len();
    if let Cursor::After(_) = req.cursor {
        // Back to newest first.
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
        body,
        encoding: Encoding::Identity,
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
fn cut_message(row: &LogRow, room: usize, measure: Measure) -> String {
    let empty = measure.len(&to_json(&WireRow {
        error_message: "",
        ..WireRow::from(row)
    }));
    let total = row.error_message.len();
    // The marker's digits are bounded by the message's length.
    let marker_room = measure.len(&to_json(&cut_marker(total, total)));
    let mut left = room.saturating_sub(empty + marker_room);
    let mut end = 0;
    for (i, c) in row.error_message.char_indices() {
        let cost = measure.char_cost(c);
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

#[cfg(test)]
mod tests {
    use super::*;
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
            page,
            num_per_page,
            cursor,
            ..LogsRequest::default()
        }
    }

    fn ids_of(v: &Value) -> Vec<i64> {
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }

    fn json_of(e: &Encoded) -> Value {
        serde_json::from_slice(&e.body).unwrap()
    }

    #[test]
    fn the_documented_shape() {
        let page = LogsPage {
            rows: vec![row(702169, "boom")],
            total: 63,
            newer: 0,
        };
        let e = encode_page(&req(0, 2, Cursor::Newest), &page, Encoding::Identity);
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
            json_of(&encode_page(&r, p, Encoding::Identity))["page"].clone()
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
            Encoding::Identity,
        )
        .body;
        let envelope =
            serde_json::to_string(&json!({ "body": String::from_utf8(body.clone()).unwrap() }))
                .unwrap();
        assert_eq!(wire_len(&body), envelope.len() - r#"{"body":""}"#.len());
        let per_char: usize = message
            .chars()
            .map(|c| Measure::Envelope.char_cost(c))
            .sum();
        let escaped = serde_json::to_vec(message).unwrap();
        assert_eq!(wire_len(&escaped), per_char + 4);
        let plain: usize = message.chars().map(|c| Measure::Plain.char_cost(c)).sum();
        assert_eq!(escaped.len(), plain + 2);
    }

    fn decompress(e: &Encoded) -> Value {
        let mut json = Vec::new();
        match e.encoding {
            Encoding::Gzip => {
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&e.body[..]),
                    &mut json,
                )
                .unwrap();
            }
            Encoding::Brotli => {
                std::io::Read::read_to_end(
                    &mut brotli::Decompressor::new(&e.body[..], 4096),
                    &mut json,
                )
                .unwrap();
            }
            Encoding::Identity => json = e.body.clone(),
        }
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn the_coding_is_the_best_the_caller_accepts() {
        for (header, coding) in [
            (None, Encoding::Identity),
            (Some(""), Encoding::Identity),
            (Some("identity"), Encoding::Identity),
            (Some("gzip"), Encoding::Gzip),
            (Some("gzip, deflate"), Encoding::Gzip),
            (Some("GZIP;q=0.5"), Encoding::Gzip),
            (Some("gzip, deflate, br"), Encoding::Brotli),
            (Some("br;q=0, gzip"), Encoding::Gzip),
            (Some("gzip;q=0"), Encoding::Identity),
            (Some("*"), Encoding::Brotli),
            (Some("*;q=0, gzip"), Encoding::Gzip),
            (Some("deflate"), Encoding::Identity),
        ] {
            assert_eq!(Encoding::negotiate(header), coding, "{header:?}");
        }
    }

    #[test]
    fn small_bodies_are_sent_as_they_are() {
        let page = LogsPage {
            rows: vec![row(1, "short")],
            total: 1,
            newer: 0,
        };
        let e = encode_page(&req(0, 1, Cursor::Newest), &page, Encoding::Gzip);
        assert_eq!(e.encoding, Encoding::Identity);
        assert_eq!(decompress(&e)["errors"][0]["errorMessage"], "short");
    }

    #[test]
    fn a_compressed_page_decodes_to_the_same_answer() {
        let page = LogsPage {
            rows: (1..=200)
                .rev()
                .map(|id| row(id, &format!("synced {id} records, \"batch\" {id}")))
                .collect(),
            total: 500,
            newer: 0,
        };
        let plain = json_of(&encode_page(
            &req(0, 200, Cursor::Newest),
            &page,
            Encoding::Identity,
        ));
        for coding in [Encoding::Gzip, Encoding::Brotli] {
            let e = encode_page(&req(0, 200, Cursor::Newest), &page, coding);
            assert_eq!(e.encoding, coding);
            assert!(
                e.body.len() * 5 < plain.to_string().len(),
                "{coding:?}: {}",
                e.body.len()
            );
            assert_eq!(decompress(&e), plain, "{coding:?}");
        }
    }

    /// `n` pseudo-random digits of `base` (up to 64), the same for a seed.
    fn noise(seed: i64, n: usize, base: u64) -> String {
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed as u64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(DIGITS[(state % base) as usize])
            })
            .collect()
    }

    #[test]
    fn messages_that_hardly_compress_keep_as_many_rows_as_sent_plain() {
        let page = LogsPage {
            rows: (1..=100)
                .rev()
                .map(|id| row(id, &noise(id, 20_000, 64)))
                .collect(),
            total: 100,
            newer: 0,
        };
        let (r, limit) = (req(0, 100, Cursor::Newest), 600_000);
        let plain = encode_sent_within(&r, &page, Encoding::Identity, limit);
        for coding in [Encoding::Gzip, Encoding::Brotli] {
            let e = encode_sent_within(&r, &page, coding, limit);
            assert!(
                e.rows >= plain.rows,
                "{coding:?}: {} rows against {}",
                e.rows,
                plain.rows
            );
            assert_eq!(decompress(&e)["truncated"], true);
        }
    }

    #[test]
    fn compressed_a_page_keeps_more_rows_within_what_lambda_returns() {
        // Messages of pseudo-random hex digits (they compress to about half),
        // 20 kB each, 100 of them: 2 MB against a 600 kB limit.
        let page = LogsPage {
            rows: (1..=100)
                .rev()
                .map(|id| row(id, &noise(id, 20_000, 16)))
                .collect(),
            total: 100,
            newer: 0,
        };
        let (r, limit) = (req(0, 100, Cursor::Newest), 600_000);
        let plain = encode_sent_within(&r, &page, Encoding::Identity, limit);
        assert!(wire_len(&plain.body) <= limit);
        for coding in [Encoding::Gzip, Encoding::Brotli] {
            let e = encode_sent_within(&r, &page, coding, limit);
            assert_eq!(e.encoding, coding);
            // As Lambda counts it: base64 in the envelope.
            assert!(e.body.len().div_ceil(3) * 4 <= limit, "{coding:?}");
            assert!(
                e.rows > plain.rows,
                "{coding:?}: {} rows against {}",
                e.rows,
                plain.rows
            );
            let v = decompress(&e);
            assert_eq!(v["truncated"], true);
            assert_eq!(
                ids_of(&v),
                (100 - e.rows as i64 + 1..=100).rev().collect::<Vec<_>>()
            );
        }
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

        let before = encode_within(
            &req(0, 10, Cursor::Newest),
            &page,
            budget,
            Measure::Envelope,
        );
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
        assert!(wire_len(&before.body) <= budget);
        assert_eq!(before.dropped, 10 - ids.len());

        let after = encode_within(
            &req(0, 10, Cursor::After(0)),
            &page,
            budget,
            Measure::Envelope,
        );
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
        let e = encode_within(
            &req(0, 10, Cursor::Newest),
            &page,
            budget,
            Measure::Envelope,
        );
        assert!(wire_len(&e.body) <= budget);
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
