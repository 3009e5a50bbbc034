//! Salesforce User exports (a report or a Data Loader export: the header row holds field API
//! names) read one row at a time, each row checked, so files of any size are read in constant
//! memory apart from the set of user ids seen (for duplicates).

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value;
use sha2::{Digest, Sha256};
use userprov_core::ids::SalesforceId;
use userprov_core::source::SourceUser;

/// The key prefix of User record ids.
pub const USER_KEY_PREFIX: &str = "005";

/// A problem that stops the whole file from being read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("line {line}: {message}")]
    Header { line: u64, message: String },
    #[error("cannot read the file: {0}")]
    Read(String),
}

impl FileError {
    /// The error as `FILE:LINE: message`, the form editors and CI annotators read.
    pub fn at(&self, path: &std::path::Path) -> String {
        match self {
            Self::Header { line, message } => format!("{}:{line}: {message}", path.display()),
            Self::Read(_) => format!("{}: {self}", path.display()),
        }
    }

    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Header { .. })
    }
}

/// One data row: valid (its user) or invalid (why, by line).
#[derive(Debug)]
pub enum Row {
    Valid {
        /// 1-based number of the data row (the header is not a row).
        row: u64,
        line: u64,
        user: SourceUser,
    },
    Invalid {
        row: u64,
        line: u64,
        problems: Vec<String>,
    },
}

/// Feeds everything read through SHA-256, so the validating pass also fingerprints the file.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads and checks the rows of a User export.
pub struct UserCsv<R: Read> {
    reader: csv::Reader<R>,
    headers: Vec<String>,
    id_column: usize,
    /// (column index, name) of the columns that must hold a value on every row.
    required: Vec<(usize, String)>,
    is_active_column: Option<usize>,
    /// 18-character id → the line it was first seen on.
    seen: HashMap<[u8; 18], u64>,
    record: csv::ByteRecord,
    row: u64,
}

