//! Permission Set Groups to target access: a multi-valued source field (a delimited string of
//! Permission Set Group names) mapped through a table to target group names, or to a
//! multi-valued attribute of the user such as `roles`.
//!
//! Only the groups named in the table are managed. userprov remembers what it pushed
//! (`AccountLink::last_groups`) and sends only additions and removals, so memberships that an
//! admin gave by hand in the target, in groups outside the table, are never touched.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::source::SourceUser;

/// How the mapped names reach the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliverAs {
    /// Membership of SCIM Groups, changed with PATCH add/remove on `/Groups/{id}`.
    #[default]
    Groups,
    /// A multi-valued attribute of the User (`[{"value": name}]`), sent with the user.
    Attribute,
}

/// How a member is removed from a group: SCIM targets disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRemoval {
    /// RFC 7644: `{"op": "remove", "path": "members[value eq \"id\"]"}`.
    #[default]
    FilterPath,
    /// The older dialect some targets need: `{"op": "remove", "path": "members", "value": [{"value": "id"}]}`.
    ValueList,
}

/// One Permission Set Group gives one target group, or several.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GroupNames {
    One(String),
    Many(Vec<String>),
}

/// `[apps.groups]` as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGroups {
    /// The source field listing the user's Permission Set Groups, e.g. `PermissionSetGroups__c`.
    pub from: String,
    /// What separates the names in that field.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Permission Set Group (API name) → target group name(s).
    #[serde(default)]
    pub map: BTreeMap<String, GroupNames>,
    #[serde(default)]
    pub deliver_as: DeliverAs,
    /// With `deliver_as = "attribute"`: the multi-valued User attribute to fill.
    #[serde(default)]
    pub attribute: Option<String>,
    /// Create a group the table names when the target does not have it yet.
    #[serde(default = "default_true")]
    pub create_missing: bool,
    /// Most members added or removed in one PATCH (AWS IAM Identity Center allows 100).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    #[serde(default)]
    pub member_removal: MemberRemoval,
}

fn default_separator() -> String {
    ";".into()
}
fn default_true() -> bool {
    true
}
fn default_chunk_size() -> usize {
    100
}

/// A compiled `[apps.groups]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMapping {
    pub field: String,
    separator: String,
    map: BTreeMap<String, Vec<String>>,
    /// Every target name the table can produce: the only groups userprov ever changes.
    managed: BTreeSet<String>,
    pub deliver_as: DeliverAs,
    /// The User attribute filled with `deliver_as = "attribute"`.
    pub attribute: String,
    pub create_missing: bool,
    pub chunk_size: usize,
    pub member_removal: MemberRemoval,
}

/// The membership changes for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl GroupChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// "added sales, support; removed engineering", for the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added to {}", self.added.join(", ")));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed from {}", self.removed.join(", ")));
        }
        format!("groups: {}", parts.join("; "))
    }
}

