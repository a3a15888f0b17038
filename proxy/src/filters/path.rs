//! HTTPPathModifier: `ReplaceFullPath` and `ReplacePrefixMatch`, shared by redirects and rewrites.
//!
//! `ReplacePrefixMatch` replaces the path prefix the route matched, segment-wise, so that exactly
//! one `/` separates the replacement from the rest (`/foo` → `/xyz` turns `/foo/bar` into
//! `/xyz/bar`, `/foo` into `/xyz`, `/foo/` into `/xyz/`; an empty or `/` replacement turns `/foo/bar`
//! into `/bar`).

/// A path modification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the matched prefix.
    ReplacePrefixMatch(String),
}

impl PathModifier {
    /// The new path for `path`, given the route's matched prefix (stored without a trailing `/`,
    /// empty for `/`). A `ReplacePrefixMatch` on a route without a prefix keeps the path (the
    /// control plane never sends that combination).
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            Self::ReplaceFullPath(p) => p.clone(),
            Self::ReplacePrefixMatch(replacement) => {
                let Some(prefix) = matched_prefix else {
                    return path.to_owned();
                };
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let mut out = replacement.trim_end_matches('/').to_owned();
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                if !out.starts_with('/') {
                    out.insert(0, '/');
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_follows_the_specification_table() {
        // (matched prefix as stored, request path, replacement, expected)
        for (prefix, path, replacement, expected) in [
            ("/foo", "/foo/bar", "/xyz", "/xyz/bar"),
            ("/foo", "/foo/bar", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo", "/foo/", "/xyz", "/xyz/"),
            ("/foo", "/foo/bar", "", "/bar"),
            ("/foo", "/foo/bar", "/", "/bar"),
            ("/foo", "/foo", "/", "/"),
            ("/foo", "/foo/", "", "/"),
            ("", "/bar", "/xyz", "/xyz/bar"),
            ("", "/", "/xyz", "/xyz/"),
            ("/a/b", "/a/b/c/d", "/z", "/z/c/d"),
        ] {
            let m = PathModifier::ReplacePrefixMatch(replacement.to_owned());
            assert_eq!(
                m.apply(path, Some(prefix)),
                expected,
                "{prefix} {path} {replacement}"
            );
        }
    }

    #[test]
    fn full_replacement_ignores_the_match() {
        let m = PathModifier::ReplaceFullPath("/new".into());
        assert_eq!(m.apply("/old/path", Some("/old")), "/new");
        assert_eq!(m.apply("/old/path", None), "/new");
    }
}
