//! SCIM Groups through the connector, against scim2-server in its normal mode and configured
//! like a constrained SaaS target (no PATCH, no filtering, pages of two).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError, GroupOptions};
use userprov_core::credentials::AuthProvider;
use userprov_core::groups::MemberRemoval;
use userprov_core::ports::SecretValue;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::peers::{PeerProcess, free_port, venv_program};

struct Bearer(String);

#[async_trait]
impl AuthProvider for Bearer {
    async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
        Ok(SecretValue::new(format!("Bearer {}", self.0)))
    }
    async fn refresh(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

fn connector(base_url: &str, token: &str) -> ScimConnector {
    let timeout = Duration::from_secs(10);
    ScimConnector::new(
        http_client(timeout).unwrap(),
        ScimSettings {
            base_url: base_url.into(),
            timeout,
        },
        Arc::new(Bearer(token.into())),
    )
}

/// scim2-server announcing no PATCH and no filtering, with at most two results per page; it
/// refuses both with 501, as constrained targets do.
fn constrained_server() -> (PeerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service-provider-config.json");
    std::fs::write(
        &config,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": false},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": false, "maxResults": 2},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": []
        })
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let mut command = Command::new(venv_program(".venv", "scim2-server"));
    command.args(["--hostname", "127.0.0.1", "--port", &port.to_string()]);
    command.arg("--service-provider-config").arg(&config);
    let process = PeerProcess::start(
        "scim2-server (constrained)",
        command,
        port,
        Duration::from_secs(60),
    );
    (process, dir)
}

async fn create_user(connector: &ScimConnector, user_name: &str) -> String {
    connector
        .create(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}))
        .await
        .unwrap()
        .value
        .id
}

/// The member ids of a group, sorted, read straight from the server.
async fn members(base_url: &str, token: &str, group_id: &str) -> Vec<String> {
    let group: Value = reqwest::Client::new()
        .get(format!("{base_url}/Groups/{group_id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_group_is_found_or_created_once_and_members_change_in_chunks() {
    let server = Scim2Server::shared();
    let base_url = server.tenant_url("groups-chunks");
    let scim = connector(&base_url, &server.token);
    assert_eq!(
        scim.group_id("engineering", false).await.unwrap().value,
        None
    );
    let created = scim
        .group_id("engineering", true)
        .await
        .unwrap()
        .value
        .unwrap();
    let again = scim
        .group_id("Engineering", true)
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(created, again, "found by display name, not created twice");

    let mut users = Vec::new();
    for i in 0..5 {
        users.push(create_user(&scim, &format!("member{i}@acme.example")).await);
    }
    let options = GroupOptions {
        chunk_size: 2,
        member_removal: MemberRemoval::FilterPath,
    };
    scim.add_members(&created, &users, &options).await.unwrap();
    // Adding a member twice is harmless.
    scim.add_members(&created, &users[..1], &options)
        .await
        .unwrap();
    assert_eq!(
        members(&base_url, &server.token, &created).await,
        sorted(users.clone())
    );
    scim.remove_members(&created, &users[1..4], &options)
        .await
        .unwrap();
    assert_eq!(
        members(&base_url, &server.token, &created).await,
        sorted(vec![users[0].clone(), users[4].clone()]),
        "only the members named are removed"
    );
}

#[tokio::test]
async fn the_removal_dialect_is_the_targets_choice() {
    let server = Scim2Server::shared();
    let base_url = server.tenant_url("groups-dialect");
    let scim = connector(&base_url, &server.token);
    let group = scim.group_id("support", true).await.unwrap().value.unwrap();
    let user = create_user(&scim, "agent@acme.example").await;
    let legacy = GroupOptions {
        chunk_size: 100,
        member_removal: MemberRemoval::ValueList,
    };
    scim.add_members(&group, std::slice::from_ref(&user), &legacy)
        .await
        .unwrap();
    // scim2-server follows RFC 7644 strictly: a remove with a value list is refused, and the
    // refusal is a clear, permanent error rather than a silent no-op.
    let error = scim
        .remove_members(&group, std::slice::from_ref(&user), &legacy)
        .await
        .unwrap_err();
    assert_eq!(error.http_status(), Some(400), "{error}");
    assert_eq!(members(&base_url, &server.token, &group).await, vec![user]);
}

#[tokio::test]
async fn two_groups_with_the_same_name_are_never_guessed_between() {
    let server = Scim2Server::shared();
    let base_url = server.tenant_url("groups-ambiguous");
    let scim = connector(&base_url, &server.token);
    for _ in 0..2 {
        reqwest::Client::new()
            .post(format!("{base_url}/Groups"))
            .bearer_auth(&server.token)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "finance"}).to_string())
            .send()
            .await
            .unwrap();
    }
    let error = scim.group_id("finance", true).await.unwrap_err();
    assert!(error.to_string().contains("2 groups are named"), "{error}");
}

#[tokio::test]
async fn a_target_without_patch_or_filters_gets_the_member_list_it_showed_changed() {
    let (server, _config) = constrained_server();
    let base_url = format!("{}/v2", server.url());
    let scim = connector(&base_url, "unused");
    // Enough groups for several pages of two, so the group is found by reading them all.
    for name in ["a", "b", "c", "d"] {
        scim.group_id(name, true).await.unwrap();
    }
    let group = scim.group_id("sales", true).await.unwrap().value.unwrap();
    assert_eq!(
        scim.group_id("sales", true).await.unwrap().value,
        Some(group.clone()),
        "found on a later page, not created again"
    );
    let options = GroupOptions::default();
    let first = create_user(&scim, "first@acme.example").await;
    let second = create_user(&scim, "second@acme.example").await;
    // An empty group is not shown with `members`: removing from it is done, adding is refused
    // rather than replacing a member list userprov cannot see.
    scim.remove_members(&group, std::slice::from_ref(&first), &options)
        .await
        .unwrap();
    let refused = scim
        .add_members(&group, std::slice::from_ref(&first), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ConnectorError::Unsupported(_)),
        "{refused}"
    );

    // With members listed, the PUT carries the list with only the change applied.
    let other = scim.group_id("ops", true).await.unwrap().value.unwrap();
    reqwest::Client::new()
        .put(format!("{base_url}/Groups/{other}"))
        .header("content-type", "application/scim+json")
        .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": other, "displayName": "ops", "members": [{"value": first}]}).to_string())
        .send()
        .await
        .unwrap();
    scim.add_members(&other, std::slice::from_ref(&second), &options)
        .await
        .unwrap();
    assert_eq!(
        members(&base_url, "unused", &other).await,
        sorted(vec![first.clone(), second.clone()])
    );
    scim.remove_members(&other, std::slice::from_ref(&first), &options)
        .await
        .unwrap();
    assert_eq!(members(&base_url, "unused", &other).await, vec![second]);
}
