//! oidc-provider (npm): a real OAuth2 / OpenID Connect authorization server for the credential
//! tests. `infra/scripts/install-test-peers.sh` installs it into `.tools/oidc-provider`; the
//! launcher `tests/peers/oidc-provider/server.mjs` configures its clients.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{PeerProcess, free_port, repo_root};

pub const CLIENT_ID: &str = "scim-client";
pub const CLIENT_SECRET: &str = "scim-secret";
/// A public client: refresh tokens without a client secret.
pub const PUBLIC_CLIENT_ID: &str = "public-client";
/// The credentials a resource server (the SCIM target's gate) introspects tokens with.
pub const RESOURCE_SERVER_ID: &str = "resource-server";
pub const RESOURCE_SERVER_SECRET: &str = "rs-secret";

pub struct OidcProvider {
    process: PeerProcess,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts a server whose access tokens live `access_token_ttl`.
    pub fn start(access_token_ttl: Duration) -> Self {
        let module = std::env::var_os("USERPROV_TOOLS_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(repo_root)
            .join(".tools/oidc-provider/node_modules/oidc-provider");
        assert!(
            module.join("package.json").exists(),
            "{} is missing. Install the test peers with `bash infra/scripts/install-test-peers.sh` \
             (it runs `npm ci` for tests/peers/oidc-provider into .tools/oidc-provider; it needs node and npm).",
            module.display()
        );
        let port = free_port();
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("tests/peers/oidc-provider/server.mjs"))
            .arg(&module)
            .arg(port.to_string())
            .arg(access_token_ttl.as_secs().to_string());
        let process = PeerProcess::start("oidc-provider", command, port, Duration::from_secs(30));
        Self {
            process,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.url())
    }

    /// A refresh token for `client_id`, as the app's OAuth consent would give an admin.
    pub async fn consent(&self, client_id: &str) -> String {
        let answer: serde_json::Value = self
            .http
            .post(format!("{}/test/refresh-token", self.url()))
            .query(&[("client_id", client_id)])
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["refresh_token"].as_str().unwrap().to_owned()
    }

    /// Revokes a token at the server's revocation endpoint (RFC 7009), as an admin
    /// disconnecting the app would.
    pub async fn revoke(&self, token: &str, client_id: &str, client_secret: Option<&str>) {
        let mut request = self
            .http
            .post(format!("{}/token/revocation", self.url()))
            .form(&[("token", token), ("client_id", client_id)]);
        if let Some(secret) = client_secret {
            request = self
                .http
                .post(format!("{}/token/revocation", self.url()))
                .basic_auth(client_id, Some(secret))
                .form(&[("token", token)]);
        }
        let status = request.send().await.unwrap().status();
        assert!(status.is_success(), "revocation answered {status}");
    }

    /// Whether the server considers `token` an active access token (RFC 7662).
    pub async fn is_active(&self, token: &str) -> bool {
        introspect(&self.http, &self.introspection_url(), token).await
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Asks an introspection endpoint whether `token` is active.
pub async fn introspect(http: &reqwest::Client, url: &str, token: &str) -> bool {
    let answer: serde_json::Value = http
        .post(url)
        .basic_auth(RESOURCE_SERVER_ID, Some(RESOURCE_SERVER_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["active"] == serde_json::Value::Bool(true)
}
