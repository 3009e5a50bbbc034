//! `LogStore::stats` (behind `GET /stats`): counts by status and by app over a time range, on
//! the embedded store and on the DynamoDB store (moto server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use userprov_aws::{DynamoLogStore, schema};
use userprov_core::embedded::{EmbeddedDb, EmbeddedStore};
use userprov_core::log::{LogEntry, LogStats, LogStatus, Operation};
use userprov_core::ports::{Clock, LogStore};
use userprov_core::source::EventSource;
use userprov_tests::aws_fixtures::unique;
use userprov_tests::peers::moto::Moto;

struct FixedClock(OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap()
}

fn entry(time: OffsetDateTime, app: &str, status: LogStatus) -> LogEntry {
    let millis = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap();
    LogEntry {
        id: ulid::Ulid::from_parts(millis, ulid::Ulid::new().random()).to_string(),
        time,
        app: app.to_owned(),
        user_id: "0058a00000Us001AAA".into(),
        username: Some("marta@acme.example".into()),
        event_id: "evt".into(),
        source: EventSource::OutboundMessage,
        correlation_id: "corr".into(),
        operation: Operation::Update,
        status,
        attempt: 1,
        http_status: Some(200),
        target_id: None,
        reason: None,
        error: None,
        request: None,
        response: None,
        groups: None,
        changes: Vec::new(),
        duration_ms: 1,
    }
}

/// 40 entries, one every 90 minutes back from `now` (about 2.5 days), over 2 apps and 3 statuses.
fn fixture(now: OffsetDateTime) -> Vec<LogEntry> {
    let statuses = [LogStatus::Success, LogStatus::Failed, LogStatus::Held];
    (0..40)
        .map(|i| {
            entry(
                now - time::Duration::minutes(90 * i + 1),
                ["slack", "github"][i as usize % 2],
                statuses[i as usize % 3],
            )
        })
        .collect()
}

/// The counts, worked out from the fixture itself.
fn expected(
    entries: &[LogEntry],
    since: OffsetDateTime,
    until: OffsetDateTime,
    app: Option<&str>,
) -> LogStats {
    let mut stats = LogStats::new(since, until, app.map(str::to_owned));
    for entry in entries {
        if entry.time >= since && entry.time < until && app.is_none_or(|a| a == entry.app) {
            stats.count(entry);
        }
    }
    stats
}

async fn check_stats(store: &dyn LogStore, entries: &[LogEntry], now: OffsetDateTime) {
    for entry in entries {
        store.append(entry).await.unwrap();
    }
    let day_ago = now - time::Duration::DAY;
    let cases = [
        (day_ago, now, None),
        (day_ago, now, Some("slack")),
        (now - time::Duration::days(3), now, None),
        (now - time::Duration::days(2), day_ago, Some("github")),
        (
            now - time::Duration::days(10),
            now - time::Duration::days(5),
            None,
        ),
    ];
    for (since, until, app) in cases {
        let stats = store.stats(since, until, app).await.unwrap();
        assert_eq!(
            stats,
            expected(entries, since, until, app),
            "{since} .. {until} {app:?}"
        );
    }
    // The counts of the last day add up, by status and by app.
    let stats = store.stats(day_ago, now, None).await.unwrap();
    assert_eq!(stats.total, 16);
    assert_eq!(stats.by_status.values().sum::<u64>(), stats.total);
    assert_eq!(
        stats.by_app.values().map(|a| a.total).sum::<u64>(),
        stats.total
    );
    assert_eq!(
        stats.by_app["slack"].by_status,
        BTreeMap::from([
            ("failed".to_owned(), 2),
            ("held".to_owned(), 3),
            ("success".to_owned(), 3)
        ])
    );
}

#[tokio::test]
async fn the_embedded_store_counts_entries_by_status_and_app_over_a_time_range() {
    let data = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::new(EmbeddedDb::open(data.path()).unwrap());
    let now = now_ms();
    check_stats(&store, &fixture(now), now).await;
}

#[tokio::test]
async fn the_dynamodb_store_counts_entries_by_status_and_app_over_a_time_range() {
    let client = userprov_aws::aws_sdk_dynamodb::Client::new(&Moto::shared().sdk_config().await);
    let table = unique("log");
    schema::create_tables(&client, &unique("links"), &table)
        .await
        .unwrap();
    let now = now_ms();
    let store = DynamoLogStore::new(client, table, Duration::from_secs(30 * 24 * 3600))
        .with_clock(Arc::new(FixedClock(now)));
    check_stats(&store, &fixture(now), now).await;
}
