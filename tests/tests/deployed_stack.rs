//! The SAM application as deployed: the real webhook, worker and log API binaries built by
//! `sam build` and run by ministack, wired by the template's HTTP APIs, FIFO queues, event source
//! mapping, tables and secrets, with scim2-server as the target app. A second stack in the same
//! ministack runs the fault-injection driver (`userprov_tests::chaos`), shortened.
//!
//! Slow (a `sam build` of three functions; `SAM_BUILD_MODE=debug` builds without `--release`):
//!
//! ```text
//! SAM_BUILD_MODE=debug cargo test -p userprov-tests --test deployed_stack
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use userprov_aws::aws_config::{self, BehaviorVersion, Region, SdkConfig};
use userprov_aws::aws_sdk_sqs::config::Credentials;
use userprov_aws::aws_sdk_sqs::types::QueueAttributeName;
use userprov_aws::{REASON_ATTRIBUTE, SqsQueue};
use userprov_tests::chaos::{self, ChaosSettings, DeployedSystem, FaultyTarget};
use userprov_tests::peers::ministack::{Deployment, Ministack, REGION, sam_build};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{Notified, ORG_ID, config_for, outbound_message, scim_users};

const MARTA: &str = "0058a00000LmN2pAAF";
const JAMES: &str = "0058a00000LmN3qAAF";
const PRIYA: &str = "0058a00000LmN4rAAF";
/// A user the fixture does not know, sent without the Email the mapping requires.
const NO_EMAIL: &str = "0058a00000LmN6tAAF";

/// Event Relay's partner event bus for the test org (the stack's `EventRelayBusName`).
const RELAY_BUS: &str = "aws.partner/salesforce.com/00D8a000002bQxTEAU/0YL8a000000PqRsGAK";

/// How long the stack gets to do one step: a debug binary's cold start plus the event source
/// mapping's polling.
const STEP: Duration = Duration::from_secs(120);

async fn sdk_config(aws: &Ministack) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(userprov_aws::http_client())
        .endpoint_url(aws.endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "ministack"))
        .load()
        .await
}