impl GroupMapping {
    /// Compiles `[apps.groups]`; every problem is returned as (key, message).
    pub fn compile(raw: &RawGroups) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if !crate::mapping::is_field_name(&raw.from) {
            errors.push((
                "from".into(),
                format!("{:?} is not a Salesforce field API name", raw.from),
            ));
        }
        if raw.separator.is_empty() {
            errors.push(("separator".into(), "must not be empty".into()));
        }
        if raw.map.is_empty() {
            errors.push((
                "map".into(),
                "map at least one Permission Set Group to a target group".into(),
            ));
        }
        let mut map = BTreeMap::new();
        let mut managed = BTreeSet::new();
        for (group, names) in &raw.map {
            let names = match names {
                GroupNames::One(name) => vec![name.clone()],
                GroupNames::Many(names) => names.clone(),
            };
            if group.trim().is_empty() {
                errors.push(("map".into(), "a Permission Set Group name is empty".into()));
            }
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                errors.push((
                    format!("map.{group:?}"),
                    "give a non-empty target group name, or a list of them".into(),
                ));
            }
            let names: Vec<String> = names.iter().map(|n| n.trim().to_owned()).collect();
            managed.extend(names.iter().cloned());
            map.insert(group.trim().to_owned(), names);
        }
        let attribute = match (raw.deliver_as, &raw.attribute) {
            (DeliverAs::Attribute, Some(attribute)) => attribute.clone(),
            (DeliverAs::Attribute, None) => "roles".to_owned(),
            (DeliverAs::Groups, Some(_)) => {
                errors.push((
                    "attribute".into(),
                    "only used with deliver_as = \"attribute\"".into(),
                ));
                String::new()
            }
            (DeliverAs::Groups, None) => String::new(),
        };
        if raw.deliver_as == DeliverAs::Attribute && !crate::mapping::is_attr_name(&attribute) {
            errors.push((
                "attribute".into(),
                format!("{attribute:?} is not a SCIM attribute name"),
            ));
        }
        if raw.chunk_size == 0 || raw.chunk_size > 1000 {
            errors.push(("chunk_size".into(), "must be between 1 and 1000".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            field: raw.from.clone(),
            separator: raw.separator.clone(),
            map,
            managed,
            deliver_as: raw.deliver_as,
            attribute,
            create_missing: raw.create_missing,
            chunk_size: raw.chunk_size,
            member_removal: raw.member_removal,
        })
    }

    /// The Permission Set Groups the user has, as the source field lists them.
    pub fn source_groups(&self, user: &SourceUser) -> Vec<String> {
        match user.field(&self.field) {
            Some(Value::String(list)) => list
                .split(self.separator.as_str())
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The target groups the user should be in. Permission Set Groups the table does not name
    /// give nothing.
    pub fn desired(&self, user: &SourceUser) -> BTreeSet<String> {
        self.source_groups(user)
            .iter()
            .filter_map(|g| self.map.get(g))
            .flatten()
            .cloned()
            .collect()
    }

    /// True when userprov manages this target group (the table names it).
    pub fn manages(&self, group: &str) -> bool {
        self.managed.contains(group)
    }

    /// What to add and remove to go from what was last pushed to what is desired. A group that
    /// is no longer in the table is not managed any more: it is left as it is.
    pub fn change(&self, desired: &BTreeSet<String>, last_pushed: &[String]) -> GroupChange {
        let last: BTreeSet<&str> = last_pushed.iter().map(String::as_str).collect();
        GroupChange {
            added: desired
                .iter()
                .filter(|g| !last.contains(g.as_str()))
                .cloned()
                .collect(),
            removed: last
                .iter()
                .filter(|g| self.manages(g) && !desired.contains(**g))
                .map(|g| (*g).to_owned())
                .collect(),
        }
    }

    /// The attribute value for `deliver_as = "attribute"`: `[{"value": name}, ...]`, sorted.
    pub fn attribute_value(&self, user: &SourceUser) -> Value {
        Value::Array(
            self.desired(user)
                .into_iter()
                .map(|name| serde_json::json!({ "value": name }))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::ids::SalesforceId;
    use serde_json::json;

    fn groups(toml_text: &str) -> GroupMapping {
        let raw: RawGroups = toml::from_str(toml_text).unwrap();
        GroupMapping::compile(&raw).unwrap()
    }

    fn user_with(psgs: Value) -> SourceUser {
        let mut user = SourceUser::new(SalesforceId::parse("0058a00000LmN2pAAF").unwrap());
        user.fields.insert("PermissionSetGroups__c".into(), psgs);
        user
    }

    const SALES_AND_ENGINEERING: &str = r#"
from = "PermissionSetGroups__c"
[map]
Sales_Cloud = "sales"
Engineering = ["engineering", "github-users"]
"#;

    #[test]
    fn permission_set_groups_map_to_target_groups_and_unmapped_ones_give_nothing() {
        let mapping = groups(SALES_AND_ENGINEERING);
        let user = user_with(json!("Sales_Cloud; Engineering;Marketing_Ops"));
        assert_eq!(
            mapping.desired(&user).into_iter().collect::<Vec<_>>(),
            vec!["engineering", "github-users", "sales"]
        );
        assert!(mapping.desired(&user_with(Value::Null)).is_empty());
        assert_eq!(
            mapping.desired(&user_with(json!(["Sales_Cloud"]))),
            BTreeSet::from(["sales".to_owned()])
        );
    }

    #[test]
    fn only_additions_and_removals_of_managed_groups_are_sent() {
        let mapping = groups(SALES_AND_ENGINEERING);
        let desired = mapping.desired(&user_with(json!("Engineering")));
        // "sales" was pushed before and is gone; "legacy" was pushed by an older table and is no
        // longer managed, so it is left alone.
        let change = mapping.change(
            &desired,
            &["sales".into(), "engineering".into(), "legacy".into()],
        );
        assert_eq!(
            change,
            GroupChange {
                added: vec!["github-users".into()],
                removed: vec!["sales".into()],
            }
        );
        assert_eq!(
            change.describe(),
            "groups: added to github-users; removed from sales"
        );
        assert!(
            mapping
                .change(&desired, &["engineering".into(), "github-users".into()])
                .is_empty()
        );
    }

    #[test]
    fn the_attribute_form_lists_the_names_as_values() {
        let mapping = groups(
            r#"
from = "PermissionSetGroups__c"
separator = ","
deliver_as = "attribute"
[map]
Sales_Cloud = "Sales Rep"
Support = "Agent"
"#,
        );
        assert_eq!(mapping.attribute, "roles");
        assert_eq!(
            mapping.attribute_value(&user_with(json!("Support,Sales_Cloud"))),
            json!([{"value": "Agent"}, {"value": "Sales Rep"}])
        );
    }

    #[test]
    fn bad_groups_tables_report_every_problem() {
        let raw: RawGroups = toml::from_str(
            r#"
from = "Permission Set Groups"
separator = ""
attribute = "roles"
chunk_size = 0
[map]
Sales = ""
"#,
        )
        .unwrap();
        let keys: Vec<String> = GroupMapping::compile(&raw)
            .unwrap_err()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            keys,
            vec![
                "from",
                "separator",
                "map.\"Sales\"",
                "attribute",
                "chunk_size"
            ]
        );
    }
}
