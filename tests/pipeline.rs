//! `roster apply` as per-instance pipelines: each instance reads, plans and writes on its
//! own, so a slow instance delays no other's writes; within an instance the writes wait
//! for its whole list, which a later page could still show to be untrustworthy, and the
//! mass-change guard is exact. Every test runs the real binary against
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

/// One instance of every kind (five when the issue measured, six with `scim`), `count` accounts each, 1 % drift, `latency` on
/// every request. Returns the world and the number of drifting accounts per instance.
async fn every_kind(count: usize, latency: Duration, extra: &str) -> (World, Vec<usize>) {
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

/// Prints the time of `roster apply` over every kind × 2,000 accounts at 20 ms per request beside
/// the lower bound (the busiest instance's requests × latency / max_concurrency), with
/// the guard in place (default `max_changes`) and lifted (`--allow-mass-change`); in both
/// an instance's writes start once its whole list is read.
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
            let (world, drifts) = every_kind(2000, latency, extra).await;
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
            // The bound again with what cannot overlap: a cursor page needs the cursor of
            // the one before, an offset list's first page tells how many follow, and an
            // instance's writes wait for its whole list.
            let paced = world
                .sims
                .values()
                .map(|sim| {
                    let c = concurrency as usize;
                    let reads = sim.read_count();
                    let read_trips = match sim.kind() {
                        SimKind::SuspendApi => reads,
                        SimKind::Acronis => sim.token_requests() + reads.div_ceil(c),
                        _ => 1 + reads.saturating_sub(1).div_ceil(c),
                    };
                    latency * (read_trips + sim.write_count().div_ceil(c)) as u32
                })
                .max()
                .unwrap_or_default();
            samples.push((elapsed, bound, paced, per_instance));
        }
        samples.sort_by_key(|s| s.0);
        fixed.sort();
        let (elapsed, bound, paced, per_instance) = &samples[samples.len() / 2];
        let fixed = fixed[fixed.len() / 2];
        let network = elapsed.saturating_sub(fixed);
        println!(
            "apply {} x 2000 accounts, 1% drift, 20 ms latency, max_concurrency 8, {label}: \
             median of 3 {elapsed:?} (of which start and folder load, as `validate` takes: {fixed:?}; \
             the rest {network:?}), lower bound {bound:?}, ratio {:.2} (without start and load {:.2}); \
             bound with cursor pages in sequence and writes after the list {paced:?}, ratio without start and load {:.2}; \
             requests per instance {per_instance:?}",
            per_instance.len(),
            elapsed.as_secs_f64() / bound.as_secs_f64(),
            network.as_secs_f64() / bound.as_secs_f64(),
            network.as_secs_f64() / paced.as_secs_f64()
        );
    }
}

/// Every kind's simulator, `count` generated accounts sorted by name (so every kind lists
/// them in this order, Atlan's username sort included), the first `count - tail` wanted
/// as they are and the last `tail` flipped: the drift sits on the last page.
fn drift_at_the_end(kind: SimKind, count: usize, tail: usize) -> (Vec<SimUser>, Vec<Want>) {
    let mut users = SimUser::generate(kind, count, 7);
    for user in &mut users {
        user.privileged = false;
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let wants = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let status = match (i >= count - tail, u.status.as_str()) {
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
    (users, wants)
}

/// A world with one instance of `kind`: `count` accounts, the last `tail` drifting.
async fn one_kind(kind: SimKind, count: usize, tail: usize, extra: &str) -> World {
    let (users, wants) = drift_at_the_end(kind, count, tail);
    let mut world = World::new();
    world
        .add(name(kind), SimConfig::new(kind, users), extra)
        .await;
    world.write("people.yaml", &users_file(&wants));
    world
}

/// A slow instance (50 ms a request, ten cursor pages, its change planned after its last
/// page) does not hold back a fast one: every write of the fast instance has its outcome
/// line in the audit log before the slow instance's first intent line. Before per-instance
/// pipelines, no write started until every instance was read, so the slow instance's
/// intent came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_instance_writes_while_a_slow_one_is_still_reading() {
    let (slow_users, mut wants) = drift_at_the_end(SimKind::SuspendApi, 1000, 1);
    let mut slow = SimConfig::new(SimKind::SuspendApi, slow_users);
    slow.faults.latency = Duration::from_millis(50);
    let fast_users = vec![
        user("f1", "active"),
        user("f2", "active"),
        user("f3", "inactive"),
    ];
    let mut world = World::new();
    world.add("slow", slow, "").await;
    world
        .add("fast", SimConfig::new(SimKind::StatusApi, fast_users), "")
        .await;
    for want in &mut wants {
        want.instance = "slow".into();
    }
    for (id, status) in [("f1", "inactive"), ("f2", "suspended"), ("f3", "inactive")] {
        wants.push(Want {
            instance: "fast".into(),
            id: id.into(),
            status: status.into(),
        });
    }
    world.write("people.yaml", &users_file(&wants));

    let run = world
        .roster(&["apply", "--format", "json", "--audit-log", "audit.jsonl"])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines = audit_lines(&world.dir.path().join("audit.jsonl"));
    assert_no_secrets(&world, &format!("{lines:?}"));
    let position = |instance: &str, event: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l["instance"] == instance && l["event"] == event)
            .map(|(i, _)| i)
            .collect()
    };
    let fast_outcomes = position("fast", "outcome");
    let slow_intents = position("slow", "intent");
    assert_eq!(fast_outcomes.len(), 2, "{lines:#?}");
    assert_eq!(slow_intents.len(), 1, "{lines:#?}");
    assert!(
        fast_outcomes.iter().all(|i| *i < slow_intents[0]),
        "a fast write waited for the slow instance's reads: {lines:#?}"
    );
    assert_eq!(world.sims["slow"].read_count(), 10);
    assert_eq!(world.sims["slow"].write_count(), 1);
    assert_eq!(world.sims["fast"].write_count(), 2);
}

