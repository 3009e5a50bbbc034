//! OAuth2 credentials end to end: a real authorization server (oidc-provider) issues the tokens,
//! and a resource server's gate in front of scim2-server lets a request through only when its
//! bearer token is one the authorization server says is active.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::{AuthProvider, SecretCredentials, collect_notes};
use userprov_core::embedded::LocalSecretStore;
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::ports::{SecretStore, SecretValue};
use userprov_tests::auth_gate::AuthGate;
use userprov_tests::peers::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, OidcProvider, PUBLIC_CLIENT_ID,
};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{Notified, ORG_ID, TestStack, config_for, outbound_message};
use userprov_tests::scim_contract::{key, user_resource};

const SECRET: &str = "userprov/zoom";

struct Setup {
    oidc: OidcProvider,
    gate: AuthGate,
    _scim: Arc<Scim2Server>,
    store: Arc<LocalSecretStore>,
    _dir: tempfile::TempDir,
    tenant: String,
}

impl Setup {
    async fn start(tenant: &str, access_token_ttl: Duration) -> Self {
        let oidc = OidcProvider::start(access_token_ttl);
        let scim = Scim2Server::shared();
        let upstream = format!("http://127.0.0.1:{}", scim.port());
        let gate = AuthGate::start(
            &upstream,
            &format!("Bearer {}", scim.token),
            &oidc.introspection_url(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSecretStore::with_env_lookup(
            PathBuf::from(dir.path()),
            |_| None,
        ));
        Self {
            oidc,
            gate,
            _scim: scim,
            store,
            _dir: dir,
            tenant: tenant.to_owned(),
        }
    }

    async fn store_secret(&self, value: &Value) {
        self.store
            .put_secret(SECRET, &SecretValue::new(value.to_string()))
            .await
            .unwrap();
    }

    async fn stored_secret(&self) -> Value {
        let raw = self.store.get_secret(SECRET).await.unwrap();
        serde_json::from_str(raw.expose()).unwrap()
    }

    fn client_credentials(&self) -> Value {
        json!({
            "type": "oauth2_client_credentials",
            "token_url": self.oidc.token_url(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "scim",
        })
    }

    fn credentials(&self) -> Arc<SecretCredentials> {
        Arc::new(SecretCredentials::new(
            self.store.clone(),
            SECRET,
            http_client(Duration::from_secs(10)).unwrap(),
        ))
    }

    fn connector(&self, auth: Arc<dyn AuthProvider>) -> ScimConnector {
        ScimConnector::new(
            http_client(Duration::from_secs(10)).unwrap(),
            ScimSettings {
                base_url: format!("{}/{}/v2", self.gate.url(), self.tenant),
                timeout: Duration::from_secs(10),
            },
            auth,
        )
    }

    /// The distinct tokens the gate saw, in order, each with whether it was accepted.
    fn tokens_seen(&self) -> Vec<(String, bool)> {
        let mut distinct: Vec<(String, bool)> = Vec::new();
        for seen in self.gate.seen() {
            if distinct.last() != Some(&seen) {
                distinct.push(seen);
            }
        }
        distinct
    }
}

fn hours_ago(hours: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::hours(hours))
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn a_client_credentials_token_from_the_server_is_what_the_target_receives() {
    let setup = Setup::start("oauth-cc", Duration::from_secs(3600)).await;
    setup.store_secret(&setup.client_credentials()).await;
    let connector = setup.connector(setup.credentials());

    let created = connector
        .create(&user_resource(
            "cc.user@acme.example",
            "cc.user@acme.example",
            "005CC0000000001AAA",
        ))
        .await
        .unwrap();
    let found = connector
        .find(&[key("userName", "cc.user@acme.example")])
        .await
        .unwrap();
    connector
        .set_active(&created.value.id, false)
        .await
        .unwrap();

    assert_eq!(found.value.unwrap().id, created.value.id);
    let seen = setup.gate.seen();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter().all(|(token, ok)| *ok && *token == seen[0].0),
        "one issued token, cached and accepted for every call: {seen:?}"
    );
    assert!(setup.oidc.is_active(&seen[0].0).await);
}

#[tokio::test]
async fn a_cached_token_is_replaced_shortly_before_it_expires() {
    // Tokens live 3 s; userprov renews them a tenth of their life early.
    let setup = Setup::start("oauth-expiry", Duration::from_secs(3)).await;
    setup.store_secret(&setup.client_credentials()).await;
    let connector = setup.connector(setup.credentials());
    let nobody = [key("userName", "nobody@acme.example")];

    connector.find(&nobody).await.unwrap();
    connector.find(&nobody).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_800)).await;
    connector.find(&nobody).await.unwrap();

    let seen = setup.tokens_seen();
    assert_eq!(
        seen.len(),
        2,
        "the first token for two calls, a new one once it neared expiry, and no 401: {seen:?}"
    );
    assert!(seen.iter().all(|(_, ok)| *ok), "{seen:?}");
}

