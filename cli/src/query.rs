//! `userprov logs` and `userprov accounts`: the provisioning log and the account links, read
//! from the local data directory, from a running `userprov serve` (its log API), or from a
//! deployed stack's DynamoDB tables.
//!
//! Output is a table on a terminal, or JSON with `--json`: `logs` prints one entry per line
//! (JSON Lines, oldest first, so `--follow` can stream), `accounts` prints one JSON array.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use userprov_core::embedded::{EmbeddedDb, EmbeddedStore};
use userprov_core::link::AccountLink;
use userprov_core::log::{LogEntry, LogPage, LogQuery, LogStatus, MAX_PAGE_SIZE, Operation};
use userprov_core::ports::{LinkStore, LogStore};

use crate::aws::{AwsArgs, AwsResources};
use crate::import::Failure;
use crate::render;

/// Where the log and the links are read from.
pub enum Source {
    /// The data directory of a stopped `userprov serve`; opened for each read, so that a
    /// following `logs` never keeps `serve` from starting.
    DataDir(PathBuf),
    /// The log API of a running `userprov serve`.
    Api {
        client: reqwest::Client,
        base_url: String,
        token: Option<String>,
    },
    /// A deployed stack's tables.
    Stores {
        log: Option<Arc<dyn LogStore>>,
        links: Option<Arc<dyn LinkStore>>,
    },
}

/// How the operator chose the source.
#[derive(Debug, Clone)]
pub struct SourceArgs {
    pub data_dir: PathBuf,
    pub url: Option<String>,
    pub token: Option<String>,
    pub aws: AwsArgs,
}

impl Source {
    pub async fn open(args: &SourceArgs, need_log: bool) -> Result<Self, Failure> {
        if let Some(url) = &args.url {
            if args.aws.selected() {
                return Err(Failure::bad_input("give either --url or --stack, not both"));
            }
            let base_url = url.trim_end_matches('/').to_owned();
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(Failure::bad_input(format!(
                    "--url must be an http(s) URL such as http://127.0.0.1:8787, not {url:?}"
                )));
            }
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| Failure::other(e.to_string()))?;
            return Ok(Self::Api {
                client,
                base_url,
                token: args.token.clone(),
            });
        }
        if args.aws.selected() {
            let resources = AwsResources::resolve(&args.aws).await?;
            return Ok(if need_log {
                Self::Stores {
                    log: Some(Arc::new(resources.log_store()?)),
                    links: None,
                }
            } else {
                Self::Stores {
                    log: None,
                    links: Some(Arc::new(resources.link_store()?)),
                }
            });
        }
        if !args
            .data_dir
            .join(userprov_core::embedded::DATABASE_FILE_NAME)
            .exists()
        {
            return Err(Failure::bad_input(format!(
                "no userprov data in {}: give --data-dir DIR (where `userprov serve` keeps its data), --url URL (a running `userprov serve`) or --stack NAME (a deployment on AWS)",
                args.data_dir.display()
            )));
        }
        Ok(Self::DataDir(args.data_dir.clone()))
    }

    async fn log_page(&self, query: &LogQuery) -> Result<LogPage, Failure> {
        match self {
            Self::DataDir(dir) => {
                let store = EmbeddedStore::new(open_db(dir)?);
                store.query(query).await.map_err(store_failure)
            }
            Self::Stores { log: Some(log), .. } => log.query(query).await.map_err(store_failure),
            Self::Stores { log: None, .. } => Err(Failure::other("no log store opened")),
            Self::Api {
                client,
                base_url,
                token,
            } => {
                let mut params: Vec<(&str, String)> = Vec::new();
                let time = |t: &OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
                for (name, value) in [
                    ("user", query.user.clone()),
                    ("app", query.app.clone()),
                    ("status", query.status.map(|s| s.as_str().to_owned())),
                    ("operation", query.operation.map(|o| o.as_str().to_owned())),
                    ("event_id", query.event_id.clone()),
                    ("since", query.since.as_ref().map(time)),
                    ("until", query.until.as_ref().map(time)),
                    ("cursor", query.cursor.clone()),
                ] {
                    if let Some(value) = value {
                        params.push((name, value));
                    }
                }
                params.push(("limit", query.limit.to_string()));
                api_get(client, &format!("{base_url}/logs"), &params, token).await
            }
        }
    }

    async fn links_page(
        &self,
        app: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<AccountLink>, Failure> {
        let after_ref = after.as_ref().map(|(a, u)| (a.as_str(), u.as_str()));
        match self {
            Self::DataDir(dir) => {
                let store = EmbeddedStore::new(open_db(dir)?);
                store
                    .list_links(app, after_ref, limit)
                    .await
                    .map_err(store_failure)
            }
            Self::Stores {
                links: Some(links), ..
            } => links
                .list_links(app, after_ref, limit)
                .await
                .map_err(store_failure),
            Self::Stores { links: None, .. } => Err(Failure::other("no link store opened")),
            Self::Api {
                client,
                base_url,
                token,
            } => {
                let mut params = vec![("limit", limit.to_string())];
                if let Some(app) = app {
                    params.push(("app", app.to_owned()));
                }
                if let Some((app, user)) = &after {
                    params.push(("after", format!("{app}.{user}")));
                }
                #[derive(serde::Deserialize)]
                struct Accounts {
                    accounts: Vec<AccountLink>,
                }
                let page: Accounts =
                    api_get(client, &format!("{base_url}/accounts"), &params, token).await?;
                Ok(page.accounts)
            }
        }
    }
}

