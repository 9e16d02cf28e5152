//! Targeted passes: after a folder change, re-read and plan only the accounts whose
//! desired state changed, instead of listing every account of the instance.
//!
//! Pure functions over two loaded folders: which accounts of an instance a change
//! touched ([`touched`]), and the folder restricted to them ([`restrict`]), so that the
//! pure plan function, fed with it, gives exactly the entries it gives for those accounts
//! with the whole folder (each account is planned from its own desired and live state
//! only). Whether a targeted pass is allowed at all (guard, cost) is the loop's decision.

use crate::desired::{Account, DesiredState, FileOutcome, User};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The user files that changed between two valid loads of the folder: for each, what
/// reading it found in the earlier load and in the later one (`None`: not in that load).
/// Every other file is byte for byte the same in both, so the accounts whose desired
/// state changed are all in these files: an account cannot move into or out of an
/// unchanged file without being claimed twice in one of the two (valid) loads.
#[derive(Default)]
pub struct Delta {
    pub files: BTreeMap<PathBuf, Versions>,
}

/// What reading one file found in the earlier and in the later load.
pub type Versions = (Option<Arc<FileOutcome>>, Option<Arc<FileOutcome>>);

impl Delta {
    /// The users of the changed files in the earlier load, in file order.
    fn before(&self) -> impl Iterator<Item = &User> {
        self.files.values().flat_map(|(before, _)| {
            before
                .iter()
                .flat_map(|o| o.users().iter().map(Arc::as_ref))
        })
    }

    /// The users of the changed files in the later load, in file order.
    fn after(&self) -> impl Iterator<Item = &User> {
        self.files
            .values()
            .flat_map(|(_, after)| after.iter().flat_map(|o| o.users().iter().map(Arc::as_ref)))
    }

    /// The instances that some account of a changed file names, before or after.
    pub fn instances(&self) -> BTreeSet<&str> {
        self.before()
            .chain(self.after())
            .flat_map(|u| u.accounts.iter().map(|a| a.instance.as_str()))
            .collect()
    }
}

/// The accounts of one instance that a folder change touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Accounts in the new folder that are new or whose user, reason, status or time
    /// bounds changed: these are read and planned. Sorted.
    pub present: Vec<String>,
    /// Accounts no longer in the folder: nothing to read or write, only forgotten.
    pub gone: Vec<String>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.present.is_empty() && self.gone.is_empty()
    }
}

/// What decides an account's plan entry and its write, apart from the live state: who
/// holds it (named in entries and audit lines), the reason sent with a write, and the
/// desired status with its time bounds (so the status at any instant). Positions in the
/// files are left out: an edit elsewhere in a file moves them without changing anything.
fn same(a: (&User, &Account), b: (&User, &Account)) -> bool {
    a.0.name == b.0.name
        && a.0.reason == b.0.reason
        && a.1.status == b.1.status
        && a.1.bounds == b.1.bounds
}

/// The accounts of `instance` by id; `None` when one id appears twice (the loader refuses
/// that, but a targeted pass must never guess which entry counts).
fn by_id<'a>(
    users: impl Iterator<Item = &'a User>,
    instance: &str,
) -> Option<HashMap<&'a str, (&'a User, &'a Account)>> {
    let mut accounts = HashMap::new();
    for user in users {
        for account in user.accounts.iter().filter(|a| a.instance == instance) {
            if accounts
                .insert(account.id.as_str(), (user, account))
                .is_some()
            {
                return None;
            }
        }
    }
    Some(accounts)
}

/// The accounts of `instance` that differ between `before` (the folder the instance's
/// last pass planned from) and `after`; `None` when they cannot be compared account by
/// account (an id named twice), so only a full pass is right.
pub fn touched(before: &DesiredState, after: &DesiredState, instance: &str) -> Option<Touched> {
    compare(
        by_id(before.users.iter().map(Arc::as_ref), instance)?,
        by_id(after.users.iter().map(Arc::as_ref), instance)?,
    )
}

/// [`touched`] for two consecutive valid loads, from the files that changed between
/// them only (see [`Delta`]): the same answer, at a cost in proportion to the change.
pub fn touched_in(delta: &Delta, instance: &str) -> Option<Touched> {
    compare(
        by_id(delta.before(), instance)?,
        by_id(delta.after(), instance)?,
    )
}

