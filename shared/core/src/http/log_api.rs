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
use crate::log::{CursorError, CursorSigner, LogQuery, LogStatus, MAX_PAGE_SIZE, Operation};
use crate::ports::{LinkStore, LogStore, StoreError};

#[derive(Clone)]
pub struct LogApiState {
    pub log: Arc<dyn LogStore>,
    pub links: Arc<dyn LinkStore>,
    /// For `POST /preview`.
    pub config: Arc<crate::config::Config>,
    /// Seals page cursors; every process serving the same log needs the same key.
    pub cursors: CursorSigner,
    /// When set, every route but `/healthz` requires `Authorization: Bearer <token>`.
    pub token: Option<crate::ports::SecretValue>,
}

pub fn router(state: LogApiState) -> Router {
    let token = state.token.clone();
    let protected = Router::new()
        .route("/logs", get(list_logs))
        .route("/logs/{id}", get(get_log))
        .route("/accounts", get(list_accounts))
        .route("/accounts/{app}/{user_id}", get(get_account))
        .route("/stats", get(stats))
        .route("/preview", axum::routing::post(preview))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    let protected = match token {
        Some(token) => protected.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let authorised = bearer_matches(&request, &token);
                async move {
                    if authorised {
                        next.run(request).await
                    } else {
                        json_error(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "this log API requires its bearer token",
                        )
                    }
                }
            },
        )),
        None => protected,
    };
    // The dashboard page carries no data; its API calls carry the token.
    protected
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(super::dashboard::router())
}

/// Whether the request carries the bearer token; compared in constant time.
fn bearer_matches(request: &axum::extract::Request, token: &crate::ports::SecretValue) -> bool {
    use subtle::ConstantTimeEq;
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
}

/// The OpenAPI 3.1 document of this API; the contract test checks the answers against it.
pub const OPENAPI_JSON: &str = include_str!("../../../../infra/openapi/log-api.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
        .into_response()
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

/// Why a log API request failed; turned into a JSON answer at the edge.
#[derive(Debug, thiserror::Error)]
pub enum LogApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn bad_request(code: &'static str, message: impl Into<String>) -> LogApiError {
    LogApiError::BadRequest {
        code,
        message: message.into(),
    }
}

impl IntoResponse for LogApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::BadRequest { code, message } => {
                json_error(StatusCode::BAD_REQUEST, code, message)
            }
            Self::NotFound(message) => json_error(StatusCode::NOT_FOUND, "not_found", message),
            Self::Store(error) => match error.class() {
                ErrorClass::BadInput => {
                    json_error(StatusCode::BAD_REQUEST, "bad_request", &error.to_string())
                }
                ErrorClass::Transient => {
                    tracing::warn!(%error, "the log store is unavailable");
                    json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        "the store is unavailable; try again",
                    )
                }
                _ => {
                    tracing::error!(%error, "the log store failed");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the store failed; see the service log",
                    )
                }
            },
        }
    }
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, LogApiError> {
    value
        .map(|raw| {
            OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
                bad_request(
                    "bad_time",
                    format!("{name} must be an RFC 3339 time such as 2025-03-14T16:02:11Z"),
                )
            })
        })
        .transpose()
}

impl LogParams {
    fn into_query(self, cursors: &CursorSigner) -> Result<LogQuery, LogApiError> {
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
                format!("limit is at most {MAX_PAGE_SIZE}"),
            ));
        }
        let mut query = LogQuery {
            user: self.user,
            app: self.app,
            status,
            operation,
            event_id: self.event_id,
            since: parse_time("since", self.since.as_deref())?,
            until: parse_time("until", self.until.as_deref())?,
            limit,
            cursor: None,
        };
        if let Some(sealed) = &self.cursor {
            let store_cursor = cursors
                .open(sealed, &query)
                .map_err(|e: CursorError| bad_request("bad_cursor", e.to_string()))?;
            query.cursor = Some(store_cursor);
        }
        Ok(query)
    }
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

async fn list_logs(
    State(state): State<LogApiState>,
    params: QueryResult<LogParams>,
) -> Result<Response, LogApiError> {
    let Query(params) =
        params.map_err(|rejection| bad_request("bad_query", rejection.body_text()))?;
    let query = params.into_query(&state.cursors)?;
    let mut page = state.log.query(&query).await?;
    page.next_cursor = page
        .next_cursor
        .map(|store_cursor| state.cursors.seal(&store_cursor, &query));
    Ok(Json(page).into_response())
}

