//! Per-target profile settings end to end: Outbound Messages through the embedded stack to
//! scim2-server. Deprovisioning by DELETE and bringing a returner back by creating the account
//! again, and a constrained SaaS target (no PATCH, no filter, ETags, cursor pages of two) taken
//! through a joiner, a leaver and a returner.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::Value;
use userprov_tests::peers::scim2_server::{Scim2Server, constrained_config};
use userprov_tests::pipeline::{TestStack, config_for};

const JOINERS: &str = include_str!("../../infra/events/outbound/01-joiners.xml");
const LEAVER: &str = include_str!("../../infra/events/outbound/03-leaver.xml");
const RETURNER: &str = include_str!("../../infra/events/outbound/04-returner.xml");

const JAMES: &str = "james.okafor@acme.example";
const JAMES_ID: &str = "0058a00000LmN3qAAF";

async fn post_ok(stack: &TestStack, body: &str) {
    let (status, answer) = stack.post_outbound(body).await;
    assert_eq!(status, 200, "the webhook answered {answer}");
    stack.wait_idle().await;
}

/// The accounts named `user_name`, read straight from the server page by page (a constrained
/// target has no filter, and pages by cursor).
async fn accounts_named(base_url: &str, token: &str, user_name: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http.get(format!("{base_url}/Users")).bearer_auth(token);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        found.extend(resources.into_iter().filter(|u| {
            u["userName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
        }));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

/// (operation, status, reason) of each entry.
fn outcomes(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// James joins, leaves and returns, on an app with `app_extra` settings; returns his log
/// entries and his accounts in the target after each step (joined, left, returned).
async fn james_leaves_and_returns(
    server: &Arc<Scim2Server>,
    tenant: &str,
    app_extra: &str,
) -> (Vec<Value>, [Vec<Value>; 3], Value) {
    let base_url = server.tenant_url(tenant);
    let stack = TestStack::start(
        &config_for(&base_url, app_extra, ""),
        &[("userprov/scim", &server.token)],
    )
    .await;
    post_ok(&stack, JOINERS).await;
    let joined = accounts_named(&base_url, &server.token, JAMES).await;
    post_ok(&stack, LEAVER).await;
    let left = accounts_named(&base_url, &server.token, JAMES).await;
    post_ok(&stack, RETURNER).await;
    let returned = accounts_named(&base_url, &server.token, JAMES).await;
    let entries = stack.log_entries(&format!("user={JAMES_ID}")).await;
    let (status, link) = stack.get_json(&format!("/accounts/scim/{JAMES_ID}")).await;
    assert_eq!(status, 200, "{link}");
    stack.shutdown().await;
    (entries, [joined, left, returned], link)
}

fn entry(operation: &str, status: &str, reason: &str) -> (String, String, String) {
    (operation.into(), status.into(), reason.into())
}

#[tokio::test]
async fn a_leaver_deleted_from_the_target_comes_back_as_a_new_account() {
    let server = Scim2Server::shared();

    let (entries, [joined, left, returned], link) =
        james_leaves_and_returns(&server, "profile-delete", r#"deactivate = "delete""#).await;

    assert_eq!(joined.len(), 1);
    assert!(left.is_empty(), "DELETE removed the account: {left:?}");
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_ne!(returned[0]["id"], joined[0]["id"], "a new account");
    assert_eq!(returned[0]["active"], true);
    let outcomes = outcomes(&entries);
    assert_eq!(outcomes[0].0, "create");
    assert_eq!(
        outcomes[1..],
        [
            entry("deactivate", "success", ""),
            entry(
                "create",
                "success",
                r#"reactivated (reactivate = "recreate"): created the account again"#
            ),
        ]
    );
    assert_eq!(link["target_id"], returned[0]["id"], "re-linked");
    assert_eq!(link["active"], true);
}

#[tokio::test]
async fn with_active_true_an_account_gone_from_the_target_is_created_again_on_404() {
    let server = Scim2Server::shared();

    let (entries, [joined, _, returned], link) = james_leaves_and_returns(
        &server,
        "profile-delete-active-true",
        "deactivate = \"delete\"\nreactivate = \"active_true\"",
    )
    .await;

    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_ne!(returned[0]["id"], joined[0]["id"]);
    assert_eq!(
        outcomes(&entries)[2],
        entry(
            "create",
            "success",
            "the account was gone from the target; created it again"
        )
    );
    assert_eq!(entries[2]["http_status"], 201);
    assert_eq!(link["target_id"], returned[0]["id"], "re-linked");
}

#[tokio::test]
async fn a_constrained_target_takes_a_joiner_a_leaver_and_a_returner() {
    let server = Arc::new(Scim2Server::start_announcing(&constrained_config(2)));

    let (entries, [joined, left, returned], link) =
        james_leaves_and_returns(&server, "profile-constrained", "").await;

    let outcomes: Vec<(String, String)> = outcomes(&entries)
        .into_iter()
        .map(|(o, s, _)| (o, s))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("create", "success"),
            ("deactivate", "success"),
            ("reactivate", "success")
        ]
        .map(|(o, s)| (o.to_owned(), s.to_owned()))
    );
    assert_eq!(joined[0]["active"], true);
    assert_eq!(left[0]["active"], false, "deactivated with a PUT");
    assert_eq!(returned[0]["id"], joined[0]["id"]);
    assert_eq!(returned[0]["active"], true);
    assert_eq!(returned[0]["title"], "Senior Financial Analyst");
    assert_eq!(link["target_id"], joined[0]["id"]);
}
