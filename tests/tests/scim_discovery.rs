//! What a target says it supports (`/ServiceProviderConfig`) decides how the SCIM connector
//! speaks to it. Against scim2-server announcing a constrained SaaS profile (no PATCH, no
//! filter, ETags, cursor-only pages of two), and against scim2-server in its normal mode behind
//! the fault proxy (a config that is missing or garbage, a PATCH or filter refused anyway).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::AuthProvider;
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::ports::SecretValue;
use userprov_tests::fault_proxy::{Fault, FaultProxy, Interference};
use userprov_tests::peers::scim2_server::{Scim2Server, constrained_config};
use userprov_tests::scim_contract::{WORK_EMAIL, key, user_resource};

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

/// The constrained server the tests running at the moment share (each test has its tenant).
fn constrained() -> Arc<Scim2Server> {
    static SHARED: Mutex<Weak<Scim2Server>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = slot.upgrade() {
        return server;
    }
    let server = Arc::new(Scim2Server::start_announcing(&constrained_config(2)));
    *slot = Arc::downgrade(&server);
    server
}

struct Target {
    server: Arc<Scim2Server>,
    proxy: FaultProxy,
    tenant: String,
    connector: ScimConnector,
    edits: AtomicUsize,
}

impl Target {
    async fn behind_proxy(server: Arc<Scim2Server>, tenant: &str) -> Self {
        let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", server.port())).await;
        let timeout = Duration::from_secs(10);
        let connector = ScimConnector::new(
            http_client(timeout).unwrap(),
            ScimSettings {
                base_url: format!("{}/{tenant}/v2", proxy.url()),
                timeout,
            },
            Arc::new(Bearer(server.token.clone())),
        );
        Self {
            server,
            proxy,
            tenant: tenant.to_owned(),
            connector,
            edits: AtomicUsize::new(0),
        }
    }

    async fn create(&self, user_name: &str, work_email: &str) -> String {
        self.connector
            .create(&user_resource(user_name, work_email, user_name))
            .await
            .unwrap()
            .value
            .id
    }

    /// Requests seen from this point on: (method, path and query, status).
    fn seen_since(&self, start: usize) -> Vec<(String, String, u16)> {
        self.proxy.seen().into_iter().skip(start).collect()
    }

    /// Another client's full replace of the user, sent just before userprov's next PUT.
    fn someone_else_edits_before_the_next_put(&self, id: &str) {
        // A different change each time: a PUT that changes nothing keeps the version.
        let edit = self.edits.fetch_add(1, Ordering::SeqCst);
        self.proxy.interfere_before_next(Interference {
            before: "PUT".into(),
            method: "PUT".into(),
            path: format!("/{}/v2/Users/{id}", self.tenant),
            body: json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("{id}@elsewhere.example"),
                "displayName": format!("Changed elsewhere {edit}")
            })
            .to_string(),
            headers: vec![
                (
                    "authorization".into(),
                    format!("Bearer {}", self.server.token),
                ),
                ("content-type".into(), "application/scim+json".into()),
            ],
        });
    }
}

fn count(seen: &[(String, String, u16)], pick: impl Fn(&str, &str) -> bool) -> usize {
    seen.iter().filter(|(m, p, _)| pick(m, p)).count()
}

