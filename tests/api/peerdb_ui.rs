//! PeerDB's own UI as the client, replayed request for request, as the UI
//! deployment (template.yaml, `PeerdbUiAlb=true`) configures the function:
//! authentication off, compression off.
//!
//! What the UI sends, read from PeerDB's code (PeerDB-io/peerdb at
//! 6b52fb6c): the Logs page (`ui/app/mirror-logs/table.tsx`) first GETs
//! `/api/v1/mirrors/names` for its mirror filter, then its `LogsTable`
//! (`ui/components/LogsTable.tsx`) POSTs `JSON.stringify` of `{level,
//! flowJobName, beforeId, afterId, numPerPage: 15, page: 0}`, levels `all`,
//! `error`, `warning`, `info`; a mirror's own logs page
//! (`ui/app/mirrors/errors/[mirrorName]/page.tsx`) sends its name, level
//! `all`, 10 a page. Next page: `beforeId` = the oldest id shown, `afterId`
//! -1; previous page: `beforeId` -1, `afterId` = the newest id shown, on
//! the first page too. It shows `"{page} of {ceil(total / numPerPage)}"`.
//!
//! The browser's request reaches the UI's server-side proxy
//! (`ui/app/api/v1/[...slug]/route.ts`), which fetches
//! `$PEERDB_FLOW_SERVER_HTTP/v1/<the rest>` with the body as a stream and
//! no headers of its own: no Authorization, no Content-Type, a chunked
//! body. What Node's fetch then sends was captured off the wire (Node 20,
//! undici 6.24; undici's fetch adds the same headers in the Node 24 the
//! UI's image runs): [`proxy_headers`]. Its `accept-encoding: gzip,
//! deflate` is why the deployment turns compression off: fetch decodes a
//! gzip body but keeps `Content-Encoding`, and Next sends both on to the
//! browser, which then cannot decode the page.
//!
//! Each test drives both ways the proxy reaches the function: through the
//! internal ALB (the Lambda event the ALB sends, through `lambda_http`) and
//! over HTTP to local mode (the real binary), on one keep-alive connection
//! as fetch's pool keeps it.

use axum::Router;
use serde_json::Value;

use crate::events::UI_SETTINGS;
use crate::helpers::*;

/// `PEERDB_FLOW_SERVER_HTTP`'s host: the template's output, the internal
/// ALB's DNS name, on port 80.
const ALB_HOST: &str = "internal-peerdb-ui-1234567890.us-east-1.elb.amazonaws.com";

/// Mirrors and their initial-load flows.
const FLOWS: [&str; 4] = [
    "orders_to_snowflake",
    "clone_orders_to_snowflake_public.orders",
    "events_cdc",
    "billing_to_bigquery",
];

/// 40 lines, ids 1 to 40, cycling through `FLOWS` and the three levels:
/// the Logs page has three pages of them.
async fn catalog() -> TestCatalog {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(40, &FLOWS).await;
    catalog
}

/// The headers the UI's proxy sends, in its order: Node's fetch's own for
/// `fetch(url, {method, cache: 'no-store', body: request.body, duplex:
/// 'half'})`, and for the names GET the same without a body.
fn proxy_headers(host: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("host", host),
        ("connection", "keep-alive"),
        ("accept", "*/*"),
        ("accept-language", "*"),
        ("sec-fetch-mode", "cors"),
        ("user-agent", "node"),
        ("pragma", "no-cache"),
        ("cache-control", "no-cache"),
        ("accept-encoding", "gzip, deflate"),
    ];
    if with_body {
        headers.push(("transfer-encoding", "chunked"));
    }
    headers
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The proxy's request as the internal ALB hands it to the function: the
/// proxy's headers and the ALB's own; without a text Content-Type, the ALB
/// sends the body base64-encoded.
fn alb_event(method: &str, path: &str, body: Option<&str>) -> String {
    let mut headers = proxy_headers(ALB_HOST, body.is_some());
    for (name, value) in [
        (
            "x-amzn-trace-id",
            "Root=1-6650a31c-1a2b3c4d5e6f7a8b9c0d1e2f",
        ),
        ("x-forwarded-for", "10.0.12.34"),
        ("x-forwarded-port", "80"),
        ("x-forwarded-proto", "http"),
    ] {
        headers.push((name.into(), value.into()));
    }
    Call {
        method: method.into(),
        path: path.into(),
        headers,
        body: Some(body.unwrap_or("").as_bytes().to_vec()),
        base64: body.is_some(),
    }
    .event(Source::Alb)
}

