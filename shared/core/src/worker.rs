//! The worker use case: one queued job in, the target converged, the link and the log written.
//!
//! Queue adapters (the embedded poller, the SQS Lambda handler) call [`Worker::handle_batch`] and
//! act on the [`Disposition`] of each message; everything else happens here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::config::{AppConfig, Config, DeactivateMode, ReactivateMode};
use crate::connector::{Connector, ConnectorError, GroupOptions, MatchKey};
use crate::error::{Classify, ErrorClass};
use crate::groups::{DeliverAs, GroupChange, GroupMapping};
use crate::ids::SalesforceId;
use crate::job::Job;
use crate::link::{AccountLink, ManagedBy};
use crate::log::{
    AttributeChange, ErrorInfo, LogEntry, LogStatus, Operation, RESPONSE_EXCERPT_BYTES,
    truncate_response,
};
use crate::plan::{Plan, plan};
use crate::ports::{Clock, Disposition, LinkStore, LogStore, ReceivedMessage, StoreError};

/// How often a job is tried, and how long to wait between tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries before the job is dead-lettered (the queue's maxReceiveCount).
    pub max_attempts: u32,
    /// Failed attempts, throttled ones not counted, before the job is dead-lettered (capped by
    /// `max_attempts`).
    pub max_failed_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// SQS cannot hide a message for longer than 12 hours.
const MAX_VISIBILITY_DELAY: Duration = Duration::from_secs(12 * 60 * 60);

impl RetryPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_attempts: config.worker.max_attempts,
            max_failed_attempts: config
                .worker
                .max_failed_attempts
                .unwrap_or(config.worker.max_attempts),
            base_delay: config.worker.base_delay(),
            max_delay: config.worker.max_delay(),
        }
    }

    /// Exponential backoff with full jitter; a target's Retry-After wins.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_VISIBILITY_DELAY);
        }
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// What happened to a job in one attempt, before it is logged.
#[derive(Debug, Clone)]
struct Applied {
    operation: Operation,
    status: LogStatus,
    http_status: Option<u16>,
    target_id: Option<String>,
    reason: Option<String>,
    request: Option<Value>,
    /// Group memberships changed (or, in dry-run, that would change).
    groups: Option<GroupChange>,
    /// The user's Username when the job itself carries none (a change event): from the merged
    /// snapshot or the link, for the log entry.
    username: Option<String>,
    /// The attributes changed (or, in dry-run, that would change).
    changes: Vec<AttributeChange>,
}

#[derive(Debug, Clone)]
struct Failure {
    operation: Operation,
    class: ErrorClass,
    code: String,
    message: String,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    response: Option<String>,
    request: Option<Value>,
    /// The link changed under us: re-read and re-plan.
    link_conflict: bool,
    /// The target (or the app's rate limit) throttled us: not counted as a failed attempt.
    throttling: bool,
    /// The failure came from the connector (the target, or the way to it).
    from_target: bool,
    /// As [`Applied::username`].
    username: Option<String>,
    /// The attribute changes the attempt tried to make.
    changes: Vec<AttributeChange>,
}

impl Failure {
    fn new(operation: Operation, class: ErrorClass, code: &str, message: String) -> Self {
        Self {
            operation,
            class,
            code: code.to_owned(),
            message,
            http_status: None,
            retry_after: None,
            response: None,
            request: None,
            link_conflict: false,
            throttling: false,
            from_target: false,
            username: None,
            changes: Vec::new(),
        }
    }

    fn from_connector(
        operation: Operation,
        error: &ConnectorError,
        request: Option<&Value>,
    ) -> Self {
        let response = match error {
            ConnectorError::Rejected { body, .. } if !body.is_empty() => {
                Some(truncate_response(body, RESPONSE_EXCERPT_BYTES))
            }
            _ => None,
        };
        Self {
            http_status: error.http_status(),
            retry_after: error.retry_after(),
            response,
            request: request.map(redact),
            throttling: error.is_throttling(),
            from_target: true,
            ..Self::new(operation, error.class(), &error.code(), error.to_string())
        }
    }

    fn from_store(operation: Operation, error: &StoreError) -> Self {
        Self {
            link_conflict: matches!(error, StoreError::Conflict { .. }),
            ..Self::new(operation, error.class(), "store", error.to_string())
        }
    }
}

