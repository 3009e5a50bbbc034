//! The webhook: `POST /salesforce/outbound/{token}` for Outbound Messages.

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
use crate::ingest::{Ingest, IngestError};
use crate::ports::SecretValue;
use crate::salesforce::soap::{ACK, FaultCode, fault};

#[derive(Clone)]
pub struct WebhookState {
    pub ingest: Arc<Ingest>,
    /// The token that ends the Outbound Message URL.
    pub token: SecretValue,
    pub max_body_bytes: usize,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/salesforce/outbound/{token}", post(outbound_message))
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
    let mut response = soap(status, fault(fault_code, message));
    if let Ok(value) = header::HeaderValue::from_str(code) {
        response.headers_mut().insert("x-userprov-reason", value);
    }
    response
}

fn is_xml(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        media.as_str(),
        "text/xml" | "application/xml" | "application/soap+xml"
    )
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
                let status = match (&error, error.class()) {
                    (IngestError::ForeignOrganization(_), _) => StatusCode::FORBIDDEN,
                    (_, ErrorClass::BadInput) => StatusCode::BAD_REQUEST,
                    (_, ErrorClass::Transient) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::warn!(reason = error.code(), %error, status = status.as_u16(), "refused");
                soap_fault(status, error.code(), &error.to_string())
            }
        }
    }
    .instrument(span)
    .await
}
