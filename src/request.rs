//! Decoding the request body the way PeerDB's gateway (protobuf JSON)
//! does, then checking it against the spec's rules. No I/O here.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A valid request, ready to be turned into a query. Its default is what
/// an empty body asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Substring of `flow_name`; empty matches every mirror.
    pub flow_job_name: String,
    pub level: Level,
    /// Deprecated page number; 0 means "not given".
    pub page: i64,
    pub num_per_page: i64,
    pub cursor: Cursor,
    /// Beyond PeerDB: rows with `errorTimestamp` (ms since the epoch) at
    /// or after this...
    pub from_ms: Option<i64>,
    /// ...and before this.
    pub to_ms: Option<i64>,
    /// Beyond PeerDB: a substring of `error_message`; empty matches all.
    pub message_contains: String,
}

/// The widest timestamps the filters bind, in ms since the epoch: inside
/// what Postgres's `timestamp` holds (4713 BC to 294276 AD) and what its
/// intervals can add to the epoch. A bound past them bounds nothing.
pub const EARLIEST_MS: i64 = -210_000_000_000_000;
pub const LATEST_MS: i64 = 9_000_000_000_000_000;

impl LogsRequest {
    /// Whether a filter other than the mirror's narrows the rows.
    pub fn narrows_rows(&self) -> bool {
        self.level != Level::All || self.filters_by_content()
    }

    /// Whether the rows are narrowed by what they hold beyond their mirror
    /// and level: a time range or a message substring.
    pub fn filters_by_content(&self) -> bool {
        self.from_ms.is_some() || self.to_ms.is_some() || !self.message_contains.is_empty()
    }
}

/// The `error_type` filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Level {
    #[default]
    All,
    Info,
    Warn,
    Error,
}

