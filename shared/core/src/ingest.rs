//! The ingest use case: a Salesforce message in, one job per (user × connected app) queued, and
//! only then an acknowledgement.

use std::sync::Arc;

use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::ids::SalesforceId;
use crate::job::Job;
use crate::ports::{Clock, JobQueue, QueueError};
use crate::salesforce::events::{
    EVENT_RELAY_SOURCE_PREFIX, EventMessage, EventsError, parse_events,
};
use crate::salesforce::outbound::{NotificationError, OutboundError, read_outbound_message};
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
        // Read borrowed, so each user is copied out of the body once, into its event.
        let message = read_outbound_message(body)?;
        if !self.config.accepts_org(&message.organization_id) {
            return Err(IngestError::ForeignOrganization(message.organization_id));
        }
        let notifications = message.notifications.len();
        let mut events = Vec::with_capacity(notifications);
        let mut refused = Vec::new();
        for notification in message.notifications {
            match notification.object {
                Ok(user) => events.push(SourceEvent {
                    event_id: notification.id.as_str().to_owned(),
                    source: EventSource::OutboundMessage,
                    user: user.into_owned(),
                    event_time: None,
                }),
                Err(reason) => {
                    tracing::warn!(
                        correlation_id,
                        notification_id = %notification.id,
                        reason = %reason,
                        "notification refused; the rest of the message is processed"
                    );
                    refused.push(Refused {
                        notification_id: notification.id.to_string(),
                        reason,
                    });
                }
            }
        }
        let jobs = self.enqueue(&events, correlation_id).await?;
        Ok(IngestReport {
            correlation_id: correlation_id.to_owned(),
            notifications,
            jobs,
            refused,
        })
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
