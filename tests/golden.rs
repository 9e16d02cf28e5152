//! Golden tests of the renderings a reviewer reads: pull-request comments (markdown)
//! and terminal output (text) for small, hostile and huge plans, built by hand and
//! rendered through the library, compared byte for byte with `tests/golden/`.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files; review the diff. The
//! hostile and huge comments are also checked structurally, so a golden file cannot
//! quietly accept a forged comment.

mod common;

use common::{user, World};
use roster::apply::{ApplyReport, GuardRefusal, Outcome, WriteResult};
use roster::plan::{Blocked, Change, Plan, PlanError};
use roster::report::{render_apply, render_plan, Format, MAX_COMMENT_BYTES};
use roster::simulator::{SimConfig, SimKind};
use roster::status::Status;
use std::path::PathBuf;

/// One forging attempt per trick: terminal escapes, line breaks, bidi, HTML, comments,
/// links, images, mentions, issue references, bare URLs, code spans, emphasis, math,
/// table pipes, entities, block markers, alerts.
const HOSTILE: &[&str] = &[
    "eve\x1b[2J\x1b[31mcleared",
    "eve\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "bell\x07nul\x00",
    "cr\rPlan: 0 changes",
    "lf\n| forged | row | x | y | z |",
    "crlf\r\n### Approved",
    "del\x7f c1\u{9b}31m",
    "bidi \u{202e}gnp.exe\u{202c} \u{2066}iso\u{2069}",
    "ls\u{2028}ps\u{2029}",
    "zw\u{200b}sp\u{feff}",
    "<!-- roster-plan -->",
    "--> <img src=x onerror=alert(1)>",
    "</details></summary><details open>",
    "[click](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    "@octocat and @org/security",
    "fixes #123",
    "https://evil.example www.evil.example",
    "`code` ``` fence",
    "**bold** _em_ ~~strike~~ $x^2$",
    "pipe | breaks | cells",
    "back\\slash \\| \\n",
    "&lt;b&gt; &#60;b&#62;",
    "[^1] [!WARNING] > quote",
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the checked-in file, or rewrites it with `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --test golden",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering, first at line {}:\nexpected: {:?}\nactual:   {:?}\n(UPDATE_GOLDEN=1 rewrites it)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn change(provider: &str, user: &str, id: &str, from: &str, to: &str, reason: &str) -> Change {
    Change {
        provider: provider.into(),
        user: user.into(),
        account_id: id.into(),
        from: Status::new(from),
        to: Status::new(to),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        revision: None,
    }
}

fn small_plan() -> (Plan, Vec<GuardRefusal>) {
    let mut plan = Plan {
        format_version: 1,
        changes: vec![
            change(
                "atlan",
                "jsmith",
                "02aaddf5-b9be-4433-9bfa-4a7d9a7ae4f5",
                "active",
                "inactive",
                "Left the company (HR-4411)",
            ),
            change(
                "helpdesk",
                "bruno.costa",
                "bruno",
                "onboarding",
                "active",
                "Joined platform team on 2026-11-23 (HR-5120)",
            ),
            change(
                "helpdesk",
                "jsmith",
                "jsmith",
                "active",
                "inactive",
                "Left the company (HR-4411)",
            ),
            change("helpdesk", "mara.voss", "mara", "active", "suspended", ""),
        ],
        in_sync: 12,
        blocked: vec![Blocked {
            provider: "atlan".into(),
            user: "kim.lee".into(),
            account_id: "7d8e9f0a-1b2c-4d3e-4f5a-6b7c8d9e0f1a".into(),
            from: Status::active(),
            to: Status::inactive(),
            reason: "admin users cannot be deactivated: remove the admin role in Atlan first"
                .into(),
        }],
        errors: vec![
            PlanError {
                provider: "helpdesk".into(),
                user: Some("ghost".into()),
                account_id: Some("u-nobody".into()),
                message: "account not found at the provider (404)".into(),
            },
            PlanError {
                provider: "portal".into(),
                user: None,
                account_id: None,
                message: "credentials rejected (HTTP 401); check PORTAL_TOKEN".into(),
            },
        ],
        ..Plan::default()
    };
    plan.in_sync_by_instance.insert("atlan".into(), 7);
    plan.in_sync_by_instance.insert("helpdesk".into(), 5);
    plan.in_sync_by_instance.insert("zitadel".into(), 0);
    let guard = vec![GuardRefusal {
        provider: "helpdesk".into(),
        changes: 3,
        limit: 2,
    }];
    (plan, guard)
}

/// Every untrusted field of every list holds a forging attempt, instance names too.
fn hostile_plan() -> (Plan, Vec<GuardRefusal>) {
    let mut plan = Plan {
        format_version: 1,
        in_sync: 1,
        ..Plan::default()
    };
    let evil_instance = "evil\n| x |<!--";
    plan.in_sync_by_instance.insert("helpdesk".into(), 1);
    for (i, s) in HOSTILE.iter().enumerate() {
        let user = format!("{i:02} {s}");
        plan.changes
            .push(change("helpdesk", &user, s, s, "inactive", s));
        plan.blocked.push(Blocked {
            provider: "helpdesk".into(),
            user: user.clone(),
            account_id: s.to_string(),
            from: Status::active(),
            to: Status::new(*s),
            reason: s.to_string(),
        });
        plan.errors.push(PlanError {
            provider: "helpdesk".into(),
            user: Some(user),
            account_id: Some(s.to_string()),
            message: s.to_string(),
        });
    }
    plan.changes.push(change(
        evil_instance,
        "@admin",
        "[x](y)",
        "active",
        "inactive",
        "#1",
    ));
    plan.errors.push(PlanError {
        provider: "portal".into(),
        user: None,
        account_id: None,
        message: "HTTP 500: <html><!-- --><a href=https://evil.example>retry</a>\n@here".into(),
    });
    let guard = vec![GuardRefusal {
        provider: evil_instance.into(),
        changes: 1,
        limit: 0,
    }];
    (plan, guard)
}

/// 20,000 changes across four instances, 400 blocked, 300 errors.
fn huge_plan() -> (Plan, Vec<GuardRefusal>) {
    let mut plan = Plan {
        format_version: 1,
        in_sync: 5_000,
        ..Plan::default()
    };
    let instances = ["acronis", "atlan", "helpdesk", "zitadel"];
    for instance in instances {
        plan.in_sync_by_instance.insert(instance.into(), 1_250);
        for i in 0..5_000 {
            plan.changes.push(change(
                instance,
                &format!("user{i:05}"),
                &format!("{instance}-{i:05}"),
                "active",
                "inactive",
                "Reorganisation (HR-9000)",
            ));
        }
    }
    for i in 0..400 {
        plan.blocked.push(Blocked {
            provider: "atlan".into(),
            user: format!("admin{i:03}"),
            account_id: format!("atlan-admin-{i:03}"),
            from: Status::active(),
            to: Status::inactive(),
            reason: "admin users cannot be deactivated".into(),
        });
    }
    for i in 0..300 {
        plan.errors.push(PlanError {
            provider: "helpdesk".into(),
            user: Some(format!("ghost{i:03}")),
            account_id: Some(format!("u-ghost-{i:03}")),
            message: "account not found at the provider (404)".into(),
        });
    }
    let guard = instances
        .iter()
        .map(|i| GuardRefusal {
            provider: i.to_string(),
            changes: 5_000,
            limit: 25,
        })
        .collect();
    (plan, guard)
}

fn small_apply() -> ApplyReport {
    let write = |provider: &str, user: &str, id: &str, outcome, status, message: Option<&str>| {
        WriteResult {
            provider: provider.into(),
            user: user.into(),
            account_id: id.into(),
            from: Status::active(),
            to: Status::inactive(),
            outcome,
            http_status: status,
            message: message.map(String::from),
        }
    };
    ApplyReport {
        format_version: 1,
        results: vec![
            write(
                "atlan",
                "jsmith",
                "02aaddf5",
                Outcome::Applied,
                Some(200),
                None,
            ),
            write(
                "helpdesk",
                "jsmith",
                "jsmith",
                Outcome::Failed,
                Some(500),
                Some("HTTP 500: <b>@oncall</b> [retry](https://evil.example)\nok"),
            ),
            write(
                "zitadel",
                "bruno",
                "6962",
                Outcome::AlreadyConverged,
                Some(400),
                Some("already inactive when the write landed"),
            ),
        ],
        in_sync: 9,
        blocked: Vec::new(),
        refused: vec![GuardRefusal {
            provider: "portal".into(),
            changes: 40,
            limit: 25,
        }],
        errors: vec![PlanError {
            provider: "acronis".into(),
            user: None,
            account_id: None,
            message: "token request failed: HTTP 401".into(),
        }],
        not_attempted: 0,
        audit_error: None,
    }
}

/// The structure a plan comment may have; anything else is a forged line.
fn assert_comment_structure(md: &str, marker: &str) {
    assert!(md.len() < MAX_COMMENT_BYTES, "{} bytes", md.len());
    assert!(md.len() < 65_000);
    let mut lines = md.lines();
    assert_eq!(lines.next(), Some(marker), "the marker comes first");
    assert_eq!(
        md.matches("<!--").count(),
        1,
        "only the marker is a comment"
    );
    let without_tags = md
        .replacen(marker, "", 1)
        .replace("<details><summary>", "")
        .replace("</summary>", "")
        .replace("</details>", "")
        .replace("<code>", "")
        .replace("</code>", "");
    assert!(!without_tags.contains('<'), "raw HTML");
    assert!(!md.contains("]("), "a link or an image");
    assert!(!md.contains("://"), "a bare URL");
    assert!(!md.to_lowercase().contains("www."), "a www. autolink");
    assert!(!md.contains('\r'), "a carriage return");
    assert!(
        !md.chars().any(|c| c.is_control() && c != '\n'),
        "a control character"
    );
    for (i, _) in md.match_indices('@') {
        assert!(md[i + 1..].starts_with('\u{200d}'), "an unescaped @ at {i}");
    }
    for (i, _) in md.match_indices('#') {
        let next = md[i + 1..].chars().next();
        assert!(
            !next.is_some_and(|c| c.is_ascii_digit()),
            "an issue reference at {i}"
        );
    }
    let mut code_free = md.to_string();
    for fixed in [
        "`roster apply`",
        "`--allow-mass-change`",
        "`max_changes`",
        "`roster plan`",
        "`--format text`",
        "`json`",
    ] {
        code_free = code_free.replace(fixed, "");
    }
    for (i, _) in code_free.match_indices('`') {
        let escaped = code_free[..i]
            .chars()
            .rev()
            .take_while(|&c| c == '\\')
            .count()
            % 2
            == 1;
        assert!(
            escaped,
            "an unescaped backtick: {:?}",
            &code_free[i.saturating_sub(20)..]
        );
    }
    let mut columns = None;
    for line in lines {
        if line.starts_with('|') {
            assert!(line.ends_with(" |") || line.ends_with('|'), "{line:?}");
            let pipes = line
                .char_indices()
                .filter(|&(i, c)| {
                    c == '|' && line[..i].chars().rev().take_while(|&b| b == '\\').count() % 2 == 0
                })
                .count();
            match columns {
                None => columns = Some(pipes),
                Some(n) => assert_eq!(pipes, n, "a forged cell: {line:?}"),
            }
            continue;
        }
        columns = None;
        let allowed = line.is_empty()
            || line == "## Roster plan"
            || line == "## Roster apply"
            || line.starts_with("### ")
            || line.starts_with("#### ")
            || line.starts_with("<details><summary>Show ")
            || line == "</details>"
            || line == "> [!WARNING]"
            || line == "> [!CAUTION]"
            || line.starts_with("> - ")
            || line.starts_with("**")
            || line.starts_with("Nothing was read")
            || line.starts_with("No changes")
            || line.chars().next().is_some_and(|c| c.is_ascii_digit())
            || [
                "One write call each, grouped by instance.",
                "The provider refuses these; no call is made.",
                "Not planned; fix them and plan again.",
                "Not changed: the provider refuses these.",
                "Not applied.",
            ]
            .contains(&line);
        assert!(allowed, "a line outside the comment's structure: {line:?}");
    }
}

