//! Ports: the small traits the use cases need from the outside world. Each has an embedded
//! adapter in [`crate::embedded`] and an AWS adapter in the `userprov-aws` crate.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Classify, ErrorClass};
use crate::ids::SalesforceId;
use crate::job::{Job, JobMessage};
use crate::link::AccountLink;
use crate::log::{LogEntry, LogPage, LogQuery};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Some jobs were not accepted; the caller must not acknowledge the source message.
    #[error("the queue accepted {accepted} of {total} jobs: {reason}")]
    Partial {
        accepted: usize,
        total: usize,
        reason: String,
    },
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    #[error("the job cannot be queued: {0}")]
    Rejected(String),
    #[error("the queue message handle is unknown or expired: {0}")]
    UnknownReceipt(String),
}

impl Classify for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Partial { .. } | Self::Unavailable(_) => ErrorClass::Transient,
            Self::Rejected(_) => ErrorClass::BadInput,
            Self::UnknownReceipt(_) => ErrorClass::Permanent,
        }
    }
}

/// Where the webhook puts jobs.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues every job, or fails. `Ok` means the queue has durably accepted all of them.
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError>;

    /// Enqueues jobs already written as queue messages, as [`JobQueue::enqueue`] does: the
    /// webhook writes an Outbound Message's jobs straight from the request body. The queue
    /// adapters send the messages as they are; this default reads them back into jobs.
    async fn enqueue_messages(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        let jobs = messages
            .iter()
            .map(|message| Job::from_body(&message.body))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Rejected(e.to_string()))?;
        self.enqueue(&jobs).await
    }
}

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// The handle for delete / retry / dead-letter.
    pub receipt: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// What a consumer does with a message once the worker has handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled for good (success, skipped, failed-and-logged): delete it.
    Done,
    /// Make it visible again after this delay.
    RetryAfter(Duration),
    /// Move it to the dead-letter queue now.
    DeadLetter { reason: String },
    /// Make it visible again after this delay without counting this delivery as an attempt:
    /// the app is paused by its circuit breaker and the job never reached the target.
    Postpone(Duration),
}

/// The consuming side of a queue, for pollers (the embedded worker, redrive tooling). On AWS
/// the Lambda event source mapping does the receiving.
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    async fn receive(&self, max: usize, wait: Duration)
    -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn settle(
        &self,
        message: &ReceivedMessage,
        disposition: &Disposition,
    ) -> Result<(), QueueError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race: re-read and re-plan.
    #[error("the record changed since it was read (expected version {expected:?})")]
    Conflict { expected: Option<u64> },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the stored record cannot be read: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadRequest(String),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Conflict { .. } | Self::Unavailable(_) => ErrorClass::Transient,
            Self::Corrupt(_) => ErrorClass::Permanent,
            Self::BadRequest(_) => ErrorClass::BadInput,
        }
    }
}

#[async_trait]
pub trait LinkStore: Send + Sync {
    async fn get_link(
        &self,
        app: &str,
        user_id: &SalesforceId,
    ) -> Result<Option<AccountLink>, StoreError>;

    /// Writes `link` if the stored version equals `expected_version` (`None`: no link stored
    /// yet), else fails with [`StoreError::Conflict`]. The caller sets `link.version` to
    /// `expected_version + 1` (1 for a new link).
    async fn put_link(
        &self,
        link: &AccountLink,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError>;

    /// [`LinkStore::put_link`] whose write may become durable later: it is checked and
    /// visible to reads at once, and durable once [`LinkStore::sync_links`] returns. The worker
    /// writes its links this way and syncs after the job's log entry: where both live in one
    /// database (the embedded store), the entry's sync covers the link, one disk sync per job
    /// instead of two. By default, `put_link` (durable on return).
    async fn put_link_unsynced(
        &self,
        link: &AccountLink,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_link(link, expected_version).await
    }

    /// Returns once every link written by [`LinkStore::put_link_unsynced`] before the call is
    /// durable. By default there is nothing to do.
    async fn sync_links(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Links of one app (or all apps), ordered by (app, user id), after the given key.
    async fn list_links(
        &self,
        app: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<AccountLink>, StoreError>;
}

#[async_trait]
pub trait LogStore: Send + Sync {
    async fn append(&self, entry: &LogEntry) -> Result<(), StoreError>;
    async fn get_entry(&self, id: &str) -> Result<Option<LogEntry>, StoreError>;
    /// Entries matching the query, newest first, one page at a time.
    async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError>;

    /// Counts of the entries with `since <= time < until` (of one app, when given), by status
    /// and by app. Reads the range through [`LogStore::query`], so each store's time-range
    /// reading applies (the by_day or by_app index on DynamoDB, the id order locally).
    async fn stats(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        app: Option<&str>,
    ) -> Result<crate::log::LogStats, StoreError> {
        let mut stats = crate::log::LogStats::new(since, until, app.map(str::to_owned));
        let mut query = LogQuery {
            app: app.map(str::to_owned),
            since: Some(since),
            until: Some(until),
            limit: crate::log::MAX_PAGE_SIZE,
            ..LogQuery::default()
        };
        loop {
            let page = self.query(&query).await?;
            for entry in &page.entries {
                stats.count(entry);
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(stats),
            }
        }
    }
}

/// A secret's value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} does not exist")]
    NotFound { name: String },
    #[error("secret {name:?} is not usable: {reason}")]
    Malformed { name: String, reason: String },
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    #[error("access to secret {name:?} is denied")]
    Denied { name: String },
}

impl Classify for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            // A missing or malformed secret is fixed by an operator, and the job should wait
            // for it rather than be lost: retried, then dead-lettered with the reason.
            Self::NotFound { .. } | Self::Malformed { .. } | Self::Unavailable(_) => {
                ErrorClass::Transient
            }
            Self::Denied { .. } => ErrorClass::Config,
        }
    }
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_secret(&self, name: &str) -> Result<SecretValue, SecretError>;
    /// Replaces a secret's value (a rotated OAuth2 refresh token is written back).
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<(), SecretError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Jobs held by an app's deactivation guard, and the deactivations it let through. Held jobs
/// are stored here, durably, because their queue message is consumed.
#[async_trait]
pub trait HoldStore: Send + Sync {
    /// In one atomic step: a job released by an admin, or already admitted, passes; otherwise
    /// it passes when fewer than `max` deactivations of `app` were admitted since
    /// `now - window` (and is counted), else `hold` is stored (once per job) and returned.
    async fn admit_deactivation(
        &self,
        now: OffsetDateTime,
        window: Duration,
        max: u32,
        hold: &crate::guard::Hold,
    ) -> Result<crate::guard::Admission, StoreError>;

    /// Holds of one app (or every app), oldest first.
    async fn list_holds(&self, app: Option<&str>) -> Result<Vec<crate::guard::Hold>, StoreError>;

    /// Removes a hold. With `release`, its job will pass the guard when it runs again.
    async fn take_hold(
        &self,
        id: &str,
        release: bool,
    ) -> Result<Option<crate::guard::Hold>, StoreError>;

    /// The first step of a release: the hold's job will pass the guard once when it runs
    /// again, but the hold stays listed until `take_hold(id, false)`. Between the two, the job
    /// is queued again: a worker that picks it up at once passes it, and a failed send leaves
    /// the hold to release again. Stores that cannot split the steps release and remove at once.
    async fn release_hold(&self, id: &str) -> Result<Option<crate::guard::Hold>, StoreError> {
        self.take_hold(id, true).await
    }
}
