//! Operating userprov: the deactivation guard holds mass deactivations until an admin releases
//! or discards them, `userprov redrive` brings dead letters back, `userprov resync` provisions
//! one user on demand. The stack runs in-process over a data directory; the admin commands run
//! as the real `userprov` process over the same directory once the stack is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use userprov_cli::stack::{RunningStack, StackOptions};
use userprov_tests::chaos::userprov_binary;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{Notified, ORG_ID, config_for, outbound_message, scim_users};

const ANA: &str = "0058a00000LmN2pAAF";
const BEN: &str = "0058a00000LmN3qAAF";
const CLEO: &str = "0058a00000LmN4rAAF";
const DAN: &str = "0058a00000LmN5sAAF";

struct Site {
    dir: tempfile::TempDir,
    scim: std::sync::Arc<Scim2Server>,
    tenant: String,
}

impl Site {
    fn new(app_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scim = Scim2Server::shared();
        let tenant = format!("ops-{}", ulid::Ulid::new().to_string().to_lowercase());
        let site = Self { dir, scim, tenant };
        site.write_config(app_extra);
        let secret = site.data_dir().join("secrets/userprov/scim");
        std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
        std::fs::write(secret, &site.scim.token).unwrap();
        site
    }

    fn write_config(&self, app_extra: &str) {
        std::fs::write(
            self.config(),
            config_for(&self.scim.tenant_url(&self.tenant), app_extra, ""),
        )
        .unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("userprov.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start(&self) -> RunningStack {
        RunningStack::start(StackOptions {
            bind: ([127, 0, 0, 1], 0).into(),
            config: Some(self.config()),
            data_dir: self.data_dir(),
            mock_target: false,
            workers: 2,
        })
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"))
    }

    async fn account(&self, username: &str) -> Value {
        let mut found = scim_users(
            &self.scim.tenant_url(&self.tenant),
            &self.scim.token,
            Some(username),
        )
        .await;
        assert_eq!(found.len(), 1, "one account for {username}: {found:?}");
        found.remove(0)
    }

    /// Runs `userprov ARGS --data-dir DIR`; returns (success, stdout + stderr).
    fn userprov(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(userprov_binary())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }
}

/// One notification; `minute` orders the changes (SystemModstamp).
fn change(
    notification: &str,
    user_id: &str,
    name: &str,
    active: bool,
    minute: u32,
    title: &str,
) -> String {
    let stamp = format!("2025-03-01T10:{minute:02}:00.000Z");
    let username = format!("{name}@acme.example");
    let active = active.to_string();
    let fields = [
        ("Username", username.as_str()),
        ("FirstName", name),
        ("LastName", "Tester"),
        ("Email", username.as_str()),
        ("Title", title),
        ("IsActive", active.as_str()),
        ("SystemModstamp", stamp.as_str()),
    ];
    outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: notification,
            user_id,
            fields: &fields,
        }],
    )
}

async fn send(stack: &RunningStack, body: String) {
    let response = reqwest::Client::new()
        .post(stack.webhook_url())
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(
        stack.wait_idle(Duration::from_secs(60)).await,
        "the worker did not become idle"
    );
}

