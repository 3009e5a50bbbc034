//! `userprov logs`, `accounts` and `import` against a deployed stack, run as processes against
//! moto: the CLI finds the queue and tables from the CloudFormation stack's outputs (a stack
//! created in moto with the template's output names), signs with a named profile, and falls back
//! to explicit resource names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use userprov_aws::schema;
use userprov_aws::{DynamoLinkStore, DynamoLogStore, SqsQueue};
use userprov_cli::aws::aws_sdk_cloudformation;
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::link::{AccountLink, ManagedBy};
use userprov_core::log::{LogEntry, LogStatus, Operation};
use userprov_core::ports::{LinkStore, LogStore, QueueConsumer};
use userprov_core::source::EventSource;
use userprov_tests::aws_fixtures::{fifo_queue_pair, unique};
use userprov_tests::chaos::userprov_binary;
use userprov_tests::peers::moto::Moto;

const PROFILE: &str = "userprov-moto";

fn user_id(n: u32) -> SalesforceId {
    SalesforceId::parse(&format!("0058a00000Aws{n:02}")).unwrap()
}

/// A deployment in moto: the queue pair, the tables, and a stack whose outputs name them.
struct Deployment {
    work: tempfile::TempDir,
    stack: String,
    queue: SqsQueue,
    links: DynamoLinkStore,
    log: DynamoLogStore,
    log_table: String,
}

impl Deployment {
    async fn new() -> Self {
        let moto = Moto::shared();
        let sdk = moto.sdk_config().await;
        let queue = fifo_queue_pair(&userprov_aws::aws_sdk_sqs::Client::new(&sdk), None).await;
        let dynamodb = userprov_aws::aws_sdk_dynamodb::Client::new(&sdk);
        let links_table = unique("links");
        let log_table = unique("log");
        schema::create_tables(&dynamodb, &links_table, &log_table)
            .await
            .unwrap();
        let stack = unique("userprov");
        let template = json!({
            "Parameters": {"LogRetentionDays": {"Type": "Number", "Default": "30"}},
            // moto needs one resource; the outputs are what the CLI reads.
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("marker")}}},
            "Outputs": {
                "QueueUrl": {"Value": queue.queue_url()},
                "DlqUrl": {"Value": queue.dlq_url().unwrap()},
                "LinksTableName": {"Value": links_table},
                "LogTableName": {"Value": log_table},
            }
        });
        aws_sdk_cloudformation::Client::new(&sdk)
            .create_stack()
            .stack_name(&stack)
            .template_body(template.to_string())
            .send()
            .await
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        // A named profile, as an operator has in ~/.aws: region and keys (moto takes any).
        std::fs::write(
            work.path().join("aws-config"),
            format!("[profile {PROFILE}]\nregion = us-east-1\n"),
        )
        .unwrap();
        std::fs::write(
            work.path().join("aws-credentials"),
            format!("[{PROFILE}]\naws_access_key_id = testing\naws_secret_access_key = testing\n"),
        )
        .unwrap();
        Self {
            work,
            stack,
            queue,
            links: DynamoLinkStore::new(dynamodb.clone(), links_table),
            log: DynamoLogStore::new(dynamodb, log_table.clone(), Duration::from_secs(86_400)),
            log_table,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Runs `userprov ARGS` with only the profile files for credentials, pointed at moto.
    fn userprov(&self, args: &[&str]) -> Output {
        let output = Command::new(userprov_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.work.path())
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("aws-credentials"))
            .env("AWS_ENDPOINT_URL", Moto::shared().endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "$ userprov {}\n-- exit {:?}\n-- stdout\n{}-- stderr\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn entry(minutes_ago: i64, app: &str, user: u32, status: LogStatus) -> LogEntry {
    let now = OffsetDateTime::now_utc();
    let time = (now - time::Duration::minutes(minutes_ago))
        .replace_nanosecond(0)
        .unwrap();
    let millis = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap();
    LogEntry {
        id: ulid::Ulid::from_parts(millis, ulid::Ulid::new().random()).to_string(),
        time,
        app: app.to_owned(),
        user_id: user_id(user).to_string(),
        username: Some(format!("u{user}@acme.example")),
        event_id: format!("evt-{app}-{user}-{minutes_ago}"),
        source: EventSource::OutboundMessage,
        correlation_id: "corr".to_owned(),
        operation: Operation::Create,
        status,
        attempt: 1,
        http_status: Some(201),
        target_id: Some(format!("t-{user}")),
        reason: None,
        error: None,
        request: None,
        response: None,
        groups: None,
        changes: Vec::new(),
        duration_ms: 12,
    }
}

fn link(app: &str, user: u32) -> AccountLink {
    AccountLink {
        app: app.to_owned(),
        user_id: user_id(user),
        username: Some(format!("u{user}@acme.example")),
        target_id: Some(format!("t-{user}")),
        active: true,
        last_source_time: None,
        last_event_id: None,
        last_payload_hash: None,
        last_groups: Vec::new(),
        snapshot: None,
        managed_by: Some(ManagedBy::Created),
        version: 1,
        updated_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
    }
}

#[tokio::test]
async fn logs_and_accounts_read_the_tables_a_stacks_outputs_name() {
    let deployment = Deployment::new().await;
    let entries = [
        entry(30, "slack", 1, LogStatus::Success),
        entry(20, "github", 2, LogStatus::Failed),
        entry(10, "slack", 3, LogStatus::Success),
    ];
    for e in &entries {
        deployment.log.append(e).await.unwrap();
    }
    for (app, user) in [("slack", 1), ("slack", 3), ("github", 2)] {
        deployment
            .links
            .put_link(&link(app, user), None)
            .await
            .unwrap();
    }
    let stack = deployment.stack.clone();

    let logs = deployment.userprov(&["logs", "--stack", &stack, "--profile", PROFILE, "--json"]);
    assert_eq!(logs.status.code(), Some(0));
    let printed: Vec<Value> = stdout(&logs)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = printed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, expected, "every entry, oldest first");

    let failed = deployment.userprov(&[
        "logs",
        "--stack",
        &stack,
        "--profile",
        PROFILE,
        "--status",
        "failed",
        "--json",
    ]);
    let failed: Vec<Value> = stdout(&failed)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["app"], "github");

    let accounts = deployment.userprov(&[
        "accounts",
        "--stack",
        &stack,
        "--profile",
        PROFILE,
        "--app",
        "slack",
        "--json",
    ]);
    assert_eq!(accounts.status.code(), Some(0));
    let links: Vec<Value> = serde_json::from_str(&stdout(&accounts)).unwrap();
    let users: Vec<&str> = links
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, [user_id(1).as_str(), user_id(3).as_str()]);

    // Without a stack, the table can be named directly (a region is then needed).
    let direct = deployment.userprov(&[
        "logs",
        "--log-table",
        &deployment.log_table,
        "--region",
        "us-east-1",
        "--profile",
        PROFILE,
        "--app",
        "slack",
        "--json",
    ]);
    assert_eq!(direct.status.code(), Some(0), "{}", stderr(&direct));
    assert_eq!(stdout(&direct).lines().count(), 2);

    let table = deployment.userprov(&["accounts", "--stack", &stack, "--profile", PROFILE]);
    assert!(
        stdout(&table).contains("u2@acme.example"),
        "{}",
        stdout(&table)
    );
}

