//! Validation rules both sides apply identically, so that what the control plane accepts the proxy
//! never rejects: host patterns, whole-value regular expressions, header names and values, and CORS
//! origins.

use regex::Regex;

/// Checks a host pattern: a DNS name (`foo.example.com`), a wildcard (`*.example.com`), or `*` when
/// `allow_any` (virtual hosts; Gateway API hostnames cannot be `*`). Expects lower case.
pub fn host_pattern(pattern: &str, allow_any: bool) -> Result<(), String> {
    if pattern == "*" {
        return if allow_any {
            Ok(())
        } else {
            Err("\"*\" is not a hostname; omit hostnames to match every host".to_owned())
        };
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{pattern:?} is not a valid hostname"));
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(format!(
                "{pattern:?} is not a valid hostname (label {label:?})"
            ));
        }
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{pattern:?} is an IP address, not a hostname"));
    }
    Ok(())
}

/// Compiles `pattern` so that it must match a whole value.
pub fn whole_value_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
}

/// Checks an HTTP header (or method) name: an RFC 9110 token.
pub fn header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

/// Checks an HTTP header value: visible characters, spaces and tabs, no line breaks.
pub fn header_value(value: &str) -> Result<(), String> {
    http::HeaderValue::from_str(value)
        .map(|_| ())
        .map_err(|_| format!("{value:?} is not a valid header value"))
}

/// Checks a CORS allowed origin: `*`, or `scheme://host[:port]` where the host may start with a
/// `*.` wildcard (GEP-1767). Case-insensitive.
pub fn cors_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || format!("{origin:?} is not \"*\" or scheme://host[:port]");
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(bad());
    }
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || rest.starts_with('[') => {
            port.parse::<u16>().map_err(|_| bad())?;
            h
        }
        _ => rest,
    };
    if host.parse::<std::net::IpAddr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    {
        return Ok(());
    }
    host_pattern(host, false).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        for ok in ["foo.example.com", "*.example.com", "a-b.c0", "localhost"] {
            assert_eq!(host_pattern(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "foo_bar.example",
            "a.com:8080",
            "*foo.com",
            "",
            "-a.com",
            "a..b",
            "10.0.0.1",
            "Foo.com",
        ] {
            assert!(host_pattern(bad, false).is_err(), "{bad}");
        }
        assert!(host_pattern("*", false).is_err());
        assert_eq!(host_pattern("*", true), Ok(()));
    }

    #[test]
    fn regexes_match_whole_values_and_reject_what_cannot_be_wrapped() {
        let r = whole_value_regex("/a+").expect("valid");
        assert!(r.is_match("/aa") && !r.is_match("/aab") && !r.is_match("x/a"));
        assert!(whole_value_regex("(").is_err());
        // An extended-mode comment would swallow the closing anchor: rejected here, on both sides.
        assert!(whole_value_regex("(?x)a # c").is_err());
    }

    #[test]
    fn headers_and_origins() {
        assert!(header_name("X-Foo").is_ok() && header_name("a b").is_err());
        assert!(header_value("a, b").is_ok() && header_value("a\nb").is_err());
        for ok in [
            "*",
            "https://www.foo.com",
            "https://*.bar.com",
            "http://a.b:8080",
            "http://[::1]:80",
            "http://10.0.0.1",
        ] {
            assert_eq!(cors_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "www.foo.com",
            "https://",
            "https://a.com:port",
            "https://*",
            "1http://a.com",
        ] {
            assert!(cors_origin(bad).is_err(), "{bad}");
        }
    }
}
