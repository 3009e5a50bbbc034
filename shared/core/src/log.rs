//! The provisioning log: one entry per attempt and outcome.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::ErrorClass;
use crate::source::EventSource;

/// What userprov did, or decided, for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Adopt,
    Update,
    Deactivate,
    Reactivate,
    Noop,
    Skip,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Adopt => "adopt",
            Self::Update => "update",
            Self::Deactivate => "deactivate",
            Self::Reactivate => "reactivate",
            Self::Noop => "noop",
            Self::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    Success,
    Failed,
    Retrying,
    DeadLettered,
    Skipped,
    Held,
    DryRun,
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Skipped => "skipped",
            Self::Held => "held",
            Self::DryRun => "dry_run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    /// A terminal status ends the job: nothing more will happen to it without an operator.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Retrying)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub class: ErrorClass,
    /// A stable, machine-readable code such as `http_400`, `missing_required_attribute`,
    /// `reauthorize`, `timeout`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// A ULID: sorts by time.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub app: String,
    pub user_id: String,
    pub username: Option<String>,
    pub event_id: String,
    pub source: EventSource,
    pub correlation_id: String,
    pub operation: Operation,
    pub status: LogStatus,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub target_id: Option<String>,
    /// Why the job was skipped, held or dropped, in words.
    pub reason: Option<String>,
    pub error: Option<ErrorInfo>,
    /// The payload sent (or that would be sent), with secrets removed.
    pub request: Option<Value>,
    /// The start of the target's answer.
    pub response: Option<String>,
    /// Group memberships added and removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<crate::groups::GroupChange>,
    /// The account's attributes this entry changed (or tried to, or would in dry-run), with old
    /// and new values where known; sensitive attributes are named without their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AttributeChange>,
    pub duration_ms: u64,
}

impl LogEntry {
    /// A fresh entry id. Ids from one process increase strictly, even within one millisecond,
    /// so "newest first" (id order) agrees with the order entries were written; `Ulid::new`
    /// alone orders same-millisecond ids at random.
    pub fn new_id() -> String {
        static GENERATOR: std::sync::Mutex<ulid::Generator> =
            std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Overflow needs 2^80 ids in one millisecond; a fresh random id is the fallback.
        generator
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }
}

/// One attribute of the target account changed by a job. `attribute` is the path in the
/// resource pushed (`title`, `name.givenName`); multi-valued attributes compare as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub attribute: String,
    /// Absent when the account had no value, or userprov does not know it (a new or adopted
    /// account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Absent when the attribute is no longer sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// The attribute is sensitive (a password, secret, token or credential): it changed, and
    /// its values are never recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl AttributeChange {
    pub fn of(attribute: &str, old: Option<Value>, new: Option<Value>) -> Self {
        Self {
            attribute: attribute.to_owned(),
            old,
            new,
            redacted: false,
        }
    }
}

/// Whether a key names something whose value must never be logged.
pub fn is_sensitive_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential"]
        .iter()
        .any(|word| lower.contains(word))
}

/// The attributes that differ between the resource last pushed (`None`: not known) and the one
/// pushed now, by path, in path order.
pub fn attribute_changes(last_pushed: Option<&Value>, desired: &Value) -> Vec<AttributeChange> {
    let mut old = std::collections::BTreeMap::new();
    if let Some(last) = last_pushed {
        flatten("", last, false, &mut old);
    }
    let mut new = std::collections::BTreeMap::new();
    flatten("", desired, false, &mut new);
    let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (old.get(path), new.get(path));
            let before_value = before.map(|(v, _)| v);
            let after_value = after.map(|(v, _)| v);
            if before_value == after_value {
                return None;
            }
            let sensitive = before.is_some_and(|(_, s)| *s) || after.is_some_and(|(_, s)| *s);
            Some(if sensitive {
                AttributeChange {
                    redacted: true,
                    ..AttributeChange::of(path, None, None)
                }
            } else {
                AttributeChange::of(path, before_value.cloned(), after_value.cloned())
            })
        })
        .collect()
}

