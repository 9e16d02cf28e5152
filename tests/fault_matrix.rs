//! The fault matrix: every provider kind against every fault the simulators can inject, run
//! with the real binary on loopback. Each cell ([`run_cell`]) makes one `roster apply` pass with
//! the fault on and a healthy instance of another kind alongside, then clears the fault and
//! makes two more passes. It checks, from Roster's JSON summary, the simulators' request logs
//! and their stores:
//!
//! - no crash: the process exits 0 or 1 (the documented codes) without panic text, and prints a
//!   JSON summary; no run takes longer than [`RUN_LIMIT`] (a hang fails the cell);
//! - nothing reported done that was not done: every `applied` / `already_converged` result is
//!   the account's state in the simulator's store;
//! - no unneeded or duplicate write: writes only ever target the account that needs a change,
//!   none follows a write the provider confirmed (2xx), at most 1 + 4 retries;
//! - the fault's expected effect: retried and converged in the same pass, or an error entry
//!   for the instance with no write;
//! - the healthy instance converged in the same pass;
//! - after the fault clears, the next pass converges and the one after makes zero writes.
//!
//! Each fault is one test running every kind concurrently (`fault_matrix::http_500_storm`).
//! The whole table, with each cell's outcome, prints with:
//!
//! ```sh
//! cargo test --test fault_matrix print_matrix -- --ignored --nocapture
//! ```
//!
//! (`docs/fault-matrix.md` holds the latest output.)

mod common;

use common::{user, Run, World};
use futures::future::join_all;
use roster::simulator::{FaultAction, FaultRule, FaultTarget, Faults, SimConfig, SimKind};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// The longest one `roster` run may take before the cell counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(20);
/// The provider layer's retry budget (`RetryPolicy::max_retries`), so attempts per write are
/// at most this plus one.
const MAX_RETRIES: usize = 4;
/// Accounts at the faulty instance: the first needs a change, the others are in sync.
const ACCOUNTS: usize = 5;

// ---------------------------------------------------------------------------------------------
// The faults.

/// What a cell expects the faulty pass to end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Retried (or waited out) and converged in the same pass: exit 0, the change applied.
    Converges,
    /// The instance is an error entry (whose message contains the text, when given), and no
    /// write reached it.
    ErrorEntry(Option<&'static str>),
}

/// One row of the matrix.
struct Fault {
    /// The test name and the row's key.
    name: &'static str,
    /// What the row shows.
    title: &'static str,
    /// What the faulty pass must end with, per kind.
    expect: fn(SimKind) -> Expect,
    /// The reason a kind is not affected, or None when the fault applies to it.
    not_applicable: fn(SimKind) -> Option<&'static str>,
    /// The faults to switch on for this kind.
    faults: fn(SimKind) -> Faults,
    /// Take the instance down (connections refused) for the faulty pass.
    down: bool,
    /// The most records one list page returns at the faulty instance.
    page_size: usize,
}

fn applies(_: SimKind) -> Option<&'static str> {
    None
}

fn no_total(kind: SimKind) -> Option<&'static str> {
    match kind {
        SimKind::Acronis => Some("n/a: batch reads by id carry no total"),
        SimKind::SuspendApi => Some("n/a: cursor paging carries no total"),
        _ => None,
    }
}

fn no_cursor(kind: SimKind) -> Option<&'static str> {
    match kind {
        SimKind::SuspendApi => None,
        SimKind::Acronis => Some("n/a: batch reads by id, no cursor"),
        _ => Some("n/a: offset paging, no cursor"),
    }
}

fn rule(target: FaultTarget, times: u32, action: FaultAction) -> Faults {
    Faults {
        latency: Duration::ZERO,
        rules: vec![FaultRule {
            target,
            times,
            action,
        }],
    }
}

fn status(code: u16, retry_after: Option<String>) -> FaultAction {
    FaultAction::Status { code, retry_after }
}

