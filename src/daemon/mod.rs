//! `roster run`: the long-lived daemon.
//!
//! The supervisor here owns the folder: it loads it at start and after every settled
//! burst of file events ([`watch`]), keeps the last folder that loaded cleanly in force,
//! and runs one loop per provider instance ([`instance`]), so that a slow or failing
//! provider never delays another. It also serves `/healthz`, `/readyz` and `/metrics`
//! ([`server`], [`metrics`]) and turns SIGTERM/SIGINT into a shutdown that starts no new
//! call and lets calls in flight finish, and SIGHUP into an audit log reopen.

pub mod instance;
pub mod metrics;
pub mod pass;
pub mod server;
pub mod targeted;
pub mod watch;

use crate::audit::{self, AuditError, AuditLog};
use crate::desired::{self, DesiredState, Problem};
use crate::lease::{Leadership, LeaseConfig, LeaseError};
use crate::notify::{Notification, Notifier, NotifyError, NotifyOptions};
use crate::reconcile::{self, UnknownInstance};
use crate::secret::Secret;
use instance::{LoopHandle, Reason};
use metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything `roster run` needs, as given on the command line.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub dir: PathBuf,
    /// Time between passes of one instance when nothing else triggers one.
    pub interval: Duration,
    /// Address of the health and metrics endpoint; port 0 picks a free port.
    pub listen: String,
    pub audit_log: Option<PathBuf>,
    /// `--provider`: only these instances; all when empty.
    pub providers: Vec<String>,
    /// `--max-changes`: lowers (never raises) every instance's `max_changes`.
    pub max_changes: Option<usize>,
    /// How long a shutdown waits for calls in flight.
    pub grace_period: Duration,
    /// `--notify-webhook`: where operator notifications are POSTed (a secret).
    pub notify_webhook: Option<Secret>,
    /// `--state-dir`: holds `locks/<instance>.lock`; each instance loop holds its lock
    /// while it runs. `None`: the default ([`crate::lock::state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// `--leader-election`: reconcile only while holding this Lease.
    pub election: Option<LeaseConfig>,
}

/// Why the daemon stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The OS error is in the message, not a `source`, so it is printed once.
    #[error("cannot listen on {address}: {error} (use --listen HOST:PORT)")]
    Listen {
        address: String,
        error: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    UnknownInstance(#[from] UnknownInstance),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot watch the folder: {0}")]
    Watch(notify::Error),
    #[error("the metrics server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(
        "grace period of {grace} expired with passes still running at: {instances}; \
         a write call in flight then may have reached the provider: its intent line is in \
         the audit log, its outcome line is not"
    )]
    GraceExpired { grace: String, instances: String },
}

/// A folder that loaded cleanly: the state every pass works from until the next one.
pub struct Loaded {
    pub desired: DesiredState,
    /// Recorded in audit lines and in `roster_desired_state_info`.
    pub git_commit: Option<String>,
    /// Increases with every valid reload; loops reconnect when it changes.
    pub generation: u64,
    /// Per selected instance, the fingerprint of what the folder asks of it (see
    /// [`fingerprint`]): computed again only for the instances a reload touched.
    pub fingerprints: BTreeMap<String, u64>,
    /// The user files that changed since the previous valid load (generation - 1), for
    /// targeted passes that cost in proportion to the change; `None` when anything may
    /// have changed.
    pub delta: Option<Arc<targeted::Delta>>,
}

/// What every instance loop shares.
pub struct Context {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub audit: Option<Arc<AuditLog>>,
    pub interval: Duration,
    pub max_changes: Option<usize>,
    /// Webhook notifications; queues and returns at once, never delaying a pass.
    pub notifier: Notifier,
    pub state_dir: PathBuf,
    /// With `--leader-election`: loops reconcile only while it leads, and it fences
    /// every write call.
    pub leadership: Option<Arc<Leadership>>,
}

/// What readiness knows of one reconciled instance: how its last finished pass ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceHealth {
    /// No pass has finished yet (the daemon just started, or the instance was just added).
    Pending,
    /// The last pass read everything and made every needed write.
    Healthy,
    /// The last `failures` passes in a row failed (read, connect, write or audit error).
    Failing { failures: u32 },
    /// The safety guard refused the instance's changes; held until the folder changes.
    Refused { changes: usize, limit: usize },
}

