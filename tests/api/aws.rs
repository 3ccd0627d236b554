//! The AWS-facing parts against moto, a real emulation of the AWS APIs,
//! served on 127.0.0.1 once per test run: KMS-encrypted passwords, both
//! Secrets Manager secrets, their rotation while the function runs, and
//! failures. The function is the real binary in local mode, its SDK
//! pointed at moto by `AWS_ENDPOINT_URL`; its whole output is searched for
//! every secret.
//!
//! Ignored unless asked for (`cargo test -- --include-ignored`): they need
//! `moto_server`, which a fresh machine lacks (tests/api/ignored.rs).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::primitives::Blob;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;

use crate::helpers::*;

const REGION: &str = "us-east-1";

struct Moto {
    url: String,
    _server: Child,
}

/// The moto server of this test run, stopped when the run ends.
fn moto_url() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let port = closed_port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run moto_server ({e}); the AWS tests need it: \
                     pip install 'moto[server]' (.ci/run does)"
                    )
                });
            let watchdog = format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {}",
                std::process::id(),
                child.id()
            );
            let _ = Command::new("sh")
                .args(["-c", &watchdog])
                .stdin(Stdio::null())
                .spawn();
            let until = Instant::now() + Duration::from_secs(60);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < until,
                    "moto_server did not start within 60 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Moto {
                url: format!("http://127.0.0.1:{port}"),
                _server: child,
            }
        })
        .url
}

/// The test's own SDK clients, to arrange keys and secrets in moto.
struct Aws {
    kms: aws_sdk_kms::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    async fn new() -> Aws {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(moto_url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .load()
            .await;
        Aws {
            kms: aws_sdk_kms::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    /// A new key's ARN.
    async fn key(&self) -> String {
        let key = self.kms.create_key().send().await.unwrap();
        key.key_metadata().unwrap().arn().unwrap().to_string()
    }

    /// `plaintext` encrypted with `key`, base64-encoded as PeerDB reads it.
    async fn encrypt(&self, key: &str, plaintext: &str) -> String {
        let out = self
            .kms
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(plaintext))
            .send()
            .await
            .unwrap();
        BASE64.encode(out.ciphertext_blob().unwrap().as_ref())
    }

    /// A new secret's ARN and its version id.
    async fn secret(&self, name: &str, value: &str) -> (String, String) {
        let out = self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        (
            out.arn().unwrap().to_string(),
            out.version_id().unwrap().to_string(),
        )
    }

    /// Puts a new version at `stage`; its id.
    async fn put(&self, arn: &str, value: &str, stage: &str) -> String {
        let out = self
            .secrets
            .put_secret_value()
            .secret_id(arn)
            .secret_string(value)
            .version_stages(stage)
            .send()
            .await
            .unwrap();
        out.version_id().unwrap().to_string()
    }
}

/// The function's environment: the SDK pointed at moto with dummy
/// credentials and nothing read from the machine, plus `vars`.
fn with_aws(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto_url()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Everything the SDK and the function log, for the search below.
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
    ]
    .iter()
    .chain(vars)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn start(env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env)
}

/// A logs request with `password`.
fn head(password: &str) -> String {
    format!(
        "POST /api/v1/mirrors/logs HTTP/1.1\r\nAuthorization: Basic {}",
        BASE64.encode(format!(":{password}"))
    )
}

/// The status of an empty logs request with `password`.
async fn status(server: &Server, password: &str) -> u16 {
    server.request(&head(password), b"{}").await.0
}

/// Asserts that no secret appears in `log`, as is or base64-encoded.
fn assert_not_in(log: &[String], secrets: &[&str]) {
    assert!(!log.is_empty());
    let log = log.join("\n");
    for secret in secrets {
        for form in [secret.to_string(), BASE64.encode(secret)] {
            assert!(!log.contains(&form), "a secret is in the log: {form}");
        }
    }
}

/// The log without its DEBUG and TRACE lines, for failure messages.
fn summary(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| !l.contains("DEBUG") && !l.contains("TRACE"))
        .collect()
}

fn count(log: &[String], text: &str) -> usize {
    log.iter().filter(|line| line.contains(text)).count()
}

/// The secret RDS writes for `user`.
fn rds_secret(catalog: &TestCatalog, user: &str, password: &str) -> String {
    json!({
        "engine": "postgres",
        "host": catalog.host(),
        "port": catalog.port(),
        "username": user,
        "password": password,
        "dbname": catalog.name,
    })
    .to_string()
}

