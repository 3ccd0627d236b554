//! The real binary in local mode, as users run it, serving HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{assert_no_secret_leaked, check_for_secrets, closed_port, test_thread};

/// The real binary in local mode.
pub struct Server {
    pub child: Child,
    port: u16,
    /// What it prints, stdout and stderr, line by line.
    output: std::sync::mpsc::Receiver<String>,
    /// What it printed before it served.
    startup: Vec<String>,
}

impl Server {
    /// Starts the binary with `env` and waits for its "Serving" line.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let port = closed_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
            .env_remove("DATABASE_URL")
            .env_remove("PEERDB_CATALOG_HOST")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, output) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = Server {
            child,
            port,
            output,
            startup: Vec::new(),
        };
        for stream in [
            Box::new(stdout) as Box<dyn BufRead + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            test_thread(move || {
                for line in stream.lines().map_while(Result::ok) {
                    check_for_secrets(&line);
                    let _ = tx.send(line);
                }
            });
        }
        loop {
            let line = server
                .output
                .recv_timeout(Duration::from_secs(60))
                .expect("the server says it is serving");
            let serving = line.starts_with("Serving PeerDB mirror logs on http://localhost:");
            server.startup.push(line);
            if serving {
                return server;
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A keep-alive connection to it, for requests sent byte for byte.
    pub async fn connect(&self) -> Connection {
        Connection {
            stream: tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .unwrap(),
            unread: Vec::new(),
        }
    }

    /// Sends raw HTTP/1.1 and returns (status, body).
    pub async fn request(&self, head: &str, body: &[u8]) -> (u16, Value) {
        self.request_declaring(head, body.len(), body).await
    }

    /// Sends `head` with a `Content-Length` of `declared` but only `body`,
    /// keeps the connection open, and returns the answer (status, body).
    pub async fn request_declaring(
        &self,
        head: &str,
        declared: usize,
        body: &[u8],
    ) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let request = format!(
            "{head}\r\nHost: localhost:{}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
            self.port,
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            // A server that answers early may close before taking it all.
            let _ = stream.write_all(body).await;
            let _ = stream.read_to_end(&mut response).await;
        })
        .await
        .expect("an answer within 10 s");
        let text = String::from_utf8_lossy(&response);
        let status = text[9..12].parse().unwrap();
        let json = text.split_once("\r\n\r\n").map_or(Value::Null, |(_, b)| {
            serde_json::from_str(b).unwrap_or(Value::Null)
        });
        (status, json)
    }

    /// SIGTERM, and waits for a clean exit; all it printed, which holds
    /// no secret.
    pub fn terminate(mut self) -> Vec<String> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        self.startup.extend(self.output.iter());
        assert_no_secret_leaked();
        std::mem::take(&mut self.startup)
    }
}

/// One connection kept alive, as an HTTP client's pool keeps it.
pub struct Connection {
    stream: tokio::net::TcpStream,
    /// Read past the last answer.
    unread: Vec<u8>,
}

/// An answer as it came off the wire.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The header's value (names without regard to case); the first, if
    /// repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Connection {
    /// Sends `request` exactly as given and reads one answer, framed by its
    /// `Content-Length`; the connection stays open for the next.
    pub async fn exchange(&mut self, request: &[u8]) -> HttpReply {
        self.stream.write_all(request).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.read_answer())
            .await
            .expect("an answer within 10 s")
    }

    async fn read_answer(&mut self) -> HttpReply {
        let head_end = loop {
            if let Some(i) = self.unread.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.unread[..head_end].to_vec()).unwrap();
        self.unread.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_string(), value.trim().to_string())
            })
            .collect();
        let mut reply = HttpReply {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = reply
            .header("content-length")
            .unwrap_or_else(|| panic!("an answer without Content-Length: {head}"))
            .parse()
            .unwrap();
        while self.unread.len() < length {
            self.fill().await;
        }
        reply.body = self.unread.drain(..length).collect();
        check_for_secrets(&String::from_utf8_lossy(&reply.body));
        reply
    }

    async fn fill(&mut self) {
        let mut buf = [0; 16 * 1024];
        let n = self.stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.unread.extend_from_slice(&buf[..n]);
    }
}

/// A test that fails before `terminate` leaves no server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const DOCS_HEAD: &str = "POST /api/v1/mirrors/logs HTTP/1.1\r\nAuthorization: Basic OnBlZXJkYg==\r\nContent-Type: application/json";
