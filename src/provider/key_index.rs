//! What an instance's last full listing said about the keys accounts are named by, kept
//! compactly so that a later folder change may read one account by its key instead of
//! listing everything again.
//!
//! Kinds that name an account by one of several fields (status-api: `id` or
//! `identifier`; SCIM: `id` or `userName`) cannot tell from one user's read whether
//! another user carries the same key: only the listing shows that ambiguity. So a key
//! may be read alone only when the last listing matched it to exactly one user, and the
//! read must answer that same user. A key the listing never saw, or saw on two users,
//! needs a listing again. Between two listings a provider may of course change (a new
//! user takes the key); the interval pass, which always lists, finds that, as it finds
//! any drift made by hand.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// For each key of the last full listing: the one user it named, or that it was
/// ambiguous. Keys and user ids are held as 64-bit hashes keyed per process (so a
/// crafted name cannot aim at a collision); a collision between two keys can only make
/// a key look ambiguous, which costs a listing and nothing else.
#[derive(Debug)]
pub struct KeyIndex {
    hasher: RandomState,
    keys: HashMap<u64, Holder>,
}

/// The user a key named: its record in the listing and the hash of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    One { record: usize, id: u64 },
    Ambiguous,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::new()
    }
}

impl KeyIndex {
    /// An index that knows no key.
    pub fn new() -> KeyIndex {
        KeyIndex {
            hasher: RandomState::new(),
            keys: HashMap::new(),
        }
    }

    /// Records that listed record `record`, whose id is `id`, is named by `key`.
    pub fn insert(&mut self, key: &str, record: usize, id: &str) {
        let holder = Holder::One {
            record,
            id: self.hasher.hash_one(id),
        };
        let key = self.hasher.hash_one(key);
        self.keys
            .entry(key)
            .and_modify(|held| {
                if *held != holder {
                    *held = Holder::Ambiguous;
                }
            })
            .or_insert(holder);
    }

    /// Whether the listing matched `key` to exactly one user.
    pub fn is_unique(&self, key: &str) -> bool {
        matches!(
            self.keys.get(&self.hasher.hash_one(key)),
            Some(Holder::One { .. })
        )
    }

    /// Whether a read of `key` that answered the user with id `id` answered the user the
    /// listing matched the key to.
    pub fn names(&self, key: &str, id: &str) -> bool {
        match self.keys.get(&self.hasher.hash_one(key)) {
            Some(Holder::One { id: held, .. }) => *held == self.hasher.hash_one(id),
            _ => false,
        }
    }

    /// How many distinct keys the listing held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the listing held no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_one_user_is_unique_and_names_only_that_user() {
        let mut index = KeyIndex::new();
        index.insert("u1", 0, "u1");
        index.insert("bob", 0, "u1");
        // A user whose identifier is its own id is still one user.
        index.insert("u2", 1, "u2");
        index.insert("u2", 1, "u2");
        assert!(index.is_unique("u1") && index.is_unique("bob") && index.is_unique("u2"));
        assert!(index.names("bob", "u1"));
        assert!(!index.names("bob", "u2"));
        assert!(!index.is_unique("never-listed"));
        assert!(!index.names("never-listed", "u1"));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_key_two_users_carry_is_ambiguous() {
        let mut index = KeyIndex::new();
        index.insert("u1", 0, "u1");
        index.insert("ann", 0, "u1");
        index.insert("ann", 1, "u2");
        assert!(!index.is_unique("ann"));
        assert!(!index.names("ann", "u1"));
        // Two records with the same id are two users, as the listing counts them.
        index.insert("dup", 2, "dup");
        index.insert("dup", 3, "dup");
        assert!(!index.is_unique("dup"));
        assert!(index.is_unique("u1"));
    }
}
