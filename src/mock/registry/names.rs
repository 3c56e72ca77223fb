//! A small sorted set of names, cheap to hold a million of.
//!
//! A registry record's sets (a certificate's policies and things, a thing's certificates and
//! groups) hold zero, one or a few names. `BTreeSet<String>` allocates a node of eleven slots
//! (about 280 bytes) for one name; this holds nothing for an empty set and one shared slice
//! otherwise, so equal sets (every device's policies) can share one allocation. Changes rebuild
//! the slice: they are rare and the sets tiny.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Names(Option<Arc<[Box<str>]>>);

impl Names {
    fn slice(&self) -> &[Box<str>] {
        self.0.as_deref().unwrap_or_default()
    }

    fn from_sorted(names: Vec<Box<str>>) -> Names {
        if names.is_empty() {
            Names(None)
        } else {
            Names(Some(names.into()))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.slice().len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.slice().binary_search_by(|n| (**n).cmp(name)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.slice().iter().map(|n| &**n)
    }

    /// Add `name`; false when it was there already.
    pub fn insert(&mut self, name: &str) -> bool {
        match self.slice().binary_search_by(|n| (**n).cmp(name)) {
            Ok(_) => false,
            Err(at) => {
                let mut names = self.slice().to_vec();
                names.insert(at, name.into());
                *self = Names::from_sorted(names);
                true
            }
        }
    }

    /// Remove `name`; false when it was not there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.slice().binary_search_by(|n| (**n).cmp(name)) {
            Err(_) => false,
            Ok(at) => {
                let mut names = self.slice().to_vec();
                names.remove(at);
                *self = Names::from_sorted(names);
                true
            }
        }
    }

    /// The union of both sets; shares `self`'s allocation when `other` adds nothing.
    pub fn union(&self, other: &Names) -> Names {
        if other.iter().all(|n| self.contains(n)) {
            return self.clone();
        }
        self.iter().chain(other.iter()).collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Names {
        let mut names: Vec<Box<str>> = iter.into_iter().map(|s| s.as_ref().into()).collect();
        names.sort_unstable();
        names.dedup();
        Names::from_sorted(names)
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn a_set_stays_sorted_and_unique_and_an_empty_one_holds_nothing() {
        let mut n: Names = ["b", "a", "b"].into_iter().collect();
        assert_eq!(n.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!n.insert("a"));
        assert!(n.insert("c"));
        assert!(n.contains("c") && !n.contains("d"));
        assert!(n.remove("a") && !n.remove("a"));
        n.remove("b");
        n.remove("c");
        assert!(n.is_empty() && n == Names::default());
        assert_eq!(serde_json::to_string(&n).unwrap(), "[]");
    }

    #[test]
    fn a_union_that_adds_nothing_shares_the_allocation() {
        let a: Names = ["p"].into_iter().collect();
        let b: Names = ["p"].into_iter().collect();
        let u = a.union(&b);
        assert!(std::ptr::eq(
            a.0.as_deref().unwrap().as_ptr(),
            u.0.as_deref().unwrap().as_ptr()
        ));
        assert_eq!(a.union(&["q"].into_iter().collect()).len(), 2);
    }
}
