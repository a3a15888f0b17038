//! An index of a virtual host's routes by path, so that finding the first matching route costs a
//! hash lookup per path segment plus the routes that could match, not a scan of every route.
//!
//! Routes keep their precedence order (their index); the index only narrows the candidates:
//! routes whose Exact path equals the request path, routes whose PathPrefix is a segment-wise
//! prefix of it, and routes without an indexable path (regular expressions, no path condition),
//! which are always candidates.

use super::matching::PathMatch;
use std::collections::HashMap;

/// Candidate routes by path.
#[derive(Debug, Default)]
pub struct PathIndex {
    exact: HashMap<String, Vec<usize>>,
    /// By prefix as stored in [`PathMatch::Prefix`] (no trailing `/`, empty for `/`).
    prefix: HashMap<String, Vec<usize>>,
    other: Vec<usize>,
}

impl PathIndex {
    /// Indexes routes given by their path conditions, in precedence order.
    pub fn build<'a>(paths: impl IntoIterator<Item = Option<&'a PathMatch>>) -> Self {
        let mut index = Self::default();
        for (i, path) in paths.into_iter().enumerate() {
            match path {
                Some(PathMatch::Exact(p)) => index.exact.entry(p.clone()).or_default().push(i),
                Some(PathMatch::Prefix(p)) => index.prefix.entry(p.clone()).or_default().push(i),
                Some(PathMatch::Regex(_)) | None => index.other.push(i),
            }
        }
        index
    }

    /// The smallest route index among the candidates for `path` for which `matches` holds.
    pub fn first(&self, path: &str, mut matches: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut consider = |list: &[usize], best: &mut Option<usize>| {
            for &i in list {
                if best.is_some_and(|b| i >= b) {
                    return;
                }
                if matches(i) {
                    *best = Some(i);
                    return;
                }
            }
        };
        if let Some(list) = self.exact.get(path) {
            consider(list, &mut best);
        }
        if !self.prefix.is_empty() {
            // Every segment-wise prefix: the path up to each `/`, and the whole path.
            for (i, b) in path.bytes().enumerate() {
                if b == b'/'
                    && let Some(list) = self.prefix.get(&path[..i])
                {
                    consider(list, &mut best);
                }
            }
            if let Some(list) = self.prefix.get(path) {
                consider(list, &mut best);
            }
        }
        consider(&self.other, &mut best);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index must agree with a scan of every route, in order.
    #[test]
    fn agrees_with_a_linear_scan() {
        let paths = [
            Some(PathMatch::Exact("/a/b".into())),
            Some(PathMatch::prefix("/a/b")),
            Some(PathMatch::Regex(
                serval_common::validate::whole_value_regex("/a/.*").expect("regex"),
            )),
            Some(PathMatch::prefix("/a")),
            Some(PathMatch::prefix("/")),
            None,
            Some(PathMatch::prefix("/a/")),
        ];
        let index = PathIndex::build(paths.iter().map(Option::as_ref));
        let requests = [
            "/a/b", "/a/b/", "/a/bc", "/a", "/", "/x/y", "/a//b", "/ab", "/a/b/c",
        ];
        // A predicate that rejects some routes, as headers or methods would.
        for rejected in [vec![], vec![0], vec![0, 1], vec![0, 1, 2, 3], vec![4]] {
            for path in requests {
                let holds = |i: usize| {
                    !rejected.contains(&i) && paths[i].as_ref().is_none_or(|p| p.matches(path))
                };
                let scanned = (0..paths.len()).find(|i| holds(*i));
                assert_eq!(
                    index.first(path, holds),
                    scanned,
                    "{path} without {rejected:?}"
                );
            }
        }
    }
}
