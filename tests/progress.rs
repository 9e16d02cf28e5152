//! The progress display counts what each instance does in a real `plan` and `apply`
//! (through the library, against a simulator on loopback), and the binary draws nothing
//! when stderr is not a terminal.

mod common;

use roster::apply::{self, ApplyOptions};
use roster::progress::Progress;
use roster::reconcile;
use roster::simulator::{SimConfig, SimKind, Simulator};
use std::sync::Arc;

#[tokio::test]
async fn counts_the_reads_and_writes_of_a_plan_and_its_apply() {
    let users = (0..250)
        .map(|i| common::user(&format!("u{i}"), "active"))
        .collect();
    let mut config = SimConfig::new(SimKind::StatusApi, users);
    config.token = common::distinctive_secret();
    let sim = Simulator::start(config.clone()).await.expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("desired-state");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &config.token).expect("token");
    std::fs::write(
        folder.join("providers.yaml"),
        format!(
            "providers:\n  helpdesk:\n    kind: status-api\n    base_url: {}\n    auth: {{ bearer_token_file: {} }}\n",
            sim.base_url(),
            token_file.display()
        ),
    )
    .expect("providers.yaml");
    std::fs::write(
        folder.join("people.yaml"),
        "users:\n  - name: a\n    status: inactive\n    accounts: { helpdesk: u1 }\n  - name: b\n    status: inactive\n    accounts: { helpdesk: u2 }\n  - name: c\n    status: active\n    accounts: { helpdesk: u3 }\n",
    )
    .expect("people.yaml");

    let desired = roster::desired::load(&folder, roster::provider::specs()).expect("valid folder");
    let selected = reconcile::select(&desired, &[]).expect("instances");
    let progress = Arc::new(Progress::new(["helpdesk"], false));
    let providers = reconcile::connect_all(&selected, progress.clone())
        .map_err(|e| format!("{e:?}"))
        .expect("connect");
    let plan = reconcile::plan_live(&desired, &providers, roster::plan::PlanTime::now()).await;
    assert_eq!(plan.changes.len(), 2, "{plan:?}");
    let after_plan = progress.counts("helpdesk").expect("counts");
    assert_eq!(after_plan.writes, 0);
    assert!(
        after_plan.reads >= 3,
        "250 users are more than one page: {after_plan:?}"
    );
    assert_eq!(after_plan.requests, sim.requests().len() as u64);

    let report = apply::apply(&plan, &desired, &providers, &ApplyOptions::default(), None).await;
    assert_eq!(report.exit_code(), 0);
    let after_apply = progress.counts("helpdesk").expect("counts");
    assert_eq!(after_apply.writes, 2, "{after_apply:?}");
    assert_eq!(after_apply.reads, after_plan.reads);
    assert_eq!(after_apply.requests, sim.requests().len() as u64);
}
