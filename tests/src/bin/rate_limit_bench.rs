//! Benchmark: does the per-app rate limit keep the SCIM connector at, and under, a target's
//! limit?
//!
//! A limiter in front of a real scim2-server answers 429 to any request that would make more
//! than N in the trailing second (a sliding window, the strictest way a SaaS counts; a fixed
//! window per clock second never counts more). Many concurrent callers drive one connector
//! configured with `requests_per_second = N, burst = 1` (or the rate and burst given). Prints
//! the achieved rate, the 429s, and the most requests seen in any one-second window, sliding and
//! fixed, then one machine-readable line:
//!
//!   achieved_per_sec=49.02 limit=50 ratio=0.980 http_429=0 busiest_sliding_1s=50 busiest_fixed_1s=50 ...
//!
//! (ending with the margin the pacer kept on top of its window, mean and most, sampled every
//! 50 ms.)
//!
//!   cargo run -p userprov-tests --bin rate_limit_bench -- [N] [seconds] [callers] [burst] [rate]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use userprov_core::config::RateLimitConfig;
use userprov_core::connector::rate_limit::RateLimiter;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{Connector, ConnectorError};
use userprov_core::credentials::SecretCredentials;
use userprov_core::embedded::LocalSecretStore;
use userprov_core::ports::{SecretStore, SecretValue};
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::scim_contract::key;

#[derive(Clone)]
struct Limiter {
    per_second: usize,
    upstream: String,
    upstream_token: String,
    http: reqwest::Client,
    /// Arrival times of the requests let through.
    accepted: Arc<Mutex<VecDeque<Instant>>>,
    all_accepted: Arc<Mutex<Vec<Instant>>>,
    refused: Arc<AtomicU64>,
}

async fn limit(State(state): State<Limiter>, request: Request) -> Response {
    let now = Instant::now();
    {
        let mut window = state.accepted.lock().unwrap();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= state.per_second {
            state.refused.fetch_add(1, Ordering::SeqCst);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        window.push_back(now);
        state.all_accepted.lock().unwrap().push(now);
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path_and_query().unwrap().to_string();
    let answer = state
        .http
        .request(parts.method, format!("{}{path}", state.upstream))
        .bearer_auth(&state.upstream_token)
        .header("content-type", "application/scim+json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: N seconds callers burst rate"))
        .collect();
    let per_second = args.first().copied().unwrap_or(20);
    let seconds = args.get(1).copied().unwrap_or(10);
    let callers = args.get(2).copied().unwrap_or(16);
    let burst = args.get(3).copied().unwrap_or(1);
    let own_rate = args.get(4).copied().unwrap_or(per_second);

    let scim = Scim2Server::start();
    let limiter = Limiter {
        per_second: per_second as usize,
        upstream: format!("http://127.0.0.1:{}", scim.port()),
        upstream_token: scim.token.clone(),
        http: reqwest::Client::new(),
        accepted: Arc::default(),
        all_accepted: Arc::default(),
        refused: Arc::default(),
    };
    let app = Router::new().fallback(limit).with_state(limiter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalSecretStore::with_env_lookup(dir.path().into(), |_| {
        None
    }));
    store
        .put_secret(
            "bench",
            &SecretValue::new(json!({"type": "bearer", "token": "unused"}).to_string()),
        )
        .await
        .unwrap();
    let http = http_client(Duration::from_secs(10)).unwrap();
    let rate = RateLimitConfig {
        requests_per_second: own_rate as f64,
        burst: Some(u32::try_from(burst).unwrap()),
        max_wait_ms: 10_000,
    };
    let pacer = Arc::new(RateLimiter::new(&rate).unwrap());
    let connector = Arc::new(
        ScimConnector::new(
            http.clone(),
            ScimSettings {
                base_url: format!("http://{address}/bench/v2"),
                timeout: Duration::from_secs(10),
            },
            Arc::new(SecretCredentials::new(store, "bench", http)),
        )
        .with_rate_limit(pacer.clone()),
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let ok = Arc::new(AtomicU64::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (connector, ok, throttled, other) = (
            connector.clone(),
            ok.clone(),
            throttled.clone(),
            other.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let keys = [key("userName", &format!("caller-{caller}@acme.example"))];
            while Instant::now() < deadline {
                match connector.find(&keys).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(ConnectorError::Throttled { .. }) => {
                        throttled.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(error) => {
                        eprintln!("{error}");
                        other.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    // The margin the pacer keeps on top of its one-second window, sampled every 50 ms.
    let margins = tokio::spawn({
        let pacer = pacer.clone();
        async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                samples.push(pacer.margin().as_secs_f64() * 1000.0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        }
    });
    for task in tasks {
        task.await.unwrap();
    }
    let margins = margins.await.unwrap();
    let margin_mean = margins.iter().sum::<f64>() / margins.len().max(1) as f64;
    let margin_max = margins.iter().copied().fold(0.0, f64::max);
    let elapsed = started.elapsed().as_secs_f64();

    let times = limiter.all_accepted.lock().unwrap().clone();
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    // A target that counts per clock second (windows from the start of the run).
    let mut per_second_counts = std::collections::BTreeMap::<u64, usize>::new();
    for t in &times {
        *per_second_counts
            .entry(t.saturating_duration_since(started).as_secs())
            .or_default() += 1;
    }
    let busiest_fixed = per_second_counts.values().copied().max().unwrap_or(0);
    // The rate over the measured period: requests that reached the target before the deadline
    // (calls still waiting for a permit at the deadline finish afterwards).
    let sent = times.iter().filter(|t| **t < deadline).count();
    let rate = sent as f64 / seconds as f64;
    let refused = limiter.refused.load(Ordering::SeqCst);
    let errors = other.load(Ordering::SeqCst);
    println!(
        "limit {per_second}/s, userprov at {own_rate}/s burst {burst}, {callers} callers, {seconds} s: {sent} requests reached the target in that time \
         ({rate:.1}/s, {:.0}% of the limit; {} calls answered in all, {elapsed:.1} s), \
         {refused} answered 429 by the target, {errors} other errors, busiest one-second window {busiest} requests \
         (busiest clock second {busiest_fixed})",
        100.0 * rate / per_second as f64,
        ok.load(Ordering::SeqCst),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_1m = load.split_whitespace().next().unwrap_or("unknown");
    println!(
        "achieved_per_sec={rate:.2} limit={per_second} ratio={:.3} http_429={refused} \
         busiest_sliding_1s={busiest} busiest_fixed_1s={busiest_fixed} other_errors={errors} \
         callers={callers} burst={burst} rate={own_rate} seconds={seconds} load_avg_1m={load_1m} \
         margin_ms_mean={margin_mean:.1} margin_ms_max={margin_max:.1}",
        rate / per_second as f64,
    );
    let _ = throttled;
}
