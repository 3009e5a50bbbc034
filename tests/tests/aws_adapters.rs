//! The AWS adapters against moto server: SQS FIFO with its dead-letter queue, the DynamoDB link
//! and log stores, Secrets Manager. One moto server serves this file; every test makes its own
//! queues, tables and secrets under unique names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use userprov_aws::aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, ProjectionType, TimeToLiveStatus,
};
use userprov_aws::aws_sdk_secretsmanager::primitives::Blob;
use userprov_aws::aws_sdk_sqs::types::QueueAttributeName;
use userprov_aws::{DynamoLinkStore, DynamoLogStore, SecretsManagerStore, SqsQueue, schema};
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::link::{AccountLink, ManagedBy};
use userprov_core::log::{LogEntry, LogQuery, LogStatus, Operation};
use userprov_core::ports::{
    Clock, Disposition, JobQueue, LinkStore, LogStore, QueueConsumer, QueueError, ReceivedMessage,
    SecretError, SecretStore, SecretValue, StoreError,
};
use userprov_core::source::{EventSource, SourceEvent, SourceUser};
use userprov_tests::aws_fixtures::{fifo_queue_pair, unique};
use userprov_tests::peers::moto::Moto;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn sqs() -> userprov_aws::aws_sdk_sqs::Client {
    userprov_aws::aws_sdk_sqs::Client::new(&Moto::shared().sdk_config().await)
}

async fn dynamodb() -> userprov_aws::aws_sdk_dynamodb::Client {
    userprov_aws::aws_sdk_dynamodb::Client::new(&Moto::shared().sdk_config().await)
}

async fn secretsmanager() -> userprov_aws::aws_sdk_secretsmanager::Client {
    userprov_aws::aws_sdk_secretsmanager::Client::new(&Moto::shared().sdk_config().await)
}

/// (visible, in flight) message counts of a queue.
async fn message_counts(client: &userprov_aws::aws_sdk_sqs::Client, queue_url: &str) -> (u32, u32) {
    let output = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attributes = output.attributes().unwrap();
    let count = |name| attributes[&name].parse::<u32>().unwrap();
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

fn user_id(index: usize) -> SalesforceId {
    SalesforceId::parse(&format!("0058a00000Us{index:03}")).unwrap()
}

fn job(app: &str, user: usize, event_id: &str) -> Job {
    let mut source_user = SourceUser::new(user_id(user));
    source_user
        .fields
        .insert("Username".into(), json!(format!("user{user}@acme.example")));
    source_user.fields.insert("IsActive".into(), json!("true"));
    let event = SourceEvent {
        event_id: event_id.to_owned(),
        source: EventSource::OutboundMessage,
        user: source_user,
        event_time: None,
    };
    Job::new(app, &event, "corr-test", OffsetDateTime::now_utc())
}

/// Receives until `expected` messages arrived (deleting each) or the queue stays empty.
async fn drain(queue: &SqsQueue, expected: usize) -> Vec<ReceivedMessage> {
    let mut received = Vec::new();
    let mut empty_polls = 0;
    while received.len() < expected && empty_polls < 3 {
        let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            empty_polls += 1;
        }
        for message in batch {
            queue.settle(&message, &Disposition::Done).await.unwrap();
            received.push(message);
        }
    }
    received
}

// ---------------------------------------------------------------------------------------------
// SQS

#[tokio::test]
async fn twenty_five_jobs_go_out_in_three_batch_requests_and_arrive_in_their_groups() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    let apps = ["slack", "github", "zoom", "jira", "okta"];
    let jobs: Vec<Job> = (0..25)
        .map(|i| job(apps[i % 5], i / 5, &format!("evt-{i}")))
        .collect();

    queue.enqueue(&jobs).await.unwrap();

    assert_eq!(queue.send_batch_calls(), 3);
    let received = drain(&queue, 25).await;
    assert_eq!(received.len(), 25, "every job arrives once");
    let by_dedup: HashMap<String, &Job> = jobs.iter().map(|j| (j.dedup_id(), j)).collect();
    for message in &received {
        let sent = by_dedup[&message.dedup_id];
        assert_eq!(message.group_id, sent.group_id());
        assert_eq!(message.group_id, format!("{}.{}", sent.app, sent.user.id));
        assert_eq!(message.receive_count, 1);
        assert_eq!(&Job::from_body(&message.body).unwrap(), sent);
    }
    let distinct: BTreeSet<&str> = received.iter().map(|m| m.dedup_id.as_str()).collect();
    assert_eq!(distinct.len(), 25);
}

