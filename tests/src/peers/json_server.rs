//! json-server (npm): a plain REST/JSON user API for the REST connector tests.
//! `infra/scripts/install-test-peers.sh` installs it into `.tools/json-server`; the launcher
//! `tests/peers/json-server/server.js` adds a bearer token and unique email addresses.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{PeerProcess, free_port, repo_root};

pub struct JsonServer {
    process: PeerProcess,
    pub token: String,
}

impl JsonServer {
    /// Starts a server with an empty `users` collection.
    pub fn start() -> Self {
        let module = std::env::var_os("USERPROV_TOOLS_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(repo_root)
            .join(".tools/json-server/node_modules/json-server");
        assert!(
            module.join("package.json").exists(),
            "{} is missing. Install the test peers with `bash infra/scripts/install-test-peers.sh .tools/json-server` \
             (it runs `npm ci` for tests/peers/json-server into .tools/json-server; it needs node and npm).",
            module.display()
        );
        let port = free_port();
        let token = format!("rest-token-{port}");
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("tests/peers/json-server/server.js"))
            .arg(&module)
            .arg(port.to_string())
            .arg(&token);
        let process = PeerProcess::start("json-server", command, port, Duration::from_secs(30));
        Self { process, token }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Every user, read straight from the server (for assertions).
    pub async fn users(&self) -> Vec<Value> {
        let answer = self.get_json("/users").await;
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Every group as (name, its member ids sorted), sorted by name (for assertions).
    pub async fn memberships(&self) -> Vec<(String, Vec<String>)> {
        let answer = self.get_json("/groups").await;
        let mut groups: Vec<(String, Vec<String>)> = answer
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|g| {
                let mut members: Vec<String> = g["member_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_owned())
                    .collect();
                members.sort();
                (g["name"].as_str().unwrap().to_owned(), members)
            })
            .collect();
        groups.sort();
        groups
    }

    /// A GET of `path` (e.g. `/groups?name=sales`), as an admin of the app would make it.
    pub async fn get_json(&self, path: &str) -> Value {
        self.answer_of(reqwest::Client::new().get(format!("{}{path}", self.url())))
            .await
    }

    /// A POST to `path` below the base URL (e.g. `users`), as an admin of the app would make
    /// it; returns the answer.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.answer_of(
            reqwest::Client::new()
                .post(format!("{}/{path}", self.url()))
                .json(body),
        )
        .await
    }

    /// Sends `request` with the server's token and returns its JSON answer, which must be a
    /// success.
    async fn answer_of(&self, request: reqwest::RequestBuilder) -> Value {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The users with this email (exactly).
    pub async fn users_with_email(&self, email: &str) -> Vec<Value> {
        self.users()
            .await
            .into_iter()
            .filter(|u| u["email"] == email)
            .collect()
    }
}

/// `[apps.rest]` for json-server's `/users`: PUT replaces, PATCH changes the active flag.
pub const REST_SETTINGS: &str = r#"
[apps.rest]
id_pointer = "/id"
active = { pointer = "/active", active = true, inactive = false }
create = { method = "POST", path = "/users" }
find = { path = "/users?{attribute}={value}" }
get = { method = "GET", path = "/users/{id}" }
update = { method = "PUT", path = "/users/{id}" }
deactivate = { method = "PATCH", path = "/users/{id}", body = "active" }
reactivate = { method = "PATCH", path = "/users/{id}", body = "active" }
delete = { method = "DELETE", path = "/users/{id}" }
"#;

/// `[apps.rest.groups]` for the launcher's membership calls, one member per request:
/// `POST /groups/{group_id}/members` with `{"user_id": ...}`, `DELETE .../members/{member_id}`.
/// Append it to [`REST_SETTINGS`].
pub const REST_GROUPS_ONE_BY_ONE: &str = r#"
[apps.rest.groups]
find = { path = "/groups?name={name}" }
create = { method = "POST", path = "/groups" }
add_members = { method = "POST", path = "/groups/{group_id}/members", member_pointer = "/user_id" }
remove_members = { method = "DELETE", path = "/groups/{group_id}/members/{member_id}" }
"#;

/// `[apps.rest.groups]` for the launcher's list calls: `POST` and `DELETE` on
/// `/groups/{group_id}/members` with `{"user_ids": [...]}`. Append it to [`REST_SETTINGS`].
pub const REST_GROUPS_AS_LISTS: &str = r#"
[apps.rest.groups]
find = { path = "/groups?name={name}" }
create = { method = "POST", path = "/groups" }
add_members = { method = "POST", path = "/groups/{group_id}/members", members_pointer = "/user_ids" }
remove_members = { method = "DELETE", path = "/groups/{group_id}/members", members_pointer = "/user_ids" }
"#;
