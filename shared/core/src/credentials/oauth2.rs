//! Credentials of every kind the secret store can hold, OAuth2 included.
//!
//! The secret is JSON:
//!
//! - `{"type":"bearer","token":"..."}` (or the bare token): sent as is.
//! - `{"type":"oauth2_client_credentials","token_url":"...","client_id":"...","client_secret":"...",
//!   "scope":"...","audience":"..."}` (scope and audience optional).
//! - `{"type":"oauth2_refresh_token","token_url":"...","client_id":"...","client_secret":"...",
//!   "refresh_token":"...","refresh_token_issued_at":"<RFC 3339>"}` (client secret and issue time
//!   optional). When the token endpoint rotates the refresh token, the new one and its issue time
//!   are written back to the same secret, other fields kept.
//!
//! Access tokens are cached in memory until shortly before `expires_in` runs out. A refresh
//! token the authorization server refuses (`invalid_grant`: revoked, expired, reused) fails with
//! [`ConnectorError::Reauthorize`], whose message says what the admin must do; no message ever
//! quotes a token or a client secret.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use super::{AuthProvider, note, parse_bearer_secret, secret_error};
use crate::connector::ConnectorError;
use crate::ports::{SecretStore, SecretValue};

/// The longest margin kept before an access token's expiry.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// The largest token endpoint answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// How the client authenticates at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (the default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// An OAuth2 grant that yields access tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Client {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretValue>,
    pub client_auth: ClientAuth,
}

/// What a secret holds.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSecret {
    Bearer(SecretValue),
    ClientCredentials {
        client: OAuth2Client,
        scope: Option<String>,
        audience: Option<String>,
    },
    RefreshToken {
        client: OAuth2Client,
        refresh_token: SecretValue,
        issued_at: Option<OffsetDateTime>,
        /// The whole secret, so a rotated refresh token is written back with every other field.
        fields: Map<String, Value>,
    },
}

impl fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bearer(_) => "CredentialSecret::Bearer(<redacted>)",
            Self::ClientCredentials { .. } => "CredentialSecret::ClientCredentials(<redacted>)",
            Self::RefreshToken { .. } => "CredentialSecret::RefreshToken(<redacted>)",
        })
    }
}

impl CredentialSecret {
    /// Reads a secret's value. Messages name the secret and the field at fault, never a value.
    pub fn parse(name: &str, raw: &str) -> Result<Self, ConnectorError> {
        let malformed = |reason: String| {
            ConnectorError::Credentials(format!("secret {name:?} is not usable: {reason}"))
        };
        let trimmed = raw.trim();
        if !trimmed.starts_with('{') {
            return parse_bearer_secret(name, raw).map(|t| Self::Bearer(SecretValue::new(t)));
        }
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(trimmed) else {
            return Err(malformed(
                "it starts with '{' but is not a JSON object".into(),
            ));
        };
        let kind = fields
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let text = |field: &str, required: bool| -> Result<Option<String>, ConnectorError> {
            match fields.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                None | Some(Value::Null) if !required => Ok(None),
                Some(Value::String(_)) | None | Some(Value::Null) => Err(malformed(format!(
                    "a {kind} secret needs a non-empty string {field:?}"
                ))),
                Some(_) => Err(malformed(format!("{field:?} must be a string"))),
            }
        };
        let client = |secret_required: bool| -> Result<OAuth2Client, ConnectorError> {
            let token_url = text("token_url", true)?.unwrap_or_default();
            match reqwest::Url::parse(&token_url) {
                Ok(url) if matches!(url.scheme(), "https" | "http") => {}
                _ => return Err(malformed("\"token_url\" must be an http(s) URL".into())),
            }
            let client_auth = match text("client_auth", false)?.as_deref() {
                None | Some("basic" | "client_secret_basic") => ClientAuth::Basic,
                Some("post" | "client_secret_post") => ClientAuth::Post,
                Some(_) => {
                    return Err(malformed(
                        "\"client_auth\" must be \"basic\" or \"post\"".into(),
                    ));
                }
            };
            Ok(OAuth2Client {
                token_url,
                client_id: text("client_id", true)?.unwrap_or_default(),
                client_secret: text("client_secret", secret_required)?.map(SecretValue::new),
                client_auth,
            })
        };
        match kind.as_str() {
            "bearer" => parse_bearer_secret(name, raw).map(|t| Self::Bearer(SecretValue::new(t))),
            "oauth2_client_credentials" | "client_credentials" => Ok(Self::ClientCredentials {
                client: client(true)?,
                scope: text("scope", false)?,
                audience: text("audience", false)?,
            }),
            "oauth2_refresh_token" | "refresh_token" => {
                let client = client(false)?;
                let refresh_token = text("refresh_token", true)?.unwrap_or_default();
                let issued_at = match text("refresh_token_issued_at", false)? {
                    None => None,
                    Some(at) => Some(OffsetDateTime::parse(&at, &Rfc3339).map_err(|_| {
                        malformed("\"refresh_token_issued_at\" must be an RFC 3339 time".into())
                    })?),
                };
                Ok(Self::RefreshToken {
                    client,
                    refresh_token: SecretValue::new(refresh_token),
                    issued_at,
                    fields,
                })
            }
            "" => Err(malformed(
                "the JSON object has no \"type\"; expected \"bearer\", \"oauth2_client_credentials\" or \"oauth2_refresh_token\"".into(),
            )),
            _ => Err(malformed(
                "its \"type\" is unknown; expected \"bearer\", \"oauth2_client_credentials\" or \"oauth2_refresh_token\"".into(),
            )),
        }
    }
}

