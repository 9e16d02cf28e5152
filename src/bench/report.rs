//! What the bench measured, as data (the JSON document) and as tables (text and markdown).
//! Every figure sits beside what it is compared against, so a reader sees how far Roster is
//! from the best any client could do, not only a time.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The whole run: written to `--json PATH`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    /// `quick` or `full`.
    pub mode: String,
    /// Size factor applied on top of the mode's sizes (1 unless `--scale`).
    pub scale: f64,
    pub machine: Machine,
    /// The `roster` binary that was measured.
    pub roster: String,
    pub workloads: Vec<Workload>,
    pub baselines: Vec<Baseline>,
}

/// Where the numbers were taken.
#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mb: u64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews wall times.
    pub load_average: String,
}

/// One workload: what ran, and its figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct Workload {
    /// `W1` ... `W4` (W4 gets a size suffix, e.g. `W4-10000`).
    pub id: String,
    pub title: String,
    /// The sizes and settings, in words.
    pub setup: String,
    pub metrics: Vec<Metric>,
}

/// What a figure is compared against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundKind {
    /// No client could do better (requests needed, latency arithmetic).
    LowerBound,
    /// The goal the issue sets.
    Target,
    /// A delay Roster takes on purpose (the folder watcher's debounce).
    DesignFloor,
    /// What a bare client needs for the same sequential chain on the same simulators,
    /// measured in the same run: the latency arithmetic plus the time the simulators take
    /// to produce and send the pages.
    MeasuredFloor,
}

impl BoundKind {
    fn label(self) -> &'static str {
        match self {
            BoundKind::LowerBound => "lower bound",
            BoundKind::Target => "target",
            BoundKind::DesignFloor => "design floor",
            BoundKind::MeasuredFloor => "measured floor",
        }
    }
}

/// The unit of a figure, which also decides how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "MB")]
    Megabytes,
    #[serde(rename = "requests")]
    Requests,
    #[serde(rename = "writes")]
    Writes,
    #[serde(rename = "%")]
    Percent,
}

/// One measured figure, its comparison and the ratio measured / compared.
#[derive(Debug, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: Unit,
    pub measured: f64,
    pub bound: Option<f64>,
    pub bound_kind: Option<BoundKind>,
    /// How the bound was computed.
    pub bound_note: Option<String>,
    /// measured / bound; 1.0 is the best possible for a lower bound, below 1.0 meets a target.
    pub ratio: Option<f64>,
}

impl Metric {
    /// A figure with nothing to compare it with.
    pub fn plain(name: &str, unit: Unit, measured: f64) -> Metric {
        Metric {
            name: name.to_string(),
            unit,
            measured,
            bound: None,
            bound_kind: None,
            bound_note: None,
            ratio: None,
        }
    }

    /// A figure and what it is compared against.
    pub fn against(
        name: &str,
        unit: Unit,
        measured: f64,
        bound: f64,
        kind: BoundKind,
        note: impl Into<String>,
    ) -> Metric {
        Metric {
            name: name.to_string(),
            unit,
            measured,
            bound: Some(bound),
            bound_kind: Some(kind),
            bound_note: Some(note.into()),
            ratio: (bound > 0.0).then(|| measured / bound),
        }
    }
}

/// Whether a baseline ran.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStatus {
    /// Ran on the whole workload.
    Ran,
    /// Ran on a subset; the wall time is extrapolated (see `note`).
    Extrapolated,
    /// Did not run (see `reason`).
    Skipped,
}

/// A baseline: the same job done the way people do it without Roster.
#[derive(Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub id: String,
    pub title: String,
    pub status: BaselineStatus,
    pub reason: Option<String>,
    /// Wall time of the baseline (extrapolated when `status` says so), seconds.
    pub wall_s: Option<f64>,
    /// What was measured before extrapolating: seconds, accounts, requests.
    pub note: Option<String>,
    /// Roster's wall time on the same workload (W2), seconds.
    pub roster_wall_s: Option<f64>,
    /// baseline / Roster: how many times faster Roster is.
    pub ratio: Option<f64>,
    /// The ratio the issue asks for, when it names one.
    pub target_ratio: Option<f64>,
}

impl Baseline {
    /// A baseline that did not run, and why.
    pub fn skipped(id: &str, title: &str, reason: impl Into<String>) -> Baseline {
        Baseline {
            id: id.to_string(),
            title: title.to_string(),
            status: BaselineStatus::Skipped,
            reason: Some(reason.into()),
            wall_s: None,
            note: None,
            roster_wall_s: None,
            ratio: None,
            target_ratio: None,
        }
    }
}

