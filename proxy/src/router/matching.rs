//! Request matchers compiled from `serval.config.v1.RouteMatch`: path (exact, element-wise prefix,
//! regex), headers, query parameters and method. Regexes are compiled once, anchored to the whole
//! value.

use http::{HeaderMap, Method};
use regex::Regex;

/// A compiled HTTPRoute match.
#[derive(Debug, Default)]
pub struct RouteMatch {
    /// Path condition.
    pub path: Option<PathMatch>,
    /// Header conditions (name lower-case).
    pub headers: Vec<(http::HeaderName, ValueMatch)>,
    /// Query parameter conditions.
    pub query_params: Vec<(String, ValueMatch)>,
    /// Method condition.
    pub method: Option<Method>,
}

/// A path condition.
#[derive(Debug)]
pub enum PathMatch {
    /// Equal.
    Exact(String),
    /// Element-wise prefix, stored without a trailing `/` (empty for `/`).
    Prefix(String),
    /// Whole-path regex.
    Regex(Regex),
}

/// A header or query value condition.
#[derive(Debug)]
pub enum ValueMatch {
    /// Equal.
    Exact(String),
    /// Whole-value regex.
    Regex(Regex),
}

impl PathMatch {
    /// A prefix match of `value` (which starts with `/`).
    pub fn prefix(value: &str) -> Self {
        Self::Prefix(value.trim_end_matches('/').to_owned())
    }

    /// True if `path` satisfies the condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(v) => path == v,
            // "/foo" matches "/foo", "/foo/" and "/foo/bar", not "/foobar".
            Self::Prefix(p) => {
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            Self::Regex(r) => r.is_match(path),
        }
    }
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::Regex(r) => r.is_match(value),
        }
    }
}

impl RouteMatch {
    /// True if every condition holds.
    pub fn matches(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        if self.path.as_ref().is_some_and(|p| !p.matches(path)) {
            return false;
        }
        for (name, cond) in &self.headers {
            // Several values of one header are joined with ",", as RFC 9110 allows.
            let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let Some(first) = values.next() else {
                return false;
            };
            let joined;
            let value = match values.next() {
                None => first,
                Some(second) => {
                    joined = std::iter::once(first)
                        .chain(std::iter::once(second))
                        .chain(values)
                        .collect::<Vec<_>>()
                        .join(",");
                    joined.as_str()
                }
            };
            if !cond.matches(value) {
                return false;
            }
        }
        for (name, cond) in &self.query_params {
            let found = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(k, _)| percent_decode(k) == *name)
                .map(|(_, v)| percent_decode(v));
            match found {
                Some(v) if cond.matches(&v) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Decodes `%XX` escapes and `+` (as in application/x-www-form-urlencoded); invalid escapes stay.
fn percent_decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path: Some(path),
            ..Default::default()
        }
    }

    fn get(rm: &RouteMatch, path: &str) -> bool {
        rm.matches(&Method::GET, path, None, &HeaderMap::new())
    }

    #[test]
    fn prefix_is_element_wise() {
        let p = m(PathMatch::prefix("/foo"));
        assert!(get(&p, "/foo"));
        assert!(get(&p, "/foo/"));
        assert!(get(&p, "/foo/bar"));
        assert!(!get(&p, "/foobar"));
        let p = m(PathMatch::prefix("/foo/"));
        assert!(get(&p, "/foo") && get(&p, "/foo/bar") && !get(&p, "/foobar"));
        let root = m(PathMatch::prefix("/"));
        assert!(get(&root, "/") && get(&root, "/anything"));
    }

    #[test]
    fn exact_is_case_sensitive_and_whole() {
        let p = m(PathMatch::Exact("/one".into()));
        assert!(get(&p, "/one"));
        assert!(!get(&p, "/one/") && !get(&p, "/One") && !get(&p, "/one/x"));
    }

    #[test]
    fn headers_query_and_method() {
        let rm = RouteMatch {
            headers: vec![(
                http::HeaderName::from_static("version"),
                ValueMatch::Exact("two".into()),
            )],
            query_params: vec![(
                "a b".into(),
                ValueMatch::Regex(serval_common::validate::whole_value_regex("x+").expect("regex")),
            )],
            method: Some(Method::POST),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("version", http::HeaderValue::from_static("two"));
        assert!(rm.matches(&Method::POST, "/", Some("c=1&a%20b=xx"), &h));
        assert!(!rm.matches(&Method::GET, "/", Some("a+b=xx"), &h));
        assert!(!rm.matches(&Method::POST, "/", Some("a+b=xy"), &h));
        assert!(!rm.matches(&Method::POST, "/", Some("a+b=xx"), &HeaderMap::new()));
        assert!(rm.matches(&Method::POST, "/", Some("a+b=xx"), &h));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
