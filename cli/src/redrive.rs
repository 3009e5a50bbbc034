//! `userprov redrive`: dead letters back to the job queue, on the embedded queue or on SQS.
//!
//! The same listing and filters on both: by app, by user, by log ids (the `dead_lettered` or
//! `failed` entries an admin found in the log). A dead letter that no longer parses as a job
//! (an older job format) is reported and left in the dead-letter queue. Without `--dry-run`,
//! each chosen message goes back to its original message group under a fresh deduplication id.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use userprov_aws::SqsQueue;
use userprov_core::embedded::EmbeddedStore;
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::ports::{LogStore, ReceivedMessage};

use crate::admin::CommandResult;

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

/// Where the AWS deployment keeps its queues and log (the template's outputs `QueueUrl`,
/// `DlqUrl`, `LogTableName`).
#[derive(Debug, Clone)]
pub struct SqsTarget {
    pub queue_url: String,
    pub dlq_url: String,
    /// Needed only to resolve `--log-id`.
    pub log_table: Option<String>,
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
async fn logged_jobs(log: &dyn LogStore, ids: &[String]) -> Result<Vec<LoggedJob>, String> {
    let mut jobs = Vec::new();
    for id in ids {
        let entry = log
            .get_entry(id)
            .await
            .map_err(|e| format!("cannot read log entry {id}: {e}"))?
            .ok_or_else(|| format!("no log entry with id {id}"))?;
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

/// Lists the letters the filter chooses (and the unreadable ones) into `out`; returns the
/// chosen letters' ids.
fn choose(
    letters: &[Letter],
    filter: &RedriveFilter,
    logged: &[LoggedJob],
    out: &mut String,
) -> Vec<String> {
    let mut chosen = Vec::new();
    let mut unreadable = Vec::new();
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
                let _ = writeln!(
                    out,
                    "{}  {}  {}  {}  after {} receive(s): {}",
                    letter.message_id,
                    job.app,
                    job.user.id,
                    job.user.username().unwrap_or("-"),
                    letter.receive_count,
                    letter.reason
                );
                chosen.push(letter.message_id.clone());
            }
            Err(error) => unreadable.push(format!(
                "{} (group {}): {error}",
                letter.message_id, letter.group_id
            )),
        }
    }
    if !unreadable.is_empty() {
        let _ = writeln!(
            out,
            "{} dead letter(s) are not jobs this version reads; left in the dead-letter queue:",
            unreadable.len()
        );
        for line in &unreadable {
            let _ = writeln!(out, "  {line}");
        }
    }
    chosen
}

fn dry_run_line(out: &mut String, chosen: usize) {
    let _ = writeln!(
        out,
        "dry run: {chosen} message(s) would be moved back; nothing moved"
    );
}

/// Redrive on the embedded queue of a data directory.
pub async fn embedded(data_dir: &Path, filter: &RedriveFilter) -> CommandResult {
    let db = crate::admin::open_db(data_dir)?;
    let queue = crate::admin::queue(db.clone(), None);
    let logged = logged_jobs(&EmbeddedStore::new(db), &filter.log_ids).await?;
    let letters: Vec<Letter> = queue
        .dead_letters(usize::MAX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| Letter {
            message_id: l.message_id,
            group_id: l.group_id,
            body: l.body,
            receive_count: l.receive_count,
            reason: l.reason,
        })
        .collect();
    let mut out = String::new();
    let chosen = choose(&letters, filter, &logged, &mut out);
    if filter.dry_run {
        dry_run_line(&mut out, chosen.len());
    } else {
        let moved = queue.redrive(&chosen).await.map_err(|e| e.to_string())?;
        let _ = writeln!(out, "moved {moved} message(s) back to the queue");
    }
    Ok(out)
}

/// The most dead letters one run reads from SQS.
const MAX_SQS_LETTERS: usize = 10_000;

/// Redrive on SQS: reads the whole dead-letter queue (each message stays hidden while it is
/// read), re-sends the chosen ones to the job queue in their original group under a fresh
/// deduplication id and deletes them from the dead-letter queue; every other message is made
/// visible again at once.
pub async fn sqs(target: &SqsTarget, filter: &RedriveFilter) -> CommandResult {
    let sdk = userprov_aws::sdk_config().await;
    let queue = SqsQueue::new(
        userprov_aws::aws_sdk_sqs::Client::new(&sdk),
        target.queue_url.clone(),
        Some(target.dlq_url.clone()),
    );
    let dlq = queue
        .dead_letter_queue()
        .ok_or_else(|| "no dead-letter queue".to_owned())?;
    let logged = if filter.log_ids.is_empty() {
        Vec::new()
    } else {
        let table = target.log_table.clone().ok_or_else(|| {
            "--log-id on AWS needs the log table: --log-table NAME (the stack's LogTableName output)"
                .to_owned()
        })?;
        let log = userprov_aws::DynamoLogStore::new(
            userprov_aws::aws_sdk_dynamodb::Client::new(&sdk),
            table,
            Duration::from_secs(90 * 24 * 3600),
        );
        logged_jobs(&log, &filter.log_ids).await?
    };

    let mut received: Vec<ReceivedMessage> = Vec::new();
    let mut letters = Vec::new();
    while received.len() < MAX_SQS_LETTERS {
        let batch = queue
            .dead_letters(10, Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
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
    let mut out = String::new();
    let chosen = choose(&letters, filter, &logged, &mut out);
    let mut moved = 0;
    let mut errors = Vec::new();
    for message in &received {
        let result = if !filter.dry_run && chosen.contains(&message.message_id) {
            match queue.send_copy(message).await {
                Ok(()) => dlq.delete(&message.receipt).await.map(|()| moved += 1),
                Err(e) => Err(e),
            }
        } else {
            dlq.change_visibility(&message.receipt, Duration::ZERO)
                .await
        };
        if let Err(error) = result {
            errors.push(format!("{}: {error}", message.message_id));
        }
    }
    if filter.dry_run {
        dry_run_line(&mut out, chosen.len());
    } else {
        let _ = writeln!(out, "moved {moved} message(s) back to the queue");
    }
    if received.len() >= MAX_SQS_LETTERS {
        let _ = writeln!(
            out,
            "read the first {MAX_SQS_LETTERS} dead letters only; run again for the rest"
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(format!("{out}errors:\n  {}", errors.join("\n  ")))
    }
}
