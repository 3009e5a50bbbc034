//! Benchmark drivers for the end-to-end figures of `infra/scripts/bench.sh` (not tests: they
//! print figures, and fail only when the pipeline itself fails).
//!
//!   perf_suite enqueue  [--quick] [--count N]   SQS calls per 100 notifications × apps, counted
//!                                               by a proxy in front of moto, against the minimum
//!                                               ceil(jobs / 10)
//!   perf_suite overhead [--quick] [--count N]   the embedded worker's time per job against one
//!                                               bare HTTP request to the same target plus one
//!                                               bare redb write
//!   perf_suite latency  [--quick] [--count N] [--rate R]
//!                                               webhook response → target write, p50 / p99, in
//!                                               embedded mode, against a bare round trip
//!
//! Each prints one JSON object on stdout. The SCIM target of `overhead` and `latency` is the
//! project's mock target (in memory, indexed), so the target is not the bottleneck, behind a
//! layer that notes the instant each create arrives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use userprov_cli::stack::{RunningStack, StackOptions};
use userprov_core::config::Config;
use userprov_core::connector::mock::MockTarget;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::{
    EmbeddedDb, EmbeddedQueue, EmbeddedStore, LocalSecretStore, QueueSettings,
};
use userprov_core::ids::SalesforceId;
use userprov_core::ingest::Ingest;
use userprov_core::ports::{Clock, QueueConsumer, SecretStore, SystemClock};
use userprov_core::worker::{RetryPolicy, Worker};
use userprov_tests::peers::moto::Moto;
use userprov_tests::pipeline::{Notified, ORG_ID, config_for, outbound_message};

const TARGET_TOKEN: &str = "perf-suite-target-token";

const USAGE: &str =
    "usage: perf_suite enqueue|overhead|latency [--quick] [--count N] [--rate PER_SECOND]
  --count  messages of 100 notifications (enqueue), jobs (overhead), events (latency)
  --rate   events offered per second (latency; default 50, or 20 with --quick)";

/// Sizes given on the command line instead of the defaults of a full or quick run.
#[derive(Default)]
struct Options {
    count: Option<usize>,
    rate: Option<u64>,
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut quick = false;
    let mut options = Options::default();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let mut number = || {
            rest.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| usage())
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--count" => options.count = Some(number() as usize),
            "--rate" => options.rate = Some(number()),
            _ => usage(),
        }
    }
    let result = match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(quick, &options).await,
        Some("overhead") => overhead(quick, &options).await,
        Some("latency") => latency(quick, &options).await,
        _ => usage(),
    };
    println!("{result}");
}

/// A valid 18-character Salesforce id: the key prefix and index make the first fifteen
/// characters, and `SalesforceId` computes the case suffix the webhook checks.
fn salesforce_id(prefix: &str, i: usize) -> String {
    let first15 = format!("{prefix}{i:010}");
    SalesforceId::parse(&first15)
        .unwrap_or_else(|e| panic!("{first15} is not a Salesforce id: {e}"))
        .as_str()
        .to_owned()
}

/// A user of the generated Outbound Messages (User key prefix 005), with a unique name.
fn user_id(i: usize) -> String {
    salesforce_id("0058b", i)
}

/// A notification id (key prefix 04l); `series` keeps the ids of different drivers apart.
fn notification_id(series: char, i: usize) -> String {
    salesforce_id(&format!("04l8{series}"), i)
}

fn user_name(run: &str, i: usize) -> String {
    format!("perf{i}.{run}@acme.example")
}

/// Outbound Messages of up to 100 notifications for users `range`.
fn messages(run: &str, range: std::ops::Range<usize>) -> Vec<String> {
    messages_of(run, range, 'b', "Perf")
}

