//! Measurements of `roster run`, printed, never asserted (timings depend on the machine).
//! Run with: `cargo test --release --test daemon_measure -- --ignored --nocapture --test-threads 1`
//! (`ROSTER_MEASURE_BIN=path/to/roster` measures another build of the binary, to compare).

mod common;

use common::*;
use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::time::{Duration, Instant};

/// Seconds of CPU (user + system) the process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    (utime + stime) / ticks
}

fn status_line(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read status")
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes a few seconds"]
async fn reaction_time_from_file_write_to_provider_write() {
    let sim = status_sim(vec![user("bob", "active")]).await;
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "")]),
    );
    let users = ws.write(
        "desired-state/users.yaml",
        &users_yaml(&[("bob", "helpdesk", "bob", "active")]),
    );
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1h"]).await;
    eventually("ready", Duration::from_secs(10), || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    let mut samples = Vec::new();
    for run in 0..20 {
        let status = if run % 2 == 0 { "inactive" } else { "active" };
        let before = sim.write_count();
        let started = Instant::now();
        save(&users, &users_yaml(&[("bob", "helpdesk", "bob", status)]));
        eventually("the write", Duration::from_secs(10), || async {
            sim.write_count() > before
        })
        .await;
        samples.push(started.elapsed());
        // Let the pass finish and the debounce window close before the next edit.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples.sort();
    println!(
        "reaction time over {} runs: p50 {:?}, p95 {:?}, min {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        samples[0],
        samples[samples.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes over a minute"]
async fn idle_cpu_and_memory_with_ten_thousand_accounts_in_sync() {
    const ACCOUNTS: usize = 10_000;
    let users = SimUser::generate(SimKind::StatusApi, ACCOUNTS, 42);
    let sim = Simulator::start(SimConfig::new(SimKind::StatusApi, users.clone()))
        .await
        .expect("start simulator");
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[("helpdesk", &sim, "max_changes: 25")]),
    );
    for (file, chunk) in users.chunks(1000).enumerate() {
        let names: Vec<String> = (0..chunk.len())
            .map(|i| format!("person{}", file * 1000 + i))
            .collect();
        let rows: Vec<(&str, &str, &str, &str)> = chunk
            .iter()
            .zip(&names)
            .map(|(u, name)| (name.as_str(), "helpdesk", u.id.as_str(), u.status.as_str()))
            .collect();
        ws.write(
            &format!("desired-state/people/{file:02}.yaml"),
            &users_yaml(&rows),
        );
    }
    let started = Instant::now();
    let daemon = Daemon::start(&ws.path("desired-state"), &["--interval", "1m"]).await;
    eventually("ready", Duration::from_secs(60), || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    println!(
        "start to ready with {ACCOUNTS} accounts: {:?}",
        started.elapsed()
    );
    assert_eq!(sim.write_count(), 0, "the folder mirrors the simulator");
    println!(
        "after the first pass: {}",
        status_line(daemon.pid(), "VmRSS")
    );

    let pid = daemon.pid();
    let cpu_before = cpu_seconds(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let wall = window.elapsed().as_secs_f64();
    println!(
        "idle over {wall:.1}s (interval 1m, so about one interval pass inside): cpu {cpu:.2}s = {:.3}% of one core",
        100.0 * cpu / wall
    );
    println!(
        "{}, {}",
        status_line(pid, "VmRSS"),
        status_line(pid, "VmHWM")
    );
    println!(
        "requests made by the daemon: {}",
        daemon.metric_sum("roster_http_requests_total", &[]).await
    );
}

/// The binary to measure: `ROSTER_MEASURE_BIN` when set (an older build, to compare
/// before and after a change), else the one this test suite was built with.
fn measured_binary() -> String {
    std::env::var("ROSTER_MEASURE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_roster").into())
}

/// `accounts` active users at one instance of `kind` (a simulator answering every API
/// request 20 ms late), the folder mirroring them in files of 1,000; then 20 edits of
/// one user each, timed from the saved file to the provider's write. Prints reaction
/// p50/p95, how much of it the folder reload took (the daemon's `load_ms`), and the
/// daemon's idle CPU and memory at that size.
async fn one_user_edits_at_scale(kind: SimKind, accounts: usize) {
    // `ROSTER_MEASURE_EDITS=5` shortens a run of a slow (older) build.
    let edits: usize = std::env::var("ROSTER_MEASURE_EDITS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    const PER_FILE: usize = 1000;
    let users: Vec<SimUser> = (0..accounts)
        .map(|i| SimUser {
            id: format!("u{i:06}"),
            name: format!("person{i:06}"),
            status: "active".into(),
            privileged: false,
            version: 1,
        })
        .collect();
    let mut config = SimConfig::new(kind, users.clone());
    config.faults =
        serde_json::from_value(serde_json::json!({"latency_ms": 20, "rules": []})).expect("faults");
    let sim = Simulator::start(config.clone())
        .await
        .expect("start simulator");
    let ws = Workspace::new();
    let mut providers = format!(
        "providers:\n  app:\n    kind: {}\n    base_url: {}\n    auth: {{ bearer_token_env: {TOKEN_ENV} }}\n",
        kind.name(),
        sim.base_url()
    );
    if kind == SimKind::SuspendApi {
        providers.push_str(&format!("    tenant_id: {}\n", config.tenant_id));
    }
    ws.write("desired-state/providers.yaml", &providers);
    let mut statuses: Vec<&str> = vec!["active"; accounts];
    let file_text = |file: usize, statuses: &[&str]| {
        let mut yaml = String::from("users:\n");
        let end = ((file + 1) * PER_FILE).min(accounts);
        for (i, status) in statuses.iter().enumerate().take(end).skip(file * PER_FILE) {
            yaml.push_str(&format!(
                "  - name: person{i:06}\n    status: {status}\n    accounts: {{ app: u{i:06} }}\n"
            ));
        }
        yaml
    };
    let mut files = Vec::new();
    for file in 0..accounts.div_ceil(PER_FILE) {
        files.push(ws.write(
            &format!("desired-state/people/{file:03}.yaml"),
            &file_text(file, &statuses),
        ));
    }
    let mut command = std::process::Command::new(measured_binary());
    command
        .arg("run")
        .arg(ws.path("desired-state"))
        .args(["--listen", "127.0.0.1:0", "--interval", "1h"])
        .env(TOKEN_ENV, "sim-token")
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let daemon = Daemon::spawn(command).await;
    eventually("ready", Duration::from_secs(600), || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    let label = format!("{} with {accounts} accounts", kind.name());
    println!(
        "{label}: start to ready {:?}; {}",
        started.elapsed(),
        status_line(daemon.pid(), "VmRSS")
    );
    let finished = || daemon.log_lines(&["pass finished"]).len();
    let mut samples = Vec::new();
    let mut reads = Vec::new();
    for edit in 0..edits {
        let index = (edit * 7919 + 13) % accounts;
        statuses[index] = if statuses[index] == "active" {
            "inactive"
        } else {
            "active"
        };
        let passes = finished();
        let writes = sim.write_count();
        let requests = sim.requests().len();
        let t0 = Instant::now();
        save(
            &files[index / PER_FILE],
            &file_text(index / PER_FILE, &statuses),
        );
        eventually("the write", Duration::from_secs(300), || async {
            sim.write_count() > writes
        })
        .await;
        samples.push(t0.elapsed());
        eventually("the pass to finish", Duration::from_secs(300), || async {
            finished() > passes
        })
        .await;
        reads.push(sim.requests().len() - requests - 1);
        // Let the debounce window close before the next edit.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let loads: Vec<u64> = daemon
        .log_lines(&["desired state loaded"])
        .iter()
        .skip(1)
        .filter_map(|line| {
            let rest = &line[line.find("load_ms=")? + "load_ms=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    samples.sort();
    println!(
        "{label}: reaction over {edits} one-user edits: p50 {:?}, p95 {:?}, max {:?}; reads per edit {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        samples[samples.len() - 1],
        reads
    );
    if !loads.is_empty() {
        let mut loads = loads;
        loads.sort();
        println!(
            "{label}: folder reload (load_ms) p50 {} ms, max {} ms",
            loads[loads.len() / 2],
            loads[loads.len() - 1]
        );
    }
    let pid = daemon.pid();
    let cpu_before = cpu_seconds(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let wall = window.elapsed().as_secs_f64();
    println!(
        "{label}: idle cpu {:.3}% of one core over {wall:.0}s; {}, {}",
        100.0 * cpu / wall,
        status_line(pid, "VmRSS"),
        status_line(pid, "VmHWM")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes minutes"]
async fn one_user_edits_at_10k_offset_paged() {
    one_user_edits_at_scale(SimKind::Zitadel, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes minutes"]
async fn one_user_edits_at_10k_cursor_paged() {
    one_user_edits_at_scale(SimKind::SuspendApi, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes minutes"]
async fn one_user_edits_at_100k_offset_paged() {
    one_user_edits_at_scale(SimKind::Zitadel, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes minutes"]
async fn one_user_edits_at_100k_cursor_paged() {
    one_user_edits_at_scale(SimKind::SuspendApi, 100_000).await;
}