/// Leaf values by dotted path; `sensitive` marks a path under a sensitive key, and arrays keep
/// their items (with sensitive keys inside them redacted).
fn flatten(
    prefix: &str,
    value: &Value,
    sensitive: bool,
    out: &mut std::collections::BTreeMap<String, (Value, bool)>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, child, sensitive || is_sensitive_key(key), out);
            }
        }
        Value::Null => {}
        other => {
            let shown = if sensitive {
                Value::Null
            } else {
                crate::worker::redact(other)
            };
            // A sensitive value is compared by its hash, never kept.
            let compared = if sensitive {
                use sha2::Digest;
                Value::String(hex::encode(sha2::Sha256::digest(other.to_string())))
            } else {
                shown
            };
            out.insert(prefix.to_owned(), (compared, sensitive));
        }
    }
}

/// Filters for reading the log, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// A Salesforce user id (15 or 18 characters) or a username.
    pub user: Option<String>,
    pub app: Option<String>,
    pub status: Option<LogStatus>,
    pub operation: Option<Operation>,
    pub event_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub limit: usize,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

impl LogQuery {
    /// True when the entry passes every filter except the cursor.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        if let Some(user) = &self.user {
            let by_id = crate::ids::SalesforceId::parse(user)
                .map(|id| id.as_str() == entry.user_id)
                .unwrap_or(false);
            let by_name = entry
                .username
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case(user));
            if !by_id && !by_name {
                return false;
            }
        }
        if self.app.as_deref().is_some_and(|app| app != entry.app) {
            return false;
        }
        if self.status.is_some_and(|s| s != entry.status) {
            return false;
        }
        if self.operation.is_some_and(|o| o != entry.operation) {
            return false;
        }
        if self
            .event_id
            .as_deref()
            .is_some_and(|e| e != entry.event_id)
        {
            return false;
        }
        if self.since.is_some_and(|since| entry.time < since) {
            return false;
        }
        if self.until.is_some_and(|until| entry.time >= until) {
            return false;
        }
        true
    }

    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// An opaque page cursor: the id of the last entry returned. Stores list entries with ids
/// strictly below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub before_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this API handed out")]
pub struct InvalidCursor;

impl LogCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}", self.before_id))
    }

    pub fn decode(raw: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let id = text.strip_prefix("v1:").ok_or(InvalidCursor)?;
        ulid::Ulid::from_string(id).map_err(|_| InvalidCursor)?;
        Ok(Self {
            before_id: id.to_owned(),
        })
    }
}

/// Keeps at most `max` bytes of a target's answer, cut on a character boundary.
pub fn truncate_response(body: &str, max: usize) -> String {
    if body.len() <= max {
        return body.to_owned();
    }
    let mut end = max;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &body[..end], body.len())
}

pub const RESPONSE_EXCERPT_BYTES: usize = 2048;

/// Counts of log entries over a time range, by status and by app (`GET /stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    pub app: Option<String>,
    pub total: u64,
    /// Status name → entries.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// App name → its entries, in all and by status.
    pub by_app: std::collections::BTreeMap<String, AppStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    pub total: u64,
    pub by_status: std::collections::BTreeMap<String, u64>,
}

impl LogStats {
    pub fn new(since: OffsetDateTime, until: OffsetDateTime, app: Option<String>) -> Self {
        Self {
            since,
            until,
            app,
            total: 0,
            by_status: Default::default(),
            by_app: Default::default(),
        }
    }

    pub fn count(&mut self, entry: &LogEntry) {
        let status = entry.status.as_str().to_owned();
        self.total += 1;
        *self.by_status.entry(status.clone()).or_default() += 1;
        let app = self.by_app.entry(entry.app.clone()).or_default();
        app.total += 1;
        *app.by_status.entry(status).or_default() += 1;
    }
}

/// Seals the stores' page cursors for the log API: each cursor the API hands out carries an
/// HMAC-SHA256 over the store cursor and a hash of the query's filters, so a client can neither
/// forge a position nor reuse a cursor under other filters to read past them.
///
/// Every process that serves the same log must hold the same key (several Lambda containers
/// accept each other's cursors): the key comes from a secret, never from the request.
#[derive(Clone)]
pub struct CursorSigner {
    /// A full HMAC block, so keying never fails.
    key: [u8; 64],
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner(<key redacted>)")
    }
}