/// Liveness is the process answering; readiness is this. Ready means: a folder loaded
/// cleanly, the folder on disk is valid now, and the last finished pass of *every*
/// reconciled instance succeeded. So an instance that fails on every pass, or whose
/// changes the guard refuses, keeps the daemon unready, and the body names it.
#[derive(Default)]
pub struct Health {
    valid: AtomicBool,
    /// `None` until a folder loaded cleanly; then each reconciled instance's state.
    instances: Mutex<Option<BTreeMap<String, InstanceHealth>>>,
    /// Instances whose loop waits for another process's lock, with its holder.
    lock_waits: Mutex<BTreeMap<String, String>>,
    /// Set with `--leader-election`: a standby is ready while idle.
    leadership: std::sync::OnceLock<Arc<Leadership>>,
}

impl Health {
    fn instances(&self) -> std::sync::MutexGuard<'_, Option<BTreeMap<String, InstanceHealth>>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_valid(&self, valid: bool) {
        self.valid.store(valid, Ordering::SeqCst);
    }

    /// A folder loaded cleanly with these instances: new ones are pending their first pass.
    fn track<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let mut instances = self.instances();
        let instances = instances.get_or_insert_with(BTreeMap::new);
        for name in names {
            instances
                .entry(name.clone())
                .or_insert(InstanceHealth::Pending);
        }
    }

    /// The instance left the folder (or the `--provider` selection).
    fn forget(&self, instance: &str) {
        if let Some(instances) = self.instances().as_mut() {
            instances.remove(instance);
        }
    }

    /// Called by an instance loop after every pass that was not interrupted. A loop of an
    /// instance that was already forgotten changes nothing.
    pub fn pass_finished(&self, instance: &str, health: InstanceHealth) {
        if let Some(state) = self
            .instances()
            .as_mut()
            .and_then(|instances| instances.get_mut(instance))
        {
            *state = health;
        }
    }

    /// The instance's loop waits for the lock `holder` holds (`None`: it has it now).
    pub fn lock_wait(&self, instance: &str, holder: Option<String>) {
        let mut waits = self
            .lock_waits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match holder {
            Some(holder) => waits.insert(instance.to_string(), holder),
            None => waits.remove(instance),
        };
    }

    /// With leader election, while this replica does not hold the lease: why it is
    /// idle, for the `/readyz` body.
    pub fn standby(&self) -> Option<String> {
        self.leadership.get().and_then(|l| l.standby_note())
    }

    /// `Ok` when ready, otherwise every reason why not, for the `/readyz` body. A standby
    /// of leader election is ready with a valid folder: its passes are the leader's job.
    pub fn readiness(&self) -> Result<(), String> {
        let instances = self.instances();
        let Some(instances) = instances.as_ref() else {
            return Err("no valid desired-state folder loaded yet".into());
        };
        let mut reasons = Vec::new();
        if !self.valid.load(Ordering::SeqCst) {
            reasons.push(
                "the desired-state folder is invalid; the last good one stays in force".to_string(),
            );
        }
        if self.standby().is_some() {
            return if reasons.is_empty() {
                Ok(())
            } else {
                Err(reasons.join("; "))
            };
        }
        for (instance, holder) in self
            .lock_waits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            reasons.push(format!(
                "waiting for the lock of {instance}, held by {holder}"
            ));
        }
        let mut pending = Vec::new();
        let mut failing = Vec::new();
        let mut refused = Vec::new();
        for (name, state) in instances {
            match state {
                InstanceHealth::Healthy => {}
                InstanceHealth::Pending => pending.push(name.clone()),
                InstanceHealth::Failing { failures } => {
                    let passes = if *failures == 1 { "pass" } else { "passes" };
                    failing.push(format!("{name} (last {failures} {passes} failed)"));
                }
                InstanceHealth::Refused { changes, limit } => refused.push(format!(
                    "{name} ({changes} changes, max_changes {limit}; none made until the folder changes)"
                )),
            }
        }
        for (what, list) in [
            ("waiting for the first pass of", pending),
            ("failing", failing),
            ("safety guard refused", refused),
        ] {
            if !list.is_empty() {
                reasons.push(format!("{what}: {}", list.join(", ")));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }
}

