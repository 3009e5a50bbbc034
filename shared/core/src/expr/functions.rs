//! The function catalogue and the text, number and date helpers the functions share.

use std::borrow::Cow;
use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// Every function: its name and `signature - description`, for documentation and suggestions.
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "concat",
        "concat(a, b, ...) - joins text end to end; null when any argument is null",
    ),
    (
        "join",
        "join(separator, a, b, ...) - joins values and list items with separator, skipping null and blank ones",
    ),
    (
        "split",
        "split(text, separator) - a list of the parts between separators, trimmed, empty parts dropped",
    ),
    ("lower", "lower(text) - text in lower case"),
    ("upper", "upper(text) - text in upper case"),
    (
        "trim",
        "trim(text) - text without leading and trailing spaces",
    ),
    (
        "replace",
        "replace(text, find, replacement) - replaces every occurrence of find (plain, case-sensitive text)",
    ),
    (
        "substring",
        "substring(text, start, length) - length characters from position start (the first is 1); without length, to the end",
    ),
    ("left", "left(text, n) - the first n characters"),
    ("right", "right(text, n) - the last n characters"),
    ("length", "length(text) - the number of characters"),
    (
        "coalesce",
        "coalesce(a, b, ...) - the first value that is not null or blank",
    ),
    (
        "default",
        "default(value, fallback) - value, or fallback when value is null or blank",
    ),
    (
        "if",
        "if(condition, then, else) - then when condition is true, else otherwise (null when else is left out)",
    ),
    (
        "switch",
        "switch(value, key1, result1, key2, result2, ..., default) - the result after the first key equal to value; default (or null) when none is",
    ),
    (
        "lookup",
        "lookup(value, \"table\") - value's entry in the named lookup table; null when the table has no such key",
    ),
    (
        "normalize_diacritics",
        "normalize_diacritics(text) - Latin letters without accents: Fernández -> Fernandez, Straße -> Strasse, Søren -> Soren",
    ),
    (
        "email_local",
        "email_local(email) - the part before the @; null when there is no @",
    ),
    (
        "email_domain",
        "email_domain(email) - the part after the @; null when there is no @",
    ),
    (
        "format_date",
        "format_date(date, \"format\") - a date (RFC 3339, YYYY-MM-DD or epoch milliseconds) written in UTC with %Y %m %d %H %M %S, or \"date\" / \"iso\"",
    ),
    (
        "constant",
        "constant(value) - the value itself, for rules that are a fixed value",
    ),
    (
        "text",
        "text(value) - the value as text: numbers without a trailing .0, booleans as true / false",
    ),
    (
        "number",
        "number(value) - text read as a number (\"45000.0\" -> 45000); null when blank",
    ),
    (
        "first",
        "first(list) - the first item of a list; null when empty",
    ),
    (
        "count",
        "count(list) - the number of items in a list; 0 for null",
    ),
    (
        "starts_with",
        "starts_with(text, prefix) - true when text begins with prefix (also: text starts_with prefix)",
    ),
    (
        "ends_with",
        "ends_with(text, suffix) - true when text ends with suffix (also: text ends_with suffix)",
    ),
    (
        "contains",
        "contains(text_or_list, value) - true when text contains value, or a list has value as an item (also: x contains value)",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Concat,
    Join,
    Split,
    Lower,
    Upper,
    Trim,
    Replace,
    Substring,
    Left,
    Right,
    Length,
    Coalesce,
    Default,
    If,
    Switch,
    Lookup,
    NormalizeDiacritics,
    EmailLocal,
    EmailDomain,
    FormatDate,
    Constant,
    Text,
    Number,
    First,
    Count,
    StartsWith,
    EndsWith,
    Contains,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    pub func: Func,
    pub name: &'static str,
    pub min: usize,
    /// `None` when any number of further arguments is accepted.
    pub max: Option<usize>,
}

const fn spec(func: Func, name: &'static str, min: usize, max: Option<usize>) -> Spec {
    Spec {
        func,
        name,
        min,
        max,
    }
}

