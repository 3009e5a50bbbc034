//! Attribute mapping: from a Salesforce user snapshot to a SCIM User resource.
//!
//! A rule is written per target attribute. The target is a SCIM attribute path: `userName`,
//! `name.givenName`, `emails[type eq "work"].value`, or an extension attribute by its full URN,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::expr::{EvalError, Expr, Tables};
use crate::ids::SalesforceId;
use crate::source::SourceUser;

pub const CORE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A rule as written in the file: an expression (a bare field name is the simplest), or a
/// table.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MappingRule {
    Field(String),
    Detailed(DetailedRule),
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetailedRule {
    /// The Salesforce field to read.
    #[serde(default)]
    pub from: Option<String>,
    /// An expression, e.g. `concat(FirstName, " ", LastName)`.
    #[serde(default)]
    pub expr: Option<String>,
    /// A constant value instead of a field.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub value: Option<toml::Value>,
    /// The id, in this app, of the account of the user whose Salesforce id is in this field
    /// (e.g. `ManagerId`), when userprov manages that account; null otherwise.
    #[serde(default)]
    pub account_of: Option<String>,
    /// Fail the job (naming this attribute) when the value is empty.
    #[serde(default)]
    pub required: bool,
    /// Used when the field is null or absent.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<toml::Value>,
}

/// One segment of a target path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A plain attribute.
    Attr(String),
    /// An element of a multi-valued attribute selected by `sub eq "value"`.
    Select {
        attr: String,
        key: String,
        equals: String,
    },
}

/// Where a value goes in the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPath {
    /// The written form, used in messages and match keys.
    pub raw: String,
    /// `None` for the core schema.
    schema: Option<String>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Field(String),
    Constant(Value),
    Expression(Expr),
    /// The target id of the linked account of the user whose id is in the field.
    AccountOf(String),
}

#[derive(Debug, Clone, PartialEq)]
struct CompiledRule {
    target: TargetPath,
    source: Source,
    required: bool,
    default: Option<Value>,
}

/// A compiled mapping for one app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    rules: Vec<CompiledRule>,
}

/// A problem in a mapping rule, found when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub attribute: String,
    pub message: String,
}

/// Why a user could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("required attribute {attribute} is empty: Salesforce field {field} has no value")]
    MissingRequired { attribute: String, field: String },
    #[error("required attribute {attribute} is empty: the expression {expression} gave no value")]
    MissingRequiredExpression {
        attribute: String,
        expression: String,
    },
    #[error(
        "required attribute {attribute} is empty: the user named by {field} has no account in this app yet"
    )]
    MissingLinkedAccount { attribute: String, field: String },
    #[error("attribute {attribute}: {error}")]
    Evaluation { attribute: String, error: EvalError },
}

impl MapError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingRequired { .. }
            | Self::MissingRequiredExpression { .. }
            | Self::MissingLinkedAccount { .. } => "missing_required_attribute",
            Self::Evaluation { .. } => "expression_error",
        }
    }
}

impl crate::error::Classify for MapError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Permanent
    }
}

pub(crate) fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

