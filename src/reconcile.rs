//! The I/O edge of a pass: select instances, connect them (resolving secrets), and read
//! their live state concurrently. The diff itself is [`crate::plan::compute`].
//!
//! `roster apply` runs one pipeline per instance ([`apply_live`]): each instance is read,
//! planned and written on its own, so a slow or large instance delays no other's writes.
//! Within an instance no write starts before its whole list is read: a later page can
//! still make the list untrustworthy (a cursor cycle, a total that grows, records after a
//! short page, an error after the retries), and then the instance gets no write at all.

use crate::apply::{ApplyOptions, ApplyReport, Executor};
use crate::audit::AuditLog;
use crate::desired::{DesiredState, InstanceConfig};
use crate::plan::{self, InstanceObservation, Plan, PlanTime, FORMAT_VERSION};
use crate::provider::{self, ConnectError, Provider, RequestObserver};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Connected adapters by instance name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// `--provider` named an instance the folder does not define.
#[derive(Debug, thiserror::Error)]
#[error("--provider {name}: no such instance in providers.yaml (defined: {defined})")]
pub struct UnknownInstance {
    pub name: String,
    pub defined: String,
}

/// The instances a command works on: all of them, or those named by `--provider`.
pub fn select<'a>(
    desired: &'a DesiredState,
    names: &[String],
) -> Result<Vec<&'a InstanceConfig>, UnknownInstance> {
    if names.is_empty() {
        return Ok(desired.instances.values().collect());
    }
    names
        .iter()
        .map(|name| {
            desired.instances.get(name).ok_or_else(|| UnknownInstance {
                name: name.clone(),
                defined: desired
                    .instances
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

/// Connects every selected instance; reports every missing secret at once.
pub fn connect_all(
    instances: &[&InstanceConfig],
    observer: Arc<dyn RequestObserver>,
) -> Result<Providers, Vec<ConnectError>> {
    let mut providers = Providers::new();
    let mut errors = Vec::new();
    for instance in instances {
        match provider::connect(instance, observer.clone()) {
            Ok(p) => {
                providers.insert(instance.name.clone(), p);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(providers)
    } else {
        Err(errors)
    }
}

/// Reads one instance's accounts named in the folder.
pub async fn observe_instance(
    desired: &DesiredState,
    name: &str,
    provider: &dyn Provider,
) -> InstanceObservation {
    let accounts: Vec<String> = desired
        .users
        .iter()
        .flat_map(|u| u.accounts.iter())
        .filter(|a| a.instance == name)
        .map(|a| a.id.clone())
        .collect();
    let started = Instant::now();
    let result = provider.observe(&accounts).await.map_err(|e| e.to_string());
    tracing::debug!(
        instance = name,
        accounts = accounts.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "observed"
    );
    result
}

/// Observes every connected instance concurrently: the batched reads of `plan` and
/// `status`.
pub async fn observe_all(
    desired: &DesiredState,
    providers: &Providers,
) -> BTreeMap<String, InstanceObservation> {
    let reads = providers.iter().map(|(name, provider)| async move {
        (
            name.clone(),
            observe_instance(desired, name, provider.as_ref()).await,
        )
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// Reads and plans one instance at `time`: the pure plan of its full observation.
async fn plan_instance(
    desired: &DesiredState,
    name: &str,
    provider: &dyn Provider,
    time: PlanTime,
) -> Plan {
    let observation = observe_instance(desired, name, provider).await;
    let observed = BTreeMap::from([(name.to_string(), observation)]);
    plan::compute(desired, &observed, time)
}

/// One `roster apply` pass: every instance read, planned and written by a pipeline of
/// its own, its writes starting the moment its own plan is known. The plan behind the
/// summary is the one [`plan_live`] computes (a plan is made per instance; see the test
/// below); the guard, the audit log, the fence and the stop signal act exactly as in
/// [`crate::apply::apply`].
pub async fn apply_live(
    desired: &DesiredState,
    providers: &Providers,
    time: PlanTime,
    options: &ApplyOptions,
    audit: Option<&AuditLog>,
) -> ApplyReport {
    let executor = Executor::new(desired, options, audit);
    let pipelines = providers.iter().map(|(name, provider)| {
        let executor = &executor;
        async move {
            let plan = plan_instance(desired, name, provider.as_ref(), time).await;
            let attempts = executor
                .apply_instance(&plan, name, provider.as_ref())
                .await;
            (plan, attempts)
        }
    });
    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        ..Plan::default()
    };
    let mut attempts = Vec::new();
    for (instance_plan, instance_attempts) in futures::future::join_all(pipelines).await {
        plan.merge(instance_plan);
        attempts.extend(instance_attempts);
    }
    executor.finish(&plan, attempts)
}

/// Observes every connected instance concurrently and computes the plan at `time`. Each
/// instance is planned the moment its own read ends and its observation dropped then,
/// so at 100,000 accounts an instance read early holds no memory while a slow one is
/// still being read; the merged plan is the plan of all observations at once (see the
/// test below).
pub async fn plan_live(desired: &DesiredState, providers: &Providers, time: PlanTime) -> Plan {
    let plans = providers
        .iter()
        .map(|(name, provider)| plan_instance(desired, name, provider.as_ref(), time));
    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        ..Plan::default()
    };
    for instance_plan in futures::future::join_all(plans).await {
        plan.merge(instance_plan);
    }
    plan
}

/// What `roster status` shows, read live: the accounts of `selected` (the folder, or the
/// users named on the command line) at the `observed` instances, and with `listed`, the
/// accounts those instances hold that no file of the whole `folder` claims. Read-only:
/// the same observation path as `plan`, and listings.
pub async fn status_live(
    folder: &DesiredState,
    selected: &DesiredState,
    observed: &Providers,
    listed: Option<&Providers>,
    at: time::OffsetDateTime,
    drift_only: bool,
) -> crate::access::StatusReport {
    let (observations, inventories) = futures::join!(observe_all(selected, observed), async {
        match listed {
            Some(listed) => Some(inventory_all(listed).await),
            None => None,
        }
    });
    let mut report = crate::access::compute(selected, &observations, at, drift_only);
    if let Some(inventories) = inventories {
        report.add_unmanaged(folder, &inventories);
    }
    report
}

/// Lists every account of every connected instance concurrently, for `status
/// --unmanaged`: read-only, like [`observe_all`].
pub async fn inventory_all(
    providers: &Providers,
) -> BTreeMap<String, crate::access::InstanceInventory> {
    let reads = providers.iter().map(|(name, provider)| async move {
        (
            name.clone(),
            provider.inventory().await.map_err(|e| e.to_string()),
        )
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{parse_instant, Account, Bounds, Location, TimeBounds, User};
    use crate::provider::{AccountObservation, Observation, ObservedAccount};
    use crate::status::Status;

    fn account(instance: &str, id: &str, status: &str, bounds: Bounds) -> Account {
        Account {
            instance: instance.into(),
            id: id.into(),
            status: Status::new(status),
            bounds,
            location: Location::default(),
        }
    }

    fn found(status: &str) -> AccountObservation {
        AccountObservation::Found(ObservedAccount::new(Status::new(status)))
    }

    /// `apply_live` plans each instance on its own and merges the plans; that must be the
    /// very plan [`plan::compute`] makes of all observations at once (changes, in sync,
    /// errors of instances and of accounts, scheduled changes), or `apply` would show and
    /// write something `plan` would not.
    #[test]
    fn per_instance_plans_merged_are_the_plan_of_all_instances() {
        let soon = Bounds::from(TimeBounds {
            until: Some(parse_instant("2026-12-01T00:00:00Z").unwrap()),
            ..TimeBounds::default()
        });
        let desired = DesiredState {
            root: "desired-state".into(),
            instances: Default::default(),
            users: vec![
                User {
                    name: "ana".into(),
                    reason: Some("HR-1".into()),
                    accounts: vec![
                        account("a", "a1", "inactive", Bounds::default()),
                        account("b", "b1", "active", soon),
                        account("c", "c1", "inactive", Bounds::default()),
                    ],
                    location: Location::default(),
                },
                User {
                    name: "bo".into(),
                    reason: None,
                    accounts: vec![
                        account("a", "a2", "active", Bounds::default()),
                        account("b", "b2", "inactive", Bounds::default()),
                    ],
                    location: Location::default(),
                },
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
        };
        let time = PlanTime {
            at: parse_instant("2026-11-26T12:00:00Z").unwrap(),
            horizon: plan::DEFAULT_HORIZON,
        };
        let observation = |accounts: &[(&str, AccountObservation)]| Observation {
            accounts: accounts
                .iter()
                .map(|(id, o)| (id.to_string(), o.clone()))
                .collect(),
        };
        let observed: BTreeMap<String, InstanceObservation> = BTreeMap::from([
            (
                "a".to_string(),
                Ok(observation(&[
                    ("a1", found("active")),
                    ("a2", found("active")),
                ])),
            ),
            (
                "b".to_string(),
                Ok(observation(&[
                    ("b1", found("inactive")),
                    ("b2", AccountObservation::Failed("forbidden".into())),
                ])),
            ),
            ("c".to_string(), Err("credentials rejected".to_string())),
        ]);
        let whole = plan::compute(&desired, &observed, time);
        let mut merged = Plan {
            format_version: FORMAT_VERSION,
            ..Plan::default()
        };
        for (name, observation) in &observed {
            let one = BTreeMap::from([(name.clone(), observation.clone())]);
            merged.merge(plan::compute(&desired, &one, time));
        }
        assert_eq!(merged, whole);
        assert_eq!(merged.in_sync_by_instance, whole.in_sync_by_instance);
        assert_eq!(whole.changes.len(), 2, "{whole:#?}");
        assert_eq!(whole.errors.len(), 2, "{whole:#?}");
        assert_eq!(whole.upcoming.len(), 1, "{whole:#?}");
    }
}
