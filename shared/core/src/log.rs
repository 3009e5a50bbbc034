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
    pub duration_ms: u64,
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
