//! Measures a Lambda function binary (`bootstrap`) the way Lambda runs it: a minimal Runtime API
//! on a loopback port hands the process one event, and the probe records how long the process
//! took from spawn to its first `GET /runtime/invocation/next` (its cold init), and its peak
//! resident memory (`VmHWM`) once it has handled the event.
//!
//! The AWS side is moto server and the target app is scim2-server, both real. Every answer is
//! checked: a figure for a function that failed is worthless, so a failure stops the probe with
//! the function's own log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use userprov_aws::aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use userprov_aws::{SqsQueue, schema};
use userprov_core::config::Config;
use userprov_core::ingest::Ingest;
use userprov_core::ports::SystemClock;

use crate::aws_fixtures::{fifo_queue_pair, unique};
use crate::peers::moto::Moto;
use crate::peers::repo_root;
use crate::peers::scim2_server::Scim2Server;
use crate::pipeline::{Notified, ORG_ID, config_for, outbound_message};

/// Notifications in the webhook's Outbound Message.
pub const WEBHOOK_NOTIFICATIONS: usize = 100;
/// Jobs in the worker's SQS batch (the event source mapping's BatchSize).
pub const WORKER_BATCH: usize = 10;
/// Entries the log API is asked for.
pub const LOG_API_LIMIT: usize = 100;

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime";
const INIT_WITHIN: Duration = Duration::from_secs(30);
const HANDLE_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Webhook,
    Worker,
    LogApi,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Worker => "worker",
            Self::LogApi => "log-api",
        }
    }

    /// What the function is given to handle, in words (for the report).
    pub fn event_description(self) -> String {
        match self {
            Self::Webhook => format!(
                "API Gateway v2 POST of a {WEBHOOK_NOTIFICATIONS}-notification Outbound Message"
            ),
            Self::Worker => {
                format!("SQS batch of {WORKER_BATCH} jobs (new users, created in scim2-server)")
            }
            Self::LogApi => format!("API Gateway v2 GET /logs?limit={LOG_API_LIMIT}"),
        }
    }
}

/// One spawn of a function: its cold init and memory.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub init: Duration,
    /// VmHWM when the function asked for its first event, in KiB.
    pub init_hwm_kib: u64,
    /// VmHWM after it handled the event, in KiB.
    pub peak_hwm_kib: u64,
}

/// All spawns of one function.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub function: Function,
    pub binary: PathBuf,
    pub binary_bytes: u64,
    pub samples: Vec<Sample>,
}

impl Measurement {
    pub fn init_median(&self) -> Duration {
        let micros = median(
            self.samples
                .iter()
                .map(|s| u64::try_from(s.init.as_micros()).unwrap_or(u64::MAX)),
        );
        Duration::from_micros(micros)
    }

    pub fn init_max(&self) -> Duration {
        self.samples
            .iter()
            .map(|s| s.init)
            .max()
            .unwrap_or_default()
    }

    pub fn peak_median_kib(&self) -> u64 {
        median(self.samples.iter().map(|s| s.peak_hwm_kib))
    }

    pub fn peak_max_kib(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.peak_hwm_kib)
            .max()
            .unwrap_or_default()
    }

    pub fn init_hwm_max_kib(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.init_hwm_kib)
            .max()
            .unwrap_or_default()
    }
}

/// The median; of an even count, the mean of the middle two.
fn median(values: impl Iterator<Item = u64>) -> u64 {
    let mut values: Vec<u64> = values.collect();
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => 0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2,
    }
}

/// The peers and the AWS resources the functions share during one probe run.
pub struct ProbeEnv {
    pub moto: Moto,
    /// Started only when the worker is measured: the other functions never call a target.
    pub scim: Option<Scim2Server>,
    sdk: userprov_aws::aws_config::SdkConfig,
    links_table: String,
    log_table: String,
    token_secret: String,
    token: String,
    app_secret: String,
    cursor_secret: String,
    events_secret: String,
    work_dir: tempfile::TempDir,
    /// Set on every function after the environment Lambda gives it (`--env`).
    extra_env: Vec<(String, String)>,
}

