//! The audit log under crashes and odd targets: `kill -9` of `roster apply` and of
//! `roster run` with writes in flight, then a rerun; `-`, a pipe and a full device as
//! the target. The real binary, simulators on loopback, real files and signals.

mod common;

use common::*;
use roster::simulator::{FaultAction, FaultRule, FaultTarget, Faults, Simulator};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Accounts per instance, and the in-flight bound each instance gets.
const ACCOUNTS: usize = 12;
const MAX_CONCURRENCY: usize = 3;
/// How long each write takes at the simulators, so that a kill finds calls in flight.
const WRITE_DELAY: Duration = Duration::from_millis(400);

/// Two instances, every account active at the provider and inactive in the folder.
struct Scene {
    ws: Workspace,
    sims: Vec<(&'static str, Simulator)>,
}

impl Scene {
    async fn new() -> Scene {
        let mut sims = Vec::new();
        for name in ["helpdesk", "portal"] {
            let users = (1..=ACCOUNTS)
                .map(|i| user(&format!("{name}{i}"), "active"))
                .collect();
            let sim = status_sim(users).await;
            sim.set_faults(Faults {
                latency: Duration::ZERO,
                rules: vec![FaultRule {
                    target: FaultTarget::Writes,
                    times: 0,
                    action: FaultAction::Delay(WRITE_DELAY),
                }],
            });
            sims.push((name, sim));
        }
        let ws = Workspace::new();
        let extra = format!("max_concurrency: {MAX_CONCURRENCY}\nmax_changes: 100");
        let instances: Vec<(&str, &Simulator, &str)> = sims
            .iter()
            .map(|(name, sim)| (*name, sim, extra.as_str()))
            .collect();
        ws.write("desired-state/providers.yaml", &providers_yaml(&instances));
        let ids: Vec<(String, &str)> = sims
            .iter()
            .flat_map(|(name, _)| (1..=ACCOUNTS).map(move |i| (format!("{name}{i}"), *name)))
            .collect();
        let rows: Vec<(&str, &str, &str, &str)> = ids
            .iter()
            .map(|(id, instance)| (id.as_str(), *instance, id.as_str(), "inactive"))
            .collect();
        ws.write("desired-state/users.yaml", &users_yaml(&rows));
        Scene { ws, sims }
    }

    /// Every write the simulators received: (instance, account id), after the first
    /// `skip[i]` writes of simulator `i`.
    fn writes_after(&self, skip: &[usize]) -> Vec<(String, String)> {
        self.sims
            .iter()
            .enumerate()
            .flat_map(|(i, (name, sim))| {
                let skip = skip.get(i).copied().unwrap_or(0);
                sim.writes().into_iter().skip(skip).map(move |w| {
                    let id = w.path.rsplit('/').next().unwrap_or_default().to_string();
                    (name.to_string(), id)
                })
            })
            .collect()
    }

    fn writes(&self) -> Vec<(String, String)> {
        self.writes_after(&[])
    }

    fn write_counts(&self) -> Vec<usize> {
        self.sims
            .iter()
            .map(|(_, sim)| sim.writes().len())
            .collect()
    }

    /// Waits until writes are in flight at both instances and some have finished.
    async fn wait_for_writes_in_flight(&self) {
        eventually(
            "writes in flight at both instances",
            Duration::from_secs(10),
            || async {
                self.sims
                    .iter()
                    .all(|(_, sim)| sim.max_in_flight_writes() >= MAX_CONCURRENCY)
                    && self.writes().len() >= MAX_CONCURRENCY
            },
        )
        .await;
    }

    /// Waits until the calls the killed process left in flight have been handled: no
    /// new write recorded for longer than a write takes.
    async fn wait_until_settled(&self) {
        let mut before = self.writes().len();
        loop {
            tokio::time::sleep(WRITE_DELAY * 2).await;
            let now = self.writes().len();
            if now == before {
                return;
            }
            before = now;
        }
    }

