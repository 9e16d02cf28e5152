//! Executes a [`Plan`]: safety guards first, then the writes, concurrently per instance
//! within each instance's `max_concurrency`. One [`Executor`] serves a whole pass, so
//! `roster apply` can hand it each instance's plan the moment that instance has been read
//! (see `crate::reconcile::apply_live`). With an audit log, every call is announced
//! by an intent line before it is made and recorded by an outcome line after it; a call
//! whose intent line cannot be written is not made, and neither is any later call.

use crate::audit::{AuditEvent, AuditLog, AuditOutcome, AuditRecord, ScheduledCause};
use crate::desired::DesiredState;
use crate::plan::{format_utc, Blocked, Change, Plan, PlanError, FORMAT_VERSION};
use crate::provider::{Provider, WriteOutcome};
use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The capability to make write calls. Its only constructor is private to this module,
/// so code that never goes through [`apply`] (the `plan` command) cannot write.
pub struct WriteAccess(());

impl WriteAccess {
    fn grant() -> Self {
        WriteAccess(())
    }
}

/// Per-run options of `apply` (and of each daemon pass).
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// `--max-changes N`: replaces every instance's `max_changes` for this run.
    pub max_changes: Option<usize>,
    /// `--allow-mass-change`: lifts the guard for this run (`apply` only).
    pub allow_mass_change: bool,
    /// The guard refused this same folder at this instance on an earlier pass (the
    /// daemon): refuse every change, whatever the count is now, until the folder changes.
    pub guard_held: bool,
    /// Recorded with every audit line when the folder is a git checkout.
    pub git_commit: Option<String>,
    /// Once cancelled, no further write call is started; calls already in flight finish
    /// and are audited. The daemon cancels it on SIGTERM, so shutdown makes no new calls.
    pub stop: Option<CancellationToken>,
    /// Asked just before each write call whether this process may still write (the
    /// daemon's leader election); a refusal ends the pass: no further call is made.
    pub fence: Option<Arc<dyn Fence>>,
}

/// The right to write, re-checked before every write call: leader election implements
/// it by confirming with the Kubernetes API that this process still holds the lease.
/// Kept as a trait so that this executor knows nothing of Kubernetes.
#[async_trait::async_trait]
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// `Err(why)` when this process must not write any more.
    async fn confirm(&self) -> Result<(), String>;
}

/// What one write achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// The account reached the desired status on its own between read and write.
    AlreadyConverged,
    /// The provider refused for a known reason; reported as blocked.
    Blocked,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyConverged => "already_converged",
            Outcome::Blocked => "blocked",
            Outcome::Failed => "failed",
        }
    }
}

/// One attempted write and its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteResult {
    pub provider: String,
    pub user: String,
    pub account_id: String,
    pub from: Status,
    pub to: Status,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An instance where the safety guard refused every change of the pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardRefusal {
    pub provider: String,
    pub changes: usize,
    pub limit: usize,
}

/// The summary of one apply pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApplyReport {
    pub format_version: u32,
    /// Every write attempted, in plan order.
    pub results: Vec<WriteResult>,
    pub in_sync: usize,
    /// Blocked in the plan, or refused by the provider at write time.
    pub blocked: Vec<Blocked>,
    /// Instances where `max_changes` refused the pass.
    pub refused: Vec<GuardRefusal>,
    /// Read errors carried over from the plan.
    pub errors: Vec<PlanError>,
    /// Changes left unattempted: [`ApplyOptions::stop`] was cancelled, the
    /// [`ApplyOptions::fence`] refused, or the audit log could not be written.
    pub not_attempted: usize,
    /// The first audit log error of the pass. From then on no write call was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_error: Option<String>,
}

impl ApplyReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// 0 converged, 1 an error left something unconverged, 3 a safety guard refused.
    pub fn exit_code(&self) -> i32 {
        if !self.refused.is_empty() {
            3
        } else if !self.errors.is_empty()
            || self.count(Outcome::Failed) > 0
            || self.not_attempted > 0
            || self.audit_error.is_some()
        {
            1
        } else {
            0
        }
    }
}

/// The instances where `plan` has more changes than the guard allows. Pure, so `plan`
/// can warn reviewers about what `apply` would refuse.
pub fn guard_refusals(
    plan: &Plan,
    desired: &DesiredState,
    options: &ApplyOptions,
) -> Vec<GuardRefusal> {
    if options.allow_mass_change {
        return Vec::new();
    }
    plan.changes_per_instance()
        .into_iter()
        .filter_map(|(instance, changes)| {
            let limit = options
                .max_changes
                .or_else(|| desired.instances.get(instance).map(|i| i.max_changes))?;
            (changes > limit || (options.guard_held && changes > 0)).then(|| GuardRefusal {
                provider: instance.to_string(),
                changes,
                limit,
            })
        })
        .collect()
}

