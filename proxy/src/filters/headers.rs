//! HTTPHeaderFilter (RequestHeaderModifier / ResponseHeaderModifier): set, add, remove on a
//! `HeaderMap`. Names were lower-cased and validated when the configuration was compiled.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A compiled header modifier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replace every value of these headers.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append these values (as additional field lines).
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove every value of these headers.
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Applies set, then add, then remove.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_add_remove_are_case_insensitive() {
        let m = HeaderModifier {
            set: vec![(
                HeaderName::from_static("x-set"),
                HeaderValue::from_static("new"),
            )],
            add: vec![(
                HeaderName::from_static("x-add"),
                HeaderValue::from_static("two"),
            )],
            remove: vec![HeaderName::from_static("x-remove")],
        };
        let mut h = HeaderMap::new();
        h.append("X-Set", HeaderValue::from_static("old1"));
        h.append("x-set", HeaderValue::from_static("old2"));
        h.insert("X-ADD", HeaderValue::from_static("one"));
        h.insert("X-Remove", HeaderValue::from_static("gone"));
        m.apply(&mut h);
        let all = |n: &str| -> Vec<&str> {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect()
        };
        assert_eq!(all("x-set"), ["new"]);
        assert_eq!(all("x-add"), ["one", "two"]);
        assert!(all("x-remove").is_empty());
    }
}