/// Replaces the values of secret-looking keys, so a mapped password never reaches the log.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    if crate::log::is_sensitive_key(key) {
                        (key.clone(), Value::String("[redacted]".into()))
                    } else {
                        (key.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// A stable hash of a payload (serde_json keeps object keys sorted).
pub fn payload_hash(payload: &Value) -> String {
    hex::encode(Sha256::digest(payload.to_string().as_bytes()))
}

/// How many times a job re-plans after losing a race on its account link.
const MAX_REPLANS: usize = 3;

pub struct Worker {
    config: Arc<Config>,
    connectors: BTreeMap<String, Arc<dyn Connector>>,
    links: Arc<dyn LinkStore>,
    log: Arc<dyn LogStore>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    holds: Option<Arc<dyn crate::ports::HoldStore>>,
    breakers: crate::breaker::CircuitBreakers,
    metrics: Option<Arc<dyn crate::metrics::MetricsSink>>,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        connectors: BTreeMap<String, Arc<dyn Connector>>,
        links: Arc<dyn LinkStore>,
        log: Arc<dyn LogStore>,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            breakers: crate::breaker::CircuitBreakers::new(&config.apps),
            config,
            connectors,
            links,
            log,
            clock,
            retry,
            holds: None,
            metrics: None,
        }
    }

    /// Emits one metrics record per job attempt (EMF on AWS).
    pub fn with_metrics(mut self, sink: Arc<dyn crate::metrics::MetricsSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// Where the deactivation guard keeps held jobs; without it, an app with a guard fails its
    /// deactivations (as a configuration error) rather than applying them unguarded.
    pub fn with_holds(mut self, holds: Arc<dyn crate::ports::HoldStore>) -> Self {
        self.holds = Some(holds);
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Handles a batch: groups in parallel, each group's messages in order. When a message of a
    /// group is put back for a retry, the later messages of that group in the batch are put
    /// back too, unprocessed, so a user's changes never overtake each other.
    pub async fn handle_batch(&self, messages: &[ReceivedMessage]) -> Vec<Disposition> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, message) in messages.iter().enumerate() {
            groups
                .entry(message.group_id.as_str())
                .or_default()
                .push(index);
        }
        let runs = groups.into_values().map(|indexes| async move {
            let mut results = Vec::with_capacity(indexes.len());
            // Once a job of the user waits, the user's later jobs wait with it, unprocessed:
            // postponed, so a delivery that never reached the target does not use up one of
            // their attempts.
            let mut held_back: Option<Duration> = None;
            for index in indexes {
                let disposition = match held_back {
                    Some(delay) => Disposition::Postpone(delay),
                    None => self.handle_message(&messages[index]).await,
                };
                if let Disposition::RetryAfter(delay) | Disposition::Postpone(delay) = disposition {
                    held_back = Some(delay);
                }
                results.push((index, disposition));
            }
            results
        });
        let mut dispositions = vec![Disposition::Done; messages.len()];
        for (index, disposition) in futures::future::join_all(runs).await.into_iter().flatten() {
            dispositions[index] = disposition;
        }
        dispositions
    }

    /// Handles one message and says what the queue should do with it.
    pub async fn handle_message(&self, message: &ReceivedMessage) -> Disposition {
        let job = match Job::from_body(&message.body) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(message_id = %message.message_id, %error, "unreadable job, sending it to the dead-letter queue");
                return Disposition::DeadLetter {
                    reason: error.to_string(),
                };
            }
        };
        let span = tracing::info_span!(
            "job",
            correlation_id = %job.correlation_id,
            app = %job.app,
            user_id = %job.user.id,
            event_id = %job.event_id,
            attempt = message.receive_count,
        );
        self.handle_job(&job, message.receive_count.max(1))
            .instrument(span)
            .await
    }

    async fn handle_job(&self, job: &Job, attempt: u32) -> Disposition {
        let probe = match self.breakers.admit(&job.app, self.clock.now()) {
            crate::breaker::Admission::Call { probe } => probe,
            crate::breaker::Admission::Wait(wait) => {
                tracing::debug!(
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "the app's circuit is open; the job waits"
                );
                return Disposition::Postpone(spread(wait));
            }
        };
        let started = Instant::now();
        let (result, notes) = crate::credentials::collect_notes(self.provision(job)).await;
        self.breakers
            .record(&job.app, probe, call_outcome(&result), self.clock.now());
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (mut entry, disposition) = match result {
            Ok(applied) => {
                tracing::info!(
                    operation = applied.operation.as_str(),
                    status = applied.status.as_str(),
                    "job done"
                );
                (
                    self.entry(job, attempt, elapsed, applied),
                    Disposition::Done,
                )
            }
            Err(failure) => {
                let last_attempt = attempt >= self.retry.max_attempts
                    || (!failure.throttling
                        && self.failed_attempts(job, attempt).await
                            >= self.retry.max_failed_attempts);
                let (status, disposition) = if failure.class.is_retryable() && !last_attempt {
                    let delay = self.retry.delay(attempt, failure.retry_after);
                    (LogStatus::Retrying, Disposition::RetryAfter(delay))
                } else {
                    let status = if failure.class.is_retryable() {
                        LogStatus::DeadLettered
                    } else {
                        LogStatus::Failed
                    };
                    (
                        status,
                        Disposition::DeadLetter {
                            reason: format!("{}: {}", failure.code, failure.message),
                        },
                    )
                };
                tracing::warn!(
                    operation = failure.operation.as_str(),
                    status = status.as_str(),
                    error_class = failure.class.as_str(),
                    error_code = %failure.code,
                    error = %failure.message,
                    "job attempt failed"
                );
                (
                    self.failure_entry(job, attempt, elapsed, status, failure),
                    disposition,
                )
            }
        };
        // What happened to the credentials on the way (an OAuth2 refresh, the refresh token's
        // age) goes with the entry's reason.
        if !notes.is_empty() {
            let mut reason: Vec<String> = entry.reason.take().into_iter().collect();
            reason.extend(notes);
            entry.reason = Some(reason.join("; "));
        }
        if let Some(sink) = &self.metrics {
            let dead_lettered = matches!(disposition, Disposition::DeadLetter { .. });
            let metrics = crate::metrics::JobMetrics::of(&entry, dead_lettered, job.source_time);
            sink.emit(&metrics.to_emf(self.clock.now()));
        }
        // The job's links were written unsynced (`save_link`): durable from here on, so
        // before the job is settled. With the embedded store, the entry's own sync covered
        // them and this costs nothing.
        let written = match self.log.append(&entry).await {
            Ok(()) => self.links.sync_links().await,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => disposition,
            Err(error) => {
                // The log is the record admins rely on: a job whose entry cannot be written is
                // retried (its effect is idempotent) rather than finished silently.
                tracing::error!(%error, "cannot write the provisioning log entry durably; retrying the job");
                match disposition {
                    Disposition::DeadLetter { .. } => disposition,
                    _ => Disposition::RetryAfter(self.retry.delay(attempt, None)),
                }
            }
        }
    }

    /// Failed attempts of this job so far, this one included, leaving out the throttled ones
    /// the log recorded. Without the log, every delivery counts.
    async fn failed_attempts(&self, job: &Job, attempt: u32) -> u32 {
        if attempt < self.retry.max_failed_attempts {
            return attempt; // cannot be the last failed attempt yet: skip the query
        }
        let query = crate::log::LogQuery {
            app: Some(job.app.clone()),
            event_id: Some(job.event_id.clone()),
            status: Some(LogStatus::Retrying),
            limit: crate::log::MAX_PAGE_SIZE,
            ..Default::default()
        };
        match self.log.query(&query).await {
            Ok(page) => {
                let throttled = page
                    .entries
                    .iter()
                    .filter(|e| query.matches(e) && e.user_id == job.user.id.as_str())
                    .filter(|e| {
                        e.error.as_ref().is_some_and(|error| {
                            crate::connector::THROTTLING_CODES.contains(&error.code.as_str())
                        })
                    })
                    .count();
                attempt.saturating_sub(u32::try_from(throttled).unwrap_or(u32::MAX))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the log to count throttled attempts");
                attempt
            }
        }
    }

    async fn provision(&self, job: &Job) -> Result<Applied, Failure> {
        let Some(app) = self.config.app(&job.app) else {
            return Err(Failure::new(
                Operation::Skip,
                ErrorClass::Config,
                "unknown_app",
                format!("app {:?} is not in the configuration", job.app),
            ));
        };
        let Some(connector) = self.connectors.get(&app.name) else {
            return Err(Failure::new(
                Operation::Skip,
                ErrorClass::Config,
                "no_connector",
                format!("no connector is set up for app {:?}", app.name),
            ));
        };
        let mut last_conflict = None;
        for _ in 0..MAX_REPLANS {
            let link = self
                .links
                .get_link(&app.name, &job.user.id)
                .await
                .map_err(|e| Failure::from_store(Operation::Skip, &e))?;
            let link_username = link.as_ref().and_then(|l| l.username.clone());
            // A change event (CDC) is merged into the link's snapshot first.
            let policy = self.config.events.partial_without_snapshot;
            let job = match crate::merge::prepare(app, policy, link.as_ref(), job) {
                crate::merge::Prepared::Ready(job) => job,
                crate::merge::Prepared::Skip(reason) => {
                    return Ok(Applied {
                        username: link_username,
                        ..outcome(Operation::Skip, LogStatus::Skipped, Some(reason))
                    });
                }
                crate::merge::Prepared::Fail(reason) => {
                    let code = crate::merge::PARTIAL_WITHOUT_SNAPSHOT;
                    return Err(Failure {
                        username: link_username,
                        ..Failure::new(Operation::Skip, ErrorClass::Permanent, code, reason)
                    });
                }
            };
            let job = job.as_ref();
            let username = job.user.username().map(str::to_owned).or(link_username);
            let plan =
                plan(app, link.as_ref(), &job.user, job.source_time).map_err(|e| Failure {
                    username: username.clone(),
                    ..Failure::new(Operation::Skip, e.class(), e.code(), e.to_string())
                })?;
            let result = self.execute(app, connector.as_ref(), job, link, plan).await;
            match result.map_err(|failure| Failure {
                username: username.clone(),
                ..failure
            }) {
                Err(failure) if failure.link_conflict => last_conflict = Some(failure),
                Ok(mut applied) => {
                    applied.username = username;
                    if let Some(groups) = &app.groups
                        && groups.deliver_as == DeliverAs::Groups
                    {
                        self.sync_groups(app, groups, connector.as_ref(), job, &mut applied)
                            .await?;
                    }
                    // With scope rules, say which rule let the user in.
                    if applied.reason.is_none()
                        && !app.scope.is_everyone()
                        && let Ok(verdict) = app.scope.check(&job.user)
                    {
                        applied.reason = Some(format!("in scope: {}", verdict.rule));
                    }
                    return Ok(applied);
                }
                other => return other,
            }
        }
        Err(last_conflict.unwrap_or_else(|| {
            Failure::new(
                Operation::Skip,
                ErrorClass::Transient,
                "store",
                "the account link kept changing".into(),
            )
        }))
    }

    async fn execute(
        &self,
        app: &AppConfig,
        connector: &dyn Connector,
        job: &Job,
        link: Option<AccountLink>,
        plan: Plan,
    ) -> Result<Applied, Failure> {
        let operation = plan.operation();
        let previous = link.as_ref();
        let account = previous.and_then(|l| {
            let managed_by = l.managed_by.unwrap_or(ManagedBy::Created);
            l.target_id.clone().map(|id| (id, managed_by))
        });
        let payload = match &plan {
            Plan::CreateOrAdopt | Plan::Update | Plan::Reactivate => {
                let accounts = self
                    .linked_accounts(app, &job.user)
                    .await
                    .map_err(|e| Failure::from_store(operation, &e))?;
                let payload = desired_resource(app, &job.user, &accounts).map_err(|e| {
                    Failure::new(
                        operation,
                        e.class(),
                        e.code(),
                        format!("mapping for app {}: {e}", app.name),
                    )
                })?;
                Some(payload)
            }
            Plan::Deactivate(_) | Plan::Noop(_) | Plan::Skip(_) => None,
        };
        match &plan {
            Plan::Skip(reason) => {
                return Ok(outcome(
                    Operation::Skip,
                    LogStatus::Skipped,
                    Some(reason.clone()),
                ));
            }
            Plan::Noop(reason) => return self.record_noop(app, job, previous, reason).await,
            _ => {}
        }
        if let (Plan::Update, Some(link), Some(payload)) = (&plan, previous, &payload)
            && link.last_payload_hash.as_deref() == Some(payload_hash(payload).as_str())
        {
            return self
                .record_noop(
                    app,
                    job,
                    previous,
                    "the account already has these attributes",
                )
                .await;
        }
        let changes = self
            .attribute_changes(app, &plan, previous, payload.as_ref())
            .await;
        if app.dry_run {
            let request = payload
                .as_ref()
                .map(redact)
                .or_else(|| Some(serde_json::json!({"active": false})));
            return Ok(Applied {
                request,
                changes,
                target_id: account.map(|(id, _)| id),
                ..outcome(
                    operation,
                    LogStatus::DryRun,
                    Some(format!(
                        "app {} is in dry-run mode: nothing was sent",
                        app.name
                    )),
                )
            });
        }

        if matches!(plan, Plan::Deactivate(_))
            && let Some(reason) =
                crate::guard::hold_if_over_limit(self.holds.as_ref(), app, job, self.clock.now())
                    .await
                    .map_err(|e| Failure::new(operation, e.class(), e.code(), e.to_string()))?
        {
            return Ok(Applied {
                target_id: account.map(|(id, _)| id),
                ..outcome(operation, LogStatus::Held, Some(reason))
            });
        }
        let expected_version = previous.map(|l| l.version);
        let result = match (plan, payload, account) {
            (Plan::CreateOrAdopt, Some(payload), _) => {
                self.create_or_adopt(app, connector, job, previous, &payload)
                    .await
            }
            // The old account cannot come back: find or create one and re-link it.
            (Plan::Reactivate, Some(payload), _) if app.reactivate == ReactivateMode::Recreate => {
                let mut applied = self
                    .create_or_adopt(app, connector, job, previous, &payload)
                    .await?;
                if applied.reason.is_none() {
                    let how = match applied.operation {
                        Operation::Create => "created the account again",
                        _ => "linked the account found in the target",
                    };
                    applied.reason =
                        Some(format!("reactivated (reactivate = \"recreate\"): {how}"));
                }
                Ok(applied)
            }
            (Plan::Update | Plan::Reactivate, Some(payload), Some((target_id, managed_by))) => {
                match connector.update(&target_id, &payload).await {
                    Ok(reply) => {
                        let next = self.next_link(
                            job,
                            previous,
                            Some(&target_id),
                            true,
                            Some(managed_by),
                            Some(payload_hash(&payload)),
                        );
                        self.save_link(operation, &next, expected_version).await?;
                        Ok(Applied {
                            http_status: reply.http_status,
                            target_id: Some(target_id),
                            request: Some(redact(&payload)),
                            ..outcome(operation, LogStatus::Success, None)
                        })
                    }
                    Err(ConnectorError::NotFound { .. })
                        if app.allows(crate::config::Trigger::Create) =>
                    {
                        // The account was removed in the target: converge by creating it again.
                        tracing::info!(
                            app = %app.name,
                            target_id = %target_id,
                            "the account is gone from the target (404); creating it again"
                        );
                        let created = connector.create(&payload).await.map_err(|e| {
                            Failure::from_connector(Operation::Create, &e, Some(&payload))
                        })?;
                        let next = self.next_link(
                            job,
                            previous,
                            Some(&created.value.id),
                            true,
                            Some(ManagedBy::Created),
                            Some(payload_hash(&payload)),
                        );
                        self.save_link(Operation::Create, &next, expected_version)
                            .await?;
                        Ok(Applied {
                            http_status: created.http_status,
                            target_id: Some(created.value.id),
                            request: Some(redact(&payload)),
                            ..outcome(
                                Operation::Create,
                                LogStatus::Success,
                                Some(
                                    "the account was gone from the target; created it again".into(),
                                ),
                            )
                        })
                    }
                    Err(error) => Err(Failure::from_connector(operation, &error, Some(&payload))),
                }
            }
            (Plan::Deactivate(why), _, Some((target_id, managed_by))) => {
                let (result, request) = match app.deactivate {
                    DeactivateMode::PatchActive => (
                        connector.set_active(&target_id, false).await,
                        serde_json::json!({"active": false}),
                    ),
                    DeactivateMode::Delete => (
                        connector.delete(&target_id).await,
                        serde_json::json!({"delete": true}),
                    ),
                };
                let (http_status, reason) = match result {
                    Ok(reply) => (reply.http_status, why),
                    Err(ConnectorError::NotFound { .. }) => (
                        Some(404),
                        Some("the account no longer exists in the target".to_owned()),
                    ),
                    Err(error) => {
                        return Err(Failure::from_connector(operation, &error, Some(&request)));
                    }
                };
                let next = self.next_link(
                    job,
                    previous,
                    Some(&target_id),
                    false,
                    Some(managed_by),
                    None,
                );
                self.save_link(operation, &next, expected_version).await?;
                Ok(Applied {
                    http_status,
                    target_id: Some(target_id),
                    request: Some(request),
                    ..outcome(operation, LogStatus::Success, reason)
                })
            }
            (plan, _, _) => Err(Failure::new(
                operation,
                ErrorClass::Permanent,
                "internal",
                format!("cannot carry out {plan:?} without an account"),
            )),
        };
        match result {
            Ok(applied) => Ok(Applied { changes, ..applied }),
            Err(failure) => Err(Failure { changes, ..failure }),
        }
    }

    /// What the plan changes in the account, attribute by attribute: the desired resource
    /// against what userprov last pushed (the link's snapshot mapped the same way). Old values
    /// are left out when they are not known (no account yet, or no snapshot).
    async fn attribute_changes(
        &self,
        app: &AppConfig,
        plan: &Plan,
        previous: Option<&AccountLink>,
        desired: Option<&Value>,
    ) -> Vec<AttributeChange> {
        let account = previous.filter(|l| l.account().is_some());
        if matches!(plan, Plan::Deactivate(_)) {
            return match (account, app.deactivate) {
                (Some(_), DeactivateMode::PatchActive) => vec![AttributeChange::of(
                    "active",
                    Some(Value::Bool(true)),
                    Some(Value::Bool(false)),
                )],
                _ => Vec::new(),
            };
        }
        let Some(desired) = desired else {
            return Vec::new();
        };
        let mut last_pushed = None;
        if !matches!(plan, Plan::CreateOrAdopt)
            && let Some(link) = account
            && let Some(snapshot) = &link.snapshot
            && let Ok(accounts) = self.linked_accounts(app, snapshot).await
            && let Ok(mut pushed) = desired_resource(app, snapshot, &accounts)
        {
            if let Value::Object(map) = &mut pushed {
                map.insert("active".into(), Value::Bool(link.active));
            }
            last_pushed = Some(pushed);
        }
        crate::log::attribute_changes(last_pushed.as_ref(), desired)
    }

    /// The target already has the user's current state. The change is still recorded as
    /// applied, so an older event delivered later is recognised as stale; that matters most
    /// for a leaver who never had an account, whose late "joiner" event must not create one.
    async fn record_noop(
        &self,
        app: &AppConfig,
        job: &Job,
        previous: Option<&AccountLink>,
        reason: &str,
    ) -> Result<Applied, Failure> {
        let target_id = previous.and_then(|l| l.target_id.clone());
        if !app.dry_run {
            let next = self.next_link(
                job,
                previous,
                target_id.as_deref(),
                previous.is_some_and(|l| l.active),
                previous.and_then(|l| l.managed_by),
                previous.and_then(|l| l.last_payload_hash.clone()),
            );
            self.save_link(Operation::Noop, &next, previous.map(|l| l.version))
                .await?;
        }
        Ok(Applied {
            target_id,
            ..outcome(Operation::Noop, LogStatus::Skipped, Some(reason.to_owned()))
        })
    }

    async fn create_or_adopt(
        &self,
        app: &AppConfig,
        connector: &dyn Connector,
        job: &Job,
        previous: Option<&AccountLink>,
        payload: &Value,
    ) -> Result<Applied, Failure> {
        let expected_version = previous.map(|l| l.version);
        let keys = match_keys(app, payload);
        let existing = if keys.is_empty() {
            None
        } else {
            connector
                .find(&keys)
                .await
                .map_err(|e| Failure::from_connector(Operation::Adopt, &e, Some(payload)))?
                .value
        };
        let existing = match existing {
            Some(account) => Some(account),
            None => match connector.create(payload).await {
                Ok(created) => {
                    let next = self.next_link(
                        job,
                        previous,
                        Some(&created.value.id),
                        true,
                        Some(ManagedBy::Created),
                        Some(payload_hash(payload)),
                    );
                    self.save_link(Operation::Create, &next, expected_version)
                        .await?;
                    return Ok(Applied {
                        http_status: created.http_status,
                        target_id: Some(created.value.id),
                        request: Some(redact(payload)),
                        ..outcome(Operation::Create, LogStatus::Success, None)
                    });
                }
                // Someone else has the unique attribute: find that account and adopt it.
                Err(ConnectorError::Conflict { .. }) if !keys.is_empty() => {
                    connector
                        .find(&keys)
                        .await
                        .map_err(|e| Failure::from_connector(Operation::Adopt, &e, Some(payload)))?
                        .value
                }
                Err(error) => {
                    return Err(Failure::from_connector(
                        Operation::Create,
                        &error,
                        Some(payload),
                    ));
                }
            },
        };
        let Some(account) = existing else {
            return Err(Failure {
                http_status: Some(409),
                request: Some(redact(payload)),
                ..Failure::new(
                    Operation::Create,
                    ErrorClass::Permanent,
                    "conflict_without_match",
                    format!(
                        "the target reports a conflicting account, but none matches on {}; check match_on for app {}",
                        app.match_on.join(", "),
                        app.name
                    ),
                )
            });
        };
        let reply = connector
            .update(&account.id, payload)
            .await
            .map_err(|e| Failure::from_connector(Operation::Adopt, &e, Some(payload)))?;
        let next = self.next_link(
            job,
            previous,
            Some(&account.id),
            true,
            Some(ManagedBy::Adopted),
            Some(payload_hash(payload)),
        );
        self.save_link(Operation::Adopt, &next, expected_version)
            .await?;
        Ok(Applied {
            http_status: reply.http_status,
            target_id: Some(account.id),
            request: Some(redact(payload)),
            reason: Some(format!(
                "adopted the existing account matching on {}",
                app.match_on.join(", ")
            )),
            ..outcome(Operation::Adopt, LogStatus::Success, None)
        })
    }

    /// The accounts in this app of the users the mapping refers to (`account_of`, e.g. the
    /// manager), by Salesforce id. Users without an account are left out.
    async fn linked_accounts(
        &self,
        app: &AppConfig,
        user: &crate::source::SourceUser,
    ) -> Result<BTreeMap<SalesforceId, String>, StoreError> {
        let mut accounts = BTreeMap::new();
        for id in app.mapping.referenced_users(user) {
            if let Some(link) = self.links.get_link(&app.name, &id).await?
                && link.active
                && let Some(target_id) = link.target_id
            {
                accounts.insert(id, target_id);
            }
        }
        Ok(accounts)
    }

    /// Brings the account's group memberships to what the user's Permission Set Groups give,
    /// sending only the additions and removals since what was last pushed. Runs after the
    /// account itself is in place; an inactive account's memberships are left as they are.
    async fn sync_groups(
        &self,
        app: &AppConfig,
        groups: &GroupMapping,
        connector: &dyn Connector,
        job: &Job,
        applied: &mut Applied,
    ) -> Result<(), Failure> {
        let operation = applied.operation;
        let account_in_place =
            matches!(
                operation,
                Operation::Create | Operation::Adopt | Operation::Update | Operation::Reactivate
            ) && matches!(applied.status, LogStatus::Success | LogStatus::DryRun);
        if !account_in_place && operation != Operation::Noop {
            return Ok(());
        }
        let link = self
            .links
            .get_link(&app.name, &job.user.id)
            .await
            .map_err(|e| Failure::from_store(operation, &e))?;
        if app.dry_run {
            // Nothing was linked or sent: say what the memberships would become.
            if applied.status == LogStatus::DryRun {
                let last = link.map(|l| l.last_groups).unwrap_or_default();
                let change = groups.change(&groups.desired(&job.user), &last);
                applied.groups = Some(change).filter(|c| !c.is_empty());
            }
            return Ok(());
        }
        let Some(link) = link else {
            return Ok(());
        };
        let Some(target_id) = link.target_id.clone().filter(|_| link.active) else {
            return Ok(());
        };
        // The link's snapshot is the newest state applied; a stale job's user is not.
        let user = link.snapshot.as_ref().unwrap_or(&job.user);
        let desired = groups.desired(user);
        let change = groups.change(&desired, &link.last_groups);
        if change.is_empty() {
            return Ok(());
        }
        let options = GroupOptions {
            chunk_size: groups.chunk_size,
            member_removal: groups.member_removal,
        };
        let member = [target_id];
        let group_failure = |name: &str, error: &ConnectorError| {
            let mut failure = Failure::from_connector(operation, error, None);
            failure.message = format!("group {name:?}: {}", failure.message);
            failure
        };
        for name in &change.added {
            let group_id = connector
                .group_id(name, groups.create_missing)
                .await
                .map_err(|e| group_failure(name, &e))?
                .value;
            let Some(group_id) = group_id else {
                return Err(Failure::new(
                    operation,
                    ErrorClass::Permanent,
                    "group_not_found",
                    format!(
                        "group {name:?} does not exist in app {} and groups.create_missing is false",
                        app.name
                    ),
                ));
            };
            connector
                .add_members(&group_id, &member, &options)
                .await
                .map_err(|e| group_failure(name, &e))?;
        }
        for name in &change.removed {
            // A managed group that is gone has no members to remove.
            let group_id = connector
                .group_id(name, false)
                .await
                .map_err(|e| group_failure(name, &e))?
                .value;
            if let Some(group_id) = group_id {
                match connector.remove_members(&group_id, &member, &options).await {
                    Ok(_) | Err(ConnectorError::NotFound { .. }) => {}
                    Err(error) => return Err(group_failure(name, &error)),
                }
            }
        }
        let mut next = link.clone();
        next.last_groups = desired.into_iter().collect();
        next.version = link.version + 1;
        next.updated_at = self.clock.now();
        self.save_link(operation, &next, Some(link.version)).await?;
        let described = change.describe();
        if applied.operation == Operation::Noop {
            // The attributes were already right; the memberships were not.
            applied.operation = Operation::Update;
            applied.status = LogStatus::Success;
            applied.reason = Some(described);
        } else {
            applied.reason = Some(match applied.reason.take() {
                Some(reason) => format!("{reason}; {described}"),
                None => described,
            });
        }
        applied.groups = Some(change);
        Ok(())
    }

    fn next_link(
        &self,
        job: &Job,
        previous: Option<&AccountLink>,
        target_id: Option<&str>,
        active: bool,
        managed_by: Option<ManagedBy>,
        payload_hash: Option<String>,
    ) -> AccountLink {
        let last_source_time = match (previous.and_then(|l| l.last_source_time), job.source_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        AccountLink {
            app: job.app.clone(),
            user_id: job.user.id.clone(),
            username: job
                .user
                .username()
                .map(str::to_owned)
                .or_else(|| previous.and_then(|l| l.username.clone())),
            target_id: target_id.map(str::to_owned),
            active,
            last_source_time,
            last_event_id: Some(job.event_id.clone()),
            last_payload_hash: payload_hash,
            last_groups: previous.map(|l| l.last_groups.clone()).unwrap_or_default(),
            snapshot: Some(job.user.clone()),
            managed_by,
            version: previous.map_or(1, |l| l.version + 1),
            updated_at: self.clock.now(),
        }
    }

    async fn save_link(
        &self,
        operation: Operation,
        link: &AccountLink,
        expected: Option<u64>,
    ) -> Result<(), Failure> {
        // Synced after the job's log entry (see `handle_job`): a crash before that loses the
        // link with the entry, and the job, never settled, is delivered again.
        self.links
            .put_link_unsynced(link, expected)
            .await
            .map_err(|e| Failure::from_store(operation, &e))
    }

    fn entry(&self, job: &Job, attempt: u32, duration_ms: u64, applied: Applied) -> LogEntry {
        LogEntry {
            id: LogEntry::new_id(),
            time: self.clock.now(),
            app: job.app.clone(),
            user_id: job.user.id.to_string(),
            username: applied
                .username
                .or_else(|| job.user.username().map(str::to_owned)),
            event_id: job.event_id.clone(),
            source: job.source,
            correlation_id: job.correlation_id.clone(),
            operation: applied.operation,
            status: applied.status,
            attempt,
            http_status: applied.http_status,
            target_id: applied.target_id,
            reason: applied.reason,
            error: None,
            request: applied.request,
            response: None,
            groups: applied.groups,
            changes: applied.changes,
            duration_ms,
        }
    }

    fn failure_entry(
        &self,
        job: &Job,
        attempt: u32,
        duration_ms: u64,
        status: LogStatus,
        failure: Failure,
    ) -> LogEntry {
        let reason = match status {
            LogStatus::Retrying if failure.throttling => Some(format!(
                "attempt {attempt} throttled; retrying when the target allows (throttling is not \
                 counted against the {} failed attempts allowed)",
                self.retry.max_failed_attempts
            )),
            LogStatus::Retrying => Some(format!(
                "attempt {attempt} of {} failed; retrying",
                self.retry.max_attempts
            )),
            LogStatus::DeadLettered => Some(format!(
                "attempt {attempt} of {} failed; sent to the dead-letter queue",
                self.retry.max_attempts
            )),
            _ => Some("permanent failure: not retried; sent to the dead-letter queue".to_owned()),
        };
        LogEntry {
            http_status: failure.http_status,
            target_id: None,
            reason,
            error: Some(ErrorInfo {
                class: failure.class,
                code: failure.code,
                message: failure.message,
            }),
            request: failure.request,
            response: failure.response,
            changes: failure.changes,
            ..self.entry(
                job,
                attempt,
                duration_ms,
                Applied {
                    username: failure.username,
                    ..outcome(failure.operation, status, None)
                },
            )
        }
    }
}

