//! The compiled form of an expression: parsed once, evaluated for every user.

use std::collections::BTreeMap;

use super::functions::{DatePart, Func};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldRef {
    /// As written; may be dotted (`Manager.Email`).
    pub name: Box<str>,
    /// `Id`, in any letter case: the user id, always present.
    pub is_id: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompareOp {
    Equal,
    NotEqual,
    StartsWith,
    EndsWith,
    Contains,
}

impl CompareOp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Equal => "==",
            Self::NotEqual => "!=",
            Self::StartsWith => "starts_with",
            Self::EndsWith => "ends_with",
            Self::Contains => "contains",
        }
    }
}

/// The right-hand side of `in`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Candidates {
    /// `[a, b, ...]`: each item keeps its type, so `Level__c in [1, 2]` matches the text "1.0".
    Items(Vec<Node>),
    /// An expression giving a list, such as `split(Groups__c, ";")`.
    List(Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Number(f64),
    Text(Box<str>),
    Field(FieldRef),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Compare {
        op: CompareOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    In {
        value: Box<Node>,
        candidates: Candidates,
        negated: bool,
    },
    IsNull {
        value: Box<Node>,
        negated: bool,
    },
    Call {
        func: Func,
        args: Vec<Node>,
    },
    /// `lookup(key, "table")` with the table copied in at compile time.
    Lookup {
        key: Box<Node>,
        table: BTreeMap<String, String>,
    },
    /// `format_date(value, "format")` with the format compiled.
    FormatDate {
        value: Box<Node>,
        format: Vec<DatePart>,
    },
}

impl Node {
    pub fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Null | Self::Bool(_) | Self::Number(_) | Self::Text(_) => {}
            Self::Field(field) => out.push(&field.name),
            Self::Not(inner) => inner.collect_fields(out),
            Self::And(a, b) | Self::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Self::Compare { left, right, .. } => {
                left.collect_fields(out);
                right.collect_fields(out);
            }
            Self::In {
                value, candidates, ..
            } => {
                value.collect_fields(out);
                match candidates {
                    Candidates::Items(items) => items.iter().for_each(|i| i.collect_fields(out)),
                    Candidates::List(list) => list.collect_fields(out),
                }
            }
            Self::IsNull { value, .. } => value.collect_fields(out),
            Self::Call { args, .. } => args.iter().for_each(|a| a.collect_fields(out)),
            Self::Lookup { key, .. } => key.collect_fields(out),
            Self::FormatDate { value, .. } => value.collect_fields(out),
        }
    }
}
