use super::plural;
use crate::apply::{ApplyReport, GuardRefusal};
use crate::plan::Plan;
use std::fmt::Write;

/// Escapes text for a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', " ")
}

/// A plan made to be posted as a pull-request comment.
pub fn plan_markdown(plan: &Plan, guard: &[GuardRefusal]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Roster plan: {}, {} in sync, {}, {}\n",
        plural(plan.changes.len(), "change", "changes"),
        plan.in_sync,
        plural(plan.blocked.len(), "blocked", "blocked"),
        plural(plan.errors.len(), "error", "errors"),
    );
    if plan.changes.is_empty() {
        out.push_str("No changes: every account read is in its desired status.\n");
    } else {
        out.push_str(
            "| provider | user | account | from | to | reason |\n|---|---|---|---|---|---|\n",
        );
        for c in &plan.changes {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | **{}** | {} |",
                cell(&c.provider),
                cell(&c.user),
                cell(&c.account_id),
                cell(c.from.as_str()),
                cell(c.to.as_str()),
                cell(c.reason.as_deref().unwrap_or(""))
            );
        }
    }
    if !plan.blocked.is_empty() {
        out.push_str("\n**Blocked** (the provider refuses these; no call is made)\n\n| provider | user | account | from | to | reason |\n|---|---|---|---|---|---|\n");
        for b in &plan.blocked {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} | {} |",
                cell(&b.provider),
                cell(&b.user),
                cell(&b.account_id),
                cell(b.from.as_str()),
                cell(b.to.as_str()),
                cell(&b.reason)
            );
        }
    }
    if !plan.errors.is_empty() {
        out.push_str("\n**Errors** (not planned)\n\n| provider | user | account | message |\n|---|---|---|---|\n");
        for e in &plan.errors {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&e.provider),
                cell(e.user.as_deref().unwrap_or("")),
                e.account_id
                    .as_deref()
                    .map(|a| format!("`{}`", cell(a)))
                    .unwrap_or_default(),
                cell(&e.message)
            );
        }
    }
    for g in guard {
        let _ = writeln!(
            out,
            "\n> [!WARNING]\n> `{}` has {} changes, more than its limit of {}: `roster apply` will refuse them unless run with `--allow-mass-change`.",
            g.provider, g.changes, g.limit
        );
    }
    out
}

/// An apply summary for a pull-request or CI comment.
pub fn apply_markdown(report: &ApplyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Roster apply\n");
    if !report.results.is_empty() {
        out.push_str("| provider | user | account | from | to | outcome | HTTP | message |\n|---|---|---|---|---|---|---|---|\n");
        for r in &report.results {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} | {} | {} | {} |",
                cell(&r.provider),
                cell(&r.user),
                cell(&r.account_id),
                cell(r.from.as_str()),
                cell(r.to.as_str()),
                r.outcome.as_str(),
                r.http_status.map(|s| s.to_string()).unwrap_or_default(),
                cell(r.message.as_deref().unwrap_or(""))
            );
        }
    }
    for g in &report.refused {
        let _ = writeln!(
            out,
            "\n> [!CAUTION]\n> Safety guard: `{}` would change {} accounts, more than its limit of {}; nothing was changed there.",
            g.provider, g.changes, g.limit
        );
    }
    for b in &report.blocked {
        let _ = writeln!(
            out,
            "\n- blocked: `{}` {} `{}`: {}",
            b.provider,
            cell(&b.user),
            cell(&b.account_id),
            cell(&b.reason)
        );
    }
    for e in &report.errors {
        let _ = writeln!(out, "\n- error: `{}`: {}", e.provider, cell(&e.message));
    }
    let _ = writeln!(out, "\n{} accounts in sync.", report.in_sync);
    out
}
