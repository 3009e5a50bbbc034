//! JSON events end to end: platform events, Event Relay envelopes, Flow callouts and Change Data
//! Capture posted over HTTP to `userprov serve`'s `POST /salesforce/events`, accounts checked in a
//! real SCIM server (scim2-server), outcomes read from the log API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use userprov_core::http::event_auth::sign;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{
    Notified, ORG_ID, TestStack, config_for, outbound_message, scim_group_memberships, scim_users,
};

const STREAMING: &str = include_str!("../fixtures/salesforce/platform-event-streaming.json");
const EVENT_RELAY: &str =
    include_str!("../fixtures/salesforce/eventbridge-user-provisioning-event.json");
const FLOW: &str = include_str!("../fixtures/salesforce/flow-callout.json");
const BATCH: &str = include_str!("../fixtures/salesforce/batch-mixed.json");
const CDC_UPDATE: &str = include_str!("../fixtures/salesforce/cdc-user-update-cometd.json");
const CDC_CREATE_PUBSUB: &str = include_str!("../fixtures/salesforce/cdc-user-create-pubsub.json");
const CDC_DEACTIVATE_COMETD: &str =
    include_str!("../fixtures/salesforce/cdc-user-deactivate-cometd.json");
const CDC_DEACTIVATE_PUBSUB: &str =
    include_str!("../fixtures/salesforce/cdc-user-deactivate-pubsub.json");
const CDC_GAP: &str = include_str!("../fixtures/salesforce/cdc-user-gap-two-users.json");

const KEY: &str = "the org's shared events key";
const MARTA: &str = "marta.fernandes@acme.example";
const MARTA_ID: &str = "0058a00000LmN2pAAF";
const JAMES: &str = "james.okafor@acme.example";
const JAMES_ID: &str = "0058a00000LmN3qAAF";
const PRIYA_ID: &str = "0058a00000LmN4rAAF";
const TOMAS: &str = "tomas.lindqvist@acme.example";

struct Setup {
    stack: TestStack,
    /// Keeps the shared scim2-server running while the test uses it.
    _server: std::sync::Arc<Scim2Server>,
    scim_url: String,
    scim_token: String,
}

async fn start(tenant: &str, extra_config: &str) -> Setup {
    start_with_app(tenant, "", extra_config).await
}

/// `app_config` goes into the app's own table (`[apps.groups]`, ...).
async fn start_with_app(tenant: &str, app_config: &str, extra_config: &str) -> Setup {
    let server = Scim2Server::shared();
    let scim_url = server.tenant_url(tenant);
    let stack = TestStack::start(
        &config_for(&scim_url, app_config, extra_config),
        &[
            ("userprov/scim", &server.token),
            ("userprov/events-key", KEY),
        ],
    )
    .await;
    Setup {
        stack,
        scim_url,
        scim_token: server.token.clone(),
        _server: server,
    }
}

struct Answer {
    status: u16,
    reason: Option<String>,
    body: Value,
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Setup {
    async fn post_with(&self, body: &[u8], headers: &[(&str, String)]) -> Answer {
        let mut request = self
            .stack
            .http
            .post(self.stack.stack.events_url())
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let reason = response
            .headers()
            .get("x-userprov-reason")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            reason,
            body,
        }
    }

    /// Posts JSON signed the way the Apex in docs/salesforce-setup.md signs it.
    async fn post_signed(&self, body: &str) -> Answer {
        let timestamp = now_secs().to_string();
        let signature = sign(KEY.as_bytes(), &timestamp, body.as_bytes());
        self.post_with(
            body.as_bytes(),
            &[
                ("content-type", "application/json".into()),
                ("x-userprov-timestamp", timestamp),
                ("x-userprov-signature", signature),
            ],
        )
        .await
    }

    async fn post_ok(&self, body: &str) -> Value {
        let answer = self.post_signed(body).await;
        assert_eq!(answer.status, 200, "the webhook answered {}", answer.body);
        assert_eq!(answer.body["accepted"], true);
        self.stack.wait_idle().await;
        answer.body
    }

