//! The userprov expression language: attribute values and scope filters written by Salesforce
//! admins in the configuration file.
//!
//! An expression is parsed once into a tree ([`Expr::parse`]) and evaluated for each user
//! ([`Expr::eval`], [`Expr::eval_bool`]). Parsing reports problems with the column they are at;
//! evaluation never panics and reports type problems naming the function and argument.
//!
//! | Written | Meaning |
//! | --- | --- |
//! | `FirstName`, `Cost_Center__c`, `Manager.Email`, `Id` | a Salesforce field (any letter case); `Id` is the user id |
//! | `"text"`, `'text'` | text; escapes `\"` `\'` `\\` `\n` `\t` `\r` `\u{e9}` |
//! | `42`, `-1.5`, `true`, `false`, `null` | number, booleans, null |
//! | `concat(FirstName, " ", LastName)` | a function call; names in any letter case (see [`FUNCTIONS`]) |
//! | `a == b`, `a != b` | equality; text is case-sensitive; `true` matches `"true"`, `3` matches `"3.0"`; `null` matches blank text |
//! | `a in ["x", "y"]`, `a not in [...]`, `a in split(B, ";")` | membership |
//! | `a starts_with b`, `a ends_with b`, `a contains b` | text tests (`contains` on a list tests for an item); also functions |
//! | `a is null`, `a is not null` | null, absent, or blank text |
//! | `not c`, `c and d`, `c or d`, `( ... )` | logic; `not` binds tighter than `and`, `and` tighter than `or`; null counts as false |
//!
//! Null flows through: a text function given null returns null, so an attribute built from a
//! field the user does not have is left out. `concat` is null when any part is; `join` skips
//! null parts; `coalesce` and `default` pick the first non-blank value.

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Classify, ErrorClass};
use crate::source::SourceUser;

pub use functions::FUNCTIONS;

/// Lookup tables, by name: each maps a key to a value.
pub type Tables = BTreeMap<String, BTreeMap<String, String>>;

/// An expression that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based, counted in characters.
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        Self {
            column,
            message: message.into(),
        }
    }
}

impl Classify for ParseError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

/// Why an expression could not be evaluated for a user. Messages name types, never values, so
/// user data stays out of logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A value of the wrong type: `lower: argument 1 must be text, found a list`.
    #[error("{function}: argument {argument} must be {expected}, found {found}")]
    TypeMismatch {
        /// A function name, or an operator such as `starts_with` or `in`.
        function: &'static str,
        /// 1-based; for operators, 1 is the left side and 2 the right.
        argument: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// A value of the right type that the function cannot use: a negative length, an
    /// unreadable date.
    #[error("{function}: argument {argument} {problem}")]
    InvalidArgument {
        function: &'static str,
        argument: usize,
        problem: String,
    },
    /// A condition (a filter, `if`, `and`, `or`, `not`) that is neither true nor false.
    #[error("{context} needs true or false, found {found}")]
    NotBoolean {
        /// `filter`, `if`, `and`, `or` or `not`.
        context: &'static str,
        found: &'static str,
    },
}

impl EvalError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TypeMismatch { .. } => "expression_type_mismatch",
            Self::InvalidArgument { .. } => "expression_invalid_argument",
            Self::NotBoolean { .. } => "expression_not_boolean",
        }
    }
}

impl Classify for EvalError {
    /// The same expression and snapshot fail the same way every time.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    root: ast::Node,
}

impl Expr {
    /// Parses and checks an expression: unknown functions, wrong argument counts, unknown lookup
    /// tables and bad date formats are reported here, with their column.
    pub fn parse(source: &str, tables: &Tables) -> Result<Expr, ParseError> {
        Ok(Expr {
            source: source.to_owned(),
            root: parser::parse(source, tables)?,
        })
    }

    /// The expression's value for a user: null, a boolean, a number, text, or a list of text.
    /// A bare field reference returns the field's JSON value unchanged.
    pub fn eval(&self, user: &SourceUser) -> Result<Value, EvalError> {
        if let ast::Node::Field(field) = &self.root {
            return Ok(eval::field_json(field, user));
        }
        Ok(eval::eval(&self.root, user)?.into_json())
    }

    /// The expression as a filter: true or false; null is false, and so is blank text.
    pub fn eval_bool(&self, user: &SourceUser) -> Result<bool, EvalError> {
        eval::truthy(&eval::eval(&self.root, user)?, "filter")
    }

    /// The Salesforce fields the expression reads, sorted and unique, as written (`Id` included).
    pub fn fields(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.root.collect_fields(&mut names);
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(str::to_owned).collect()
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field name when the whole expression is one bare field, such as `Email`.
    pub fn as_field_reference(&self) -> Option<&str> {
        match &self.root {
            ast::Node::Field(field) => Some(&field.name),
            _ => None,
        }
    }
}