#[test]
fn small_plan_comment() {
    let (plan, guard) = small_plan();
    let md = render_plan(&plan, &guard, Format::Markdown);
    assert_comment_structure(&md, "<!-- roster-plan -->");
    golden("plan-small.md", &md);
}

#[test]
fn small_plan_text() {
    let (plan, guard) = small_plan();
    golden("plan-small.txt", &render_plan(&plan, &guard, Format::Text));
}

#[test]
fn hostile_plan_comment_forges_nothing() {
    let (plan, guard) = hostile_plan();
    let md = render_plan(&plan, &guard, Format::Markdown);
    assert_comment_structure(&md, "<!-- roster-plan -->");
    let change_rows = md
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("<code>") && l.contains(" | **"))
        .count();
    assert_eq!(
        change_rows,
        plan.changes.len(),
        "one row per change, none split or merged"
    );
    assert!(!md.contains("not shown"), "the hostile plan fits whole");
    golden("plan-hostile.md", &md);
}

#[test]
fn hostile_plan_text_forges_nothing() {
    let (plan, guard) = hostile_plan();
    let text = render_plan(&plan, &guard, Format::Text);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Plan: ")).count(),
        1,
        "no forged totals line"
    );
    golden("plan-hostile.txt", &text);
}

#[test]
fn huge_plan_comment_stays_under_the_cap_and_says_what_it_left_out() {
    let (plan, guard) = huge_plan();
    let md = render_plan(&plan, &guard, Format::Markdown);
    assert_comment_structure(&md, "<!-- roster-plan -->");
    let rows = |header: &str| -> usize {
        md.split(header)
            .skip(1)
            .map(|table| {
                table
                    .lines()
                    .skip(1)
                    .take_while(|l| l.starts_with("| "))
                    .count()
            })
            .sum()
    };
    let changes = rows("\n| user | account | from | to | reason |\n");
    let blocked = rows("\n| instance | user | account | from | to | reason |\n");
    let errors = rows("\n| instance | user | account | message |\n");
    assert!(
        changes > 100 && blocked > 100 && errors > 100,
        "{changes} {blocked} {errors}"
    );
    let footer = md.lines().last().unwrap();
    assert_eq!(
        footer,
        format!(
            "**{} more changes, {} more blocked and {} more errors not shown** (a comment must stay under 65,536 characters); run `roster plan` locally for the full list.",
            20_000 - changes,
            400 - blocked,
            300 - errors
        )
    );
    assert!(
        md.contains("<details><summary>Show "),
        "long lists are folded"
    );
    golden("plan-huge.md", &md);
}