fn compare(
    old: HashMap<&str, (&User, &Account)>,
    new: HashMap<&str, (&User, &Account)>,
) -> Option<Touched> {
    let mut present: Vec<String> = new
        .iter()
        .filter(|(id, entry)| old.get(*id).is_none_or(|was| !same(*was, **entry)))
        .map(|(id, _)| id.to_string())
        .collect();
    let mut gone: Vec<String> = old
        .keys()
        .filter(|id| !new.contains_key(*id))
        .map(|id| id.to_string())
        .collect();
    present.sort();
    gone.sort();
    Some(Touched { present, gone })
}

/// `desired` with only `instance` and only its accounts named in `ids` (their users keep
/// their name and reason): the pure plan function planning from it gives, for those
/// accounts, exactly the entries it gives with the whole folder.
pub fn restrict(desired: &DesiredState, instance: &str, ids: &[String]) -> DesiredState {
    restrict_users(
        desired,
        desired.users.iter().map(Arc::as_ref),
        instance,
        ids,
    )
}

/// [`restrict`] for a folder loaded right after `delta`'s change, whose touched accounts
/// are therefore all in its changed files: built from those files only.
pub fn restrict_in(
    desired: &DesiredState,
    delta: &Delta,
    instance: &str,
    ids: &[String],
) -> DesiredState {
    restrict_users(desired, delta.after(), instance, ids)
}

