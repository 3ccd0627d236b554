//! The `bootstrap` binary: the Lambda function when a Lambda runtime API
//! is present, local mode otherwise.

use peerdb_mirror_logs::{handler::App, local, secrets};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return local::run().await;
    }
    let app = App::new(secrets::settings(|name| std::env::var(name).ok()).await);
    let app = &app;
    lambda_http::run(lambda_http::service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
