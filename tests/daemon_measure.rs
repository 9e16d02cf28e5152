//! Measurements of `roster run`, printed, never asserted (timings depend on the machine).
//! Run with: `cargo test --release --test daemon_measure -- --ignored --nocapture --test-threads 1`

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
