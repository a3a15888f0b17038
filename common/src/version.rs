//! Content-hash versions. A resource's [`Version`] is a hash of its encoded bytes, so an unchanged
//! resource has the same version across control-plane restarts and replicas; a [`SnapshotVersion`]
//! is a hash of the `(name, version)` pairs of a set of resources, kept by a [`VersionTree`] so a
//! change of a few resources rehashes a few pairs, not the whole set.
//!
//! Encoding must be deterministic for this to hold: prost encodes fields in tag order and map fields
//! are `BTreeMap`s (see `build.rs`).

use sha2::{Digest, Sha256};
use std::fmt;

/// Hex of the first 16 bytes of the SHA-256 of a resource's encoded payload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    /// The version of an encoded payload.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(short_hex(&Sha256::digest(bytes)))
    }

    /// Wraps a version received on the wire.
    pub fn from_wire(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Version of a whole set of resources: see [`VersionTree`] for how it is computed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SnapshotVersion(String);

impl SnapshotVersion {
    /// Version of the given pairs (in any order; a name must appear once).
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Version)>) -> Self {
        VersionTree::new(pairs).version().clone()
    }

    /// Wraps a version received on the wire.
    pub fn from_wire(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SnapshotVersion {
    /// The version of the empty set.
    fn default() -> Self {
        Self::of(std::iter::empty())
    }
}

impl fmt::Display for SnapshotVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn short_hex(digest: &[u8]) -> String {
    hex::encode(&digest[..16])
}

/// Buckets of a [`VersionTree`].
const BUCKETS: usize = 256;

/// The pairs of one bucket, by name.
type Bucket = imbl::OrdMap<String, Version>;

/// A set of `(name, version)` pairs and its [`SnapshotVersion`], updated in place.
///
/// The pairs are spread over 256 buckets by a hash of the name (FNV-1a, so the same on every
/// machine). A bucket's digest is the SHA-256 of its pairs in name order (`name NUL version NUL`
/// each); the set's version is the SHA-256 of the 256 bucket digests (16 bytes each) in bucket
/// order, as hex of its first 16 bytes. The version depends only on the set (never on the order
/// pairs came in or on earlier sets) and is as collision resistant as SHA-256 truncated to 128 bits.
///
/// A change rehashes the buckets it touches (at 5,000 pairs about 20 pairs each) and the 4 KiB of
/// bucket digests. Cloning is cheap: buckets are persistent maps shared between clones.
#[derive(Clone, Debug)]
pub struct VersionTree {
    buckets: imbl::Vector<Bucket>,
    digests: std::sync::Arc<Vec<[u8; 16]>>,
    version: SnapshotVersion,
}

impl Default for VersionTree {
    /// The empty set.
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

impl VersionTree {
    /// The tree of `pairs` (in any order; a repeated name keeps its last version).
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Version)>) -> Self {
        let mut buckets = vec![Bucket::new(); BUCKETS];
        for (name, version) in pairs {
            buckets[bucket_of(name)].insert(name.to_owned(), version.clone());
        }
        let digests: Vec<[u8; 16]> = buckets.iter().map(bucket_digest).collect();
        let version = root(&digests);
        Self {
            buckets: buckets.into_iter().collect(),
            digests: std::sync::Arc::new(digests),
            version,
        }
    }

    /// Applies `changes`: a name with `Some(version)` is set, with `None` removed.
    pub fn apply<'a>(&mut self, changes: impl IntoIterator<Item = (&'a str, Option<&'a Version>)>) {
        let mut dirty = std::collections::BTreeSet::new();
        for (name, version) in changes {
            let index = bucket_of(name);
            let Some(bucket) = self.buckets.get_mut(index) else {
                continue; // unreachable: `bucket_of` is below BUCKETS
            };
            match version {
                Some(v) => {
                    bucket.insert(name.to_owned(), v.clone());
                }
                None => {
                    bucket.remove(name);
                }
            }
            dirty.insert(index);
        }
        if dirty.is_empty() {
            return;
        }
        let digests = std::sync::Arc::make_mut(&mut self.digests);
        for index in dirty {
            digests[index] = bucket_digest(&self.buckets[index]);
        }
        self.version = root(digests);
    }

    /// The version of the set.
    pub fn version(&self) -> &SnapshotVersion {
        &self.version
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Bucket::len).sum()
    }

    /// True if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// FNV-1a of the name, modulo the bucket count.
