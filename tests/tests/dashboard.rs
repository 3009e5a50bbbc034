//! The failures dashboard (`GET /` of the log API) in headless Chromium, clicked through with
//! real mouse events over the DevTools protocol, against a real `userprov serve` stack whose
//! log was written through the pipeline (Outbound Messages → worker → scim2-server), with the
//! log API's bearer token required.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use userprov_tests::browser::Browser;
use userprov_tests::peers::repo_root;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{Notified, ORG_ID, TestStack, config_for, outbound_message};

const JOINERS: &str = include_str!("../../infra/events/outbound/01-joiners.xml");
const MOVER: &str = include_str!("../../infra/events/outbound/02-mover.xml");
const LEAVER: &str = include_str!("../../infra/events/outbound/03-leaver.xml");
const TOKEN: &str = "dashboard-token-5e0c2b";

/// Joiners, a mover (an update), a leaver held by the deactivation guard and a failure (no
/// LastName).
async fn seeded_stack() -> TestStack {
    let scim = Scim2Server::shared();
    let config = config_for(
        &scim.tenant_url("dashboard"),
        "[apps.deactivation_guard]\nmax = 0\nwindow_secs = 3600\n",
        "",
    ) + "\n[log_api]\ntoken_secret = \"userprov/log-api-token\"\n";
    let stack = TestStack::start(
        &config,
        &[
            ("userprov/scim", &scim.token),
            ("userprov/log-api-token", TOKEN),
        ],
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

/// `[status, user]` of each row of a list section.
async fn rows(browser: &mut Browser, section: &str) -> Vec<(String, String)> {
    let rows = browser
        .eval(&format!(
            "[...document.querySelectorAll('#{section} tr.entry')].map(r => \
             [r.dataset.status, r.querySelector('td.user').innerText])"
        ))
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_finds_a_failure_and_reads_what_changed_in_the_dashboard() {
    let stack = seeded_stack().await;
    let base = stack.stack.base_url();

    // The page is served with a policy that allows only its own scripts, styles and API calls.
    let page = stack.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));

    let mut browser = Browser::start(1400, 1000).await;
    browser.navigate(&format!("{base}/")).await;

    // Without the token nothing is listed; the page asks for it.
    browser
        .wait_for("!document.getElementById('auth').hidden")
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('tr.entry').length")
            .await,
        0
    );
    browser.type_into("#token", TOKEN).await;
    browser.click("#use-token").await;
    browser
        .wait_for("document.body.dataset.loaded === 'true'")
        .await;

    // Failures and holds come first, then the recent activity.
    let sections = browser
        .eval("[...document.querySelectorAll('#lists > section')].map(s => s.id)")
        .await;
    assert_eq!(sections, serde_json::json!(["attention", "recent"]));
    let attention = rows(&mut browser, "attention").await;
    assert!(
        attention.contains(&("failed".into(), "nameless@acme.example".into())),
        "{attention:?}"
    );
    assert!(
        attention.contains(&("held".into(), "james.okafor@acme.example".into())),
        "{attention:?}"
    );
    assert!(
        attention
            .iter()
            .all(|(status, _)| ["failed", "dead_lettered", "held"].contains(&status.as_str())),
        "{attention:?}"
    );
    assert!(browser.text("#summary").await.contains("1 failed"));

    // Filter to failures, then to one user.
    browser
        .click("#status-filter button[data-status=\"failed\"]")
        .await;
    browser
        .wait_for("document.querySelector('#results h2')?.innerText.startsWith('Status failed')")
        .await;
    let failures = rows(&mut browser, "results").await;
    assert!(
        !failures.is_empty() && failures.iter().all(|(s, _)| s == "failed"),
        "{failures:?}"
    );
    browser.type_into("#user", "nameless@acme.example").await;
    browser.click("#apply").await;
    browser
        .wait_for("location.hash.includes('user=nameless')")
        .await;
    browser
        .wait_for("document.querySelectorAll('#results tr.entry').length === 1")
        .await;

    // Open the failure: the error says what is missing.
    browser.click("#results tr.entry").await;
    browser
        .wait_for("!document.getElementById('detail').hidden")
        .await;
    let error = browser.text("#detail-error").await;
    assert!(error.contains("LastName"), "{error}");
    assert!(browser.text("#detail-title").await.contains("failed"));

    // The mover's update: the changed title with its old and new value, and the request.
    browser
        .click("#status-filter button[data-status=\"all\"]")
        .await;
    browser
        .type_into("#user", "marta.fernandes@acme.example")
        .await;
    browser.click("#apply").await;
    browser
        .wait_for("document.querySelector('#results tr.entry[data-operation=\"update\"]')")
        .await;
    browser
        .click("#results tr.entry[data-operation=\"update\"]")
        .await;
    browser
        .wait_for("document.getElementById('detail-title').innerText.startsWith('update')")
        .await;
    let changes = browser
        .eval(
            "[...document.querySelectorAll('#detail-changes tbody tr')].map(r => \
             [...r.cells].map(c => c.innerText))",
        )
        .await;
    assert!(
        changes.as_array().unwrap().contains(&serde_json::json!([
            "title",
            "Staff Engineer",
            "Principal Engineer"
        ])),
        "{changes}"
    );
    let request = browser.text("#detail-request").await;
    assert!(
        request.contains("\"userName\": \"marta.fernandes@acme.example\""),
        "{request}"
    );

    // Back to failures and holds with the detail open: the picture for the README.
    browser.type_into("#user", "").await;
    browser
        .click("#status-filter button[data-status=\"attention\"]")
        .await;
    browser
        .wait_for("document.querySelector('#attention') && document.querySelector('#recent')")
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let shot = if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        repo_root().join("docs/images/dashboard.png")
    } else {
        std::env::temp_dir().join("userprov-dashboard.png")
    };
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, &png).unwrap();

    // Only the API's 401 answers before the token was given; no script error, no CSP refusal.
    let unexpected: Vec<&String> = browser
        .errors
        .iter()
        .filter(|e| !(e.starts_with("log (network)") && e.contains("401")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the page reported errors (a CSP refusal shows here): {unexpected:?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_over_more_than_31_days_are_refused_with_a_clear_message() {
    let scim = Scim2Server::shared();
    let stack = TestStack::start(
        &config_for(&scim.tenant_url("stats-range"), "", ""),
        &[("userprov/scim", &scim.token)],
    )
    .await;
    let (status, body) = stack
        .get_json("/stats?since=2025-01-01T00:00:00Z&until=2025-02-01T00:00:01Z")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "range_too_long");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("31 days"), "{message}");
    let (status, body): (u16, Value) = stack
        .get_json("/stats?since=2025-01-01T00:00:00Z&until=2025-02-01T00:00:00Z")
        .await;
    assert_eq!(status, 200, "exactly 31 days is allowed: {body}");
    stack.shutdown().await;
}
