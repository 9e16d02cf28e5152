//! `roster status`: who has access. For every account in the folder, the live status
//! beside the desired one. Read-only by construction: it reads through the same
//! observation path as `plan` ([`crate::reconcile::observe_all`]) and never holds a
//! [`crate::apply::WriteAccess`], so no write call can even be expressed here.

use crate::desired::DesiredState;
use crate::model::{AccountObservation, Inventory};
use crate::plan::{InstanceObservation, PlanError, FORMAT_VERSION};
use crate::status::Status;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashSet};
use time::OffsetDateTime;

/// The `roster status` document (contract section 8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub format_version: u32,
    /// Sorted by user, then provider, then account id.
    pub accounts: Vec<AccountStatus>,
    /// With `--unmanaged`: accounts a provider holds that no file claims, sorted by
    /// provider, then account id. Empty without it.
    pub unmanaged: Vec<Unmanaged>,
    /// With `--unmanaged`: instances that cannot list all their accounts, so their
    /// unmanaged accounts are unknown rather than none. Left out of JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_listed: Vec<NotListed>,
    /// Whether unmanaged accounts were asked for, so that an empty list can be told
    /// apart from a question nobody asked.
    #[serde(skip)]
    pub unmanaged_listed: bool,
    /// Instances or accounts that could not be read, as in a plan.
    pub errors: Vec<PlanError>,
}

/// An account a provider holds that no file in the folder claims.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unmanaged {
    pub provider: String,
    pub account_id: String,
    /// The login, else the email address, where the API gives one.
    pub login: Option<String>,
    pub live: Status,
}

/// An instance whose kind (or settings) cannot list every account it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotListed {
    pub provider: String,
    pub reason: String,
}

/// What listing every account of one instance gave: the list, or why it failed.
pub type InstanceInventory = Result<Inventory, String>;

impl StatusReport {
    /// Adds the accounts of `inventories` that no file of `desired` claims (under their
    /// id or any alias), the instances that cannot list, and listing failures as errors.
    /// `desired` is the whole folder, not a `USER...` selection: an account another
    /// user's file claims is managed.
    pub fn add_unmanaged(
        &mut self,
        desired: &DesiredState,
        inventories: &BTreeMap<String, InstanceInventory>,
    ) {
        let claimed: HashSet<(&str, &str)> = desired
            .users
            .iter()
            .flat_map(|u| u.accounts.iter())
            .map(|a| (a.instance.as_str(), a.id.as_str()))
            .collect();
        self.unmanaged_listed = true;
        for (instance, inventory) in inventories {
            match inventory {
                Err(message) => self.errors.push(PlanError {
                    provider: instance.clone(),
                    user: None,
                    account_id: None,
                    message: format!("listing every account failed: {message}"),
                }),
                Ok(Inventory::CannotList { reason }) => self.not_listed.push(NotListed {
                    provider: instance.clone(),
                    reason: reason.clone(),
                }),
                Ok(Inventory::Listed(held)) => {
                    for account in held {
                        let is_claimed = std::iter::once(&account.id)
                            .chain(&account.aliases)
                            .any(|key| claimed.contains(&(instance.as_str(), key.as_str())));
                        if !is_claimed {
                            self.unmanaged.push(Unmanaged {
                                provider: instance.clone(),
                                account_id: account.id.clone(),
                                login: account.login.clone().or_else(|| account.email.clone()),
                                live: account.live.status.clone(),
                            });
                        }
                    }
                }
            }
        }
        self.unmanaged.sort();
        self.unmanaged.dedup();
        self.errors.sort_by(|a, b| {
            (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
        });
    }
}

/// One account of the folder: desired (at the report's instant) beside live.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountStatus {
    pub user: String,
    pub provider: String,
    pub account_id: String,
    pub desired: Status,
    pub live: Live,
    pub in_sync: bool,
}

/// What the provider said: a status, or that it does not know the account.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    Status(Status),
    NotFound,
}

impl Live {
    pub fn as_str(&self) -> &str {
        match self {
            Live::Status(status) => status.as_str(),
            Live::NotFound => "not_found",
        }
    }
}

