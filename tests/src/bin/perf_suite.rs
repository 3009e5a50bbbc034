//! Benchmark drivers for the end-to-end figures of `infra/scripts/bench.sh` (not tests: they
//! print figures, and fail only when the pipeline itself fails).
//!
//!   perf_suite enqueue  [--quick]   SQS calls per 100 notifications × apps, counted by a proxy
//!                                   in front of moto, against the minimum ceil(jobs / 10)
//!   perf_suite overhead [--quick]   the embedded worker's time per job against one bare HTTP
//!                                   request to the same target plus one bare redb write
//!   perf_suite latency  [--quick]   webhook response → target write, p50 / p99, embedded mode
//!
//! Each prints one JSON object on stdout. The SCIM target of `overhead` and `latency` is a
//! minimal one served here (create and find by userName, in memory), so the target is not the
//! bottleneck and it can note the instant of each write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use userprov_cli::stack::{RunningStack, StackOptions};
use userprov_core::config::Config;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::{
    EmbeddedDb, EmbeddedQueue, EmbeddedStore, LocalSecretStore, QueueSettings,
};
use userprov_core::ingest::Ingest;
use userprov_core::ports::{Clock, QueueConsumer, SecretStore, SystemClock};
use userprov_core::worker::{RetryPolicy, Worker};
use userprov_tests::peers::moto::Moto;
use userprov_tests::pipeline::{Notified, ORG_ID, config_for, outbound_message};

const TARGET_TOKEN: &str = "perf-suite-target-token";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let result = match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(quick).await,
        Some("overhead") => overhead(quick).await,
        Some("latency") => latency(quick).await,
        _ => {
            eprintln!("usage: perf_suite enqueue|overhead|latency [--quick]");
            std::process::exit(2);
        }
    };
    println!("{result}");
}

/// A user of the generated Outbound Messages: 15-character ids, unique names.
fn user_id(i: usize) -> String {
    format!("0058b{i:010}")
}

fn user_name(run: &str, i: usize) -> String {
    format!("perf{i}.{run}@acme.example")
}

