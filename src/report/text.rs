//! Plans and apply summaries for terminals and CI logs: a verdict line, aligned
//! sections, a totals line. Every untrusted value goes through [`escape::text`] here, so
//! one value is one line segment, whatever it contains.

use super::verdict::{self, is_instance_error, Style};
use super::{and_list, plural, upcoming_groups, when};
use crate::apply::{ApplyReport, GuardRefusal, Outcome};
use crate::escape;
use crate::plan::Plan;
use std::fmt::Write;

/// Columns wider than this are not padded further: one long value overflows its own
/// row instead of pushing every other row to the right.
const MAX_COLUMN: usize = 40;

const STYLE: Style = Style {
    name: |s| escape::text(s).into_owned(),
    strong: |s| s.to_string(),
};

/// One untrusted value, escaped for a terminal.
fn t(s: &str) -> String {
    escape::text(s).into_owned()
}

/// `from -> to`, both untrusted.
fn transition(from: &str, to: &str) -> String {
    format!("{} -> {}", t(from), t(to))
}

/// Lines of one section: instance headings and rows whose cells line up.
#[derive(Default)]
struct Grid {
    lines: Vec<Line>,
}

enum Line {
    /// An instance name under which rows are grouped (escaped).
    Heading(String),
    /// A fixed lead (indent and mark) and escaped cells.
    Row(&'static str, Vec<String>),
}

impl Grid {
    fn heading(&mut self, escaped: String) {
        self.lines.push(Line::Heading(escaped));
    }

    fn row(&mut self, lead: &'static str, escaped_cells: Vec<String>) {
        self.lines.push(Line::Row(lead, escaped_cells));
    }

