//! Host lookup for virtual hosts: exact names, wildcard suffixes (`*.example.com`, one or more
//! labels) with the longest suffix winning, and the catch-all `*`. Lookups are hash lookups, one per
//! label of the host, whatever the number of patterns.
//!
//! Cloning a table is O(1) (the maps are shared); the first change to a clone copies the map's
//! entries (shared keys and values, no rehashing: tens of microseconds at 10,000 patterns), so a
//! configuration that changes one virtual host among thousands allocates no strings, and lookups
//! stay plain hash-map lookups (a persistent map measured about twice as slow per request).

use std::{collections::HashMap, sync::Arc};

/// Patterns (or suffixes) → values.
type Table<T> = Arc<HashMap<Arc<str>, T>>;

/// A table from host patterns to values.
#[derive(Clone, Debug)]
pub struct HostTable<T: Clone> {
    exact: Table<T>,
    /// By suffix including the leading dot (`.example.com` for `*.example.com`).
    wildcard: Table<T>,
    any: Option<T>,
}

impl<T: Clone> Default for HostTable<T> {
    fn default() -> Self {
        Self {
            exact: Arc::default(),
            wildcard: Arc::default(),
            any: None,
        }
    }
}

impl<T: Clone> HostTable<T> {
    /// Adds `pattern` → `value` unless the pattern is already present (the first insert wins).
    /// Returns false if it was present.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            if self.any.is_some() {
                return false;
            }
            self.any = Some(value);
            return true;
        }
        if let Some(suffix) = pattern.strip_prefix('*') {
            if self.wildcard.contains_key(suffix) {
                return false;
            }
            Arc::make_mut(&mut self.wildcard).insert(Arc::from(suffix), value);
            return true;
        }
        if self.exact.contains_key(pattern.as_str()) {
            return false;
        }
        Arc::make_mut(&mut self.exact).insert(Arc::from(pattern), value);
        true
    }

    /// Sets `pattern` → `value`, replacing what it had.
    pub fn set(&mut self, pattern: &str, value: T) {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any = Some(value);
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            Arc::make_mut(&mut self.wildcard).insert(Arc::from(suffix), value);
        } else {
            Arc::make_mut(&mut self.exact).insert(Arc::from(pattern), value);
        }
    }

    /// Removes `pattern`.
    pub fn remove(&mut self, pattern: &str) {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any = None;
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            if self.wildcard.contains_key(suffix) {
                Arc::make_mut(&mut self.wildcard).remove(suffix);
            }
        } else if self.exact.contains_key(pattern.as_str()) {
            Arc::make_mut(&mut self.exact).remove(pattern.as_str());
        }
    }

    /// The value for `host` (lower-case, without port).
    pub fn get(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            // The leftmost dot gives the longest suffix; at least one label must precede it.
            for (i, b) in host.bytes().enumerate().skip(1) {
                if b == b'.'
                    && let Some(v) = self.wildcard.get(&host[i..])
                {
                    return Some(v);
                }
            }
        }
        self.any.as_ref()
    }

    /// Every pattern with its value, sorted by pattern (for dumps and tests; not per request).
    pub fn entries(&self) -> Vec<(String, &T)> {
        let mut out: Vec<(String, &T)> = self
            .exact
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(self.wildcard.iter().map(|(k, v)| (format!("*{k}"), v)))
            .chain(self.any.iter().map(|v| ("*".to_owned(), v)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }

    /// True if there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_wildcard_then_any() {
        let mut t = HostTable::default();
        t.insert("*", 0);
        t.insert("*.example.com", 1);
        t.insert("*.a.example.com", 2);
        t.insert("foo.a.example.com", 3);
        assert_eq!(t.get("foo.a.example.com"), Some(&3));
        assert_eq!(t.get("bar.a.example.com"), Some(&2));
        assert_eq!(t.get("x.y.example.com"), Some(&1));
        assert_eq!(t.get("example.com"), Some(&0));
        assert_eq!(t.get("other.org"), Some(&0));
        assert!(!t.insert("*.example.com", 9), "first insert wins");
        assert_eq!(t.get("x.example.com"), Some(&1));
    }

    #[test]
    fn set_replaces_and_remove_removes_without_touching_a_clone() {
        let mut t = HostTable::default();
        t.insert("*", 0);
        t.insert("*.example.com", 1);
        t.insert("a.example.com", 2);
        let before = t.clone();
        t.set("*.example.com", 5);
        t.remove("a.example.com");
        t.remove("*");
        assert_eq!(t.get("a.example.com"), Some(&5));
        assert_eq!(t.get("other.org"), None);
        assert_eq!(t.len(), 1);
        assert_eq!(
            before.get("a.example.com"),
            Some(&2),
            "the clone is unchanged"
        );
        assert_eq!(before.get("b.example.com"), Some(&1));
        assert_eq!(before.len(), 3);
    }

    #[test]
    fn no_catch_all_means_no_match() {
        let mut t = HostTable::default();
        t.insert("Foo.COM", 1);
        assert_eq!(t.get("foo.com"), Some(&1));
        assert_eq!(t.get("bar.com"), None);
        assert_eq!(t.len(), 1);
    }
}
