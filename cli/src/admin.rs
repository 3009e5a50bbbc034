//! Operator commands over the embedded data directory: held jobs (`holds`) and provisioning
//! one user on demand (`resync`). The dead-letter queue's `redrive` is in [`crate::redrive`].
//!
//! They open the data directory's database, which only one process may hold: stop
//! `userprov serve` first (the error says so when it is running).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use userprov_core::config::Config;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::{
    EmbeddedDb, EmbeddedHoldStore, EmbeddedQueue, EmbeddedStore, LocalSecretStore, QueueSettings,
};
use userprov_core::guard::Hold;
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::log::{LogEntry, LogQuery, LogStatus, Operation};
use userprov_core::ports::{
    Disposition, HoldStore, LinkStore, LogStore, ReceivedMessage, SystemClock,
};
use userprov_core::source::{EventSource, SourceEvent};
use userprov_core::worker::{RetryPolicy, Worker};

/// A failed command: the message for stderr.
pub type CommandResult = Result<String, String>;

pub(crate) fn open_db(data_dir: &Path) -> Result<EmbeddedDb, String> {
    EmbeddedDb::open(data_dir).map_err(|e| {
        format!(
            "{e}\n(the admin commands open the data directory {} directly: stop `userprov serve` first)",
            data_dir.display()
        )
    })
}

pub(crate) fn queue(db: EmbeddedDb, config: Option<&Config>) -> EmbeddedQueue {
    let max_receives = config.map_or(QueueSettings::default().max_receives, |c| {
        c.worker.max_attempts
    });
    EmbeddedQueue::new(
        db,
        QueueSettings {
            max_receives,
            ..QueueSettings::default()
        },
        Arc::new(SystemClock),
    )
}