/// Outbound Messages of up to 100 notifications for users `range`, with their own
/// notification ids (`series`) and the given last name: a change for users already there.
fn messages_of(
    run: &str,
    range: std::ops::Range<usize>,
    series: char,
    last_name: &str,
) -> Vec<String> {
    let ids: Vec<(String, String, String)> = range
        .map(|i| (notification_id(series, i), user_id(i), user_name(run, i)))
        .collect();
    ids.chunks(100)
        .map(|chunk| {
            let fields: Vec<[(&str, &str); 4]> = chunk
                .iter()
                .map(|(_, _, name)| {
                    [
                        ("Username", name.as_str()),
                        ("LastName", last_name),
                        ("Email", name.as_str()),
                        ("IsActive", "true"),
                    ]
                })
                .collect();
            let users: Vec<Notified<'_>> = chunk
                .iter()
                .zip(&fields)
                .map(|((notification, id, _), fields)| Notified {
                    notification_id: notification,
                    user_id: id,
                    fields,
                })
                .collect();
            outbound_message(ORG_ID, &users)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (2) Enqueue efficiency against moto.

#[derive(Clone)]
struct CountingProxy {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

async fn forward(State(proxy): State<CountingProxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let action = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned())
        .or_else(|| {
            String::from_utf8_lossy(&body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
        })
        .unwrap_or_else(|| "other".to_owned());
    *proxy.calls.lock().unwrap().entry(action).or_default() += 1;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut upstream = proxy
        .http
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

fn apps_config(apps: usize) -> String {
    let mut text = format!("[source]\norg_ids = [\"{ORG_ID}\"]\n\n[worker]\nmax_attempts = 4\n\n");
    for n in 1..=apps {
        text.push_str(&format!(
            r#"[[apps]]
name = "app{n}"
base_url = "http://127.0.0.1:9/scim/v2"
secret = "userprov/app{n}"
match_on = ["userName"]

[apps.mapping]
userName = {{ from = "Username", required = true }}
"name.familyName" = {{ from = "LastName", required = true }}
'emails[type eq "work"].value' = {{ from = "Email", required = true }}
externalId = "Id"

"#
        ));
    }
    text
}

async fn enqueue(quick: bool, options: &Options) -> Value {
    let started = Instant::now();
    let moto = Moto::start();
    eprintln!("moto started in {:.1} s", started.elapsed().as_secs_f64());
    let calls = Arc::new(Mutex::new(BTreeMap::new()));
    let proxy = CountingProxy {
        upstream: moto.endpoint(),
        http: reqwest::Client::new(),
        calls: calls.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sdk = {
        use userprov_aws::aws_config::{self, BehaviorVersion, Region};
        use userprov_aws::aws_sdk_sqs::config::Credentials;
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(userprov_aws::http_client())
            .endpoint_url(&proxy_url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    };
    let client = userprov_aws::aws_sdk_sqs::Client::new(&sdk);
    // moto takes about a second per SendMessageBatch call on a loaded 2-core machine, so the
    // quick run queues one message for one app, and the full run three for one and three apps.
    let messages_per_run = options.count.unwrap_or(if quick { 1 } else { 3 });
    let app_counts: &[usize] = if quick { &[1] } else { &[1, 3] };
    let mut runs = Vec::new();
    let config = |apps| Arc::new(Config::parse(&apps_config(apps), "perf_suite").unwrap());
    for &apps in app_counts {
        let run = ulid::Ulid::new().to_string().to_lowercase();
        let (mut jobs, mut by_adapter) = (0, 0);
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for (n, body) in messages(&run, 0..messages_per_run * 100).iter().enumerate() {
            // A fresh queue per message: moto's FIFO queues slow down as they fill (its
            // deduplication looks at every stored message), which is moto's cost, not ours.
            let sqs = Arc::new(userprov_tests::aws_fixtures::fifo_queue_pair(&client, None).await);
            let ingest = Ingest::new(config(apps), sqs.clone(), Arc::new(SystemClock));
            calls.lock().unwrap().clear();
            let report = ingest
                .outbound_message(body.as_bytes(), &format!("perf-{run}-{n}"))
                .await
                .unwrap_or_else(|e| panic!("the message was refused: {e}"));
            assert_eq!(report.jobs, 100 * apps, "every notification × app is a job");
            jobs += report.jobs;
            by_adapter += sqs.send_batch_calls();
            for (action, count) in calls.lock().unwrap().iter() {
                *seen.entry(action.clone()).or_default() += count;
            }
        }
        eprintln!(
            "{apps} app(s): {jobs} jobs queued at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let send_calls = seen.get("SendMessageBatch").copied().unwrap_or(0)
            + seen.get("SendMessage").copied().unwrap_or(0);
        let minimum = jobs.div_ceil(10) as u64;
        let other_calls: BTreeMap<_, _> = seen
            .iter()
            .filter(|(action, _)| !action.starts_with("SendMessage"))
            .collect();
        runs.push(json!({
            "apps": apps,
            "messages": messages_per_run,
            "jobs": jobs,
            "send_calls_at_proxy": send_calls,
            "send_calls_by_adapter": by_adapter,
            "minimum_calls": minimum,
            "calls_per_100_notifications": send_calls as f64 / messages_per_run as f64,
            "minimum_per_100_notifications": (100 * apps).div_ceil(10),
            "ratio": send_calls as f64 / minimum as f64,
            "retries": send_calls.saturating_sub(minimum),
            "other_calls": other_calls,
        }));
    }
    drop(moto);
    json!({"figure": "enqueue", "quick": quick, "runs": runs})
}

// ---------------------------------------------------------------------------------------------
// The target: the project's own mock target (in memory, indexed by userName), served here with a
// layer that notes when each create arrives, so latency can stop the clock at the target's door.

#[derive(Clone, Default)]
struct Target {
    mock: MockTarget,
    /// userName (lowercased) → arrival of its create.
    written: Arc<Mutex<HashMap<String, Instant>>>,
    creates: Arc<AtomicU64>,
    /// Successful PUTs of a user (updates).
    replaces: Arc<AtomicU64>,
}

const SCIM: &str = "application/scim+json";

async fn note_creates(State(target): State<Target>, request: Request, next: Next) -> Response {
    let at = Instant::now();
    if request.method() == Method::PUT {
        let response = next.run(request).await;
        if response.status() == StatusCode::OK {
            target.replaces.fetch_add(1, Ordering::SeqCst);
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap();
    let name = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|user| {
            user.get("userName")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
        });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status() == StatusCode::CREATED {
        if let Some(name) = name {
            target.written.lock().unwrap().insert(name, at);
        }
        target.creates.fetch_add(1, Ordering::SeqCst);
    }
    response
}

impl Target {
    /// Serves the target; returns its SCIM base URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/scim/v2", listener.local_addr().unwrap());
        let app = Router::new().nest(
            "/scim/v2",
            self.mock
                .router()
                .layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    note_creates,
                )),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn created(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }

    fn replaced(&self) -> u64 {
        self.replaces.load(Ordering::SeqCst)
    }
}

fn write_secret(data_dir: &std::path::Path) {
    let path = data_dir.join("secrets").join("userprov").join("scim");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        json!({"type": "bearer", "token": TARGET_TOKEN}).to_string(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
/// One bare POST of a user to the SCIM target, its answer read to the end: the baselines'
/// request.
async fn bare_create(http: &reqwest::Client, base_url: &str, user_name: &str) -> String {
    let response = http
        .post(format!("{base_url}/Users"))
        .bearer_auth(TARGET_TOKEN)
        .header("content-type", SCIM)
        .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "name": {"familyName": "Perf"}, "active": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// One bare PUT of a user's new attributes, as the worker's update sends it to a target
/// without ETags, its answer read to the end: the update baseline's request.
async fn bare_replace(http: &reqwest::Client, base_url: &str, id: &str, user_name: &str) {
    let response = http
        .put(format!("{base_url}/Users/{id}"))
        .bearer_auth(TARGET_TOKEN)
        .header("content-type", SCIM)
        .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "name": {"familyName": "Perf2"}, "active": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();
}

// (3) Worker overhead per job.

async fn overhead(quick: bool, options: &Options) -> Value {
    let jobs = options.count.unwrap_or(if quick { 100 } else { 2000 });
    let target = Target::default();
    let base_url = target.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_secret(&data);

    // The baseline: one bare POST to the same target and one bare redb write per job.
    let http = reqwest::Client::new();
    let bare_db = redb::Database::create(dir.path().join("bare.redb")).unwrap();
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("bare");
    let record = vec![b'x'; 1024];
    let started = Instant::now();
    for i in 0..jobs {
        bare_create(&http, &base_url, &format!("bare{i}@acme.example")).await;
        let txn = bare_db.begin_write().unwrap();
        txn.open_table(table)
            .unwrap()
            .insert(i as u64, record.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let bare = started.elapsed();

    // A second baseline: what a create job itself needs, made bare: the find (a filtered GET)
    // and the POST, then two synced writes (the account link and the log entry). The ratio to
    // it is the worker's own overhead; the one above also counts the extra request and write
    // a create is built of.
    let same_work_db = redb::Database::create(dir.path().join("same-work.redb")).unwrap();
    let started = Instant::now();
    for i in 0..jobs {
        let name = format!("same{i}@acme.example");
        let found = http
            .get(format!("{base_url}/Users"))
            .query(&[("filter", format!("userName eq \"{name}\""))])
            .bearer_auth(TARGET_TOKEN)
            .header("accept", SCIM)
            .send()
            .await
            .unwrap();
        assert_eq!(found.status(), StatusCode::OK);
        found.bytes().await.unwrap();
        bare_create(&http, &base_url, &name).await;
        for write in 0..2u64 {
            let txn = same_work_db.begin_write().unwrap();
            txn.open_table(table)
                .unwrap()
                .insert(i as u64 * 2 + write, record.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
    }
    let same_work = started.elapsed();

    // A third baseline, for the update jobs below: one bare PUT of an existing user (the one
    // request an update of a linked user sends a target without ETags) and one bare synced
    // write: the issue's baseline, with the request such a job makes.
    let mut bare_ids = Vec::with_capacity(jobs);
    for i in 0..jobs {
        bare_ids.push(bare_create(&http, &base_url, &format!("upd{i}@acme.example")).await);
    }
    let update_db = redb::Database::create(dir.path().join("update.redb")).unwrap();
    let started = Instant::now();
    for (i, id) in bare_ids.iter().enumerate() {
        bare_replace(&http, &base_url, id, &format!("upd{i}@acme.example")).await;
        let txn = update_db.begin_write().unwrap();
        txn.open_table(table)
            .unwrap()
            .insert(i as u64, record.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let update_bare = started.elapsed();

    // The worker: jobs queued by the webhook's own code, then received one at a time by one
    // worker loop, handled and settled, as `userprov serve` does.
    let config = Arc::new(Config::parse(&config_for(&base_url, "", ""), "perf_suite").unwrap());
    let db = EmbeddedDb::open(&data).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = EmbeddedQueue::new(
        db.clone(),
        QueueSettings {
            max_receives: config.worker.max_attempts,
            visibility_timeout: config.worker.visibility_timeout(),
            ..QueueSettings::default()
        },
        clock.clone(),
    );
    let store = EmbeddedStore::new(db);
    let secrets: Arc<dyn SecretStore> = Arc::new(LocalSecretStore::new(data.join("secrets")));
    let connectors = build_connectors(&config, secrets).unwrap();
    let worker = Worker::new(
        config.clone(),
        connectors,
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        clock.clone(),
        RetryPolicy::from_config(&config),
    );
    let ingest = Ingest::new(config.clone(), Arc::new(queue.clone()), clock);
    let run = ulid::Ulid::new().to_string().to_lowercase();
    for (n, body) in messages(&run, 0..jobs).iter().enumerate() {
        ingest
            .outbound_message(body.as_bytes(), &format!("perf-{n}"))
            .await
            .unwrap();
    }
    let before = target.created();
    let worker_time = drain(&queue, &worker, jobs).await;
    let created = target.created() - before;
    assert_eq!(created, jobs as u64, "every job created its account");

    // The same users again, each with a new last name: update jobs of linked users, each one
    // PUT and its writes (the account link and the log entry).
    for (n, body) in messages_of(&run, 0..jobs, 'u', "Perf2").iter().enumerate() {
        ingest
            .outbound_message(body.as_bytes(), &format!("perf-update-{n}"))
            .await
            .unwrap();
    }
    let (before, creates_before) = (target.replaced(), target.created());
    let update_time = drain(&queue, &worker, jobs).await;
    let replaced = target.replaced() - before;
    assert_eq!(
        replaced, jobs as u64,
        "every update job replaced its account"
    );
    assert_eq!(
        target.created(),
        creates_before,
        "an update job created an account"
    );

    let per_job_ms = |d: Duration| d.as_secs_f64() * 1000.0 / jobs as f64;
    json!({
        "figure": "overhead",
        "quick": quick,
        "jobs": jobs,
        "worker_ms_per_job": per_job_ms(worker_time),
        "baseline_ms_per_job": per_job_ms(bare),
        "ratio": worker_time.as_secs_f64() / bare.as_secs_f64(),
        "same_work_ms_per_job": per_job_ms(same_work),
        "ratio_to_same_work": worker_time.as_secs_f64() / same_work.as_secs_f64(),
        "worker_jobs_per_second": jobs as f64 / worker_time.as_secs_f64(),
        "update_ms_per_job": per_job_ms(update_time),
        "update_baseline_ms_per_job": per_job_ms(update_bare),
        "ratio_update": update_time.as_secs_f64() / update_bare.as_secs_f64(),
    })
}

/// Receives, handles and settles `jobs` jobs one at a time, as one loop of `userprov serve`
/// does; returns the time taken.
async fn drain(queue: &EmbeddedQueue, worker: &Worker, jobs: usize) -> Duration {
    let started = Instant::now();
    let mut handled = 0;
    while handled < jobs {
        let received = queue.receive(1, Duration::from_secs(5)).await.unwrap();
        assert!(
            !received.is_empty(),
            "the queue ran dry after {handled} jobs"
        );
        let dispositions = worker.handle_batch(&received).await;
        for (message, disposition) in received.iter().zip(dispositions) {
            queue.settle(message, &disposition).await.unwrap();
        }
        handled += received.len();
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------------
// (4) Event-to-account latency in embedded mode.

async fn latency(quick: bool, options: &Options) -> Value {
    let events = options.count.unwrap_or(if quick { 100 } else { 10_000 });
    let per_second = options.rate.unwrap_or(if quick { 20 } else { 50 });
    let target = Target::default();
    let base_url = target.serve().await;

    // The baseline: the round trip of one bare POST to the same target, the one hop the worker
    // must make anyway, measured in the same process before the stack starts.
    let http = reqwest::Client::new();
    let mut bare_millis = Vec::new();
    for i in 0..events.min(1000) {
        let started = Instant::now();
        bare_create(&http, &base_url, &format!("bare{i}@acme.example")).await;
        bare_millis.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    bare_millis.sort_by(f64::total_cmp);
    let bare_creates = target.created();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_secret(&data);
    let config_path = dir.path().join("userprov.toml");
    std::fs::write(&config_path, config_for(&base_url, "", "")).unwrap();
    let stack = RunningStack::start(StackOptions {
        bind: ([127, 0, 0, 1], 0).into(),
        config: Some(config_path),
        data_dir: data,
        mock_target: false,
        workers: 4,
    })
    .await
    .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    let webhook = stack.webhook_url();
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let bodies = messages_one_each(&run, events);
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(events);
    for (name, body) in bodies {
        ticks.tick().await;
        let http = http.clone();
        let webhook = webhook.clone();
        let acked = acked.clone();
        sends.push(tokio::spawn(async move {
            let response = http
                .post(&webhook)
                .header("content-type", "text/xml; charset=utf-8")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            response.bytes().await.unwrap();
            let at = Instant::now();
            assert_eq!(status, StatusCode::OK, "the webhook refused an event");
            acked.lock().unwrap().insert(name, at);
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
    let sent_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while target.created() < bare_creates + events as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {events} accounts were written",
            target.created() - bare_creates
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.shutdown().await;
    let acked = acked.lock().unwrap();
    let written = target.written.lock().unwrap();
    let mut millis: Vec<f64> = acked
        .iter()
        .map(|(name, at)| {
            let wrote = written[name];
            // The worker may write before the client has read the response: that is 0 ms.
            wrote.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    millis.sort_by(f64::total_cmp);
    json!({
        "figure": "latency",
        "quick": quick,
        "events": events,
        "offered_per_second": per_second,
        "sent_in_seconds": sent_in.as_secs_f64(),
        "p50_ms": quantile(&millis, 0.50),
        "p99_ms": quantile(&millis, 0.99),
        "max_ms": quantile(&millis, 1.0),
        "baseline_requests": bare_millis.len(),
        "baseline_p50_ms": quantile(&bare_millis, 0.50),
        "baseline_p99_ms": quantile(&bare_millis, 0.99),
    })
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// One single-notification Outbound Message per user; returns (lowercased userName, body).
fn messages_one_each(run: &str, events: usize) -> Vec<(String, String)> {
    (0..events)
        .map(|i| {
            let name = user_name(run, i);
            let notification = notification_id('c', i);
            let id = user_id(i);
            let fields = [
                ("Username", name.as_str()),
                ("LastName", "Perf"),
                ("Email", name.as_str()),
                ("IsActive", "true"),
            ];
            let body = outbound_message(
                ORG_ID,
                &[Notified {
                    notification_id: &notification,
                    user_id: &id,
                    fields: &fields,
                }],
            );
            (name.to_lowercase(), body)
        })
        .collect()
}
