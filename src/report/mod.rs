//! Renderings of a plan or an apply summary: text for terminals, markdown for
//! pull-request comments, JSON for machines. Pure functions from data to a string.
//!
//! Every value taken from a file or a provider is escaped by [`crate::escape`] in the
//! renderer that writes it, at the moment it is written: text escaping in `text`,
//! markdown escaping in `markdown`, `serde_json` plus [`crate::escape::json_safe`] here.
//! The one-line verdicts that both text and markdown start with live in `verdict`.

mod markdown;
mod status;
mod text;
mod verdict;

pub use markdown::{apply_markdown, plan_markdown, MAX_COMMENT_BYTES};
pub use status::{not_listed_text, render_status, status_errors_text, StatusFormat};
pub use text::{apply_text, plan_text};

use crate::apply::{ApplyReport, GuardRefusal};
use crate::escape;
use crate::plan::Plan;
use serde::Serialize;

/// The output format chosen with `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// Renders a plan, with the guard refusals `apply` would make, in `format`.
pub fn render_plan(plan: &Plan, guard: &[GuardRefusal], format: Format) -> String {
    match format {
        Format::Text => plan_text(plan, guard),
        Format::Markdown => plan_markdown(plan, guard),
        Format::Json => json(&PlanDocument { plan, guard }),
    }
}

/// Renders an apply summary in `format`.
pub fn render_apply(report: &ApplyReport, format: Format) -> String {
    match format {
        Format::Text => apply_text(report),
        Format::Markdown => apply_markdown(report),
        Format::Json => json(report),
    }
}

/// The JSON plan: the contract's document, plus `guard` (the instances where `apply`
/// would refuse every change, as the text plan warns), so machines see what people see.
/// `guard` is left out when empty, so a plan without a warning is exactly the
/// contract's document.
#[derive(Serialize)]
struct PlanDocument<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    #[serde(skip_serializing_if = "<[GuardRefusal]>::is_empty")]
    guard: &'a [GuardRefusal],
}

fn json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot render JSON: {e}") }).to_string()
    });
    text.push('\n');
    escape::json_safe(&text).into_owned()
}

/// Scheduled changes as a reviewer reads them: one entry per instant, user and status
/// that takes effect, with every instance where it does. Values are raw: each renderer
/// escapes them.
struct UpcomingGroup<'a> {
    at: time::OffsetDateTime,
    user: &'a str,
    to: &'a str,
    providers: Vec<&'a str>,
}

/// Groups a plan's `upcoming` by instant, then user, then status (already in `at`
/// order, providers in their sorted order).
fn upcoming_groups(plan: &Plan) -> Vec<UpcomingGroup<'_>> {
    let mut groups: std::collections::BTreeMap<_, Vec<&str>> = std::collections::BTreeMap::new();
    for u in &plan.upcoming {
        groups
            .entry((u.at, u.user.as_str(), u.to.as_str()))
            .or_default()
            .push(u.provider.as_str());
    }
    groups
        .into_iter()
        .map(|((at, user, to), providers)| UpcomingGroup {
            at,
            user,
            to,
            providers,
        })
        .collect()
}

/// An instant for people: `2026-12-31 17:00 UTC` (seconds only when set).
fn when(at: time::OffsetDateTime) -> String {
    let u = at.to_offset(time::UtcOffset::UTC);
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        u.year(),
        u8::from(u.month()),
        u.day(),
        u.hour(),
        u.minute()
    );
    if u.second() != 0 || u.nanosecond() != 0 {
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!(":{:02}", u.second()));
    }
    text.push_str(" UTC");
    text
}

