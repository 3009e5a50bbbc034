//! Log queries over a large embedded store: the first page of one user's entries, and of one
//! app's failures in one day, against 1,000,000 entries (goal: each at most 50 ms).
//!
//! `cargo bench -p userprov-core --bench log_query` builds the store once in a temporary
//! directory (a few minutes), then times each query. `USERPROV_BENCH_ENTRIES=20000` runs a
//! quick version. A plain timing loop, like the other benches; it prints the figures.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use userprov_core::embedded::{EmbeddedDb, EmbeddedStore};
use userprov_core::error::ErrorClass;
use userprov_core::ids::SalesforceId;
use userprov_core::log::{ErrorInfo, LogEntry, LogQuery, LogStatus, Operation};
use userprov_core::ports::LogStore;
use userprov_core::source::EventSource;

const APPS: [&str; 5] = ["slack", "github", "zoom", "atlassian", "aws-sso"];
const USERS: u64 = 20_000;
/// The log spans 90 days.
const SPAN: Duration = Duration::from_secs(90 * 24 * 60 * 60);
const START: OffsetDateTime = datetime!(2026-08-01 00:00:00 UTC);

fn user_id(n: u64) -> String {
    // A real 18-character id (with its checksum suffix), as the worker stores it: the query
    // parses the user it is given as an id first.
    let short = format!("0058a{n:010}");
    SalesforceId::parse(&short).map_or(short, |id| id.to_string())
}

/// Entry `n` of `total`, in time order: 2% failures, 1% retries, the rest successes.
fn entry(n: u64, total: u64) -> LogEntry {
    let offset = u64::try_from(SPAN.as_millis()).unwrap_or(u64::MAX) / total * n;
    let time = START + Duration::from_millis(offset);
    let millis = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let user = (n * 7919) % USERS;
    let status = match n % 100 {
        0 | 1 => LogStatus::Failed,
        2 => LogStatus::Retrying,
        _ => LogStatus::Success,
    };
    let failed = status != LogStatus::Success;
    LogEntry {
        id: ulid::Ulid::from_parts(millis, u128::from(n)).to_string(),
        time,
        app: APPS[usize::try_from(n % 5).unwrap_or(0)].to_owned(),
        user_id: user_id(user),
        username: Some(format!("user{user}@acme.example")),
        event_id: format!("04l8a{n:013}"),
        source: EventSource::OutboundMessage,
        correlation_id: format!("c-{n}"),
        operation: Operation::Update,
        status,
        attempt: 1,
        http_status: Some(if failed { 503 } else { 200 }),
        target_id: Some(format!("t-{user}")),
        reason: None,
        error: failed.then(|| ErrorInfo {
            class: ErrorClass::Transient,
            code: "http_503".into(),
            message: "the target is unavailable".into(),
        }),
        request: Some(
            json!({"userName": format!("user{user}@acme.example"), "title": "Engineer",
            "active": true}),
        ),
        response: None,
        groups: None,
        changes: Vec::new(),
        duration_ms: 40,
    }
}

async fn time_query(
    store: &EmbeddedStore,
    name: &str,
    query: &LogQuery,
) -> Result<(), Box<dyn Error>> {
    let first = store.query(query).await?;
    let runs = 50;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        black_box(store.query(black_box(query)).await?);
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[runs / 2];
    let worst = times[runs - 1];
    println!(
        "{name}: {} entries on the first page; median {:.2} ms, slowest {:.2} ms ({runs} runs)",
        first.entries.len(),
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let total: u64 = std::env::var("USERPROV_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::new(EmbeddedDb::open(dir.path())?);

    let started = Instant::now();
    let batch = 10_000;
    let mut n = 0;
    while n < total {
        let end = (n + batch).min(total);
        let entries: Vec<LogEntry> = (n..end).map(|i| entry(i, total)).collect();
        store.append_many(&entries).await?;
        n = end;
    }
    let size = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>();
    println!(
        "built a store of {total} entries in {:.1} s ({:.0} MB on disk)",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    let one_user = LogQuery {
        user: Some(user_id(4242)),
        ..LogQuery::default()
    };
    time_query(&store, "one user's entries (by id)", &one_user).await?;
    let by_name = LogQuery {
        user: Some("user4242@acme.example".into()),
        ..LogQuery::default()
    };
    time_query(&store, "one user's entries (by username)", &by_name).await?;
    let day = START + Duration::from_secs(45 * 24 * 60 * 60);
    let failures_in_a_day = LogQuery {
        app: Some("github".into()),
        status: Some(LogStatus::Failed),
        since: Some(day),
        until: Some(day + Duration::from_secs(24 * 60 * 60)),
        ..LogQuery::default()
    };
    time_query(&store, "one app's failures in one day", &failures_in_a_day).await?;
    let newest = LogQuery::default();
    time_query(&store, "the newest entries, no filter", &newest).await?;
    Ok(())
}
