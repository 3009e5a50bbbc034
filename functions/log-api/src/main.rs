//! The log API Lambda: API Gateway (IAM-authorised) → the core log API router → DynamoDB.

use std::sync::Arc;

use userprov_aws::runtime::{FunctionEnv, StartupError, init_tracing};
use userprov_aws::{DynamoLinkStore, DynamoLogStore, sdk_config};
use userprov_core::http::log_api::{LogApiState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let state = match build().await {
        Ok(state) => state,
        Err(error) => {
            tracing::error!(%error, "the log API cannot start");
            return Err(error.into());
        }
    };
    lambda_http::run(router(state)).await
}

async fn build() -> Result<LogApiState, StartupError> {
    let env = FunctionEnv::from_process()?;
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let links_table = FunctionEnv::require(&env.links_table, "USERPROV_LINKS_TABLE")?.to_owned();
    let log_table = FunctionEnv::require(&env.log_table, "USERPROV_LOG_TABLE")?.to_owned();
    Ok(LogApiState {
        log: Arc::new(DynamoLogStore::new(
            dynamo.clone(),
            log_table,
            env.log_retention,
        )),
        links: Arc::new(DynamoLinkStore::new(dynamo, links_table)),
        config: env.config.clone(),
    })
}