    async fn outbound_ok(&self, users: &[Notified<'_>]) {
        let (status, answer) = self
            .stack
            .post_outbound(&outbound_message(ORG_ID, users))
            .await;
        assert_eq!(status, 200, "{answer}");
        self.stack.wait_idle().await;
    }

    async fn users(&self, user_name: &str) -> Vec<Value> {
        scim_users(&self.scim_url, &self.scim_token, Some(user_name)).await
    }

    async fn one_user(&self, user_name: &str) -> Value {
        let users = self.users(user_name).await;
        assert_eq!(users.len(), 1, "accounts for {user_name}: {users:?}");
        users.into_iter().next().unwrap()
    }

    async fn outcomes(&self, user: &str) -> Vec<(String, String, String)> {
        self.stack
            .log_entries(&format!("user={user}"))
            .await
            .iter()
            .map(|e| {
                (
                    e["source"].as_str().unwrap_or("").to_owned(),
                    e["operation"].as_str().unwrap_or("").to_owned(),
                    e["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

fn outcome(source: &str, operation: &str, status: &str) -> (String, String, String) {
    (source.into(), operation.into(), status.into())
}

/// James as an Outbound Message gives him: active, with the fields the test mapping requires.
fn james_joins() -> Vec<Notified<'static>> {
    vec![Notified {
        notification_id: "04l8a000000AbCdAAK",
        user_id: JAMES_ID,
        fields: &[
            ("Username", JAMES),
            ("LastName", "Okafor"),
            ("Email", JAMES),
            ("IsActive", "true"),
        ],
    }]
}

#[tokio::test]
async fn a_platform_events_permission_set_groups_become_memberships_with_the_outbound_message_mapping()
 {
    // The same `[apps.groups]` an Outbound Message org uses: `from` names the User field the
    // setup kit adds, and the event field Permission_Set_Groups__c maps onto it by default.
    let setup = start_with_app(
        "pe-groups",
        r#"
[apps.groups]
from = "PermissionSetGroups__c"
[apps.groups.map]
Sales_Manager = "sales"
Support_Tier_2 = ["support", "helpdesk"]
"#,
        "",
    )
    .await;
    setup.post_ok(STREAMING).await;

    let priya = setup.one_user("priya.nair@acme.example").await;
    let account = priya["id"].as_str().unwrap().to_owned();
    let memberships = scim_group_memberships(&setup.scim_url, &setup.scim_token).await;
    assert_eq!(
        memberships,
        vec![
            ("helpdesk".to_owned(), vec![account.clone()]),
            ("sales".to_owned(), vec![account.clone()]),
            ("support".to_owned(), vec![account.clone()]),
        ]
    );
    let entries = setup.stack.log_entries(&format!("user={PRIYA_ID}")).await;
    assert_eq!(
        entries[0]["groups"]["added"],
        json!(["helpdesk", "sales", "support"])
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_streaming_platform_event_creates_the_user_with_mapped_fields() {
    let setup = start("pe-streaming", "").await;
    let answer = setup.post_ok(STREAMING).await;
    assert_eq!(
        (answer["events"].clone(), answer["jobs"].clone()),
        (json!(1), json!(1))
    );

    let priya = setup.one_user("priya.nair@acme.example").await;
    assert_eq!(priya["title"], "Account Executive");
    assert_eq!(priya["externalId"], PRIYA_ID);
    assert_eq!(priya["active"], true);
    assert_eq!(
        setup.outcomes(PRIYA_ID).await,
        vec![outcome("platform_event", "create", "success")]
    );
    let (_, link) = setup
        .stack
        .get_json(&format!("/accounts/scim/{PRIYA_ID}"))
        .await;
    assert_eq!(
        link["snapshot"]["fields"]["PermissionSetGroups__c"],
        "Sales_Manager;Support_Tier_2"
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn an_event_relay_envelope_deactivates_the_user() {
    let setup = start("pe-relay", "").await;
    setup.outbound_ok(&james_joins()).await;
    assert_eq!(setup.one_user(JAMES).await["active"], true);

    setup.post_ok(EVENT_RELAY).await;

    assert_eq!(setup.one_user(JAMES).await["active"], false);
    assert_eq!(
        setup.outcomes(JAMES_ID).await,
        vec![
            outcome("outbound_message", "create", "success"),
            outcome("event_relay", "deactivate", "success"),
        ]
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_flow_callout_creates_the_user() {
    let setup = start("pe-flow", "").await;
    setup.post_ok(FLOW).await;
    let tomas = setup.one_user(TOMAS).await;
    assert_eq!(tomas["name"]["givenName"], "Tomás");
    assert_eq!(tomas["title"], "Support Engineer");
    assert_eq!(
        setup.outcomes(TOMAS).await,
        vec![outcome("flow_callout", "create", "success")]
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_batch_of_three_shapes_creates_three_users() {
    let setup = start("pe-batch", "").await;
    let answer = setup.post_ok(BATCH).await;
    assert_eq!(answer["events"], 3);
    for user_name in ["amara.diallo@acme.example", "li.wei@acme.example", MARTA] {
        assert_eq!(setup.one_user(user_name).await["active"], true);
    }
    let sources: Vec<String> = setup
        .stack
        .log_entries("operation=create&status=success")
        .await
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = sources.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["event_relay", "flow_callout", "platform_event"]
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_cometd_change_event_is_merged_into_the_snapshot_an_outbound_message_left() {
    let setup = start("cdc-merge", "").await;
    setup
        .outbound_ok(&[Notified {
            notification_id: "04l8a000000AbCeAAK",
            user_id: MARTA_ID,
            fields: &[
                ("Username", MARTA),
                ("FirstName", "Marta"),
                ("LastName", "Fernandes"),
                ("Email", MARTA),
                ("Title", "Sales Rep"),
                ("IsActive", "true"),
            ],
        }])
        .await;

    setup.post_ok(CDC_UPDATE).await;

    let marta = setup.one_user(MARTA).await;
    assert_eq!(
        marta["title"], "Head of Sales Operations",
        "the change applied"
    );
    assert_eq!(marta["name"]["givenName"], "Marta", "unchanged fields kept");
    assert_eq!(marta["name"]["familyName"], "Fernandes");
    assert_eq!(marta["emails"][0]["value"], MARTA);
    assert_eq!(
        setup.outcomes(MARTA_ID).await,
        vec![
            outcome("outbound_message", "create", "success"),
            outcome("change_data_capture", "update", "success"),
        ]
    );
    let (_, link) = setup
        .stack
        .get_json(&format!("/accounts/scim/{MARTA_ID}"))
        .await;
    assert_eq!(link["snapshot"]["fields"]["Department"], "Sales Operations");
    assert_eq!(link["snapshot"]["fields"]["Username"], MARTA);
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_change_event_for_a_user_without_a_snapshot_is_logged_not_pushed() {
    let setup = start("cdc-no-snapshot", "").await;
    setup.post_ok(CDC_UPDATE).await;
    assert!(
        setup.users(MARTA).await.is_empty(),
        "nothing half-empty pushed"
    );
    let entries = setup.stack.log_entries(&format!("user={MARTA_ID}")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["status"], "skipped");
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("partial_event_without_snapshot"),
        "{reason}"
    );
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_pubsub_create_change_event_creates_the_user() {
    let setup = start("cdc-pubsub-create", "").await;
    setup.post_ok(CDC_CREATE_PUBSUB).await;
    let tomas = setup.one_user(TOMAS).await;
    assert_eq!(tomas["name"]["givenName"], "Tomás");
    assert_eq!(tomas["name"]["familyName"], "Lindqvist");
    assert_eq!(tomas["title"], "Support Engineer");
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_cdc_deactivation_applies_once_whichever_form_delivers_it() {
    let setup = start("cdc-deactivate", "").await;
    setup.outbound_ok(&james_joins()).await;

    setup.post_ok(CDC_DEACTIVATE_COMETD).await;
    setup.post_ok(CDC_DEACTIVATE_PUBSUB).await;

    assert_eq!(setup.one_user(JAMES).await["active"], false);
    assert_eq!(
        setup.outcomes(JAMES_ID).await,
        vec![
            outcome("outbound_message", "create", "success"),
            outcome("change_data_capture", "deactivate", "success"),
        ],
        "the Pub/Sub copy of the same change is the same job"
    );
    let (_, link) = setup
        .stack
        .get_json(&format!("/accounts/scim/{JAMES_ID}"))
        .await;
    assert_eq!(link["snapshot"]["fields"]["Username"], JAMES);
    assert_eq!(link["snapshot"]["fields"]["IsActive"], false);
    assert_eq!(link["last_source_time"], "2025-03-14T16:05:47Z");
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_gap_event_is_logged_for_a_resync_of_each_named_user() {
    let setup = start("cdc-gap", "").await;
    setup.post_ok(CDC_GAP).await;
    for user in [MARTA_ID, PRIYA_ID] {
        let entries = setup.stack.log_entries(&format!("user={user}")).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["status"], "skipped");
        let reason = entries[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("gap_event_resync_needed"), "{reason}");
        assert!(reason.contains(user), "{reason}");
    }
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn a_bad_signature_or_a_stale_timestamp_is_refused_and_nothing_is_queued() {
    let setup = start("auth-hmac", "").await;
    let timestamp = now_secs().to_string();
    let signed_other_body = sign(KEY.as_bytes(), &timestamp, b"{}");
    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[
                ("content-type", "application/json".into()),
                ("x-userprov-timestamp", timestamp.clone()),
                ("x-userprov-signature", signed_other_body),
            ],
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.reason.as_deref(), Some("bad_signature"));
    assert_eq!(answer.body["reason"], "bad_signature");

    let wrong_key = sign(b"guessed", &timestamp, FLOW.as_bytes());
    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[
                ("content-type", "application/json".into()),
                ("x-userprov-timestamp", timestamp),
                ("x-userprov-signature", wrong_key),
            ],
        )
        .await;
    assert_eq!(answer.reason.as_deref(), Some("bad_signature"));

    // A request captured and replayed ten minutes later, with its valid signature.
    let old = (now_secs() - 600).to_string();
    let replayed = sign(KEY.as_bytes(), &old, FLOW.as_bytes());
    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[
                ("content-type", "application/json".into()),
                ("x-userprov-timestamp", old),
                ("x-userprov-signature", replayed),
            ],
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.reason.as_deref(), Some("stale_timestamp"));

    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[("content-type", "application/json".into())],
        )
        .await;
    assert_eq!(answer.reason.as_deref(), Some("missing_timestamp"));

    assert!(setup.stack.queue_is_empty().await);
    assert!(setup.users(TOMAS).await.is_empty());
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn an_api_key_stack_takes_the_key_header_and_refuses_a_wrong_key() {
    let setup = start("auth-api-key", "\n[webhook.events]\nauth = \"api_key\"\n").await;
    let json_type = ("content-type", "application/json".to_owned());
    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[json_type.clone(), ("x-userprov-api-key", "wrong".into())],
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.reason.as_deref(), Some("bad_api_key"));
    assert!(setup.stack.queue_is_empty().await);

    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[json_type, ("x-userprov-api-key", KEY.into())],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    setup.stack.wait_idle().await;
    assert_eq!(setup.one_user(TOMAS).await["active"], true);
    setup.stack.shutdown().await;
}

#[tokio::test]
async fn hostile_messages_get_a_precise_reason_and_queue_nothing() {
    let setup = start("hostile", "").await;
    let duplicate = json!({"events": [
        {"id": "same", "user": {"Id": MARTA_ID, "Username": MARTA, "IsActive": true}},
        {"id": "same", "user": {"Id": JAMES_ID, "Username": JAMES, "IsActive": true}},
    ]});
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("e{i}"), "user": {"Id": MARTA_ID}}))
        .collect();
    let mut foreign: Value = serde_json::from_str(EVENT_RELAY).unwrap();
    foreign["source"] = json!("aws.partner/salesforce.com/00D8a000009ZzYxEAK/0YL8a000000PqRsGAK");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            duplicate.to_string().into_bytes(),
            400,
            "duplicate_event_id",
        ),
        (
            json!({"events": too_many}).to_string().into_bytes(),
            400,
            "too_many_events",
        ),
        (
            format!("{}{}", "[".repeat(64), "]".repeat(64)).into_bytes(),
            400,
            "too_deep",
        ),
        (b"{\"events\": [\"\xff\"]}".to_vec(), 400, "not_utf8"),
        (b"{\"events\": ".to_vec(), 400, "malformed_json"),
        (
            br#"{"kind": "something else"}"#.to_vec(),
            400,
            "unknown_shape",
        ),
        (
            foreign.to_string().into_bytes(),
            403,
            "foreign_organization",
        ),
        // serde_json's private raw-value key (its `raw_value` feature is on in this build):
        // an ordinary, refused name here, never a way to have a string parsed as JSON.
        (
            json!({"events": [{"id": "e1", "user": {
                "Id": MARTA_ID,
                "$serde_json::private::RawValue": format!("{{\"Username\": \"{MARTA}\"}}"),
            }}]})
            .to_string()
            .into_bytes(),
            400,
            "bad_field_name",
        ),
        (
            json!({"$serde_json::private::RawValue": json!({"events": [
                {"id": "e1", "user": {"Id": MARTA_ID, "Username": MARTA, "IsActive": true}}
            ]}).to_string()})
            .to_string()
            .into_bytes(),
            400,
            "unknown_shape",
        ),
    ];
    for (body, status, reason) in cases {
        let timestamp = now_secs().to_string();
        let signature = sign(KEY.as_bytes(), &timestamp, &body);
        let answer = setup
            .post_with(
                &body,
                &[
                    ("content-type", "application/json".into()),
                    ("x-userprov-timestamp", timestamp),
                    ("x-userprov-signature", signature),
                ],
            )
            .await;
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (status, Some(reason)),
            "{}",
            answer.body
        );
        assert_eq!(answer.body["reason"], reason);
        assert_eq!(answer.body["status"], status);
    }

    let timestamp = now_secs().to_string();
    let signature = sign(KEY.as_bytes(), &timestamp, FLOW.as_bytes());
    let answer = setup
        .post_with(
            FLOW.as_bytes(),
            &[
                ("content-type", "text/plain".into()),
                ("x-userprov-timestamp", timestamp),
                ("x-userprov-signature", signature),
            ],
        )
        .await;
    assert_eq!(answer.status, 415);
    assert_eq!(answer.reason.as_deref(), Some("unsupported_media_type"));

    let huge = format!(
        r#"{{"events": [{{"id": "e", "user": {{"Id": "{MARTA_ID}", "Title": "{}"}}}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let answer = setup.post_signed(&huge).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.reason.as_deref(), Some("body_too_large"));

    assert!(setup.stack.queue_is_empty().await);
    assert!(setup.stack.log_entries("").await.is_empty());
    setup.stack.shutdown().await;
}