/// What an attempt tells the circuit breaker about the app's target.
fn call_outcome(result: &Result<Applied, Failure>) -> crate::breaker::CallOutcome {
    use crate::breaker::CallOutcome;
    match result {
        Ok(applied) if applied.status == LogStatus::Success => CallOutcome::Answered,
        Ok(_) => CallOutcome::NoCall,
        Err(failure) if !failure.from_target || failure.throttling => CallOutcome::NoCall,
        Err(failure) if failure.class == ErrorClass::Transient => CallOutcome::Failed,
        Err(_) => CallOutcome::Answered,
    }
}

/// A paused app's jobs come back spread over a few seconds after the cool-down, not at once.
fn spread(wait: Duration) -> Duration {
    let extra_ms = rand::rng().random_range(0..=1_000 + wait.as_millis() / 5);
    wait.max(Duration::from_secs(1)) + Duration::from_millis(u64::try_from(extra_ms).unwrap_or(0))
}

fn outcome(operation: Operation, status: LogStatus, reason: Option<String>) -> Applied {
    Applied {
        operation,
        status,
        http_status: None,
        target_id: None,
        reason,
        request: None,
        groups: None,
        username: None,
        changes: Vec::new(),
    }
}

/// The resource pushed for an active user: the mapped attributes, the role attribute when
/// Permission Set Groups are delivered as one, and `active: true`. `accounts` resolves
/// `account_of` rules (Salesforce user id → that user's account id in the app).
pub fn desired_resource(
    app: &AppConfig,
    user: &crate::source::SourceUser,
    accounts: &BTreeMap<SalesforceId, String>,
) -> Result<Value, crate::mapping::MapError> {
    let mut payload = app.mapping.apply_linked(user, accounts)?;
    if let Value::Object(map) = &mut payload {
        if let Some(groups) = &app.groups
            && groups.deliver_as == DeliverAs::Attribute
        {
            map.insert(groups.attribute.clone(), groups.attribute_value(user));
        }
        map.insert("active".into(), Value::Bool(true));
    }
    Ok(payload)
}

