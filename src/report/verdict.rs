//! The facts both text and markdown reports start with: one honest line that says what
//! would happen (or happened), what was read and what was not, and a per-instance
//! breakdown. Formats differ only in how a name is escaped and how a phrase is stressed,
//! which the caller passes as a [`Style`].

use super::plural;
use crate::apply::{ApplyReport, GuardRefusal, Outcome};
use crate::plan::{Plan, PlanError};
use std::collections::BTreeMap;

/// How a format writes untrusted names and stressed phrases.
pub(super) struct Style {
    /// Escapes one untrusted value (already shortened) for this format.
    pub name: fn(&str) -> String,
    /// Stresses a trusted phrase (markdown bold; plain in text).
    pub strong: fn(&str) -> String,
}

/// Names listed in a verdict: at most this many, then "and N more".
const NAMES_SHOWN: usize = 5;
/// Characters of one name shown in a verdict.
const NAME_CHARS: usize = 60;

/// Cuts `s` to `max` characters, marking the cut, so one hostile value cannot make a
/// verdict or a cell unbounded.
pub(super) fn shorten(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((at, _)) => format!(
            "{}… ({} more characters)",
            &s[..at],
            s[at..].chars().count()
        )
        .into(),
    }
}

fn names(style: &Style, names: &[&str]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| (style.name)(&shorten(n, NAME_CHARS)))
        .collect();
    if names.len() > NAMES_SHOWN {
        shown.push(format!("{} more", names.len() - NAMES_SHOWN));
    }
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => shown.concat(),
    }
}

/// An error of a whole instance (nothing was read from it), not of one account.
pub(super) fn is_instance_error(e: &PlanError) -> bool {
    e.user.is_none() && e.account_id.is_none()
}

/// One instance's line in a plan's summary.
#[derive(Debug, Default, PartialEq)]
pub(super) struct PlanInstance<'a> {
    pub changes: usize,
    /// `None` when the instance was not read (or the plan does not say).
    pub in_sync: Option<usize>,
    pub blocked: usize,
    /// Accounts that could not be read.
    pub account_errors: usize,
    /// Nothing was read from the instance.
    pub failed: bool,
    pub guard: Option<&'a GuardRefusal>,
}

/// Every instance the plan mentions, in name order.
pub(super) fn plan_instances<'a>(
    plan: &'a Plan,
    guard: &'a [GuardRefusal],
) -> BTreeMap<&'a str, PlanInstance<'a>> {
    let mut rows: BTreeMap<&str, PlanInstance> = BTreeMap::new();
    for (instance, in_sync) in &plan.in_sync_by_instance {
        rows.entry(instance).or_default().in_sync = Some(*in_sync);
    }
    for c in &plan.changes {
        rows.entry(&c.provider).or_default().changes += 1;
    }
    for b in &plan.blocked {
        rows.entry(&b.provider).or_default().blocked += 1;
    }
    for e in &plan.errors {
        let row = rows.entry(&e.provider).or_default();
        if is_instance_error(e) {
            row.failed = true;
        } else {
            row.account_errors += 1;
        }
    }
    for g in guard {
        rows.entry(&g.provider).or_default().guard = Some(g);
    }
    rows
}

/// The plan in one line: what a merge would change, and what was not read.
pub(super) fn plan_verdict(plan: &Plan, guard: &[GuardRefusal], style: &Style) -> String {
    let instances = plan_instances(plan, guard);
    let failed: Vec<&str> = instances
        .iter()
        .filter(|(_, i)| i.failed)
        .map(|(n, _)| *n)
        .collect();
    let read = instances.len() - failed.len();
    if read == 0 && !failed.is_empty() {
        return format!(
            "{}: every instance failed ({}); no change can be planned until they can be read.",
            (style.strong)("Nothing was read"),
            names(style, &failed)
        );
    }
    if plan.changes.is_empty() && plan.blocked.is_empty() && plan.errors.is_empty() {
        return match plan.in_sync {
            0 => "No changes: the folder has no account at the instances read.".to_string(),
            1 => "No changes: the one account read is in its desired status.".to_string(),
            n => format!("No changes: all {n} accounts read are in their desired status."),
        };
    }
    let with_changes: Vec<&str> = instances
        .iter()
        .filter(|(_, i)| i.changes > 0)
        .map(|(n, _)| *n)
        .collect();
    let mut line = if !plan.changes.is_empty() {
        format!(
            "{} at {}",
            (style.strong)(&plural(plan.changes.len(), "change", "changes")),
            plural(with_changes.len(), "instance", "instances")
        )
    } else if plan.errors.is_empty() {
        format!(
            "{}: {} in sync",
            (style.strong)("No changes"),
            plural(plan.in_sync, "account", "accounts")
        )
    } else {
        (style.strong)("No changes at the instances read")
    };
    if !plan.blocked.is_empty() {
        line.push_str(&format!(", {} blocked", plan.blocked.len()));
    }
    if plan.errors.is_empty() {
        line.push_str(", no errors");
    }
    if !guard.is_empty() {
        let refused: Vec<&str> = guard.iter().map(|g| g.provider.as_str()).collect();
        line.push_str(&format!(
            "; the safety guard will refuse every change at {}",
            names(style, &refused)
        ));
    }
    if !failed.is_empty() {
        line.push_str(&format!(
            "; {} from {}",
            (style.strong)("nothing was read"),
            names(style, &failed)
        ));
    }
    let account_errors = plan.errors.iter().filter(|e| !is_instance_error(e)).count();
    if account_errors > 0 {
        line.push_str(&format!(
            "; {} could not be read",
            plural(account_errors, "account", "accounts")
        ));
    }
    line.push('.');
    line
}

