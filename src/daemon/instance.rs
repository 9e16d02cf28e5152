//! One provider instance's loop: wait for a trigger, run a pass (observe, plan, apply),
//! record it, schedule the next one.
//!
//! The loop only schedules; [`crate::plan::compute`] decides and [`crate::apply::apply`]
//! acts. Every pass carries the [`Reason`] it runs for, shown in its log span and metrics.
//! Triggers collapse in a single pending slot, so a burst of folder changes queues one
//! pass; passes of one instance never overlap because one task runs them in sequence.

use super::metrics::{AccountCounts, InstanceObserver, PassMetrics};
pub use super::pass::{PassResult, Reason};
use super::{fingerprint, targeted, Context, InstanceHealth, Loaded};
use crate::apply::{self, ApplyOptions, ApplyReport, Outcome};
use crate::desired::DesiredState;
use crate::lease::Role;
use crate::lock;
use crate::notify::{Episodes, Notification, PassEnd};
use crate::plan::{self, Plan};
use crate::provider::{self, Provider};
use crate::reconcile;
use crate::status::Status;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One pending-pass slot. Any number of triggers before the loop gets to it become one
/// pass, run for the first reason given.
#[derive(Default)]
pub struct TriggerSlot {
    pending: Mutex<Option<Reason>>,
    wake: Notify,
}

impl TriggerSlot {
    pub fn trigger(&self, reason: Reason) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.get_or_insert(reason);
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> Option<Reason> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Waits for a trigger and takes it, leaving the slot empty.
    async fn next(&self) -> Reason {
        loop {
            if let Some(reason) = self.take() {
                return reason;
            }
            self.wake.notified().await;
        }
    }
}

/// The shortest wait before retrying a failed pass (unless the interval is shorter).
const RETRY_BASE: Duration = Duration::from_secs(5);

/// When the next pass is due after one that ended with `result`, and why.
/// `failures` counts consecutive failed passes, this one included; `jitter` is in [0, 1).
///
/// Retries back off exponentially from [`RETRY_BASE`] with jitter, never slower than the
/// interval; interval passes come a little early, by up to a tenth of the interval, so
/// that many instances started together spread out.
pub fn next_pass(
    result: PassResult,
    failures: u32,
    interval: Duration,
    jitter: f64,
) -> (Duration, Reason) {
    let jitter = jitter.clamp(0.0, 1.0);
    match result {
        PassResult::Error => {
            let exponent = failures.saturating_sub(1).min(16);
            let backoff = RETRY_BASE.saturating_mul(1 << exponent).min(interval);
            let jittered = backoff.mul_f64(0.8 + 0.2 * jitter);
            let floor = (RETRY_BASE * 3 / 5).min(interval);
            (jittered.max(floor), Reason::Retry)
        }
        _ => (interval.mul_f64(1.0 - 0.1 * jitter), Reason::Interval),
    }
}

/// How long after a time bound its pass runs: the bound is inclusive (`t >= until`),
/// and a few milliseconds absorb timer rounding, so the pass evaluates the folder
/// after the bound, never just before it.
const SCHEDULED_LAG: Duration = Duration::from_millis(20);

/// The earliest `from` or `until` strictly after `now` among the accounts of `instance`,
/// whether or not it changes the status: the instant its loop must wake at.
pub fn next_boundary(
    desired: &DesiredState,
    instance: &str,
    now: time::OffsetDateTime,
) -> Option<time::OffsetDateTime> {
    desired
        .users
        .iter()
        .flat_map(|u| &u.accounts)
        .filter(|a| a.instance == instance)
        .flat_map(|a| [a.bounds.from, a.bounds.until])
        .flatten()
        .filter(|at| *at > now)
        .min()
}

/// What the supervisor keeps of a running loop.
pub struct LoopHandle {
    pub slot: Arc<TriggerSlot>,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
    /// Identifies the instance's configuration and accounts, to trigger only the
    /// instances a reload changed.
    pub fingerprint: u64,
}

