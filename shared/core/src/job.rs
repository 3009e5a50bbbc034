//! A job: one source event for one connected app, as it travels through the queue.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::SalesforceId;
use crate::source::{
    EventSource, MODIFIED_AT_FIELDS, SourceEvent, SourceUser, ordering_time, parse_datetime_text,
};

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

    /// The job as its queue message.
    pub fn to_message(&self) -> Result<JobMessage, serde_json::Error> {
        Ok(JobMessage {
            body: self.to_body()?,
            job_id: self.job_id.clone(),
            group_id: self.group_id(),
            dedup_id: self.dedup_id(),
        })
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

/// A job written as a queue message: its body, and the ids the queue orders and deduplicates it
/// by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    pub job_id: String,
    pub group_id: String,
    pub dedup_id: String,
    /// The job as JSON, as [`Job::to_body`] writes it.
    pub body: String,
}

/// A full user snapshot lent from a parsed message, so that its jobs are written without first
/// copying it into a [`SourceUser`] (and once more per app).
#[derive(Debug, Clone, Copy)]
pub struct LentUser<'a> {
    pub id: &'a SalesforceId,
    /// Sorted by name, names distinct, `Id` not among them; `None` is null. The order is the
    /// one [`SourceUser::fields`] keeps, so the body is the one [`Job::to_body`] writes.
    pub fields: &'a [(&'a str, Option<&'a str>)],
}

impl LentUser<'_> {
    fn text(&self, name: &str) -> Option<&str> {
        let at = self
            .fields
            .binary_search_by(|(field, _)| (*field).cmp(name))
            .ok()?;
        self.fields.get(at).and_then(|(_, text)| *text)
    }

    /// As [`SourceUser::modified_at`].
    pub fn modified_at(&self) -> Option<OffsetDateTime> {
        MODIFIED_AT_FIELDS
            .iter()
            .find_map(|name| self.text(name).and_then(parse_datetime_text))
    }
}

/// Written as [`SourceUser`] writes a full snapshot.
impl Serialize for LentUser<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Fields<'f>(&'f [(&'f str, Option<&'f str>)]);
        impl Serialize for Fields<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (name, text) in self.0 {
                    map.serialize_entry(name, text)?;
                }
                map.end()
            }
        }
        let mut user = serializer.serialize_struct("SourceUser", 2)?;
        user.serialize_field("id", self.id)?;
        user.serialize_field("fields", &Fields(self.fields))?;
        user.end()
    }
}

/// A source event whose user is lent: what [`Job::new`] takes, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct LentEvent<'a> {
    pub event_id: &'a str,
    pub source: EventSource,
    pub user: LentUser<'a>,
    pub event_time: Option<OffsetDateTime>,
}

impl LentEvent<'_> {
    /// As [`SourceEvent::source_time`].
    pub fn source_time(&self) -> Option<OffsetDateTime> {
        ordering_time(self.source, self.event_time, || self.user.modified_at())
    }
}

/// [`Job`]'s fields, borrowed: serialised in the same order, to the same JSON.
#[derive(Serialize)]
struct LentJob<'a> {
    v: u32,
    job_id: &'a str,
    app: &'a str,
    event_id: &'a str,
    source: EventSource,
    correlation_id: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    source_time: Option<OffsetDateTime>,
    user: LentUser<'a>,
}

impl JobMessage {
    /// The message of `Job::new(app, event, correlation_id, received_at)` for the owned copy of
    /// `event`, written from the borrowed one; `source_time` is `event.source_time()`, found
    /// once for all of an event's apps.
    pub fn lent(
        app: &str,
        event: &LentEvent<'_>,
        source_time: Option<OffsetDateTime>,
        correlation_id: &str,
        received_at: OffsetDateTime,
    ) -> Result<Self, serde_json::Error> {
        let job_id = ulid::Ulid::new().to_string();
        let body = serde_json::to_string(&LentJob {
            v: JOB_FORMAT_VERSION,
            job_id: &job_id,
            app,
            event_id: event.event_id,
            source: event.source,
            correlation_id,
            received_at,
            source_time,
            user: event.user,
        })?;
        Ok(Self {
            group_id: group_id(app, event.user.id.as_str()),
            dedup_id: dedup_id(event.event_id, app),
            job_id,
            body,
        })
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
