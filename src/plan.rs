//! The plan: plain data computed by a pure function from desired and observed state.
//! Every executor (`plan`'s dry run, `apply`, the daemon) consumes this same type.

use crate::desired::DesiredState;
use crate::provider::{AccountObservation, Observation};
use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the JSON document; bumped only on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// What a reconcile pass would do, and what it could not decide.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub format_version: u32,
    /// Sorted by provider, then user, then account id.
    pub changes: Vec<Change>,
    /// Accounts whose live status already matches.
    pub in_sync: usize,
    /// Accounts in sync per instance, with an entry (possibly 0) for every instance that
    /// was read without an instance error: reports say what was and was not read.
    #[serde(skip)]
    pub in_sync_by_instance: BTreeMap<String, usize>,
    /// Changes the provider is known to refuse; never attempted.
    pub blocked: Vec<Blocked>,
    /// Instances or accounts that could not be read.
    pub errors: Vec<PlanError>,
}

/// One status change: a single write call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub provider: String,
    pub user: String,
    pub account_id: String,
    pub from: Status,
    pub to: Status,
    /// The user's `reason`, sent where an API takes a comment.
    #[serde(skip)]
    pub reason: Option<String>,
    /// The revision read with the status (Acronis `version`), for optimistic concurrency.
    #[serde(skip)]
    pub revision: Option<u64>,
}

/// A change the provider is known to refuse, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocked {
    pub provider: String,
    pub user: String,
    pub account_id: String,
    #[serde(skip)]
    pub from: Status,
    #[serde(skip)]
    pub to: Status,
    pub reason: String,
}

/// An instance that could not be read (no `user`), or one account that could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanError {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub message: String,
}

/// What was read from one instance: its accounts, or why the whole instance failed.
pub type InstanceObservation = Result<Observation, String>;

/// Diffs `desired` against what was `observed`. Only instances present in `observed`
/// are planned, so a `--provider` selection or a daemon's per-instance loop simply
/// passes fewer instances. Accounts in no file never appear: they were never asked for.
pub fn compute(desired: &DesiredState, observed: &BTreeMap<String, InstanceObservation>) -> Plan {
    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        ..Plan::default()
    };
    let by_instance = desired.accounts_by_instance();
    for (instance, observation) in observed {
        let observation = match observation {
            Ok(observation) => observation,
            Err(message) => {
                plan.errors.push(PlanError {
                    provider: instance.clone(),
                    user: None,
                    account_id: None,
                    message: message.clone(),
                });
                continue;
            }
        };
        plan.in_sync_by_instance
            .entry(instance.clone())
            .or_insert(0);
        for (user, account) in by_instance.get(instance.as_str()).into_iter().flatten() {
            let entry = |message: String| PlanError {
                provider: instance.clone(),
                user: Some(user.name.clone()),
                account_id: Some(account.id.clone()),
                message,
            };
            let live = match observation.accounts.get(&account.id) {
                None => {
                    plan.errors
                        .push(entry("account not found at the provider (404)".to_string()));
                    continue;
                }
                Some(AccountObservation::Failed(message)) => {
                    plan.errors.push(entry(message.clone()));
                    continue;
                }
                Some(AccountObservation::Found(live)) => live,
            };
            if live.status == account.status {
                plan.in_sync += 1;
                *plan
                    .in_sync_by_instance
                    .entry(instance.clone())
                    .or_insert(0) += 1;
                continue;
            }
            match &live.refusal {
                Some(refusal) if refusal.blocks(&account.status) => plan.blocked.push(Blocked {
                    provider: instance.clone(),
                    user: user.name.clone(),
                    account_id: account.id.clone(),
                    from: live.status.clone(),
                    to: account.status.clone(),
                    reason: refusal.reason.clone(),
                }),
                _ => plan.changes.push(Change {
                    provider: instance.clone(),
                    user: user.name.clone(),
                    account_id: account.id.clone(),
                    from: live.status.clone(),
                    to: account.status.clone(),
                    reason: user.reason.clone(),
                    revision: live.revision,
                }),
            }
        }
    }
    plan.sort();
    plan
}

