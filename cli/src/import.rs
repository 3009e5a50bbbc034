//! `userprov import`: a Salesforce User export (CSV) into jobs for one app.
//!
//! Two passes over the file, both streaming: the first checks every row (nothing is queued
//! unless the file is clean, or `--skip-invalid`), the second queues one job per valid row at a
//! controlled rate. Each row's event id is derived from the file's SHA-256 and the row number,
//! so a repeated row is dropped by the queue's deduplication, and a checkpoint in the data
//! directory records the last row queued so an interrupted import resumes where it stopped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use userprov_core::config::{AppConfig, Config};
use userprov_core::connector::Connector;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::{
    EmbeddedDb, EmbeddedQueue, EmbeddedStore, LocalSecretStore, QueueSettings,
};
use userprov_core::job::Job;
use userprov_core::plan::{Plan, plan};
use userprov_core::ports::{JobQueue, LinkStore, SystemClock};
use userprov_core::source::{EventSource, SourceEvent, SourceUser};

use crate::user_csv::{HashingReader, Row, UserCsv};
use userprov_core::worker::match_keys;

/// Exit codes scripts can rely on.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

/// Most row errors printed; the count of the rest follows.
const MAX_REPORTED_ROWS: usize = 200;
/// Jobs per queue transaction.
const BATCH: usize = 100;

/// A failed command: its exit code and message.
#[derive(Debug)]
pub struct Failure {
    pub exit: u8,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            exit: EXIT_BAD_INPUT,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self {
            exit: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub app: String,
    pub file: PathBuf,
    pub dry_run: bool,
    pub check_target: bool,
    pub skip_invalid: bool,
    /// Jobs queued per second; 0 for no limit.
    pub rate: u32,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// A deployed stack to queue into (its SQS queue and links table) instead of the data
    /// directory's queue. The checkpoint stays in the data directory either way.
    pub aws: crate::aws::AwsArgs,
}

/// What an interrupted import left behind, in `<data dir>/imports/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub app: String,
    pub file: String,
    pub sha256: String,
    /// The last data row whose job is in the queue.
    pub last_row: u64,
    pub rows: u64,
    pub complete: bool,
}

pub fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    path.map(Config::load)
        .unwrap_or_else(Config::example)
        .map_err(|e| Failure::bad_input(e.to_string()))
}

pub fn find_app<'a>(config: &'a Config, name: &str) -> Result<&'a AppConfig, Failure> {
    config.app(name).ok_or_else(|| {
        let known: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
        Failure::bad_input(format!(
            "no app named {name:?} in {}; apps: {}",
            config.origin,
            known.join(", ")
        ))
    })
}

pub fn open_db(data_dir: &Path) -> Result<EmbeddedDb, Failure> {
    EmbeddedDb::open(data_dir).map_err(|e| {
        Failure::other(format!(
            "{e}\n(this command opens the data directory {} directly: stop `userprov serve` first)",
            data_dir.display()
        ))
    })
}

/// The columns every row needs: `Id`, `IsActive` (joiner or leaver), and the fields the app's
/// mapping requires.
pub fn required_columns(app: &AppConfig) -> Vec<String> {
    let mut columns = vec!["IsActive".to_owned()];
    for field in app.mapping.required_fields() {
        if field != "Id" && !columns.contains(&field) {
            columns.push(field);
        }
    }
    columns
}

fn open_csv(
    path: &Path,
    required: &[String],
) -> Result<UserCsv<HashingReader<BufReader<File>>>, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", path.display())))?;
    UserCsv::new(HashingReader::new(BufReader::new(file)), required).map_err(|e| {
        if e.is_bad_input() {
            Failure::bad_input(e.at(path))
        } else {
            Failure::other(e.at(path))
        }
    })
}

/// The result of the checking pass.
struct Checked {
    sha256: String,
    rows: u64,
    invalid: u64,
    report: String,
}

/// First pass: checks every row, keeping only the ids seen.
fn check_file(path: &Path, required: &[String]) -> Result<Checked, Failure> {
    let mut csv = open_csv(path, required)?;
    let mut rows = 0;
    let mut invalid = 0;
    let mut report = String::new();
    while let Some(next) = csv.next_row() {
        let row = next.map_err(|e| Failure::other(format!("{}: {e}", path.display())))?;
        rows += 1;
        if let Row::Invalid { line, problems, .. } = row {
            invalid += 1;
            if invalid as usize <= MAX_REPORTED_ROWS {
                let _ = writeln!(report, "{}:{line}: {}", path.display(), problems.join("; "));
            }
        }
    }
    if invalid as usize > MAX_REPORTED_ROWS {
        let _ = writeln!(
            report,
            "... and {} more invalid row(s)",
            invalid as usize - MAX_REPORTED_ROWS
        );
    }
    Ok(Checked {
        sha256: csv.into_inner().finish(),
        rows,
        invalid,
        report,
    })
}

