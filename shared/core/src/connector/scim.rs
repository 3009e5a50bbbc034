//! The SCIM 2.0 connector (RFC 7643 / RFC 7644) for User resources.
//!
//! It trusts targets little: hits of a filter are verified against every match key (some servers
//! ignore filters), redirects are never followed (credentials stay with the configured host),
//! answers are size-capped, and the credentials never appear in an error, even when a target
//! echoes them back.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value, json};

use super::exchange::{Dialect, ErrorDetail, Exchange};
use super::rate_limit::RateLimiter;
use super::{Connector, ConnectorError, GroupOptions, MatchKey, Reply, TargetAccount};
use crate::credentials::AuthProvider;
use crate::mapping::TargetPath;

pub(crate) use super::exchange::Answer;
pub use super::exchange::{MAX_RESPONSE_BYTES, USER_AGENT, http_client, parse_retry_after};

pub mod discovery;
pub mod groups;
pub mod listing;

use discovery::Capabilities;

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The PATCH body that sets a user's `active` flag.
pub fn active_patch(active: bool) -> Value {
    json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": active}}]
    })
}

/// The query string of a filtered `GET /Users`.
pub fn filter_query(filter: &str) -> String {
    format!("?filter={}", urlencoding::encode(filter))
}

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// How SCIM targets are spoken to and read.
static SCIM: Dialect = Dialect {
    name: "SCIM",
    accept: "application/scim+json, application/json",
    content_type: SCIM_MEDIA_TYPE,
    json_name: "SCIM JSON",
    expected_body: "a resource",
    address_settings: "base_url",
    error_detail: |body| {
        let read = ScimErrorBody::parse(body);
        ErrorDetail {
            detail: read.detail,
            scim_type: read.scim_type,
        }
    },
    embedded_status: |body| {
        ScimErrorBody::is_error_message(body)
            .then(|| ScimErrorBody::parse(body).status)
            .flatten()
    },
};

/// Where a SCIM target is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSettings {
    /// The SCIM base URL, e.g. `https://scim.example.com/v2` (`/Users` is appended).
    pub base_url: String,
    /// The limit for one HTTP exchange, answer included.
    pub timeout: Duration,
}

pub struct ScimConnector {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    auth: Arc<dyn AuthProvider>,
    rate_limit: Option<Arc<RateLimiter>>,
    /// Read from `/ServiceProviderConfig` on first use.
    capabilities: tokio::sync::OnceCell<Capabilities>,
    /// The target refused a PATCH (405/501) although it announced it: PUT from now on.
    patch_refused: AtomicBool,
    /// The target refused a filter (501) although it announced it: read pages from now on.
    filter_refused: AtomicBool,
}

impl fmt::Debug for ScimConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimConnector")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The parts of a SCIM error body userprov uses. `status` may be a string or a number, and
/// `scimType` is often missing.
#[derive(Debug, Default, PartialEq, Eq)]
struct ScimErrorBody {
    status: Option<u16>,
    scim_type: Option<String>,
    detail: Option<String>,
}

impl ScimErrorBody {
    fn parse(body: &str) -> Self {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(body) else {
            return Self::default();
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let status = match fields.get("status") {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        Self {
            status,
            scim_type: text("scimType"),
            detail: text("detail"),
        }
    }

    fn is_error_message(body: &str) -> bool {
        body.contains(ERROR_SCHEMA)
    }
}

/// SCIM compares these attributes without regard to case (RFC 7643 `caseExact: false`).
fn compares_ignoring_case(attribute: &str) -> bool {
    let first = attribute.split(['.', '[']).next().unwrap_or_default();
    first.eq_ignore_ascii_case("userName") || first.eq_ignore_ascii_case("emails")
}

/// True when the resource holds `key.value` at `path`.
fn holds(resource: &Value, path: &TargetPath, key: &MatchKey) -> bool {
    let found = match path.read(resource) {
        Some(Value::String(s)) => s.clone(),
        Some(value @ (Value::Number(_) | Value::Bool(_))) => value.to_string(),
        _ => return false,
    };
    if compares_ignoring_case(&key.attribute) {
        found.to_lowercase() == key.value.to_lowercase()
    } else {
        found == key.value
    }
}

/// The account a User resource describes.
fn account_from(resource: Value) -> Result<TargetAccount, ConnectorError> {
    if !resource.is_object() {
        return Err(ConnectorError::BadResponse(
            "the answer is not a SCIM resource (not a JSON object)".into(),
        ));
    }
    let id = match resource.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ConnectorError::BadResponse(
                "the resource in the answer has no \"id\"".into(),
            ));
        }
    };
    let active = match resource.get("active") {
        Some(Value::Bool(b)) => Some(*b),
        // Some targets send booleans as strings.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    Ok(TargetAccount {
        id,
        active,
        resource,
    })
}

