//! HTTPRequestRedirectFilter: builds the `Location` of a redirect from the request and the filter,
//! with the specification's defaults (scheme and host of the request; the well-known port of a
//! changed scheme, else the listener's port; ports 80 for http and 443 for https left out).

use super::path::PathModifier;
use http::StatusCode;

/// A compiled redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// New scheme, if any.
    pub scheme: Option<String>,
    /// New host, if any.
    pub hostname: Option<String>,
    /// New port, if any.
    pub port: Option<u16>,
    /// Path change, if any.
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// What the redirect needs to know about the request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// `http` or `https`: the listener's protocol.
    pub scheme: &'a str,
    /// The request's host, lower-case, without port.
    pub host: &'a str,
    /// The listener's port.
    pub listener_port: u16,
    /// The request path.
    pub path: &'a str,
    /// The request query, without `?`.
    pub query: Option<&'a str>,
    /// The prefix the route matched (see [`PathModifier::apply`]).
    pub matched_prefix: Option<&'a str>,
}

impl Redirect {
    /// The `Location` header value.
    pub fn location(&self, req: RequestFacts<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = self.hostname.as_deref().unwrap_or(req.host);
        let default = match self.scheme.as_deref() {
            Some("http") => 80,
            Some("https") => 443,
            _ => req.listener_port,
        };
        let port = self.port.unwrap_or(default);
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = self.path.as_ref().map_or_else(
            || req.path.to_owned(),
            |m| m.apply(req.path, req.matched_prefix),
        );
        let mut out = format!("{scheme}://{host}");
        if !default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path);
        if let Some(q) = req.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(listener_port: u16, path: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            scheme: "http",
            host: "example.com",
            listener_port,
            path,
            query: None,
            matched_prefix: Some("/old"),
        }
    }

    fn redirect(scheme: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme: scheme.map(str::to_owned),
            hostname: None,
            port,
            path: None,
            status: StatusCode::FOUND,
        }
    }

    #[test]
    fn default_ports_follow_the_specification() {
        // No scheme, no port: the listener's port, left out when it is the scheme's default.
        assert_eq!(
            redirect(None, None).location(facts(80, "/a")),
            "http://example.com/a"
        );
        assert_eq!(
            redirect(None, None).location(facts(8080, "/a")),
            "http://example.com:8080/a"
        );
        // A scheme without a port: that scheme's well-known port, left out.
        assert_eq!(
            redirect(Some("https"), None).location(facts(8080, "/a")),
            "https://example.com/a"
        );
        // An explicit port is kept unless it is the scheme's default.
        assert_eq!(
            redirect(Some("https"), Some(8443)).location(facts(80, "/a")),
            "https://example.com:8443/a"
        );
        assert_eq!(
            redirect(None, Some(80)).location(facts(8080, "/a")),
            "http://example.com/a"
        );
        assert_eq!(
            redirect(Some("https"), Some(80)).location(facts(80, "/a")),
            "https://example.com:80/a"
        );
    }

    #[test]
    fn host_path_and_query() {
        let r = Redirect {
            scheme: None,
            hostname: Some("other.example".into()),
            port: None,
            path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
            status: StatusCode::MOVED_PERMANENTLY,
        };
        let mut f = facts(80, "/old/x");
        f.query = Some("a=1");
        assert_eq!(r.location(f), "http://other.example/new/x?a=1");
    }
}
