//! Gateway API hostname rules: matching a host against a pattern (`foo.com`, `*.foo.com`, `*`),
//! intersecting a Listener's hostname with a Route's, and ordering patterns by specificity.
//!
//! Hostnames are compared case-insensitively (callers pass lower-case values). Shared by the
//! control plane (attaching routes) and the proxy (assembling virtual hosts).

use std::cmp::Ordering;

/// True if `host` (an exact name or itself a pattern) is covered by `pattern`. A wildcard covers one
/// or more labels in front of its suffix: `*.example.com` covers `a.example.com` and
/// `a.b.example.com`, not `example.com`.
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        // suffix is ".example.com"
        Some(suffix) => {
            let host_name = host.strip_prefix('*').unwrap_or(host);
            host_name.len() > suffix.len() && host_name.ends_with(suffix)
        }
        None => false,
    }
}

/// Every pattern that covers `host` (an exact name or a pattern): itself, each wildcard over one of
/// its suffixes, and `*`. Lets callers find covering patterns with lookups instead of scans.
pub fn covering_patterns(host: &str) -> Vec<String> {
    let mut out = vec![host.to_owned()];
    for (i, b) in host.bytes().enumerate() {
        if b == b'.' {
            let pattern = format!("*{}", &host[i..]);
            if pattern != host && covers(&pattern, host) {
                out.push(pattern);
            }
        }
    }
    if host != "*" {
        out.push("*".to_owned());
    }
    out
}

/// The hostname requests must carry to reach a route with hostname `route` through a listener with
/// hostname `listener` (`None`: any), or `None` if no request can.
pub fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(listener) = listener else {
        return Some(route.to_owned());
    };
    if covers(listener, route) {
        Some(route.to_owned())
    } else if covers(route, listener) {
        Some(listener.to_owned())
    } else {
        None
    }
}

/// Orders patterns from most to least specific: exact before wildcard, then longer before shorter,
/// then alphabetically (to be total).
pub fn by_specificity(a: &str, b: &str) -> Ordering {
    let key = |h: &str| (h.starts_with('*'), std::cmp::Reverse(h.len()));
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_one_or_more_labels() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "aexample.com"));
        assert!(covers("*", "anything"));
        assert!(covers("*.example.com", "*.a.example.com"));
        assert!(!covers("*.a.example.com", "*.example.com"));
        assert!(!covers("foo.com", "bar.com"));
        assert_eq!(
            covering_patterns("a.b.example.com"),
            [
                "a.b.example.com",
                "*.b.example.com",
                "*.example.com",
                "*.com",
                "*"
            ]
        );
        assert_eq!(
            covering_patterns("*.example.com"),
            ["*.example.com", "*.com", "*"]
        );
        assert_eq!(covering_patterns("*"), ["*"]);
    }

    #[test]
    fn intersections() {
        assert_eq!(intersect(None, "foo.com").as_deref(), Some("foo.com"));
        assert_eq!(
            intersect(Some("*.foo.com"), "a.foo.com").as_deref(),
            Some("a.foo.com")
        );
        assert_eq!(
            intersect(Some("a.foo.com"), "*.foo.com").as_deref(),
            Some("a.foo.com")
        );
        assert_eq!(
            intersect(Some("*.foo.com"), "*.a.foo.com").as_deref(),
            Some("*.a.foo.com")
        );
        assert_eq!(
            intersect(Some("*.a.foo.com"), "*.foo.com").as_deref(),
            Some("*.a.foo.com")
        );
        assert_eq!(intersect(Some("foo.com"), "bar.com"), None);
        assert_eq!(intersect(Some("*.foo.com"), "foo.com"), None);
    }

    #[test]
    fn specificity_order() {
        let mut v = vec!["*", "*.a.com", "b.a.com", "*.b.a.com", "a.com"];
        v.sort_by(|a, b| by_specificity(a, b));
        assert_eq!(v, ["b.a.com", "a.com", "*.b.a.com", "*.a.com", "*"]);
    }
}