/// Starts the loop of `name`. It first waits for `previous` (the loop of an instance of
/// the same name that is being retired) so that two passes of one instance never overlap.
pub fn spawn(
    name: String,
    first: Reason,
    folder: watch::Receiver<Arc<Loaded>>,
    context: Arc<Context>,
    stop: CancellationToken,
    previous: Option<JoinHandle<()>>,
    fingerprint: u64,
) -> LoopHandle {
    let slot = Arc::new(TriggerSlot::default());
    slot.trigger(first);
    let observer = Arc::new(InstanceObserver::new(context.metrics.clone()));
    let instance_loop = InstanceLoop {
        name,
        slot: slot.clone(),
        folder,
        context,
        stop: stop.clone(),
        observer,
        connected: None,
        settled: HashMap::new(),
        readable: false,
        baseline: None,
        listing_cost: None,
        last_result: None,
        failures: 0,
        guard_held: None,
        refusal: None,
        episodes: Episodes::default(),
        last_error: None,
    };
    let loop_stop = stop.clone();
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        // Held for as long as the loop runs; released when it ends (or the process dies).
        let Some(_lock) = hold_lock(&instance_loop.name, &instance_loop.context, &loop_stop).await
        else {
            return;
        };
        instance_loop.run().await;
    });
    LoopHandle {
        slot,
        stop,
        task,
        fingerprint,
    }
}

/// Resolves when this replica becomes the leader-election leader (never without
/// election): a replica that takes over reconciles at once, not at its next interval.
async fn elected(role: &mut Option<watch::Receiver<Role>>) {
    let Some(role) = role else {
        return std::future::pending().await;
    };
    loop {
        if role.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *role.borrow_and_update() == Role::Leader {
            return;
        }
    }
}

/// How often a loop looks again at a lock another process holds.
const LOCK_RETRY: Duration = Duration::from_millis(250);

/// Takes the instance's lock, waiting (and saying once, in the log and in `/readyz`, for
/// whom) while another process holds it. `None` when `stop` came first.
async fn hold_lock(
    name: &str,
    context: &Context,
    stop: &CancellationToken,
) -> Option<lock::InstanceLock> {
    let mut said: Option<String> = None;
    loop {
        let waiting_for = match lock::try_lock(&context.state_dir, name, "roster run") {
            Ok(lock::Attempt::Acquired(lock)) => {
                if said.is_some() {
                    tracing::info!(instance = %name, "lock acquired; reconciling");
                    context.health.lock_wait(name, None);
                }
                return Some(lock);
            }
            Ok(lock::Attempt::Held(holder)) => {
                let holder = holder.to_string();
                if said.as_ref() != Some(&holder) {
                    tracing::warn!(instance = %name, holder = %holder, "another Roster process holds this instance's lock; waiting for it before reconciling");
                }
                holder
            }
            Err(error) => {
                let error = error.to_string();
                if said.as_ref() != Some(&error) {
                    tracing::error!(instance = %name, %error, "cannot take this instance's lock; retrying");
                }
                error
            }
        };
        context.health.lock_wait(name, Some(waiting_for.clone()));
        said = Some(waiting_for);
        tokio::select! {
            _ = stop.cancelled() => {
                context.health.lock_wait(name, None);
                return None;
            }
            _ = tokio::time::sleep(LOCK_RETRY) => {}
        }
    }
}

/// The files that changed from `baseline` to `loaded`, when `loaded` is the valid load
/// right after it (and anything that changed is in them).
fn consecutive<'a>(baseline: &Loaded, loaded: &'a Loaded) -> Option<&'a targeted::Delta> {
    if baseline.generation.checked_add(1) == Some(loaded.generation) {
        loaded.delta.as_deref()
    } else {
        None
    }
}

/// An instance's configuration as [`instance_config`] compares it.
type InstanceTalk = (String, Option<std::path::PathBuf>);

/// Everything of `instance`'s configuration that decides how it is talked to (secrets
/// by their names), to tell whether a reload changed it.
fn instance_config(desired: &DesiredState, instance: &str) -> Option<InstanceTalk> {
    desired
        .instances
        .get(instance)
        .map(|c| (format!("{c:?}"), c.ca_file.clone()))
}