/// A value in its unit, for people.
pub fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Seconds if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Unit::Seconds if v < 120.0 => format!("{v:.2} s"),
        Unit::Seconds if v < 7200.0 => format!("{:.1} min", v / 60.0),
        Unit::Seconds => format!("{:.1} h", v / 3600.0),
        Unit::Megabytes => format!("{v:.1} MB"),
        Unit::Requests | Unit::Writes => thousands(v.round() as u64),
        Unit::Percent => format!("{v:.2} %"),
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rows(report: &Report) -> Vec<[String; 5]> {
    let mut rows = Vec::new();
    for w in &report.workloads {
        for (n, m) in w.metrics.iter().enumerate() {
            let first = if n == 0 {
                format!("{} {}", w.id, w.title)
            } else {
                String::new()
            };
            let bound = match (m.bound, m.bound_kind) {
                (Some(b), Some(k)) => format!("{} ({})", show(m.unit, b), k.label()),
                _ => "–".to_string(),
            };
            let ratio = m.ratio.map_or("–".to_string(), |r| format!("{r:.2}"));
            rows.push([
                first,
                m.name.clone(),
                show(m.unit, m.measured),
                bound,
                ratio,
            ]);
        }
    }
    rows
}

const HEADER: [&str; 5] = ["workload", "figure", "measured", "compared to", "ratio"];

/// The table for a terminal, columns aligned, then one line per baseline.
pub fn text(report: &Report) -> String {
    let rows = rows(report);
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i == 2 || i == 4 {
                let _ = write!(s, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{cell}{}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(HEADER));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r.each_ref().map(String::as_str)));
    }
    out.push('\n');
    for b in &report.baselines {
        let _ = writeln!(out, "{}", baseline_line(b));
    }
    out
}

fn baseline_line(b: &Baseline) -> String {
    match b.status {
        BaselineStatus::Skipped => format!(
            "{} {}: skipped: {}",
            b.id,
            b.title,
            b.reason.as_deref().unwrap_or("")
        ),
        BaselineStatus::Ran | BaselineStatus::Extrapolated => {
            let wall = b.wall_s.map_or("?".to_string(), |w| show(Unit::Seconds, w));
            let how = if b.status == BaselineStatus::Extrapolated {
                " (extrapolated)"
            } else {
                ""
            };
            let ratio = match (b.ratio, b.roster_wall_s) {
                (Some(r), Some(rw)) => format!(
                    "; Roster (W2) {}: Roster is {r:.0}× faster",
                    show(Unit::Seconds, rw)
                ),
                _ => String::new(),
            };
            let target = match (b.ratio, b.target_ratio) {
                (Some(r), Some(t)) if r >= t => format!(" (target ≥ {t:.0}×: met)"),
                (Some(_), Some(t)) => format!(" (target ≥ {t:.0}×: NOT met)"),
                _ => String::new(),
            };
            let note = b
                .note
                .as_deref()
                .map_or(String::new(), |n| format!("\n    {n}"));
            format!("{} {}: {wall}{how}{ratio}{target}{note}", b.id, b.title)
        }
    }
}

/// The same table as GitHub markdown, for docs/benchmarks.md.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    out.push_str("|---|---|--:|--:|--:|\n");
    for r in rows(report) {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    for b in &report.baselines {
        let _ = writeln!(out, "- {}", baseline_line(b).replace("\n    ", " — "));
    }
    out.push('\n');
    for w in &report.workloads {
        let _ = writeln!(out, "- {}: {}", w.id, w.setup);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            format_version: 1,
            mode: "quick".into(),
            scale: 1.0,
            machine: Machine {
                cpus: 2,
                cpu_model: "x".into(),
                memory_mb: 1,
                kernel: "k".into(),
                load_average: "0.1".into(),
            },
            roster: "roster".into(),
            workloads: vec![Workload {
                id: "W1".into(),
                title: "plan".into(),
                setup: "5 × 20,000".into(),
                metrics: vec![
                    Metric::plain("wall", Unit::Seconds, 1.5),
                    Metric::against(
                        "requests",
                        Unit::Requests,
                        1100.0,
                        1000.0,
                        BoundKind::LowerBound,
                        "pages",
                    ),
                ],
            }],
            baselines: vec![Baseline::skipped("B2", "ansible", "no python3")],
        }
    }

    #[test]
    fn tables_show_measured_bound_and_ratio() {
        let report = sample();
        let text = text(&report);
        assert!(text.contains("1,100"), "{text}");
        assert!(text.contains("1,000 (lower bound)"), "{text}");
        assert!(text.contains("1.10"), "{text}");
        assert!(text.contains("B2 ansible: skipped: no python3"), "{text}");
        let md = markdown(&report);
        assert!(md.contains("| W1 plan | wall | 1.50 s | – | – |"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workloads"][0]["metrics"][1]["ratio"], 1.1);
        assert_eq!(json["baselines"][0]["status"], "skipped");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