fn open_db(dir: &Path) -> Result<EmbeddedDb, Failure> {
    EmbeddedDb::open(dir).map_err(|e| {
        Failure::other(format!(
            "{e}\n(while `userprov serve` runs, read through it instead: --url http://127.0.0.1:8787)"
        ))
    })
}

fn store_failure(error: userprov_core::ports::StoreError) -> Failure {
    use userprov_core::error::{Classify, ErrorClass};
    match error.class() {
        ErrorClass::BadInput => Failure::bad_input(error.to_string()),
        _ => Failure::other(error.to_string()),
    }
}

async fn api_get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
    token: &Option<String>,
) -> Result<T, Failure> {
    let mut request = client.get(url).query(params);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Failure::other(format!("cannot reach the log API at {url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return response
            .json()
            .await
            .map_err(|e| Failure::other(format!("unexpected answer from {url}: {e}")));
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("no message");
    let text = format!("the log API answered {status}: {message}");
    if status.as_u16() == 400 {
        Err(Failure::bad_input(text))
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        Err(Failure::bad_input(format!(
            "{text} (give the log API token with --token or USERPROV_LOG_API_TOKEN)"
        )))
    } else {
        Err(Failure::other(text))
    }
}

/// A time given on the command line: RFC 3339, or an age such as `30s`, `15m`, `2h`, `7d`.
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let bad = || {
        format!(
            "{text:?} is neither an RFC 3339 time (2025-03-14T16:02:11Z) nor an age (30s, 15m, 2h, 7d)"
        )
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .and_then(|s| now.checked_sub(time::Duration::seconds(s)))
        .ok_or_else(bad)
}

#[derive(Debug, Clone)]
pub struct LogsOptions {
    pub source: SourceArgs,
    pub user: Option<String>,
    pub app: Option<String>,
    pub status: Option<String>,
    pub operation: Option<String>,
    pub event_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Most entries printed before following.
    pub limit: usize,
    pub json: bool,
    pub follow: bool,
    pub interval: Duration,
}

fn build_query(options: &LogsOptions) -> Result<LogQuery, Failure> {
    let now = OffsetDateTime::now_utc();
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_time(v, now).map_err(|e| Failure::bad_input(format!("--{name}: {e}"))))
            .transpose()
    };
    let status = options
        .status
        .as_deref()
        .map(|s| {
            LogStatus::parse(s).ok_or_else(|| Failure::bad_input(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let operation = options
        .operation
        .as_deref()
        .map(|s| {
            Operation::parse(s)
                .ok_or_else(|| Failure::bad_input(format!("unknown operation {s:?}")))
        })
        .transpose()?;
    let query = LogQuery {
        user: options.user.clone(),
        app: options.app.clone(),
        status,
        operation,
        event_id: options.event_id.clone(),
        since: time("since", &options.since)?,
        until: time("until", &options.until)?,
        limit: MAX_PAGE_SIZE,
        cursor: None,
    };
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        return Err(Failure::bad_input("--since must be before --until"));
    }
    if options.follow && query.until.is_some() {
        return Err(Failure::bad_input(
            "--follow prints entries as they come: it cannot have --until",
        ));
    }
    Ok(query)
}

/// Newest first, at most `limit` entries, across pages.
async fn newest(source: &Source, query: &LogQuery, limit: usize) -> Result<Vec<LogEntry>, Failure> {
    let mut entries = Vec::new();
    let mut query = query.clone();
    while entries.len() < limit {
        query.limit = (limit - entries.len()).min(MAX_PAGE_SIZE);
        let page = source.log_page(&query).await?;
        entries.extend(page.entries);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    entries.truncate(limit);
    Ok(entries)
}

fn print_entries(entries: &[LogEntry], json: bool) -> Result<(), Failure> {
    let mut text = String::new();
    if json {
        for entry in entries {
            let line = serde_json::to_string(entry).map_err(|e| Failure::other(e.to_string()))?;
            let _ = writeln!(text, "{line}");
        }
    } else if !entries.is_empty() {
        let _ = writeln!(text, "{}", render::log_table(entries));
    }
    write_out(&text)
}

/// Writes to stdout; a closed pipe ends the command quietly.
fn write_out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure {
            exit: 0,
            message: String::new(),
        }),
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

/// Prints the matching entries, oldest first; with `follow`, keeps polling and prints new
/// entries as they are written, until Ctrl-C.
pub async fn logs(options: &LogsOptions) -> Result<(), Failure> {
    if options.limit == 0 && !options.follow {
        return Err(Failure::bad_input("--limit must be at least 1"));
    }
    let query = build_query(options)?;
    let source = Source::open(&options.source, true).await?;
    let mut entries = newest(&source, &query, options.limit).await?;
    entries.reverse();
    if entries.is_empty() && !options.json && !options.follow {
        eprintln!("no log entries match");
    }
    print_entries(&entries, options.json)?;
    if !options.follow {
        return Ok(());
    }

    // Entries are not written in strict time order across workers: each poll re-reads a
    // margin before the newest time seen and drops the ids already seen. Entries up to the
    // newest one printed count as seen, printed or not (beyond --limit): they are history.
    // "Up to" is in id order, the order the store chose the printed ones by; entry times
    // of one millisecond can differ from it.
    const MARGIN: time::Duration = time::Duration::seconds(30);
    let mut newest_time = entries.last().map_or_else(
        || query.since.unwrap_or_else(OffsetDateTime::now_utc),
        |e| e.time,
    );
    let since = |newest: OffsetDateTime| {
        let floor = newest - MARGIN;
        let mut since_query = query.clone();
        since_query.since = Some(query.since.map_or(floor, |s| s.max(floor)));
        since_query
    };
    let last_printed_id = entries.last().map(|e| e.id.clone());
    let mut seen: HashMap<String, OffsetDateTime> =
        newest(&source, &since(newest_time), usize::MAX)
            .await?
            .into_iter()
            .filter(|e| match &last_printed_id {
                Some(last) => e.id <= *last,
                None => e.time <= newest_time,
            })
            .map(|e| (e.id, e.time))
            .collect();
    seen.extend(entries.into_iter().map(|e| (e.id, e.time)));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(options.interval) => {}
        }
        let mut fresh: Vec<LogEntry> = newest(&source, &since(newest_time), usize::MAX)
            .await?
            .into_iter()
            .filter(|e| !seen.contains_key(&e.id))
            .collect();
        fresh.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        if let Some(last) = fresh.last() {
            newest_time = newest_time.max(last.time);
        }
        for entry in &fresh {
            seen.insert(entry.id.clone(), entry.time);
        }
        let floor = newest_time - MARGIN;
        seen.retain(|_, time| *time >= floor);
        print_entries(&fresh, options.json)?;
    }
}

#[derive(Debug, Clone)]
pub struct AccountsOptions {
    pub source: SourceArgs,
    pub app: Option<String>,
    pub limit: usize,
    pub json: bool,
}

/// The account links, by app and user id.
pub async fn accounts(options: &AccountsOptions) -> Result<(), Failure> {
    if options.limit == 0 {
        return Err(Failure::bad_input("--limit must be at least 1"));
    }
    let source = Source::open(&options.source, false).await?;
    let mut links: Vec<AccountLink> = Vec::new();
    let mut after: Option<(String, String)> = None;
    while links.len() < options.limit {
        let want = (options.limit - links.len()).min(MAX_PAGE_SIZE);
        let page = source
            .links_page(options.app.as_deref(), after.clone(), want)
            .await?;
        let full = page.len() == want;
        after = page.last().map(|l| (l.app.clone(), l.user_id.to_string()));
        links.extend(page);
        if !full {
            break;
        }
    }
    if options.json {
        let text =
            serde_json::to_string_pretty(&links).map_err(|e| Failure::other(e.to_string()))?;
        return write_out(&(text + "\n"));
    }
    if links.is_empty() {
        eprintln!(
            "no account links{}",
            options
                .app
                .as_deref()
                .map_or(String::new(), |a| format!(" for app {a}"))
        );
        return Ok(());
    }
    write_out(&format!("{}\n", render::accounts_table(&links)))
}
