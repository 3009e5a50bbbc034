//! Permission Set Groups to target access, end to end: Outbound Messages posted to the running
//! embedded stack, group memberships and role attributes checked in a real SCIM server
//! (scim2-server), the changes read back from the log API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{
    Notified, ORG_ID, TestStack, config_for, outbound_message, scim_group_memberships, scim_users,
};

const MARTA: &str = "marta.fernandes@acme.example";
const MARTA_ID: &str = "0058a00000LmN2pAAF";
const PRIYA: &str = "priya.raman@acme.example";
const PRIYA_ID: &str = "0058a00000LmN4rAAF";

const GROUPS: &str = r#"
[apps.groups]
from = "PermissionSetGroups__c"
[apps.groups.map]
Sales_Cloud = "sales"
Engineering = ["engineering", "github-users"]
"#;

/// Direct calls to the SCIM server, as an admin of the target app would make them.
struct Target {
    _server: std::sync::Arc<Scim2Server>,
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    fn new(tenant: &str) -> Self {
        let server = Scim2Server::shared();
        Self {
            base_url: server.tenant_url(tenant),
            token: server.token.clone(),
            http: reqwest::Client::new(),
            _server: server,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        answer.json().await.unwrap()
    }

    async fn create_user(&self, user_name: &str) -> String {
        let user = self
            .post(
                "/Users",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}),
            )
            .await;
        user["id"].as_str().unwrap().to_owned()
    }

    async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let group = self
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members}),
            )
            .await;
        group["id"].as_str().unwrap().to_owned()
    }

    /// Group display name → its member ids, sorted.
    async fn memberships(&self) -> Vec<(String, Vec<String>)> {
        scim_group_memberships(&self.base_url, &self.token).await
    }

    async fn account_id(&self, user_name: &str) -> String {
        let users = scim_users(&self.base_url, &self.token, Some(user_name)).await;
        assert_eq!(users.len(), 1, "{users:?}");
        users[0]["id"].as_str().unwrap().to_owned()
    }
}

fn marta(notification_id: &str, modstamp: &str, groups: &str) -> String {
    outbound_message(
        ORG_ID,
        &[Notified {
            notification_id,
            user_id: MARTA_ID,
            fields: &[
                ("Username", MARTA),
                ("LastName", "Fernandes"),
                ("Email", MARTA),
                ("IsActive", "true"),
                ("SystemModstamp", modstamp),
                ("PermissionSetGroups__c", groups),
            ],
        }],
    )
}

async fn post_ok(stack: &TestStack, body: &str) {
    let (status, answer) = stack.post_outbound(body).await;
    assert_eq!(status, 200, "the webhook answered {answer}");
    stack.wait_idle().await;
}