async fn get_log(
    State(state): State<LogApiState>,
    Path(id): Path<String>,
) -> Result<Response, LogApiError> {
    const NOT_FOUND: &str = "no log entry has that id";
    if ulid::Ulid::from_string(&id).is_err() {
        return Err(LogApiError::NotFound(NOT_FOUND));
    }
    let entry = state
        .log
        .get_entry(&id)
        .await?
        .ok_or(LogApiError::NotFound(NOT_FOUND))?;
    Ok(Json(entry).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsParams {
    since: Option<String>,
    until: Option<String>,
    app: Option<String>,
}

/// The longest `/stats` range: counting reads every entry in it, so the cost stays bounded.
pub const MAX_STATS_RANGE: time::Duration = time::Duration::days(31);

/// Counts by status and by app over `[since, until)`; the last 24 hours by default.
async fn stats(
    State(state): State<LogApiState>,
    params: QueryResult<StatsParams>,
) -> Result<Response, LogApiError> {
    let Query(params) =
        params.map_err(|rejection| bad_request("bad_query", rejection.body_text()))?;
    let until =
        parse_time("until", params.until.as_deref())?.unwrap_or_else(OffsetDateTime::now_utc);
    let since = parse_time("since", params.since.as_deref())?
        .unwrap_or_else(|| until - time::Duration::DAY);
    if until - since > MAX_STATS_RANGE {
        return Err(bad_request(
            "range_too_long",
            format!(
                "the range from since to until is at most {} days; ask for several ranges",
                MAX_STATS_RANGE.whole_days()
            ),
        ));
    }
    // An empty range holds no entries: zero counts, not an error.
    let stats = if since >= until {
        crate::log::LogStats::new(since, until, params.app)
    } else {
        state.log.stats(since, until, params.app.as_deref()).await?
    };
    Ok(Json(stats).into_response())
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
    params: QueryResult<AccountParams>,
) -> Result<Response, LogApiError> {
    let Query(params) =
        params.map_err(|rejection| bad_request("bad_query", rejection.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(bad_request(
            "bad_limit",
            format!("limit is from 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    let after = params.after.as_deref().and_then(|a| a.split_once('.'));
    let links = state
        .links
        .list_links(params.app.as_deref(), after, limit)
        .await?;
    let next = (links.len() == limit)
        .then(|| links.last().map(|l| format!("{}.{}", l.app, l.user_id)))
        .flatten();
    Ok(Json(json!({"accounts": links, "next_after": next})).into_response())
}

async fn get_account(
    State(state): State<LogApiState>,
    Path((app, user_id)): Path<(String, String)>,
) -> Result<Response, LogApiError> {
    const NO_LINK: &str = "userprov has no account link for that user in that app";
    if user_id.len() != 15 && user_id.len() != 18
        || !user_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(bad_request(
            "bad_user_id",
            "the user id must be a 15- or 18-character Salesforce id",
        ));
    }
    // Well formed but with a wrong checksum: no user has that id, so there is no link.
    let user_id = SalesforceId::parse(&user_id).map_err(|_| LogApiError::NotFound(NO_LINK))?;
    let link = state
        .links
        .get_link(&app, &user_id)
        .await?
        .ok_or(LogApiError::NotFound(NO_LINK))?;
    Ok(Json(link).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    app: String,
    /// The user's Salesforce fields, `Id` included.
    user: serde_json::Value,
}

/// What the worker would send for a user, from the current account link; nothing is sent.
async fn preview(
    State(state): State<LogApiState>,
    body: Result<Json<PreviewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, LogApiError> {
    let Json(request) = body.map_err(|rejection| bad_request("bad_body", rejection.body_text()))?;
    let app = state.config.app(&request.app).ok_or_else(|| {
        bad_request(
            "unknown_app",
            format!("no app named {:?} is configured", request.app),
        )
    })?;
    let user = crate::source_file::user_from_json(&request.user)
        .map_err(|e| bad_request("bad_user", e.to_string()))?;
    let link = state.links.get_link(&app.name, &user.id).await?;
    let mut accounts = std::collections::BTreeMap::new();
    for id in app.mapping.referenced_users(&user) {
        if let Some(linked) = state.links.get_link(&app.name, &id).await?
            && linked.active
            && let Some(target_id) = linked.target_id
        {
            accounts.insert(id, target_id);
        }
    }
    Ok(Json(crate::preview::preview(
        app,
        &user,
        link.as_ref(),
        &accounts,
    ))
    .into_response())
}
