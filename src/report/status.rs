//! `roster status` for people (text), machines (JSON) and spreadsheets (CSV). Every value
//! from a file or a provider is escaped here, at the moment it is written.

use super::{json, plural};
use crate::access::StatusReport;
use crate::escape;
use std::fmt::Write;

/// The output format of `roster status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    Csv,
}

/// Renders the report in `format` for stdout. CSV has no place for read errors:
/// [`status_errors_text`] gives them for stderr.
pub fn render_status(report: &StatusReport, format: StatusFormat) -> String {
    match format {
        StatusFormat::Text => status_text(report),
        StatusFormat::Json => json(report),
        StatusFormat::Csv => status_csv(report),
    }
}

/// One untrusted value, escaped for a terminal.
fn t(s: &str) -> String {
    escape::text(s).into_owned()
}

/// One block per user (accounts at their instances, desired beside live, drift marked
/// with `!`), then the errors and a totals line.
pub fn status_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 4]> = report
        .accounts
        .iter()
        .map(|a| {
            [
                t(&a.provider),
                t(&a.account_id),
                format!("desired {}", t(a.desired.as_str())),
                format!("live {}", t(a.live.as_str())),
            ]
        })
        .collect();
    let widths = column_widths(&rows);
    let mut current = None;
    for (account, row) in report.accounts.iter().zip(&rows) {
        if current != Some(&account.user) {
            if current.is_some() {
                out.push('\n');
            }
            current = Some(&account.user);
            let _ = writeln!(out, "{}", t(&account.user));
        }
        let mut line = aligned(if account.in_sync { "    " } else { "  ! " }, row, widths);
        if !account.in_sync {
            line.push_str("drift");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if report.accounts.is_empty() {
        out.push_str("No accounts to show.\n");
    }
    if report.unmanaged_listed {
        out.push_str(&unmanaged_text(report));
    }
    if !report.errors.is_empty() {
        out.push_str("\nErrors (not read):\n");
        out.push_str(&status_errors_text(report));
    }
    let drifting = report.accounts.iter().filter(|a| !a.in_sync).count();
    let unmanaged = if report.unmanaged_listed {
        format!(", {} unmanaged", report.unmanaged.len())
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\nStatus: {}, {} in sync, {} drifting{unmanaged}, {}.",
        plural(report.accounts.len(), "account", "accounts"),
        report.accounts.len() - drifting,
        drifting,
        plural(report.errors.len(), "error", "errors"),
    );
    out
}

/// The accounts nobody declared, aligned, then one line per instance that cannot list.
fn unmanaged_text(report: &StatusReport) -> String {
    let mut out = String::from("\nUnmanaged (held at a provider, claimed by no file):\n");
    let rows: Vec<[String; 4]> = report
        .unmanaged
        .iter()
        .map(|u| {
            [
                t(&u.provider),
                t(&u.account_id),
                u.login.as_deref().map(t).unwrap_or_else(|| "-".into()),
                format!("live {}", t(u.live.as_str())),
            ]
        })
        .collect();
    let widths = column_widths(&rows);
    for row in &rows {
        out.push_str(aligned("  ? ", row, widths).trim_end());
        out.push('\n');
    }
    if report.unmanaged.is_empty() {
        out.push_str("  none at the instances that can list their accounts\n");
    }
    out.push_str(&not_listed_text(report));
    out
}

/// The display width of each column (capped at 40, so one long id does not push every
/// other row off the screen).
fn column_widths<const N: usize>(rows: &[[String; N]]) -> [usize; N] {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(escape::width(cell).min(40));
        }
    }
    widths
}

/// `prefix`, then each cell padded to its column's width and two spaces.
fn aligned<const N: usize>(prefix: &str, row: &[String; N], widths: [usize; N]) -> String {
    let mut line = String::from(prefix);
    for (cell, width) in row.iter().zip(widths) {
        line.push_str(cell);
        line.extend(std::iter::repeat_n(
            ' ',
            width.saturating_sub(escape::width(cell)) + 2,
        ));
    }
    line
}

/// One line per instance that cannot list its accounts: its unmanaged accounts are
/// unknown, not none.
pub fn not_listed_text(report: &StatusReport) -> String {
    let mut out = String::new();
    for n in &report.not_listed {
        let _ = writeln!(
            out,
            "  {}: unmanaged accounts unknown: {}",
            t(&n.provider),
            t(&n.reason)
        );
    }
    out
}

/// The read errors, one escaped line each.
pub fn status_errors_text(report: &StatusReport) -> String {
    let mut out = String::new();
    for e in &report.errors {
        match (&e.user, &e.account_id) {
            (Some(user), Some(id)) => {
                let _ = writeln!(
                    out,
                    "  {} {} {}: {}",
                    t(&e.provider),
                    t(user),
                    t(id),
                    t(&e.message)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  {}: nothing was read: {}",
                    t(&e.provider),
                    t(&e.message)
                );
            }
        }
    }
    out
}