#[tokio::test]
async fn a_constrained_target_is_read_once_and_spoken_to_as_it_announces() {
    let t = Target::behind_proxy(constrained(), "constrained-profile").await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(
            t.create(
                &format!("user{n}@acme.example"),
                &format!("user{n}@acme.example"),
            )
            .await,
        );
    }
    let start = t.proxy.seen().len();

    let found = t
        .connector
        .find(&[key("userName", "USER5@acme.example")])
        .await
        .unwrap();
    let nobody = t
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap();
    let listed = t.connector.list_users(100).await.unwrap();
    t.connector.set_active(&ids[2], false).await.unwrap();
    let mut renamed = user_resource("user4@acme.example", "user4@acme.example", "user4");
    renamed["displayName"] = json!("Renamed Four");
    t.connector.update(&ids[3], &renamed).await.unwrap();

    assert_eq!(
        found.value.map(|a| a.id).as_ref(),
        Some(&ids[4]),
        "found on the third page of two"
    );
    assert_eq!(nobody.value, None);
    assert_eq!(
        listed.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    let deactivated = t.connector.get(&ids[2]).await.unwrap().value.unwrap();
    assert_eq!(deactivated.active, Some(false));
    let updated = t.connector.get(&ids[3]).await.unwrap().value.unwrap();
    assert_eq!(updated.resource["displayName"], "Renamed Four");

    let seen = t.seen_since(start);
    assert_eq!(
        count(&seen, |m, p| m == "GET"
            && p.ends_with("/ServiceProviderConfig")),
        1,
        "read once: {seen:?}"
    );
    assert_eq!(
        count(&seen, |_, p| p.contains("filter=")),
        0,
        "no filter is sent to a target without filters: {seen:?}"
    );
    assert_eq!(
        count(&seen, |_, p| p.contains("startIndex=")),
        0,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, |m, p| m == "GET" && p.contains("/Users?cursor=")),
        9,
        "two finds and a listing, three cursor pages each: {seen:?}"
    );
    assert_eq!(count(&seen, |m, _| m == "PATCH"), 0, "{seen:?}");
    assert!(
        seen.iter()
            .filter(|(m, _, _)| m == "PUT")
            .all(|(_, _, s)| *s == 200),
        "{seen:?}"
    );
}

#[tokio::test]
async fn two_accounts_matching_on_a_filterless_target_are_an_error_not_a_guess() {
    let t = Target::behind_proxy(constrained(), "constrained-ambiguous").await;
    let first = t.create("dana.one@acme.example", "dana@acme.example").await;
    t.create("filler1@acme.example", "filler1@acme.example")
        .await;
    t.create("filler2@acme.example", "filler2@acme.example")
        .await;
    let second = t.create("dana.two@acme.example", "dana@acme.example").await;

    let error = t
        .connector
        .find(&[key(WORK_EMAIL, "dana@acme.example")])
        .await
        .unwrap_err();

    let ConnectorError::Rejected {
        scim_type, detail, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(scim_type.as_deref(), Some("ambiguous"));
    assert!(
        detail.contains(&first) && detail.contains(&second),
        "{detail}"
    );
    let one = t
        .connector
        .find(&[
            key(WORK_EMAIL, "dana@acme.example"),
            key("userName", "dana.two@acme.example"),
        ])
        .await
        .unwrap();
    assert_eq!(one.value.map(|a| a.id), Some(second));
}

#[tokio::test]
async fn a_change_between_read_and_write_is_read_again_once_then_a_version_conflict() {
    let t = Target::behind_proxy(constrained(), "constrained-etag").await;
    let id = t.create("erin@acme.example", "erin@acme.example").await;
    let mut desired = user_resource("erin@acme.example", "erin@acme.example", "erin");
    desired["displayName"] = json!("Erin From Salesforce");

    t.someone_else_edits_before_the_next_put(&id);
    let start = t.proxy.seen().len();
    t.connector.update(&id, &desired).await.unwrap();

    let on_user: Vec<(String, u16)> = t
        .seen_since(start)
        .into_iter()
        .filter(|(_, p, _)| p.ends_with(&format!("/Users/{id}")))
        .map(|(m, _, s)| (m, s))
        .collect();
    let expected = [("GET", 200), ("PUT", 412), ("GET", 200), ("PUT", 200)];
    assert_eq!(on_user, expected.map(|(m, s)| (m.to_owned(), s)));
    let now = t.connector.get(&id).await.unwrap().value.unwrap();
    assert_eq!(now.resource["displayName"], "Erin From Salesforce");

    t.someone_else_edits_before_the_next_put(&id);
    t.someone_else_edits_before_the_next_put(&id);
    let error = t.connector.update(&id, &desired).await.unwrap_err();

    assert_eq!(error, ConnectorError::VersionConflict { id: id.clone() });
    assert_eq!(
        (error.class(), error.code(), error.http_status()),
        (
            ErrorClass::Transient,
            "version_conflict".to_owned(),
            Some(412)
        )
    );
    // The same goes for a deactivation sent as a PUT.
    t.someone_else_edits_before_the_next_put(&id);
    t.connector.set_active(&id, false).await.unwrap();
    let now = t.connector.get(&id).await.unwrap().value.unwrap();
    assert_eq!(
        (now.active, now.resource["displayName"].as_str()),
        (Some(false), Some("Changed elsewhere 3")),
        "the flag was set on the version read again, keeping the other change"
    );
}

#[tokio::test]
async fn a_target_without_a_usable_config_gets_defaults_and_an_unwell_one_is_asked_again() {
    let t = Target::behind_proxy(Scim2Server::shared(), "no-usable-config").await;
    let marta = [key("userName", "marta@acme.example")];
    t.proxy.fail_next(
        "GET",
        503,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"503","detail":"busy"}"#,
    );

    let unwell = t.connector.find(&marta).await.unwrap_err();
    t.proxy.fail_next_with(Fault {
        method: "GET".into(),
        status: 200,
        body: "<html><body>Welcome to Acme</body></html>".into(),
        headers: vec![("content-type".into(), "text/html".into())],
    });
    let before_create = t.connector.find(&marta).await.unwrap();
    let id = t.create("marta@acme.example", "marta@acme.example").await;
    let found = t.connector.find(&marta).await.unwrap();
    let start = t.proxy.seen().len();
    t.connector.set_active(&id, false).await.unwrap();
    t.connector
        .update(
            &id,
            &user_resource("marta@acme.example", "marta@acme.example", "marta"),
        )
        .await
        .unwrap();

    assert!(
        matches!(unwell, ConnectorError::ServerError { status: 503, .. }),
        "an unwell target fails the call, to be tried again: {unwell:?}"
    );
    assert_eq!(before_create.value, None);
    assert_eq!(found.value.map(|a| a.id).as_ref(), Some(&id));
    let seen = t.proxy.seen();
    assert_eq!(
        count(&seen, |m, p| m == "GET"
            && p.ends_with("/ServiceProviderConfig")),
        2,
        "asked again after the 503, then the defaults were kept: {seen:?}"
    );
    assert_eq!(
        count(&seen, |_, p| p.contains("filter=")),
        2,
        "the defaults filter (and verify the hits): {seen:?}"
    );
    let methods: Vec<String> = t.seen_since(start).into_iter().map(|(m, _, _)| m).collect();
    assert_eq!(
        methods,
        ["PATCH", "PUT"],
        "the defaults: PATCH, and no ETags, so no read before the PUT"
    );
}

