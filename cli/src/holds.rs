//! `userprov holds list|release|discard`: the deactivations held by an app's deactivation
//! guard, in the data directory (embedded store and queue) or in a deployed stack (the DynamoDB
//! holds table, the SQS job queue and the DynamoDB log table). One implementation over the
//! ports; only where the ports come from differs.
//!
//! A release queues the held job again in its user's message group (on SQS under a fresh
//! deduplication id), then removes the hold. The job passes the guard once and is re-planned
//! against the account link as it is then: a user reactivated meanwhile is not deactivated.
//! A discard removes the hold and logs the job as skipped; it is never applied.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use userprov_aws::SqsQueue;
use userprov_core::embedded::{EmbeddedHoldStore, EmbeddedQueue, EmbeddedStore};
use userprov_core::guard::Hold;
use userprov_core::job::Job;
use userprov_core::log::{LogEntry, LogStatus, Operation};
use userprov_core::ports::{HoldStore, LogStore, ReceivedMessage};

use crate::aws::{AwsArgs, AwsResources};
use crate::import::Failure;

/// Where the holds are, as the operator gave it.
#[derive(Debug, Clone)]
pub struct HoldsOptions {
    pub data_dir: PathBuf,
    pub aws: AwsArgs,
    /// The holds table, instead of the stack's HoldsTableName output.
    pub holds_table: Option<String>,
    pub json: bool,
}

impl HoldsOptions {
    fn on_aws(&self) -> bool {
        self.aws.selected() || self.holds_table.is_some()
    }
}

/// What a command printed, and how it failed (after printing what it did).
#[derive(Debug)]
pub struct Outcome {
    pub stdout: String,
    pub failure: Option<Failure>,
}

impl From<Failure> for Outcome {
    fn from(failure: Failure) -> Self {
        Self {
            stdout: String::new(),
            failure: Some(failure),
        }
    }
}

/// The queue a released job goes back to.
enum ReleaseQueue {
    Embedded(EmbeddedQueue),
    Sqs(SqsQueue),
}

