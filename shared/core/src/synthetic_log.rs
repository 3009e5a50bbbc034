//! A deterministic provisioning log of any size, and the queries admins run most, for the log
//! query benchmarks (the embedded store's `benches/log_query.rs` and the DynamoDB driver
//! `log_query_dynamo`), so both measure the same log.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::error::ErrorClass;
use crate::ids::SalesforceId;
use crate::log::{ErrorInfo, LogEntry, LogQuery, LogStatus, Operation};
use crate::source::EventSource;

pub const APPS: [&str; 5] = ["slack", "github", "zoom", "atlassian", "aws-sso"];
pub const USERS: u64 = 20_000;
/// The log spans 90 days from [`START`].
pub const SPAN: Duration = Duration::from_secs(90 * 24 * 60 * 60);
pub const START: OffsetDateTime = datetime!(2026-08-01 00:00:00 UTC);

/// User `n`'s 18-character id, as the worker stores it.
pub fn user_id(n: u64) -> String {
    let short = format!("0058a{n:010}");
    SalesforceId::parse(&short).map_or(short, |id| id.to_string())
}

/// Entry `n` of `total`, in time order over [`SPAN`]: entries go round the apps, users are
/// spread by a prime stride; 2% failures, 1% retries, the rest successes.
pub fn entry(n: u64, total: u64) -> LogEntry {
    let offset = u64::try_from(SPAN.as_millis()).unwrap_or(u64::MAX) / total.max(1) * n;
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

/// The benchmarked queries, by name: one user by id and by username, one app's failures in
/// one day (the middle one of the span), and the newest entries with no filter.
pub fn queries() -> Vec<(&'static str, LogQuery)> {
    let day = START + Duration::from_secs(45 * 24 * 60 * 60);
    vec![
        (
            "one user's entries (by id)",
            LogQuery {
                user: Some(user_id(4242)),
                ..LogQuery::default()
            },
        ),
        (
            "one user's entries (by username)",
            LogQuery {
                user: Some("user4242@acme.example".into()),
                ..LogQuery::default()
            },
        ),
        (
            "one app's failures in one day",
            LogQuery {
                app: Some("github".into()),
                status: Some(LogStatus::Failed),
                since: Some(day),
                until: Some(day + Duration::from_secs(24 * 60 * 60)),
                ..LogQuery::default()
            },
        ),
        ("the newest entries, no filter", LogQuery::default()),
    ]
}
