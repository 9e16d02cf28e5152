//! Where the bytes of a plan go: a counting global allocator around each step of one
//! `roster plan` (load the folder, read every instance, plan), over the benchmark's world
//! (one simulator of each of five kinds, every account in sync, 1,000 users per file).
//!
//! `cargo run --release --example memory_breakdown -- 100000`
//!
//! Prints live heap bytes after each step and the peak within it. The simulators run in
//! this process, so their bytes are measured first and subtracted; the figures are the
//! engine's own. Measures only: it asserts nothing about sizes.

#[allow(dead_code)]
#[path = "../src/bench/world.rs"]
mod world;

use roster::desired::{Account, DesiredState, Location, User};
use roster::model::{AccountObservation, Observation, ObservedAccount};
use roster::plan::{self, PlanTime};
use roster::provider::RequestObserver;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The system allocator, counting the bytes currently allocated and the most ever.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: f64 = 1024.0 * 1024.0;

/// Live bytes now, and resets the peak to them so the next step's peak is its own.
fn mark() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn report(step: &str, base: usize, before: usize) {
    if std::env::var_os("TRIM").is_some() {
        // SAFETY: malloc_trim only returns free pages of glibc's arenas to the system.
        unsafe { libc::malloc_trim(0) };
    }
    let live = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    println!(
        "{step:<44} live {:>8.1} MB  (step {:>+8.1} MB, step peak {:>+8.1} MB)  RSS {:>7.1} MB",
        (live - base) as f64 / MB,
        (live as f64 - before as f64) / MB,
        (peak as f64 - before as f64) / MB,
        rss_mb(),
    );
}

struct Quiet;

impl RequestObserver for Quiet {
    fn request_finished(&self, _: &str, _: &str, _: Option<u16>, _: Duration) {}
    fn retry_scheduled(&self, _: &str) {}
}

fn main() -> anyhow::Result<()> {
    let accounts: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    println!(
        "sizes: User {} B, Account {} B, Location {} B, Status {} B, AccountObservation {} B, ObservedAccount {} B",
        size_of::<User>(),
        size_of::<Account>(),
        size_of::<Location>(),
        size_of::<roster::status::Status>(),
        size_of::<AccountObservation>(),
        size_of::<ObservedAccount>(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(accounts))
}

async fn run(accounts: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = world::WorldSpec {
        kinds: world::KINDS.to_vec(),
        accounts,
        drift: 0.0,
        latency: Duration::ZERO,
        max_concurrency: None,
        users_per_file: 1000,
    };
    let world = world::World::start(spec, dir.path(), 1).await?;
    for (name, value) in &world.env {
        // SAFETY: set before any thread of ours reads the environment; the runtime's
        // workers do not read it.
        unsafe { std::env::set_var(name, value) };
    }
    println!(
        "world: 5 instances × {accounts} accounts, folder {}",
        world.folder.display()
    );

    let base = mark();
    report("simulators (subtracted below)", 0, 0);

    let before = mark();
    let desired = roster::desired::load(&world.folder, roster::provider::specs())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    report("loaded folder (DesiredState)", base, before);
    breakdown(&desired);

    let before = mark();
    let instances = roster::reconcile::select(&desired, &[])?;
    let providers = roster::reconcile::connect_all(&instances, Arc::new(Quiet))
        .map_err(|e| anyhow::anyhow!("{} connect errors", e.len()))?;
    report("connected adapters", base, before);

    let before = mark();
    let time = PlanTime {
        at: time::OffsetDateTime::now_utc(),
        horizon: plan::DEFAULT_HORIZON,
    };
    let plan = roster::reconcile::plan_live(&desired, &providers, time).await;
    report("plan_live: 5 instances read and planned", base, before);
    println!("  in sync {}, changes {}", plan.in_sync, plan.changes.len());

    let before = mark();
    let observed = roster::reconcile::observe_all(&desired, &providers).await;
    report("observe_all: 5 observations held at once", base, before);
    drop(observed);

    for name in providers.keys() {
        let before = mark();
        let one =
            roster::reconcile::observe_instance(&desired, name, providers[name].as_ref()).await;
        let held = match &one {
            Ok(o) => o.accounts.len(),
            Err(_) => 0,
        };
        report(
            &format!("one instance observed: {name} ({held})"),
            base,
            before,
        );
        let before = mark();
        let observed = BTreeMap::from([(name.clone(), one)]);
        let one_plan = plan::compute(&desired, &observed, time);
        report(&format!("  planned {name}"), base, before);
        drop((observed, one_plan));
    }

    // What each daemon instance loop keeps between passes besides the folder: its
    // `settled` map (account id -> in sync with a status, drifting or blocked), measured
    // here with the same shape of key and value.
    let before = mark();
    let mut settled: BTreeMap<
        &str,
        std::collections::HashMap<String, Option<roster::status::Status>>,
    > = BTreeMap::new();
    for user in &desired.users {
        for account in &user.accounts {
            settled
                .entry(account.instance.as_str())
                .or_default()
                .insert(account.id.clone(), Some(account.status.clone()));
        }
    }
    report(
        "daemon-like settled maps, 5 × 100% of accounts",
        base,
        before,
    );
    drop(settled);

    let before = mark();
    let second = roster::desired::load(&world.folder, roster::provider::specs())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    report("a second copy of the folder", base, before);
    drop(second);

    let before = mark();
    drop(plan);
    drop(providers);
    drop(desired);
    report("everything dropped", base, before);
    world.shutdown().await;
    Ok(())
}

/// The folder's bytes by part, computed from the values (heap blocks as requested, not
/// as the allocator rounds them).
fn breakdown(desired: &DesiredState) {
    let users = desired.users.len();
    let accounts: usize = desired.account_count();
    let user_structs = desired.users.capacity() * size_of::<User>();
    let user_heap: usize = desired
        .users
        .iter()
        .map(|u| u.name.capacity() + u.reason.as_ref().map_or(0, String::capacity))
        .sum();
    let account_structs: usize = desired
        .users
        .iter()
        .map(|u| u.accounts.capacity() * size_of::<Account>())
        .sum();
    let instance_heap: usize = desired
        .users
        .iter()
        .flat_map(|u| &u.accounts)
        .map(|a| a.instance.capacity())
        .sum();
    let id_heap: usize = desired
        .users
        .iter()
        .flat_map(|u| &u.accounts)
        .map(|a| a.id.capacity())
        .sum();
    let mb = |b: usize| b as f64 / MB;
    println!(
        "  {users} users, {accounts} accounts: User structs {:.1} MB, names+reasons {:.1} MB, \
         Account structs {:.1} MB ({} B each), instance strings {:.1} MB, id strings {:.1} MB",
        mb(user_structs),
        mb(user_heap),
        mb(account_structs),
        size_of::<Account>(),
        mb(instance_heap),
        mb(id_heap),
    );
    let _ = Observation::default();
}
