//! The folder-wide rules: a user name is used once, and an account belongs to one user.

use super::super::yaml::{hidden_problems, MAX_PROBLEMS_PER_FILE};
use super::super::{Location, Problem, User};
use std::collections::{BTreeMap, HashMap};

/// Problems of a whole-folder check, at most [`MAX_PROBLEMS_PER_FILE`] per file; the
/// rest are counted in one closing line per file when it is dropped.
struct Capped<'a> {
    problems: &'a mut Vec<Problem>,
    per_file: BTreeMap<std::sync::Arc<str>, (usize, usize)>,
}

impl<'a> Capped<'a> {
    fn new(problems: &'a mut Vec<Problem>) -> Capped<'a> {
        Capped {
            problems,
            per_file: BTreeMap::new(),
        }
    }

    fn push(&mut self, problem: Problem) {
        let (shown, hidden) = self
            .per_file
            .entry(problem.location.file.clone())
            .or_default();
        if *shown < MAX_PROBLEMS_PER_FILE {
            *shown += 1;
            self.problems.push(problem);
        } else {
            *hidden += 1;
        }
    }
}

impl Drop for Capped<'_> {
    fn drop(&mut self) {
        for (file, (_, hidden)) in &self.per_file {
            if *hidden > 0 {
                self.problems.push(hidden_problems(file, *hidden));
            }
        }
    }
}

/// A map with a fast hasher, seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A user name is used once across the folder.
pub(super) fn check_unique_names(names: &[(String, Location)], problems: &mut Vec<Problem>) {
    let mut problems = Capped::new(problems);
    let mut first_use: FastMap<&str, &Location> = FastMap::default();
    first_use.reserve(names.len());
    for (name, location) in names {
        match first_use.get(name.as_str()) {
            Some(first) => problems.push(Problem {
                location: location.clone(),
                message: format!("user name '{name}' is already used at {first}; names must be unique across the folder"),
            }),
            None => {
                first_use.insert(name, location);
            }
        }
    }
}

/// A provider account (instance + id) is claimed by one user only.
///
/// Sorts one (hash, user, account) triple per account instead of building a map of
/// them: at 350,000 accounts a map costs about 30 MB at the moment the folder's memory
/// peaks, the triples about 8 MB. Equal hashes come together, in file order within.
pub(super) fn check_unique_accounts<U: std::ops::Deref<Target = User>>(
    users: &[U],
    problems: &mut Vec<Problem>,
) {
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::RandomState::default();
    let mut keys: Vec<(u64, usize, usize)> =
        Vec::with_capacity(users.iter().map(|u| u.accounts.len()).sum());
    for (u, user) in users.iter().enumerate() {
        for (a, account) in user.accounts.iter().enumerate() {
            let hash = hasher.hash_one((account.instance.as_str(), account.id.as_str()));
            keys.push((hash, u, a));
        }
    }
    keys.sort_unstable();
    let account = |(u, a): (usize, usize)| &users[u].accounts[a];
    // (a later claim, the first claim), for every account claimed more than once.
    let mut again: Vec<((usize, usize), (usize, usize))> = Vec::new();
    for run in keys.chunk_by(|x, y| x.0 == y.0).filter(|run| run.len() > 1) {
        let mut firsts: Vec<(usize, usize)> = Vec::new();
        for &(_, u, a) in run {
            let this = account((u, a));
            match firsts.iter().find(|f| {
                let first = account(**f);
                first.instance == this.instance && first.id == this.id
            }) {
                Some(first) => again.push(((u, a), *first)),
                None => firsts.push((u, a)),
            }
        }
    }
    // In file order, as a map walked in file order would find them (the per-file cap
    // keeps the first problems of each file).
    again.sort_unstable();
    let mut problems = Capped::new(problems);
    for (later, (owner, first)) in again {
        let (account, first) = (account(later), account((owner, first)));
        problems.push(Problem {
            location: account.location.clone(),
            message: format!(
                "account '{}' at '{}' is already claimed by user '{}' at {}; an account belongs to one user",
                account.id, account.instance, users[owner].name, first.location
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{Account, Bounds, Location, User};
    use super::{check_unique_accounts, MAX_PROBLEMS_PER_FILE};
    use crate::status::Status;

    fn user(name: &str, file: &str, line: usize, accounts: &[(&str, &str)]) -> User {
        let at = |line| Location {
            file: file.into(),
            line,
            column: 7,
        };
        User {
            name: name.into(),
            reason: None,
            accounts: accounts
                .iter()
                .enumerate()
                .map(|(k, (instance, id))| Account {
                    instance: instance.to_string(),
                    id: id.to_string(),
                    status: Status::from_static("active"),
                    bounds: Bounds::default(),
                    location: at(line + k),
                })
                .collect(),
            location: at(line),
        }
    }

    fn problems(users: &[User]) -> Vec<String> {
        let mut problems = Vec::new();
        let users: Vec<&User> = users.iter().collect();
        check_unique_accounts(&users, &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_later_claim_names_the_first_in_file_order() {
        let users = [
            user(
                "ann",
                "a.yaml",
                1,
                &[("portal", "p-1"), ("helpdesk", "h-1")],
            ),
            user(
                "bob",
                "a.yaml",
                5,
                &[("helpdesk", "p-1"), ("portal", "p-2")],
            ),
            user("cy", "b.yaml", 1, &[("portal", "p-2"), ("portal", "p-1")]),
            user("dee", "b.yaml", 5, &[("portal", "p-1")]),
        ];
        let claimed = |at: &str, id: &str, owner: &str, first: &str| {
            format!("{at}: account '{id}' at 'portal' is already claimed by user '{owner}' at {first}; an account belongs to one user")
        };
        assert_eq!(
            problems(&users),
            [
                claimed("b.yaml:1:7", "p-2", "bob", "a.yaml:6:7"),
                claimed("b.yaml:2:7", "p-1", "ann", "a.yaml:1:7"),
                claimed("b.yaml:5:7", "p-1", "ann", "a.yaml:1:7"),
            ]
        );
    }

    #[test]
    fn a_file_shows_its_first_claims_and_counts_the_rest() {
        let first = user("ann", "a.yaml", 1, &[("portal", "p-1")]);
        let mut users = vec![first];
        let extra = MAX_PROBLEMS_PER_FILE + 3;
        for n in 0..extra {
            users.push(user(
                &format!("u{n}"),
                "b.yaml",
                10 + n,
                &[("portal", "p-1")],
            ));
        }
        let found = problems(&users);
        assert_eq!(found.len(), MAX_PROBLEMS_PER_FILE + 1);
        assert!(found[0].starts_with("b.yaml:10:7: "), "{}", found[0]);
        let last_shown = 10 + MAX_PROBLEMS_PER_FILE - 1;
        assert!(
            found[MAX_PROBLEMS_PER_FILE - 1].starts_with(&format!("b.yaml:{last_shown}:7: ")),
            "{}",
            found[MAX_PROBLEMS_PER_FILE - 1]
        );
        assert!(
            found[MAX_PROBLEMS_PER_FILE].starts_with("b.yaml: "),
            "{found:?}"
        );
        assert!(found[MAX_PROBLEMS_PER_FILE].contains('3'), "{found:?}");
    }
}