fn none(_: SimKind) -> Faults {
    Faults::default()
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "http_429_retry_after_seconds",
        title: "429, `Retry-After: 1` (first 2 requests)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Any, 2, status(429, Some("1".into()))),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "http_429_retry_after_date",
        title: "429, `Retry-After: <HTTP date 1 s ahead>` (first 2 requests)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(1));
            rule(FaultTarget::Any, 2, status(429, Some(date)))
        },
        down: false,
        page_size: 100,
    },
    Fault {
        name: "http_503",
        title: "503 without `Retry-After` (first 2 requests)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Any, 2, status(503, None)),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "http_500_storm",
        title: "500 on every request for the whole pass",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Any, 0, status(500, None)),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "timeout",
        title: "first read answers after 1 s (`timeout: 300ms`)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| {
            rule(
                FaultTarget::Reads,
                1,
                FaultAction::Delay(Duration::from_secs(1)),
            )
        },
        down: false,
        page_size: 100,
    },
    Fault {
        name: "dropped_before_write_applied",
        title: "connection dropped before the write is applied (once)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Writes, 1, FaultAction::Drop),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "dropped_after_write_applied",
        title: "connection dropped after the write is applied (once)",
        expect: |_| Expect::Converges,
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Writes, 1, FaultAction::DropAfterHandling),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "malformed_json",
        title: "200 with malformed JSON on every read",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::MalformedBody),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "truncated_json",
        title: "200 with the body cut in half on every read",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::TruncatedBody),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "missing_id",
        title: "200 whose records have no `id`",
        expect: |_| Expect::ErrorEntry(Some("id")),
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::OmitField("id".into())),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "missing_status_field",
        title: "200 whose records have no status field",
        // Atlan's `enabled` is nullable (`null` = unknown, never changed), but a record
        // without it is a broken answer like every other kind's. SCIM is the exception:
        // RFC 7643 makes a user without `active` active, so the pass goes on and converges.
        expect: |kind| match kind {
            SimKind::Scim => Expect::Converges,
            _ => Expect::ErrorEntry(None),
        },
        not_applicable: applies,
        faults: |kind| {
            let field = kind.status_field().to_string();
            rule(FaultTarget::Reads, 0, FaultAction::OmitField(field))
        },
        down: false,
        page_size: 100,
    },
    Fault {
        name: "oversized_response",
        title: "a 128 MiB list page (streamed)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: applies,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::OversizedBody(128 << 20)),
        down: false,
        page_size: 100,
    },
    Fault {
        name: "cycling_cursor",
        title: "cursor A -> B -> A (2 records a page)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: no_cursor,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::CyclingCursor),
        down: false,
        page_size: 2,
    },
    Fault {
        name: "endless_cursor",
        title: "a new cursor on every page, never null (2 records a page)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: no_cursor,
        faults: |_| rule(FaultTarget::Reads, 0, FaultAction::EndlessCursor),
        down: false,
        page_size: 2,
    },
    Fault {
        name: "lying_total",
        title: "total says 1,000,000 records (5 exist)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: no_total,
        faults: |kind| {
            let total = match kind {
                SimKind::Zitadel => json!("1000000"),
                _ => json!(1_000_000),
            };
            rule(FaultTarget::Reads, 0, FaultAction::LyingTotal(total))
        },
        down: false,
        page_size: 100,
    },
    Fault {
        name: "absurd_total",
        title: "total 10^18 (zitadel: a 30-digit string)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: no_total,
        faults: |kind| {
            let total = match kind {
                SimKind::Zitadel => json!("999999999999999999999999999999"),
                _ => json!(1_000_000_000_000_000_000_u64),
            };
            rule(FaultTarget::Reads, 0, FaultAction::LyingTotal(total))
        },
        down: false,
        page_size: 100,
    },
    Fault {
        name: "instance_down",
        title: "instance down for the whole pass (connection refused)",
        expect: |_| Expect::ErrorEntry(None),
        not_applicable: applies,
        faults: none,
        down: true,
        page_size: 100,
    },
];

fn fault(name: &str) -> &'static Fault {
    FAULTS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fault named {name}"))
}

// ---------------------------------------------------------------------------------------------
// One cell.

/// The kind that runs healthy beside `kind`.
fn partner(kind: SimKind) -> SimKind {
    let all = SimKind::ALL;
    let i = all.iter().position(|k| *k == kind).unwrap_or(0);
    all[(i + 1) % all.len()]
}

/// The `i`th account id in the kind's shape.
fn account_id(kind: SimKind, i: usize) -> String {
    match kind {
        SimKind::Zitadel => (269_629_012_906_488_334_u64 + i as u64).to_string(),
        _ => format!("0c1d2e3f-4a5b-4c6d-8e7f-{i:012x}"),
    }
}

/// What the matrix shows for one cell, and whether it met every check.
struct CellOutcome {
    summary: String,
    failure: Option<String>,
}

