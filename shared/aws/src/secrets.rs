//! Connector credentials from Secrets Manager, cached per warm container.
//!
//! A value is fetched once per TTL: a busy worker does not call Secrets Manager per job, and a
//! rotated secret is picked up within the TTL. Values never reach an error, a log line or a
//! `Debug` output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use userprov_core::ports::{SecretError, SecretStore, SecretValue};

use crate::sdk_error::{describe, error_code};

struct Cached {
    value: SecretValue,
    fetched_at: Instant,
}

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl std::fmt::Debug for SecretsManagerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerStore {
    /// `ttl`: how long a fetched value is used before it is fetched again (zero: every time).
    pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Arc::default(),
        }
    }

    fn cached(&self, name: &str) -> Option<SecretValue> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .get(name)
            .filter(|entry| entry.fetched_at.elapsed() < self.ttl)
            .map(|entry| entry.value.clone())
    }

    fn remember(&self, name: &str, value: &SecretValue) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(
            name.to_owned(),
            Cached {
                value: value.clone(),
                fetched_at: Instant::now(),
            },
        );
    }

    fn forget(&self, name: &str) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.remove(name);
    }
}

/// Maps a Secrets Manager error. `secret`, when given, is scrubbed from the words: the service
/// has no reason to echo a value back, but nothing here relies on that.
fn secret_error<E, R>(
    name: &str,
    action: &str,
    err: &SdkError<E, R>,
    secret: Option<&SecretValue>,
) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut detail = describe(err);
    if let Some(secret) = secret
        .map(SecretValue::expose)
        .filter(|value| !value.is_empty())
    {
        detail = detail.replace(secret, "<redacted>");
    }
    match error_code(err) {
        Some("ResourceNotFoundException") => SecretError::NotFound {
            name: name.to_owned(),
        },
        Some("AccessDeniedException" | "AccessDenied" | "DecryptionFailure") => {
            SecretError::Denied {
                name: name.to_owned(),
            }
        }
        // For instance: the secret is scheduled for deletion.
        Some("InvalidRequestException") => SecretError::Malformed {
            name: name.to_owned(),
            reason: detail,
        },
        _ => SecretError::Unavailable(format!("{action} {name:?}: {detail}")),
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get_secret(&self, name: &str) -> Result<SecretValue, SecretError> {
        if let Some(value) = self.cached(name) {
            return Ok(value);
        }
        let output = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| secret_error(name, "GetSecretValue", &e, None))?;
        let value = match output.secret_string() {
            Some(text) => SecretValue::new(text),
            None => {
                return Err(SecretError::Malformed {
                    name: name.to_owned(),
                    reason: "it holds binary data; userprov reads secrets stored as text"
                        .to_owned(),
                });
            }
        };
        self.remember(name, &value);
        Ok(value)
    }

    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<(), SecretError> {
        let written = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose())
            .send()
            .await;
        match written {
            Ok(_) => {
                self.remember(name, value);
                Ok(())
            }
            Err(e) => {
                // Whether the new value took is unknown: read it again next time.
                self.forget(name);
                Err(secret_error(name, "PutSecretValue", &e, Some(value)))
            }
        }
    }
}