#[tokio::test]
async fn the_same_event_for_the_same_app_is_queued_once() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    let first = job("slack", 1, "evt-dup");
    // Salesforce delivers the notification again: a new job, the same event.
    let again = job("slack", 1, "evt-dup");
    assert_ne!(first.job_id, again.job_id);
    let other_app = job("github", 1, "evt-dup");

    queue.enqueue(std::slice::from_ref(&first)).await.unwrap();
    queue.enqueue(&[again, other_app.clone()]).await.unwrap();

    let received = drain(&queue, 3).await;
    let mut dedup_ids: Vec<&str> = received.iter().map(|m| m.dedup_id.as_str()).collect();
    dedup_ids.sort_unstable();
    let mut expected = vec![first.dedup_id(), other_app.dedup_id()];
    expected.sort_unstable();
    assert_eq!(dedup_ids, expected);
    let slack = received
        .iter()
        .find(|m| m.dedup_id == first.dedup_id())
        .unwrap();
    assert_eq!(
        Job::from_body(&slack.body).unwrap().job_id,
        first.job_id,
        "the first delivery wins"
    );
}

#[tokio::test]
async fn a_message_settled_done_is_deleted() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    queue.enqueue(&[job("slack", 1, "evt-done")]).await.unwrap();

    let message = queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(message_counts(&client, queue.queue_url()).await, (0, 1));
    queue.settle(&message, &Disposition::Done).await.unwrap();

    assert_eq!(message_counts(&client, queue.queue_url()).await, (0, 0));
}

#[tokio::test]
async fn a_message_to_retry_comes_back_after_the_delay_with_its_receive_count_raised() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    queue
        .enqueue(&[job("slack", 1, "evt-retry")])
        .await
        .unwrap();
    let first = queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(first.receive_count, 1);

    queue
        .settle(
            &first,
            &Disposition::RetryAfter(Duration::from_millis(1500)),
        )
        .await
        .unwrap();

    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "hidden during the delay"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .expect("visible after the delay");
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert_eq!(second.group_id, first.group_id);
}

#[tokio::test]
async fn a_retry_delay_beyond_twelve_hours_is_capped_not_refused() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    queue.enqueue(&[job("slack", 1, "evt-long")]).await.unwrap();
    let message = queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .unwrap();

    queue
        .settle(
            &message,
            &Disposition::RetryAfter(Duration::from_secs(48 * 3600)),
        )
        .await
        .unwrap();

    assert_eq!(message_counts(&client, queue.queue_url()).await, (0, 1));
}

#[tokio::test]
async fn a_dead_lettered_message_moves_to_the_dlq_with_its_group_and_reason() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    let sent = job("slack", 7, "evt-dead");
    queue.enqueue(std::slice::from_ref(&sent)).await.unwrap();
    let message = queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .unwrap();

    let reason = "permanent: http_400 userName is required";
    queue
        .settle(
            &message,
            &Disposition::DeadLetter {
                reason: reason.to_owned(),
            },
        )
        .await
        .unwrap();

    assert_eq!(
        message_counts(&client, queue.queue_url()).await,
        (0, 0),
        "gone from the job queue"
    );
    let letters = queue
        .dead_letters(10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.reason.as_deref(), Some(reason));
    assert_eq!(letter.message.group_id, sent.group_id());
    assert_ne!(
        letter.message.dedup_id,
        sent.dedup_id(),
        "a fresh deduplication id"
    );
    assert_eq!(Job::from_body(&letter.message.body).unwrap(), sent);
    let dlq = queue.dead_letter_queue().unwrap();
    dlq.settle(&letter.message, &Disposition::Done)
        .await
        .unwrap();
    assert_eq!(message_counts(&client, dlq.queue_url()).await, (0, 0));
}

