//! Recursive descent over the tokens. Precedence, loosest first: `or`, `and`, `not`, then one
//! comparison (`==`, `!=`, `in`, `not in`, `is [not] null`, `starts_with`, `ends_with`,
//! `contains`), then values: literals, fields, function calls and parentheses.

use super::ast::{Candidates, CompareOp, FieldRef, Node};
use super::functions::{self, Func};
use super::lexer::{Token, TokenKind, lex};
use super::{ParseError, Tables};

/// Deeper nesting than any real rule; it keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Words that are never field names.
const KEYWORDS: &[&str] = &["and", "or", "not", "in", "is", "null", "true", "false"];

/// Words that are operators between two values (and functions when followed by `(`).
const WORD_OPERATORS: &[(&str, CompareOp)] = &[
    ("starts_with", CompareOp::StartsWith),
    ("ends_with", CompareOp::EndsWith),
    ("contains", CompareOp::Contains),
];

pub(super) fn parse(source: &str, tables: &Tables) -> Result<Node, ParseError> {
    let tokens = lex(source)?;
    if tokens.is_empty() {
        return Err(ParseError::new(1, "the expression is empty"));
    }
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        end_column: source.chars().count() + 1,
        tables,
        depth: 0,
    };
    let root = parser.expression()?;
    if let Some(token) = parser.peek() {
        return Err(trailing(token));
    }
    Ok(root)
}

fn trailing(token: &Token) -> ParseError {
    let message = match &token.kind {
        TokenKind::CloseParen => "this ) has no matching (".to_owned(),
        TokenKind::CloseBracket => "this ] has no matching [".to_owned(),
        TokenKind::Comma => "a comma only separates the arguments of a function call".to_owned(),
        TokenKind::Name(name) if name.eq_ignore_ascii_case("not") => {
            "unexpected `not`: write `not in [...]`, or put `not` before the condition".to_owned()
        }
        other => format!(
            "unexpected {} after a complete expression: use concat(...) to join values, and / or to combine conditions",
            other.describe()
        ),
    };
    ParseError::new(token.column, message)
}

/// The comparison operator starting at the current token, and how many tokens it spans.
enum Operator {
    Compare(CompareOp),
    In { negated: bool },
    Is,
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    end_column: usize,
    tables: &'a Tables,
    depth: usize,
}