/// Outbound Messages of up to 100 notifications for users `range`.
fn messages(run: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let ids: Vec<(String, String, String)> = range
        .map(|i| (format!("04l8b{i:013}"), user_id(i), user_name(run, i)))
        .collect();
    ids.chunks(100)
        .map(|chunk| {
            let fields: Vec<[(&str, &str); 4]> = chunk
                .iter()
                .map(|(_, _, name)| {
                    [
                        ("Username", name.as_str()),
                        ("LastName", "Perf"),
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

async fn enqueue(quick: bool) -> Value {
    let moto = Moto::start();
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
    let messages_per_run = if quick { 2 } else { 10 };
    let mut runs = Vec::new();
    for apps in [1usize, 3] {
        let queue = userprov_tests::aws_fixtures::fifo_queue_pair(&client, None).await;
        let sqs = Arc::new(queue);
        let config = Arc::new(Config::parse(&apps_config(apps), "perf_suite").unwrap());
        let ingest = Ingest::new(config, sqs.clone(), Arc::new(SystemClock));
        calls.lock().unwrap().clear();
        let adapter_before = sqs.send_batch_calls();
        let run = ulid::Ulid::new().to_string().to_lowercase();
        let mut jobs = 0;
        for (n, body) in messages(&run, 0..messages_per_run * 100).iter().enumerate() {
            let report = ingest
                .outbound_message(body.as_bytes(), &format!("perf-{run}-{n}"))
                .await
                .unwrap_or_else(|e| panic!("the message was refused: {e}"));
            assert_eq!(report.jobs, 100 * apps, "every notification × app is a job");
            jobs += report.jobs;
        }
        let seen = calls.lock().unwrap().clone();
        let send_calls = seen.get("SendMessageBatch").copied().unwrap_or(0)
            + seen.get("SendMessage").copied().unwrap_or(0);
        let minimum = jobs.div_ceil(10) as u64;
        let per_100 = send_calls as f64 / messages_per_run as f64;
        runs.push(json!({
            "apps": apps,
            "messages": messages_per_run,
            "jobs": jobs,
            "send_calls_at_proxy": send_calls,
            "send_calls_by_adapter": sqs.send_batch_calls() - adapter_before,
            "minimum_calls": minimum,
            "calls_per_100_notifications": per_100,
            "minimum_per_100_notifications": (100 * apps).div_ceil(10),
            "ratio": send_calls as f64 / minimum as f64,
            "retries": send_calls.saturating_sub(minimum),
            "other_calls": seen.iter().filter(|(k, _)| !k.starts_with("SendMessage")).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>(),
        }));
    }
    drop(moto);
    json!({"figure": "enqueue", "quick": quick, "runs": runs})
}

// ---------------------------------------------------------------------------------------------
// A minimal SCIM target: creates users, finds them by userName, notes when each was written.

#[derive(Clone, Default)]
struct MinimalTarget {
    users: Arc<Mutex<HashMap<String, Value>>>,
    written: Arc<Mutex<HashMap<String, Instant>>>,
    creates: Arc<AtomicU64>,
}

const SCIM: &str = "application/scim+json";

async fn create(State(target): State<MinimalTarget>, body: Bytes) -> Response {
    let at = Instant::now();
    let Ok(Value::Object(mut user)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a JSON object").into_response();
    };
    let name = user
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let id = format!("{:032x}", rand::random::<u128>());
    user.insert("id".into(), Value::String(id));
    let user = Value::Object(user);
    {
        let mut users = target.users.lock().unwrap();
        if users.contains_key(&name) {
            return (StatusCode::CONFLICT, [("content-type", SCIM)], json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409", "scimType": "uniqueness"}).to_string()).into_response();
        }
        users.insert(name.clone(), user.clone());
    }
    target.written.lock().unwrap().insert(name, at);
    target.creates.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        [("content-type", SCIM)],
        user.to_string(),
    )
        .into_response()
}

async fn find(
    State(target): State<MinimalTarget>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let wanted = params.get("filter").and_then(|f| {
        f.strip_prefix("userName eq \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .map(str::to_lowercase)
    });
    let found: Vec<Value> = match wanted {
        Some(name) => target
            .users
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    (
        StatusCode::OK,
        [("content-type", SCIM)],
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": found.len(),
            "startIndex": 1,
            "itemsPerPage": found.len(),
            "Resources": found,
        })
        .to_string(),
    )
        .into_response()
}

async fn refuse(_: HeaderMap) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "the minimal target only creates and finds",
    )
        .into_response()
}

impl MinimalTarget {
    /// Serves the target; returns its SCIM base URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/scim/v2", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/scim/v2/Users", axum::routing::get(find).post(create))
            .fallback(refuse)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn created(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
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
// (3) Worker overhead per job.

async fn overhead(quick: bool) -> Value {
    let jobs = if quick { 200 } else { 2000 };
    let target = MinimalTarget::default();
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
        let name = format!("bare{i}@acme.example");
        let response = http
            .post(format!("{base_url}/Users"))
            .bearer_auth(TARGET_TOKEN)
            .header("content-type", SCIM)
            .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "name": {"familyName": "Perf"}, "active": true}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.bytes().await.unwrap();
        let txn = bare_db.begin_write().unwrap();
        txn.open_table(table)
            .unwrap()
            .insert(i as u64, record.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let bare = started.elapsed();

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
    let worker_time = started.elapsed();
    let created = target.created() - before;
    assert_eq!(created, jobs as u64, "every job created its account");
    let per_job_ms = |d: Duration| d.as_secs_f64() * 1000.0 / jobs as f64;
    json!({
        "figure": "overhead",
        "quick": quick,
        "jobs": jobs,
        "worker_ms_per_job": per_job_ms(worker_time),
        "baseline_ms_per_job": per_job_ms(bare),
        "ratio": worker_time.as_secs_f64() / bare.as_secs_f64(),
        "worker_jobs_per_second": jobs as f64 / worker_time.as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------------
// (4) Event-to-account latency in embedded mode.

async fn latency(quick: bool) -> Value {
    let (events, per_second) = if quick { (200, 100) } else { (10_000, 100) };
    let target = MinimalTarget::default();
    let base_url = target.serve().await;
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
    let http = reqwest::Client::new();
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
    while target.created() < events as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {events} accounts were written",
            target.created()
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
    let pick =
        |q: f64| millis[((millis.len() as f64 * q).ceil() as usize).clamp(1, millis.len()) - 1];
    json!({
        "figure": "latency",
        "quick": quick,
        "events": events,
        "offered_per_second": per_second,
        "sent_in_seconds": sent_in.as_secs_f64(),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    })
}

/// One single-notification Outbound Message per user; returns (lowercased userName, body).
fn messages_one_each(run: &str, events: usize) -> Vec<(String, String)> {
    (0..events)
        .map(|i| {
            let name = user_name(run, i);
            let notification = format!("04l8c{i:013}");
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
