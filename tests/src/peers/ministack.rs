//! ministack: a local AWS that runs the deployed SAM application, with the real function
//! binaries as processes. Started on a free loopback port from `.venv-ministack`; the stack is
//! deployed by `infra/scripts/local-aws.sh deploy`, the same steps as `local-aws.sh up`.
//!
//! ```no_run
//! use userprov_tests::peers::ministack::{Ministack, sam_build};
//! let aws = Ministack::start();
//! let deployment = aws.deploy(&sam_build());
//! // POST an Outbound Message to deployment.webhook_url ...
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PeerProcess, free_port, repo_root, venv_program};

/// The region the stack is deployed in; ministack's default account is `000000000000`.
pub const REGION: &str = "us-east-1";

/// A running ministack. Dropping it stops ministack and the function processes it started.
pub struct Ministack {
    process: PeerProcess,
}

impl Ministack {
    /// Starts ministack on a free port on 127.0.0.1 and waits until it answers.
    pub fn start() -> Self {
        let program = venv_program(".venv-ministack", "ministack");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let work_dir = std::env::temp_dir().join(format!("userprov-ministack-{port}"));
        std::fs::create_dir_all(&work_dir).expect("create ministack work dir");
        let mut command = Command::new(program);
        command
            .current_dir(&work_dir)
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            // Queue URLs and API endpoints name 127.0.0.1 rather than localhost.
            .env("MINISTACK_HOST", "127.0.0.1")
            // The function processes call back into this instance through it.
            .env("AWS_ENDPOINT_URL", &endpoint)
            // Its own process group, so that Drop also stops the bootstraps it spawned.
            .process_group(0);
        let process = PeerProcess::start("ministack", command, port, Duration::from_secs(60));
        let ministack = Self { process };
        ministack.wait_healthy(Duration::from_secs(30));
        ministack
    }

    /// `http://127.0.0.1:PORT`: the endpoint for every AWS service (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        self.process.url()
    }

    /// Creates an EventBridge event bus (before a deploy that names it, as Event Relay's
    /// partner bus exists before the stack).
    pub async fn create_event_bus(&self, name: &str) {
        self.eventbridge("CreateEventBus", serde_json::json!({ "Name": name }))
            .await;
    }

    /// One EventBridge API call (`action` is the operation, as `ListRules`); panics with the
    /// emulator's answer unless it succeeds, else returns the answer's JSON.
    pub async fn eventbridge(&self, action: &str, body: Value) -> Value {
        let answer = reqwest::Client::new()
            .post(self.endpoint())
            .header("x-amz-target", format!("AWSEvents.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(status.is_success(), "{action} {body}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Invokes a deployed function synchronously with `payload`, as a trigger (an EventBridge
    /// rule) would; returns the HTTP status and the function's answer.
    pub async fn invoke(&self, function: &str, payload: &Value) -> (u16, String) {
        let answer = reqwest::Client::new()
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.endpoint()
            ))
            .header("content-type", "application/json")
            .body(payload.to_string())
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// What ministack printed so far (function output included).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Environment variables that point an AWS SDK at this ministack.
    pub fn sdk_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ]
    }

    /// Deploys the application built into `build_dir` (the output of `sam build`, see
    /// [`sam_build`]) as stack `userprov`, switches on what ministack skips (TTL), sets the
    /// webhook token to [`Deployment::webhook_token`], and describes the result.
    pub fn deploy(&self, build_dir: &Path) -> Deployment {
        self.deploy_inner(build_dir, None)
    }

    /// [`deploy`](Self::deploy) with the functions reading `config`, a file on this machine
    /// (ministack runs them as host processes), rather than infra/config/userprov.toml.
    pub fn deploy_with_config(&self, build_dir: &Path, config: &Path) -> Deployment {
        self.deploy_inner(build_dir, Some(config))
    }

    /// [`deploy_with_config`](Self::deploy_with_config) as stack `stack`, with template
    /// parameters (`"MaxReceiveCount=30 VisibilityTimeout=5"`). Several stacks can live in one
    /// ministack: their resources are named after the stack.
    pub fn deploy_stack(
        &self,
        build_dir: &Path,
        config: &Path,
        stack: &str,
        parameters: &str,
    ) -> Deployment {
        self.deploy_named(build_dir, Some(config), Some((stack, parameters)))
    }

    fn deploy_inner(&self, build_dir: &Path, config: Option<&Path>) -> Deployment {
        self.deploy_named(build_dir, config, None)
    }

    fn deploy_named(
        &self,
        build_dir: &Path,
        config: Option<&Path>,
        stack: Option<(&str, &str)>,
    ) -> Deployment {
        let out = std::env::temp_dir().join(format!(
            "userprov-deployment-{}-{}.json",
            self.process.port,
            stack.map_or("userprov", |(name, _)| name)
        ));
        let script = repo_root().join("infra/scripts/local-aws.sh");
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .arg("deploy")
            .arg("--endpoint")
            .arg(self.endpoint())
            .arg("--build-dir")
            .arg(build_dir)
            .arg("--out")
            .arg(&out)
            .env(
                "USERPROV_LOCAL_AWS_DIR",
                std::env::temp_dir().join(format!("userprov-local-aws-{}", self.process.port)),
            );
        if let Some(config) = config {
            command.env("USERPROV_LOCAL_CONFIG", config);
        }
        if let Some((name, parameters)) = stack {
            command
                .env("USERPROV_STACK", name)
                .env("USERPROV_LOCAL_PARAMETERS", parameters);
        }
        let output = run_to_end(command, Duration::from_secs(600));
        assert!(
            output.success,
            "deploying into ministack failed ({}):\n{}\n--- ministack log (tail) ---\n{}",
            script.display(),
            output.text,
            tail(&self.log(), 60)
        );
        let text = std::fs::read_to_string(&out).expect("read the deployment description");
        Deployment::from_json(&text)
    }

    fn wait_healthy(&self, within: Duration) {
        let url = format!("{}/_ministack/health", self.endpoint());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if http_get(&url).is_ok_and(|body| body.contains("\"services\"")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "ministack did not report healthy within {within:?}; its log:\n{}",
            self.log()
        );
    }
}