/// Identifies what an instance should look like: its configuration and its accounts.
/// A reload triggers a pass only at instances whose fingerprint changed.
fn fingerprint(desired: &DesiredState, instance: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    if let Some(config) = desired.instances.get(instance) {
        format!("{config:?}").hash(&mut hasher);
    }
    for user in &desired.users {
        for account in user.accounts.iter().filter(|a| a.instance == instance) {
            (
                &user.name,
                &user.reason,
                &account.id,
                &account.status,
                &account.bounds,
            )
                .hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Holds the folder in force and the instance loops working from it.
struct Supervisor {
    dir: PathBuf,
    filter: Vec<String>,
    context: Arc<Context>,
    shutdown: CancellationToken,
    folder: Option<tokio::sync::watch::Sender<Arc<Loaded>>>,
    generation: u64,
    loops: BTreeMap<String, LoopHandle>,
    /// Loops of instances that left the folder, finishing their calls in flight.
    retiring: Vec<(String, JoinHandle<()>)>,
    /// The problems last reported, so an unchanged invalid folder is not logged again.
    last_problems: Option<Vec<Problem>>,
    /// The folder as last read, so a reload re-reads only the files that changed.
    /// `None` while a reload holds it (or after one failed unexpectedly).
    cache: Option<desired::FolderCache>,
    /// The user files that changed since the last valid load (each with what it held
    /// then and holds now); `None`: anything may have changed (providers.yaml, a
    /// first load).
    pending: Option<targeted::Delta>,
}

/// Adds what one reload found changed to the changes since the last valid load.
fn accumulate(
    pending: Option<targeted::Delta>,
    changes: &desired::Changes,
) -> Option<targeted::Delta> {
    let mut pending = pending?;
    if changes.everything {
        return None;
    }
    for change in &changes.files {
        let entry = pending
            .files
            .entry(change.file.clone())
            .or_insert_with(|| (change.before.clone(), None));
        entry.1 = change.after.clone();
    }
    Some(pending)
}

impl Supervisor {
    /// Loads the folder and brings the loops in line with it. Only the very first load
    /// can fail the daemon (an unknown `--provider`); later problems are logged.
    async fn reload(&mut self, at_start: bool) -> Result<(), DaemonError> {
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        let mut cache = self
            .cache
            .take()
            .unwrap_or_else(|| desired::FolderCache::new(&dir, crate::provider::specs()));
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = cache
                .load()
                .map(|desired| (desired, audit::git_commit(&dir)));
            (cache, loaded)
        })
        .await;
        let loaded = match loaded {
            Ok((cache, loaded)) => {
                self.pending = accumulate(self.pending.take(), cache.changes());
                self.cache = Some(cache);
                Ok(loaded)
            }
            Err(panic) => {
                self.pending = None;
                Err(panic)
            }
        };
        let (desired, git_commit) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(invalid)) => {
                self.rejected(invalid.problems);
                return Ok(());
            }
            Err(panic) => {
                tracing::error!(error = ?panic.to_string(), "loading the folder failed unexpectedly; keeping the last good folder");
                return Ok(());
            }
        };
        if at_start {
            reconcile::select(&desired, &self.filter)?;
        }
        let metrics = &self.context.metrics;
        metrics.reloaded(true);
        metrics.set_folder_commit(git_commit.as_deref());
        self.context.health.set_valid(true);
        if self.last_problems.take().is_some() {
            self.context
                .notifier
                .notify(Notification::folder_recovered(git_commit.as_deref()));
        }

        let mut selected = Vec::new();
        for name in desired.instances.keys() {
            if self.filter.is_empty() || self.filter.contains(name) {
                selected.push(name.clone());
            }
        }
        if let Some(flag) = self.context.max_changes {
            for name in &selected {
                let own = desired.instances.get(name).map_or(flag, |i| i.max_changes);
                if flag > own {
                    tracing::warn!(instance = %name, max_changes = own, "--max-changes {flag} does not raise an instance's max_changes in the daemon; raise it in providers.yaml in a reviewed commit");
                }
            }
        }
        for name in &self.filter {
            if !desired.instances.contains_key(name) {
                tracing::warn!(instance = %name, "--provider {name}: no such instance in providers.yaml any more; not reconciled");
            }
        }
        tracing::info!(
            instances = selected.len(),
            users = desired.users.len(),
            accounts = desired.account_count(),
            git_commit = git_commit.as_deref().unwrap_or("none (not a git checkout)"),
            load_ms = started.elapsed().as_millis() as u64,
            "desired state loaded"
        );
        // An instance the changed files did not touch keeps its fingerprint (its
        // configuration is unchanged too: a changed providers.yaml makes every instance
        // dirty), so its loop is not woken.
        let delta = self
            .pending
            .replace(targeted::Delta::default())
            .map(Arc::new);
        let dirty: Option<BTreeSet<&str>> = delta.as_deref().map(targeted::Delta::instances);
        let previous = self
            .folder
            .as_ref()
            .map(|f| f.borrow().fingerprints.clone());
        let fingerprints: BTreeMap<String, u64> = selected
            .iter()
            .map(|name| {
                let kept = match (&dirty, &previous) {
                    (Some(dirty), Some(previous)) if !dirty.contains(name.as_str()) => {
                        previous.get(name).copied()
                    }
                    _ => None,
                };
                let print = kept.unwrap_or_else(|| fingerprint(&desired, name));
                (name.clone(), print)
            })
            .collect();
        drop(dirty);
        self.generation += 1;
        let loaded = Arc::new(Loaded {
            desired,
            git_commit,
            generation: self.generation,
            fingerprints: fingerprints.clone(),
            delta,
        });
        let first_load = self.folder.is_none();
        let receiver = match &self.folder {
            Some(sender) => {
                sender.send_replace(loaded);
                sender.subscribe()
            }
            None => {
                let (sender, receiver) = tokio::sync::watch::channel(loaded);
                self.folder = Some(sender);
                receiver
            }
        };
        self.context.health.track(fingerprints.keys());

        let gone: Vec<String> = self
            .loops
            .keys()
            .filter(|name| !fingerprints.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(handle) = self.loops.remove(&name) {
                tracing::info!(instance = %name, "instance left the folder; stopping its loop after calls in flight");
                handle.stop.cancel();
                self.context.metrics.instance_removed(&name);
                self.context.health.forget(&name);
                self.retiring.push((name, handle.task));
            }
        }
        for (name, fingerprint) in fingerprints {
            match self.loops.get_mut(&name) {
                Some(handle) => {
                    if handle.fingerprint != fingerprint {
                        handle.fingerprint = fingerprint;
                        handle.slot.trigger(Reason::FolderChanged);
                    }
                }
                None => {
                    let previous = self
                        .retiring
                        .iter()
                        .position(|(n, _)| *n == name)
                        .map(|i| self.retiring.remove(i).1);
                    let first = if first_load {
                        Reason::Startup
                    } else {
                        Reason::FolderChanged
                    };
                    let handle = instance::spawn(
                        name.clone(),
                        first,
                        receiver.clone(),
                        self.context.clone(),
                        self.shutdown.child_token(),
                        previous,
                        fingerprint,
                    );
                    self.loops.insert(name, handle);
                }
            }
        }
        Ok(())
    }

    /// A load failed: keep the folder in force, say why once.
    fn rejected(&mut self, problems: Vec<Problem>) {
        self.context.metrics.reloaded(false);
        self.context.health.set_valid(false);
        let in_force = if self.folder.is_some() {
            "the last good folder stays in force"
        } else {
            "nothing is reconciled until the folder is valid"
        };
        if self.last_problems.as_ref() == Some(&problems) {
            tracing::warn!(
                problems = problems.len(),
                "desired state still invalid, with the same problems; {in_force}"
            );
            return;
        }
        for problem in &problems {
            // Debug-formatted: a problem quotes the folder's text, which is untrusted.
            tracing::error!(problem = ?problem.to_string(), "invalid desired state");
        }
        tracing::error!(
            folder = %self.dir.display(),
            problems = problems.len(),
            "desired state invalid; {in_force}"
        );
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let commit = audit::git_commit(&self.dir);
        self.context
            .notifier
            .notify(Notification::folder_invalid(&texts, commit.as_deref()));
        self.last_problems = Some(problems);
    }

    /// Waits for every loop to end (they stop at the shutdown token); names the ones
    /// still running if `grace` expires first.
    async fn drain(&mut self, grace: Duration) -> Result<(), Vec<String>> {
        let mut tasks: Vec<(String, JoinHandle<()>)> = std::mem::take(&mut self.retiring);
        tasks.extend(
            std::mem::take(&mut self.loops)
                .into_iter()
                .map(|(name, handle)| (name, handle.task)),
        );
        let all = futures::future::join_all(tasks.iter_mut().map(|(_, task)| task));
        match tokio::time::timeout(grace, all).await {
            Ok(_) => Ok(()),
            Err(_) => Err(tasks
                .iter()
                .filter(|(_, task)| !task.is_finished())
                .map(|(name, _)| name.clone())
                .collect()),
        }
    }
}

