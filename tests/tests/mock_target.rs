//! The built-in mock target keeps the same SCIM contract as a real server: the connector's
//! contract steps pass against it, served over HTTP on a free loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use serde_json::{Value, json};
use userprov_core::connector::mock::MockTarget;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::AuthProvider;
use userprov_core::ports::SecretValue;
use userprov_tests::scim_contract::{self, key, user_resource};

struct FixedAuth {
    header: String,
    refreshes: AtomicUsize,
}

impl FixedAuth {
    fn new(header: &str) -> Arc<Self> {
        Arc::new(Self {
            header: header.into(),
            refreshes: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl AuthProvider for FixedAuth {
    async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
        Ok(SecretValue::new(self.header.clone()))
    }
    async fn refresh(&self) -> Result<(), ConnectorError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The mock target mounted under `/scim/v2` on a free port, and its SCIM base URL.
async fn serve_mock() -> (MockTarget, String) {
    let target = MockTarget::new();
    let app = Router::new().nest("/scim/v2", target.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (target, format!("http://{address}/scim/v2"))
}

fn connector(base_url: &str, auth: Arc<dyn AuthProvider>) -> ScimConnector {
    let timeout = Duration::from_secs(5);
    ScimConnector::new(
        http_client(timeout).unwrap(),
        ScimSettings {
            base_url: base_url.into(),
            timeout,
        },
        auth,
    )
}

async fn raw(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth("any-token");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test]
async fn a_user_goes_through_its_whole_lifecycle_on_the_mock_target() {
    let (target, base) = serve_mock().await;
    let connector = connector(&base, FixedAuth::new("Bearer demo"));
    scim_contract::user_lifecycle(&connector, "mock").await;
    assert!(
        target.users().is_empty(),
        "the lifecycle ends with the user deleted"
    );
}

#[tokio::test]
async fn names_with_quotes_and_backslashes_are_found_exactly_on_the_mock_target() {
    let (_, base) = serve_mock().await;
    scim_contract::awkward_names_are_found_exactly(
        &connector(&base, FixedAuth::new("Bearer demo")),
        "mock",
    )
    .await;
}

#[tokio::test]
async fn the_mock_target_wants_a_bearer_token() {
    let (target, base) = serve_mock().await;
    let auth = FixedAuth::new("Basic dXNlcjpwdw==");
    let error = connector(&base, auth.clone())
        .create(&user_resource("x", "x@acme.example", "1"))
        .await
        .unwrap_err();
    assert_eq!(error, ConnectorError::Unauthorized);
    assert_eq!(auth.refreshes.load(Ordering::SeqCst), 1);
    assert!(target.users().is_empty());

    let anonymous = reqwest::get(format!("{base}/Users")).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"SCIM\""
    );
}

#[tokio::test]
async fn created_users_are_visible_to_the_embedding_program() {
    let (target, base) = serve_mock().await;
    let created = connector(&base, FixedAuth::new("Bearer demo"))
        .create(&user_resource(
            "marta@acme.example",
            "marta@acme.example",
            "0058a00000LmN2pAAF",
        ))
        .await
        .unwrap();
    let users = target.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], json!(created.value.id));
    assert_eq!(users[0]["userName"], json!("marta@acme.example"));
    assert_eq!(users[0]["meta"]["resourceType"], json!("User"));
}

#[tokio::test]
async fn patch_takes_active_with_or_without_a_path_and_only_as_a_boolean() {
    let (_, base) = serve_mock().await;
    let (_, user) = raw(
        reqwest::Method::POST,
        &format!("{base}/Users"),
        Some(user_resource("p@x", "p@x", "1")),
    )
    .await;
    let url = format!("{base}/Users/{}", user["id"].as_str().unwrap());
    let patch = |operation: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [operation]});

    let (status, body) = raw(
        reqwest::Method::PATCH,
        &url,
        Some(patch(
            json!({"op": "replace", "path": "active", "value": false}),
        )),
    )
    .await;
    assert_eq!((status, &body["active"]), (200, &json!(false)));
    let (status, body) = raw(
        reqwest::Method::PATCH,
        &url,
        Some(patch(json!({"op": "Replace", "value": {"active": true}}))),
    )
    .await;
    assert_eq!((status, &body["active"]), (200, &json!(true)));

    let (status, body) = raw(
        reqwest::Method::PATCH,
        &url,
        Some(patch(
            json!({"op": "replace", "path": "active", "value": "False"}),
        )),
    )
    .await;
    assert_eq!((status, &body["scimType"]), (400, &json!("invalidValue")));
    let (status, body) = raw(
        reqwest::Method::PATCH,
        &url,
        Some(json!({"Operations": [{"op": "replace", "value": {"active": false}}]})),
    )
    .await;
    assert_eq!(
        (status, &body["status"]),
        (400, &json!("400")),
        "a PATCH without the PatchOp schema is refused"
    );
    let (status, _) = raw(
        reqwest::Method::PATCH,
        &url,
        Some(patch(
            json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a"}),
        )),
    )
    .await;
    assert_eq!(
        status, 400,
        "paths with filters are not supported by the mock"
    );
}

#[tokio::test]
async fn lists_are_scim_list_responses_and_unsupported_filters_are_refused() {
    let (_, base) = serve_mock().await;
    for name in ["a@x", "b@x", "c@x"] {
        let (status, _) = raw(
            reqwest::Method::POST,
            &format!("{base}/Users"),
            Some(user_resource(name, name, name)),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, page) = raw(
        reqwest::Method::GET,
        &format!("{base}/Users?startIndex=2&count=1"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        page["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            page["totalResults"].clone(),
            page["startIndex"].clone(),
            page["itemsPerPage"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(page["Resources"][0]["userName"], json!("b@x"));

    let url = reqwest::Url::parse_with_params(
        &format!("{base}/Users"),
        [("filter", "userName sw \"a\"")],
    )
    .unwrap();
    let (status, error) = raw(reqwest::Method::GET, url.as_str(), None).await;
    assert_eq!((status, &error["scimType"]), (400, &json!("invalidFilter")));

    let found = connector(&base, FixedAuth::new("Bearer demo"))
        .find(&[key("externalId", "c@x")])
        .await
        .unwrap();
    assert_eq!(found.value.unwrap().resource["userName"], json!("c@x"));
}

#[tokio::test]
async fn bad_resources_get_scim_errors() {
    let (_, base) = serve_mock().await;
    let users = format!("{base}/Users");
    let (status, error) = raw(
        reqwest::Method::POST,
        &users,
        Some(json!({"userName": "no-schemas"})),
    )
    .await;
    assert_eq!((status, &error["scimType"]), (400, &json!("invalidSyntax")));
    let no_name =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "displayName": "x"});
    let (status, error) = raw(reqwest::Method::POST, &users, Some(no_name)).await;
    assert_eq!((status, &error["scimType"]), (400, &json!("invalidValue")));
    let (status, error) = raw(reqwest::Method::GET, &format!("{users}/missing"), None).await;
    assert_eq!(
        (status, &error["schemas"]),
        (404, &json!(["urn:ietf:params:scim:api:messages:2.0:Error"]))
    );

    let (status, config) = raw(
        reqwest::Method::GET,
        &format!("{base}/ServiceProviderConfig"),
        None,
    )
    .await;
    assert_eq!((status, &config["patch"]["supported"]), (200, &json!(true)));
}
