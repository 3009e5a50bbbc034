//! Groups through `[apps.rest.groups]`: a group found by name (every hit checked against the
//! name, two hits an error), created when asked, and members added or removed one request per
//! member or a list per request. Only the members named are ever sent, so members userprov
//! does not manage stay, and no request is sent for an empty list.

use serde_json::{Map, Value};

use super::settings::{MemberBatch, RestGroups, RestMembership};
use super::{RestConnector, fill, reply, scalar_text, write_pointer};
use crate::connector::exchange::Answer;
use crate::connector::{ConnectorError, Reply};

/// The ids of the hits named `name`: the exact ones, or else those equal ignoring case.
fn named<'a>(hits: &'a [Value], groups: &RestGroups, name: &str) -> Vec<&'a Value> {
    fn name_of<'v>(hit: &'v Value, pointer: &str) -> Option<&'v str> {
        hit.pointer(pointer).and_then(Value::as_str)
    }
    let pointer = groups.name_pointer.as_str();
    let exact: Vec<&Value> = hits
        .iter()
        .filter(|h| name_of(h, pointer) == Some(name))
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    hits.iter()
        .filter(|h| name_of(h, pointer).is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .collect()
}

/// The body that carries `members`, as the template says.
pub(super) fn members_body(membership: &RestMembership, members: &[String]) -> Option<Value> {
    match membership.batch()? {
        MemberBatch::EachMember => {
            let pointer = membership.member_pointer.as_deref()?;
            let member = members.first()?;
            let mut body = Value::Object(Map::new());
            write_pointer(&mut body, pointer, Value::String(member.clone()));
            Some(body)
        }
        MemberBatch::List => {
            let pointer = membership.members_pointer.as_deref()?;
            let items = members
                .iter()
                .map(|id| match membership.item_pointer.as_deref() {
                    Some(item) if !item.is_empty() => {
                        let mut object = Value::Object(Map::new());
                        write_pointer(&mut object, item, Value::String(id.clone()));
                        object
                    }
                    _ => Value::String(id.clone()),
                })
                .collect();
            let mut body = Value::Object(Map::new());
            write_pointer(&mut body, pointer, Value::Array(items));
            Some(body)
        }
    }
}

impl RestConnector {
    fn group_settings(&self) -> Result<&RestGroups, ConnectorError> {
        self.settings.groups.as_ref().ok_or_else(|| {
            ConnectorError::Unsupported("groups (no [apps.rest.groups] is configured)".into())
        })
    }