impl Plan {
    /// Whether applying this plan would make any call.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Number of changes per instance.
    pub fn changes_per_instance(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for change in &self.changes {
            *counts.entry(change.provider.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Appends another plan (another instance's), keeping the contract's sort order.
    pub fn merge(&mut self, other: Plan) {
        self.format_version = FORMAT_VERSION;
        self.changes.extend(other.changes);
        self.in_sync += other.in_sync;
        for (instance, in_sync) in other.in_sync_by_instance {
            *self.in_sync_by_instance.entry(instance).or_insert(0) += in_sync;
        }
        self.blocked.extend(other.blocked);
        self.errors.extend(other.errors);
        self.sort();
    }

    /// The contract's order: provider, then user, then account id.
    fn sort(&mut self) {
        self.changes.sort_by(|a, b| {
            (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
        });
        self.blocked.sort_by(|a, b| {
            (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
        });
        self.errors.sort_by(|a, b| {
            (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Account, Location, User};
    use crate::provider::{ObservedAccount, Refusal, RefusalScope};

    /// A desired state whose users each have one account: (user, instance, id, status).
    fn desired(accounts: &[(&str, &str, &str, &str)]) -> DesiredState {
        DesiredState {
            root: "desired-state".into(),
            instances: Default::default(),
            users: accounts
                .iter()
                .map(|(user, instance, id, status)| User {
                    name: user.to_string(),
                    reason: Some(format!("ticket for {user}")),
                    accounts: vec![Account {
                        instance: instance.to_string(),
                        id: id.to_string(),
                        status: Status::new(*status),
                        location: Location::default(),
                    }],
                    location: Location::default(),
                })
                .collect(),
        }
    }

    fn found(status: &str) -> AccountObservation {
        AccountObservation::Found(ObservedAccount::new(Status::new(status)))
    }

    fn refusing(status: &str, applies_to: RefusalScope) -> AccountObservation {
        AccountObservation::Found(ObservedAccount {
            status: Status::new(status),
            refusal: Some(Refusal {
                applies_to,
                reason: "refused".into(),
            }),
            revision: Some(7),
        })
    }

    fn observed(
        instance: &str,
        accounts: Vec<(&str, AccountObservation)>,
    ) -> (String, InstanceObservation) {
        let accounts = accounts
            .into_iter()
            .map(|(id, o)| (id.to_string(), o))
            .collect();
        (instance.to_string(), Ok(Observation { accounts }))
    }

    #[test]
    fn each_combination_lands_in_exactly_one_bucket() {
        let state = desired(&[
            ("zoe", "b", "z1", "inactive"),  // drift → change
            ("amy", "b", "a1", "active"),    // in sync
            ("bob", "b", "b1", "inactive"),  // not found → error
            ("cat", "b", "c1", "inactive"),  // read failed → error
            ("dan", "a", "d1", "inactive"),  // admin deactivation → blocked
            ("eve", "a", "e1", "active"),    // admin reactivation → change
            ("fay", "a", "f1", "suspended"), // provider's own status → change
            ("gus", "c", "g1", "inactive"),  // instance failed → one instance error
            ("hal", "c", "h1", "inactive"),
            ("ivy", "a", "i1", "active"), // locked: any change blocked
            ("jon", "skipped", "j1", "inactive"), // instance not observed → not planned
        ]);
        let observed: BTreeMap<String, InstanceObservation> = [
            observed(
                "b",
                vec![
                    ("z1", found("active")),
                    ("a1", found("active")),
                    ("c1", AccountObservation::Failed("HTTP 403: denied".into())),
                    ("not-in-any-file", found("active")),
                ],
            ),
            observed(
                "a",
                vec![
                    ("d1", refusing("active", RefusalScope::Deactivation)),
                    ("e1", refusing("inactive", RefusalScope::Deactivation)),
                    ("f1", found("active")),
                    ("i1", refusing("locked", RefusalScope::AnyChange)),
                ],
            ),
            ("c".to_string(), Err("c: credentials rejected".to_string())),
        ]
        .into_iter()
        .collect();
        let plan = compute(&state, &observed);
        let changes: Vec<(&str, &str, &str, &str)> = plan
            .changes
            .iter()
            .map(|c| {
                (
                    c.provider.as_str(),
                    c.user.as_str(),
                    c.from.as_str(),
                    c.to.as_str(),
                )
            })
            .collect();
        assert_eq!(
            changes,
            [
                ("a", "eve", "inactive", "active"),
                ("a", "fay", "active", "suspended"),
                ("b", "zoe", "active", "inactive"),
            ]
        );
        assert_eq!(
            plan.changes[0].revision,
            Some(7),
            "the read revision travels with the change"
        );
        assert_eq!(plan.changes[2].reason.as_deref(), Some("ticket for zoe"));
        assert_eq!(plan.in_sync, 1);
        let read: Vec<(&str, usize)> = plan
            .in_sync_by_instance
            .iter()
            .map(|(instance, n)| (instance.as_str(), *n))
            .collect();
        assert_eq!(read, [("a", 0), ("b", 1)], "c failed, so it was not read");
        let blocked: Vec<&str> = plan.blocked.iter().map(|b| b.user.as_str()).collect();
        assert_eq!(blocked, ["dan", "ivy"]);
        let errors: Vec<(&str, Option<&str>, &str)> = plan
            .errors
            .iter()
            .map(|e| (e.provider.as_str(), e.user.as_deref(), e.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                ("b", Some("bob"), "account not found at the provider (404)"),
                ("b", Some("cat"), "HTTP 403: denied"),
                ("c", None, "c: credentials rejected"),
            ]
        );
    }

    #[test]
    fn json_matches_the_contract() {
        let state = desired(&[("jsmith", "atlan", "02aa", "inactive")]);
        let observed: BTreeMap<String, InstanceObservation> =
            [observed("atlan", vec![("02aa", found("active"))])]
                .into_iter()
                .collect();
        let json = serde_json::to_value(compute(&state, &observed)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format_version": 1,
                "changes": [{"provider": "atlan", "user": "jsmith", "account_id": "02aa", "from": "active", "to": "inactive"}],
                "in_sync": 0,
                "blocked": [],
                "errors": []
            })
        );
    }

    #[test]
    fn a_converged_state_plans_nothing() {
        let state = desired(&[("a", "x", "1", "active"), ("b", "x", "2", "inactive")]);
        let observed: BTreeMap<String, InstanceObservation> = [observed(
            "x",
            vec![("1", found("active")), ("2", found("inactive"))],
        )]
        .into_iter()
        .collect();
        let plan = compute(&state, &observed);
        assert!(!plan.has_changes());
        assert_eq!(plan.in_sync, 2);
        assert!(plan.blocked.is_empty() && plan.errors.is_empty());
    }
}
