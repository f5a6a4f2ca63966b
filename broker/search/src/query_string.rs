//! The query string syntaxes, parsed to a small tree the DSL translator expands over fields.
//!
//! `query_string`: terms, `"phrases"`, `field:value`, `prefix*`, `AND`/`OR`/`NOT`, `&&`/`||`,
//! `+must`, `-must_not`, parentheses. `simple_query_string`: terms, phrases, `prefix*`,
//! `+` (and), `|` (or), `-` (not), parentheses; it never fails on odd syntax, it reads it as text.

use crate::error::SearchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occ {
    Must,
    MustNot,
    Should,
    /// Decided by `default_operator`.
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Term { field: Option<String>, text: String },
    Phrase { field: Option<String>, text: String },
    Prefix { field: Option<String>, text: String },
    Bool { clauses: Vec<(Occ, Node)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Colon,
    Plus,
    Minus,
    And,
    Or,
    Not,
}

fn lex(input: &str, simple: bool) -> Result<Vec<Tok>, SearchError> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ':' if !simple => {
                out.push(Tok::Colon);
                i += 1;
            }
            '+' => {
                out.push(if simple { Tok::And } else { Tok::Plus });
                i += 1;
            }
            // Only at the start of a token: inside a word a dash is text (boundary-layer).
            '-' | '!' => {
                out.push(Tok::Minus);
                i += 1;
            }
            '|' => {
                out.push(Tok::Or);
                i += if chars.get(i + 1) == Some(&'|') { 2 } else { 1 };
            }
            '&' if !simple && chars.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2;
            }
            '"' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '"' {
                    j += 1;
                }
                if j == chars.len() && !simple {
                    return Err(SearchError::bad(format!(
                        "[query_string] unterminated quote in \"{input}\""
                    )));
                }
                out.push(Tok::Quoted(chars[start..j].iter().collect()));
                i = j + 1;
            }
            _ => {
                let mut word = String::new();
                while i < chars.len() {
                    let c = chars[i];
                    if c.is_whitespace()
                        || matches!(c, '(' | ')' | '"' | '|')
                        || (c == ':' && !simple)
                    {
                        break;
                    }
                    if c == '\\' && i + 1 < chars.len() {
                        word.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                out.push(match (simple, word.as_str()) {
                    (false, "AND") => Tok::And,
                    (false, "OR") => Tok::Or,
                    (false, "NOT") => Tok::Not,
                    _ => Tok::Word(word),
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    simple: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn err(&self, what: &str) -> SearchError {
        let clause = if self.simple {
            "simple_query_string"
        } else {
            "query_string"
        };
        SearchError::bad(format!("[{clause}] {what}"))
    }

    fn or_expr(&mut self) -> Result<Node, SearchError> {
        let mut groups = vec![self.and_expr()?];
        while self.peek() == Some(&Tok::Or) {
            self.next();
            groups.push(self.and_expr()?);
        }
        Ok(if groups.len() == 1 {
            groups.pop().expect("one group")
        } else {
            Node::Bool {
                clauses: groups.into_iter().map(|g| (Occ::Should, g)).collect(),
            }
        })
    }

    fn and_expr(&mut self) -> Result<Node, SearchError> {
        let mut clauses: Vec<(Occ, Node)> = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Or) | Some(Tok::Close) => break,
                Some(Tok::And) => {
                    self.next();
                    // AND makes both neighbours required.
                    if let Some(last) = clauses.last_mut() {
                        if last.0 == Occ::Default {
                            last.0 = Occ::Must;
                        }
                    }
                    let (occ, node) = self.unary()?;
                    clauses.push((if occ == Occ::Default { Occ::Must } else { occ }, node));
                }
                Some(_) => clauses.push(self.unary()?),
            }
        }
        match clauses.len() {
            0 => Err(self.err("expected a term")),
            1 if matches!(clauses[0].0, Occ::Default | Occ::Must | Occ::Should) => {
                Ok(clauses.pop().expect("one clause").1)
            }
            _ => Ok(Node::Bool { clauses }),
        }
    }

    fn unary(&mut self) -> Result<(Occ, Node), SearchError> {
        match self.peek() {
            Some(Tok::Plus) => {
                self.next();
                Ok((Occ::Must, self.primary()?))
            }
            Some(Tok::Minus) | Some(Tok::Not) => {
                self.next();
                Ok((Occ::MustNot, self.primary()?))
            }
            _ => Ok((Occ::Default, self.primary()?)),
        }
    }

    fn primary(&mut self) -> Result<Node, SearchError> {
        match self.next() {
            Some(Tok::Open) => {
                let inner = self.or_expr()?;
                match self.next() {
                    Some(Tok::Close) => Ok(inner),
                    _ if self.simple => Ok(inner),
                    _ => Err(self.err("missing closing parenthesis")),
                }
            }
            Some(Tok::Quoted(text)) => Ok(Node::Phrase { field: None, text }),
            Some(Tok::Word(w)) => {
                if self.peek() == Some(&Tok::Colon) {
                    self.next();
                    let field = Some(w);
                    return match self.next() {
                        Some(Tok::Quoted(text)) => Ok(Node::Phrase { field, text }),
                        Some(Tok::Word(text)) => Ok(word(field, text)),
                        Some(Tok::Open) => {
                            let inner = self.or_expr()?;
                            if self.next() != Some(Tok::Close) {
                                return Err(self.err("missing closing parenthesis"));
                            }
                            Ok(with_field(inner, field))
                        }
                        _ => Err(self.err("expected a value after ':'")),
                    };
                }
                Ok(word(None, w))
            }
            Some(t) if self.simple => Ok(word(None, tok_text(&t))),
            Some(t) => Err(self.err(&format!("unexpected '{}'", tok_text(&t)))),
            None => Err(self.err("unexpected end of query")),
        }
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Quoted(w) => w.clone(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Colon => ":".into(),
        Tok::Plus => "+".into(),
        Tok::Minus => "-".into(),
        Tok::And => "AND".into(),
        Tok::Or => "OR".into(),
        Tok::Not => "NOT".into(),
    }
}

fn word(field: Option<String>, text: String) -> Node {
    match text.strip_suffix('*') {
        Some(p) if !p.is_empty() && !p.contains('*') => Node::Prefix {
            field,
            text: p.to_string(),
        },
        _ => Node::Term { field, text },
    }
}

fn with_field(node: Node, field: Option<String>) -> Node {
    match node {
        Node::Term { field: None, text } => Node::Term { field, text },
        Node::Phrase { field: None, text } => Node::Phrase { field, text },
        Node::Prefix { field: None, text } => Node::Prefix { field, text },
        Node::Bool { clauses } => Node::Bool {
            clauses: clauses
                .into_iter()
                .map(|(o, n)| (o, with_field(n, field.clone())))
                .collect(),
        },
        other => other,
    }
}

pub fn parse(input: &str, simple: bool) -> Result<Node, SearchError> {
    let toks = lex(input, simple)?;
    let mut p = Parser {
        toks,
        pos: 0,
        simple,
    };
    if p.toks.is_empty() {
        return Err(p.err("query is empty"));
    }
    let node = p.or_expr()?;
    if p.pos < p.toks.len() {
        if simple {
            // Stray closing parentheses: read the rest as more terms.
            let mut clauses = vec![(Occ::Default, node)];
            while p.pos < p.toks.len() {
                if p.peek() == Some(&Tok::Close) {
                    p.next();
                    continue;
                }
                clauses.push((Occ::Default, p.or_expr()?));
            }
            return Ok(Node::Bool { clauses });
        }
        return Err(p.err("unexpected ')'"));
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Node {
        Node::Term {
            field: None,
            text: s.into(),
        }
    }

    #[test]
    fn operators_fields_and_groups() {
        let n = parse("title:wing AND (lift OR drag) -noise", false).unwrap();
        assert_eq!(
            n,
            Node::Bool {
                clauses: vec![
                    (
                        Occ::Must,
                        Node::Term {
                            field: Some("title".into()),
                            text: "wing".into()
                        }
                    ),
                    (
                        Occ::Must,
                        Node::Bool {
                            clauses: vec![(Occ::Should, t("lift")), (Occ::Should, t("drag"))]
                        }
                    ),
                    (Occ::MustNot, t("noise")),
                ]
            }
        );
    }

    #[test]
    fn phrases_and_prefixes() {
        assert_eq!(
            parse("\"boundary layer\" flow*", false).unwrap(),
            Node::Bool {
                clauses: vec![
                    (
                        Occ::Default,
                        Node::Phrase {
                            field: None,
                            text: "boundary layer".into()
                        }
                    ),
                    (
                        Occ::Default,
                        Node::Prefix {
                            field: None,
                            text: "flow".into()
                        }
                    ),
                ]
            }
        );
    }

    #[test]
    fn bad_syntax_is_refused_and_simple_syntax_never_fails() {
        assert!(parse("(wing", false).is_err());
        assert!(parse("\"open", false).is_err());
        assert!(parse("(wing", true).is_ok());
        assert!(parse("wing | lift + -drag", true).is_ok());
        assert!(parse("a ) b", true).is_ok());
    }
}