impl Level {
    /// The value stored in `error_type`, or `None` for every type.
    pub fn error_type(self) -> Option<&'static str> {
        match self {
            Level::All => None,
            Level::Info => Some("info"),
            Level::Warn => Some("warn"),
            Level::Error => Some("error"),
        }
    }

    fn parse(level: &str) -> Option<Level> {
        match level.to_ascii_lowercase().as_str() {
            "" | "all" => Some(Level::All),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// Where the page starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cursor {
    /// The newest rows.
    #[default]
    Newest,
    /// Rows with `id < before`, nearest first.
    Before(i64),
    /// Rows with `id > after`, nearest first.
    After(i64),
}

impl Cursor {
    /// The spec's rule: `beforeId` wins when positive; `afterId` is in
    /// effect when positive, or when 0 with `beforeId` exactly -1 (the
    /// reference's "first page from the oldest end"); -1 means "not set".
    fn from_ids(before_id: i64, after_id: i64) -> Cursor {
        if before_id > 0 {
            Cursor::Before(before_id)
        } else if after_id > 0 || (after_id == 0 && before_id == -1) {
            Cursor::After(after_id)
        } else {
            Cursor::Newest
        }
    }
}

/// The fields as sent, each under whichever spelling the caller used.
/// Kept in order, duplicates included, so that they can be refused. Values
/// stay JSON text, so that numbers are read exactly.
struct Fields(Vec<(Field, String, Box<RawValue>)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    FlowJobName,
    Level,
    Page,
    NumPerPage,
    BeforeId,
    AfterId,
    FromTimestamp,
    ToTimestamp,
    MessageContains,
}

impl Field {
    fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "flowJobName" | "flow_job_name" => Field::FlowJobName,
            "level" => Field::Level,
            "page" => Field::Page,
            "numPerPage" | "num_per_page" => Field::NumPerPage,
            "beforeId" | "before_id" => Field::BeforeId,
            "afterId" | "after_id" => Field::AfterId,
            "fromTimestamp" | "from_timestamp" => Field::FromTimestamp,
            "toTimestamp" | "to_timestamp" => Field::ToTimestamp,
            "messageContains" | "message_contains" => Field::MessageContains,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match Field::from_key(&key) {
                        Some(field) => fields.push((field, key, map.next_value()?)),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Decodes and validates a body. `max_page_size` bounds `numPerPage`.
pub fn decode(body: &[u8], max_page_size: i64) -> Result<LogsRequest, ApiError> {
    // JSON's white space only: a form feed is not empty, but not JSON.
    let fields = if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        Fields(Vec::new())
    } else {
        serde_json::from_slice::<Fields>(body).map_err(|e| {
            let what = if e.is_data() {
                "must be a JSON object"
            } else {
                "is not valid JSON"
            };
            ApiError::bad_request(format!("request body {what}: {e}"))
        })?
    };

    let mut seen: Vec<(Field, &str)> = Vec::new();
    let mut flow_job_name = String::new();
    let mut level = String::new();
    let mut message_contains = String::new();
    let (mut page, mut num_per_page, mut before_id, mut after_id) = (0, 0, 0, 0);
    let (mut from_ms, mut to_ms) = (None, None);
    for (field, key, value) in &fields.0 {
        if let Some((_, first)) = seen.iter().find(|(f, _)| f == field) {
            return Err(ApiError::bad_request(if first == key {
                format!("{key} is given more than once")
            } else {
                format!("{first} and {key} are the same field; give only one")
            }));
        }
        seen.push((*field, key));
        match field {
            Field::FlowJobName => flow_job_name = string(key, value)?,
            Field::Level => level = string(key, value)?,
            Field::Page => page = integer(key, value)?,
            Field::NumPerPage => num_per_page = integer(key, value)?,
            Field::BeforeId => before_id = integer(key, value)?,
            Field::AfterId => after_id = integer(key, value)?,
            // `null` is the default: no bound.
            Field::FromTimestamp => from_ms = optional_integer(key, value)?,
            Field::ToTimestamp => to_ms = optional_integer(key, value)?,
            Field::MessageContains => message_contains = string(key, value)?,
        }
    }

    let name = |field: Field, camel: &'static str| -> String {
        seen.iter()
            .find(|(f, _)| *f == field)
            .map_or(camel, |(_, k)| k)
            .to_string()
    };
    for (field, camel, text) in [
        (Field::FlowJobName, "flowJobName", &flow_job_name),
        (Field::MessageContains, "messageContains", &message_contains),
    ] {
        if text.contains('\0') {
            // Postgres text cannot hold NUL, so no name or message does.
            return Err(ApiError::bad_request(format!(
                "{} must not contain NUL characters",
                name(field, camel)
            )));
        }
    }
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if to < from {
            return Err(ApiError::bad_request(format!(
                "{} must not be below {}",
                name(Field::ToTimestamp, "toTimestamp"),
                name(Field::FromTimestamp, "fromTimestamp")
            )));
        }
    }
    let level = Level::parse(&level).ok_or_else(|| {
        ApiError::bad_request("level must be one of ALL, INFO, WARN (or WARNING), ERROR, or empty")
    })?;
    if page < 0 {
        return Err(ApiError::bad_request("page must not be negative"));
    }
    if num_per_page < 0 {
        return Err(ApiError::bad_request(format!(
            "{} must not be negative",
            name(Field::NumPerPage, "numPerPage")
        )));
    }
    if num_per_page > max_page_size {
        return Err(ApiError::bad_request(format!(
            "{} must be at most {max_page_size}",
            name(Field::NumPerPage, "numPerPage")
        )));
    }
    for (field, camel, id) in [
        (Field::BeforeId, "beforeId", before_id),
        (Field::AfterId, "afterId", after_id),
    ] {
        if id < -1 {
            return Err(ApiError::bad_request(format!(
                "{} must be -1 (not set), 0 or a log id",
                name(field, camel)
            )));
        }
    }

    Ok(LogsRequest {
        flow_job_name,
        level,
        page,
        num_per_page,
        cursor: Cursor::from_ids(before_id, after_id),
        from_ms: from_ms
            .filter(|&ms| ms > EARLIEST_MS)
            .map(|ms| ms.min(LATEST_MS)),
        to_ms: to_ms
            .filter(|&ms| ms < LATEST_MS)
            .map(|ms| ms.max(EARLIEST_MS)),
        message_contains,
    })
}

/// An integer field whose absence (or `null`) means "not given".
fn optional_integer(key: &str, value: &RawValue) -> Result<Option<i64>, ApiError> {
    if value.get() == "null" {
        Ok(None)
    } else {
        integer(key, value).map(Some)
    }
}

