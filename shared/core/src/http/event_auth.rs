//! Authentication of `POST /salesforce/events`: an HMAC-SHA256 signature over the timestamp and
//! the body (a Named Credential cannot sign, but the Apex that makes the callout can), or an
//! API-key header (which a Named Credential's custom header adds).
//!
//! Signature: `X-Userprov-Signature: sha256=<hex of HMAC-SHA256(key, timestamp + "." + body)>`,
//! with `X-Userprov-Timestamp: <unix seconds>`. A timestamp outside the allowed clock skew is
//! refused, so a captured request cannot be replayed later.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::{Classify, ErrorClass};

pub const TIMESTAMP_HEADER: &str = "x-userprov-timestamp";
pub const SIGNATURE_HEADER: &str = "x-userprov-signature";
pub const API_KEY_HEADER: &str = "x-userprov-api-key";
const SIGNATURE_PREFIX: &str = "sha256=";

/// How event senders prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventAuthMode {
    /// HMAC-SHA256 signature of timestamp and body with the shared key.
    #[default]
    Hmac,
    /// The shared key itself in the `X-Userprov-Api-Key` header.
    ApiKey,
}

/// `[webhook.events]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventAuthConfig {
    pub auth: EventAuthMode,
    /// The secret holding the signing key or API key.
    pub secret: String,
    /// How far the signed timestamp may be from the server's clock.
    pub max_clock_skew_secs: u64,
}

impl Default for EventAuthConfig {
    fn default() -> Self {
        Self {
            auth: EventAuthMode::Hmac,
            secret: "userprov/events-key".into(),
            max_clock_skew_secs: 300,
        }
    }
}

impl EventAuthConfig {
    /// Problems as (key, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.secret.trim().is_empty() {
            problems.push((
                "secret".to_owned(),
                "name the secret holding the events key".to_owned(),
            ));
        }
        if !(1..=3600).contains(&self.max_clock_skew_secs) {
            problems.push((
                "max_clock_skew_secs".to_owned(),
                "must be between 1 and 3600".to_owned(),
            ));
        }
        problems
    }
}

/// Why a request is not authenticated. Messages never quote the key or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventAuthError {
    #[error("the X-Userprov-Timestamp header is missing")]
    MissingTimestamp,
    #[error("the X-Userprov-Timestamp header is not unix seconds")]
    BadTimestamp,
    #[error("the timestamp is more than {0} seconds away from the server's clock")]
    StaleTimestamp(u64),
    #[error("the X-Userprov-Signature header is missing")]
    MissingSignature,
    #[error("the X-Userprov-Signature header is not sha256=<64 hex digits>")]
    MalformedSignature,
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the X-Userprov-Api-Key header is missing")]
    MissingApiKey,
    #[error("the API key is wrong")]
    BadApiKey,
}

impl EventAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingTimestamp => "missing_timestamp",
            Self::BadTimestamp => "bad_timestamp",
            Self::StaleTimestamp(_) => "stale_timestamp",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::BadSignature => "bad_signature",
            Self::MissingApiKey => "missing_api_key",
            Self::BadApiKey => "bad_api_key",
        }
    }
}

impl Classify for EventAuthError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Checks the timestamp header is unix seconds within `max_skew_secs` of `now`.
pub fn check_timestamp(
    header: Option<&str>,
    now: OffsetDateTime,
    max_skew_secs: u64,
) -> Result<(), EventAuthError> {
    let raw = header.ok_or(EventAuthError::MissingTimestamp)?.trim();
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EventAuthError::BadTimestamp);
    }
    let sent: i64 = raw.parse().map_err(|_| EventAuthError::BadTimestamp)?;
    if sent.abs_diff(now.unix_timestamp()) > max_skew_secs {
        return Err(EventAuthError::StaleTimestamp(max_skew_secs));
    }
    Ok(())
}

