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

pub use holds::{DynamoHoldStore, GuardSnapshot};
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

/// The HTTPS client of the Lambda functions: as [`http_client`], but trusting the Mozilla root
/// certificates compiled into the binary instead of reading the host's certificate store.
///
/// A function only calls AWS endpoints, whose certificates chain to public roots, so it needs
/// no site-specific authority. Reading the store was the largest part of a cold start after
/// loading the binary: the platform's bundle file and then its certificate directories, which
/// hold the same certificates again (one file each on Debian, the bundle again on Amazon Linux).
/// The CLI keeps [`http_client`]: an operator's machine may sit behind a proxy with its own
/// authority in that store.
pub fn bundled_roots_http_client() -> Result<SharedHttpClient, BundledRootsError> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let trust_store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(bundled_roots_pem());
    let tls_context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .map_err(|e| BundledRootsError(e.to_string()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https())
}

/// The bundled root certificates as one PEM document, the form the SDK's trust store takes.
fn bundled_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        // PEM lines are at most 64 characters; base64 output is ASCII, so bytes are characters.
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// The bundled root certificates could not be made into a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[error("the bundled root certificates could not be loaded: {0}")]
pub struct BundledRootsError(String);

/// The variables that name a certificate store (a bundle file, a directory), as OpenSSL and
/// rustls-native-certs read them. An operator who sets one on a function (a TLS-inspecting
/// egress proxy with its own authority, say) wants that store trusted, not the bundled roots.
pub const CERTIFICATE_STORE_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The SDK configuration of a Lambda function, from the environment: `AWS_REGION`,
/// `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_SQS` …), credentials from the
/// environment, the Lambda role, a profile or a credentials process. Call it once per process,
/// at start, and share the result. Its HTTPS client trusts the bundled roots
/// ([`bundled_roots_http_client`]) unless one of [`CERTIFICATE_STORE_VARIABLES`] is set, in
/// which case it reads the host's store as that variable directs ([`http_client`]); if the
/// bundled roots cannot be loaded, which would be a bug, it logs why and reads the host's store.
pub async fn sdk_config() -> SdkConfig {
    let store_named = CERTIFICATE_STORE_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    let http_client = if store_named {
        tracing::info!("trusting the certificate store named by SSL_CERT_FILE / SSL_CERT_DIR");
        http_client()
    } else {
        bundled_roots_http_client().unwrap_or_else(|error| {
            tracing::warn!(%error, "using the host's root certificates instead");
            http_client()
        })
    };
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use base64::Engine as _;

    #[test]
    fn the_bundled_roots_pem_holds_every_bundled_certificate_unchanged() {
        let pem = String::from_utf8(bundled_roots_pem()).unwrap();
        let decoded: Vec<Vec<u8>> = pem
            .split("-----END CERTIFICATE-----\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let body = block.strip_prefix("-----BEGIN CERTIFICATE-----\n").unwrap();
                assert!(body.lines().all(|line| line.len() <= 64));
                base64::engine::general_purpose::STANDARD
                    .decode(body.replace('\n', ""))
                    .unwrap()
            })
            .collect();
        let bundled: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|certificate| certificate.as_ref())
            .collect();
        assert!(bundled.len() > 100, "{} bundled roots", bundled.len());
        assert_eq!(decoded, bundled);
    }

    #[test]
    fn the_lambda_http_client_builds_from_the_bundled_roots() {
        // The SDK parses every certificate into its trust store when the client is built.
        bundled_roots_http_client().unwrap();
    }
}
