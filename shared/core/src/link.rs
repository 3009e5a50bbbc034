//! Account links: what userprov knows about a Salesforce user's account in one app.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::SalesforceId;
use crate::source::SourceUser;

/// How the target account came under userprov's management. Accounts with no link are never
/// changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedBy {
    /// userprov created the account.
    Created,
    /// The account existed and userprov adopted it by matching attributes.
    Adopted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountLink {
    pub app: String,
    pub user_id: SalesforceId,
    #[serde(default)]
    pub username: Option<String>,
    /// The account's id in the target; `None` when userprov has seen the user but there is no
    /// account (an inactive user who never had one). The link still orders later events.
    #[serde(default)]
    pub target_id: Option<String>,
    /// Whether userprov last left the account active (false when there is no account).
    pub active: bool,
    /// The source timestamp of the last event applied; older events are stale.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_source_time: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_event_id: Option<String>,
    /// SHA-256 of the last payload pushed; an identical payload is not pushed again.
    #[serde(default)]
    pub last_payload_hash: Option<String>,
    /// The target groups userprov last put the account in.
    #[serde(default)]
    pub last_groups: Vec<String>,
    /// The last source snapshot applied, merged with partial (CDC) events.
    #[serde(default)]
    pub snapshot: Option<SourceUser>,
    /// How the account came under management; `None` when there is no account.
    #[serde(default)]
    pub managed_by: Option<ManagedBy>,
    /// Incremented on every write; writes are conditional on the version read.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl AccountLink {
    /// The linked account's id, when there is an account.
    pub fn account(&self) -> Option<&str> {
        self.target_id.as_deref()
    }
}
