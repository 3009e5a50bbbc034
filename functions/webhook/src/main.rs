//! The webhook Lambda: API Gateway → the core webhook router → SQS.
//!
//! With `USERPROV_WEBHOOK_MODE=eventbridge` the same binary is the Event Relay ingest function
//! instead: an EventBridge rule on the partner event bus invokes it with each relayed event, and
//! `Ingest::relayed_event` (the webhook's own parser and queueing) reads and queues it.

use std::sync::Arc;

use userprov_aws::runtime::{FunctionEnv, StartupError, init_tracing};
use userprov_aws::{SecretsManagerStore, SqsQueue, sdk_config};
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::http::webhook::{EventsEndpoint, WebhookState, router};
use userprov_core::ingest::Ingest;
use userprov_core::ports::{SecretStore, SystemClock};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    if std::env::var("USERPROV_WEBHOOK_MODE").is_ok_and(|mode| mode == "eventbridge") {
        return run_event_relay().await;
    }
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

/// The Event Relay ingest function: one EventBridge event per invocation.
async fn run_event_relay() -> Result<(), lambda_http::Error> {
    let ingest = match build_event_relay().await {
        Ok(ingest) => Arc::new(ingest),
        Err(error) => {
            tracing::error!(%error, "the Event Relay ingest function cannot start");
            return Err(error.into());
        }
    };
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: lambda_http::LambdaEvent<serde_json::Value>| {
            let ingest = ingest.clone();
            async move { relay(&ingest, event).await }
        },
    ))
    .await
}

async fn build_event_relay() -> Result<Ingest, StartupError> {
    let env = FunctionEnv::from_process()?;
    let sdk = sdk_config().await;
    let queue_url = FunctionEnv::require(&env.queue_url, "USERPROV_QUEUE_URL")?.to_owned();
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, None);
    Ok(Ingest::new(
        env.config.clone(),
        Arc::new(queue),
        Arc::new(SystemClock),
    ))
}

/// Queues one relayed event. Only a transient failure (the queue) fails the invocation, so
/// Lambda retries it and then keeps it in the failed-events queue; an event that can never be
/// queued (bad input, a foreign org) is logged and dropped, as the webhook refuses it.
async fn relay(
    ingest: &Ingest,
    event: lambda_http::LambdaEvent<serde_json::Value>,
) -> Result<(), lambda_http::Error> {
    let correlation_id = event
        .payload
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| event.context.request_id.clone(), str::to_owned);
    let body = serde_json::to_vec(&event.payload)?;
    match ingest.relayed_event(&body, &correlation_id).await {
        Ok(report) => {
            tracing::info!(correlation_id, jobs = report.jobs, "relayed event queued");
            Ok(())
        }
        Err(error) if error.class() == ErrorClass::Transient => {
            tracing::error!(correlation_id, %error, reason = error.code(), "relayed event not queued; retrying");
            Err(error.into())
        }
        Err(error) => {
            tracing::error!(correlation_id, %error, reason = error.code(), "relayed event refused");
            Ok(())
        }
    }
}