/// Why the log API refuses a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not one this API handed out")]
    Invalid,
    #[error("the cursor belongs to a query with other filters; repeat the filters it came with")]
    OtherFilter,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl CursorSigner {
    /// A signer whose key is derived from a secret's value (domain-separated, so the same secret
    /// may serve another purpose without its value being usable as a cursor key).
    pub fn from_secret(secret: &[u8]) -> Self {
        use hmac::Mac;
        use hmac::digest::KeyInit;
        let mut key = [0u8; 64];
        // HMAC takes keys of any length; a long secret is hashed down first.
        let mut derive = if secret.len() <= key.len() {
            key[..secret.len()].copy_from_slice(secret);
            <HmacSha256 as KeyInit>::new(&key.into())
        } else {
            let mut hashed = [0u8; 64];
            hashed[..32].copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(secret));
            <HmacSha256 as KeyInit>::new(&hashed.into())
        };
        derive.update(b"userprov log cursor key v1");
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&derive.finalize().into_bytes());
        Self { key }
    }

    /// A signer with a random key: cursors last as long as the process.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key[..32]);
        Self { key }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        use hmac::Mac;
        use hmac::digest::KeyInit;
        let mut mac = <HmacSha256 as KeyInit>::new(&self.key.into());
        mac.update(payload.as_bytes());
        mac
    }

    /// The cursor to hand out for a store's `next_cursor` under `query`.
    pub fn seal(&self, store_cursor: &str, query: &LogQuery) -> String {
        use hmac::Mac;
        let payload = format!(
            "{store_cursor}.{}",
            URL_SAFE_NO_PAD.encode(query.filter_digest())
        );
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The store cursor inside a sealed cursor, if this signer sealed it for these filters.
    pub fn open(&self, sealed: &str, query: &LogQuery) -> Result<String, CursorError> {
        use hmac::Mac;
        let (payload, tag) = sealed.rsplit_once('.').ok_or(CursorError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Invalid)?;
        // Constant-time comparison of the tag.
        self.mac(payload)
            .verify_slice(&tag)
            .map_err(|_| CursorError::Invalid)?;
        let (store_cursor, digest) = payload.split_once('.').ok_or(CursorError::Invalid)?;
        if digest != URL_SAFE_NO_PAD.encode(query.filter_digest()) {
            return Err(CursorError::OtherFilter);
        }
        LogCursor::decode(store_cursor).map_err(|_| CursorError::Invalid)?;
        Ok(store_cursor.to_owned())
    }
}

impl LogQuery {
    /// A hash of the filters in normal form (a user id in its 18-character form, a username in
    /// lower case, times in nanoseconds); the page size and cursor are not filters.
    pub fn filter_digest(&self) -> [u8; 16] {
        use sha2::Digest;
        let user = self
            .user
            .as_deref()
            .map(|user| match crate::ids::SalesforceId::parse(user) {
                Ok(id) => format!("id:{}", id.as_str()),
                Err(_) => format!("name:{}", user.to_lowercase()),
            });
        let normal = serde_json::json!([
            user,
            self.app,
            self.status.map(LogStatus::as_str),
            self.operation.map(Operation::as_str),
            self.event_id,
            self.since.map(|t| t.unix_timestamp_nanos().to_string()),
            self.until.map(|t| t.unix_timestamp_nanos().to_string()),
        ]);
        let hash = sha2::Sha256::digest(normal.to_string().as_bytes());
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&hash[..16]);
        digest
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    fn store_cursor() -> String {
        LogCursor {
            before_id: "01JQ0000000000000000000000".into(),
        }
        .encode()
    }

    fn failures_of(app: &str) -> LogQuery {
        LogQuery {
            app: Some(app.into()),
            status: Some(LogStatus::Failed),
            ..LogQuery::default()
        }
    }

    #[test]
    fn a_sealed_cursor_opens_under_the_same_filters_and_any_page_size() {
        let signer = CursorSigner::from_secret(b"s3cret");
        let sealed = signer.seal(&store_cursor(), &failures_of("slack"));
        let mut query = failures_of("slack");
        query.limit = 7;
        assert_eq!(signer.open(&sealed, &query), Ok(store_cursor()));
    }

    #[test]
    fn a_cursor_used_with_other_filters_is_refused() {
        let signer = CursorSigner::from_secret(b"s3cret");
        let sealed = signer.seal(&store_cursor(), &failures_of("slack"));
        assert_eq!(
            signer.open(&sealed, &failures_of("github")),
            Err(CursorError::OtherFilter)
        );
        assert_eq!(
            signer.open(&sealed, &LogQuery::default()),
            Err(CursorError::OtherFilter)
        );
    }