/// In the same order as [`FUNCTIONS`] (a test checks it).
pub(super) const SPECS: &[Spec] = &[
    spec(Func::Concat, "concat", 1, None),
    spec(Func::Join, "join", 2, None),
    spec(Func::Split, "split", 2, Some(2)),
    spec(Func::Lower, "lower", 1, Some(1)),
    spec(Func::Upper, "upper", 1, Some(1)),
    spec(Func::Trim, "trim", 1, Some(1)),
    spec(Func::Replace, "replace", 3, Some(3)),
    spec(Func::Substring, "substring", 2, Some(3)),
    spec(Func::Left, "left", 2, Some(2)),
    spec(Func::Right, "right", 2, Some(2)),
    spec(Func::Length, "length", 1, Some(1)),
    spec(Func::Coalesce, "coalesce", 1, None),
    spec(Func::Default, "default", 2, Some(2)),
    spec(Func::If, "if", 2, Some(3)),
    spec(Func::Switch, "switch", 3, None),
    spec(Func::Lookup, "lookup", 2, Some(2)),
    spec(
        Func::NormalizeDiacritics,
        "normalize_diacritics",
        1,
        Some(1),
    ),
    spec(Func::EmailLocal, "email_local", 1, Some(1)),
    spec(Func::EmailDomain, "email_domain", 1, Some(1)),
    spec(Func::FormatDate, "format_date", 2, Some(2)),
    spec(Func::Constant, "constant", 1, Some(1)),
    spec(Func::Text, "text", 1, Some(1)),
    spec(Func::Number, "number", 1, Some(1)),
    spec(Func::First, "first", 1, Some(1)),
    spec(Func::Count, "count", 1, Some(1)),
    spec(Func::StartsWith, "starts_with", 2, Some(2)),
    spec(Func::EndsWith, "ends_with", 2, Some(2)),
    spec(Func::Contains, "contains", 2, Some(2)),
];

impl Func {
    pub fn name(self) -> &'static str {
        SPECS
            .iter()
            .find(|s| s.func == self)
            .map_or("function", |s| s.name)
    }
}

/// The function called `name`, in any letter case.
pub(super) fn find(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// `concat(a, b, ...)`: the signature part of a [`FUNCTIONS`] entry.
pub(super) fn signature(name: &str) -> &'static str {
    FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, doc)| {
            doc.split_once(" - ").map_or(*doc, |(sig, _)| sig)
        })
}

/// Names admins bring from Microsoft Entra expressions and Salesforce formulas.
const FAMILIAR_NAMES: &[(&str, &str)] = &[
    ("append", "concat"),
    ("tolower", "lower"),
    ("toupper", "upper"),
    ("mid", "substring"),
    ("substr", "substring"),
    ("iif", "if"),
    ("len", "length"),
    ("strip", "trim"),
    ("formatdatetime", "format_date"),
    ("datetimeformat", "format_date"),
    ("isnull", "`is null`"),
    ("isblank", "`is null`"),
    ("isnullorempty", "`is null`"),
    ("ispresent", "`is not null`"),
    ("ifnull", "default"),
    ("blankvalue", "default"),
    ("nullvalue", "default"),
    ("value", "number"),
    ("begins", "starts_with"),
    ("startswith", "starts_with"),
    ("endswith", "ends_with"),
    ("case", "switch"),
    ("word", "split"),
];

/// The closest known function to a misspelt one, if any is close enough.
pub(super) fn suggest(unknown: &str) -> Option<&'static str> {
    let key: String = unknown
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if let Some((_, known)) = FAMILIAR_NAMES.iter().find(|(alias, _)| *alias == key) {
        return Some(known);
    }
    let limit = (key.chars().count() / 3).max(1);
    SPECS
        .iter()
        .map(|s| {
            let candidate: String = s.name.chars().filter(|c| *c != '_').collect();
            (edit_distance(&key, &candidate), s.name)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Numbers are written without a trailing `.0` when whole (Salesforce sends `45000.0`).
pub(super) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Reads decimal text as a number. Rust's float parser also accepts `inf` and `NaN`; those are
/// not numbers a Salesforce field holds, so only digits, sign, point and exponent are allowed.
pub(super) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Text to a boolean the way Salesforce writes them in Outbound Messages.
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Letters that are not a base letter plus a combining accent, so canonical decomposition
/// leaves them alone; spelled the way names are usually transliterated.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'ẞ' => "SS",
        'ø' => "o",
        'Ø' => "O",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        'đ' | 'ð' => "d",
        'Đ' | 'Ð' => "D",
        'þ' => "th",
        'Þ' => "Th",
        'ł' => "l",
        'Ł' => "L",
        'ı' => "i",
        'ħ' => "h",
        'Ħ' => "H",
        'ŧ' => "t",
        'Ŧ' => "T",
        'ĳ' => "ij",
        'Ĳ' => "IJ",
        'ŀ' => "l",
        'Ŀ' => "L",
        _ => return None,
    })
}

