//! The SCIM connector against a real SCIM server (scim2-server), and against small scripted
//! servers that misbehave the way real targets do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::{AuthProvider, SecretBearer};
use userprov_core::error::Classify;
use userprov_core::ports::{SecretError, SecretStore, SecretValue};
use userprov_tests::peers::free_port;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::scim_contract::{self, WORK_EMAIL, key, user_resource};

/// A fixed Authorization value that counts how often it is asked for and refreshed.
struct CountingAuth {
    header: String,
    authorizations: AtomicUsize,
    refreshes: AtomicUsize,
}

impl CountingAuth {
    fn new(header: &str) -> Arc<Self> {
        Arc::new(Self {
            header: header.into(),
            authorizations: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl AuthProvider for CountingAuth {
    async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
        self.authorizations.fetch_add(1, Ordering::SeqCst);
        Ok(SecretValue::new(self.header.clone()))
    }
    async fn refresh(&self) -> Result<(), ConnectorError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Secrets in memory, counting reads.
#[derive(Default)]
struct MemorySecrets {
    values: Mutex<HashMap<String, String>>,
    reads: AtomicUsize,
}

impl MemorySecrets {
    fn set(&self, name: &str, value: &str) {
        self.values
            .lock()
            .unwrap()
            .insert(name.into(), value.into());
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get_secret(&self, name: &str) -> Result<SecretValue, SecretError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let values = self.values.lock().unwrap();
        values
            .get(name)
            .map(|v| SecretValue::new(v.clone()))
            .ok_or(SecretError::NotFound { name: name.into() })
    }
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<(), SecretError> {
        self.set(name, value.expose());
        Ok(())
    }
}

fn connector(base_url: &str, auth: Arc<dyn AuthProvider>, timeout: Duration) -> ScimConnector {
    let http = http_client(timeout).unwrap();
    ScimConnector::new(
        http,
        ScimSettings {
            base_url: base_url.into(),
            timeout,
        },
        auth,
    )
}

/// A connector to a fresh tenant of the shared scim2-server, with the token read from a secret.
fn scim2_connector(server: &Scim2Server, tenant: &str) -> ScimConnector {
    let store = Arc::new(MemorySecrets::default());
    store.set(
        "userprov/scim2",
        &json!({"type": "bearer", "token": server.token}).to_string(),
    );
    let auth = Arc::new(SecretBearer::new(store, "userprov/scim2"));
    connector(&server.tenant_url(tenant), auth, Duration::from_secs(10))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn a_user_goes_through_its_whole_lifecycle_on_scim2_server() {
    let server = Scim2Server::shared();
    let connector = scim2_connector(&server, "lifecycle");
    scim_contract::user_lifecycle(&connector, "lifecycle").await;
}

#[tokio::test]
async fn names_with_quotes_and_backslashes_are_found_exactly_on_scim2_server() {
    let server = Scim2Server::shared();
    let connector = scim2_connector(&server, "awkward");
    scim_contract::awkward_names_are_found_exactly(&connector, "awkward").await;
}

#[tokio::test]
async fn a_wrong_token_is_refreshed_once_then_reported_as_unauthorized() {
    let server = Scim2Server::shared();
    let auth = CountingAuth::new("Bearer not-the-token");
    let connector = connector(
        &server.tenant_url("wrong-token"),
        auth.clone(),
        Duration::from_secs(10),
    );
    // The ServiceProviderConfig comes first; scim2-server serves it to anyone (RFC 7644 §4).
    connector.capabilities().await.unwrap();
    let before = auth.authorizations.load(Ordering::SeqCst);

    let error = connector
        .find(&[key("userName", "anyone")])
        .await
        .unwrap_err();

    assert_eq!(error, ConnectorError::Unauthorized);
    assert_eq!(error.code(), "reauthorize");
    assert_eq!(
        auth.refreshes.load(Ordering::SeqCst),
        1,
        "refreshed exactly once"
    );
    assert_eq!(
        auth.authorizations.load(Ordering::SeqCst) - before,
        2,
        "sent twice: before and after the refresh"
    );
}

#[tokio::test]
async fn a_rotated_secret_is_picked_up_after_one_401() {
    let server = Scim2Server::shared();
    let store = Arc::new(MemorySecrets::default());
    store.set("userprov/rotating", "stale-token");
    let bearer = Arc::new(SecretBearer::new(store.clone(), "userprov/rotating"));
    bearer.authorization().await.unwrap(); // cached: the stale token
    store.set(
        "userprov/rotating",
        &json!({"type": "bearer", "token": server.token}).to_string(),
    );
    let connector = connector(
        &server.tenant_url("rotation"),
        bearer,
        Duration::from_secs(10),
    );

    let found = connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap();

    assert_eq!(found.value, None);
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        2,
        "read once, then once more after the 401"
    );
}

/// A target that ignores filters: every search answers all its users.
fn filter_ignoring_target() -> Router {
    let users = json!([
        {"id": "1", "userName": "alice@acme.example", "emails": [{"type": "work", "value": "alice@acme.example"}]},
        {"id": "2", "userName": "bob@acme.example", "emails": [{"type": "work", "value": "bob@acme.example"}], "active": false},
        {"id": "3", "userName": "twin@acme.example"},
        {"id": "4", "userName": "TWIN@acme.example"}
    ]);
    Router::new().route(
        "/Users",
        get(move || {
            let users = users.clone();
            async move {
                let list = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                                  "totalResults": 4, "Resources": users});
                (
                    [(header::CONTENT_TYPE, "application/scim+json")],
                    list.to_string(),
                )
            }
        }),
    )
}

#[tokio::test]
async fn a_target_that_ignores_filters_does_not_make_find_return_the_wrong_account() {
    let base = serve(filter_ignoring_target()).await;
    let connector = connector(&base, CountingAuth::new("Bearer t"), Duration::from_secs(5));

    let bob = connector
        .find(&[key("userName", "Bob@acme.example")])
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!((bob.id.as_str(), bob.active), ("2", Some(false)));
    let alice = connector
        .find(&[key(WORK_EMAIL, "alice@acme.example")])
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(alice.id, "1");
    let nobody = connector
        .find(&[key("userName", "carol@acme.example")])
        .await
        .unwrap();
    assert_eq!(nobody.value, None, "none of the answered users is carol");

    match connector
        .find(&[key("userName", "twin@acme.example")])
        .await
    {
        Err(ConnectorError::Rejected {
            scim_type: Some(kind),
            detail,
            ..
        }) => {
            assert_eq!(kind, "ambiguous");
            assert!(
                detail.contains("2 accounts match") && detail.contains("3, 4"),
                "{detail}"
            );
        }
        other => panic!("two matching accounts must be an error, got {other:?}"),
    }
}

/// What a scripted target saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

async fn record(
    State(recorder): State<Recorder>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    recorder.0.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body,
    });
    let scim = |status: StatusCode, body: Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/scim+json")],
            body.to_string(),
        )
            .into_response()
    };
    match (method.as_str(), path.as_str()) {
        (_, p) if p.starts_with("/throttled/") => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "17")],
            "slow down",
        )
            .into_response(),
        (_, p) if p.starts_with("/down/") => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/html"),
                (header::RETRY_AFTER, "Fri, 01 Jan 2100 00:00:00 GMT"),
            ],
            "<html><body><h1>Down for maintenance</h1></body></html>",
        )
            .into_response(),
        (_, p) if p.starts_with("/login-page/") => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Sign in</body></html>",
        )
            .into_response(),
        (_, p) if p.starts_with("/huge/") => scim(
            StatusCode::OK,
            json!({"totalResults": 1, "Resources": [{"id": "1", "padding": "x".repeat(2 * 1024 * 1024)}]}),
        ),
        (_, p) if p.starts_with("/slow/") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            scim(StatusCode::OK, json!({"totalResults": 0}))
        }
        (_, p) if p.starts_with("/numeric-status/") => scim(
            StatusCode::BAD_REQUEST,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": 400, "detail": "title is too long"}),
        ),
        ("POST", p) if p.starts_with("/echo/") => {
            let sent = recorder
                .seen()
                .last()
                .and_then(|s| s.headers.get(header::AUTHORIZATION).cloned());
            let sent = sent
                .and_then(|v| v.to_str().ok().map(str::to_owned))
                .unwrap_or_default();
            scim(
                StatusCode::BAD_REQUEST,
                json!({"status": "400", "scimType": "invalidValue", "detail": format!("cannot use {sent}")}),
            )
        }
        ("POST", p) if p.starts_with("/inspect/") => {
            scim(StatusCode::CREATED, json!({"id": "new-1", "userName": "x"}))
        }
        ("POST", p) if p.starts_with("/no-id/") => {
            scim(StatusCode::CREATED, json!({"userName": "x"}))
        }
        ("PATCH", p) if p.starts_with("/no-patch/") => scim(
            StatusCode::NOT_IMPLEMENTED,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "501", "detail": "PATCH is not supported"}),
        ),
        ("GET", p) if p.starts_with("/no-patch/") => scim(
            StatusCode::OK,
            json!({"id": "u1", "userName": "x", "active": true, "meta": {"resourceType": "User"}}),
        ),
        ("PUT", p) if p.starts_with("/no-patch/") => scim(StatusCode::OK, json!({"id": "u1"})),
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

