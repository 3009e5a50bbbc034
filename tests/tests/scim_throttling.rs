//! Throttling against a real scim2-server behind the fault proxy: a target's 429 and 503 with
//! Retry-After (seconds or an HTTP date), and userprov's own per-app rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;
use userprov_core::config::RateLimitConfig;
use userprov_core::connector::rate_limit::RateLimiter;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::SecretCredentials;
use userprov_core::embedded::LocalSecretStore;
use userprov_core::error::Classify;
use userprov_core::ports::{SecretStore, SecretValue};
use userprov_tests::fault_proxy::{Fault, FaultProxy};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::scim_contract::key;

struct Setup {
    proxy: FaultProxy,
    connector: ScimConnector,
    rate_limit: Option<Arc<RateLimiter>>,
    _scim: Arc<Scim2Server>,
    _dir: tempfile::TempDir,
}

async fn setup(tenant: &str, rate_limit: Option<RateLimitConfig>) -> Setup {
    let scim = Scim2Server::shared();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", scim.port())).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalSecretStore::with_env_lookup(dir.path().into(), |_| {
        None
    }));
    store
        .put_secret(
            "userprov/scim2",
            &SecretValue::new(json!({"type": "bearer", "token": scim.token}).to_string()),
        )
        .await
        .unwrap();
    let http = http_client(Duration::from_secs(10)).unwrap();
    let mut connector = ScimConnector::new(
        http.clone(),
        ScimSettings {
            base_url: format!("{}/{tenant}/v2", proxy.url()),
            timeout: Duration::from_secs(10),
        },
        Arc::new(SecretCredentials::new(store, "userprov/scim2", http)),
    );
    let rate_limit = rate_limit.map(|limit| Arc::new(RateLimiter::new(&limit).unwrap()));
    if let Some(limiter) = &rate_limit {
        connector = connector.with_rate_limit(limiter.clone());
    }
    Setup {
        proxy,
        connector,
        rate_limit,
        _scim: scim,
        _dir: dir,
    }
}

fn fault(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
    Fault {
        method: "GET".into(),
        status,
        body: body.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[tokio::test]
async fn a_429_with_retry_after_in_seconds_is_throttling_with_that_delay() {
    let s = setup("throttle-seconds", None).await;
    s.proxy
        .fail_next_with(fault(429, &[("retry-after", "7")], "slow down"));

    let error = s
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    assert_eq!(
        error,
        ConnectorError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(error.class().is_retryable() && error.is_throttling());
    // The next call goes through to scim2-server.
    let found = s
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap();
    assert_eq!(found.value, None);
}

#[tokio::test]
async fn a_429_with_retry_after_as_an_http_date_waits_until_that_date() {
    let s = setup("throttle-date", None).await;
    let http_date = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = (OffsetDateTime::now_utc() + time::Duration::seconds(90))
        .format(&http_date)
        .unwrap();
    s.proxy
        .fail_next_with(fault(429, &[("retry-after", &when)], ""));

    let error = s
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    let wait = error.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_503_page_is_a_transient_server_error_that_keeps_its_retry_after() {
    let s = setup("throttle-503", None).await;
    s.proxy.fail_next_with(fault(
        503,
        &[("retry-after", "30"), ("content-type", "text/html")],
        "<html><body>maintenance</body></html>",
    ));

    let error = s
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    assert!(
        matches!(&error, ConnectorError::ServerError { status: 503, detail, retry_after: Some(d) }
            if detail == "(an HTML page)" && *d == Duration::from_secs(30)),
        "{error:?}"
    );
    assert!(error.class().is_retryable());
}

#[tokio::test]
async fn the_apps_rate_limit_puts_a_call_back_without_sending_it_when_the_wait_is_too_long() {
    // One call a minute after a burst of two (the first find also reads the target's
    // ServiceProviderConfig), and no call may wait more than 100 ms.
    let s = setup(
        "own-rate-limit",
        Some(RateLimitConfig {
            requests_per_second: 1.0 / 60.0,
            burst: Some(2),
            max_wait_ms: 100,
        }),
    )
    .await;
    let nobody = [key("userName", "nobody@acme.example")];

    s.connector.find(&nobody).await.unwrap();
    let error = s.connector.find(&nobody).await.unwrap_err();

    let ConnectorError::RateLimited { retry_after } = error else {
        panic!("{error:?}")
    };
    assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
    assert_eq!(
        s.proxy.seen().len(),
        2,
        "the config read and the first find; the second find was never sent"
    );
}

#[tokio::test]
async fn a_429_within_the_apps_rate_limit_widens_its_margin_and_keeps_its_retry_after() {
    let s = setup(
        "own-rate-limit-429",
        Some(RateLimitConfig {
            requests_per_second: 10.0,
            burst: None,
            max_wait_ms: 2_000,
        }),
    )
    .await;
    let limiter = s.rate_limit.clone().unwrap();
    let before = limiter.margin();
    s.proxy
        .fail_next_with(fault(429, &[("retry-after", "3")], "slow down"));

    let error = s
        .connector
        .find(&[key("userName", "nobody@acme.example")])
        .await
        .unwrap_err();

    assert_eq!(
        error,
        ConnectorError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(3))
        }
    );
    // The margin doubled (it narrows again by a few milliseconds a second).
    let after = limiter.margin();
    assert!(after > before, "{before:?} then {after:?}");
}
