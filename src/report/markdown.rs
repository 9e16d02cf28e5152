//! Plans and apply summaries as pull-request comments (GitHub-flavoured markdown).
//!
//! A comment starts with a hidden marker line (`<!-- roster-plan -->` or
//! `<!-- roster-apply -->`) so a workflow can find and update its own comment, then a
//! one-line verdict, a per-instance summary table, and the lists: changes grouped by
//! instance, blocked, errors. A list longer than [`FOLD_AFTER`] rows is folded in
//! `<details>`. The comment stays under [`MAX_COMMENT_BYTES`]: when the lists do not
//! fit, each gets a fair share of the room (short lists whole, long ones a prefix, in
//! their stable order) and the comment ends with how many rows it left out.
//!
//! Every value from a file or a provider goes through [`escape::markdown`] here, and
//! never sits at the start of a line, so none can forge markup, a link, a mention or a
//! line of the comment.

use super::verdict::{self, is_instance_error, shorten, Style};
use super::{and_list, plural, upcoming_groups, when};
use crate::apply::{ApplyReport, GuardRefusal, Outcome};
use crate::escape;
use crate::plan::Plan;
use std::fmt::Write;

/// Hard cap on a comment's size in bytes (GitHub refuses comments over 65,536
/// characters; a byte count is never below the character count).
pub const MAX_COMMENT_BYTES: usize = 65_000;
/// Room kept for the closing "N more not shown" line.
const FOOTER_ROOM: usize = 400;
/// Lists with more rows than this are folded in `<details>`.
const FOLD_AFTER: usize = 10;
/// Characters of one value shown in a cell; longer values are cut with a visible count.
const CELL_CHARS: usize = 300;

const STYLE: Style = Style {
    name: |s| escape::markdown(s),
    strong: |s| format!("**{s}**"),
};

/// One untrusted value for a table cell or inline text.
fn md(s: &str) -> String {
    escape::markdown(&shorten(s, CELL_CHARS))
}

/// An untrusted identifier in monospace. Inside inline `<code>` tags markdown still
/// applies, so the escaped value renders literally; a code span could be broken out of.
fn code(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("<code>{}</code>", md(s))
    }
}

/// An untrusted value in bold.
fn bold(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("**{}**", md(s))
    }
}

/// A table row from cells already escaped (or trusted).
fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// Rows under one title and one table header (or blockquote lead).
struct Group {
    /// Lines before the rows (a heading), ending with a blank line; may be empty.
    title: String,
    /// The table header, or the lead of a blockquote.
    header: String,
    rows: Vec<String>,
    /// Plural noun for the fold's summary ("changes").
    noun: &'static str,
    /// Whether more than [`FOLD_AFTER`] rows are folded (not inside a blockquote).
    foldable: bool,
}

impl Group {
    fn folded(&self) -> bool {
        self.foldable && self.rows.len() > FOLD_AFTER
    }

    /// Writes the title, header and the first `shown` rows.
    fn write(&self, shown: usize, out: &mut String) {
        out.push_str(&self.title);
        let folded = self.folded();
        if folded {
            let count = if shown < self.rows.len() {
                format!("{shown} of {}", self.rows.len())
            } else {
                shown.to_string()
            };
            let _ = write!(
                out,
                "<details><summary>Show {count} {}</summary>\n\n",
                self.noun
            );
        }
        out.push_str(&self.header);
        for r in &self.rows[..shown] {
            out.push_str(r);
        }
        if folded {
            out.push_str("\n</details>\n");
        }
        out.push('\n');
    }

    /// Bytes of everything but the rows, an upper bound (the fold's summary counted at
    /// its longest).
    fn overhead(&self) -> usize {
        let fold = if self.folded() { 80 } else { 0 };
        self.title.len() + self.header.len() + fold + 1
    }
}