#[tokio::test]
async fn a_queue_that_does_not_exist_is_an_error_not_a_silent_success() {
    let client = sqs().await;
    let url = format!(
        "{}/123456789012/{}.fifo",
        Moto::shared().endpoint(),
        unique("missing")
    );
    let queue = SqsQueue::new(client, url, None);

    let error = queue
        .enqueue(&[job("slack", 1, "evt-lost")])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QueueError::Unavailable(reason) if reason.contains("does not exist")),
        "{error:?}"
    );
    assert_eq!(
        error.class(),
        ErrorClass::Transient,
        "the webhook answers a fault and Salesforce retries"
    );

    let error = queue.receive(1, Duration::ZERO).await.unwrap_err();
    assert!(matches!(&error, QueueError::Unavailable(_)), "{error:?}");
}

/// A job far bigger than usual: the queue below takes at most 1,024 bytes a message.
fn oversized_job(user: usize) -> Job {
    let mut big = job("slack", user, &format!("evt-big-{user}"));
    big.user
        .fields
        .insert("AboutMe".into(), json!("x".repeat(2000)));
    big
}

#[tokio::test]
async fn a_batch_the_queue_refuses_after_earlier_batches_were_accepted_is_reported_as_partial() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, Some(1024)).await;
    let mut jobs: Vec<Job> = (0..25)
        .map(|i| job("slack", i, &format!("evt-{i}")))
        .collect();
    jobs[14] = oversized_job(14);

    let error = queue.enqueue(&jobs).await.unwrap_err();

    match &error {
        QueueError::Partial {
            accepted,
            total,
            reason,
        } => {
            assert_eq!((*accepted, *total), (10, 25));
            assert!(
                reason.contains("1024"),
                "the reason names the limit: {reason}"
            );
        }
        other => panic!("expected Partial, got {other:?}"),
    }
    assert!(
        error.class().is_retryable(),
        "Salesforce must deliver the notification again"
    );
    let received = drain(&queue, 10).await;
    let expected: BTreeSet<String> = jobs[..10].iter().map(Job::dedup_id).collect();
    assert_eq!(
        received
            .iter()
            .map(|m| m.dedup_id.clone())
            .collect::<BTreeSet<_>>(),
        expected
    );
}

#[tokio::test]
async fn a_job_the_queue_can_never_take_is_rejected() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, Some(1024)).await;

    let error = queue.enqueue(&[oversized_job(1)]).await.unwrap_err();

    assert!(matches!(error, QueueError::Rejected(_)), "{error:?}");
    assert_eq!(message_counts(&client, queue.queue_url()).await, (0, 0));
}

