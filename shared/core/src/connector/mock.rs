//! The built-in mock target: a small SCIM 2.0 service provider kept in memory, for demos and
//! pilots (the counterpart of Salesforce's UserProvMockTarget). Real SCIM URLs and the
//! scim2-server peer are what the test suites provision against; this one shows what userprov
//! would do without touching a real app.
//!
//! It is strict where real targets are: a bearer token is required, `schemas` must be sent,
//! booleans must be JSON booleans, userName is unique without regard to case, and errors are
//! SCIM error messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::scim::{ERROR_SCHEMA, PATCH_OP_SCHEMA, SCIM_MEDIA_TYPE};
use crate::mapping::CORE_USER_SCHEMA;

const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// An in-memory SCIM target. Clones share the same users.
#[derive(Debug, Clone, Default)]
pub struct MockTarget {
    users: Arc<Mutex<Users>>,
}

/// The users in creation order, with lookups by id and by userName (lowercased), so a target
/// holding 100,000 users (the scale benchmark) answers as fast as an empty one.
#[derive(Debug, Default)]
struct Users {
    list: Vec<Value>,
    by_id: HashMap<String, usize>,
    by_user_name: HashMap<String, usize>,
}

impl Users {
    fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    fn get(&self, id: &str) -> Option<&Value> {
        self.position(id).and_then(|at| self.list.get(at))
    }

    fn with_user_name(&self, user_name: &str) -> Option<&Value> {
        self.by_user_name
            .get(&user_name.to_lowercase())
            .and_then(|at| self.list.get(*at))
    }

    fn push(&mut self, user: Value) {
        let at = self.list.len();
        self.index(at, &user);
        self.list.push(user);
    }

    /// Replaces the user at `at`, returning the stored user.
    fn replace(&mut self, at: usize, user: Value) -> Option<&Value> {
        let old_name = self.list.get(at).and_then(|u| text(u, "userName"));
        if let Some(old_name) = old_name.map(str::to_lowercase) {
            self.by_user_name.remove(&old_name);
        }
        self.index(at, &user);
        let slot = self.list.get_mut(at)?;
        *slot = user;
        Some(slot)
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(at) = self.position(id) else {
            return false;
        };
        self.list.remove(at);
        // Deletes are rare: the positions after `at` shift, so index again.
        self.by_id.clear();
        self.by_user_name.clear();
        let list = std::mem::take(&mut self.list);
        for (at, user) in list.iter().enumerate() {
            self.index(at, user);
        }
        self.list = list;
        true
    }

    fn index(&mut self, at: usize, user: &Value) {
        if let Some(id) = text(user, "id") {
            self.by_id.insert(id.to_owned(), at);
        }
        if let Some(name) = text(user, "userName") {
            self.by_user_name.insert(name.to_lowercase(), at);
        }
    }
}

impl MockTarget {
    pub fn new() -> Self {
        Self::default()
    }

    /// The SCIM endpoints, relative to where the caller mounts them: `/Users`, `/Users/{id}`,
    /// `/ServiceProviderConfig`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/Users", get(list_users).post(create_user))
            .route(
                "/Users/{id}",
                get(get_user)
                    .put(replace_user)
                    .patch(patch_user)
                    .delete(delete_user),
            )
            .route_layer(middleware::from_fn(require_bearer))
            // Discovery needs no credentials (RFC 7644 section 4).
            .route("/ServiceProviderConfig", get(service_provider_config))
            .with_state(self.clone())
    }

    /// Every user, in creation order.
    pub fn users(&self) -> Vec<Value> {
        self.lock().list.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Users> {
        // The data stays consistent even if a holder panicked: every write is a single step.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn scim_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_MEDIA_TYPE),
    );
    response
}