/// An access token and when to stop using it.
struct CachedToken {
    header: SecretValue,
    /// `None`: no expiry given; used until the target answers 401.
    renew_at: Option<Instant>,
}

impl CachedToken {
    fn is_fresh(&self) -> bool {
        self.renew_at.is_none_or(|at| Instant::now() < at)
    }
}

#[derive(Default)]
struct State {
    token: Option<CachedToken>,
    /// The newest refresh token this process knows (it may be newer than the stored one when
    /// writing it back failed).
    refresh: Option<CredentialSecret>,
}

/// Credentials for one app from its secret: a bearer token, or OAuth2 access tokens obtained
/// with client credentials or a refresh token.
pub struct SecretCredentials {
    store: Arc<dyn SecretStore>,
    secret_name: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl fmt::Debug for SecretCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCredentials")
            .field("secret_name", &self.secret_name)
            .finish_non_exhaustive()
    }
}

/// A token endpoint's successful answer.
struct TokenAnswer {
    access_token: SecretValue,
    expires_in: Option<Duration>,
    refresh_token: Option<SecretValue>,
}

/// How long before expiry a token is renewed: a tenth of its life, at most a minute.
pub fn expiry_margin(expires_in: Duration) -> Duration {
    (expires_in / 10).min(MAX_EXPIRY_MARGIN)
}

impl SecretCredentials {
    /// `http` should not follow redirects (see [`crate::connector::scim::http_client`]).
    pub fn new(store: Arc<dyn SecretStore>, secret_name: &str, http: reqwest::Client) -> Self {
        Self {
            store,
            secret_name: secret_name.to_owned(),
            http,
            state: Mutex::new(State::default()),
        }
    }

    async fn read_secret(&self) -> Result<CredentialSecret, ConnectorError> {
        let raw = self
            .store
            .get_secret(&self.secret_name)
            .await
            .map_err(secret_error)?;
        CredentialSecret::parse(&self.secret_name, raw.expose())
    }

    /// A new access token (or the bearer token), cached in `state`.
    async fn renew(&self, state: &mut State) -> Result<SecretValue, ConnectorError> {
        let secret = match state.refresh.take() {
            Some(known) => known,
            None => self.read_secret().await?,
        };
        let cached = match secret {
            CredentialSecret::Bearer(token) => CachedToken {
                header: SecretValue::new(format!("Bearer {}", token.expose())),
                renew_at: None,
            },
            CredentialSecret::ClientCredentials {
                client,
                scope,
                audience,
            } => {
                let mut form = vec![("grant_type", "client_credentials".to_owned())];
                form.extend(scope.map(|s| ("scope", s)));
                form.extend(audience.map(|a| ("audience", a)));
                let answer = self.request_token(&client, form).await?;
                cache_entry(&answer)
            }
            CredentialSecret::RefreshToken { .. } => {
                let (answer, next) = self.refresh_grant(secret).await?;
                state.refresh = Some(next);
                cache_entry(&answer)
            }
        };
        let header = cached.header.clone();
        state.token = Some(cached);
        Ok(header)
    }

