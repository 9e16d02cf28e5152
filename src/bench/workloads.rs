//! W1–W4: the real `roster` binary against in-process simulators, each figure beside its
//! bound.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use roster::simulator::SimKind;

use super::child::{cpu_seconds, memory, roster_command, run_measured, Daemon, Finished};
use super::report::{BoundKind, Metric, Unit, Workload};
use super::world::{read_bound, sequential_chain, World, WorldSpec};
use super::Ctx;

const MB: f64 = 1024.0 * 1024.0;

/// Runs `roster ARGS` in `dir` to its end, off the async runtime (the simulators keep serving).
async fn roster(
    ctx: &Ctx,
    dir: &Path,
    args: &[&str],
    world: Option<&World>,
    label: &str,
) -> anyhow::Result<Finished> {
    let env = world.map(|w| w.env.clone()).unwrap_or_default();
    let command = roster_command(&ctx.roster, dir, args, &env);
    let out_dir = ctx.out_dir.clone();
    let label = label.to_string();
    tokio::task::spawn_blocking(move || run_measured(command, &out_dir, &label))
        .await
        .context("the measuring thread failed")?
}

fn fail(what: &str, run: &Finished) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} exited {:?}\nstderr:\n{}",
        run.code,
        tail(&run.stderr, 2000)
    )
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// W1: `roster plan` over one instance of each kind, every account in sync.
pub async fn w1(ctx: &Ctx, accounts: usize) -> anyhow::Result<Workload> {
    let dir = ctx.scratch("w1")?;
    let spec = WorldSpec {
        kinds: super::world::KINDS.to_vec(),
        accounts,
        drift: 0.0,
        latency: Duration::ZERO,
        max_concurrency: None,
        users_per_file: 1000,
    };
    let world = World::start(spec, &dir, 1).await?;
    world.clear();
    let run = roster(
        ctx,
        &dir,
        &["plan", "--format", "json"],
        Some(&world),
        "w1-plan",
    )
    .await?;
    if run.code != Some(0) {
        return Err(fail("roster plan", &run));
    }
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).context("roster plan printed no JSON")?;
    let total = world.accounts();
    if plan["in_sync"] != total || plan["changes"].as_array().is_none_or(|c| !c.is_empty()) {
        bail!("W1: expected {total} accounts in sync and no changes, the plan says otherwise");
    }
    let requests = world.requests();
    let bound = world.request_bound();
    let per_kind = world
        .instances
        .iter()
        .map(|i| format!("{} {}", i.kind, read_bound(i.kind, i.users.len())))
        .collect::<Vec<_>>()
        .join(", ");
    world.shutdown().await;
    Ok(Workload {
        id: "W1".into(),
        title: "plan, in sync".into(),
        setup: format!(
            "`roster plan` over 5 instances (one of each kind) × {accounts} accounts, all in sync, no added latency"
        ),
        metrics: vec![
            Metric::plain("wall", Unit::Seconds, run.wall.as_secs_f64()),
            Metric::plain("CPU, roster", Unit::Seconds, run.cpu.as_secs_f64()),
            Metric::plain(
                "CPU, simulators",
                Unit::Seconds,
                run.simulators_cpu.as_secs_f64(),
            ),
            Metric::plain("peak RSS", Unit::Megabytes, run.peak_rss as f64 / MB),
            Metric::against(
                "requests",
                Unit::Requests,
                requests as f64,
                bound as f64,
                BoundKind::LowerBound,
                format!("pages at each kind's page size, Acronis batches of 100 ids + 1 token: {per_kind}"),
            ),
        ],
    })
}

/// What W2 measured, for the baselines' ratio.
pub struct W2 {
    pub workload: Workload,
    pub wall: Duration,
}

/// The W2 world: 5 instances, 1 % drift, 20 ms a request, `max_concurrency: 8`.
pub fn w2_spec(accounts: usize) -> WorldSpec {
    WorldSpec {
        kinds: super::world::KINDS.to_vec(),
        accounts,
        drift: 0.01,
        latency: Duration::from_millis(20),
        max_concurrency: Some(8),
        users_per_file: 1000,
    }
}

/// The seed of the W2 world; the baselines rebuild the same world with it.
pub const W2_SEED: u64 = 2;

