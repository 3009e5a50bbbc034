//! SCIM Groups: find or create a group by display name, and change its membership with PATCH
//! add/remove, in chunks. Only the members named are ever touched; a full replace of the
//! member list is only sent when the target lists the group's current members.

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    Answer, GROUP_SCHEMA, PATCH_OP_SCHEMA, ScimConnector, filter_query, list_resources, reply,
    version_of,
};
use crate::connector::{ConnectorError, GroupOptions, Reply};
use crate::groups::MemberRemoval;

/// Most pages read while looking for a group in a target that ignores filters.
const MAX_GROUP_PAGES: usize = 50;

/// A SCIM filter string literal.
fn quoted(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

fn display_name(resource: &Value) -> Option<&str> {
    resource.as_object().and_then(|fields| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("displayName"))
            .and_then(|(_, v)| v.as_str())
    })
}

fn resource_id(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

/// The PATCH bodies that add members, one per chunk.
pub fn add_members_patches(member_ids: &[String], chunk_size: usize) -> Vec<Value> {
    member_ids
        .chunks(chunk_size.max(1))
        .map(|chunk| {
            let members: Vec<Value> = chunk.iter().map(|id| json!({ "value": id })).collect();
            json!({
                "schemas": [PATCH_OP_SCHEMA],
                "Operations": [{"op": "add", "path": "members", "value": members}]
            })
        })
        .collect()
}

/// The PATCH bodies that remove members, one per chunk, in the target's dialect.
pub fn remove_members_patches(
    member_ids: &[String],
    chunk_size: usize,
    dialect: MemberRemoval,
) -> Vec<Value> {
    member_ids
        .chunks(chunk_size.max(1))
        .map(|chunk| {
            let operations: Vec<Value> = match dialect {
                MemberRemoval::FilterPath => chunk
                    .iter()
                    .map(|id| {
                        json!({"op": "remove", "path": format!("members[value eq {}]", quoted(id))})
                    })
                    .collect(),
                MemberRemoval::ValueList => {
                    let members: Vec<Value> =
                        chunk.iter().map(|id| json!({ "value": id })).collect();
                    vec![json!({"op": "remove", "path": "members", "value": members})]
                }
            };
            json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
        })
        .collect()
}

impl ScimConnector {
    fn groups_url(&self) -> String {
        format!("{}/Groups", self.base_url)
    }

    fn group_url(&self, id: &str) -> String {
        format!("{}/Groups/{}", self.base_url, urlencoding::encode(id))
    }

    /// Finds the group by display name, verifying the hits: a target that ignores the filter,
    /// or refuses filters (501), is read page by page instead.
    pub(super) async fn find_group(
        &self,
        name: &str,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        let filter = format!("displayName eq {}", quoted(name));
        let mut filtered = self.capabilities().await?.filter
            && !self
                .filter_refused
                .load(std::sync::atomic::Ordering::Relaxed);
        let mut url = if filtered {
            format!("{}{}", self.groups_url(), filter_query(&filter))
        } else {
            format!("{}?startIndex=1&count=100", self.groups_url())
        };
        let mut found: Vec<String> = Vec::new();
        let mut seen = 0usize;
        for _ in 0..MAX_GROUP_PAGES {
            let answer = self.send(Method::GET, &url, None).await?;
            if answer.status == 404 {
                return Ok(reply(None, &answer));
            }
            if filtered && answer.status == 501 {
                // No filtering here: read every group, page by page.
                filtered = false;
                url = format!("{}?startIndex=1&count=100", self.groups_url());
                continue;
            }
            if !answer.is_success() {
                return Err(answer.failure());
            }
            let list = answer.json()?;
            let total = list
                .get("totalResults")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let resources = list_resources(list)?;
            let page_len = resources.len();
            let filter_ignored = resources
                .iter()
                .any(|r| !display_name(r).is_some_and(|d| d.eq_ignore_ascii_case(name)));
            for resource in &resources {
                if display_name(resource).is_some_and(|d| d.eq_ignore_ascii_case(name))
                    && let Some(id) = resource_id(resource)
                    && !found.iter().any(|f| f == id)
                {
                    found.push(id.to_owned());
                }
            }
            seen += page_len;
            let more = (filter_ignored || !filtered) && page_len > 0 && (seen as u64) < total;
            if !more {
                return match found.len() {
                    0 | 1 => Ok(reply(found.pop(), &answer)),
                    n => Err(ConnectorError::Rejected {
                        status: answer.status,
                        scim_type: Some("ambiguous".into()),
                        detail: format!(
                            "{n} groups are named {name:?} (ids {}); userprov will not pick one: rename or remove the extra ones in the target",
                            found.join(", ")
                        ),
                        body: String::new(),
                    }),
                };
            }
            url = format!("{}?startIndex={}&count=100", self.groups_url(), seen + 1);
        }
        Err(ConnectorError::BadResponse(format!(
            "looked for group {name:?} through {MAX_GROUP_PAGES} pages of a target that ignores filters; giving up"
        )))
    }

    pub(super) async fn create_group(&self, name: &str) -> Result<Reply<String>, ConnectorError> {
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        let answer = self
            .send(Method::POST, &self.groups_url(), Some(&body))
            .await?;
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let created = answer.json()?;
        match resource_id(&created) {
            Some(id) => Ok(reply(id.to_owned(), &answer)),
            None => Err(ConnectorError::BadResponse(
                "the created group has no \"id\"".into(),
            )),
        }
    }

    pub(super) async fn find_or_create_group(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        let found = self.find_group(name).await?;
        if found.value.is_some() || !create {
            return Ok(found);
        }
        match self.create_group(name).await {
            Ok(created) => Ok(Reply {
                value: Some(created.value),
                http_status: created.http_status,
            }),
            // Created meanwhile by someone else: use theirs.
            Err(ConnectorError::Conflict { .. }) => self.find_group(name).await,
            Err(error) => Err(error),
        }
    }

    /// Sends membership PATCHes; a target without PATCH gets a PUT of the group with the member
    /// list changed, but only when it shows the current list.
    pub(super) async fn change_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        add: bool,
        options: &GroupOptions,
    ) -> Result<Reply<()>, ConnectorError> {
        let patches = if add {
            add_members_patches(member_ids, options.chunk_size)
        } else {
            remove_members_patches(member_ids, options.chunk_size, options.member_removal)
        };
        if !self.uses_patch().await? {
            return self.change_members_by_put(group_id, member_ids, add).await;
        }
        let mut last: Option<Answer> = None;
        for patch in &patches {
            let answer = self
                .send(Method::PATCH, &self.group_url(group_id), Some(patch))
                .await?;
            match answer.status {
                404 => {
                    return Err(ConnectorError::NotFound {
                        id: format!("group {group_id}"),
                    });
                }
                405 | 501 => {
                    self.patch_was_refused(answer.status);
                    return self.change_members_by_put(group_id, member_ids, add).await;
                }
                _ if answer.is_success() => last = Some(answer),
                _ => return Err(answer.failure()),
            }
        }
        Ok(Reply {
            value: (),
            http_status: last.map(|a| a.status),
        })
    }

    /// Without PATCH: reads the group and PUTs it back with the member list changed. With
    /// ETags the PUT carries `If-Match`, and a 412 reads the group again once.
    async fn change_members_by_put(
        &self,
        group_id: &str,
        member_ids: &[String],
        add: bool,
    ) -> Result<Reply<()>, ConnectorError> {
        let etag = self.capabilities().await?.etag;
        for _ in 0..2 {
            let answer = self
                .send(Method::GET, &self.group_url(group_id), None)
                .await?;
            if answer.status == 404 {
                return Err(ConnectorError::NotFound {
                    id: format!("group {group_id}"),
                });
            }
            if !answer.is_success() {
                return Err(answer.failure());
            }
            let group = answer.json()?;
            let version = answer
                .etag
                .clone()
                .or_else(|| version_of(&group))
                .filter(|_| etag);
            let Value::Object(mut group) = group else {
                return Err(ConnectorError::BadResponse(
                    "the group is not a JSON object".into(),
                ));
            };
            let members = match group.get("members") {
                Some(Value::Array(members)) => members.clone(),
                // An empty group may be shown without `members`; removing from it is done.
                None if !add => return Ok(reply((), &answer)),
                _ => {
                    return Err(ConnectorError::Unsupported(
                        "membership changes on a group whose members it does not list, without PATCH (userprov will not replace a member list it cannot see)".into(),
                    ));
                }
            };
            let is_member =
                |m: &Value, id: &str| m.get("value").and_then(Value::as_str) == Some(id);
            let mut next: Vec<Value> = if add {
                members.clone()
            } else {
                members
                    .iter()
                    .filter(|m| !member_ids.iter().any(|id| is_member(m, id)))
                    .cloned()
                    .collect()
            };
            if add {
                for id in member_ids {
                    if !next.iter().any(|m| is_member(m, id)) {
                        next.push(json!({ "value": id }));
                    }
                }
            }
            if next == members {
                return Ok(reply((), &answer));
            }
            group.insert("members".into(), Value::Array(next));
            group.remove("meta");
            let answer = self
                .send_if_match(
                    Method::PUT,
                    &self.group_url(group_id),
                    Some(&Value::Object(group)),
                    version.as_deref(),
                )
                .await?;
            match answer.status {
                412 if version.is_some() => continue,
                _ if answer.is_success() => return Ok(reply((), &answer)),
                _ => return Err(answer.failure()),
            }
        }
        Err(ConnectorError::VersionConflict {
            id: format!("group {group_id}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn membership_changes_are_chunked() {
        let ids: Vec<String> = (0..250).map(|i| format!("u{i}")).collect();
        let patches = add_members_patches(&ids, 100);
        let sizes: Vec<usize> = patches
            .iter()
            .map(|p| p["Operations"][0]["value"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn removal_speaks_either_dialect() {
        let ids = vec!["a\"b".to_owned(), "c".to_owned()];
        let rfc = remove_members_patches(&ids, 100, MemberRemoval::FilterPath);
        assert_eq!(
            rfc[0]["Operations"],
            json!([
                {"op": "remove", "path": "members[value eq \"a\\\"b\"]"},
                {"op": "remove", "path": "members[value eq \"c\"]"}
            ])
        );
        let legacy = remove_members_patches(&ids, 1, MemberRemoval::ValueList);
        assert_eq!(legacy.len(), 2);
        assert_eq!(
            legacy[1]["Operations"],
            json!([{"op": "remove", "path": "members", "value": [{"value": "c"}]}])
        );
    }
}