/// The match keys for finding an existing account: each `match_on` attribute with its mapped value.
pub fn match_keys(app: &AppConfig, payload: &Value) -> Vec<MatchKey> {
    app.match_on
        .iter()
        .filter_map(|attribute| {
            let path = app.mapping.target_path(attribute)?;
            let value = match path.read(payload)? {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some(MatchKey {
                attribute: attribute.clone(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::connector::{Reply, TargetAccount};
    use crate::ids::SalesforceId;
    use crate::log::{LogPage, LogQuery};
    use crate::ports::SystemClock;
    use crate::source::{Completeness, EventSource, SourceEvent, SourceUser};

    #[derive(Default)]
    struct MemoryLinks(Mutex<HashMap<(String, String), AccountLink>>);

    #[async_trait]
    impl LinkStore for MemoryLinks {
        async fn get_link(
            &self,
            app: &str,
            user_id: &SalesforceId,
        ) -> Result<Option<AccountLink>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(&(app.to_owned(), user_id.to_string()))
                .cloned())
        }
        async fn put_link(
            &self,
            link: &AccountLink,
            expected: Option<u64>,
        ) -> Result<(), StoreError> {
            let mut links = self.0.lock().unwrap();
            let key = (link.app.clone(), link.user_id.to_string());
            if links.get(&key).map(|l| l.version) != expected {
                return Err(StoreError::Conflict { expected });
            }
            links.insert(key, link.clone());
            Ok(())
        }
        async fn list_links(
            &self,
            _: Option<&str>,
            _: Option<(&str, &str)>,
            _: usize,
        ) -> Result<Vec<AccountLink>, StoreError> {
            Ok(self.0.lock().unwrap().values().cloned().collect())
        }
    }

    #[derive(Default)]
    struct MemoryLog(Mutex<Vec<LogEntry>>);

    #[async_trait]
    impl LogStore for MemoryLog {
        async fn append(&self, entry: &LogEntry) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(entry.clone());
            Ok(())
        }
        async fn get_entry(&self, id: &str) -> Result<Option<LogEntry>, StoreError> {
            Ok(self.0.lock().unwrap().iter().find(|e| e.id == id).cloned())
        }
        async fn query(&self, _: &LogQuery) -> Result<LogPage, StoreError> {
            Ok(LogPage {
                entries: self.0.lock().unwrap().clone(),
                next_cursor: None,
            })
        }
    }

    /// A target whose `create` answers are scripted; everything else succeeds.
    #[derive(Default)]
    struct ScriptedTarget {
        create_failures: Mutex<VecDeque<ConnectorError>>,
        creates: Mutex<Vec<Value>>,
    }

    #[async_trait]
    impl Connector for ScriptedTarget {
        async fn find(
            &self,
            _: &[MatchKey],
        ) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
            Ok(Reply {
                value: None,
                http_status: Some(200),
            })
        }
        async fn get(&self, _: &str) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
            Ok(Reply {
                value: None,
                http_status: Some(404),
            })
        }
        async fn create(&self, resource: &Value) -> Result<Reply<TargetAccount>, ConnectorError> {
            if let Some(error) = self.create_failures.lock().unwrap().pop_front() {
                return Err(error);
            }
            let mut creates = self.creates.lock().unwrap();
            creates.push(resource.clone());
            let id = format!("t-{}", creates.len());
            Ok(Reply {
                value: TargetAccount {
                    id,
                    active: Some(true),
                    resource: resource.clone(),
                },
                http_status: Some(201),
            })
        }
        async fn update(&self, _: &str, _: &Value) -> Result<Reply<()>, ConnectorError> {
            Ok(Reply {
                value: (),
                http_status: Some(200),
            })
        }
        async fn set_active(&self, _: &str, _: bool) -> Result<Reply<()>, ConnectorError> {
            Ok(Reply {
                value: (),
                http_status: Some(204),
            })
        }
        async fn delete(&self, _: &str) -> Result<Reply<()>, ConnectorError> {
            Ok(Reply {
                value: (),
                http_status: Some(204),
            })
        }
    }

    struct Fixture {
        worker: Worker,
        target: Arc<ScriptedTarget>,
        log: Arc<MemoryLog>,
    }

    fn fixture(max_attempts: u32) -> Fixture {
        let config = Config::parse(
            r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            [[apps]]
            name = "app"
            base_url = "https://scim.example.com/v2"
            secret = "s"
            [apps.mapping]
            userName = { from = "Username", required = true }
            "#,
            "test",
        )
        .unwrap();
        let target = Arc::new(ScriptedTarget::default());
        let log = Arc::new(MemoryLog::default());
        let connectors: BTreeMap<String, Arc<dyn Connector>> =
            [("app".to_owned(), target.clone() as Arc<dyn Connector>)].into();
        let worker = Worker::new(
            Arc::new(config),
            connectors,
            Arc::new(MemoryLinks::default()),
            log.clone(),
            Arc::new(SystemClock),
            RetryPolicy {
                max_attempts,
                max_failed_attempts: max_attempts,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
            },
        );
        Fixture {
            worker,
            target,
            log,
        }
    }

    fn message(user_id: &str, username: &str, receive_count: u32) -> ReceivedMessage {
        let mut user = SourceUser::new(SalesforceId::parse(user_id).unwrap());
        user.fields.insert("Username".into(), json!(username));
        user.fields.insert("IsActive".into(), json!("true"));
        let event = SourceEvent {
            event_id: format!("04l-{username}"),
            source: EventSource::OutboundMessage,
            user,
            event_time: None,
        };
        let job = Job::new("app", &event, "corr", time::OffsetDateTime::now_utc());
        ReceivedMessage {
            message_id: format!("m-{username}"),
            receipt: "r".into(),
            group_id: job.group_id(),
            dedup_id: job.dedup_id(),
            body: job.to_body().unwrap(),
            receive_count,
        }
    }

    fn statuses(log: &MemoryLog) -> Vec<(String, LogStatus)> {
        log.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.username.clone().unwrap_or_default(), e.status))
            .collect()
    }

    const ANA: &str = "0058a00000LmN2pAAF";
    const BEN: &str = "0058a00000LmN3qAAF";

    #[tokio::test]
    async fn a_retried_message_holds_back_the_rest_of_its_group_but_not_other_groups() {
        let f = fixture(5);
        f.target
            .create_failures
            .lock()
            .unwrap()
            .push_back(ConnectorError::ServerError {
                status: 503,
                detail: "busy".into(),
                retry_after: Some(Duration::from_secs(7)),
            });
        let batch = [
            message(ANA, "ana-1", 1),
            message(ANA, "ana-2", 1),
            message(BEN, "ben", 1),
        ];

        let dispositions = f.worker.handle_batch(&batch).await;

        assert_eq!(
            dispositions[0],
            Disposition::RetryAfter(Duration::from_secs(7)),
            "Retry-After wins over backoff"
        );
        assert_eq!(
            dispositions[1],
            Disposition::Postpone(Duration::from_secs(7)),
            "held back unprocessed, without using up an attempt"
        );
        assert_eq!(dispositions[2], Disposition::Done);
        assert_eq!(
            statuses(&f.log),
            vec![
                ("ana-1".into(), LogStatus::Retrying),
                ("ben".into(), LogStatus::Success)
            ]
        );
    }

    #[tokio::test]
    async fn a_transient_failure_on_the_last_attempt_is_dead_lettered_and_logged() {
        let f = fixture(3);
        f.target
            .create_failures
            .lock()
            .unwrap()
            .push_back(ConnectorError::Timeout);

        let disposition = f.worker.handle_message(&message(ANA, "ana", 3)).await;

        assert!(matches!(disposition, Disposition::DeadLetter { .. }));
        let log = f.log.0.lock().unwrap();
        assert_eq!(log[0].status, LogStatus::DeadLettered);
        assert_eq!(log[0].attempt, 3);
        assert_eq!(log[0].error.as_ref().unwrap().code, "timeout");
    }

    #[tokio::test]
    async fn throttled_attempts_do_not_use_up_the_failed_attempts_allowed() {
        let mut f = fixture(10);
        f.worker.retry.max_failed_attempts = 2;
        {
            let mut failures = f.target.create_failures.lock().unwrap();
            for _ in 0..3 {
                failures.push_back(ConnectorError::Throttled {
                    status: 429,
                    retry_after: Some(Duration::from_secs(1)),
                });
            }
            failures.push_back(ConnectorError::Timeout);
            failures.push_back(ConnectorError::Timeout);
        }

        let mut dispositions = Vec::new();
        for delivery in 1..=5 {
            dispositions.push(
                f.worker
                    .handle_message(&message(ANA, "ana", delivery))
                    .await,
            );
        }

        assert_eq!(
            dispositions[..3],
            vec![Disposition::RetryAfter(Duration::from_secs(1)); 3],
            "three throttled deliveries wait as the target asked"
        );
        assert!(
            matches!(dispositions[3], Disposition::RetryAfter(_)),
            "the first failure is retried"
        );
        assert!(
            matches!(dispositions[4], Disposition::DeadLetter { .. }),
            "the second failure is the last allowed, though it is the fifth delivery"
        );
        let log = f.log.0.lock().unwrap();
        let statuses: Vec<LogStatus> = log.iter().map(|e| e.status).collect();
        assert_eq!(
            statuses,
            [
                LogStatus::Retrying,
                LogStatus::Retrying,
                LogStatus::Retrying,
                LogStatus::Retrying,
                LogStatus::DeadLettered
            ]
        );
        assert!(
            log[0].reason.as_deref().unwrap().contains("throttled"),
            "{:?}",
            log[0].reason
        );
    }

    #[tokio::test]
    async fn without_throttling_every_delivery_is_a_failed_attempt() {
        let mut f = fixture(10);
        f.worker.retry.max_failed_attempts = 2;
        f.target
            .create_failures
            .lock()
            .unwrap()
            .extend([ConnectorError::Timeout, ConnectorError::Timeout]);

        let first = f.worker.handle_message(&message(ANA, "ana", 1)).await;
        let second = f.worker.handle_message(&message(ANA, "ana", 2)).await;

        assert!(matches!(first, Disposition::RetryAfter(_)));
        assert!(matches!(second, Disposition::DeadLetter { .. }));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let f = fixture(5);
        f.target
            .create_failures
            .lock()
            .unwrap()
            .push_back(ConnectorError::Rejected {
                status: 400,
                scim_type: Some("invalidValue".into()),
                detail: "bad email".into(),
                body: "{\"detail\":\"bad email\"}".into(),
            });

        let disposition = f.worker.handle_message(&message(ANA, "ana", 1)).await;

        assert!(matches!(disposition, Disposition::DeadLetter { .. }));
        let log = f.log.0.lock().unwrap();
        assert_eq!(
            (log[0].status, log[0].http_status),
            (LogStatus::Failed, Some(400))
        );
        assert_eq!(
            log[0].response.as_deref(),
            Some("{\"detail\":\"bad email\"}")
        );
    }

    #[tokio::test]
    async fn an_unreadable_message_goes_to_the_dead_letter_queue() {
        let f = fixture(5);
        let mut bad = message(ANA, "ana", 1);
        bad.body = "{\"v\":2}".into();
        let disposition = f.worker.handle_message(&bad).await;
        assert_eq!(
            disposition,
            Disposition::DeadLetter {
                reason: "the job has format version 2, this worker reads version 1".into()
            }
        );
    }

    #[test]
    fn backoff_grows_exponentially_within_the_cap_with_full_jitter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            max_failed_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(3, None) <= Duration::from_millis(400));
            assert!(policy.delay(9, None) <= Duration::from_secs(1));
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(100_000))),
            Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn secret_looking_keys_are_redacted_at_any_depth() {
        let redacted = redact(&json!({"userName": "a", "password": "p", "x": [{"apiToken": "t"}]}));
        assert_eq!(
            redacted,
            json!({"userName": "a", "password": "[redacted]", "x": [{"apiToken": "[redacted]"}]})
        );
    }

    /// A change event as the events parser gives it: only what changed, no Username.
    fn change_message(
        user_id: &str,
        event_id: &str,
        completeness: Completeness,
    ) -> ReceivedMessage {
        let mut user = SourceUser::new(SalesforceId::parse(user_id).unwrap());
        user.completeness = completeness;
        if completeness == Completeness::Partial {
            user.fields.insert("Title".into(), json!("Head of Sales"));
        }
        let event = SourceEvent {
            event_id: event_id.to_owned(),
            source: EventSource::ChangeDataCapture,
            user,
            event_time: None,
        };
        let job = Job::new("app", &event, "corr", time::OffsetDateTime::now_utc());
        ReceivedMessage {
            message_id: format!("m-{event_id}"),
            receipt: "r".into(),
            group_id: job.group_id(),
            dedup_id: job.dedup_id(),
            body: job.to_body().unwrap(),
            receive_count: 1,
        }
    }

    #[tokio::test]
    async fn a_change_event_without_username_is_logged_with_the_username_of_the_snapshot() {
        let f = fixture(5);
        f.worker.handle_batch(&[message(ANA, "ana", 1)]).await;
        f.worker
            .handle_batch(&[change_message(ANA, "tx1:1", Completeness::Partial)])
            .await;
        f.worker
            .handle_batch(&[change_message(ANA, "tx2:1", Completeness::Gap)])
            .await;
        f.worker
            .handle_batch(&[change_message(BEN, "tx3:1", Completeness::Gap)])
            .await;

        let entries = f.log.0.lock().unwrap().clone();
        let seen: Vec<(&str, Option<&str>, LogStatus)> = entries
            .iter()
            .map(|e| (e.event_id.as_str(), e.username.as_deref(), e.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("04l-ana", Some("ana"), LogStatus::Success),
                // Merged into the snapshot; the mapping reads no Title, so nothing to send.
                ("tx1:1", Some("ana"), LogStatus::Skipped),
                ("tx2:1", Some("ana"), LogStatus::Skipped),
                // Nothing is known of this user yet: no name is made up.
                ("tx3:1", None, LogStatus::Skipped),
            ]
        );
        assert_eq!(entries[1].operation, Operation::Noop);
    }

    /// With the embedded queue and store, as `userprov serve` runs them: a crash right after a
    /// job is settled can lose the settle (unsynced) but not the job's link or log entry
    /// (synced before the settle), so the job comes back and changes nothing.
    #[tokio::test]
    async fn a_job_whose_settle_a_crash_lost_comes_back_and_changes_nothing() {
        use crate::embedded::test_support::ManualClock;
        use crate::embedded::{EmbeddedDb, EmbeddedQueue, EmbeddedStore, QueueSettings};
        use crate::ports::{JobQueue, QueueConsumer};

        let f = fixture(5);
        let clock = ManualClock::new();
        let embedded = |db: &EmbeddedDb| {
            let store = Arc::new(EmbeddedStore::new(db.clone()));
            let worker = Worker::new(
                f.worker.config.clone(),
                f.worker.connectors.clone(),
                store.clone(),
                store.clone(),
                clock.clone(),
                f.worker.retry.clone(),
            );
            let queue = EmbeddedQueue::new(db.clone(), QueueSettings::default(), clock.clone());
            (worker, queue, store)
        };
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("data")).unwrap();
        let (worker, queue, _) = embedded(&db);
        let job = Job::from_body(&message(ANA, "ana", 1).body).unwrap();
        queue.enqueue(std::slice::from_ref(&job)).await.unwrap();
        let received = queue.receive(1, Duration::ZERO).await.unwrap();
        let dispositions = worker.handle_batch(&received).await;
        assert_eq!(dispositions, [Disposition::Done]);
        queue.settle(&received[0], &dispositions[0]).await.unwrap();
        assert_eq!(f.target.creates.lock().unwrap().len(), 1);

        let (worker, queue, store) = embedded(&db.after_a_crash(&dir.path().join("after-crash")));
        let link = store.get_link("app", &job.user.id).await.unwrap();
        assert_eq!(link.and_then(|l| l.target_id).as_deref(), Some("t-1"));
        clock.advance(QueueSettings::default().visibility_timeout);
        let again = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(
            again.len(),
            1,
            "the settle was not synced: the job is delivered again"
        );
        assert_eq!(worker.handle_batch(&again).await, [Disposition::Done]);
        assert_eq!(
            f.target.creates.lock().unwrap().len(),
            1,
            "no second account"
        );
        let entries = store.query(&LogQuery::default()).await.unwrap().entries;
        let operations: Vec<Operation> = entries.iter().rev().map(|e| e.operation).collect();
        assert_eq!(operations, [Operation::Create, Operation::Noop]);
    }
}
