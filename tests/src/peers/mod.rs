//! Real peers as child processes.

pub mod json_server;
pub mod ministack;
pub mod moto;
pub mod oidc_provider;
pub mod scim2_server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The path of a program installed in one of the project's virtual environments
/// (`.venv`, `.venv-ministack`, `.venv-sam`), or a panic that says how to install it.
pub fn venv_program(venv: &str, program: &str) -> PathBuf {
    let dir = std::env::var_os("USERPROV_VENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(repo_root);
    let path = dir.join(venv).join("bin").join(program);
    assert!(
        path.exists(),
        "{} is missing. Install the test peers with `bash infra/scripts/install-test-peers.sh` \
         (it creates {venv}/ at the repository root with pinned versions).",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1, never one handed out before in this process. The port is
/// released before the peer binds it, so the kernel may offer it again meanwhile: two peers
/// started at once by parallel tests would then share it, one failing to bind while the other's
/// open port passes for its own, until that other test stops its peer.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A child process that is killed when dropped.
pub struct PeerProcess {
    pub name: String,
    pub port: u16,
    child: Child,
    log_path: PathBuf,
}

impl PeerProcess {
    /// Starts `command` (stdout and stderr to a log file) and waits until `port` accepts
    /// connections.
    pub fn start(name: &str, mut command: Command, port: u16, ready_within: Duration) -> Self {
        let log_dir = std::env::temp_dir().join("userprov-peers");
        std::fs::create_dir_all(&log_dir).expect("create peer log dir");
        let log_path = log_dir.join(format!("{name}-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("create peer log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut peer = Self {
            name: name.to_owned(),
            port,
            child,
            log_path,
        };
        peer.wait_for_port(ready_within);
        peer
    }

    fn wait_for_port(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not listen on port {} within {within:?}; its log:\n{}",
                    self.name,
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
