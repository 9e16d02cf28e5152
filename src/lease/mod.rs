//! Leader election on a Kubernetes `coordination.k8s.io/v1` Lease, for `roster run
//! --leader-election`: of several replicas, only the lease holder reconciles.
//!
//! - [`api`]: the three Lease API calls (GET, create, replace) and in-cluster config.
//! - [`Leadership`]: the elector. A background task ([`Leadership::keep`]) acquires the
//!   lease when it is free or expired (`renewTime + leaseDurationSeconds` passed),
//!   renews it every third of its duration while holding it, and steps down when it
//!   sees another holder or cannot renew within two thirds of the duration. It is also
//!   the write fence: before each write call, [`Leadership::confirm`] reads the lease
//!   again, so a leader whose lease was taken makes no further write.
//! - [`sim`]: an in-process Lease API for tests.
//!
//! Expiry is judged from the lease's `renewTime` against this machine's clock, so clock
//! skew between nodes shifts failover by the skew; the fence makes that safe, since a
//! leader that was overtaken sees the new holder before its next write.

pub mod api;
pub mod sim;

use crate::apply::Fence;
use api::{micro_time, ApiConfig, Lease, LeaseApi, LeaseApiError, LeaseSpec};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `--leader-election` and its settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// `POD_NAME`, else the host name.
    pub identity: String,
    /// `leaseDurationSeconds`: how long the lease holds without a renewal.
    pub duration: Duration,
    pub api: ApiConfig,
}

/// Why leader election cannot start.
#[derive(Debug, thiserror::Error)]
#[error("leader election on lease {lease}: {source}")]
pub struct LeaseError {
    lease: String,
    #[source]
    source: LeaseApiError,
}

/// This process's role, as the elector last established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holding the lease: reconciling.
    Leader,
    /// Not holding it: ready and idle. `holder` is who holds it, if anyone.
    Standby { holder: Option<String> },
}

/// The elector and write fence of one process.
#[derive(Debug)]
pub struct Leadership {
    api: LeaseApi,
    identity: String,
    duration: Duration,
    role: watch::Sender<Role>,
    /// When this process last renewed (or acquired) the lease, by its own monotonic clock.
    renewed: Mutex<Option<Instant>>,
}