/// Applies `plan` through `providers` (keyed by instance name). Instances run
/// concurrently and independently; an instance over its `max_changes` gets no write.
/// The daemon's passes use it; `roster apply` reads, plans and writes each instance on its
/// own through [`Executor`] (see `crate::reconcile::apply_live`).
pub async fn apply(
    plan: &Plan,
    desired: &DesiredState,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
    options: &ApplyOptions,
    audit: Option<&AuditLog>,
) -> ApplyReport {
    let executor = Executor::new(desired, options, audit);
    let runs = providers
        .iter()
        .map(|(instance, provider)| executor.apply_instance(plan, instance, provider.as_ref()));
    let attempts = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    executor.finish(plan, attempts)
}

/// One change of a pass and what became of it: `None` when it was not attempted (the
/// pass was stopped, the fence refused, or the audit log failed).
pub type Attempt = (Change, Option<WriteResult>);

/// The write side of one pass, shared by all its instances: the audit gate, the fence,
/// the stop signal and the write capability. Each instance hands it the plan of that
/// instance as soon as the plan is known, so a slow instance delays no other's writes.
pub struct Executor<'a> {
    desired: &'a DesiredState,
    options: &'a ApplyOptions,
    gate: AuditGate<'a>,
    fenced: AtomicBool,
    access: WriteAccess,
}

impl<'a> Executor<'a> {
    pub fn new(
        desired: &'a DesiredState,
        options: &'a ApplyOptions,
        audit: Option<&'a AuditLog>,
    ) -> Self {
        Executor {
            desired,
            options,
            gate: AuditGate {
                audit,
                git_commit: options.git_commit.as_deref(),
                failed: AtomicBool::new(false),
                first_error: Mutex::new(None),
            },
            fenced: AtomicBool::new(false),
            access: WriteAccess::grant(),
        }
    }

    /// Makes the changes `plan` holds for `instance`, unless the guard refuses them: a
    /// continuous stream of calls with at most the instance's `max_concurrency` in
    /// flight, each started as soon as one finishes (never in rounds).
    pub async fn apply_instance(
        &self,
        plan: &Plan,
        instance: &str,
        provider: &dyn Provider,
    ) -> Vec<Attempt> {
        use futures::stream::{self, StreamExt};
        let Some(config) = self.desired.instances.get(instance) else {
            return Vec::new();
        };
        let refused = guard_refusals(plan, self.desired, self.options)
            .iter()
            .any(|refusal| refusal.provider == instance);
        if refused {
            return Vec::new();
        }
        let changes: Vec<Change> = plan
            .changes
            .iter()
            .filter(|change| change.provider == instance)
            .cloned()
            .collect();
        stream::iter(changes)
            .map(|change| async move {
                let result = self.write(provider, &change).await;
                (change, result)
            })
            .buffer_unordered(config.max_concurrency.max(1))
            .collect()
            .await
    }

    /// One write call, checked just before it is made (never for a batch): not after a
    /// stop, a refused fence or an audit failure, and only once its intent is logged.
    async fn write(&self, provider: &dyn Provider, change: &Change) -> Option<WriteResult> {
        let options = self.options;
        let stopped = options.stop.as_ref().is_some_and(|s| s.is_cancelled());
        if stopped || self.gate.failed.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(fence) = &options.fence {
            if self.fenced.load(Ordering::SeqCst) {
                return None;
            }
            if let Err(why) = fence.confirm().await {
                if !self.fenced.swap(true, Ordering::SeqCst) {
                    tracing::warn!(instance = %change.provider, reason = ?why, "write fence: this process may no longer write; no further write call of the pass is made");
                }
                return None;
            }
        }
        let cause = scheduled_cause(self.desired, change, OffsetDateTime::now_utc());
        let write_id = self.gate.announce(change, cause.as_ref())?;
        let result = write_one(provider, &self.access, change).await;
        self.gate
            .record(write_id.as_deref(), change, cause.as_ref(), &result);
        Some(result)
    }

