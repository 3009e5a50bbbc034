//! Turns expression text into tokens, each with the 1-based character column where it starts.

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A field name (possibly dotted), a function name or a keyword; keywords are told apart by
    /// the parser because they are case-insensitive and depend on position.
    Name(String),
    Text(String),
    Number(f64),
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Comma,
    Equal,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    pub column: usize,
}

impl TokenKind {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Name(name) => format!("`{name}`"),
            Self::Text(_) => "quoted text".to_owned(),
            Self::Number(_) => "a number".to_owned(),
            Self::OpenParen => "`(`".to_owned(),
            Self::CloseParen => "`)`".to_owned(),
            Self::OpenBracket => "`[`".to_owned(),
            Self::CloseBracket => "`]`".to_owned(),
            Self::Comma => "`,`".to_owned(),
            Self::Equal => "`==`".to_owned(),
            Self::NotEqual => "`!=`".to_owned(),
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    /// Index into `chars`; the column of `chars[pos]` is `pos + 1`.
    pos: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn column(&self) -> usize {
        self.pos + 1
    }
}

pub(super) fn lex(source: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer {
        chars: source.chars().collect(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lx.peek() {
        let column = lx.column();
        let single = |kind| Token { kind, column };
        match c {
            c if c.is_whitespace() => lx.pos += 1,
            '(' | ')' | '[' | ']' | ',' => {
                tokens.push(single(match c {
                    '(' => TokenKind::OpenParen,
                    ')' => TokenKind::CloseParen,
                    '[' => TokenKind::OpenBracket,
                    ']' => TokenKind::CloseBracket,
                    _ => TokenKind::Comma,
                }));
                lx.pos += 1;
            }
            '=' => {
                if lx.peek_at(1) != Some('=') {
                    return Err(ParseError::new(
                        column,
                        "use == to compare values (a single = is not an operator)",
                    ));
                }
                tokens.push(single(TokenKind::Equal));
                lx.pos += 2;
            }
            '!' => {
                if lx.peek_at(1) != Some('=') {
                    return Err(ParseError::new(column, "use `not` to negate a condition"));
                }
                tokens.push(single(TokenKind::NotEqual));
                lx.pos += 2;
            }
            '<' if lx.peek_at(1) == Some('>') => {
                return Err(ParseError::new(column, "use != for \"not equal\""));
            }
            '<' | '>' => {
                return Err(ParseError::new(
                    column,
                    "< and > are not supported: compare with ==, !=, in, starts_with, ends_with or contains",
                ));
            }
            '&' => return Err(ParseError::new(column, "use `and` to combine conditions")),
            '|' => return Err(ParseError::new(column, "use `or` to combine conditions")),
            '+' => {
                return Err(ParseError::new(
                    column,
                    "there is no + operator: use concat(a, b) to join text",
                ));
            }
            '"' | '\'' => tokens.push(Token {
                kind: TokenKind::Text(text(&mut lx, c)?),
                column,
            }),
            '-' if lx.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => tokens.push(Token {
                kind: TokenKind::Number(number(&mut lx)?),
                column,
            }),
            '0'..='9' => tokens.push(Token {
                kind: TokenKind::Number(number(&mut lx)?),
                column,
            }),
            c if c.is_ascii_alphabetic() => tokens.push(Token {
                kind: TokenKind::Name(name(&mut lx)?),
                column,
            }),
            other => {
                return Err(ParseError::new(
                    column,
                    format!("unexpected character {other:?}"),
                ));
            }
        }
    }
    Ok(tokens)
}

/// A quoted string; `lx` is on the opening quote.
fn text(lx: &mut Lexer, quote: char) -> Result<String, ParseError> {
    let opening = lx.column();
    lx.pos += 1;
    let mut out = String::new();
    loop {
        let Some(c) = lx.peek() else {
            return Err(ParseError::new(
                opening,
                format!("this text is never closed: add a closing {quote}"),
            ));
        };
        if c == quote {
            lx.pos += 1;
            return Ok(out);
        }
        if c != '\\' {
            out.push(c);
            lx.pos += 1;
            continue;
        }
        let escape_column = lx.column();
        let unknown = |found: Option<char>| {
            ParseError::new(
                escape_column,
                format!(
                    "unknown escape {}: use \\\" \\' \\\\ \\n \\t \\r or \\u{{hex}}",
                    found.map_or_else(|| "\\".to_owned(), |f| format!("\\{f}"))
                ),
            )
        };
        lx.pos += 1;
        match lx.peek() {
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('u') => {
                lx.pos += 1;
                out.push(unicode_escape(lx, escape_column)?);
                continue;
            }
            found => return Err(unknown(found)),
        }
        lx.pos += 1;
    }
}

/// `{hex}` after `\u`; leaves `lx` after the closing brace.
fn unicode_escape(lx: &mut Lexer, column: usize) -> Result<char, ParseError> {
    let malformed = || {
        ParseError::new(
            column,
            "a unicode escape is \\u{...} with 1 to 6 hex digits, as in \\u{e9}",
        )
    };
    if lx.peek() != Some('{') {
        return Err(malformed());
    }
    lx.pos += 1;
    let mut code: u32 = 0;
    let mut digits = 0;
    while let Some(d) = lx.peek().and_then(|c| c.to_digit(16)) {
        code = code.saturating_mul(16).saturating_add(d);
        digits += 1;
        lx.pos += 1;
    }
    if lx.peek() != Some('}') || !(1..=6).contains(&digits) {
        return Err(malformed());
    }
    lx.pos += 1;
    char::from_u32(code)
        .ok_or_else(|| ParseError::new(column, format!("\\u{{{code:x}}} is not a character")))
}

fn number(lx: &mut Lexer) -> Result<f64, ParseError> {
    let column = lx.column();
    let start = lx.pos;
    if lx.peek() == Some('-') {
        lx.pos += 1;
    }
    let digits = |lx: &mut Lexer| {
        while lx.peek().is_some_and(|c| c.is_ascii_digit()) {
            lx.pos += 1;
        }
    };
    digits(lx);
    if lx.peek() == Some('.') {
        if !lx.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            return Err(ParseError::new(
                lx.column(),
                "a decimal point must be followed by digits",
            ));
        }
        lx.pos += 1;
        digits(lx);
    }
    if let Some(c) = lx.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
        return Err(ParseError::new(
            lx.column(),
            format!("unexpected {c:?} after a number (names start with a letter)"),
        ));
    }
    let written: String = lx
        .chars
        .get(start..lx.pos)
        .unwrap_or_default()
        .iter()
        .collect();
    written
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| ParseError::new(column, "this number is too large"))
}

/// A name: letters, digits and `_`, starting with a letter, with `.` between segments.
fn name(lx: &mut Lexer) -> Result<String, ParseError> {
    let mut out = String::new();
    loop {
        while let Some(c) = lx.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            out.push(c);
            lx.pos += 1;
        }
        if lx.peek() != Some('.') {
            return Ok(out);
        }
        if !lx.peek_at(1).is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(ParseError::new(
                lx.column(),
                "a `.` in a field name must be followed by a field name, as in Manager.Email",
            ));
        }
        out.push('.');
        lx.pos += 1;
    }
}