impl TargetPath {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (schema, path) = if raw.starts_with("urn:") {
            let split = raw
                .rfind(':')
                .ok_or("an extension path is SCHEMA_URN:attribute")?;
            let (schema, attr) = (&raw[..split], &raw[split + 1..]);
            if attr.is_empty() {
                return Err("the extension path ends with ':'; add the attribute name".into());
            }
            (Some(schema.to_owned()), attr)
        } else {
            (None, raw)
        };
        let mut segments = Vec::new();
        let mut rest = path;
        while !rest.is_empty() {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if !is_attr_name(name) {
                return Err(format!("{name:?} is not a SCIM attribute name"));
            }
            rest = &rest[end..];
            if let Some(after) = rest.strip_prefix('[') {
                let close = after.find(']').ok_or("a '[' filter is not closed")?;
                let filter = &after[..close];
                let (key, equals) = parse_eq_filter(filter)?;
                segments.push(Segment::Select {
                    attr: name.to_owned(),
                    key,
                    equals,
                });
                rest = &after[close + 1..];
            } else {
                segments.push(Segment::Attr(name.to_owned()));
            }
            if let Some(after) = rest.strip_prefix('.') {
                if after.is_empty() {
                    return Err("the path ends with '.'".into());
                }
                rest = after;
            } else if !rest.is_empty() {
                return Err(format!("unexpected {rest:?}"));
            }
        }
        if segments.is_empty() {
            return Err("empty attribute path".into());
        }
        if matches!(segments.last(), Some(Segment::Select { .. })) {
            return Err("a filtered path must end with a sub-attribute, e.g. emails[type eq \"work\"].value".into());
        }
        Ok(Self {
            raw: raw.to_owned(),
            schema,
            segments,
        })
    }

    /// Writes `value` at this path in `resource`, creating objects and array elements.
    fn write(&self, resource: &mut Map<String, Value>, value: Value) {
        let mut current = match &self.schema {
            Some(urn) => {
                let slot = resource
                    .entry(urn.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                match slot {
                    Value::Object(map) => map,
                    _ => return,
                }
            }
            None => resource,
        };
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Attr(name) if i == last => {
                    current.insert(name.clone(), value);
                    return;
                }
                Segment::Attr(name) => {
                    let slot = current
                        .entry(name.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    current = match slot {
                        Value::Object(map) => map,
                        _ => return,
                    };
                }
                Segment::Select { attr, key, equals } => {
                    let slot = current
                        .entry(attr.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(items) = slot else { return };
                    let position = items
                        .iter()
                        .position(|item| item.get(key).and_then(Value::as_str) == Some(equals));
                    let index = match position {
                        Some(index) => index,
                        None => {
                            let mut element = Map::new();
                            element.insert(key.clone(), Value::String(equals.clone()));
                            items.push(Value::Object(element));
                            items.len() - 1
                        }
                    };
                    current = match items.get_mut(index) {
                        Some(Value::Object(map)) => map,
                        _ => return,
                    };
                }
            }
        }
    }

    /// Reads the value at this path from a resource.
    pub fn read<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        let mut current = match &self.schema {
            Some(urn) => resource.get(urn)?,
            None => resource,
        };
        for segment in &self.segments {
            current = match segment {
                Segment::Attr(name) => current.get(name)?,
                Segment::Select { attr, key, equals } => {
                    current.get(attr)?.as_array()?.iter().find(|item| {
                        item.get(key).and_then(Value::as_str) == Some(equals.as_str())
                    })?
                }
            };
        }
        Some(current)
    }

    /// The SCIM filter that finds accounts whose attribute at this path equals `value`.
    pub fn filter_for(&self, value: &str) -> String {
        let quoted = Value::String(value.to_owned()).to_string();
        let prefix = self
            .schema
            .as_ref()
            .map(|s| format!("{s}:"))
            .unwrap_or_default();
        let mut parts = Vec::new();
        let mut selector = None;
        for segment in &self.segments {
            match segment {
                Segment::Attr(name) => parts.push(name.clone()),
                Segment::Select { attr, key, equals } => {
                    selector = Some((parts.len(), key.clone(), equals.clone()));
                    parts.push(attr.clone());
                }
            }
        }
        match selector {
            Some((index, key, equals)) => {
                let outer = parts[..=index].join(".");
                let inner = parts[index + 1..].join(".");
                let equals = Value::String(equals).to_string();
                format!("{prefix}{outer}[{key} eq {equals} and {inner} eq {quoted}]")
            }
            None => format!("{prefix}{} eq {quoted}", parts.join(".")),
        }
    }
}

fn parse_eq_filter(filter: &str) -> Result<(String, String), String> {
    let mut words = filter.trim().splitn(3, ' ');
    let (Some(key), Some(op), Some(value)) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "filter {filter:?} must look like: type eq \"work\""
        ));
    };
    if !op.eq_ignore_ascii_case("eq") || !is_attr_name(key) {
        return Err(format!(
            "filter {filter:?} must look like: type eq \"work\""
        ));
    }
    let value: String = serde_json::from_str(value.trim())
        .map_err(|_| format!("filter {filter:?}: the value must be a double-quoted string"))?;
    Ok((key.to_owned(), value))
}

