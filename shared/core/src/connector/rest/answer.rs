//! Reading a REST target's answer and turning a failed one into a classified error, with the
//! same classes as the SCIM connector: 429 and 5xx are transient (with Retry-After), other 4xx
//! permanent, redirects and unreadable bodies `bad_response`.

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;
use std::time::Duration;
use time::OffsetDateTime;

use crate::connector::ConnectorError;
use crate::connector::scim::{MAX_RESPONSE_BYTES, parse_retry_after};
use crate::log::{RESPONSE_EXCERPT_BYTES, truncate_response};
use crate::ports::SecretValue;

/// How much of an unexpected answer goes into an error's short detail.
const DETAIL_CHARS: usize = 200;

/// A target's answer, read in full (up to [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub url: Url,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: String,
    /// What was sent as Authorization, scrubbed from any text of the answer quoted in an error.
    pub sent_authorization: SecretValue,
}

impl Answer {
    pub async fn read(
        mut response: reqwest::Response,
        authorization: &SecretValue,
    ) -> Result<Self, ConnectorError> {
        let too_large = |size: String| {
            ConnectorError::BadResponse(format!(
                "the answer is {size} bytes, over the 1 MiB userprov reads"
            ))
        };
        if let Some(length) = response.content_length()
            && length > MAX_RESPONSE_BYTES as u64
        {
            return Err(too_large(length.to_string()));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(LOCATION);
        let content_type = header(CONTENT_TYPE);
        let retry_after =
            header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, OffsetDateTime::now_utc()));
        let status = response.status().as_u16();
        let url = response.url().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(super::transport_error)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large(format!("more than {MAX_RESPONSE_BYTES}")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Self {
            status,
            url,
            location,
            content_type,
            retry_after,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            sent_authorization: authorization.clone(),
        })
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn is_html(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("html"))
            || self.body.trim_start().starts_with('<')
    }

    /// The body as JSON, for calls whose answer must carry something.
    pub fn json(&self) -> Result<Value, ConnectorError> {
        let status = self.status;
        if self.is_html() {
            return Err(ConnectorError::BadResponse(format!(
                "HTTP {status} with an HTML page instead of JSON; check base_url and the paths"
            )));
        }
        if self.body.trim().is_empty() {
            return Err(ConnectorError::BadResponse(format!(
                "HTTP {status} with an empty body where JSON was expected"
            )));
        }
        serde_json::from_str(&self.body).map_err(|_| {
            ConnectorError::BadResponse(format!(
                "HTTP {status} with a body that is not JSON: {}",
                self.excerpt()
            ))
        })
    }

    /// `text` from the answer, safe to quote in an error.
    fn quotable(&self, text: &str) -> String {
        scrub(text, &self.sent_authorization)
    }

    fn body_excerpt(&self) -> String {
        truncate_response(&self.quotable(&self.body), RESPONSE_EXCERPT_BYTES)
    }

    /// A short, one-line view of the body for error details.
    fn excerpt(&self) -> String {
        if self.body.trim().is_empty() {
            return "(empty body)".into();
        }
        if self.is_html() {
            return "(an HTML page)".into();
        }
        let line: String = self
            .quotable(&self.body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut short: String = line.chars().take(DETAIL_CHARS).collect();
        if short.len() < line.len() {
            short.push('…');
        }
        short
    }

    /// The error message of a JSON error body, under the names REST APIs commonly use.
    fn error_message(&self) -> Option<String> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        let text = |v: &Value| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        ["message", "detail", "error_description", "error", "title"]
            .iter()
            .find_map(|name| body.get(*name).and_then(text))
            .or_else(|| {
                body.pointer("/errors/0/message")
                    .or_else(|| body.pointer("/error/message"))
                    .and_then(text)
            })
    }

    /// The error a non-success answer stands for. Callers handle 404 first where it means
    /// "no such account".
    pub fn failure(&self) -> ConnectorError {
        let detail = self
            .error_message()
            .map(|m| self.quotable(&m))
            .unwrap_or_else(|| self.excerpt());
        let status = self.status;
        match status {
            300..=399 => ConnectorError::BadResponse(self.redirect_message()),
            401 => ConnectorError::Unauthorized,
            409 => ConnectorError::Conflict { detail },
            429 => ConnectorError::Throttled {
                status,
                retry_after: self.retry_after,
            },
            500..=599 => ConnectorError::ServerError {
                status,
                detail,
                retry_after: self.retry_after,
            },
            200..=299 => ConnectorError::BadResponse(format!(
                "HTTP {status} where it was not expected: {detail}"
            )),
            _ => ConnectorError::Rejected {
                status,
                scim_type: None,
                detail,
                body: self.body_excerpt(),
            },
        }
    }

    fn redirect_message(&self) -> String {
        let target = self.location.as_deref().and_then(|l| self.url.join(l).ok());
        let place = match target.as_ref().and_then(Url::host_str) {
            Some(host) if Some(host) == self.url.host_str() => {
                format!("another address on the same host {host}")
            }
            Some(host) => format!("host {host}"),
            None => "an address it did not give".into(),
        };
        format!(
            "HTTP {} redirect to {place}; userprov does not follow redirects (credentials stay with the \
             configured host): set base_url and the paths to the final address",
            self.status
        )
    }
}

