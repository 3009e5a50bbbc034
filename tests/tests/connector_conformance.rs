//! The connector conformance kit (`userprov_tests::conformance`) run against each built-in
//! connector on a real target: SCIM on scim2-server, REST on json-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use userprov_core::connector::rest::{RestConnector, RestSettings};
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError, GroupOptions};
use userprov_core::credentials::AuthProvider;
use userprov_core::ports::SecretValue;
use userprov_tests::conformance::{self, Subject};
use userprov_tests::peers::json_server::{
    JsonServer, REST_GROUPS_AS_LISTS, REST_GROUPS_ONE_BY_ONE, REST_SETTINGS,
};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::scim_contract::user_resource;

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

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the kit's group member reader returns.
type Members = Pin<Box<dyn Future<Output = Vec<String>> + Send>>;

/// `[apps.rest]` of the json-server profile with `group_templates`, as the config file gives it.
pub fn json_server_settings(group_templates: &str) -> RestSettings {
    let table: toml::Table = toml::from_str(&format!("{REST_SETTINGS}{group_templates}")).unwrap();
    table["apps"]["rest"].clone().try_into().unwrap()
}

/// The member ids of a group, read straight from the target's answer at `pointer`.
async fn members_at(
    url: String,
    token: String,
    pointer: &'static str,
    field: Option<&'static str>,
) -> Vec<String> {
    let group: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    group
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let id = match field {
                Some(field) => &m[field],
                None => m,
            };
            id.as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_scim_connector_conforms_on_scim2_server() {
    let server = Scim2Server::shared();
    let base_url = server.tenant_url("conformance");
    let token = server.token.clone();
    let make = || -> Arc<dyn Connector> {
        Arc::new(ScimConnector::new(
            http_client(TIMEOUT).unwrap(),
            ScimSettings {
                base_url: base_url.clone(),
                timeout: TIMEOUT,
            },
            Arc::new(Bearer(token.clone())),
        ))
    };
    let members_of = |group_id: String| -> Members {
        let url = format!("{base_url}/Groups/{group_id}");
        Box::pin(members_at(url, token.clone(), "/members", Some("value")))
    };
    let report = conformance::run(
        &Subject {
            connector: &make,
            new_account: &|tag| {
                let email = format!("marta.{tag}@acme.example");
                user_resource(&email, &email, &format!("0058a00000LmN2p-{tag}"))
            },
            match_attribute: "userName",
            changed_attribute: "title",
            has_delete: true,
            group_members: Some(&members_of),
        },
        "scim",
    )
    .await;
    assert_eq!(report.checks.len(), 14, "{report:?}");
}

/// Runs the kit on a fresh json-server with the REST connector and `group_templates`.
async fn rest_conformance(group_templates: &str) {
    let server = JsonServer::start();
    let base_url = server.url();
    let token = server.token.clone();
    let make = || -> Arc<dyn Connector> {
        Arc::new(
            RestConnector::new(
                http_client(TIMEOUT).unwrap(),
                &base_url,
                TIMEOUT,
                json_server_settings(group_templates),
                Arc::new(Bearer(token.clone())),
            )
            .unwrap(),
        )
    };
    let new_account = |tag: &str| -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "email": format!("marta.{tag}@acme.example"),
            "name": "Marta Fernandes",
            "title": "Engineer",
            "active": true
        })
    };
    let members_of = |group_id: String| -> Members {
        let url = format!("{base_url}/groups/{group_id}");
        Box::pin(members_at(url, token.clone(), "/member_ids", None))
    };
    let report = conformance::run(
        &Subject {
            connector: &make,
            new_account: &new_account,
            match_attribute: "email",
            changed_attribute: "title",
            has_delete: true,
            group_members: Some(&members_of),
        },
        "rest",
    )
    .await;
    assert_eq!(report.checks.len(), 14, "{report:?}\n{}", server.log());
    let stored = server.users().await;
    assert!(
        stored.iter().all(|u| u.get("schemas").is_none()),
        "SCIM bookkeeping is not sent to a REST API: {stored:?}"
    );
}

#[tokio::test]
async fn the_rest_connector_conforms_on_json_server_one_member_per_request() {
    rest_conformance(REST_GROUPS_ONE_BY_ONE).await;
}