#[tokio::test]
async fn a_401_gets_a_new_token_once_and_the_call_is_retried_once() {
    let setup = Setup::start("oauth-401", Duration::from_secs(3600)).await;
    setup.store_secret(&setup.client_credentials()).await;
    let connector = setup.connector(setup.credentials());
    let nobody = [key("userName", "nobody@acme.example")];
    connector.find(&nobody).await.unwrap();
    let first = setup.gate.seen()[0].0.clone();
    // The token dies before its time (revoked by an admin, or the server restarted).
    setup
        .oidc
        .revoke(&first, CLIENT_ID, Some(CLIENT_SECRET))
        .await;

    let found = connector.find(&nobody).await.unwrap();

    assert_eq!(found.value, None);
    let seen = setup.tokens_seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], (first.clone(), true));
    assert_eq!(seen[1], (first.clone(), false), "the revoked token got 401");
    assert!(
        seen[2].1 && seen[2].0 != first,
        "a new token, accepted: {seen:?}"
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_written_back_and_its_age_is_noted() {
    let setup = Setup::start("oauth-rotate", Duration::from_secs(3600)).await;
    let original = setup.oidc.consent(CLIENT_ID).await;
    setup
        .store_secret(&json!({
            "type": "oauth2_refresh_token",
            "token_url": setup.oidc.token_url(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": original,
            "refresh_token_issued_at": hours_ago(3 * 24 + 5),
            "note": "Zoom production, consented by it-admin",
        }))
        .await;
    let connector = setup.connector(setup.credentials());

    let (found, notes) =
        collect_notes(connector.find(&[key("userName", "nobody@acme.example")])).await;

    assert_eq!(found.unwrap().value, None);
    let stored = setup.stored_secret().await;
    let rotated = stored["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, original, "the rotated token replaced the old one");
    assert_eq!(stored["note"], "Zoom production, consented by it-admin");
    assert_eq!(stored["client_secret"], CLIENT_SECRET);
    let issued = OffsetDateTime::parse(
        stored["refresh_token_issued_at"].as_str().unwrap(),
        &Rfc3339,
    )
    .unwrap();
    assert!(OffsetDateTime::now_utc() - issued < time::Duration::minutes(1));
    let notes = notes.join(" | ");
    assert!(notes.contains("3 days 5 hours old"), "{notes}");
    assert!(notes.contains("rotated"), "{notes}");
    assert!(
        !notes.contains(&original) && !notes.contains(rotated),
        "{notes}"
    );
    // The server really rotated it: the old token is spent, and a second connector (another
    // process) starting from the store works with the new one.
    let reuse = reqwest::Client::new()
        .post(setup.oidc.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &original),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 400);
}

#[tokio::test]
async fn a_public_client_refreshes_without_a_client_secret() {
    let setup = Setup::start("oauth-public", Duration::from_secs(3600)).await;
    let original = setup.oidc.consent(PUBLIC_CLIENT_ID).await;
    setup
        .store_secret(&json!({
            "type": "oauth2_refresh_token",
            "token_url": setup.oidc.token_url(),
            "client_id": PUBLIC_CLIENT_ID,
            "refresh_token": original,
        }))
        .await;
    let connector = setup.connector(setup.credentials());

    let (found, notes) =
        collect_notes(connector.find(&[key("userName", "nobody@acme.example")])).await;

    assert_eq!(found.unwrap().value, None);
    assert!(notes.join(" ").contains("unknown age"), "{notes:?}");
    assert_ne!(setup.stored_secret().await["refresh_token"], original);
}

#[tokio::test]
async fn a_revoked_refresh_token_fails_with_reauthorize_and_says_what_to_do() {
    let setup = Setup::start("oauth-revoked", Duration::from_secs(3600)).await;
    let refresh_token = setup.oidc.consent(CLIENT_ID).await;
    setup
        .oidc
        .revoke(&refresh_token, CLIENT_ID, Some(CLIENT_SECRET))
        .await;
    setup
        .store_secret(&json!({
            "type": "oauth2_refresh_token",
            "token_url": setup.oidc.token_url(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token,
        }))
        .await;
    let connector = setup.connector(setup.credentials());

    let error = connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    assert!(
        matches!(error, ConnectorError::Reauthorize { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), "reauthorize");
    assert_eq!(error.class(), ErrorClass::Permanent);
    let message = error.to_string();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("OAuth consent"), "{message}");
    assert!(message.contains(SECRET), "{message}");
    assert!(!message.contains(&refresh_token), "{message}");
    assert!(!message.contains(CLIENT_SECRET), "{message}");
    assert!(
        setup.gate.seen().is_empty(),
        "nothing reached the target without a token"
    );
}

#[tokio::test]
async fn wrong_client_credentials_fail_with_reauthorize_naming_the_fields() {
    let setup = Setup::start("oauth-wrong-client", Duration::from_secs(3600)).await;
    let mut secret = setup.client_credentials();
    secret["client_secret"] = json!("not-the-secret-42");
    setup.store_secret(&secret).await;
    let connector = setup.connector(setup.credentials());

    let error = connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    assert_eq!(error.code(), "reauthorize", "{error:?}");
    let message = error.to_string();
    assert!(message.contains("client_secret"), "{message}");
    assert!(!message.contains("not-the-secret-42"), "{message}");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_or_a_missing_secret_is_transient() {
    let setup = Setup::start("oauth-unreachable", Duration::from_secs(3600)).await;
    let connector = setup.connector(setup.credentials());
    let nobody = [key("userName", "nobody@acme.example")];

    let missing = connector.find(&nobody).await.unwrap_err();
    assert_eq!(missing.class(), ErrorClass::Transient, "{missing:?}");
    assert!(missing.to_string().contains(SECRET), "{missing}");

    let mut secret = setup.client_credentials();
    secret["token_url"] = json!(format!(
        "http://127.0.0.1:{}/token",
        userprov_tests::peers::free_port()
    ));
    setup.store_secret(&secret).await;
    let unreachable = connector.find(&nobody).await.unwrap_err();
    assert!(
        matches!(unreachable, ConnectorError::Credentials(_)),
        "{unreachable:?}"
    );
    assert_eq!(unreachable.class(), ErrorClass::Transient);
    assert!(!unreachable.to_string().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn the_workers_log_entry_carries_the_refresh_tokens_age_after_a_refresh() {
    let setup = Setup::start("oauth-worker-log", Duration::from_secs(3600)).await;
    let original = setup.oidc.consent(CLIENT_ID).await;
    let secret = json!({
        "type": "oauth2_refresh_token",
        "token_url": setup.oidc.token_url(),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": original,
        "refresh_token_issued_at": hours_ago(2 * 24 + 3),
    });
    let base_url = format!("{}/{}/v2", setup.gate.url(), setup.tenant);
    let stack = TestStack::start(
        &config_for(&base_url, "", ""),
        &[("userprov/scim", &secret.to_string())],
    )
    .await;
    let joiner = outbound_message(
        ORG_ID,
        &[Notified {
            notification_id: "04l8a00000Dq7ZzAAJ",
            user_id: "0058a00000LmN2pAAF",
            fields: &[
                ("Username", "nora.refresh@acme.example"),
                ("LastName", "Refresh"),
                ("Email", "nora.refresh@acme.example"),
                ("IsActive", "true"),
            ],
        }],
    );

    let (status, answer) = stack.post_outbound(&joiner).await;
    assert_eq!(status, 200, "{answer}");
    stack.wait_idle().await;

    let entries = stack.log_entries("user=nora.refresh@acme.example").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (
            entries[0]["operation"].as_str(),
            entries[0]["status"].as_str()
        ),
        (Some("create"), Some("success")),
        "{entries:?}"
    );
    let reason = entries[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("refresh token in secret userprov/scim, 2 days 3 hours old"),
        "{reason}"
    );
    let seen = setup.gate.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, ok)| *ok),
        "the target accepted the refreshed token: {seen:?}"
    );
    assert!(!reason.contains(&original), "{reason}");
    stack.shutdown().await;
}
