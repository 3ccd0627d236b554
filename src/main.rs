//! The `bootstrap` binary: the Lambda function. Local mode is the `local`
//! binary (`cargo run`).

use peerdb_mirror_logs::startup;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Err(
            "no Lambda runtime API here (AWS_LAMBDA_RUNTIME_API): for local mode, run `cargo run`"
                .into(),
        );
    }
    lambda_http::run(startup::from_env().await).await
}
