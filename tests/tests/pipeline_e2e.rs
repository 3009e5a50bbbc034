//! The core pipeline end to end: Outbound Messages posted over HTTP to the running embedded
//! stack, accounts checked in a real SCIM server (scim2-server), outcomes read from the log API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use userprov_tests::fault_proxy::FaultProxy;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{
    Notified, ORG_ID, TestStack, config_for, outbound_message, scim_users,
};

const JOINERS: &str = include_str!("../../infra/events/outbound/01-joiners.xml");
const MOVER: &str = include_str!("../../infra/events/outbound/02-mover.xml");
const LEAVER: &str = include_str!("../../infra/events/outbound/03-leaver.xml");
const RETURNER: &str = include_str!("../../infra/events/outbound/04-returner.xml");

const MARTA: &str = "marta.fernandes@acme.example";
const JAMES: &str = "james.okafor@acme.example";
const JAMES_ID: &str = "0058a00000LmN3qAAF";

/// A tenant of its own on the scim2-server the tests share.
struct Target {
    server: std::sync::Arc<Scim2Server>,
    tenant: &'static str,
    token: String,
}

impl Target {
    fn new(tenant: &'static str) -> Self {
        let server = Scim2Server::shared();
        let token = server.token.clone();
        Self {
            server,
            tenant,
            token,
        }
    }

    fn base_url(&self) -> String {
        self.server.tenant_url(self.tenant)
    }
}

async fn stack_for(scim: &Target) -> TestStack {
    TestStack::start(
        &config_for(&scim.base_url(), "", ""),
        &[("userprov/scim", &scim.token)],
    )
    .await
}

/// An Outbound Message with Marta, active, and only the fields the test mapping requires.
fn marta_joins(notification_id: &str) -> String {
    outbound_message(
        ORG_ID,
        &[Notified {
            notification_id,
            user_id: "0058a00000LmN2pAAF",
            fields: &[
                ("Username", MARTA),
                ("LastName", "Fernandes"),
                ("Email", MARTA),
                ("IsActive", "true"),
            ],
        }],
    )
}