/// How long a shutdown waits for queued notifications (a recovery, say) to be sent.
const NOTIFY_FLUSH: Duration = Duration::from_secs(2);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    tracing::info!(
        folder = %config.dir.display(),
        interval = %humantime::format_duration(config.interval),
        "starting"
    );
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let notifier = match &config.notify_webhook {
        Some(url) => {
            let notifier = Notifier::start(
                url.clone(),
                NotifyOptions::default(),
                metrics.notifications(),
            )?;
            tracing::info!("webhook notifications on (the URL is a secret and is not logged)");
            notifier
        }
        None => Notifier::disabled(),
    };
    let leadership = match config.election.clone() {
        Some(election) => {
            let leadership = Arc::new(Leadership::new(election)?);
            // Set once, on a fresh `Health`: cannot already be set.
            let _ = health.leadership.set(leadership.clone());
            Some(leadership)
        }
        None => None,
    };
    metrics.set_leader(leadership.is_none());
    let audit = match &config.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path)?)),
        None => None,
    };
    let install = |kind| signal(kind).map_err(DaemonError::Signals);
    let mut sigterm = install(SignalKind::terminate())?;
    let mut sigint = install(SignalKind::interrupt())?;
    let mut sighup = install(SignalKind::hangup())?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|error| DaemonError::Listen {
            address: config.listen.clone(),
            error,
        })?;
    let address = listener.local_addr().map_err(|error| DaemonError::Listen {
        address: config.listen.clone(),
        error,
    })?;
    tracing::info!("listening on {address}");
    let state_dir = crate::lock::state_dir(config.state_dir.as_deref())?;
    let server_stop = CancellationToken::new();
    let app = server::router(server::AppState {
        metrics: metrics.clone(),
        health: health.clone(),
    });
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(server_stop.clone().cancelled_owned())
            .into_future(),
    );

    let shutdown = CancellationToken::new();
    // The elector outlives the loops: it stops (and releases the lease) only after
    // the passes in flight have finished, so no write is made without the lease.
    let elector_stop = CancellationToken::new();
    let elector = leadership
        .clone()
        .map(|leadership| spawn_elector(leadership, metrics.clone(), elector_stop.clone()));
    let mut reloads = watch::spawn(&config.dir, watch::Debounce::default(), shutdown.clone())
        .map_err(DaemonError::Watch)?;
    let mut supervisor = Supervisor {
        dir: config.dir.clone(),
        filter: config.providers.clone(),
        context: Arc::new(Context {
            metrics,
            health,
            audit: audit.clone(),
            interval: config.interval,
            max_changes: config.max_changes,
            notifier: notifier.clone(),
            state_dir,
            leadership: leadership.clone(),
        }),
        shutdown: shutdown.clone(),
        folder: None,
        generation: 0,
        cache: None,
        pending: None,
        loops: BTreeMap::new(),
        retiring: Vec::new(),
        last_problems: None,
    };
    supervisor.reload(true).await?;

    let received = loop {
        tokio::select! {
            Some(()) = reloads.recv() => supervisor.reload(false).await?,
            _ = sighup.recv() => {
                if let Some(audit) = &audit {
                    match audit.reopen() {
                        Ok(()) => tracing::info!("SIGHUP: audit log reopened"),
                        Err(error) => tracing::error!(%error, "SIGHUP: cannot reopen the audit log; still writing to the old file"),
                    }
                }
                supervisor.reload(false).await?;
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            result = &mut server => {
                let error = match result {
                    Ok(Err(error)) => error,
                    Ok(Ok(())) => std::io::Error::other("stopped unexpectedly"),
                    Err(join) => std::io::Error::other(join.to_string()),
                };
                shutdown.cancel();
                return Err(DaemonError::Server(error));
            }
        }
    };
    let grace = humantime::format_duration(config.grace_period).to_string();
    tracing::info!("{received}: shutting down; no new calls, waiting up to {grace} for calls in flight (send it again to exit at once)");
    shutdown.cancel();
    let drained = tokio::select! {
        drained = supervisor.drain(config.grace_period) => drained,
        _ = sigterm.recv() => exit_now(audit.as_deref(), 143),
        _ = sigint.recv() => exit_now(audit.as_deref(), 130),
    };
    if let (Some(leadership), Some(elector)) = (&leadership, elector) {
        elector_stop.cancel();
        let _ = elector.await;
        if drained.is_ok() {
            leadership.release().await;
        }
    }
    server_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    notifier.close(NOTIFY_FLUSH).await;
    match drained {
        Ok(()) => {
            match &config.audit_log {
                Some(path) => {
                    tracing::info!(audit_log = %path.display(), "stopped cleanly; every write call made is in the audit log")
                }
                None => tracing::info!("stopped cleanly"),
            }
            Ok(())
        }
        Err(instances) => Err(DaemonError::GraceExpired {
            grace,
            instances: instances.join(", "),
        }),
    }
}