    /// Uses the refresh token; on `invalid_grant`, tries once more with the stored one if another
    /// process rotated it meanwhile. Returns the answer and the secret to use next time.
    async fn refresh_grant(
        &self,
        secret: CredentialSecret,
    ) -> Result<(TokenAnswer, CredentialSecret), ConnectorError> {
        let first = self.use_refresh_token(&secret).await;
        match first {
            Err(TokenError::InvalidGrant(reason)) => {
                let stored = self.read_secret().await?;
                if refresh_token_of(&stored) != refresh_token_of(&secret) {
                    tracing::info!(
                        secret = %self.secret_name,
                        "the refresh token was rotated elsewhere; using the stored one"
                    );
                    return match self.use_refresh_token(&stored).await {
                        Ok(answer) => self.after_refresh(stored, answer).await,
                        Err(error) => Err(self.token_failure(error)),
                    };
                }
                Err(self.token_failure(TokenError::InvalidGrant(reason)))
            }
            Err(error) => Err(self.token_failure(error)),
            Ok(answer) => self.after_refresh(secret, answer).await,
        }
    }

    async fn use_refresh_token(
        &self,
        secret: &CredentialSecret,
    ) -> Result<TokenAnswer, TokenError> {
        let CredentialSecret::RefreshToken {
            client,
            refresh_token,
            ..
        } = secret
        else {
            return Err(TokenError::Unusable("not a refresh token secret".into()));
        };
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
        ];
        self.post_token(client, form).await
    }

    /// Logs the refresh token's age, and stores a rotated refresh token.
    async fn after_refresh(
        &self,
        secret: CredentialSecret,
        answer: TokenAnswer,
    ) -> Result<(TokenAnswer, CredentialSecret), ConnectorError> {
        let CredentialSecret::RefreshToken {
            client,
            refresh_token,
            issued_at,
            mut fields,
        } = secret
        else {
            return Err(ConnectorError::Credentials(
                "internal: not a refresh token secret".into(),
            ));
        };
        let now = OffsetDateTime::now_utc();
        let age = issued_at.map(|at| now - at);
        let age_text = match age {
            Some(age) => format!("{} old", describe_age(age)),
            None => "of unknown age (the secret has no refresh_token_issued_at)".to_owned(),
        };
        tracing::info!(
            secret = %self.secret_name,
            refresh_token_age_secs = age.map(|a| a.whole_seconds()),
            "refreshed the OAuth2 access token"
        );
        note(format!(
            "OAuth2 access token refreshed with the refresh token in secret {}, {age_text}",
            self.secret_name
        ));
        let rotated = answer
            .refresh_token
            .clone()
            .filter(|new| new.expose() != refresh_token.expose());
        let Some(new_token) = rotated else {
            let next = CredentialSecret::RefreshToken {
                client,
                refresh_token,
                issued_at,
                fields,
            };
            return Ok((answer, next));
        };
        let issued = now.format(&Rfc3339).unwrap_or_default();
        fields.insert(
            "refresh_token".into(),
            Value::String(new_token.expose().to_owned()),
        );
        fields.insert("refresh_token_issued_at".into(), Value::String(issued));
        let stored = SecretValue::new(Value::Object(fields.clone()).to_string());
        match self.store.put_secret(&self.secret_name, &stored).await {
            Ok(()) => {
                tracing::info!(secret = %self.secret_name, "stored the rotated refresh token");
                note(format!(
                    "the token endpoint rotated the refresh token; the new one is stored in secret {}",
                    self.secret_name
                ));
            }
            Err(error) => {
                // The old token is spent: keep the new one in memory, so this process goes on
                // working, and say loudly that the store is behind.
                tracing::error!(
                    secret = %self.secret_name,
                    %error,
                    "cannot store the rotated refresh token; only this process has it"
                );
                note(format!(
                    "the token endpoint rotated the refresh token but storing it in secret {} failed: {error}",
                    self.secret_name
                ));
            }
        }
        let next = CredentialSecret::RefreshToken {
            client,
            refresh_token: new_token,
            issued_at: Some(now),
            fields,
        };
        Ok((answer, next))
    }

    async fn request_token(
        &self,
        client: &OAuth2Client,
        form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, ConnectorError> {
        self.post_token(client, form)
            .await
            .map_err(|e| self.token_failure(e))
    }

    async fn post_token(
        &self,
        client: &OAuth2Client,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, TokenError> {
        let mut request = self
            .http
            .post(&client.token_url)
            .header(ACCEPT, "application/json");
        match (&client.client_secret, client.client_auth) {
            (Some(secret), ClientAuth::Basic) => {
                // RFC 6749 2.3.1: both parts form-encoded before Basic encoding.
                request = request.basic_auth(
                    form_encode(&client.client_id),
                    Some(form_encode(secret.expose())),
                );
            }
            (Some(secret), ClientAuth::Post) => {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret.expose().to_owned()));
            }
            (None, _) => form.push(("client_id", client.client_id.clone())),
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TokenError::Unavailable("the token endpoint did not answer in time".into())
                } else {
                    TokenError::Unavailable("cannot reach the token endpoint".into())
                }
            })?;
        let status = response.status().as_u16();
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| TokenError::Unavailable("the token endpoint's answer broke off".into()))?
        {
            if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(TokenError::Unusable("the answer is too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        let json: Option<Map<String, Value>> = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        let field = |name: &str| {
            json.as_ref()
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if !(200..300).contains(&status) {
            let error = field("error").unwrap_or_default();
            // The description is the server's words about the request, not a credential; cut
            // short all the same.
            let description: String = field("error_description")
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let reason = if error.is_empty() {
                format!("HTTP {status}")
            } else if description.is_empty() {
                format!("HTTP {status} {error}")
            } else {
                format!("HTTP {status} {error}: {description}")
            };
            return Err(match (status, error.as_str()) {
                (_, "invalid_grant") => TokenError::InvalidGrant(reason),
                (_, "invalid_client" | "unauthorized_client") | (401, _) => {
                    TokenError::InvalidClient(reason)
                }
                (429 | 500..=599, _) => TokenError::Unavailable(reason),
                _ => TokenError::Refused(reason),
            });
        }
        let Some(access_token) = field("access_token").filter(|t| !t.is_empty()) else {
            return Err(TokenError::Unusable(format!(
                "HTTP {status} without an access_token"
            )));
        };
        if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Unusable(
                "the access token has characters an HTTP header cannot carry".into(),
            ));
        }
        if let Some(kind) = field("token_type")
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(TokenError::Unusable(format!(
                "token_type {kind:?}; userprov sends bearer tokens only"
            )));
        }
        let expires_in = json
            .as_ref()
            .and_then(|m| m.get("expires_in"))
            .and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(Duration::from_secs);
        Ok(TokenAnswer {
            access_token: SecretValue::new(access_token),
            expires_in,
            refresh_token: field("refresh_token")
                .filter(|t| !t.is_empty())
                .map(SecretValue::new),
        })
    }

    fn token_failure(&self, error: TokenError) -> ConnectorError {
        let secret = &self.secret_name;
        match error {
            TokenError::InvalidGrant(reason) => ConnectorError::Reauthorize {
                message: format!(
                    "the token endpoint refused the refresh token in secret {secret} ({reason}): it was revoked, \
                     expired or already used. Re-run the app's OAuth consent and store the new refresh token \
                     in secret {secret} (field \"refresh_token\")"
                ),
            },
            TokenError::InvalidClient(reason) => ConnectorError::Reauthorize {
                message: format!(
                    "the token endpoint refused the client credentials in secret {secret} ({reason}): check \
                     \"client_id\" and \"client_secret\" there against the app's OAuth client"
                ),
            },
            TokenError::Refused(reason) => ConnectorError::Reauthorize {
                message: format!(
                    "the token endpoint refused the request made with secret {secret} ({reason}): check its \
                     \"token_url\", \"scope\" and \"audience\""
                ),
            },
            TokenError::Unavailable(reason) | TokenError::Unusable(reason) => {
                ConnectorError::Credentials(format!(
                    "cannot get an access token with secret {secret}: {reason}"
                ))
            }
        }
    }
}