#[tokio::test]
async fn settling_with_a_receipt_the_queue_does_not_know_is_an_unknown_receipt() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;

    let error = queue
        .change_visibility("not-a-receipt", Duration::from_secs(5))
        .await
        .unwrap_err();

    assert!(matches!(error, QueueError::UnknownReceipt(_)), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// Account links

async fn link_store() -> DynamoLinkStore {
    let client = dynamodb().await;
    let links = unique("links");
    schema::create_tables(&client, &links, &unique("log"))
        .await
        .unwrap();
    DynamoLinkStore::new(client, links)
}

fn link(app: &str, user: usize, version: u64) -> AccountLink {
    AccountLink {
        app: app.to_owned(),
        user_id: user_id(user),
        username: Some(format!("user{user}@acme.example")),
        target_id: Some(format!("target-{app}-{user}")),
        active: true,
        last_source_time: Some(time::macros::datetime!(2025-03-01 10:00 UTC)),
        last_event_id: Some(format!("evt-{version}")),
        last_payload_hash: Some("ab12".into()),
        last_groups: vec!["sales-managers".into()],
        snapshot: None,
        managed_by: Some(ManagedBy::Created),
        version,
        updated_at: time::macros::datetime!(2025-03-01 10:00:05 UTC),
    }
}

#[tokio::test]
async fn a_link_is_created_once_and_then_changed_only_from_the_version_read() {
    let store = link_store().await;
    assert_eq!(store.get_link("slack", &user_id(1)).await.unwrap(), None);

    let created = link("slack", 1, 1);
    store.put_link(&created, None).await.unwrap();
    assert_eq!(
        store.get_link("slack", &user_id(1)).await.unwrap(),
        Some(created.clone())
    );

    let error = store
        .put_link(&link("slack", 1, 1), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { expected: None }),
        "a second create conflicts: {error:?}"
    );

    let mut updated = link("slack", 1, 2);
    updated.active = false;
    store.put_link(&updated, Some(1)).await.unwrap();
    assert_eq!(
        store.get_link("slack", &user_id(1)).await.unwrap(),
        Some(updated.clone())
    );

    let stale = link("slack", 1, 2);
    let error = store.put_link(&stale, Some(1)).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { expected: Some(1) }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(
        store.get_link("slack", &user_id(1)).await.unwrap(),
        Some(updated),
        "the stale write left no trace"
    );

    let error = store
        .put_link(&link("slack", 9, 2), Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { .. }),
        "updating a link that does not exist: {error:?}"
    );
}