    /// The id of the one group named `name`, or `None`.
    pub(super) async fn find_group(
        &self,
        name: &str,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        let groups = self.group_settings()?;
        let path = fill(&groups.find.path, &[("name", name)]);
        let answer = self
            .send(groups.find.method.as_reqwest(), &path, None)
            .await?;
        if answer.status == 404 {
            return Ok(reply(None, &answer));
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let mut body = answer.json()?;
        let hits = match body
            .pointer_mut(&groups.find.results_pointer)
            .map(Value::take)
        {
            Some(Value::Array(hits)) => hits,
            Some(Value::Null) => Vec::new(),
            Some(hit @ Value::Object(_)) => vec![hit],
            _ => {
                return Err(ConnectorError::BadResponse(format!(
                    "the group find answer has no list of groups at {:?}",
                    groups.find.results_pointer
                )));
            }
        };
        let mut ids: Vec<String> = Vec::new();
        for hit in named(&hits, groups, name) {
            let Some(id) = hit.pointer(&groups.id_pointer).and_then(scalar_text) else {
                return Err(ConnectorError::BadResponse(format!(
                    "the group {name:?} in the answer has no id at {:?}",
                    groups.id_pointer
                )));
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        match ids.len() {
            0 | 1 => Ok(reply(ids.pop(), &answer)),
            n => Err(ConnectorError::Rejected {
                status: answer.status,
                scim_type: Some("ambiguous".into()),
                detail: format!(
                    "{n} groups are named {name:?} (ids {}); userprov will not pick one: rename or remove the extra ones in the target",
                    ids.join(", ")
                ),
                body: String::new(),
            }),
        }
    }

    /// Finds the group, creating it when asked and missing.
    pub(super) async fn find_or_create_group(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Reply<Option<String>>, ConnectorError> {
        let found = self.find_group(name).await?;
        if found.value.is_some() || !create {
            return Ok(found);
        }
        let groups = self.group_settings()?;
        let Some(template) = &groups.create else {
            return Err(ConnectorError::Unsupported(format!(
                "creating group {name:?} ([apps.rest.groups] has no create template)"
            )));
        };
        let mut body = Value::Object(Map::new());
        write_pointer(&mut body, &groups.name_pointer, Value::String(name.into()));
        if let Some(key) = &template.wrap {
            let mut wrapped = Map::new();
            wrapped.insert(key.clone(), body);
            body = Value::Object(wrapped);
        }
        let answer = self
            .send(template.method.as_reqwest(), &template.path, Some(&body))
            .await?;
        if answer.status == 409 {
            // Created meanwhile by someone else: use theirs.
            let again = self.find_group(name).await?;
            if again.value.is_some() {
                return Ok(again);
            }
            // The app has the group, but find does not show it under its name.
            return Err(ConnectorError::Config(format!(
                "creating group {name:?} answered HTTP 409 (it exists), yet [apps.rest.groups] find ({}) \
                 gives no group named {name:?} at name_pointer {:?}: check find.path, \
                 find.results_pointer and name_pointer",
                groups.find.path, groups.name_pointer
            )));
        }
        if !answer.is_success() {
            return Err(answer.failure());
        }
        let pointer = template.id_pointer.as_deref().unwrap_or(&groups.id_pointer);
        match answer.json()?.pointer(pointer).and_then(scalar_text) {
            Some(id) => Ok(reply(Some(id), &answer)),
            None => Err(ConnectorError::BadResponse(format!(
                "the created group {name:?} has no id at {pointer:?} in the answer"
            ))),
        }
    }

    /// Adds or removes `member_ids`, one request per member or per chunk as the template says.
    /// A 409 on adding one member means it is a member already; a 404 on removing one member
    /// means it is not a member (any more).
    pub(super) async fn change_members(
        &self,
        group_id: &str,
        member_ids: &[String],
        add: bool,
        chunk_size: usize,
    ) -> Result<Reply<()>, ConnectorError> {
        let groups = self.group_settings()?;
        let membership = if add {
            &groups.add_members
        } else {
            &groups.remove_members
        };
        let Some(batch) = membership.batch() else {
            return Err(ConnectorError::Config(format!(
                "[apps.rest.groups.{}] does not say where the member goes",
                if add { "add_members" } else { "remove_members" }
            )));
        };
        let chunks: Vec<&[String]> = match batch {
            MemberBatch::EachMember => member_ids.chunks(1).collect(),
            MemberBatch::List => member_ids.chunks(chunk_size.max(1)).collect(),
        };
        let mut last: Option<Answer> = None;
        for chunk in chunks {
            let Some(first) = chunk.first() else { continue };
            let path = fill(
                &membership.path,
                &[("group_id", group_id), ("member_id", first)],
            );
            let body = members_body(membership, chunk);
            let answer = self
                .send(membership.method.as_reqwest(), &path, body.as_ref())
                .await?;
            let one = chunk.len() == 1;
            match answer.status {
                _ if answer.is_success() => {}
                409 if add && one => {}
                404 | 410 if !add && one => {}
                404 | 410 => {
                    return Err(ConnectorError::NotFound {
                        id: format!("group {group_id}"),
                    });
                }
                _ => return Err(answer.failure()),
            }
            last = Some(answer);
        }
        Ok(Reply {
            value: (),
            http_status: last.map(|a| a.status),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn membership(toml_text: &str) -> RestMembership {
        toml::from_str(toml_text).unwrap()
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_member_per_request_writes_the_id_at_the_member_pointer() {
        let add = membership(
            r#"
            method = "POST"
            path = "/groups/{group_id}/members"
            member_pointer = "/data/user_id"
            "#,
        );
        assert_eq!(add.batch(), Some(MemberBatch::EachMember));
        assert_eq!(
            members_body(&add, &ids(&["42"])),
            Some(json!({"data": {"user_id": "42"}}))
        );
        let remove = membership(
            r#"
            method = "DELETE"
            path = "/groups/{group_id}/members/{member_id}"
            "#,
        );
        assert_eq!(remove.batch(), Some(MemberBatch::EachMember));
        assert_eq!(members_body(&remove, &ids(&["42"])), None, "no body");
    }

    #[test]
    fn a_list_body_holds_bare_ids_or_objects() {
        let bare = membership(
            r#"
            method = "POST"
            path = "/groups/{group_id}/members"
            members_pointer = "/user_ids"
            "#,
        );
        assert_eq!(bare.batch(), Some(MemberBatch::List));
        assert_eq!(
            members_body(&bare, &ids(&["1", "2"])),
            Some(json!({"user_ids": ["1", "2"]}))
        );
        let objects = membership(
            r#"
            method = "DELETE"
            path = "/groups/{group_id}/members"
            members_pointer = "/members"
            item_pointer = "/id"
            "#,
        );
        assert_eq!(
            members_body(&objects, &ids(&["1", "2"])),
            Some(json!({"members": [{"id": "1"}, {"id": "2"}]}))
        );
        let whole = membership(
            r#"
            method = "POST"
            path = "/groups/{group_id}/members"
            members_pointer = ""
            "#,
        );
        assert_eq!(
            members_body(&whole, &ids(&["7"])),
            Some(json!(["7"])),
            "an empty pointer makes the list the body"
        );
    }

    #[test]
    fn a_group_is_found_by_its_exact_name_before_one_equal_ignoring_case() {
        let groups: RestGroups = toml::from_str(
            r#"
            name_pointer = "/profile/name"
            find = { path = "/groups?q={name}" }
            add_members = { method = "PUT", path = "/groups/{group_id}/users/{member_id}" }
            remove_members = { method = "DELETE", path = "/groups/{group_id}/users/{member_id}" }
            "#,
        )
        .unwrap();
        let hits = vec![
            json!({"id": 1, "profile": {"name": "Sales"}}),
            json!({"id": 2, "profile": {"name": "sales"}}),
            json!({"id": 3, "profile": {"name": "sales-emea"}}),
            json!({"id": 4}),
        ];
        let ids_of = |found: Vec<&Value>| -> Vec<i64> {
            found.iter().map(|h| h["id"].as_i64().unwrap()).collect()
        };
        assert_eq!(ids_of(named(&hits, &groups, "sales")), vec![2]);
        assert_eq!(ids_of(named(&hits, &groups, "SALES")), vec![1, 2]);
        assert!(
            named(&hits, &groups, "support").is_empty(),
            "a target that ignores the search must not give another group"
        );
    }
}
