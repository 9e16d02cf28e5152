//! The plan: plain data computed by a pure function from desired and observed state.
//! Every executor (`plan`'s dry run, `apply`, the daemon) consumes this same type.

use crate::desired::DesiredState;
pub use crate::model::Change;
use crate::model::{AccountObservation, Observation};
use crate::status::Status;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

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
    /// Scheduled changes still to come within the horizon, apart from those due now.
    /// Sorted by `at`, then provider, user, account id.
    pub upcoming: Vec<Upcoming>,
}

/// The instant a plan evaluates the folder at, and how far ahead it lists scheduled
/// changes. A value, so that [`compute`] never reads the clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanTime {
    pub at: OffsetDateTime,
    /// `--upcoming`: zero lists none.
    pub horizon: Duration,
}

/// `--upcoming`'s default: a month of scheduled changes.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

impl PlanTime {
    /// The current time with the default horizon: what `plan`, `apply` and `run` use.
    pub fn now() -> PlanTime {
        PlanTime {
            at: OffsetDateTime::now_utc(),
            horizon: DEFAULT_HORIZON,
        }
    }

    /// The last instant whose scheduled changes are listed; saturates far in the future.
    fn horizon_end(&self) -> OffsetDateTime {
        time::Duration::try_from(self.horizon)
            .ok()
            .and_then(|horizon| self.at.checked_add(horizon))
            .unwrap_or_else(|| time::Date::MAX.midnight().assume_utc())
    }
}

/// A scheduled change: from `at` on, the account's desired status becomes `to`. Listed
/// whatever the live status is, so reviewers see every scheduled transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upcoming {
    pub provider: String,
    pub user: String,
    pub account_id: String,
    /// RFC 3339 in UTC in JSON.
    #[serde(serialize_with = "rfc3339_utc")]
    pub at: OffsetDateTime,
    pub to: Status,
}

/// An instant as RFC 3339 in UTC (`2026-12-31T17:00:00Z`), as the contract writes `at`.
pub fn format_utc(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn rfc3339_utc<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_utc(*at))
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