impl Serialize for Live {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Users named on the command line that the folder does not hold.
#[derive(Debug, thiserror::Error)]
#[error("no such user in the folder: {}", .names.join(", "))]
pub struct UnknownUsers {
    pub names: Vec<String>,
}

/// The folder limited to `users` (all of them when empty), so that only their accounts
/// are read.
pub fn only_users(desired: &DesiredState, users: &[String]) -> Result<DesiredState, UnknownUsers> {
    if users.is_empty() {
        return Ok(desired.clone());
    }
    let unknown: Vec<String> = users
        .iter()
        .filter(|name| !desired.users.iter().any(|u| &&u.name == name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(UnknownUsers { names: unknown });
    }
    let mut selected = desired.clone();
    selected.users.retain(|u| users.contains(&u.name));
    Ok(selected)
}

/// Sets `desired`, evaluated at `at`, beside what was `observed`. Only instances present
/// in `observed` are reported (a `--provider` selection passes fewer). With
/// `drift_only`, accounts whose live status matches are left out.
pub fn compute(
    desired: &DesiredState,
    observed: &BTreeMap<String, InstanceObservation>,
    at: OffsetDateTime,
    drift_only: bool,
) -> StatusReport {
    let mut report = StatusReport {
        format_version: FORMAT_VERSION,
        accounts: Vec::new(),
        unmanaged: Vec::new(),
        not_listed: Vec::new(),
        unmanaged_listed: false,
        errors: Vec::new(),
    };
    let by_instance = desired.accounts_at(observed.keys().map(String::as_str));
    for (instance, observation) in observed {
        let observation = match observation {
            Ok(observation) => observation,
            Err(message) => {
                report.errors.push(PlanError {
                    provider: instance.clone(),
                    user: None,
                    account_id: None,
                    message: message.clone(),
                });
                continue;
            }
        };
        for (user, account) in by_instance.get(instance.as_str()).into_iter().flatten() {
            let live = match observation.accounts.get(&account.id) {
                None => Live::NotFound,
                Some(AccountObservation::Found(found)) => Live::Status(found.status.clone()),
                Some(AccountObservation::Failed(message)) => {
                    report.errors.push(PlanError {
                        provider: instance.clone(),
                        user: Some(user.name.clone()),
                        account_id: Some(account.id.clone()),
                        message: message.clone(),
                    });
                    continue;
                }
            };
            let desired = account.status_at(at).clone();
            let in_sync = live == Live::Status(desired.clone());
            if drift_only && in_sync {
                continue;
            }
            report.accounts.push(AccountStatus {
                user: user.name.clone(),
                provider: instance.clone(),
                account_id: account.id.clone(),
                desired,
                live,
                in_sync,
            });
        }
    }
    report.accounts.sort_by(|a, b| {
        (&a.user, &a.provider, &a.account_id).cmp(&(&b.user, &b.provider, &b.account_id))
    });
    report.errors.sort_by(|a, b| {
        (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
    });
    report
}

impl StatusReport {
    /// 0, or 1 when an instance or account could not be read.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.errors.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Account, Bounds, Location, User};
    use crate::model::{Observation, ObservedAccount};
    use std::sync::Arc;

    fn state() -> DesiredState {
        let account = |instance: &str, id: &str, status: &str| Account {
            instance: instance.into(),
            id: id.into(),
            status: Status::new(status),
            bounds: Bounds::default(),
            location: Location::default(),
        };
        let user = |name: &str, accounts: Vec<Account>| User {
            name: name.into(),
            reason: None,
            accounts,
            location: Location::default(),
        };
        let mut leaving = account("h", "z1", "active");
        leaving.bounds.until = crate::desired::parse_instant("2026-12-01T00:00:00Z").ok();
        DesiredState {
            root: "desired-state".into(),
            instances: Default::default(),
            users: vec![
                user("zoe", vec![leaving, account("p", "z2", "active")]),
                user(
                    "amy",
                    vec![
                        account("h", "a1", "active"),
                        account("h", "a2", "inactive"),
                        account("h", "a3", "inactive"),
                    ],
                ),
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
        }
    }

    fn observed() -> BTreeMap<String, InstanceObservation> {
        let found = |s: &str| AccountObservation::Found(ObservedAccount::new(Status::new(s)));
        let accounts = [
            ("z1", found("active")),
            ("a1", found("active")),
            ("a2", AccountObservation::Failed("HTTP 403".into())),
        ]
        .into_iter()
        .map(|(id, o)| (id.to_string(), o))
        .collect();
        [
            ("h".to_string(), Ok(Observation { accounts })),
            ("p".to_string(), Err("p: connection refused".to_string())),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn desired_is_evaluated_at_the_instant_and_set_beside_live() {
        let at = crate::desired::parse_instant("2026-12-01T00:00:00Z").unwrap();
        let report = compute(&state(), &observed(), at, false);
        let rows: Vec<(&str, &str, &str, &str, bool)> = report
            .accounts
            .iter()
            .map(|a| {
                (
                    a.user.as_str(),
                    a.account_id.as_str(),
                    a.desired.as_str(),
                    a.live.as_str(),
                    a.in_sync,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("amy", "a1", "active", "active", true),
                ("amy", "a3", "inactive", "not_found", false),
                ("zoe", "z1", "inactive", "active", false),
            ]
        );
        let errors: Vec<(Option<&str>, &str)> = report
            .errors
            .iter()
            .map(|e| (e.user.as_deref(), e.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            [(Some("amy"), "HTTP 403"), (None, "p: connection refused")]
        );
        assert_eq!(report.exit_code(), 1);
        let drift = compute(&state(), &observed(), at, true);
        assert_eq!(drift.accounts.len(), 2, "the account in sync is left out");
        let before = crate::desired::parse_instant("2026-11-30T23:59:59Z").unwrap();
        let early = compute(&state(), &observed(), before, true);
        assert!(
            early.accounts.iter().all(|a| a.user != "zoe"),
            "before the bound zoe is in sync"
        );
    }

    #[test]
    fn a_user_filter_keeps_only_those_users_and_refuses_unknown_names() {
        let amy = only_users(&state(), &["amy".to_string()]).unwrap();
        assert_eq!(amy.users.len(), 1);
        assert_eq!(only_users(&state(), &[]).unwrap().users.len(), 2);
        let error = only_users(&state(), &["amy".into(), "bob".into()]).unwrap_err();
        assert_eq!(error.to_string(), "no such user in the folder: bob");
    }

    #[test]
    fn unmanaged_lists_exactly_the_accounts_no_file_claims() {
        use crate::model::HeldAccount;
        let held =
            |id: &str, alias: Option<&str>, login: Option<&str>, email: Option<&str>| HeldAccount {
                id: id.into(),
                aliases: alias.map(String::from).into_iter().collect(),
                login: login.map(String::from),
                email: email.map(String::from),
                live: ObservedAccount::new(Status::active()),
            };
        let inventories: BTreeMap<String, InstanceInventory> = [
            (
                "h".to_string(),
                Ok(Inventory::Listed(vec![
                    held("u-9", None, None, Some("x@example.com")),
                    held("u-1", Some("a1"), Some("amy"), None),
                    held("z1", None, Some("zoe"), None),
                    held("u-0", None, Some("ghost"), Some("g@example.com")),
                ])),
            ),
            (
                "p".to_string(),
                Ok(Inventory::CannotList {
                    reason: "set tenant_id".into(),
                }),
            ),
            ("q".to_string(), Err("HTTP 500".to_string())),
        ]
        .into_iter()
        .collect();
        let at = crate::desired::parse_instant("2026-12-01T00:00:00Z").unwrap();
        let mut report = compute(&state(), &BTreeMap::new(), at, false);
        report.add_unmanaged(&state(), &inventories);
        let rows: Vec<(&str, &str, Option<&str>)> = report
            .unmanaged
            .iter()
            .map(|u| {
                (
                    u.provider.as_str(),
                    u.account_id.as_str(),
                    u.login.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("h", "u-0", Some("ghost")),
                ("h", "u-9", Some("x@example.com")),
            ],
            "claimed by id (z1) or by alias (a1) is managed; the login wins over the email"
        );
        assert_eq!(
            report.not_listed,
            [NotListed {
                provider: "p".into(),
                reason: "set tenant_id".into()
            }]
        );
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].provider, "q");
        assert_eq!(report.exit_code(), 1);
    }
}
