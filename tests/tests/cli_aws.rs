//! `userprov logs`, `accounts`, `import`, `holds` and `redrive` against a deployed stack, run as
//! processes against moto: the CLI finds the queues and tables from the CloudFormation stack's
//! outputs (a stack created in moto with the template's output names), signs with a named
//! profile, and falls back to explicit resource names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use userprov_aws::schema;
use userprov_aws::{DynamoHoldStore, DynamoLinkStore, DynamoLogStore, SqsQueue};
use userprov_cli::aws::aws_sdk_cloudformation;
use userprov_core::config::Config;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::LocalSecretStore;
use userprov_core::guard::{Admission, Hold};
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::link::{AccountLink, ManagedBy};
use userprov_core::log::{LogEntry, LogQuery, LogStatus, Operation};
use userprov_core::ports::{
    Disposition, HoldStore, JobQueue, LinkStore, LogStore, QueueConsumer, ReceivedMessage,
    SystemClock,
};
use userprov_core::source::{EventSource, SourceEvent, SourceUser};
use userprov_core::worker::{RetryPolicy, Worker};
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
    holds: DynamoHoldStore,
    holds_table: String,
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
        let holds_table = unique("holds");
        schema::create_holds_table(&dynamodb, &holds_table)
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
                "HoldsTableName": {"Value": holds_table},
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
            log: DynamoLogStore::new(
                dynamodb.clone(),
                log_table.clone(),
                Duration::from_secs(86_400),
            ),
            log_table,
            holds: DynamoHoldStore::new(dynamodb, holds_table.clone()),
            holds_table,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `userprov ARGS` with only the profile files for credentials, pointed at moto.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(userprov_binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.work.path())
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("aws-credentials"))
            .env("AWS_ENDPOINT_URL", Moto::shared().endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        command
    }

    /// Runs [`command`](Self::command) to the end, printing what it said.
    fn userprov(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
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

/// On AWS the log API wants SigV4, which a browser cannot send: `userprov dashboard --stack`
/// serves the same dashboard and API on loopback, over the stack's tables.
#[tokio::test]
async fn dashboard_serves_a_stacks_log_on_loopback_for_the_browser() {
    use std::io::{BufRead, BufReader};

    let deployment = Deployment::new().await;
    let failed = entry(20, "github", 2, LogStatus::Failed);
    deployment
        .log
        .append(&entry(30, "slack", 1, LogStatus::Success))
        .await
        .unwrap();
    deployment.log.append(&failed).await.unwrap();
    deployment
        .links
        .put_link(&link("slack", 1), None)
        .await
        .unwrap();

    let mut dashboard = deployment
        .command(&[
            "dashboard",
            "--stack",
            &deployment.stack,
            "--profile",
            PROFILE,
            "--port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    let mut printed = BufReader::new(dashboard.stdout.take().unwrap());
    printed.read_line(&mut first_line).unwrap();
    let url = first_line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no loopback URL printed: {first_line:?}"))
        .to_owned();

    let http = reqwest::Client::new();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let failures: Value = http
        .get(format!("{url}logs?status=failed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = failures["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [failed.id.as_str()], "{failures}");
    let detail: Value = http
        .get(format!("{url}logs/{}", failed.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["app"], "github");
    let accounts: Value = http
        .get(format!("{url}accounts?app=slack"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        accounts["accounts"][0]["user_id"].as_str(),
        Some(user_id(1).as_str()),
        "{accounts}"
    );
    dashboard.kill().unwrap();
    let _ = dashboard.wait();
    drop(printed);

    // Without a stack or tables there is nothing to serve: bad input, with what to do.
    let local = deployment.userprov(&["dashboard", "--port", "0"]);
    assert_eq!(local.status.code(), Some(2));
    assert!(stderr(&local).contains("--stack"), "{}", stderr(&local));
}

// ---------------------------------------------------------------------------------------------
// `holds` and `redrive` on a stack

/// A leaver's deactivation, as the webhook queues it: the change happened `minutes_ago`.
fn deactivation(app: &str, user: u32, minutes_ago: i64) -> Job {
    let mut source_user = SourceUser::new(user_id(user));
    source_user
        .fields
        .insert("Username".into(), json!(format!("u{user}@acme.example")));
    source_user
        .fields
        .insert("LastName".into(), json!(format!("L{user}")));
    source_user.fields.insert("IsActive".into(), json!(false));
    let now = OffsetDateTime::now_utc();
    let event = SourceEvent {
        event_id: format!("evt-leave-{app}-{user}"),
        source: EventSource::OutboundMessage,
        user: source_user,
        event_time: Some(now - time::Duration::minutes(minutes_ago)),
    };
    Job::new(app, &event, "corr", now)
}

impl Deployment {
    /// Holds `job` the way the worker's guard does (here with a limit of 0).
    async fn hold(&self, job: &Job, seconds_ago: i64) -> Hold {
        let hold = Hold {
            id: ulid::Ulid::new().to_string(),
            app: job.app.clone(),
            user_id: job.user.id.to_string(),
            username: job.user.username().map(str::to_owned),
            job_id: job.job_id.clone(),
            event_id: job.event_id.clone(),
            job: job.to_body().unwrap(),
            reason: "held by the deactivation guard: more than 0 deactivations".into(),
            held_at: (OffsetDateTime::now_utc() - time::Duration::seconds(seconds_ago))
                .replace_nanosecond(0)
                .unwrap(),
        };
        let admission = self
            .holds
            .admit_deactivation(
                OffsetDateTime::now_utc(),
                Duration::from_secs(3600),
                0,
                &hold,
            )
            .await
            .unwrap();
        assert_eq!(
            admission,
            Admission::Held {
                hold_id: hold.id.clone()
            }
        );
        hold
    }

    /// The job queue's messages (deleted as read).
    async fn drain(&self) -> Vec<ReceivedMessage> {
        let mut received = Vec::new();
        loop {
            let batch = self
                .queue
                .receive(10, Duration::from_secs(1))
                .await
                .unwrap();
            if batch.is_empty() {
                return received;
            }
            for message in batch {
                self.queue
                    .settle(&message, &Disposition::Done)
                    .await
                    .unwrap();
                received.push(message);
            }
        }
    }
}

fn json_stdout(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("{e}: not JSON:\n{}", stdout(output)))
}

#[tokio::test]
async fn holds_are_listed_released_to_the_queue_and_discarded_into_the_log_of_a_stack() {
    let deployment = Deployment::new().await;
    let stack = deployment.stack.clone();
    let on_stack = ["--stack", stack.as_str(), "--profile", PROFILE];
    let jobs = [
        deactivation("slack", 1, 5),
        deactivation("slack", 2, 5),
        deactivation("zoom", 3, 5),
    ];
    let mut held = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        held.push(deployment.hold(job, 30 - i64::try_from(n).unwrap()).await);
    }

    let list = deployment.userprov(&[&["holds", "list", "--json"][..], &on_stack].concat());
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let listed: Vec<Hold> = serde_json::from_value(json_stdout(&list)).unwrap();
    assert_eq!(listed, held, "every hold, oldest first");
    let text = deployment.userprov(&[&["holds", "list", "--app", "slack"][..], &on_stack].concat());
    assert_eq!(text.status.code(), Some(0));
    assert!(
        stdout(&text).contains("u1@acme.example")
            && stdout(&text).contains("u2@acme.example")
            && !stdout(&text).contains("u3@acme.example"),
        "{}",
        stdout(&text)
    );

    // Release: the job goes back to the stack's queue, in its user's group, under a fresh
    // deduplication id; then the hold is gone, and the job passes the guard once.
    let release = deployment.userprov(
        &[
            &["holds", "release", held[0].id.as_str(), "--json"][..],
            &on_stack,
        ]
        .concat(),
    );
    assert_eq!(release.status.code(), Some(0), "{}", stderr(&release));
    let report = json_stdout(&release);
    assert_eq!(report["action"], "release");
    assert_eq!(report["settled"][0]["id"], held[0].id.as_str());
    assert_eq!(report["missing"], json!([]));
    let queued = deployment.drain().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body, held[0].job);
    assert_eq!(queued[0].group_id, jobs[0].group_id());
    assert_ne!(queued[0].dedup_id, jobs[0].dedup_id());
    let admission = deployment
        .holds
        .admit_deactivation(
            OffsetDateTime::now_utc(),
            Duration::from_secs(3600),
            0,
            &Hold {
                id: ulid::Ulid::new().to_string(),
                ..held[0].clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(admission, Admission::Admitted, "released: it passes");

    // Discard: the hold is gone and the log says so; nothing is queued.
    let discard =
        deployment.userprov(&[&["holds", "discard", held[1].id.as_str()][..], &on_stack].concat());
    assert_eq!(discard.status.code(), Some(0), "{}", stderr(&discard));
    assert!(
        stdout(&discard).starts_with("discarded "),
        "{}",
        stdout(&discard)
    );
    assert!(deployment.drain().await.is_empty());
    let logged = deployment
        .log
        .query(&LogQuery {
            user: Some(user_id(2).to_string()),
            ..LogQuery::default()
        })
        .await
        .unwrap()
        .entries;
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (logged[0].operation, logged[0].status),
        (Operation::Deactivate, LogStatus::Skipped)
    );
    assert!(
        logged[0]
            .reason
            .as_deref()
            .unwrap()
            .contains(&format!("hold {} discarded", held[1].id)),
        "{:?}",
        logged[0].reason
    );

    // A hold id that does not exist: 1, with what was done.
    let missing = deployment.userprov(
        &[
            &["holds", "release", held[1].id.as_str(), "--json"][..],
            &on_stack,
        ]
        .concat(),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(json_stdout(&missing)["missing"], json!([held[1].id]));
    assert!(
        stderr(&missing).contains("no hold with id"),
        "{}",
        stderr(&missing)
    );

    // Without a stack: the tables and queue named one by one.
    let by_name = [
        "--holds-table",
        deployment.holds_table.as_str(),
        "--queue-url",
        deployment.queue.queue_url(),
        "--region",
        "us-east-1",
        "--profile",
        PROFILE,
    ];
    let listed = deployment.userprov(&[&["holds", "list", "--json"][..], &by_name].concat());
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert_eq!(json_stdout(&listed).as_array().unwrap().len(), 1);
    let no_log =
        deployment.userprov(&[&["holds", "discard", held[2].id.as_str()][..], &by_name].concat());
    assert_eq!(
        no_log.status.code(),
        Some(2),
        "a discard is logged: the log table is needed"
    );
    assert!(
        stderr(&no_log).contains("--log-table"),
        "{}",
        stderr(&no_log)
    );
    let released = deployment.userprov(
        &[
            &["holds", "release", "--all", "--app", "zoom"][..],
            &by_name,
        ]
        .concat(),
    );
    assert_eq!(released.status.code(), Some(0), "{}", stderr(&released));
    assert!(
        stdout(&released).contains("u3@acme.example"),
        "{}",
        stdout(&released)
    );
    assert_eq!(deployment.drain().await.len(), 1);
    assert!(deployment.holds.list_holds(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_released_hold_of_a_user_who_came_back_meanwhile_is_re_planned_by_the_worker_on_aws() {
    let deployment = Deployment::new().await;
    // The app's target is unreachable: applying the deactivation would fail, not skip.
    let config = Config::parse(
        r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]

[[apps]]
name = "wiki"
base_url = "http://127.0.0.1:9/scim/v2"
secret = "userprov/wiki"

[apps.mapping]
userName = { from = "Username", required = true }
"name.familyName" = { from = "LastName", required = true }

[apps.deactivation_guard]
max = 0
window_secs = 3600
"#,
        "test",
    )
    .unwrap();
    let leaver = deactivation("wiki", 7, 10);
    let hold = deployment.hold(&leaver, 60).await;
    // The user came back a minute ago, after the deactivation was held.
    let mut returned = link("wiki", 7);
    returned.last_source_time = Some(OffsetDateTime::now_utc() - time::Duration::minutes(1));
    deployment.links.put_link(&returned, None).await.unwrap();

    let release = deployment.userprov(&[
        "holds",
        "release",
        &hold.id,
        "--stack",
        &deployment.stack,
        "--profile",
        PROFILE,
    ]);
    assert_eq!(release.status.code(), Some(0), "{}", stderr(&release));
    let queued = deployment.drain().await;
    assert_eq!(queued.len(), 1);

    let secrets = tempfile::tempdir().unwrap();
    let config = Arc::new(config);
    let worker = Worker::new(
        config.clone(),
        build_connectors(
            &config,
            Arc::new(LocalSecretStore::new(secrets.path().to_path_buf())),
        )
        .unwrap(),
        Arc::new(deployment.links.clone()),
        Arc::new(deployment.log.clone()),
        Arc::new(SystemClock),
        RetryPolicy::from_config(&config),
    )
    .with_holds(Arc::new(deployment.holds.clone()));
    assert_eq!(worker.handle_message(&queued[0]).await, Disposition::Done);
    let entries = deployment
        .log
        .query(&LogQuery {
            user: Some(user_id(7).to_string()),
            ..LogQuery::default()
        })
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0].operation, entries[0].status),
        (Operation::Skip, LogStatus::Skipped),
        "{:?}",
        entries[0].reason
    );
    assert!(
        deployment
            .links
            .get_link("wiki", &user_id(7))
            .await
            .unwrap()
            .unwrap()
            .active,
        "the user who came back stays active"
    );
}

#[tokio::test]
async fn redrive_finds_the_queues_from_the_stack_and_prints_json() {
    let deployment = Deployment::new().await;
    let stack = deployment.stack.clone();
    let on_stack = ["--stack", stack.as_str(), "--profile", PROFILE];
    let jobs = [deactivation("slack", 4, 1), deactivation("zoom", 5, 1)];
    deployment.queue.enqueue(&jobs).await.unwrap();
    let mut received = Vec::new();
    while received.len() < 2 {
        received.extend(
            deployment
                .queue
                .receive(10, Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    for message in &received {
        deployment
            .queue
            .settle(
                message,
                &Disposition::DeadLetter {
                    reason: "http_503: the target is down".into(),
                },
            )
            .await
            .unwrap();
    }
    let sdk = Moto::shared().sdk_config().await;
    userprov_aws::aws_sdk_sqs::Client::new(&sdk)
        .send_message()
        .queue_url(deployment.queue.dlq_url().unwrap())
        .message_body("{\"version\": 0, \"legacy\": true}")
        .message_group_id("legacy.group")
        .message_deduplication_id(unique("legacy"))
        .send()
        .await
        .unwrap();

    let dry = deployment.userprov(&[&["redrive", "--dry-run", "--json"][..], &on_stack].concat());
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let listing = json_stdout(&dry);
    assert_eq!(listing["dry_run"], true);
    assert_eq!(listing["moved"], 0);
    let mut users: Vec<&str> = listing["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, [user_id(4).as_str(), user_id(5).as_str()]);
    assert_eq!(
        listing["messages"][0]["reason"],
        "http_503: the target is down"
    );
    assert_eq!(listing["unreadable"][0]["group_id"], "legacy.group");
    assert!(
        deployment.drain().await.is_empty(),
        "a dry run moves nothing"
    );

    let moved =
        deployment.userprov(&[&["redrive", "--app", "zoom", "--json"][..], &on_stack].concat());
    assert_eq!(moved.status.code(), Some(0), "{}", stderr(&moved));
    let result = json_stdout(&moved);
    assert_eq!(result["dry_run"], false);
    assert_eq!(result["moved"], 1);
    assert_eq!(result["messages"][0]["app"], "zoom");
    assert_eq!(result["errors"], json!([]));
    let back = deployment.drain().await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].group_id, jobs[1].group_id());

    // The queues named one by one still work, and text is the default.
    let by_url = deployment.userprov(&[
        "redrive",
        "--dry-run",
        "--queue-url",
        deployment.queue.queue_url(),
        "--dlq-url",
        deployment.queue.dlq_url().unwrap(),
        "--region",
        "us-east-1",
        "--profile",
        PROFILE,
    ]);
    assert_eq!(by_url.status.code(), Some(0), "{}", stderr(&by_url));
    assert!(
        stdout(&by_url).contains("dry run: 1 message(s) would be moved back"),
        "{}",
        stdout(&by_url)
    );

    let unknown =
        deployment.userprov(&["redrive", "--stack", "no-such-stack", "--profile", PROFILE]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no stack named"),
        "{}",
        stderr(&unknown)
    );
    let no_dlq = deployment.userprov(&[
        "redrive",
        "--queue-url",
        deployment.queue.queue_url(),
        "--region",
        "us-east-1",
        "--profile",
        PROFILE,
    ]);
    assert_eq!(no_dlq.status.code(), Some(2));
    assert!(stderr(&no_dlq).contains("--dlq-url"), "{}", stderr(&no_dlq));
}
