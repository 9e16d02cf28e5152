//! `roster apply` as per-instance pipelines: each instance reads, plans and writes on its
//! own, and within an instance writes may start before the last page is read, but only
//! once the mass-change guard can no longer trip. Every test runs the real binary against
//! the simulators on loopback; order is read from the audit log or a simulator's request
//! log, never from wall-clock thresholds.

mod common;

use common::*;
use roster::simulator::{SimConfig, SimKind, SimUser};
use std::time::{Duration, Instant};

/// The instance name used for `kind` in these tests.
fn name(kind: SimKind) -> &'static str {
    kind.name()
}

/// One account of the folder: instance, account id, desired status.
struct Want {
    instance: String,
    id: String,
    status: String,
}

/// A user file with one user `u<i>` per account.
fn users_file(accounts: &[Want]) -> String {
    let mut text = String::from("users:\n");
    for (i, account) in accounts.iter().enumerate() {
        text.push_str(&format!(
            "  - name: u{i}\n    status: {}\n    accounts: {{ {}: {:?} }}\n",
            account.status, account.instance, account.id
        ));
    }
    text
}

/// `count` generated users of `kind`, and the folder's wishes for them: every account as
/// it is, except every `drift_every`-th non-privileged one, which is flipped.
fn drifting(
    kind: SimKind,
    count: usize,
    seed: u64,
    drift_every: usize,
) -> (Vec<SimUser>, Vec<Want>, usize) {
    let users = SimUser::generate(kind, count, seed);
    let mut drift = 0;
    let wants = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let flip = !u.privileged && i % drift_every == drift_every - 1;
            drift += usize::from(flip);
            let status = match (flip, u.status.as_str()) {
                (true, "active") => "inactive",
                (true, _) => "active",
                (false, s) => s,
            };
            Want {
                instance: name(kind).to_string(),
                id: u.id.clone(),
                status: status.to_string(),
            }
        })
        .collect();
    (users, wants, drift)
}

/// Five instances, one of every kind, `count` accounts each, 1 % drift, `latency` on
/// every request. Returns the world and the number of drifting accounts per instance.
async fn five_kinds(count: usize, latency: Duration, extra: &str) -> (World, Vec<usize>) {
    let mut world = World::new();
    let mut all = Vec::new();
    let mut drifts = Vec::new();
    for (seed, kind) in SimKind::ALL.into_iter().enumerate() {
        let (users, wants, drift) = drifting(kind, count, seed as u64 + 1, 100);
        let mut config = SimConfig::new(kind, users);
        config.faults.latency = latency;
        world.add(name(kind), config, extra).await;
        all.extend(wants);
        drifts.push(drift);
    }
    world.write("people.yaml", &users_file(&all));
    (world, drifts)
}

/// Prints the time of `roster apply` over 5 × 2,000 accounts at 20 ms per request beside
/// the lower bound (the busiest instance's requests × latency / max_concurrency), with
/// the guard in place (default `max_changes`: no write may start before the full read)
/// and lifted (`--allow-mass-change`: writes stream as pages arrive).
/// `cargo test --release --test pipeline measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints numbers, takes about ten seconds"]
async fn measure_apply_against_the_lower_bound() {
    let latency = Duration::from_millis(20);
    let concurrency = 8;
    for (label, extra, args) in [
        (
            "guard in place (max_changes 25)",
            "    max_concurrency: 8\n",
            vec!["apply"],
        ),
        (
            "guard lifted (--allow-mass-change)",
            "    max_concurrency: 8\n",
            vec!["apply", "--allow-mass-change"],
        ),
    ] {
        let mut samples = Vec::new();
        let mut fixed = Vec::new();
        for _ in 0..3 {
            let (world, drifts) = five_kinds(2000, latency, extra).await;
            // What every command pays before its first request: start, load 10,000 users.
            let started = Instant::now();
            let run = world.roster(&["validate"]).await;
            fixed.push(started.elapsed());
            assert_eq!(run.code, 0, "{}", run.stderr);
            let started = Instant::now();
            let run = world.roster(&args).await;
            let elapsed = started.elapsed();
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
            assert_eq!(world.write_count(), drifts.iter().sum::<usize>());
            let per_instance: Vec<(String, usize)> = world
                .sims
                .iter()
                .map(|(name, sim)| (name.clone(), sim.requests().len()))
                .collect();
            let busiest = per_instance.iter().map(|(_, n)| *n).max().unwrap_or(0);
            let bound = latency * busiest as u32 / concurrency;
            samples.push((elapsed, bound, per_instance));
        }
        samples.sort_by_key(|s| s.0);
        fixed.sort();
        let (elapsed, bound, per_instance) = &samples[samples.len() / 2];
        let fixed = fixed[fixed.len() / 2];
        let network = elapsed.saturating_sub(fixed);
        println!(
            "apply 5 x 2000 accounts, 1% drift, 20 ms latency, max_concurrency 8, {label}: \
             median of 3 {elapsed:?} (of which start and folder load, as `validate` takes: {fixed:?}; \
             the rest {network:?}), lower bound {bound:?}, ratio {:.2} (without start and load {:.2}); \
             requests per instance {per_instance:?}",
            elapsed.as_secs_f64() / bound.as_secs_f64(),
            network.as_secs_f64() / bound.as_secs_f64()
        );
    }
}
