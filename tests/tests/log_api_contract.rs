//! The log API against its OpenAPI document: schemathesis (from `.venv-schemathesis`) drives a
//! real `userprov serve` whose log holds entries written through the real pipeline (Outbound
//! Messages → worker → scim2-server), and must find no server error and no schema violation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use userprov_tests::chaos::userprov_binary;
use userprov_tests::peers::{PeerProcess, free_port};

use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::peers::{repo_root, venv_program};
use userprov_tests::pipeline::{Notified, ORG_ID, TestStack, config_for, outbound_message};

const JOINERS: &str = include_str!("../../infra/events/outbound/01-joiners.xml");
const MOVER: &str = include_str!("../../infra/events/outbound/02-mover.xml");
const LEAVER: &str = include_str!("../../infra/events/outbound/03-leaver.xml");

/// A stack with successes, an update, a deactivation and a failure (no LastName) in its log.
async fn seeded_stack(tenant: &str) -> TestStack {
    let scim = Scim2Server::shared();
    let stack = TestStack::start(
        &config_for(&scim.tenant_url(tenant), "", ""),
        &[("userprov/scim", &scim.token)],
    )
    .await;
    let without_last_name = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq9ZzAAJ",
            user_id: "0058a00000LmN9zAAF",
            fields: &[
                ("Username", "nameless@acme.example"),
                ("Email", "nameless@acme.example"),
                ("IsActive", "true"),
            ],
        }],
    );
    for body in [JOINERS, MOVER, LEAVER, without_last_name.as_str()] {
        let (status, answer) = stack.post_outbound(body).await;
        assert_eq!(status, 200, "the webhook answered {answer}");
        stack.wait_idle().await;
    }
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let stack = seeded_stack("contract").await;
    let entries = stack.log_entries("").await;
    assert!(entries.len() >= 4, "the log is seeded: {entries:?}");
    assert!(entries.iter().any(|e| e["status"] == "failed"));

    let base = stack.stack.base_url();
    let st = venv_program(".venv-schemathesis", "st");
    let root = repo_root();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(&root)
            .env("NO_COLOR", "1")
            .args(["--config-file", "infra/openapi/schemathesis.toml", "run"])
            .arg(format!("{base}/openapi.json"))
            .args(["--url", &base])
            .args(["--checks", "all", "--max-examples", "30", "--workers", "1"])
            .args(["--phases", "examples,coverage,fuzzing", "--seed", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("Tested: 7"), "{report}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_reads_on_under_its_own_filters_only() {
    let stack = seeded_stack("cursors").await;
    let (status, first) = stack.get_json("/logs?app=scim&limit=1").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"].as_str().expect("more than one entry");

    let (status, second) = stack
        .get_json(&format!("/logs?app=scim&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["entries"][0]["id"], first["entries"][0]["id"]);

    // The same cursor with other filters (none, more, another app) is refused.
    for query in [
        format!("/logs?limit=1&cursor={cursor}"),
        format!("/logs?app=scim&status=success&limit=1&cursor={cursor}"),
        format!("/logs?app=other&limit=1&cursor={cursor}"),
    ] {
        let (status, body) = stack.get_json(&query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_cursor", "{query}: {body}");
    }
    // A cursor altered by one character is refused.
    let mut forged = cursor.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = stack
        .get_json(&format!("/logs?app=scim&limit=1&cursor={forged}"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, "bad_cursor".into())
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_configured_the_log_api_answers_only_callers_that_carry_it() {
    let scim = Scim2Server::shared();
    let config = config_for(&scim.tenant_url("token"), "", "")
        + "\n[log_api]\ntoken_secret = \"userprov/log-api-token\"\n";
    let token = "log-api-token-4f1c9a";
    let stack = TestStack::start(
        &config,
        &[
            ("userprov/scim", &scim.token),
            ("userprov/log-api-token", token),
        ],
    )
    .await;
    let base = stack.stack.base_url();
    for path in ["/logs", "/accounts", "/stats", "/openapi.json"] {
        let bare = stack
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 401, "{path} without the token");
        let wrong = stack
            .http
            .get(format!("{base}{path}"))
            .bearer_auth("log-api-token-4f1c9b")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with another token");
        let right = stack
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path} with the token");
    }
    let health = stack
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness needs no token");
    stack.shutdown().await;
}

/// Runs the real `userprov serve` (debug tracing, JSON lines) through joiners, a mover, a
/// leaver and a failure, then reads every log API answer and every line the process printed:
/// no configured secret appears anywhere, except the webhook token in the one banner line that
/// hands the operator the Outbound Message URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_api_answer_and_no_log_line_contains_a_configured_secret() {
    let scim = Scim2Server::shared();
    let webhook_token = "webhook-token-7d1e0b5a";
    let events_key = "events-key-93c2aa10";
    let api_token = "log-api-token-c0ffee11";
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&scim.tenant_url("leaks"), "", "")
        + "\n[log_api]\ntoken_secret = \"userprov/log-api-token\"\n";
    std::fs::write(dir.path().join("userprov.toml"), config).unwrap();
    for (name, value) in [
        ("userprov/scim", scim.token.as_str()),
        ("userprov/webhook-token", webhook_token),
        ("userprov/events-key", events_key),
        ("userprov/log-api-token", api_token),
    ] {
        let path = dir.path().join("data/secrets").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value).unwrap();
    }
    let port = free_port();
    let mut command = Command::new(userprov_binary());
    command
        .arg("--log-format")
        .arg("json")
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("userprov.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--port", &port.to_string(), "--workers", "2"])
        .env("RUST_LOG", "debug");
    let serve = PeerProcess::start(
        "userprov-serve-leaks",
        command,
        port,
        Duration::from_secs(120),
    );
    let base = serve.url();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(api_token);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    let without_last_name = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq9ZzAAJ",
            user_id: "0058a00000LmN9zAAF",
            fields: &[("Username", "nameless@acme.example"), ("IsActive", "true")],
        }],
    );
    for body in [JOINERS, MOVER, LEAVER, without_last_name.as_str()] {
        let answer = http
            .post(format!("{base}/salesforce/outbound/{webhook_token}"))
            .header("content-type", "text/xml; charset=utf-8")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "the webhook refused a message");
        // Wait for the worker, so each message is applied in order.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let depth: Value = serde_json::from_str(&get("/queue".into()).await).unwrap();
            if depth["visible"] == 0 && depth["in_flight"] == 0 && depth["delayed"] == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not finish: {depth}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let page: Value = serde_json::from_str(&get("/logs?limit=500".into()).await).unwrap();
    let entries = page["entries"].as_array().unwrap().clone();
    assert!(entries.len() >= 6, "{entries:?}");
    assert!(
        entries.iter().any(|e| e["status"] == "failed"),
        "{entries:?}"
    );

    let secrets = [scim.token.as_str(), webhook_token, events_key, api_token];
    let mut paths: Vec<String> = [
        "/",
        "/dashboard.js",
        "/logs?limit=500",
        "/accounts",
        "/stats",
        "/openapi.json",
        "/healthz",
    ]
    .map(str::to_owned)
    .to_vec();
    for entry in &entries {
        paths.push(format!("/logs/{}", entry["id"].as_str().unwrap()));
        paths.push(format!(
            "/accounts/scim/{}",
            entry["user_id"].as_str().unwrap()
        ));
    }
    let mut scanned = 0;
    for path in &paths {
        let body = get(path.clone()).await;
        scanned += body.len();
        for secret in secrets {
            assert!(!body.contains(secret), "{path} shows a configured secret");
        }
    }
    assert!(scanned > 1000, "the answers were read ({scanned} bytes)");

    // Every line the process printed: the debug tracing (JSON) and the start banner.
    let printed = serve.log();
    let lines: Vec<&str> = printed.lines().collect();
    let tracing_lines = lines.iter().filter(|l| l.starts_with('{')).count();
    assert!(
        tracing_lines > 20 && printed.contains("\"level\":\"DEBUG\""),
        "debug tracing was captured ({tracing_lines} lines)"
    );
    assert!(
        printed.contains("\"correlation_id\""),
        "job lines carry their correlation id"
    );
    let outbound_url_line =
        format!("  Outbound Message URL: {base}/salesforce/outbound/{webhook_token}");
    for (number, line) in lines.iter().enumerate() {
        if *line == outbound_url_line {
            continue; // the operator is handed the URL to paste into Salesforce
        }
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "line {} of userprov serve's output shows a configured secret: {line}",
                number + 1
            );
        }
    }
    assert!(
        lines.contains(&outbound_url_line.as_str()),
        "the banner was read"
    );
}