impl ProbeEnv {
    /// Starts moto (and scim2-server when `functions` has the worker), creates the tables and
    /// the secrets.
    pub async fn start(functions: &[Function]) -> Self {
        let moto = Moto::start();
        let scim = functions
            .contains(&Function::Worker)
            .then(Scim2Server::start);
        let scim_token = scim.as_ref().map(|s| s.token.clone()).unwrap_or_default();
        let sdk = moto.sdk_config().await;
        let dynamo = userprov_aws::aws_sdk_dynamodb::Client::new(&sdk);
        let secrets = userprov_aws::aws_sdk_secretsmanager::Client::new(&sdk);
        let (links_table, log_table) = (unique("probe-links"), unique("probe-log"));
        schema::create_tables(&dynamo, &links_table, &log_table)
            .await
            .expect("create the tables in moto");
        let token = unique("probe-webhook-token");
        let token_secret = unique("userprov-webhook-token/probe");
        let app_secret = unique("userprov/scim");
        let cursor_secret = unique("userprov-log-cursor-key/probe");
        let events_secret = unique("userprov-events-key/probe");
        for (name, value) in [
            (&token_secret, token.clone()),
            (&cursor_secret, unique("probe-cursor-key")),
            (&events_secret, unique("probe-events-key")),
            (
                &app_secret,
                json!({"type": "bearer", "token": scim_token}).to_string(),
            ),
        ] {
            secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create a secret in moto");
        }
        Self {
            moto,
            scim,
            sdk,
            links_table,
            log_table,
            token_secret,
            token,
            app_secret,
            cursor_secret,
            events_secret,
            work_dir: tempfile::tempdir().expect("a temporary directory"),
            extra_env: Vec::new(),
        }
    }