/// The proxy's request as it goes over the wire: a chunked body, in one
/// chunk.
fn http_request(method: &str, path: &str, port: u16, body: Option<&str>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in proxy_headers(&format!("127.0.0.1:{port}"), body.is_some()) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = body {
        bytes.extend(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    }
    bytes
}

/// How the UI's proxy reaches the function.
enum Route {
    /// Through the internal ALB: its Lambda event.
    Alb(Router),
    /// Over HTTP to local mode, on one kept-alive connection.
    Http(Server, Connection),
}

/// What the proxy gets back, and passes on to the browser as it is.
#[derive(Debug)]
struct Seen {
    status: u16,
    content_type: Option<String>,
    content_encoding: Option<String>,
    json: Value,
}

impl Route {
    /// The function as the UI deployment configures it (no password: the
    /// template passes none), each way.
    async fn both(catalog: &TestCatalog) -> [Route; 2] {
        let url = catalog.reader_url();
        let app = app_with(&[("DATABASE_URL", &url)], &UI_SETTINGS).await;
        let mut env = vec![("DATABASE_URL", url.as_str())];
        env.extend(UI_SETTINGS);
        let server = Server::start(&env);
        let connection = server.connect().await;
        [Route::Alb(app), Route::Http(server, connection)]
    }

    fn name(&self) -> &'static str {
        match self {
            Route::Alb(_) => "ALB",
            Route::Http(..) => "HTTP",
        }
    }

    /// `POST /v1/mirrors/logs` with the browser's body.
    async fn logs(&mut self, body: &str) -> Seen {
        self.exchange("POST", "/v1/mirrors/logs", Some(body)).await
    }

    /// `GET /v1/mirrors/names`, as SWR's fetcher asks the proxy for it.
    async fn names(&mut self) -> Seen {
        self.exchange("GET", "/v1/mirrors/names", None).await
    }

    async fn exchange(&mut self, method: &str, path: &str, body: Option<&str>) -> Seen {
        match self {
            Route::Alb(app) => {
                let reply = invoke(app, &alb_event(method, path, body)).await;
                let header = |name| {
                    reply
                        .headers
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_string())
                };
                Seen {
                    status: reply.status.as_u16(),
                    content_type: header("content-type"),
                    content_encoding: header("content-encoding"),
                    json: reply.json,
                }
            }
            Route::Http(server, connection) => {
                let reply = connection
                    .exchange(&http_request(method, path, server.port(), body))
                    .await;
                Seen {
                    status: reply.status,
                    content_type: reply.header("content-type").map(str::to_string),
                    content_encoding: reply.header("content-encoding").map(str::to_string),
                    json: reply.json(),
                }
            }
        }
    }

    /// Local mode stopped cleanly, having printed no secret.
    fn finish(self) {
        if let Route::Http(server, _) = self {
            server.terminate();
        }
    }
}

impl Seen {
    /// What the browser can use: a 200 with plain JSON.
    fn usable(self, what: &str) -> Value {
        assert_eq!(self.status, 200, "{what}: {}", self.json);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(self.content_encoding, None, "{what}");
        self.json
    }
}

/// PeerDB's `LogsTable`: the request it sends, its cursor moves, and what
/// it shows.
struct LogsTable {
    num_per_page: i64,
    mirror_name: String,
    log_level: String,
    before_id: i64,
    after_id: i64,
    logs: Vec<Value>,
    current_page: i64,
    total_pages: i64,
}

impl LogsTable {
    /// As the Logs page (`/mirror-logs`) shows it: every mirror, `all`.
    fn logs_page() -> LogsTable {
        LogsTable::new(15, "")
    }

