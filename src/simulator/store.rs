//! The accounts a simulator holds, in insertion order, indexed by id and sorted by name.

use std::collections::HashMap;

use super::{hash, unix_now, SimUser};

/// The accounts, in insertion order, with an index by id and the order by name.
pub(super) struct Store {
    pub(super) users: Vec<StoredUser>,
    pub(super) by_id: HashMap<String, usize>,
    /// Indexes into `users`, sorted by name (names never change, so this is computed once).
    pub(super) by_name: Vec<usize>,
}

impl Store {
    pub(super) fn new(users: Vec<SimUser>) -> Store {
        let users: Vec<StoredUser> = users.into_iter().map(StoredUser::new).collect();
        let mut by_id = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            by_id.entry(u.user.id.clone()).or_insert(i);
        }
        let mut by_name: Vec<usize> = (0..users.len()).collect();
        by_name.sort_by(|a, b| users[*a].user.name.cmp(&users[*b].user.name));
        Store {
            users,
            by_id,
            by_name,
        }
    }

    pub(super) fn all(&self) -> &[StoredUser] {
        &self.users
    }

    /// Every account, sorted by name.
    pub(super) fn sorted_by_name(&self) -> impl DoubleEndedIterator<Item = &StoredUser> {
        self.by_name.iter().map(|i| &self.users[*i])
    }

    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(super) fn get(&self, id: &str) -> Option<&StoredUser> {
        self.index_of(id).map(|i| &self.users[i])
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut StoredUser> {
        self.index_of(id).map(|i| &mut self.users[i])
    }

    pub(super) fn at_mut(&mut self, index: usize) -> &mut StoredUser {
        &mut self.users[index]
    }
}

/// A [`SimUser`] plus the timestamps every kind renders.
pub(super) struct StoredUser {
    pub(super) user: SimUser,
    /// Unix seconds; derived from the id so generated data is deterministic.
    pub(super) created: u64,
    /// Unix seconds of the last change.
    pub(super) updated: u64,
}

impl StoredUser {
    pub(super) fn new(user: SimUser) -> StoredUser {
        const JAN_2022: u64 = 1_640_995_200;
        let created = JAN_2022 + hash(&user.id, 1) % (730 * 86_400);
        let updated = created + hash(&user.id, 2) % (90 * 86_400);
        StoredUser {
            user,
            created,
            updated,
        }
    }

    /// Marks the account as changed now (always moving `updated` forward).
    pub(super) fn touch(&mut self) {
        self.updated = unix_now().max(self.updated + 1);
    }

    /// A change that is a new revision (acronis `version`).
    pub(super) fn revise(&mut self) {
        self.user.version += 1;
        self.touch();
    }

    pub(super) fn set_status(&mut self, status: &str) {
        self.user.status = status.to_string();
        self.revise();
    }

    pub(super) fn is_active(&self) -> bool {
        self.user.status == "active"
    }
}
