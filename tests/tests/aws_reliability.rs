//! The reliability parts of the AWS deployment against moto server: the deactivation guard's
//! DynamoDB hold store, postponing a paused app's job on SQS without using up its receives,
//! and `userprov redrive` on SQS (the real binary, pointed at moto).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use userprov_aws::{DynamoHoldStore, DynamoLogStore, Postponed, SqsQueue, schema};
use userprov_core::guard::{Admission, Hold};
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::log::{LogEntry, LogStatus, Operation};
use userprov_core::ports::{
    Disposition, HoldStore, JobQueue, LogStore, QueueConsumer, ReceivedMessage,
};
use userprov_core::source::{EventSource, SourceEvent, SourceUser};
use userprov_tests::aws_fixtures::{fifo_queue_pair, unique};
use userprov_tests::chaos::userprov_binary;
use userprov_tests::peers::moto::Moto;

async fn sqs() -> userprov_aws::aws_sdk_sqs::Client {
    userprov_aws::aws_sdk_sqs::Client::new(&Moto::shared().sdk_config().await)
}

async fn dynamodb() -> userprov_aws::aws_sdk_dynamodb::Client {
    userprov_aws::aws_sdk_dynamodb::Client::new(&Moto::shared().sdk_config().await)
}

fn user_id(index: usize) -> SalesforceId {
    SalesforceId::parse(&format!("0058a00000Rl{index:03}")).unwrap()
}

fn job(app: &str, user: usize, event_id: &str) -> Job {
    let mut source_user = SourceUser::new(user_id(user));
    source_user
        .fields
        .insert("Username".into(), json!(format!("user{user}@acme.example")));
    let event = SourceEvent {
        event_id: event_id.to_owned(),
        source: EventSource::OutboundMessage,
        user: source_user,
        event_time: None,
    };
    Job::new(app, &event, "corr-test", OffsetDateTime::now_utc())
}

// ---------------------------------------------------------------------------------------------
// The hold store

async fn hold_store() -> DynamoHoldStore {
    let client = dynamodb().await;
    let table = unique("holds");
    schema::create_holds_table(&client, &table).await.unwrap();
    DynamoHoldStore::new(client, table)
}

fn hold(app: &str, job_id: &str) -> Hold {
    Hold {
        id: ulid::Ulid::new().to_string(),
        app: app.into(),
        user_id: "0058a00000LmN2pAAF".into(),
        username: Some("ana@acme.example".into()),
        job_id: job_id.into(),
        event_id: format!("ev-{job_id}"),
        job: "{\"v\":1}".into(),
        reason: "too many deactivations".into(),
        held_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
    }
}

#[tokio::test]
async fn on_dynamodb_deactivations_beyond_the_limit_in_the_window_are_held_once_each() {
    let store = hold_store().await;
    let now = OffsetDateTime::now_utc();
    let window = Duration::from_secs(60);
    for job in ["a", "b"] {
        let admission = store
            .admit_deactivation(now, window, 2, &hold("slack", job))
            .await;
        assert_eq!(admission.unwrap(), Admission::Admitted);
    }
    assert_eq!(
        store
            .admit_deactivation(now, window, 2, &hold("slack", "a"))
            .await
            .unwrap(),
        Admission::Admitted,
        "a retried admitted job is not counted twice"
    );
    let held = hold("slack", "c");
    let first = store
        .admit_deactivation(now, window, 2, &held)
        .await
        .unwrap();
    let again = store
        .admit_deactivation(now, window, 2, &hold("slack", "c"))
        .await
        .unwrap();
    assert_eq!(
        first,
        Admission::Held {
            hold_id: held.id.clone()
        }
    );
    assert_eq!(first, again, "a redelivered held job is the same hold");
    assert_eq!(
        store
            .admit_deactivation(now, window, 2, &hold("zoom", "z"))
            .await
            .unwrap(),
        Admission::Admitted,
        "each app has its own count"
    );
    assert_eq!(store.list_holds(Some("slack")).await.unwrap(), vec![held]);
    assert!(store.list_holds(Some("zoom")).await.unwrap().is_empty());

    let later = now + Duration::from_secs(61);
    assert_eq!(
        store
            .admit_deactivation(later, window, 2, &hold("slack", "d"))
            .await
            .unwrap(),
        Admission::Admitted,
        "the window moved on"
    );
}

