//! The declarative REST/JSON connector (`connector = "rest"`), for apps with a plain user API
//! instead of SCIM. Every operation is a method, a path template and a body shape from
//! `[apps.rest]`; the mapped attributes are the body.
//!
//! It trusts targets as little as the SCIM connector: hits are verified against every match
//! key, redirects are never followed, answers are size-capped, and the credentials never appear
//! in an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Map, Value};

use super::exchange::{Answer, Exchange};
use super::rate_limit::RateLimiter;
use super::{Connector, ConnectorError, GroupOptions, MatchKey, Reply, TargetAccount};
use crate::credentials::AuthProvider;
use crate::mapping::TargetPath;

pub mod answer;
mod groups;
pub mod settings;

pub use settings::{
    ActiveField, BodyShape, HttpMethod, MemberBatch, RestFind, RestGroupCreate, RestGroupFind,
    RestGroups, RestMembership, RestOperation, RestSettings,
};

pub struct RestConnector {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    settings: RestSettings,
    auth: Arc<dyn AuthProvider>,
    rate_limit: Option<Arc<RateLimiter>>,
}

impl fmt::Debug for RestConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConnector")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `template` with each placeholder replaced by its URL-encoded value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut path = template.to_owned();
    for (name, value) in values {
        path = path.replace(&format!("{{{name}}}"), &urlencoding::encode(value));
    }
    path
}

/// Writes `value` at a JSON pointer, creating objects on the way.
fn write_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut here = target;
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        *here = value;
        return;
    };
    for token in parents {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(fields) = here else { return };
        here = fields
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    if let Value::Object(fields) = here {
        fields.insert(last.clone(), value);
    }
}

fn reply<T>(value: T, answer: &Answer) -> Reply<T> {
    Reply {
        value,
        http_status: Some(answer.status),
    }
}

/// A JSON scalar as text, for ids and match keys.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl RestConnector {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        timeout: Duration,
        settings: RestSettings,
        auth: Arc<dyn AuthProvider>,
    ) -> Result<Self, ConnectorError> {
        let issues = settings.validate();
        if let Some((key, message)) = issues.first() {
            return Err(ConnectorError::Config(format!("rest.{key}: {message}")));
        }
        Ok(Self {
            http,
            base_url: base_url.trim().trim_end_matches('/').to_owned(),
            timeout,
            settings,
            auth,
            rate_limit: None,
        })
    }

    /// Sends every request through `limiter` (shared by all the app's calls in the process).
    pub fn with_rate_limit(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.rate_limit = Some(limiter);
        self
    }

    /// One exchange; after a 401 the credentials are refreshed and the request sent once more.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ConnectorError> {
        let url = format!("{}{path}", self.base_url);
        Exchange {
            http: &self.http,
            timeout: self.timeout,
            auth: self.auth.as_ref(),
            rate_limit: self.rate_limit.as_deref(),
            dialect: &answer::REST,
        }
        .send(method, &url, body, None)
        .await
    }

    /// The body an operation sends for `resource` (the mapped attributes) or `active`.
    fn body(
        &self,
        operation: &RestOperation,
        default: BodyShape,
        resource: Option<&Value>,
        active: Option<bool>,
    ) -> Result<Option<Value>, ConnectorError> {
        let body = match operation.body.unwrap_or(default) {
            BodyShape::None => return Ok(None),
            BodyShape::User => {
                let Some(Value::Object(fields)) = resource else {
                    return Err(ConnectorError::Config(
                        "the resource to send is not a JSON object".into(),
                    ));
                };
                let mut fields = fields.clone();
                // SCIM bookkeeping means nothing to a REST API.
                fields.remove("schemas");
                let flag = match fields.remove("active") {
                    Some(Value::Bool(flag)) => Some(flag),
                    _ => active,
                };
                let mut body = Value::Object(fields);
                if let Some(flag) = flag {
                    write_pointer(&mut body, &self.settings.active.pointer, self.active(flag));
                }
                body
            }
            BodyShape::Active => {
                let flag = active
                    .or_else(|| {
                        resource
                            .and_then(|r| r.get("active"))
                            .and_then(Value::as_bool)
                    })
                    .unwrap_or(true);
                let mut body = Value::Object(Map::new());
                write_pointer(&mut body, &self.settings.active.pointer, self.active(flag));
                body
            }
        };
        Ok(Some(match &operation.wrap {
            Some(key) => {
                let mut wrapped = Map::new();
                wrapped.insert(key.clone(), body);
                Value::Object(wrapped)
            }
            None => body,
        }))
    }

    fn active(&self, flag: bool) -> Value {
        if flag {
            self.settings.active.active.clone()
        } else {
            self.settings.active.inactive.clone()
        }
    }

    /// The account a user object describes.
    fn account_from(&self, user: Value, id_pointer: &str) -> Result<TargetAccount, ConnectorError> {
        if !user.is_object() {
            return Err(ConnectorError::BadResponse(
                "the answer holds no user object where one was expected".into(),
            ));
        }
        let Some(id) = user.pointer(id_pointer).and_then(scalar_text) else {
            return Err(ConnectorError::BadResponse(format!(
                "the user object in the answer has no id at {id_pointer:?}"
            )));
        };
        let field = &self.settings.active;
        let active = user.pointer(&field.pointer).and_then(|v| {
            if *v == field.active {
                Some(true)
            } else if *v == field.inactive {
                Some(false)
            } else {
                None
            }
        });
        Ok(TargetAccount {
            id,
            active,
            resource: user,
        })
    }

    /// The user object of an answer that must carry one.
    fn user_in(&self, answer: &Answer) -> Result<Value, ConnectorError> {
        let mut body = answer.json()?;
        let pointer = &self.settings.user_pointer;
        match body.pointer_mut(pointer) {
            Some(user) => Ok(user.take()),
            None => Err(ConnectorError::BadResponse(format!(
                "HTTP {} without a user object at {pointer:?}",
                answer.status
            ))),
        }
    }

    /// True when `user` holds `key.value` at the key's attribute path.
    fn holds(&self, user: &Value, path: &TargetPath, key: &MatchKey) -> bool {
        let Some(found) = path.read(user).and_then(scalar_text) else {
            return false;
        };
        if self.settings.find.ignore_case {
            found.to_lowercase() == key.value.to_lowercase()
        } else {
            found == key.value
        }
    }

    /// Calls an operation that changes account `id` and expects no particular answer.
    async fn change(
        &self,
        operation: &RestOperation,
        id: &str,
        body: Option<Value>,
    ) -> Result<Reply<()>, ConnectorError> {
        let path = fill(&operation.path, &[("id", id)]);
        let answer = self
            .send(operation.method.as_reqwest(), &path, body.as_ref())
            .await?;
        match answer.status {
            404 | 410 => Err(ConnectorError::NotFound { id: id.to_owned() }),
            _ if answer.is_success() => Ok(reply((), &answer)),
            _ => Err(answer.failure()),
        }
    }
}