async fn post_ok(stack: &TestStack, body: &str) {
    let (status, answer) = stack.post_outbound(body).await;
    assert_eq!(status, 200, "the webhook answered {answer}");
    assert!(answer.contains("<Ack>true</Ack>"), "not an ack: {answer}");
    stack.wait_idle().await;
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

fn pair(operation: &str, status: &str) -> (String, String) {
    (operation.to_owned(), status.to_owned())
}

async fn one_user(scim: &Target, user_name: &str) -> Value {
    let users = scim_users(&scim.base_url(), &scim.token, Some(user_name)).await;
    assert_eq!(
        users.len(),
        1,
        "expected exactly one account for {user_name}, found {users:?}"
    );
    users.into_iter().next().unwrap()
}

#[tokio::test]
async fn joiners_movers_leavers_and_returners_converge_in_the_target() {
    let scim = Target::new("lifecycle");
    let stack = stack_for(&scim).await;

    post_ok(&stack, JOINERS).await;
    let marta = one_user(&scim, MARTA).await;
    assert_eq!(marta["name"]["givenName"], "Marta");
    assert_eq!(marta["title"], "Staff Engineer");
    assert_eq!(marta["externalId"], "0058a00000LmN2pAAF");
    assert_eq!(marta["active"], true);
    assert_eq!(one_user(&scim, JAMES).await["active"], true);
    one_user(&scim, "priya.nair@acme.example").await;
    let creates = stack.log_entries("operation=create&status=success").await;
    assert_eq!(creates.len(), 3);
    assert!(
        creates
            .iter()
            .all(|e| e["http_status"] == 201 && e["attempt"] == 1 && e["target_id"].is_string())
    );

    post_ok(&stack, MOVER).await;
    assert_eq!(one_user(&scim, MARTA).await["title"], "Principal Engineer");
    assert_eq!(
        operations(&stack.log_entries(&format!("user={MARTA}")).await),
        vec![pair("create", "success"), pair("update", "success")]
    );

    post_ok(&stack, LEAVER).await;
    assert_eq!(one_user(&scim, JAMES).await["active"], false);

    post_ok(&stack, RETURNER).await;
    let james = one_user(&scim, JAMES).await;
    assert_eq!(james["active"], true);
    assert_eq!(james["title"], "Senior Financial Analyst");
    assert_eq!(
        operations(&stack.log_entries(&format!("user={JAMES_ID}")).await),
        vec![
            pair("create", "success"),
            pair("deactivate", "success"),
            pair("reactivate", "success")
        ]
    );

    let (status, link) = stack.get_json(&format!("/accounts/scim/{JAMES_ID}")).await;
    assert_eq!(status, 200);
    assert_eq!(link["active"], true);
    assert_eq!(link["managed_by"], "created");
    assert_eq!(link["target_id"], james["id"]);
    stack.shutdown().await;
}

#[tokio::test]
async fn an_existing_target_account_is_adopted_not_duplicated() {
    let scim = Target::new("adopt");
    let created: Value = reqwest::Client::new()
        .post(format!("{}/Users", scim.base_url()))
        .bearer_auth(&scim.token)
        .header("content-type", "application/scim+json")
        .body(
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": MARTA,
                "title": "Old title"
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stack = stack_for(&scim).await;

    post_ok(&stack, JOINERS).await;

    let marta = one_user(&scim, MARTA).await;
    assert_eq!(marta["id"], created["id"], "the existing account is kept");
    assert_eq!(
        marta["title"], "Staff Engineer",
        "and brought to the mapped state"
    );
    let entries = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(operations(&entries), vec![pair("adopt", "success")]);
    let (_, link) = stack.get_json("/accounts/scim/0058a00000LmN2pAAF").await;
    assert_eq!(link["managed_by"], "adopted");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_delivery_has_one_effect() {
    let scim = Target::new("duplicates");
    let stack = stack_for(&scim).await;

    post_ok(&stack, JOINERS).await;
    post_ok(&stack, JOINERS).await;
    // The same changes again under new notification ids: past the queue's deduplication,
    // the worker still sees nothing to do.
    post_ok(&stack, &JOINERS.replace("Dq5A", "Dq6A")).await;

    assert_eq!(
        scim_users(&scim.base_url(), &scim.token, None).await.len(),
        3
    );
    let marta = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(
        operations(&marta),
        vec![pair("create", "success"), pair("noop", "skipped")]
    );
    assert_eq!(
        marta[1]["reason"],
        "the account already has these attributes"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn an_older_event_arriving_late_is_skipped_and_logged() {
    let scim = Target::new("stale");
    let stack = stack_for(&scim).await;

    post_ok(&stack, JOINERS).await;
    post_ok(&stack, RETURNER).await; // changed on 2025-04-01
    post_ok(&stack, LEAVER).await; // changed on 2025-03-18: older, delivered late

    assert_eq!(
        one_user(&scim, JAMES).await["active"],
        true,
        "the stale deactivation was not applied"
    );
    let entries = stack.log_entries(&format!("user={JAMES}")).await;
    assert_eq!(
        operations(&entries),
        vec![
            pair("create", "success"),
            pair("update", "success"),
            pair("skip", "skipped")
        ]
    );
    let reason = entries[2]["reason"].as_str().unwrap();
    assert!(reason.starts_with("stale event"), "{reason}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_target_answering_500_then_201_is_retried_until_success() {
    let scim = Target::new("retry");
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", scim.server.port())).await;
    proxy.fail_next("POST", 500, r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500","detail":"try later"}"#);
    let base_url = format!("{}/{}/v2", proxy.url(), scim.tenant);
    let stack = TestStack::start(
        &config_for(&base_url, "", ""),
        &[("userprov/scim", &scim.token)],
    )
    .await;

    let body = marta_joins("04l8a00000Dq7AaAAJ");
    post_ok(&stack, &body).await;

    let entries = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(
        operations(&entries),
        vec![pair("create", "retrying"), pair("create", "success")]
    );
    assert_eq!(entries[0]["http_status"], 500);
    assert_eq!(entries[0]["error"]["class"], "transient");
    assert_eq!(
        (
            entries[0]["attempt"].as_u64(),
            entries[1]["attempt"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(entries[1]["http_status"], 201);
    one_user(&scim, MARTA).await;
    let posts = proxy
        .seen()
        .into_iter()
        .filter(|(method, _, _)| method == "POST")
        .map(|(_, _, s)| s)
        .collect::<Vec<_>>();
    assert_eq!(posts, vec![500, 201]);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_batch_slower_than_the_visibility_timeout_is_kept_hidden_and_attempted_once() {
    let scim = Target::new("slow");
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", scim.server.port())).await;
    // Each of the user's three jobs waits for the one before, and every request takes 0.5 s:
    // the batch runs past its 2 s visibility timeout.
    proxy.set_latency(std::time::Duration::from_millis(500));
    let base_url = format!("{}/{}/v2", proxy.url(), scim.tenant);
    let config = config_for(&base_url, "", "").replace(
        "request_timeout_secs = 5",
        "request_timeout_secs = 1\nvisibility_timeout_secs = 2",
    );
    let stack = TestStack::start(&config, &[("userprov/scim", &scim.token)]).await;

    let marta_as = |notification_id, title, modstamp| Notified {
        notification_id,
        user_id: "0058a00000LmN2pAAF",
        fields: vec![
            ("Username", MARTA),
            ("LastName", "Fernandes"),
            ("Email", MARTA),
            ("IsActive", "true"),
            ("Title", title),
            ("SystemModstamp", modstamp),
        ]
        .leak(),
    };
    let body = outbound_message(
        ORG_ID,
        &[
            marta_as("04l8a00000Dq7AaAAJ", "Analyst", "2026-11-29T08:00:00.000Z"),
            marta_as("04l8a00000Dq7AbAAJ", "Engineer", "2026-11-29T08:00:01.000Z"),
            marta_as("04l8a00000Dq7AcAAJ", "Lead", "2026-11-29T08:00:02.000Z"),
        ],
    );
    post_ok(&stack, &body).await;

    let entries = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(
        operations(&entries),
        vec![
            pair("create", "success"),
            pair("update", "success"),
            pair("update", "success")
        ],
        "one entry per job: no job was delivered a second time"
    );
    let attempts: Vec<_> = entries.iter().map(|e| e["attempt"].as_u64()).collect();
    assert_eq!(attempts, vec![Some(1); 3]);
    assert_eq!(one_user(&scim, MARTA).await["title"], "Lead");
    let posts = proxy
        .seen()
        .into_iter()
        .filter(|(method, _, _)| method == "POST")
        .count();
    assert_eq!(posts, 1, "one create");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_missing_required_attribute_fails_once_naming_the_attribute() {
    let scim = Target::new("required");
    let stack = stack_for(&scim).await;
    let body = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq7AbAAJ",
            user_id: "0058a00000LmN4rAAF",
            fields: &[
                ("Username", "no.email@acme.example"),
                ("LastName", "Doe"),
                ("IsActive", "true"),
            ],
        }],
    );
    post_ok(&stack, &body).await;

    let entries = stack.log_entries("user=0058a00000LmN4rAAF").await;
    assert_eq!(
        operations(&entries),
        vec![pair("create", "failed")],
        "not retried"
    );
    assert_eq!(entries[0]["error"]["code"], "missing_required_attribute");
    let message = entries[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"emails[type eq "work"].value"#) && message.contains("Email"),
        "{message}"
    );
    assert_eq!(
        stack.stack.queue.depth().await.unwrap().dead_lettered,
        1,
        "the job is kept in the dead-letter queue"
    );
    assert!(
        scim_users(&scim.base_url(), &scim.token, None)
            .await
            .is_empty()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_notification_for_another_object_is_refused_alone() {
    let scim = Target::new("other-object");
    let stack = stack_for(&scim).await;
    let contact = r#"<Notification><Id>04l8a00000Dq7AcAAJ</Id><sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>0038a00000AbCdEAAV</sf:Id><sf:Email>x@y.z</sf:Email></sObject></Notification>"#;
    let user = marta_joins("04l8a00000Dq7AdAAJ");
    let body = user.replace("<Notification>", &format!("{contact}<Notification>"));
    post_ok(&stack, &body).await;

    assert_eq!(
        operations(&stack.log_entries("").await),
        vec![pair("create", "success")]
    );
    one_user(&scim, MARTA).await;
    stack.shutdown().await;
}

/// Each bad request gets a precise answer and leaves nothing in the queue or the log.
#[tokio::test]
async fn bad_requests_are_refused_and_enqueue_nothing() {
    let scim = Target::new("bad-input");
    let stack = stack_for(&scim).await;
    let good = marta_joins("04l8a00000Dq7AeAAJ");
    let url = stack.webhook_url();
    let base = url.rsplit_once('/').unwrap().0.to_owned();
    let xml = "text/xml; charset=utf-8";
    let doctype = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>{}",
        good.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
    );
    let no_notifications = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><other/></soapenv:Body></soapenv:Envelope>"#;
    let huge = good.replace("Fernandes", &"x".repeat(1024 * 1024 + 1));
    let cases: Vec<(&str, String, &str, Vec<u8>, u16)> = vec![
        (
            "malformed XML",
            url.clone(),
            xml,
            b"<soapenv:Envelope><unclosed>".to_vec(),
            400,
        ),
        (
            "a SOAP body without notifications",
            url.clone(),
            xml,
            no_notifications.as_bytes().to_vec(),
            400,
        ),
        (
            "another organization",
            url.clone(),
            xml,
            good.replace(ORG_ID, "00D000000000001EAA").into_bytes(),
            403,
        ),
        (
            "a wrong token",
            format!("{base}/not-the-token"),
            xml,
            good.clone().into_bytes(),
            401,
        ),
        (
            "no token",
            format!("{base}/"),
            xml,
            good.clone().into_bytes(),
            404,
        ),
        (
            "a DOCTYPE with entities",
            url.clone(),
            xml,
            doctype.into_bytes(),
            400,
        ),
        (
            "a body over 1 MiB",
            url.clone(),
            xml,
            huge.into_bytes(),
            413,
        ),
        (
            "JSON sent to the SOAP endpoint",
            url.clone(),
            "application/json",
            b"{}".to_vec(),
            415,
        ),
    ];
    for (what, target, content_type, body, expected) in cases {
        let (status, answer) = stack.post(&target, content_type, body).await;
        assert_eq!(status, expected, "{what}: answered {answer}");
        if expected != 404 {
            assert!(
                answer.contains("Fault"),
                "{what}: a SOAP fault is expected, got {answer}"
            );
            assert!(
                !answer.contains("<Ack>true"),
                "{what}: must not be acknowledged"
            );
        }
    }
    stack.wait_idle().await;
    assert!(stack.queue_is_empty().await, "nothing was enqueued");
    assert!(stack.log_entries("").await.is_empty(), "nothing was logged");
    assert!(
        scim_users(&scim.base_url(), &scim.token, None)
            .await
            .is_empty()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_joiner_event_delivered_after_the_leaver_event_creates_no_account() {
    let scim = Target::new("late-joiner");
    let stack = stack_for(&scim).await;

    post_ok(&stack, LEAVER).await; // James left on 2025-03-18
    post_ok(&stack, JOINERS).await; // his joiner event of 2025-03-14 arrives late

    let james = scim_users(&scim.base_url(), &scim.token, Some(JAMES)).await;
    assert!(
        james.is_empty(),
        "no account for a user who has left: {james:?}"
    );
    one_user(&scim, MARTA).await;
    let entries = stack.log_entries(&format!("user={JAMES_ID}")).await;
    assert_eq!(
        operations(&entries),
        vec![pair("noop", "skipped"), pair("skip", "skipped")]
    );
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("stale event")
    );
    let (status, link) = stack.get_json(&format!("/accounts/scim/{JAMES_ID}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        link["target_id"],
        Value::Null,
        "the link only orders events"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn only_users_in_the_pilot_scope_are_provisioned() {
    let scim = Target::new("pilot");
    let scope = "[apps.scope]\nusernames = [\"marta.fernandes@acme.example\"]\nfilter = 'Department != \"Contractors\"'\n";
    let stack = TestStack::start(
        &config_for(&scim.base_url(), scope, ""),
        &[("userprov/scim", &scim.token)],
    )
    .await;

    post_ok(&stack, JOINERS).await;

    assert_eq!(
        scim_users(&scim.base_url(), &scim.token, None).await.len(),
        1
    );
    let marta = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(operations(&marta), vec![pair("create", "success")]);
    assert_eq!(
        marta[0]["reason"],
        "in scope: in the pilot list and scope.filter is true"
    );
    let james = stack.log_entries(&format!("user={JAMES}")).await;
    assert_eq!(operations(&james), vec![pair("skip", "skipped")]);
    assert_eq!(
        james[0]["reason"],
        "out of scope: not in the pilot list (scope.usernames, scope.ids)"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn the_log_api_previews_a_user_without_calling_the_target() {
    let scim = Target::new("preview");
    let stack = stack_for(&scim).await;
    let user = serde_json::json!({
        "Id": "0058a00000LmN2pAAF", "Username": MARTA, "LastName": "Fernandes", "Email": MARTA, "IsActive": "true"
    });

    let response = stack
        .http
        .post(format!("{}/preview", stack.stack.base_url()))
        .json(&serde_json::json!({"app": "scim", "user": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let preview: Value = response.json().await.unwrap();
    assert_eq!(preview["operation"], "create");
    let methods: Vec<&str> = preview["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, vec!["GET", "POST", "PUT"]);
    assert_eq!(preview["requests"][1]["body"]["userName"], MARTA);
    assert!(
        scim_users(&scim.base_url(), &scim.token, None)
            .await
            .is_empty(),
        "nothing was sent"
    );

    let unknown = stack
        .http
        .post(format!("{}/preview", stack.stack.base_url()))
        .json(&serde_json::json!({"app": "nope", "user": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_app_logs_the_payload_and_sends_nothing() {
    let scim = Target::new("dry-run");
    let stack = TestStack::start(
        &config_for(&scim.base_url(), "dry_run = true", ""),
        &[("userprov/scim", &scim.token)],
    )
    .await;

    post_ok(&stack, JOINERS).await;

    assert!(
        scim_users(&scim.base_url(), &scim.token, None)
            .await
            .is_empty(),
        "nothing was sent"
    );
    let marta = stack.log_entries(&format!("user={MARTA}")).await;
    assert_eq!(operations(&marta), vec![pair("create", "dry_run")]);
    assert_eq!(marta[0]["request"]["userName"], MARTA);
    assert_eq!(marta[0]["request"]["active"], true);
    let (status, _) = stack.get_json("/accounts/scim/0058a00000LmN2pAAF").await;
    assert_eq!(status, 404, "a dry run links nothing");
    stack.shutdown().await;
}