/// A SCIM error message to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl Fault {
    fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    fn conflict(user_name: &str) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            scim_type: Some("uniqueness"),
            detail: format!("userName {user_name:?} is already taken"),
        }
    }

    fn not_found(id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            detail: format!("User {id:?} not found"),
        }
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        // RFC 7644 writes `status` as a string.
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail
        });
        if let (Some(kind), Value::Object(fields)) = (self.scim_type, &mut body) {
            fields.insert("scimType".into(), Value::String(kind.to_owned()));
        }
        scim_response(self.status, &body)
    }
}

async fn require_bearer(request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if token.is_some_and(|t| !t.is_empty()) {
        return next.run(request).await;
    }
    let fault = Fault {
        status: StatusCode::UNAUTHORIZED,
        scim_type: None,
        detail: "a bearer token is required".into(),
    };
    let mut response = fault.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"SCIM\""),
    );
    response
}

async fn service_provider_config() -> Response {
    scim_response(
        StatusCode::OK,
        &json!({
            "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 200},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "Any non-empty bearer token is accepted"
            }],
            "meta": {"resourceType": "ServiceProviderConfig"}
        }),
    )
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn text<'a>(resource: &'a Value, name: &str) -> Option<&'a str> {
    resource.get(name).and_then(Value::as_str)
}

/// Parses and checks a User resource sent by a client.
fn user_from_body(body: &[u8]) -> Result<Map<String, Value>, Fault> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(Fault::bad_request(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    };
    let has_core_schema = fields
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(CORE_USER_SCHEMA)));
    if !has_core_schema {
        return Err(Fault::bad_request(
            "invalidSyntax",
            format!("\"schemas\" must include {CORE_USER_SCHEMA}"),
        ));
    }
    fields.remove("meta");
    check_user(&fields)?;
    Ok(fields)
}

fn check_user(fields: &Map<String, Value>) -> Result<(), Fault> {
    match fields.get("userName").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => {}
        _ => return Err(Fault::bad_request("invalidValue", "userName is required")),
    }
    if fields.get("active").is_some_and(|a| !a.is_boolean()) {
        return Err(Fault::bad_request(
            "invalidValue",
            "active must be a JSON boolean",
        ));
    }
    Ok(())
}

async fn create_user(State(target): State<MockTarget>, body: Bytes) -> Result<Response, Fault> {
    let mut fields = user_from_body(&body)?;
    let user_name = fields
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut users = target.lock();
    if users.with_user_name(&user_name).is_some() {
        return Err(Fault::conflict(&user_name));
    }
    let id = new_id();
    let stamp = now();
    fields.insert("id".into(), Value::String(id.clone()));
    fields.insert(
        "meta".into(),
        json!({"resourceType": "User", "created": stamp, "lastModified": stamp, "version": "W/\"1\""}),
    );
    let user = Value::Object(fields);
    users.push(user.clone());
    tracing::info!(id, "mock target: user created");
    Ok(scim_response(StatusCode::CREATED, &user))
}

async fn get_user(
    State(target): State<MockTarget>,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let users = target.lock();
    let user = users.get(&id).ok_or_else(|| Fault::not_found(&id))?;
    Ok(scim_response(StatusCode::OK, user))
}