/// W2: `roster apply` converging 1 % drift under 20 ms latency.
pub async fn w2(ctx: &Ctx, accounts: usize) -> anyhow::Result<W2> {
    let dir = ctx.scratch("w2")?;
    let spec = w2_spec(accounts);
    let latency = spec.latency.as_secs_f64();
    let concurrency = spec.max_concurrency.unwrap_or(8) as f64;
    let world = World::start(spec, &dir, W2_SEED).await?;
    let chain = walk_cursor_chain(&world).await?;
    world.clear();
    let run = roster(ctx, &dir, &["apply"], Some(&world), "w2-apply").await?;
    if run.code != Some(0) {
        return Err(fail("roster apply", &run));
    }
    let drift: usize = world.instances.iter().map(|i| i.drifted()).sum();
    let writes = world.writes();
    if writes != drift {
        bail!("W2: {drift} accounts drifted but the simulators received {writes} writes");
    }
    let mut time_bound = 0.0_f64;
    let mut worst = String::new();
    for i in &world.instances {
        let n = i.users.len();
        let requests = read_bound(i.kind, n) + i.drifted();
        let chain = sequential_chain(i.kind, n, i.drifted());
        let bound = (chain as f64 * latency).max(requests as f64 * latency / concurrency);
        if bound > time_bound {
            time_bound = bound;
            worst = format!(
                "{}: max({chain} sequential × 20 ms, {requests} requests × 20 ms / 8)",
                i.kind
            );
        }
    }
    let requests = world.requests();
    let request_bound = world.request_bound();
    world.shutdown().await;
    let wall = run.wall;
    let workload = Workload {
        id: "W2".into(),
        title: "apply, 1 % drift, 20 ms".into(),
        setup: format!(
            "`roster apply` over 5 instances × {accounts} accounts, 1 % drifted ({drift} writes), 20 ms added to every request, max_concurrency 8"
        ),
        metrics: vec![
            Metric::against(
                "wall",
                Unit::Seconds,
                wall.as_secs_f64(),
                time_bound,
                BoundKind::LowerBound,
                format!("max over instances of max(chain × latency, requests × latency / concurrency); worst {worst}"),
            ),
            Metric::against(
                "wall",
                Unit::Seconds,
                wall.as_secs_f64(),
                chain.as_secs_f64() + latency,
                BoundKind::MeasuredFloor,
                format!(
                    "a bare keep-alive client walking suspend-api's {} cursor pages on the same simulator just before ({:.2} s: 20 ms each plus the simulator producing and sending ~1.2 MB pages of avatars), + 1 write × 20 ms",
                    read_bound(SimKind::SuspendApi, accounts),
                    chain.as_secs_f64()
                ),
            ),
            Metric::against(
                "requests",
                Unit::Requests,
                requests as f64,
                request_bound as f64,
                BoundKind::LowerBound,
                "reads at each kind's page size + exactly the drifted writes",
            ),
            Metric::against(
                "writes",
                Unit::Writes,
                writes as f64,
                drift as f64,
                BoundKind::LowerBound,
                "one per drifted account",
            ),
            Metric::plain("CPU, roster", Unit::Seconds, run.cpu.as_secs_f64()),
            Metric::plain("peak RSS", Unit::Megabytes, run.peak_rss as f64 / MB),
        ],
    };
    Ok(W2 { workload, wall })
}

