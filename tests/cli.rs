//! The spine, as a user runs it: the real binary against the simulators on loopback.

mod common;

use common::{token_var, user, World};
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
            ]
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
    let unknown = world
        .roster(&["plan", "--provider", "nope", "desired-state"])
        .await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("--provider nope: no such instance"),
        "{}",
        unknown.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_plan_is_a_table_for_pull_requests() {
    let world = drifting_world().await;
    let run = world
        .roster(&["plan", "--format", "markdown", "desired-state"])
        .await;
    assert!(
        run.stdout
            .starts_with("### Roster plan: 2 changes, 2 in sync, 1 blocked, 1 error"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "| helpdesk | alice | `u-alice` | active | **inactive** | Left the company (HR-4411) |"
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_converges_across_five_kinds() {
    let run = common::run_roster(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &["demo"],
        &Default::default(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Plan: 14 changes, 18 in sync, 1 blocked, 0 errors."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Apply: 13 applied, 1 already converged, 0 failed, 1 blocked"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 0 changes, 32 in sync, 1 blocked, 0 errors."),
        "{}",
        run.stdout
    );
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
