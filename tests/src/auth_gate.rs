//! A resource server's gate in front of a SCIM target that has no OAuth2 of its own: each
//! request's bearer token is introspected at the authorization server (RFC 7662); an inactive
//! or missing token gets 401, an active one is forwarded with the target's own credentials.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::peers::oidc_provider::introspect;

#[derive(Clone)]
struct GateState {
    upstream: String,
    upstream_authorization: String,
    introspection_url: String,
    http: reqwest::Client,
    /// Every bearer token presented, and whether it was let through.
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

pub struct AuthGate {
    pub addr: SocketAddr,
    state: GateState,
    task: tokio::task::JoinHandle<()>,
}

impl AuthGate {
    /// A gate on a free loopback port, in front of `upstream` (scheme, host, port), which is
    /// called with `upstream_authorization`.
    pub async fn start(
        upstream: &str,
        upstream_authorization: &str,
        introspection_url: &str,
    ) -> Self {
        let state = GateState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            upstream_authorization: upstream_authorization.to_owned(),
            introspection_url: introspection_url.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            seen: Arc::default(),
        };
        let app = Router::new().fallback(gate).with_state(state.clone());
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

    /// The bearer tokens presented so far, each with whether it was accepted.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for AuthGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gate(State(state): State<GateState>, request: Request) -> Response {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let active = match &token {
        Some(token) => introspect(&state.http, &state.introspection_url, token).await,
        None => false,
    };
    state
        .seen
        .lock()
        .unwrap()
        .push((token.unwrap_or_default(), active));
    if !active {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"invalid token"}"#,
        )
            .into_response();
        response.headers_mut().insert(
            "www-authenticate",
            "Bearer error=\"invalid_token\"".parse().unwrap(),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut upstream = state
        .http
        .request(parts.method.clone(), format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" && name != "authorization" {
            upstream = upstream.header(name, value);
        }
    }
    upstream = upstream.header("authorization", &state.upstream_authorization);
    match upstream.body(bytes).send().await {
        Ok(answer) => {
            let status = answer.status();
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
