//! The ingest use case: a Salesforce message in, one job per (user × connected app) queued, and
//! only then an acknowledgement.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::ids::SalesforceId;
use crate::job::{Job, JobMessage, LentEvent, LentUser};
use crate::ports::{Clock, JobQueue, QueueError};
use crate::salesforce::events::{
    EVENT_RELAY_SOURCE_PREFIX, EventMessage, EventsError, parse_events,
};
use crate::salesforce::outbound::{
    NotificationError, OutboundError, OutboundMessageRef, read_outbound_message,
};
use crate::source::{EventSource, SourceEvent};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(#[from] OutboundError),
    #[error("{0}")]
    Events(#[from] EventsError),
    #[error("messages from organization {0} are not accepted by this userprov")]
    ForeignOrganization(SalesforceId),
    #[error("the jobs could not all be queued: {0}")]
    Queue(#[from] QueueError),
    #[error(
        "the event is not an Event Relay event from Salesforce (an EventBridge event whose source is aws.partner/salesforce.com/...)"
    )]
    NotEventRelay,
}

impl IngestError {
    /// A machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(e) => e.code(),
            Self::Events(e) => e.code(),
            Self::ForeignOrganization(_) => "foreign_organization",
            Self::Queue(_) => "queue_unavailable",
            Self::NotEventRelay => "not_event_relay",
        }
    }
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Malformed(_) | Self::Events(_) | Self::NotEventRelay => ErrorClass::BadInput,
            Self::ForeignOrganization(_) => ErrorClass::Config,
            Self::Queue(e) => e.class(),
        }
    }
}

/// A notification that was not turned into jobs, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub notification_id: String,
    pub reason: NotificationError,
}

/// What an accepted message produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub correlation_id: String,
    pub notifications: usize,
    pub jobs: usize,
    pub refused: Vec<Refused>,
}

pub struct Ingest {
    config: Arc<Config>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
}