struct InstanceLoop {
    name: String,
    slot: Arc<TriggerSlot>,
    folder: watch::Receiver<Arc<Loaded>>,
    context: Arc<Context>,
    stop: CancellationToken,
    observer: Arc<InstanceObserver>,
    /// The adapter, and the folder generation it was built from: every valid reload
    /// reconnects, so a changed `base_url` or a rotated secret file takes effect.
    /// With it, the configuration it talks to (see [`instance_config`]): a reconnect
    /// for the same one inherits what the old adapter's listing learned.
    connected: Option<(u64, Arc<dyn Provider>, Option<InstanceTalk>)>,
    /// Where each account of the instance stood at the end of the passes so far. An
    /// account in sync, with that status: a change planned for it later, towards the
    /// same status, was made by hand.
    settled: HashMap<String, Settled>,
    /// Whether the last pass read the instance (so `settled` describes it).
    readable: bool,
    /// The folder the last pass planned from: a folder change is compared with it to
    /// find the accounts it touched.
    baseline: Option<Arc<Loaded>>,
    /// HTTP requests the last full read of the instance made: a targeted read must cost
    /// fewer.
    listing_cost: Option<u64>,
    /// How the last pass ended.
    last_result: Option<PassResult>,
    failures: u32,
    /// The fingerprint of the folder (for this instance) at which the safety guard last
    /// refused: while it is unchanged, every pass refuses every change. Only a new
    /// commit (or a person running `roster apply --allow-mass-change`) moves on.
    guard_held: Option<u64>,
    /// The last pass's refusal (changes, limit), for `/readyz`.
    refusal: Option<(usize, usize)>,
    /// Which notifications are open (a refusal, a failing streak), to send each once.
    episodes: Episodes,
    /// The first reason the last pass failed, for the `instance_failing` notification.
    last_error: Option<String>,
}

impl InstanceLoop {
    async fn run(mut self) {
        let mut due: Option<(Instant, Reason)> = None;
        let mut role = self.context.leadership.as_ref().map(|l| l.subscribe());
        loop {
            let timer = async {
                match due {
                    Some((at, reason)) => {
                        tokio::time::sleep_until(at.into()).await;
                        reason
                    }
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                reason = self.slot.next() => reason,
                reason = timer => reason,
                () = elected(&mut role) => Reason::LeaderElected,
                Ok(()) = self.folder.changed() => {
                    self.follow_folder();
                    continue;
                }
            };
            // A standby keeps the pass it was asked for until it holds the lease.
            if let Some(leadership) = self.context.leadership.clone() {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break,
                    _ = leadership.until_leader() => {}
                }
            }
            // This pass serves the current leadership; only a later election triggers one.
            if let Some(role) = role.as_mut() {
                role.borrow_and_update();
            }
            let span = tracing::info_span!("pass", instance = %self.name, reason = %reason);
            let Some(result) = self.pass(reason).instrument(span).await else {
                // The change touched nothing here: no pass, the schedule stands.
                continue;
            };
            if result == PassResult::Error {
                self.failures += 1;
            } else {
                self.failures = 0;
            }
            let health = match (result, self.refusal) {
                (PassResult::Success, _) => Some(InstanceHealth::Healthy),
                (PassResult::Error, _) => Some(InstanceHealth::Failing {
                    failures: self.failures,
                }),
                (PassResult::Refused, Some((changes, limit))) => {
                    Some(InstanceHealth::Refused { changes, limit })
                }
                (PassResult::Refused, None) | (PassResult::Interrupted, _) => None,
            };
            if let Some(health) = health {
                self.context.health.pass_finished(&self.name, health);
            }
            self.notify_episodes(result);
            let (delay, reason) = next_pass(
                result,
                self.failures,
                self.context.interval,
                rand::random::<f64>(),
            );
            due = Some(self.next_due(delay, reason));
        }
        tracing::debug!(instance = %self.name, "instance loop stopped");
    }

    /// When the next pass runs and why: after `delay` for `reason`, or just after this
    /// instance's next time bound if that comes first, so that a scheduled change is
    /// applied on time whatever the interval. Also publishes that bound as the gauge.
    /// Reading the folder in force here means a reload that moved a bound (which
    /// triggers a pass) is taken into account after that pass.
    fn next_due(&self, delay: Duration, reason: Reason) -> (Instant, Reason) {
        let now = time::OffsetDateTime::now_utc();
        let boundary = next_boundary(&self.folder.borrow().desired, &self.name, now);
        self.context
            .metrics
            .set_next_scheduled_change(&self.name, boundary);
        let until_boundary = boundary
            .and_then(|at| Duration::try_from(at - now).ok())
            .map(|wait| wait + SCHEDULED_LAG);
        match until_boundary {
            Some(wait) if wait < delay => (Instant::now() + wait, Reason::Scheduled),
            _ => (Instant::now() + delay, reason),
        }
    }

