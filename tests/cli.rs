//! The spine, as a user runs it: the real binary against the simulators on loopback.

mod common;

use common::{assert_no_secrets, token_var, user, World};
use roster::simulator::{SimConfig, SimKind, SimUser};
use serde_json::json;

/// A helpdesk (status-api) and a portal (suspend-api) with drift, an owner and a ghost.
async fn drifting_world() -> World {
    let mut world = World::new();
    let owner = SimUser {
        privileged: true,
        ..user("owner-1", "active")
    };
    world
        .add(
            "helpdesk",
            SimConfig::new(
                SimKind::StatusApi,
                vec![
                    user("u-alice", "active"),
                    user("u-bob", "active"),
                    user("u-carol", "suspended"),
                ],
            ),
            "",
        )
        .await;
    world
        .add(
            "portal",
            SimConfig::new(
                SimKind::SuspendApi,
                vec![owner, user("p-dave", "inactive"), user("p-other", "active")],
            ),
            "",
        )
        .await;
    world.write(
        "people/team.yaml",
        "users:
  - name: alice
    status: inactive
    reason: Left the company (HR-4411)
    accounts:
      helpdesk: u-alice
  - name: bob
    status: active
    accounts:
      helpdesk: u-bob
  - name: carol
    status: active
    accounts:
      helpdesk: { id: u-carol, status: suspended }
  - name: dave
    status: active
    accounts:
      portal: p-dave
",
    );
    world.write(
        "leavers.yaml",
        "users:
  - name: olga
    status: inactive
    reason: Founder handed over (HR-1)
    accounts:
      portal: owner-1
  - name: ghost
    status: inactive
    accounts:
      helpdesk: u-nobody
",
    );
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_the_example_folder() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = common::run_roster(repo, &["validate", "desired-state"], &Default::default()).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("valid (5 provider instances, 13 users, 33 accounts)"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_every_error_with_its_position_without_any_request() {
    let world = drifting_world().await;
    world.write(
        "people/broken.yaml",
        "users:
  - name: erin
    stauts: inactive
    accounts:
      helpdsk: u-erin
  - name: bob
    status: suspended
    accounts:
      portal: p-bob
",
    );
    let run = world.roster(&["validate", "desired-state"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "desired-state/people/broken.yaml:3:5: unknown key 'stauts' in a user (did you mean 'status'?)",
            "desired-state/people/broken.yaml:5:7: unknown provider instance 'helpdsk' for user 'erin' (did you mean 'helpdesk'?)",
            "desired-state/people/broken.yaml:9:7: status 'suspended' (the default of user 'bob') cannot be set at 'portal' (kind suspend-api); it accepts: active, inactive",
            "desired-state/people/team.yaml:7:11: user name 'bob' is already used at desired-state/people/broken.yaml:6:11; names must be unique across the folder",
            "error: desired-state: invalid (4 problems)",
        ]
    );
    assert_eq!(world.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_json_is_the_exact_document_and_writes_nothing() {
    let world = drifting_world().await;
    let run = world
        .roster(&["plan", "--format", "json", "desired-state"])
        .await;
    assert_eq!(run.code, 1, "an account error makes plan exit 1: {run:?}");
    assert_eq!(
        run.json(),
        json!({
            "format_version": 1,
            "changes": [
                {"provider": "helpdesk", "user": "alice", "account_id": "u-alice", "from": "active", "to": "inactive"},
                {"provider": "portal", "user": "dave", "account_id": "p-dave", "from": "inactive", "to": "active"}
            ],
            "in_sync": 2,
            "blocked": [
                {"provider": "portal", "user": "olga", "account_id": "owner-1", "reason": "the tenant owner cannot be suspended"}
            ],
            "errors": [
                {"provider": "helpdesk", "user": "ghost", "account_id": "u-nobody", "message": "account not found at the provider (404)"}
            ],
            "upcoming": []
        })
    );
    assert_eq!(world.write_count(), 0);
    assert!(world.request_count() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detailed_exitcode_is_2_with_drift_and_0_without() {
    let mut world = World::new();
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, vec![user("u1", "active")]),
            "",
        )
        .await;
    world.write(
        "a.yaml",
        "users:\n  - name: a\n    status: inactive\n    accounts: { helpdesk: u1 }\n",
    );
    assert_eq!(
        world
            .roster(&["plan", "--detailed-exitcode", "desired-state"])
            .await
            .code,
        2
    );
    assert_eq!(
        world.roster(&["plan", "desired-state"]).await.code,
        0,
        "without the flag, drift is success"
    );
    assert_eq!(world.roster(&["apply", "desired-state"]).await.code, 0);
    assert_eq!(
        world
            .roster(&["plan", "--detailed-exitcode", "desired-state"])
            .await
            .code,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_makes_exactly_the_needed_writes_then_none() {
    let world = drifting_world().await;
    world.write("leavers.yaml", "users: []\n");
    let run = world.roster(&["apply", "desired-state"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Apply: 2 applied, 0 already converged, 0 failed"),
        "{}",
        run.stdout
    );

    let helpdesk = world.sims["helpdesk"].writes();
    assert_eq!(helpdesk.len(), 1);
    let w = &helpdesk[0];
    assert_eq!(
        (w.method.as_str(), w.path.as_str()),
        ("PATCH", "/users/u-alice")
    );
    assert_eq!(
        w.body,
        Some(json!({"status": "inactive", "review_comment": "Left the company (HR-4411)"}))
    );
    assert_eq!(
        w.headers.get("x-api-version").map(String::as_str),
        Some("v1")
    );
    assert_eq!(
        w.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        w.headers.get("accept").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        w.headers.get("authorization").map(String::as_str),
        Some("Bearer ***")
    );
    assert!(w
        .headers
        .get("user-agent")
        .is_some_and(|ua| ua.starts_with("roster/")));

    let portal = world.sims["portal"].writes();
    assert_eq!(portal.len(), 1);
    let w = &portal[0];
    assert_eq!(
        (w.method.as_str(), w.path.as_str()),
        ("POST", "/v1/users/p-dave/suspend")
    );
    assert_eq!(w.body, Some(json!({"active": true})));
    assert_eq!(
        w.headers.get("x-tenant-id").map(String::as_str),
        Some(
            SimConfig::new(SimKind::SuspendApi, vec![])
                .tenant_id
                .as_str()
        )
    );
    assert_eq!(
        world.sims["portal"].user("p-other").map(|u| u.status),
        Some("active".into()),
        "accounts in no file are left alone"
    );

    let again = world.roster(&["apply", "desired-state"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(world.write_count(), 2, "a second apply makes zero writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_change_guard_refuses_then_allows() {
    let mut world = World::new();
    let users: Vec<SimUser> = (0..3).map(|i| user(&format!("u{i}"), "active")).collect();
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, users),
            "    max_changes: 2\n",
        )
        .await;
    world
        .add(
            "portal",
            SimConfig::new(SimKind::SuspendApi, vec![user("p1", "active")]),
            "",
        )
        .await;
    world.write(
        "all.yaml",
        "users:\n  - name: a\n    status: inactive\n    accounts: { helpdesk: u0, portal: p1 }\n  - name: b\n    status: inactive\n    accounts: { helpdesk: u1 }\n  - name: c\n    status: inactive\n    accounts: { helpdesk: u2 }\n",
    );
    let plan = world.roster(&["plan", "desired-state"]).await;
    assert!(
        plan.stdout
            .contains("helpdesk has 3 changes, more than its limit of 2; apply will refuse them"),
        "{}",
        plan.stdout
    );

    let refused = world.roster(&["apply", "desired-state"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused
            .stdout
            .contains("Refused by the safety guard: helpdesk would change 3 accounts"),
        "{}",
        refused.stdout
    );
    assert_eq!(
        world.sims["helpdesk"].writes().len(),
        0,
        "no write at the refused instance"
    );
    assert_eq!(
        world.sims["portal"].writes().len(),
        1,
        "other instances still converge"
    );

    assert_eq!(
        world
            .roster(&["apply", "--max-changes", "5", "desired-state"])
            .await
            .code,
        0
    );
    assert_eq!(world.sims["helpdesk"].writes().len(), 3);
    world.sims["helpdesk"].set_user_status("u0", "active");
    world.sims["helpdesk"].set_user_status("u1", "active");
    world.sims["helpdesk"].set_user_status("u2", "active");
    assert_eq!(
        world
            .roster(&["apply", "--allow-mass-change", "desired-state"])
            .await
            .code,
        0
    );
    assert_eq!(world.sims["helpdesk"].writes().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_folder_is_never_acted_on() {
    let world = drifting_world().await;
    world.write(
        "zz-typo.yaml",
        "users:\n  - name: zed\n    status: inactiv\n",
    );
    for command in ["plan", "apply"] {
        let run = world.roster(&[command, "desired-state"]).await;
        assert_eq!(run.code, 1, "{command}: {run:?}");
        assert!(
            run.stderr
                .contains("zz-typo.yaml:3:13: unknown status 'inactiv'"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("nothing was read or changed"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(world.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_names_the_instance_and_the_variable() {
    let mut world = drifting_world().await;
    world.set_env(&token_var("portal"), None);
    let run = world.roster(&["plan", "desired-state"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "provider 'portal': environment variable ROSTER_TEST_PORTAL_TOKEN is not set"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(world.request_count(), 0, "fails before any request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_any_output() {
    let mut world = World::new();
    let mut config = SimConfig::new(SimKind::StatusApi, vec![user("u1", "active")]);
    config.token = "tok-SECRET-4242".into();
    world.add("helpdesk", config, "").await;
    world.write(
        "a.yaml",
        "users:\n  - name: a\n    status: inactive\n    accounts: { helpdesk: u1 }\n",
    );
    let mut outputs = Vec::new();
    for format in ["text", "json", "markdown"] {
        outputs.push(
            world
                .roster(&["plan", "-vv", "--format", format, "desired-state"])
                .await,
        );
    }
    outputs.push(
        world
            .roster(&["plan", "-v", "--log-format", "json", "desired-state"])
            .await,
    );
    world.set_env(&token_var("helpdesk"), Some("tok-WRONG-9999"));
    let rejected = world.roster(&["apply", "-vv", "desired-state"]).await;
    assert_eq!(rejected.code, 1);
    assert!(
        rejected.stdout.contains("credentials rejected"),
        "{rejected:?}"
    );
    outputs.push(rejected);
    for run in &outputs {
        for secret in ["tok-SECRET-4242", "tok-WRONG-9999", "SECRET", "WRONG"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} leaked: {run:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_need_encoding_stay_one_path_segment() {
    let mut world = World::new();
    let ids = ["a/b", "../admin", "x?y", "100%", "sp ace#1"];
    let users = ids.iter().map(|id| user(id, "active")).collect();
    world
        .add("helpdesk", SimConfig::new(SimKind::StatusApi, users), "")
        .await;
    let accounts: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "  - name: u{i}\n    status: inactive\n    accounts: {{ helpdesk: {:?} }}\n",
                id
            )
        })
        .collect();
    world.write("a.yaml", &format!("users:\n{accounts}"));
    let run = world.roster(&["apply", "desired-state"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut paths: Vec<String> = world.sims["helpdesk"]
        .writes()
        .into_iter()
        .map(|w| w.path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/users/..%2Fadmin",
            "/users/100%25",
            "/users/a%2Fb",
            "/users/sp%20ace%231",
            "/users/x%3Fy"
        ]
    );
    for id in ids {
        assert_eq!(
            world.sims["helpdesk"].user(id).map(|u| u.status),
            Some("inactive".to_string()),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_mismatch_is_one_instance_error() {
    let mut world = World::new();
    let users = (0..5).map(|i| user(&format!("p{i}"), "active")).collect();
    world
        .add("portal", SimConfig::new(SimKind::SuspendApi, users), "")
        .await;
    let providers = std::fs::read_to_string(world.folder().join("providers.yaml")).unwrap();
    let default_tenant = SimConfig::new(SimKind::SuspendApi, vec![]).tenant_id;
    world.write(
        "providers.yaml",
        &providers.replace(&default_tenant, "00000000-0000-0000-0000-000000000000"),
    );
    let accounts: String = (0..5)
        .map(|i| {
            format!("  - name: u{i}\n    status: inactive\n    accounts: {{ portal: p{i} }}\n")
        })
        .collect();
    world.write("a.yaml", &format!("users:\n{accounts}"));
    let run = world
        .roster(&["plan", "--format", "json", "desired-state"])
        .await;
    assert_eq!(run.code, 1);
    let plan = run.json();
    let errors = plan["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{plan}");
    assert_eq!(errors[0]["provider"], "portal");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("tenant_mismatch"),
        "{plan}"
    );
    assert!(errors[0].get("user").is_none());
    assert_eq!(plan["changes"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_selection_limits_the_run() {
    let world = drifting_world().await;
    world.write("leavers.yaml", "users: []\n");
    let run = world
        .roster(&["apply", "--provider", "portal", "desired-state"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(world.sims["helpdesk"].requests().len(), 0);
    assert_eq!(world.sims["portal"].writes().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_plan_is_a_table_for_pull_requests() {
    let world = drifting_world().await;
    let run = world
        .roster(&["plan", "--format", "markdown", "desired-state"])
        .await;
    assert!(
        run.stdout.starts_with(
            "<!-- roster-plan -->\n## Roster plan\n\n**2 changes** at 2 instances, 1 blocked;"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "| alice | <code>u-alice</code> | active | **inactive** | Left the company \\(HR-4411\\) |"
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_converges_across_six_kinds() {
    let run = common::run_roster(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &["demo"],
        &Default::default(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Plan: 15 changes, 19 in sync, 1 blocked, 0 errors."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Apply: 14 applied, 1 already converged, 0 failed, 1 blocked"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 0 changes, 34 in sync, 1 blocked, 0 errors."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.contains("slack")
            && l.contains("omar.rahman@acme.example")
            && l.ends_with("applied")),
        "the SCIM instance's leaver, named by userName, is deactivated: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("grace.obi  becomes inactive at helpdesk and zitadel"),
        "the demo shows its scheduled leaver: {}",
        run.stdout
    );
    let status = run
        .stdout
        .split("== 4. roster status --drift-only --unmanaged")
        .nth(1)
        .unwrap_or_else(|| panic!("the demo ends with a status view: {}", run.stdout));
    assert!(
        status.contains(
            "kim.lee\n  ! atlan  7d8e9f0a-1b2c-4d3e-4f5a-6b7c8d9e0f1a  desired inactive  live active  drift\n"
        ),
        "after apply only the refused change drifts: {status}"
    );
    for instance in ["acronis", "atlan", "helpdesk", "portal", "zitadel"] {
        assert!(
            status.contains(&format!("\n  ? {instance} ")),
            "the accounts in no file are listed as unmanaged at {instance}: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_is_made_once_the_audit_log_cannot_be_written() {
    let mut world = World::new();
    let users = (0..3).map(|i| user(&format!("u{i}"), "active")).collect();
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, users),
            "    max_concurrency: 4\n",
        )
        .await;
    let accounts: String = (0..3)
        .map(|i| {
            format!("  - name: n{i}\n    status: inactive\n    accounts: {{ helpdesk: u{i} }}\n")
        })
        .collect();
    world.write("a.yaml", &format!("users:\n{accounts}"));
    let run = world
        .roster(&["apply", "--audit-log", "/dev/full", "desired-state"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot write the audit log"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("Not attempted: 3"), "{}", run.stdout);
    assert_eq!(
        world.write_count(),
        0,
        "no call is made without its intent line, at any concurrency"
    );
}

/// Every subcommand, and the bare command: a misspelt flag or subcommand exits 64
/// (EX_USAGE), never 2 ("changes pending") or 3 ("guard refused"); help and version exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64_and_help_exits_0() {
    let world = World::new();
    for command in ["validate", "plan", "apply", "run", "demo", "simulate"] {
        let typo = world.roster(&[command, "--detailed-exitcod"]).await;
        assert_eq!(typo.code, 64, "{command}: {typo:?}");
        assert!(
            typo.stderr
                .contains("unexpected argument '--detailed-exitcod'"),
            "{command}: {}",
            typo.stderr
        );
        assert_eq!(typo.stdout, "", "{command}");
        let help = world.roster(&[command, "--help"]).await;
        assert_eq!(help.code, 0, "{command}: {help:?}");
        assert!(help.stdout.contains("Usage: roster"), "{command}: {help:?}");
    }
    let cases: [(&[&str], i32); 6] = [
        (&["plna"], 64),
        (&[], 64),
        (&["plan", "--format", "yaml"], 64),
        (&["run", "--interval", "10ms"], 64),
        (&["--help"], 0),
        (&["--version"], 0),
    ];
    for (args, code) in cases {
        let run = world.roster(args).await;
        assert_eq!(run.code, code, "{args:?}: {run:?}");
    }
    assert_eq!(
        world.roster(&["--version"]).await.stdout,
        format!("roster {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The folder of `validate_reports_every_error_with_its_position_without_any_request`.
const BROKEN: &str = "users:
  - name: erin
    stauts: inactive
    accounts:
      helpdsk: u-erin
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_json_is_one_document_on_stdout() {
    let world = drifting_world().await;
    let valid = world
        .roster(&["validate", "--format", "json", "desired-state"])
        .await;
    assert_eq!(valid.code, 0, "{valid:?}");
    assert_eq!(valid.json(), json!({"valid": true, "errors": []}));
    assert!(
        valid.stdout.starts_with("{\n  \"valid\": true,"),
        "{valid:?}"
    );

    world.write("people/broken.yaml", BROKEN);
    let invalid = world
        .roster(&["validate", "--format", "json", "desired-state"])
        .await;
    assert_eq!(invalid.code, 1, "{invalid:?}");
    let file = "desired-state/people/broken.yaml";
    assert_eq!(
        invalid.json(),
        json!({"valid": false, "errors": [
            {"file": file, "line": 3, "column": 5,
             "message": "unknown key 'stauts' in a user (did you mean 'status'?)"},
            {"file": file, "line": 5, "column": 7,
             "message": "unknown provider instance 'helpdsk' for user 'erin' (did you mean 'helpdesk'?)"},
        ]})
    );
    assert!(
        invalid
            .stderr
            .contains("desired-state: invalid (2 problems)"),
        "{invalid:?}"
    );

    std::fs::remove_file(world.folder().join("providers.yaml")).expect("rm");
    let unpositioned = world
        .roster(&["validate", "--format", "json", "desired-state"])
        .await;
    assert_eq!(unpositioned.code, 1, "{unpositioned:?}");
    let errors = unpositioned.json()["errors"].clone();
    assert_eq!(
        errors[0],
        json!({"file": "desired-state/providers.yaml", "line": null, "column": null,
               "message": "file not found: the folder must define its provider instances in providers.yaml"})
    );
    assert_eq!(world.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_github_prints_escaped_annotations() {
    let world = drifting_world().await;
    let valid = world
        .roster(&["validate", "--format", "github", "desired-state"])
        .await;
    assert_eq!((valid.code, valid.stdout.as_str()), (0, ""), "{valid:?}");

    world.write("people/broken.yaml", BROKEN);
    // `%`, `,` and `:` in the file path and `%` in a value are encoded (the unit tests in
    // src/cli/validate.rs cover CR and LF).
    world.write(
        "people/50%,off:.yaml",
        "users:\n  - name: \"50%\"\n    status: actve\n    accounts: { helpdesk: u-x }\n",
    );
    let invalid = world
        .roster(&["validate", "--format", "github", "desired-state"])
        .await;
    assert_eq!(invalid.code, 1, "{invalid:?}");
    let lines: Vec<&str> = invalid.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per problem: {}", invalid.stdout);
    assert!(
        lines[0].starts_with(
            "::error file=desired-state/people/50%25%2Coff%3A.yaml,line=3,col=13::unknown status 'actve' for user '50%25'"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1..],
        [
            "::error file=desired-state/people/broken.yaml,line=3,col=5::unknown key 'stauts' in a user (did you mean 'status'?)",
            "::error file=desired-state/people/broken.yaml,line=5,col=7::unknown provider instance 'helpdsk' for user 'erin' (did you mean 'helpdesk'?)",
        ]
    );
    assert!(
        invalid
            .stderr
            .contains("desired-state: invalid (3 problems)"),
        "{invalid:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_provider_is_an_error_in_every_command() {
    let world = drifting_world().await;
    for command in ["validate", "plan", "apply"] {
        let typo = world
            .roster(&[command, "--provider", "helpdsk", "desired-state"])
            .await;
        assert_eq!(typo.code, 1, "{command}: {typo:?}");
        assert_eq!(typo.stdout, "", "{command}");
        assert_eq!(
            typo.stderr,
            "error: --provider helpdsk: no such instance in providers.yaml (defined: helpdesk, portal); did you mean 'helpdesk'?\n",
            "{command}"
        );
        let unknown = world
            .roster(&[
                command,
                "--provider",
                "portal",
                "--provider",
                "nosuch",
                "desired-state",
            ])
            .await;
        assert_eq!(unknown.code, 1, "{command}: {unknown:?}");
        assert_eq!(
            unknown.stderr,
            "error: --provider nosuch: no such instance in providers.yaml (defined: helpdesk, portal)\n",
            "{command}"
        );
    }
    let json = world
        .roster(&[
            "validate",
            "--format",
            "json",
            "--provider",
            "nosuch",
            "desired-state",
        ])
        .await;
    assert_eq!(json.code, 1, "{json:?}");
    assert_eq!(
        json.json(),
        json!({"valid": false, "errors": [{
            "file": "desired-state/providers.yaml", "line": null, "column": null,
            "message": "--provider nosuch: no such instance in providers.yaml (defined: helpdesk, portal)",
        }]})
    );
    assert_eq!(world.request_count(), 0, "fails before any request");
}

/// The leak check itself: a text holding a secret of the world fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "leaked into an output")]
async fn the_leak_check_fails_on_a_secret() {
    let world = drifting_world().await;
    let secrets = world.secrets();
    assert_eq!(secrets.len(), 2, "one token per instance: {secrets:?}");
    assert!(secrets.iter().all(|s| s.starts_with("roster-test-secret-")));
    assert_no_secrets(&world, "a line without one");
    assert_no_secrets(&world, &format!("Authorization: Bearer {}", secrets[1]));
}

/// The Acronis client secret is also looked for as it travels in a Basic header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "leaked into an output")]
async fn the_leak_check_knows_the_basic_header_form() {
    let mut world = World::new();
    let mut config = SimConfig::new(SimKind::Acronis, vec![]);
    config.client_id = "Aladdin".into();
    config.token = "open sesame".into();
    world.add("acronis", config, "").await;
    assert_no_secrets(&world, "Authorization: Basic bm90IGl0");
    assert_no_secrets(&world, "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

/// Every run of the binary is checked: one whose output echoes a secret (here as the
/// folder argument, which `validate` names in its error) fails the test by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "leaked into an output")]
async fn every_run_is_checked_for_secrets() {
    let mut world = drifting_world().await;
    world.set_env(&token_var("helpdesk"), Some("tok-rotated-5150"));
    world.roster(&["validate", "tok-rotated-5150"]).await;
}

/// The audit log and the daemon's /metrics and logs hold no secret; `run -v` logs each
/// HTTP request (debug), as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_metrics_and_daemon_log_hold_no_secret() {
    let world = drifting_world().await;
    let audit = world.dir.path().join("audit.jsonl");
    let audit_arg = audit.to_string_lossy().into_owned();
    let applied = world
        .roster(&["apply", "-vv", "--audit-log", &audit_arg, "desired-state"])
        .await;
    assert_eq!(
        applied.code, 1,
        "the ghost account is an error: {applied:?}"
    );
    let lines = std::fs::read_to_string(&audit).expect("audit log");
    assert_eq!(
        lines.lines().count(),
        4,
        "an intent and an outcome line for each of two writes: {lines}"
    );
    assert_no_secrets(&world, &lines);

    let mut child = world
        .command(&["run", "-v", "desired-state", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roster run starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let mut address = None;
    let mut metrics = String::new();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        while let Ok(line) = lines_rx.try_recv() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                address = rest.split_whitespace().next().map(str::to_string);
            }
            log.push_str(&line);
            log.push('\n');
        }
        if let Some(address) = &address {
            if let Ok(response) = http.get(format!("http://{address}/metrics")).send().await {
                metrics = response.text().await.unwrap_or_default();
                if metrics.contains("roster_passes_total{") {
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    while let Ok(line) = lines_rx.try_recv() {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(
        metrics.contains("roster_passes_total{"),
        "no pass in /metrics:\n{metrics}\nlog:\n{log}"
    );
    assert!(log.contains("pass finished"), "{log}");
    assert!(
        log.contains("http request"),
        "run -v logs each request: {log}"
    );
    assert_no_secrets(&world, &metrics);
    assert_no_secrets(&world, &log);
}

/// The README's tour, run as written by bash (free ports instead of 8080 and 9464, the
/// daemon stopped after its first pass): every command in it is true of the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    let readme = include_str!("../README.md");
    let tour = readme
        .split("\n## A tour\n")
        .nth(1)
        .and_then(|section| section.split("```sh\n").nth(1))
        .and_then(|block| block.split("\n```").next())
        .expect("README has a tour block");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
            .to_string()
    };
    let (sim_port, listen_port) = (free_port(), free_port());
    let work = tempfile::tempdir().expect("temp dir");
    let work_dir = work.path().display().to_string();
    let mut script = String::from("trap 'kill $SIM $RUN 2>/dev/null' EXIT\n");
    for line in tour.lines().filter(|l| !l.starts_with("cargo build")) {
        let line = line
            .replace("8080", &sim_port)
            .replace("9464", &listen_port)
            .replace("/tmp/roster-tour", &work_dir);
        let code = line.split("  #").next().unwrap_or_default().trim_end();
        if code.starts_with("roster run") {
            script.push_str(&format!(
                "{code} 2> run.log & RUN=$!\n\
                 until grep -q 'pass finished' run.log; do sleep 0.1; done\n\
                 kill -INT $RUN; wait $RUN; echo \"run exit=$?\"\n"
            ));
        } else if code.starts_with("roster simulate") {
            script.push_str(&format!(
                "{code} SIM=$!\n\
                 until curl -sf localhost:{sim_port}/_sim/stats >/dev/null; do sleep 0.1; done\n"
            ));
        } else if code.starts_with("roster ") {
            script.push_str(&format!("{code}; echo \"exit=$?\"\n"));
        } else {
            script.push_str(&format!("{code}\n"));
        }
    }
    script.push_str(&format!(
        "curl -s localhost:{sim_port}/_sim/users; echo\nwc -l < audit.jsonl\n"
    ));
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_roster"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["120", "bash", "-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("RUST_LOG")
            .output()
            .expect("bash runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exits: Vec<&str> = stdout.lines().filter(|l| l.contains("exit=")).collect();
    assert_eq!(
        exits,
        [
            "exit=0",
            "exit=0",
            "exit=0",
            "exit=0",
            "exit=0",
            "exit=2",
            "exit=0",
            "exit=0",
            "run exit=0",
        ],
        "{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    assert!(stdout.contains("Plan: 1 change, 1 in sync"), "{stdout}");
    assert!(stdout.contains("Plan: 0 changes, 2 in sync"), "{stdout}");
    let users = stdout.lines().rev().nth(1).unwrap_or_default();
    let users: serde_json::Value = serde_json::from_str(users).expect("users JSON");
    let status = |name: &str| {
        users
            .as_array()
            .and_then(|all| all.iter().find(|u| u["name"] == name))
            .map(|u| u["status"].clone())
    };
    assert_eq!(status("georg.petrov"), Some(json!("inactive")), "{users}");
    assert_eq!(
        status("quinn.nguyen"),
        Some(json!("active")),
        "the daemon undid the drift"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("4"),
        "an intent and an outcome line for each of two writes: {stdout}"
    );
}