/// Runs one cell; `Err` is a broken check (or a hang), with what was seen.
async fn run_cell(fault: &Fault, kind: SimKind) -> Result<String, String> {
    let other = partner(kind);
    let ids: Vec<String> = (0..ACCOUNTS).map(|i| account_id(kind, i)).collect();
    let healthy_ids = [account_id(other, 100), account_id(other, 101)];

    let mut world = World::new();
    let timeout = "    timeout: 300ms\n";
    let mut config = SimConfig::new(kind, ids.iter().map(|id| user(id, "active")).collect());
    config.page_size_max = fault.page_size;
    world.add("faulty", config, timeout).await;
    let healthy_users = healthy_ids.iter().map(|id| user(id, "active")).collect();
    world
        .add("healthy", SimConfig::new(other, healthy_users), timeout)
        .await;
    let mut users = String::from("users:\n");
    for (i, id) in ids.iter().enumerate() {
        let to = if i == 0 { "inactive" } else { "active" };
        users.push_str(&format!(
            "  - name: f{i}\n    status: {to}\n    accounts:\n      faulty: \"{id}\"\n"
        ));
    }
    for (i, id) in healthy_ids.iter().enumerate() {
        let to = if i == 0 { "inactive" } else { "active" };
        users.push_str(&format!(
            "  - name: h{i}\n    status: {to}\n    accounts:\n      healthy: \"{id}\"\n"
        ));
    }
    world.write("people.yaml", &users);

    // The faulty pass.
    world.sims["faulty"].set_faults((fault.faults)(kind));
    if fault.down {
        if let Some(sim) = world.sims.get_mut("faulty") {
            sim.take_down().await;
        }
    }
    let run = apply(&world).await?;
    let report = checked_report(&run)?;
    let faulty = &world.sims["faulty"];
    let writes = faulty.writes();
    check_results(&report, &world)?;
    check_writes(&writes, &ids[0], &ids[1..])?;
    let healthy = &world.sims["healthy"];
    let healthy_state = healthy.user(&healthy_ids[0]).map(|u| u.status);
    if healthy_state.as_deref() != Some("inactive") || healthy.writes().len() != 1 {
        return Err(format!(
            "the healthy {other} instance did not converge in the faulty pass: {healthy_state:?}, {} writes\n{}",
            healthy.writes().len(),
            run.stdout
        ));
    }
    let errors = instance_errors(&report, "faulty");
    let applied_now = faulty.user(&ids[0]).map(|u| u.status).as_deref() == Some("inactive");
    let answered_badly = faulty
        .requests()
        .iter()
        .filter(|r| r.status == 0 || r.status >= 429)
        .count();
    match (fault.expect)(kind) {
        Expect::Converges => {
            if run.code != 0 || !applied_now || !errors.is_empty() {
                return Err(format!(
                    "expected a retried, converged pass; got exit {} (applied: {applied_now}, errors: {errors:?})\n{}",
                    run.code, run.stderr
                ));
            }
        }
        Expect::ErrorEntry(text) => {
            let named = match text {
                Some(text) => errors.iter().any(|m| m.contains(text)),
                None => !errors.is_empty(),
            };
            if run.code != 1 || !named || !writes.is_empty() {
                return Err(format!(
                    "expected an error entry{} and no write; got exit {}, errors {errors:?}, {} writes",
                    text.map(|t| format!(" naming '{t}'")).unwrap_or_default(),
                    run.code,
                    writes.len()
                ));
            }
        }
    }
    let blocked = blocked_reasons(&report, "faulty");
    let first = match (errors.first(), blocked.first(), answered_badly) {
        (Some(message), _, _) => {
            format!("exit {}, error entry: \"{}\"", run.code, short(message))
        }
        (None, Some(reason), _) => format!("exit {}, blocked: \"{}\"", run.code, short(reason)),
        (None, None, 0) => format!("exit {}", run.code),
        (None, None, n) => format!("exit {}, {n} failed attempt(s) retried", run.code),
    };
    let reported = report["results"]
        .as_array()
        .and_then(|results| results.iter().find(|r| r["account_id"] == ids[0].as_str()))
        .and_then(|r| r["outcome"].as_str())
        .map(|outcome| format!(", reported {outcome}"))
        .unwrap_or_default();
    let writes_note = format!("{} write(s){reported}", writes.len());

    // Clear the fault: the next pass converges, the one after makes no write.
    if let Some(sim) = world.sims.get_mut("faulty") {
        sim.bring_up().await.map_err(|e| format!("bring up: {e}"))?;
        sim.set_faults(Faults::default());
    }
    for sim in world.sims.values() {
        sim.clear_requests();
    }
    let run = apply(&world).await?;
    let report = checked_report(&run)?;
    check_results(&report, &world)?;
    let faulty = &world.sims["faulty"];
    let state = faulty.user(&ids[0]).map(|u| u.status);
    let after_writes = faulty.writes().len();
    if run.code != 0 || state.as_deref() != Some("inactive") {
        return Err(format!(
            "no convergence on the first pass after the fault cleared: exit {}, {state:?}\n{}{}",
            run.code, run.stdout, run.stderr
        ));
    }
    if after_writes != usize::from(!applied_now) || world.sims["healthy"].write_count() != 0 {
        return Err(format!(
            "the pass after the fault made {after_writes} write(s) at the faulty and {} at the healthy instance",
            world.sims["healthy"].write_count()
        ));
    }
    for sim in world.sims.values() {
        sim.clear_requests();
    }
    let run = apply(&world).await?;
    checked_report(&run)?;
    if run.code != 0 || world.write_count() != 0 {
        return Err(format!(
            "the second pass after the fault: exit {}, {} writes",
            run.code,
            world.write_count()
        ));
    }
    let next = if after_writes == 0 {
        "next pass: 0 writes"
    } else {
        "next pass: 1 write, converged"
    };
    Ok(format!("{first}; {writes_note}; {next}"))
}

