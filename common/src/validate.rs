//! Validation rules both sides apply identically, so that what the control plane accepts the proxy
//! never rejects: host patterns and whole-value regular expressions.

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
}
