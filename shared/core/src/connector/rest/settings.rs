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
    /// Optional: how groups are found, created and given members, for `[apps.groups]` with
    /// `deliver_as = "groups"`.
    #[serde(default)]
    pub groups: Option<RestGroups>,
}

/// `[apps.rest.groups]`: the app's groups, found by name, and their members changed one
/// request per member or a list per request. Only the members named are ever sent: no
/// template replaces a member list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestGroups {
    /// The JSON pointer of the id in a group object (default `/id`).
    #[serde(default = "default_id_pointer")]
    pub id_pointer: String,
    /// The JSON pointer of the name in a group object (default `/name`). Every hit of `find`
    /// is checked against it, and `create` writes the name there.
    #[serde(default = "default_name_pointer")]
    pub name_pointer: String,
    pub find: RestGroupFind,
    /// Optional: how a missing group is created (needed unless `[apps.groups]` has
    /// `create_missing = false`).
    #[serde(default)]
    pub create: Option<RestGroupCreate>,
    pub add_members: RestMembership,
    pub remove_members: RestMembership,
}

/// `[apps.rest.groups.find]`: looks a group up by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestGroupFind {
    #[serde(default = "default_find_method")]
    pub method: HttpMethod,
    /// e.g. `/groups?name={name}`; `{name}` is the group's name, URL-encoded.
    pub path: String,
    /// The JSON pointer of the list of hits in the answer; default: the answer itself. An
    /// object there is one hit; a 404 is no hit.
    #[serde(default)]
    pub results_pointer: String,
}

/// `[apps.rest.groups.create]`: the body is `{"name": "..."}`, the name written at the
/// groups' `name_pointer`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestGroupCreate {
    #[serde(default = "default_create_method")]
    pub method: HttpMethod,
    /// e.g. `/groups` (no placeholders).
    pub path: String,
    /// Puts the body under this key, for APIs that want `{"group": {...}}`.
    #[serde(default)]
    pub wrap: Option<String>,
    /// The JSON pointer of the new group's id in the answer (default: the groups'
    /// `id_pointer`).
    #[serde(default)]
    pub id_pointer: Option<String>,
}

/// `add_members` or `remove_members`: where the group and the members go. One member per
/// request when the path holds `{member_id}` or `member_pointer` is set; a list of members
/// (at most `[apps.groups] chunk_size`) per request when `members_pointer` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestMembership {
    pub method: HttpMethod,
    /// e.g. `/groups/{group_id}/members` or `/groups/{group_id}/members/{member_id}`;
    /// `{group_id}` is the group's id, `{member_id}` the account's id. URL-encoded.
    pub path: String,
    /// One member per request, its id written at this JSON pointer of the body, e.g.
    /// `/user_id` sends `{"user_id": "42"}`.
    #[serde(default)]
    pub member_pointer: Option<String>,
    /// A list of members per request, written at this JSON pointer of the body, e.g.
    /// `/user_ids` sends `{"user_ids": ["42", "43"]}` (`""`: the body is the list).
    #[serde(default)]
    pub members_pointer: Option<String>,
    /// With `members_pointer`: each member as an object holding its id at this pointer, e.g.
    /// `/id` sends `[{"id": "42"}]` (default: the bare ids).
    #[serde(default)]
    pub item_pointer: Option<String>,
}

/// How a membership template sends its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberBatch {
    /// One request per member.
    EachMember,
    /// One request per chunk of members, listed in the body.
    List,
}

impl RestMembership {
    /// How the members are sent; `None` when the template does not say (see `validate`).
    pub fn batch(&self) -> Option<MemberBatch> {
        let per_member = self.member_pointer.is_some()
            || placeholders_among(&self.path, &MEMBERSHIP_PLACEHOLDERS)
                .is_ok_and(|found| found.iter().any(|f| f == "member_id"));
        match (per_member, self.members_pointer.is_some()) {
            (true, false) => Some(MemberBatch::EachMember),
            (false, true) => Some(MemberBatch::List),
            _ => None,
        }
    }
}

fn default_name_pointer() -> String {
    "/name".into()
}
fn default_create_method() -> HttpMethod {
    HttpMethod::Post
}

/// The placeholders a path template may hold.
const PLACEHOLDERS: [&str; 3] = ["id", "attribute", "value"];

/// The placeholders of group membership paths.
const MEMBERSHIP_PLACEHOLDERS: [&str; 2] = ["group_id", "member_id"];

/// `["a", "b", "c"]` as "{a}, {b} and {c}".
fn listed(names: &[&str]) -> String {
    let braced: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
    match braced.split_last() {
        None => "none".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The placeholders in `template`, or the problem with it.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    placeholders_among(template, &PLACEHOLDERS)
}

/// The placeholders in `template`, each one of `allowed`, or the problem with it.
pub fn placeholders_among(template: &str, allowed: &[&str]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("{template:?} has a '{{' without its '}}'"));
        };
        let name = &after[..end];
        if !allowed.contains(&name) {
            let here = if allowed.is_empty() {
                "this path takes no placeholders".to_owned()
            } else {
                format!("the placeholders are {}", listed(allowed))
            };
            return Err(format!("{template:?} uses {{{name}}}; {here}"));
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
        if let Some(groups) = &self.groups {
            issues.extend(groups.validate());
        }
        issues
    }

    /// Problems of these settings together with the app's `[apps.groups]`, as (key below the
    /// app, message).
    pub fn issues_with_groups(
        &self,
        groups: Option<&crate::groups::GroupMapping>,
    ) -> Vec<(String, String)> {
        let Some(groups) = groups.filter(|g| g.deliver_as == crate::groups::DeliverAs::Groups)
        else {
            return Vec::new();
        };
        if groups.member_removal != crate::groups::MemberRemoval::default() {
            return vec![(
                "groups.member_removal".into(),
                "is a SCIM dialect and does nothing for connector \"rest\": members are removed \
                 as [apps.rest.groups] remove_members says; leave member_removal out"
                    .into(),
            )];
        }
        match &self.groups {
            None => vec![(
                "groups".into(),
                "connector \"rest\" changes group memberships only as [apps.rest.groups] describes \
                 (find, add_members and remove_members templates; see docs/connectors.md), and this \
                 app has none: add it, or send the groups as a user attribute with \
                 deliver_as = \"attribute\""
                    .into(),
            )],
            Some(rest_groups) if groups.create_missing && rest_groups.create.is_none() => vec![(
                "groups.create_missing".into(),
                "is true (the default), but [apps.rest.groups] has no create template: add one, \
                 e.g. create = { method = \"POST\", path = \"/groups\" }, or set \
                 create_missing = false"
                    .into(),
            )],
            Some(_) => Vec::new(),
        }
    }
}

