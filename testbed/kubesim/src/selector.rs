//! Label and field selectors, parsed and matched the way `k8s.io/apimachinery` does it.
//!
//! Label selectors follow `pkg/labels`: a lexer with the same token set (including `gt`/`lt`,
//! written `>`/`<`), the same grammar and the same validation of keys and values, so that what
//! the real API server rejects is rejected here too. Field selectors follow `pkg/fields`
//! (`=`, `==`, `!=`, backslash escapes); unlike the real server, which knows a fixed set of field
//! labels per resource, any dotted path into the object is accepted.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::json;

/// Why a selector was rejected. `Display` reads like the real API server's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Label selector syntax outside a single requirement (e.g. after a `,`).
    #[error("{0}")]
    Syntax(String),
    /// A label requirement that does not parse or does not validate.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A `metav1.LabelSelector` object that is malformed or invalid.
    #[error("invalid label selector: {0}")]
    LabelSelectorObject(String),
    /// A field selector that does not parse or names an unusable field.
    #[error("{0}")]
    Field(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    /// Sorted and de-duplicated, like the `sets.String` the real parser uses.
    values: Vec<String>,
}

/// A parsed label selector: all requirements must hold (logical AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// `labels.Nothing()`: what a null `metav1.LabelSelector` converts to.
    nothing: bool,
}

impl LabelSelector {
    /// Parses a `labelSelector` query value. The empty string matches everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let requirements = Parser::new(s).parse()?;
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether `labels` (an object's `metadata.labels`; `None` when absent) satisfy the selector.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Converts a `metav1.LabelSelector` (`{matchLabels, matchExpressions}`), as
    /// `LabelSelectorAsSelector` does: `null` matches nothing, `{}` matches everything.
    pub fn from_label_selector_json(v: &Value) -> Result<LabelSelector, SelectorError> {
        let bad = SelectorError::LabelSelectorObject;
        let obj = match v {
            Value::Null => {
                return Ok(LabelSelector {
                    requirements: Vec::new(),
                    nothing: true,
                });
            }
            Value::Object(obj) => obj,
            other => {
                return Err(bad(format!(
                    "expected an object, got {}",
                    json::kind(other)
                )));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let Some(value) = value.as_str() else {
                        return Err(bad(format!("matchLabels[{key}]: value must be a string")));
                    };
                    requirements.push(
                        new_requirement(key, Operator::Equals, vec![value.to_owned()])
                            .map_err(bad)?,
                    );
                }
            }
            Some(other) => {
                return Err(bad(format!(
                    "matchLabels: expected an object, got {}",
                    json::kind(other)
                )));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression_requirement(expr).map_err(|e| {
                        SelectorError::LabelSelectorObject(format!("matchExpressions[{i}]: {e}"))
                    })?);
                }
            }
            Some(other) => {
                return Err(bad(format!(
                    "matchExpressions: expected an array, got {}",
                    json::kind(other)
                )));
            }
        }
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// True when the selector has no requirements and so matches every object.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (requirements in the order given), parseable again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let key = &r.key;
            let first = r.values.first().map(String::as_str).unwrap_or("");
            match r.op {
                Operator::Exists => write!(f, "{key}")?,
                Operator::DoesNotExist => write!(f, "!{key}")?,
                Operator::Equals => write!(f, "{key}={first}")?,
                Operator::DoubleEquals => write!(f, "{key}=={first}")?,
                Operator::NotEquals => write!(f, "{key}!={first}")?,
                Operator::GreaterThan => write!(f, "{key}>{first}")?,
                Operator::LessThan => write!(f, "{key}<{first}")?,
                Operator::In => write!(f, "{key} in ({})", r.values.join(","))?,
                Operator::NotIn => write!(f, "{key} notin ({})", r.values.join(","))?,
            }
        }
        Ok(())
    }
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).and_then(label_str);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.iter().any(|x| *x == v))
            }
            // Objects without the key satisfy negative requirements, as in k8s.
            Operator::NotIn | Operator::NotEquals => {
                value.is_none_or(|v| !self.values.iter().any(|x| *x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// Label values are strings; anything else (only possible in malformed objects) is compared by
/// its JSON text, and `null` counts as absent.
fn label_str(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn expression_requirement(expr: &Value) -> Result<Requirement, String> {
    let Value::Object(expr) = expr else {
        return Err(format!("expected an object, got {}", json::kind(expr)));
    };
    let key = match expr.get("key") {
        Some(Value::String(k)) => k,
        _ => return Err("key: Required value: must be a string".into()),
    };
    let op = match expr.get("operator").and_then(Value::as_str) {
        Some("In") => Operator::In,
        Some("NotIn") => Operator::NotIn,
        Some("Exists") => Operator::Exists,
        Some("DoesNotExist") => Operator::DoesNotExist,
        Some(other) => return Err(format!("{other:?} is not a valid label selector operator")),
        None => return Err("operator: Required value: must be a string".into()),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vals)) => vals
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("values: every value must be a string")?,
        Some(other) => {
            return Err(format!(
                "values: expected an array, got {}",
                json::kind(other)
            ));
        }
    };
    new_requirement(key, op, values)
}

/// `labels.NewRequirement`: checks operator arity and key/value syntax.
fn new_requirement(key: &str, op: Operator, values: Vec<String>) -> Result<Requirement, String> {
    validate_label_key(key)?;
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            return Err("exact-match compatibility requires one single value".into());
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err("values set must be empty for exists and does not exist".into());
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                return Err("for 'Gt', 'Lt' operators, exactly one value is required".into());
            }
            if values[0].parse::<i64>().is_err() {
                return Err(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {:?}",
                    values[0]
                ));
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let errs = label_value_errors(v);
        if !errs.is_empty() {
            return Err(format!(
                "values[{i}][{key}]: Invalid value: {v:?}: {}",
                errs.join("; ")
            ));
        }
    }
    let values: BTreeSet<String> = values.into_iter().collect();
    Ok(Requirement {
        key: key.to_owned(),
        op,
        values: values.into_iter().collect(),
    })
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let errs = qualified_name_errors(key);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("key: Invalid value: {key:?}: {}", errs.join("; ")))
    }
}