/// Polls `probe` until it returns something, or fails with what `context` says.
async fn eventually<T, F, Fut>(what: &str, context: impl Fn() -> String, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {STEP:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn post_outbound(deployment: &Deployment, body: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(&deployment.webhook_url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(body)
        .timeout(STEP)
        .send()
        .await
        .expect("the webhook answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The AWS_IAM routes want an Authorization header; ministack does not verify the signature.
const FAKE_SIGV4: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/execute-api/aws4_request, \
     SignedHeaders=host, Signature=0";

/// `GET /logs` on the deployed log API, oldest entry first. The routes are AWS_IAM: ministack
/// wants an Authorization header but does not verify the signature.
async fn log_entries(deployment: &Deployment, query: &str) -> Result<Vec<Value>, String> {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/logs?limit=500&{query}",
            deployment.log_api_base_url
        ))
        .header("authorization", FAKE_SIGV4)
        .timeout(STEP)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("log API answered {status}: {body}"));
    }
    let mut entries = body["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    Ok(entries)
}

fn outcome(entry: &Value) -> (&str, &str) {
    (
        entry["operation"].as_str().unwrap_or_default(),
        entry["status"].as_str().unwrap_or_default(),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn the_deployed_stack_provisions_dead_letters_a_bad_job_and_survives_injected_faults() {
    let scim = Scim2Server::start();
    let build_started = Instant::now();
    let build_dir = sam_build();
    eprintln!("sam build done in {:?}", build_started.elapsed());
    let aws = Ministack::start();
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("userprov.toml");
    std::fs::write(
        &config_path,
        config_for(&scim.tenant_url("deployed"), "", ""),
    )
    .unwrap();
    // Event Relay's partner bus exists before the stack that names it.
    aws.create_event_bus(RELAY_BUS).await;
    let deploy_started = Instant::now();
    let deployment = aws.deploy_stack(
        &build_dir,
        &config_path,
        "userprov",
        &format!("EventRelayBusName={RELAY_BUS}"),
    );
    eprintln!("deployed in {:?}", deploy_started.elapsed());
    let context = || {
        format!(
            "--- ministack log (functions included) ---\n{}\n--- scim2-server log ---\n{}",
            tail(&aws.log(), 80),
            tail(&scim.log(), 20)
        )
    };

    // The app's credentials, where the worker's grant (userprov/*) reaches them.
    let sdk = sdk_config(&aws).await;
    userprov_aws::aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("userprov/scim")
        .secret_string(format!(r#"{{"type":"bearer","token":"{}"}}"#, scim.token))
        .send()
        .await
        .unwrap();

    // 1. Three users in one Outbound Message: acked at once, provisioned by the worker.
    let flow_started = Instant::now();
    let fixture = std::fs::read_to_string(
        userprov_tests::peers::repo_root().join("tests/fixtures/salesforce/outbound-3-users.xml"),
    )
    .unwrap();
    let (status, body) = post_outbound(&deployment, fixture).await;
    assert_eq!(status, 200, "{body}\n{}", context());
    assert!(body.contains("<Ack>true</Ack>"), "a SOAP ack: {body}");

    let base_url = scim.tenant_url("deployed");
    let accounts = eventually("Marta's and Priya's accounts", context, || async {
        let users = scim_users(&base_url, &scim.token, None).await;
        (users.len() >= 2).then_some(users)
    })
    .await;
    let mut user_names: Vec<&str> = accounts
        .iter()
        .filter_map(|a| a["userName"].as_str())
        .collect();
    user_names.sort_unstable();
    assert_eq!(
        user_names,
        ["marta.fernandes@acme.example", "priya.nair@acme.example"],
        "James is inactive: no account for him"
    );
    assert!(
        accounts.iter().all(|a| a["active"] != false),
        "{accounts:?}"
    );

    let entries = eventually("three log entries", context, || async {
        log_entries(&deployment, "")
            .await
            .ok()
            .filter(|entries| entries.len() >= 3)
    })
    .await;
    let of = |user: &str| -> Vec<(&str, &str)> {
        entries
            .iter()
            .filter(|e| e["user_id"] == user)
            .map(outcome)
            .collect()
    };
    assert_eq!(of(MARTA), [("create", "success")], "{entries:?}");
    assert_eq!(of(PRIYA), [("create", "success")], "{entries:?}");
    assert_eq!(of(JAMES), [("noop", "skipped")], "{entries:?}");
    eprintln!(
        "three users acked, provisioned and logged in {:?}",
        flow_started.elapsed()
    );

    // 2. Event Relay without the webhook: the event the rule on the partner bus hands to the
    // Event Relay function, here invoked directly (the emulator does not deliver partner
    // events), is queued and applied by the same worker.
    let relay = deployment
        .event_relay_function
        .clone()
        .expect("EventRelayBusName deploys the Event Relay function");
    let mut relayed: Value = serde_json::from_str(
        &std::fs::read_to_string(
            userprov_tests::peers::repo_root()
                .join("tests/fixtures/salesforce/eventbridge-user-provisioning-event.json"),
        )
        .unwrap(),
    )
    .unwrap();
    relayed["source"] = Value::from(RELAY_BUS);
    relayed["id"] = Value::from("5f0c6f0e-7a52-4a3e-9d1b-2b7f3c9e1a01");
    relayed["detail"]["id"] = Value::from("0b3e8f7d-93a4-4c1e-8e55-6a0f2d4c7b12");
    let payload = &mut relayed["detail"]["payload"];
    payload["Operation__c"] = Value::Null;
    payload["User_Id__c"] = Value::from(MARTA);
    payload["Username__c"] = Value::from("marta.fernandes@acme.example");
    payload["Email__c"] = Value::from("marta.fernandes@acme.example");
    payload["Federation_Identifier__c"] = Value::from("marta.fernandes@acme.example");
    payload["First_Name__c"] = Value::from("Marta");
    payload["Last_Name__c"] = Value::from("Fernandes");
    payload["Is_Active__c"] = Value::from(true);
    payload["Title__c"] = Value::from("Head of Sales Engineering");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    payload["Source_Last_Modified__c"] = Value::from(now_ms);
    // The emulator does not deliver partner events, so the hop from the bus to the function is
    // checked in its two halves: the deployed rule matches a relayed Salesforce event (and
    // nothing else on the bus), and its target is the function invoked below.
    let rules = aws
        .eventbridge("ListRules", json!({ "EventBusName": RELAY_BUS }))
        .await;
    let rules = rules["Rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1, "one rule on the partner bus: {rules:?}");
    let (rule, pattern) = (&rules[0]["Name"], &rules[0]["EventPattern"]);
    let mut foreign = relayed.clone();
    foreign["source"] = Value::from("com.example.hr");
    for (event, expected) in [(&relayed, true), (&foreign, false)] {
        let request = json!({ "EventPattern": pattern, "Event": event.to_string() });
        let tested = aws.eventbridge("TestEventPattern", request).await;
        assert_eq!(tested["Result"], expected, "rule {rule}, event {event}");
    }
    let targets = aws
        .eventbridge(
            "ListTargetsByRule",
            json!({ "Rule": rule, "EventBusName": RELAY_BUS }),
        )
        .await;
    let targets = targets["Targets"].as_array().cloned().unwrap_or_default();
    assert_eq!(targets.len(), 1, "{targets:?}");
    let target = targets[0]["Arn"].as_str().unwrap_or_default();
    assert!(
        target.ends_with(&format!(":function:{relay}")) || target == relay,
        "the rule delivers to {target}, not to the Event Relay function {relay}"
    );

    let relay_started = Instant::now();
    let (status, answer) = aws.invoke(&relay, &relayed).await;
    assert_eq!(status, 200, "{answer}\n{}", context());
    let marta = eventually("Marta's title from the relayed event", context, || async {
        scim_users(&base_url, &scim.token, Some("marta.fernandes@acme.example"))
            .await
            .into_iter()
            .find(|user| user["title"] == "Head of Sales Engineering")
    })
    .await;
    assert_eq!(marta["active"], true, "{marta}");
    let updated = eventually("the relayed event's log entry", context, || async {
        log_entries(&deployment, &format!("user={MARTA}"))
            .await
            .ok()
            .filter(|entries| entries.len() >= 2)
    })
    .await;
    assert_eq!(
        updated.iter().map(outcome).collect::<Vec<_>>(),
        [("create", "success"), ("update", "success")],
        "{updated:?}"
    );
    assert_eq!(updated[1]["source"], "event_relay", "{}", updated[1]);
    eprintln!(
        "the relayed event was queued and applied in {:?}",
        relay_started.elapsed()
    );

    // 3. A job that can never succeed (the mapping requires Email): failed once, kept in the DLQ.
    let bad_started = Instant::now();
    let no_email = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq4RvAAJ",
            user_id: NO_EMAIL,
            fields: &[
                ("Username", "no.email@acme.example"),
                ("LastName", "Doe"),
                ("IsActive", "true"),
            ],
        }],
    );
    let (status, body) = post_outbound(&deployment, no_email).await;
    assert_eq!(status, 200, "{body}\n{}", context());

    let failed = eventually("the failed log entry", context, || async {
        log_entries(&deployment, &format!("user={NO_EMAIL}"))
            .await
            .ok()
            .filter(|entries| !entries.is_empty())
    })
    .await;
    assert_eq!(
        failed.iter().map(outcome).collect::<Vec<_>>(),
        [("create", "failed")],
        "not retried: {failed:?}"
    );
    assert_eq!(failed[0]["error"]["code"], "missing_required_attribute");

    let queue = SqsQueue::new(
        userprov_aws::aws_sdk_sqs::Client::new(&sdk),
        deployment.queue_url.clone(),
        Some(deployment.dlq_url.clone()),
    );
    let dead = eventually("the job in the dead-letter queue", context, || async {
        let dead = queue.dead_letters(10, Duration::from_secs(1)).await.ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].message.body.contains(NO_EMAIL),
        "{}",
        dead[0].message.body
    );
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("missing_required_attribute"),
        "the {REASON_ATTRIBUTE} attribute says why: {:?}",
        dead[0].reason
    );
    assert!(
        scim_users(&base_url, &scim.token, Some("no.email@acme.example"))
            .await
            .is_empty()
    );
    eprintln!(
        "the bad job failed and was dead-lettered in {:?}",
        bad_started.elapsed()
    );

    // 4. The fault-injection driver against a second stack.
    let chaos_started = Instant::now();
    chaos_on_the_deployed_stack(&aws, &build_dir).await;
    eprintln!(
        "the fault-injection run on the deployed stack took {:?}",
        chaos_started.elapsed()
    );
}

/// The chaos driver's view of a deployed stack: the SQS queues' counters, the log API's pages,
/// the dead-letter queue's bodies.
struct DeployedChaos {
    deployment: Deployment,
    sqs: userprov_aws::aws_sdk_sqs::Client,
    queue: SqsQueue,
}

impl DeployedSystem for DeployedChaos {
    async fn busy(&self) -> Option<u64> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.deployment.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .ok()?;
        let mut busy = 0;
        for name in [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ] {
            busy += attributes.attributes()?.get(&name)?.parse::<u64>().ok()?;
        }
        Some(busy)
    }

    async fn log_entries(&self) -> Vec<Value> {
        chaos::all_log_entries(
            &reqwest::Client::new(),
            &self.deployment.log_api_base_url,
            Some(FAKE_SIGV4),
        )
        .await
    }

    async fn dead_lettered(&self) -> Vec<String> {
        // Received messages stay hidden for the DLQ's visibility timeout, so each is read once.
        let mut usernames = Vec::new();
        loop {
            let letters = self
                .queue
                .dead_letters(10, Duration::from_secs(1))
                .await
                .unwrap();
            if letters.is_empty() {
                return usernames;
            }
            usernames.extend(letters.iter().map(|letter| {
                chaos::dead_letter_username(&letter.message.message_id, &letter.message.body)
            }));
        }
    }
}

/// The fault-injection driver, shortened, against its own stack in the same ministack: the
/// target behind the fault proxy, the worker retrying through SQS visibility and its DLQ.
async fn chaos_on_the_deployed_stack(aws: &Ministack, build_dir: &std::path::Path) {
    let settings = ChaosSettings {
        users: 30,
        failing_users: 2,
        fault_rate: 0.2,
        kills: 0,
        workers: 0,
        senders: 4,
        seed: 11,
        drain_timeout: Duration::from_secs(600),
    };
    let target = FaultyTarget::start(&settings).await;
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("userprov.toml");
    std::fs::write(
        &config_path,
        chaos::config(&target.base_url(), "userprov/chaos-scim"),
    )
    .unwrap();
    // Retries come from SQS: enough receives for a 20% fault rate, a short visibility.
    let deployment = aws.deploy_stack(
        build_dir,
        &config_path,
        "userprov-chaos",
        "MaxReceiveCount=30 VisibilityTimeout=5",
    );
    let sdk = sdk_config(aws).await;
    userprov_aws::aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("userprov/chaos-scim")
        .secret_string(format!(
            r#"{{"type":"bearer","token":"{}"}}"#,
            target.scim.token
        ))
        .send()
        .await
        .unwrap();
    let sqs = userprov_aws::aws_sdk_sqs::Client::new(&sdk);
    let system = DeployedChaos {
        queue: SqsQueue::new(
            sqs.clone(),
            deployment.queue_url.clone(),
            Some(deployment.dlq_url.clone()),
        ),
        sqs,
        deployment,
    };
    let report = chaos::run_deployed(
        settings,
        &system.deployment.webhook_url.clone(),
        &target,
        &system,
    )
    .await;
    eprintln!("{report}");
    let context = || format!("{report}\n--- ministack log ---\n{}", tail(&aws.log(), 60));
    assert!(report.quiescent, "the queue never emptied\n{}", context());
    assert!(report.differing.is_empty(), "{}", context());
    assert!(report.duplicate_accounts.is_empty(), "{}", context());
    assert!(
        report.events_without_terminal_entry.is_empty(),
        "{}",
        context()
    );
    assert!(
        report.dead_letters_are_the_designed_failures(),
        "{}",
        context()
    );
    assert!(report.faults.total() > 0, "no fault was injected: {report}");
}