/// Removes the Authorization value, and the credential inside it, from text a target sent.
/// A credential too short to be a real secret is left alone rather than blotting out every
/// occurrence of a common letter.
fn scrub(text: &str, authorization: &SecretValue) -> String {
    const SHORTEST_SCRUBBED: usize = 6;
    let header = authorization.expose();
    let credential = header.split_once(' ').map_or(header, |(_, c)| c).trim();
    let mut text = text.to_owned();
    for secret in [header, credential] {
        if secret.len() >= SHORTEST_SCRUBBED && text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn answer(status: u16, content_type: &str, body: &str) -> Answer {
        Answer {
            status,
            url: Url::parse("https://api.example.com/v1/users").unwrap(),
            location: None,
            content_type: Some(content_type.into()),
            retry_after: None,
            body: body.into(),
            sent_authorization: SecretValue::new("Bearer tok-123456"),
        }
    }

    #[test]
    fn statuses_map_to_the_same_classes_as_scim() {
        assert!(matches!(
            answer(422, "application/json", r#"{"message":"email is invalid"}"#).failure(),
            ConnectorError::Rejected { status: 422, detail, .. } if detail == "email is invalid"
        ));
        assert!(matches!(
            answer(409, "application/json", r#"{"errors":[{"message":"email taken"}]}"#).failure(),
            ConnectorError::Conflict { detail } if detail == "email taken"
        ));
        assert_eq!(
            answer(401, "application/json", "").failure(),
            ConnectorError::Unauthorized
        );
        let mut throttled = answer(429, "text/plain", "slow down");
        throttled.retry_after = Some(Duration::from_secs(3));
        assert_eq!(
            throttled.failure(),
            ConnectorError::Throttled {
                status: 429,
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            answer(502, "text/html", "<html>Bad Gateway</html>").failure(),
            ConnectorError::ServerError { status: 502, detail, .. } if detail == "(an HTML page)"
        ));
    }

    #[test]
    fn html_garbage_and_empty_bodies_are_bad_responses() {
        for body in ["<html>Sign in</html>", "{not json", "", "  \n"] {
            assert!(
                matches!(
                    answer(200, "application/json", body).json(),
                    Err(ConnectorError::BadResponse(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_redirect_to_another_host_is_refused_and_named() {
        let mut moved = answer(307, "text/plain", "");
        moved.location = Some("https://login.elsewhere.example/sso".into());
        let ConnectorError::BadResponse(message) = moved.failure() else {
            panic!("not BadResponse")
        };
        assert!(
            message.contains("host login.elsewhere.example"),
            "{message}"
        );
    }

    #[test]
    fn credentials_echoed_in_an_error_are_scrubbed() {
        let echoed = r#"{"message":"bad token tok-123456"}"#;
        let ConnectorError::Rejected { detail, body, .. } =
            answer(400, "application/json", echoed).failure()
        else {
            panic!("not Rejected")
        };
        assert_eq!(detail, "bad token <redacted>");
        assert!(!body.contains("tok-123456"), "{body}");
    }
}
