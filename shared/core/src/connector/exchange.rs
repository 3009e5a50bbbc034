//! One HTTP exchange with a target, shared by the SCIM and the REST connectors: the request goes
//! out with the credentials (refreshed and sent once more after a 401), its rate-limit permit
//! taken last (and a 429 widens the limit's margin), and the answer is read with the same
//! distrust by both: size-capped while it streams in, redirects never followed, HTML and
//! non-JSON bodies refused, statuses turned into the same error classes, and the credentials
//! scrubbed from anything of the answer quoted in an error.
//! What differs between the two ([`Dialect`]) is the media type, how an error body is read, and
//! the wording of the hints.

use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH, LOCATION, RETRY_AFTER,
};
use reqwest::{Method, Url};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use super::ConnectorError;
use super::rate_limit::RateLimiter;
use crate::credentials::AuthProvider;
use crate::log::{RESPONSE_EXCERPT_BYTES, truncate_response};
use crate::ports::SecretValue;

/// The largest answer read from a target; a User or a page of them is far smaller.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
pub const USER_AGENT: &str = concat!("userprov/", env!("CARGO_PKG_VERSION"));
/// How much of an unexpected answer goes into an error's short detail.
const DETAIL_CHARS: usize = 200;

/// A reqwest client suitable for targets: rustls, no redirects followed (a redirect is a
/// BadResponse naming the Location host, and no credentials are ever sent to another host),
/// User-Agent "userprov/<version>", connect+request timeouts.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| {
            ConnectorError::Config(format!("cannot build the HTTP client: {}", error_chain(&e)))
        })
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let http_date = format_description!(
        "[weekday repr:short case_sensitive:false], [day] [month repr:short case_sensitive:false] [year] \
         [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(value, &http_date)
        .ok()?
        .assume_utc();
    // A date in the past means "now".
    Some(Duration::try_from(when - now).unwrap_or(Duration::ZERO))
}

/// `error` and its sources, for messages (reqwest's own text alone rarely says why).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A failed exchange; `address_settings` names the settings a request that cannot be built
/// comes from.
fn transport_error(error: reqwest::Error, address_settings: &str) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::Timeout
    } else if error.is_builder() {
        ConnectorError::Config(format!(
            "cannot build the request, check {address_settings}: {}",
            error_chain(&error)
        ))
    } else {
        ConnectorError::Network(error_chain(&error))
    }
}

/// Removes the Authorization value, and the credential inside it, from text a target sent.
/// A credential too short to be a real secret is left alone rather than blotting out every
/// occurrence of a common letter.
pub(crate) fn scrub(text: &str, authorization: &SecretValue) -> String {
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

/// What an error body says, as far as a dialect can read it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorDetail {
    pub detail: Option<String>,
    pub scim_type: Option<String>,
}

/// How one kind of connector speaks to its targets and reads their answers.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// For logs: "SCIM", "REST".
    pub name: &'static str,
    pub accept: &'static str,
    pub content_type: &'static str,
    /// What the bodies should be: "SCIM JSON", "JSON".
    pub json_name: &'static str,
    /// What an answer that must carry something should have held: "a resource", "JSON".
    pub expected_body: &'static str,
    /// The settings to fix when the answer is a web page or a redirect.
    pub address_settings: &'static str,
    pub error_detail: fn(&str) -> ErrorDetail,
    /// A status a success answer's body claims instead (some SCIM targets answer 200 with an
    /// error message); believed when it is an error status.
    pub embedded_status: fn(&str) -> Option<u16>,
}

/// A target's answer, read in full (up to [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub url: Url,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<Duration>,
    /// The `ETag` header: the version of the resource in the answer.
    pub etag: Option<String>,
    pub body: String,
    /// What was sent as Authorization, scrubbed from any text of the answer quoted in an error.
    pub sent_authorization: SecretValue,
    pub dialect: &'static Dialect,
}

