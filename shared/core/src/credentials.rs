//! Credentials for target apps, read from the secret store.
//!
//! A connector asks an [`AuthProvider`] for the `Authorization` header of each request, and
//! calls [`AuthProvider::refresh`] once when the target answers 401: the secret may have been
//! rotated since it was cached.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::connector::ConnectorError;
use crate::ports::{SecretError, SecretStore, SecretValue};

pub mod oauth2;
pub use oauth2::{CredentialSecret, SecretCredentials};

tokio::task_local! {
    /// Notes for the provisioning log entry of the job being handled (see [`collect_notes`]).
    static JOB_NOTES: Arc<std::sync::Mutex<Vec<String>>>;
}

/// Runs `work` and returns, with its output, the notes credentials providers made meanwhile
/// (an OAuth2 refresh and the refresh token's age), for the job's log entry. Providers are
/// shared by every job of an app, so the notes travel with the task, not the provider.
pub async fn collect_notes<F: Future>(work: F) -> (F::Output, Vec<String>) {
    let notes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let output = JOB_NOTES.scope(notes.clone(), work).await;
    let taken = notes.lock().map(|mut n| std::mem::take(&mut *n));
    (output, taken.unwrap_or_default())
}

/// Adds a note to the current job's log entry, when a job is being handled.
pub(crate) fn note(text: String) {
    let _ = JOB_NOTES.try_with(|notes| {
        if let Ok(mut notes) = notes.lock() {
            notes.push(text);
        }
    });
}

#[async_trait]
pub trait AuthProvider: Send + Sync {
    /// The Authorization header value, e.g. "Bearer abc".
    async fn authorization(&self) -> Result<SecretValue, ConnectorError>;
    /// Called once after a 401: drop caches / re-read the secret / refresh a token.
    async fn refresh(&self) -> Result<(), ConnectorError>;
}

/// A static bearer token kept in the secret store under the app's `secret` name.
///
/// The secret holds either `{"type":"bearer","token":"..."}` or the bare token. It is read on
/// first use and cached; [`AuthProvider::refresh`] reads it again. [`SecretCredentials`] reads
/// every kind of secret, OAuth2 included; connectors use that one.
pub struct SecretBearer {
    store: Arc<dyn SecretStore>,
    secret_name: String,
    cached: Mutex<Option<SecretValue>>,
}

impl SecretBearer {
    pub fn new(store: Arc<dyn SecretStore>, secret_name: &str) -> Self {
        Self {
            store,
            secret_name: secret_name.to_owned(),
            cached: Mutex::new(None),
        }
    }

    async fn read(&self) -> Result<SecretValue, ConnectorError> {
        let secret = self
            .store
            .get_secret(&self.secret_name)
            .await
            .map_err(secret_error)?;
        let token = parse_bearer_secret(&self.secret_name, secret.expose())?;
        Ok(SecretValue::new(format!("Bearer {token}")))
    }
}

impl fmt::Debug for SecretBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cached.try_lock().map(|c| c.is_some()).unwrap_or(true);
        f.debug_struct("SecretBearer")
            .field("secret_name", &self.secret_name)
            .field("cached", &cached)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthProvider for SecretBearer {
    async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
        let mut cached = self.cached.lock().await;
        if let Some(value) = cached.as_ref() {
            return Ok(value.clone());
        }
        let value = self.read().await?;
        *cached = Some(value.clone());
        Ok(value)
    }

    async fn refresh(&self) -> Result<(), ConnectorError> {
        let mut cached = self.cached.lock().await;
        *cached = None;
        let value = self.read().await?;
        *cached = Some(value);
        Ok(())
    }
}

fn secret_error(error: SecretError) -> ConnectorError {
    match error {
        // Access is granted by the deployment, not fixed by waiting: a configuration problem.
        SecretError::Denied { .. } => ConnectorError::Config(error.to_string()),
        other => ConnectorError::Credentials(other.to_string()),
    }
}

/// The token of a bearer secret. Messages name the secret and never quote its content.
fn parse_bearer_secret(name: &str, raw: &str) -> Result<String, ConnectorError> {
    let malformed = |reason: &str| {
        ConnectorError::Credentials(format!("secret {name:?} is not usable: {reason}"))
    };
    let raw = raw.trim();
    let token = if raw.starts_with('{') {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(raw) else {
            return Err(malformed("it starts with '{' but is not a JSON object"));
        };
        match fields.get("type").and_then(Value::as_str) {
            Some(kind) if kind.eq_ignore_ascii_case("bearer") => {}
            Some(kind) if is_known_kind(kind) => {
                return Err(malformed(&format!(
                    "credentials of type {kind:?} are OAuth2 credentials, which SecretBearer does not read; use SecretCredentials"
                )));
            }
            Some(_) => return Err(malformed("its \"type\" is unknown; expected \"bearer\"")),
            None => {
                return Err(malformed(
                    "the JSON object has no \"type\"; expected \"bearer\"",
                ));
            }
        }
        let Some(token) = fields.get("token").and_then(Value::as_str) else {
            return Err(malformed("a bearer secret needs a string \"token\""));
        };
        token.to_owned()
    } else {
        raw.to_owned()
    };
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(
            "the token has spaces or characters an HTTP header cannot carry",
        ));
    }
    Ok(token)
}