/// A server that answers every path by its first segment (see [`record`]) and records what it saw.
async fn scripted_target() -> (String, Recorder) {
    let recorder = Recorder::default();
    let router = Router::new().fallback(record).with_state(recorder.clone());
    (serve(router).await, recorder)
}

#[tokio::test]
async fn requests_carry_the_scim_media_types_and_the_user_agent() {
    let (base, recorder) = scripted_target().await;
    let connector = connector(
        &format!("{base}/inspect/"),
        CountingAuth::new("Bearer t"),
        Duration::from_secs(5),
    );

    connector
        .create(&user_resource("x", "x@acme.example", "1"))
        .await
        .unwrap();

    let seen = &recorder.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/inspect/Users")
    );
    let header = |name| seen.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header(header::CONTENT_TYPE), "application/scim+json");
    assert_eq!(
        header(header::ACCEPT),
        "application/scim+json, application/json"
    );
    assert!(
        header(header::USER_AGENT).starts_with("userprov/"),
        "{}",
        header(header::USER_AGENT)
    );
    assert_eq!(header(header::AUTHORIZATION), "Bearer t");
    assert_eq!(
        serde_json::from_str::<Value>(&seen.body).unwrap()["userName"],
        json!("x")
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient_and_carry_retry_after() {
    let (base, _) = scripted_target().await;
    let auth = CountingAuth::new("Bearer t");

    let throttled = connector(
        &format!("{base}/throttled"),
        auth.clone(),
        Duration::from_secs(5),
    );
    let error = throttled.get("u1").await.unwrap_err();
    assert_eq!(
        error,
        ConnectorError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(17))
        }
    );
    assert!(error.class().is_retryable());

    let down = connector(&format!("{base}/down"), auth, Duration::from_secs(5));
    match down.delete("u1").await.unwrap_err() {
        error @ ConnectorError::ServerError { status: 503, .. } => {
            assert!(
                error
                    .retry_after()
                    .is_some_and(|d| d > Duration::from_secs(3600)),
                "{error:?}"
            );
            assert!(error.class().is_retryable());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn garbage_answers_are_bad_responses() {
    let (base, _) = scripted_target().await;
    let auth = CountingAuth::new("Bearer t");
    for (prefix, what) in [("login-page", "HTML"), ("huge", "1 MiB")] {
        let connector = connector(
            &format!("{base}/{prefix}"),
            auth.clone(),
            Duration::from_secs(5),
        );
        match connector.find(&[key("userName", "x")]).await {
            Err(ConnectorError::BadResponse(message)) => {
                assert!(message.contains(what), "{prefix}: {message}")
            }
            other => panic!("{prefix}: {other:?}"),
        }
    }
    let no_id = connector(&format!("{base}/no-id"), auth, Duration::from_secs(5));
    match no_id
        .create(&user_resource("x", "x@acme.example", "1"))
        .await
    {
        Err(ConnectorError::BadResponse(message)) => assert!(message.contains("id"), "{message}"),
        other => panic!("a created resource without id: {other:?}"),
    }
}

#[tokio::test]
async fn a_numeric_status_in_an_error_body_is_understood() {
    let (base, _) = scripted_target().await;
    let connector = connector(
        &format!("{base}/numeric-status"),
        CountingAuth::new("Bearer t"),
        Duration::from_secs(5),
    );
    match connector
        .update("u1", &user_resource("x", "x@acme.example", "1"))
        .await
    {
        Err(ConnectorError::Rejected {
            status: 400,
            scim_type: None,
            detail,
            ..
        }) => {
            assert_eq!(detail, "title is too long")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_target_times_out_and_an_absent_one_is_a_network_error() {
    let (base, _) = scripted_target().await;
    let auth = CountingAuth::new("Bearer t");
    let slow = connector(
        &format!("{base}/slow"),
        auth.clone(),
        Duration::from_millis(300),
    );
    assert_eq!(slow.get("u1").await.unwrap_err(), ConnectorError::Timeout);

    let absent = connector(
        &format!("http://127.0.0.1:{}/v2", free_port()),
        auth,
        Duration::from_secs(5),
    );
    let error = absent.get("u1").await.unwrap_err();
    assert!(matches!(error, ConnectorError::Network(_)), "{error:?}");
    assert!(error.class().is_retryable());
}

#[tokio::test]
async fn a_token_echoed_back_by_the_target_never_reaches_the_error() {
    let (base, _) = scripted_target().await;
    let connector = connector(
        &format!("{base}/echo"),
        CountingAuth::new("Bearer tok-echo-42"),
        Duration::from_secs(5),
    );

    let error = connector
        .create(&user_resource("x", "x@acme.example", "1"))
        .await
        .unwrap_err();

    let ConnectorError::Rejected {
        status: 400,
        ref detail,
        ref body,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert!(
        detail.contains("<redacted>"),
        "the target did echo something: {detail}"
    );
    for shown in [
        format!("{error}"),
        format!("{error:?}"),
        detail.clone(),
        body.clone(),
    ] {
        assert!(!shown.contains("tok-echo-42"), "the token leaked: {shown}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_names_the_other_host() {
    let (elsewhere, elsewhere_saw) = scripted_target().await;
    let elsewhere = elsewhere.replace("127.0.0.1", "localhost");
    let location = format!("{elsewhere}/inspect/Users");
    let redirecting = Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response()
        }
    });
    let base = serve(redirecting).await;
    let connector = connector(
        &base,
        CountingAuth::new("Bearer tok-redirect"),
        Duration::from_secs(5),
    );

    match connector
        .create(&user_resource("x", "x@acme.example", "1"))
        .await
    {
        Err(ConnectorError::BadResponse(message)) => {
            assert!(message.contains("host localhost"), "{message}")
        }
        other => panic!("a redirect must be a BadResponse, got {other:?}"),
    }
    assert!(
        elsewhere_saw.seen().is_empty(),
        "nothing, and no token, went to the other host"
    );
}

#[tokio::test]
async fn a_target_without_patch_is_deactivated_with_a_full_put() {
    let (base, recorder) = scripted_target().await;
    let connector = connector(
        &format!("{base}/no-patch"),
        CountingAuth::new("Bearer t"),
        Duration::from_secs(5),
    );

    connector.set_active("u1", false).await.unwrap();

    let seen: Vec<(String, String)> = recorder
        .seen()
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    // Its ServiceProviderConfig is garbage (a user), so PATCH is tried first.
    let expected = [
        ("GET", "/no-patch/ServiceProviderConfig"),
        ("PATCH", "/no-patch/Users/u1"),
        ("GET", "/no-patch/Users/u1"),
        ("PUT", "/no-patch/Users/u1"),
    ];
    assert_eq!(seen, expected.map(|(m, p)| (m.to_owned(), p.to_owned())));
    let put: Value = serde_json::from_str(&recorder.seen()[3].body).unwrap();
    assert_eq!(
        put,
        json!({"id": "u1", "userName": "x", "active": false}),
        "the full resource, meta left out"
    );
}

#[tokio::test]
async fn an_id_with_a_slash_stays_one_path_segment() {
    let (base, recorder) = scripted_target().await;
    let connector = connector(
        &format!("{base}/no-patch"),
        CountingAuth::new("Bearer t"),
        Duration::from_secs(5),
    );
    let _ = connector.delete("a/../b").await;
    assert_eq!(recorder.seen()[0].path, "/no-patch/Users/a%2F..%2Fb");
}

#[tokio::test]
async fn a_401_everywhere_is_refreshed_once_then_unauthorized() {
    let unauthorized = Router::new().fallback(|| async {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/scim+json")],
            r#"{"status":"401"}"#,
        )
    });
    let base = serve(unauthorized).await;
    let auth = CountingAuth::new("Bearer t");
    let connector = connector(&base, auth.clone(), Duration::from_secs(5));

    assert_eq!(
        connector.set_active("u1", false).await.unwrap_err(),
        ConnectorError::Unauthorized
    );
    assert_eq!(auth.refreshes.load(Ordering::SeqCst), 1);
}