#[test]
fn apply_comment() {
    let report = small_apply();
    let md = render_apply(&report, Format::Markdown);
    assert_comment_structure(&md, "<!-- roster-apply -->");
    golden("apply-small.md", &md);
    golden("apply-small.txt", &render_apply(&report, Format::Text));
}

/// End to end: a provider that answers a hostile status and a folder with a hostile
/// reason, planned by the real binary in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_escapes_provider_and_folder_text_in_every_format() {
    let mut world = World::new();
    let evil_status = "active\x1b[2J\r\n<!-- roster-plan -->\u{202e}@octocat";
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, vec![user("u-eve", evil_status)]),
            "",
        )
        .await;
    world.write(
        "people.yaml",
        "users:\n  - name: eve\n    status: inactive\n    reason: \"[approve](https://evil.example) @octocat <!-- x --> `code` | cell\"\n    accounts:\n      helpdesk: u-eve\n",
    );

    let text = world.roster(&["plan", "desired-state"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .contains("active\\u{1b}[2J\\r\\n<!-- roster-plan -->\\u{202e}@octocat -> inactive"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.chars().any(|c| c.is_control() && c != '\n'));

    let md = world
        .roster(&["plan", "--format", "markdown", "desired-state"])
        .await;
    assert_eq!(md.code, 0, "{md:?}");
    assert_comment_structure(&md.stdout, "<!-- roster-plan -->");
    assert!(
        md.stdout.contains("| eve | <code>u-eve</code> | active\\\\u\\{1b\\}\\[2J\\\\r\\\\n&lt;\\!-- roster-plan --&gt;\\\\u\\{202e\\}@\u{200d}octocat | **inactive** | \\[approve\\]\\(https:\u{200d}//evil.example\\) @\u{200d}octocat &lt;\\!-- x --&gt; \\`code\\` \\| cell |"),
        "{}",
        md.stdout
    );

    let json = world
        .roster(&["plan", "--format", "json", "desired-state"])
        .await;
    assert!(json.stdout.contains("\\u202e"), "{}", json.stdout);
    assert_eq!(json.json()["changes"][0]["from"], evil_status);
}

/// Prints how long rendering takes and how big the comment is; asserts nothing about
/// speed. `cargo test --release --test golden measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_rendering() {
    let (plan, guard) = huge_plan();
    for format in [Format::Text, Format::Markdown, Format::Json] {
        let started = std::time::Instant::now();
        let out = render_plan(&plan, &guard, format);
        println!(
            "{format:?}: {} changes rendered in {:?}, {} bytes",
            plan.changes.len(),
            started.elapsed(),
            out.len()
        );
    }
}
