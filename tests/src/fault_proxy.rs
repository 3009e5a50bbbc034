//! A fault-injecting HTTP proxy for tests: forwards to a real upstream, except for the faults
//! scripted for it (answer 500 to the next POST, and so on) and, when a [`FaultMix`] is set,
//! random faults at a given rate (429 with Retry-After, 500, 503, slow answers, dropped
//! connections).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// A scripted fault: the next request with this method gets this status and body.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: String,
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// Random faults: each request is faulty with probability `rate`, the kind drawn uniformly.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultMix {
    /// 0.0 to 1.0.
    pub rate: f64,
    /// The `Retry-After` (seconds) sent with 429.
    pub retry_after_secs: u64,
    /// How long a slow answer is held after the upstream answered; longer than the client's
    /// timeout, so the change happens but the client never learns it.
    pub slow_by: Duration,
}

/// The kinds of random fault, in the order [`FaultCounts`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RandomFault {
    Throttled,
    ServerError,
    Unavailable,
    Slow,
    /// The connection is closed before the request reaches the upstream.
    DropBefore,
    /// The upstream applies the request, then the connection is closed without an answer.
    DropAfter,
}

const RANDOM_FAULTS: [RandomFault; 6] = [
    RandomFault::Throttled,
    RandomFault::ServerError,
    RandomFault::Unavailable,
    RandomFault::Slow,
    RandomFault::DropBefore,
    RandomFault::DropAfter,
];

/// How many random faults of each kind the proxy injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub requests: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub unavailable: u64,
    pub slow: u64,
    pub dropped_before: u64,
    pub dropped_after: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.throttled
            + self.server_errors
            + self.unavailable
            + self.slow
            + self.dropped_before
            + self.dropped_after
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    by_kind: [AtomicU64; 6],
}

/// Another client's change, sent to the upstream just before the next request with `before`
/// is forwarded (a concurrent writer, for `If-Match` tests).
#[derive(Debug, Clone)]
pub struct Interference {
    pub before: String,
    pub method: String,
    /// Path and query, from the upstream's root.
    pub path: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// A huge answer scripted for the next request with `method`: `size` bytes of a JSON document
/// that never ends, streamed in chunks, with or without a `Content-Length` saying so.
#[derive(Debug, Clone)]
struct HugeAnswer {
    method: String,
    status: u16,
    size: u64,
    declare_length: bool,
    streamed: Streamed,
}

/// How much of a huge answer the proxy handed over before the client stopped reading.
#[derive(Debug, Clone)]
pub struct Streamed {
    bytes: Arc<AtomicU64>,
    finished: tokio::sync::watch::Sender<bool>,
}

impl Streamed {
    fn new() -> Self {
        Self {
            bytes: Arc::default(),
            finished: tokio::sync::watch::channel(false).0,
        }
    }

    /// The bytes of the body handed to the connection so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Waits until the answer is over: sent whole, or dropped because the client hung up.
    pub async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        finished.wait_for(|done| *done).await.unwrap();
    }
}

/// The body of a huge answer; marks the answer finished when hyper drops it.
struct HugeBody {
    left: u64,
    streamed: Streamed,
}

