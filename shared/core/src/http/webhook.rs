//! The webhook: `POST /salesforce/outbound/{token}` for Outbound Messages, and
//! `POST /salesforce/events` for JSON events (platform events, Event Relay, Flow callouts, Change
//! Data Capture), authenticated by an HMAC signature or an API key.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::error::{Classify, ErrorClass};
use crate::http::event_auth::{
    API_KEY_HEADER, EventAuthConfig, EventAuthError, EventAuthMode, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, check_timestamp, verify_api_key, verify_signature,
};
use crate::ingest::{Ingest, IngestError};
use crate::ports::{Clock, SecretStore, SecretValue};
use crate::salesforce::soap::{ACK, FaultCode, fault};

#[derive(Clone)]
pub struct WebhookState {
    pub ingest: Arc<Ingest>,
    /// The token that ends the Outbound Message URL.
    pub token: SecretValue,
    pub max_body_bytes: usize,
    /// `POST /salesforce/events`; `None` answers 404 `events_disabled`.
    pub events: Option<EventsEndpoint>,
}

/// What the JSON events route needs besides ingest.
#[derive(Clone)]
pub struct EventsEndpoint {
    pub auth: EventAuthConfig,
    /// Holds the signing key or API key, read on each request so a rotated key takes effect.
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/salesforce/outbound/{token}", post(outbound_message))
        .route("/salesforce/events", post(events_message))
        .with_state(state)
}

fn soap(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn soap_fault(status: StatusCode, code: &str, message: &str) -> Response {
    let fault_code = if status.is_server_error() {
        FaultCode::Server
    } else {
        FaultCode::Client
    };
    with_reason(soap(status, fault(fault_code, message)), code)
}

/// Adds the machine-readable refusal reason as the `x-userprov-reason` header.
fn with_reason(mut response: Response, reason: &str) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(reason) {
        response.headers_mut().insert("x-userprov-reason", value);
    }
    response
}

/// The request's media type, lowercased, without parameters (`; charset=...`).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn is_xml(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|media| {
        matches!(
            media.as_str(),
            "text/xml" | "application/xml" | "application/soap+xml"
        )
    })
}

async fn outbound_message(
    State(state): State<WebhookState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let correlation_id = ulid::Ulid::new().to_string();
    let span = tracing::info_span!("outbound_message", correlation_id = %correlation_id);
    async move {
        // Constant time: the token is the only shared secret an Outbound Message can carry.
        let token_matches: bool = token
            .as_bytes()
            .ct_eq(state.token.expose().as_bytes())
            .into();
        if !token_matches {
            tracing::warn!("refused: wrong webhook token");
            return soap_fault(
                StatusCode::UNAUTHORIZED,
                "bad_token",
                "unknown webhook token",
            );
        }
        if !is_xml(&headers) {
            return soap_fault(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "an Outbound Message is SOAP: send Content-Type text/xml",
            );
        }
        let bytes = match to_bytes(body, state.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                tracing::warn!(limit = state.max_body_bytes, "refused: body too large");
                return soap_fault(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &format!("the message is larger than {} bytes", state.max_body_bytes),
                );
            }
        };
        match state.ingest.outbound_message(&bytes, &correlation_id).await {
            Ok(report) => {
                tracing::info!(
                    notifications = report.notifications,
                    jobs = report.jobs,
                    refused = report.refused.len(),
                    "acknowledged"
                );
                soap(StatusCode::OK, ACK.to_owned())
            }
            Err(error) => {
                let status = refusal_status(&error);
                tracing::warn!(reason = error.code(), %error, status = status.as_u16(), "refused");
                soap_fault(status, error.code(), &error.to_string())
            }
        }
    }
    .instrument(span)
    .await
}

/// The HTTP status for a message the ingest refused, the same on both routes.
fn refusal_status(error: &IngestError) -> StatusCode {
    match (error, error.class()) {
        (IngestError::ForeignOrganization(_), _) => StatusCode::FORBIDDEN,
        (_, ErrorClass::BadInput) => StatusCode::BAD_REQUEST,
        (_, ErrorClass::Transient) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An RFC 9457 problem answer, with the machine-readable reason in the body and a header.
fn problem(status: StatusCode, reason: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
        "reason": reason,
    });
    let response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    with_reason(response, reason)
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|media| {
        media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"))
    })
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused_auth(error: &EventAuthError) -> Response {
    tracing::warn!(reason = error.code(), %error, "refused: not authenticated");
    problem(StatusCode::UNAUTHORIZED, error.code(), &error.to_string())
}

async fn events_message(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let correlation_id = ulid::Ulid::new().to_string();
    let span = tracing::info_span!("events_message", correlation_id = %correlation_id);
    async move {
        let Some(endpoint) = &state.events else {
            return problem(
                StatusCode::NOT_FOUND,
                "events_disabled",
                "this userprov does not take JSON events",
            );
        };
        let key = match endpoint.secrets.get_secret(&endpoint.auth.secret).await {
            Ok(key) if !key.expose().trim().is_empty() => key,
            Ok(_) | Err(_) => {
                tracing::error!(secret = %endpoint.auth.secret, "refused: the events key cannot be read");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "events_key_unavailable",
                    "the key that authenticates events is not available; try again later",
                );
            }
        };
        let key = key.expose().trim();
        match endpoint.auth.auth {
            EventAuthMode::ApiKey => {
                if let Err(error) = verify_api_key(key, header_text(&headers, API_KEY_HEADER)) {
                    return refused_auth(&error);
                }
            }
            EventAuthMode::Hmac => {
                // The timestamp is checked before the body is read: a replay costs nothing.
                let timestamp = header_text(&headers, TIMESTAMP_HEADER);
                if let Err(error) = check_timestamp(
                    timestamp,
                    endpoint.clock.now(),
                    endpoint.auth.max_clock_skew_secs,
                ) {
                    return refused_auth(&error);
                }
            }
        }
        let bytes = match to_bytes(body, state.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                tracing::warn!(limit = state.max_body_bytes, "refused: body too large");
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &format!("the message is larger than {} bytes", state.max_body_bytes),
                );
            }
        };
        if endpoint.auth.auth == EventAuthMode::Hmac
            && let Err(error) = verify_signature(
                key.as_bytes(),
                header_text(&headers, TIMESTAMP_HEADER).unwrap_or(""),
                &bytes,
                header_text(&headers, SIGNATURE_HEADER),
            )
        {
            return refused_auth(&error);
        }
        if !is_json(&headers) {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "events are JSON: send Content-Type application/json",
            );
        }
        match state.ingest.events(&bytes, &correlation_id).await {
            Ok(report) => {
                tracing::info!(events = report.notifications, jobs = report.jobs, "accepted");
                (
                    StatusCode::OK,
                    axum::Json(serde_json::json!({
                        "accepted": true,
                        "events": report.notifications,
                        "jobs": report.jobs,
                        "correlation_id": report.correlation_id,
                    })),
                )
                    .into_response()
            }
            Err(error) => {
                let status = refusal_status(&error);
                tracing::warn!(reason = error.code(), %error, status = status.as_u16(), "refused");
                problem(status, error.code(), &error.to_string())
            }
        }
    }
    .instrument(span)
    .await
}
