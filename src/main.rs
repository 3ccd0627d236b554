//! The `bootstrap` binary: the Lambda function when a Lambda runtime API
//! is present, local mode otherwise.

use peerdb_mirror_logs::{config, handler::App, local};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return local::run().await;
    }
    let app = App::new(config::from_vars(|name| std::env::var(name).ok()));
    let app = &app;
    lambda_http::run(lambda_http::service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