#[tokio::test]
async fn a_patch_or_filter_refused_against_the_announcement_is_remembered() {
    let t = Target::behind_proxy(Scim2Server::shared(), "refused-anyway").await;
    let id = t.create("li@acme.example", "li@acme.example").await;
    let li = [key("userName", "li@acme.example")];
    // The first call reads the config, which announces PATCH and filters.
    t.connector.get(&id).await.unwrap();
    t.connector.find(&li).await.unwrap();
    let refused = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"501","detail":"not implemented"}"#;
    t.proxy.fail_next("PATCH", 501, refused);
    let start = t.proxy.seen().len();

    t.connector.set_active(&id, false).await.unwrap();
    t.connector.set_active(&id, true).await.unwrap();
    t.proxy.fail_next("GET", 501, refused);
    let first = t.connector.find(&li).await.unwrap();
    let second = t.connector.find(&li).await.unwrap();

    assert_eq!(first.value.map(|a| a.id).as_ref(), Some(&id));
    assert_eq!(second.value.map(|a| a.id).as_ref(), Some(&id));
    let account = t.connector.get(&id).await.unwrap().value.unwrap();
    assert_eq!(account.active, Some(true));
    let seen: Vec<(String, bool, u16)> = t
        .seen_since(start)
        .into_iter()
        .map(|(m, p, s)| (m, p.contains("filter="), s))
        .collect();
    let expected = [
        ("PATCH", false, 501),
        ("GET", false, 200),
        ("PUT", false, 200),
        ("GET", false, 200),
        ("PUT", false, 200),
        ("GET", true, 501),
        ("GET", false, 200),
        ("GET", false, 200),
        ("GET", false, 200),
    ];
    assert_eq!(
        seen,
        expected.map(|(m, f, s)| (m.to_owned(), f, s)),
        "after one refusal each, PUT and pages are used directly (the last GET reads the account)"
    );
}
