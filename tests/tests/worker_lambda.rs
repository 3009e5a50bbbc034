//! The worker Lambda's handler on a real SQS FIFO batch (moto), with links and log in DynamoDB
//! (moto), credentials in Secrets Manager (moto) and scim2-server as the target.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use userprov_aws::aws_sdk_sqs::types::MessageSystemAttributeName;
use userprov_aws::{DynamoLinkStore, DynamoLogStore, SecretsManagerStore, SqsQueue, schema};
use userprov_core::config::Config;
use userprov_core::connector::registry::build_connectors;
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::log::{LogQuery, LogStatus, Operation};
use userprov_core::ports::{JobQueue, LogStore, SystemClock};
use userprov_core::source::{EventSource, SourceEvent, SourceUser};
use userprov_core::worker::{RetryPolicy, Worker};
use userprov_tests::aws_fixtures::{fifo_queue_pair, unique};
use userprov_tests::fault_proxy::FaultProxy;
use userprov_tests::peers::moto::Moto;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::config_for;
use userprov_worker::Handler;

fn job(event_id: &str, user_id: &str, fields: &[(&str, &str)]) -> Job {
    let mut user = SourceUser::new(SalesforceId::parse(user_id).unwrap());
    for (name, value) in fields {
        user.fields
            .insert((*name).to_owned(), serde_json::json!(value));
    }
    let event = SourceEvent {
        event_id: event_id.to_owned(),
        source: EventSource::OutboundMessage,
        user,
        event_time: None,
    };
    Job::new(
        "scim",
        &event,
        "corr-worker-lambda",
        time::OffsetDateTime::now_utc(),
    )
}