async fn statuses(stack: &RunningStack, user: &str) -> Vec<(String, String)> {
    let body: Value = reqwest::get(format!("{}/logs?user={user}&limit=50", stack.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut entries: Vec<(String, String)> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    entries.reverse();
    entries
}

fn hold_id_of(listing: &str, username: &str) -> String {
    listing
        .lines()
        .find(|line| line.contains(username))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no hold for {username} in:\n{listing}"))
        .to_owned()
}

#[tokio::test]
async fn deactivations_beyond_the_guard_are_held_until_an_admin_releases_or_discards_them() {
    let site = Site::new("[apps.deactivation_guard]\nmax = 1\nwindow_secs = 3600\n");
    let stack = site.start().await;
    for (i, (id, name)) in [(ANA, "ana"), (BEN, "ben"), (CLEO, "cleo"), (DAN, "dan")]
        .into_iter()
        .enumerate()
    {
        send(
            &stack,
            change(
                &format!("04l8a00000Dq4R{i}AAJ"),
                id,
                name,
                true,
                0,
                "Engineer",
            ),
        )
        .await;
    }
    // Four leavers: the first is applied, the other three exceed the guard.
    for (i, (id, name)) in [(ANA, "ana"), (BEN, "ben"), (CLEO, "cleo"), (DAN, "dan")]
        .into_iter()
        .enumerate()
    {
        send(
            &stack,
            change(
                &format!("04l8a00000Dq4S{i}AAJ"),
                id,
                name,
                false,
                10,
                "Engineer",
            ),
        )
        .await;
    }
    // Ben comes back before anyone looked at the holds.
    send(
        &stack,
        change("04l8a00000Dq4T0AAJ", BEN, "ben", true, 20, "Engineer"),
    )
    .await;

    assert_eq!(
        statuses(&stack, CLEO).await,
        vec![
            ("create".into(), "success".into()),
            ("deactivate".into(), "held".into())
        ]
    );
    assert_eq!(site.account("ana@acme.example").await["active"], false);
    assert_eq!(site.account("cleo@acme.example").await["active"], true);
    stack.shutdown().await;

    let (ok, listing) = site.userprov(&["holds", "list", "--app", "scim"]);
    assert!(ok, "{listing}");
    for name in ["ben@", "cleo@", "dan@"] {
        assert!(listing.contains(name), "{name} is held:\n{listing}");
    }
    assert!(!listing.contains("ana@"), "{listing}");

    let (ok, text) = site.userprov(&["holds", "discard", &hold_id_of(&listing, "dan@")]);
    assert!(ok, "{text}");
    let (ok, text) = site.userprov(&["holds", "release", "--all", "--app", "scim"]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("released").count(), 2, "{text}");
    let (ok, text) = site.userprov(&["holds", "list"]);
    assert!(ok && text.contains("no held jobs"), "{text}");

    let stack = site.start().await;
    assert!(stack.wait_idle(Duration::from_secs(60)).await);
    assert_eq!(
        site.account("cleo@acme.example").await["active"],
        false,
        "a released hold is applied"
    );
    assert_eq!(
        site.account("ben@acme.example").await["active"],
        true,
        "a released hold is re-planned: Ben came back meanwhile"
    );
    assert_eq!(
        statuses(&stack, BEN).await.last().unwrap(),
        &("skip".to_owned(), "skipped".to_owned()),
        "the stale deactivation is skipped"
    );
    assert_eq!(
        site.account("dan@acme.example").await["active"],
        true,
        "a discarded hold is never applied"
    );
    assert_eq!(
        statuses(&stack, DAN).await.last().unwrap(),
        &("deactivate".to_owned(), "skipped".to_owned())
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn redrive_lists_first_moves_dead_letters_back_and_reports_unreadable_ones() {
    let site = Site::new("");
    let stack = site.start().await;
    // No Email: the mapping requires it, so the job fails and is dead-lettered.
    let fields = [
        ("Username", "eve@acme.example"),
        ("LastName", "Tester"),
        ("IsActive", "true"),
        ("SystemModstamp", "2025-03-01T10:00:00.000Z"),
    ];
    send(
        &stack,
        outbound_message(
            ORG_ID,
            &[Notified {
                notification_id: "04l8a00000Dq5R0AAJ",
                user_id: ANA,
                fields: &fields,
            }],
        ),
    )
    .await;
    // A message of a job format this version does not read.
    stack
        .queue
        .requeue(
            "scim.0058a00000LmN9zAAF",
            r#"{"v":2,"job":"from the future"}"#,
        )
        .await
        .unwrap();
    assert!(stack.wait_idle(Duration::from_secs(60)).await);
    assert_eq!(stack.queue.depth().await.unwrap().dead_lettered, 2);
    // The admin finds the failure in the log, and redrives by its log id.
    let failed: Value = reqwest::get(format!("{}/logs?status=failed", stack.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed_id = failed["entries"][0]["id"].as_str().unwrap().to_owned();
    stack.shutdown().await;

    let (ok, text) = site.userprov(&["redrive", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(text.contains("eve@acme.example"), "{text}");
    assert!(
        text.contains("1 dead letter(s) are not jobs this version reads")
            && text.contains("format version 2"),
        "{text}"
    );
    assert!(text.contains("nothing moved"), "{text}");
    let (ok, text) = site.userprov(&["redrive", "--user", BEN]);
    assert!(ok && text.contains("moved 0 message(s)"), "{text}");

    // The mapping is fixed (Email no longer required), then the dead letter is redriven.
    std::fs::write(
        site.config(),
        config_for(&site.scim.tenant_url(&site.tenant), "", "").replace(
            r#"{ from = "Email", required = true }"#,
            r#"{ from = "Email" }"#,
        ),
    )
    .unwrap();
    let (ok, text) = site.userprov(&[
        "redrive",
        "--dry-run",
        "--app",
        "scim",
        "--user",
        "eve@acme.example",
    ]);
    assert!(ok && text.contains("dry run: 1 message(s)"), "{text}");
    let (ok, text) = site.userprov(&["redrive", "--log-id", "01J0000000000000000000000Z"]);
    assert!(!ok && text.contains("no log entry"), "{text}");
    let (ok, text) = site.userprov(&["redrive", "--log-id", &failed_id]);
    assert!(ok && text.contains("moved 1 message(s)"), "{text}");

    let stack = site.start().await;
    assert!(stack.wait_idle(Duration::from_secs(60)).await);
    assert_eq!(site.account("eve@acme.example").await["active"], true);
    assert_eq!(
        stack.queue.depth().await.unwrap().dead_lettered,
        1,
        "the unreadable message stays in the dead-letter queue"
    );
    stack.shutdown().await;
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

#[tokio::test]
async fn resync_pushes_the_last_snapshot_again_or_a_supplied_one_printing_each_step() {
    let site = Site::new("");
    let stack = site.start().await;
    send(
        &stack,
        change("04l8a00000Dq6R0AAJ", CLEO, "cleo", true, 0, "Engineer"),
    )
    .await;
    stack.shutdown().await;

    // Someone changed the account in the target by hand.
    let account = site.account("cleo@acme.example").await;
    let mut drifted = account.clone();
    drifted["title"] = Value::from("Hand-edited");
    let http = reqwest::Client::new();
    let url = format!(
        "{}/Users/{}",
        site.scim.tenant_url(&site.tenant),
        account["id"].as_str().unwrap()
    );
    let put = http
        .put(&url)
        .bearer_auth(&site.scim.token)
        .json(&drifted)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());

    let config = site.config();
    let config = config.to_str().unwrap();
    let (ok, text) = site.userprov(&[
        "resync", "--config", config, "--app", "scim", "--user", CLEO,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("1. account link: target id"), "{text}");
    assert!(text.contains("2. snapshot: the last one applied"), "{text}");
    assert!(text.contains("3. plan: update"), "{text}");
    assert!(text.contains("4. update success, HTTP 200"), "{text}");
    assert_eq!(site.account("cleo@acme.example").await["title"], "Engineer");

    let snapshot = write_json(
        site.dir.path(),
        "cleo.json",
        &serde_json::json!({
            "Id": CLEO, "Username": "cleo@acme.example", "FirstName": "cleo", "LastName": "Tester",
            "Email": "cleo@acme.example", "Title": "Team Lead", "IsActive": true
        }),
    );
    let (ok, text) = site.userprov(&[
        "resync",
        "--config",
        config,
        "--app",
        "scim",
        "--user",
        CLEO,
        "--snapshot",
        snapshot.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("2. snapshot: from"), "{text}");
    assert_eq!(
        site.account("cleo@acme.example").await["title"],
        "Team Lead"
    );

    let (ok, text) = site.userprov(&["resync", "--config", config, "--app", "scim", "--user", DAN]);
    assert!(
        !ok && text.contains("give one with --snapshot FILE"),
        "{text}"
    );
}