    /// `roster apply` to completion, without simulated delay.
    fn apply(&self, audit: &Path) -> std::process::Output {
        for (_, sim) in &self.sims {
            sim.set_faults(Faults::default());
        }
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .arg("apply")
            .arg(self.ws.path("desired-state"))
            .arg("--audit-log")
            .arg(audit)
            .env(TOKEN_ENV, "sim-token")
            .env("XDG_STATE_HOME", self.ws.path("state"))
            .env_remove("RUST_LOG")
            .output()
            .expect("roster apply runs")
    }

    /// After a `kill -9`: every line is whole, every write that reached a simulator has
    /// an intent line, at most `max_concurrency` per instance lack an outcome; a rerun
    /// converges, repeating no write other than those that were in flight.
    async fn check_after_kill(&self, audit: &Path) {
        self.wait_until_settled().await;
        let lines = audit_lines(audit);
        let key = |line: &serde_json::Value| {
            (
                line["instance"].as_str().unwrap_or_default().to_string(),
                line["account_id"].as_str().unwrap_or_default().to_string(),
            )
        };
        let intents: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["event"] == "intent").collect();
        let outcome_ids: BTreeSet<&str> = lines
            .iter()
            .filter(|l| l["event"] == "outcome")
            .filter_map(|l| l["write_id"].as_str())
            .collect();
        let announced: BTreeSet<(String, String)> = intents.iter().map(|l| key(l)).collect();
        let before = self.writes();
        let counts = self.write_counts();
        assert!(!before.is_empty(), "the kill came before any write");
        assert!(
            before.len() < 2 * ACCOUNTS,
            "the kill came after the pass ended"
        );
        for write in &before {
            assert!(
                announced.contains(write),
                "{write:?} reached the provider without an intent line:\n{lines:#?}"
            );
        }
        let in_flight: BTreeSet<(String, String)> = intents
            .iter()
            .filter(|l| {
                !l["write_id"]
                    .as_str()
                    .is_some_and(|id| outcome_ids.contains(id))
            })
            .map(|l| key(l))
            .collect();
        assert!(
            in_flight.len() <= MAX_CONCURRENCY * self.sims.len(),
            "more calls in flight than max_concurrency allows: {in_flight:?}"
        );
        eprintln!(
            "killed with {} writes received, {} intents, {} without an outcome",
            before.len(),
            intents.len(),
            in_flight.len()
        );