    /// As a mirror's own logs page (`/mirrors/errors/<name>`) shows it.
    fn mirror_logs_page(mirror: &str) -> LogsTable {
        LogsTable::new(10, mirror)
    }

    fn new(num_per_page: i64, mirror: &str) -> LogsTable {
        LogsTable {
            num_per_page,
            mirror_name: mirror.into(),
            log_level: "all".into(),
            before_id: -1,
            after_id: -1,
            logs: Vec::new(),
            current_page: 1,
            total_pages: 1,
        }
    }

    /// `JSON.stringify(req)`, in its key order.
    fn body(&self) -> String {
        format!(
            r#"{{"level":{},"flowJobName":{},"beforeId":{},"afterId":{},"numPerPage":{},"page":0}}"#,
            serde_json::to_string(&self.log_level).unwrap(),
            serde_json::to_string(&self.mirror_name).unwrap(),
            self.before_id,
            self.after_id,
            self.num_per_page,
        )
    }

    /// Fetches, then shows the rows, `total` as pages and `page`.
    async fn load(&mut self, route: &mut Route) {
        let json = route.logs(&self.body()).await.usable(&self.body());
        assert_eq!(
            json.as_object().unwrap().len(),
            3,
            "errors, total, page: {json}"
        );
        self.logs = json["errors"].as_array().unwrap().clone();
        let total = json["total"].as_i64().unwrap();
        self.total_pages = (total + self.num_per_page - 1) / self.num_per_page;
        self.current_page = json["page"].as_i64().unwrap();
    }

    /// The right chevron.
    fn next(&mut self) {
        self.before_id = self.ids().last().copied().expect("a row shown");
        self.after_id = -1;
    }

    /// The left chevron: the UI resets to `-1, -1` below page 3, then sets
    /// `afterId` anyway; the last call wins.
    fn previous(&mut self) {
        self.before_id = -1;
        self.after_id = self.ids().first().copied().expect("a row shown");
    }

    fn ids(&self) -> Vec<i64> {
        ids_of(&serde_json::json!({ "errors": self.logs }))
    }

    /// The toolbar's label.
    fn label(&self) -> String {
        format!("{} of {}", self.current_page, self.total_pages)
    }
}

