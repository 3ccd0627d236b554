//! Just enough of the Lambda runtime API to hand events to the real
//! `bootstrap` binary and take its answers (served with axum, the HTTP
//! server local mode uses).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use tokio::sync::{mpsc, Mutex};

/// When an answer came back, and its status; or what the function
/// reported as an error instead.
type Answer = Result<(Instant, u64), String>;

pub struct RuntimeApi {
    port: u16,
    events: mpsc::Sender<String>,
    answers: Mutex<mpsc::Receiver<Answer>>,
}

struct Shared {
    events: Mutex<mpsc::Receiver<String>>,
    answers: mpsc::Sender<Answer>,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events, events_rx) = mpsc::channel(64);
        let (answers_tx, answers) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            events: Mutex::new(events_rx),
            answers: answers_tx,
        });
        let api = Router::new().fallback(handle).with_state(shared);
        tokio::spawn(async move { axum::serve(listener, api).await });
        RuntimeApi {
            port,
            events,
            answers: Mutex::new(answers),
        }
    }

    /// For `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Hands out `events` one by one; when each answer came back, and its
    /// status. Panics if the function reports an error.
    pub async fn serve(&self, events: &[String]) -> Vec<(Instant, u64)> {
        let mut answers = self.answers.lock().await;
        let mut times = Vec::new();
        for e in events {
            self.events.send(e.clone()).await.unwrap();
            match answers.recv().await.unwrap() {
                Ok(answer) => times.push(answer),
                Err(report) => panic!("{report}"),
            }
        }
        times
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.ends_with("/invocation/next") {
        let event = shared.events.lock().await.recv().await.unwrap();
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 10_000;
        return Response::builder()
            .header("lambda-runtime-aws-request-id", "bench-request")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:mirror-logs",
            )
            .body(Body::from(event))
            .unwrap();
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let answer = if path.ends_with("/response") {
        let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        envelope["statusCode"]
            .as_u64()
            .map(|status| (Instant::now(), status))
            .ok_or_else(|| {
                format!(
                    "a response without a status: {}",
                    String::from_utf8_lossy(&body)
                )
            })
    } else {
        Err(format!(
            "the function reported an error at {path}: {}",
            String::from_utf8_lossy(&body)
        ))
    };
    let _ = shared.answers.send(answer).await;
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Body::empty())
        .unwrap()
}
