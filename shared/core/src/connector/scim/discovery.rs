//! What a target says it supports: `GET /ServiceProviderConfig` (RFC 7643 §5, RFC 9865 for
//! cursors), read on first use and kept for the life of the connector (one per app per process).
//!
//! A target that describes itself badly, or not at all, gets defaults that are safe with any
//! target: PATCH is tried (a refusal falls back to PUT, and the fallback is remembered), filter
//! hits are verified, no ETags, index paging.

use reqwest::Method;
use serde_json::{Map, Value};

use super::ScimConnector;
use crate::connector::ConnectorError;

/// How a target pages through a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `startIndex` and `count` (RFC 7644 §3.4.2.4).
    Index,
    /// `cursor` and `nextCursor` (RFC 9865).
    Cursor,
}

/// The capabilities userprov acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    pub filter: bool,
    pub etag: bool,
    pub paging: Paging,
    /// The most resources one page may hold (`filter.maxResults`, `pagination.maxPageSize`).
    pub max_page_size: Option<usize>,
    /// False when these are the defaults, because the target did not describe itself.
    pub announced: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            patch: true,
            filter: true,
            etag: false,
            paging: Paging::Index,
            max_page_size: None,
            announced: false,
        }
    }
}

/// A member of a JSON object, its name compared without regard to case (as SCIM does).
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A boolean, also when a target sends it as a string.
fn flag(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn positive(value: Option<&Value>) -> Option<usize> {
    let n = match value? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    usize::try_from(n).ok().filter(|n| *n > 0)
}

/// `<feature>.supported`, when the feature is described.
fn supported(config: &Map<String, Value>, feature: &str) -> Option<bool> {
    match member(config, feature)? {
        Value::Object(fields) => flag(member(fields, "supported")),
        _ => None,
    }
}

impl Capabilities {
    /// Reads a ServiceProviderConfig; `None` when the body does not look like one.
    pub fn parse(body: &Value) -> Option<Self> {
        let config = body.as_object()?;
        let pagination = member(config, "pagination").and_then(Value::as_object);
        let described = ["patch", "filter", "etag"]
            .iter()
            .any(|f| supported(config, f).is_some())
            || pagination.is_some();
        if !described {
            return None;
        }
        let defaults = Self::default();
        let filter = member(config, "filter").and_then(Value::as_object);
        let mut max_page_size = filter.and_then(|f| positive(member(f, "maxResults")));
        let mut paging = Paging::Index;
        if let Some(pagination) = pagination {
            let cursor = flag(member(pagination, "cursor")).unwrap_or(false);
            // RFC 9865 §2.4: a target that says nothing about index paging still has it.
            let index = flag(member(pagination, "index")).unwrap_or(true);
            let prefers_cursor = member(pagination, "defaultPaginationMethod")
                .and_then(Value::as_str)
                .is_some_and(|m| m.eq_ignore_ascii_case("cursor"));
            if cursor && (!index || prefers_cursor) {
                paging = Paging::Cursor;
            }
            if let Some(page) = positive(member(pagination, "maxPageSize")) {
                max_page_size = Some(max_page_size.map_or(page, |m| m.min(page)));
            }
        }
        Some(Self {
            patch: supported(config, "patch").unwrap_or(defaults.patch),
            filter: supported(config, "filter").unwrap_or(defaults.filter),
            etag: supported(config, "etag").unwrap_or(defaults.etag),
            paging,
            max_page_size,
            announced: true,
        })
    }

    /// The `count` to ask for: `wanted`, within what the target allows.
    pub fn page_size(&self, wanted: usize) -> usize {
        let wanted = wanted.clamp(1, 1000);
        self.max_page_size.map_or(wanted, |max| wanted.min(max))
    }
}

/// Errors that say the target is unwell right now, rather than that it has no usable
/// ServiceProviderConfig: those fail the call (and discovery is tried again next time).
fn is_passing(error: &ConnectorError) -> bool {
    matches!(
        error,
        ConnectorError::Throttled { .. }
            | ConnectorError::RateLimited { .. }
            | ConnectorError::ServerError { .. }
            | ConnectorError::Timeout
            | ConnectorError::Network(_)
            | ConnectorError::Unauthorized
            | ConnectorError::Credentials(_)
            | ConnectorError::Reauthorize { .. }
            | ConnectorError::Config(_)
    )
}

impl ScimConnector {
    /// The target's capabilities, read once and then kept.
    pub async fn capabilities(&self) -> Result<Capabilities, ConnectorError> {
        self.capabilities
            .get_or_try_init(|| self.discover())
            .await
            .copied()
    }

    async fn discover(&self) -> Result<Capabilities, ConnectorError> {
        let url = format!("{}/ServiceProviderConfig", self.base_url);
        let why_not = match self.send(Method::GET, &url, None).await {
            Ok(answer) if answer.is_success() => match answer.json() {
                Ok(body) => match Capabilities::parse(&body) {
                    Some(capabilities) => {
                        tracing::info!(
                            base_url = %self.base_url,
                            patch = capabilities.patch,
                            filter = capabilities.filter,
                            etag = capabilities.etag,
                            paging = ?capabilities.paging,
                            max_page_size = capabilities.max_page_size,
                            "read the target's ServiceProviderConfig"
                        );
                        return Ok(capabilities);
                    }
                    None => {
                        "the answer does not describe patch, filter, etag or pagination".to_owned()
                    }
                },
                Err(error) => error.to_string(),
            },
            Ok(answer) => {
                let error = answer.failure();
                if is_passing(&error) {
                    return Err(error);
                }
                format!("HTTP {}", answer.status)
            }
            Err(error) if is_passing(&error) => return Err(error),
            Err(error) => error.to_string(),
        };
        // Logged once: the defaults are kept for the life of the process.
        tracing::warn!(
            base_url = %self.base_url,
            reason = %why_not,
            "the target has no usable /ServiceProviderConfig; assuming PATCH (with a PUT fallback), \
             verified filters, no ETags and index paging"
        );
        Ok(Capabilities::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn a_constrained_target_is_read_from_its_config() {
        let config = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "Patch": {"supported": "false"},
            "filter": {"supported": false, "maxResults": 50},
            "etag": {"supported": true},
            "pagination": {"cursor": true, "index": false, "maxPageSize": 20}
        });
        assert_eq!(
            Capabilities::parse(&config),
            Some(Capabilities {
                patch: false,
                filter: false,
                etag: true,
                paging: Paging::Cursor,
                max_page_size: Some(20),
                announced: true,
            })
        );
    }

    #[test]
    fn cursor_paging_is_used_when_it_is_the_only_way_or_the_targets_default() {
        let paging = |pagination: Value| {
            Capabilities::parse(&json!({"pagination": pagination}))
                .unwrap()
                .paging
        };
        assert_eq!(paging(json!({"cursor": true})), Paging::Index);
        assert_eq!(
            paging(json!({"cursor": true, "defaultPaginationMethod": "cursor"})),
            Paging::Cursor
        );
        assert_eq!(
            paging(json!({"cursor": true, "index": false})),
            Paging::Cursor
        );
        assert_eq!(
            paging(json!({"cursor": false, "index": true})),
            Paging::Index
        );
    }

    #[test]
    fn garbage_is_not_a_config() {
        for body in [
            json!([]),
            json!("ServiceProviderConfig"),
            json!({"id": "u1", "userName": "x"}),
            json!({"patch": "yes"}),
        ] {
            assert_eq!(Capabilities::parse(&body), None, "{body}");
        }
    }

    #[test]
    fn the_page_size_stays_within_the_targets_limit() {
        let limited = Capabilities {
            max_page_size: Some(2),
            ..Capabilities::default()
        };
        assert_eq!(limited.page_size(100), 2);
        assert_eq!(Capabilities::default().page_size(100), 100);
        assert_eq!(Capabilities::default().page_size(0), 1);
    }
}
