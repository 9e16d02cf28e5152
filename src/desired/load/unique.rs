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
pub(super) fn check_unique_accounts(users: &[User], problems: &mut Vec<Problem>) {
    let mut problems = Capped::new(problems);
    let mut claimed: FastMap<(&str, &str), (&str, &Location)> = FastMap::default();
    claimed.reserve(users.iter().map(|u| u.accounts.len()).sum());
    for user in users {
        for account in &user.accounts {
            let key = (account.instance.as_str(), account.id.as_str());
            if let Some((owner, first)) = claimed.get(&key) {
                problems.push(Problem {
                    location: account.location.clone(),
                    message: format!(
                        "account '{}' at '{}' is already claimed by user '{owner}' at {first}; an account belongs to one user",
                        account.id, account.instance
                    ),
                });
            } else {
                claimed.insert(key, (&user.name, &account.location));
            }
        }
    }
}