/// The newest `limit` ids matching `filter` (SQL over `flow_errors`) and
/// how many match.
async fn expected(catalog: &TestCatalog, filter: &str, limit: i64) -> (Vec<i64>, i64) {
    let sql = format!(
        "SELECT coalesce((SELECT array_agg(id ORDER BY id DESC) FROM
           (SELECT id FROM peerdb_stats.flow_errors WHERE {filter} ORDER BY id DESC LIMIT {limit}) p), '{{}}'),
         (SELECT count(*) FROM peerdb_stats.flow_errors WHERE {filter})"
    );
    let row = catalog.admin.query_one(&sql, &[]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_logs_page_lists_the_mirrors_then_shows_the_newest_15_lines_as_page_1_of_3() {
    let catalog = catalog().await;
    for mut route in Route::both(&catalog).await {
        let names = route.names().await.usable("names");
        assert_eq!(
            names,
            serde_json::json!({"names": ["billing_to_bigquery", "events_cdc", "orders_to_snowflake"]}),
            "{}",
            route.name()
        );
        let mut table = LogsTable::logs_page();
        assert_eq!(
            table.body(),
            r#"{"level":"all","flowJobName":"","beforeId":-1,"afterId":-1,"numPerPage":15,"page":0}"#
        );
        table.load(&mut route).await;
        assert_eq!(
            table.ids(),
            (26..=40).rev().collect::<Vec<_>>(),
            "{}",
            route.name()
        );
        assert_eq!(table.label(), "1 of 3", "{}", route.name());
        // Each row as the table shows it: type, time, mirror, message.
        let newest = &table.logs[0];
        assert_eq!(newest["flowName"], FLOWS[40 % 4]);
        assert_eq!(newest["errorType"], ["info", "warn", "error"][40 % 3]);
        assert_eq!(newest["errorMessage"], "message 40");
        // 2025-06-03 17:35:00 UTC, 40 s later.
        assert_eq!(newest["errorTimestamp"], 1_748_972_100_000_i64 + 40_000);
        route.finish();
    }
}

#[tokio::test]
async fn next_and_previous_move_one_page_older_or_newer_and_the_label_follows() {
    let catalog = catalog().await;
    for mut route in Route::both(&catalog).await {
        let mut table = LogsTable::logs_page();
        table.load(&mut route).await;
        let mut seen = vec![(table.label(), table.ids())];
        for step in [
            LogsTable::next,
            LogsTable::next,
            LogsTable::previous,
            LogsTable::previous,
        ] {
            step(&mut table);
            table.load(&mut route).await;
            seen.push((table.label(), table.ids()));
        }
        let page = |label: &str, ids: std::ops::RangeInclusive<i64>| {
            (label.to_string(), ids.rev().collect::<Vec<_>>())
        };
        assert_eq!(
            seen,
            [
                page("1 of 3", 26..=40),
                page("2 of 3", 11..=25),
                page("3 of 3", 1..=10),
                page("2 of 3", 11..=25),
                page("1 of 3", 26..=40),
            ],
            "{}",
            route.name()
        );
        route.finish();
    }
}

/// The contract's cursor rules, as the UI meets them: `afterId` is the
/// newest id shown, so "previous" on the first page asks for rows newer
/// than the newest, and "next" on the last for rows older than the oldest.
/// Both are an empty page 1 with the total (PeerDB's own API answers them
/// empty too); the table then shows no rows and "1 of 3".
#[tokio::test]
async fn previous_on_the_first_page_and_next_on_the_last_show_an_empty_page_1() {
    let catalog = catalog().await;
    for mut route in Route::both(&catalog).await {
        let mut table = LogsTable::logs_page();
        table.load(&mut route).await;
        table.previous();
        assert_eq!((table.before_id, table.after_id), (-1, 40));
        table.load(&mut route).await;
        assert_eq!(
            (table.ids(), table.label()),
            (vec![], "1 of 3".into()),
            "{}",
            route.name()
        );

        let mut table = LogsTable::logs_page();
        table.load(&mut route).await;
        table.next();
        table.load(&mut route).await;
        table.next();
        table.load(&mut route).await;
        assert_eq!(table.label(), "3 of 3");
        table.next();
        assert_eq!((table.before_id, table.after_id), (1, -1));
        table.load(&mut route).await;
        assert_eq!(
            (table.ids(), table.label()),
            (vec![], "1 of 3".into()),
            "{}",
            route.name()
        );
        route.finish();
    }
}

#[tokio::test]
async fn each_level_the_ui_offers_shows_only_lines_of_that_level() {
    let catalog = catalog().await;
    for mut route in Route::both(&catalog).await {
        for (level, stored) in [
            ("all", None),
            ("error", Some("error")),
            ("warning", Some("warn")),
            ("info", Some("info")),
        ] {
            let mut table = LogsTable::logs_page();
            table.log_level = level.into();
            table.load(&mut route).await;
            let filter = stored.map_or("true".to_string(), |t| format!("error_type = '{t}'"));
            let (ids, total) = expected(&catalog, &filter, 15).await;
            assert_eq!(table.ids(), ids, "{} {level}", route.name());
            assert_eq!(
                table.total_pages,
                (total + 14) / 15,
                "{} {level}",
                route.name()
            );
            assert_eq!(table.current_page, 1);
            if let Some(stored) = stored {
                assert!(
                    table.logs.iter().all(|r| r["errorType"] == stored),
                    "{} {level}: {:?}",
                    route.name(),
                    table.logs
                );
            }
        }
        route.finish();
    }
}

/// The mirror's page filters by name, and PeerDB's filter is "contains":
/// the mirror's initial-load flow (`clone_<mirror>_<table>`) comes too,
/// which the table labels "(initial load)".
#[tokio::test]
async fn a_mirrors_logs_page_shows_its_lines_and_its_initial_loads_10_at_a_time() {
    let catalog = catalog().await;
    let filter = "strpos(flow_name, 'orders_to_snowflake') > 0";
    let (first, total) = expected(&catalog, filter, 10).await;
    let (first_two, _) = expected(&catalog, filter, 20).await;
    assert_eq!(total, 20);
    for mut route in Route::both(&catalog).await {
        let mut table = LogsTable::mirror_logs_page("orders_to_snowflake");
        table.load(&mut route).await;
        assert_eq!(table.ids(), first, "{}", route.name());
        assert_eq!(table.label(), "1 of 2");
        let flows: std::collections::BTreeSet<&str> = table
            .logs
            .iter()
            .map(|r| r["flowName"].as_str().unwrap())
            .collect();
        assert_eq!(
            flows,
            [
                "clone_orders_to_snowflake_public.orders",
                "orders_to_snowflake"
            ]
            .into(),
            "{}",
            route.name()
        );
        table.next();
        table.load(&mut route).await;
        assert_eq!(table.ids(), first_two[10..].to_vec(), "{}", route.name());
        assert_eq!(table.label(), "2 of 2");
        route.finish();
    }
}

/// A page of stack traces and a long mirror list are well over the size
/// the function compresses at, and the proxy accepts gzip. With
/// compression on (the default), the same requests come back gzip, which
/// the UI's proxy would hand on undecodable.
#[tokio::test]
async fn the_ui_gets_plain_json_although_its_proxy_accepts_gzip() {
    let catalog = TestCatalog::new().await;
    let trace = "at io.peerdb.flow.connectors.postgres.PullRecords (pull.go:412)\n".repeat(20);
    for id in 1..=60 {
        let mirror = format!("mirror_number_{id:02}_to_snowflake");
        catalog
            .insert(&[(id, mirror.as_str(), "error", trace.as_str())])
            .await;
    }
    let page = LogsTable::logs_page().body();
    for mut route in Route::both(&catalog).await {
        let names = route.names().await.usable("names");
        assert_eq!(names["names"].as_array().unwrap().len(), 60);
        assert!(names.to_string().len() > 1024);
        let logs = route.logs(&page).await.usable("logs");
        assert_eq!(ids_of(&logs), (46..=60).rev().collect::<Vec<_>>());
        assert!(logs.to_string().len() > 20 * 1024);
        route.finish();
    }

    let compressing = app_with(
        &[("DATABASE_URL", &catalog.reader_url())],
        &[("PEERDB_LOGS_DISABLE_AUTH", "true")],
    )
    .await;
    let mut route = Route::Alb(compressing);
    for seen in [route.names().await, route.logs(&page).await] {
        assert_eq!(seen.status, 200);
        assert_eq!(seen.content_encoding.as_deref(), Some("gzip"));
    }
}

/// The UI's proxy sends no credentials, so a function left with its
/// password answers the UI 401: the UI deployment turns authentication off.
#[tokio::test]
async fn with_authentication_on_the_uis_requests_get_a_401() {
    let app = catalog().await.app(&[]).await;
    for event in [
        alb_event("GET", "/v1/mirrors/names", None),
        alb_event(
            "POST",
            "/v1/mirrors/logs",
            Some(&LogsTable::logs_page().body()),
        ),
    ] {
        invoke(&app, &event).await.error(401, 16);
    }
}

/// `events/alb-peerdb-ui.json` is the first request of the Logs page as
/// these tests send it through the ALB (events.rs replays it).
#[test]
fn the_sample_event_is_the_logs_pages_first_request_through_the_alb() {
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/events/alb-peerdb-ui.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let sent: Value = serde_json::from_str(&alb_event(
        "POST",
        "/v1/mirrors/logs",
        Some(&LogsTable::logs_page().body()),
    ))
    .unwrap();
    for key in ["httpMethod", "path", "headers", "body", "isBase64Encoded"] {
        assert_eq!(file[key], sent[key], "{key}");
    }
}