        let rerun = self.apply(audit);
        assert_eq!(
            rerun.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        let made_again = self.writes_after(&counts);
        let again: Vec<&(String, String)> =
            made_again.iter().filter(|w| before.contains(w)).collect();
        for write in &again {
            assert!(
                in_flight.contains(*write),
                "{write:?} was made twice although it was not in flight"
            );
        }
        for (name, sim) in &self.sims {
            for account in sim.users() {
                assert_eq!(account.status, "inactive", "{name}: {account:?}");
            }
        }
        let all = audit_lines(audit);
        let rerun_lines = &all[lines.len()..];
        let rerun_writes = made_again.len();
        for event in ["intent", "outcome"] {
            assert_eq!(
                rerun_lines.iter().filter(|l| l["event"] == event).count(),
                rerun_writes,
                "{event} lines of the rerun"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_with_writes_in_flight_left_an_intent_for_each_and_a_rerun_converges() {
    let scene = Scene::new().await;
    let audit = scene.ws.path("audit.jsonl");
    let stderr = std::fs::File::create(scene.ws.path("apply.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("apply")
        .arg(scene.ws.path("desired-state"))
        .arg("--audit-log")
        .arg(&audit)
        .env(TOKEN_ENV, "sim-token")
        .env("XDG_STATE_HOME", scene.ws.path("state"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn roster apply");
    scene.wait_for_writes_in_flight().await;
    child.kill().expect("kill -9");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not exited");
    scene.check_after_kill(&audit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_killed_with_writes_in_flight_left_an_intent_for_each_and_a_rerun_converges() {
    let scene = Scene::new().await;
    let audit = scene.ws.path("audit.jsonl");
    let mut daemon = Daemon::start(
        &scene.ws.path("desired-state"),
        &["--interval", "1h", "--audit-log", audit.to_str().unwrap()],
    )
    .await;
    scene.wait_for_writes_in_flight().await;
    daemon.signal("KILL");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), None, "killed by a signal, not exited");
    scene.check_after_kill(&audit).await;
}

/// A one-instance folder with one account to deactivate.
async fn one_change() -> (Workspace, Simulator) {
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
    (ws, sim)
}

fn roster_in(ws: &Workspace, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .current_dir(ws.temp.path())
        .env(TOKEN_ENV, "sim-token")
        .env("XDG_STATE_HOME", ws.path("state"))
        .env_remove("RUST_LOG")
        .output()
        .expect("roster runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_of_dash_is_refused_before_any_request() {
    let (ws, sim) = one_change().await;
    let output = roster_in(&ws, &["apply", "desired-state", "--audit-log", "-"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--audit-log -: standard output carries plans and summaries"),
        "{stderr}"
    );
    assert!(!ws.path("-").exists(), "a file named '-' was created");
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_on_a_pipe_is_written_without_a_false_failure() {
    let (ws, sim) = one_change().await;
    // `output()` makes stderr a pipe: /dev/stderr is then a pipe that fsync rejects.
    let output = roster_in(
        &ws,
        &["apply", "desired-state", "--audit-log", "/dev/stderr"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(events, ["intent", "outcome"], "{stderr}");
    assert_eq!(lines[1]["outcome"], "applied");
    assert_eq!(sim.writes().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_device_stops_every_call_at_any_concurrency() {
    let users = (1..=8).map(|i| user(&format!("u{i}"), "active")).collect();
    let sim = status_sim(users).await;
    let ids: Vec<String> = (1..=8).map(|i| format!("u{i}")).collect();
    let ws = leavers_workspace(&sim, "helpdesk", &ids, "max_concurrency: 8");
    let output = roster_in(
        &ws,
        &[
            "apply",
            "desired-state",
            "--audit-log",
            "/dev/full",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(sim.writes().is_empty(), "{:?}", sim.writes());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["not_attempted"], 8);
    assert!(
        summary["audit_error"]
            .as_str()
            .is_some_and(|e| e.contains("/dev/full")),
        "{summary}"
    );
}

/// Prints what the audit log costs a large apply (an intent line synced to disk before
/// each call). Asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn measure_audit_log_cost() {
    const N: usize = 2000;
    let users = (1..=N).map(|i| user(&format!("u{i}"), "active")).collect();
    let sim = status_sim(users).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "max_concurrency: 16\nmax_changes: 100000")]),
    );
    let ids: Vec<String> = (1..=N).map(|i| format!("u{i}")).collect();
    let rows: Vec<(&str, &str, &str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), "helpdesk", id.as_str(), "inactive"))
        .collect();
    ws.write("desired-state/users.yaml", &users_yaml(&rows));
    let audit = ws.path("audit.jsonl");
    let audit_arg = audit.to_str().unwrap();
    for (label, extra) in [
        ("without --audit-log", vec![]),
        ("with --audit-log FILE", vec!["--audit-log", audit_arg]),
    ] {
        for id in &ids {
            sim.set_user_status(id, "active");
        }
        sim.clear_requests();
        let mut args = vec!["apply", "desired-state"];
        args.extend(extra);
        let started = std::time::Instant::now();
        let output = roster_in(&ws, &args);
        let elapsed = started.elapsed();
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(sim.writes().len(), N);
        println!(
            "apply of {N} writes (max_concurrency 16) {label}: {elapsed:?} ({:.0} writes/s)",
            N as f64 / elapsed.as_secs_f64()
        );
    }
    assert_eq!(audit_lines(&audit).len(), 2 * N);
}
