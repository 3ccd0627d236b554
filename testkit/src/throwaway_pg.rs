//! A throwaway PostgreSQL server from the machine's own server binaries,
//! for local mode's demo catalog and for the tests. It listens on
//! 127.0.0.1 only, trusts its superuser and asks every other role for its
//! password, and is removed when stopped or when the process that started
//! it dies, however it dies.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ThrowawayPg {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    settings: Vec<String>,
    child: Child,
}

/// The superuser of the throwaway cluster (trust authentication).
pub const SUPERUSER: &str = "postgres";

impl ThrowawayPg {
    /// Creates and starts a cluster; blocks until it accepts connections.
    /// `settings` are extra `name=value` server settings.
    pub fn start(settings: &[&str]) -> Result<ThrowawayPg, String> {
        let bin = find_server_binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "peerdb-mirror-logs-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let owner = server_owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
        }

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }

        // The superuser is trusted; every other role signs in with its password.
        let hba = dir.join("data/pg_hba.conf");
        fs::write(
            &hba,
            format!("local all all trust\nhost all {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"),
        )
        .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
        let settings: Vec<String> = [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ]
        .iter()
        .chain(settings)
        .map(|s| s.to_string())
        .collect();
        let port = free_port()?;
        let (child, log_from) = spawn(&bin, &dir, port, owner, &settings)?;
        let mut pg = ThrowawayPg {
            dir,
            port,
            bin,
            owner,
            settings,
            child,
        };
        if let Err(e) = pg.wait_until_ready(log_from) {
            pg.stop();
            return Err(e);
        }
        Ok(pg)
    }

    /// Stops the server (fast shutdown), keeping its data and port.
    pub fn halt(&mut self) {
        signal(self.child.id(), "INT");
        let _ = self.child.wait();
    }

    /// Starts a halted server again on the same port and data.
    pub fn resume(&mut self) -> Result<(), String> {
        let (child, log_from) = spawn(&self.bin, &self.dir, self.port, self.owner, &self.settings)?;
        self.child = child;
        self.wait_until_ready(log_from)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A connection string for `user` on `dbname`.
    pub fn url(&self, user: &str, dbname: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Stops the server (fast shutdown) and removes its files.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "INT");
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Waits for the "ready" line the postmaster logs past `from` bytes,
    /// and sets the watchdog on the new server process.
    fn wait_until_ready(&mut self, from: u64) -> Result<(), String> {
        stop_when_parent_dies(self.child.id(), &self.dir);
        let log_path = self.log_path();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let log = fs::read(&log_path).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[(from as usize).min(log.len())..]).into_owned();
            if tail.contains("ready to accept connections") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("postgres exited ({status}): {}", tail.trim()));
            }
            if Instant::now() > until {
                return Err(format!(
                    "postgres did not start within 60 s: {}",
                    tail.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the postmaster with its output appended to the cluster's log;
/// returns it and the log's size before it started.
fn spawn(
    bin: &Path,
    dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
    settings: &[String],
) -> Result<(Child, u64), String> {
    let log_path = dir.join("postgres.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open the server log: {e}"))?;
    let from = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
        postgres.uid(uid).gid(gid);
    }
    let child = postgres
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    Ok((child, from))
}

/// A watchdog shell that stops `pid` (SIGINT, then SIGKILL) and removes
/// `dir` once this process is gone, so no test run or killed demo leaves a
/// server behind.
pub fn stop_when_parent_dies(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -INT {pid} 2>/dev/null; \
         sleep 3; kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// `initdb` (and PgBouncer) refuse to run as root: then servers run as
/// `postgres`, whose uid and gid this returns.
pub fn server_owner() -> Result<Option<(u32, u32)>, String> {
    let running_as_root = fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if !running_as_root {
        return Ok(None);
    }
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run the server as".into()
        })
}

/// The folder holding `initdb` and `postgres`: the PATH first, then the
/// usual install folders, newest version first.
fn find_server_binaries() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut usual: Vec<PathBuf> = [
        "/usr/lib/postgresql",
        "/usr/local/opt",
        "/opt/homebrew/opt",
        "/usr",
    ]
    .iter()
    .flat_map(|root| fs::read_dir(root).into_iter().flatten().flatten())
    .map(|e| e.path())
    .filter(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("postgresql")
            || name.starts_with("pgsql")
            || name.chars().all(|c| c.is_ascii_digit())
    })
    .map(|p| p.join("bin"))
    .collect();
    usual.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    usual.push(PathBuf::from("/usr/local/pgsql/bin"));
    on_path
        .into_iter()
        .chain(usual)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, postgres) found on the PATH or in the usual folders: \
             install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql), \
             or set DATABASE_URL to a catalog"
                .to_string()
        })
}

fn version_of(bin: &Path) -> u32 {
    let name = bin
        .parent()
        .and_then(Path::file_name)
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    name.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}
