//! Host lookup for virtual hosts: exact names, wildcard suffixes (`*.example.com`, one or more
//! labels) with the longest suffix winning, and the catch-all `*`. Lookups are hash lookups, one per
//! label of the host, whatever the number of patterns.
//!
//! Cloning a table is O(1). Its patterns are spread over [`SHARDS`] hash maps by a hash of the
//! pattern, each shared between clones: the first change to a clone copies the list of shards and
//! the one shard it touches (shared keys and values, no rehashing), so a configuration that changes
//! one virtual host among 10,000 copies about 150 entries instead of all of them, and lookups stay
//! plain hash-map lookups (with a fast hash) plus one more hash to pick the shard (a persistent map measured about
//! twice as slow per request).

use foldhash::fast::FixedState;
use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

/// How many maps the patterns of a table are spread over (the top 6 bits of a hash).
const SHARDS: usize = 64;

/// Seed of the hash that picks a shard.
const SHARD_SEED: u64 = 0x5e7a_1b0c;

/// One shard: keys come from configuration, never from requests, so a fixed fast hash is safe
/// (no request can add a key to collide with).
type Shard<T> = HashMap<Arc<str>, T, FixedState>;

/// Patterns (or suffixes) → values, spread over shared shards (none while empty).
#[derive(Debug)]
struct Table<T> {
    shards: Arc<Vec<Arc<Shard<T>>>>,
    len: usize,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            shards: Arc::clone(&self.shards),
            len: self.len,
        }
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            shards: Arc::default(),
            len: 0,
        }
    }
}

impl<T: Clone> Table<T> {
    /// The shard of `key`: the top bits of a hash seeded differently from the shards' own (whose
    /// low bits pick buckets), so a shard's keys still spread over its buckets.
    fn shard(key: &str) -> usize {
        (FixedState::with_seed(SHARD_SEED).hash_one(key) >> 58) as usize % SHARDS
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.shards.get(Self::shard(key))?.get(key)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The shard of `key`, copied first if a clone shares it.
    fn shard_mut(&mut self, key: &str) -> &mut Shard<T> {
        let shards = Arc::make_mut(&mut self.shards);
        if shards.is_empty() {
            shards.resize_with(SHARDS, Arc::default);
        }
        Arc::make_mut(&mut shards[Self::shard(key)])
    }

    fn insert(&mut self, key: &str, value: T) {
        if self.shard_mut(key).insert(Arc::from(key), value).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, key: &str) {
        if self.contains_key(key) && self.shard_mut(key).remove(key).is_some() {
            self.len -= 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &T)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }
}

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
            exact: Table::default(),
            wildcard: Table::default(),
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
            self.wildcard.insert(suffix, value);
            return true;
        }
        if self.exact.contains_key(pattern.as_str()) {
            return false;
        }
        self.exact.insert(&pattern, value);
        true
    }

    /// Sets `pattern` → `value`, replacing what it had.
    pub fn set(&mut self, pattern: &str, value: T) {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any = Some(value);
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            self.wildcard.insert(suffix, value);
        } else {
            self.exact.insert(&pattern, value);
        }
    }

    /// Removes `pattern`.
    pub fn remove(&mut self, pattern: &str) {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any = None;
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            self.wildcard.remove(suffix);
        } else {
            self.exact.remove(&pattern);
        }
    }

    /// The value for `host` (lower-case, without port).
    pub fn get(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if self.wildcard.len > 0 {
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
        self.exact.len + self.wildcard.len + usize::from(self.any.is_some())
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
    fn a_change_to_a_clone_copies_only_the_shard_it_touches() {
        let mut t = HostTable::default();
        for i in 0..1_000 {
            assert!(t.insert(&format!("app-{i}.example.com"), i));
        }
        let before = t.clone();
        t.set("app-7.example.com", 7_000);
        t.remove("app-8.example.com");
        t.insert("new.example.com", 1);
        let shared = before
            .exact
            .shards
            .iter()
            .zip(t.exact.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(
            shared >= SHARDS - 3,
            "{shared} of {SHARDS} shards still shared after three changes"
        );
        assert_eq!(t.len(), 1_000);
        assert_eq!(before.len(), 1_000);
        for i in (0..1_000).filter(|i| ![7, 8].contains(i)) {
            assert_eq!(t.get(&format!("app-{i}.example.com")), Some(&i));
        }
        assert_eq!(t.get("app-7.example.com"), Some(&7_000));
        assert_eq!(t.get("app-8.example.com"), None);
        assert_eq!(before.get("app-7.example.com"), Some(&7));
        assert_eq!(before.get("app-8.example.com"), Some(&8));
        assert_eq!(before.get("new.example.com"), None);
        assert_eq!(t.entries().len(), 1_000);
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