#[tokio::test]
#[ignore = "needs moto_server: pip install 'moto[server]'"]
async fn kms_ciphertexts_are_decrypted_once_at_start() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m"]).await;
    let aws = Aws::new().await;
    let key = aws.key().await;
    let api_password = "kms-api-password-5e1c";
    // PeerDB trims the ciphertext.
    let catalog_ciphertext = format!(" {}\n", aws.encrypt(&key, READER_PASSWORD).await);
    let api_ciphertext = aws.encrypt(&key, api_password).await;
    let port = catalog.port().to_string();
    let server = start(&with_aws(&[
        ("PEERDB_KMS_KEY_ID", &key),
        ("PEERDB_CATALOG_HOST", &catalog.host()),
        ("PEERDB_CATALOG_PORT", &port),
        ("PEERDB_CATALOG_USER", READER),
        ("PEERDB_CATALOG_DATABASE", &catalog.name),
        ("PEERDB_CATALOG_PASSWORD", &catalog_ciphertext),
        ("PEERDB_PASSWORD", &api_ciphertext),
    ]));

    let (code, json) = server
        .request(&head(api_password), b"{\"numPerPage\": 3}")
        .await;
    assert_eq!((code, json["total"].as_i64()), (200, Some(10)), "{json}");
    assert_eq!(
        status(&server, &api_ciphertext).await,
        401,
        "the ciphertext is not the password"
    );
    assert_eq!(status(&server, api_password).await, 200);

    let log = server.terminate();
    // Once per execution environment, not per request.
    assert_eq!(count(&log, "decrypted with KMS"), 2, "{:#?}", summary(&log));
    assert_not_in(&log, &[api_password, READER_PASSWORD]);
}

#[tokio::test]
#[ignore = "needs moto_server: pip install 'moto[server]'"]
async fn secrets_manager_supplies_the_catalog_and_a_rotating_api_password() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m"]).await;
    let aws = Aws::new().await;
    let (catalog_secret, _) = aws
        .secret(
            &format!("{}-catalog", catalog.name),
            &rds_secret(&catalog, READER, READER_PASSWORD),
        )
        .await;
    let passwords = [
        "api-password-one-77a0",
        "api-password-two-0c3d",
        "api-password-three-e9b4",
    ];
    let (api_secret, _) = aws
        .secret(&format!("{}-api", catalog.name), passwords[0])
        .await;
    let env = |extra: &[(&'static str, &str)]| {
        let mut vars = vec![
            ("PEERDB_CATALOG_SECRET_ID", catalog_secret.as_str()),
            ("PEERDB_PASSWORD_SECRET_ID", api_secret.as_str()),
        ];
        vars.extend(extra);
        with_aws(&vars)
    };
    let server = start(&env(&[]));
    assert_eq!(status(&server, passwords[0]).await, 200);
    // Rotated, to JSON this time: the new password works at once, since
    // one that does not match makes the function read the secret again...
    let rotated = json!({"password": passwords[1]}).to_string();
    aws.put(&api_secret, &rotated, "AWSCURRENT").await;
    assert_eq!(status(&server, passwords[1]).await, 200);
    assert_eq!(status(&server, passwords[0]).await, 401);
    assert_eq!(status(&server, "wrong").await, 401);
    let mut log = server.terminate();

    // ...and the old one stops working once the copy is older than the
    // maximum age.
    let server = start(&env(&[("PEERDB_PASSWORD_SECRET_MAX_AGE_SECONDS", "1")]));
    assert_eq!(status(&server, passwords[1]).await, 200);
    aws.put(&api_secret, passwords[2], "AWSCURRENT").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&server, passwords[1]).await, 401);
    assert_eq!(status(&server, passwords[2]).await, 200);
    log.extend(server.terminate());

    assert_eq!(
        count(&log, "read the catalog settings from Secrets Manager"),
        2
    );
    assert_not_in(
        &log,
        &[READER_PASSWORD, passwords[0], passwords[1], passwords[2]],
    );
}