#[tokio::test]
async fn permission_set_groups_become_memberships_and_only_changes_are_sent() {
    let target = Target::new("groups-memberships");
    // The target already has a "sales" group with a member userprov does not manage, and a
    // group outside the mapping.
    let colleague = target.create_user("colleague@acme.example").await;
    target.create_group("sales", &[&colleague]).await;
    target.create_group("all-hands", &[]).await;
    let stack = TestStack::start(
        &config_for(&target.base_url, GROUPS, ""),
        &[("userprov/scim", &target.token)],
    )
    .await;

    post_ok(
        &stack,
        &marta(
            "04l8a0000000001",
            "2026-03-02T09:00:00.000Z",
            "Sales_Cloud;Engineering;Chatter_Free",
        ),
    )
    .await;
    let marta_account = target.account_id(MARTA).await;
    let mut sales = vec![colleague.clone(), marta_account.clone()];
    sales.sort();
    assert_eq!(
        target.memberships().await,
        vec![
            ("all-hands".to_owned(), vec![]),
            ("engineering".to_owned(), vec![marta_account.clone()]),
            ("github-users".to_owned(), vec![marta_account.clone()]),
            ("sales".to_owned(), sales),
        ],
        "the mapped groups are created when missing; unmapped Permission Set Groups give nothing"
    );
    let created = stack.log_entries(&format!("user={MARTA_ID}")).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["operation"], "create");
    assert_eq!(
        created[0]["groups"]["added"],
        json!(["engineering", "github-users", "sales"])
    );

    // An admin puts Marta in a group outside the mapping, by hand, in the target.
    target.create_group("all-hands-2", &[&marta_account]).await;

    // Marta leaves sales; nothing else about her changes.
    post_ok(
        &stack,
        &marta("04l8a0000000002", "2026-03-03T09:00:00.000Z", "Engineering"),
    )
    .await;
    assert_eq!(
        target.memberships().await,
        vec![
            ("all-hands".to_owned(), vec![]),
            ("all-hands-2".to_owned(), vec![marta_account.clone()]),
            ("engineering".to_owned(), vec![marta_account.clone()]),
            ("github-users".to_owned(), vec![marta_account.clone()]),
            ("sales".to_owned(), vec![colleague.clone()]),
        ],
        "only sales changed: the colleague stays, the hand-made membership stays"
    );
    let entries = stack.log_entries(&format!("user={MARTA_ID}")).await;
    let moved = &entries[1..];
    assert_eq!(moved[0]["operation"], "update");
    assert_eq!(moved[0]["status"], "success");
    assert_eq!(moved[0]["groups"], json!({"removed": ["sales"]}));
    assert!(
        moved[0]["reason"]
            .as_str()
            .unwrap()
            .contains("removed from sales"),
        "{}",
        moved[0]
    );

    // The same state again sends nothing.
    post_ok(
        &stack,
        &marta("04l8a0000000003", "2026-03-04T09:00:00.000Z", "Engineering"),
    )
    .await;
    let entries = stack.log_entries(&format!("user={MARTA_ID}")).await;
    assert_eq!(entries.len(), 3);
    let again = &entries[2..];
    assert_eq!(again[0]["operation"], "noop");
    assert!(
        again[0].get("groups").is_none_or(Value::is_null),
        "{}",
        again[0]
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_leaver_keeps_memberships_and_a_stale_event_does_not_undo_a_change() {
    let target = Target::new("groups-stale");
    let stack = TestStack::start(
        &config_for(&target.base_url, GROUPS, ""),
        &[("userprov/scim", &target.token)],
    )
    .await;
    post_ok(
        &stack,
        &marta("04l8a0000000011", "2026-03-05T09:00:00.000Z", "Engineering"),
    )
    .await;
    // An older event, delivered late, still lists Sales_Cloud: it must not add sales.
    post_ok(
        &stack,
        &marta(
            "04l8a0000000010",
            "2026-03-01T09:00:00.000Z",
            "Sales_Cloud;Engineering",
        ),
    )
    .await;
    let account = target.account_id(MARTA).await;
    let engineering_only = vec![
        ("engineering".to_owned(), vec![account.clone()]),
        ("github-users".to_owned(), vec![account.clone()]),
    ];
    assert_eq!(target.memberships().await, engineering_only);

    // Marta leaves: her account is deactivated and its memberships are left as they are.
    let leaver = marta("04l8a0000000012", "2026-03-06T09:00:00.000Z", "Engineering").replace(
        "<sf:IsActive>true</sf:IsActive>",
        "<sf:IsActive>false</sf:IsActive>",
    );
    post_ok(&stack, &leaver).await;
    let users = scim_users(&target.base_url, &target.token, Some(MARTA)).await;
    assert_eq!(users[0]["active"], json!(false));
    assert_eq!(target.memberships().await, engineering_only);

    // She comes back in sales: reactivated, and only the difference is sent.
    post_ok(
        &stack,
        &marta("04l8a0000000013", "2026-03-07T09:00:00.000Z", "Sales_Cloud"),
    )
    .await;
    assert_eq!(
        target.memberships().await,
        vec![
            ("engineering".to_owned(), vec![]),
            ("github-users".to_owned(), vec![]),
            ("sales".to_owned(), vec![account.clone()]),
        ]
    );
    let entries = stack.log_entries(&format!("user={MARTA_ID}")).await;
    let last = entries.last().unwrap();
    assert_eq!(last["operation"], "reactivate");
    assert_eq!(
        last["groups"],
        json!({"added": ["sales"], "removed": ["engineering", "github-users"]})
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn groups_can_be_a_role_attribute_and_the_manager_is_referenced_by_account_id() {
    let target = Target::new("groups-roles");
    let extra = r#"
[apps.groups]
from = "PermissionSetGroups__c"
deliver_as = "attribute"
attribute = "roles"
[apps.groups.map]
Sales_Cloud = "Sales Rep"
Support = "Agent"
"#;
    let config = config_for(&target.base_url, extra, "").replace(
        "title = \"Title\"",
        "title = \"Title\"\n\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value\" = { account_of = \"ManagerId\" }",
    );
    let stack = TestStack::start(&config, &[("userprov/scim", &target.token)]).await;
    let priya = |id: &str| {
        outbound_message(
            ORG_ID,
            &[Notified {
                notification_id: id,
                user_id: PRIYA_ID,
                fields: &[
                    ("Username", PRIYA),
                    ("LastName", "Raman"),
                    ("Email", PRIYA),
                    ("IsActive", "true"),
                    ("PermissionSetGroups__c", "Support; Sales_Cloud"),
                ],
            }],
        )
    };
    post_ok(&stack, &priya("04l8a0000000020")).await;
    // Marta reports to Priya, who already has an account.
    let body = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a0000000021",
            user_id: MARTA_ID,
            fields: &[
                ("Username", MARTA),
                ("LastName", "Fernandes"),
                ("Email", MARTA),
                ("IsActive", "true"),
                ("ManagerId", "0058a00000LmN4r"),
                ("PermissionSetGroups__c", "Unmapped_Group"),
            ],
        }],
    );
    post_ok(&stack, &body).await;

    let priya_account = scim_users(&target.base_url, &target.token, Some(PRIYA)).await;
    assert_eq!(
        priya_account[0]["roles"],
        json!([{"value": "Agent"}, {"value": "Sales Rep"}])
    );
    let marta_account = scim_users(&target.base_url, &target.token, Some(MARTA)).await;
    let enterprise =
        &marta_account[0]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(
        enterprise["manager"]["value"], priya_account[0]["id"],
        "the manager is Priya's account id in the target, found from the 15-character ManagerId"
    );
    assert!(
        marta_account[0]
            .get("roles")
            .is_none_or(|r| r == &json!([])),
        "{}",
        marta_account[0]
    );
    stack.shutdown().await;
}
