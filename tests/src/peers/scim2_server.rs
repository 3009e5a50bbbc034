//! scim2-server: a strict SCIM 2.0 service provider, the SCIM target of the suites.

use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{PeerProcess, free_port, venv_program};

/// A running scim2-server with a static bearer token. It serves a store per tenant, made on
/// first use: give each test its own tenant with [`Scim2Server::tenant_url`].
pub struct Scim2Server {
    process: PeerProcess,
    pub token: String,
}

impl Scim2Server {
    /// Starts a server of its own on a free loopback port.
    pub fn start() -> Self {
        let port = free_port();
        let token = format!("scim2-test-token-{}-{port}", std::process::id());
        let mut command = Command::new(venv_program(".venv", "scim2-server"));
        command.args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--bearer-token",
            &token,
        ]);
        command.arg("--dynamic-tenants");
        let process = PeerProcess::start("scim2-server", command, port, Duration::from_secs(60));
        Self { process, token }
    }

    /// The server the tests running at the moment share; it stops when the last of them drops
    /// its handle (a static would outlive the test binary's children).
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<Scim2Server>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(server) = slot.upgrade() {
            return server;
        }
        let server = Arc::new(Self::start());
        *slot = Arc::downgrade(&server);
        server
    }

    /// The SCIM base URL of the tenant `default`. With tenants enabled the server has no
    /// tenant-less `/v2`.
    pub fn base_url(&self) -> String {
        self.tenant_url("default")
    }

    /// The SCIM base URL of a tenant with its own users, created on first request.
    pub fn tenant_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2", self.process.url())
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// What the server printed so far (one line per request).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
