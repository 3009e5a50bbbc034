//! A fault-injecting HTTP proxy for tests: forwards to a real upstream, except for the faults
//! scripted for it (answer 500 to the next POST, and so on).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
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
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: Arc::default(),
            seen: Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
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
    let (parts, body) = request.into_parts();
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
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}
