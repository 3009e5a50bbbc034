//! The declarative REST connector end to end: Outbound Messages posted to `userprov serve`,
//! accounts checked in a real REST user API (json-server), outcomes read from the log API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use userprov_tests::fault_proxy::{Fault, FaultProxy};
use userprov_tests::peers::json_server::{
    JsonServer, REST_GROUPS_AS_LISTS, REST_GROUPS_ONE_BY_ONE, REST_SETTINGS,
};
use userprov_tests::pipeline::{ORG_ID, TestStack};

const JOINERS: &str = include_str!("../../infra/events/outbound/01-joiners.xml");
const MOVER: &str = include_str!("../../infra/events/outbound/02-mover.xml");
const LEAVER: &str = include_str!("../../infra/events/outbound/03-leaver.xml");
const RETURNER: &str = include_str!("../../infra/events/outbound/04-returner.xml");

const MARTA: &str = "marta.fernandes@acme.example";
const JAMES: &str = "james.okafor@acme.example";
const JAMES_ID: &str = "0058a00000LmN3qAAF";

/// One REST app named `crm` at `base_url`, matching accounts by email.
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
first_name = "FirstName"
last_name = {{ from = "LastName", required = true }}
title = "Title"
salesforce_id = "Id"
{REST_SETTINGS}
"#
    )
}

async fn stack_for(server: &JsonServer, base_url: &str) -> TestStack {
    TestStack::start(&rest_config(base_url), &[("userprov/crm", &server.token)]).await
}

async fn post_ok(stack: &TestStack, body: &str) {
    let (status, answer) = stack.post_outbound(body).await;
    assert_eq!(status, 200, "the webhook answered {answer}");
    assert!(answer.contains("<Ack>true</Ack>"), "not an ack: {answer}");
    stack.wait_idle().await;
}

async fn one_user(server: &JsonServer, email: &str) -> Value {
    let users = server.users_with_email(email).await;
    assert_eq!(
        users.len(),
        1,
        "expected one account for {email}: {users:?}"
    );
    users.into_iter().next().unwrap()
}

/// json-server numbers its ids; userprov keeps ids as text.
fn id_text(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_owned)
}

fn operations(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(o, s)| ((*o).to_owned(), (*s).to_owned()))
        .collect()
}