/// A CSV cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab
/// or carriage return that some spreadsheets strip first) gets a leading `'`, which
/// spreadsheets show as text. A value holding control or invisible characters (from a
/// provider) is written escaped by [`escape::text`], so `cat access.csv` cannot drive
/// a terminal; every other value is written as it is, backslashes included.
fn neutralised(cell: &str) -> String {
    let escaped = escape::text(cell);
    let cell = if escaped.replace("\\\\", "\\") == cell {
        cell
    } else {
        escaped.as_ref()
    };
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// `user,provider,account_id,desired,live,in_sync`, one line per account, RFC 4180
/// quoting, formula-like cells neutralised.
pub fn status_csv(report: &StatusReport) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let mut rows = vec![[
        "user".to_string(),
        "provider".into(),
        "account_id".into(),
        "desired".into(),
        "live".into(),
        "in_sync".into(),
    ]];
    rows.extend(report.accounts.iter().map(|a| {
        [
            neutralised(&a.user),
            neutralised(&a.provider),
            neutralised(&a.account_id),
            neutralised(a.desired.as_str()),
            neutralised(a.live.as_str()),
            a.in_sync.to_string(),
        ]
    }));
    // Unmanaged accounts have no user and no desired status: those cells stay empty.
    rows.extend(report.unmanaged.iter().map(|u| {
        [
            String::new(),
            neutralised(&u.provider),
            neutralised(&u.account_id),
            String::new(),
            neutralised(u.live.as_str()),
            String::new(),
        ]
    }));
    for row in rows {
        // Writing to a Vec cannot fail.
        let _ = writer.write_record(&row);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccountStatus, Live};
    use crate::plan::PlanError;
    use crate::status::Status;

    fn account(user: &str, id: &str, desired: &str, live: Live) -> AccountStatus {
        AccountStatus {
            user: user.into(),
            provider: "helpdesk".into(),
            account_id: id.into(),
            desired: Status::new(desired),
            in_sync: live == Live::Status(Status::new(desired)),
            live,
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            format_version: 1,
            accounts: vec![
                account("ana", "a1", "active", Live::Status(Status::active())),
                account("ana", "=HYPERLINK(\"x\")", "inactive", Live::NotFound),
                account(
                    "bo,b\n@evil",
                    "-2+3",
                    "inactive",
                    Live::Status(Status::active()),
                ),
            ],
            unmanaged: Vec::new(),
            not_listed: Vec::new(),
            unmanaged_listed: false,
            errors: vec![PlanError {
                provider: "portal".into(),
                user: None,
                account_id: None,
                message: "connection refused\u{1b}[2J".into(),
            }],
        }
    }

    #[test]
    fn csv_quotes_and_neutralises_formulas() {
        let csv = status_csv(&report());
        assert_eq!(
            csv,
            "user,provider,account_id,desired,live,in_sync\r\n\
             ana,helpdesk,a1,active,active,true\r\n\
             ana,helpdesk,\"'=HYPERLINK(\"\"x\"\")\",inactive,not_found,false\r\n\
             \"bo,b\\n@evil\",helpdesk,'-2+3,inactive,active,false\r\n"
        );
        assert_eq!(neutralised("-\u{1b}[2J"), "'-\\u{1b}[2J");
        assert_eq!(neutralised("DOMAIN\\ana"), "DOMAIN\\ana", "kept as it is");
    }

    #[test]
    fn text_marks_drift_and_escapes_every_value() {
        let text = status_text(&report());
        assert!(
            text.starts_with("ana\n    helpdesk  a1  "),
            "one block per user: {text}"
        );
        assert!(
            text.contains(
                "  ! helpdesk  =HYPERLINK(\"x\")  desired inactive  live not_found  drift\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("bo,b\\n@evil\n"),
            "a newline cannot start a line"
        );
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
        assert!(text.contains("  portal: nothing was read: connection refused"));
        assert!(text.ends_with("Status: 3 accounts, 1 in sync, 2 drifting, 1 error.\n"));
    }

    #[test]
    fn json_has_the_contracts_shape() {
        let value: serde_json::Value =
            serde_json::from_str(&render_status(&report(), StatusFormat::Json)).unwrap();
        assert_eq!(
            value["accounts"][1],
            serde_json::json!({"user": "ana", "provider": "helpdesk", "account_id": "=HYPERLINK(\"x\")", "desired": "inactive", "live": "not_found", "in_sync": false})
        );
        assert_eq!(value["format_version"], 1);
        assert_eq!(value["unmanaged"], serde_json::json!([]));
        assert_eq!(
            value["errors"][0],
            serde_json::json!({"provider": "portal", "message": "connection refused\u{1b}[2J"})
        );
    }

    #[test]
    fn unmanaged_accounts_follow_the_users_escaped_in_text_and_csv() {
        use crate::access::{NotListed, Unmanaged};
        let mut report = report();
        report.unmanaged_listed = true;
        report.unmanaged = vec![
            Unmanaged {
                provider: "helpdesk".into(),
                account_id: "u-7".into(),
                login: Some("ghost\u{1b}[2J".into()),
                live: Status::active(),
            },
            Unmanaged {
                provider: "helpdesk".into(),
                account_id: "=cmd".into(),
                login: None,
                live: Status::inactive(),
            },
        ];
        report.not_listed = vec![NotListed {
            provider: "backup".into(),
            reason: "set tenant_id to list its accounts".into(),
        }];
        let text = status_text(&report);
        assert!(
            text.contains("Unmanaged (held at a provider, claimed by no file):\n  ? helpdesk  u-7   ghost\\u{1b}[2J  live active\n  ? helpdesk  =cmd  -"),
            "{text}"
        );
        assert!(text.contains(
            "  backup: unmanaged accounts unknown: set tenant_id to list its accounts\n"
        ));
        assert!(
            text.contains(", 2 drifting, 2 unmanaged, 1 error."),
            "{text}"
        );
        let csv = status_csv(&report);
        assert!(
            csv.ends_with(",helpdesk,u-7,,active,\r\n,helpdesk,'=cmd,,inactive,\r\n"),
            "{csv}"
        );
        let value: serde_json::Value =
            serde_json::from_str(&render_status(&report, StatusFormat::Json)).unwrap();
        assert_eq!(
            value["unmanaged"][1],
            serde_json::json!({"provider": "helpdesk", "account_id": "=cmd", "login": null, "live": "inactive"})
        );
        assert_eq!(value["not_listed"][0]["provider"], "backup");
    }
}
