//! A job: one source event for one connected app, as it travels through the queue.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::source::{EventSource, SourceEvent, SourceUser};

/// The job format version. A worker refuses (and dead-letters with a clear reason) a job of a
/// version it does not know instead of guessing.
pub const JOB_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub v: u32,
    pub job_id: String,
    pub app: String,
    pub event_id: String,
    pub source: EventSource,
    pub correlation_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub source_time: Option<OffsetDateTime>,
    pub user: SourceUser,
}

impl Job {
    pub fn new(
        app: &str,
        event: &SourceEvent,
        correlation_id: &str,
        received_at: OffsetDateTime,
    ) -> Self {
        Self {
            v: JOB_FORMAT_VERSION,
            job_id: ulid::Ulid::new().to_string(),
            app: app.to_owned(),
            event_id: event.event_id.clone(),
            source: event.source,
            correlation_id: correlation_id.to_owned(),
            received_at,
            source_time: event.source_time(),
            user: event.user.clone(),
        }
    }

    /// The FIFO message group: one per (app, user), so a user's changes apply in order while
    /// different users proceed in parallel.
    pub fn group_id(&self) -> String {
        group_id(&self.app, self.user.id.as_str())
    }

    /// The deduplication id: the same event for the same app is one job, however often
    /// Salesforce delivers it.
    pub fn dedup_id(&self) -> String {
        dedup_id(&self.event_id, &self.app)
    }

    pub fn to_body(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn from_body(body: &str) -> Result<Self, JobFormatError> {
        let probe: VersionProbe =
            serde_json::from_str(body).map_err(|e| JobFormatError::Unreadable(e.to_string()))?;
        if probe.v != JOB_FORMAT_VERSION {
            return Err(JobFormatError::UnknownVersion(probe.v));
        }
        serde_json::from_str(body).map_err(|e| JobFormatError::Unreadable(e.to_string()))
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

pub fn group_id(app: &str, user_id: &str) -> String {
    format!("{app}.{user_id}")
}

pub fn dedup_id(event_id: &str, app: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event_id.as_bytes());
    hasher.update([0]);
    hasher.update(app.as_bytes());
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFormatError {
    #[error("the queue message is not a userprov job: {0}")]
    Unreadable(String),
    #[error("the job has format version {0}, this worker reads version 1")]
    UnknownVersion(u32),
}

impl crate::error::Classify for JobFormatError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::BadInput
    }
}
