//! The EventBridge path that skips the webhook: an Event Relay event, exactly as a rule on the
//! partner event bus hands it to the ingest Lambda, read by the library function that Lambda
//! calls (`Ingest::relayed_event`) and queued on a real SQS FIFO queue (moto).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use userprov_core::config::Config;
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::ingest::{Ingest, IngestError};
use userprov_core::job::Job;
use userprov_core::ports::{QueueConsumer, SystemClock};
use userprov_core::source::{Completeness, EventSource};
use userprov_tests::aws_fixtures::fifo_queue_pair;
use userprov_tests::peers::moto::Moto;
use userprov_tests::pipeline::config_for;

const PLATFORM_EVENT: &str =
    include_str!("../fixtures/salesforce/eventbridge-user-provisioning-event.json");
const CHANGE_EVENT: &str =
    include_str!("../fixtures/salesforce/eventbridge-user-change-event.json");
const FLOW_CALLOUT: &str = include_str!("../fixtures/salesforce/flow-callout.json");

/// The ingest Lambda's `Ingest`, writing to a fresh FIFO queue in moto, and a consumer of it.
async fn ingest_on_moto() -> (Ingest, userprov_aws::SqsQueue) {
    let sdk = Moto::shared().sdk_config().await;
    let client = userprov_aws::aws_sdk_sqs::Client::new(&sdk);
    let queue = fifo_queue_pair(&client, None).await;
    let consumer = userprov_aws::SqsQueue::new(client, queue.queue_url().to_owned(), None);
    let config = Config::parse(&config_for("http://127.0.0.1:9/scim/v2", "", ""), "test").unwrap();
    let ingest = Ingest::new(Arc::new(config), Arc::new(queue), Arc::new(SystemClock));
    (ingest, consumer)
}

async fn queued_jobs(queue: &userprov_aws::SqsQueue) -> Vec<Job> {
    let mut jobs = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() {
            return jobs;
        }
        jobs.extend(batch.iter().map(|m| Job::from_body(&m.body).unwrap()));
    }
}

#[tokio::test]
async fn a_relayed_platform_event_is_one_job_per_app_and_a_redelivery_is_the_same_job() {
    let (ingest, queue) = ingest_on_moto().await;
    let report = ingest
        .relayed_event(
            PLATFORM_EVENT.as_bytes(),
            "44906bb0-03bf-4df3-860b-b2e9c19895cf",
        )
        .await
        .unwrap();
    assert_eq!((report.notifications, report.jobs), (1, 1));
    // EventBridge delivers at least once: the same event again must not be a second job.
    ingest
        .relayed_event(
            PLATFORM_EVENT.as_bytes(),
            "44906bb0-03bf-4df3-860b-b2e9c19895cf",
        )
        .await
        .unwrap();

    let jobs = queued_jobs(&queue).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.app, "scim");
    assert_eq!(job.source, EventSource::EventRelay);
    // Salesforce's id of the event, which survives a re-relay, is the dedupe key.
    assert_eq!(job.event_id, "fe76ab9c-c4df-4431-a4ad-17b56240dabf");
    assert_eq!(job.correlation_id, "44906bb0-03bf-4df3-860b-b2e9c19895cf");
    assert_eq!(job.user.id.as_str(), "0058a00000LmN3qAAF");
    assert_eq!(job.user.username(), Some("james.okafor@acme.example"));
    assert_eq!(job.user.is_active(), Some(false));
    assert_eq!(job.user.completeness, Completeness::Full);
    assert_eq!(
        job.user.text("LastModifiedDate").as_deref(),
        Some("2025-03-14T16:02:12.000Z")
    );
}

#[tokio::test]
async fn a_relayed_change_event_is_queued_as_a_partial_change_of_its_user() {
    let (ingest, queue) = ingest_on_moto().await;
    let report = ingest
        .relayed_event(
            CHANGE_EVENT.as_bytes(),
            "7b1e0c52-9a41-4f0e-8d7e-2c9a54f1e3b0",
        )
        .await
        .unwrap();
    assert_eq!(report.jobs, 1);
    let jobs = queued_jobs(&queue).await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.source, EventSource::ChangeDataCapture);
    assert_eq!(job.user.id.as_str(), "0058a00000LmN2pAAF");
    assert_eq!(job.user.completeness, Completeness::Partial);
    assert_eq!(
        job.user.text("Title").as_deref(),
        Some("Regional Sales Director")
    );
    assert_eq!(
        job.event_id,
        "0004f1a2-7c3d-4b1e-9f20-5e6d7c8b9a01:1:0058a00000LmN2pAAF"
    );
}

#[tokio::test]
async fn an_event_relayed_from_another_org_is_refused_and_nothing_is_queued() {
    let (ingest, queue) = ingest_on_moto().await;
    let foreign = PLATFORM_EVENT.replace("00D8a000002bQxTEAU", "00D5g000004Z9aBEAS");
    let error = ingest
        .relayed_event(foreign.as_bytes(), "corr-foreign")
        .await
        .unwrap_err();
    assert!(
        matches!(error, IngestError::ForeignOrganization(_)),
        "{error}"
    );
    // Retrying cannot help: the Lambda logs it and does not ask to be invoked again.
    assert_ne!(error.class(), ErrorClass::Transient);
    assert!(queued_jobs(&queue).await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_an_event_relay_event_is_refused_even_if_the_webhook_takes_it() {
    let (ingest, queue) = ingest_on_moto().await;
    let error = ingest
        .relayed_event(FLOW_CALLOUT.as_bytes(), "corr-flow")
        .await
        .unwrap_err();
    assert_eq!(error.code(), "not_event_relay");
    assert_eq!(error.class(), ErrorClass::BadInput);

    let broken = ingest
        .relayed_event(b"{\"detail\": ", "corr-broken")
        .await
        .unwrap_err();
    assert_eq!(broken.code(), "malformed_json");
    assert!(queued_jobs(&queue).await.is_empty());
}
