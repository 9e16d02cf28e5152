//! `roster run` end to end: the real binary, real files and signals, simulators on
//! loopback. Each test starts its own daemon on a port chosen by the OS.

mod common;

use common::*;
use roster::simulator::{FaultAction, FaultRule, FaultTarget, Faults, Simulator};
use std::time::{Duration, Instant};

/// Longer than the watcher's maximum debounce delay (1 s), to see that no second reload follows.
const SETTLE: Duration = Duration::from_millis(1500);
const RELOADS_VALID: &str = r#"roster_desired_state_reloads_total{result="valid"}"#;
const RELOADS_INVALID: &str = r#"roster_desired_state_reloads_total{result="invalid"}"#;

fn writes_to(sim: &Simulator, account: &str) -> usize {
    sim.writes()
        .iter()
        .filter(|w| w.path.ends_with(&format!("/{account}")))
        .count()
}

async fn wait_ready(daemon: &Daemon) {
    eventually("/readyz to answer 200", Duration::from_secs(10), || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
}

/// Waits until the valid-reload counter reaches `expected`, then checks it stays there.
async fn expect_reloads(daemon: &Daemon, expected: f64) {
    eventually(
        &format!("{expected} valid reloads"),
        Duration::from_secs(5),
        || async { daemon.metric(RELOADS_VALID).await == Some(expected) },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        daemon.metric(RELOADS_VALID).await,
        Some(expected),
        "a burst caused more than one reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_first_pass_then_an_edit_is_written_within_two_seconds_and_audited() {
    let sim = status_sim(vec![user("alice", "active"), user("bob", "active")]).await;
    let ws = Workspace::new();
    let commit = "1234567890abcdef1234567890abcdef12345678";
    fake_git_checkout(ws.temp.path(), commit);
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    let users = ws.write(
        "desired-state/people/staff.yaml",
        &users_yaml(&[
            ("alice", "helpdesk", "alice", "active"),
            ("bob", "helpdesk", "bob", "active"),
        ]),
    );
    let audit = ws.path("audit.jsonl");
    let audit_arg = audit.to_str().unwrap();
    let daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1h", "--audit-log", audit_arg],
    )
    .await;

    assert_eq!(daemon.get("/healthz").await.0, 200);
    wait_ready(&daemon).await;
    assert!(sim.writes().is_empty(), "in sync: nothing to write");
    assert_eq!(
        daemon
            .metric(r#"roster_accounts{instance="helpdesk",state="in_sync"}"#)
            .await,
        Some(2.0)
    );
    assert_eq!(
        daemon
            .metric(&format!(
                r#"roster_desired_state_info{{git_commit="{commit}"}}"#
            ))
            .await,
        Some(1.0)
    );
    assert_eq!(
        daemon.log_lines(&["pass finished", "reason=startup"]).len(),
        1
    );

    let edited = Instant::now();
    save(
        &users,
        &users_yaml(&[
            ("alice", "helpdesk", "alice", "active"),
            ("bob", "helpdesk", "bob", "inactive"),
        ]),
    );
    eventually("the write for bob", Duration::from_secs(2), || async {
        writes_to(&sim, "bob") == 1
    })
    .await;
    eprintln!("edit to write: {:?}", edited.elapsed());
    let writes = sim.writes();
    assert_eq!(writes.len(), 1, "only bob changes: {writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(sim.user("bob").unwrap().status, "inactive");

    eventually("the audit lines", Duration::from_secs(2), || async {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    let lines = audit_lines(&audit);
    let (intent, line) = (&lines[0], &lines[1]);
    assert_eq!(intent["event"], "intent");
    assert_eq!(intent["user"], "bob");
    assert!(intent.get("outcome").is_none());
    assert_eq!(line["event"], "outcome");
    assert_eq!(line["write_id"], intent["write_id"]);
    assert_eq!(line["instance"], "helpdesk");
    assert_eq!(line["user"], "bob");
    assert_eq!(line["account_id"], "bob");
    assert_eq!(line["from"], "active");
    assert_eq!(line["to"], "inactive");
    assert_eq!(line["outcome"], "applied");
    assert_eq!(line["http_status"], 200);
    assert_eq!(line["git_commit"], commit);
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    eventually("the folder-change pass summary", Duration::from_secs(2), || async {
        daemon
            .metric(r#"roster_passes_total{instance="helpdesk",reason="folder_changed",result="success"}"#)
            .await
            == Some(1.0)
    })
    .await;
    assert_eq!(
        daemon
            .metric(r#"roster_changes_total{instance="helpdesk",outcome="applied"}"#)
            .await,
        Some(1.0)
    );

    // /metrics is a strict, well-formed exposition with the promised families.
    let (status, text) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    if let Err(problem) = check_exposition(&text) {
        panic!("{problem}\n{text}");
    }
    for family in [
        "# TYPE roster_passes counter",
        "# TYPE roster_pass_duration_seconds histogram",
        "# TYPE roster_changes counter",
        "# TYPE roster_accounts gauge",
        "# TYPE roster_http_requests counter",
        "# TYPE roster_http_request_duration_seconds histogram",
        "# TYPE roster_http_retries counter",
        "# TYPE roster_desired_state_valid gauge",
        "# TYPE roster_last_successful_pass_timestamp_seconds gauge",
        "# TYPE roster_desired_state_info gauge",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    assert!(
        daemon
            .metric_sum(
                "roster_http_requests_total",
                &[r#"method="PATCH""#, r#"status="200""#]
            )
            .await
            == 1.0
    );

    // logrotate: move the file away, SIGHUP, and the next write goes to a fresh file.
    std::fs::rename(&audit, ws.path("audit.jsonl.1")).unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log(&["audit log reopened"], Duration::from_secs(5))
        .await;
    save(
        &users,
        &users_yaml(&[
            ("alice", "helpdesk", "alice", "inactive"),
            ("bob", "helpdesk", "bob", "inactive"),
        ]),
    );
    eventually(
        "alice's audit line in the new file",
        Duration::from_secs(5),
        || async { std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"alice\"")) },
    )
    .await;
    let rotated = std::fs::read_to_string(ws.path("audit.jsonl.1")).unwrap();
    assert_eq!(rotated.lines().count(), 2, "bob's intent and outcome");
    assert!(!rotated.contains("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_burst_and_a_git_sync_symlink_swap_each_reload_once() {
    let sim = status_sim(vec![
        user("bob", "active"),
        user("carol", "active"),
        user("dave", "active"),
    ])
    .await;
    let ws = Workspace::new();
    let all_active = users_yaml(&[
        ("bob", "helpdesk", "bob", "active"),
        ("carol", "helpdesk", "carol", "active"),
        ("dave", "helpdesk", "dave", "active"),
    ]);
    ws.write(
        "rev1/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write("rev1/users.yaml", &all_active);
    std::os::unix::fs::symlink(ws.path("rev1"), ws.path("current")).unwrap();
    let daemon = Daemon::start(&ws.path("current"), &["--interval", "1h"]).await;
    wait_ready(&daemon).await;
    assert_eq!(daemon.metric(RELOADS_VALID).await, Some(1.0));

    // A checkout: 200 new files and an edit. Git pauses while it inflates a large blob;
    // the gap is shorter than the debounce's quiet period, so it is still one burst.
    for i in 0..200 {
        ws.write(&format!("rev1/team/t{i:03}.yaml"), "users: []\n");
        if i == 100 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    std::fs::write(
        ws.path("rev1/users.yaml"),
        users_yaml(&[
            ("bob", "helpdesk", "bob", "inactive"),
            ("carol", "helpdesk", "carol", "active"),
            ("dave", "helpdesk", "dave", "active"),
        ]),
    )
    .unwrap();
    expect_reloads(&daemon, 2.0).await;
    assert_eq!(writes_to(&sim, "bob"), 1);

    // git-sync: a new worktree, then the link swapped atomically with a rename.
    ws.write(
        "rev2/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write(
        "rev2/users.yaml",
        &users_yaml(&[
            ("bob", "helpdesk", "bob", "inactive"),
            ("carol", "helpdesk", "carol", "inactive"),
            ("dave", "helpdesk", "dave", "active"),
        ]),
    );
    std::os::unix::fs::symlink(ws.path("rev2"), ws.path("current.tmp")).unwrap();
    std::fs::rename(ws.path("current.tmp"), ws.path("current")).unwrap();
    std::fs::remove_dir_all(ws.path("rev1")).unwrap();
    expect_reloads(&daemon, 3.0).await;
    assert_eq!(writes_to(&sim, "carol"), 1);

    // The watch followed the swap: an edit in the new target is seen.
    save(
        &ws.path("rev2/users.yaml"),
        &users_yaml(&[
            ("bob", "helpdesk", "bob", "inactive"),
            ("carol", "helpdesk", "carol", "inactive"),
            ("dave", "helpdesk", "dave", "inactive"),
        ]),
    );
    eventually("the write for dave", Duration::from_secs(3), || async {
        writes_to(&sim, "dave") == 1
    })
    .await;
    assert_eq!(sim.writes().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_swap_reloads_once() {
    let sim = status_sim(vec![user("erin", "active")]).await;
    let ws = Workspace::new();
    let providers = providers_yaml(&[("helpdesk", &sim, "")]);
    ws.write("cm/..rev1/providers.yaml", &providers);
    ws.write(
        "cm/..rev1/users.yaml",
        &users_yaml(&[("erin", "helpdesk", "erin", "active")]),
    );
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, ws.path(&format!("cm/{name}"))).unwrap()
    };
    link("..rev1", "..data");
    link("..data/providers.yaml", "providers.yaml");
    link("..data/users.yaml", "users.yaml");
    let daemon = Daemon::start(&ws.path("cm"), &["--interval", "1h"]).await;
    wait_ready(&daemon).await;

    // What the kubelet does: write a new hidden directory, swap `..data`, drop the old one.
    ws.write("cm/..rev2/providers.yaml", &providers);
    ws.write(
        "cm/..rev2/users.yaml",
        &users_yaml(&[("erin", "helpdesk", "erin", "inactive")]),
    );
    link("..rev2", "..data_tmp");
    std::fs::rename(ws.path("cm/..data_tmp"), ws.path("cm/..data")).unwrap();
    std::fs::remove_dir_all(ws.path("cm/..rev1")).unwrap();
    expect_reloads(&daemon, 2.0).await;
    assert_eq!(writes_to(&sim, "erin"), 1);
    assert_eq!(sim.user("erin").unwrap().status, "inactive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_at_the_provider_is_corrected_on_the_interval() {
    let sim = status_sim(vec![user("carol", "inactive"), user("dan", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[
            ("carol", "helpdesk", "carol", "inactive"),
            ("dan", "helpdesk", "dan", "active"),
        ]),
    );
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1s"]).await;
    wait_ready(&daemon).await;
    assert!(sim.writes().is_empty());

    // Someone re-enables a leaver by hand.
    assert!(sim.set_user_status("carol", "active"));
    eventually(
        "carol deactivated again",
        Duration::from_secs(5),
        || async { writes_to(&sim, "carol") == 1 },
    )
    .await;
    assert_eq!(sim.user("carol").unwrap().status, "inactive");
    daemon
        .wait_log(
            &["drift", "account=\"carol\"", "found=active"],
            Duration::from_secs(2),
        )
        .await;
    eventually("the drift counter", Duration::from_secs(2), || async {
        daemon
            .metric(r#"roster_drift_detected_total{instance="helpdesk"}"#)
            .await
            == Some(1.0)
    })
    .await;
    assert!(
        daemon
            .metric_sum("roster_passes_total", &[r#"reason="interval""#])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_last_good_state_and_a_fix_resumes() {
    let sim = status_sim(vec![user("alice", "active"), user("bob", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    let users = ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[
            ("alice", "helpdesk", "alice", "active"),
            ("bob", "helpdesk", "bob", "active"),
        ]),
    );
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1h"]).await;
    wait_ready(&daemon).await;
    assert_eq!(daemon.metric("roster_desired_state_valid").await, Some(1.0));

    // Bob's deactivation arrives together with a typo elsewhere: the folder is one unit.
    let broken = users_yaml(&[
        ("alice", "helpdesk", "alice", "active"),
        ("bob", "helpdesk", "bob", "inactive"),
    ])
    .replacen("    status: active", "    stauts: active", 1);
    save(&users, &broken);
    eventually("the invalid reload", Duration::from_secs(5), || async {
        daemon.metric(RELOADS_INVALID).await == Some(1.0)
    })
    .await;
    assert_eq!(daemon.metric("roster_desired_state_valid").await, Some(0.0));
    assert_eq!(daemon.get("/healthz").await.0, 200);
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let errors = daemon.log_lines(&["users.yaml:3:5", "stauts"]);
    assert_eq!(errors.len(), 1, "the error is logged once: {errors:?}");

    // The same broken content saved again is not logged again in full.
    save(&users, &broken);
    eventually(
        "the second invalid reload",
        Duration::from_secs(5),
        || async { daemon.metric(RELOADS_INVALID).await == Some(2.0) },
    )
    .await;
    assert_eq!(daemon.log_lines(&["stauts"]).len(), 1);
    assert!(sim.writes().is_empty(), "acted on an invalid folder");

    // The fix resumes: bob's change, now in a valid folder, is made.
    save(
        &users,
        &users_yaml(&[
            ("alice", "helpdesk", "alice", "active"),
            ("bob", "helpdesk", "bob", "inactive"),
        ]),
    );
    eventually("the write for bob", Duration::from_secs(3), || async {
        writes_to(&sim, "bob") == 1
    })
    .await;
    assert_eq!(daemon.metric("roster_desired_state_valid").await, Some(1.0));
    wait_ready(&daemon).await;
    assert_eq!(sim.writes().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_does_not_delay_another() {
    let fast = status_sim(vec![user("alice", "active")]).await;
    let slow = status_sim(vec![user("sam", "active")]).await;
    slow.set_faults(Faults {
        latency: Duration::from_secs(30),
        rules: Vec::new(),
    });
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("fast", &fast, ""), ("slow", &slow, "timeout: 60s")]),
    );
    let users = ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[
            ("alice", "fast", "alice", "active"),
            ("sam", "slow", "sam", "active"),
        ]),
    );
    let mut daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1h"]).await;
    eventually("fast's first pass", Duration::from_secs(5), || async {
        daemon
            .metric_sum("roster_passes_total", &[r#"instance="fast""#])
            .await
            == 1.0
    })
    .await;
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("slow"), "{body}");

    save(
        &users,
        &users_yaml(&[
            ("alice", "fast", "alice", "inactive"),
            ("sam", "slow", "sam", "inactive"),
        ]),
    );
    eventually(
        "fast's write while slow is stuck",
        Duration::from_secs(2),
        || async { writes_to(&fast, "alice") == 1 },
    )
    .await;
    assert!(slow.writes().is_empty());

    // A read stuck at the slow instance does not hold up shutdown.
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_guard_refuses_every_pass_until_the_folder_changes() {
    let sim = status_sim(vec![
        user("u1", "active"),
        user("u2", "active"),
        user("u3", "active"),
    ])
    .await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "max_changes: 2")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[
            ("u1", "helpdesk", "u1", "inactive"),
            ("u2", "helpdesk", "u2", "inactive"),
            ("u3", "helpdesk", "u3", "inactive"),
        ]),
    );
    // `--max-changes` can only lower the folder's limit in the daemon, never raise it.
    let daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1s", "--max-changes", "50"],
    )
    .await;
    eventually("two refused passes", Duration::from_secs(6), || async {
        daemon
            .metric_sum("roster_passes_total", &[r#"result="refused""#])
            .await
            >= 2.0
    })
    .await;
    assert!(sim.writes().is_empty());
    assert_eq!(
        daemon
            .metric(r#"roster_safety_guard_refused{instance="helpdesk"}"#)
            .await,
        Some(1.0)
    );
    assert!(daemon.log_lines(&["safety guard", "limit=2"]).len() >= 2);
    assert_eq!(
        daemon
            .log_lines(&["--max-changes 50 does not raise", "max_changes=2"])
            .len(),
        1
    );
    // A refused pass is retried on the interval, not in a tight loop, and keeps the
    // daemon unready, naming the instance and the counts.
    assert_eq!(
        daemon
            .metric_sum("roster_passes_total", &[r#"reason="retry""#])
            .await,
        0.0
    );
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("safety guard refused: helpdesk (3 changes, max_changes 2"),
        "{body}"
    );

    // Someone fixes one account by hand: 2 changes would now pass the limit, but the
    // guard holds for this folder: no change until the folder changes.
    assert!(sim.set_user_status("u1", "inactive"));
    let refused = daemon
        .metric_sum("roster_passes_total", &[r#"result="refused""#])
        .await;
    eventually(
        "two more refused passes",
        Duration::from_secs(6),
        || async {
            daemon
                .metric_sum("roster_passes_total", &[r#"result="refused""#])
                .await
                >= refused + 2.0
        },
    )
    .await;
    assert!(
        sim.writes().is_empty(),
        "the hold was lifted without a folder change"
    );
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("helpdesk (2 changes, max_changes 2"),
        "{body}"
    );

    // A reviewed commit raises the limit: the folder changed, the changes are made.
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "max_changes: 5")]),
    );
    eventually("the two writes", Duration::from_secs(5), || async {
        sim.writes().len() == 2
    })
    .await;
    wait_ready(&daemon).await;
    assert_eq!(
        daemon
            .metric(r#"roster_safety_guard_refused{instance="helpdesk"}"#)
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_finishes_them_audits_each_and_exits_zero() {
    let users: Vec<_> = (1..=6).map(|i| user(&format!("u{i}"), "active")).collect();
    let sim = status_sim(users).await;
    sim.set_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![FaultRule {
            target: FaultTarget::Writes,
            times: 0,
            action: FaultAction::Delay(Duration::from_millis(1500)),
        }],
    });
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "max_concurrency: 2")]),
    );
    let accounts: Vec<(String, String)> = (1..=6)
        .map(|i| (format!("u{i}"), format!("u{i}")))
        .collect();
    let rows: Vec<(&str, &str, &str, &str)> = accounts
        .iter()
        .map(|(name, id)| (name.as_str(), "helpdesk", id.as_str(), "inactive"))
        .collect();
    ws.write("desired-state/users.yaml", &users_yaml(&rows));
    let audit = ws.path("audit.jsonl");
    let mut daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1h", "--audit-log", audit.to_str().unwrap()],
    )
    .await;
    eventually("two writes in flight", Duration::from_secs(5), || async {
        sim.max_in_flight_writes() >= 2
    })
    .await;
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.log());

    let made = sim.writes().len();
    assert!(made >= 2, "the calls in flight finished: {made}");
    assert!(made < 6, "no new call after SIGTERM: {made}");
    let lines = audit_lines(&audit);
    let (intents, outcomes): (Vec<_>, Vec<_>) =
        lines.iter().partition(|line| line["event"] == "intent");
    assert_eq!(intents.len(), made, "one intent line per write call");
    assert_eq!(outcomes.len(), made, "one outcome line per write call");
    for line in &outcomes {
        assert_eq!(line["outcome"], "applied");
        assert_eq!(line["http_status"], 200);
        assert!(intents.iter().any(|i| i["write_id"] == line["write_id"]));
    }
    assert!(!daemon.log_lines(&["stopped cleanly"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let sim = status_sim(vec![user("u1", "active")]).await;
    sim.set_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![FaultRule {
            target: FaultTarget::Writes,
            times: 0,
            action: FaultAction::Delay(Duration::from_secs(20)),
        }],
    });
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[("u1", "helpdesk", "u1", "inactive")]),
    );
    let audit = ws.path("audit.jsonl");
    let mut daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1h", "--audit-log", audit.to_str().unwrap()],
    )
    .await;
    eventually("a write in flight", Duration::from_secs(5), || async {
        sim.max_in_flight_writes() >= 1
    })
    .await;
    daemon.signal("TERM");
    daemon
        .wait_log(&["shutting down"], Duration::from_secs(5))
        .await;
    let started = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(143));
    // The abandoned call is on record: its intent line, and no outcome.
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "intent");
    assert_eq!(lines[0]["user"], "u1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_shutdown() {
    let sim = status_sim(vec![user("u1", "active")]).await;
    sim.set_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![FaultRule {
            target: FaultTarget::Writes,
            times: 0,
            action: FaultAction::Delay(Duration::from_secs(20)),
        }],
    });
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[("u1", "helpdesk", "u1", "inactive")]),
    );
    let mut daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1h", "--grace-period", "1s"],
    )
    .await;
    eventually("a write in flight", Duration::from_secs(5), || async {
        sim.max_in_flight_writes() >= 1
    })
    .await;
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(1), "an unclean stop is not exit 0");
    assert!(!daemon
        .log_lines(&["grace period of 1s expired", "helpdesk"])
        .is_empty());
}

#[test]
fn the_exposition_checker_rejects_what_it_should() {
    let good = "# HELP roster_x A.\n# TYPE roster_x counter\nroster_x_total{a=\"1\",b=\"q\\\"x\"} 3\n# EOF\n";
    assert_eq!(check_exposition(good), Ok(()));
    for bad in [
        "# HELP roster_x A.\n# TYPE roster_x counter\nroster_x_total 3\n",
        "# HELP roster_x A.\nroster_x 3\n# EOF\n",
        "# HELP roster_x A.\n# TYPE roster_x counter\nroster_x 3\n# EOF\n",
        "# HELP roster_x A.\n# TYPE roster_x gauge\nroster_x{a=1} 3\n# EOF\n",
        "# HELP roster_x A.\n# TYPE roster_x gauge\nroster_x three\n# EOF\n",
        "# TYPE roster_x gauge\nroster_x 3\n# EOF\n",
        "# HELP other A.\n# TYPE other gauge\nother 3\n# EOF\n",
    ] {
        assert!(check_exposition(bad).is_err(), "accepted: {bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_allow_mass_change_and_says_what_to_do_instead() {
    let sim = status_sim(vec![user("u1", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[("u1", "helpdesk", "u1", "inactive")]),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("run")
        .arg(ws.path("desired-state"))
        .args(["--listen", "127.0.0.1:0", "--allow-mass-change"])
        .env(TOKEN_ENV, "sim-token")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: roster run does not take --allow-mass-change: it would lift the safety \
             guard on every future pass. Raise max_changes for the instance in a reviewed \
             commit, or run `roster apply --allow-mass-change` once by hand, then start the \
             daemon without it"
        ),
        "{stderr}"
    );
    assert!(sim.requests().is_empty(), "it started reconciling");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("allow-mass-change"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_failing_on_every_pass_keeps_the_daemon_unready() {
    let good = status_sim(vec![user("alice", "active")]).await;
    let broken = status_sim(vec![user("sam", "active")]).await;
    broken.set_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![FaultRule {
            target: FaultTarget::Reads,
            times: 0,
            action: FaultAction::Status {
                code: 403,
                retry_after: None,
            },
        }],
    });
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("good", &good, ""), ("broken", &broken, "")]),
    );
    ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[
            ("alice", "good", "alice", "active"),
            ("sam", "broken", "sam", "active"),
        ]),
    );
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1s"]).await;
    eventually("three failed passes", Duration::from_secs(15), || async {
        daemon
            .metric_sum(
                "roster_passes_total",
                &[r#"instance="broken""#, r#"result="error""#],
            )
            .await
            >= 3.0
    })
    .await;
    assert!(
        daemon
            .metric_sum(
                "roster_passes_total",
                &[r#"instance="good""#, r#"result="success""#]
            )
            .await
            >= 1.0
    );
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failing: broken (last "), "{body}");
    assert!(!body.contains("good"), "{body}");

    // The provider recovers: the next pass succeeds and the daemon is ready.
    broken.set_faults(Faults::default());
    wait_ready(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_audit_log_stops_every_call_and_is_counted() {
    let users = (1..=4).map(|i| user(&format!("u{i}"), "active")).collect();
    let sim = status_sim(users).await;
    let ids: Vec<String> = (1..=4).map(|i| format!("u{i}")).collect();
    let ws = leavers_workspace(&sim, "helpdesk", &ids, "max_concurrency: 4");
    let daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1s", "--audit-log", "/dev/full"],
    )
    .await;
    eventually(
        "two passes with an audit error",
        Duration::from_secs(15),
        || async {
            daemon
                .metric(r#"roster_audit_log_errors_total{instance="helpdesk"}"#)
                .await
                >= Some(2.0)
        },
    )
    .await;
    assert!(sim.writes().is_empty(), "{:?}", sim.writes());
    assert!(!daemon
        .log_lines(&["cannot write the audit log", "/dev/full"])
        .is_empty());
    assert!(
        daemon
            .metric_sum(
                "roster_passes_total",
                &[r#"instance="helpdesk""#, r#"result="error""#]
            )
            .await
            >= 2.0
    );
    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("failing: helpdesk"), "{body}");
}

#[test]
fn an_address_in_use_is_reported_once_with_the_hint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let ws = Workspace::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("run")
        .arg(ws.path("desired-state"))
        .args(["--listen", &address])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    assert!(
        line.starts_with(&format!("error: cannot listen on {address}: "))
            && line.ends_with("(use --listen HOST:PORT)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_cannot_forge_a_log_line() {
    let sim = status_sim(vec![user("u1", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    // A YAML double-quoted name with a newline, a forged log line and an ESC sequence.
    ws.write(
        "desired-state/users.yaml",
        "users:\n  - name: \"mallory\\n2026-01-01T00:00:00.000000Z  INFO roster: forged\\e[2J\"\n    status: inactive\n    accounts:\n      helpdesk: u1\n",
    );
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1h"]).await;
    eventually("the write", Duration::from_secs(5), || async {
        sim.writes().len() == 1
    })
    .await;
    daemon
        .wait_log(&["pass finished", "helpdesk"], Duration::from_secs(5))
        .await;
    let log = daemon.log();
    let write = daemon.log_lines(&["write", "mallory"]);
    assert_eq!(write.len(), 1, "{log}");
    assert!(write[0].contains(r#"mallory\n2026"#), "{}", write[0]);
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a forged line:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "a raw ESC reached the log:\n{log}");
}

/// One run of the scheduled-change scenario: a user whose `until` is `ahead` away, a
/// daemon at `--interval 1h`. Checks that the gauge names the bound before it, that the
/// write arrives within the contract's 5 s of the bound, and that its audit lines name
/// the bound. Answers the delay between the bound and the simulator seeing the write.
async fn scheduled_until_is_applied_on_time(ahead: Duration) -> Duration {
    let sim = status_sim(vec![user("ana", "active"), user("bob", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    let until = time::OffsetDateTime::now_utc() + ahead;
    let until_text = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ws.write(
        "desired-state/people/staff.yaml",
        &format!(
            "users:\n  - name: ana\n    status: active\n    until: {until_text}\n    accounts:\n      helpdesk: ana\n  - name: bob\n    status: active\n    accounts:\n      helpdesk: bob\n"
        ),
    );
    let audit = ws.path("audit.jsonl");
    let daemon = Daemon::start(
        &ws.path("desired-state"),
        &["--interval", "1h", "--audit-log", audit.to_str().unwrap()],
    )
    .await;
    wait_ready(&daemon).await;
    assert!(sim.writes().is_empty(), "nothing is due yet");
    let gauge = r#"roster_next_scheduled_change_timestamp_seconds{instance="helpdesk"}"#;
    let shown = daemon
        .metric(gauge)
        .await
        .expect("the gauge before the bound");
    let expected = until.unix_timestamp_nanos() as f64 / 1e9;
    assert!(
        (shown - expected).abs() < 0.001,
        "gauge {shown}, bound {expected}"
    );
    assert!(
        time::OffsetDateTime::now_utc() < until,
        "the gauge was read before the bound"
    );

    let deadline = until + time::Duration::seconds(5);
    let delay = loop {
        let now = time::OffsetDateTime::now_utc();
        if writes_to(&sim, "ana") > 0 {
            break Duration::try_from(now - until).unwrap_or_default();
        }
        assert!(
            now < deadline,
            "no write within 5 s of the bound; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(sim.user("ana").unwrap().status, "inactive");
    assert_eq!(writes_to(&sim, "bob"), 0);
    // The write reached the simulator; the pass records itself just after.
    daemon
        .wait_log(
            &["pass finished", "reason=scheduled"],
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        daemon
            .log_lines(&["pass finished", "reason=scheduled"])
            .len(),
        1,
        "one scheduled pass"
    );
    assert_eq!(
        daemon
            .metric(
                r#"roster_passes_total{instance="helpdesk",reason="scheduled",result="success"}"#
            )
            .await,
        Some(1.0)
    );
    assert_eq!(daemon.metric(gauge).await, None, "no bound left to come");

    eventually("the audit lines", Duration::from_secs(2), || async {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    let at = roster::plan::format_utc(until);
    for line in audit_lines(&audit) {
        assert_eq!(line["user"], "ana");
        assert_eq!(
            line["scheduled"],
            serde_json::json!({"bound": "until", "at": at}),
            "{line}"
        );
    }
    delay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_until_is_applied_within_five_seconds_whatever_the_interval() {
    let delay = scheduled_until_is_applied_on_time(Duration::from_secs(3)).await;
    eprintln!("bound to write at the simulator: {delay:?}");
}

/// `cargo test --test daemon -- --ignored --nocapture scheduled_delay`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: 20 runs, prints p50/p95"]
async fn scheduled_delay_percentiles() {
    let mut delays = Vec::new();
    for _ in 0..20 {
        delays.push(scheduled_until_is_applied_on_time(Duration::from_secs(2)).await);
    }
    delays.sort();
    let p50 = delays[delays.len() / 2];
    let p95 = delays[(delays.len() * 95).div_ceil(100) - 1];
    eprintln!(
        "bound to write at the simulator over {} runs: p50 {p50:?}, p95 {p95:?}, max {:?}",
        delays.len(),
        delays[delays.len() - 1]
    );
}