fn checkpoint_path(data_dir: &Path, app: &str, sha256: &str) -> PathBuf {
    let short = sha256.get(..16).unwrap_or(sha256);
    data_dir.join("imports").join(format!("{app}-{short}.json"))
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Failure::other(format!(
                "the import checkpoint {} is unreadable ({e}); remove it to start over",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::other(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Written beside and renamed over, so an interruption never leaves half a checkpoint.
fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text =
        serde_json::to_string_pretty(checkpoint).map_err(|e| Failure::other(e.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

/// The event id of one row of one file: the same row of the same file is the same event.
pub fn row_event_id(sha256: &str, row: u64) -> String {
    format!("import-{}-{row}", sha256.get(..32).unwrap_or(sha256))
}

fn progress_bar(total: u64, position: u64) -> ProgressBar {
    // Drawn on stderr only when it is a terminal (indicatif hides it otherwise).
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} queueing [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(position);
    bar
}

pub async fn run(options: &ImportOptions) -> Result<String, Failure> {
    let config = Arc::new(load_config(options.config.as_deref())?);
    let app = find_app(&config, &options.app)?;
    let required = required_columns(app);
    let checked = check_file(&options.file, &required)?;
    let valid = checked.rows - checked.invalid;
    let mut out = String::new();
    if checked.invalid > 0 {
        if !options.skip_invalid {
            return Err(Failure::bad_input(format!(
                "{}{} of {} row(s) are invalid; nothing was queued. Fix the file, or give --skip-invalid to import only the valid rows.",
                checked.report, checked.invalid, checked.rows
            )));
        }
        eprint!("{}", checked.report);
        let _ = writeln!(
            out,
            "skipping {} invalid row(s) of {} (--skip-invalid)",
            checked.invalid, checked.rows
        );
    }
    if options.dry_run {
        out.push_str(&dry_run(options, &config, app, &required, &checked).await?);
        return Ok(out);
    }

    let queue: Arc<dyn JobQueue> = if options.aws.selected() {
        let resources = crate::aws::AwsResources::resolve(&options.aws).await?;
        let _ = writeln!(
            out,
            "queueing into {} ({})",
            resources.queue_url.as_deref().unwrap_or("-"),
            resources.origin
        );
        Arc::new(resources.queue()?)
    } else {
        Arc::new(EmbeddedQueue::new(
            open_db(&options.data_dir)?,
            QueueSettings {
                max_receives: config.worker.max_attempts,
                ..QueueSettings::default()
            },
            Arc::new(SystemClock),
        ))
    };
    let checkpoint_file = checkpoint_path(&options.data_dir, &app.name, &checked.sha256);
    let mut checkpoint = read_checkpoint(&checkpoint_file)?.unwrap_or_else(|| Checkpoint {
        app: app.name.clone(),
        file: options.file.display().to_string(),
        sha256: checked.sha256.clone(),
        last_row: 0,
        rows: checked.rows,
        complete: false,
    });
    if checkpoint.complete {
        let _ = writeln!(
            out,
            "{} was already imported for app {} (checkpoint {}); nothing queued",
            options.file.display(),
            app.name,
            checkpoint_file.display()
        );
        return Ok(out);
    }
    if checkpoint.last_row > 0 {
        let _ = writeln!(
            out,
            "resuming after row {} of {} (checkpoint {})",
            checkpoint.last_row,
            checked.rows,
            checkpoint_file.display()
        );
    }

    let mut csv = open_csv(&options.file, &required)?;
    let bar = progress_bar(checked.rows, checkpoint.last_row);
    let correlation_id = format!("import-{}", checked.sha256.get(..16).unwrap_or_default());
    let started = Instant::now();
    let mut queued: u64 = 0;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut batch_last_row = checkpoint.last_row;
    loop {
        let next = csv.next_row();
        let end = next.is_none();
        if let Some(next) = next {
            let row =
                next.map_err(|e| Failure::other(format!("{}: {e}", options.file.display())))?;
            let (number, user) = match row {
                Row::Valid { row, user, .. } => (row, Some(user)),
                Row::Invalid { row, .. } => (row, None),
            };
            if number <= checkpoint.last_row {
                continue;
            }
            batch_last_row = number;
            if let Some(user) = user {
                let event = SourceEvent {
                    event_id: row_event_id(&checked.sha256, number),
                    source: EventSource::Import,
                    user,
                    event_time: None,
                };
                batch.push(Job::new(
                    &app.name,
                    &event,
                    &correlation_id,
                    time::OffsetDateTime::now_utc(),
                ));
            }
        }
        let full = batch.len() >= BATCH || (options.rate > 0 && batch.len() as u32 >= options.rate);
        if full || (end && batch_last_row > checkpoint.last_row) {
            if !batch.is_empty() {
                queue
                    .enqueue(&batch)
                    .await
                    .map_err(|e| Failure::other(format!("cannot queue jobs: {e}")))?;
            }
            queued += batch.len() as u64;
            batch.clear();
            checkpoint.last_row = batch_last_row;
            write_checkpoint(&checkpoint_file, &checkpoint)?;
            bar.set_position(batch_last_row);
            if options.rate > 0 {
                let due = Duration::from_secs_f64(queued as f64 / f64::from(options.rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if end {
            break;
        }
    }
    bar.finish_and_clear();
    checkpoint.complete = true;
    write_checkpoint(&checkpoint_file, &checkpoint)?;
    let _ = writeln!(
        out,
        "queued {queued} job(s) for app {} from {} valid row(s) of {} in {:.1}s; the worker provisions them",
        app.name,
        valid,
        options.file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Second pass of a dry run: the plan of every valid row against the current account links.
async fn dry_run(
    options: &ImportOptions,
    config: &Arc<Config>,
    app: &AppConfig,
    required: &[String],
    checked: &Checked,
) -> Result<String, Failure> {
    let links: Arc<dyn LinkStore> = if options.aws.selected() {
        Arc::new(
            crate::aws::AwsResources::resolve(&options.aws)
                .await?
                .link_store()?,
        )
    } else {
        Arc::new(EmbeddedStore::new(open_db(&options.data_dir)?))
    };
    let connector: Option<Arc<dyn Connector>> = if options.check_target {
        let secrets = Arc::new(LocalSecretStore::new(options.data_dir.join("secrets")));
        let connectors =
            build_connectors(config, secrets).map_err(|e| Failure::bad_input(e.to_string()))?;
        connectors.get(&app.name).cloned()
    } else {
        None
    };
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut skips: BTreeMap<String, u64> = BTreeMap::new();
    let mut csv = open_csv(&options.file, required)?;
    while let Some(next) = csv.next_row() {
        let row = next.map_err(|e| Failure::other(format!("{}: {e}", options.file.display())))?;
        let Row::Valid { user, .. } = row else {
            continue;
        };
        let link = links
            .get_link(&app.name, &user.id)
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
        let decision = match plan(app, link.as_ref(), &user, None) {
            Ok(decision) => decision,
            Err(error) => Plan::Skip(error.to_string()),
        };
        let kind = match decision {
            Plan::CreateOrAdopt => match &connector {
                Some(connector) => match create_or_adopt(connector.as_ref(), app, &user).await {
                    Ok(kind) => kind,
                    Err(reason) => {
                        *skips.entry(reason).or_default() += 1;
                        "skip"
                    }
                },
                None => "create or adopt",
            },
            Plan::Update => "update",
            Plan::Reactivate => "reactivate",
            Plan::Deactivate(_) => "deactivate",
            Plan::Noop(reason) | Plan::Skip(reason) => {
                *skips.entry(reason).or_default() += 1;
                "skip"
            }
        };
        *counts.entry(kind).or_default() += 1;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run: {} valid row(s) of {} for app {}",
        checked.rows - checked.invalid,
        options.file.display(),
        app.name
    );
    let order: &[&str] = if options.check_target {
        &[
            "create",
            "adopt",
            "update",
            "reactivate",
            "deactivate",
            "skip",
        ]
    } else {
        &[
            "create or adopt",
            "update",
            "reactivate",
            "deactivate",
            "skip",
        ]
    };
    for kind in order {
        let _ = writeln!(
            out,
            "  would {kind:<16} {:>8}",
            counts.get(kind).copied().unwrap_or(0)
        );
    }
    for (reason, count) in &skips {
        let _ = writeln!(out, "    {count:>8}  skip: {reason}");
    }
    if !options.check_target {
        out.push_str(
            "  (give --check-target to look each new user up in the app: create or adopt)\n",
        );
    }
    out.push_str("nothing queued (dry run)\n");
    Ok(out)
}

/// Looks the user up in the target the way the worker will: adopt one match, create on none.
async fn create_or_adopt(
    connector: &dyn Connector,
    app: &AppConfig,
    user: &SourceUser,
) -> Result<&'static str, String> {
    let payload = app
        .mapping
        .apply(user)
        .map_err(|e| format!("cannot be mapped: {e}"))?;
    let keys = match_keys(app, &payload);
    if keys.is_empty() {
        return Ok("create");
    }
    match connector.find(&keys).await {
        Ok(reply) if reply.value.is_some() => Ok("adopt"),
        Ok(_) => Ok("create"),
        Err(error) => Err(format!("the target lookup failed: {error}")),
    }
}
