//! The worker Lambda: SQS FIFO batches → the core worker → targets, links and log.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use userprov_aws::runtime::{FunctionEnv, StartupError, init_tracing};
use userprov_aws::{
    DynamoHoldStore, DynamoLinkStore, DynamoLogStore, SecretsManagerStore, SqsQueue, sdk_config,
};
use userprov_core::connector::registry::build_connectors;
use userprov_core::ports::SystemClock;
use userprov_core::worker::{RetryPolicy, Worker};
use userprov_worker::Handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let handler = match build().await {
        Ok(handler) => Arc::new(handler),
        Err(error) => {
            tracing::error!(%error, "the worker cannot start");
            return Err(error.into());
        }
    };
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let handler = handler.clone();
            async move { Ok::<_, lambda_runtime::Error>(handler.handle(event.payload).await) }
        },
    ))
    .await
}

async fn build() -> Result<Handler, StartupError> {
    let env = FunctionEnv::from_process()?;
    let sdk = sdk_config().await;
    let queue_url = FunctionEnv::require(&env.queue_url, "USERPROV_QUEUE_URL")?.to_owned();
    let dlq_url = FunctionEnv::require(&env.dlq_url, "USERPROV_DLQ_URL")?.to_owned();
    let links_table = FunctionEnv::require(&env.links_table, "USERPROV_LINKS_TABLE")?.to_owned();
    let log_table = FunctionEnv::require(&env.log_table, "USERPROV_LOG_TABLE")?.to_owned();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let secrets = Arc::new(SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        env.secrets_cache_ttl,
    ));
    let connectors = build_connectors(&env.config, secrets).map_err(|e| StartupError::Invalid {
        name: "USERPROV_CONFIG_FILE",
        reason: e.to_string(),
    })?;
    let mut retry = RetryPolicy::from_config(&env.config);
    if let Some(max_receives) = env.max_receives {
        retry.max_attempts = max_receives;
    }
    let mut worker = Worker::new(
        env.config.clone(),
        connectors,
        Arc::new(DynamoLinkStore::new(dynamo.clone(), links_table)),
        Arc::new(DynamoLogStore::new(
            dynamo.clone(),
            log_table,
            env.log_retention,
        )),
        Arc::new(SystemClock),
        retry,
    );
    if let Some(holds_table) = &env.holds_table {
        worker = worker.with_holds(Arc::new(DynamoHoldStore::new(dynamo, holds_table.clone())));
    }
    if env.emf_metrics {
        worker = worker.with_metrics(Arc::new(userprov_core::metrics::StdoutEmf));
    }
    Ok(Handler {
        worker: Arc::new(worker),
        queue: SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, Some(dlq_url)),
    })
}