fn mac(key: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` fails only for fixed-size-key MACs. The
    // fallback (the all-zero key) is never reached, and would match no real signature.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for a body: `sha256=<hex>`. What a sender computes.
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

/// Verifies the signature header in constant time.
pub fn verify_signature(
    key: &[u8],
    timestamp: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), EventAuthError> {
    let header = header.ok_or(EventAuthError::MissingSignature)?.trim();
    let hex_part = header
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(EventAuthError::MalformedSignature)?;
    let given = hex::decode(hex_part).map_err(|_| EventAuthError::MalformedSignature)?;
    if given.len() != 32 {
        return Err(EventAuthError::MalformedSignature);
    }
    mac(key, timestamp.trim(), body)
        .verify_slice(&given)
        .map_err(|_| EventAuthError::BadSignature)
}

/// Compares the API key header with the key in constant time.
pub fn verify_api_key(expected: &str, header: Option<&str>) -> Result<(), EventAuthError> {
    let given = header.ok_or(EventAuthError::MissingApiKey)?.trim();
    let matches: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
    if matches && !expected.is_empty() {
        Ok(())
    } else {
        Err(EventAuthError::BadApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a shared key of the org";
    const BODY: &[u8] = br#"{"events":[]}"#;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn a_signature_made_with_the_key_verifies() {
        let signature = sign(KEY, "1741968133", BODY);
        assert!(signature.starts_with("sha256="));
        assert_eq!(
            verify_signature(KEY, "1741968133", BODY, Some(&signature)),
            Ok(())
        );
    }

    #[test]
    fn a_signature_over_another_body_timestamp_or_key_is_refused() {
        let signature = sign(KEY, "1741968133", BODY);
        let refused = Err(EventAuthError::BadSignature);
        assert_eq!(
            verify_signature(KEY, "1741968133", b"{}", Some(&signature)),
            refused
        );
        assert_eq!(
            verify_signature(KEY, "1741968134", BODY, Some(&signature)),
            refused
        );
        assert_eq!(
            verify_signature(b"other", "1741968133", BODY, Some(&signature)),
            refused
        );
    }

    #[test]
    fn a_malformed_or_missing_signature_says_so() {
        assert_eq!(
            verify_signature(KEY, "1", BODY, None),
            Err(EventAuthError::MissingSignature)
        );
        for header in ["deadbeef", "sha256=zz", "sha256=abcd", "sha1=00"] {
            assert_eq!(
                verify_signature(KEY, "1", BODY, Some(header)),
                Err(EventAuthError::MalformedSignature),
                "{header}"
            );
        }
    }

    #[test]
    fn a_timestamp_outside_the_window_is_stale() {
        let now = at(1_741_968_133);
        assert_eq!(check_timestamp(Some("1741968133"), now, 300), Ok(()));
        assert_eq!(check_timestamp(Some("1741967833"), now, 300), Ok(()));
        assert_eq!(
            check_timestamp(Some("1741967832"), now, 300),
            Err(EventAuthError::StaleTimestamp(300))
        );
        assert_eq!(
            check_timestamp(Some("1741968434"), now, 300),
            Err(EventAuthError::StaleTimestamp(300))
        );
        assert_eq!(
            check_timestamp(Some("-5"), now, 300),
            Err(EventAuthError::BadTimestamp)
        );
        assert_eq!(
            check_timestamp(Some("1741968133000"), now, 300),
            Err(EventAuthError::BadTimestamp)
        );
        assert_eq!(
            check_timestamp(None, now, 300),
            Err(EventAuthError::MissingTimestamp)
        );
    }

    #[test]
    fn the_api_key_must_match_exactly() {
        assert_eq!(verify_api_key("k3y", Some("k3y")), Ok(()));
        assert_eq!(
            verify_api_key("k3y", Some("k3")),
            Err(EventAuthError::BadApiKey)
        );
        assert_eq!(verify_api_key("", Some("")), Err(EventAuthError::BadApiKey));
        assert_eq!(
            verify_api_key("k3y", None),
            Err(EventAuthError::MissingApiKey)
        );
    }
}