impl ReleaseQueue {
    /// Queues `body` again in `group`; says where it went.
    async fn send_again(&self, group: &str, body: &str) -> Result<String, String> {
        match self {
            Self::Embedded(queue) => queue
                .requeue(group, body)
                .await
                .map(|id| format!("as message {id}"))
                .map_err(|e| e.to_string()),
            Self::Sqs(queue) => {
                // The held message was consumed: send a copy of it, same body and group.
                let held = ReceivedMessage {
                    message_id: String::new(),
                    receipt: String::new(),
                    group_id: group.to_owned(),
                    dedup_id: String::new(),
                    body: body.to_owned(),
                    receive_count: 0,
                };
                queue
                    .send_copy(&held)
                    .await
                    .map(|()| format!("to {}", queue.queue_url()))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The stores and queue one command works over.
struct Ports {
    holds: Arc<dyn HoldStore>,
    log: Option<Arc<dyn LogStore>>,
    queue: Option<ReleaseQueue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    List,
    Release,
    Discard,
}

async fn open(options: &HoldsOptions, need: Need) -> Result<Ports, Failure> {
    if options.on_aws() {
        let mut resources = AwsResources::resolve(&options.aws).await?;
        if options.holds_table.is_some() {
            resources.holds_table.clone_from(&options.holds_table);
        }
        let holds: Arc<dyn HoldStore> = Arc::new(resources.hold_store()?);
        let log: Option<Arc<dyn LogStore>> = match need {
            Need::Discard => Some(Arc::new(resources.log_store()?)),
            _ => None,
        };
        let queue = match need {
            Need::Release => Some(ReleaseQueue::Sqs(resources.queue()?)),
            _ => None,
        };
        return Ok(Ports { holds, log, queue });
    }
    let db = crate::import::open_db(&options.data_dir)?;
    Ok(Ports {
        holds: Arc::new(EmbeddedHoldStore::new(db.clone())),
        log: Some(Arc::new(EmbeddedStore::new(db.clone()))),
        queue: Some(ReleaseQueue::Embedded(crate::admin::queue(db, None))),
    })
}

fn store_failure(error: impl std::fmt::Display) -> Failure {
    Failure::other(error.to_string())
}

pub fn hold_line(hold: &Hold) -> String {
    format!(
        "{}  {}  {}  {}  held {}",
        hold.id,
        hold.app,
        hold.user_id,
        hold.username.as_deref().unwrap_or("-"),
        hold.held_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    )
}

fn to_json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Failure::other(e.to_string()))
}

/// The held jobs, oldest first: lines of text, or one JSON array of holds.
pub async fn list(options: &HoldsOptions, app: Option<&str>) -> Result<String, Failure> {
    let ports = open(options, Need::List).await?;
    let holds = ports.holds.list_holds(app).await.map_err(store_failure)?;
    if options.json {
        return to_json(&holds);
    }
    let mut out = String::new();
    if holds.is_empty() {
        out.push_str("no held jobs\n");
    }
    for hold in &holds {
        let _ = writeln!(out, "{}\n    {}", hold_line(hold), hold.reason);
    }
    Ok(out)
}

/// `--json` for release and discard.
#[derive(Debug, Default, Serialize)]
struct Settled {
    /// "release" or "discard".
    action: &'static str,
    /// The holds settled, as they were.
    settled: Vec<Hold>,
    /// Ids given that name no hold.
    missing: Vec<String>,
}

/// Releases or discards the named holds, or every hold of `all_of_app`.
pub async fn settle(
    options: &HoldsOptions,
    ids: &[String],
    all_of_app: Option<&str>,
    release: bool,
) -> Outcome {
    let need = if release {
        Need::Release
    } else {
        Need::Discard
    };
    let ports = match open(options, need).await {
        Ok(ports) => ports,
        Err(failure) => return failure.into(),
    };
    let ids: Vec<String> = match all_of_app {
        Some(app) => match ports.holds.list_holds(Some(app)).await {
            Ok(holds) => holds.into_iter().map(|h| h.id).collect(),
            Err(error) => return store_failure(error).into(),
        },
        None => ids.to_vec(),
    };
    if ids.is_empty() && all_of_app.is_none() {
        return Failure::bad_input("no hold to settle: give hold ids, or --all --app APP").into();
    }
    let mut report = Settled {
        action: if release { "release" } else { "discard" },
        ..Settled::default()
    };
    let mut text = String::new();
    let mut failure = None;
    for id in &ids {
        let result = if release {
            release_one(&ports, id).await
        } else {
            discard_one(&ports, id).await
        };
        match result {
            Ok(Some((hold, line))) => {
                text.push_str(&line);
                report.settled.push(hold);
            }
            Ok(None) => report.missing.push(id.clone()),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    if ids.is_empty() {
        text.push_str("no held jobs\n");
    }
    if failure.is_none() && !report.missing.is_empty() {
        failure = Some(Failure::other(format!(
            "no hold with id {}",
            report.missing.join(", ")
        )));
    }
    let stdout = if options.json {
        match to_json(&report) {
            Ok(json) => json,
            Err(error) => return error.into(),
        }
    } else {
        text
    };
    Outcome { stdout, failure }
}

/// Marks the job released (it passes the guard once), queues it again, then removes the hold:
/// a worker that picks the job up at once lets it through, and a failed send leaves the hold
/// listed to release again.
async fn release_one(ports: &Ports, id: &str) -> Result<Option<(Hold, String)>, Failure> {
    let Some(queue) = &ports.queue else {
        return Err(Failure::other("no queue to release held jobs to"));
    };
    let Some(hold) = ports.holds.release_hold(id).await.map_err(store_failure)? else {
        return Ok(None);
    };
    let group = match Job::from_body(&hold.job) {
        Ok(job) => job.group_id(),
        Err(_) => userprov_core::job::group_id(&hold.app, &hold.user_id),
    };
    let sent = queue.send_again(&group, &hold.job).await.map_err(|e| {
        Failure::other(format!(
            "hold {id} was not released: its job could not be queued ({e}); it is still held, release it again"
        ))
    })?;
    ports
        .holds
        .take_hold(id, false)
        .await
        .map_err(|e| {
            Failure::other(format!(
                "hold {id}: its job was queued again, but the hold could not be removed ({e}); discarding it now is safe"
            ))
        })?;
    let line = format!(
        "released {}: queued again {sent}; it is re-planned against the account link when it runs\n",
        hold_line(&hold)
    );
    Ok(Some((hold, line)))
}

async fn discard_one(ports: &Ports, id: &str) -> Result<Option<(Hold, String)>, Failure> {
    let Some(log) = &ports.log else {
        return Err(Failure::other("no log to record discarded holds in"));
    };
    let Some(hold) = ports
        .holds
        .take_hold(id, false)
        .await
        .map_err(store_failure)?
    else {
        return Ok(None);
    };
    if let Ok(job) = Job::from_body(&hold.job) {
        log.append(&discarded_entry(&job, &hold))
            .await
            .map_err(|e| {
                Failure::other(format!(
                    "hold {id} was discarded, but its log entry could not be written: {e}"
                ))
            })?;
    }
    let line = format!("discarded {}\n", hold_line(&hold));
    Ok(Some((hold, line)))
}

fn discarded_entry(job: &Job, hold: &Hold) -> LogEntry {
    LogEntry {
        id: LogEntry::new_id(),
        time: time::OffsetDateTime::now_utc(),
        app: job.app.clone(),
        user_id: job.user.id.to_string(),
        username: job.user.username().map(str::to_owned),
        event_id: job.event_id.clone(),
        source: job.source,
        correlation_id: job.correlation_id.clone(),
        operation: Operation::Deactivate,
        status: LogStatus::Skipped,
        attempt: 1,
        http_status: None,
        target_id: None,
        reason: Some(format!(
            "hold {} discarded by an admin: the deactivation was not applied",
            hold.id
        )),
        error: None,
        request: None,
        response: None,
        groups: None,
        changes: Vec::new(),
        duration_ms: 0,
    }
}