impl<R: Read> UserCsv<R> {
    /// Reads the header. `required` names the columns every row needs besides `Id`; a missing
    /// one is an error on line 1.
    pub fn new(input: R, required: &[String]) -> Result<Self, FileError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(input);
        let raw = reader
            .byte_headers()
            .map_err(|e| FileError::Read(e.to_string()))?
            .clone();
        let mut headers = Vec::with_capacity(raw.len());
        for (index, field) in raw.iter().enumerate() {
            let text = std::str::from_utf8(field).map_err(|_| FileError::Header {
                line: 1,
                message: format!(
                    "column {} of the header is not UTF-8 text; export the file as UTF-8",
                    index + 1
                ),
            })?;
            // Excel and some exports start the file with a byte order mark.
            headers.push(text.trim_start_matches('\u{feff}').trim().to_owned());
        }
        if headers.iter().all(String::is_empty) {
            return Err(FileError::Header {
                line: 1,
                message:
                    "the file is empty: the first line must name the columns (field API names)"
                        .into(),
            });
        }
        let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let mut missing: Vec<String> = Vec::new();
        let id_column = column("Id");
        if id_column.is_none() {
            missing.push("Id".into());
        }
        let mut required_columns = Vec::new();
        for name in required {
            match column(name) {
                Some(index) => required_columns.push((index, name.clone())),
                None => missing.push(name.clone()),
            }
        }
        let (Some(id_column), true) = (id_column, missing.is_empty()) else {
            return Err(FileError::Header {
                line: 1,
                message: format!(
                    "missing required column{} {} (the header has: {})",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", "),
                    headers.join(", ")
                ),
            });
        };
        let is_active_column = column("IsActive");
        Ok(Self {
            reader,
            headers,
            id_column,
            required: required_columns,
            is_active_column,
            seen: HashMap::new(),
            record: csv::ByteRecord::new(),
            row: 0,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The next row, checked; `None` at the end of the file.
    pub fn next_row(&mut self) -> Option<Result<Row, FileError>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.row += 1;
                Some(Ok(self.check()))
            }
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                if error.is_io_error() {
                    return Some(Err(FileError::Read(error.to_string())));
                }
                self.row += 1;
                Some(Ok(Row::Invalid {
                    row: self.row,
                    line,
                    problems: vec![format!("not a CSV row: {error}")],
                }))
            }
        }
    }

    /// Hands back the input (to finish its fingerprint).
    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    fn check(&mut self) -> Row {
        let row = self.row;
        let line = self.record.position().map_or(0, csv::Position::line);
        let mut problems = Vec::new();
        if self.record.len() != self.headers.len() {
            problems.push(format!(
                "{} fields, the header has {}",
                self.record.len(),
                self.headers.len()
            ));
        }
        let mut values: Vec<Option<&str>> = Vec::with_capacity(self.record.len());
        for (index, field) in self.record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => values.push(Some(text)),
                Err(_) => {
                    problems.push(format!(
                        "column {} is not UTF-8 text (bad encoding); export the file as UTF-8",
                        self.headers.get(index).map_or("?", String::as_str)
                    ));
                    values.push(None);
                }
            }
        }
        let value = |index: usize| values.get(index).copied().flatten().map(str::trim);
        let mut id = None;
        match value(self.id_column) {
            None | Some("") => problems.push("Id is empty".into()),
            Some(raw) => match SalesforceId::parse(raw) {
                Err(error) => problems.push(format!("Id {raw:?} is not a Salesforce id: {error}")),
                Ok(parsed) if parsed.key_prefix() != USER_KEY_PREFIX => problems.push(format!(
                    "Id {raw:?} is not a User id (User ids start with {USER_KEY_PREFIX})"
                )),
                Ok(parsed) => {
                    let mut key = [0u8; 18];
                    key.copy_from_slice(parsed.as_str().as_bytes());
                    match self.seen.get(&key) {
                        Some(first) => problems.push(format!(
                            "duplicate user: {raw} is the user of line {first} ({})",
                            parsed.as_str()
                        )),
                        None => {
                            self.seen.insert(key, line);
                            id = Some(parsed);
                        }
                    }
                }
            },
        }
        for (index, name) in &self.required {
            if value(*index).is_none_or(str::is_empty)
                && values.get(*index).is_some_and(Option::is_some)
            {
                problems.push(format!("required column {name} is empty"));
            }
        }
        if let Some(index) = self.is_active_column
            && let Some(text) = value(index)
            && !text.eq_ignore_ascii_case("true")
            && !text.eq_ignore_ascii_case("false")
        {
            problems.push(format!("IsActive is {text:?}, not true or false"));
        }
        match id {
            Some(id) if problems.is_empty() => {
                let mut user = SourceUser::new(id);
                for (index, name) in self.headers.iter().enumerate() {
                    if index == self.id_column || name.is_empty() {
                        continue;
                    }
                    let field = match value(index) {
                        Some("") | None => Value::Null,
                        Some(text) => Value::String(text.to_owned()),
                    };
                    user.fields.insert(name.clone(), field);
                }
                Row::Valid { row, line, user }
            }
            _ => {
                // A row that is invalid for another reason must not claim its id either, so that
                // a corrected later row with the same id is not called a duplicate.
                if let Some(id) = id {
                    let mut key = [0u8; 18];
                    key.copy_from_slice(id.as_str().as_bytes());
                    self.seen.remove(&key);
                }
                Row::Invalid {
                    row,
                    line,
                    problems,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn rows(text: &[u8], required: &[&str]) -> Vec<Row> {
        let required: Vec<String> = required.iter().map(|s| (*s).to_owned()).collect();
        let mut csv = UserCsv::new(text, &required).unwrap();
        std::iter::from_fn(|| csv.next_row())
            .map(Result::unwrap)
            .collect()
    }

    fn problems(row: &Row) -> (u64, String) {
        match row {
            Row::Invalid { line, problems, .. } => (*line, problems.join("; ")),
            Row::Valid { line, .. } => (*line, String::new()),
        }
    }

    #[test]
    fn a_15_character_id_and_its_18_character_form_are_one_duplicate_user() {
        let found = rows(
            b"Id,Username,IsActive\n0058a00000LmN2pAAF,a@x.example,true\n0058a00000LmN2p,b@x.example,true\n",
            &["Username"],
        );
        assert!(matches!(found[0], Row::Valid { line: 2, .. }));
        let (line, text) = problems(&found[1]);
        assert_eq!(line, 3);
        assert!(text.contains("duplicate user"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_encoding_wrong_ids_and_empty_required_values_are_reported_by_line() {
        let found = rows(
            b"Id,Username,IsActive\n0058a00000LmN2pAAF,caf\xe9,true\n001000000000001,x,true\n0058a00000LmN2q,,maybe\n",
            &["Username"],
        );
        assert!(problems(&found[0]).1.contains("not UTF-8"));
        assert!(problems(&found[1]).1.contains("not a User id"));
        let (line, text) = problems(&found[2]);
        assert_eq!(line, 4);
        assert!(text.contains("required column Username is empty"), "{text}");
        assert!(text.contains("IsActive"), "{text}");
    }

    #[test]
    fn a_missing_required_column_is_an_error_on_the_header_line() {
        let error = UserCsv::new(&b"Id,IsActive\n"[..], &["Username".to_owned()])
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("line 1: missing required column Username"),
            "{error}"
        );
    }

    #[test]
    fn empty_cells_are_known_nulls_and_a_byte_order_mark_is_ignored() {
        let found = rows(
            "\u{feff}Id,Username,Title,IsActive\n0058a00000LmN2pAAF,a@x.example,,true\n".as_bytes(),
            &["Username"],
        );
        let Row::Valid { user, .. } = &found[0] else {
            panic!("{found:?}")
        };
        assert_eq!(user.username(), Some("a@x.example"));
        assert_eq!(user.fields.get("Title"), Some(&Value::Null));
        assert_eq!(user.is_active(), Some(true));
    }
}