#[tokio::test]
async fn import_queues_one_job_per_row_into_the_stacks_queue_once() {
    let deployment = Deployment::new().await;
    let config = deployment.path("userprov.toml");
    std::fs::write(
        &config,
        r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]

[[apps]]
name = "wiki"
base_url = "https://wiki.example.invalid/scim/v2"
secret = "userprov/wiki"

[apps.mapping]
userName = { from = "Username", required = true }
"name.familyName" = { from = "LastName", required = true }
"#,
    )
    .unwrap();
    let csv = deployment.path("users.csv");
    let mut text = "Id,Username,LastName,IsActive\n".to_owned();
    for n in 1..=3 {
        text.push_str(&format!("{},u{n}@acme.example,L{n},true\n", user_id(n)));
    }
    std::fs::write(&csv, text).unwrap();
    // One user already has an account: the dry run plans it from the links table.
    let mut linked = link("wiki", 2);
    linked.snapshot = None;
    deployment.links.put_link(&linked, None).await.unwrap();

    let data = deployment.path("data");
    let common = [
        "--app",
        "wiki",
        csv.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--stack",
        deployment.stack.as_str(),
        "--profile",
        PROFILE,
    ];
    let dry = deployment.userprov(&[&["import"][..], &common[..], &["--dry-run"][..]].concat());
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let plan = stdout(&dry);
    assert!(
        plan.lines()
            .any(|l| l.trim_start().starts_with("would create or adopt")
                && l.trim_end().ends_with(" 2")),
        "{plan}"
    );

    let queued =
        deployment.userprov(&[&["import"][..], &common[..], &["--rate", "0"][..]].concat());
    assert_eq!(queued.status.code(), Some(0), "{}", stderr(&queued));
    assert!(
        stdout(&queued).contains("queued 3 job(s)"),
        "{}",
        stdout(&queued)
    );
    assert!(
        stdout(&queued).contains(deployment.queue.queue_url()),
        "{}",
        stdout(&queued)
    );

    let mut jobs = Vec::new();
    for _ in 0..10 {
        for message in deployment
            .queue
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
        {
            jobs.push(Job::from_body(&message.body).unwrap());
        }
        if jobs.len() >= 3 {
            break;
        }
    }
    let mut users: Vec<String> = jobs.iter().map(|j| j.user.id.to_string()).collect();
    users.sort();
    assert_eq!(users, [1, 2, 3].map(|n| user_id(n).to_string()));
    assert!(
        jobs.iter()
            .all(|j| j.app == "wiki" && j.source == EventSource::Import)
    );

    let again = deployment.userprov(&[&["import"][..], &common[..]].concat());
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stdout(&again).contains("already imported"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test]
async fn a_stack_that_does_not_exist_or_lacks_an_output_is_bad_input() {
    let deployment = Deployment::new().await;
    let missing = deployment.userprov(&["logs", "--stack", "no-such-stack", "--profile", PROFILE]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no stack named \"no-such-stack\""),
        "{}",
        stderr(&missing)
    );

    let no_region = deployment.userprov(&["accounts", "--links-table", "t"]);
    assert_eq!(no_region.status.code(), Some(2));
    assert!(
        stderr(&no_region).contains("--region"),
        "{}",
        stderr(&no_region)
    );

    // Naming one table does not name the other.
    let no_log = deployment.userprov(&["logs", "--links-table", "t", "--region", "us-east-1"]);
    assert_eq!(no_log.status.code(), Some(2));
    assert!(
        stderr(&no_log).contains("--log-table"),
        "{}",
        stderr(&no_log)
    );
}
