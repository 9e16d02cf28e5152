//! `roster-bench` still works: it runs every workload on tiny sizes against the real `roster`
//! binary and writes a JSON document with a number for each figure. No timing is asserted
//! (the machine is shared); request counts are, since they cannot go below the lower bound.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str], json: &Path) -> (String, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_roster-bench"))
        .args(args)
        .arg("--roster")
        .arg(env!("CARGO_BIN_EXE_roster"))
        .arg("--json")
        .arg(json)
        .output()
        .expect("run roster-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "roster-bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(json).expect("the JSON was written");
    (stdout, serde_json::from_str(&text).expect("valid JSON"))
}

fn metric<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {workload}"))
}

fn measured(workload: &Value, name: &str) -> f64 {
    metric(workload, name)["measured"]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} is not a number in {workload}"))
}

#[test]
fn quick_run_reports_every_workload_with_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (table, report) = bench(&["--quick", "--scale", "0.02", "--skip-baselines"], &json);
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["mode"], "quick");
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    let workloads = report["workloads"].as_array().expect("workloads");
    let ids: Vec<&str> = workloads
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["W1", "W2", "W3", "W4-200"], "{report}");
    for w in workloads {
        assert!(table.contains(w["id"].as_str().unwrap()), "{table}");
        for m in w["metrics"].as_array().unwrap() {
            let v = m["measured"].as_f64().expect("a number");
            assert!(v.is_finite() && v >= 0.0, "{m}");
            if let Some(bound) = m["bound"].as_f64() {
                assert!(bound > 0.0, "{m}");
                assert!(m["ratio"].as_f64().unwrap() > 0.0, "{m}");
            }
        }
    }
    let [w1, w2, w3, w4] = [0, 1, 2, 3].map(|i| &workloads[i]);
    for (w, name) in [
        (w1, "wall"),
        (w1, "peak RSS"),
        (w1, "requests"),
        (w2, "wall"),
        (w2, "requests"),
        (w2, "writes"),
        (w3, "wall"),
        (w3, "peak RSS"),
        (w4, "start to ready"),
        (w4, "edit→write p50"),
        (w4, "edit→write p95"),
        (w4, "RSS"),
        (w4, "peak RSS"),
    ] {
        assert!(measured(w, name) > 0.0, "{name} of {w}");
    }
    // Requests can never be fewer than the lower bound; W2 writes exactly the drift
    // (5 instances × 20 accounts × 1 % = 1 each).
    for w in [w1, w2] {
        let m = metric(w, "requests");
        assert!(m["measured"].as_f64() >= m["bound"].as_f64(), "{m}");
    }
    assert_eq!(measured(w2, "writes"), 5.0);
    assert_eq!(metric(w2, "writes")["bound"], 5.0);
    let baselines = report["baselines"].as_array().expect("baselines");
    assert_eq!(baselines.len(), 2);
    for b in baselines {
        assert_eq!(b["status"], "skipped", "{b}");
        assert_eq!(b["reason"], "--skip-baselines", "{b}");
    }
    assert!(
        table.contains(
            "B1 sequential script (Python http.client, keep-alive): skipped: --skip-baselines"
        ),
        "{table}"
    );
    // The table can be printed again from the JSON alone.
    let again = Command::new(env!("CARGO_BIN_EXE_roster-bench"))
        .arg("--render")
        .arg(&json)
        .output()
        .expect("run roster-bench --render");
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), table);
}

#[test]
fn sequential_script_baseline_converges_the_apply_world() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (table, report) = bench(
        &["--quick", "--scale", "0.02", "--only", "B1", "--markdown"],
        &json,
    );
    assert!(table.starts_with("| workload | figure |"), "{table}");
    let ids: Vec<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["W2"], "B1 runs W2 to compare with");
    let b1 = &report["baselines"][0];
    assert_eq!(b1["id"], "B1");
    if b1["status"] == "skipped" {
        assert_eq!(b1["reason"], "python3 is not installed", "{b1}");
        return;
    }
    // 20 accounts per instance is below the quick sample of 50: the whole workload ran,
    // and the bench checked that the script wrote exactly the drifted accounts.
    assert_eq!(b1["status"], "ran", "{b1}");
    assert!(b1["wall_s"].as_f64().unwrap() > 0.0, "{b1}");
    assert!(b1["ratio"].as_f64().unwrap() > 0.0, "{b1}");
    // The 200× target is set for 10,000 accounts per instance, not for a smoke test.
    assert!(b1["target_ratio"].is_null(), "{b1}");
    assert!(
        b1["note"]
            .as_str()
            .unwrap()
            .contains("applies at 10000 accounts"),
        "{b1}"
    );
    assert!(table.contains("- B1 sequential script"), "{table}");
}
