//! HTTPCORSFilter (GEP-1767): answers preflight requests at the gateway and adds the
//! `Access-Control-*` headers to actual cross-origin responses.
//!
//! A preflight (an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`) never reaches
//! the backend: an allowed origin gets 204 with the policy's headers, any other origin gets 204
//! without them, which the browser treats as a refusal. Requests without `Origin` are not touched.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

/// A compiled CORS policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Allowed origins, lower-case: `*`, exact `scheme://host[:port]`, or with a `*.` host wildcard.
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: bool,
    /// Allowed methods, or `*`.
    pub allow_methods: Vec<String>,
    /// Allowed request headers, or `*`.
    pub allow_headers: Vec<String>,
    /// Exposed response headers, or `*`.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age`.
    pub max_age_seconds: u32,
}

/// What the policy decides about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a cross-origin request (no `Origin`): nothing to do.
    None,
    /// A preflight: answer it with these headers (empty when the origin is not allowed).
    Preflight(HeaderMap),
    /// An actual request: forward it and add these headers to the response.
    Actual(HeaderMap),
}

const WILDCARD: &str = "*";

impl CorsPolicy {
    /// Decides what to do with a request.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> Decision {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return Decision::None;
        };
        let requested_method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        let preflight = *method == Method::OPTIONS && requested_method.is_some();
        let mut out = HeaderMap::new();
        if !self.allows_origin(origin) {
            return if preflight {
                Decision::Preflight(out)
            } else {
                Decision::Actual(out)
            };
        }
        let wildcard_origin = self.allow_origins.iter().any(|o| o == WILDCARD);
        if wildcard_origin && !self.allow_credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if let Ok(v) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.allow_credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        // With credentials a browser takes "*" literally, so the wildcard lists echo the request.
        let expose = self.list(&self.expose_headers, None);
        if let Some(v) = expose {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
        if !preflight {
            return Decision::Actual(out);
        }
        if let Some(v) = self.list(&self.allow_methods, requested_method) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        let requested_headers = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if let Some(v) = self.list(&self.allow_headers, requested_headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.max_age_seconds.to_string()) {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, v);
        }
        Decision::Preflight(out)
    }

    /// A list header: the entries joined, or for `*` either `*` or (with credentials) what the
    /// request asked for.
    fn list(&self, entries: &[String], requested: Option<&HeaderValue>) -> Option<HeaderValue> {
        if entries.is_empty() {
            return None;
        }
        if entries.iter().any(|e| e == WILDCARD) {
            return if self.allow_credentials {
                requested.cloned()
            } else {
                Some(HeaderValue::from_static("*"))
            };
        }
        HeaderValue::from_str(&entries.join(", ")).ok()
    }

    fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allow_origins.iter().any(|allowed| {
            if allowed == WILDCARD || *allowed == origin {
                return true;
            }
            let Some((scheme, host)) = allowed.split_once("://") else {
                return false;
            };
            let Some(suffix) = host.strip_prefix('*') else {
                return false;
            };
            origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|rest| {
                    rest.len() > suffix.len()
                        && rest.ends_with(suffix)
                        && !rest[..rest.len() - suffix.len()].contains([':', '/'])
                })
        })
    }
}

/// Adds `headers` to a response, merging `Vary`.
pub fn add_headers(response: &mut HeaderMap, headers: HeaderMap) {
    for (name, value) in headers {
        let Some(name) = name else { continue };
        if name == header::VARY {
            response.append(name, value);
        } else {
            response.insert::<HeaderName>(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy {
            allow_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allow_credentials: credentials,
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["x-a".into()],
            expose_headers: vec!["x-b".into()],
            max_age_seconds: 60,
        }
    }

    fn req(origin: &str, preflight: bool) -> (Method, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("valid"),
        );
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("GET"),
            );
            (Method::OPTIONS, h)
        } else {
            (Method::GET, h)
        }
    }

    fn get(d: &Decision, name: HeaderName) -> Option<&str> {
        match d {
            Decision::Preflight(h) | Decision::Actual(h) => {
                h.get(name).and_then(|v| v.to_str().ok())
            }
            Decision::None => None,
        }
    }

    #[test]
    fn wildcard_hosts_match_any_number_of_labels_but_not_the_bare_suffix_or_a_port() {
        let p = policy(&["https://*.bar.com"], false);
        assert!(p.allows_origin("https://www.bar.com"));
        assert!(p.allows_origin("https://a.b.bar.com"));
        assert!(!p.allows_origin("https://bar.com"));
        assert!(!p.allows_origin("http://www.bar.com"));
        assert!(!p.allows_origin("https://www.bar.com:8443"));
        assert!(!p.allows_origin("https://evilbar.com"));
    }

    #[test]
    fn preflight_from_an_allowed_origin_gets_the_policy() {
        let p = policy(&["https://www.foo.com"], true);
        let (m, h) = req("https://www.foo.com", true);
        let d = p.decide(&m, &h);
        assert!(matches!(d, Decision::Preflight(_)));
        assert_eq!(
            get(&d, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://www.foo.com")
        );
        assert_eq!(
            get(&d, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            get(&d, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(get(&d, header::ACCESS_CONTROL_MAX_AGE), Some("60"));
    }

    #[test]
    fn other_origins_get_no_cors_headers() {
        let p = policy(&["https://www.foo.com"], true);
        let (m, h) = req("https://foobar.com", true);
        assert_eq!(p.decide(&m, &h), Decision::Preflight(HeaderMap::new()));
        let (m, h) = req("https://foobar.com", false);
        assert_eq!(p.decide(&m, &h), Decision::Actual(HeaderMap::new()));
        assert_eq!(p.decide(&Method::GET, &HeaderMap::new()), Decision::None);
    }

    #[test]
    fn wildcards_echo_the_request_when_credentials_are_allowed() {
        let mut p = policy(&["*"], true);
        p.allow_methods = vec!["*".into()];
        let (m, h) = req("https://x.example", true);
        let d = p.decide(&m, &h);
        assert_eq!(
            get(&d, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://x.example")
        );
        assert_eq!(get(&d, header::ACCESS_CONTROL_ALLOW_METHODS), Some("GET"));
        p.allow_credentials = false;
        let d = p.decide(&m, &h);
        assert_eq!(get(&d, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&d, header::ACCESS_CONTROL_ALLOW_METHODS), Some("*"));
    }
}
