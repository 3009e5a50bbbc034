//! The log API: read-only queries over the provisioning log and the account links.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json_error;
use crate::error::{Classify, ErrorClass};
use crate::ids::SalesforceId;
use crate::log::{LogCursor, LogQuery, LogStatus, MAX_PAGE_SIZE, Operation};
use crate::ports::{LinkStore, LogStore, StoreError};

#[derive(Clone)]
pub struct LogApiState {
    pub log: Arc<dyn LogStore>,
    pub links: Arc<dyn LinkStore>,
}

pub fn router(state: LogApiState) -> Router {
    Router::new()
        .route("/logs", get(list_logs))
        .route("/logs/{id}", get(get_log))
        .route("/accounts", get(list_accounts))
        .route("/accounts/{app}/{user_id}", get(get_account))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    user: Option<String>,
    app: Option<String>,
    status: Option<String>,
    operation: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn bad_request(code: &str, message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, code, message)
}

fn store_error(error: &StoreError) -> Response {
    match error.class() {
        ErrorClass::BadInput => bad_request("bad_request", &error.to_string()),
        ErrorClass::Transient => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &error.to_string(),
        ),
        _ => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the store failed; see the service log",
        ),
    }
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, Response> {
    value
        .map(|raw| {
            OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
                bad_request(
                    "bad_time",
                    &format!("{name} must be an RFC 3339 time such as 2025-03-14T16:02:11Z"),
                )
            })
        })
        .transpose()
}

impl LogParams {
    fn into_query(self) -> Result<LogQuery, Response> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                LogStatus::parse(s).ok_or_else(|| {
                    bad_request(
                        "bad_status",
                        "status is one of success, failed, retrying, dead_lettered, skipped, held, dry_run",
                    )
                })
            })
            .transpose()?;
        let operation = self
            .operation
            .as_deref()
            .map(|s| {
                Operation::parse(s).ok_or_else(|| {
                    bad_request(
                        "bad_operation",
                        "operation is one of create, adopt, update, deactivate, reactivate, noop, skip",
                    )
                })
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(0);
        if limit > MAX_PAGE_SIZE {
            return Err(bad_request(
                "bad_limit",
                &format!("limit is at most {MAX_PAGE_SIZE}"),
            ));
        }
        if let Some(cursor) = &self.cursor {
            LogCursor::decode(cursor).map_err(|e| bad_request("bad_cursor", &e.to_string()))?;
        }
        Ok(LogQuery {
            user: self.user,
            app: self.app,
            status,
            operation,
            event_id: self.event_id,
            since: parse_time("since", self.since.as_deref())?,
            until: parse_time("until", self.until.as_deref())?,
            limit,
            cursor: self.cursor,
        })
    }
}

async fn list_logs(
    State(state): State<LogApiState>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return bad_request("bad_query", &rejection.body_text()),
    };
    let query = match params.into_query() {
        Ok(q) => q,
        Err(response) => return response,
    };
    match state.log.query(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => store_error(&error),
    }
}

async fn get_log(State(state): State<LogApiState>, Path(id): Path<String>) -> Response {
    if ulid::Ulid::from_string(&id).is_err() {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no log entry has that id",
        );
    }
    match state.log.get_entry(&id).await {
        Ok(Some(entry)) => Json(entry).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no log entry has that id",
        ),
        Err(error) => store_error(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountParams {
    app: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_accounts(
    State(state): State<LogApiState>,
    params: Result<Query<AccountParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return bad_request("bad_query", &rejection.body_text()),
    };
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE_SIZE);
    let after = params.after.as_deref().and_then(|a| a.split_once('.'));
    match state
        .links
        .list_links(params.app.as_deref(), after, limit)
        .await
    {
        Ok(links) => {
            let next = (links.len() == limit)
                .then(|| links.last().map(|l| format!("{}.{}", l.app, l.user_id)))
                .flatten();
            Json(json!({"accounts": links, "next_after": next})).into_response()
        }
        Err(error) => store_error(&error),
    }
}

async fn get_account(
    State(state): State<LogApiState>,
    Path((app, user_id)): Path<(String, String)>,
) -> Response {
    let Ok(user_id) = SalesforceId::parse(&user_id) else {
        return bad_request(
            "bad_user_id",
            "the user id must be a 15- or 18-character Salesforce id",
        );
    };
    match state.links.get_link(&app, &user_id).await {
        Ok(Some(link)) => Json(link).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "userprov has no account link for that user in that app",
        ),
        Err(error) => store_error(&error),
    }
}