impl Drop for Ministack {
    fn drop(&mut self) {
        // The group id is ministack's pid (process_group(0)). Killing the group stops the warm
        // function processes too; PeerProcess's own Drop then reaps ministack.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.process.pid())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // ministack's extracted function code, its working directory and the deploy script's
        // state, all keyed by its port.
        let port = self.process.port;
        let temp = std::env::temp_dir();
        for dir in [
            format!("ministack-provided-code-{port}"),
            format!("userprov-ministack-{port}"),
            format!("userprov-local-aws-{port}"),
        ] {
            let _ = std::fs::remove_dir_all(temp.join(dir));
        }
        let _ = std::fs::remove_file(temp.join(format!("userprov-deployment-{port}.json")));
    }
}

/// The stack as deployed into ministack: what a test needs to drive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub stack: String,
    /// `AWS_ENDPOINT_URL` of the ministack holding the stack.
    pub endpoint: String,
    /// The webhook HTTP API: `http://127.0.0.1:PORT/_aws/execute-api/<apiId>/$default`.
    pub webhook_base_url: String,
    /// The webhook token set in the token secret (`local-test-token` unless
    /// `USERPROV_LOCAL_WEBHOOK_TOKEN` says otherwise).
    pub webhook_token: String,
    /// `{webhook_base_url}/salesforce/outbound/{webhook_token}`: the Outbound Message URL.
    pub webhook_url: String,
    /// The log HTTP API (AWS_IAM routes: send an `Authorization` header; ministack does not
    /// verify signatures).
    pub log_api_base_url: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub links_table: String,
    pub log_table: String,
    pub webhook_token_secret: String,
    pub webhook_function: String,
    pub worker_function: String,
    pub log_api_function: String,
    /// The Event Relay function, deployed when the stack names an `EventRelayBusName`.
    pub event_relay_function: Option<String>,
    /// Every CloudFormation output of the stack, by key.
    pub outputs: serde_json::Map<String, Value>,
}

