//! The desired-state folder: the model Roster reconciles towards, loaded and validated
//! as one unit. A folder with any problem yields no model at all, so nothing ever acts
//! on part of a folder.

mod bounds;
mod folder;
mod load;
mod secrets;
#[doc(hidden)]
pub mod synthetic;
mod text;
mod yaml;

#[cfg(test)]
mod proptests;

pub use bounds::parse_instant;
pub use folder::{MAX_DEPTH, MAX_ENTRIES, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
pub use load::{load, load_files, Changes, FileChange, FileOutcome, FolderCache};
pub use yaml::{MAX_PROBLEMS_PER_FILE, MAX_VALUES_PER_FILE};

use crate::model::KindSpec;
use crate::status::Status;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// A valid desired-state folder.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub root: PathBuf,
    /// Provider instances by name.
    pub instances: BTreeMap<String, InstanceConfig>,
    /// Users in file order (files sorted by path). Shared, so that the daemon's reload
    /// cache and the folder in force hold one copy of each user, not two.
    pub users: Vec<Arc<User>>,
}

impl DesiredState {
    /// The accounts of `instances`, each paired with its user, grouped by instance (an
    /// entry, possibly empty, for every instance asked for). Only these are grouped: a
    /// daemon pass or a per-instance plan then holds one instance's accounts, not all
    /// 500,000 of a large folder.
    pub fn accounts_at<'a>(
        &'a self,
        instances: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<&'a str, Vec<(&'a User, &'a Account)>> {
        let mut grouped: BTreeMap<&str, Vec<(&User, &Account)>> = instances
            .into_iter()
            .map(|name| (name, Vec::new()))
            .collect();
        for user in &self.users {
            for account in &user.accounts {
                if let Some(accounts) = grouped.get_mut(account.instance.as_str()) {
                    accounts.push((user, account));
                }
            }
        }
        grouped
    }

    /// Number of accounts across all users.
    pub fn account_count(&self) -> usize {
        self.users.iter().map(|u| u.accounts.len()).sum()
    }
}

/// One provider instance from `providers.yaml`.
#[derive(Clone)]
pub struct InstanceConfig {
    pub name: String,
    pub kind: &'static KindSpec,
    pub base_url: Url,
    pub auth: AuthConfig,
    /// In-flight requests to this instance.
    pub max_concurrency: usize,
    /// Steady request rate; `None` means unpaced (429s are still honoured).
    pub requests_per_second: Option<f64>,
    pub timeout: Duration,
    /// Safety guard: the most changes one pass may make at this instance.
    pub max_changes: usize,
    /// Kind-specific settings (`tenant_id`, `api_version`, `organization_id`).
    pub settings: BTreeMap<String, String>,
    /// `ca_file`: a PEM file of extra CA certificates to trust, for a private CA.
    pub ca_file: Option<PathBuf>,
    pub location: Location,
}

impl InstanceConfig {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }
}

impl fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceConfig")
            .field("name", &self.name)
            .field("kind", &self.kind.name)
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .field("max_concurrency", &self.max_concurrency)
            .field("requests_per_second", &self.requests_per_second)
            .field("timeout", &self.timeout)
            .field("max_changes", &self.max_changes)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Where an instance's credentials come from. Holds names, never values.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    Bearer(SecretSource),
    ClientCredentials {
        client_id: SecretSource,
        client_secret: SecretSource,
    },
}

/// An environment variable or a file holding a secret.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A person and the status each of their accounts should have.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// Shown in plans and sent where an API takes a comment.
    pub reason: Option<String>,
    pub accounts: Vec<Account>,
    pub location: Location,
}

/// One account at one provider instance, with its effective desired status.
#[derive(Debug, Clone)]
pub struct Account {
    pub instance: String,
    pub id: String,
    /// The status between the bounds: the account's own `status` or its user's. Use
    /// [`Account::status_at`] for the status that holds at an instant.
    pub status: Status,
    /// When `status` holds, with the account's own bounds replacing the user's key by key.
    pub bounds: Bounds,
    pub location: Location,
}

impl Account {
    /// The desired status at instant `at` (contract section 7): `before` while `at` is
    /// earlier than `from`, otherwise `then` once `at` has reached `until`, otherwise
    /// `status`. Takes the instant as a value so that a plan never reads the clock.
    pub fn status_at(&self, at: OffsetDateTime) -> &Status {
        match (self.bounds.from, self.bounds.until) {
            (Some(from), _) if at < from => &self.bounds.before,
            (_, Some(until)) if at >= until => &self.bounds.then,
            _ => &self.status,
        }
    }