async fn apply(world: &World) -> Result<Run, String> {
    world
        .roster_within(&["apply", "--format", "json", "desired-state"], RUN_LIMIT)
        .await
}

/// No crash: a documented exit code, no panic text, a JSON summary.
fn checked_report(run: &Run) -> Result<Value, String> {
    if run.stderr.contains("panicked") {
        return Err(format!("roster panicked:\n{}", run.stderr));
    }
    if !matches!(run.code, 0 | 1) {
        return Err(format!(
            "undocumented exit code {}:\n{}",
            run.code, run.stderr
        ));
    }
    serde_json::from_str(&run.stdout)
        .map_err(|e| format!("stdout is not a JSON summary ({e}):\n{}", run.stdout))
}

/// Nothing reported done that the simulator did not do.
fn check_results(report: &Value, world: &World) -> Result<(), String> {
    let results = report["results"].as_array().cloned().unwrap_or_default();
    for result in results {
        let outcome = result["outcome"].as_str().unwrap_or_default();
        if !matches!(outcome, "applied" | "already_converged") {
            continue;
        }
        let provider = result["provider"].as_str().unwrap_or_default();
        let id = result["account_id"].as_str().unwrap_or_default();
        let to = result["to"].as_str().unwrap_or_default();
        let state = world
            .sims
            .get(provider)
            .and_then(|s| s.user(id))
            .map(|u| u.status);
        if state.as_deref() != Some(to) {
            return Err(format!(
                "reported {outcome} for {provider}/{id} -> {to}, but the simulator holds {state:?}"
            ));
        }
    }
    Ok(())
}

/// Writes only to the account that needs one, none after a confirmed one, bounded retries.
fn check_writes(
    writes: &[roster::simulator::RecordedRequest],
    needed: &str,
    in_sync: &[String],
) -> Result<(), String> {
    if let Some(w) = writes
        .iter()
        .find(|w| in_sync.iter().any(|id| w.path.contains(id.as_str())))
    {
        return Err(format!(
            "unneeded write to an account in sync: {} {}",
            w.method, w.path
        ));
    }
    if let Some(w) = writes.iter().find(|w| !w.path.contains(needed)) {
        return Err(format!(
            "write to an unknown target: {} {}",
            w.method, w.path
        ));
    }
    if let Some(confirmed) = writes.iter().position(|w| (200..300).contains(&w.status)) {
        if confirmed + 1 < writes.len() {
            let statuses: Vec<u16> = writes.iter().map(|w| w.status).collect();
            return Err(format!(
                "duplicate write after a confirmed one: statuses {statuses:?}"
            ));
        }
    }
    if writes.len() > MAX_RETRIES + 1 {
        return Err(format!("{} write attempts for one change", writes.len()));
    }
    Ok(())
}

