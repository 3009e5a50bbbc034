//! userprov's AWS adapters: the core ports on SQS FIFO, DynamoDB and Secrets Manager.
//!
//! - [`SqsQueue`]: [`JobQueue`](userprov_core::ports::JobQueue) for the webhook and
//!   [`QueueConsumer`](userprov_core::ports::QueueConsumer) for pollers and redrive tooling.
//! - [`DynamoLinkStore`], [`DynamoLogStore`]: account links and the provisioning log, in the
//!   tables [`schema`] describes.
//! - [`SecretsManagerStore`]: connector credentials, cached per warm container.
//!
//! Build one [`sdk_config`] per process, at init, and every client from it: the clients then
//! share one connection pool and one credentials cache, and the first request does not pay for
//! loading either.

mod holds;
pub mod runtime;
pub mod schema;
mod sdk_error;
mod secrets;
mod sqs;
mod store;

pub use holds::DynamoHoldStore;
pub use secrets::SecretsManagerStore;
pub use sqs::{
    DeadLetter, Postponed, REASON_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE, SOURCE_MESSAGE_ID_ATTRIBUTE,
    SqsQueue,
};
pub use store::{DynamoLinkStore, DynamoLogStore};

/// The SDKs, for callers that build clients or requests of their own.
pub use {aws_config, aws_sdk_dynamodb, aws_sdk_secretsmanager, aws_sdk_sqs};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::SharedHttpClient;

/// The HTTPS client every SDK client should use: rustls with the ring provider and the
/// platform's root certificates.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK configuration from the environment: `AWS_REGION`, `AWS_ENDPOINT_URL` (and the
/// per-service `AWS_ENDPOINT_URL_SQS` …), credentials from the environment, the Lambda role,
/// a profile or a credentials process. Call it once per process and share the result.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}