    #[test]
    fn a_forged_or_altered_cursor_is_refused() {
        let signer = CursorSigner::from_secret(b"s3cret");
        let query = failures_of("slack");
        let sealed = signer.seal(&store_cursor(), &query);
        let other_key = CursorSigner::from_secret(b"another");
        assert_eq!(other_key.open(&sealed, &query), Err(CursorError::Invalid));
        // The bare store cursor, as the API used to hand out, is not accepted.
        assert_eq!(
            signer.open(&store_cursor(), &query),
            Err(CursorError::Invalid)
        );
        let later = LogCursor {
            before_id: "01JZ0000000000000000000000".into(),
        }
        .encode();
        let (_, rest) = sealed.split_once('.').unwrap();
        let moved = format!("{later}.{rest}");
        assert_eq!(signer.open(&moved, &query), Err(CursorError::Invalid));
        for junk in ["", ".", "..", "a.b.c", "djE6bm9wZQ"] {
            assert_eq!(
                signer.open(junk, &query),
                Err(CursorError::Invalid),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn filters_in_another_spelling_are_the_same_filters() {
        let by_name = |name: &str| LogQuery {
            user: Some(name.into()),
            ..LogQuery::default()
        };
        assert_eq!(
            by_name("Marta@Example.com").filter_digest(),
            by_name("marta@example.com").filter_digest()
        );
        assert_eq!(
            by_name("005000000000001").filter_digest(),
            by_name(
                crate::ids::SalesforceId::parse("005000000000001")
                    .unwrap()
                    .as_str()
            )
            .filter_digest()
        );
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_attribute_is_recorded_with_its_old_and_new_value() {
        let before = json!({"userName": "marta", "title": "Senior Engineer",
            "name": {"givenName": "Marta", "familyName": "Fernandes"}, "active": true});
        let after = json!({"userName": "marta", "title": "Principal Engineer",
            "name": {"givenName": "Marta", "familyName": "Fernandes-Silva"}, "active": true});
        assert_eq!(
            attribute_changes(Some(&before), &after),
            vec![
                AttributeChange::of(
                    "name.familyName",
                    Some(json!("Fernandes")),
                    Some(json!("Fernandes-Silva"))
                ),
                AttributeChange::of(
                    "title",
                    Some(json!("Senior Engineer")),
                    Some(json!("Principal Engineer"))
                ),
            ]
        );
    }

    #[test]
    fn without_a_last_pushed_resource_every_attribute_is_new_and_old_values_are_absent() {
        let after = json!({"userName": "marta", "emails": [{"type": "work", "value": "m@x"}]});
        let changes = attribute_changes(None, &after);
        assert_eq!(
            changes,
            vec![
                AttributeChange::of(
                    "emails",
                    None,
                    Some(json!([{"type": "work", "value": "m@x"}]))
                ),
                AttributeChange::of("userName", None, Some(json!("marta"))),
            ]
        );
        let shown = serde_json::to_value(&changes[1]).unwrap();
        assert_eq!(shown, json!({"attribute": "userName", "new": "marta"}));
    }

    #[test]
    fn a_dropped_attribute_has_no_new_value() {
        let changes = attribute_changes(Some(&json!({"title": "CTO"})), &json!({}));
        assert_eq!(
            changes,
            vec![AttributeChange::of("title", Some(json!("CTO")), None)]
        );
    }

    #[test]
    fn a_sensitive_attribute_is_named_but_its_values_never_appear() {
        let before = json!({"password": "Old-Secret-1", "x": {"apiToken": "tok-old"}, "pin": 1});
        let after = json!({"password": "New-Secret-2", "x": {"apiToken": "tok-new"}, "pin": 1,
            "roles": [{"value": "a", "credentialId": "cred-9"}]});
        let changes = attribute_changes(Some(&before), &after);
        let text = serde_json::to_string(&changes).unwrap();
        for secret in [
            "Old-Secret-1",
            "New-Secret-2",
            "tok-old",
            "tok-new",
            "cred-9",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let names: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.attribute.as_str(), c.redacted))
            .collect();
        assert_eq!(
            names,
            vec![("password", true), ("roles", false), ("x.apiToken", true)]
        );
        // An unchanged secret is not reported at all.
        let same = json!({"password": "Same-1"});
        assert!(attribute_changes(Some(&same), &same).is_empty());
    }
}

#[cfg(test)]
mod entry_id_tests {
    use super::LogEntry;

    #[test]
    fn entry_ids_written_in_one_millisecond_still_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..2_000).map(|_| LogEntry::new_id()).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids out of order"
        );
        assert!(ids.iter().all(|id| ulid::Ulid::from_string(id).is_ok()));
    }
}