fn bucket_of(name: &str) -> usize {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % BUCKETS as u64) as usize
}

fn bucket_digest(bucket: &Bucket) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for (name, version) in bucket {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(version.as_str().as_bytes());
        hasher.update([0]);
    }
    let mut out = [0; 16];
    out.copy_from_slice(&hasher.finalize()[..16]);
    out
}

fn root(digests: &[[u8; 16]]) -> SnapshotVersion {
    SnapshotVersion(short_hex(&Sha256::digest(digests.concat())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn equal_bytes_give_equal_versions() {
        assert_eq!(Version::of_bytes(b"abc"), Version::of_bytes(b"abc"));
        assert_ne!(Version::of_bytes(b"abc"), Version::of_bytes(b"abd"));
        assert_eq!(Version::of_bytes(b"").as_str().len(), 32);
    }

    #[test]
    fn snapshot_version_is_the_hash_of_the_bucket_digests() {
        let (v1, v2) = (Version::of_bytes(b"1"), Version::of_bytes(b"2"));
        let mut buckets = vec![Vec::new(); BUCKETS];
        for (name, v) in [("a", &v1), ("b", &v2)] {
            buckets[bucket_of(name)].push(format!("{name}\0{v}\0"));
        }
        let digests: Vec<u8> = buckets
            .iter()
            .flat_map(|pairs| Sha256::digest(pairs.concat().as_bytes())[..16].to_vec())
            .collect();
        assert_eq!(
            SnapshotVersion::of([("b", &v2), ("a", &v1)]).as_str(),
            short_hex(&Sha256::digest(&digests))
        );
        assert_eq!(SnapshotVersion::default(), SnapshotVersion::of([]));
    }

    #[test]
    fn a_tree_changed_in_place_has_the_version_of_its_pairs() {
        let versions: Vec<Version> = (0..50u8).map(|i| Version::of_bytes(&[i])).collect();
        let names: Vec<String> = (0..2_000).map(|i| format!("resource-{i}")).collect();
        // A deterministic walk of sets: each step sets or removes a few names.
        let mut set: BTreeMap<&str, &Version> = BTreeMap::new();
        let mut tree = VersionTree::default();
        let mut state = 7_u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize % n
        };
        for step in 0..300 {
            let mut changes = Vec::new();
            for _ in 0..1 + next(40) {
                let name = names[next(names.len())].as_str();
                let version = (next(4) > 0).then(|| &versions[next(versions.len())]);
                changes.push((name, version));
            }
            let (before, set_before) = (tree.clone(), set.clone());
            tree.apply(changes.iter().copied());
            for (name, version) in changes {
                match version {
                    Some(v) => set.insert(name, v),
                    None => set.remove(name),
                };
            }
            assert_eq!(
                tree.version(),
                VersionTree::new(set.iter().map(|(n, v)| (*n, *v))).version(),
                "step {step}"
            );
            assert_eq!(tree.len(), set.len());
            assert_eq!(
                set == set_before,
                before.version() == tree.version(),
                "step {step}: the version changes exactly when the set does"
            );
        }
    }

    #[test]
    fn snapshot_version_depends_on_names_and_versions() {
        let v1 = Version::of_bytes(b"1");
        let v2 = Version::of_bytes(b"2");
        let a: BTreeMap<&str, &Version> = [("a", &v1), ("b", &v2)].into();
        let b: BTreeMap<&str, &Version> = [("a", &v2), ("b", &v1)].into();
        let of =
            |m: &BTreeMap<&str, &Version>| SnapshotVersion::of(m.iter().map(|(k, v)| (*k, *v)));
        assert_eq!(of(&a), of(&a.clone()));
        assert_ne!(of(&a), of(&b));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        let c = Version::from_wire("c");
        let bc = Version::from_wire("bc");
        assert_ne!(
            SnapshotVersion::of([("ab", &c)]),
            SnapshotVersion::of([("a", &bc)])
        );
    }
}