#[tokio::test]
async fn on_dynamodb_a_released_hold_passes_the_guard_once_and_a_discarded_one_is_gone() {
    let store = hold_store().await;
    let now = OffsetDateTime::now_utc();
    let window = Duration::from_secs(60);
    let a = hold("slack", "a");
    // Held a second later, so "oldest first" has one answer (two ULIDs made within the same
    // millisecond are in random order).
    let b = Hold {
        held_at: a.held_at + Duration::from_secs(1),
        ..hold("slack", "b")
    };
    for h in [&a, &b] {
        let admission = store.admit_deactivation(now, window, 0, h).await.unwrap();
        assert!(matches!(admission, Admission::Held { .. }));
    }
    assert_eq!(
        store.list_holds(None).await.unwrap(),
        vec![a.clone(), b.clone()],
        "oldest first"
    );
    assert_eq!(store.take_hold(&a.id, true).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store
            .admit_deactivation(now, window, 0, &hold("slack", "a"))
            .await
            .unwrap(),
        Admission::Admitted,
        "released: it passes"
    );
    assert_eq!(
        store.take_hold(&b.id, false).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.take_hold(&b.id, false).await.unwrap(), None);
    assert!(store.list_holds(None).await.unwrap().is_empty());
    assert!(
        matches!(
            store
                .admit_deactivation(now, window, 0, &hold("slack", "b"))
                .await
                .unwrap(),
            Admission::Held { .. }
        ),
        "discarded, not released: held again if it ever comes back"
    );
}

// ---------------------------------------------------------------------------------------------
// Postponing a paused app's job

async fn receive_one(queue: &SqsQueue) -> ReceivedMessage {
    for _ in 0..10 {
        if let Some(message) = queue
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .pop()
        {
            return message;
        }
    }
    panic!("no message came back");
}

