//! How the REST connector reads its targets' answers: the exchange itself, the size cap, the
//! status classes (429 and 5xx transient with Retry-After, other 4xx permanent, redirects and
//! unreadable bodies `bad_response`) are shared with the SCIM connector
//! ([`crate::connector::exchange`]); what is REST's own is where a JSON error body keeps its
//! message.

use serde_json::Value;

use crate::connector::exchange::{Dialect, ErrorDetail};

/// How plain REST/JSON targets are spoken to and read.
pub(crate) static REST: Dialect = Dialect {
    name: "REST",
    accept: "application/json",
    content_type: "application/json",
    json_name: "JSON",
    expected_body: "JSON",
    address_settings: "base_url and the paths",
    error_detail: |body| ErrorDetail {
        detail: error_message(body),
        scim_type: None,
    },
    embedded_status: |_| None,
};

/// The error message of a JSON error body, under the names REST APIs commonly use.
fn error_message(body: &str) -> Option<String> {
    let body: Value = serde_json::from_str(body).ok()?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use reqwest::Url;

    use super::*;
    use crate::connector::ConnectorError;
    use crate::connector::exchange::Answer;
    use crate::ports::SecretValue;

    fn answer(status: u16, content_type: &str, body: &str) -> Answer {
        Answer {
            status,
            url: Url::parse("https://api.example.com/v1/users").unwrap(),
            location: None,
            content_type: Some(content_type.into()),
            retry_after: None,
            etag: None,
            body: body.into(),
            sent_authorization: SecretValue::new("Bearer tok-123456"),
            dialect: &REST,
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