/// `meta.version` of a resource, for targets that send no `ETag` header.
fn version_of(resource: &Value) -> Option<String> {
    resource
        .get("meta")?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

/// The resources of a ListResponse. A missing `Resources` is fine only when nothing matched.
fn list_resources(list: Value) -> Result<Vec<Value>, ConnectorError> {
    let Value::Object(mut fields) = list else {
        return Err(ConnectorError::BadResponse(
            "the list answer is not a JSON object".into(),
        ));
    };
    // Attribute names are case-insensitive in SCIM.
    let key = fields
        .keys()
        .find(|k| k.eq_ignore_ascii_case("Resources"))
        .cloned();
    let total = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("totalResults"))
        .and_then(|(_, v)| v.as_u64());
    match key.and_then(|k| fields.remove(&k)) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) | None if total == Some(0) => Ok(Vec::new()),
        Some(Value::Null) | None => Err(ConnectorError::BadResponse(
            "the list answer has neither \"Resources\" nor \"totalResults\": 0".into(),
        )),
        Some(_) => Err(ConnectorError::BadResponse(
            "\"Resources\" in the list answer is not an array".into(),
        )),
    }
}

fn reply<T>(value: T, answer: &Answer) -> Reply<T> {
    Reply {
        value,
        http_status: Some(answer.status),
    }
}

impl ScimConnector {
    pub fn new(http: reqwest::Client, settings: ScimSettings, auth: Arc<dyn AuthProvider>) -> Self {
        let base_url = settings.base_url.trim().trim_end_matches('/').to_owned();
        Self {
            http,
            base_url,
            timeout: settings.timeout,
            auth,
            rate_limit: None,
            capabilities: tokio::sync::OnceCell::new(),
            patch_refused: AtomicBool::new(false),
            filter_refused: AtomicBool::new(false),
        }
    }

    /// Sends every request through `limiter` (shared by all the app's calls in the process).
    pub fn with_rate_limit(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.rate_limit = Some(limiter);
        self
    }

    fn users_url(&self) -> String {
        format!("{}/Users", self.base_url)
    }

    fn user_url(&self, id: &str) -> String {
        format!("{}/Users/{}", self.base_url, urlencoding::encode(id))
    }