impl Ingest {
    pub fn new(config: Arc<Config>, queue: Arc<dyn JobQueue>, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            queue,
            clock,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses an Outbound Message, checks its organization, and queues one job per (user ×
    /// app). `Ok` means every job is in the queue and Salesforce may be acknowledged.
    pub async fn outbound_message(
        &self,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<IngestReport, IngestError> {
        // Read borrowed: each job is written from the body, without an owned copy of its user.
        let message = read_outbound_message(body)?;
        if !self.config.accepts_org(&message.organization_id) {
            return Err(IngestError::ForeignOrganization(message.organization_id));
        }
        let notifications = message.notifications.len();
        let (jobs, refused) = self.outbound_jobs(&message, correlation_id)?;
        let queued = jobs.len();
        if !jobs.is_empty() {
            self.queue.enqueue_messages(jobs).await?;
        }
        tracing::info!(
            correlation_id,
            events = notifications - refused.len(),
            jobs = queued,
            "queued"
        );
        Ok(IngestReport {
            correlation_id: correlation_id.to_owned(),
            notifications,
            jobs: queued,
            refused,
        })
    }

    /// [`outbound_jobs`] for this userprov's apps, at the clock's time.
    fn outbound_jobs(
        &self,
        message: &OutboundMessageRef<'_>,
        correlation_id: &str,
    ) -> Result<(Vec<JobMessage>, Vec<Refused>), IngestError> {
        let apps: Vec<&str> = self
            .config
            .apps
            .iter()
            .map(|app| app.name.as_str())
            .collect();
        outbound_jobs(message, &apps, correlation_id, self.clock.now())
    }

    /// Parses a JSON message (platform events, Event Relay, Flow callouts, change events), checks
    /// every organization it names, and queues one job per (user × app), all or nothing.
    pub async fn events(
        &self,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<IngestReport, IngestError> {
        let message = parse_events(body, &self.config.events)?;
        self.queue_events(message, correlation_id).await
    }

    async fn queue_events(
        &self,
        message: EventMessage,
        correlation_id: &str,
    ) -> Result<IngestReport, IngestError> {
        if let Some(foreign) = message
            .org_ids
            .iter()
            .find(|id| !self.config.accepts_org(id))
        {
            return Err(IngestError::ForeignOrganization(foreign.clone()));
        }
        if !message.overflows.is_empty() {
            tracing::warn!(
                correlation_id,
                change_events = ?message.overflows,
                reason = crate::merge::GAP_RESYNC_NEEDED,
                "Salesforce reported GAP_OVERFLOW: changes to users were lost; resync every user"
            );
        }
        let jobs = self.enqueue(&message.events, correlation_id).await?;
        Ok(IngestReport {
            correlation_id: correlation_id.to_owned(),
            notifications: message.events.len(),
            jobs,
            refused: Vec::new(),
        })
    }

    /// Reads one event an EventBridge rule on an Event Relay partner event bus delivered, and
    /// queues it like [`Ingest::events`] does. EventBridge and IAM stand in for the webhook's
    /// authentication, so only the Event Relay envelope is accepted here, not the other shapes
    /// the webhook takes; its organization is checked as the webhook checks it.
    pub async fn relayed_event(
        &self,
        event: &[u8],
        correlation_id: &str,
    ) -> Result<IngestReport, IngestError> {
        let message = parse_events(event, &self.config.events)?;
        if !is_event_relay_envelope(event) {
            return Err(IngestError::NotEventRelay);
        }
        self.queue_events(message, correlation_id).await
    }

    /// Fans events out to every connected app and queues the jobs, all or nothing.
    pub async fn enqueue(
        &self,
        events: &[SourceEvent],
        correlation_id: &str,
    ) -> Result<usize, IngestError> {
        let now = self.clock.now();
        let jobs: Vec<Job> = events
            .iter()
            .flat_map(|event| {
                self.config
                    .apps
                    .iter()
                    .map(move |app| Job::new(&app.name, event, correlation_id, now))
            })
            .collect();
        if !jobs.is_empty() {
            self.queue.enqueue(&jobs).await?;
        }
        tracing::info!(
            correlation_id,
            events = events.len(),
            jobs = jobs.len(),
            "queued"
        );
        Ok(jobs.len())
    }
}

/// The queue messages of an Outbound Message: one job per (user × app), each the message of the
/// [`Job`] that [`Ingest::enqueue`] builds from the user's owned copy, written straight from
/// the borrowed user; and the notifications refused. The webhook's work between the request
/// body and the queue.
pub fn outbound_jobs(
    message: &OutboundMessageRef<'_>,
    apps: &[&str],
    correlation_id: &str,
    received_at: OffsetDateTime,
) -> Result<(Vec<JobMessage>, Vec<Refused>), IngestError> {
    let mut jobs = Vec::with_capacity(message.notifications.len() * apps.len());
    let mut refused = Vec::new();
    for notification in &message.notifications {
        match &notification.object {
            Ok(user) => {
                let fields = user.fields_by_name();
                let event = LentEvent {
                    event_id: notification.id.as_str(),
                    source: EventSource::OutboundMessage,
                    user: LentUser {
                        id: &user.id,
                        fields: &fields,
                    },
                    event_time: None,
                };
                let source_time = event.source_time();
                for app in apps {
                    let job =
                        JobMessage::lent(app, &event, source_time, correlation_id, received_at)
                            .map_err(|e| {
                                QueueError::Rejected(format!(
                                    "a job cannot be written as JSON: {e}"
                                ))
                            })?;
                    jobs.push(job);
                }
            }
            Err(reason) => {
                tracing::warn!(
                    correlation_id,
                    notification_id = %notification.id,
                    reason = %reason,
                    "notification refused; the rest of the message is processed"
                );
                refused.push(Refused {
                    notification_id: notification.id.to_string(),
                    reason: reason.clone(),
                });
            }
        }
    }
    Ok((jobs, refused))
}

/// True when `event` is one EventBridge event (an object, not a batch) from a Salesforce partner
/// event source.
fn is_event_relay_envelope(event: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        source: std::borrow::Cow<'a, str>,
        #[serde(rename = "detail-type")]
        _detail_type: serde::de::IgnoredAny,
        #[serde(rename = "detail")]
        _detail: serde::de::IgnoredAny,
    }
    serde_json::from_slice::<Envelope<'_>>(event)
        .is_ok_and(|envelope| envelope.source.starts_with(EVENT_RELAY_SOURCE_PREFIX))
}
