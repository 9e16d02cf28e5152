//! `roster-bench`: measures the real `roster` binary against the built-in simulators and
//! compares every figure with what no client could beat (W1–W4), and with the ways people
//! do the job without Roster (B1, B2).
//!
//! How the parts fit: [`world`] starts in-process simulators and writes the folder that
//! describes them; [`child`] runs `roster` and measures it (wall time, peak RSS from `wait4`,
//! CPU and memory from /proc); [`workloads`] and [`baselines`] are the measurements;
//! [`report`] turns them into the table and the JSON document.

mod baselines;
mod child;
mod report;
mod workloads;
mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use report::{Baseline, Machine, Report};

/// Measure Roster: plan, apply, validate and the daemon against the built-in simulators,
/// each figure beside its lower bound or target, and two baselines (a sequential script and
/// an Ansible loop). Prints a table and writes a JSON document.
#[derive(Parser, Debug)]
#[command(
    name = "roster-bench",
    after_help = "Examples:
  cargo run --release --bin roster-bench -- --quick            # small sizes, under 2 minutes
  cargo run --release --bin roster-bench                       # the full sizes of docs/benchmarks.md
  cargo run --release --bin roster-bench -- --quick --markdown # the table for docs/benchmarks.md
  cargo run --release --bin roster-bench -- --only W3,W4"
)]
pub struct Options {
    /// Small sizes (2,000 and 1,000 accounts per instance, 10,000 users, one daemon
    /// instance); baselines on samples, extrapolated.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON goes [default: target/roster-bench.json].
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Print the table as markdown (for docs/benchmarks.md) instead of text.
    #[arg(long)]
    pub markdown: bool,
    /// Do not run B1 and B2 (they are recorded as skipped).
    #[arg(long)]
    pub skip_baselines: bool,
    /// Run only these workloads and baselines (comma-separated: W1,W2,W3,W4,B1,B2; B1 and B2
    /// also run W2, which they are compared with).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub only: Vec<String>,
    /// Multiply every size by this factor (0.01 makes a smoke test).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The roster binary to measure [default: `roster` next to this binary, built first when
    /// run through cargo].
    #[arg(long, value_name = "PATH")]
    pub roster: Option<PathBuf>,
    /// B1 on this many accounts per instance, extrapolated [default: all; 50 with --quick].
    #[arg(long, value_name = "N")]
    pub b1_sample: Option<usize>,
    /// B2 on this many status-api accounts, extrapolated [default: 200; 20 with --quick].
    #[arg(long, value_name = "N")]
    pub b2_sample: Option<usize>,
    /// Measure nothing: print the table of a JSON document an earlier run wrote (with
    /// --markdown for docs/benchmarks.md).
    #[arg(long, value_name = "PATH")]
    pub render: Option<PathBuf>,
    /// Keep the scratch folders (worlds, outputs of every child) instead of deleting them.
    #[arg(long)]
    pub keep: bool,
}

/// What every measurement needs.
pub struct Ctx {
    pub roster: PathBuf,
    /// Scratch space of this run.
    pub root: PathBuf,
    /// stdout and stderr of every child, daemon logs.
    pub out_dir: PathBuf,
    /// Cargo's target directory (for the Ansible venv and the default JSON path).
    pub target_dir: PathBuf,
}

impl Ctx {
    /// A fresh directory for one workload.
    pub fn scratch(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

/// The sizes of one run.
struct Sizes {
    w1_accounts: usize,
    w2_accounts: usize,
    w3_users: usize,
    w3_files: usize,
    w4_accounts: Vec<usize>,
    w4_instances: usize,
    w4_edits: usize,
    w4_idle: Duration,
    b1_sample: Option<usize>,
    b2_sample: usize,
}

impl Sizes {
    fn new(opts: &Options) -> Sizes {
        let s = |n: usize| ((n as f64 * opts.scale).round() as usize).max(10);
        if opts.quick {
            Sizes {
                w1_accounts: s(2_000),
                w2_accounts: s(1_000),
                w3_users: s(10_000),
                w3_files: 10,
                w4_accounts: vec![s(10_000)],
                w4_instances: 1,
                w4_edits: 5,
                w4_idle: Duration::from_secs(3),
                b1_sample: Some(opts.b1_sample.unwrap_or(50)),
                b2_sample: opts.b2_sample.unwrap_or(20),
            }
        } else {
            Sizes {
                w1_accounts: s(20_000),
                w2_accounts: s(10_000),
                w3_users: s(100_000),
                w3_files: 100,
                w4_accounts: vec![s(10_000), s(100_000)],
                w4_instances: 5,
                w4_edits: 20,
                w4_idle: Duration::from_secs(10),
                b1_sample: opts.b1_sample,
                b2_sample: opts.b2_sample.unwrap_or(200),
            }
        }
    }
}

/// The directory holding the bench binary, and cargo's target directory above it.
fn exe_dirs() -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let dir = exe
        .parent()
        .context("this binary has no parent directory")?
        .to_path_buf();
    // target/release/roster-bench, or target/debug/deps/... for a test harness.
    let target = dir
        .ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "target"))
        .or_else(|| dir.parent())
        .unwrap_or(&dir)
        .to_path_buf();
    Ok((dir, target))
}