/// Runs the elector and mirrors its role into the `roster_leader` gauge.
fn spawn_elector(
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut role = leadership.subscribe();
    let gauge_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            metrics.set_leader(*role.borrow_and_update() == crate::lease::Role::Leader);
            tokio::select! {
                _ = gauge_stop.cancelled() => break,
                changed = role.changed() => if changed.is_err() { break },
            }
        }
    });
    tokio::spawn(async move { leadership.keep(stop).await })
}

/// A second signal: exit at once, but not in the middle of an audit line.
fn exit_now(audit: Option<&AuditLog>, code: i32) -> ! {
    tracing::warn!("second signal: exiting now, calls in flight abandoned");
    match audit {
        Some(audit) => audit.exit_process(code),
        None => std::process::exit(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_the_folder_is_valid_and_every_last_pass_succeeded() {
        let health = Health::default();
        assert_eq!(
            health.readiness(),
            Err("no valid desired-state folder loaded yet".to_string())
        );
        health.set_valid(true);
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        health.track(&names);
        assert_eq!(
            health.readiness(),
            Err("waiting for the first pass of: a, b, c".to_string())
        );
        health.pass_finished("a", InstanceHealth::Healthy);
        health.pass_finished("b", InstanceHealth::Failing { failures: 3 });
        health.pass_finished(
            "c",
            InstanceHealth::Refused {
                changes: 30,
                limit: 25,
            },
        );
        let why = health.readiness().unwrap_err();
        assert_eq!(
            why,
            "failing: b (last 3 passes failed); safety guard refused: c (30 changes, \
             max_changes 25; none made until the folder changes)"
        );
        health.pass_finished("b", InstanceHealth::Healthy);
        health.pass_finished("c", InstanceHealth::Healthy);
        assert_eq!(health.readiness(), Ok(()));
        // An instance added later is pending again; a forgotten one no longer counts,
        // and its loop's late report does not bring it back.
        health.track(&["d".to_string()]);
        assert!(health.readiness().unwrap_err().contains("first pass of: d"));
        health.forget("d");
        health.pass_finished("d", InstanceHealth::Failing { failures: 1 });
        assert_eq!(health.readiness(), Ok(()));
        health.set_valid(false);
        assert!(health.readiness().unwrap_err().contains("invalid"));
    }

    #[test]
    fn a_changed_time_bound_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("providers.yaml"),
            "providers:\n  h:\n    kind: status-api\n    base_url: http://127.0.0.1:1\n    auth: { bearer_token_env: T }\n",
        )
        .unwrap();
        let people = |until: &str| {
            std::fs::write(
                dir.path().join("people.yaml"),
                format!("users:\n  - name: a\n    status: active\n    until: {until}\n    accounts: {{ h: a1 }}\n"),
            )
            .unwrap();
            fingerprint(
                &desired::load(dir.path(), crate::provider::specs()).unwrap(),
                "h",
            )
        };
        assert_ne!(
            people("2026-12-31T18:00:00Z"),
            people("2026-12-30T18:00:00Z"),
            "a reload that only moves a bound must trigger a pass"
        );
    }

    #[test]
    fn a_listen_error_names_the_os_error_once() {
        let error = DaemonError::Listen {
            address: "127.0.0.1:9465".into(),
            error: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(chain.matches("in use").count(), 1, "{chain}");
        assert!(chain.ends_with("(use --listen HOST:PORT)"), "{chain}");
    }
}