#[tokio::test]
async fn a_postponed_job_never_counts_more_than_one_receive_and_keeps_its_group() {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    let sent = job("slack", 1, "evt-postponed");
    queue.enqueue(std::slice::from_ref(&sent)).await.unwrap();

    let first = receive_one(&queue).await;
    assert_eq!(first.receive_count, 1);
    let delay = Duration::from_secs(1);
    assert_eq!(
        queue.postpone(&first, delay).await.unwrap(),
        Postponed::Hidden
    );
    let second = receive_one(&queue).await;
    assert_eq!(
        (second.message_id.as_str(), second.receive_count),
        (first.message_id.as_str(), 2)
    );
    assert_eq!(
        queue.postpone(&second, delay).await.unwrap(),
        Postponed::Replaced
    );
    let copy = receive_one(&queue).await;
    assert_ne!(copy.message_id, first.message_id, "a fresh copy");
    assert_eq!(copy.receive_count, 1, "its receives start again");
    assert_eq!(copy.group_id, sent.group_id());
    assert_eq!(Job::from_body(&copy.body).unwrap(), sent);
    queue.settle(&copy, &Disposition::Done).await.unwrap();
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// `userprov redrive` on SQS

fn redrive(queue: &SqsQueue, log_table: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(userprov_binary());
    command
        .arg("redrive")
        .args(args)
        .arg("--queue-url")
        .arg(queue.queue_url())
        .arg("--dlq-url")
        .arg(queue.dlq_url().unwrap())
        .env("AWS_ENDPOINT_URL", Moto::shared().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("USERPROV_LOG_TABLE");
    if let Some(table) = log_table {
        command.arg("--log-table").arg(table);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Receives every message of the job queue (deleting each).
async fn drain(queue: &SqsQueue) -> Vec<ReceivedMessage> {
    let mut received = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            return received;
        }
        for message in batch {
            queue.settle(&message, &Disposition::Done).await.unwrap();
            received.push(message);
        }
    }
}

fn dead_lettered_entry(job: &Job) -> LogEntry {
    LogEntry {
        id: ulid::Ulid::new().to_string(),
        time: OffsetDateTime::now_utc(),
        app: job.app.clone(),
        user_id: job.user.id.as_str().to_owned(),
        username: job.user.username().map(str::to_owned),
        event_id: job.event_id.clone(),
        source: job.source,
        correlation_id: job.correlation_id.clone(),
        operation: Operation::Update,
        status: LogStatus::DeadLettered,
        attempt: 5,
        http_status: Some(503),
        target_id: None,
        reason: Some("attempt 5 of 5 failed; sent to the dead-letter queue".into()),
        error: None,
        request: None,
        response: None,
        groups: None,
        changes: Vec::new(),
        duration_ms: 3,
    }
}

#[tokio::test]
async fn redrive_on_sqs_lists_first_then_moves_back_by_app_user_or_log_id_and_reports_what_it_cannot_read()
 {
    let client = sqs().await;
    let queue = fifo_queue_pair(&client, None).await;
    let jobs = [
        job("slack", 1, "evt-r1"),
        job("slack", 2, "evt-r2"),
        job("zoom", 3, "evt-r3"),
    ];
    queue.enqueue(&jobs).await.unwrap();
    for message in drain_without_settling(&queue, 3).await {
        queue
            .settle(
                &message,
                &Disposition::DeadLetter {
                    reason: "http_503: the target is down".into(),
                },
            )
            .await
            .unwrap();
    }
    // A dead letter in a job format this version no longer reads.
    client
        .send_message()
        .queue_url(queue.dlq_url().unwrap())
        .message_body("{\"version\": 0, \"legacy\": true}")
        .message_group_id("legacy.group")
        .message_deduplication_id("legacy-1")
        .send()
        .await
        .unwrap();
    let dynamo = dynamodb().await;
    let log_table = unique("log");
    schema::create_tables(&dynamo, &unique("links"), &log_table)
        .await
        .unwrap();
    let log = DynamoLogStore::new(dynamo, log_table.clone(), Duration::from_secs(86_400));
    let entry = dead_lettered_entry(&jobs[1]);
    log.append(&entry).await.unwrap();

    let (ok, listing) = redrive(&queue, None, &["--dry-run"]);
    assert!(ok, "{listing}");
    assert!(
        listing.contains("dry run: 3 message(s) would be moved back"),
        "{listing}"
    );
    for job in &jobs {
        assert!(listing.contains(job.user.id.as_str()), "{listing}");
    }
    assert!(
        listing.contains("http_503: the target is down"),
        "{listing}"
    );
    assert!(
        listing.contains("1 dead letter(s) are not jobs this version reads")
            && listing.contains("legacy.group"),
        "{listing}"
    );
    assert!(drain(&queue).await.is_empty(), "a dry run moves nothing");

    let (ok, out) = redrive(
        &queue,
        None,
        &["--app", "slack", "--user", "user1@acme.example"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("moved 1 message(s)"), "{out}");
    let moved = drain(&queue).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(Job::from_body(&moved[0].body).unwrap(), jobs[0]);
    assert_eq!(moved[0].group_id, jobs[0].group_id(), "the original group");
    assert_ne!(
        moved[0].dedup_id,
        jobs[0].dedup_id(),
        "a fresh deduplication id"
    );
    assert_eq!(moved[0].receive_count, 1);

    let (ok, out) = redrive(&queue, None, &["--log-id", &entry.id]);
    assert!(!ok, "--log-id needs the log table: {out}");
    assert!(out.contains("--log-table"), "{out}");
    let (ok, out) = redrive(&queue, Some(&log_table), &["--log-id", &entry.id]);
    assert!(ok, "{out}");
    assert!(out.contains("moved 1 message(s)"), "{out}");
    let moved = drain(&queue).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(Job::from_body(&moved[0].body).unwrap(), jobs[1]);

    let (ok, out) = redrive(&queue, None, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("moved 1 message(s)"), "{out}");
    assert!(
        out.contains("legacy.group"),
        "the unreadable one is reported again: {out}"
    );
    let moved = drain(&queue).await;
    assert_eq!(Job::from_body(&moved[0].body).unwrap(), jobs[2]);
    let letters = queue
        .dead_letters(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "only the unreadable letter is left");
    assert_eq!(letters[0].message.group_id, "legacy.group");
}

/// Receives `expected` messages without settling them.
async fn drain_without_settling(queue: &SqsQueue, expected: usize) -> Vec<ReceivedMessage> {
    let mut received = Vec::new();
    for _ in 0..10 {
        if received.len() >= expected {
            break;
        }
        received.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(received.len(), expected);
    received
}
