use super::plural;
use crate::apply::{ApplyReport, GuardRefusal, Outcome};
use crate::plan::Plan;
use std::fmt::Write;

/// A plan for a terminal: changes grouped by instance, then blocked, errors, a total.
pub fn plan_text(plan: &Plan, guard: &[GuardRefusal]) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() {
        out.push_str("No changes: every account read is in its desired status.\n");
    } else {
        out.push_str("Changes (one write call each):\n");
        let mut current = "";
        for change in &plan.changes {
            if change.provider != current {
                current = &change.provider;
                let _ = writeln!(out, "  {current}");
            }
            let _ = write!(
                out,
                "    ~ {}  {}  {} -> {}",
                change.user, change.account_id, change.from, change.to
            );
            if let Some(reason) = &change.reason {
                let _ = write!(out, "  ({reason})");
            }
            out.push('\n');
        }
    }
    if !plan.blocked.is_empty() {
        out.push_str("\nBlocked (the provider refuses these; no call is made):\n");
        for b in &plan.blocked {
            let _ = writeln!(
                out,
                "  ! {}  {}  {}  {} -> {}: {}",
                b.provider, b.user, b.account_id, b.from, b.to, b.reason
            );
        }
    }
    if !plan.errors.is_empty() {
        out.push_str("\nErrors (not planned; fix and plan again):\n");
        for e in &plan.errors {
            match (&e.user, &e.account_id) {
                (Some(user), Some(account)) => {
                    let _ = writeln!(
                        out,
                        "  x {}  {}  {}: {}",
                        e.provider, user, account, e.message
                    );
                }
                _ => {
                    let _ = writeln!(out, "  x {}: {}", e.provider, e.message);
                }
            }
        }
    }
    for g in guard {
        let _ = writeln!(
            out,
            "\nWarning: {} has {} changes, more than its limit of {}; apply will refuse them (review, then use --allow-mass-change or raise max_changes).",
            g.provider, g.changes, g.limit
        );
    }
    let _ = writeln!(
        out,
        "\nPlan: {}, {} in sync, {}, {}.",
        plural(plan.changes.len(), "change", "changes"),
        plan.in_sync,
        plural(plan.blocked.len(), "blocked", "blocked"),
        plural(plan.errors.len(), "error", "errors"),
    );
    out
}

/// An apply summary for a terminal.
pub fn apply_text(report: &ApplyReport) -> String {
    let mut out = String::new();
    if !report.results.is_empty() {
        out.push_str("Writes:\n");
        for r in &report.results {
            let mark = match r.outcome {
                Outcome::Applied => "✓",
                Outcome::AlreadyConverged => "=",
                Outcome::Blocked => "!",
                Outcome::Failed => "x",
            };
            let _ = write!(
                out,
                "  {mark} {}  {}  {}  {} -> {}  {}",
                r.provider,
                r.user,
                r.account_id,
                r.from,
                r.to,
                r.outcome.as_str()
            );
            if let Some(message) = &r.message {
                let _ = write!(out, ": {message}");
            }
            out.push('\n');
        }
    }
    for g in &report.refused {
        let _ = writeln!(
            out,
            "Refused by the safety guard: {} would change {} accounts, more than its limit of {}; nothing was changed there.",
            g.provider, g.changes, g.limit
        );
    }
    if report.not_attempted > 0 {
        let _ = writeln!(
            out,
            "Not attempted: {} (shutdown, or the audit log could not be written; see the log).",
            report.not_attempted
        );
    }
    if !report.blocked.is_empty() {
        out.push_str("Blocked (not changed):\n");
        for b in &report.blocked {
            let _ = writeln!(
                out,
                "  ! {}  {}  {}: {}",
                b.provider, b.user, b.account_id, b.reason
            );
        }
    }
    if !report.errors.is_empty() {
        out.push_str("Errors (not applied):\n");
        for e in &report.errors {
            let who = match (&e.user, &e.account_id) {
                (Some(u), Some(a)) => format!("  {u}  {a}"),
                _ => String::new(),
            };
            let _ = writeln!(out, "  x {}{who}: {}", e.provider, e.message);
        }
    }
    let _ = writeln!(
        out,
        "Apply: {} applied, {} already converged, {} failed, {} blocked, {} refused by the guard, {} in sync, {}.",
        report.count(Outcome::Applied),
        report.count(Outcome::AlreadyConverged),
        report.count(Outcome::Failed),
        report.blocked.len(),
        report.refused.iter().map(|g| g.changes).sum::<usize>(),
        report.in_sync,
        plural(report.errors.len(), "read error", "read errors"),
    );
    out
}