/// `roster` next to this binary; when run through `cargo run`, built first with the same
/// profile so the bench never measures a stale binary.
fn find_roster(exe_dir: &Path) -> anyhow::Result<PathBuf> {
    let roster = exe_dir.join("roster");
    if let (Some(cargo), Ok(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var("CARGO_MANIFEST_DIR"),
    ) {
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--bin", "roster"])
            .current_dir(manifest);
        // `cargo run` gave this process the package's variables; build scripts that track
        // them (ring's) would see a changed environment and rebuild, here and then again in
        // the next plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                build.env_remove(name.as_ref());
            }
        }
        if exe_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        eprintln!("building the roster binary next to this one ({:?})", build);
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --bin roster failed");
        }
    }
    if !roster.exists() {
        bail!(
            "{} not found: build it with `cargo build --release` or pass --roster PATH",
            roster.display()
        );
    }
    Ok(roster)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Machine {
        load_average,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_mb,
        kernel,
    }
}

/// Runs the selected measurements and writes the report. Returns what to print.
pub async fn run(opts: Options) -> anyhow::Result<String> {
    if let Some(path) = &opts.render {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a roster-bench report", path.display()))?;
        return Ok(render(&report, opts.markdown));
    }
    let (exe_dir, target_dir) = exe_dirs()?;
    let roster = match &opts.roster {
        Some(p) => p.clone(),
        None => find_roster(&exe_dir)?,
    };
    // Children run in their own directories: a relative path would not resolve there.
    let roster = std::fs::canonicalize(&roster)
        .with_context(|| format!("the roster binary {}", roster.display()))?;
    if !(opts.scale > 0.0 && opts.scale.is_finite()) {
        bail!("--scale must be a positive number");
    }
    let only: Vec<String> = opts.only.iter().map(|s| s.trim().to_uppercase()).collect();
    let wants = |id: &str| only.is_empty() || only.iter().any(|o| o == id);
    let baselines_wanted = !opts.skip_baselines && (wants("B1") || wants("B2"));
    let sizes = Sizes::new(&opts);
    let scratch = tempfile::Builder::new()
        .prefix("roster-bench-")
        .tempdir()
        .context("creating a scratch directory")?;
    let root = scratch.path().to_path_buf();
    let ctx = Ctx {
        roster: roster.clone(),
        out_dir: root.join("out"),
        root,
        target_dir: target_dir.clone(),
    };
    std::fs::create_dir_all(&ctx.out_dir).context("creating the output directory")?;
    eprintln!("roster-bench: measuring {}", roster.display());

    let mut workloads = Vec::new();
    if wants("W1") {
        eprintln!(
            "W1: roster plan, 5 × {} accounts in sync",
            sizes.w1_accounts
        );
        workloads.push(workloads::w1(&ctx, sizes.w1_accounts).await?);
    }
    let mut w2_wall = None;
    if wants("W2") || baselines_wanted {
        eprintln!(
            "W2: roster apply, 5 × {} accounts, 1 % drift, 20 ms",
            sizes.w2_accounts
        );
        let w2 = workloads::w2(&ctx, sizes.w2_accounts).await?;
        w2_wall = Some(w2.wall);
        workloads.push(w2.workload);
    }
    if wants("W3") {
        eprintln!(
            "W3: roster validate, {} users in {} files",
            sizes.w3_users, sizes.w3_files
        );
        workloads.push(workloads::w3(&ctx, sizes.w3_users, sizes.w3_files).await?);
    }
    if wants("W4") {
        for &accounts in &sizes.w4_accounts {
            eprintln!(
                "W4: roster run, {} instance(s) × {accounts} accounts, {} edits",
                sizes.w4_instances, sizes.w4_edits
            );
            let spec = workloads::W4Spec {
                accounts,
                instances: sizes.w4_instances,
                edits: sizes.w4_edits,
                idle: sizes.w4_idle,
            };
            workloads.push(workloads::w4(&ctx, &spec).await?);
        }
    }

    let mut baselines = Vec::new();
    let skip_reason = if opts.skip_baselines {
        Some("--skip-baselines")
    } else {
        None
    };
    match (skip_reason, w2_wall) {
        (Some(why), _) => {
            baselines.push(Baseline::skipped("B1", baselines::B1_TITLE, why));
            baselines.push(Baseline::skipped("B2", baselines::B2_TITLE, why));
        }
        (None, Some(wall)) => {
            if wants("B1") {
                eprintln!("B1: the sequential script on the W2 setup");
                baselines
                    .push(baselines::b1(&ctx, sizes.w2_accounts, sizes.b1_sample, wall).await?);
            }
            if wants("B2") {
                eprintln!(
                    "B2: an Ansible uri loop on {} accounts of the W2 setup",
                    sizes.b2_sample
                );
                baselines
                    .push(baselines::b2(&ctx, sizes.w2_accounts, sizes.b2_sample, wall).await?);
            }
        }
        (None, None) => {}
    }

    let report = Report {
        format_version: 1,
        mode: if opts.quick { "quick" } else { "full" }.into(),
        scale: opts.scale,
        machine: machine(),
        roster: roster.display().to_string(),
        workloads,
        baselines,
    };
    let json_path = opts
        .json
        .clone()
        .unwrap_or_else(|| target_dir.join("roster-bench.json"));
    let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("wrote {}", json_path.display());
    if opts.keep {
        let kept = scratch.keep();
        eprintln!("kept the scratch folders in {}", kept.display());
    }
    Ok(render(&report, opts.markdown))
}

fn render(report: &Report, markdown: bool) -> String {
    if markdown {
        report::markdown(report)
    } else {
        report::text(report)
    }
}