impl Mapping {
    /// Compiles the rules of one app's `[apps.mapping]` table; lists every error.
    pub fn compile(table: &toml::Table, tables: &Tables) -> Result<Self, Vec<RuleError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (attribute, raw_rule) in table {
            let fail = |message: String| RuleError {
                attribute: attribute.clone(),
                message,
            };
            let target = match TargetPath::parse(attribute) {
                Ok(t) => t,
                Err(message) => {
                    errors.push(fail(message));
                    continue;
                }
            };
            let rule: MappingRule = match raw_rule.clone().try_into() {
                Ok(rule) => rule,
                Err(e) => {
                    errors.push(fail(format!(
                        "write a field name, or a table with from / value / required / default ({})",
                        e.message()
                    )));
                    continue;
                }
            };
            let expression = |text: &str| -> Result<Source, String> {
                let parsed = Expr::parse(text, tables)
                    .map_err(|e| format!("in the expression {text:?}, {e}"))?;
                Ok(match parsed.as_field_reference() {
                    Some(field) => Source::Field(field.to_owned()),
                    None => Source::Expression(parsed),
                })
            };
            let (source, required, default) = match rule {
                MappingRule::Field(text) => match expression(&text) {
                    Ok(source) => (source, false, None),
                    Err(message) => {
                        errors.push(fail(message));
                        continue;
                    }
                },
                MappingRule::Detailed(d) => {
                    let source = match (d.from, d.expr, d.value, d.account_of) {
                        (Some(field), None, None, None) => Source::Field(field),
                        (None, None, None, Some(field)) => {
                            if !is_field_name(&field) {
                                errors.push(fail(format!(
                                    "{field:?} is not a Salesforce field API name"
                                )));
                                continue;
                            }
                            Source::AccountOf(field)
                        }
                        (None, Some(text), None, None) => match expression(&text) {
                            Ok(source) => source,
                            Err(message) => {
                                errors.push(fail(message));
                                continue;
                            }
                        },
                        (None, None, Some(value), None) => Source::Constant(toml_to_json(&value)),
                        (None, None, None, None) => {
                            errors.push(fail(
                                "give `from` (a Salesforce field), `expr` (an expression), `value` (a constant) or `account_of` (a user id field such as ManagerId)"
                                    .into(),
                            ));
                            continue;
                        }
                        _ => {
                            errors.push(fail(
                                "give only one of `from`, `expr`, `value` and `account_of`".into(),
                            ));
                            continue;
                        }
                    };
                    (source, d.required, d.default.as_ref().map(toml_to_json))
                }
            };
            if let Source::Field(field) = &source
                && !is_field_name(field)
            {
                errors.push(fail(format!(
                    "{field:?} is not a Salesforce field API name"
                )));
                continue;
            }
            rules.push(CompiledRule {
                target,
                source,
                required,
                default,
            });
        }
        if errors.is_empty() {
            Ok(Self { rules })
        } else {
            Err(errors)
        }
    }

    /// True when some rule writes this target attribute.
    pub fn targets(&self, attribute: &str) -> bool {
        self.rules.iter().any(|r| r.target.raw == attribute)
    }

    pub fn target_path(&self, attribute: &str) -> Option<&TargetPath> {
        self.rules
            .iter()
            .map(|r| &r.target)
            .find(|t| t.raw == attribute)
    }

    /// Every target attribute the mapping writes, in rule order.
    pub fn target_paths(&self) -> impl Iterator<Item = &TargetPath> {
        self.rules.iter().map(|r| &r.target)
    }

    /// The Salesforce fields that required rules without a default read directly
    /// (`{ from = "Field", required = true }`): a user without them cannot be provisioned.
    pub fn required_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.required && r.default.is_none())
            .filter_map(|r| match &r.source {
                Source::Field(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// The Salesforce fields the mapping reads, sorted, each once.
    pub fn source_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .rules
            .iter()
            .flat_map(|r| match &r.source {
                Source::Field(f) | Source::AccountOf(f) => vec![f.clone()],
                Source::Constant(_) => Vec::new(),
                Source::Expression(e) => e.fields(),
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// The users whose linked accounts the mapping refers to for this user (`account_of`
    /// rules, e.g. the manager), to be looked up before [`Mapping::apply_linked`].
    pub fn referenced_users(&self, user: &SourceUser) -> Vec<SalesforceId> {
        let mut ids: Vec<SalesforceId> = self
            .rules
            .iter()
            .filter_map(|r| match &r.source {
                Source::AccountOf(field) => user.text(field),
                _ => None,
            })
            .filter_map(|text| SalesforceId::parse(text.trim()).ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Builds the SCIM User resource for a snapshot. Null optional attributes are left out;
    /// `account_of` rules give nothing (see [`Mapping::apply_linked`]).
    pub fn apply(&self, user: &SourceUser) -> Result<Value, MapError> {
        self.apply_linked(user, &BTreeMap::new())
    }

    /// Builds the resource, resolving `account_of` rules with `accounts`: Salesforce user id →
    /// the id of that user's account in this app.
    pub fn apply_linked(
        &self,
        user: &SourceUser,
        accounts: &BTreeMap<SalesforceId, String>,
    ) -> Result<Value, MapError> {
        let mut resource = Map::new();
        let mut schemas = vec![Value::String(CORE_USER_SCHEMA.to_owned())];
        for rule in &self.rules {
            let value = match &rule.source {
                Source::Field(field) => user
                    .field(field)
                    .cloned()
                    .or_else(|| (field == "Id").then(|| Value::String(user.id.to_string()))),
                Source::Constant(value) => Some(value.clone()),
                Source::AccountOf(field) => user
                    .text(field)
                    .and_then(|text| SalesforceId::parse(text.trim()).ok())
                    .and_then(|id| accounts.get(&id))
                    .map(|target_id| Value::String(target_id.clone())),
                Source::Expression(expr) => {
                    let value = expr.eval(user).map_err(|error| MapError::Evaluation {
                        attribute: rule.target.raw.clone(),
                        error,
                    })?;
                    Some(value).filter(|v| !v.is_null())
                }
            };
            let value = value
                .filter(|v| !matches!(v, Value::String(s) if s.trim().is_empty()))
                .or_else(|| rule.default.clone());
            let Some(value) = value else {
                if rule.required {
                    let attribute = rule.target.raw.clone();
                    return Err(match &rule.source {
                        Source::Expression(e) => MapError::MissingRequiredExpression {
                            attribute,
                            expression: e.source().to_owned(),
                        },
                        Source::Field(f) => MapError::MissingRequired {
                            attribute,
                            field: f.clone(),
                        },
                        Source::AccountOf(f) => MapError::MissingLinkedAccount {
                            attribute,
                            field: f.clone(),
                        },
                        Source::Constant(_) => MapError::MissingRequired {
                            attribute,
                            field: "(constant)".into(),
                        },
                    });
                }
                continue;
            };
            if let Some(urn) = &rule.target.schema
                && !schemas.iter().any(|s| s.as_str() == Some(urn))
            {
                schemas.push(Value::String(urn.clone()));
            }
            rule.target.write(&mut resource, value);
        }
        resource.insert("schemas".into(), Value::Array(schemas));
        Ok(Value::Object(resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SalesforceId;
    use serde_json::json;

    fn mapping(text: &str) -> Mapping {
        let table: toml::Table = toml::from_str(text).unwrap();
        Mapping::compile(&table, &Tables::new()).unwrap()
    }

    fn marta() -> SourceUser {
        let mut u = SourceUser::new(SalesforceId::parse("0058a00000LmN2pAAF").unwrap());
        for (k, v) in [
            ("Username", "marta.fernandes@acme.example"),
            ("FirstName", "Marta"),
            ("LastName", "Fernandes"),
            ("Email", "marta.fernandes@acme.example"),
        ] {
            u.fields.insert(k.into(), json!(v));
        }
        u
    }

    #[test]
    fn maps_core_nested_multi_valued_and_extension_attributes() {
        let m = mapping(
            r#"
            userName = { from = "Username", required = true }
            "name.givenName" = "FirstName"
            "name.familyName" = "LastName"
            'emails[type eq "work"].value' = "Email"
            'emails[type eq "work"].primary' = { value = true }
            externalId = "Id"
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department" = { from = "Department", default = "Unassigned" }
            "#,
        );
        let resource = m.apply(&marta()).unwrap();
        assert_eq!(
            resource,
            json!({
                "schemas": [CORE_USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": "marta.fernandes@acme.example",
                "name": {"givenName": "Marta", "familyName": "Fernandes"},
                "emails": [{"type": "work", "value": "marta.fernandes@acme.example", "primary": true}],
                "externalId": "0058a00000LmN2pAAF",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Unassigned"}
            })
        );
    }

    #[test]
    fn a_missing_required_attribute_names_the_attribute_and_field() {
        let m = mapping(r#"title = { from = "Title", required = true }"#);
        let err = m.apply(&marta()).unwrap_err();
        assert_eq!(
            err,
            MapError::MissingRequired {
                attribute: "title".into(),
                field: "Title".into()
            }
        );
    }

    #[test]
    fn null_optional_attributes_are_left_out() {
        let m = mapping(r#"title = "Title""#);
        assert_eq!(
            m.apply(&marta()).unwrap(),
            json!({"schemas": [CORE_USER_SCHEMA]})
        );
    }

    #[test]
    fn filters_are_built_for_simple_and_selected_paths() {
        let simple = TargetPath::parse("userName").unwrap();
        assert_eq!(simple.filter_for("a\"b"), r#"userName eq "a\"b""#);
        let email = TargetPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            email.filter_for("x@y"),
            r#"emails[type eq "work" and value eq "x@y"]"#
        );
    }

    #[test]
    fn bad_rules_are_all_reported() {
        let table: toml::Table = toml::from_str(
            r#"
            "name..x" = "FirstName"
            userName = "User name"
            title = { from = "Title", value = "x" }
            "#,
        )
        .unwrap();
        let errors = Mapping::compile(&table, &Tables::new()).unwrap_err();
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn string_rules_are_expressions_and_tables_feed_lookups() {
        let table: toml::Table = toml::from_str(
            r#"
            displayName = 'concat(FirstName, " ", LastName)'
            nickName = 'lower(email_local(Email))'
            title = { expr = 'default(lookup(Department, "titles"), "Staff")' }
            "#,
        )
        .unwrap();
        let tables: Tables = [(
            "titles".to_owned(),
            [("Platform".to_owned(), "Engineer".to_owned())].into(),
        )]
        .into();
        let m = Mapping::compile(&table, &tables).unwrap();
        let resource = m.apply(&marta()).unwrap();
        assert_eq!(resource["displayName"], "Marta Fernandes");
        assert_eq!(resource["nickName"], "marta.fernandes");
        assert_eq!(resource["title"], "Staff");
        assert_eq!(
            m.source_fields(),
            vec!["Department", "Email", "FirstName", "LastName"]
        );
    }

    #[test]
    fn an_expression_error_points_at_the_column() {
        let table: toml::Table = toml::from_str(r#"displayName = 'concatt(FirstName)'"#).unwrap();
        let errors = Mapping::compile(&table, &Tables::new()).unwrap_err();
        assert_eq!(errors[0].attribute, "displayName");
        assert!(
            errors[0].message.contains("column 1") && errors[0].message.contains("concat"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_required_expression_with_no_value_names_the_expression() {
        let table: toml::Table =
            toml::from_str(r#"title = { expr = 'upper(Title)', required = true }"#).unwrap();
        let m = Mapping::compile(&table, &Tables::new()).unwrap();
        assert_eq!(
            m.apply(&marta()).unwrap_err(),
            MapError::MissingRequiredExpression {
                attribute: "title".into(),
                expression: "upper(Title)".into()
            }
        );
    }

    #[test]
    fn the_manager_goes_as_the_extension_object_or_as_a_bare_string() {
        const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let mut user = marta();
        user.fields
            .insert("ManagerId".into(), json!("0058a00000LmN3q"));
        let manager = SalesforceId::parse("0058a00000LmN3qAAF").unwrap();
        let accounts = BTreeMap::from([(manager, "acct-42".to_owned())]);
        let as_object = mapping(&format!(
            "userName = \"Username\"\n\"{ENTERPRISE}:manager.value\" = {{ account_of = \"ManagerId\" }}"
        ));
        let as_string = mapping(&format!(
            "userName = \"Username\"\n\"{ENTERPRISE}:manager\" = {{ account_of = \"ManagerId\" }}"
        ));

        let object = as_object.apply_linked(&user, &accounts).unwrap();
        let string = as_string.apply_linked(&user, &accounts).unwrap();

        assert_eq!(object[ENTERPRISE]["manager"], json!({"value": "acct-42"}));
        assert_eq!(string[ENTERPRISE]["manager"], json!("acct-42"));
    }
}