fn string(key: &str, value: &RawValue) -> Result<String, ApiError> {
    serde_json::from_str::<Option<String>>(value.get())
        .map(Option::unwrap_or_default)
        .map_err(|_| ApiError::bad_request(format!("{key} must be a string")))
}

/// Protobuf JSON integers: a number with an integral value (`5`, `5.0`,
/// `5e0`) or a string holding one (`"5"`); `null` is the default, 0.
fn integer(key: &str, value: &RawValue) -> Result<i64, ApiError> {
    let parsed = match serde_json::from_str::<Option<String>>(value.get()) {
        Ok(None) => Some(0),
        // Protobuf JSON takes no white space around a quoted number.
        Ok(Some(s)) if s.trim() != s => None,
        Ok(Some(s)) => s.parse::<i64>().ok().or_else(|| whole_number(&s)),
        // Not a string: a number, or a value that is no number at all.
        Err(_) => whole_number(value.get()),
    };
    parsed.ok_or_else(|| {
        ApiError::bad_request(format!("{key} must be an integer (a 64-bit whole number)"))
    })
}

/// The value of a JSON number (`-12.50e1`) when it is a whole number in
/// `i64`'s range, computed exactly: through a float, `9007199254740993.0`
/// would be read as another id and `0.99999999999999999999` as 1.
fn whole_number(number: &str) -> Option<i64> {
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(unsigned) => (true, unsigned),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (int, fraction) = match mantissa.split_once('.') {
        Some((int, fraction)) => (int, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_json_number = digits(int)
        && (int == "0" || !int.starts_with('0'))
        && fraction.is_none_or(digits)
        && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if !is_json_number {
        return None;
    }
    // The value is `significant` (leading zeros dropped) times 10^`shift`.
    let fraction = fraction.unwrap_or("");
    let all_digits = format!("{int}{fraction}");
    let significant = all_digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    let trimmed = significant.trim_end_matches('0');
    // A non-zero value with an exponent past i64 is out of range or not whole.
    let exponent: i64 = exponent.map_or(Some(0), |e| e.parse().ok())?;
    let shift = exponent
        .checked_sub(fraction.len() as i64)?
        .checked_add((significant.len() - trimmed.len()) as i64)?;
    // Digits left after the point: not whole. Past 19 digits: not an i64.
    if shift < 0 || shift > 19 - trimmed.len() as i64 {
        return None;
    }
    let magnitude = trimmed.parse::<i128>().ok()? * 10i128.pow(shift as u32);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> LogsRequest {
        decode(body.as_bytes(), 1000).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn bad(body: &[u8]) -> String {
        match decode(body, 1000) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn empty_body_means_all_defaults() {
        for body in ["", "  \n\t", "{}"] {
            assert_eq!(ok(body), LogsRequest::default());
        }
    }

    #[test]
    fn both_spellings_are_read() {
        let camel = ok(
            r#"{"flowJobName":"m1","numPerPage":5,"beforeId":9,"afterId":2,"page":3,"level":"info"}"#,
        );
        let snake = ok(
            r#"{"flow_job_name":"m1","num_per_page":5,"before_id":9,"after_id":2,"page":3,"level":"info"}"#,
        );
        assert_eq!(camel, snake);
        assert_eq!(camel.flow_job_name, "m1");
        assert_eq!(camel.num_per_page, 5);
        assert_eq!(camel.page, 3);
        assert_eq!(camel.cursor, Cursor::Before(9));
    }

    #[test]
    fn a_field_in_both_spellings_or_twice_is_refused() {
        assert!(
            bad(br#"{"numPerPage":1,"num_per_page":1}"#).contains("numPerPage and num_per_page")
        );
        assert!(bad(br#"{"page":1,"page":2}"#).contains("page is given more than once"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_is_the_default() {
        let r = ok(
            r#"{"foo":{"bar":[1,2]},"flowJobName":null,"page":null,"level":null,"numPerPage":2}"#,
        );
        assert_eq!(
            (r.flow_job_name.as_str(), r.page, r.level, r.num_per_page),
            ("", 0, Level::All, 2)
        );
    }

    #[test]
    fn integers_in_every_protobuf_json_form() {
        for v in ["5", "5.0", "5e0", "\"5\"", "0.5e1", "\"5e0\""] {
            assert_eq!(
                ok(&format!(r#"{{"numPerPage":{v}}}"#)).num_per_page,
                5,
                "{v}"
            );
        }
        for v in [
            "5.5",
            "\"abc\"",
            "true",
            "[5]",
            "{}",
            "\"\"",
            "\" 5\"",
            "\"1e400\"",
            "1e19",
        ] {
            assert!(
                bad(format!(r#"{{"numPerPage":{v}}}"#).as_bytes())
                    .contains("numPerPage must be an integer"),
                "{v}"
            );
        }
    }

    #[test]
    fn ids_use_the_full_64_bit_range() {
        let r = ok(r#"{"beforeId":"9223372036854775807"}"#);
        assert_eq!(r.cursor, Cursor::Before(i64::MAX));
        let r = ok(r#"{"afterId":4294967296}"#);
        assert_eq!(r.cursor, Cursor::After(4294967296));
        assert!(bad(br#"{"beforeId":9223372036854775808}"#).contains("beforeId must be an integer"));
    }

    #[test]
    fn cursor_rules() {
        let cursor = |b: i64, a: i64| ok(&format!(r#"{{"beforeId":{b},"afterId":{a}}}"#)).cursor;
        assert_eq!(cursor(0, 0), Cursor::Newest);
        assert_eq!(cursor(-1, -1), Cursor::Newest);
        assert_eq!(cursor(0, -1), Cursor::Newest);
        assert_eq!(cursor(10, 5), Cursor::Before(10));
        assert_eq!(cursor(10, -1), Cursor::Before(10));
        assert_eq!(cursor(-1, 5), Cursor::After(5));
        assert_eq!(cursor(-1, 0), Cursor::After(0));
        // (fix) afterId alone works; the reference answers nothing.
        assert_eq!(cursor(0, 5), Cursor::After(5));
        assert!(bad(br#"{"beforeId":-2}"#).contains("beforeId must be -1"));
        assert!(bad(br#"{"after_id":-5}"#).contains("after_id must be -1"));
    }

    #[test]
    fn level_in_every_spelling() {
        for (given, level) in [
            ("", Level::All),
            ("all", Level::All),
            ("ALL", Level::All),
            ("info", Level::Info),
            ("INFO", Level::Info),
            ("warn", Level::Warn),
            ("WARN", Level::Warn),
            ("warning", Level::Warn),
            ("Warning", Level::Warn),
            ("error", Level::Error),
            ("ERROR", Level::Error),
        ] {
            assert_eq!(
                ok(&format!(r#"{{"level":"{given}"}}"#)).level,
                level,
                "{given}"
            );
        }
        assert!(bad(br#"{"level":"debug"}"#).contains("level must be one of ALL, INFO, WARN"));
        assert!(bad(br#"{"level":5}"#).contains("level must be a string"));
    }

    #[test]
    fn nul_in_the_mirror_name_is_refused() {
        assert!(bad(br#"{"flowJobName":"a\u0000b"}"#).contains("flowJobName must not contain NUL"));
        assert!(bad(br#"{"message_contains":"\u0000"}"#)
            .contains("message_contains must not contain NUL"));
    }

    #[test]
    fn the_time_and_message_filters_in_both_spellings() {
        let camel = ok(
            r#"{"fromTimestamp":1748972135285,"toTimestamp":"1748972136000","messageContains":"deadlock"}"#,
        );
        let snake = ok(
            r#"{"from_timestamp":1748972135285.0,"to_timestamp":1748972136e3,"message_contains":"deadlock"}"#,
        );
        assert_eq!(camel, snake);
        assert_eq!(
            (camel.from_ms, camel.to_ms, camel.message_contains.as_str()),
            (Some(1748972135285), Some(1748972136000), "deadlock")
        );
        assert!(camel.narrows_rows());
        let none = ok(r#"{"fromTimestamp":null,"toTimestamp":null,"messageContains":null}"#);
        assert_eq!((none.from_ms, none.to_ms), (None, None));
        assert!(!none.narrows_rows());
        // An empty range is a question with an empty answer.
        assert_eq!(ok(r#"{"fromTimestamp":5,"toTimestamp":5}"#).to_ms, Some(5));
    }

    #[test]
    fn a_time_range_must_be_whole_ms_and_end_after_it_starts() {
        assert!(bad(br#"{"fromTimestamp":1.5}"#).contains("fromTimestamp must be an integer"));
        assert!(bad(br#"{"to_timestamp":"yesterday"}"#).contains("to_timestamp must be an integer"));
        assert!(bad(br#"{"fromTimestamp":10,"toTimestamp":9}"#)
            .contains("toTimestamp must not be below fromTimestamp"));
        assert!(bad(br#"{"messageContains":5}"#).contains("messageContains must be a string"));
    }

    #[test]
    fn bounds_past_what_postgres_holds_bound_nothing_or_everything() {
        let r = ok(&format!(
            r#"{{"fromTimestamp":{},"toTimestamp":{}}}"#,
            i64::MIN,
            i64::MAX
        ));
        assert_eq!((r.from_ms, r.to_ms), (None, None));
        let r = ok(&format!(
            r#"{{"fromTimestamp":{},"toTimestamp":{}}}"#,
            i64::MAX,
            i64::MAX
        ));
        assert_eq!((r.from_ms, r.to_ms), (Some(LATEST_MS), None));
        let r = ok(&format!(r#"{{"toTimestamp":{}}}"#, i64::MIN));
        assert_eq!(r.to_ms, Some(EARLIEST_MS));
    }

    #[test]
    fn paging_bounds() {
        assert!(bad(br#"{"numPerPage":-1}"#).contains("numPerPage must not be negative"));
        assert!(bad(br#"{"num_per_page":1001}"#).contains("num_per_page must be at most 1000"));
        assert_eq!(ok(r#"{"numPerPage":1000}"#).num_per_page, 1000);
        assert!(bad(br#"{"page":-1}"#).contains("page must not be negative"));
    }

    #[test]
    fn malformed_bodies_are_400s() {
        assert!(bad(b"{").contains("not valid JSON"));
        // Found by schemathesis: ASCII white space but not JSON's.
        assert!(bad(b"\x0c").contains("not valid JSON"));
        assert!(bad(b"[]").contains("must be a JSON object"));
        assert!(bad(b"null").contains("must be a JSON object"));
        assert!(bad(b"{\"flowJobName\":\"\xff\"}").contains("not valid JSON"));
        let deep = "[".repeat(100_000);
        assert!(bad(format!(r#"{{"x":{deep}"#).as_bytes()).contains("not valid JSON"));
        assert!(bad(format!(r#"{{"page":{deep}"#).as_bytes()).contains("not valid JSON"));
    }

    #[test]
    fn numbers_are_read_exactly_whatever_their_digits() {
        let before = |v: &str| ok(&format!(r#"{{"beforeId":{v}}}"#)).cursor;
        for v in [
            "9007199254740993.0",
            "\"9007199254740993.0\"",
            "90071992547409930e-1",
        ] {
            assert_eq!(before(v), Cursor::Before(9_007_199_254_740_993), "{v}");
        }
        assert_eq!(before("9223372036854775807.0"), Cursor::Before(i64::MAX));
        assert_eq!(before("-0.0"), Cursor::Newest);
        let zeros = "0".repeat(400);
        assert_eq!(before(&format!("1.{zeros}")), Cursor::Before(1));
        assert_eq!(before(&format!("1{zeros}e-400")), Cursor::Before(1));
        assert_eq!(before(&format!("0e9{zeros}")), Cursor::Newest);
        let nines = "9".repeat(400);
        for v in [
            "0.99999999999999999999".to_string(),
            "1.0000000000000000001".to_string(),
            "9223372036854775807.5".to_string(),
            nines.clone(),
            format!("\"{nines}\""),
            format!("1e9{zeros}"),
            // Found by fuzzing: an exponent of i64::MAX overflowed.
            "2e09223372036854775807".to_string(),
            "\"01.0\"".to_string(),
            "\"1.\"".to_string(),
            "\".5\"".to_string(),
            "\"1e\"".to_string(),
        ] {
            assert!(
                bad(format!(r#"{{"beforeId":{v}}}"#).as_bytes())
                    .contains("beforeId must be an integer"),
                "{v}"
            );
        }
    }
}