/// The OAuth2 credential kinds, recognised so the message points to [`SecretCredentials`]
/// rather than saying "unknown".
fn is_known_kind(kind: &str) -> bool {
    [
        "oauth2_client_credentials",
        "client_credentials",
        "oauth2_refresh_token",
        "refresh_token",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(kind))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A secret store in memory that counts reads.
    #[derive(Default)]
    struct MemorySecrets {
        values: StdMutex<HashMap<String, String>>,
        reads: AtomicUsize,
    }

    impl MemorySecrets {
        fn with(name: &str, value: &str) -> Arc<Self> {
            let store = Self::default();
            store.set(name, value);
            Arc::new(store)
        }

        fn set(&self, name: &str, value: &str) {
            self.values
                .lock()
                .unwrap()
                .insert(name.to_owned(), value.to_owned());
        }
    }

    #[async_trait]
    impl SecretStore for MemorySecrets {
        async fn get_secret(&self, name: &str) -> Result<SecretValue, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            match self.values.lock().unwrap().get(name) {
                Some(value) => Ok(SecretValue::new(value.clone())),
                None if name.starts_with("denied/") => Err(SecretError::Denied {
                    name: name.to_owned(),
                }),
                None => Err(SecretError::NotFound {
                    name: name.to_owned(),
                }),
            }
        }

        async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<(), SecretError> {
            self.set(name, value.expose());
            Ok(())
        }
    }

    async fn header_for(secret: &str) -> Result<String, ConnectorError> {
        let bearer = SecretBearer::new(
            MemorySecrets::with("userprov/slack", secret),
            "userprov/slack",
        );
        bearer.authorization().await.map(|v| v.expose().to_owned())
    }

    fn assert_names_secret_without_value(error: &ConnectorError, value: &str) {
        let message = error.to_string();
        assert!(matches!(error, ConnectorError::Credentials(_)), "{error:?}");
        assert!(
            message.contains("userprov/slack"),
            "the message names the secret: {message}"
        );
        assert!(
            !message.contains(value),
            "the message leaks the secret: {message}"
        );
        assert!(
            !format!("{error:?}").contains(value),
            "the Debug form leaks the secret: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_json_bearer_secret_gives_a_bearer_header() {
        let header = header_for(r#"{"type":"bearer","token":"xoxp-123"}"#)
            .await
            .unwrap();
        assert_eq!(header, "Bearer xoxp-123");
    }

    #[tokio::test]
    async fn a_bare_token_gives_a_bearer_header() {
        assert_eq!(header_for("  xoxp-456\n").await.unwrap(), "Bearer xoxp-456");
    }

    #[tokio::test]
    async fn an_oauth2_secret_points_to_secret_credentials_without_the_value() {
        let secret =
            r#"{"type":"oauth2_client_credentials","client_id":"id-9","client_secret":"sekrit-9"}"#;
        let error = header_for(secret).await.unwrap_err();
        assert_names_secret_without_value(&error, "sekrit-9");
        assert!(error.to_string().contains("SecretCredentials"), "{error}");
    }

    #[tokio::test]
    async fn malformed_secrets_are_refused_without_showing_them() {
        for (secret, leak) in [
            (r#"{"type":"bearer","token":"tok-76"#, "tok-76"),
            (r#"{"token":"tok-77"}"#, "tok-77"),
            (r#"{"type":"magic","token":"tok-78"}"#, "tok-78"),
            ("two words-79", "words-79"),
            (r#"{"type":"bearer","token":"line\nbreak-80"}"#, "break-80"),
            (r#"{"type":"bearer","token":["tok-81"]}"#, "tok-81"),
            (r#"{"type":"bearer"}"#, "{\"type"),
            (r#"{"type":"bearer","token":""}"#, "{\"type"),
            ("   ", "{"),
        ] {
            let error = header_for(secret).await.expect_err(secret);
            assert_names_secret_without_value(&error, leak);
        }
    }

    #[tokio::test]
    async fn a_missing_secret_is_a_credentials_error_and_a_denied_one_is_config() {
        let store = Arc::new(MemorySecrets::default());
        let missing = SecretBearer::new(store.clone(), "userprov/absent")
            .authorization()
            .await
            .unwrap_err();
        assert!(
            matches!(&missing, ConnectorError::Credentials(m) if m.contains("userprov/absent")),
            "{missing:?}"
        );
        let denied = SecretBearer::new(store, "denied/app")
            .authorization()
            .await
            .unwrap_err();
        assert!(
            matches!(&denied, ConnectorError::Config(m) if m.contains("denied/app")),
            "{denied:?}"
        );
    }

    #[tokio::test]
    async fn the_secret_is_read_once_and_refresh_reads_the_rotated_value() {
        let store = MemorySecrets::with("userprov/slack", "old-token");
        let bearer = SecretBearer::new(store.clone(), "userprov/slack");
        assert_eq!(
            bearer.authorization().await.unwrap().expose(),
            "Bearer old-token"
        );
        assert_eq!(
            bearer.authorization().await.unwrap().expose(),
            "Bearer old-token"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);

        store.set("userprov/slack", r#"{"type":"bearer","token":"new-token"}"#);
        bearer.refresh().await.unwrap();
        assert_eq!(
            bearer.authorization().await.unwrap().expose(),
            "Bearer new-token"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn debug_output_shows_the_secret_name_but_never_the_token() {
        let bearer = SecretBearer::new(
            MemorySecrets::with("userprov/slack", "tok-secret-1"),
            "userprov/slack",
        );
        let header = bearer.authorization().await.unwrap();
        let shown = format!("{bearer:?} {header:?}");
        assert!(shown.contains("userprov/slack"), "{shown}");
        assert!(!shown.contains("tok-secret-1"), "{shown}");
    }
}