fn hold_line(hold: &Hold) -> String {
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

pub async fn holds_list(data_dir: &Path, app: Option<&str>) -> CommandResult {
    let store = EmbeddedHoldStore::new(open_db(data_dir)?);
    let holds = store.list_holds(app).await.map_err(|e| e.to_string())?;
    let mut out = String::new();
    if holds.is_empty() {
        out.push_str("no held jobs\n");
    }
    for hold in &holds {
        let _ = writeln!(out, "{}\n    {}", hold_line(hold), hold.reason);
    }
    Ok(out)
}

/// Releases (the job goes back to its queue group and is re-planned against the account link
/// as it is then) or discards (logged, never applied) the named holds, or every hold of `app`.
pub async fn holds_settle(
    data_dir: &Path,
    ids: &[String],
    all_of_app: Option<&str>,
    release: bool,
) -> CommandResult {
    let db = open_db(data_dir)?;
    let store = EmbeddedHoldStore::new(db.clone());
    let log = EmbeddedStore::new(db.clone());
    let queue = queue(db, None);
    let ids: Vec<String> = match all_of_app {
        Some(app) => store
            .list_holds(Some(app))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|h| h.id)
            .collect(),
        None => ids.to_vec(),
    };
    if ids.is_empty() {
        return Err("no hold to settle: give hold ids, or --all --app APP".into());
    }
    let mut out = String::new();
    let mut missing = Vec::new();
    for id in &ids {
        let Some(hold) = store
            .take_hold(id, release)
            .await
            .map_err(|e| e.to_string())?
        else {
            missing.push(id.clone());
            continue;
        };
        let job = Job::from_body(&hold.job);
        if release {
            let group = match &job {
                Ok(job) => job.group_id(),
                Err(_) => userprov_core::job::group_id(&hold.app, &hold.user_id),
            };
            let message_id = queue
                .requeue(&group, &hold.job)
                .await
                .map_err(|e| format!("hold {id} was released but its job was not queued: {e}"))?;
            let _ = writeln!(
                out,
                "released {}: queued again as message {message_id}; it is re-planned against the account link when it runs",
                hold_line(&hold)
            );
        } else {
            if let Ok(job) = &job {
                log.append(&discarded_entry(job, &hold))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let _ = writeln!(out, "discarded {}", hold_line(&hold));
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!("{out}no hold with id {}", missing.join(", ")))
    }
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

/// Provisions one user now: re-plans from the account link's last snapshot (or the supplied
/// one) and applies the plan, printing each step. Ordering checks do not apply: the snapshot
/// is taken as the user's current state.
pub async fn resync(
    config_path: Option<&Path>,
    data_dir: &Path,
    app_name: &str,
    user: &str,
    snapshot: Option<PathBuf>,
) -> CommandResult {
    let config = Arc::new(
        config_path
            .map(Config::load)
            .unwrap_or_else(Config::example)
            .map_err(|e| e.to_string())?,
    );
    let app = config
        .app(app_name)
        .ok_or_else(|| format!("no app named {app_name:?} in {}", config.origin))?;
    let user_id = SalesforceId::parse(user)
        .map_err(|e| format!("--user must be a Salesforce user id: {e}"))?;
    let db = open_db(data_dir)?;
    let store = EmbeddedStore::new(db.clone());
    let mut out = String::new();

    let link = store
        .get_link(app_name, &user_id)
        .await
        .map_err(|e| e.to_string())?;
    match &link {
        Some(link) => {
            let _ = writeln!(
                out,
                "1. account link: target id {}, {}, managed by {}, last change applied {}",
                link.target_id.as_deref().unwrap_or("(no account)"),
                if link.active { "active" } else { "inactive" },
                link.managed_by
                    .map_or("-".to_owned(), |m| format!("{m:?}").to_lowercase()),
                link.last_source_time
                    .map_or("-".to_owned(), |t| t.to_string())
            );
        }
        None => out.push_str("1. account link: none (userprov has not provisioned this user)\n"),
    }
    let snapshot_user = match snapshot {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut snapshot = userprov_core::source_file::user_from_json_text(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if snapshot.id != user_id {
                return Err(format!(
                    "{} is the snapshot of user {}, not {user_id}",
                    path.display(),
                    snapshot.id
                ));
            }
            let _ = writeln!(out, "2. snapshot: from {}", path.display());
            snapshot.id = user_id.clone();
            snapshot
        }
        None => {
            let snapshot = link.as_ref().and_then(|l| l.snapshot.clone()).ok_or_else(|| {
                format!(
                    "{out}no snapshot is stored for this user in app {app_name}: give one with --snapshot FILE"
                )
            })?;
            out.push_str("2. snapshot: the last one applied (from the account link)\n");
            snapshot
        }
    };
    // Provision-on-demand pushes the attributes even when they are the ones last pushed: the
    // account may have drifted in the target. Forget the last payload pushed (a conditional
    // write, like every link write).
    if let Some(current) = &link
        && current.last_payload_hash.is_some()
    {
        let mut forgetful = current.clone();
        forgetful.last_payload_hash = None;
        forgetful.version = current.version + 1;
        store
            .put_link(&forgetful, Some(current.version))
            .await
            .map_err(|e| format!("{out}cannot prepare the account link: {e}"))?;
    }
    let plan = userprov_core::plan::plan(app, link.as_ref(), &snapshot_user, None)
        .map_err(|e| format!("{out}cannot plan: {e}"))?;
    let _ = writeln!(out, "3. plan: {} ({plan:?})", plan.operation().as_str());

    let secrets = Arc::new(LocalSecretStore::new(data_dir.join("secrets")));
    let connectors = build_connectors(&config, secrets).map_err(|e| e.to_string())?;
    let worker = Worker::new(
        config.clone(),
        connectors,
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        RetryPolicy::from_config(&config),
    )
    .with_holds(Arc::new(EmbeddedHoldStore::new(db)));
    let event = SourceEvent {
        event_id: format!("resync-{}", ulid::Ulid::new()),
        source: EventSource::Resync,
        user: snapshot_user,
        event_time: None,
    };
    let mut job = Job::new(
        app_name,
        &event,
        &ulid::Ulid::new().to_string(),
        time::OffsetDateTime::now_utc(),
    );
    // On demand means now: no ordering check against the link.
    job.source_time = None;
    let body = job.to_body().map_err(|e| e.to_string())?;
    let disposition = worker
        .handle_message(&ReceivedMessage {
            message_id: job.job_id.clone(),
            receipt: String::new(),
            group_id: job.group_id(),
            dedup_id: job.dedup_id(),
            body,
            receive_count: 1,
        })
        .await;
    let page = store
        .query(&LogQuery {
            event_id: Some(job.event_id.clone()),
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    for entry in page.entries.iter().rev() {
        let _ = writeln!(
            out,
            "4. {} {}{}{}{}{}  (log entry {})",
            entry.operation.as_str(),
            entry.status.as_str(),
            entry
                .http_status
                .map_or(String::new(), |s| format!(", HTTP {s}")),
            entry
                .target_id
                .as_ref()
                .map_or(String::new(), |t| format!(", target id {t}")),
            entry
                .reason
                .as_ref()
                .map_or(String::new(), |r| format!(": {r}")),
            entry
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(" [{}: {}]", e.code, e.message)),
            entry.id
        );
    }
    match disposition {
        Disposition::Done => Ok(out),
        Disposition::RetryAfter(_) => Err(format!(
            "{out}the target failed transiently; nothing is queued: run resync again"
        )),
        Disposition::DeadLetter { reason } => Err(format!("{out}failed: {reason}")),
        Disposition::Postpone(_) => Err(format!(
            "{out}the app is paused by its circuit breaker (its target keeps failing); try again later"
        )),
    }
}
