//! Evaluation of a compiled expression against one user snapshot. Values borrow from the
//! snapshot and the expression where they can, so a field passed through a function that does
//! not change it costs no allocation.

use std::borrow::Cow;

use serde_json::Value;

use super::EvalError;
use super::ast::{Candidates, CompareOp, FieldRef, Node};
use super::functions::{self, Func};
use crate::source::SourceUser;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
    /// JSON the language has no type for (objects, lists of non-text): passed through as is.
    Other(&'a Value),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "true/false",
            Self::Number(_) => "a number",
            Self::Text(_) => "text",
            Self::List(_) => "a list",
            Self::Other(Value::Array(_)) => "a list of non-text items",
            Self::Other(_) => "an object",
        }
    }

    /// Null, or text that is empty or only spaces (the `is null` test).
    pub fn is_blank(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Text(t) => t.trim().is_empty(),
            Self::List(items) => items.is_empty(),
            _ => false,
        }
    }

    pub fn into_json(self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::Number(n) => number_to_json(n),
            Self::Text(t) => Value::String(t.into_owned()),
            Self::List(items) => Value::Array(
                items
                    .into_iter()
                    .map(|i| Value::String(i.into_owned()))
                    .collect(),
            ),
            Self::Other(v) => v.clone(),
        }
    }
}

fn number_to_json(n: f64) -> Value {
    // Whole numbers within f64's exact range become JSON integers: 45000, not 45000.0.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// A snapshot field by name: exact key first, then any letter case (Salesforce API names are
/// case-insensitive), then a dotted name walked through nested objects.
pub(super) fn find_field<'a>(name: &str, user: &'a SourceUser) -> Option<&'a Value> {
    if let Some(value) = user.fields.get(name) {
        return Some(value);
    }
    if let Some((_, value)) = user
        .fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
    {
        return Some(value);
    }
    let (first, rest) = name.split_once('.')?;
    let mut current = find_field(first, user)?;
    for segment in rest.split('.') {
        let object = current.as_object()?;
        current = match object.get(segment) {
            Some(value) => value,
            None => {
                object
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(segment))?
                    .1
            }
        };
    }
    Some(current)
}

/// The JSON value for a bare field reference, unchanged.
pub(super) fn field_json(field: &FieldRef, user: &SourceUser) -> Value {
    if field.is_id {
        return Value::String(user.id.as_str().to_owned());
    }
    find_field(&field.name, user)
        .cloned()
        .unwrap_or(Value::Null)
}

fn field_value<'a>(field: &FieldRef, user: &'a SourceUser) -> Val<'a> {
    if field.is_id {
        return Val::Text(Cow::Borrowed(user.id.as_str()));
    }
    match find_field(&field.name, user) {
        None | Some(Value::Null) => Val::Null,
        Some(Value::Bool(b)) => Val::Bool(*b),
        Some(Value::String(s)) => Val::Text(Cow::Borrowed(s)),
        Some(value @ Value::Number(n)) => n.as_f64().map_or(Val::Other(value), Val::Number),
        Some(value @ Value::Array(items)) => {
            let texts: Option<Vec<Cow<'a, str>>> = items
                .iter()
                .map(|i| i.as_str().map(Cow::Borrowed))
                .collect();
            texts.map_or(Val::Other(value), Val::List)
        }
        Some(value @ Value::Object(_)) => Val::Other(value),
    }
}

fn mismatch(
    function: &'static str,
    argument: usize,
    expected: &'static str,
    found: &Val<'_>,
) -> EvalError {
    EvalError::TypeMismatch {
        function,
        argument,
        expected,
        found: found.kind(),
    }
}

fn invalid(function: &'static str, argument: usize, problem: impl Into<String>) -> EvalError {
    EvalError::InvalidArgument {
        function,
        argument,
        problem: problem.into(),
    }
}

/// A value where text is needed: numbers are written out, null stays absent.
fn text<'a>(
    value: Val<'a>,
    function: &'static str,
    argument: usize,
) -> Result<Option<Cow<'a, str>>, EvalError> {
    match value {
        Val::Null => Ok(None),
        Val::Text(t) => Ok(Some(t)),
        Val::Number(n) => Ok(Some(Cow::Owned(functions::format_number(n)))),
        other => Err(mismatch(function, argument, "text", &other)),
    }
}

/// A value where a whole number is needed: numbers, or text such as "3" or "3.0".
fn whole(
    value: Val<'_>,
    function: &'static str,
    argument: usize,
) -> Result<Option<i64>, EvalError> {
    let number = match &value {
        Val::Null => return Ok(None),
        Val::Number(n) => Some(*n),
        Val::Text(t) => functions::parse_number(t),
        _ => None,
    };
    match number {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(Some(n as i64)),
        _ => Err(mismatch(function, argument, "a whole number", &value)),
    }
}