#[tokio::test]
async fn links_are_listed_by_app_in_user_order_after_a_key() {
    let store = link_store().await;
    for user in [3, 1, 4, 2] {
        for app in ["zoom", "github", "slack"] {
            store.put_link(&link(app, user, 1), None).await.unwrap();
        }
    }
    let keys = |links: Vec<AccountLink>| {
        links
            .into_iter()
            .map(|l| (l.app, l.user_id.as_str().to_owned()))
            .collect::<Vec<_>>()
    };
    let key = |app: &str, user: usize| (app.to_owned(), user_id(user).as_str().to_owned());

    let slack = keys(store.list_links(Some("slack"), None, 10).await.unwrap());
    assert_eq!(
        slack,
        vec![
            key("slack", 1),
            key("slack", 2),
            key("slack", 3),
            key("slack", 4)
        ]
    );

    let after = user_id(2);
    let page = keys(
        store
            .list_links(Some("slack"), Some(("slack", after.as_str())), 1)
            .await
            .unwrap(),
    );
    assert_eq!(page, vec![key("slack", 3)]);

    let from_earlier_app = keys(
        store
            .list_links(Some("slack"), Some(("github", after.as_str())), 2)
            .await
            .unwrap(),
    );
    assert_eq!(from_earlier_app, vec![key("slack", 1), key("slack", 2)]);
    assert!(
        store
            .list_links(Some("slack"), Some(("zoom", after.as_str())), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let all = keys(store.list_links(None, None, 5).await.unwrap());
    assert_eq!(
        all,
        vec![
            key("github", 1),
            key("github", 2),
            key("github", 3),
            key("github", 4),
            key("slack", 1)
        ]
    );
    let last = user_id(4);
    let next = keys(
        store
            .list_links(None, Some(("slack", last.as_str())), 5)
            .await
            .unwrap(),
    );
    assert_eq!(
        next,
        vec![
            key("zoom", 1),
            key("zoom", 2),
            key("zoom", 3),
            key("zoom", 4)
        ]
    );
    assert!(
        store
            .list_links(Some("slack"), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Provisioning log

const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

struct FixedClock(OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// Now, to the millisecond (entry times survive JSON exactly).
fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap()
}

fn entry(
    time: OffsetDateTime,
    app: &str,
    user: usize,
    username: Option<&str>,
    status: LogStatus,
    event: &str,
) -> LogEntry {
    let millis = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap();
    LogEntry {
        id: ulid::Ulid::from_parts(millis, rand_bits()).to_string(),
        time,
        app: app.to_owned(),
        user_id: user_id(user).as_str().to_owned(),
        username: username.map(str::to_owned),
        event_id: event.to_owned(),
        source: EventSource::OutboundMessage,
        correlation_id: format!("corr-{event}"),
        operation: if status == LogStatus::Skipped {
            Operation::Skip
        } else {
            Operation::Update
        },
        status,
        attempt: 1,
        http_status: Some(200),
        target_id: Some(format!("t-{user}")),
        reason: None,
        error: None,
        request: Some(json!({"userName": username})),
        response: Some("{}".into()),
        groups: None,
        changes: Vec::new(),
        duration_ms: 42,
    }
}

fn rand_bits() -> u128 {
    ulid::Ulid::new().random()
}

/// 30 entries over 4 days, 3 apps, 4 users (one without a username), 4 statuses, 15 events.
fn log_fixture(now: OffsetDateTime) -> Vec<LogEntry> {
    let apps = ["slack", "github", "zoom"];
    let usernames = [
        Some("Marta.Fernandes@acme.example"),
        Some("li.wei@acme.example"),
        None,
        Some("Ola@acme.example"),
    ];
    let statuses = [
        LogStatus::Success,
        LogStatus::Failed,
        LogStatus::Retrying,
        LogStatus::Skipped,
        LogStatus::Success,
    ];
    (0..30)
        .map(|i| {
            let time = now - time::Duration::minutes(150 * i as i64 + 1);
            entry(
                time,
                apps[i % 3],
                i % 4,
                usernames[i % 4],
                statuses[i % 5],
                &format!("evt-{}", i / 2),
            )
        })
        .collect()
}

async fn log_store(
    now: OffsetDateTime,
) -> (
    DynamoLogStore,
    userprov_aws::aws_sdk_dynamodb::Client,
    String,
) {
    let client = dynamodb().await;
    let table = unique("log");
    schema::create_tables(&client, &unique("links"), &table)
        .await
        .unwrap();
    let store = DynamoLogStore::new(client.clone(), table.clone(), RETENTION)
        .with_clock(Arc::new(FixedClock(now)));
    (store, client, table)
}

/// What a query must answer, from the fixture itself: the matching entries, newest first.
fn expected(entries: &[LogEntry], query: &LogQuery) -> Vec<String> {
    let mut ids: Vec<String> = entries
        .iter()
        .filter(|e| query.matches(e))
        .map(|e| e.id.clone())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.truncate(query.effective_limit());
    ids
}

async fn all_pages(store: &DynamoLogStore, query: &LogQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut query = query.clone();
    loop {
        let page = store.query(&query).await.unwrap();
        assert!(page.entries.len() <= query.effective_limit());
        pages.push(page.entries.iter().map(|e| e.id.clone()).collect());
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return pages,
        }
        assert!(pages.len() < 50, "pagination does not end");
    }
}

#[tokio::test]
async fn log_queries_answer_exactly_the_matching_entries_newest_first() {
    let now = now_ms();
    let (store, _, _) = log_store(now).await;
    let entries = log_fixture(now);
    for entry in &entries {
        store.append(entry).await.unwrap();
    }
    let all = |q: LogQuery| LogQuery { limit: 100, ..q };
    let queries = [
        ("everything (by day)", all(LogQuery::default())),
        (
            "user by 18-character id",
            all(LogQuery {
                user: Some(user_id(1).as_str().to_owned()),
                ..Default::default()
            }),
        ),
        (
            "user by 15-character id",
            all(LogQuery {
                user: Some(user_id(3).short().to_owned()),
                ..Default::default()
            }),
        ),
        (
            "user by username, any case",
            all(LogQuery {
                user: Some("MARTA.FERNANDES@ACME.EXAMPLE".into()),
                ..Default::default()
            }),
        ),
        (
            "app",
            all(LogQuery {
                app: Some("github".into()),
                ..Default::default()
            }),
        ),
        (
            "status",
            all(LogQuery {
                status: Some(LogStatus::Failed),
                ..Default::default()
            }),
        ),
        (
            "event",
            all(LogQuery {
                event_id: Some("evt-4".into()),
                ..Default::default()
            }),
        ),
        (
            "operation only (by day)",
            all(LogQuery {
                operation: Some(Operation::Skip),
                ..Default::default()
            }),
        ),
        (
            "app and status",
            all(LogQuery {
                app: Some("zoom".into()),
                status: Some(LogStatus::Success),
                ..Default::default()
            }),
        ),
        (
            "a time window (by day)",
            all(LogQuery {
                since: Some(now - time::Duration::hours(50)),
                until: Some(now - time::Duration::hours(20)),
                ..Default::default()
            }),
        ),
        (
            "a time window for one app",
            all(LogQuery {
                app: Some("slack".into()),
                since: Some(now - time::Duration::hours(40)),
                until: Some(now - time::Duration::hours(10)),
                ..Default::default()
            }),
        ),
        (
            "a user nobody has",
            all(LogQuery {
                user: Some("nobody@acme.example".into()),
                ..Default::default()
            }),
        ),
        (
            "a short page",
            LogQuery {
                app: Some("slack".into()),
                limit: 4,
                ..Default::default()
            },
        ),
    ];
    for (what, query) in queries {
        let page = store.query(&query).await.unwrap();
        let got: Vec<String> = page.entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(got, expected(&entries, &query), "{what}");
    }
    let everything = store.query(&all(LogQuery::default())).await.unwrap();
    assert_eq!(everything.entries.len(), 30);
    assert_eq!(everything.next_cursor, None);
    // The whole entry comes back as it went in.
    let newest = entries.iter().max_by(|a, b| a.id.cmp(&b.id)).unwrap();
    assert_eq!(&everything.entries[0], newest);
}

#[tokio::test]
async fn paging_through_the_log_visits_every_entry_once() {
    let now = now_ms();
    let (store, _, _) = log_store(now).await;
    let entries = log_fixture(now);
    for entry in &entries {
        store.append(entry).await.unwrap();
    }
    for query in [
        LogQuery {
            limit: 7,
            ..Default::default()
        },
        LogQuery {
            app: Some("slack".into()),
            limit: 3,
            ..Default::default()
        },
        LogQuery {
            status: Some(LogStatus::Success),
            limit: 5,
            ..Default::default()
        },
        LogQuery {
            user: Some("li.wei@acme.example".into()),
            limit: 2,
            ..Default::default()
        },
    ] {
        let pages = all_pages(&store, &query).await;
        let full = expected(
            &entries,
            &LogQuery {
                limit: 500,
                cursor: None,
                ..query.clone()
            },
        );
        let joined: Vec<String> = pages.concat();
        assert_eq!(
            joined, full,
            "{query:?}: no duplicates, no gaps, newest first"
        );
        assert!(
            pages[..pages.len() - 1]
                .iter()
                .all(|p| p.len() == query.limit),
            "{query:?}: {pages:?}"
        );
    }
}

#[tokio::test]
async fn a_cursor_the_api_did_not_hand_out_is_a_bad_request() {
    let (store, _, _) = log_store(now_ms()).await;
    let query = LogQuery {
        cursor: Some("not-a-cursor".into()),
        ..Default::default()
    };
    let error = store.query(&query).await.unwrap_err();
    assert!(matches!(error, StoreError::BadRequest(_)), "{error:?}");
}

#[tokio::test]
async fn an_entry_is_read_back_by_id_with_its_index_attributes() {
    let now = now_ms();
    let (store, client, table) = log_store(now).await;
    let written = entry(
        now - time::Duration::hours(30),
        "slack",
        1,
        Some("Li.Wei@Acme.example"),
        LogStatus::Failed,
        "evt-x",
    );
    store.append(&written).await.unwrap();

    assert_eq!(
        store.get_entry(&written.id).await.unwrap(),
        Some(written.clone())
    );
    assert_eq!(
        store
            .get_entry(&ulid::Ulid::new().to_string())
            .await
            .unwrap(),
        None
    );

    let item = client
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S(written.id.clone()))
        .send()
        .await
        .unwrap()
        .item()
        .unwrap()
        .clone();
    let text = |name: &str| item[name].as_s().unwrap().clone();
    assert_eq!(text("user_id"), user_id(1).as_str());
    assert_eq!(text("username_lc"), "li.wei@acme.example");
    assert_eq!(text("app"), "slack");
    assert_eq!(text("status"), "failed");
    assert_eq!(text("event_id"), "evt-x");
    let day = written.time.date();
    assert_eq!(
        text("day"),
        format!(
            "{:04}-{:02}-{:02}",
            day.year(),
            day.month() as u8,
            day.day()
        )
    );
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(
        expires_at,
        (written.time + time::Duration::days(30)).unix_timestamp()
    );
    assert_eq!(
        serde_json::from_str::<LogEntry>(&text("entry")).unwrap(),
        written
    );
}

#[tokio::test]
async fn expired_entries_are_hidden_although_dynamodb_has_not_deleted_them_yet() {
    let now = now_ms();
    let (store, _, _) = log_store(now).await;
    let expired = entry(
        now - time::Duration::days(31),
        "legacy",
        1,
        None,
        LogStatus::Success,
        "evt-old",
    );
    let kept = entry(
        now - time::Duration::days(29),
        "legacy",
        1,
        None,
        LogStatus::Success,
        "evt-kept",
    );
    store.append(&expired).await.unwrap();
    store.append(&kept).await.unwrap();

    let page = store
        .query(&LogQuery {
            app: Some("legacy".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.entries, vec![kept.clone()]);
    let by_event = store
        .query(&LogQuery {
            event_id: Some("evt-old".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_event.entries.is_empty());
    let by_day = store
        .query(&LogQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_day.entries, vec![kept]);
    assert_eq!(store.get_entry(&expired.id).await.unwrap(), None);
}

/// An index as described: name, key schema, projection.
type IndexShape = (String, Vec<(String, KeyType)>, Option<ProjectionType>);

#[tokio::test]
async fn the_tables_have_the_documented_keys_indexes_and_expiry() {
    let client = dynamodb().await;
    let (links, log) = (unique("links"), unique("log"));
    schema::create_tables(&client, &links, &log).await.unwrap();
    schema::create_tables(&client, &links, &log)
        .await
        .expect("creating the tables again is harmless");

    let key_of = |schema: &[userprov_aws::aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema
            .iter()
            .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
            .collect::<Vec<_>>()
    };
    let links_table = client
        .describe_table()
        .table_name(&links)
        .send()
        .await
        .unwrap()
        .table()
        .unwrap()
        .clone();
    assert_eq!(
        key_of(links_table.key_schema()),
        vec![
            ("app".to_owned(), KeyType::Hash),
            ("user_id".to_owned(), KeyType::Range)
        ]
    );
    assert_eq!(
        links_table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );

    let log_table = client
        .describe_table()
        .table_name(&log)
        .send()
        .await
        .unwrap()
        .table()
        .unwrap()
        .clone();
    assert_eq!(
        key_of(log_table.key_schema()),
        vec![("id".to_owned(), KeyType::Hash)]
    );
    let mut indexes: Vec<IndexShape> = log_table
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            (
                index.index_name().unwrap().to_owned(),
                key_of(index.key_schema()),
                index
                    .projection()
                    .and_then(|p| p.projection_type())
                    .cloned(),
            )
        })
        .collect();
    indexes.sort_by(|a, b| a.0.cmp(&b.0));
    let index = |name: &str, key: &str| {
        (
            name.to_owned(),
            vec![
                (key.to_owned(), KeyType::Hash),
                ("id".to_owned(), KeyType::Range),
            ],
            Some(ProjectionType::All),
        )
    };
    assert_eq!(
        indexes,
        vec![
            index("by_app", "app"),
            index("by_day", "day"),
            index("by_event", "event_id"),
            index("by_status", "status"),
            index("by_user", "user_id"),
            index("by_username", "username_lc"),
        ]
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&log)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager

async fn create_secret(
    client: &userprov_aws::aws_sdk_secretsmanager::Client,
    value: &str,
) -> (String, String) {
    let name = unique("userprov/app");
    let created = client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    (name, created.arn().unwrap().to_owned())
}

async fn stored_value(client: &userprov_aws::aws_sdk_secretsmanager::Client, name: &str) -> String {
    client
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_secret_is_read_by_name_or_arn_and_reused_until_its_ttl_passes() {
    let client = secretsmanager().await;
    let (name, arn) = create_secret(&client, "token-one").await;
    let store = SecretsManagerStore::new(client.clone(), Duration::from_millis(1500));

    assert_eq!(store.get_secret(&name).await.unwrap().expose(), "token-one");
    assert_eq!(store.get_secret(&arn).await.unwrap().expose(), "token-one");

    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string("token-two")
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.get_secret(&name).await.unwrap().expose(),
        "token-one",
        "the cached value within the TTL"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        store.get_secret(&name).await.unwrap().expose(),
        "token-two",
        "fetched again after the TTL"
    );
}

#[tokio::test]
async fn a_zero_ttl_reads_the_secret_every_time() {
    let client = secretsmanager().await;
    let (name, _) = create_secret(&client, "token-one").await;
    let store = SecretsManagerStore::new(client.clone(), Duration::ZERO);
    assert_eq!(store.get_secret(&name).await.unwrap().expose(), "token-one");
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string("token-two")
        .send()
        .await
        .unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap().expose(), "token-two");
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_worth_retrying_once_an_operator_creates_it() {
    let store = SecretsManagerStore::new(secretsmanager().await, Duration::from_secs(60));
    let error = store
        .get_secret("userprov/does-not-exist")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SecretError::NotFound { name } if name == "userprov/does-not-exist"),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn a_written_secret_is_stored_and_read_back_at_once() {
    let client = secretsmanager().await;
    let (name, _) = create_secret(&client, "refresh-one").await;
    let store = SecretsManagerStore::new(client.clone(), Duration::from_secs(3600));
    assert_eq!(
        store.get_secret(&name).await.unwrap().expose(),
        "refresh-one"
    );

    store
        .put_secret(&name, &SecretValue::new("refresh-two"))
        .await
        .unwrap();

    assert_eq!(
        store.get_secret(&name).await.unwrap().expose(),
        "refresh-two",
        "the cache holds the new value"
    );
    assert_eq!(stored_value(&client, &name).await, "refresh-two");
}

#[tokio::test]
async fn a_binary_secret_is_malformed() {
    let client = secretsmanager().await;
    let name = unique("userprov/binary");
    client
        .create_secret()
        .name(&name)
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150]))
        .send()
        .await
        .unwrap();
    let store = SecretsManagerStore::new(client, Duration::from_secs(60));
    let error = store.get_secret(&name).await.unwrap_err();
    assert!(matches!(error, SecretError::Malformed { .. }), "{error:?}");
}

#[tokio::test]
async fn secret_values_never_appear_in_errors_or_debug_output() {
    let client = secretsmanager().await;
    let value = "sk-live-5f2c9a7e-never-print-me";
    let store = SecretsManagerStore::new(client.clone(), Duration::from_secs(3600));

    let error = store
        .put_secret("userprov/not-there", &SecretValue::new(value))
        .await
        .unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error:?}");
    assert!(!format!("{error}").contains(value));
    assert!(!format!("{error:?}").contains(value));

    let (name, _) = create_secret(&client, value).await;
    let read = store.get_secret(&name).await.unwrap();
    assert_eq!(read.expose(), value);
    assert!(!format!("{read:?}").contains(value));
    assert!(
        !format!("{store:?}").contains(value),
        "the cache is not printed"
    );
}
