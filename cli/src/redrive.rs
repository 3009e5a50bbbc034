//! `userprov redrive`: dead letters back to the job queue, on the embedded queue or on SQS.
//!
//! The same listing and filters on both: by app, by user, by log ids (the `dead_lettered` or
//! `failed` entries an admin found in the log). A dead letter that no longer parses as a job
//! (an older job format) is reported and left in the dead-letter queue. Without `--dry-run`,
//! each chosen message goes back to its original message group under a fresh deduplication id.
//! On AWS the queues (and the log table, for `--log-id`) come from the stack's outputs or are
//! named one by one. `--json` prints the listing and the result as one JSON document.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use userprov_core::embedded::EmbeddedStore;
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::ports::{LogStore, ReceivedMessage};

use crate::aws::{AwsArgs, AwsResources};
use crate::holds::Outcome;
use crate::import::Failure;

/// Which dead letters to move.
#[derive(Debug, Clone, Default)]
pub struct RedriveFilter {
    pub app: Option<String>,
    /// A Salesforce user id (15 or 18 characters) or a username.
    pub user: Option<String>,
    /// Provisioning log entry ids: the jobs those entries are about.
    pub log_ids: Vec<String>,
    pub dry_run: bool,
}

/// Which dead-letter queue, and how to print.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub filter: RedriveFilter,
    pub data_dir: PathBuf,
    /// A deployed stack (its `QueueUrl`, `DlqUrl` and, for `--log-id`, `LogTableName`
    /// outputs), or the resources named one by one.
    pub aws: AwsArgs,
    /// The dead-letter queue, instead of the stack's DlqUrl output.
    pub dlq_url: Option<String>,
    pub json: bool,
}

impl RedriveOptions {
    fn on_aws(&self) -> bool {
        self.aws.selected() || self.dlq_url.is_some()
    }
}

/// A dead letter the filter chose.
#[derive(Debug, Clone, Serialize)]
struct Chosen {
    message_id: String,
    app: String,
    user_id: String,
    username: Option<String>,
    receive_count: u32,
    reason: String,
}

/// A dead letter that is not a job this version reads.
#[derive(Debug, Clone, Serialize)]
struct Unreadable {
    message_id: String,
    group_id: String,
    error: String,
}

/// What a run found and did; `--json` prints it as is.
#[derive(Debug, Default, Serialize)]
struct Report {
    dry_run: bool,
    /// The dead letters chosen: moved back, or that would be with `dry_run`.
    messages: Vec<Chosen>,
    /// Left in the dead-letter queue.
    unreadable: Vec<Unreadable>,
    moved: usize,
    /// Messages that could not be moved or put back, with the reason.
    errors: Vec<String>,
    /// Only the first dead letters were read; run again for the rest.
    truncated: bool,
}

/// One dead letter, whichever queue it is read from.
#[derive(Debug, Clone)]
struct Letter {
    message_id: String,
    group_id: String,
    body: String,
    receive_count: u32,
    reason: String,
}

/// The job a log entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedJob {
    app: String,
    event_id: String,
    user_id: String,
}

/// The log entries named by `--log-id`, as the jobs they are about.
async fn logged_jobs(log: &dyn LogStore, ids: &[String]) -> Result<Vec<LoggedJob>, Failure> {
    let mut jobs = Vec::new();
    for id in ids {
        let entry = log
            .get_entry(id)
            .await
            .map_err(|e| Failure::other(format!("cannot read log entry {id}: {e}")))?
            .ok_or_else(|| Failure::other(format!("no log entry with id {id}")))?;
        jobs.push(LoggedJob {
            app: entry.app,
            event_id: entry.event_id,
            user_id: entry.user_id,
        });
    }
    Ok(jobs)
}

/// Does `user` (an id of 15 or 18 characters, or a username) name this job's user?
fn names_user(job: &Job, user: &str) -> bool {
    SalesforceId::parse(user).is_ok_and(|id| id == job.user.id)
        || job
            .user
            .username()
            .is_some_and(|name| name.eq_ignore_ascii_case(user))
}

/// The letters the filter chooses, and the unreadable ones, into the report.
fn choose(letters: &[Letter], filter: &RedriveFilter, logged: &[LoggedJob], report: &mut Report) {
    for letter in letters {
        match Job::from_body(&letter.body) {
            Ok(job) => {
                let logged_match = logged.is_empty()
                    || logged.iter().any(|l| {
                        l.app == job.app
                            && l.event_id == job.event_id
                            && l.user_id == job.user.id.as_str()
                    });
                if filter.app.as_deref().is_some_and(|a| a != job.app)
                    || filter.user.as_deref().is_some_and(|u| !names_user(&job, u))
                    || !logged_match
                {
                    continue;
                }
                report.messages.push(Chosen {
                    message_id: letter.message_id.clone(),
                    app: job.app.clone(),
                    user_id: job.user.id.to_string(),
                    username: job.user.username().map(str::to_owned),
                    receive_count: letter.receive_count,
                    reason: letter.reason.clone(),
                });
            }
            Err(error) => report.unreadable.push(Unreadable {
                message_id: letter.message_id.clone(),
                group_id: letter.group_id.clone(),
                error: error.to_string(),
            }),
        }
    }
}