/// Conditions: booleans, or the text "true" / "false" that Outbound Messages carry; null is false.
pub(super) fn truthy(value: &Val<'_>, context: &'static str) -> Result<bool, EvalError> {
    match value {
        Val::Bool(b) => Ok(*b),
        Val::Null => Ok(false),
        Val::Text(t) if t.trim().is_empty() => Ok(false),
        Val::Text(t) => functions::parse_bool(t).ok_or(EvalError::NotBoolean {
            context,
            found: "text",
        }),
        other => Err(EvalError::NotBoolean {
            context,
            found: other.kind(),
        }),
    }
}

/// `==`: text compares exactly; a boolean or number on one side reads text on the other side
/// as a boolean or number (so `IsActive == true` matches `"true"` and `Level__c == 3` matches
/// `"3.0"`); null equals null and blank text.
pub(super) fn loosely_equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, other) | (other, Val::Null) => other.is_blank(),
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Bool(x), Val::Text(t)) | (Val::Text(t), Val::Bool(x)) => {
            functions::parse_bool(t) == Some(*x)
        }
        (Val::Number(x), Val::Number(y)) => x == y,
        (Val::Number(x), Val::Text(t)) | (Val::Text(t), Val::Number(x)) => {
            functions::parse_number(t) == Some(*x)
        }
        (Val::Text(x), Val::Text(y)) => x == y,
        (Val::List(x), Val::List(y)) => x == y,
        (Val::Other(x), Val::Other(y)) => x == y,
        _ => false,
    }
}

fn compare(op: CompareOp, left: Val<'_>, right: Val<'_>) -> Result<bool, EvalError> {
    let name = op.name();
    match op {
        CompareOp::Equal => Ok(loosely_equal(&left, &right)),
        CompareOp::NotEqual => Ok(!loosely_equal(&left, &right)),
        CompareOp::Contains => {
            if let Val::List(items) = &left {
                return Ok(match text(right, name, 2)? {
                    Some(needle) => items.contains(&needle),
                    None => false,
                });
            }
            let (Some(haystack), Some(needle)) = (text(left, name, 1)?, text(right, name, 2)?)
            else {
                return Ok(false);
            };
            Ok(haystack.contains(&*needle))
        }
        CompareOp::StartsWith | CompareOp::EndsWith => {
            let (Some(value), Some(affix)) = (text(left, name, 1)?, text(right, name, 2)?) else {
                return Ok(false);
            };
            Ok(if op == CompareOp::StartsWith {
                value.starts_with(&*affix)
            } else {
                value.ends_with(&*affix)
            })
        }
    }
}

pub(super) fn eval<'a>(node: &'a Node, user: &'a SourceUser) -> Result<Val<'a>, EvalError> {
    Ok(match node {
        Node::Null => Val::Null,
        Node::Bool(b) => Val::Bool(*b),
        Node::Number(n) => Val::Number(*n),
        Node::Text(t) => Val::Text(Cow::Borrowed(t)),
        Node::Field(field) => field_value(field, user),
        Node::Not(inner) => Val::Bool(!truthy(&eval(inner, user)?, "not")?),
        Node::And(a, b) => {
            Val::Bool(truthy(&eval(a, user)?, "and")? && truthy(&eval(b, user)?, "and")?)
        }
        Node::Or(a, b) => {
            Val::Bool(truthy(&eval(a, user)?, "or")? || truthy(&eval(b, user)?, "or")?)
        }
        Node::Compare { op, left, right } => {
            Val::Bool(compare(*op, eval(left, user)?, eval(right, user)?)?)
        }
        Node::In {
            value,
            candidates,
            negated,
        } => {
            let value = eval(value, user)?;
            let found = match candidates {
                Candidates::Items(items) => {
                    let mut found = false;
                    for item in items {
                        if loosely_equal(&value, &eval(item, user)?) {
                            found = true;
                            break;
                        }
                    }
                    found
                }
                Candidates::List(list) => match eval(list, user)? {
                    Val::List(items) => items
                        .into_iter()
                        .any(|i| loosely_equal(&value, &Val::Text(i))),
                    Val::Null => false,
                    other => return Err(mismatch("in", 2, "a list", &other)),
                },
            };
            Val::Bool(found != *negated)
        }
        Node::IsNull { value, negated } => Val::Bool(eval(value, user)?.is_blank() != *negated),
        Node::Call { func, args } => call(*func, args, user)?,
        Node::Lookup { key, table } => match text(eval(key, user)?, "lookup", 1)? {
            Some(key) => table
                .get(&*key)
                .map_or(Val::Null, |v| Val::Text(Cow::Borrowed(v))),
            None => Val::Null,
        },
        Node::FormatDate { value, format } => {
            let value = eval(value, user)?;
            let at = match &value {
                Val::Null => return Ok(Val::Null),
                Val::Text(t) if t.trim().is_empty() => return Ok(Val::Null),
                Val::Text(t) => functions::date_from_text(t),
                Val::Number(n) => functions::date_from_number(*n),
                other => return Err(mismatch("format_date", 1, "a date", other)),
            };
            let at = at.ok_or_else(|| {
                invalid(
                    "format_date",
                    1,
                    "is not a date: expected RFC 3339 (2025-03-14T16:02:11Z), YYYY-MM-DD or epoch milliseconds",
                )
            })?;
            Val::Text(Cow::Owned(functions::format_date(at, format)))
        }
    })
}