/// Only Latin letters lose their accents: in Cyrillic, Greek or kana the mark makes a
/// different letter (й is not и).
fn is_latin(c: char) -> bool {
    c < '\u{0250}' || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

pub(super) fn normalize_diacritics(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        if let Some(replacement) = transliterate(c) {
            out.push_str(replacement);
            continue;
        }
        let mut base = None;
        let mut marks = false;
        let mut other = false;
        unicode_normalization::char::decompose_canonical(c, |d| {
            if unicode_normalization::char::is_combining_mark(d) {
                marks = true;
            } else if base.is_none() {
                base = Some(d);
            } else {
                other = true;
            }
        });
        match base {
            Some(b) if marks && !other && is_latin(b) => match transliterate(b) {
                Some(replacement) => out.push_str(replacement),
                None => out.push(b),
            },
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One piece of a compiled date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DatePart {
    Literal(Box<str>),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

pub(super) fn compile_date_format(format: &str) -> Result<Vec<DatePart>, String> {
    let spelled = match format {
        "date" => "%Y-%m-%d",
        "iso" => "%Y-%m-%dT%H:%M:%SZ",
        other => other,
    };
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = spelled.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let part = match chars.next() {
            Some('%') => {
                literal.push('%');
                continue;
            }
            Some('Y') => DatePart::Year,
            Some('m') => DatePart::Month,
            Some('d') => DatePart::Day,
            Some('H') => DatePart::Hour,
            Some('M') => DatePart::Minute,
            Some('S') => DatePart::Second,
            Some(other) => {
                return Err(format!(
                    "unknown date directive %{other}: use %Y %m %d %H %M %S %%, or \"date\" / \"iso\""
                ));
            }
            None => return Err("the date format ends with a lone %; write %% for a %".into()),
        };
        if !literal.is_empty() {
            parts.push(DatePart::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(part);
    }
    if !literal.is_empty() {
        parts.push(DatePart::Literal(literal.into()));
    }
    Ok(parts)
}

fn from_epoch_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// A date from epoch milliseconds.
pub(super) fn date_from_number(n: f64) -> Option<OffsetDateTime> {
    if n.fract() != 0.0 || n.abs() > 1e17 {
        return None;
    }
    from_epoch_millis(n as i64)
}

/// A date from RFC 3339 text, `YYYY-MM-DD`, or epoch milliseconds written as text; in UTC.
pub(super) fn date_from_text(text: &str) -> Option<OffsetDateTime> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return from_epoch_millis(ms);
    }
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Some(at.to_offset(UtcOffset::UTC));
    }
    Date::parse(t, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

pub(super) fn format_date(at: OffsetDateTime, format: &[DatePart]) -> String {
    let mut out = String::with_capacity(20);
    for part in format {
        // Writing to a String cannot fail.
        let _ = match part {
            DatePart::Literal(text) => out.write_str(text),
            DatePart::Year => write!(out, "{:04}", at.year()),
            DatePart::Month => write!(out, "{:02}", u8::from(at.month())),
            DatePart::Day => write!(out, "{:02}", at.day()),
            DatePart::Hour => write!(out, "{:02}", at.hour()),
            DatePart::Minute => write!(out, "{:02}", at.minute()),
            DatePart::Second => write!(out, "{:02}", at.second()),
        };
    }
    out
}