    /// The summary of the pass: `plan` (every instance's) and what became of its changes,
    /// in plan order whatever order the calls finished in.
    pub fn finish(self, plan: &Plan, mut attempts: Vec<Attempt>) -> ApplyReport {
        let mut report = ApplyReport {
            format_version: FORMAT_VERSION,
            in_sync: plan.in_sync,
            blocked: plan.blocked.clone(),
            errors: plan.errors.clone(),
            refused: guard_refusals(plan, self.desired, self.options),
            ..ApplyReport::default()
        };
        for refusal in &report.refused {
            tracing::warn!(
                instance = %refusal.provider,
                changes = refusal.changes,
                limit = refusal.limit,
                held = self.options.guard_held,
                "safety guard: more changes than max_changes; none made at this instance (review, then raise max_changes in a reviewed commit, or run `roster apply --allow-mass-change` once by hand)"
            );
        }
        attempts.sort_by(|(a, _), (b, _)| {
            (&a.provider, &a.user, &a.account_id).cmp(&(&b.provider, &b.user, &b.account_id))
        });
        for (_, result) in attempts {
            let Some(result) = result else {
                report.not_attempted += 1;
                continue;
            };
            if result.outcome == Outcome::Blocked {
                report.blocked.push(Blocked {
                    provider: result.provider.clone(),
                    user: result.user.clone(),
                    account_id: result.account_id.clone(),
                    from: result.from.clone(),
                    to: result.to.clone(),
                    reason: result.message.clone().unwrap_or_default(),
                });
            }
            report.results.push(result);
        }
        report.audit_error = self
            .gate
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        report
    }
}

/// The audit log as the gate of every write call of one pass: Roster never makes a call
/// it could not announce, and after the first audit error it makes no further call.
struct AuditGate<'a> {
    audit: Option<&'a AuditLog>,
    git_commit: Option<&'a str>,
    failed: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl AuditGate<'_> {
    /// Writes the intent line of `change`. `Some(write_id)` (`Some(None)` without an
    /// audit log) means the call may be made; `None` means it must not.
    fn announce(&self, change: &Change, cause: Option<&ScheduledCause>) -> Option<Option<String>> {
        let Some(audit) = self.audit else {
            return Some(None);
        };
        let write_id = audit.next_write_id();
        match audit.append(&self.line(AuditEvent::Intent, &write_id, change, cause, None)) {
            Ok(()) => Some(Some(write_id)),
            Err(error) => {
                self.fail(
                    error.to_string(),
                    "cannot write the audit log; this write call and every further one of the pass are not made",
                );
                None
            }
        }
    }

    /// Writes the outcome line of a call that was made.
    fn record(
        &self,
        write_id: Option<&str>,
        change: &Change,
        cause: Option<&ScheduledCause>,
        result: &WriteResult,
    ) {
        let (Some(audit), Some(write_id)) = (self.audit, write_id) else {
            return;
        };
        let outcome = AuditOutcome {
            outcome: result.outcome.as_str(),
            http_status: result.http_status,
            message: result.message.as_deref(),
        };
        let line = self.line(AuditEvent::Outcome, write_id, change, cause, Some(outcome));
        if let Err(error) = audit.append(&line) {
            self.fail(
                error.to_string(),
                "cannot write the audit log; the call was made (its intent line is in the log) and no further write call of the pass is made",
            );
        }
    }

    fn fail(&self, error: String, what: &'static str) {
        self.failed.store(true, Ordering::SeqCst);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            tracing::error!(error = ?error, "{what}");
            *first = Some(error);
        }
    }

    fn line<'c>(
        &'c self,
        event: AuditEvent,
        write_id: &'c str,
        change: &'c Change,
        cause: Option<&ScheduledCause>,
        result: Option<AuditOutcome<'c>>,
    ) -> AuditRecord<'c> {
        AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
            write_id,
            instance: &change.provider,
            user: &change.user,
            account_id: &change.account_id,
            from: change.from.as_str(),
            to: change.to.as_str(),
            reason: match event {
                AuditEvent::Intent => change.reason.as_deref(),
                AuditEvent::Outcome => None,
            },
            result,
            git_commit: self.git_commit,
            scheduled: cause.cloned(),
        }
    }
}

/// The time bound that made `change.to` the desired status of its account at `now`:
/// `until` once it is reached, else `from` once it is reached; `None` when no bound has
/// taken effect (or the account is not in the folder). Evaluated when the write is
/// announced, as the daemon's scheduled pass makes it just after the bound.
fn scheduled_cause(
    desired: &DesiredState,
    change: &Change,
    now: OffsetDateTime,
) -> Option<ScheduledCause> {
    let account = desired
        .users
        .iter()
        .flat_map(|u| &u.accounts)
        .find(|a| a.instance == change.provider && a.id == change.account_id)?;
    if account.status_at(now) != &change.to {
        return None;
    }
    let (bound, at) = match (account.bounds.from, account.bounds.until) {
        (_, Some(until)) if now >= until => ("until", until),
        (Some(from), _) if now >= from => ("from", from),
        _ => return None,
    };
    Some(ScheduledCause {
        bound,
        at: format_utc(at),
    })
}

