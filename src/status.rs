//! Account statuses, as written in the desired state and as read from providers.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// A status name such as `active`, `inactive` or a provider's own (`suspended`, `locked`).
///
/// Kept as a string rather than a closed enum because each provider kind has its own
/// vocabulary, and observed states (`unknown`, `locked`) must be shown as they are.
/// A status named by a kind borrows the kind's static name, so a folder of 100,000 users
/// does not allocate one string per account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Status(Cow<'static, str>);

impl Status {
    /// The status every kind accepts for an enabled account.
    pub const ACTIVE: &'static str = "active";
    /// The status every kind accepts for a disabled account.
    pub const INACTIVE: &'static str = "inactive";

    pub fn new(name: impl Into<String>) -> Self {
        Status(Cow::Owned(name.into()))
    }

    /// A status whose name lives for the whole program (a kind's vocabulary).
    pub const fn from_static(name: &'static str) -> Self {
        Status(Cow::Borrowed(name))
    }

    pub fn active() -> Self {
        Status::from_static(Self::ACTIVE)
    }

    pub fn inactive() -> Self {
        Status::from_static(Self::INACTIVE)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_active(&self) -> bool {
        self.0 == Self::ACTIVE
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Status {
    fn from(name: &str) -> Self {
        Status::new(name)
    }
}