#[derive(Debug)]
enum TokenError {
    InvalidGrant(String),
    InvalidClient(String),
    Refused(String),
    Unavailable(String),
    Unusable(String),
}

fn refresh_token_of(secret: &CredentialSecret) -> Option<&str> {
    match secret {
        CredentialSecret::RefreshToken { refresh_token, .. } => Some(refresh_token.expose()),
        _ => None,
    }
}

fn cache_entry(answer: &TokenAnswer) -> CachedToken {
    CachedToken {
        header: SecretValue::new(format!("Bearer {}", answer.access_token.expose())),
        renew_at: answer
            .expires_in
            .map(|life| Instant::now() + life.saturating_sub(expiry_margin(life))),
    }
}

fn form_encode(value: &str) -> String {
    urlencoding::encode(value).into_owned()
}

/// "3 days 4 hours", "5 hours 2 minutes", "40 seconds".
pub fn describe_age(age: time::Duration) -> String {
    let secs = age.whole_seconds().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    if days > 0 {
        format!("{} {}", unit(days, "day"), unit(hours, "hour"))
    } else if hours > 0 {
        format!("{} {}", unit(hours, "hour"), unit(minutes, "minute"))
    } else if minutes > 0 {
        unit(minutes, "minute")
    } else {
        unit(secs, "second")
    }
}