async fn write_one(provider: &dyn Provider, access: &WriteAccess, change: &Change) -> WriteResult {
    let (outcome, http_status, message) = match provider.set_status(access, change).await {
        Ok(WriteOutcome::Applied { http_status }) => (Outcome::Applied, Some(http_status), None),
        Ok(WriteOutcome::AlreadyConverged { http_status, note }) => {
            (Outcome::AlreadyConverged, Some(http_status), Some(note))
        }
        Ok(WriteOutcome::Refused {
            http_status,
            reason,
        }) => (Outcome::Blocked, Some(http_status), Some(reason)),
        Err(error) => (
            Outcome::Failed,
            error.http_status(),
            Some(error.to_string()),
        ),
    };
    // Untrusted text (names, ids, provider messages) with `?`: Debug escapes control
    // characters, so a display name cannot forge a log line.
    match outcome {
        Outcome::Failed => tracing::warn!(
            instance = %change.provider, user = ?change.user, account = ?change.account_id,
            from = %change.from, to = %change.to, error = ?message.as_deref().unwrap_or(""), "write failed"
        ),
        _ => tracing::info!(
            instance = %change.provider, user = ?change.user, account = ?change.account_id,
            from = %change.from, to = %change.to, outcome = outcome.as_str(), "write"
        ),
    }
    WriteResult {
        provider: change.provider.clone(),
        user: change.user.clone(),
        account_id: change.account_id.clone(),
        from: change.from.clone(),
        to: change.to.clone(),
        outcome,
        http_status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{parse_instant, Account, Bounds, Location, TimeBounds, User};

    fn instant(text: &str) -> OffsetDateTime {
        parse_instant(text).unwrap()
    }

    /// User "u" with account "a1" at instance "x", `active` within `bounds`.
    fn state(bounds: Bounds) -> DesiredState {
        DesiredState {
            root: "desired-state".into(),
            instances: Default::default(),
            users: vec![User {
                name: "u".into(),
                reason: None,
                accounts: vec![Account {
                    instance: "x".into(),
                    id: "a1".into(),
                    status: Status::new("active"),
                    bounds,
                    location: Location::default(),
                }],
                location: Location::default(),
            }]
            .into_iter()
            .map(Arc::new)
            .collect(),
        }
    }

    fn change(to: &str) -> Change {
        Change {
            provider: "x".into(),
            user: "u".into(),
            account_id: "a1".into(),
            from: Status::new("other"),
            to: Status::new(to),
            reason: None,
            revision: None,
        }
    }

    fn cause(state: &DesiredState, to: &str, now: &str) -> Option<(&'static str, String)> {
        scheduled_cause(state, &change(to), instant(now)).map(|c| (c.bound, c.at))
    }

    #[test]
    fn the_cause_names_the_bound_that_decided_the_status() {
        let both = state(Bounds::from(TimeBounds {
            from: Some(instant("2027-01-04T08:00:00+01:00")),
            until: Some(instant("2027-02-01T18:00:00+01:00")),
            ..TimeBounds::default()
        }));
        assert_eq!(
            cause(&both, "inactive", "2027-01-01T00:00:00Z"),
            None,
            "before `from` no bound has taken effect"
        );
        assert_eq!(
            cause(&both, "active", "2027-01-04T07:00:00Z"),
            Some(("from", "2027-01-04T07:00:00Z".into())),
            "inclusive, in UTC"
        );
        assert_eq!(
            cause(&both, "inactive", "2027-02-01T17:00:00Z"),
            Some(("until", "2027-02-01T17:00:00Z".into()))
        );
        assert_eq!(
            cause(&both, "active", "2027-02-01T17:00:00Z"),
            None,
            "a change towards another status than the bound's is not its doing"
        );
        let unbounded = state(Bounds::default());
        assert_eq!(cause(&unbounded, "active", "2027-02-01T17:00:00Z"), None);
        let mut elsewhere = change("inactive");
        elsewhere.provider = "y".into();
        assert_eq!(
            scheduled_cause(&both, &elsewhere, instant("2027-03-01T00:00:00Z")),
            None
        );
    }
}