impl futures::Stream for HugeBody {
    type Item = Result<axum::body::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        const CHUNK: &[u8] = &[b'x'; 64 * 1024];
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let size = self.left.min(CHUNK.len() as u64);
        self.left -= size;
        self.streamed.bytes.fetch_add(size, Ordering::SeqCst);
        let chunk = axum::body::Bytes::from_static(&CHUNK[..size as usize]);
        std::task::Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for HugeBody {
    fn drop(&mut self) {
        self.streamed.finished.send_replace(true);
    }
}

#[derive(Clone)]
struct ProxyState {
    huge: Arc<Mutex<VecDeque<HugeAnswer>>>,
    upstream: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    interferences: Arc<Mutex<VecDeque<Interference>>>,
    mix: Arc<Mutex<Option<FaultMix>>>,
    /// While set, every request is answered with this status (the target is down).
    outage: Arc<Mutex<Option<u16>>>,
    /// Every request is held this long before it is forwarded (a slow target).
    latency: Arc<Mutex<Duration>>,
    counters: Arc<Counters>,
    seen: Arc<Mutex<Vec<(String, String, u16)>>>,
    http: reqwest::Client,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: ProxyState,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (scheme, host and port).
    pub async fn start(upstream: &str) -> Self {
        let state = ProxyState {
            huge: Arc::default(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: Arc::default(),
            interferences: Arc::default(),
            mix: Arc::default(),
            outage: Arc::default(),
            latency: Arc::default(),
            counters: Arc::default(),
            seen: Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_dropping_on_request(listener, app));
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request with `method` is answered with `status` instead of being forwarded.
    pub fn fail_next(&self, method: &str, status: u16, body: &str) {
        self.state.faults.lock().unwrap().push_back(Fault {
            method: method.to_owned(),
            status,
            body: body.to_owned(),
            headers: vec![("content-type".into(), "application/scim+json".into())],
        });
    }

    /// The next request with the fault's method gets the fault's status, body and headers.
    pub fn fail_next_with(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    /// The next request with `method` is answered with `status` and a body of `size` bytes (a
    /// JSON document that never closes), streamed; with `declare_length` the answer says its
    /// size in `Content-Length` up front, else it is sent chunked. The returned handle tells how
    /// much of it the client took.
    pub fn answer_next_with_huge_body(
        &self,
        method: &str,
        status: u16,
        size: u64,
        declare_length: bool,
    ) -> Streamed {
        let streamed = Streamed::new();
        self.state.huge.lock().unwrap().push_back(HugeAnswer {
            method: method.to_owned(),
            status,
            size,
            declare_length,
            streamed: streamed.clone(),
        });
        streamed
    }

    /// Sends the interference's request upstream just before the next request with its
    /// `before` method is forwarded.
    pub fn interfere_before_next(&self, interference: Interference) {
        self.state
            .interferences
            .lock()
            .unwrap()
            .push_back(interference);
    }

    /// From now on, fault requests at random with this mix (`None`: forward everything).
    pub fn set_random_faults(&self, mix: Option<FaultMix>) {
        *self.state.mix.lock().unwrap() = mix;
    }

    /// From now on, answer every request with `status` (`None`: the target is back).
    pub fn set_outage(&self, status: Option<u16>) {
        *self.state.outage.lock().unwrap() = status;
    }

    /// From now on, hold every request this long before forwarding it (a slow target).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// The random faults injected so far.
    pub fn fault_counts(&self) -> FaultCounts {
        let c = &self.state.counters;
        let kind = |i: usize| c.by_kind[i].load(Ordering::Relaxed);
        FaultCounts {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: kind(0),
            server_errors: kind(1),
            unavailable: kind(2),
            slow: kind(3),
            dropped_before: kind(4),
            dropped_after: kind(5),
        }
    }

    /// Every request seen: (method, path, status answered).
    pub fn seen(&self) -> Vec<(String, String, u16)> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let latency = *state.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let fault = {
        let mut faults = state.faults.lock().unwrap();
        let position = faults
            .iter()
            .position(|f| f.method.eq_ignore_ascii_case(&method));
        position.and_then(|p| faults.remove(p))
    };
    let huge = {
        let mut queue = state.huge.lock().unwrap();
        let position = queue
            .iter()
            .position(|h| h.method.eq_ignore_ascii_case(&method));
        position.and_then(|p| queue.remove(p))
    };
    if let Some(huge) = huge {
        state
            .seen
            .lock()
            .unwrap()
            .push((method, path_and_query, huge.status));
        const OPENING: &[u8] = br#"{"id": "x", "padding": ""#;
        let opening = futures::stream::once(async {
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(OPENING))
        });
        let rest = HugeBody {
            left: huge.size.saturating_sub(OPENING.len() as u64),
            streamed: huge.streamed,
        };
        let mut response =
            Response::new(Body::from_stream(futures::StreamExt::chain(opening, rest)));
        *response.status_mut() = StatusCode::from_u16(huge.status).unwrap();
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if huge.declare_length {
            response
                .headers_mut()
                .insert("content-length", huge.size.to_string().parse().unwrap());
        }
        return response;
    }
    let outage = *state.outage.lock().unwrap();
    let fault = fault.or_else(|| {
        outage.map(|status| Fault {
            method: method.clone(),
            status,
            body: "the target is down (injected outage)".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
        })
    });
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let random = state.mix.lock().unwrap().clone().and_then(|mix| {
        let mut rng = rand::rng();
        if rng.random_bool(mix.rate.clamp(0.0, 1.0)) {
            let index = rng.random_range(0..RANDOM_FAULTS.len());
            state.counters.by_kind[index].fetch_add(1, Ordering::Relaxed);
            Some((RANDOM_FAULTS[index], mix))
        } else {
            None
        }
    });
    let fault = fault.or_else(|| match random.clone() {
        Some((RandomFault::Throttled, mix)) => Some(Fault {
            method: method.clone(),
            status: 429,
            body: String::new(),
            headers: vec![("retry-after".into(), mix.retry_after_secs.to_string())],
        }),
        Some((RandomFault::ServerError, _)) => Some(Fault {
            method: method.clone(),
            status: 500,
            body: "internal error (injected)".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
        }),
        Some((RandomFault::Unavailable, _)) => Some(Fault {
            method: method.clone(),
            status: 503,
            body: "unavailable (injected)".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
        }),
        _ => None,
    });
    if matches!(random, Some((RandomFault::DropBefore, _))) {
        let dropper = request.extensions().get::<ConnectionDropper>().cloned();
        return drop_connection(dropper).await;
    }
    if let Some(fault) = fault {
        state
            .seen
            .lock()
            .unwrap()
            .push((method, path_and_query, fault.status));
        let mut response =
            (StatusCode::from_u16(fault.status).unwrap(), fault.body).into_response();
        for (name, value) in fault.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        return response;
    }
    let interference = {
        let mut queue = state.interferences.lock().unwrap();
        let position = queue
            .iter()
            .position(|i| i.before.eq_ignore_ascii_case(&method));
        position.and_then(|p| queue.remove(p))
    };
    if let Some(other) = interference {
        let mut change = state.http.request(
            other.method.parse().unwrap(),
            format!("{}{}", state.upstream, other.path),
        );
        for (name, value) in &other.headers {
            change = change.header(name, value);
        }
        let answer = change.body(other.body).send().await.unwrap();
        assert!(
            answer.status().is_success(),
            "the interfering {} {} failed: {}",
            other.method,
            other.path,
            answer.status()
        );
    }
    let (parts, body) = request.into_parts();
    let dropper = parts.extensions.get::<ConnectionDropper>().cloned();
    let bytes = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let mut upstream = state.http.request(
        parts.method.clone(),
        format!("{}{}", state.upstream, path_and_query),
    );
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.body(bytes).send().await {
        Ok(answer) => {
            let status = answer.status();
            state
                .seen
                .lock()
                .unwrap()
                .push((method, path_and_query, status.as_u16()));
            let mut headers = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    headers.insert(name.clone(), value.clone());
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            match random {
                Some((RandomFault::DropAfter, _)) => return drop_connection(dropper).await,
                Some((RandomFault::Slow, mix)) => tokio::time::sleep(mix.slow_by).await,
                _ => {}
            }
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// Asks the connection's task to close the socket, without an answer; the handler waits to be
/// dropped with it. (Unwinding would abort a `panic = "abort"` build, such as a release one.)
async fn drop_connection(dropper: Option<ConnectionDropper>) -> Response {
    let dropper = dropper.expect("every connection of the proxy has its dropper");
    dropper.0.notify_one();
    std::future::pending().await
}

/// Closes one connection of the proxy when notified.
#[derive(Clone)]
struct ConnectionDropper(Arc<tokio::sync::Notify>);

/// Serves `app` over HTTP/1.1, one task per connection; a handler may close its connection
/// with [`drop_connection`].
async fn serve_dropping_on_request(listener: tokio::net::TcpListener, app: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let dropper = ConnectionDropper(Arc::new(tokio::sync::Notify::new()));
        let service = app.clone().layer(axum::Extension(dropper.clone()));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
            tokio::select! {
                _ = connection => {}
                () = dropper.0.notified() => {}
            }
        });
    }
}