#[async_trait]
impl AuthProvider for SecretCredentials {
    async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
        let mut state = self.state.lock().await;
        if let Some(token) = state.token.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.header.clone());
        }
        self.renew(&mut state).await
    }

    async fn refresh(&self) -> Result<(), ConnectorError> {
        let mut state = self.state.lock().await;
        state.token = None;
        // A bearer secret may have been replaced in the store: read it again.
        if matches!(state.refresh, Some(CredentialSecret::Bearer(_))) {
            state.refresh = None;
        }
        self.renew(&mut state).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(raw: &str) -> Result<CredentialSecret, ConnectorError> {
        CredentialSecret::parse("userprov/zoom", raw)
    }

    #[test]
    fn the_three_kinds_of_secret_are_read() {
        assert!(matches!(
            parse(r#"{"type":"bearer","token":"t-1"}"#).unwrap(),
            CredentialSecret::Bearer(t) if t.expose() == "t-1"
        ));
        let CredentialSecret::ClientCredentials {
            client,
            scope,
            audience,
        } = parse(
            r#"{"type":"oauth2_client_credentials","token_url":"https://login.example/token","client_id":"c","client_secret":"s","scope":"scim","audience":"https://api.example"}"#,
        )
        .unwrap()
        else {
            panic!("not client credentials")
        };
        assert_eq!(client.client_id, "c");
        assert_eq!(client.client_auth, ClientAuth::Basic);
        assert_eq!(scope.as_deref(), Some("scim"));
        assert_eq!(audience.as_deref(), Some("https://api.example"));
        let CredentialSecret::RefreshToken {
            client, issued_at, ..
        } = parse(
            r#"{"type":"oauth2_refresh_token","token_url":"https://login.example/token","client_id":"c","refresh_token":"r","refresh_token_issued_at":"2026-11-01T10:00:00Z","client_auth":"post"}"#,
        )
        .unwrap()
        else {
            panic!("not a refresh token")
        };
        assert!(client.client_secret.is_none());
        assert_eq!(client.client_auth, ClientAuth::Post);
        assert_eq!(issued_at.unwrap().day(), 1);
    }

    #[test]
    fn a_malformed_oauth2_secret_names_the_field_and_never_a_value() {
        for (raw, field) in [
            (
                r#"{"type":"oauth2_client_credentials","token_url":"https://l.example/t","client_id":"c-31"}"#,
                "client_secret",
            ),
            (
                r#"{"type":"oauth2_client_credentials","client_id":"c-32","client_secret":"s-32"}"#,
                "token_url",
            ),
            (
                r#"{"type":"oauth2_refresh_token","token_url":"ftp://l.example/t","client_id":"c","refresh_token":"r-33"}"#,
                "token_url",
            ),
            (
                r#"{"type":"oauth2_refresh_token","token_url":"https://l.example/t","client_id":"c-34"}"#,
                "refresh_token",
            ),
            (
                r#"{"type":"oauth2_refresh_token","token_url":"https://l.example/t","client_id":"c","refresh_token":"r-35","refresh_token_issued_at":"yesterday"}"#,
                "refresh_token_issued_at",
            ),
        ] {
            let error = parse(raw).expect_err(raw);
            let message = error.to_string();
            assert!(matches!(error, ConnectorError::Credentials(_)), "{error:?}");
            assert!(message.contains(field), "{message}");
            assert!(message.contains("userprov/zoom"), "{message}");
            for leak in ["s-32", "r-33", "r-35", "c-31"] {
                assert!(!message.contains(leak), "{message}");
            }
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let secret = parse(
            r#"{"type":"oauth2_client_credentials","token_url":"https://l.example/t","client_id":"c","client_secret":"hush-1"}"#,
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("hush-1"));
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_life_and_at_most_a_minute() {
        assert_eq!(
            expiry_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            expiry_margin(Duration::from_secs(30)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn ages_read_like_words() {
        assert_eq!(
            describe_age(time::Duration::seconds(3 * 86_400 + 4 * 3_600 + 59)),
            "3 days 4 hours"
        );
        assert_eq!(
            describe_age(time::Duration::seconds(3_600 + 120)),
            "1 hour 2 minutes"
        );
        assert_eq!(describe_age(time::Duration::seconds(40)), "40 seconds");
    }
}