/// One instance's line in an apply summary.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ApplyInstance<'a> {
    pub applied: usize,
    pub already_converged: usize,
    pub failed_writes: usize,
    pub blocked: usize,
    pub account_errors: usize,
    pub failed: bool,
    pub guard: Option<&'a GuardRefusal>,
}

/// Every instance the apply summary mentions, in name order.
pub(super) fn apply_instances(report: &ApplyReport) -> BTreeMap<&str, ApplyInstance<'_>> {
    let mut rows: BTreeMap<&str, ApplyInstance> = BTreeMap::new();
    for r in &report.results {
        let row = rows.entry(&r.provider).or_default();
        match r.outcome {
            Outcome::Applied => row.applied += 1,
            Outcome::AlreadyConverged => row.already_converged += 1,
            Outcome::Failed => row.failed_writes += 1,
            // Counted from `blocked`, where apply also records write-time refusals.
            Outcome::Blocked => {}
        }
    }
    for b in &report.blocked {
        rows.entry(&b.provider).or_default().blocked += 1;
    }
    for e in &report.errors {
        let row = rows.entry(&e.provider).or_default();
        if is_instance_error(e) {
            row.failed = true;
        } else {
            row.account_errors += 1;
        }
    }
    for g in &report.refused {
        rows.entry(&g.provider).or_default().guard = Some(g);
    }
    rows
}