/// A list of the comment: a heading, then groups of rows.
struct Section {
    /// Written before the first group when any row is shown.
    head: String,
    groups: Vec<Group>,
    /// Singular and plural noun for "N more ... not shown".
    noun: (&'static str, &'static str),
}

impl Section {
    fn rows(&self) -> usize {
        self.groups.iter().map(|g| g.rows.len()).sum()
    }

    /// Bytes of the whole section, every row shown.
    fn cost(&self) -> usize {
        if self.rows() == 0 {
            return 0;
        }
        self.head.len()
            + self
                .groups
                .iter()
                .map(|g| g.overhead() + g.rows.iter().map(String::len).sum::<usize>())
                .sum::<usize>()
    }

    /// Writes as many rows as fit in `budget` bytes, each group its fair share (see
    /// [`shares`]) and a prefix of its rows; returns how many rows were left out.
    fn write(&self, budget: usize, out: &mut String) -> usize {
        let costs: Vec<usize> = self
            .groups
            .iter()
            .map(|g| g.overhead() + g.rows.iter().map(String::len).sum::<usize>())
            .collect();
        let shares = shares(&costs, budget.saturating_sub(self.head.len()));
        let mut written = String::new();
        let mut shown_total = 0;
        for (group, share) in self.groups.iter().zip(shares) {
            let mut size = group.overhead();
            let mut shown = 0;
            for r in &group.rows {
                if size + r.len() > share {
                    break;
                }
                size += r.len();
                shown += 1;
            }
            if shown > 0 {
                group.write(shown, &mut written);
                shown_total += shown;
            }
        }
        if shown_total > 0 {
            out.push_str(&self.head);
            out.push_str(&written);
        }
        self.rows() - shown_total
    }
}

/// Shares `budget` bytes among sections: each gets what it needs if that is no more
/// than an equal share of what is left, the smallest first, so short lists are shown
/// whole and long ones split the rest.
fn shares(costs: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&i| costs[i]);
    let mut shares = vec![0; costs.len()];
    let mut left = budget;
    for (n, &i) in order.iter().enumerate() {
        let share = (left / (costs.len() - n)).min(costs[i]);
        shares[i] = share;
        left -= share;
    }
    shares
}

