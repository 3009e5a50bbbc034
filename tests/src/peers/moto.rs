//! moto server: SQS, DynamoDB and Secrets Manager for the AWS adapter tests.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use userprov_aws::aws_config::{self, BehaviorVersion, Region, SdkConfig};
use userprov_aws::aws_sdk_sqs::config::Credentials;

use super::{PeerProcess, free_port, venv_program};

/// Runs the `moto_server` script given as the first argument, and exits when the process that
/// started it is gone: a server shared by a whole test binary lives in a static, which Rust
/// never drops, so it must not outlive the binary.
const RUN_WHILE_PARENT_LIVES: &str = r#"
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
if os.environ.get("USERPROV_MOTO_ONE_REQUEST_AT_A_TIME") == "1":
    import werkzeug.serving
    threaded_run_simple = werkzeug.serving.run_simple
    def run_simple(*args, **kwargs):
        kwargs["threaded"] = False
        return threaded_run_simple(*args, **kwargs)
    werkzeug.serving.run_simple = run_simple
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

pub struct Moto {
    process: PeerProcess,
}

impl Moto {
    /// Starts a moto server on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a moto server that answers one request at a time, as DynamoDB applies each
    /// request atomically. moto's threaded server does not: its TransactWriteItems restores a
    /// copy of the table when a condition fails, undoing other requests' writes made meanwhile
    /// (`tests/peers/moto/transaction_race.py`). Clients still race: their requests interleave.
    pub fn start_one_request_at_a_time() -> Self {
        Self::start_with(true)
    }

    fn start_with(one_request_at_a_time: bool) -> Self {
        let moto_server = venv_program(".venv", "moto_server");
        let python = venv_program(".venv", "python3");
        let port = free_port();
        let mut command = Command::new(python);
        command
            .arg("-c")
            .arg(RUN_WHILE_PARENT_LIVES)
            .arg(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if one_request_at_a_time {
            command.env("USERPROV_MOTO_ONE_REQUEST_AT_A_TIME", "1");
        }
        let process = PeerProcess::start("moto", command, port, Duration::from_secs(60));
        Self { process }
    }

    /// One server for the whole test binary, started on first use. Tests sharing it keep
    /// apart by giving their queues, tables and secrets unique names.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.process.url()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// An SDK configuration pointed at this server: region us-east-1, static test credentials.
    /// Build it inside the test's runtime: its clients keep connections on that runtime.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(userprov_aws::http_client())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }
}
