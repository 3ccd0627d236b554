//! A throwaway PgBouncer in transaction pooling mode, for running the whole
//! suite through it (`TEST_VIA_PGBOUNCER=1`). PgBouncer 1.18 (Debian's)
//! keeps no prepared statement across transactions, so anything the
//! function relied on beyond one transaction would fail here.
//!
//! Its own test is ignored unless asked for (`cargo test --
//! --include-ignored`): it needs `pgbouncer`, which a fresh machine lacks
//! (tests/api/ignored.rs).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{server_owner, stop_when_parent_dies};

use serde_json::json;

use crate::helpers::*;
use crate::local_mode::{Server, DOCS_HEAD};

pub struct PgBouncer {
    pub port: u16,
    _child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer on 127.0.0.1 in front of the Postgres at `server`
    /// (host, port), every database passed through, signing in the given
    /// `(user, password)`s with SCRAM and opening at most `pool_size`
    /// server connections per database and user; blocks until it accepts
    /// connections.
    pub fn start(server: (&str, u16), users: &[(&str, &str)], pool_size: u32) -> PgBouncer {
        let port = closed_port();
        let dir = std::env::temp_dir().join(format!(
            "peerdb-mirror-logs-pgbouncer-{}-{port}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let userlist: String = users
            .iter()
            .map(|(user, password)| format!("\"{user}\" \"{password}\"\n"))
            .collect();
        fs::write(dir.join("userlist.txt"), userlist).unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host={} port={}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {dir}/userlist.txt\n\
                 pool_mode = transaction\n\
                 max_client_conn = 1000\n\
                 default_pool_size = {pool_size}\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\n",
                server.0,
                server.1,
                dir = dir.display()
            ),
        )
        .unwrap();

        let mut command = Command::new(binary());
        command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // It refuses to run as root.
        if let Some((uid, gid)) = server_owner().unwrap() {
            for entry in [
                dir.clone(),
                dir.join("userlist.txt"),
                dir.join("pgbouncer.ini"),
            ] {
                std::os::unix::fs::chown(entry, Some(uid), Some(gid)).unwrap();
            }
            command.uid(uid).gid(gid);
        }
        let mut child = command.spawn().expect("start pgbouncer");
        stop_when_parent_dies(child.id(), &dir);

        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
                panic!("pgbouncer exited ({status}): {log}");
            }
            assert!(Instant::now() < until, "pgbouncer did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        PgBouncer {
            port,
            _child: child,
        }
    }
}

/// `pgbouncer` on the PATH, or where Debian installs it.
fn binary() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .expect("no pgbouncer on the PATH or in /usr/sbin: apt-get install pgbouncer")
}

#[tokio::test]
#[ignore = "needs pgbouncer: apt-get install pgbouncer"]
async fn function_instances_sharing_one_server_connection_through_pgbouncer_are_all_served() {
    let catalog = TestCatalog::new().await;
    catalog.insert_many(30, &["a", "b"]).await;
    let server = (catalog.host(), catalog.port());
    let bouncer = tokio::task::spawn_blocking(move || {
        PgBouncer::start((&server.0, server.1), &[(READER, READER_PASSWORD)], 1)
    })
    .await
    .unwrap();
    let url = format!(
        "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/{}",
        bouncer.port, catalog.name
    );
    // Two execution environments (processes: statement names are only
    // unique within one), their transactions interleaved on PgBouncer's
    // single server connection: a named prepared statement or a session
    // setting would collide or leak between them.
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PEERDB_PASSWORD", "peerdb"),
    ];
    let servers = [Server::start(&env), Server::start(&env)];
    // In step, so that both use the same statement names at the same time.
    for i in 0..20 {
        let flow = ["a", "b"][i % 2];
        let before = 31 - i as i64 / 2;
        let body = json!({"flowJobName": flow, "numPerPage": 3, "beforeId": before}).to_string();
        let replies = tokio::join!(
            servers[0].request(DOCS_HEAD, body.as_bytes()),
            servers[1].request(DOCS_HEAD, body.as_bytes())
        );
        // insert_many gives even ids to "a", odd ones to "b".
        let expected: Vec<i64> = (1..before)
            .rev()
            .filter(|id| (id % 2 == 0) == (flow == "a"))
            .take(3)
            .collect();
        for (status, json) in [replies.0, replies.1] {
            assert_eq!(status, 200, "{json}");
            assert_eq!(ids_of(&json), expected, "{flow}");
            assert_eq!(json["total"], 15);
        }
    }
    let backends: i64 = catalog
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()",
            &[&READER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        backends, 1,
        "PgBouncer opened more than its one server connection"
    );
    for server in servers {
        server.terminate();
    }
}