#[tokio::test]
async fn the_rest_connector_conforms_on_json_server_with_member_lists() {
    rest_conformance(REST_GROUPS_AS_LISTS).await;
}

#[tokio::test]
async fn rest_member_lists_go_in_chunks_and_an_empty_list_sends_nothing() {
    let server = JsonServer::start();
    let proxy = userprov_tests::fault_proxy::FaultProxy::start(&server.url()).await;
    let rest = RestConnector::new(
        http_client(TIMEOUT).unwrap(),
        &proxy.url(),
        TIMEOUT,
        json_server_settings(REST_GROUPS_AS_LISTS),
        Arc::new(Bearer(server.token.clone())),
    )
    .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let user = server
            .post(
                "users",
                &json!({"email": format!("member.{n}@acme.example")}),
            )
            .await;
        ids.push(user["id"].to_string());
    }
    let group = rest.group_id("chunked", true).await.unwrap().value.unwrap();
    let options = GroupOptions {
        chunk_size: 2,
        ..GroupOptions::default()
    };
    let calls = |method: &'static str| {
        let path = format!("/groups/{group}/members");
        let seen = proxy.seen();
        seen.iter()
            .filter(|(m, p, _)| m == method && *p == path)
            .count()
    };

    rest.add_members(&group, &ids, &options).await.unwrap();
    assert_eq!(
        calls("POST"),
        3,
        "5 members in chunks of 2: {:?}",
        proxy.seen()
    );
    let mut all = ids.clone();
    all.sort();
    assert_eq!(
        server.memberships().await,
        vec![("chunked".to_owned(), all)]
    );

    rest.remove_members(&group, &ids[..3], &options)
        .await
        .unwrap();
    assert_eq!(calls("DELETE"), 2, "{:?}", proxy.seen());
    let mut left = ids[3..].to_vec();
    left.sort();
    assert_eq!(
        server.memberships().await,
        vec![("chunked".to_owned(), left.clone())],
        "only the members named are removed"
    );

    let before = proxy.seen().len();
    rest.add_members(&group, &[], &options).await.unwrap();
    rest.remove_members(&group, &[], &options).await.unwrap();
    assert_eq!(proxy.seen().len(), before, "an empty list sends no request");
    assert_eq!(
        server.memberships().await,
        vec![("chunked".to_owned(), left)]
    );
}

#[tokio::test]
async fn a_find_that_misses_an_existing_group_is_a_config_error_not_a_second_group() {
    let server = JsonServer::start();
    server
        .post("groups", &json!({"name": "ops", "member_ids": []}))
        .await;
    // This find searches by id instead of name, so it never sees the group.
    let misread = REST_GROUPS_ONE_BY_ONE.replace("/groups?name={name}", "/groups?id={name}");
    let rest = RestConnector::new(
        http_client(TIMEOUT).unwrap(),
        &server.url(),
        TIMEOUT,
        json_server_settings(&misread),
        Arc::new(Bearer(server.token.clone())),
    )
    .unwrap();
    let error = rest.group_id("ops", true).await.unwrap_err();
    let ConnectorError::Config(message) = &error else {
        panic!("not a config error: {error:?}")
    };
    assert!(
        message.contains("HTTP 409") && message.contains("find (/groups?id={name})"),
        "{message}"
    );
    assert_eq!(
        server.memberships().await,
        vec![("ops".to_owned(), vec![])],
        "no second group"
    );
}

#[tokio::test]
async fn a_group_search_the_api_ignores_still_gives_only_the_group_named() {
    let server = JsonServer::start();
    for name in ["ops-emea", "sales", "ops"] {
        server
            .post("groups", &json!({"name": name, "member_ids": []}))
            .await;
    }
    // json-server ignores a filter on a field its groups do not have: every group comes back.
    let ignored = REST_GROUPS_ONE_BY_ONE.replace("/groups?name={name}", "/groups?title={name}");
    let rest = RestConnector::new(
        http_client(TIMEOUT).unwrap(),
        &server.url(),
        TIMEOUT,
        json_server_settings(&ignored),
        Arc::new(Bearer(server.token.clone())),
    )
    .unwrap();
    assert_eq!(
        rest.group_id("ops", false).await.unwrap().value.as_deref(),
        Some("3")
    );
    assert_eq!(
        rest.group_id("support", false).await.unwrap().value,
        None,
        "no other group stands in for a missing one"
    );
}