#[async_trait]
impl Connector for RestConnector {
    async fn find(
        &self,
        keys: &[MatchKey],
    ) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            let path = TargetPath::parse(&key.attribute).map_err(|e| {
                ConnectorError::Config(format!("match key {:?}: {e}", key.attribute))
            })?;
            paths.push((path, key));
        }
        let Some((_, first)) = paths.first() else {
            return Err(ConnectorError::Config(
                "finding an account needs at least one match key".into(),
            ));
        };
        let find = &self.settings.find;
        let path = fill(
            &find.path,
            &[("attribute", &first.attribute), ("value", &first.value)],
        );
        let answer = self.send(find.method.as_reqwest(), &path, None).await?;
        if answer.status == 404 {
            return Ok(reply(None, &answer));
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let mut body = answer.json()?;
        let hits = match body.pointer_mut(&find.results_pointer).map(Value::take) {
            Some(Value::Array(hits)) => hits,
            Some(Value::Null) => Vec::new(),
            Some(hit @ Value::Object(_)) => vec![hit],
            _ => {
                return Err(ConnectorError::BadResponse(format!(
                    "the find answer has no list of users at {:?}",
                    find.results_pointer
                )));
            }
        };
        let mut matches: Vec<TargetAccount> = Vec::new();
        for hit in hits {
            if !paths.iter().all(|(path, key)| self.holds(&hit, path, key)) {
                continue;
            }
            let account = self.account_from(hit, &self.settings.id_pointer)?;
            if !matches.iter().any(|m| m.id == account.id) {
                matches.push(account);
            }
        }
        if matches.len() > 1 {
            let described: Vec<String> = keys
                .iter()
                .map(|k| format!("{} = {:?}", k.attribute, k.value))
                .collect();
            let ids: Vec<&str> = matches.iter().map(|m| m.id.as_str()).collect();
            return Err(ConnectorError::Rejected {
                status: answer.status,
                scim_type: Some("ambiguous".into()),
                detail: format!(
                    "{} accounts match {} (ids {}); userprov will not pick one: resolve it in the target",
                    matches.len(),
                    described.join(" and "),
                    ids.join(", ")
                ),
                body: String::new(),
            });
        }
        Ok(reply(matches.pop(), &answer))
    }

    async fn get(&self, id: &str) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let get = &self.settings.get;
        let path = fill(&get.path, &[("id", id)]);
        let answer = self.send(get.method.as_reqwest(), &path, None).await?;
        if matches!(answer.status, 404 | 410) {
            return Ok(reply(None, &answer));
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let account = self.account_from(self.user_in(&answer)?, &self.settings.id_pointer)?;
        if account.id != id {
            return Err(ConnectorError::BadResponse(format!(
                "asked for account {id:?}, the target answered with account {:?}",
                account.id
            )));
        }
        Ok(reply(Some(account), &answer))
    }

    async fn create(&self, resource: &Value) -> Result<Reply<TargetAccount>, ConnectorError> {
        let create = &self.settings.create;
        let body = self.body(create, BodyShape::User, Some(resource), Some(true))?;
        let answer = self
            .send(create.method.as_reqwest(), &create.path, body.as_ref())
            .await?;
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let id_pointer = create
            .id_pointer
            .as_deref()
            .unwrap_or(&self.settings.id_pointer);
        let account = match &create.id_pointer {
            // The id is somewhere in the answer, not necessarily in the user object.
            Some(pointer) => {
                let whole = answer.json()?;
                let Some(id) = whole.pointer(pointer).and_then(scalar_text) else {
                    return Err(ConnectorError::BadResponse(format!(
                        "the create answer has no id at {pointer:?}"
                    )));
                };
                let user = whole
                    .pointer(&self.settings.user_pointer)
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut account = self
                    .account_from(user, &self.settings.id_pointer)
                    .unwrap_or(TargetAccount {
                        id: id.clone(),
                        active: None,
                        resource: Value::Null,
                    });
                account.id = id;
                account
            }
            None => self.account_from(self.user_in(&answer)?, id_pointer)?,
        };
        Ok(reply(account, &answer))
    }

    async fn update(&self, id: &str, resource: &Value) -> Result<Reply<()>, ConnectorError> {
        let update = &self.settings.update;
        let body = self.body(update, BodyShape::User, Some(resource), None)?;
        self.change(update, id, body).await
    }

    async fn set_active(&self, id: &str, active: bool) -> Result<Reply<()>, ConnectorError> {
        let operation = if active {
            &self.settings.reactivate
        } else {
            &self.settings.deactivate
        };
        let resource = if operation.body == Some(BodyShape::User) {
            // A user-shaped body needs the account's attributes: read them first.
            let current = self.get(id).await?;
            let Some(account) = current.value else {
                return Err(ConnectorError::NotFound { id: id.to_owned() });
            };
            Some(account.resource)
        } else {
            None
        };
        let body = self.body(
            operation,
            BodyShape::Active,
            resource.as_ref(),
            Some(active),
        )?;
        self.change(operation, id, body).await
    }

    async fn delete(&self, id: &str) -> Result<Reply<()>, ConnectorError> {
        let Some(delete) = &self.settings.delete else {
            return Err(ConnectorError::Unsupported(
                "delete (no [apps.rest.delete] is configured)".into(),
            ));
        };
        self.change(delete, id, None).await
    }

    async fn group_id(
        &self,
        display_name: &str,
        create: bool,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        self.find_or_create_group(display_name, create).await
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        self.change_members(group_id, member_ids, true, options.chunk_size)
            .await
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        self.change_members(group_id, member_ids, false, options.chunk_size)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;
    use crate::ports::SecretValue;

    struct NoAuth;

    #[async_trait]
    impl AuthProvider for NoAuth {
        async fn authorization(&self) -> Result<SecretValue, ConnectorError> {
            Ok(SecretValue::new("Bearer t"))
        }
        async fn refresh(&self) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    fn settings(toml_text: &str) -> RestSettings {
        toml::from_str(toml_text).unwrap()
    }

    const USERS_API: &str = r#"
        user_pointer = "/user"
        active = { pointer = "/status", active = "ACTIVE", inactive = "SUSPENDED" }
        create = { method = "POST", path = "/users", wrap = "user" }
        find = { path = "/users?{attribute}={value}", results_pointer = "/users", ignore_case = true }
        get = { method = "GET", path = "/users/{id}" }
        update = { method = "PUT", path = "/users/{id}", wrap = "user" }
        deactivate = { method = "POST", path = "/users/{id}/suspend", body = "none" }
        reactivate = { method = "PATCH", path = "/users/{id}" }
    "#;

    fn connector(toml_text: &str) -> RestConnector {
        RestConnector::new(
            reqwest::Client::new(),
            "https://api.example.com/v1/",
            Duration::from_secs(1),
            settings(toml_text),
            Arc::new(NoAuth),
        )
        .unwrap()
    }

    #[test]
    fn the_body_is_the_mapped_attributes_with_active_as_the_api_spells_it() {
        let rest = connector(USERS_API);
        let resource = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "email": "marta@acme.example",
            "profile": {"title": "Engineer"},
            "active": true
        });
        let body = rest
            .body(
                &rest.settings.create,
                BodyShape::User,
                Some(&resource),
                Some(true),
            )
            .unwrap();
        assert_eq!(
            body,
            Some(json!({"user": {
                "email": "marta@acme.example",
                "profile": {"title": "Engineer"},
                "status": "ACTIVE"
            }}))
        );
        let deactivate = rest
            .body(
                &rest.settings.deactivate,
                BodyShape::Active,
                None,
                Some(false),
            )
            .unwrap();
        assert_eq!(deactivate, None, "body = \"none\" sends nothing");
        let reactivate = rest
            .body(
                &rest.settings.reactivate,
                BodyShape::Active,
                None,
                Some(true),
            )
            .unwrap();
        assert_eq!(reactivate, Some(json!({"status": "ACTIVE"})));
    }

    #[test]
    fn accounts_read_the_configured_id_and_active_value() {
        let rest = connector(USERS_API);
        let account = rest
            .account_from(json!({"id": 42, "status": "SUSPENDED"}), "/id")
            .unwrap();
        assert_eq!((account.id.as_str(), account.active), ("42", Some(false)));
        let unknown = rest
            .account_from(json!({"id": "a", "status": "PENDING"}), "/id")
            .unwrap();
        assert_eq!(unknown.active, None, "a value that is neither is unknown");
        assert!(matches!(
            rest.account_from(json!({"name": "x"}), "/id"),
            Err(ConnectorError::BadResponse(_))
        ));
    }

    #[test]
    fn path_values_are_url_encoded() {
        assert_eq!(
            fill(
                "/users?{attribute}={value}",
                &[("attribute", "email"), ("value", "a+b&c=d@x.example")]
            ),
            "/users?email=a%2Bb%26c%3Dd%40x.example"
        );
        assert_eq!(
            fill("/users/{id}", &[("id", "../admin")]),
            "/users/..%2Fadmin"
        );
    }

    #[test]
    fn pointers_are_written_through_nested_objects() {
        let mut body = json!({"a": 1});
        write_pointer(&mut body, "/profile/state", json!("on"));
        write_pointer(&mut body, "/x~1y", json!(true));
        assert_eq!(
            body,
            json!({"a": 1, "profile": {"state": "on"}, "x/y": true})
        );
    }

    #[test]
    fn bad_templates_and_pointers_are_refused_naming_the_key() {
        let bad = settings(
            r#"
            id_pointer = "id"
            active = { active = "on", inactive = "on" }
            create = { method = "POST", path = "/users/{id}" }
            find = { path = "/users?q={name}" }
            get = { method = "POST", path = "/users/{id}" }
            update = { method = "PUT", path = "users" }
            deactivate = { method = "PATCH", path = "/users/{id" }
            reactivate = { method = "PATCH", path = "/users/{id}" }
        "#,
        );
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        for expected in [
            "create.path",
            "find.path",
            "get.method",
            "update.path",
            "deactivate.path",
            "id_pointer",
            "active",
        ] {
            assert!(keys.iter().any(|k| k == expected), "{expected} in {keys:?}");
        }
        assert!(settings(USERS_API).validate().is_empty());
    }

    #[test]
    fn bad_group_templates_are_refused_naming_the_key() {
        let bad = settings(&format!(
            r#"{USERS_API}
            [groups]
            id_pointer = ""
            name_pointer = "name"
            find = {{ path = "/groups" }}
            create = {{ method = "GET", path = "/groups/{{name}}" }}
            add_members = {{ method = "GET", path = "/groups/{{group_id}}/members", item_pointer = "/id" }}
            remove_members = {{ method = "DELETE", path = "/groups/{{group_id}}/members", member_pointer = "" }}
            "#
        ));
        let issues = bad.validate();
        let keys: Vec<&str> = issues.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "groups.find.path",
                "groups.create.path",
                "groups.create.method",
                "groups.add_members",
                "groups.add_members.item_pointer",
                "groups.add_members.method",
                "groups.remove_members.member_pointer",
                "groups.id_pointer",
                "groups.name_pointer",
            ],
            "{issues:#?}"
        );
        assert_eq!(
            issues[1].1,
            "\"/groups/{name}\" uses {name}; this path takes no placeholders"
        );
        let good = settings(&format!(
            r#"{USERS_API}
            [groups]
            find = {{ path = "/groups?name={{name}}" }}
            add_members = {{ method = "PUT", path = "/groups/{{group_id}}/users/{{member_id}}" }}
            remove_members = {{ method = "POST", path = "/groups/{{group_id}}/remove", members_pointer = "", item_pointer = "/id" }}
            "#
        ));
        assert!(good.validate().is_empty(), "{:?}", good.validate());
    }
}
