//! The I/O edge of a pass: select instances, connect them (resolving secrets), and read
//! their live state concurrently. The diff itself is [`crate::plan::compute`].

use crate::desired::{DesiredState, InstanceConfig};
use crate::plan::{self, InstanceObservation, Plan, PlanTime};
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

/// Observes every connected instance concurrently and computes the plan at `time`.
pub async fn plan_live(desired: &DesiredState, providers: &Providers, time: PlanTime) -> Plan {
    let observed = observe_all(desired, providers).await;
    plan::compute(desired, &observed, time)
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