impl Deployment {
    /// Reads the JSON that `local-aws.sh deploy --out FILE` writes.
    pub fn from_json(text: &str) -> Self {
        let value: Value = serde_json::from_str(text).expect("the deployment description is JSON");
        let field = |name: &str| -> String {
            value
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("the deployment description has no {name}: {text}"))
                .to_owned()
        };
        Self {
            stack: field("stack"),
            endpoint: field("endpoint"),
            webhook_base_url: field("webhook_base_url"),
            webhook_token: field("webhook_token"),
            webhook_url: field("webhook_url"),
            log_api_base_url: field("log_api_base_url"),
            queue_url: field("queue_url"),
            dlq_url: field("dlq_url"),
            links_table: field("links_table"),
            log_table: field("log_table"),
            webhook_token_secret: field("webhook_token_secret"),
            webhook_function: field("webhook_function"),
            worker_function: field("worker_function"),
            log_api_function: field("log_api_function"),
            event_relay_function: value
                .get("event_relay_function")
                .and_then(Value::as_str)
                .map(str::to_owned),
            outputs: value
                .get("outputs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// Builds the three functions for x86_64 with `sam build` (the repository's template.yaml, cargo
/// lambda) into `<target dir>/sam-build`, once per test process, and returns that directory.
/// A release build: the first one takes many minutes, an unchanged one about ten seconds.
/// `SAM_BUILD_MODE=debug` in the environment builds without `--release`.
pub fn sam_build() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let sam = venv_program(".venv-sam", "sam");
            // sam's own message for a missing cargo lambda does not say how to install it.
            venv_program(".venv-sam", "cargo-lambda");
            let sam_bin = sam
                .parent()
                .expect("sam lives in a bin directory")
                .to_path_buf();
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            let build_dir = target_dir.join("sam-build");
            let path = std::env::join_paths(std::iter::once(sam_bin).chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )))
            .expect("PATH entries join");
            let mut command = Command::new(&sam);
            command
                .current_dir(repo_root())
                .args([
                    "build",
                    "--parameter-overrides",
                    "Architecture=x86_64",
                    "--build-dir",
                ])
                .arg(&build_dir)
                .env("PATH", path)
                .env("SAM_CLI_TELEMETRY", "0")
                .env("CARGO_TARGET_DIR", &target_dir);
            let output = run_to_end(command, Duration::from_secs(1800));
            assert!(
                output.success,
                "sam build failed:\n{}",
                tail(&output.text, 80)
            );
            build_dir
        })
        .clone()
}

struct Finished {
    success: bool,
    text: String,
}

/// Runs `command` to its end (output to a log file), killing it after `within`.
fn run_to_end(mut command: Command, within: Duration) -> Finished {
    let log_path = std::env::temp_dir().join(format!(
        "userprov-run-{}-{}.log",
        std::process::id(),
        free_port()
    ));
    let log = std::fs::File::create(&log_path).expect("create command log");
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if status.is_none() {
        text.push_str(&format!("\n(killed after {within:?})"));
    }
    Finished {
        success: status.is_some_and(|s| s.success()),
        text,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain HTTP/1.1 GET on loopback, enough for a health check without an async runtime.
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("not an http URL"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_description_is_read_from_the_script_output() {
        let text = r#"{"stack":"userprov","endpoint":"http://127.0.0.1:1","region":"us-east-1",
            "webhook_base_url":"http://127.0.0.1:1/_aws/execute-api/a/$default","webhook_token":"t",
            "webhook_url":"http://127.0.0.1:1/_aws/execute-api/a/$default/salesforce/outbound/t",
            "log_api_base_url":"http://127.0.0.1:1/_aws/execute-api/b/$default",
            "queue_url":"q","dlq_url":"d","links_table":"userprov-links","log_table":"userprov-log",
            "webhook_token_secret":"s","webhook_function":"w","worker_function":"k","log_api_function":"l",
            "outputs":{"QueueUrl":"q"}}"#;
        let deployment = Deployment::from_json(text);
        assert_eq!(
            deployment.webhook_url,
            format!("{}/salesforce/outbound/t", deployment.webhook_base_url)
        );
        assert_eq!(deployment.log_table, "userprov-log");
        assert_eq!(
            deployment.outputs.get("QueueUrl").and_then(Value::as_str),
            Some("q")
        );
    }
}