    /// Sets `name` to `value` on every function spawned from now on, after (so over) the
    /// environment Lambda gives it: to measure a setting's effect on cold init.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    fn sqs(&self) -> userprov_aws::aws_sdk_sqs::Client {
        userprov_aws::aws_sdk_sqs::Client::new(&self.sdk)
    }

    fn scim(&self) -> &Scim2Server {
        self.scim
            .as_ref()
            .expect("scim2-server runs when the worker is measured: ProbeEnv::start(&[Function::Worker, ..])")
    }

    /// The configuration: one SCIM app on a scim2-server tenant of its own (an unused loopback
    /// URL for the functions that call no target).
    fn config(&self, tenant: &str) -> String {
        let base_url = match &self.scim {
            Some(scim) => scim.tenant_url(tenant),
            None => format!("http://127.0.0.1:9/{tenant}/v2"),
        };
        config_for(&base_url, "", "").replace(
            "secret = \"userprov/scim\"",
            &format!("secret = \"{}\"", self.app_secret),
        )
    }

    /// The environment Lambda and the template give the function, pointed at moto. Nothing is
    /// inherited from the probe's own environment (no host credentials or profile).
    fn function_env(&self, function: Function, config: &str) -> Vec<(String, String)> {
        let mut env: Vec<(&str, String)> = vec![
            (
                "AWS_LAMBDA_FUNCTION_NAME",
                format!("userprov-{}", function.name()),
            ),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.moto.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("USERPROV_CONFIG", config.to_owned()),
            ("USERPROV_LINKS_TABLE", self.links_table.clone()),
            ("USERPROV_LOG_TABLE", self.log_table.clone()),
            ("USERPROV_LOG_RETENTION_DAYS", "90".to_owned()),
        ];
        if function == Function::Webhook {
            env.push(("USERPROV_WEBHOOK_TOKEN_SECRET", self.token_secret.clone()));
            env.push(("USERPROV_EVENTS_KEY_SECRET", self.events_secret.clone()));
        }
        if function == Function::LogApi {
            env.push(("USERPROV_LOG_CURSOR_SECRET", self.cursor_secret.clone()));
        }
        if function == Function::Worker {
            env.push(("USERPROV_MAX_RECEIVES", "5".to_owned()));
        }
        env.into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.extra_env.iter().cloned())
            .collect()
    }

    /// Spawns `binary` `spawns` times; each spawn handles one fresh event, checked.
    pub async fn measure(&self, function: Function, binary: &Path, spawns: usize) -> Measurement {
        let binary_bytes = std::fs::metadata(binary)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", binary.display()))
            .len();
        let mut samples = Vec::with_capacity(spawns);
        for run in 0..spawns {
            let sample = match function {
                Function::Webhook => self.webhook_run(binary, run).await,
                Function::Worker => self.worker_run(binary, run).await,
                Function::LogApi => self.log_api_run(binary, run).await,
            };
            eprintln!(
                "  {} spawn {}/{spawns}: init {:.1} ms, VmHWM {} KiB at init, {} KiB after the event",
                function.name(),
                run + 1,
                sample.init.as_secs_f64() * 1000.0,
                sample.init_hwm_kib,
                sample.peak_hwm_kib
            );
            samples.push(sample);
        }
        Measurement {
            function,
            binary: binary.to_owned(),
            binary_bytes,
            samples,
        }
    }

    async fn webhook_run(&self, binary: &Path, run: usize) -> Sample {
        // A queue per spawn, so the check below counts this spawn's jobs only.
        let queue = fifo_queue_pair(&self.sqs(), None).await;
        let tenant = format!("probe-webhook-{run}");
        let mut env = self.function_env(Function::Webhook, &self.config(&tenant));
        env.push((
            "USERPROV_QUEUE_URL".to_owned(),
            queue.queue_url().to_owned(),
        ));
        let message = generated_outbound_message(&format!("w{run}"), WEBHOOK_NOTIFICATIONS);
        if run == 0 {
            eprintln!("  the Outbound Message is {} bytes", message.len());
        }
        let event = webhook_event(&self.token, &message);
        let (sample, response) = self.invoke(Function::Webhook, binary, env, event).await;
        let (status, body) = http_response(&response);
        assert!(
            status == 200 && body.contains("<Ack>true</Ack>"),
            "the webhook did not acknowledge the message: HTTP {status}: {body}"
        );
        let queued = visible_messages(&self.sqs(), queue.queue_url()).await;
        assert_eq!(
            queued, WEBHOOK_NOTIFICATIONS,
            "the webhook acknowledged, but the queue holds {queued} jobs, not one per notification"
        );
        sample
    }

    async fn worker_run(&self, binary: &Path, run: usize) -> Sample {
        let sqs = self.sqs();
        let queue = fifo_queue_pair(&sqs, None).await;
        // Fresh users on a fresh tenant: every job is a create.
        let tenant = format!("probe-worker-{run}");
        let config_text = self.config(&tenant);
        let config = Arc::new(Config::parse(&config_text, "probe").expect("the probe config"));
        // The jobs are queued by the webhook's own code path.
        let ingest = Ingest::new(
            config,
            Arc::new(SqsQueue::new(
                sqs.clone(),
                queue.queue_url().to_owned(),
                queue.dlq_url().map(str::to_owned),
            )),
            Arc::new(SystemClock),
        );
        let message = generated_outbound_message(&format!("k{run}"), WORKER_BATCH);
        let report = ingest
            .outbound_message(message.as_bytes(), &format!("probe-{run}"))
            .await
            .expect("queue the worker's jobs");
        assert_eq!(report.jobs, WORKER_BATCH, "{report:?}");
        let event = sqs_event(&sqs, queue.queue_url(), WORKER_BATCH).await;

        let mut env = self.function_env(Function::Worker, &config_text);
        env.push((
            "USERPROV_QUEUE_URL".to_owned(),
            queue.queue_url().to_owned(),
        ));
        env.push((
            "USERPROV_DLQ_URL".to_owned(),
            queue.dlq_url().unwrap_or_default().to_owned(),
        ));
        let (sample, response) = self.invoke(Function::Worker, binary, env, event).await;
        let failures = response["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("the worker's answer is not a batch response: {response}"));
        assert!(
            failures.is_empty(),
            "the worker reported failed jobs: {response}"
        );
        // An empty failure list alone proves little (a permanent failure is dead-lettered, not
        // reported): the accounts must be in the target.
        let created =
            crate::pipeline::scim_users(&self.scim().tenant_url(&tenant), &self.scim().token, None)
                .await;
        let active = created.iter().filter(|u| u["active"] == true).count();
        assert_eq!(
            active, WORKER_BATCH,
            "the worker answered success, but scim2-server holds {active} active accounts: {created:?}"
        );
        sample
    }

    async fn log_api_run(&self, binary: &Path, run: usize) -> Sample {
        let env = self.function_env(Function::LogApi, &self.config(&format!("probe-log-{run}")));
        let (sample, response) = self
            .invoke(Function::LogApi, binary, env, log_api_event())
            .await;
        let (status, body) = http_response(&response);
        assert_eq!(status, 200, "the log API failed: {body}");
        let parsed: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("the log API answered no JSON ({e}): {body}"));
        assert!(
            parsed["entries"].is_array(),
            "the log API answered no entries: {body}"
        );
        sample
    }

    /// Spawns the function, measures its init, gives it `event`, and returns the measurements
    /// and its answer. Panics, with the function's output, if it fails.
    async fn invoke(
        &self,
        function: Function,
        binary: &Path,
        env: Vec<(String, String)>,
        event: Value,
    ) -> (Sample, Value) {
        let api = RuntimeApi::start().await;
        let log_path = self
            .work_dir
            .path()
            .join(format!("{}-{}.log", function.name(), api.port));
        let log = std::fs::File::create(&log_path).expect("create the function's log file");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut child = KillOnDrop(child);
        let fail = |what: String| -> ! {
            panic!(
                "{} ({}): {what}\nits output:\n{}",
                function.name(),
                binary.display(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        };

        let mut next = api.next.lock().await;
        let (first_call, release) = match wait_for(&mut next, &mut child, INIT_WITHIN).await {
            Ok(call) => call,
            Err(why) => fail(format!("no first GET /runtime/invocation/next: {why}")),
        };
        let init = first_call.duration_since(spawned_at);
        let pid = child.0.id();
        let init_hwm_kib = vm_hwm_kib(pid).unwrap_or_else(|| fail("no VmHWM".to_owned()));
        let request_id = ulid::Ulid::new().to_string();
        if release
            .send(Invocation {
                request_id: request_id.clone(),
                event,
            })
            .is_err()
        {
            fail("it dropped its GET /runtime/invocation/next".to_owned());
        }

        let mut outcomes = api.outcomes.lock().await;
        let outcome = tokio::select! {
            outcome = outcomes.recv() => outcome,
            () = tokio::time::sleep(HANDLE_WITHIN) => fail(format!("no answer within {HANDLE_WITHIN:?}")),
        };
        let answer = match outcome {
            Some(Outcome::Response {
                request_id: id,
                body,
            }) if id == request_id => body,
            Some(Outcome::Response { request_id: id, .. }) => {
                fail(format!("it answered request {id}, not {request_id}"))
            }
            Some(Outcome::Error { path, body }) => {
                fail(format!("it reported an error on {path}: {body}"))
            }
            None => fail("the runtime API stopped".to_owned()),
        };
        // Its next GET means the invocation is over (the runtime has posted and is idle): read
        // the high-water mark now, before it is killed.
        let _idle = match wait_for(&mut next, &mut child, HANDLE_WITHIN).await {
            Ok(call) => call,
            Err(why) => fail(format!(
                "no GET /runtime/invocation/next after the event: {why}"
            )),
        };
        let peak_hwm_kib = vm_hwm_kib(pid).unwrap_or_else(|| fail("no VmHWM".to_owned()));
        drop(child);
        api.stop();
        let answer: Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|e| fail(format!("its answer is not JSON ({e})")));
        (
            Sample {
                init,
                init_hwm_kib,
                peak_hwm_kib,
            },
            answer,
        )
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the function's next `GET /runtime/invocation/next`, watching that it still runs.
async fn wait_for(
    next: &mut mpsc::Receiver<NextCall>,
    child: &mut KillOnDrop,
    within: Duration,
) -> Result<(Instant, oneshot::Sender<Invocation>), String> {
    let deadline = Instant::now() + within;
    loop {
        tokio::select! {
            call = next.recv() => {
                return call.map(|c| (c.arrived, c.release)).ok_or_else(|| "the runtime API stopped".to_owned());
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Ok(Some(status)) = child.0.try_wait() {
                    return Err(format!("it exited with {status}"));
                }
                if Instant::now() > deadline {
                    return Err(format!("nothing within {within:?}"));
                }
            }
        }
    }
}

/// Peak resident set size of a running process, from `/proc/<pid>/status`.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

// ------------------------------------------------------------------ the Runtime API

struct Invocation {
    request_id: String,
    event: Value,
}

struct NextCall {
    arrived: Instant,
    release: oneshot::Sender<Invocation>,
}

enum Outcome {
    Response { request_id: String, body: Vec<u8> },
    Error { path: String, body: String },
}

#[derive(Clone)]
struct ApiState {
    next: mpsc::Sender<NextCall>,
    outcomes: mpsc::Sender<Outcome>,
}

/// The part of the Lambda Runtime API a function uses, served on a free loopback port. Each
/// `GET .../invocation/next` is held until the probe releases an event for it; a call the
/// probe never releases waits until the function is killed, as on Lambda.
struct RuntimeApi {
    port: u16,
    next: Mutex<mpsc::Receiver<NextCall>>,
    outcomes: Mutex<mpsc::Receiver<Outcome>>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    async fn start() -> Self {
        let (next_tx, next_rx) = mpsc::channel(4);
        let (outcome_tx, outcome_rx) = mpsc::channel(4);
        let state = ApiState {
            next: next_tx,
            outcomes: outcome_tx,
        };
        let app = Router::new()
            .route(
                &format!("{RUNTIME_PREFIX}/invocation/next"),
                get(next_invocation),
            )
            .route(
                &format!("{RUNTIME_PREFIX}/invocation/{{id}}/response"),
                post(invocation_response),
            )
            .route(
                &format!("{RUNTIME_PREFIX}/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{RUNTIME_PREFIX}/init/error"), post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API on loopback");
        let port = listener.local_addr().expect("its address").port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            next: Mutex::new(next_rx),
            outcomes: Mutex::new(outcome_rx),
            server,
        }
    }

    fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next_invocation(State(state): State<ApiState>) -> impl IntoResponse {
    let arrived = Instant::now();
    let (release, released) = oneshot::channel();
    if state
        .next
        .send(NextCall { arrived, release })
        .await
        .is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let Ok(invocation) = released.await else {
        // The probe is done with this process: hold the call, as Lambda does while frozen.
        return std::future::pending::<axum::response::Response>().await;
    };
    let deadline_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 300_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", invocation.request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:userprov-probe".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
    );
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, invocation.event.to_string()).into_response()
}

async fn invocation_response(
    State(state): State<ApiState>,
    UrlPath(request_id): UrlPath<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let _ = state
        .outcomes
        .send(Outcome::Response {
            request_id,
            body: body.to_vec(),
        })
        .await;
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(state): State<ApiState>,
    UrlPath(request_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let _ = state
        .outcomes
        .send(Outcome::Error {
            path: format!("invocation/{request_id}/error"),
            body,
        })
        .await;
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<ApiState>, body: String) -> StatusCode {
    let _ = state
        .outcomes
        .send(Outcome::Error {
            path: "init/error".to_owned(),
            body,
        })
        .await;
    StatusCode::ACCEPTED
}

// ------------------------------------------------------------------ events

/// An Outbound Message of `count` users, each with the fields of the richest user of
/// `infra/events/outbound/01-joiners.xml`; `tag` keeps ids and usernames apart between runs.
pub fn generated_outbound_message(tag: &str, count: usize) -> String {
    struct User {
        notification_id: String,
        user_id: String,
        fields: Vec<(&'static str, String)>,
    }
    let users: Vec<User> = (0..count)
        .map(|n| {
            // 15-character ids: the parser adds the case suffix.
            let user_id = format!("0058a00000P{n:04}");
            let notification_id = format!("04l8a00000Q{n:04}");
            let username = format!("probe.{tag}.{n}@acme.example");
            let fields = vec![
                ("Alias", format!("p{n}")),
                ("City", "Lisbon".to_owned()),
                ("CompanyName", "Acme Research & Development".to_owned()),
                ("Country", "Portugal".to_owned()),
                ("Department", "Platform Engineering".to_owned()),
                ("Division", "EMEA".to_owned()),
                ("Email", username.clone()),
                ("EmployeeNumber", format!("E-{n:06}")),
                ("FederationIdentifier", username.clone()),
                ("FirstName", format!("Probe{n}")),
                ("IsActive", "true".to_owned()),
                ("LanguageLocaleKey", "en_US".to_owned()),
                ("LastModifiedDate", "2025-03-14T16:02:11.000Z".to_owned()),
                ("LastName", format!("User {tag}")),
                ("LocaleSidKey", "pt_PT".to_owned()),
                ("ManagerId", "0058a00000LmN5sAAF".to_owned()),
                ("MobilePhone", "+351 912 345 678".to_owned()),
                ("Phone", "+351 213 000 100".to_owned()),
                ("PostalCode", "1100-053".to_owned()),
                ("ProfileId", "00e8a000001zXyVAAU".to_owned()),
                ("State", "Lisboa".to_owned()),
                ("Street", "Rua Augusta 100".to_owned()),
                ("SystemModstamp", "2025-03-14T16:02:11.000Z".to_owned()),
                ("TimeZoneSidKey", "Europe/Lisbon".to_owned()),
                ("Title", "Staff Engineer".to_owned()),
                ("UserRoleId", "00E8a000000gHjKEAU".to_owned()),
                ("Username", username),
            ];
            User {
                notification_id,
                user_id,
                fields,
            }
        })
        .collect();
    let field_refs: Vec<Vec<(&str, &str)>> = users
        .iter()
        .map(|user| user.fields.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let notified: Vec<Notified<'_>> = users
        .iter()
        .zip(&field_refs)
        .map(|(user, fields)| Notified {
            notification_id: &user.notification_id,
            user_id: &user.user_id,
            fields,
        })
        .collect();
    outbound_message(ORG_ID, &notified)
}

fn event_fixture(name: &str) -> Value {
    let path = repo_root().join("infra/events").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The webhook's API Gateway v2 event (`infra/events/webhook-outbound-3-users.json`) carrying
/// `message` to `/salesforce/outbound/{token}`.
pub fn webhook_event(token: &str, message: &str) -> Value {
    let mut event = event_fixture("webhook-outbound-3-users.json");
    let path = format!("/salesforce/outbound/{token}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"]["token"] = json!(token);
    event["headers"]["content-length"] = json!(message.len().to_string());
    event["body"] = json!(message);
    event["isBase64Encoded"] = json!(false);
    event
}

/// The log API's API Gateway v2 event (`infra/events/log-api-get-logs.json`) for
/// `GET /logs?limit=100`.
pub fn log_api_event() -> Value {
    let mut event = event_fixture("log-api-get-logs.json");
    event["rawQueryString"] = json!(format!("limit={LOG_API_LIMIT}"));
    event["queryStringParameters"] = json!({"limit": LOG_API_LIMIT.to_string()});
    event
}

/// Receives `count` messages and shapes them as the SQS event source mapping does.
async fn sqs_event(
    client: &userprov_aws::aws_sdk_sqs::Client,
    queue_url: &str,
    count: usize,
) -> Value {
    let queue_arn = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("read the queue's ARN")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let mut records = Vec::new();
    for _ in 0..30 {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive the jobs");
        for message in output.messages() {
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect();
            records.push(json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }));
        }
        if records.len() >= count {
            break;
        }
    }
    assert_eq!(
        records.len(),
        count,
        "expected {count} jobs in the queue, received {}",
        records.len()
    );
    json!({ "Records": records })
}

async fn visible_messages(client: &userprov_aws::aws_sdk_sqs::Client, queue_url: &str) -> usize {
    client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("read the queue depth")
        .attributes()
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .cloned()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

/// Status and body of an API Gateway v2 proxy response.
fn http_response(response: &Value) -> (u64, String) {
    let status = response["statusCode"].as_u64().unwrap_or_default();
    let raw = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|_| raw.to_owned())
    } else {
        raw.to_owned()
    };
    (status, body)
}

// ------------------------------------------------------------------ the report

/// Goals from issue 3.
/// 12 MB, decimal: the stricter reading of the goal.
pub const SIZE_GOAL_BYTES: u64 = 12_000_000;
pub const INIT_GOAL: Duration = Duration::from_millis(20);
/// Lambda's smallest memory setting.
pub const LAMBDA_MIN_MEMORY_MB: u64 = 128;

/// The smallest Lambda memory setting with at least twice the measured peak: headroom for a
/// bigger batch, longer log pages and the allocator's slack.
pub fn memory_setting_mb(peak_kib: u64) -> u64 {
    let needed_mb = (peak_kib * 2).div_ceil(1024);
    needed_mb.max(LAMBDA_MIN_MEMORY_MB)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_000_000.0)
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn init_verdict(median: Duration, max: Duration) -> &'static str {
    match (median <= INIT_GOAL, max <= INIT_GOAL) {
        (true, true) => "met",
        (true, false) => "median met, **max missed**",
        (false, _) => "**missed**",
    }
}

/// The results as a Markdown table.
pub fn markdown_table(measurements: &[Measurement]) -> String {
    let mut out = String::from(
        "| function | stripped size | goal ≤ 12 MB | cold init median / max (ms) | goal ≤ 20 ms | VmHWM at init | peak RSS handling the event (median / max) | event | Lambda memory it justifies |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for m in measurements {
        let peak = m.peak_max_kib();
        let setting = memory_setting_mb(peak);
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} | {} | {:.1} MiB | {:.1} / {:.1} MiB | {} | {} MB{} |\n",
            m.function.name(),
            megabytes(m.binary_bytes),
            verdict(m.binary_bytes <= SIZE_GOAL_BYTES),
            ms(m.init_median()),
            ms(m.init_max()),
            init_verdict(m.init_median(), m.init_max()),
            m.init_hwm_max_kib() as f64 / 1024.0,
            m.peak_median_kib() as f64 / 1024.0,
            peak as f64 / 1024.0,
            m.function.event_description(),
            setting,
            if setting == LAMBDA_MIN_MEMORY_MB {
                " (the minimum)"
            } else {
                ""
            },
        ));
    }
    out
}