/// The comment: preamble, then the sections within the size cap, then the footer.
fn comment(preamble: String, sections: &[Section], full_list: &str) -> String {
    let mut out = preamble;
    let budget = MAX_COMMENT_BYTES.saturating_sub(out.len() + FOOTER_ROOM);
    let costs: Vec<usize> = sections.iter().map(Section::cost).collect();
    let shares = shares(&costs, budget);
    let mut left_out = Vec::new();
    for (section, share) in sections.iter().zip(shares) {
        let omitted = section.write(share, &mut out);
        if omitted > 0 {
            let (one, many) = section.noun;
            left_out.push(format!(
                "{omitted} more {}",
                if omitted == 1 { one } else { many }
            ));
        }
    }
    if let Some((last, rest)) = left_out.split_last() {
        let list = if rest.is_empty() {
            last.clone()
        } else {
            format!("{} and {last}", rest.join(", "))
        };
        let _ = writeln!(
            out,
            "**{list} not shown** (a comment must stay under 65,536 characters); {full_list}."
        );
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A plan made to be posted as a pull-request comment (contract section 12).
pub fn plan_markdown(plan: &Plan, guard: &[GuardRefusal]) -> String {
    let preamble = format!(
        "<!-- roster-plan -->\n## Roster plan\n\n{}\n\n",
        verdict::plan_verdict(plan, guard, &STYLE)
    );
    let instances = verdict::plan_instances(plan, guard);
    let summary = Section {
        head: String::new(),
        groups: vec![Group {
            title: String::new(),
            header: "| instance | changes | in sync | blocked | errors | guard |\n|---|--:|--:|--:|--:|---|\n".into(),
            rows: instances
                .iter()
                .map(|(name, i)| {
                    let guard = i
                        .guard
                        .map(|g| format!("over its limit of {}: apply refuses", g.limit))
                        .unwrap_or_default();
                    if i.failed {
                        row(&[md(name), "–".into(), "–".into(), "–".into(), "**nothing read**".into(), guard])
                    } else {
                        row(&[
                            md(name),
                            i.changes.to_string(),
                            i.in_sync.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
                            i.blocked.to_string(),
                            i.account_errors.to_string(),
                            guard,
                        ])
                    }
                })
                .collect(),
            noun: "instances",
            foldable: true,
        }],
        noun: ("instance", "instances"),
    };
    let warnings = Section {
        head: String::new(),
        groups: vec![Group {
            title: String::new(),
            header: "> [!WARNING]\n".into(),
            rows: guard
                .iter()
                .map(|g| {
                    format!(
                        "> - {} has {}, more than its limit of {}: `roster apply` will refuse them unless run with `--allow-mass-change` (or a higher `max_changes`).\n",
                        bold(&g.provider),
                        plural(g.changes, "change", "changes"),
                        g.limit
                    )
                })
                .collect(),
            noun: "warnings",
            foldable: false,
        }],
        noun: ("guard warning", "guard warnings"),
    };
    let mut by_instance: Vec<(&str, Vec<String>)> = Vec::new();
    for c in &plan.changes {
        let r = row(&[
            md(&c.user),
            code(&c.account_id),
            md(c.from.as_str()),
            bold(c.to.as_str()),
            md(c.reason.as_deref().unwrap_or("")),
        ]);
        match by_instance.last_mut() {
            Some((instance, rows)) if *instance == c.provider => rows.push(r),
            _ => by_instance.push((&c.provider, vec![r])),
        }
    }
    let groups = by_instance
        .into_iter()
        .map(|(instance, rows)| Group {
            title: format!(
                "#### {}: {}\n\n",
                md(instance),
                plural(rows.len(), "change", "changes")
            ),
            header: "| user | account | from | to | reason |\n|---|---|---|---|---|\n".into(),
            rows,
            noun: "changes",
            foldable: true,
        })
        .collect();
    let changes = Section {
        head: "### Changes\n\nOne write call each, grouped by instance.\n\n".into(),
        groups,
        noun: ("change", "changes"),
    };
    let blocked = Section {
        head: "### Blocked\n\nThe provider refuses these; no call is made.\n\n".into(),
        groups: vec![Group {
            title: String::new(),
            header:
                "| instance | user | account | from | to | reason |\n|---|---|---|---|---|---|\n"
                    .into(),
            rows: plan
                .blocked
                .iter()
                .map(|b| {
                    row(&[
                        md(&b.provider),
                        md(&b.user),
                        code(&b.account_id),
                        md(b.from.as_str()),
                        md(b.to.as_str()),
                        md(&b.reason),
                    ])
                })
                .collect(),
            noun: "blocked",
            foldable: true,
        }],
        noun: ("blocked", "blocked"),
    };
    let errors = Section {
        head: "### Errors\n\nNot planned; fix them and plan again.\n\n".into(),
        groups: vec![errors_group(&plan.errors)],
        noun: ("error", "errors"),
    };
    let upcoming = Section {
        head: "### Upcoming\n\nScheduled in the folder, not due yet (times in UTC); each takes effect at its time whatever the live status is then.\n\n".into(),
        groups: vec![Group {
            title: String::new(),
            header: String::new(),
            rows: upcoming_groups(plan)
                .iter()
                .map(|u| {
                    let providers: Vec<String> = u.providers.iter().map(|p| md(p)).collect();
                    format!(
                        "- on {} {} becomes {} at {}\n",
                        when(u.at),
                        bold(u.user),
                        bold(u.to),
                        and_list(&providers)
                    )
                })
                .collect(),
            noun: "scheduled changes",
            foldable: true,
        }],
        noun: ("scheduled change", "scheduled changes"),
    };
    comment(
        preamble,
        &[summary, warnings, changes, blocked, errors, upcoming],
        "run `roster plan` locally for the full list",
    )
}

fn errors_group(errors: &[crate::plan::PlanError]) -> Group {
    Group {
        title: String::new(),
        header: "| instance | user | account | message |\n|---|---|---|---|\n".into(),
        rows: errors
            .iter()
            .map(|e| {
                let message = if is_instance_error(e) {
                    format!("**nothing was read**: {}", md(&e.message))
                } else {
                    md(&e.message)
                };
                row(&[
                    md(&e.provider),
                    md(e.user.as_deref().unwrap_or("")),
                    code(e.account_id.as_deref().unwrap_or("")),
                    message,
                ])
            })
            .collect(),
        noun: "errors",
        foldable: true,
    }
}

/// An apply summary for a pull-request or CI comment, in the plan comment's style.
pub fn apply_markdown(report: &ApplyReport) -> String {
    let mut preamble = format!(
        "<!-- roster-apply -->\n## Roster apply\n\n{}\n\n",
        verdict::apply_verdict(report, &STYLE)
    );
    if let Some(error) = &report.audit_error {
        let _ = write!(
            preamble,
            "**Audit log failed:** {}; no write call was made after that.\n\n",
            md(error)
        );
    }
    if report.not_attempted > 0 {
        let _ = write!(
            preamble,
            "{} not attempted (shutdown, or the audit log could not be written; see the log).\n\n",
            plural(report.not_attempted, "change was", "changes were")
        );
    }
    let instances = verdict::apply_instances(report);
    let summary = Section {
        head: String::new(),
        groups: vec![Group {
            title: String::new(),
            header: "| instance | applied | already converged | failed | blocked | errors | guard |\n|---|--:|--:|--:|--:|--:|---|\n".into(),
            rows: instances
                .iter()
                .map(|(name, i)| {
                    let guard = i
                        .guard
                        .map(|g| format!("refused: {} changes, limit {}", g.changes, g.limit))
                        .unwrap_or_default();
                    let errors = if i.failed {
                        "**nothing read**".to_string()
                    } else {
                        i.account_errors.to_string()
                    };
                    row(&[
                        md(name),
                        i.applied.to_string(),
                        i.already_converged.to_string(),
                        i.failed_writes.to_string(),
                        i.blocked.to_string(),
                        errors,
                        guard,
                    ])
                })
                .collect(),
            noun: "instances",
            foldable: true,
        }],
        noun: ("instance", "instances"),
    };
    let refusals = Section {
        head: String::new(),
        groups: vec![Group {
            title: String::new(),
            header: "> [!CAUTION]\n".into(),
            rows: report
                .refused
                .iter()
                .map(|g| {
                    format!(
                        "> - Safety guard: {} would change {} accounts, more than its limit of {}; nothing was changed there.\n",
                        bold(&g.provider),
                        g.changes,
                        g.limit
                    )
                })
                .collect(),
            noun: "refusals",
            foldable: false,
        }],
        noun: ("guard refusal", "guard refusals"),
    };
    let mut by_instance: Vec<(&str, Vec<String>)> = Vec::new();
    for r in &report.results {
        let cells = row(&[
            md(&r.user),
            code(&r.account_id),
            md(r.from.as_str()),
            md(r.to.as_str()),
            outcome(r.outcome),
            r.http_status.map(|s| s.to_string()).unwrap_or_default(),
            md(r.message.as_deref().unwrap_or("")),
        ]);
        match by_instance.last_mut() {
            Some((instance, rows)) if *instance == r.provider => rows.push(cells),
            _ => by_instance.push((&r.provider, vec![cells])),
        }
    }
    let groups = by_instance
        .into_iter()
        .map(|(instance, rows)| Group {
            title: format!(
                "#### {}: {}\n\n",
                md(instance),
                plural(rows.len(), "write", "writes")
            ),
            header: "| user | account | from | to | outcome | HTTP | message |\n|---|---|---|---|---|--:|---|\n".into(),
            rows,
            noun: "writes",
            foldable: true,
        })
        .collect();
    let writes = Section {
        head: "### Writes\n\n".into(),
        groups,
        noun: ("write", "writes"),
    };
    let blocked = Section {
        head: "### Blocked\n\nNot changed: the provider refuses these.\n\n".into(),
        groups: vec![Group {
            title: String::new(),
            header: "| instance | user | account | reason |\n|---|---|---|---|\n".into(),
            rows: report
                .blocked
                .iter()
                .map(|b| {
                    row(&[
                        md(&b.provider),
                        md(&b.user),
                        code(&b.account_id),
                        md(&b.reason),
                    ])
                })
                .collect(),
            noun: "blocked",
            foldable: true,
        }],
        noun: ("blocked", "blocked"),
    };
    let errors = Section {
        head: "### Errors\n\nNot applied.\n\n".into(),
        groups: vec![errors_group(&report.errors)],
        noun: ("error", "errors"),
    };
    comment(
        preamble,
        &[summary, refusals, writes, blocked, errors],
        "the job log (`--format text` or `json`) and the audit log have the full list",
    )
}

fn outcome(outcome: Outcome) -> String {
    match outcome {
        Outcome::Applied => "applied".into(),
        Outcome::AlreadyConverged => "already converged".into(),
        Outcome::Blocked => "**blocked**".into(),
        Outcome::Failed => "**failed**".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, PlanError};
    use crate::report::tests::hostile_plan;
    use crate::status::Status;

    fn change(provider: &str, user: &str, reason: &str) -> Change {
        Change {
            provider: provider.into(),
            user: user.into(),
            account_id: format!("id-{user}"),
            from: Status::active(),
            to: Status::inactive(),
            reason: Some(reason.into()),
            revision: None,
        }
    }

    #[test]
    fn shares_give_short_lists_everything_and_split_the_rest() {
        assert_eq!(shares(&[10, 1000, 1000], 610), [10, 300, 300]);
        assert_eq!(shares(&[10, 20, 30], 1000), [10, 20, 30]);
        assert_eq!(shares(&[0, 500], 100), [0, 100]);
    }

    #[test]
    fn a_plan_where_every_instance_failed_does_not_claim_to_be_in_sync() {
        let plan = Plan {
            errors: vec![PlanError {
                provider: "portal".into(),
                user: None,
                account_id: None,
                message: "connection refused".into(),
            }],
            ..Plan::default()
        };
        let md = plan_markdown(&plan, &[]);
        assert!(md.starts_with(
            "<!-- roster-plan -->\n## Roster plan\n\n**Nothing was read**: every instance failed (portal)"
        ));
        assert!(!md.contains("desired status"), "{md}");
        assert!(md.contains("| portal |  |  | **nothing was read**: connection refused |"));
    }

    #[test]
    fn long_lists_fold_and_short_ones_do_not() {
        let mut plan = Plan {
            changes: (0..FOLD_AFTER + 1)
                .map(|i| change("big", &format!("u{i:02}"), "r"))
                .collect(),
            ..Plan::default()
        };
        plan.changes.push(change("small", "s", "r"));
        let md = plan_markdown(&plan, &[]);
        assert_eq!(md.matches("<details>").count(), 1, "{md}");
        assert!(md.contains(
            "#### big: 11 changes\n\n<details><summary>Show 11 changes</summary>\n\n| user |"
        ));
        assert!(md.contains("#### small: 1 change\n\n| user |"));
        assert!(md.ends_with("\n</details>\n\n#### small: 1 change\n\n| user | account | from | to | reason |\n|---|---|---|---|---|\n| s | <code>id-s</code> | active | **inactive** | r |\n"));
    }

    #[test]
    fn one_giant_value_is_cut_visibly_and_the_cap_holds() {
        let giant = "x".repeat(200_000);
        let plan = Plan {
            changes: vec![change("a", &giant, &giant)],
            errors: vec![PlanError {
                provider: "a".into(),
                user: Some(giant.clone()),
                account_id: Some(giant.clone()),
                message: giant.clone(),
            }],
            ..Plan::default()
        };
        let md = plan_markdown(&plan, &[]);
        assert!(md.len() < MAX_COMMENT_BYTES);
        assert!(
            md.contains("… \\(199700 more characters\\)"),
            "cut with a count"
        );
        assert!(!md.contains("not shown"), "every row fits once cut");
    }

    #[test]
    fn a_long_schedule_takes_its_share_of_the_cap() {
        let at = crate::desired::parse_instant("2026-12-31T17:00:00Z").unwrap();
        let plan = Plan {
            changes: (0..2000)
                .map(|i| change("a", &format!("user-{i:05}-{}", "x".repeat(40)), "r"))
                .collect(),
            upcoming: (0..5000)
                .map(|i| crate::plan::Upcoming {
                    provider: "helpdesk".into(),
                    user: format!("user-{i:05}-{}", "y".repeat(40)),
                    account_id: i.to_string(),
                    at,
                    to: Status::inactive(),
                })
                .collect(),
            ..Plan::default()
        };
        let md = plan_markdown(&plan, &[]);
        assert!(md.len() < MAX_COMMENT_BYTES, "{}", md.len());
        assert!(md.contains("### Upcoming"), "the schedule gets room too");
        assert!(
            md.contains("more scheduled changes not shown"),
            "and says what it left out"
        );
    }

    #[test]
    fn rows_that_do_not_fit_are_counted_in_the_footer() {
        let reason = "r".repeat(CELL_CHARS);
        let plan = Plan {
            changes: (0..1000)
                .map(|i| change("a", &format!("u{i:04}"), &reason))
                .collect(),
            ..Plan::default()
        };
        let md = plan_markdown(&plan, &[]);
        assert!(md.len() < MAX_COMMENT_BYTES);
        let shown = md.lines().filter(|l| l.starts_with("| u0")).count();
        assert!(shown > 100 && shown < 1000, "{shown}");
        assert!(md.contains(&format!("Show {shown} of 1000 changes")));
        assert!(md.ends_with(&format!(
            "**{} more changes not shown** (a comment must stay under 65,536 characters); run `roster plan` locally for the full list.\n",
            1000 - shown
        )));
    }

    #[test]
    fn hostile_values_never_start_or_break_a_line() {
        let plan = hostile_plan();
        let md = plan_markdown(&plan, &[]);
        let rows = md.lines().filter(|l| l.starts_with("| ")).count();
        // Four table headers, the summary's one instance, one row per change, blocked
        // and error.
        assert_eq!(
            rows,
            4 + 1 + plan.changes.len() + plan.blocked.len() + plan.errors.len()
        );
        let upcoming = md.lines().filter(|l| l.starts_with("- on ")).count();
        assert_eq!(
            upcoming,
            plan.upcoming.len(),
            "one line per scheduled change"
        );
        assert_eq!(md.lines().next(), Some("<!-- roster-plan -->"));
        assert_eq!(md.matches("<!--").count(), 1);
    }

    #[test]
    fn apply_comment_has_its_own_marker_and_verdict() {
        let report = ApplyReport {
            errors: vec![PlanError {
                provider: "portal".into(),
                user: None,
                account_id: None,
                message: "timeout".into(),
            }],
            not_attempted: 2,
            ..ApplyReport::default()
        };
        let md = apply_markdown(&report);
        assert!(md.starts_with("<!-- roster-apply -->\n## Roster apply\n\n**Not converged**: 2 changes not attempted; nothing was read from portal, so nothing was changed there; 0 applied, 0 already converged.\n\n2 changes were not attempted"), "{md}");
    }
}
