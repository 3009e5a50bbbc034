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
    /// Holds the ServiceProviderConfig file of [`Scim2Server::start_announcing`].
    _config_dir: Option<tempfile::TempDir>,
}

/// A ServiceProviderConfig like a constrained SaaS target's: no PATCH, no filtering, ETags,
/// cursor paging only (RFC 9865), and at most `page_size` resources a page.
pub fn constrained_config(page_size: usize) -> serde_json::Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": false},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": false, "maxResults": page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [],
        "pagination": {
            "cursor": true,
            "index": false,
            "defaultPaginationMethod": "cursor",
            "defaultPageSize": page_size,
            "maxPageSize": page_size,
            "cursorTimeout": 3600
        }
    })
}

impl Scim2Server {
    /// Starts a server of its own on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server of its own that announces (and keeps to) this ServiceProviderConfig.
    pub fn start_announcing(config: &serde_json::Value) -> Self {
        Self::start_with(Some(config))
    }

    fn start_with(config: Option<&serde_json::Value>) -> Self {
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
        let mut config_dir = None;
        if let Some(config) = config {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("service-provider-config.json");
            std::fs::write(&path, config.to_string()).expect("the config file is written");
            command.arg("--service-provider-config").arg(&path);
            // Cursors (RFC 9865) are sealed with the server's secret.
            command.env("SCIM2_SERVER_SECRET", format!("cursor-secret-{port}"));
            config_dir = Some(dir);
        }
        let process = PeerProcess::start("scim2-server", command, port, Duration::from_secs(60));
        Self {
            process,
            token,
            _config_dir: config_dir,
        }
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