fn restrict_users<'a>(
    desired: &DesiredState,
    users: impl Iterator<Item = &'a User>,
    instance: &str,
    ids: &[String],
) -> DesiredState {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let users = users
        .filter_map(|user| {
            let accounts: Vec<Account> = user
                .accounts
                .iter()
                .filter(|a| a.instance == instance && wanted.contains(a.id.as_str()))
                .cloned()
                .collect();
            (!accounts.is_empty()).then(|| {
                Arc::new(User {
                    name: user.name.clone(),
                    reason: user.reason.clone(),
                    accounts,
                    location: user.location.clone(),
                })
            })
        })
        .collect();
    DesiredState {
        root: desired.root.clone(),
        instances: desired
            .instances
            .iter()
            .filter(|(name, _)| *name == instance)
            .map(|(name, config)| (name.clone(), config.clone()))
            .collect(),
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountObservation, Observation, ObservedAccount};
    use crate::plan::{self, PlanTime};
    use crate::status::Status;
    use std::collections::BTreeMap;

    fn folder(people: &str) -> DesiredState {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("providers.yaml"),
            "providers:\n  h:\n    kind: status-api\n    base_url: http://127.0.0.1:1\n    auth: { bearer_token_env: T }\n  o:\n    kind: status-api\n    base_url: http://127.0.0.1:2\n    auth: { bearer_token_env: T }\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("people.yaml"), people).unwrap();
        crate::desired::load(dir.path(), crate::provider::specs()).unwrap()
    }

    const BASE: &str = "users:
  - name: ann
    status: active
    accounts: { h: a1, o: a1 }
  - name: bob
    status: active
    accounts: { h: b1 }
  - name: cid
    status: inactive
    reason: Left (HR-1)
    accounts: { h: c1 }
";

    #[test]
    fn only_the_accounts_whose_desired_state_changed_are_touched() {
        let before = folder(BASE);
        assert_eq!(
            touched(&before, &folder(BASE), "h"),
            Some(Touched::default())
        );
        // A status edit, a reason edit, a bound, a new account, a removed one; an edit
        // at the other instance touches nothing here.
        let after = folder(
            "users:
  - name: ann
    status: inactive
    accounts: { h: a1, o: a1 }
  - name: bob
    status: active
    until: 2030-01-01T00:00:00Z
    accounts: { h: b1, o: b2 }
  - name: dee
    status: active
    accounts: { h: d1 }
",
        );
        assert_eq!(
            touched(&before, &after, "h"),
            Some(Touched {
                present: vec!["a1".into(), "b1".into(), "d1".into()],
                gone: vec!["c1".into()],
            })
        );
        let reason_only = folder(&BASE.replace("Left (HR-1)", "Left (HR-2)"));
        assert_eq!(
            touched(&before, &reason_only, "h").map(|t| t.present),
            Some(vec!["c1".to_string()])
        );
        let other_instance = folder(&BASE.replace("{ h: b1 }", "{ h: b1, o: b9 }"));
        assert_eq!(
            touched(&before, &other_instance, "h"),
            Some(Touched::default())
        );
    }

    /// Loads `folder` with `cache` and answers the load and the files it found changed.
    fn load_delta(cache: &mut crate::desired::FolderCache) -> (DesiredState, Delta) {
        let desired = cache.load().unwrap();
        let mut delta = Delta::default();
        for change in &cache.changes().files {
            delta.files.insert(
                change.file.clone(),
                (change.before.clone(), change.after.clone()),
            );
        }
        (desired, delta)
    }

    #[test]
    fn the_changed_files_alone_give_the_same_touched_accounts_and_restricted_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("providers.yaml"),
            "providers:\n  h:\n    kind: status-api\n    base_url: http://127.0.0.1:1\n    auth: { bearer_token_env: T }\n  o:\n    kind: status-api\n    base_url: http://127.0.0.1:2\n    auth: { bearer_token_env: T }\n",
        )
        .unwrap();
        std::fs::write(root.join("a.yaml"), BASE).unwrap();
        let other = "users:\n  - name: zed\n    status: active\n    accounts: { h: z1, o: z1 }\n";
        std::fs::write(root.join("b.yaml"), other).unwrap();
        let mut cache = crate::desired::FolderCache::new(root, crate::provider::specs());
        let (before, _) = load_delta(&mut cache);
        // One file edited (a status, a new account, a removed user), one file added.
        std::fs::write(
            root.join("a.yaml"),
            BASE.replace("status: inactive", "status: active")
                .replace("{ h: b1 }", "{ h: b1, o: b2 }")
                .replace(
                    "  - name: ann\n    status: active\n    accounts: { h: a1, o: a1 }\n",
                    "",
                ),
        )
        .unwrap();
        std::fs::write(
            root.join("c.yaml"),
            "users:\n  - name: new\n    status: inactive\n    accounts: { h: n1 }\n",
        )
        .unwrap();
        let (after, delta) = load_delta(&mut cache);
        assert_eq!(delta.files.len(), 2, "a.yaml and c.yaml");
        assert_eq!(delta.instances(), BTreeSet::from(["h", "o"]));
        for instance in ["h", "o"] {
            let whole = touched(&before, &after, instance);
            assert_eq!(touched_in(&delta, instance), whole, "{instance}");
            let ids = whole.unwrap().present;
            assert!(!ids.is_empty());
            assert_eq!(
                format!("{:?}", restrict_in(&after, &delta, instance, &ids)),
                format!("{:?}", restrict(&after, instance, &ids)),
            );
        }
        assert_eq!(
            touched_in(&delta, "h"),
            Some(Touched {
                present: vec!["c1".into(), "n1".into()],
                gone: vec!["a1".into()],
            })
        );
    }

    #[test]
    fn a_moved_entry_is_not_a_change() {
        let ann = "  - name: ann\n    status: active\n    accounts: { h: a1, o: a1 }\n";
        let moved = format!(
            "# a comment that moves every line\n{}{ann}",
            BASE.replace(ann, "")
        );
        assert_eq!(
            touched(&folder(BASE), &folder(&moved), "h"),
            Some(Touched::default())
        );
    }

    #[test]
    fn the_restricted_plan_is_the_full_plan_of_those_accounts() {
        let desired = folder(BASE);
        let live =
            |status: &str| AccountObservation::Found(ObservedAccount::new(Status::new(status)));
        let observation = Observation {
            accounts: [
                ("a1".to_string(), live("inactive")),
                ("b1".to_string(), live("inactive")),
                ("c1".to_string(), live("active")),
            ]
            .into_iter()
            .collect(),
        };
        let observed = BTreeMap::from([("h".to_string(), Ok(observation))]);
        let time = PlanTime::now();
        let full = plan::compute(&desired, &observed, time);
        let ids = vec!["b1".to_string(), "c1".to_string()];
        let restricted = restrict(&desired, "h", &ids);
        assert_eq!(restricted.instances.keys().collect::<Vec<_>>(), ["h"]);
        let part = plan::compute(&restricted, &observed, time);
        let expected: Vec<_> = full
            .changes
            .iter()
            .filter(|c| ids.contains(&c.account_id))
            .cloned()
            .collect();
        assert_eq!(part.changes, expected);
        assert_eq!(part.changes.len(), 2);
        assert_eq!(
            part.changes[1].reason.as_deref(),
            Some("Left (HR-1)"),
            "the user's reason travels with the change"
        );
    }
}
