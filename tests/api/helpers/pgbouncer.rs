//! A throwaway PgBouncer in transaction pooling mode, for running the whole
//! suite through it (`TEST_VIA_PGBOUNCER=1`). PgBouncer 1.18 (Debian's)
//! keeps no prepared statement across transactions, so anything the
//! function relied on beyond one transaction would fail there.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{server_owner, stop_when_parent_dies};

use super::closed_port;

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