/// Diffs `desired`, evaluated at `time.at`, against what was `observed`, and lists the
/// scheduled changes within `time.horizon`. Only instances present in `observed` are
/// planned, so a `--provider` selection or a daemon's per-instance loop simply passes
/// fewer instances. Accounts in no file never appear: they were never asked for.
pub fn compute(
    desired: &DesiredState,
    observed: &BTreeMap<String, InstanceObservation>,
    time: PlanTime,
) -> Plan {
    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        ..Plan::default()
    };
    let by_instance = desired.accounts_at(observed.keys().map(String::as_str));
    let end = time.horizon_end();
    for instance in observed.keys() {
        for (user, account) in by_instance.get(instance.as_str()).into_iter().flatten() {
            for (at, to) in account.transitions(time.at, end) {
                plan.upcoming.push(Upcoming {
                    provider: instance.clone(),
                    user: user.name.clone(),
                    account_id: account.id.clone(),
                    at,
                    to,
                });
            }
        }
    }
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
            let desired_status = account.status_at(time.at);
            if live.status == *desired_status {
                plan.in_sync += 1;
                *plan
                    .in_sync_by_instance
                    .entry(instance.clone())
                    .or_insert(0) += 1;
                continue;
            }
            match &live.refusal {
                Some(refusal) if refusal.blocks(desired_status) => plan.blocked.push(Blocked {
                    provider: instance.clone(),
                    user: user.name.clone(),
                    account_id: account.id.clone(),
                    from: live.status.clone(),
                    to: desired_status.clone(),
                    reason: refusal.reason.clone(),
                }),
                _ => plan.changes.push(Change {
                    provider: instance.clone(),
                    user: user.name.clone(),
                    account_id: account.id.clone(),
                    from: live.status.clone(),
                    to: desired_status.clone(),
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
        self.upcoming.extend(other.upcoming);
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
        self.upcoming.sort_by(|a, b| {
            (a.at, &a.provider, &a.user, &a.account_id).cmp(&(
                b.at,
                &b.provider,
                &b.user,
                &b.account_id,
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Account, Bounds, Location, TimeBounds, User};
    use crate::model::{ObservedAccount, Refusal, RefusalScope};
    use std::sync::Arc;

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
                        bounds: Bounds::default(),
                        location: Location::default(),
                    }],
                    location: Location::default(),
                })
                .map(Arc::new)
                .collect(),
        }
    }

    /// A fixed instant: tests never read the clock.
    fn now() -> PlanTime {
        PlanTime {
            at: crate::desired::parse_instant("2026-11-26T12:00:00Z").unwrap(),
            horizon: DEFAULT_HORIZON,
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
        let plan = compute(&state, &observed, now());
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
        let json = serde_json::to_value(compute(&state, &observed, now())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format_version": 1,
                "changes": [{"provider": "atlan", "user": "jsmith", "account_id": "02aa", "from": "active", "to": "inactive"}],
                "in_sync": 0,
                "blocked": [],
                "errors": [],
                "upcoming": []
            })
        );
    }

    fn instant(text: &str) -> OffsetDateTime {
        crate::desired::parse_instant(text).unwrap()
    }

    fn at(text: &str) -> PlanTime {
        PlanTime {
            at: instant(text),
            horizon: DEFAULT_HORIZON,
        }
    }

    /// One user "u" whose account "a1" at instance "x" is `active` within `bounds`.
    fn bounded(bounds: Bounds) -> DesiredState {
        let mut state = desired(&[("u", "x", "a1", "active")]);
        Arc::make_mut(&mut state.users[0]).accounts[0].bounds = bounds;
        state
    }

    /// The change planned at `when` for an account read as `live`, as `from -> to`.
    fn planned(state: &DesiredState, live: &str, when: &str) -> Option<String> {
        let observed: BTreeMap<String, InstanceObservation> =
            [observed("x", vec![("a1", found(live))])]
                .into_iter()
                .collect();
        let plan = compute(state, &observed, at(when));
        plan.changes
            .first()
            .map(|c| format!("{} -> {}", c.from, c.to))
    }

    #[test]
    fn until_takes_effect_at_its_instant_with_then_or_inactive() {
        let until = Bounds::from(TimeBounds {
            until: Some(instant("2026-12-31T18:00:00+01:00")),
            ..TimeBounds::default()
        });
        let state = bounded(until.clone());
        assert_eq!(planned(&state, "active", "2026-12-31T16:59:59Z"), None);
        assert_eq!(
            planned(&state, "active", "2026-12-31T17:00:00Z").as_deref(),
            Some("active -> inactive"),
            "at the bound the default `then` holds"
        );
        assert_eq!(
            planned(&state, "active", "2027-06-01T00:00:00Z").as_deref(),
            Some("active -> inactive")
        );
        let state = bounded(Bounds::from(TimeBounds {
            then: Status::new("suspended"),
            ..(*until).clone()
        }));
        assert_eq!(
            planned(&state, "active", "2026-12-31T17:00:00Z").as_deref(),
            Some("active -> suspended")
        );
        assert_eq!(
            planned(&state, "suspended", "2026-12-31T16:00:00Z").as_deref(),
            Some("suspended -> active"),
            "before the bound the status holds"
        );
    }

    #[test]
    fn from_holds_before_its_instant_then_the_status() {
        let from = Bounds::from(TimeBounds {
            from: Some(instant("2027-01-04T08:00:00+01:00")),
            ..TimeBounds::default()
        });
        let state = bounded(from.clone());
        assert_eq!(
            planned(&state, "active", "2027-01-04T06:59:59Z").as_deref(),
            Some("active -> inactive"),
            "the default `before` is inactive"
        );
        assert_eq!(
            planned(&state, "inactive", "2027-01-04T07:00:00Z").as_deref(),
            Some("inactive -> active")
        );
        assert_eq!(planned(&state, "active", "2027-02-01T00:00:00Z"), None);
        let state = bounded(Bounds::from(TimeBounds {
            before: Status::new("onboarding"),
            until: Some(instant("2027-03-01T00:00:00Z")),
            ..(*from).clone()
        }));
        assert_eq!(
            planned(&state, "inactive", "2027-01-01T00:00:00Z").as_deref(),
            Some("inactive -> onboarding")
        );
        assert_eq!(planned(&state, "active", "2027-02-01T00:00:00Z"), None);
        assert_eq!(
            planned(&state, "active", "2027-03-01T00:00:00Z").as_deref(),
            Some("active -> inactive")
        );
    }

    #[test]
    fn upcoming_lists_transitions_within_the_horizon_in_order() {
        let mut state = desired(&[
            ("ana", "portal", "p1", "active"),
            ("ana", "helpdesk", "h1", "active"),
            ("tom", "helpdesk", "h2", "active"),
            ("old", "helpdesk", "h3", "active"),
            ("far", "helpdesk", "h4", "active"),
            ("same", "helpdesk", "h5", "inactive"),
        ]);
        let until = |text: &str, then: &str| {
            Bounds::from(TimeBounds {
                until: Some(instant(text)),
                then: Status::new(then),
                ..TimeBounds::default()
            })
        };
        Arc::make_mut(&mut state.users[0]).accounts[0].bounds =
            until("2026-12-15T17:00:00Z", "inactive");
        Arc::make_mut(&mut state.users[1]).accounts[0].bounds =
            until("2026-12-15T17:00:00Z", "suspended");
        Arc::make_mut(&mut state.users[2]).accounts[0].bounds = Bounds::from(TimeBounds {
            from: Some(instant("2026-12-01T08:00:00Z")),
            until: Some(instant("2026-12-20T08:00:00Z")),
            ..TimeBounds::default()
        });
        Arc::make_mut(&mut state.users[3]).accounts[0].bounds =
            until("2026-11-01T00:00:00Z", "inactive");
        Arc::make_mut(&mut state.users[4]).accounts[0].bounds =
            until("2027-06-01T00:00:00Z", "inactive");
        // inactive until an instant, then inactive: no transition to show.
        Arc::make_mut(&mut state.users[5]).accounts[0].bounds =
            until("2026-12-02T00:00:00Z", "inactive");
        let observed: BTreeMap<String, InstanceObservation> = [
            observed("portal", vec![("p1", found("active"))]),
            ("helpdesk".to_string(), Err("unreachable".to_string())),
        ]
        .into_iter()
        .collect();
        let plan = compute(&state, &observed, at("2026-11-26T12:00:00Z"));
        let upcoming: Vec<(String, &str, &str, &str)> = plan
            .upcoming
            .iter()
            .map(|u| {
                (
                    format_utc(u.at),
                    u.provider.as_str(),
                    u.user.as_str(),
                    u.to.as_str(),
                )
            })
            .collect();
        assert_eq!(
            upcoming,
            [
                ("2026-12-01T08:00:00Z".to_string(), "helpdesk", "tom", "active"),
                ("2026-12-15T17:00:00Z".to_string(), "helpdesk", "ana", "suspended"),
                ("2026-12-15T17:00:00Z".to_string(), "portal", "ana", "inactive"),
                ("2026-12-20T08:00:00Z".to_string(), "helpdesk", "tom", "inactive"),
            ],
            "past and beyond-horizon bounds are left out; an unread instance still shows its schedule"
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json["upcoming"][0],
            serde_json::json!({"provider": "helpdesk", "user": "tom", "account_id": "h2", "at": "2026-12-01T08:00:00Z", "to": "active"})
        );
        let none = compute(
            &state,
            &observed,
            PlanTime {
                horizon: Duration::ZERO,
                ..at("2026-11-26T12:00:00Z")
            },
        );
        assert!(none.upcoming.is_empty(), "--upcoming 0s lists none");
        let at_bound = compute(&state, &observed, at("2026-12-15T17:00:00Z"));
        assert_eq!(
            at_bound.upcoming.len(),
            1,
            "a bound reached now is a change due now, not an upcoming one"
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
        let plan = compute(&state, &observed, now());
        assert!(!plan.has_changes());
        assert_eq!(plan.in_sync, 2);
        assert!(plan.blocked.is_empty() && plan.errors.is_empty());
    }
}