const NAME_CHARS_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape of label names and non-empty values.
fn is_label_name_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsQualifiedName`: `[prefix/]name`, prefix a DNS-1123 subdomain.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match value.split_once('/') {
        None => value,
        Some((prefix, name)) => {
            if name.contains('/') {
                return vec![format!(
                    "a qualified name {NAME_CHARS_MSG}, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                )];
            }
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else if let Some(e) = dns1123_subdomain_error(prefix) {
                errs.push(format!("prefix part {e}"));
            }
            name
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_owned());
    }
    if !name.is_empty() && !is_label_name_shape(name) {
        errs.push(format!("name part {NAME_CHARS_MSG}"));
    }
    errs
}

/// `validation.IsDNS1123Subdomain`: lowercase alphanumeric labels joined by '.', max 253.
fn dns1123_subdomain_error(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".to_owned());
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-')
    };
    if s.split('.').all(label_ok) {
        None
    } else {
        Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".to_owned(),
        )
    }
}

/// `validation.IsValidLabelValue`: empty, or a name-shaped string of at most 63 characters.
fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !v.is_empty() && !is_label_name_shape(v) {
        errs.push(format!(
            "a valid label must be an empty string or {NAME_CHARS_MSG}"
        ));
    }
    errs
}

// ---- label selector lexer and parser (mirrors pkg/labels/selector.go) ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    In,
    NotIn,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Gt,
    Lt,
    OpenPar,
    ClosePar,
    Comma,
    End,
}

/// In `Values` context the keywords `in`/`notin` are plain identifiers (so `in=notin` works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn symbol_token(s: &str) -> Option<Tok> {
    Some(match s {
        "!" => Tok::Bang,
        "=" => Tok::Equals,
        "==" => Tok::DoubleEquals,
        "!=" => Tok::NotEquals,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        "(" => Tok::OpenPar,
        ")" => Tok::ClosePar,
        "," => Tok::Comma,
        _ => return None,
    })
}

/// Splits the selector into tokens. Every single special character is a token of its own, so
/// lexing cannot fail; runs of specials take the longest known token (`!=`, `==`).
fn lex(s: &str) -> Vec<(Tok, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_whitespace(c) {
            i += 1;
        } else if is_special(c) {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let (tok, lit) = match symbol_token(&two) {
                Some(tok) if two.chars().count() == 2 => (tok, two),
                _ => (
                    symbol_token(&c.to_string()).unwrap_or(Tok::End),
                    c.to_string(),
                ),
            };
            i += lit.chars().count();
            out.push((tok, lit));
        } else {
            let start = i;
            while i < chars.len() && !is_whitespace(chars[i]) && !is_special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            out.push((tok, word));
        }
    }
    out.push((Tok::End, String::new()));
    out
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn new(s: &str) -> Parser {
        Parser {
            tokens: lex(s),
            pos: 0,
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        let (tok, lit) = &self.tokens[self.pos.min(self.tokens.len() - 1)];
        let tok = match (ctx, tok) {
            (Ctx::Values, Tok::In | Tok::NotIn) => Tok::Ident,
            _ => *tok,
        };
        (tok, lit.clone())
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let item = self.lookahead(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Bang => {
                    requirements.push(
                        self.parse_requirement()
                            .map_err(SelectorError::Requirement)?,
                    );
                    let (tok, lit) = self.consume(Ctx::Values);
                    match tok {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (next, lit) = self.lookahead(Ctx::Values);
                            if !matches!(next, Tok::Ident | Tok::Bang) {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{lit}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{lit}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return new_requirement(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(&key, op, values)
    }

    /// Returns the key and, for `!key` or a bare `key`, the operator already implied.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let mut op = None;
        if tok == Tok::Bang {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        validate_label_key(&lit)?;
        let (next, _) = self.lookahead(Ctx::Values);
        if op.is_none() && matches!(next, Tok::End | Tok::Comma) {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `( v1, v2 )` for `in`/`notin`; empty members (`(a,,b)`, `(,a)`) are the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, lit) = self.consume(Ctx::Values);
                if tok != Tok::ClosePar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosePar => {
                self.consume(Ctx::Values);
                Ok(Vec::new())
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// Reads up to (not including) the closing parenthesis.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit);
                    let (next, lit) = self.lookahead(Ctx::Values);
                    match next {
                        Tok::Comma => {}
                        Tok::ClosePar => return Ok(values),
                        _ => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Ctx::Values);
                    if next == Tok::ClosePar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Tok::Comma {
                        self.consume(Ctx::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing before `,`/end means "".
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (next, _) = self.lookahead(Ctx::Values);
        if matches!(next, Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---- field selectors (mirrors pkg/fields/selector.go) ----

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    negate: bool,
}

/// A parsed field selector: all terms must hold (logical AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value. The empty string matches everything.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        for part in split_terms(s) {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            if !is_field_path(field) {
                return Err(SelectorError::Field(format!(
                    "field label not supported: {field:?}"
                )));
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                value: unescape_value(raw)?,
                negate: op == "!=",
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Whether `obj` satisfies every term; missing fields compare as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (field_string(obj, &t.field) == t.value) != t.negate)
    }

    /// True when the selector has no terms and so matches every object.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value a `field=value` term pins `field` to (k8s `RequiresExactMatch`), e.g. to
    /// serve a `metadata.name=x` watch without scanning.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negate && t.field == field)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The string form with values re-escaped, parseable again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negate { "!=" } else { "=" };
            write!(f, "{}{op}", t.field)?;
            for c in t.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits on commas that are not backslash-escaped; escapes stay in place for `unescape_value`.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Finds the first operator, preferring `!=` and `==` over `=` at the same position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` are the only escapes; bare `,`/`=` are errors.
fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '=' {
            return Err(SelectorError::Field(format!(
                "invalid field selector: unescaped character in value: {c}"
            )));
        } else {
            out.push(c);
        }
    }
    if escaped {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".to_owned(),
        ));
    }
    Ok(out)
}

/// Dotted path of non-empty `[A-Za-z0-9_-]` segments. The real server would reject unknown
/// labels per resource; we only reject what cannot be a path (e.g. `""`, `a..b`, `name `).
fn is_field_path(s: &str) -> bool {
    s.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// The string form of the value at a dotted path: strings as-is, other scalars as JSON text,
/// missing or null as "".
fn field_string(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("labels must be an object"),
        }
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn every_operator_matches_like_k8s() {
        let l = labels(
            json!({"app": "db", "tier": "backend", "n": "5", "app.kubernetes.io/name": "pg"}),
        );
        // (selector, expected match against `l`)
        let cases = [
            ("app=db", true),
            ("app=web", false),
            ("app==db", true),
            ("app==web", false),
            ("app!=web", true),
            ("app!=db", false),
            ("app in (web,db)", true),
            ("app in (web)", false),
            ("app notin (web)", true),
            ("app notin (web,db)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("n<5", false),
            ("app>1", false), // not an integer label value
            ("app.kubernetes.io/name=pg", true),
            ("app=db,tier=backend", true),
            ("app=db,tier=frontend", false),
            ("app=db,!missing,tier in (backend)", true),
        ];
        for (s, want) in cases {
            assert_eq!(sel(s).matches(Some(&l)), want, "selector {s:?}");
        }
    }

    #[test]
    fn negative_operators_match_objects_without_the_key() {
        let l = labels(json!({"other": "x"}));
        for s in ["app!=db", "app notin (db,web)", "!app"] {
            assert!(sel(s).matches(Some(&l)), "{s:?} with labels lacking key");
            assert!(sel(s).matches(None), "{s:?} with no labels at all");
        }
        for s in ["app=db", "app in (db)", "app", "app==db", "app>1"] {
            assert!(!sel(s).matches(Some(&l)), "{s:?} needs the key");
            assert!(!sel(s).matches(None), "{s:?} needs labels");
        }
    }

    #[test]
    fn whitespace_around_tokens_is_allowed() {
        let l = labels(json!({"a": "1", "b": "2"}));
        for s in [
            " a = 1 , b == 2 ",
            "a\t!=\t3",
            "a in(1 , 3)",
            "  b  notin  ( 1 )  ",
            " ! c ",
            "\na\n",
        ] {
            assert!(sel(s).matches(Some(&l)), "{s:?}");
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   "] {
            let s = sel(s);
            assert!(s.is_empty());
            assert!(s.matches(None));
            assert!(s.matches(Some(&labels(json!({"a": "b"})))));
        }
        assert!(!sel("a").is_empty());
    }

    #[test]
    fn empty_values() {
        let empty = labels(json!({"a": ""}));
        let set = labels(json!({"a": "x"}));
        assert!(sel("a=").matches(Some(&empty)));
        assert!(!sel("a=").matches(Some(&set)));
        assert!(sel("a=,b!=").matches(Some(&empty)));
        assert!(sel("a in (x,)").matches(Some(&empty)));
        assert!(sel("a in (,x)").matches(Some(&empty)));
        assert!(!sel("a in (x,y)").matches(Some(&empty)));
    }

    #[test]
    fn keywords_are_identifiers_in_value_position() {
        let l = labels(json!({"in": "notin"}));
        assert!(sel("in=notin").matches(Some(&l)));
        assert!(sel("in in (notin)").matches(Some(&l)));
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        let bad = [
            "a==b==c",
            "in (",
            "=x",
            "a in b",
            "a in (b",
            "a in (b,c",
            "a notin ()",
            "a b=c",
            "a=b c",
            "a=b,",
            ",a=b",
            "a=b,,c=d",
            "!",
            "!a=b",
            "a=(b)",
            "a!b",
            "a>b",
            "a>",
            "-a=b",
            "a-=b",
            "a=b-",
            "a=-b",
            "A/b=c",
            "/b=c",
            "a/=c",
            "a/b/c=d",
            "ex_ample.com/a=b",
            "a=b c d",
            "a=é",
            "a in (b c)",
            "a in (b))",
        ];
        for s in bad {
            assert!(LabelSelector::parse(s).is_err(), "{s:?} should be rejected");
        }
        let long_name = "a".repeat(64);
        assert!(LabelSelector::parse(&format!("{long_name}=b")).is_err());
        assert!(LabelSelector::parse(&format!("a={long_name}")).is_err());
        let long_prefix = format!("{}/a=b", "p".repeat(254));
        assert!(LabelSelector::parse(&long_prefix).is_err());
        assert!(LabelSelector::parse(&format!("{}=b", "a".repeat(63))).is_ok());
    }

    #[test]
    fn error_messages_say_what_was_wrong() {
        let cases = [
            (
                "=x",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            ("a==b==c", "found '==', expected: ',' or 'end of string'"),
            (
                "a b=c",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            ("a=b,", "found '', expected: identifier after ','"),
            (
                "a notin ()",
                "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty",
            ),
        ];
        for (s, want) in cases {
            let got = LabelSelector::parse(s).unwrap_err().to_string();
            assert_eq!(got, want, "selector {s:?}");
        }
        let got = LabelSelector::parse("a=b_").unwrap_err().to_string();
        assert!(got.contains("values[0][a]: Invalid value: \"b_\""), "{got}");
        let got = LabelSelector::parse("Ex.com/a").unwrap_err().to_string();
        assert!(got.contains("prefix part"), "{got}");
    }

    #[test]
    fn qualified_keys_with_prefixes() {
        let l = labels(json!({
            "app.kubernetes.io/name": "patroni",
            "example.com/role": "master",
            "k8s.io/x_y.z": "v",
        }));
        for s in [
            "app.kubernetes.io/name=patroni",
            "example.com/role in (master,replica)",
            "k8s.io/x_y.z",
            "!other.io/thing",
            "a-b.c-d.example/Mixed_Case.name-1!=x",
        ] {
            assert!(sel(s).matches(Some(&l)), "{s:?}");
        }
        assert!(!sel("app.kubernetes.io/name=other").matches(Some(&l)));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a=b,c!=d,e in (f,g),h notin (i),j,!k,l==m,n>1,o<2",
            "p.io/q=",
        ] {
            let once = sel(s);
            assert_eq!(once.to_string(), s);
            assert_eq!(sel(&once.to_string()), once);
        }
    }

    #[test]
    fn metav1_label_selector_json() {
        let s = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "db"},
            "matchExpressions": [
                {"key": "role", "operator": "In", "values": ["master", "replica"]},
                {"key": "tier", "operator": "NotIn", "values": ["web"]},
                {"key": "cluster-name", "operator": "Exists"},
                {"key": "deleted", "operator": "DoesNotExist", "values": []},
            ],
        }))
        .unwrap();
        let ok = labels(json!({"app": "db", "role": "master", "cluster-name": "c"}));
        assert!(s.matches(Some(&ok)));
        let mut wrong_role = ok.clone();
        wrong_role.insert("role".into(), json!("other"));
        assert!(!s.matches(Some(&wrong_role)));
        let mut web = ok.clone();
        web.insert("tier".into(), json!("web"));
        assert!(!s.matches(Some(&web)));
        let mut deleted = ok.clone();
        deleted.insert("deleted".into(), json!("yes"));
        assert!(!s.matches(Some(&deleted)));
        let mut no_cluster = ok.clone();
        no_cluster.remove("cluster-name");
        assert!(!s.matches(Some(&no_cluster)));
        assert!(!s.is_empty());
    }

    #[test]
    fn metav1_label_selector_null_and_empty() {
        let nothing = LabelSelector::from_label_selector_json(&Value::Null).unwrap();
        assert!(!nothing.matches(None));
        assert!(!nothing.matches(Some(&labels(json!({"a": "b"})))));
        assert!(!nothing.is_empty());
        let everything = LabelSelector::from_label_selector_json(&json!({})).unwrap();
        assert!(everything.is_empty());
        assert!(everything.matches(Some(&labels(json!({"a": "b"})))));
    }

    #[test]
    fn metav1_label_selector_json_rejects_invalid() {
        let bad = [
            json!("app=db"),
            json!({"matchLabels": {"app": 1}}),
            json!({"matchLabels": {"bad key": "x"}}),
            json!({"matchLabels": {"a": "bad value"}}),
            json!({"matchLabels": []}),
            json!({"matchExpressions": {}}),
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
        ];
        for v in bad {
            assert!(
                LabelSelector::from_label_selector_json(&v).is_err(),
                "{v} should be rejected"
            );
        }
        let err = LabelSelector::from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"Gt\" is not a valid label selector operator")
        );
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "db-0", "namespace": "ns1", "labels": {"app": "db"}},
            "spec": {"nodeName": "node-a", "priority": 5, "hostNetwork": false},
            "status": {"phase": "Running"},
        })
    }

    #[test]
    fn field_selectors_match() {
        let p = pod();
        let cases = [
            ("", true),
            ("metadata.name=db-0", true),
            ("metadata.name==db-0", true),
            ("metadata.name=db-1", false),
            ("metadata.name!=db-1", true),
            ("metadata.name!=db-0", false),
            ("metadata.namespace=ns1", true),
            ("metadata.namespace=ns2", false),
            ("metadata.name=db-0,metadata.namespace=ns1", true),
            ("metadata.name=db-0,metadata.namespace!=ns1", false),
            ("status.phase=Running", true),
            ("status.phase!=Pending", true),
            ("spec.nodeName=node-a", true),
            ("spec.priority=5", true),
            ("spec.hostNetwork=false", true),
            ("spec.missing=", true),
            ("spec.missing!=", false),
            ("spec.missing=x", false),
            ("spec.missing!=x", true),
            ("status.phase.deeper=", true),
            ("metadata.name=db-0,", true),
        ];
        for (s, want) in cases {
            let fs = FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(fs.matches(&p), want, "selector {s:?}");
        }
        // Cluster-scoped objects have no namespace: it compares as "".
        let node = json!({"metadata": {"name": "n"}});
        assert!(
            FieldSelector::parse("metadata.namespace=")
                .unwrap()
                .matches(&node)
        );
    }

    #[test]
    fn field_selector_escapes() {
        let obj = json!({"metadata": {"name": "a,b=c\\d"}});
        let fs = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert!(fs.matches(&obj));
        assert_eq!(fs.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(fs.requires_exact_match("metadata.name"), Some("a,b=c\\d"));
    }

    #[test]
    fn field_selector_exact_match_and_empty() {
        let fs = FieldSelector::parse("metadata.name=x,metadata.namespace!=y").unwrap();
        assert_eq!(fs.requires_exact_match("metadata.name"), Some("x"));
        assert_eq!(fs.requires_exact_match("metadata.namespace"), None);
        assert!(!fs.is_empty());
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_field_selectors_are_rejected() {
        let bad = [
            "metadata.name",
            "metadata.name~x",
            "=x",
            "!=x",
            "metadata.name=a=b",
            "metadata.name==a,b",
            r"metadata.name=a\x",
            r"metadata.name=a\",
            "metadata..name=x",
            ".name=x",
            "metadata.name =x",
            "meta data=x",
        ];
        for s in bad {
            assert!(FieldSelector::parse(s).is_err(), "{s:?} should be rejected");
        }
        let err = FieldSelector::parse("a=b,oops").unwrap_err().to_string();
        assert_eq!(err, "invalid selector: 'a=b,oops'; can't understand 'oops'");
    }
}