fn is_keyword(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token { kind: TokenKind::Name(n), .. }) if n.eq_ignore_ascii_case(keyword))
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&'a Token> {
        self.tokens.get(self.pos + ahead)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.pos);
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    /// The column of the current token, or just past the end.
    fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |t| t.column)
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek().is_some_and(|t| t.kind == *kind) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if is_keyword(self.peek(), keyword) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.column(),
                "the expression is nested too deeply",
            ));
        }
        Ok(())
    }

    fn expression(&mut self) -> Result<Node, ParseError> {
        self.descend()?;
        let node = self.or();
        self.depth -= 1;
        node
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            let right = self.not()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ParseError> {
        if !self.eat_keyword("not") {
            return self.comparison();
        }
        self.descend()?;
        let inner = self.not();
        self.depth -= 1;
        Ok(Node::Not(Box::new(inner?)))
    }

    fn operator(&self) -> Option<(Operator, usize)> {
        let token = self.peek()?;
        match &token.kind {
            TokenKind::Equal => Some((Operator::Compare(CompareOp::Equal), 1)),
            TokenKind::NotEqual => Some((Operator::Compare(CompareOp::NotEqual), 1)),
            TokenKind::Name(word) => {
                if word.eq_ignore_ascii_case("in") {
                    Some((Operator::In { negated: false }, 1))
                } else if word.eq_ignore_ascii_case("not") && is_keyword(self.peek_at(1), "in") {
                    Some((Operator::In { negated: true }, 2))
                } else if word.eq_ignore_ascii_case("is") {
                    Some((Operator::Is, 1))
                } else {
                    WORD_OPERATORS
                        .iter()
                        .find(|(w, _)| w.eq_ignore_ascii_case(word))
                        .map(|(_, op)| (Operator::Compare(*op), 1))
                }
            }
            _ => None,
        }
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let left = self.value()?;
        let Some((operator, width)) = self.operator() else {
            return Ok(left);
        };
        let operator_column = self.column();
        self.pos += width;
        let node = match operator {
            Operator::Compare(op) => Node::Compare {
                op,
                left: Box::new(left),
                right: Box::new(self.value()?),
            },
            Operator::In { negated } => Node::In {
                value: Box::new(left),
                candidates: self.candidates()?,
                negated,
            },
            Operator::Is => {
                let negated = self.eat_keyword("not");
                if !self.eat_keyword("null") {
                    return Err(ParseError::new(
                        self.column(),
                        "expected `null` after `is` (write `is null` or `is not null`)",
                    ));
                }
                Node::IsNull {
                    value: Box::new(left),
                    negated,
                }
            }
        };
        if self.operator().is_some() {
            return Err(ParseError::new(
                self.column(),
                format!(
                    "comparisons cannot be chained (the one at column {operator_column} is complete): combine them with and / or"
                ),
            ));
        }
        Ok(node)
    }

    fn candidates(&mut self) -> Result<Candidates, ParseError> {
        if !self.eat(&TokenKind::OpenBracket) {
            return Ok(Candidates::List(Box::new(self.value()?)));
        }
        let open = self
            .tokens
            .get(self.pos.saturating_sub(1))
            .map_or(0, |t| t.column);
        let mut items = Vec::new();
        loop {
            if self.eat(&TokenKind::CloseBracket) {
                return Ok(Candidates::Items(items));
            }
            items.push(self.expression()?);
            if self.eat(&TokenKind::Comma) {
                continue;
            }
            if self.eat(&TokenKind::CloseBracket) {
                return Ok(Candidates::Items(items));
            }
            return Err(ParseError::new(
                self.column(),
                format!("expected , or ] to continue the list opened at column {open}"),
            ));
        }
    }

    /// A literal, a field, a function call, or a parenthesised expression.
    fn value(&mut self) -> Result<Node, ParseError> {
        let Some(token) = self.next() else {
            return Err(ParseError::new(
                self.end_column,
                "the expression ends too early: a value is missing",
            ));
        };
        let column = token.column;
        match &token.kind {
            TokenKind::Text(text) => Ok(Node::Text(text.as_str().into())),
            TokenKind::Number(n) => Ok(Node::Number(*n)),
            TokenKind::OpenParen => {
                let inner = self.expression()?;
                if !self.eat(&TokenKind::CloseParen) {
                    return Err(ParseError::new(
                        self.column(),
                        format!("expected ) to close the ( at column {column}"),
                    ));
                }
                Ok(inner)
            }
            TokenKind::OpenBracket => Err(ParseError::new(
                column,
                "a list [...] can only follow `in`, as in: Department in [\"Sales\", \"Support\"]",
            )),
            TokenKind::Name(name) => {
                if self.peek().is_some_and(|t| t.kind == TokenKind::OpenParen) {
                    return self.call(name, column);
                }
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => Ok(Node::Bool(true)),
                    "false" => Ok(Node::Bool(false)),
                    "null" => Ok(Node::Null),
                    word if KEYWORDS.contains(&word) => Err(ParseError::new(
                        column,
                        format!("expected a value, found the keyword `{name}`"),
                    )),
                    word if WORD_OPERATORS.iter().any(|(w, _)| *w == word) => Err(ParseError::new(
                        column,
                        format!(
                            "`{name}` goes between two values, as in: Email {word} \"x\"; or call it: {word}(Email, \"x\")"
                        ),
                    )),
                    _ => Ok(Node::Field(FieldRef {
                        is_id: name.eq_ignore_ascii_case("id"),
                        name: name.as_str().into(),
                    })),
                }
            }
            other => Err(ParseError::new(
                column,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    /// `name(args...)`; the current token is the `(`.
    fn call(&mut self, name: &str, column: usize) -> Result<Node, ParseError> {
        let Some(spec) = functions::find(name) else {
            let hint = match functions::suggest(name) {
                Some(known) => format!("; did you mean {known}?"),
                None => String::new(),
            };
            return Err(ParseError::new(
                column,
                format!("unknown function {name}{hint}"),
            ));
        };
        self.pos += 1;
        self.descend()?;
        let mut args = Vec::new();
        let mut columns = Vec::new();
        if !self.eat(&TokenKind::CloseParen) {
            loop {
                columns.push(self.column());
                args.push(self.expression()?);
                if self.eat(&TokenKind::Comma) {
                    continue;
                }
                if self.eat(&TokenKind::CloseParen) {
                    break;
                }
                return Err(ParseError::new(
                    self.column(),
                    format!(
                        "expected , or ) in the call to {} at column {column}",
                        spec.name
                    ),
                ));
            }
        }
        self.depth -= 1;
        let count = args.len();
        if count < spec.min || spec.max.is_some_and(|max| count > max) {
            let wanted = match spec.max {
                Some(max) if max == spec.min => format!("takes {max}"),
                Some(max) => format!("takes {} to {max}", spec.min),
                None => format!("takes at least {}", spec.min),
            };
            let plural = if spec.max.unwrap_or(spec.min) == 1 {
                ""
            } else {
                "s"
            };
            return Err(ParseError::new(
                column,
                format!(
                    "{} {wanted} argument{plural}, given {count}: {}",
                    spec.name,
                    functions::signature(spec.name)
                ),
            ));
        }
        self.build_call(spec.func, args, &columns)
    }

    fn build_call(
        &self,
        func: Func,
        mut args: Vec<Node>,
        columns: &[usize],
    ) -> Result<Node, ParseError> {
        let second_column = columns.get(1).copied().unwrap_or(self.end_column);
        match func {
            Func::Lookup => {
                let (Some(name), Some(key)) = (args.pop(), args.pop()) else {
                    return Ok(Node::Null);
                };
                let Node::Text(name) = name else {
                    return Err(ParseError::new(
                        second_column,
                        "the table name must be quoted text, as in lookup(Department, \"departments\")",
                    ));
                };
                let Some(table) = self.tables.get(&*name) else {
                    let known = if self.tables.is_empty() {
                        "no lookup tables are defined".to_owned()
                    } else {
                        let names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
                        format!("the tables are: {}", names.join(", "))
                    };
                    return Err(ParseError::new(
                        second_column,
                        format!("there is no lookup table named {name:?}; {known}"),
                    ));
                };
                Ok(Node::Lookup {
                    key: Box::new(key),
                    table: table.clone(),
                })
            }
            Func::FormatDate => {
                let (Some(format), Some(value)) = (args.pop(), args.pop()) else {
                    return Ok(Node::Null);
                };
                let Node::Text(format) = format else {
                    return Err(ParseError::new(
                        second_column,
                        "the date format must be quoted text, as in format_date(HireDate__c, \"%d/%m/%Y\")",
                    ));
                };
                let format = functions::compile_date_format(&format)
                    .map_err(|message| ParseError::new(second_column, message))?;
                Ok(Node::FormatDate {
                    value: Box::new(value),
                    format,
                })
            }
            Func::StartsWith | Func::EndsWith | Func::Contains => {
                let (Some(right), Some(left)) = (args.pop(), args.pop()) else {
                    return Ok(Node::Null);
                };
                let op = match func {
                    Func::StartsWith => CompareOp::StartsWith,
                    Func::EndsWith => CompareOp::EndsWith,
                    _ => CompareOp::Contains,
                };
                Ok(Node::Compare {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                })
            }
            _ => Ok(Node::Call { func, args }),
        }
    }
}