impl Report {
    fn chosen(&self, message_id: &str) -> bool {
        self.messages.iter().any(|m| m.message_id == message_id)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            let _ = writeln!(
                out,
                "{}  {}  {}  {}  after {} receive(s): {}",
                m.message_id,
                m.app,
                m.user_id,
                m.username.as_deref().unwrap_or("-"),
                m.receive_count,
                m.reason
            );
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(
                out,
                "{} dead letter(s) are not jobs this version reads; left in the dead-letter queue:",
                self.unreadable.len()
            );
            for u in &self.unreadable {
                let _ = writeln!(
                    out,
                    "  {} (group {}): {}",
                    u.message_id, u.group_id, u.error
                );
            }
        }
        if self.dry_run {
            let _ = writeln!(
                out,
                "dry run: {} message(s) would be moved back; nothing moved",
                self.messages.len()
            );
        } else {
            let _ = writeln!(out, "moved {} message(s) back to the queue", self.moved);
        }
        if self.truncated {
            let _ = writeln!(
                out,
                "read the first {MAX_SQS_LETTERS} dead letters only; run again for the rest"
            );
        }
        out
    }
}

/// Lists, then (without `--dry-run`) moves the chosen dead letters back.
pub async fn run(options: &RedriveOptions) -> Outcome {
    let mut report = Report {
        dry_run: options.filter.dry_run,
        ..Report::default()
    };
    let result = if options.on_aws() {
        sqs(options, &mut report).await
    } else {
        embedded(&options.data_dir, &options.filter, &mut report).await
    };
    if let Err(failure) = result {
        return failure.into();
    }
    let stdout = if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => return Failure::other(e.to_string()).into(),
        }
    } else {
        report.text()
    };
    let failure = (!report.errors.is_empty()).then(|| {
        Failure::other(format!(
            "some messages were not moved:\n  {}",
            report.errors.join("\n  ")
        ))
    });
    Outcome { stdout, failure }
}

/// Redrive on the embedded queue of a data directory.
async fn embedded(
    data_dir: &Path,
    filter: &RedriveFilter,
    report: &mut Report,
) -> Result<(), Failure> {
    let db = crate::import::open_db(data_dir)?;
    let queue = crate::admin::queue(db.clone(), None);
    let logged = logged_jobs(&EmbeddedStore::new(db), &filter.log_ids).await?;
    let letters: Vec<Letter> = queue
        .dead_letters(usize::MAX)
        .await
        .map_err(|e| Failure::other(e.to_string()))?
        .into_iter()
        .map(|l| Letter {
            message_id: l.message_id,
            group_id: l.group_id,
            body: l.body,
            receive_count: l.receive_count,
            reason: l.reason,
        })
        .collect();
    choose(&letters, filter, &logged, report);
    if !filter.dry_run {
        let chosen: Vec<String> = report
            .messages
            .iter()
            .map(|m| m.message_id.clone())
            .collect();
        report.moved = queue
            .redrive(&chosen)
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
    }
    Ok(())
}

/// The most dead letters one run reads from SQS.
const MAX_SQS_LETTERS: usize = 10_000;

/// Redrive on SQS: reads the whole dead-letter queue (each message stays hidden while it is
/// read), re-sends the chosen ones to the job queue in their original group under a fresh
/// deduplication id and deletes them from the dead-letter queue; every other message is made
/// visible again at once.
async fn sqs(options: &RedriveOptions, report: &mut Report) -> Result<(), Failure> {
    let filter = &options.filter;
    let mut resources = AwsResources::resolve(&options.aws).await?;
    if options.dlq_url.is_some() {
        resources.dlq_url.clone_from(&options.dlq_url);
    }
    let queue = resources.queue_with_dlq()?;
    let dlq = queue
        .dead_letter_queue()
        .ok_or_else(|| Failure::other("no dead-letter queue"))?;
    let logged = if filter.log_ids.is_empty() {
        Vec::new()
    } else {
        logged_jobs(&resources.log_store()?, &filter.log_ids).await?
    };

    let mut received: Vec<ReceivedMessage> = Vec::new();
    let mut letters = Vec::new();
    while received.len() < MAX_SQS_LETTERS {
        let batch = queue
            .dead_letters(10, Duration::from_secs(1))
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
        if batch.is_empty() {
            break;
        }
        for letter in batch {
            letters.push(Letter {
                message_id: letter.message.message_id.clone(),
                group_id: letter.message.group_id.clone(),
                body: letter.message.body.clone(),
                receive_count: letter.message.receive_count,
                reason: letter
                    .reason
                    .unwrap_or_else(|| "moved by the queue's redrive policy".to_owned()),
            });
            received.push(letter.message);
        }
    }
    choose(&letters, filter, &logged, report);
    for message in &received {
        let result = if !filter.dry_run && report.chosen(&message.message_id) {
            match queue.send_copy(message).await {
                Ok(()) => dlq
                    .delete(&message.receipt)
                    .await
                    .map(|()| report.moved += 1),
                Err(e) => Err(e),
            }
        } else {
            dlq.change_visibility(&message.receipt, Duration::ZERO)
                .await
        };
        if let Err(error) = result {
            report
                .errors
                .push(format!("{}: {error}", message.message_id));
        }
    }
    report.truncated = received.len() >= MAX_SQS_LETTERS;
    Ok(())
}
