//! HTTP: the axum routers for the webhook and the log API. The same routers are served by
//! `lambda_http` on AWS and by a plain server locally.

pub mod dashboard;
pub mod event_auth;
pub mod log_api;
pub mod webhook;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A JSON error answer: `{"error": {"code": "...", "message": "..."}}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
