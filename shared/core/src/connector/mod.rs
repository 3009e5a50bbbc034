//! Connectors: how userprov talks to a target app. SCIM 2.0 and declarative REST are built
//! in; custom connectors implement [`Connector`] and are registered by name in
//! [`registry::ConnectorKinds`] (see docs/connectors.md).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Classify, ErrorClass};

pub mod exchange;
pub mod mock;
pub mod rate_limit;
pub mod registry;
pub mod rest;
pub mod scim;

/// An account as the target reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetAccount {
    pub id: String,
    pub active: Option<bool>,
    /// The resource as returned (SCIM: the User resource).
    pub resource: Value,
}

/// A successful call: its value and the HTTP status of the call that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub value: T,
    pub http_status: Option<u16>,
}

/// One attribute that identifies an existing account: a SCIM attribute path and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchKey {
    pub attribute: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("the target refused the request with HTTP {status}: {detail}")]
    Rejected {
        status: u16,
        scim_type: Option<String>,
        detail: String,
        body: String,
    },
    #[error("an account with the same unique attribute already exists (HTTP 409): {detail}")]
    Conflict { detail: String },
    #[error("the account {id} no longer exists in the target")]
    NotFound { id: String },
    #[error("the target refused the credentials (HTTP 401); reauthorize the app")]
    Unauthorized,
    #[error("the target is throttling requests (HTTP {status})")]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the target failed with HTTP {status}: {detail}")]
    ServerError {
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("the target did not answer in time")]
    Timeout,
    #[error("cannot reach the target: {0}")]
    Network(String),
    /// The account changed in the target between userprov's read and its write, twice in a row
    /// (HTTP 412 on `If-Match`): someone else is editing it; the job is tried again later.
    #[error("the account {id} kept changing in the target while userprov updated it (HTTP 412)")]
    VersionConflict { id: String },
    #[error("the target answered something that is not a SCIM response: {0}")]
    BadResponse(String),
    #[error("the target does not support {0}")]
    Unsupported(String),
    #[error("the connector is misconfigured: {0}")]
    Config(String),
    #[error("cannot get credentials for the target: {0}")]
    Credentials(String),
    /// The authorization server refused the stored grant (a revoked or expired refresh token,
    /// wrong client credentials): only an admin can fix it. The message says how.
    #[error("reauthorize: {message}")]
    Reauthorize { message: String },
    /// userprov's own rate limit for the app has no permit for a while: nothing was sent.
    #[error("the app's rate limit allows no call for {retry_after:?}; the job waits on the queue")]
    RateLimited { retry_after: Duration },
}

impl ConnectorError {
    /// True for throttling (the target's 429 or 503, or userprov's own rate limit): not a fault
    /// of the job, so it should not use up the attempts meant for real errors.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::RateLimited { .. }
                | Self::ServerError {
                    status: 503,
                    retry_after: Some(_),
                    ..
                }
        )
    }
}

/// The log codes of throttling errors (see [`ConnectorError::is_throttling`]).
pub const THROTTLING_CODES: [&str; 2] = ["throttled", "rate_limited"];

impl ConnectorError {
    /// A stable code for the log.
    pub fn code(&self) -> String {
        match self {
            Self::Rejected { status, .. } => format!("http_{status}"),
            Self::Conflict { .. } => "conflict".into(),
            Self::NotFound { .. } => "not_found".into(),
            Self::VersionConflict { .. } => "version_conflict".into(),
            Self::Unauthorized => "reauthorize".into(),
            Self::Throttled { .. } => "throttled".into(),
            Self::ServerError { status, .. } => format!("http_{status}"),
            Self::Timeout => "timeout".into(),
            Self::Network(_) => "network".into(),
            Self::BadResponse(_) => "bad_response".into(),
            Self::Unsupported(_) => "unsupported".into(),
            Self::Config(_) => "config".into(),
            Self::Credentials(_) => "credentials".into(),
            Self::Reauthorize { .. } => "reauthorize".into(),
            Self::RateLimited { .. } => "rate_limited".into(),
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. }
            | Self::Throttled { status, .. }
            | Self::ServerError { status, .. } => Some(*status),
            Self::Conflict { .. } => Some(409),
            Self::NotFound { .. } => Some(404),
            Self::VersionConflict { .. } => Some(412),
            Self::Unauthorized => Some(401),
            _ => None,
        }
    }

    /// How long the target asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::ServerError { retry_after, .. } => {
                *retry_after
            }
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl Classify for ConnectorError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Throttled { .. }
            | Self::RateLimited { .. }
            | Self::ServerError { .. }
            | Self::Timeout
            | Self::Network(_)
            | Self::VersionConflict { .. } => ErrorClass::Transient,
            Self::Credentials(_) => ErrorClass::Transient,
            Self::Rejected { status: 408, .. } => ErrorClass::Transient,
            Self::Rejected { .. }
            | Self::Conflict { .. }
            | Self::NotFound { .. }
            | Self::Unauthorized
            | Self::Reauthorize { .. } => ErrorClass::Permanent,
            Self::BadResponse(_) => ErrorClass::Transient,
            Self::Unsupported(_) => ErrorClass::Permanent,
            Self::Config(_) => ErrorClass::Config,
        }
    }
}

/// The operations userprov needs from a target app.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Finds the one account that matches every key, verifying the hit (a server that ignores
    /// filters must not make us adopt the wrong account). `None` when nothing matches.
    async fn find(&self, keys: &[MatchKey])
    -> Result<Reply<Option<TargetAccount>>, ConnectorError>;
    async fn get(&self, id: &str) -> Result<Reply<Option<TargetAccount>>, ConnectorError>;
    /// Creates the account from a full resource.
    async fn create(&self, resource: &Value) -> Result<Reply<TargetAccount>, ConnectorError>;
    /// Replaces the account's attributes with the full resource.
    async fn update(&self, id: &str, resource: &Value) -> Result<Reply<()>, ConnectorError>;
    /// Sets the account's `active` flag.
    async fn set_active(&self, id: &str, active: bool) -> Result<Reply<()>, ConnectorError>;
    async fn delete(&self, id: &str) -> Result<Reply<()>, ConnectorError>;

    /// The id of the group with this display name; with `create`, a missing group is created.
    /// `None` when it does not exist and `create` is false.
    async fn group_id(
        &self,
        display_name: &str,
        create: bool,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        let _ = (display_name, create);
        Err(ConnectorError::Unsupported("groups".into()))
    }

    /// Adds accounts to a group; adding a member twice is not an error.
    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        let _ = (group_id, member_ids, options);
        Err(ConnectorError::Unsupported("groups".into()))
    }

    /// Removes accounts from a group; other members are never touched.
    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        let _ = (group_id, member_ids, options);
        Err(ConnectorError::Unsupported("groups".into()))
    }
}

/// How membership changes are sent to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOptions {
    /// Most members in one request.
    pub chunk_size: usize,
    pub member_removal: crate::groups::MemberRemoval,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            chunk_size: 100,
            member_removal: crate::groups::MemberRemoval::FilterPath,
        }
    }
}