/// Problems of one path template as (key, message): `needs` must be there, and only
/// `allowed` may be.
fn template_issues(
    key: &str,
    path: &str,
    allowed: &[&str],
    needs: &[&str],
) -> Vec<(String, String)> {
    let key = format!("{key}.path");
    let mut issues = Vec::new();
    if !path.starts_with('/') {
        issues.push((
            key.clone(),
            format!("{path:?} must start with '/' (it is appended to base_url)"),
        ));
    }
    match placeholders_among(path, allowed) {
        Err(message) => issues.push((key, message)),
        Ok(found) => {
            for name in needs {
                if !found.iter().any(|f| f == name) {
                    issues.push((key.clone(), format!("{path:?} must contain {{{name}}}")));
                }
            }
        }
    }
    issues
}

impl RestGroups {
    /// Problems as (key below `rest.`, message).
    fn validate(&self) -> Vec<(String, String)> {
        let mut issues = template_issues("groups.find", &self.find.path, &["name"], &["name"]);
        if let Some(create) = &self.create {
            issues.extend(template_issues("groups.create", &create.path, &[], &[]));
            if create.method == HttpMethod::Get {
                issues.push((
                    "groups.create.method".into(),
                    "GET does not create anything: use the method the API creates groups with, usually POST".into(),
                ));
            }
            issues.extend(pointer_issue(
                "groups.create.id_pointer",
                create.id_pointer.as_deref().unwrap_or_default(),
            ));
        }
        for (key, membership) in [
            ("groups.add_members", &self.add_members),
            ("groups.remove_members", &self.remove_members),
        ] {
            issues.extend(template_issues(
                key,
                &membership.path,
                &MEMBERSHIP_PLACEHOLDERS,
                &["group_id"],
            ));
            issues.extend(membership.issues(key));
        }
        for (key, pointer) in [
            ("groups.id_pointer", self.id_pointer.as_str()),
            ("groups.name_pointer", self.name_pointer.as_str()),
        ] {
            if pointer.is_empty() {
                issues.push((
                    key.into(),
                    "name the field in a group object, e.g. \"/id\" or \"/name\"".into(),
                ));
            }
            issues.extend(pointer_issue(key, pointer));
        }
        issues.extend(pointer_issue(
            "groups.find.results_pointer",
            &self.find.results_pointer,
        ));
        issues
    }
}

impl RestMembership {
    /// Problems of how the members are sent, as (key, message).
    fn issues(&self, key: &str) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let in_path = placeholders_among(&self.path, &MEMBERSHIP_PLACEHOLDERS)
            .is_ok_and(|found| found.iter().any(|f| f == "member_id"));
        if self.members_pointer.is_some() && (in_path || self.member_pointer.is_some()) {
            issues.push((
                key.to_owned(),
                "send one member per request ({member_id} in the path, or member_pointer) or a \
                 list per request (members_pointer), not both"
                    .into(),
            ));
        }
        if self.members_pointer.is_none() && !in_path && self.member_pointer.is_none() {
            issues.push((
                key.to_owned(),
                "say where the member goes: {member_id} in the path, member_pointer (one id in \
                 the body) or members_pointer (a list in the body)"
                    .into(),
            ));
        }
        if self.item_pointer.is_some() && self.members_pointer.is_none() {
            issues.push((
                format!("{key}.item_pointer"),
                "only used with members_pointer".into(),
            ));
        }
        if self.method == HttpMethod::Get {
            issues.push((
                format!("{key}.method"),
                "GET changes nothing: use the method the API changes members with".into(),
            ));
        }
        if self.method == HttpMethod::Put && self.members_pointer.is_some() {
            // A PUT of a list usually sets the whole member list: members userprov does not
            // manage would be removed, and an empty list would empty the group.
            issues.push((
                format!("{key}.method"),
                "a PUT with a member list usually replaces the group's whole member list, \
                 removing members userprov does not manage: use the API's call that adds (or \
                 removes) only the members listed"
                    .into(),
            ));
        }
        if self.member_pointer.as_deref() == Some("") {
            issues.push((
                format!("{key}.member_pointer"),
                "name the member id's field, e.g. \"/user_id\"".into(),
            ));
        }
        for (name, pointer) in [
            ("member_pointer", &self.member_pointer),
            ("members_pointer", &self.members_pointer),
            ("item_pointer", &self.item_pointer),
        ] {
            if let Some(pointer) = pointer {
                issues.extend(pointer_issue(&format!("{key}.{name}"), pointer));
            }
        }
        issues
    }
}
