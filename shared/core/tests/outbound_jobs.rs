//! The webhook writes an Outbound Message's jobs straight from the request body, without an
//! owned copy of each user: the messages it queues are those of the jobs the owned path builds
//! (`parse_outbound_message`, then `Job::new` per app), byte for byte but for the job ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;
use time::macros::datetime;
use userprov_core::config::Config;
use userprov_core::ingest::Ingest;
use userprov_core::job::{Job, JobMessage};
use userprov_core::ports::{Clock, JobQueue, QueueError};
use userprov_core::salesforce::outbound::parse_outbound_message;
use userprov_core::source::{EventSource, SourceEvent};

const RECEIVED_AT: OffsetDateTime = datetime!(2025-03-14 16:02:12.345 UTC);
const APPS: [&str; 2] = ["crm", "wiki"];

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        RECEIVED_AT
    }
}

/// Keeps what it is given, by the way it was given.
#[derive(Default)]
struct RecordingQueue {
    jobs: Mutex<Vec<Job>>,
    messages: Mutex<Vec<JobMessage>>,
}

#[async_trait]
impl JobQueue for RecordingQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        self.jobs.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }

    async fn enqueue_messages(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        self.messages.lock().unwrap().extend(messages);
        Ok(())
    }
}

fn config() -> Config {
    let apps: String = APPS
        .iter()
        .map(|name| {
            format!(
                r#"
                [[apps]]
                name = "{name}"
                base_url = "https://{name}.example.com/scim/v2"
                secret = "s"
                [apps.mapping]
                userName = {{ from = "Username", required = true }}
                "#
            )
        })
        .collect();
    Config::parse(
        &format!(
            r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            {apps}
            "#
        ),
        "outbound_jobs",
    )
    .unwrap()
}

