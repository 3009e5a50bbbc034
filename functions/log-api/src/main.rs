//! The log API Lambda: API Gateway (IAM-authorised) → the core log API router → DynamoDB.

use std::sync::Arc;

use userprov_aws::runtime::{FunctionEnv, StartupError, init_tracing};
use userprov_aws::{DynamoLinkStore, DynamoLogStore, SecretsManagerStore, sdk_config};
use userprov_core::http::log_api::{LogApiState, router};
use userprov_core::log::CursorSigner;
use userprov_core::ports::SecretStore;

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
    // Every container must accept the cursors the others hand out: the key is a shared secret
    // (the template generates one), read once at start.
    let cursor_secret = env
        .log_cursor_secret
        .clone()
        .or_else(|| env.config.log_api.cursor_secret.clone())
        .ok_or(StartupError::Missing("USERPROV_LOG_CURSOR_SECRET"))?;
    let secrets = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        env.secrets_cache_ttl,
    );
    let cursor_key = secrets
        .get_secret(&cursor_secret)
        .await
        .map_err(|e| StartupError::Token(e.to_string()))?;
    Ok(LogApiState {
        log: Arc::new(DynamoLogStore::new(
            dynamo.clone(),
            log_table,
            env.log_retention,
        )),
        links: Arc::new(DynamoLinkStore::new(dynamo, links_table)),
        config: env.config.clone(),
        cursors: CursorSigner::from_secret(cursor_key.expose().as_bytes()),
        // API Gateway authorises every call with IAM (SigV4) before it reaches the function.
        token: None,
    })
}
