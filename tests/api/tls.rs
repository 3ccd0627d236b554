//! TLS to the catalog, against a real Postgres serving a certificate from
//! a throwaway CA made here with the `openssl` CLI. The server also takes
//! plaintext from the reader, so only the function's refusal stands
//! between a failed handshake and a plaintext session.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;
use testkit::{server_owner, ThrowawayPg, SUPERUSER};

use crate::helpers::*;

/// The server's certificate names this host.
const HOST: &str = "localhost";

struct TlsCatalog {
    pg: ThrowawayPg,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing the server has.
    other_ca: PathBuf,
}

impl TlsCatalog {
    /// The reader's URL with the host name `host` (connecting to
    /// 127.0.0.1 whatever the name).
    fn url(&self, host: &str) -> String {
        format!(
            "postgres://{READER}:{READER_PASSWORD}@{host}:{}/postgres?hostaddr=127.0.0.1",
            self.pg.port()
        )
    }

    fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }
}

/// One server for the module: certificates are written into its data
/// folder (so they go with it), then TLS is switched on by a reload.
fn tls_catalog() -> &'static TlsCatalog {
    static CATALOG: OnceLock<TlsCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        on_own_runtime(async move {
            let (pg, _) = dedicated_catalog(3).await;
            let dir = pg.data_dir();
            make_ca(&dir, "ca");
            make_ca(&dir, "other_ca");
            make_server_cert(&dir, "ca", HOST);
            if let Some((uid, gid)) = server_owner().unwrap() {
                for file in ["server.pem", "server.key"] {
                    std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid)).unwrap();
                }
            }
            let admin = connect(&pg.url(SUPERUSER, "postgres").parse().unwrap()).await;
            // One by one: ALTER SYSTEM refuses to run in a transaction.
            for statement in [
                "ALTER SYSTEM SET ssl_cert_file = 'server.pem'",
                "ALTER SYSTEM SET ssl_key_file = 'server.key'",
                "ALTER SYSTEM SET ssl = on",
                "SELECT pg_reload_conf()",
            ] {
                admin.batch_execute(statement).await.unwrap();
            }
            // New sessions see the reload once the postmaster has.
            let config = pg.url(SUPERUSER, "postgres").parse().unwrap();
            while connect(&config)
                .await
                .query_one("SHOW ssl", &[])
                .await
                .unwrap()
                .get::<_, String>(0)
                != "on"
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            TlsCatalog {
                ca: dir.join("ca.pem"),
                other_ca: dir.join("other_ca.pem"),
                pg,
            }
        })
        .unwrap()
    })
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// `{name}.pem` and `{name}.key`: a self-signed CA.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new {NEW_KEY} -days 2 -subj /CN=throwaway_{name} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
             -keyout {name}.key -out {name}.pem"
        ),
    );
}

/// `server.pem` and `server.key`: a certificate for `host`, signed by `ca`.
fn make_server_cert(dir: &Path, ca: &str, host: &str) {
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &format!("req -new {NEW_KEY} -subj /CN={host} -keyout server.key -out server.csr"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 \
             -extfile server.ext -out server.pem"
        ),
    );
    // Postgres refuses a key others can read.
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// Asserts that the function refuses the catalog at `url` with TLS
/// required and `ca_file`: a 503, and a log line saying `cause`. The same
/// server then serves the same role over plaintext, so the refusal was
/// not a fallback that failed.
async fn assert_fails_closed(url: &str, ca_file: Option<&str>, cause: &str) {
    let catalog = TestCatalog::new().await;
    let mut settings = vec![
        ("DATABASE_URL", url),
        ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
    ];
    settings.extend(ca_file.map(|ca| ("PEERDB_CATALOG_CA_FILE", ca)));
    let logs_written = LogCapture::start();
    let app = catalog.app(&settings).await;
    send(&app, Call::logs(json!({"numPerPage": 1})))
        .await
        .error(503, 14);
    let log = logs_written.text();
    assert!(
        log.lines()
            .any(|l| l.contains("request failed") && l.contains(cause)),
        "no log line naming {cause:?}: {log}"
    );

    let separator = if url.contains('?') { '&' } else { '?' };
    let plaintext = catalog
        .app(&[("DATABASE_URL", &format!("{url}{separator}sslmode=disable"))])
        .await;
    logs(&plaintext, json!({"numPerPage": 1})).await;
}

#[tokio::test]
async fn with_the_catalog_ca_configured_reads_go_over_verified_tls() {
    let tls = tls_catalog();
    let catalog = TestCatalog::new().await;
    let app = catalog
        .app(&[
            (
                "DATABASE_URL",
                &format!("{}&application_name=tls_verified", tls.url(HOST)),
            ),
            ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
            ("PEERDB_CATALOG_CA_FILE", tls.ca()),
        ])
        .await;
    assert_eq!(
        logs(&app, json!({"numPerPage": 5})).await.ids(),
        vec![3, 2, 1]
    );
    // The server saw the function's session, and it is encrypted.
    let admin = connect(&tls.pg.url(SUPERUSER, "postgres").parse().unwrap()).await;
    let sessions: Vec<bool> = admin
        .query(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE application_name = 'tls_verified'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sessions, vec![true]);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let tls = tls_catalog();
    let other = tls.other_ca.to_str().unwrap();
    assert_fails_closed(&tls.url(HOST), Some(other), "UnknownIssuer").await;
}

#[tokio::test]
async fn a_server_certificate_for_another_host_name_is_refused() {
    let tls = tls_catalog();
    assert_fails_closed(
        &tls.url("catalog.internal.example"),
        Some(tls.ca()),
        "certificate not valid for name \"catalog.internal.example\"",
    )
    .await;
}

#[tokio::test]
async fn a_catalog_without_tls_is_refused_when_tls_is_required() {
    // The suite's own server has TLS off.
    let catalog = TestCatalog::new().await;
    assert_fails_closed(&catalog.reader_url(), None, "server does not support TLS").await;
}

#[tokio::test]
async fn without_a_ca_file_the_system_roots_decide() {
    let tls = tls_catalog();
    // The throwaway CA is not among the system's roots...
    assert_fails_closed(&tls.url(HOST), None, "UnknownIssuer").await;
    // ...and once it is (SSL_CERT_FILE replaces them), the same settings
    // are served. A process of its own: the variable is process-wide.
    let server = Server::start(&[
        ("DATABASE_URL", &tls.url(HOST)),
        ("PEERDB_PASSWORD", "peerdb"),
        ("PEERDB_CATALOG_REQUIRE_TLS", "true"),
        ("SSL_CERT_FILE", tls.ca()),
    ]);
    let (status, json) = server.request(DOCS_HEAD, br#"{"numPerPage": 5}"#).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(ids_of(&json), vec![3, 2, 1]);
    server.terminate();
}
