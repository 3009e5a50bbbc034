//! Preview: the requests the worker would send for a user, computed without calling the target.

use serde::Serialize;
use serde_json::Value;

use crate::config::{AppConfig, DeactivateMode};
use std::collections::BTreeMap;

use crate::connector::scim::groups::{add_members_patches, remove_members_patches};
use crate::connector::scim::{active_patch, filter_query};
use crate::error::Classify;
use crate::groups::DeliverAs;
use crate::ids::SalesforceId;
use crate::link::AccountLink;
use crate::log::Operation;
use crate::plan::{Plan, plan};
use crate::source::SourceUser;
use crate::worker::{desired_resource, match_keys};

/// One request as it would be sent, relative to the app's `base_url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// When the request is sent only in some cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<&'static str>,
}

/// What the worker would do for one user in one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub app: String,
    pub user_id: String,
    pub username: Option<String>,
    pub operation: Operation,
    pub reason: Option<String>,
    pub requests: Vec<PlannedRequest>,
    /// Why the job would fail, e.g. a missing required attribute.
    pub error: Option<String>,
}

/// Previews a user against an app, as if the account link were `link` (usually `None`: a
/// first sync). `accounts` holds the known accounts of the users the mapping refers to (the
/// manager); the others are shown as `{account of <id>}`.
pub fn preview(
    app: &AppConfig,
    user: &SourceUser,
    link: Option<&AccountLink>,
    accounts: &BTreeMap<SalesforceId, String>,
) -> Preview {
    let mut result = Preview {
        app: app.name.clone(),
        user_id: user.id.to_string(),
        username: user.username().map(str::to_owned),
        operation: Operation::Skip,
        reason: None,
        requests: Vec::new(),
        error: None,
    };
    let plan = match plan(app, link, user, user.modified_at()) {
        Ok(plan) => plan,
        Err(error) => {
            result.error = Some(format!("{} ({}): {error}", error.code(), error.class()));
            return result;
        }
    };
    result.operation = plan.operation();
    let target = link
        .and_then(AccountLink::account)
        .unwrap_or("{id}")
        .to_owned();
    let mut accounts = accounts.clone();
    for id in app.mapping.referenced_users(user) {
        accounts
            .entry(id.clone())
            .or_insert_with(|| format!("{{account of {id}}}"));
    }
    let resource = || desired_resource(app, user, &accounts);
    let mut push = |method, path: String, body, when| {
        result.requests.push(PlannedRequest {
            method,
            path,
            body,
            when,
        });
    };
    match plan {
        Plan::Skip(reason) | Plan::Noop(reason) => result.reason = Some(reason),
        Plan::CreateOrAdopt => match resource() {
            Ok(resource) => {
                let lookup = match_keys(app, &resource).first().and_then(|key| {
                    let path = app.mapping.target_path(&key.attribute)?;
                    Some(format!(
                        "/Users{}",
                        filter_query(&path.filter_for(&key.value))
                    ))
                });
                match lookup {
                    Some(find) => {
                        push("GET", find, None, None);
                        push(
                            "POST",
                            "/Users".into(),
                            Some(resource.clone()),
                            Some("no account matches: create it"),
                        );
                        push(
                            "PUT",
                            format!("/Users/{target}"),
                            Some(resource),
                            Some("an account matches: adopt it"),
                        );
                    }
                    None => push("POST", "/Users".into(), Some(resource), None),
                }
            }
            Err(error) => result.error = Some(format!("{}: {error}", error.code())),
        },
        Plan::Update | Plan::Reactivate => match resource() {
            Ok(resource) => push("PUT", format!("/Users/{target}"), Some(resource), None),
            Err(error) => result.error = Some(format!("{}: {error}", error.code())),
        },
        Plan::Deactivate(reason) => {
            result.reason = reason;
            match app.deactivate {
                DeactivateMode::PatchActive => {
                    push(
                        "PATCH",
                        format!("/Users/{target}"),
                        Some(active_patch(false)),
                        None,
                    );
                }
                DeactivateMode::Delete => push("DELETE", format!("/Users/{target}"), None, None),
            }
        }
    }
    if result.error.is_none()
        && matches!(
            result.operation,
            Operation::Create | Operation::Update | Operation::Reactivate | Operation::Noop
        )
        && user.is_active() != Some(false)
        && let Some(groups) = app
            .groups
            .as_ref()
            .filter(|g| g.deliver_as == DeliverAs::Groups)
    {
        let last = link.map(|l| l.last_groups.clone()).unwrap_or_default();
        let change = groups.change(&groups.desired(user), &last);
        let member = [target.clone()];
        for (names, add) in [(&change.added, true), (&change.removed, false)] {
            for name in names {
                let filter = format!("displayName eq {}", Value::String(name.clone()));
                push(
                    "GET",
                    format!("/Groups{}", filter_query(&filter)),
                    None,
                    None,
                );
                let body = if add {
                    add_members_patches(&member, groups.chunk_size)
                } else {
                    remove_members_patches(&member, groups.chunk_size, groups.member_removal)
                };
                push(
                    "PATCH",
                    format!("/Groups/{{id of {name}}}"),
                    body.into_iter().next(),
                    Some(if add {
                        "add to a group the Permission Set Groups give"
                    } else {
                        "remove from a group the Permission Set Groups no longer give"
                    }),
                );
            }
        }
    }
    result
}

/// The preview as text for a terminal or a golden file.
pub fn render(preview: &Preview) -> String {
    let mut out = format!(
        "{} {} ({}): {}",
        preview.app,
        preview.username.as_deref().unwrap_or("?"),
        preview.user_id,
        preview.operation.as_str()
    );
    if let Some(reason) = &preview.reason {
        out.push_str(&format!(" ({reason})"));
    }
    out.push('\n');
    if let Some(error) = &preview.error {
        out.push_str(&format!("  would fail: {error}\n"));
    }
    let mut previous_body: Option<&Value> = None;
    for request in &preview.requests {
        out.push_str(&format!("  {} {}", request.method, request.path));
        if let Some(when) = request.when {
            out.push_str(&format!("    # {when}"));
        }
        out.push('\n');
        if previous_body.is_some() && request.body.as_ref() == previous_body {
            out.push_str("    (the same body)\n");
        } else if let Some(body) = &request.body {
            let pretty = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
            for line in pretty.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        previous_body = request.body.as_ref().or(previous_body);
    }
    out
}