#[tokio::test]
#[ignore = "needs moto_server: pip install 'moto[server]'"]
async fn a_rotation_of_the_catalog_secret_and_role_password_is_invisible_to_callers() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(10, &["m"]).await;
    // A role of its own: the other tests' reader keeps its password.
    let role = format!("{}_rotating", catalog.name);
    let passwords = [
        "catalog-pw-one-3b9f",
        "catalog-pw-two-c41e",
        "catalog-pw-three-a7d5",
    ];
    testkit::add_reader(&catalog.admin, &role, passwords[0])
        .await
        .unwrap();
    let aws = Aws::new().await;
    let (secret, first_version) = aws
        .secret(
            &format!("{}-catalog", catalog.name),
            &rds_secret(&catalog, &role, passwords[0]),
        )
        .await;
    let api_password = "rotation-api-password-91d2";
    let server = start(&with_aws(&[
        ("PEERDB_CATALOG_SECRET_ID", &secret),
        ("PEERDB_PASSWORD", api_password),
    ]));
    let head = head(api_password);
    // A connection in the pool first: one still signing in when the
    // password changes would be checked against the old one and live on.
    assert_eq!(status(&server, api_password).await, 200);

    let done = AtomicBool::new(false);
    let traffic = async {
        let mut statuses = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let (status, json) = server.request(&head, b"{\"numPerPage\": 2}").await;
            statuses.push((status, json));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        statuses
    };
    let set_role_password = |password: &str| {
        let alter = format!("ALTER ROLE {role} PASSWORD '{password}'");
        // Open connections outlive a password change: end them, so that
        // the next request signs in again. Only once the change has
        // committed: one in the same transaction could let a request sign
        // in with the old password in between.
        let terminate = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        );
        let admin = &catalog.admin;
        async move {
            admin.batch_execute(&alter).await.unwrap();
            admin.batch_execute(&terminate).await.unwrap();
        }
    };
    let rotations = async {
        let pause = || tokio::time::sleep(Duration::from_millis(300));
        pause().await;
        // As RDS's single-user rotation does it: the new version as
        // AWSPENDING, then the database's password, then AWSCURRENT moves.
        let second = rds_secret(&catalog, &role, passwords[1]);
        let pending = aws.put(&secret, &second, "AWSPENDING").await;
        set_role_password(passwords[1]).await;
        pause().await;
        aws.secrets
            .update_secret_version_stage()
            .secret_id(&secret)
            .version_stage("AWSCURRENT")
            .move_to_version_id(pending)
            .remove_from_version_id(first_version)
            .send()
            .await
            .unwrap();
        pause().await;
        // Then a plain update of the secret, once re-reading is allowed
        // again (5 s after the last), with a second to spare should the
        // first re-read have come late.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let third = rds_secret(&catalog, &role, passwords[2]);
        aws.put(&secret, &third, "AWSCURRENT").await;
        set_role_password(passwords[2]).await;
        pause().await;
        done.store(true, Ordering::SeqCst);
    };
    let (statuses, ()) = tokio::join!(traffic, rotations);

    let log = server.terminate();
    assert!(statuses.len() > 20, "{}", statuses.len());
    for (status, json) in &statuses {
        assert_eq!(
            (*status, json["total"].as_i64()),
            (200, Some(10)),
            "{json}\n{:#?}",
            summary(&log)
        );
    }
    for stage in ["AWSPENDING", "AWSCURRENT"] {
        let line = format!("using the secret's new ones secret={secret} stage=\"{stage}\"");
        assert_eq!(count(&log, &line), 1, "{line}: {:#?}", summary(&log));
    }
    assert_not_in(
        &log,
        &[passwords[0], passwords[1], passwords[2], api_password],
    );
    catalog
        .admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs moto_server: pip install 'moto[server]'"]
async fn secrets_that_cannot_be_resolved_are_a_500_and_a_clear_log_line() {
    let catalog = TestCatalog::new().await;
    let aws = Aws::new().await;
    let key = aws.key().await;
    let (malformed, _) = aws
        .secret(
            &format!("{}-malformed", catalog.name),
            r#"{"host": "db", "password": ["hunter2-in-a-list"]}"#,
        )
        .await;
    let missing = format!(
        "arn:aws:secretsmanager:{REGION}:123456789012:secret:{}-none-AbCdEf",
        catalog.name
    );
    let not_ciphertext = BASE64.encode("hunter2-not-ciphertext");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("PEERDB_CATALOG_SECRET_ID", &missing),
                ("PEERDB_PASSWORD", "peerdb"),
            ],
            "ResourceNotFoundException",
        ),
        (
            &[
                ("PEERDB_CATALOG_SECRET_ID", &malformed),
                ("PEERDB_PASSWORD", "peerdb"),
            ],
            "the secret's \"password\" is not a string",
        ),
        (
            &[
                ("PEERDB_KMS_KEY_ID", &key),
                ("DATABASE_URL", &catalog.reader_url()),
                ("PEERDB_PASSWORD", &not_ciphertext),
            ],
            "PEERDB_PASSWORD cannot be decrypted with PEERDB_KMS_KEY_ID",
        ),
        (
            &[
                ("PEERDB_CATALOG_SECRET_ID", &malformed),
                ("DATABASE_URL", &catalog.reader_url()),
                ("PEERDB_PASSWORD", "peerdb"),
            ],
            "set either DATABASE_URL or PEERDB_CATALOG_SECRET_ID, not both",
        ),
    ];
    for (vars, problem) in cases {
        let server = start(&with_aws(vars));
        let (status, json) = server.request(&head("peerdb"), b"{}").await;
        assert_eq!(
            json,
            json!({"code": 13, "message": "the function is not configured; see its log", "details": []})
        );
        assert_eq!(status, 500);
        let log = server.terminate();
        let line = log
            .iter()
            .find(|l| l.contains("not configured"))
            .unwrap_or_else(|| panic!("no log line: {log:#?}"));
        assert!(line.contains(problem), "{line}");
        assert_not_in(&log, &["hunter2", READER_PASSWORD]);
    }
}