/// The safety property: an instance whose full plan has more changes than its limit gets
/// no write, even though its first pages (here nine of ten, or every batch but the last)
/// hold no change at all and the instance is otherwise well within reach of its limit.
/// Every kind, ten pages each; the same folder with one change fewer than the limit
/// allows is applied in full, so the test notices a guard that is too strict as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_that_would_trip_is_never_preempted_by_early_pages() {
    let cells = SimKind::ALL.into_iter().map(|kind| async move {
        let over = one_kind(kind, 1000, 6, "    max_changes: 5\n").await;
        let run = over
            .roster(&["apply", "--format", "json", "--audit-log", "audit.jsonl"])
            .await;
        assert_eq!(run.code, 3, "{kind}: {}\n{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(
            report["refused"],
            serde_json::json!([{"provider": name(kind), "changes": 6, "limit": 5}]),
            "{kind}"
        );
        assert_eq!(report["results"], serde_json::json!([]), "{kind}");
        let sim = &over.sims[name(kind)];
        assert_eq!(sim.write_count(), 0, "{kind}: {:?}", sim.writes());
        assert!(
            audit_lines(&over.dir.path().join("audit.jsonl")).is_empty(),
            "{kind}: a refused instance has no audit line"
        );
        // The guard stays exact the other way too: at the limit, every change is made.
        let at = one_kind(kind, 1000, 5, "    max_changes: 5\n").await;
        let run = at.roster(&["apply", "--format", "json"]).await;
        assert_eq!(run.code, 0, "{kind}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(at.sims[name(kind)].write_count(), 5, "{kind}");
    });
    futures::future::join_all(cells).await;
}

/// A drifting folder costs exactly the lower bound of requests: one read per page (or
/// batch of 100 ids, and one token for Acronis) and one write per drifting account; the
/// next pass reads the same and writes nothing. Within an instance every read comes
/// before the first write: a write waits for the whole list, which a later page could
/// still show to be untrustworthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_the_lower_bound_and_writes_follow_the_whole_list() {
    let cells = SimKind::ALL.into_iter().map(|kind| async move {
        let world = one_kind(kind, 250, 5, "    max_concurrency: 8\n").await;
        let sim = &world.sims[name(kind)];
        let run = world.roster(&["apply", "--format", "json"]).await;
        assert_eq!(run.code, 0, "{kind}: {}\n{}", run.stdout, run.stderr);
        let tokens = usize::from(kind == SimKind::Acronis);
        let requests = sim.requests();
        let shown = || {
            requests
                .iter()
                .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
                .collect::<Vec<_>>()
        };
        assert_eq!(sim.read_count(), 3, "{kind}: {:#?}", shown());
        assert_eq!(sim.token_requests(), tokens, "{kind}");
        assert_eq!(sim.write_count(), 5, "{kind}: {:#?}", shown());
        assert_eq!(requests.len(), 3 + tokens + 5, "{kind}: {:#?}", shown());
        let first_write = requests.iter().position(|r| r.is_write);
        let last_read = requests.iter().rposition(|r| !r.is_write);
        assert!(
            first_write > last_read,
            "{kind}: a write before the last read: {:#?}",
            shown()
        );
        sim.clear_requests();
        let run = world.roster(&["apply", "--format", "json"]).await;
        assert_eq!(run.code, 0, "{kind}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(sim.read_count(), 3, "{kind}");
        assert_eq!(sim.write_count(), 0, "{kind}");
    });
    futures::future::join_all(cells).await;
}