#[tokio::test]
async fn joiners_movers_leavers_and_returners_converge_in_a_rest_api() {
    let server = JsonServer::start();
    let stack = stack_for(&server, &server.url()).await;

    post_ok(&stack, JOINERS).await;
    let marta = one_user(&server, MARTA).await;
    assert_eq!(marta["first_name"], "Marta");
    assert_eq!(marta["title"], "Staff Engineer");
    assert_eq!(marta["salesforce_id"], "0058a00000LmN2pAAF");
    assert_eq!(marta["active"], true);
    assert!(
        marta.get("schemas").is_none(),
        "no SCIM bookkeeping: {marta}"
    );
    assert_eq!(one_user(&server, JAMES).await["active"], true);
    one_user(&server, "priya.nair@acme.example").await;
    let creates = stack.log_entries("operation=create&status=success").await;
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert!(
        creates
            .iter()
            .all(|e| e["http_status"] == 201 && e["target_id"].is_string())
    );

    post_ok(&stack, MOVER).await;
    assert_eq!(
        one_user(&server, MARTA).await["title"],
        "Principal Engineer"
    );

    post_ok(&stack, LEAVER).await;
    let james = one_user(&server, JAMES).await;
    assert_eq!(james["active"], false);
    assert_eq!(
        james["title"], "Financial Analyst",
        "deactivation keeps the attributes"
    );

    post_ok(&stack, RETURNER).await;
    let james = one_user(&server, JAMES).await;
    assert_eq!(james["active"], true);
    assert_eq!(james["title"], "Senior Financial Analyst");
    assert_eq!(
        operations(&stack.log_entries(&format!("user={JAMES_ID}")).await),
        pairs(&[
            ("create", "success"),
            ("deactivate", "success"),
            ("reactivate", "success")
        ])
    );
    let (status, link) = stack.get_json(&format!("/accounts/crm/{JAMES_ID}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        link["target_id"].as_str(),
        Some(id_text(&james["id"]).as_str())
    );
    assert_eq!(server.users().await.len(), 3, "no duplicates");
    stack.shutdown().await;
}

#[tokio::test]
async fn an_existing_account_with_the_email_is_adopted_not_duplicated() {
    let server = JsonServer::start();
    let created: Value = reqwest::Client::new()
        .post(format!("{}/users", server.url()))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({"email": MARTA, "title": "made by hand", "active": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stack = stack_for(&server, &server.url()).await;
    post_ok(&stack, JOINERS).await;
    let marta = one_user(&server, MARTA).await;
    assert_eq!(
        marta["id"], created["id"],
        "the account made by hand was adopted"
    );
    assert_eq!(marta["title"], "Staff Engineer", "and brought up to date");
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_answers_are_classified_retried_and_never_followed_elsewhere() {
    let server = JsonServer::start();
    let proxy = FaultProxy::start(&server.url()).await;
    // Another host (by name) that must never see a request, least of all the credentials.
    let elsewhere = FaultProxy::start(&server.url()).await;
    let html = |status: u16| Fault {
        method: "POST".into(),
        status,
        body: "<html><body>Please sign in</body></html>".into(),
        headers: vec![("content-type".into(), "text/html".into())],
    };
    proxy.fail_next_with(html(200));
    proxy.fail_next_with(Fault {
        method: "POST".into(),
        status: 302,
        body: String::new(),
        headers: vec![(
            "location".into(),
            format!("http://localhost:{}/users", elsewhere.addr.port()),
        )],
    });
    proxy.fail_next_with(Fault {
        method: "POST".into(),
        status: 201,
        body: "{\"id\": ".into(),
        headers: vec![("content-type".into(), "application/json".into())],
    });
    let stack = stack_for(&server, &proxy.url()).await;

    let body = userprov_tests::pipeline::outbound_message(
        ORG_ID,
        &[userprov_tests::pipeline::Notified {
            notification_id: "04l8a00000Dq7AaAAJ",
            user_id: "0058a00000LmN2pAAF",
            fields: &[
                ("Username", MARTA),
                ("Email", MARTA),
                ("LastName", "Fernandes"),
                ("IsActive", "true"),
            ],
        }],
    );
    post_ok(&stack, &body).await;

    let entries = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(
        operations(&entries),
        pairs(&[
            ("create", "retrying"),
            ("create", "retrying"),
            ("create", "retrying"),
            ("create", "success")
        ]),
        "{entries:#?}"
    );
    for failed in &entries[..3] {
        assert_eq!(failed["error"]["code"], "bad_response", "{failed}");
        assert_eq!(failed["error"]["class"], "transient", "{failed}");
    }
    let messages: Vec<&str> = entries[..3]
        .iter()
        .map(|e| e["error"]["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].contains("HTML page"), "{messages:?}");
    assert!(
        messages[1].contains("redirect to host localhost"),
        "{messages:?}"
    );
    assert!(messages[2].contains("not JSON"), "{messages:?}");
    assert!(
        elsewhere.seen().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.seen()
    );
    for entry in &entries {
        assert!(
            !entry.to_string().contains(&server.token),
            "a credential in the log: {entry}"
        );
    }
    // The proxy answered the three bad ones itself: json-server saw one create.
    assert_eq!(server.users_with_email(MARTA).await.len(), 1);
    stack.shutdown().await;
}

const GROUPS: &str = r#"
[apps.groups]
from = "PermissionSetGroups__c"
[apps.groups.map]
Sales_Cloud = "sales"
Engineering = ["engineering", "github-users"]
"#;

fn marta_with_groups(notification_id: &str, modstamp: &str, groups: &str) -> String {
    userprov_tests::pipeline::outbound_message(
        ORG_ID,
        &[userprov_tests::pipeline::Notified {
            notification_id,
            user_id: "0058a00000LmN2pAAF",
            fields: &[
                ("Username", MARTA),
                ("Email", MARTA),
                ("LastName", "Fernandes"),
                ("IsActive", "true"),
                ("SystemModstamp", modstamp),
                ("PermissionSetGroups__c", groups),
            ],
        }],
    )
}

/// Permission Set Groups become memberships through `group_templates`; a group the mapping no
/// longer gives is left, and members and groups userprov does not manage are never touched.
async fn memberships_follow_the_permission_set_groups(group_templates: &str) {
    let server = JsonServer::start();
    // The app already has a "sales" group with a member added by hand, and a group outside
    // the mapping.
    let colleague = server
        .post(
            "users",
            &serde_json::json!({"email": "colleague@acme.example", "active": true}),
        )
        .await;
    let colleague = id_text(&colleague["id"]);
    server
        .post(
            "groups",
            &serde_json::json!({"name": "sales", "member_ids": [colleague]}),
        )
        .await;
    server
        .post(
            "groups",
            &serde_json::json!({"name": "all-hands", "member_ids": [colleague]}),
        )
        .await;
    let config = format!("{}{group_templates}{GROUPS}", rest_config(&server.url()));
    let stack = TestStack::start(&config, &[("userprov/crm", &server.token)]).await;

    post_ok(
        &stack,
        &marta_with_groups(
            "04l8a0000000001",
            "2026-03-02T09:00:00.000Z",
            "Sales_Cloud;Engineering;Chatter_Free",
        ),
    )
    .await;
    let marta = id_text(&one_user(&server, MARTA).await["id"]);
    let mut sales = vec![colleague.clone(), marta.clone()];
    sales.sort();
    assert_eq!(
        server.memberships().await,
        vec![
            ("all-hands".to_owned(), vec![colleague.clone()]),
            ("engineering".to_owned(), vec![marta.clone()]),
            ("github-users".to_owned(), vec![marta.clone()]),
            ("sales".to_owned(), sales),
        ],
        "the mapped groups are created when missing; unmapped Permission Set Groups give nothing\n{}",
        server.log()
    );

    let entries = stack.log_entries("user=0058a00000LmN2pAAF").await;
    assert_eq!(operations(&entries), pairs(&[("create", "success")]));
    assert_eq!(
        entries[0]["groups"]["added"],
        serde_json::json!(["engineering", "github-users", "sales"])
    );

    // An admin puts Marta in the group outside the mapping, by hand, in the app.
    let all_hands = server
        .get_json("/groups?name=all-hands")
        .await
        .pointer("/0/id")
        .map(id_text)
        .unwrap();
    server
        .post(
            &format!("groups/{all_hands}/members"),
            &serde_json::json!({"user_id": marta}),
        )
        .await;

    // Sales_Cloud is taken away: Marta leaves "sales", its other member stays, and so does
    // the membership given by hand.
    post_ok(
        &stack,
        &marta_with_groups("04l8a0000000002", "2026-03-02T10:00:00.000Z", "Engineering"),
    )
    .await;
    let mut all_hands_members = vec![colleague.clone(), marta.clone()];
    all_hands_members.sort();
    let expected = vec![
        ("all-hands".to_owned(), all_hands_members),
        ("engineering".to_owned(), vec![marta.clone()]),
        ("github-users".to_owned(), vec![marta.clone()]),
        ("sales".to_owned(), vec![colleague.clone()]),
    ];
    assert_eq!(server.memberships().await, expected, "{}", server.log());
    let entries = stack.log_entries("user=0058a00000LmN2pAAF").await;
    assert_eq!(
        operations(&entries),
        pairs(&[("create", "success"), ("update", "success")])
    );
    assert_eq!(
        entries[1]["groups"],
        serde_json::json!({"removed": ["sales"]})
    );
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("removed from sales"),
        "{}",
        entries[1]
    );

    // The same Permission Set Groups again change nothing.
    post_ok(
        &stack,
        &marta_with_groups("04l8a0000000003", "2026-03-02T11:00:00.000Z", "Engineering"),
    )
    .await;
    let entries = stack.log_entries("user=0058a00000LmN2pAAF").await;
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert_eq!(entries[2]["operation"], "noop", "{}", entries[2]);
    assert!(
        entries[2].get("groups").is_none_or(Value::is_null),
        "{}",
        entries[2]
    );
    assert_eq!(server.memberships().await, expected);
    stack.shutdown().await;
}

#[tokio::test]
async fn permission_set_groups_become_memberships_one_member_per_request() {
    memberships_follow_the_permission_set_groups(REST_GROUPS_ONE_BY_ONE).await;
}

#[tokio::test]
async fn permission_set_groups_become_memberships_with_member_lists() {
    memberships_follow_the_permission_set_groups(REST_GROUPS_AS_LISTS).await;
}