/// The jobs of the owned path, as the webhook queued them before it wrote them from the body.
fn owned_path_jobs(body: &str, correlation_id: &str) -> Vec<Job> {
    let message = parse_outbound_message(body.as_bytes()).unwrap();
    message
        .notifications
        .into_iter()
        .filter_map(|notification| {
            let user = notification.object.ok()?;
            Some(SourceEvent {
                event_id: notification.id,
                source: EventSource::OutboundMessage,
                user,
                event_time: None,
            })
        })
        .flat_map(|event| {
            APPS.iter()
                .map(|app| Job::new(app, &event, correlation_id, RECEIVED_AT))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Queues `body` through the webhook's use case and checks every message against the owned
/// path's job; returns how many there were.
async fn check_same_jobs(body: &str) -> usize {
    let queue = Arc::new(RecordingQueue::default());
    let ingest = Ingest::new(Arc::new(config()), queue.clone(), Arc::new(FixedClock));
    let report = ingest
        .outbound_message(body.as_bytes(), "corr-1")
        .await
        .unwrap();
    assert!(
        queue.jobs.lock().unwrap().is_empty(),
        "the webhook queues written messages, not jobs"
    );
    let messages = queue.messages.lock().unwrap().clone();
    let expected = owned_path_jobs(body, "corr-1");
    assert_eq!(report.jobs, messages.len());
    assert_eq!(messages.len(), expected.len());
    for (message, mut job) in messages.into_iter().zip(expected) {
        // Job ids are fresh ULIDs: everything else is the same.
        assert_eq!(message.job_id.len(), 26);
        job.job_id.clone_from(&message.job_id);
        assert_eq!(message.body, job.to_body().unwrap(), "the body of {job:?}");
        assert_eq!(Job::from_body(&message.body).unwrap(), job);
        assert_eq!(message.group_id, job.group_id());
        assert_eq!(message.dedup_id, job.dedup_id());
    }
    report.jobs
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/salesforce/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn the_fixtures_queue_the_jobs_of_the_owned_path() {
    for name in [
        "outbound-3-users.xml",
        "outbound-mixed-sobjects.xml",
        "outbound-weird-prefixes.xml",
        "outbound-default-namespace.xml",
    ] {
        let body = fixture(name);
        let body = body.replace("00D8a000002bQxT<", "00D8a000002bQxTEAU<");
        assert!(check_same_jobs(&body).await > 0, "{name} queues jobs");
    }
}

/// 100 notifications whose users exercise the field order (names sharing their first eight
/// bytes, more than 32 fields), nil values, references, nested fields, line ends, refused
/// notifications, and modification times that do and do not parse.
fn generated_message() -> String {
    let mut notifications = String::new();
    for i in 0..100 {
        let id = format!("0058a00000L{i:04}");
        let mut body = format!("<sf:Id>{id}</sf:Id>");
        if i % 17 == 5 {
            // Not a user: refused, the rest still queued.
            notifications.push_str(&format!(
                "<Notification><Id>04l8a000000{i:04}</Id><sObject xsi:type=\"sf:Account\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Id>0018a00000A{i:04}</sf:Id></sObject></Notification>"
            ));
            continue;
        }
        let fields = if i % 10 == 3 { 40 } else { 8 + i % 7 };
        for f in (0..fields).rev() {
            body.push_str(&format!(
                "<sf:Custom_Field_{f}__c>v{i}.{f}</sf:Custom_Field_{f}__c>"
            ));
        }
        body.push_str(&format!(
            "<sf:Username>user.{i}@acme.example</sf:Username><sf:LastName>Fernández &amp; Søgaard &#x1F600;</sf:LastName><sf:LastModifiedById>0058a00000IntG9AAJ</sf:LastModifiedById><sf:ManagerId xsi:nil=\"true\"/><sf:About>line one\r\nline two</sf:About><sf:Manager><sf:Email>boss{i}@acme.example</sf:Email></sf:Manager>"
        ));
        match i % 4 {
            0 => body.push_str("<sf:SystemModstamp>2025-03-14T16:02:11.000Z</sf:SystemModstamp><sf:LastModifiedDate>2025-03-14T16:02:10.000Z</sf:LastModifiedDate>"),
            1 => body.push_str("<sf:SystemModstamp>not a time</sf:SystemModstamp><sf:LastModifiedDate>1741968132000</sf:LastModifiedDate>"),
            2 => body.push_str("<sf:SystemModstamp xsi:nil=\"true\"/>"),
            _ => {}
        }
        notifications.push_str(&format!(
            "<Notification><Id>04l8a000000{i:04}</Id><sObject xsi:type=\"sf:User\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">{body}</sObject></Notification>"
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>00D8a000002bQxTEAU</OrganizationId><ActionId>04k8a000000CkPzAAK</ActionId>{notifications}</notifications></soapenv:Body></soapenv:Envelope>"#
    )
}

#[tokio::test]
async fn a_generated_100_notification_message_queues_the_jobs_of_the_owned_path() {
    let body = generated_message();
    let refused = (0..100).filter(|i| i % 17 == 5).count();
    assert_eq!(check_same_jobs(&body).await, (100 - refused) * APPS.len());
}

#[tokio::test]
async fn the_default_of_enqueue_messages_enqueues_the_same_jobs() {
    struct JobsOnly(Mutex<Vec<Job>>);
    #[async_trait]
    impl JobQueue for JobsOnly {
        async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
            self.0.lock().unwrap().extend_from_slice(jobs);
            Ok(())
        }
    }
    let body = generated_message();
    let queue = Arc::new(JobsOnly(Mutex::new(Vec::new())));
    let ingest = Ingest::new(Arc::new(config()), queue.clone(), Arc::new(FixedClock));
    ingest
        .outbound_message(body.as_bytes(), "corr-2")
        .await
        .unwrap();
    let jobs = queue.0.lock().unwrap().clone();
    let expected = owned_path_jobs(&body, "corr-2");
    assert_eq!(jobs.len(), expected.len());
    for (job, mut owned) in jobs.into_iter().zip(expected) {
        owned.job_id.clone_from(&job.job_id);
        assert_eq!(job, owned);
    }
}