/// The messages of the error entries of one instance.
fn instance_errors(report: &Value, provider: &str) -> Vec<String> {
    report["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter(|e| e["provider"] == provider)
                .filter_map(|e| e["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The reasons of the blocked entries of one instance.
fn blocked_reasons(report: &Value, provider: &str) -> Vec<String> {
    report["blocked"]
        .as_array()
        .map(|blocked| {
            blocked
                .iter()
                .filter(|b| b["provider"] == provider)
                .filter_map(|b| b["reason"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A message shortened for a table cell.
fn short(message: &str) -> String {
    let one_line = message.replace(['\n', '|'], " ");
    match one_line.char_indices().nth(90) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Runs a cell, turning a broken check into the cell's outcome so the matrix can show it.
async fn outcome(fault: &Fault, kind: SimKind) -> CellOutcome {
    if let Some(why) = (fault.not_applicable)(kind) {
        return CellOutcome {
            summary: why.to_string(),
            failure: None,
        };
    }
    match run_cell(fault, kind).await {
        Ok(summary) => CellOutcome {
            summary,
            failure: None,
        },
        Err(failure) => CellOutcome {
            summary: format!("**FAILS**: {}", short(&failure)),
            failure: Some(failure),
        },
    }
}

/// Runs one row for every kind concurrently; the oversized row one kind at a time, so that a
/// client without a size limit holds one such page at a time, not one per kind.
async fn row(fault: &Fault) -> Vec<(SimKind, CellOutcome)> {
    if fault.name == "oversized_response" {
        let mut cells = Vec::new();
        for kind in SimKind::ALL {
            cells.push((kind, outcome(fault, kind).await));
        }
        return cells;
    }
    let cells = join_all(SimKind::ALL.map(|kind| outcome(fault, kind))).await;
    SimKind::ALL.into_iter().zip(cells).collect()
}

/// The test of one row: every applicable kind passes every check.
async fn check_row(name: &str) {
    let fault = fault(name);
    let failures: Vec<String> = row(fault)
        .await
        .into_iter()
        .filter_map(|(kind, cell)| cell.failure.map(|f| format!("{kind}: {f}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        fault.title,
        failures.join("\n\n")
    );
}

macro_rules! rows {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check_row(stringify!($name)).await;
        }
    )*};
}

rows!(
    http_429_retry_after_seconds,
    http_429_retry_after_date,
    http_503,
    http_500_storm,
    timeout,
    dropped_before_write_applied,
    dropped_after_write_applied,
    malformed_json,
    truncated_json,
    missing_id,
    missing_status_field,
    instance_down,
    oversized_response,
    cycling_cursor,
    endless_cursor,
    lying_total,
    absurd_total,
);

/// Prints the whole matrix as a markdown table (see the module doc for the command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the fault matrix; run it with --ignored --nocapture"]
async fn print_matrix() {
    let mut table = String::from("| fault |");
    for kind in SimKind::ALL {
        table.push_str(&format!(" {kind} |"));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(SimKind::ALL.len()));
    table.push('\n');
    for fault in FAULTS {
        table.push_str(&format!("| {} (`{}`) |", fault.title, fault.name));
        for (_, cell) in row(fault).await {
            table.push_str(&format!(" {} |", cell.summary));
        }
        table.push('\n');
    }
    println!("\n<!-- fault matrix begins -->\n{table}<!-- fault matrix ends -->");
}

/// `roster simulate` loads `--faults` and prints that a custom token is set, never its value.
#[tokio::test]
async fn simulate_hides_a_custom_token_and_loads_faults() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = dir.path().join("faults.json");
    let spec = json!({"rules": [{"target": "reads", "action": {"status": {"code": 503}}}]});
    std::fs::write(&faults, spec.to_string()).expect("write");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args([
            "simulate",
            "--kind",
            "status-api",
            "--users",
            "3",
            "--port",
            "0",
        ])
        .args(["--token", "s3cret-value", "--faults"])
        .arg(&faults)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("roster simulate starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a start line in time")
        .expect("read")
        .expect("a line");
    assert!(!line.contains("s3cret-value"), "{line}");
    assert!(line.contains("token: set by --token"), "{line}");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address in the start line");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut loaded = Value::Null;
    for _ in 0..100 {
        if let Ok(resp) = client.get(format!("{base}/_sim/faults")).send().await {
            loaded = resp.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        loaded["rules"][0]["action"]["status"]["code"], 503,
        "{loaded}"
    );
    let listed = client
        .get(format!("{base}/users"))
        .bearer_auth("s3cret-value")
        .header("X-API-Version", "v1")
        .send()
        .await
        .expect("send");
    assert_eq!(listed.status(), 503);
    child.kill().await.expect("stop the simulator");
}