/// The apply pass in one line: converged or not, and why not.
pub(super) fn apply_verdict(report: &ApplyReport, style: &Style) -> String {
    let mut problems = Vec::new();
    if !report.refused.is_empty() {
        let refused: Vec<&str> = report.refused.iter().map(|g| g.provider.as_str()).collect();
        problems.push(format!(
            "the safety guard refused every change at {}",
            names(style, &refused)
        ));
    }
    let failed_writes = report.count(Outcome::Failed);
    if failed_writes > 0 {
        problems.push(format!(
            "{} failed",
            plural(failed_writes, "write", "writes")
        ));
    }
    if report.not_attempted > 0 {
        problems.push(format!(
            "{} not attempted",
            plural(report.not_attempted, "change", "changes")
        ));
    }
    let failed: Vec<&str> = report
        .errors
        .iter()
        .filter(|e| is_instance_error(e))
        .map(|e| e.provider.as_str())
        .collect();
    if !failed.is_empty() {
        problems.push(format!(
            "nothing was read from {}, so nothing was changed there",
            names(style, &failed)
        ));
    }
    let account_errors = report
        .errors
        .iter()
        .filter(|e| !is_instance_error(e))
        .count();
    if account_errors > 0 {
        problems.push(format!(
            "{} could not be read",
            plural(account_errors, "account", "accounts")
        ));
    }
    let mut done = format!(
        "{} applied, {} already converged",
        report.count(Outcome::Applied),
        report.count(Outcome::AlreadyConverged)
    );
    if !report.blocked.is_empty() {
        done.push_str(&format!(", {} blocked (not changed)", report.blocked.len()));
    }
    if !problems.is_empty() {
        format!(
            "{}: {}; {done}.",
            (style.strong)("Not converged"),
            problems.join("; ")
        )
    } else if report.results.is_empty() && report.blocked.is_empty() {
        format!("{}: no write was needed.", (style.strong)("Converged"))
    } else if report.blocked.is_empty() {
        format!("{}: {done}.", (style.strong)("Converged"))
    } else {
        format!("{}: {done}.", (style.strong)("Done"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Change;
    use crate::status::Status;

    const PLAIN: Style = Style {
        name: |s| s.to_string(),
        strong: |s| s.to_string(),
    };

    fn change(provider: &str, user: &str) -> Change {
        Change {
            provider: provider.into(),
            user: user.into(),
            account_id: user.into(),
            from: Status::active(),
            to: Status::inactive(),
            reason: None,
            revision: None,
        }
    }

    fn instance_error(provider: &str) -> PlanError {
        PlanError {
            provider: provider.into(),
            user: None,
            account_id: None,
            message: "credentials rejected".into(),
        }
    }

    #[test]
    fn a_plan_where_every_instance_failed_says_nothing_was_read() {
        let plan = Plan {
            errors: vec![instance_error("helpdesk"), instance_error("portal")],
            ..Plan::default()
        };
        let verdict = plan_verdict(&plan, &[], &PLAIN);
        assert_eq!(
            verdict,
            "Nothing was read: every instance failed (helpdesk and portal); no change can be planned until they can be read."
        );
        assert!(!verdict.contains("desired status"));
    }

    #[test]
    fn a_partly_read_plan_names_what_was_not_read() {
        let mut plan = Plan {
            changes: vec![change("atlan", "a"), change("atlan", "b")],
            in_sync: 4,
            errors: vec![
                instance_error("portal"),
                PlanError {
                    provider: "atlan".into(),
                    user: Some("ghost".into()),
                    account_id: Some("g".into()),
                    message: "account not found at the provider (404)".into(),
                },
            ],
            ..Plan::default()
        };
        plan.in_sync_by_instance.insert("atlan".into(), 4);
        assert_eq!(
            plan_verdict(&plan, &[], &PLAIN),
            "2 changes at 1 instance; nothing was read from portal; 1 account could not be read."
        );
        plan.changes.clear();
        assert_eq!(
            plan_verdict(&plan, &[], &PLAIN),
            "No changes at the instances read; nothing was read from portal; 1 account could not be read."
        );
    }

    #[test]
    fn a_plan_with_only_blocked_entries_is_not_called_in_sync() {
        let plan = Plan {
            in_sync: 32,
            blocked: vec![crate::plan::Blocked {
                provider: "atlan".into(),
                user: "kim".into(),
                account_id: "k".into(),
                from: Status::active(),
                to: Status::inactive(),
                reason: "admin".into(),
            }],
            ..Plan::default()
        };
        assert_eq!(
            plan_verdict(&plan, &[], &PLAIN),
            "No changes: 32 accounts in sync, 1 blocked, no errors."
        );
    }

    #[test]
    fn a_converged_plan_counts_what_it_read() {
        let mut plan = Plan {
            in_sync: 32,
            ..Plan::default()
        };
        plan.in_sync_by_instance.insert("atlan".into(), 32);
        assert_eq!(
            plan_verdict(&plan, &[], &PLAIN),
            "No changes: all 32 accounts read are in their desired status."
        );
    }

    #[test]
    fn guard_and_long_name_lists_are_bounded() {
        let plan = Plan {
            changes: (0..8).map(|i| change(&format!("i{i}"), "u")).collect(),
            ..Plan::default()
        };
        let guard = [GuardRefusal {
            provider: "i0".into(),
            changes: 30,
            limit: 25,
        }];
        assert_eq!(
            plan_verdict(&plan, &guard, &PLAIN),
            "8 changes at 8 instances, no errors; the safety guard will refuse every change at i0."
        );
        let failed = Plan {
            errors: (0..8).map(|i| instance_error(&format!("i{i}"))).collect(),
            ..Plan::default()
        };
        assert!(plan_verdict(&failed, &[], &PLAIN).contains("(i0, i1, i2, i3, i4 and 3 more)"));
        let long = "x".repeat(1000);
        assert!(names(&PLAIN, &[&long]).len() < 100);
    }

    #[test]
    fn apply_verdict_says_why_it_did_not_converge() {
        let report = ApplyReport {
            errors: vec![instance_error("portal")],
            ..ApplyReport::default()
        };
        assert_eq!(
            apply_verdict(&report, &PLAIN),
            "Not converged: nothing was read from portal, so nothing was changed there; 0 applied, 0 already converged."
        );
        assert_eq!(
            apply_verdict(&ApplyReport::default(), &PLAIN),
            "Converged: no write was needed."
        );
    }
}