impl Leadership {
    pub fn new(config: LeaseConfig) -> Result<Leadership, LeaseError> {
        let lease = format!("{}/{}", config.namespace, config.name);
        // A call that takes longer than a third of the duration is as good as failed.
        let timeout = (config.duration / 3).max(Duration::from_millis(500));
        let api = LeaseApi::new(config.api, &config.namespace, &config.name, timeout)
            .map_err(|source| LeaseError { lease, source })?;
        Ok(Leadership {
            api,
            identity: config.identity,
            duration: config.duration,
            role: watch::Sender::new(Role::Standby { holder: None }),
            renewed: Mutex::new(None),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `NAMESPACE/NAME` of the lease.
    pub fn lease(&self) -> String {
        self.api.describe()
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.role.borrow() == Role::Leader
    }

    /// A receiver that sees every change of role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Resolves once this process holds the lease.
    pub async fn until_leader(&self) {
        let mut role = self.role.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = role.wait_for(|r| *r == Role::Leader).await;
    }

    /// The holder renews this often.
    fn renew_period(&self) -> Duration {
        self.duration / 3
    }

    /// A standby looks this often (and at the lease's expiry), so a released lease is
    /// taken within this time.
    fn retry_period(&self) -> Duration {
        (self.duration / 3).min(Duration::from_secs(2))
    }

    /// Past this since its last renewal, a holder that could not renew steps down: a
    /// third of the duration before any other candidate may take the lease.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    fn renewed(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.renewed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lead(&self, acquired: bool) {
        *self.renewed() = Some(Instant::now());
        if acquired || !self.is_leader() {
            tracing::info!(lease = %self.lease(), identity = %self.identity, "leader election: acquired the lease; reconciling");
        }
        self.role.send_if_modified(|role| {
            let changed = *role != Role::Leader;
            *role = Role::Leader;
            changed
        });
    }

    /// Stops reconciling at once: from now on [`confirm`](Self::confirm) refuses.
    fn step_down(&self, holder: Option<String>, why: &str) {
        let was_leader = self.is_leader();
        *self.renewed() = None;
        let role = Role::Standby {
            holder: holder.clone(),
        };
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
        if was_leader {
            tracing::warn!(lease = %self.lease(), holder = ?holder, "leader election: lost the lease ({why}); no further write is made");
        }
    }

    /// Runs the elector until `stop` is cancelled. It does not release the lease: call
    /// [`release`](Self::release) once the passes in flight have finished.
    pub async fn keep(&self, stop: CancellationToken) {
        tracing::info!(lease = %self.lease(), identity = %self.identity, duration = %humantime::format_duration(self.duration), "leader election: standing by until the lease is ours");
        loop {
            let wait = self.round().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look at the lease: acquire, renew or stand by. Returns how long to wait
    /// before the next look.
    async fn round(&self) -> Duration {
        let lease = match self.api.get().await {
            Ok(lease) => lease,
            Err(error) => return self.api_failed(&error),
        };
        let now = SystemTime::now();
        let Some(lease) = lease else {
            let spec = self.held_spec(now, None);
            return match self.api.create(&self.api.new_lease(spec)).await {
                Ok(_) => {
                    self.lead(true);
                    self.renew_period()
                }
                Err(LeaseApiError::Conflict) => Duration::ZERO,
                Err(error) => self.api_failed(&error),
            };
        };
        let holder = lease.spec.holder().map(str::to_string);
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let expires = lease.spec.expires_at();
        let expired = expires.is_none_or(|at| at <= now);
        if !mine && holder.is_some() && !expired {
            self.step_down(holder, "another candidate holds it");
            let until_expiry = expires
                .and_then(|at| at.duration_since(now).ok())
                .unwrap_or_default();
            // Wake just after expiry (or sooner, to notice a release).
            return (until_expiry + Duration::from_millis(10)).min(self.retry_period());
        }
        let acquiring = !mine || !self.is_leader();
        let mut next = lease.clone();
        next.spec = self.held_spec(now, Some(&lease));
        match self.api.replace(&next).await {
            Ok(_) => {
                self.lead(acquiring);
                self.renew_period()
            }
            // Someone wrote the lease since we read it: look again at once.
            Err(LeaseApiError::Conflict) => Duration::ZERO,
            Err(error) => self.api_failed(&error),
        }
    }

    /// The spec with this process holding the lease, renewed `now`.
    fn held_spec(&self, now: SystemTime, current: Option<&Lease>) -> LeaseSpec {
        let mut spec = current.map(|l| l.spec.clone()).unwrap_or_default();
        let mine = spec.holder() == Some(self.identity.as_str());
        if !mine {
            spec.acquire_time = Some(micro_time(now));
            if current.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            } else {
                spec.lease_transitions = Some(0);
            }
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.duration.as_secs());
        spec.renew_time = Some(micro_time(now));
        spec
    }

    /// The API could not be reached or refused: a holder keeps the lease until its renew
    /// deadline, then steps down.
    fn api_failed(&self, error: &LeaseApiError) -> Duration {
        let overdue = self
            .renewed()
            .is_some_and(|at| at.elapsed() >= self.renew_deadline());
        if self.is_leader() && overdue {
            self.step_down(None, &format!("cannot renew it: {error}"));
        } else {
            tracing::warn!(lease = %self.lease(), %error, "leader election: Kubernetes API call failed; retrying");
        }
        self.retry_period()
    }

    /// Checks with the API server that this process still holds the lease, and that its
    /// last renewal is recent enough that no other candidate may have taken it.
    pub async fn confirm(&self) -> Result<(), String> {
        if !self.is_leader() {
            return Err(format!("not the holder of lease {}", self.lease()));
        }
        let lease = self.api.get().await.map_err(|error| {
            format!(
                "cannot confirm that this process holds lease {}: {error}",
                self.lease()
            )
        })?;
        let holder = lease
            .as_ref()
            .and_then(|l| l.spec.holder().map(str::to_string));
        if holder.as_deref() != Some(self.identity.as_str()) {
            let why = format!(
                "lease {} is held by {}",
                self.lease(),
                crate::escape::text(holder.as_deref().unwrap_or("nobody"))
            );
            self.step_down(holder, &why);
            return Err(why);
        }
        let overdue = self
            .renewed()
            .is_none_or(|at| at.elapsed() >= self.renew_deadline());
        if overdue {
            let why = format!("lease {} was not renewed in time", self.lease());
            self.step_down(None, &why);
            return Err(why);
        }
        Ok(())
    }

    /// On shutdown: gives the lease up (clears `holderIdentity`) if this process holds
    /// it, so a standby takes over at its next look instead of at expiry.
    pub async fn release(&self) {
        self.step_down(None, "shutting down");
        let lease = match self.api.get().await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(lease = %self.lease(), %error, "leader election: cannot release the lease; a standby takes over when it expires");
                return;
            }
        };
        if lease.spec.holder() != Some(self.identity.as_str()) {
            return;
        }
        let mut released = lease;
        released.spec.holder_identity = None;
        released.spec.renew_time = Some(micro_time(SystemTime::now()));
        match self.api.replace(&released).await {
            Ok(_) => {
                tracing::info!(lease = %self.lease(), "leader election: released the lease")
            }
            Err(error) => {
                tracing::warn!(lease = %self.lease(), %error, "leader election: cannot release the lease; a standby takes over when it expires")
            }
        }
    }

    /// The `/readyz` note of a standby: who holds the lease.
    pub fn standby_note(&self) -> Option<String> {
        match self.role() {
            Role::Leader => None,
            Role::Standby { holder } => Some(format!(
                "standby: lease {} held by {}; this replica ({}) reconciles nothing until it holds it",
                self.lease(),
                crate::escape::text(holder.as_deref().unwrap_or("nobody yet")),
                crate::escape::text(&self.identity)
            )),
        }
    }
}

#[async_trait::async_trait]
impl Fence for Leadership {
    async fn confirm(&self) -> Result<(), String> {
        Leadership::confirm(self).await
    }
}

/// The identity of this replica: `POD_NAME` (unique per pod), else the host name.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(crate::lock::hostname)
}