/// Stores `fields` as the new state of user `id`, keeping its creation time.
fn store_replacement(
    users: &mut Users,
    id: &str,
    mut fields: Map<String, Value>,
) -> Result<Response, Fault> {
    let user_name = fields
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if users
        .with_user_name(&user_name)
        .is_some_and(|u| text(u, "id") != Some(id))
    {
        return Err(Fault::conflict(&user_name));
    }
    let at = users.position(id).ok_or_else(|| Fault::not_found(id))?;
    let slot = users.list.get(at).ok_or_else(|| Fault::not_found(id))?;
    let mut meta = slot
        .get("meta")
        .cloned()
        .unwrap_or_else(|| json!({"resourceType": "User"}));
    let version = meta
        .get("version")
        .and_then(Value::as_str)
        .and_then(|v| {
            v.trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    if let Value::Object(m) = &mut meta {
        m.insert("lastModified".into(), Value::String(now()));
        m.insert(
            "version".into(),
            Value::String(format!("W/\"{}\"", version + 1)),
        );
    }
    fields.insert("id".into(), Value::String(id.to_owned()));
    fields.insert("meta".into(), meta);
    let stored = users
        .replace(at, Value::Object(fields))
        .ok_or_else(|| Fault::not_found(id))?;
    Ok(scim_response(StatusCode::OK, stored))
}

async fn replace_user(
    State(target): State<MockTarget>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let fields = user_from_body(&body)?;
    if fields
        .get("id")
        .is_some_and(|sent| sent.as_str() != Some(id.as_str()))
    {
        return Err(Fault::bad_request(
            "mutability",
            "the id in the body differs from the URL",
        ));
    }
    let mut users = target.lock();
    store_replacement(&mut users, &id, fields)
}

/// A PATCH path the mock target handles: `attr` or `attr.sub`, no filters.
fn plain_path(path: &str) -> Result<Vec<&str>, Fault> {
    let names: Vec<&str> = path.split('.').collect();
    let valid = names.len() <= 2
        && names
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return Err(Fault::bad_request(
            "invalidPath",
            "the mock target patches plain attributes only",
        ));
    }
    read_write(names[0])?;
    Ok(names)
}

/// Refuses changes to the attributes the service provider owns.
fn read_write(name: &str) -> Result<(), Fault> {
    if ["id", "meta", "schemas"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
    {
        return Err(Fault::bad_request(
            "mutability",
            format!("{name} cannot be changed"),
        ));
    }
    Ok(())
}

/// Applies one PATCH operation to a user's attributes.
fn apply_operation(fields: &mut Map<String, Value>, operation: &Value) -> Result<(), Fault> {
    let op = operation
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = operation.get("path").and_then(Value::as_str);
    match (op.as_str(), path, operation.get("value")) {
        ("add" | "replace", None, Some(Value::Object(values))) => {
            for (name, value) in values {
                read_write(name)?;
                fields.insert(name.clone(), value.clone());
            }
        }
        ("add" | "replace", None, _) => {
            return Err(Fault::bad_request(
                "invalidValue",
                "without a path, value must be an object",
            ));
        }
        ("add" | "replace", Some(path), Some(value)) => match plain_path(path)?.as_slice() {
            [name] => {
                fields.insert((*name).to_owned(), value.clone());
            }
            [parent, child] => {
                let slot = fields
                    .entry((*parent).to_owned())
                    .or_insert_with(|| json!({}));
                let Value::Object(inner) = slot else {
                    return Err(Fault::bad_request(
                        "invalidPath",
                        format!("{parent} is not a complex attribute"),
                    ));
                };
                inner.insert((*child).to_owned(), value.clone());
            }
            _ => {
                return Err(Fault::bad_request(
                    "invalidPath",
                    "the mock target patches plain attributes only",
                ));
            }
        },
        ("add" | "replace", Some(_), None) => {
            return Err(Fault::bad_request(
                "invalidValue",
                "the operation has no value",
            ));
        }
        ("remove", Some(path), _) => match plain_path(path)?.as_slice() {
            [name] => {
                fields.remove(*name);
            }
            [parent, child] => {
                if let Some(Value::Object(inner)) = fields.get_mut(*parent) {
                    inner.remove(*child);
                }
            }
            _ => {}
        },
        ("remove", None, _) => return Err(Fault::bad_request("noTarget", "remove needs a path")),
        _ => {
            return Err(Fault::bad_request(
                "invalidSyntax",
                "op must be add, replace or remove",
            ));
        }
    }
    Ok(())
}

async fn patch_user(
    State(target): State<MockTarget>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Err(Fault::bad_request(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    };
    let is_patch = request
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(PATCH_OP_SCHEMA)));
    if !is_patch {
        return Err(Fault::bad_request(
            "invalidSyntax",
            format!("\"schemas\" must be [{PATCH_OP_SCHEMA:?}]"),
        ));
    }
    let operations = match request.get("Operations").and_then(Value::as_array) {
        Some(ops) if !ops.is_empty() => ops,
        _ => {
            return Err(Fault::bad_request(
                "invalidSyntax",
                "Operations must be a non-empty array",
            ));
        }
    };
    let mut users = target.lock();
    let Some(Value::Object(current)) = users.get(&id) else {
        return Err(Fault::not_found(&id));
    };
    let mut fields = current.clone();
    for operation in operations {
        apply_operation(&mut fields, operation)?;
    }
    check_user(&fields)?;
    store_replacement(&mut users, &id, fields)
}

async fn delete_user(
    State(target): State<MockTarget>,
    Path(id): Path<String>,
) -> Result<StatusCode, Fault> {
    if !target.lock().remove(&id) {
        return Err(Fault::not_found(&id));
    }
    tracing::info!(id, "mock target: user deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users(
    State(target): State<MockTarget>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let filter = params
        .get("filter")
        .map(|f| Filter::parse(f))
        .transpose()
        .map_err(|detail| Fault::bad_request("invalidFilter", detail))?;
    let number = |name: &str, default: usize| match params.get(name) {
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .map_err(|_| Fault::bad_request("invalidValue", format!("{name} must be a number"))),
        None => Ok(default),
    };
    let start_index = number("startIndex", 1)?.max(1);
    let count = number("count", usize::MAX)?;
    let users = target.lock();
    let matching: Vec<&Value> = match &filter {
        // The lookups the worker makes for every new user, answered from the indexes.
        Some(Filter::Equals { attribute, value }) if attribute == "userName" => {
            users.with_user_name(value).into_iter().collect()
        }
        Some(Filter::Equals { attribute, value }) if attribute == "id" => {
            users.get(value).into_iter().collect()
        }
        _ => users
            .list
            .iter()
            .filter(|u| filter.as_ref().is_none_or(|f| f.matches(u)))
            .collect(),
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(start_index - 1)
        .take(count)
        .map(|u| (*u).clone())
        .collect();
    Ok(scim_response(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": matching.len(),
            "startIndex": start_index,
            "itemsPerPage": page.len(),
            "Resources": page
        }),
    ))
}

/// The filters the mock target understands: `attr eq "v"` on userName, externalId, id or
/// emails.value, and `emails[type eq "t" and value eq "v"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Equals { attribute: String, value: String },
    Email { conditions: Vec<(String, String)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
}

const FILTER_HELP: &str = "the mock target understands only `userName eq \"x\"`, `externalId eq \"x\"`, \
                           `id eq \"x\"`, `emails.value eq \"x\"` and `emails[type eq \"t\" and value eq \"x\"]`";

fn tokenize(filter: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = filter.trim_start();
    while let Some(c) = rest.chars().next() {
        match c {
            '[' => {
                tokens.push(Token::Open);
                rest = &rest[1..];
            }
            ']' => {
                tokens.push(Token::Close);
                rest = &rest[1..];
            }
            '"' => {
                let mut escaped = false;
                let mut end = None;
                for (i, ch) in rest.char_indices().skip(1) {
                    match ch {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or("a quoted value is not closed")?;
                let value: String = serde_json::from_str(&rest[..=end])
                    .map_err(|_| "a quoted value has a bad escape".to_owned())?;
                tokens.push(Token::Text(value));
                rest = &rest[end + 1..];
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '[' || c == ']')
                    .unwrap_or(rest.len());
                tokens.push(Token::Word(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Filter {
    fn parse(filter: &str) -> Result<Self, String> {
        let tokens = tokenize(filter)?;
        match tokens.as_slice() {
            [Token::Word(attribute), op, Token::Text(value)] if is_word(Some(op), "eq") => {
                let known = ["userName", "externalId", "id", "emails.value"];
                let Some(attribute) = known.iter().find(|k| k.eq_ignore_ascii_case(attribute))
                else {
                    return Err(FILTER_HELP.into());
                };
                Ok(Self::Equals {
                    attribute: (*attribute).to_owned(),
                    value: value.clone(),
                })
            }
            [
                Token::Word(attribute),
                Token::Open,
                inner @ ..,
                Token::Close,
            ] if attribute.eq_ignore_ascii_case("emails") => {
                let mut conditions = Vec::new();
                for chunk in inner.split(|t| is_word(Some(t), "and")) {
                    match chunk {
                        [Token::Word(sub), op, Token::Text(value)]
                            if is_word(Some(op), "eq")
                                && ["type", "value"]
                                    .iter()
                                    .any(|s| s.eq_ignore_ascii_case(sub)) =>
                        {
                            conditions.push((sub.to_ascii_lowercase(), value.clone()));
                        }
                        _ => return Err(FILTER_HELP.into()),
                    }
                }
                Ok(Self::Email { conditions })
            }
            _ => Err(FILTER_HELP.into()),
        }
    }

    fn matches(&self, user: &Value) -> bool {
        let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
        let emails = || {
            user.get("emails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        };
        match self {
            Self::Equals { attribute, value } => match attribute.as_str() {
                "userName" => text(user, "userName").is_some_and(|v| same(v, value)),
                "emails.value" => {
                    emails().any(|e| text(e, "value").is_some_and(|v| same(v, value)))
                }
                exact => text(user, exact) == Some(value.as_str()),
            },
            Self::Email { conditions } => emails().any(|email| {
                conditions
                    .iter()
                    .all(|(sub, value)| text(email, sub).is_some_and(|v| same(v, value)))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn filters_on_user_name_ignore_case_and_on_external_id_do_not() {
        let user = json!({"userName": "Marta@Acme.example", "externalId": "0058a00000LmN2pAAF"});
        assert!(
            Filter::parse(r#"userName eq "marta@acme.example""#)
                .unwrap()
                .matches(&user)
        );
        assert!(
            Filter::parse(r#"externalId EQ "0058a00000LmN2pAAF""#)
                .unwrap()
                .matches(&user)
        );
        assert!(
            !Filter::parse(r#"externalId eq "0058A00000LMN2PAAF""#)
                .unwrap()
                .matches(&user)
        );
    }

    #[test]
    fn quoted_values_keep_their_escaped_quotes_and_backslashes() {
        let user = json!({"userName": "o\"neil\\x y"});
        let filter = Filter::parse(r#"userName eq "o\"neil\\x y""#).unwrap();
        assert_eq!(
            filter,
            Filter::Equals {
                attribute: "userName".into(),
                value: "o\"neil\\x y".into()
            }
        );
        assert!(filter.matches(&user));
    }

    #[test]
    fn a_work_email_filter_looks_inside_the_emails() {
        let user = json!({"emails": [{"type": "home", "value": "a@home"}, {"type": "work", "value": "a@work"}]});
        assert!(
            Filter::parse(r#"emails[type eq "work" and value eq "A@WORK"]"#)
                .unwrap()
                .matches(&user)
        );
        assert!(
            !Filter::parse(r#"emails[type eq "work" and value eq "a@home"]"#)
                .unwrap()
                .matches(&user)
        );
        assert!(
            Filter::parse(r#"emails.value eq "a@home""#)
                .unwrap()
                .matches(&user)
        );
    }

    #[test]
    fn other_filters_are_refused() {
        for filter in [
            r#"userName sw "m""#,
            r#"title eq "x""#,
            r#"userName eq "a" or userName eq "b""#,
            "userName eq",
            r#"userName eq "open"#,
        ] {
            assert!(Filter::parse(filter).is_err(), "{filter}");
        }
    }
}