    /// One exchange with the target; after a 401 the credentials are refreshed and the request
    /// sent once more.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ConnectorError> {
        self.send_if_match(method, url, body, None).await
    }

    /// [`Self::send`] with an `If-Match` header when a version is given.
    async fn send_if_match(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, ConnectorError> {
        let if_match = if_match
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| {
                ConnectorError::BadResponse(
                    "the target's resource version cannot be sent back as If-Match".into(),
                )
            })?;
        Exchange {
            http: &self.http,
            timeout: self.timeout,
            auth: self.auth.as_ref(),
            rate_limit: self.rate_limit.as_deref(),
            dialect: &SCIM,
        }
        .send(method, url, body, if_match.as_ref())
        .await
    }

    /// PUTs the full resource; `if_match` is the version it replaces, when the target uses ETags.
    async fn put_user(
        &self,
        id: &str,
        resource: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, ConnectorError> {
        let mut fields = resource;
        fields.insert("id".into(), Value::String(id.to_owned()));
        // `meta` is read-only; strict servers refuse a PUT that tries to set it.
        fields.remove("meta");
        self.send_if_match(
            Method::PUT,
            &self.user_url(id),
            Some(&Value::Object(fields)),
            if_match,
        )
        .await
    }

    /// The account as it is now, with its version (the `ETag` header, else `meta.version`).
    async fn read_user(
        &self,
        id: &str,
    ) -> Result<(Map<String, Value>, Option<String>), ConnectorError> {
        let answer = self.send(Method::GET, &self.user_url(id), None).await?;
        if answer.status == 404 {
            return Err(ConnectorError::NotFound { id: id.to_owned() });
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let resource = answer.json()?;
        let version = answer.etag.clone().or_else(|| version_of(&resource));
        match resource {
            Value::Object(fields) => Ok((fields, version)),
            _ => Err(ConnectorError::BadResponse(
                "the answer is not a SCIM resource (not a JSON object)".into(),
            )),
        }
    }

    /// Replaces the account with what `build` makes of its current state. A target with ETags
    /// gets `If-Match` with the version read; on 412 (changed meanwhile) the account is read
    /// again and the PUT sent once more, and a second 412 is a [`ConnectorError::VersionConflict`].
    /// Without ETags the account is read only when `build` needs it.
    async fn replace_user(
        &self,
        id: &str,
        needs_current: bool,
        build: impl Fn(Map<String, Value>) -> Map<String, Value>,
    ) -> Result<Reply<()>, ConnectorError> {
        let etag = self.capabilities().await?.etag;
        for _ in 0..2 {
            let (current, version) = if etag || needs_current {
                self.read_user(id).await?
            } else {
                (Map::new(), None)
            };
            let version = version.filter(|_| etag);
            let answer = self
                .put_user(id, build(current), version.as_deref())
                .await?;
            match answer.status {
                412 if version.is_some() => {
                    tracing::info!(
                        path = answer.url.path(),
                        "the account changed in the target since it was read (HTTP 412); reading it again"
                    );
                }
                404 => return Err(ConnectorError::NotFound { id: id.to_owned() }),
                _ if answer.is_success() => return Ok(reply((), &answer)),
                _ => return Err(answer.failure()),
            }
        }
        Err(ConnectorError::VersionConflict { id: id.to_owned() })
    }

    /// For targets without PATCH: read the account and PUT it back with the new flag.
    async fn set_active_by_put(&self, id: &str, active: bool) -> Result<Reply<()>, ConnectorError> {
        self.replace_user(id, true, |mut resource| {
            resource.insert("active".into(), Value::Bool(active));
            resource
        })
        .await
    }

    /// False when PATCH is known not to work here (announced, or learnt from a refusal).
    async fn uses_patch(&self) -> Result<bool, ConnectorError> {
        Ok(self.capabilities().await?.patch && !self.patch_refused.load(Ordering::Relaxed))
    }

    /// Remembers a refused PATCH, so later calls go straight to PUT.
    fn patch_was_refused(&self, status: u16) {
        if !self.patch_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                base_url = %self.base_url,
                status,
                "the target refused PATCH although it did not say so; using PUT from now on"
            );
        }
    }

    /// Finds accounts with the first key as a filter; `None` when the target cannot filter
    /// (501) or ignores the filter, so the caller reads the users page by page instead.
    async fn find_filtered(
        &self,
        first_path: &TargetPath,
        first_key: &MatchKey,
    ) -> Result<Option<(Vec<Value>, Answer)>, ConnectorError> {
        let filter = first_path.filter_for(&first_key.value);
        let url = format!("{}{}", self.users_url(), filter_query(&filter));
        let answer = self.send(Method::GET, &url, None).await?;
        if answer.status == 404 {
            return Ok(Some((Vec::new(), answer)));
        }
        if answer.status == 501 {
            if !self.filter_refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    base_url = %self.base_url,
                    "the target refused a filter although it did not say so; reading pages from now on"
                );
            }
            return Ok(None);
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let resources = list_resources(answer.json()?)?;
        if resources.iter().any(|r| !holds(r, first_path, first_key)) {
            // It ignored the filter: the account may be on another page.
            tracing::info!(
                base_url = %self.base_url,
                "the target ignored a filter; reading its users page by page"
            );
            return Ok(None);
        }
        Ok(Some((resources, answer)))
    }
}

