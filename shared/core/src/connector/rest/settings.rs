//! `[apps.rest]`: how a plain REST/JSON user API is called, operation by operation.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The HTTP methods an operation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
            Self::Delete => reqwest::Method::DELETE,
        }
    }
}

/// What an operation sends as its JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyShape {
    /// The mapped attributes (`schemas` left out, `active` written as `[apps.rest.active]` says).
    User,
    /// Only the active field, e.g. `{"active": false}` or `{"status": "SUSPENDED"}`.
    Active,
    /// No body.
    None,
}

/// One call: `method` on `base_url` + `path`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestOperation {
    pub method: HttpMethod,
    /// A path template below base_url, e.g. `/users/{id}`. `{id}` is the account's id; in
    /// `find`, `{attribute}` and `{value}` are the first match key. Values are URL-encoded.
    pub path: String,
    /// Default: `user` for create and update, `active` for deactivate and reactivate, `none`
    /// for the others.
    #[serde(default)]
    pub body: Option<BodyShape>,
    /// Puts the body under this key, for APIs that want `{"user": {...}}`.
    #[serde(default)]
    pub wrap: Option<String>,
    /// create only: the JSON pointer of the new account's id in the answer (default: the user
    /// object's `id_pointer`).
    #[serde(default)]
    pub id_pointer: Option<String>,
}

/// `find`: looks accounts up by one attribute; every hit is then checked against every key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestFind {
    #[serde(default = "default_find_method")]
    pub method: HttpMethod,
    /// e.g. `/users?email={value}` or `/users/by-email/{value}`.
    pub path: String,
    /// The JSON pointer of the list of hits in the answer; default: the answer itself. An
    /// object there (not a list) is one hit; a 404 is no hit.
    #[serde(default)]
    pub results_pointer: String,
    /// Compare a hit's attribute with the key ignoring case (emails usually are).
    #[serde(default)]
    pub ignore_case: bool,
}

fn default_find_method() -> HttpMethod {
    HttpMethod::Get
}

/// How an account's active state is written and read.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveField {
    /// The JSON pointer of the field in a user object, e.g. `/active` or `/status`.
    #[serde(default = "default_active_pointer")]
    pub pointer: String,
    /// The value meaning active (default `true`).
    #[serde(default = "default_active_value")]
    #[schemars(with = "serde_json::Value")]
    pub active: Value,
    /// The value meaning deactivated (default `false`).
    #[serde(default = "default_inactive_value")]
    #[schemars(with = "serde_json::Value")]
    pub inactive: Value,
}

impl Default for ActiveField {
    fn default() -> Self {
        Self {
            pointer: default_active_pointer(),
            active: default_active_value(),
            inactive: default_inactive_value(),
        }
    }
}

fn default_active_pointer() -> String {
    "/active".into()
}
fn default_active_value() -> Value {
    Value::Bool(true)
}
fn default_inactive_value() -> Value {
    Value::Bool(false)
}
fn default_id_pointer() -> String {
    "/id".into()
}

/// `[apps.rest]` (with `connector = "rest"`): a plain REST/JSON user API.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestSettings {
    /// The JSON pointer of the id in a user object (default `/id`).
    #[serde(default = "default_id_pointer")]
    pub id_pointer: String,
    /// The JSON pointer of the user object in answers that carry one (get, create); default:
    /// the answer itself. For APIs answering `{"ok": true, "user": {...}}` it is `/user`.
    #[serde(default)]
    pub user_pointer: String,
    #[serde(default)]
    pub active: ActiveField,
    pub create: RestOperation,
    pub find: RestFind,
    pub get: RestOperation,
    pub update: RestOperation,
    pub deactivate: RestOperation,
    pub reactivate: RestOperation,
    /// Optional: only for `deactivate = "delete"` apps.
    #[serde(default)]
    pub delete: Option<RestOperation>,
}

/// The placeholders a path template may hold.
const PLACEHOLDERS: [&str; 3] = ["id", "attribute", "value"];

/// The placeholders in `template`, or the problem with it.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("{template:?} has a '{{' without its '}}'"));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "{template:?} uses {{{name}}}; the placeholders are {{id}}, {{attribute}} and {{value}}"
            ));
        }
        found.push(name.to_owned());
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{template:?} has a '}}' without its '{{'"));
    }
    Ok(found)
}

fn pointer_issue(key: &str, pointer: &str) -> Option<(String, String)> {
    (!pointer.is_empty() && !pointer.starts_with('/')).then(|| {
        (
            key.to_owned(),
            format!("{pointer:?} is not a JSON pointer (those start with '/', e.g. \"/id\")"),
        )
    })
}

impl RestSettings {
    /// Problems as (key below `rest.`, message); empty when the settings are usable.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut check_path = |key: &str, path: &str, needs: &[&str], refuses: &[&str]| {
            if !path.starts_with('/') {
                issues.push((
                    format!("{key}.path"),
                    format!("{path:?} must start with '/' (it is appended to base_url)"),
                ));
            }
            match placeholders(path) {
                Err(message) => issues.push((format!("{key}.path"), message)),
                Ok(found) => {
                    for name in needs {
                        if !found.iter().any(|f| f == name) {
                            issues.push((
                                format!("{key}.path"),
                                format!("{path:?} must contain {{{name}}}"),
                            ));
                        }
                    }
                    for name in refuses {
                        if found.iter().any(|f| f == name) {
                            issues.push((
                                format!("{key}.path"),
                                format!("{path:?} cannot use {{{name}}} in this operation"),
                            ));
                        }
                    }
                }
            }
        };
        check_path(
            "create",
            &self.create.path,
            &[],
            &["id", "attribute", "value"],
        );
        check_path("find", &self.find.path, &["value"], &["id"]);
        for (key, operation) in [
            ("get", Some(&self.get)),
            ("update", Some(&self.update)),
            ("deactivate", Some(&self.deactivate)),
            ("reactivate", Some(&self.reactivate)),
            ("delete", self.delete.as_ref()),
        ] {
            if let Some(operation) = operation {
                check_path(key, &operation.path, &["id"], &["attribute", "value"]);
            }
        }
        if self.get.method != HttpMethod::Get {
            issues.push(("get.method".into(), "must be GET".into()));
        }
        for (key, pointer) in [
            ("id_pointer", self.id_pointer.as_str()),
            ("user_pointer", self.user_pointer.as_str()),
            ("active.pointer", self.active.pointer.as_str()),
            ("find.results_pointer", self.find.results_pointer.as_str()),
            (
                "create.id_pointer",
                self.create.id_pointer.as_deref().unwrap_or_default(),
            ),
        ] {
            issues.extend(pointer_issue(key, pointer));
        }
        if self.id_pointer.is_empty() {
            issues.push((
                "id_pointer".into(),
                "name the id's field, e.g. \"/id\"".into(),
            ));
        }
        if self.active.pointer.is_empty() {
            issues.push((
                "active.pointer".into(),
                "name the active field, e.g. \"/active\"".into(),
            ));
        }
        if self.active.active == self.active.inactive {
            issues.push((
                "active".into(),
                "the active and inactive values must differ".into(),
            ));
        }
        issues
    }
}