    /// Notifies the start or end of a guard refusal or a failing streak.
    fn notify_episodes(&mut self, result: PassResult) {
        let end = match (result, self.refusal) {
            (PassResult::Success, _) => PassEnd::Success,
            (PassResult::Error, _) => PassEnd::Failed {
                failures: self.failures,
                error: self.last_error.as_deref(),
            },
            (PassResult::Refused, Some((changes, limit))) => PassEnd::Refused { changes, limit },
            (PassResult::Refused, None) | (PassResult::Interrupted, _) => PassEnd::Interrupted,
        };
        let git_commit = self.folder.borrow().git_commit.clone();
        for notification in self
            .episodes
            .after_pass(&self.name, end, git_commit.as_deref())
        {
            self.context.notifier.notify(notification);
        }
    }

    /// The adapter for `loaded`, connecting (again) when the folder was reloaded.
    fn provider(&mut self, loaded: &Loaded) -> Result<Arc<dyn Provider>, String> {
        if let Some((generation, provider, _)) = &self.connected {
            if *generation == loaded.generation {
                return Ok(provider.clone());
            }
        }
        let config = loaded
            .desired
            .instances
            .get(&self.name)
            .ok_or_else(|| format!("{}: no longer in providers.yaml", self.name))?;
        let provider = provider::connect(config, self.observer.clone()).map_err(|e| {
            self.connected = None;
            e.to_string()
        })?;
        // What the old adapter's listing learned holds for the new one when it talks to
        // the same instance the same way.
        let talks_to = instance_config(&loaded.desired, &self.name);
        if let Some((_, old, before)) = &self.connected {
            if *before == talks_to {
                if let Some(memory) = old.listing_memory() {
                    provider.recall_listing(memory);
                }
            }
        }
        self.connected = Some((loaded.generation, provider.clone(), talks_to));
        Ok(provider)
    }

    /// A new folder was loaded. When it asks the same of this instance as the baseline
    /// does (same fingerprint, same configuration), it becomes the baseline: the
    /// comparison a later change needs is the same, and the previous folder is no longer
    /// held here, so an idle daemon keeps one folder, not one per instance that has not
    /// passed since. A folder that changed this instance leaves the baseline alone: the
    /// pass it triggers compares with it.
    fn follow_folder(&mut self) {
        let loaded = self.folder.borrow_and_update().clone();
        let Some(baseline) = &self.baseline else {
            return;
        };
        let same = baseline.fingerprints.get(&self.name) == loaded.fingerprints.get(&self.name)
            && instance_config(&baseline.desired, &self.name)
                == instance_config(&loaded.desired, &self.name);
        if same && loaded.generation > baseline.generation {
            self.baseline = Some(loaded);
        }
    }

    /// Decides what a pass for `reason` must read: everything, only the accounts a
    /// folder change touched, or nothing at all.
    ///
    /// Targeted only when it is provably the same as a full pass for the accounts it
    /// leaves out: the pass runs for a folder change; the last pass read the instance,
    /// ended in success (every change it planned was made, no hold of the guard, no
    /// failure a retry would repeat) and planned from a folder with this instance's
    /// configuration unchanged; the touched accounts are no more than the instance's
    /// `max_changes` (so they alone cannot trip the guard, and a full pass would count
    /// no other change the folder asks for); and this kind reads them for fewer requests
    /// than its last listing cost. Otherwise a full pass, as before.
    fn scope(&self, reason: Reason, loaded: &Loaded, provider: &dyn Provider) -> Scope {
        if reason != Reason::FolderChanged
            || !self.readable
            || self.guard_held.is_some()
            || self.last_result != Some(PassResult::Success)
        {
            return Scope::Full;
        }
        let Some(baseline) = &self.baseline else {
            return Scope::Full;
        };
        if instance_config(&baseline.desired, &self.name)
            != instance_config(&loaded.desired, &self.name)
        {
            return Scope::Full;
        }
        // Right after the baseline, the files that changed since say it all; otherwise
        // the two folders are compared account by account.
        let touched = match consecutive(baseline, loaded) {
            Some(delta) => targeted::touched_in(delta, &self.name),
            None => targeted::touched(&baseline.desired, &loaded.desired, &self.name),
        };
        let Some(touched) = touched else {
            return Scope::Full;
        };
        if touched.is_empty() {
            return Scope::Nothing;
        }
        if touched.present.len() > self.limit(&loaded.desired) {
            return Scope::Full;
        }
        let cost = provider.targeted_read_cost(&touched.present);
        match (cost, self.listing_cost) {
            (Some(cost), Some(listing)) if (cost as u64) < listing => Scope::Targeted(touched),
            _ => Scope::Full,
        }
    }

