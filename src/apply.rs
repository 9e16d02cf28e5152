//! Executes a [`Plan`]: safety guards first, then the writes, concurrently per instance
//! within each instance's `max_concurrency`, each one recorded in the audit log.

use crate::audit::{AuditLog, AuditRecord};
use crate::desired::DesiredState;
use crate::plan::{Blocked, Change, Plan, PlanError, FORMAT_VERSION};
use crate::provider::{bounded, Provider, WriteOutcome};
use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
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
    /// `--allow-mass-change`: lifts the guard for this run.
    pub allow_mass_change: bool,
    /// Recorded with every audit line when the folder is a git checkout.
    pub git_commit: Option<String>,
    /// Once cancelled, no further write call is started; calls already in flight finish
    /// and are audited. The daemon cancels it on SIGTERM, so shutdown makes no new calls.
    pub stop: Option<CancellationToken>,
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
    /// Changes left unattempted: [`ApplyOptions::stop`] was cancelled, or the audit log
    /// could not be written.
    pub not_attempted: usize,
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
            (changes > limit).then(|| GuardRefusal {
                provider: instance.to_string(),
                changes,
                limit,
            })
        })
        .collect()
}

/// Applies `plan` through `providers` (keyed by instance name). Instances run
/// concurrently and independently; an instance over its `max_changes` gets no write.
pub async fn apply(
    plan: &Plan,
    desired: &DesiredState,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
    options: &ApplyOptions,
    audit: Option<&AuditLog>,
) -> ApplyReport {
    let mut report = ApplyReport {
        format_version: FORMAT_VERSION,
        in_sync: plan.in_sync,
        blocked: plan.blocked.clone(),
        errors: plan.errors.clone(),
        ..ApplyReport::default()
    };
    report.refused = guard_refusals(plan, desired, options);
    for refusal in &report.refused {
        tracing::warn!(
            instance = %refusal.provider,
            changes = refusal.changes,
            limit = refusal.limit,
            "safety guard: more changes than max_changes; none made at this instance (review, then raise max_changes or use --allow-mass-change)"
        );
    }
    // Owned changes: a closure over `&Change` would be inferred higher-ranked, and the
    // future would then not be provably `Send` for the daemon's `tokio::spawn`.
    let mut per_instance: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    for change in &plan.changes {
        per_instance
            .entry(change.provider.as_str())
            .or_default()
            .push(change.clone());
    }
    let access = WriteAccess::grant();
    // Once an audit line cannot be written, no further call is made: Roster never acts
    // without a record of what it did.
    let audit_failed = AtomicBool::new(false);
    let audit_failed = &audit_failed;
    let mut runs = Vec::new();
    for (instance, changes) in per_instance {
        if report.refused.iter().any(|r| r.provider == instance) {
            continue;
        }
        let Some(config) = desired.instances.get(instance) else {
            continue;
        };
        let Some(provider) = providers.get(instance) else {
            continue;
        };
        let access = &access;
        runs.push(async move {
            bounded(changes, config.max_concurrency, |change| async move {
                let stopped = options.stop.as_ref().is_some_and(|s| s.is_cancelled());
                if stopped || audit_failed.load(Ordering::SeqCst) {
                    return None;
                }
                let result = write_one(provider.as_ref(), access, &change).await;
                if let Some(audit) = audit {
                    if let Err(error) = record(audit, &result, options.git_commit.as_deref()) {
                        tracing::error!(%error, "cannot write the audit log; no further write call will be made");
                        audit_failed.store(true, Ordering::SeqCst);
                    }
                }
                Some(result)
            })
            .await
        });
    }
    for results in futures::future::join_all(runs).await {
        for result in results {
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
    }
    report
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
    match outcome {
        Outcome::Failed => tracing::warn!(
            instance = %change.provider, user = %change.user, account = %change.account_id,
            from = %change.from, to = %change.to, error = message.as_deref().unwrap_or(""), "write failed"
        ),
        _ => tracing::info!(
            instance = %change.provider, user = %change.user, account = %change.account_id,
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

fn record(
    audit: &AuditLog,
    result: &WriteResult,
    git_commit: Option<&str>,
) -> Result<(), crate::audit::AuditError> {
    let line = AuditRecord {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        instance: &result.provider,
        user: &result.user,
        account_id: &result.account_id,
        from: result.from.as_str(),
        to: result.to.as_str(),
        outcome: result.outcome.as_str(),
        http_status: result.http_status,
        message: result.message.as_deref(),
        git_commit,
    };
    audit.append(&line)
}
