//! A target that answers a body of many MiB: both connectors cut it at the 1 MiB cap while it
//! streams in (they never hold it whole), the job's log entry says `bad_response` and why, and
//! the retry goes through. Real targets behind the test's own fault proxy: json-server for the
//! REST connector, scim2-server for the SCIM connector.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use userprov_tests::fault_proxy::{FaultProxy, Streamed};
use userprov_tests::peers::json_server::{JsonServer, REST_SETTINGS};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{Notified, ORG_ID, TestStack, config_for, outbound_message};

const MIB: u64 = 1024 * 1024;
/// Far more than the cap, and more than the kernel's socket buffers on both sides can hold
/// (at most 32 MiB to receive and 4 MiB to send here), so a client that kept reading would
/// take it all.
const HUGE: u64 = 128 * MIB;

const MARTA: &str = "marta.fernandes@acme.example";

fn marta_joins() -> String {
    outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq7AaAAJ",
            user_id: "0058a00000LmN2pAAF",
            fields: &[
                ("Username", MARTA),
                ("Email", MARTA),
                ("LastName", "Fernandes"),
                ("IsActive", "true"),
            ],
        }],
    )
}

fn rest_config(base_url: &str) -> String {
    format!(
        r#"
[source]
org_ids = ["{ORG_ID}"]

[worker]
max_attempts = 4
base_delay_ms = 20
max_delay_secs = 1
request_timeout_secs = 5

[[apps]]
name = "crm"
connector = "rest"
base_url = "{base_url}"
secret = "userprov/crm"
match_on = ["email"]

[apps.mapping]
email = {{ from = "Email", required = true }}
last_name = {{ from = "LastName", required = true }}
{REST_SETTINGS}
"#
    )
}

/// Posts Marta's joining and returns her log entries once the stack is idle.
async fn provision_marta(stack: &TestStack) -> Vec<Value> {
    let (status, answer) = stack.post_outbound(&marta_joins()).await;
    assert_eq!(status, 200, "the webhook answered {answer}");
    stack.wait_idle().await;
    stack.log_entries(&format!("user={MARTA}")).await
}

/// The two huge answers (chunked, then with a Content-Length) were refused as `bad_response`,
/// retried, and the third attempt created the account.
fn assert_cut_and_retried(entries: &[Value]) {
    let outcomes: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("create", "retrying"),
            ("create", "retrying"),
            ("create", "success")
        ],
        "{entries:#?}"
    );
    for refused in &entries[..2] {
        assert_eq!(refused["error"]["code"], "bad_response", "{refused}");
        assert_eq!(refused["error"]["class"], "transient", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("over the 1 MiB"), "{message}");
    }
    assert!(
        entries[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&HUGE.to_string()),
        "a declared length is named: {}",
        entries[1]
    );
}

/// The connector stopped reading near the cap: the proxy could hand over no more than the cap
/// and what the socket buffers hold, far from the whole body.
async fn assert_not_read_whole(chunked: &Streamed, declared: &Streamed) {
    chunked.finished().await;
    declared.finished().await;
    assert!(
        chunked.bytes() < 48 * MIB,
        "{} bytes of a {HUGE}-byte answer were taken",
        chunked.bytes()
    );
    assert!(
        declared.bytes() < 48 * MIB,
        "{} bytes of an answer announcing {HUGE} bytes were taken",
        declared.bytes()
    );
}

#[tokio::test]
async fn a_huge_answer_to_the_rest_connector_is_cut_at_the_cap_and_logged_as_bad_response() {
    let server = JsonServer::start();
    let proxy = FaultProxy::start(&server.url()).await;
    let chunked = proxy.answer_next_with_huge_body("POST", 201, HUGE, false);
    let declared = proxy.answer_next_with_huge_body("POST", 201, HUGE, true);
    let stack = TestStack::start(
        &rest_config(&proxy.url()),
        &[("userprov/crm", &server.token)],
    )
    .await;

    let entries = provision_marta(&stack).await;
    assert_cut_and_retried(&entries);
    assert_not_read_whole(&chunked, &declared).await;
    assert_eq!(server.users_with_email(MARTA).await.len(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_huge_answer_to_the_scim_connector_is_cut_at_the_cap_and_logged_as_bad_response() {
    let server = Scim2Server::start();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", server.port())).await;
    let chunked = proxy.answer_next_with_huge_body("POST", 201, HUGE, false);
    let declared = proxy.answer_next_with_huge_body("POST", 201, HUGE, true);
    let base_url = format!("{}/default/v2", proxy.url());
    let stack = TestStack::start(
        &config_for(&base_url, "", ""),
        &[("userprov/scim", &server.token)],
    )
    .await;

    let entries = provision_marta(&stack).await;
    assert_cut_and_retried(&entries);
    assert_not_read_whole(&chunked, &declared).await;
    let users =
        userprov_tests::pipeline::scim_users(&server.base_url(), &server.token, Some(MARTA)).await;
    assert_eq!(users.len(), 1, "{users:?}");
    stack.shutdown().await;
}
