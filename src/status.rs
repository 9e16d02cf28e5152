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

/// The names [`Status::new`] shares instead of allocating: those the built-in kinds
/// accept and those the adapters report.
const COMMON: &[&str] = &[
    Status::ACTIVE,
    Status::INACTIVE,
    "suspended",
    "onboarding",
    "risky",
    "locked",
    "unknown",
];

impl Status {
    /// The status every kind accepts for an enabled account.
    pub const ACTIVE: &'static str = "active";
    /// The status every kind accepts for a disabled account.
    pub const INACTIVE: &'static str = "inactive";

    /// A status of that name. A name every kind or adapter uses (`active`, `inactive`,
    /// `unknown`, ...) borrows a static copy, so reading 100,000 accounts allocates no
    /// string per account; any other name is kept as given.
    pub fn new(name: impl Into<String> + AsRef<str>) -> Self {
        match COMMON.iter().find(|c| **c == name.as_ref()) {
            Some(common) => Status(Cow::Borrowed(common)),
            None => Status(Cow::Owned(name.into())),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider reports a status per account: the common names must not allocate
    /// (100,000 accounts would hold 100,000 copies of `active`), and sharing must not
    /// change what a status equals.
    #[test]
    fn common_names_are_shared_and_compare_as_any_other() {
        for name in COMMON {
            let status = Status::new(name.to_string());
            assert!(matches!(status.0, Cow::Borrowed(_)), "{name} allocated");
            assert_eq!(status.as_str(), *name);
        }
        let custom = Status::new(String::from("on-leave"));
        assert!(matches!(custom.0, Cow::Owned(_)));
        assert_eq!(custom, Status(Cow::Borrowed("on-leave")));
        assert_eq!(Status::new("active"), Status::active());
        assert!(Status::new(String::from("active")).is_active());
    }
}