/// Walks suspend-api's cursor chain (the longest sequential chain of W2) the way the
/// fastest client would: one keep-alive connection, each page read whole, the next cursor
/// found by a byte search instead of parsing the page. Its time is the floor of any
/// client's pass on this machine, simulator costs included.
async fn walk_cursor_chain(world: &World) -> anyhow::Result<Duration> {
    let Some(instance) = world
        .instances
        .iter()
        .find(|i| i.kind == SimKind::SuspendApi)
    else {
        return Ok(Duration::ZERO);
    };
    let client = reqwest::Client::new();
    let url = format!("{}/v1/users", instance.sim.base_url());
    let pages = read_bound(SimKind::SuspendApi, instance.users.len());
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    for _ in 0..pages {
        let mut request = client
            .get(&url)
            .bearer_auth(&instance.token)
            .header("X-Tenant-ID", &instance.tenant_id)
            .query(&[("limit", "100")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let body = request.send().await?.error_for_status()?.bytes().await?;
        cursor = next_cursor(&body);
        if cursor.is_none() {
            return Ok(started.elapsed());
        }
    }
    bail!("suspend-api: the cursor chain did not end after the {pages} pages its accounts fill")
}

/// The `next_cursor` of a suspend-api page, found from the end of the body (the bench's
/// own simulator writes it last); `None` at the last page.
fn next_cursor(body: &[u8]) -> Option<String> {
    let key = b"\"next_cursor\":";
    let at = body.windows(key.len()).rposition(|w| w == key)? + key.len();
    let rest = std::str::from_utf8(&body[at..]).ok()?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string()).filter(|c| !c.is_empty())
}

/// W3: `roster validate` on `users` users in `files` files (no network).
pub async fn w3(ctx: &Ctx, users: usize, files: usize) -> anyhow::Result<Workload> {
    let dir = ctx.scratch("w3")?;
    let folder = dir.join("desired-state");
    write_validate_folder(&folder, users, files)?;
    let run = roster(ctx, &dir, &["validate"], None, "w3-validate").await?;
    if run.code != Some(0) {
        return Err(fail("roster validate", &run));
    }
    Ok(Workload {
        id: "W3".into(),
        title: "validate".into(),
        setup: format!(
            "`roster validate` on {users} users in {files} files, 2 accounts each at 5 instances (no network)"
        ),
        metrics: vec![
            Metric::against(
                "wall",
                Unit::Seconds,
                run.wall.as_secs_f64(),
                0.5,
                BoundKind::Target,
                "issue 18: under 0.5 s",
            ),
            Metric::against(
                "peak RSS",
                Unit::Megabytes,
                run.peak_rss as f64 / MB,
                150.0,
                BoundKind::Target,
                "issue 18: under 150 MB",
            ),
        ],
    })
}

/// A valid folder of `users` users spread over `files` files; instances on loopback that
/// `validate` never contacts.
fn write_validate_folder(folder: &Path, users: usize, files: usize) -> anyhow::Result<()> {
    let people = folder.join("people");
    std::fs::create_dir_all(&people).with_context(|| format!("creating {}", people.display()))?;
    let mut providers = String::from("providers:\n");
    for (n, kind) in super::world::KINDS.iter().enumerate() {
        let _ = writeln!(
            providers,
            "  {}:\n    kind: {}\n    base_url: http://127.0.0.1:{}\n    auth: {{ bearer_token_env: BENCH_TOKEN_{n} }}",
            kind.name(),
            kind.name(),
            9000 + n
        );
        match kind {
            SimKind::SuspendApi => {
                providers.push_str("    tenant_id: 3f6c2a9e-5b1d-4c7e-8a2f-9d0e1b4c6a83\n")
            }
            SimKind::Acronis => {
                providers = providers.replace(
                    &format!("bearer_token_env: BENCH_TOKEN_{n}"),
                    &format!("client_id_env: BENCH_ID_{n}, client_secret_env: BENCH_TOKEN_{n}"),
                )
            }
            _ => {}
        }
    }
    std::fs::write(folder.join("providers.yaml"), providers).context("writing providers.yaml")?;
    let per_file = users.div_ceil(files.max(1)).max(1);
    for (file, start) in (0..users).step_by(per_file).enumerate() {
        let mut yaml = String::from("users:\n");
        for i in start..(start + per_file).min(users) {
            let status = if i % 10 == 0 { "inactive" } else { "active" };
            let a = super::world::KINDS[i % 5];
            let b = super::world::KINDS[(i + 1) % 5];
            let _ = write!(
                yaml,
                "  - name: person{i:06}\n    status: {status}\n    reason: \"HR-{i}\"\n    accounts:\n      {}: \"{}\"\n      {}: {{ id: \"{}\", status: active }}\n",
                a.name(),
                account_id(a, i),
                b.name(),
                account_id(b, i)
            );
        }
        let path = people.join(format!("team-{file:04}.yaml"));
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// An id in the kind's format, unique per (kind, i).
fn account_id(kind: SimKind, i: usize) -> String {
    match kind {
        SimKind::Zitadel => format!("{}", 69_629_012_906_000_000_u64 + i as u64),
        _ => format!("{:08x}-5b1d-4c7e-8a2f-{:012x}", kind as u32, i),
    }
}

/// W4 settings.
pub struct W4Spec {
    pub accounts: usize,
    pub instances: usize,
    pub edits: usize,
    pub idle: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// W4: `roster run`: time from saving a one-user edit to the provider receiving the write,
/// then idle CPU and memory.
pub async fn w4(ctx: &Ctx, spec: &W4Spec) -> anyhow::Result<Workload> {
    let dir = ctx.scratch(&format!("w4-{}", spec.accounts))?;
    let world_spec = WorldSpec {
        kinds: super::world::KINDS[..spec.instances.clamp(1, 5)].to_vec(),
        accounts: spec.accounts,
        drift: 0.0,
        latency: Duration::ZERO,
        max_concurrency: None,
        users_per_file: 1000,
    };
    let world = World::start(world_spec, &dir, 4).await?;
    // The edited account: the first unprivileged one of the status-api instance.
    let target = world.instances[0]
        .users
        .iter()
        .position(|u| !u.privileged)
        .context("W4: no unprivileged account to edit")?;
    let per_file = world.spec.users_per_file;
    let file_range =
        (target / per_file) * per_file..((target / per_file + 1) * per_file).min(spec.accounts);
    let file = world.user_file_path(target / per_file);

    let command = roster_command(
        &ctx.roster,
        &dir,
        &["run", "--listen", "127.0.0.1:0", "--interval", "1h"],
        &world.env,
    );
    let log_path = ctx.out_dir.join(format!("w4-{}-daemon.log", spec.accounts));
    let started = Instant::now();
    let mut daemon = Daemon::start(command, log_path).await?;
    let ready_timeout = Duration::from_secs(60 + spec.accounts as u64 / 500);
    daemon.wait_ready(ready_timeout).await?;
    let ready = started.elapsed();
    let sim = &world.instances[0].sim;

    let mut samples = Vec::with_capacity(spec.edits);
    for edit in 0..spec.edits {
        let flip = edit.is_multiple_of(2).then_some((target, 0));
        let text = world.user_file(file_range.clone(), flip);
        let passes = daemon.metric_sum("roster_passes_total").await?;
        let before = sim.write_count();
        let tmp = file.with_extension("bench-tmp");
        let t0 = Instant::now();
        std::fs::write(&tmp, &text).context("writing the edit")?;
        std::fs::rename(&tmp, &file).context("saving the edit")?;
        while sim.write_count() == before {
            if t0.elapsed() > Duration::from_secs(120) {
                daemon.keep_log();
                bail!("W4: no write within 120 s of edit {edit}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t0.elapsed());
        // Let the pass finish and the debounce window close before the next edit.
        let deadline = Instant::now() + Duration::from_secs(120);
        while daemon.metric_sum("roster_passes_total").await? <= passes && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    samples.sort();
    let p50 = percentile(&samples, 0.50).as_secs_f64();
    let p95 = percentile(&samples, 0.95).as_secs_f64();

    let pid = daemon.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests_before = world.requests();
    let cpu_before = cpu_seconds(pid)?;
    let window = Instant::now();
    tokio::time::sleep(spec.idle).await;
    let cpu = cpu_seconds(pid)? - cpu_before;
    let idle_wall = window.elapsed().as_secs_f64();
    let idle_requests = world.requests() - requests_before;
    let rss = memory(pid, "VmRSS")? as f64 / MB;
    let hwm = memory(pid, "VmHWM")? as f64 / MB;
    daemon.stop();
    world.shutdown().await;

    let floor_note = "the folder watcher waits for 300 ms of quiet before it reloads";
    Ok(Workload {
        id: format!("W4-{}", spec.accounts),
        title: format!("run, {} accounts/instance", spec.accounts),
        setup: format!(
            "`roster run --interval 1h` over {} instance(s) × {} accounts; {} one-user edits of a {}-user file (atomic save), time until the status-api simulator receives the write; then {} s idle",
            spec.instances,
            spec.accounts,
            spec.edits,
            file_range.len(),
            spec.idle.as_secs()
        ),
        metrics: vec![
            Metric::plain("start to ready", Unit::Seconds, ready.as_secs_f64()),
            Metric::against("edit→write p50", Unit::Seconds, p50, 0.3, BoundKind::DesignFloor, floor_note),
            Metric::against("edit→write p95", Unit::Seconds, p95, 0.3, BoundKind::DesignFloor, floor_note),
            Metric::plain("idle CPU (one core)", Unit::Percent, 100.0 * cpu / idle_wall),
            Metric::plain("requests while idle", Unit::Requests, idle_requests as f64),
            Metric::plain("RSS", Unit::Megabytes, rss),
            Metric::plain("peak RSS", Unit::Megabytes, hwm),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::next_cursor;

    #[test]
    fn the_next_cursor_is_found_at_the_end_of_a_page() {
        let page = br#"{"data":[{"id":"a","name":"next_cursor"}],"next_cursor":"c2"}"#;
        assert_eq!(next_cursor(page).as_deref(), Some("c2"));
        assert_eq!(next_cursor(br#"{"data":[],"next_cursor":null}"#), None);
        assert_eq!(next_cursor(br#"{"data":[],"next_cursor":""}"#), None);
    }
}