    /// The scheduled transitions strictly after `after` and no later than `end`: each
    /// bound in that window where the status from that instant on differs from the one
    /// just before it, with the status that takes effect, in time order. Independent of
    /// any live state, so reviewers see every scheduled transition.
    pub fn transitions(
        &self,
        after: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Vec<(OffsetDateTime, Status)> {
        let mut instants: Vec<OffsetDateTime> = [self.bounds.from, self.bounds.until]
            .into_iter()
            .flatten()
            .filter(|t| *t > after && *t <= end)
            .collect();
        instants.sort();
        instants.dedup();
        instants
            .into_iter()
            .filter_map(|t| {
                let previous = self.status_at(t - time::Duration::NANOSECOND);
                let next = self.status_at(t);
                (previous != next).then(|| (t, next.clone()))
            })
            .collect()
    }
}

/// The effective time bounds of one account; with neither `from` nor `until` set, the
/// status always holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeBounds {
    /// Before this instant the desired status is `before`.
    pub from: Option<OffsetDateTime>,
    /// From this instant on the desired status is `then`.
    pub until: Option<OffsetDateTime>,
    /// Default `inactive`: someone who has not started yet has no access.
    pub before: Status,
    /// Default `inactive`: someone whose access has ended has none.
    pub then: Status,
}

/// The bounds every account has unless its file says otherwise.
static UNBOUNDED: TimeBounds = TimeBounds {
    from: None,
    until: None,
    before: Status::from_static(Status::INACTIVE),
    then: Status::from_static(Status::INACTIVE),
};

impl Default for TimeBounds {
    fn default() -> Self {
        UNBOUNDED.clone()
    }
}

/// An account's [`TimeBounds`], stored only when they differ from the default: almost no
/// account has any, and a folder of 500,000 accounts would otherwise carry 72 bytes of
/// defaults for each. Reads and writes go through `Deref`/`DerefMut` as if it were the
/// `TimeBounds` itself; equality and hashing compare the bounds, not how they are stored.
#[derive(Clone, Default)]
pub struct Bounds(Option<Box<TimeBounds>>);

impl From<TimeBounds> for Bounds {
    fn from(bounds: TimeBounds) -> Self {
        if bounds == UNBOUNDED {
            Bounds(None)
        } else {
            Bounds(Some(Box::new(bounds)))
        }
    }
}

impl std::ops::Deref for Bounds {
    type Target = TimeBounds;
    fn deref(&self) -> &TimeBounds {
        self.0.as_deref().unwrap_or(&UNBOUNDED)
    }
}

impl std::ops::DerefMut for Bounds {
    fn deref_mut(&mut self) -> &mut TimeBounds {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Bounds {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bounds {}

impl std::hash::Hash for Bounds {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl TimeBounds {
    /// Whether the status is time-bound at all.
    pub fn is_bounded(&self) -> bool {
        self.from.is_some() || self.until.is_some()
    }
}

/// A position in a file of the folder, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    /// Shared by every position in one file, so that a folder of 100,000 users does not
    /// hold one copy of a file's path per account.
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One thing wrong with the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl InvalidFolder {
    /// "1 problem" or "N problems", for summaries.
    pub fn count_text(&self) -> String {
        match self.problems.len() {
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    }
}

/// Every problem of a folder that failed to load, in file and line order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InvalidFolder {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod bounds_storage_tests {
    use super::*;

    /// Unbounded accounts store nothing; however bounds are built or edited, equality and
    /// hashing see only what they say.
    #[test]
    fn bounds_compare_by_value_and_store_only_what_differs() {
        assert_eq!(std::mem::size_of::<Bounds>(), std::mem::size_of::<usize>());
        let default = Bounds::default();
        assert!(default.0.is_none());
        assert_eq!(default, Bounds::from(TimeBounds::default()));
        assert!(Bounds::from(TimeBounds::default()).0.is_none());

        let until = parse_instant("2026-12-01T00:00:00Z").ok();
        let built = Bounds::from(TimeBounds {
            until,
            ..TimeBounds::default()
        });
        let mut edited = default.clone();
        edited.until = until;
        assert_eq!(built, edited);
        assert_ne!(built, default);
        assert!(built.is_bounded());

        let mut touched = default.clone();
        touched.before = Status::inactive();
        assert_eq!(
            touched, default,
            "a materialised default is still the default"
        );
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&touched), state.hash_one(&default));
    }
}