#[cfg(test)]
mod tests {
    use super::sim::LeaseSim;
    use super::*;

    fn candidate(sim: &LeaseSim, identity: &str, token_file: &std::path::Path) -> Leadership {
        Leadership::new(LeaseConfig {
            namespace: "ops".into(),
            name: "roster".into(),
            identity: identity.into(),
            duration: Duration::from_secs(3),
            api: ApiConfig {
                base_url: sim.base_url(),
                token_file: Some(token_file.to_path_buf()),
                ca_file: None,
            },
        })
        .unwrap()
    }

    #[tokio::test]
    async fn one_candidate_leads_the_other_stands_by_and_a_stolen_lease_fails_the_fence() {
        let sim = LeaseSim::start("kube-token").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "kube-token\n").unwrap();
        let a = candidate(&sim, "pod-a", &token);
        let b = candidate(&sim, "pod-b", &token);
        let _ = a.round().await;
        let wait = b.round().await;
        assert!(a.is_leader());
        assert_eq!(
            b.role(),
            Role::Standby {
                holder: Some("pod-a".into())
            }
        );
        assert!(wait <= b.retry_period(), "{wait:?}");
        assert!(b.standby_note().unwrap().contains("held by pod-a"));
        assert_eq!(a.confirm().await, Ok(()));
        assert!(b.confirm().await.is_err());
        let lease = sim.lease("ops", "roster").unwrap();
        assert_eq!(lease.spec.lease_duration_seconds, Some(3));
        assert_eq!(lease.spec.lease_transitions, Some(0));

        sim.steal("ops", "roster", "pod-c", 3);
        let refused = a.confirm().await.unwrap_err();
        assert!(refused.contains("held by pod-c"), "{refused}");
        assert!(
            !a.is_leader(),
            "a leader that saw another holder must step down"
        );
        // A released lease is taken at once; the release clears the holder.
        a.lead(false);
        sim.steal("ops", "roster", "pod-a", 3);
        a.release().await;
        assert_eq!(sim.holder("ops", "roster"), None);
        let _ = b.round().await;
        assert!(b.is_leader());
        assert_eq!(sim.holder("ops", "roster").as_deref(), Some("pod-b"));
    }

    #[tokio::test]
    async fn a_stale_resource_version_or_a_wrong_token_is_refused() {
        let sim = LeaseSim::start("kube-token").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "kube-token").unwrap();
        let a = candidate(&sim, "pod-a", &token);
        let lease = a
            .api
            .create(&a.api.new_lease(a.held_spec(SystemTime::now(), None)))
            .await
            .unwrap();
        let again = a.api.create(&lease).await;
        assert!(matches!(again, Err(LeaseApiError::Conflict)), "{again:?}");
        a.api.replace(&lease).await.unwrap();
        let stale = a.api.replace(&lease).await;
        assert!(matches!(stale, Err(LeaseApiError::Conflict)), "{stale:?}");

        std::fs::write(&token, "wrong-token").unwrap();
        let denied = a.api.get().await.unwrap_err().to_string();
        assert!(denied.contains("401"), "{denied}");
        assert!(!denied.contains("wrong-token"), "{denied}");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_counts_a_transition() {
        let sim = LeaseSim::start("t").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        sim.steal("ops", "roster", "pod-dead", 1);
        let b = candidate(&sim, "pod-b", &token);
        let _ = b.round().await;
        assert!(!b.is_leader());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _ = b.round().await;
        assert!(b.is_leader());
        let lease = sim.lease("ops", "roster").unwrap();
        assert_eq!(lease.spec.holder(), Some("pod-b"));
        assert_eq!(lease.spec.lease_transitions, Some(1));
    }
}