/// A slice of `text` by byte offsets, borrowed when the text is borrowed.
fn slice(text: Cow<'_, str>, begin: usize, end: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(begin..end).unwrap_or_default()),
        Cow::Owned(o) => Cow::Owned(o.get(begin..end).unwrap_or_default().to_owned()),
    }
}

/// The byte offset of the character at `index`, or the end.
fn char_offset(text: &str, index: usize) -> usize {
    text.char_indices()
        .nth(index)
        .map_or(text.len(), |(i, _)| i)
}

fn char_slice(text: Cow<'_, str>, skip: usize, take: Option<usize>) -> Cow<'_, str> {
    let begin = char_offset(&text, skip);
    let end = match take {
        Some(n) => begin + char_offset(text.get(begin..).unwrap_or_default(), n),
        None => text.len(),
    };
    slice(text, begin, end)
}

fn count_argument(
    value: Val<'_>,
    function: &'static str,
    argument: usize,
) -> Result<Option<usize>, EvalError> {
    match whole(value, function, argument)? {
        None => Ok(None),
        Some(n) if n < 0 => Err(invalid(function, argument, "must not be negative")),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

fn call<'a>(func: Func, args: &'a [Node], user: &'a SourceUser) -> Result<Val<'a>, EvalError> {
    let name = func.name();
    // The parser checked the arity; a missing optional argument reads as null.
    let arg = |i: usize| match args.get(i) {
        Some(node) => eval(node, user),
        None => Ok(Val::Null),
    };
    let text_arg =
        |i: usize| -> Result<Option<Cow<'a, str>>, EvalError> { text(arg(i)?, name, i + 1) };
    macro_rules! text_or_null {
        ($i:expr) => {
            match text_arg($i)? {
                Some(t) => t,
                None => return Ok(Val::Null),
            }
        };
    }
    Ok(match func {
        Func::Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                out.push_str(&text_or_null!(i));
            }
            Val::Text(Cow::Owned(out))
        }
        Func::Join => {
            let separator = text_or_null!(0);
            let mut out = String::new();
            let mut any = false;
            let mut push = |part: &str| {
                if part.trim().is_empty() {
                    return;
                }
                if any {
                    out.push_str(&separator);
                }
                out.push_str(part);
                any = true;
            };
            for i in 1..args.len() {
                match arg(i)? {
                    Val::Null => {}
                    Val::Text(t) => push(&t),
                    Val::Number(n) => push(&functions::format_number(n)),
                    Val::List(items) => items.iter().for_each(|item| push(item)),
                    other => return Err(mismatch(name, i + 1, "text or a list", &other)),
                }
            }
            if any {
                Val::Text(Cow::Owned(out))
            } else {
                Val::Null
            }
        }
        Func::Split => {
            let value = text_or_null!(0);
            let separator = text_or_null!(1);
            if separator.is_empty() {
                return Err(invalid(name, 2, "must not be empty"));
            }
            let parts = |s: &'a str| -> Vec<Cow<'a, str>> {
                s.split(&*separator)
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(Cow::Borrowed)
                    .collect()
            };
            Val::List(match value {
                Cow::Borrowed(b) => parts(b),
                Cow::Owned(o) => o
                    .split(&*separator)
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Cow::Owned(p.to_owned()))
                    .collect(),
            })
        }
        Func::Lower => {
            let value = text_or_null!(0);
            if value.chars().any(char::is_uppercase) {
                Val::Text(Cow::Owned(value.to_lowercase()))
            } else {
                Val::Text(value)
            }
        }
        Func::Upper => {
            let value = text_or_null!(0);
            if value.chars().any(char::is_lowercase) {
                Val::Text(Cow::Owned(value.to_uppercase()))
            } else {
                Val::Text(value)
            }
        }
        Func::Trim => {
            let value = text_or_null!(0);
            let start = value.len() - value.trim_start().len();
            let end = value.trim_end().len().max(start);
            Val::Text(slice(value, start, end))
        }
        Func::Replace => {
            let value = text_or_null!(0);
            let find = text_or_null!(1);
            let replacement = text_or_null!(2);
            if find.is_empty() || !value.contains(&*find) {
                Val::Text(value)
            } else {
                Val::Text(Cow::Owned(value.replace(&*find, &replacement)))
            }
        }
        Func::Substring => {
            let value = text_or_null!(0);
            let Some(start) = whole(arg(1)?, name, 2)? else {
                return Ok(Val::Null);
            };
            if start < 1 {
                return Err(invalid(
                    name,
                    2,
                    "must be 1 or more (the first character is 1)",
                ));
            }
            let length = if args.len() > 2 {
                match count_argument(arg(2)?, name, 3)? {
                    Some(n) => Some(n),
                    None => return Ok(Val::Null),
                }
            } else {
                None
            };
            let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
            Val::Text(char_slice(value, skip, length))
        }
        Func::Left | Func::Right => {
            let value = text_or_null!(0);
            let Some(n) = count_argument(arg(1)?, name, 2)? else {
                return Ok(Val::Null);
            };
            if func == Func::Left {
                Val::Text(char_slice(value, 0, Some(n)))
            } else {
                let skip = value.chars().count().saturating_sub(n);
                Val::Text(char_slice(value, skip, None))
            }
        }
        Func::Length => Val::Number(text_or_null!(0).chars().count() as f64),
        Func::Coalesce | Func::Default => {
            for i in 0..args.len() {
                let value = arg(i)?;
                if !value.is_blank() {
                    return Ok(value);
                }
            }
            Val::Null
        }
        Func::If => {
            if truthy(&arg(0)?, "if")? {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        Func::Switch => {
            let Some((value, rest)) = args.split_first() else {
                return Ok(Val::Null);
            };
            let value = eval(value, user)?;
            let mut pairs = rest.chunks_exact(2);
            for pair in &mut pairs {
                if let [key, result] = pair
                    && loosely_equal(&value, &eval(key, user)?)
                {
                    return eval(result, user);
                }
            }
            match pairs.remainder() {
                [default] => eval(default, user)?,
                _ => Val::Null,
            }
        }
        Func::NormalizeDiacritics => Val::Text(functions::normalize_diacritics(text_or_null!(0))),
        Func::EmailLocal | Func::EmailDomain => {
            let value = text_or_null!(0);
            let Some(at) = value.rfind('@') else {
                return Ok(Val::Null);
            };
            let part = if func == Func::EmailLocal {
                slice(value, 0, at)
            } else {
                let end = value.len();
                slice(value, at + 1, end)
            };
            if part.is_empty() {
                Val::Null
            } else {
                Val::Text(part)
            }
        }
        Func::Constant => arg(0)?,
        Func::Text => match arg(0)? {
            Val::Bool(b) => Val::Text(Cow::Borrowed(if b { "true" } else { "false" })),
            Val::Number(n) => Val::Text(Cow::Owned(functions::format_number(n))),
            value @ (Val::Null | Val::Text(_)) => value,
            other => return Err(mismatch(name, 1, "a single value", &other)),
        },
        Func::Number => match arg(0)? {
            value @ (Val::Null | Val::Number(_)) => value,
            Val::Text(t) if t.trim().is_empty() => Val::Null,
            Val::Text(t) => Val::Number(
                functions::parse_number(&t).ok_or_else(|| invalid(name, 1, "is not a number"))?,
            ),
            other => return Err(mismatch(name, 1, "text or a number", &other)),
        },
        Func::First => match arg(0)? {
            Val::Null => Val::Null,
            Val::List(items) => items.into_iter().next().map_or(Val::Null, Val::Text),
            other => return Err(mismatch(name, 1, "a list", &other)),
        },
        Func::Count => match arg(0)? {
            Val::Null => Val::Number(0.0),
            Val::List(items) => Val::Number(items.len() as f64),
            other => return Err(mismatch(name, 1, "a list", &other)),
        },
        Func::StartsWith => Val::Bool(compare(CompareOp::StartsWith, arg(0)?, arg(1)?)?),
        Func::EndsWith => Val::Bool(compare(CompareOp::EndsWith, arg(0)?, arg(1)?)?),
        Func::Contains => Val::Bool(compare(CompareOp::Contains, arg(0)?, arg(1)?)?),
        // Compiled into their own nodes by the parser, with the table or format resolved.
        Func::Lookup | Func::FormatDate => Val::Null,
    })
}
