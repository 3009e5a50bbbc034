//! Scope: which users an app provisions. A pilot list (usernames or ids) and a filter
//! expression over Salesforce fields; a user must pass both that are set.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::expr::{EvalError, Expr, Tables};
use crate::ids::SalesforceId;
use crate::source::SourceUser;

/// What happens to the account of a user who is (or falls) out of scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutOfScope {
    /// Leave the account as it is; log the user as skipped.
    #[default]
    Ignore,
    /// Deactivate the account userprov manages.
    Deactivate,
}

/// `[apps.scope]` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub out_of_scope: OutOfScope,
}

/// A compiled scope. The default lets everyone in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    usernames: BTreeSet<String>,
    ids: BTreeSet<SalesforceId>,
    filter: Option<Expr>,
    pub out_of_scope: OutOfScope,
}

/// The verdict for one user, with the rule that decided it, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeVerdict {
    pub in_scope: bool,
    pub rule: String,
}

impl Scope {
    /// Compiles `[apps.scope]`; every problem is returned as (key, message).
    pub fn compile(raw: &RawScope, tables: &Tables) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, raw_id) in raw.ids.iter().enumerate() {
            match SalesforceId::parse(raw_id) {
                Ok(id) if id.key_prefix() == "005" => {
                    ids.insert(id);
                }
                Ok(_) => errors.push((
                    format!("ids[{i}]"),
                    format!("{raw_id:?} is not a user id (they start with 005)"),
                )),
                Err(e) => errors.push((format!("ids[{i}]"), format!("{raw_id:?}: {e}"))),
            }
        }
        let filter = match raw.filter.as_deref().map(|text| Expr::parse(text, tables)) {
            Some(Ok(expr)) => Some(expr),
            Some(Err(e)) => {
                errors.push((
                    "filter".into(),
                    format!(
                        "in the filter {:?}, {e}",
                        raw.filter.as_deref().unwrap_or_default()
                    ),
                ));
                None
            }
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            usernames: raw
                .usernames
                .iter()
                .map(|u| u.trim().to_lowercase())
                .collect(),
            ids,
            filter,
            out_of_scope: raw.out_of_scope,
        })
    }

    /// True when nothing restricts the scope.
    pub fn is_everyone(&self) -> bool {
        self.usernames.is_empty() && self.ids.is_empty() && self.filter.is_none()
    }

    /// The Salesforce fields the filter reads.
    pub fn fields(&self) -> Vec<String> {
        self.filter.as_ref().map(Expr::fields).unwrap_or_default()
    }

    /// Decides whether a user is in scope, and says by which rule.
    pub fn check(&self, user: &SourceUser) -> Result<ScopeVerdict, EvalError> {
        if !self.usernames.is_empty() || !self.ids.is_empty() {
            let by_name = user
                .username()
                .is_some_and(|name| self.usernames.contains(&name.trim().to_lowercase()));
            let by_id = self.ids.contains(&user.id);
            if !by_name && !by_id {
                return Ok(ScopeVerdict {
                    in_scope: false,
                    rule: "not in the pilot list (scope.usernames, scope.ids)".into(),
                });
            }
        }
        if let Some(filter) = &self.filter
            && !filter.eval_bool(user)?
        {
            return Ok(ScopeVerdict {
                in_scope: false,
                rule: format!("scope.filter {:?} is false", filter.source()),
            });
        }
        let rule = match (
            self.usernames.is_empty() && self.ids.is_empty(),
            &self.filter,
        ) {
            (true, None) => "no scope rules",
            (false, None) => "in the pilot list",
            (true, Some(_)) => "scope.filter is true",
            (false, Some(_)) => "in the pilot list and scope.filter is true",
        };
        Ok(ScopeVerdict {
            in_scope: true,
            rule: rule.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(text: &str) -> Scope {
        let raw: RawScope = toml::from_str(text).unwrap();
        Scope::compile(&raw, &Tables::new()).unwrap()
    }

    fn user(id: &str, username: &str, department: &str) -> SourceUser {
        let mut u = SourceUser::new(SalesforceId::parse(id).unwrap());
        u.fields.insert("Username".into(), json!(username));
        u.fields.insert("Department".into(), json!(department));
        u
    }

    const MARTA: &str = "0058a00000LmN2pAAF";
    const JAMES: &str = "0058a00000LmN3qAAF";

    #[test]
    fn without_rules_everyone_is_in_scope() {
        let verdict = Scope::default().check(&user(MARTA, "m@x", "Eng")).unwrap();
        assert_eq!(
            verdict,
            ScopeVerdict {
                in_scope: true,
                rule: "no scope rules".into()
            }
        );
    }

    #[test]
    fn a_pilot_list_admits_listed_usernames_and_ids_only() {
        let s = scope(
            r#"usernames = ["Marta@Acme.example"]
ids = ["0058a00000LmN3q"]"#,
        );
        assert!(
            s.check(&user(MARTA, "marta@acme.example", "Eng"))
                .unwrap()
                .in_scope
        );
        assert!(
            s.check(&user(JAMES, "james@acme.example", "Fin"))
                .unwrap()
                .in_scope,
            "by 15-character id"
        );
        let out = s
            .check(&user("0058a00000LmN4rAAF", "priya@acme.example", "Eng"))
            .unwrap();
        assert!(!out.in_scope);
        assert!(out.rule.contains("pilot list"));
    }

    #[test]
    fn the_filter_must_hold_and_the_verdict_names_it() {
        let s = scope(
            r#"filter = 'Department != "Contractors"'
out_of_scope = "deactivate""#,
        );
        assert!(s.check(&user(MARTA, "m", "Eng")).unwrap().in_scope);
        let out = s.check(&user(MARTA, "m", "Contractors")).unwrap();
        assert_eq!(
            out.rule,
            r#"scope.filter "Department != \"Contractors\"" is false"#
        );
        assert_eq!(s.out_of_scope, OutOfScope::Deactivate);
    }

    #[test]
    fn bad_ids_and_filters_are_reported_together() {
        let raw: RawScope = toml::from_str(
            r#"ids = ["00D8a000002bQxTEAU", "x"]
filter = 'Department =='"#,
        )
        .unwrap();
        let errors = Scope::compile(&raw, &Tables::new()).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["ids[0]", "ids[1]", "filter"]);
    }
}
