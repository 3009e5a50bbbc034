//! The webhook Lambda: API Gateway → the core webhook router → SQS.

use std::sync::Arc;

use userprov_aws::runtime::{FunctionEnv, StartupError, init_tracing};
use userprov_aws::{SecretsManagerStore, SqsQueue, sdk_config};
use userprov_core::http::webhook::{EventsEndpoint, WebhookState, router};
use userprov_core::ingest::Ingest;
use userprov_core::ports::{SecretStore, SystemClock};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let state = match build().await {
        Ok(state) => state,
        Err(error) => {
            tracing::error!(%error, "the webhook cannot start");
            return Err(error.into());
        }
    };
    lambda_http::run(router(state)).await
}

async fn build() -> Result<WebhookState, StartupError> {
    let env = FunctionEnv::from_process()?;
    let sdk = sdk_config().await;
    let queue_url = FunctionEnv::require(&env.queue_url, "USERPROV_QUEUE_URL")?.to_owned();
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, None);
    let secrets = Arc::new(SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        env.secrets_cache_ttl,
    ));
    let token_secret = env
        .webhook_token_secret
        .clone()
        .unwrap_or_else(|| env.config.webhook.token_secret.clone());
    // Read at start, so a missing token fails the deployment's first call loudly rather than
    // every message quietly.
    let token = secrets
        .get_secret(&token_secret)
        .await
        .map_err(|e| StartupError::Token(e.to_string()))?;
    let ingest = Ingest::new(env.config.clone(), Arc::new(queue), Arc::new(SystemClock));
    // The events key is read per request (cached): a deployment without it still takes
    // Outbound Messages, and answers 503 to events until the secret exists.
    let mut auth = env.config.webhook.events.clone();
    if let Some(secret) = &env.events_key_secret {
        auth.secret = secret.clone();
    }
    let events = EventsEndpoint {
        auth,
        secrets,
        clock: Arc::new(SystemClock),
    };
    Ok(WebhookState {
        ingest: Arc::new(ingest),
        token,
        max_body_bytes: env.config.webhook.max_body_bytes,
        events: Some(events),
    })
}