/// Receives at least `count` messages from the queue and shapes them as the Lambda event source does.
async fn lambda_batch(
    client: &userprov_aws::aws_sdk_sqs::Client,
    queue_url: &str,
    count: usize,
) -> SqsEvent {
    let mut records = Vec::new();
    for _ in 0..20 {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in output.messages() {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id().map(str::to_owned);
            record.receipt_handle = message.receipt_handle().map(str::to_owned);
            record.body = message.body().map(str::to_owned);
            for (name, value) in message.attributes().into_iter().flatten() {
                record
                    .attributes
                    .insert(name.as_str().to_owned(), value.clone());
            }
            records.push(record);
        }
        if records.len() >= count {
            break;
        }
    }
    assert!(
        records.len() >= count,
        "expected at least {count} messages, received {}",
        records.len()
    );
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// What the event source mapping does after the function returns: it deletes every message of
/// the batch that was not reported as failed.
async fn delete_succeeded(
    client: &userprov_aws::aws_sdk_sqs::Client,
    queue_url: &str,
    event: &SqsEvent,
    response: &aws_lambda_events::event::sqs::SqsBatchResponse,
) {
    let failed: BTreeSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for record in &event.records {
        if !failed.contains(record.message_id.as_deref().unwrap_or_default()) {
            // A message the handler moved to the DLQ is already gone: ignore that answer.
            let _ = client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
        }
    }
}

#[tokio::test]
async fn a_batch_reports_retries_and_their_group_and_dead_letters_permanent_failures() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sqs = userprov_aws::aws_sdk_sqs::Client::new(&sdk);
    let dynamo = userprov_aws::aws_sdk_dynamodb::Client::new(&sdk);
    let secrets_client = userprov_aws::aws_sdk_secretsmanager::Client::new(&sdk);
    let queue = fifo_queue_pair(&sqs, None).await;
    let (links_table, log_table) = (unique("links"), unique("log"));
    schema::create_tables(&dynamo, &links_table, &log_table)
        .await
        .unwrap();

    let scim = Scim2Server::shared();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", scim.port())).await;
    let secret_name = unique("userprov/scim");
    secrets_client
        .create_secret()
        .name(&secret_name)
        .secret_string(scim.token.clone())
        .send()
        .await
        .unwrap();
    let config_text = config_for(&format!("{}/worker-lambda/v2", proxy.url()), "", "").replace(
        "secret = \"userprov/scim\"",
        &format!("secret = \"{secret_name}\""),
    );
    let config = Arc::new(Config::parse(&config_text, "test").unwrap());
    let secrets = Arc::new(SecretsManagerStore::new(
        secrets_client,
        Duration::from_secs(60),
    ));
    let log = Arc::new(DynamoLogStore::new(
        dynamo.clone(),
        log_table,
        Duration::from_secs(86_400),
    ));
    let worker = Worker::new(
        config.clone(),
        build_connectors(&config, secrets).unwrap(),
        Arc::new(DynamoLinkStore::new(dynamo, links_table)),
        log.clone(),
        Arc::new(SystemClock),
        RetryPolicy::from_config(&config),
    );
    let handler = Handler {
        worker: Arc::new(worker),
        queue: SqsQueue::new(
            sqs.clone(),
            queue.queue_url().to_owned(),
            queue.dlq_url().map(str::to_owned),
        ),
    };

    const JAMES: &str = "0058a00000LmN3qAAF";
    let james = [
        ("Username", "james.okafor@acme.example"),
        ("LastName", "Okafor"),
        ("Email", "james.okafor@acme.example"),
    ];
    let join = job(
        "04l8a00000Dq8AaAAJ",
        JAMES,
        &[
            james.as_slice(),
            &[
                ("IsActive", "true"),
                ("SystemModstamp", "2025-03-14T16:00:00Z"),
            ],
        ]
        .concat(),
    );
    let leave = job(
        "04l8a00000Dq8AbAAJ",
        JAMES,
        &[
            james.as_slice(),
            &[
                ("IsActive", "false"),
                ("SystemModstamp", "2025-03-15T16:00:00Z"),
            ],
        ]
        .concat(),
    );
    let no_email = job(
        "04l8a00000Dq8AcAAJ",
        "0058a00000LmN4rAAF",
        &[
            ("Username", "priya@acme.example"),
            ("LastName", "Nair"),
            ("IsActive", "true"),
        ],
    );
    queue
        .enqueue(&[join.clone(), leave.clone(), no_email.clone()])
        .await
        .unwrap();
    proxy.fail_next("POST", 503, r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"503","detail":"busy"}"#);

    let first = lambda_batch(&sqs, queue.queue_url(), 3).await;
    let ids_of = |event: &SqsEvent, wanted: &[&Job]| -> BTreeSet<String> {
        event
            .records
            .iter()
            .filter(|r| {
                wanted
                    .iter()
                    .any(|j| r.body.as_deref() == Some(j.to_body().unwrap().as_str()))
            })
            .filter_map(|r| r.message_id.clone())
            .collect()
    };
    let response = handler.handle(first.clone()).await;
    delete_succeeded(&sqs, queue.queue_url(), &first, &response).await;
    let reported: BTreeSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        reported,
        ids_of(&first, &[&join, &leave]),
        "the 503 and the message queued behind it in its group"
    );

    let dead = queue
        .dead_letters(10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.body, no_email.to_body().unwrap());
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("missing_required_attribute")
    );

    // The retried message comes back after its backoff (a visibility change), then the rest of
    // its group: batch after batch, as the event source mapping delivers them.
    let mut handled = 0;
    for _ in 0..10 {
        let batch = lambda_batch(&sqs, queue.queue_url(), 1).await;
        handled += batch.records.len();
        let response = handler.handle(batch.clone()).await;
        delete_succeeded(&sqs, queue.queue_url(), &batch, &response).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
        if handled >= 2 {
            break;
        }
    }
    assert_eq!(handled, 2);

    let mut entries = log
        .query(&LogQuery {
            limit: 50,
            ..LogQuery::default()
        })
        .await
        .unwrap()
        .entries;
    entries.reverse();
    let outcomes: Vec<(Operation, LogStatus, u32)> = entries
        .iter()
        .map(|e| (e.operation, e.status, e.attempt))
        .collect();
    let james: Vec<_> = entries.iter().filter(|e| e.user_id == JAMES).collect();
    assert_eq!(
        (james[0].operation, james[0].status, james[0].http_status),
        (Operation::Create, LogStatus::Retrying, Some(503)),
        "all outcomes: {outcomes:?}"
    );
    // moto does not keep a FIFO group's order after a visibility change (SQS does), so the two
    // retried jobs may come back in either order. Either way the result must converge on the
    // newest state, James has left: no active account, and both jobs end in a terminal entry.
    assert_eq!(james.len(), 3, "all outcomes: {outcomes:?}");
    assert!(
        james[1..]
            .iter()
            .all(|e| e.attempt == 2 && matches!(e.status, LogStatus::Success | LogStatus::Skipped)),
        "all outcomes: {outcomes:?}"
    );
    let accounts = userprov_tests::pipeline::scim_users(
        &scim.tenant_url("worker-lambda"),
        &scim.token,
        Some("james.okafor@acme.example"),
    )
    .await;
    assert!(
        accounts.iter().all(|a| a["active"] == false),
        "James has left: {accounts:?}"
    );
    assert!(entries.iter().any(|e| {
        e.status == LogStatus::Failed
            && e.error
                .as_ref()
                .is_some_and(|x| x.code == "missing_required_attribute")
    }));
}