#[async_trait]
impl Connector for ScimConnector {
    async fn find(
        &self,
        keys: &[MatchKey],
    ) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            let path = TargetPath::parse(&key.attribute).map_err(|e| {
                ConnectorError::Config(format!("match key {:?}: {e}", key.attribute))
            })?;
            paths.push((path, key));
        }
        let Some((first_path, first_key)) = paths.first() else {
            return Err(ConnectorError::Config(
                "finding an account needs at least one match key".into(),
            ));
        };
        let capabilities = self.capabilities().await?;
        let filtered = if capabilities.filter && !self.filter_refused.load(Ordering::Relaxed) {
            self.find_filtered(first_path, first_key).await?
        } else {
            None
        };
        let (candidates, status, body) = match filtered {
            Some((resources, answer)) => (resources, answer.status, answer.body_excerpt()),
            None => {
                // No usable filter: every user is read and matched here.
                let mut candidates = Vec::new();
                let status = self
                    .walk_users(listing::FIND_PAGE_SIZE, |page| {
                        candidates.extend(
                            page.into_iter()
                                .filter(|r| paths.iter().all(|(path, key)| holds(r, path, key))),
                        );
                        Ok(())
                    })
                    .await?;
                (candidates, status, String::new())
            }
        };
        let mut matches: Vec<TargetAccount> = Vec::new();
        for resource in candidates {
            if !paths.iter().all(|(path, key)| holds(&resource, path, key)) {
                continue;
            }
            let account = account_from(resource)?;
            if !matches.iter().any(|m| m.id == account.id) {
                matches.push(account);
            }
        }
        if matches.len() > 1 {
            let described: Vec<String> = keys
                .iter()
                .map(|k| format!("{} = {:?}", k.attribute, k.value))
                .collect();
            let ids: Vec<&str> = matches.iter().map(|m| m.id.as_str()).collect();
            return Err(ConnectorError::Rejected {
                status,
                scim_type: Some("ambiguous".into()),
                detail: format!(
                    "{} accounts match {} (ids {}); userprov will not pick one: resolve it in the target",
                    matches.len(),
                    described.join(" and "),
                    ids.join(", ")
                ),
                body,
            });
        }
        Ok(Reply {
            value: matches.pop(),
            http_status: Some(status),
        })
    }

    async fn get(&self, id: &str) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let answer = self.send(Method::GET, &self.user_url(id), None).await?;
        if answer.status == 404 {
            return Ok(reply(None, &answer));
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let account = account_from(answer.json()?)?;
        if account.id != id {
            return Err(ConnectorError::BadResponse(format!(
                "asked for account {id:?}, the target answered with account {:?}",
                account.id
            )));
        }
        Ok(reply(Some(account), &answer))
    }

    async fn create(&self, resource: &Value) -> Result<Reply<TargetAccount>, ConnectorError> {
        if !resource.is_object() {
            return Err(ConnectorError::Config(
                "the resource to send is not a JSON object".into(),
            ));
        }
        let answer = self
            .send(Method::POST, &self.users_url(), Some(resource))
            .await?;
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let account = account_from(answer.json()?)?;
        Ok(reply(account, &answer))
    }

    async fn update(&self, id: &str, resource: &Value) -> Result<Reply<()>, ConnectorError> {
        let Value::Object(fields) = resource else {
            return Err(ConnectorError::Config(
                "the resource to send is not a JSON object".into(),
            ));
        };
        self.replace_user(id, false, |_| fields.clone()).await
    }

    async fn set_active(&self, id: &str, active: bool) -> Result<Reply<()>, ConnectorError> {
        if !self.uses_patch().await? {
            return self.set_active_by_put(id, active).await;
        }
        let patch = active_patch(active);
        let answer = self
            .send(Method::PATCH, &self.user_url(id), Some(&patch))
            .await?;
        match answer.status {
            404 => Err(ConnectorError::NotFound { id: id.to_owned() }),
            405 | 501 => {
                self.patch_was_refused(answer.status);
                self.set_active_by_put(id, active).await
            }
            _ if answer.is_success() => Ok(reply((), &answer)),
            _ => Err(answer.failure()),
        }
    }

    async fn delete(&self, id: &str) -> Result<Reply<()>, ConnectorError> {
        let answer = self.send(Method::DELETE, &self.user_url(id), None).await?;
        match answer.status {
            404 => Err(ConnectorError::NotFound { id: id.to_owned() }),
            _ if answer.is_success() => Ok(reply((), &answer)),
            _ => Err(answer.failure()),
        }
    }

    async fn group_id(
        &self,
        display_name: &str,
        create: bool,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        self.find_or_create_group(display_name, create).await
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        self.change_members(group_id, member_ids, true, options)
            .await
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        self.change_members(group_id, member_ids, false, options)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use reqwest::Url;

    use super::*;
    use crate::connector::exchange::scrub;
    use crate::log::RESPONSE_EXCERPT_BYTES;
    use crate::ports::SecretValue;

    fn answer(status: u16, content_type: &str, body: &str) -> Answer {
        Answer {
            status,
            url: Url::parse("https://scim.example.com/v2/Users").unwrap(),
            location: None,
            content_type: Some(content_type.into()),
            retry_after: None,
            etag: None,
            body: body.into(),
            sent_authorization: SecretValue::new("Bearer tok-123"),
            dialect: &SCIM,
        }
    }

    #[test]
    fn scim_error_bodies_are_read_whether_status_is_a_string_or_a_number() {
        let as_string = ScimErrorBody::parse(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"bad"}"#,
        );
        assert_eq!(
            as_string,
            ScimErrorBody {
                status: Some(400),
                scim_type: Some("invalidValue".into()),
                detail: Some("bad".into())
            }
        );
        let as_number = ScimErrorBody::parse(r#"{"status":409,"detail":"taken"}"#);
        assert_eq!(
            as_number,
            ScimErrorBody {
                status: Some(409),
                scim_type: None,
                detail: Some("taken".into())
            }
        );
        assert_eq!(
            ScimErrorBody::parse("<html>oops</html>"),
            ScimErrorBody::default()
        );
    }

    #[test]
    fn statuses_map_to_classified_errors() {
        let error = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"userName is required"}"#;
        match answer(400, SCIM_MEDIA_TYPE, error).failure() {
            ConnectorError::Rejected {
                status,
                scim_type,
                detail,
                body,
            } => {
                assert_eq!(
                    (status, scim_type.as_deref(), detail.as_str()),
                    (400, Some("invalidValue"), "userName is required")
                );
                assert_eq!(body, error);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(answer(409, SCIM_MEDIA_TYPE, r#"{"detail":"taken"}"#).failure(), ConnectorError::Conflict { detail } if detail == "taken")
        );
        assert_eq!(
            answer(401, SCIM_MEDIA_TYPE, "").failure(),
            ConnectorError::Unauthorized
        );
        assert!(matches!(
            answer(408, "text/plain", "slow").failure(),
            ConnectorError::Rejected { status: 408, .. }
        ));
        let mut throttled = answer(429, "text/plain", "");
        throttled.retry_after = Some(Duration::from_secs(7));
        assert_eq!(
            throttled.failure(),
            ConnectorError::Throttled {
                status: 429,
                retry_after: Some(Duration::from_secs(7))
            }
        );
        match answer(
            503,
            "text/html",
            "<html><body>Service Unavailable</body></html>",
        )
        .failure()
        {
            ConnectorError::ServerError {
                status: 503,
                detail,
                retry_after: None,
            } => assert_eq!(detail, "(an HTML page)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rejected_body_is_cut_to_two_kibibytes() {
        let long = format!(r#"{{"detail":"x","padding":"{}"}}"#, "y".repeat(10_000));
        let ConnectorError::Rejected { body, .. } = answer(422, SCIM_MEDIA_TYPE, &long).failure()
        else {
            panic!("not Rejected")
        };
        assert!(body.len() < RESPONSE_EXCERPT_BYTES + 100, "{}", body.len());
        assert!(
            body.ends_with(&format!("({} bytes in all)", long.len())),
            "{body}"
        );
    }

    #[test]
    fn a_redirect_names_the_host_it_points_to() {
        let mut moved = answer(302, "text/plain", "");
        moved.location = Some("https://login.elsewhere.example/authorize".into());
        let ConnectorError::BadResponse(message) = moved.failure() else {
            panic!("not BadResponse")
        };
        assert!(message.contains("login.elsewhere.example"), "{message}");
    }

    #[test]
    fn html_non_json_and_empty_answers_are_bad_responses() {
        for body in ["<html>login</html>", "not json", "   "] {
            let error = answer(200, SCIM_MEDIA_TYPE, body).json().unwrap_err();
            assert!(
                matches!(error, ConnectorError::BadResponse(_)),
                "{body}: {error:?}"
            );
        }
    }

    #[test]
    fn credentials_echoed_by_a_target_are_scrubbed() {
        let echoed =
            r#"{"status":"400","detail":"you sent Authorization: Bearer tok-123 (tok-123)"}"#;
        let ConnectorError::Rejected { detail, body, .. } =
            answer(400, SCIM_MEDIA_TYPE, echoed).failure()
        else {
            panic!("not Rejected")
        };
        assert_eq!(detail, "you sent Authorization: <redacted> (<redacted>)");
        assert!(
            !body.contains("tok-123") && body.contains("<redacted>"),
            "{body}"
        );
        let not_json = answer(200, SCIM_MEDIA_TYPE, "token tok-123 expired")
            .json()
            .unwrap_err();
        assert!(!not_json.to_string().contains("tok-123"), "{not_json}");
        let short = scrub("a tiny token t", &SecretValue::new("Bearer t"));
        assert_eq!(
            short, "a tiny token t",
            "a one-letter credential is not a secret worth blotting out"
        );
    }

    #[test]
    fn user_name_and_emails_match_without_regard_to_case_other_attributes_exactly() {
        let resource = json!({
            "id": "1",
            "userName": "Marta.Fernandes@Acme.example",
            "externalId": "0058a00000LmN2pAAF",
            "emails": [{"type": "home", "value": "m@home.example"}, {"type": "work", "value": "MARTA@acme.example"}]
        });
        let check = |attribute: &str, value: &str| {
            let key = MatchKey {
                attribute: attribute.into(),
                value: value.into(),
            };
            holds(&resource, &TargetPath::parse(attribute).unwrap(), &key)
        };
        assert!(check("userName", "marta.fernandes@acme.example"));
        assert!(check(
            r#"emails[type eq "work"].value"#,
            "marta@acme.example"
        ));
        assert!(!check(r#"emails[type eq "work"].value"#, "m@home.example"));
        assert!(check("externalId", "0058a00000LmN2pAAF"));
        assert!(!check("externalId", "0058A00000LMN2PAAF"));
        assert!(!check("displayName", "anything"));
    }

    #[test]
    fn a_list_without_resources_is_empty_only_when_it_says_so() {
        assert_eq!(
            list_resources(json!({"totalResults": 0})).unwrap(),
            Vec::<Value>::new()
        );
        assert_eq!(
            list_resources(json!({"resources": [{"id": "a"}]})).unwrap(),
            vec![json!({"id": "a"})]
        );
        assert!(list_resources(json!({"id": "a", "userName": "x"})).is_err());
        assert!(list_resources(json!([])).is_err());
    }

    #[test]
    fn an_account_needs_an_id_and_reads_active() {
        let account = account_from(json!({"id": "u1", "active": "False"})).unwrap();
        assert_eq!((account.id.as_str(), account.active), ("u1", Some(false)));
        assert!(matches!(
            account_from(json!({"userName": "x"})),
            Err(ConnectorError::BadResponse(_))
        ));
    }
}