    /// Writes the lines; every cell but the last is padded to its column's width.
    fn write(&self, out: &mut String) {
        let mut widths: Vec<usize> = Vec::new();
        for line in &self.lines {
            if let Line::Row(_, cells) = line {
                for (i, cell) in cells.iter().enumerate() {
                    let w = unicode_width::UnicodeWidthStr::width(cell.as_str()).min(MAX_COLUMN);
                    match widths.get_mut(i) {
                        Some(max) => *max = (*max).max(w),
                        None => widths.push(w),
                    }
                }
            }
        }
        for line in &self.lines {
            match line {
                Line::Heading(name) => {
                    let _ = writeln!(out, "  {name}");
                }
                Line::Row(lead, cells) => {
                    let mut row = String::from(*lead);
                    let last = cells.len().saturating_sub(1);
                    for (i, cell) in cells.iter().enumerate() {
                        if i < last && widths[i] == 0 {
                            continue; // a column empty in every row takes no room
                        }
                        row.push_str(cell);
                        if i < last {
                            let w = unicode_width::UnicodeWidthStr::width(cell.as_str());
                            let pad = widths[i].saturating_sub(w) + 2;
                            row.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                    out.push_str(row.trim_end());
                    out.push('\n');
                }
            }
        }
    }
}

/// A plan for a terminal: verdict, changes grouped by instance, blocked, errors, guard
/// warnings, totals.
pub fn plan_text(plan: &Plan, guard: &[GuardRefusal]) -> String {
    let mut out = verdict::plan_verdict(plan, guard, &STYLE);
    out.push('\n');
    if !plan.changes.is_empty() {
        out.push_str("\nChanges (one write call each):\n");
        let mut grid = Grid::default();
        let mut current = None;
        for c in &plan.changes {
            if current != Some(&c.provider) {
                current = Some(&c.provider);
                grid.heading(t(&c.provider));
            }
            let reason = c
                .reason
                .as_deref()
                .map(|r| format!("({})", t(r)))
                .unwrap_or_default();
            grid.row(
                "    ~ ",
                vec![
                    t(&c.user),
                    t(&c.account_id),
                    transition(c.from.as_str(), c.to.as_str()),
                    reason,
                ],
            );
        }
        grid.write(&mut out);
    }
    if !plan.blocked.is_empty() {
        out.push_str("\nBlocked (the provider refuses these; no call is made):\n");
        let mut grid = Grid::default();
        for b in &plan.blocked {
            grid.row(
                "  ! ",
                vec![
                    t(&b.provider),
                    t(&b.user),
                    t(&b.account_id),
                    transition(b.from.as_str(), b.to.as_str()),
                    t(&b.reason),
                ],
            );
        }
        grid.write(&mut out);
    }
    if !plan.errors.is_empty() {
        out.push_str("\nErrors (not planned; fix and plan again):\n");
        errors_grid(&plan.errors).write(&mut out);
    }
    let upcoming = upcoming_groups(plan);
    if !upcoming.is_empty() {
        out.push_str("\nUpcoming (scheduled in the folder, not due yet):\n");
        let mut grid = Grid::default();
        for u in &upcoming {
            let providers: Vec<String> = u.providers.iter().map(|p| t(p)).collect();
            grid.row(
                "  @ ",
                vec![
                    when(u.at),
                    t(u.user),
                    format!("becomes {} at {}", t(u.to), and_list(&providers)),
                ],
            );
        }
        grid.write(&mut out);
    }
    for g in guard {
        let _ = writeln!(
            out,
            "\nWarning: {} has {} changes, more than its limit of {}; apply will refuse them (review, then use --allow-mass-change or raise max_changes).",
            t(&g.provider),
            g.changes,
            g.limit
        );
    }
    let _ = writeln!(
        out,
        "\nPlan: {}, {} in sync, {} blocked, {}.",
        plural(plan.changes.len(), "change", "changes"),
        plan.in_sync,
        plan.blocked.len(),
        plural(plan.errors.len(), "error", "errors"),
    );
    out
}

/// Errors of whole instances say that nothing was read; errors of accounts name them.
fn errors_grid(errors: &[crate::plan::PlanError]) -> Grid {
    let mut grid = Grid::default();
    for e in errors {
        let message = if is_instance_error(e) {
            format!("nothing was read: {}", t(&e.message))
        } else {
            t(&e.message)
        };
        grid.row(
            "  x ",
            vec![
                t(&e.provider),
                t(e.user.as_deref().unwrap_or("")),
                t(e.account_id.as_deref().unwrap_or("")),
                message,
            ],
        );
    }
    grid
}

/// An apply summary for a terminal: verdict, writes, guard refusals, blocked, errors,
/// totals.
pub fn apply_text(report: &ApplyReport) -> String {
    let mut out = verdict::apply_verdict(report, &STYLE);
    out.push('\n');
    if !report.results.is_empty() {
        out.push_str("\nWrites:\n");
        let mut grid = Grid::default();
        for r in &report.results {
            let mark = match r.outcome {
                Outcome::Applied => "  ✓ ",
                Outcome::AlreadyConverged => "  = ",
                Outcome::Blocked => "  ! ",
                Outcome::Failed => "  x ",
            };
            let outcome = match r.http_status {
                Some(status) if r.outcome == Outcome::Failed => {
                    format!("{} (HTTP {status})", r.outcome.as_str())
                }
                _ => r.outcome.as_str().to_string(),
            };
            grid.row(
                mark,
                vec![
                    t(&r.provider),
                    t(&r.user),
                    t(&r.account_id),
                    transition(r.from.as_str(), r.to.as_str()),
                    outcome,
                    t(r.message.as_deref().unwrap_or("")),
                ],
            );
        }
        grid.write(&mut out);
    }
    if !report.refused.is_empty() || report.not_attempted > 0 || report.audit_error.is_some() {
        out.push('\n');
    }
    if let Some(error) = &report.audit_error {
        let _ = writeln!(
            out,
            "Audit log failed: {}; no write call was made after that.",
            t(error)
        );
    }
    for g in &report.refused {
        let _ = writeln!(
            out,
            "Refused by the safety guard: {} would change {} accounts, more than its limit of {}; nothing was changed there.",
            t(&g.provider),
            g.changes,
            g.limit
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
        out.push_str("\nBlocked (not changed):\n");
        let mut grid = Grid::default();
        for b in &report.blocked {
            grid.row(
                "  ! ",
                vec![t(&b.provider), t(&b.user), t(&b.account_id), t(&b.reason)],
            );
        }
        grid.write(&mut out);
    }
    if !report.errors.is_empty() {
        out.push_str("\nErrors (not applied):\n");
        errors_grid(&report.errors).write(&mut out);
    }
    let _ = writeln!(
        out,
        "\nApply: {} applied, {} already converged, {} failed, {} blocked, {} refused by the guard, {} in sync, {}.",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::WriteResult;
    use crate::escape::tests::HOSTILE;
    use crate::plan::{Change, PlanError};
    use crate::report::tests::hostile_plan;
    use crate::status::Status;

    fn change(provider: &str, user: &str, id: &str, reason: Option<&str>) -> Change {
        Change {
            provider: provider.into(),
            user: user.into(),
            account_id: id.into(),
            from: Status::active(),
            to: Status::inactive(),
            reason: reason.map(String::from),
            revision: None,
        }
    }

    #[test]
    fn columns_line_up_whatever_the_name_lengths() {
        let mut plan = Plan {
            changes: vec![
                change("helpdesk", "al", "u-1", Some("Left")),
                change("helpdesk", "bruno.costa", "u-22222", None),
                change("portal", "李小龍", "p-3", Some("Moved\nteams")),
            ],
            ..Plan::default()
        };
        plan.changes[1].to = Status::new("suspended");
        let text = plan_text(&plan, &[]);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("    ~ ")).collect();
        assert_eq!(
            rows,
            [
                "    ~ al           u-1      active -> inactive   (Left)",
                "    ~ bruno.costa  u-22222  active -> suspended",
                "    ~ 李小龍       p-3      active -> inactive   (Moved\\nteams)",
            ]
        );
    }

    #[test]
    fn no_hostile_value_can_start_a_line_or_drive_the_terminal() {
        let plan = hostile_plan();
        let text = plan_text(&plan, &[]);
        let expected_lines = 1 // verdict
            + 2 + 1 + HOSTILE.len() // blank, "Changes", instance heading, rows
            + 2 + HOSTILE.len() // blank, "Blocked", rows
            + 2 + HOSTILE.len() // blank, "Errors", rows
            + 2 + HOSTILE.len() // blank, "Upcoming", rows
            + 2; // blank, totals
        assert_eq!(text.lines().count(), expected_lines, "{text}");
        let (verdict, rest) = text.split_once('\n').unwrap();
        assert!(verdict.starts_with(&format!("{} changes at 1 instance", HOSTILE.len())));
        for line in rest.lines() {
            assert!(
                line.is_empty()
                    || ["  ", "Changes", "Blocked", "Errors", "Upcoming", "Plan: "]
                        .iter()
                        .any(|p| line.starts_with(p)),
                "a forged line: {line:?}"
            );
            assert!(
                !line.chars().any(|c| c.is_control()),
                "a control character: {line:?}"
            );
        }
        assert!(text.contains("eve\\u{1b}[2J\\u{1b}[31mcleared screen"));
        assert!(text.contains("bidi \\u{202e}evil"));
    }

    #[test]
    fn instance_errors_say_nothing_was_read() {
        let plan = Plan {
            errors: vec![PlanError {
                provider: "portal".into(),
                user: None,
                account_id: None,
                message: "credentials rejected\x1b[0m".into(),
            }],
            ..Plan::default()
        };
        let text = plan_text(&plan, &[]);
        assert!(text.starts_with("Nothing was read: every instance failed (portal)"));
        assert!(!text.contains("desired status"));
        assert!(text.contains("  x portal  nothing was read: credentials rejected\\u{1b}[0m\n"));
    }

    #[test]
    fn apply_rows_line_up_and_escape_provider_messages() {
        let report = ApplyReport {
            results: vec![
                WriteResult {
                    provider: "helpdesk".into(),
                    user: "al".into(),
                    account_id: "u-1".into(),
                    from: Status::active(),
                    to: Status::inactive(),
                    outcome: Outcome::Applied,
                    http_status: Some(200),
                    message: None,
                },
                WriteResult {
                    provider: "zitadel".into(),
                    user: "bruno.costa".into(),
                    account_id: "6962".into(),
                    from: Status::inactive(),
                    to: Status::active(),
                    outcome: Outcome::Failed,
                    http_status: Some(500),
                    message: Some("boom\r\nApply: 9 applied".into()),
                },
            ],
            ..ApplyReport::default()
        };
        let text = apply_text(&report);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(
            rows,
            [
                "  ✓ helpdesk  al           u-1   active -> inactive  applied",
                "  x zitadel   bruno.costa  6962  inactive -> active  failed (HTTP 500)  boom\\r\\nApply: 9 applied",
            ]
        );
        assert!(text.starts_with("Not converged: 1 write failed; 1 applied"));
        assert_eq!(text.lines().filter(|l| l.starts_with("Apply: ")).count(), 1);
    }
}