    /// The instance's `max_changes` for this daemon: `run --max-changes` can only
    /// tighten it, since loosening it for every future pass is a decision for a
    /// reviewed commit.
    fn limit(&self, desired: &DesiredState) -> usize {
        let own = desired.instances.get(&self.name).map(|i| i.max_changes);
        match (self.context.max_changes, own) {
            (Some(flag), Some(own)) => flag.min(own),
            (Some(flag), None) => flag,
            (None, Some(own)) => own,
            (None, None) => usize::MAX,
        }
    }

    /// Runs one pass; `None` when a folder change touched no account of this instance,
    /// so there was nothing to do and no pass is recorded.
    async fn pass(&mut self, reason: Reason) -> Option<PassResult> {
        let started = Instant::now();
        let requests_before = self.observer.request_count();
        let loaded = self.folder.borrow().clone();
        self.refusal = None;
        self.last_error = None;
        let folder = match loaded.fingerprints.get(&self.name) {
            Some(print) => *print,
            None => fingerprint(&loaded.desired, &self.name),
        };
        if self.guard_held.is_some_and(|held| held != folder) {
            tracing::info!(instance = %self.name, "the folder changed; the safety guard's hold is lifted and the changes are planned afresh");
            self.guard_held = None;
        }
        let provider = match self.provider(&loaded) {
            Ok(provider) => provider,
            Err(message) => {
                tracing::error!(instance = %self.name, error = ?message, "cannot connect");
                self.last_error = Some(message);
                self.last_result = Some(PassResult::Error);
                let accounts = AccountCounts {
                    error: self.account_total(&loaded),
                    ..AccountCounts::default()
                };
                self.finish(
                    PassMetrics {
                        instance: &self.name,
                        reason,
                        result: PassResult::Error,
                        duration: started.elapsed(),
                        report: None,
                        accounts,
                        drift: 0,
                    },
                    0,
                );
                return Some(PassResult::Error);
            }
        };
        let scope = self.scope(reason, &loaded, provider.as_ref());
        let restricted;
        let (desired, touched) = match scope {
            Scope::Nothing => {
                tracing::debug!(instance = %self.name, "the folder change touches no account of this instance; no pass");
                self.baseline = Some(loaded);
                return None;
            }
            Scope::Full => (&loaded.desired, None),
            Scope::Targeted(touched) => {
                restricted = match self
                    .baseline
                    .as_deref()
                    .and_then(|b| consecutive(b, &loaded))
                {
                    Some(delta) => {
                        targeted::restrict_in(&loaded.desired, delta, &self.name, &touched.present)
                    }
                    None => targeted::restrict(&loaded.desired, &self.name, &touched.present),
                };
                (&restricted, Some(touched))
            }
        };
        let read_started = self.observer.request_count();
        let observation = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Some(PassResult::Interrupted),
            observation = self.observe(desired, touched.as_ref(), provider.as_ref()) => observation,
        };
        if touched.is_none() && observation.is_ok() {
            self.listing_cost = Some(self.observer.request_count() - read_started);
        }
        let accounts_read = match &touched {
            Some(touched) => touched.present.len(),
            None => self.account_total(&loaded),
        };
        self.context
            .metrics
            .pass_scope(&self.name, touched.is_some(), accounts_read);
        if let Some(touched) = &touched {
            tracing::info!(
                instance = %self.name,
                accounts = touched.present.len(),
                removed = touched.gone.len(),
                "targeted pass: reading only the accounts the folder change touched"
            );
        }
        let observed = BTreeMap::from([(self.name.clone(), observation)]);
        let plan = plan::compute(desired, &observed, plan::PlanTime::now());
        let drift = self.log_drift(&plan);
        for error in &plan.errors {
            match (&error.user, &error.account_id) {
                (Some(user), Some(account)) => tracing::warn!(
                    instance = %self.name, ?user, ?account, error = ?error.message,
                    "cannot read the account"
                ),
                _ => tracing::warn!(
                    instance = %self.name, error = ?error.message,
                    "cannot read the instance"
                ),
            }
        }
        let options = ApplyOptions {
            max_changes: Some(self.limit(&loaded.desired)).filter(|l| *l != usize::MAX),
            allow_mass_change: false,
            guard_held: self.guard_held.is_some(),
            git_commit: loaded.git_commit.clone(),
            stop: Some(self.stop.clone()),
            fence: self
                .context
                .leadership
                .clone()
                .map(|leadership| leadership as Arc<dyn apply::Fence>),
        };
        let providers = BTreeMap::from([(self.name.clone(), provider)]);
        let report = apply::apply(
            &plan,
            desired,
            &providers,
            &options,
            self.context.audit.as_deref(),
        )
        .await;
        if let Some(refusal) = report.refused.first() {
            self.guard_held = Some(folder);
            self.refusal = Some((refusal.changes, refusal.limit));
        }
        let result = if report.audit_error.is_some() {
            PassResult::Error
        } else if report.not_attempted > 0 {
            PassResult::Interrupted
        } else if !report.refused.is_empty() {
            PassResult::Refused
        } else if !report.errors.is_empty() || report.count(Outcome::Failed) > 0 {
            PassResult::Error
        } else {
            PassResult::Success
        };
        self.last_error = report
            .audit_error
            .clone()
            .or_else(|| report.errors.first().map(|e| e.message.clone()))
            .or_else(|| {
                let failed = report.results.iter().find(|r| r.outcome == Outcome::Failed);
                failed.and_then(|r| r.message.clone())
            });
        self.notify_drift_corrected(&loaded, &report);
        let instance_unreadable = plan.errors.iter().any(|e| e.user.is_none());
        let accounts = if instance_unreadable {
            self.readable = false;
            AccountCounts {
                error: self.account_total(&loaded),
                ..AccountCounts::default()
            }
        } else {
            if touched.is_none() {
                self.settled.clear();
            }
            if let Some(touched) = &touched {
                for id in &touched.gone {
                    self.settled.remove(id);
                }
            }
            self.settle(desired, &plan, &report);
            self.readable = true;
            self.counts()
        };
        self.baseline = Some(loaded.clone());
        self.last_result = Some(result);
        let requests = self.observer.request_count() - requests_before;
        self.finish(
            PassMetrics {
                instance: &self.name,
                reason,
                result,
                duration: started.elapsed(),
                report: Some(&report),
                accounts,
                drift,
            },
            requests,
        );
        Some(result)
    }

    /// Reads the instance: every account of the folder (`touched` is `None`), or only
    /// the touched ones with the kind's targeted read.
    async fn observe(
        &self,
        desired: &DesiredState,
        touched: Option<&targeted::Touched>,
        provider: &dyn Provider,
    ) -> plan::InstanceObservation {
        match touched {
            None => reconcile::observe_instance(desired, &self.name, provider).await,
            Some(touched) if touched.present.is_empty() => Ok(Default::default()),
            Some(touched) => provider
                .observe_accounts(&touched.present)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    fn account_total(&self, loaded: &Loaded) -> usize {
        loaded
            .desired
            .users
            .iter()
            .flat_map(|u| &u.accounts)
            .filter(|a| a.instance == self.name)
            .count()
    }

    /// Whether `account` was in `status` at the end of the passes so far.
    fn was_in_sync(&self, account: &str, status: &Status) -> bool {
        matches!(self.settled.get(account), Some(Settled::InSync(s)) if s == status)
    }

    /// Logs every planned change that undoes a change made at the provider by hand,
    /// and returns how many there are.
    fn log_drift(&self, plan: &Plan) -> u64 {
        let mut drift = 0;
        for change in &plan.changes {
            if self.was_in_sync(&change.account_id, &change.to) {
                drift += 1;
                tracing::info!(
                    instance = %self.name,
                    user = ?change.user,
                    account = ?change.account_id,
                    found = %change.from,
                    desired = %change.to,
                    "drift: account changed at the provider since the last pass"
                );
            }
        }
        drift
    }

    /// Notifies every write that undid a change made by hand at the provider: an account
    /// that was in its desired status at the end of the last pass, set back to it now.
    fn notify_drift_corrected(&self, loaded: &Loaded, report: &ApplyReport) {
        for result in &report.results {
            if result.outcome == Outcome::Applied
                && self.was_in_sync(&result.account_id, &result.to)
            {
                self.context.notifier.notify(Notification::drift_corrected(
                    &self.name,
                    &result.user,
                    &result.account_id,
                    result.from.as_str(),
                    result.to.as_str(),
                    loaded.git_commit.as_deref(),
                ));
            }
        }
    }

    /// Records where each account `desired` names at this instance stands after a pass
    /// that read them (`plan`) and wrote (`report`).
    fn settle(&mut self, desired: &DesiredState, plan: &Plan, report: &ApplyReport) {
        let now = time::OffsetDateTime::now_utc();
        for account in desired.users.iter().flat_map(|u| &u.accounts) {
            if account.instance == self.name {
                self.settled.insert(
                    account.id.clone(),
                    Settled::InSync(account.status_at(now).clone()),
                );
            }
        }
        for change in &plan.changes {
            self.settled
                .insert(change.account_id.clone(), Settled::Drifting);
        }
        for blocked in &plan.blocked {
            self.settled
                .insert(blocked.account_id.clone(), Settled::Blocked);
        }
        for error in &plan.errors {
            if let Some(account) = &error.account_id {
                self.settled.insert(account.clone(), Settled::Error);
            }
        }
        for result in &report.results {
            let state = match result.outcome {
                Outcome::Applied | Outcome::AlreadyConverged => Settled::InSync(result.to.clone()),
                Outcome::Blocked => Settled::Blocked,
                Outcome::Failed => continue,
            };
            self.settled.insert(result.account_id.clone(), state);
        }
    }

    /// The instance's account counts, from where each account stands.
    fn counts(&self) -> AccountCounts {
        let mut counts = AccountCounts::default();
        for state in self.settled.values() {
            match state {
                Settled::InSync(_) => counts.in_sync += 1,
                Settled::Drifting => counts.drifting += 1,
                Settled::Blocked => counts.blocked += 1,
                Settled::Error => counts.error += 1,
            }
        }
        counts
    }

    /// Records the pass in the metrics and writes its one summary line.
    fn finish(&self, pass: PassMetrics<'_>, requests: u64) {
        self.context.metrics.pass_finished(&pass);
        let report = pass.report;
        let count = |outcome| report.map_or(0, |r| r.count(outcome));
        let errors = report.map_or(1, |r| r.errors.len());
        let refused: usize = report.map_or(0, |r| r.refused.iter().map(|g| g.changes).sum());
        macro_rules! summary {
            ($level:ident) => {
                tracing::$level!(
                    instance = %self.name,
                    reason = %pass.reason,
                    result = pass.result.as_str(),
                    changes = count(Outcome::Applied),
                    already_converged = count(Outcome::AlreadyConverged),
                    failed = count(Outcome::Failed),
                    refused,
                    in_sync = pass.accounts.in_sync,
                    blocked = pass.accounts.blocked,
                    errors,
                    drift = pass.drift,
                    duration_ms = pass.duration.as_millis() as u64,
                    requests,
                    "pass finished"
                )
            };
        }
        match pass.result {
            PassResult::Error | PassResult::Refused => summary!(warn),
            PassResult::Success | PassResult::Interrupted => summary!(info),
        }
    }
}

/// Where an account stands after the passes so far.
#[derive(Clone, Debug, PartialEq)]
enum Settled {
    /// In its desired status, which is this one.
    InSync(Status),
    /// A change is needed and was not made (failed, refused, interrupted).
    Drifting,
    /// The provider refuses the change (known before, or answered at write time).
    Blocked,
    /// The account could not be read (not found, ambiguous, ...).
    Error,
}

/// What a pass reads and plans.
enum Scope {
    /// Every account of the instance in the folder.
    Full,
    /// Only the accounts a folder change touched.
    Targeted(targeted::Touched),
    /// The folder change touched no account of the instance.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_between_a_floor_and_the_interval() {
        let interval = Duration::from_secs(300);
        let mut previous = Duration::ZERO;
        for failures in 1..=12 {
            for jitter in [0.0, 0.5, 0.999] {
                let (delay, reason) = next_pass(PassResult::Error, failures, interval, jitter);
                assert_eq!(reason, Reason::Retry);
                assert!(delay >= Duration::from_secs(3), "{failures}: {delay:?}");
                assert!(delay <= interval, "{failures}: {delay:?}");
            }
            let (delay, _) = next_pass(PassResult::Error, failures, interval, 0.0);
            assert!(delay >= previous, "backoff must not shrink: {failures}");
            previous = delay;
        }
        assert!(previous >= interval.mul_f64(0.8));
        // A short interval wins over the floor: never slower than the interval.
        let (delay, _) = next_pass(PassResult::Error, 1, Duration::from_secs(1), 0.5);
        assert!(delay <= Duration::from_secs(1));
    }

    #[test]
    fn refused_and_successful_passes_wait_for_the_interval() {
        let interval = Duration::from_secs(60);
        for result in [PassResult::Success, PassResult::Refused] {
            for jitter in [0.0, 0.999] {
                let (delay, reason) = next_pass(result, 0, interval, jitter);
                assert_eq!(reason, Reason::Interval);
                assert!(delay <= interval && delay >= Duration::from_secs(54));
            }
        }
    }

    #[test]
    fn the_next_boundary_is_the_earliest_bound_ahead_at_this_instance() {
        use crate::desired::{parse_instant, Account, Bounds, Location, TimeBounds, User};
        let at = |text: &str| parse_instant(text).unwrap();
        let account = |instance: &str, id: &str, from: Option<&str>, until: Option<&str>| Account {
            instance: instance.into(),
            id: id.into(),
            status: Status::new("active"),
            bounds: Bounds::from(TimeBounds {
                from: from.map(at),
                until: until.map(at),
                ..TimeBounds::default()
            }),
            location: Location::default(),
        };
        let desired = DesiredState {
            root: "desired-state".into(),
            instances: Default::default(),
            users: vec![User {
                name: "u".into(),
                reason: None,
                accounts: vec![
                    account(
                        "x",
                        "a1",
                        Some("2027-01-04T08:00:00Z"),
                        Some("2027-03-01T00:00:00Z"),
                    ),
                    account("x", "a2", None, Some("2027-02-01T00:00:00+01:00")),
                    account("y", "b1", None, Some("2027-01-02T00:00:00Z")),
                ],
                location: Location::default(),
            }]
            .into_iter()
            .map(Arc::new)
            .collect(),
        };
        let next = |now: &str| next_boundary(&desired, "x", at(now));
        assert_eq!(
            next("2027-01-01T00:00:00Z"),
            Some(at("2027-01-04T08:00:00Z"))
        );
        assert_eq!(
            next("2027-01-04T08:00:00Z"),
            Some(at("2027-01-31T23:00:00Z")),
            "a bound reached now is behind: the next one is ahead"
        );
        assert_eq!(
            next("2027-02-15T00:00:00Z"),
            Some(at("2027-03-01T00:00:00Z"))
        );
        assert_eq!(next("2027-03-01T00:00:00Z"), None);
        assert_eq!(
            next_boundary(&desired, "z", at("2027-01-01T00:00:00Z")),
            None
        );
    }

    #[tokio::test]
    async fn triggers_collapse_into_one_pending_pass() {
        let slot = TriggerSlot::default();
        slot.trigger(Reason::FolderChanged);
        for _ in 0..100 {
            slot.trigger(Reason::Interval);
        }
        assert_eq!(slot.next().await, Reason::FolderChanged);
        let again = tokio::time::timeout(Duration::from_millis(50), slot.next()).await;
        assert!(again.is_err(), "a second pass was queued");
        slot.trigger(Reason::Retry);
        assert_eq!(slot.next().await, Reason::Retry);
    }
}
