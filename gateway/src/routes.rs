//! `google.api.http` path templates: parsing, matching and the route table.
//!
//! The grammar is the one in `google/api/http.proto`:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```

use std::cmp::Ordering;
use std::fmt;

use http::Method;

/// One element of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Single,
    /// `**`: zero or more segments; only ever last.
    Multi,
}

impl Segment {
    /// Lower is more specific: a literal beats a variable.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Single => 1,
            Segment::Multi => 2,
        }
    }
}

/// A variable binds the segments `start..end` of the template to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: Vec<String>,
    start: usize,
    end: usize,
}

/// A parsed path template such as `/v1/{name=shelves/*/books/*}:publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// Why a template is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TemplateError(String);

fn bad(reason: impl Into<String>) -> TemplateError {
    TemplateError(reason.into())
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_plain_segment(piece: &str) -> Result<Segment, TemplateError> {
    match piece {
        "" => Err(bad("empty path segment")),
        "*" => Ok(Segment::Single),
        "**" => Ok(Segment::Multi),
        literal if literal.contains(['{', '}', '=']) => {
            Err(bad(format!("unexpected character in segment `{literal}`")))
        }
        literal => Ok(Segment::Literal(literal.to_owned())),
    }
}

impl PathTemplate {
    pub(crate) fn parse(template: &str) -> Result<Self, TemplateError> {
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| bad("a path template must start with `/`"))?;
        if rest.is_empty() {
            return Err(bad("a path template needs at least one segment"));
        }

        // The verb is a `:` after the last segment, which may itself be a
        // variable holding `/`s, so look past both the last `/` and `}`.
        let tail_start = rest.rfind('/').max(rest.rfind('}')).map_or(0, |i| i + 1);
        let (path, verb) = match rest[tail_start..].find(':') {
            Some(i) => {
                let verb = &rest[tail_start + i + 1..];
                if verb.is_empty() || verb.contains(['{', '}', '*', ':']) {
                    return Err(bad(format!("invalid verb `{verb}`")));
                }
                (&rest[..tail_start + i], Some(verb.to_owned()))
            }
            None => (rest, None),
        };

        let mut segments = Vec::new();
        let mut variables: Vec<Variable> = Vec::new();
        let mut remaining = path;
        loop {
            if let Some(after_brace) = remaining.strip_prefix('{') {
                let close = after_brace.find('}').ok_or_else(|| bad("unclosed `{`"))?;
                let inner = &after_brace[..close];
                if inner.contains('{') {
                    return Err(bad("nested variables are not allowed"));
                }
                let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                let field_path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if !field_path.iter().all(|p| valid_ident(p)) {
                    return Err(bad(format!("invalid field path `{field}`")));
                }
                if variables.iter().any(|v| v.field_path == field_path) {
                    return Err(bad(format!("field `{field}` is bound twice")));
                }
                let start = segments.len();
                for piece in pattern.split('/') {
                    segments.push(parse_plain_segment(piece)?);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    end: segments.len(),
                });
                remaining = &after_brace[close + 1..];
                match remaining.strip_prefix('/') {
                    Some(next) => remaining = next,
                    None if remaining.is_empty() => break,
                    None => return Err(bad("a variable must fill a whole segment")),
                }
            } else {
                let (piece, next) = match remaining.split_once('/') {
                    Some((piece, next)) => (piece, Some(next)),
                    None => (remaining, None),
                };
                segments.push(parse_plain_segment(piece)?);
                match next {
                    Some(next) => remaining = next,
                    None => break,
                }
            }
        }

        if let Some(i) = segments.iter().position(|s| *s == Segment::Multi)
            && i + 1 != segments.len()
        {
            return Err(bad("`**` may only be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            segments,
            variables,
            verb,
        })
    }

    /// The template as written, used as the route's label.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The field paths bound by the template, in capture order.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &[String]> {
        self.variables.iter().map(|v| v.field_path.as_slice())
    }

    /// Matches a request path (still percent-encoded) and returns one
    /// decoded value per variable, or `None`.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<String>> {
        let rest = path.strip_prefix('/')?;
        let mut raw: Vec<&str> = rest.split('/').collect();
        if let Some(verb) = &self.verb {
            let last = raw.last_mut()?;
            *last = last.strip_suffix(verb.as_str())?.strip_suffix(':')?;
        }

        let multi = self.segments.last() == Some(&Segment::Multi);
        let fixed = if multi {
            self.segments.len() - 1
        } else {
            self.segments.len()
        };
        if raw.len() < fixed || (!multi && raw.len() != fixed) {
            return None;
        }
        for (segment, value) in self.segments[..fixed].iter().zip(&raw) {
            match segment {
                Segment::Literal(literal) => {
                    if *value != literal.as_str()
                        && decode(value, true).as_deref() != Some(literal.as_str())
                    {
                        return None;
                    }
                }
                Segment::Single => {
                    if value.is_empty() {
                        return None;
                    }
                }
                Segment::Multi => return None,
            }
        }

        self.variables
            .iter()
            .map(|v| {
                let end = if multi && v.end == self.segments.len() {
                    raw.len()
                } else {
                    v.end
                };
                let parts = &raw[v.start..end];
                if let [one] = parts
                    && v.end - v.start == 1
                    && self.segments[v.start] != Segment::Multi
                {
                    decode(one, true)
                } else {
                    // Per http.proto a multi-segment capture keeps `%2F`
                    // so that an encoded slash stays distinct from a real
                    // one.
                    decode(&parts.join("/"), false)
                }
            })
            .collect()
    }

    /// Orders templates most specific first: segment by segment a literal
    /// beats `*`, which beats `**`; then a verb beats no verb.
    fn specificity(&self, other: &Self) -> Ordering {
        let mine = self.segments.iter().map(Segment::rank);
        let theirs = other.segments.iter().map(Segment::rank);
        mine.cmp(theirs)
            .then_with(|| other.verb.is_some().cmp(&self.verb.is_some()))
            .then_with(|| self.source.cmp(&other.source))
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Percent-decodes `s` into UTF-8; `None` when the escapes or the UTF-8 are
/// bad. With `decode_slash` false, `%2F` is left as is.
pub(crate) fn decode(s: &str, decode_slash: bool) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte == b'/' && !decode_slash {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the table says about a request.
#[derive(Debug)]
pub(crate) enum Match<'a, T> {
    Found {
        template: &'a PathTemplate,
        target: &'a T,
        captures: Vec<String>,
    },
    /// The path matches some route, but not with this method.
    MethodNotAllowed {
        allowed: Vec<Method>,
    },
    NotFound,
}

/// Routes kept most specific first, so the first hit is the best one.
#[derive(Debug)]
pub(crate) struct RouteTable<T> {
    entries: Vec<(Method, PathTemplate, T)>,
    /// Every custom verb some route has. A path ending in `:<one of them>`
    /// asks for that verb: a route without it never matches, so
    /// `DELETE /v1/users/{id}:disable` cannot reach the route of
    /// `DELETE /v1/users/{id}` with `{id}` = `<id>:disable`.
    verbs: Vec<String>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            verbs: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    pub(crate) fn insert(&mut self, method: Method, template: PathTemplate, target: T) {
        if let Some(verb) = &template.verb
            && !self.verbs.contains(verb)
        {
            self.verbs.push(verb.clone());
        }
        let at = self
            .entries
            .partition_point(|(_, t, _)| t.specificity(&template) != Ordering::Greater);
        self.entries.insert(at, (method, template, target));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Method, &PathTemplate, &T)> {
        self.entries.iter().map(|(m, p, t)| (m, p, t))
    }

    /// Whether `path` names one of the table's custom verbs.
    fn asks_for_verb(&self, path: &str) -> bool {
        let last = path.rsplit('/').next().unwrap_or_default();
        last.rsplit_once(':')
            .is_some_and(|(_, verb)| self.verbs.iter().any(|v| v == verb))
    }

    /// The routes whose template matches `path`, with the captures.
    fn matching<'a, 'p>(
        &'a self,
        path: &'p str,
    ) -> impl Iterator<Item = (&'a Method, &'a PathTemplate, &'a T, Vec<String>)> + use<'a, 'p, T>
    {
        let verb = self.asks_for_verb(path);
        self.entries
            .iter()
            .filter_map(move |(method, template, target)| {
                if verb && template.verb.is_none() {
                    return None;
                }
                template
                    .matches(path)
                    .map(|captures| (method, template, target, captures))
            })
    }

    /// Every method some route takes on `path`, in table order.
    pub(crate) fn methods(&self, path: &str) -> Vec<Method> {
        let mut methods: Vec<Method> = Vec::new();
        for (method, ..) in self.matching(path) {
            if !methods.contains(method) {
                methods.push(method.clone());
            }
        }
        methods
    }

    pub(crate) fn find(&self, method: &Method, path: &str) -> Match<'_, T> {
        let mut allowed = Vec::new();
        for (route_method, template, target, captures) in self.matching(path) {
            if route_method == method {
                return Match::Found {
                    template,
                    target,
                    captures,
                };
            }
            if !allowed.contains(route_method) {
                allowed.push(route_method.clone());
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed { allowed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap()
    }

    #[test]
    fn parses_literals_variables_and_verbs() {
        let p = t("/v1/auth:signUp");
        assert_eq!(
            p.segments,
            vec![
                Segment::Literal("v1".into()),
                Segment::Literal("auth".into())
            ]
        );
        assert_eq!(p.verb.as_deref(), Some("signUp"));

        let p = t("/.well-known/jwks.json");
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.verb, None);

        let p = t("/v1/{name=shelves/*/books/*}:publish");
        assert_eq!(p.segments.len(), 5);
        assert_eq!(p.variables[0].start, 1);
        assert_eq!(p.variables[0].end, 5);
        assert_eq!(p.verb.as_deref(), Some("publish"));

        let p = t("/v1/documents/{document.id}");
        assert_eq!(p.variables().next().unwrap(), ["document", "id"]);
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "v1/x",
            "/",
            "/v1//x",
            "/v1/{id",
            "/v1/{a.}",
            "/v1/{1a}",
            "/v1/**/x",
            "/v1/{id}x",
            "/v1/x:",
            "/v1/{a}/{a}",
            "/v1/{a={b}}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn matches_variables_and_nested_fields() {
        assert_eq!(
            t("/v1/items/{id}").matches("/v1/items/42"),
            Some(vec!["42".into()])
        );
        assert_eq!(t("/v1/items/{id}").matches("/v1/items/"), None);
        assert_eq!(t("/v1/items/{id}").matches("/v1/items/4/2"), None);
        assert_eq!(t("/v1/items/{id}").matches("/v1/other/42"), None);
        assert_eq!(
            t("/v1/{a.b=shelves/*}/books/{c}").matches("/v1/shelves/s1/books/b2"),
            Some(vec!["shelves/s1".into(), "b2".into()])
        );
        assert_eq!(t("/v1/{a.b=shelves/*}").matches("/v1/racks/s1"), None);
    }

    #[test]
    fn double_star_takes_the_rest() {
        let p = t("/v1/files/{path=**}");
        assert_eq!(
            p.matches("/v1/files/a/b/c.txt"),
            Some(vec!["a/b/c.txt".into()])
        );
        assert_eq!(p.matches("/v1/files"), Some(vec![String::new()]));
        let p = t("/v1/{name=files/**}");
        assert_eq!(p.matches("/v1/files/x/y"), Some(vec!["files/x/y".into()]));
        assert_eq!(t("/v1/**").matches("/v1/anything/at/all"), Some(vec![]));
    }

    #[test]
    fn a_custom_verb_never_matches_a_route_without_it() {
        let mut table = RouteTable::default();
        table.insert(Method::DELETE, t("/v1/users/{id}"), "delete");
        table.insert(Method::GET, t("/v1/users/{id}"), "get");
        table.insert(Method::POST, t("/v1/users/{id}:disable"), "disable");
        // The verb's own route, and only it.
        assert!(matches!(
            table.find(&Method::POST, "/v1/users/u1:disable"),
            Match::Found {
                target: &"disable",
                ..
            }
        ));
        match table.find(&Method::DELETE, "/v1/users/u1:disable") {
            Match::MethodNotAllowed { allowed } => assert_eq!(allowed, [Method::POST]),
            other => panic!("DELETE reached {other:?}"),
        }
        assert_eq!(table.methods("/v1/users/u1:disable"), [Method::POST]);
        // An unknown suffix is not a verb: it is part of the id.
        assert!(matches!(
            table.find(&Method::DELETE, "/v1/users/u1:other"),
            Match::Found {
                target: &"delete",
                ..
            }
        ));
    }

    #[test]
    fn verbs_must_be_present_and_exact() {
        let p = t("/v1/items/{id}:archive");
        assert_eq!(p.matches("/v1/items/7:archive"), Some(vec!["7".into()]));
        assert_eq!(p.matches("/v1/items/7"), None);
        assert_eq!(p.matches("/v1/items/7:restore"), None);
        let p = t("/v1/auth:signUp");
        assert_eq!(p.matches("/v1/auth:signUp"), Some(vec![]));
        assert_eq!(p.matches("/v1/auth"), None);
    }

    #[test]
    fn percent_decodes_captures() {
        let p = t("/v1/items/{id}");
        assert_eq!(p.matches("/v1/items/a%20b%2Fc"), Some(vec!["a b/c".into()]));
        assert_eq!(p.matches("/v1/items/caf%C3%A9"), Some(vec!["café".into()]));
        // Bad escapes and bad UTF-8 do not match rather than panic.
        assert_eq!(p.matches("/v1/items/%zz"), None);
        assert_eq!(p.matches("/v1/items/%ff"), None);
        assert_eq!(p.matches("/v1/items/%4"), None);
        // A multi-segment capture keeps encoded slashes distinct.
        let p = t("/v1/files/{path=**}");
        assert_eq!(
            p.matches("/v1/files/a%2Fb/c%20d"),
            Some(vec!["a%2Fb/c d".into()])
        );
        // Literals match their encoded form too.
        assert_eq!(t("/v1/a b").matches("/v1/a%20b"), Some(vec![]));
    }

    #[test]
    fn most_specific_route_wins() {
        let mut table = RouteTable::default();
        table.insert(Method::GET, t("/v1/items/{id}"), "get");
        table.insert(Method::GET, t("/v1/items/{path=**}"), "files");
        table.insert(Method::GET, t("/v1/items/special"), "special");
        table.insert(Method::POST, t("/v1/items/{id}:archive"), "archive");
        table.insert(Method::POST, t("/v1/items"), "create");

        let target = |m: Method, p: &str| match table.find(&m, p) {
            Match::Found { target, .. } => Some(*target),
            _ => None,
        };
        assert_eq!(target(Method::GET, "/v1/items/special"), Some("special"));
        assert_eq!(target(Method::GET, "/v1/items/other"), Some("get"));
        assert_eq!(target(Method::GET, "/v1/items/a/b"), Some("files"));
        assert_eq!(target(Method::POST, "/v1/items/x:archive"), Some("archive"));
        assert_eq!(target(Method::POST, "/v1/items"), Some("create"));

        match table.find(&Method::DELETE, "/v1/items/x") {
            Match::MethodNotAllowed { allowed } => assert_eq!(allowed, vec![Method::GET]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table.find(&Method::GET, "/v2/nothing"),
            Match::NotFound
        ));
        assert!(matches!(
            table.find(&Method::GET, "no-slash"),
            Match::NotFound
        ));
    }
}