/// `a`, `a and b`, `a, b and c`, from values already escaped.
fn and_list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::tests::HOSTILE;
    use crate::plan::{Blocked, Change, PlanError, Upcoming};
    use crate::status::Status;

    /// A plan whose every untrusted field is one of the hostile strings.
    pub(crate) fn hostile_plan() -> Plan {
        let mut plan = Plan {
            format_version: 1,
            in_sync: 3,
            ..Plan::default()
        };
        plan.in_sync_by_instance.insert("helpdesk".into(), 3);
        for (i, s) in HOSTILE.iter().enumerate() {
            plan.changes.push(Change {
                provider: "helpdesk".into(),
                user: format!("{i:02} {s}"),
                account_id: s.to_string(),
                from: Status::new(*s),
                to: Status::inactive(),
                reason: Some(s.to_string()),
                revision: None,
            });
            plan.blocked.push(Blocked {
                provider: "helpdesk".into(),
                user: format!("{i:02} {s}"),
                account_id: s.to_string(),
                from: Status::active(),
                to: Status::new(*s),
                reason: s.to_string(),
            });
            plan.errors.push(PlanError {
                provider: "helpdesk".into(),
                user: Some(format!("{i:02} {s}")),
                account_id: Some(s.to_string()),
                message: s.to_string(),
            });
            plan.upcoming.push(Upcoming {
                provider: "helpdesk".into(),
                user: format!("{i:02} {s}"),
                account_id: s.to_string(),
                at: crate::desired::parse_instant("2026-12-31T18:00:00+01:00").unwrap(),
                to: Status::new(*s),
            });
        }
        plan
    }

    #[test]
    fn upcoming_reads_as_one_sentence_per_user_and_instant() {
        let at = |text: &str| crate::desired::parse_instant(text).unwrap();
        let entry = |provider: &str, user: &str, when: &str, to: &str| Upcoming {
            provider: provider.into(),
            user: user.into(),
            account_id: format!("{user}@{provider}"),
            at: at(when),
            to: Status::new(to),
        };
        let plan = Plan {
            upcoming: vec![
                entry(
                    "helpdesk",
                    "ana.contractor",
                    "2026-12-31T17:00:00Z",
                    "suspended",
                ),
                entry(
                    "portal",
                    "ana.contractor",
                    "2026-12-31T17:00:00Z",
                    "suspended",
                ),
                entry(
                    "wiki",
                    "ana.contractor",
                    "2026-12-31T17:00:00Z",
                    "suspended",
                ),
                entry("zitadel", "tom.joiner", "2027-01-04T07:00:00Z", "active"),
            ],
            ..Plan::default()
        };
        let md = render_plan(&plan, &[], Format::Markdown);
        assert!(
            md.contains("- on 2026-12-31 17:00 UTC **ana.contractor** becomes **suspended** at helpdesk, portal and wiki\n"),
            "{md}"
        );
        assert!(
            md.contains("- on 2027-01-04 07:00 UTC **tom.joiner** becomes **active** at zitadel\n")
        );
        let text = render_plan(&plan, &[], Format::Text);
        assert!(text.contains("Upcoming (scheduled in the folder, not due yet):\n"));
        assert!(text.contains(
            "  @ 2026-12-31 17:00 UTC  ana.contractor  becomes suspended at helpdesk, portal and wiki\n"
        ), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_plan(&plan, &[], Format::Json)).unwrap();
        assert_eq!(json["upcoming"][3]["at"], "2027-01-04T07:00:00Z");
        assert_eq!(json["upcoming"][3]["to"], "active");
        let quiet = render_plan(&Plan::default(), &[], Format::Text);
        assert!(!quiet.contains("Upcoming"), "no section without entries");
    }

    #[test]
    fn json_plan_adds_the_guard_and_keeps_the_contract() {
        let plan = Plan {
            format_version: 1,
            in_sync: 2,
            ..Plan::default()
        };
        let guard = [GuardRefusal {
            provider: "helpdesk".into(),
            changes: 30,
            limit: 25,
        }];
        let value: serde_json::Value =
            serde_json::from_str(&render_plan(&plan, &guard, Format::Json)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "format_version": 1,
                "changes": [],
                "in_sync": 2,
                "blocked": [],
                "errors": [],
                "upcoming": [],
                "guard": [{"provider": "helpdesk", "changes": 30, "limit": 25}]
            })
        );
    }

    #[test]
    fn json_plan_of_hostile_values_parses_back_exactly_and_is_inert() {
        let plan = hostile_plan();
        let json = render_plan(&plan, &[], Format::Json);
        assert!(
            !json.contains("\"guard\""),
            "no guard field without a warning"
        );
        let raw: Vec<char> = json
            .chars()
            .filter(|&c| c != '\n' && c != '\\')
            .filter(|c| escape::text(&c.to_string()) != c.to_string())
            .collect();
        assert!(raw.is_empty(), "left raw: {raw:?}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (i, s) in HOSTILE.iter().enumerate() {
            assert_eq!(value["changes"][i]["account_id"], *s);
            assert_eq!(value["errors"][i]["message"], *s);
        }
    }
}