impl Answer {
    /// Reads the answer, refusing one larger than [`MAX_RESPONSE_BYTES`] as soon as it says so
    /// or grows past it: a huge body is never held in memory whole.
    pub async fn read(
        mut response: reqwest::Response,
        authorization: &SecretValue,
        dialect: &'static Dialect,
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
        let etag = header(ETAG);
        let retry_after =
            header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, OffsetDateTime::now_utc()));
        let mut status = response.status().as_u16();
        let url = response.url().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(e, dialect.address_settings))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large(format!("more than {MAX_RESPONSE_BYTES}")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if (200..300).contains(&status)
            && let Some(embedded) = (dialect.embedded_status)(&body).filter(|s| *s >= 400)
        {
            status = embedded;
        }
        Ok(Self {
            status,
            url,
            location,
            content_type,
            retry_after,
            etag,
            body,
            sent_authorization: authorization.clone(),
            dialect,
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
        let dialect = self.dialect;
        if self.is_html() {
            return Err(ConnectorError::BadResponse(format!(
                "HTTP {status} with an HTML page instead of {}; check {}",
                dialect.json_name, dialect.address_settings
            )));
        }
        if self.body.trim().is_empty() {
            return Err(ConnectorError::BadResponse(format!(
                "HTTP {status} with an empty body where {} was expected",
                dialect.expected_body
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

    /// The start of the body, safe to keep with an error.
    pub fn body_excerpt(&self) -> String {
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

    /// The error a non-success answer stands for. Callers handle 404 first where it means
    /// "no such account".
    pub fn failure(&self) -> ConnectorError {
        let read = (self.dialect.error_detail)(&self.body);
        let detail = read
            .detail
            .map(|d| self.quotable(&d))
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
                scim_type: read.scim_type,
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
             configured host): set {} to the final address",
            self.status, self.dialect.address_settings
        )
    }
}

/// What a connector needs to send requests to its target.
pub(crate) struct Exchange<'a> {
    pub http: &'a reqwest::Client,
    pub timeout: Duration,
    pub auth: &'a dyn AuthProvider,
    pub rate_limit: Option<&'a RateLimiter>,
    pub dialect: &'static Dialect,
}

impl Exchange<'_> {
    /// One exchange, after the app's rate limit; after a 401 the credentials are refreshed and
    /// the request sent once more.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        if_match: Option<&HeaderValue>,
    ) -> Result<Answer, ConnectorError> {
        let payload = body.map(Value::to_string);
        let mut refreshed = false;
        loop {
            let authorization = self.auth.authorization().await?;
            let mut header_value = HeaderValue::from_str(authorization.expose()).map_err(|_| {
                ConnectorError::Credentials(
                    "the credentials do not form a valid Authorization header".into(),
                )
            })?;
            header_value.set_sensitive(true);
            let mut request = self
                .http
                .request(method.clone(), url)
                .timeout(self.timeout)
                .header(AUTHORIZATION, header_value)
                .header(ACCEPT, self.dialect.accept);
            if let Some(version) = if_match {
                request = request.header(IF_MATCH, version.clone());
            }
            if let Some(payload) = &payload {
                request = request
                    .header(CONTENT_TYPE, self.dialect.content_type)
                    .body(payload.clone());
            }
            // The permit is taken last, right before the request is written: the instant the
            // rate limit counts is then as close as it can be to the target's count.
            let permit = match self.rate_limit {
                Some(limiter) => Some(limiter.acquire().await?),
                None => None,
            };
            let started = Instant::now();
            let response = request.send().await;
            // The target has counted the request by now, if at all.
            drop(permit);
            let response =
                response.map_err(|e| transport_error(e, self.dialect.address_settings))?;
            let answer = Answer::read(response, &authorization, self.dialect).await?;
            if answer.status == 429
                && let Some(limiter) = self.rate_limit
            {
                limiter.throttled();
            }
            tracing::debug!(
                method = %method,
                path = answer.url.path(),
                status = answer.status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "{} exchange",
                self.dialect.name
            );
            if answer.status == 401 && !refreshed {
                tracing::info!(
                    path = answer.url.path(),
                    "the target refused the credentials; refreshing them once"
                );
                refreshed = true;
                self.auth.refresh().await?;
                continue;
            }
            return Ok(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use time::macros::datetime;

    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = datetime!(2026-11-28 13:00:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 13:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 12:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn a_credential_too_short_to_be_a_secret_is_not_blotted_out() {
        let short = scrub("a tiny token t", &SecretValue::new("Bearer t"));
        assert_eq!(short, "a tiny token t");
        let long = scrub("echo: tok-123456", &SecretValue::new("Bearer tok-123456"));
        assert_eq!(long, "echo: <redacted>");
    }
}
