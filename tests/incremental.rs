//! Targeted passes of `roster run`: a folder change re-reads only the accounts it
//! touched, when that is provably the same as a full pass and cheaper; otherwise the
//! daemon lists everything as before. The real binary against the simulators, judged
//! by the simulators' request logs.

mod common;

use common::*;
use roster::simulator::{RecordedRequest, SimConfig, SimKind, SimUser, Simulator};
use std::time::Duration;

/// `count` users `<prefix>00000`... all active, at the provider and in the folder.
fn people(prefix: &str, count: usize) -> Vec<SimUser> {
    (0..count)
        .map(|i| user(&format!("{prefix}{i:05}"), "active"))
        .collect()
}

/// One user file per thousand accounts, so an edit rewrites one file, as a commit does.
/// `statuses` overrides the status of some accounts by id.
fn write_people(world: &World, instance: &str, users: &[SimUser], statuses: &[(&str, &str)]) {
    for (file, chunk) in users.chunks(1000).enumerate() {
        let mut yaml = String::from("users:\n");
        for u in chunk {
            let status = statuses
                .iter()
                .find(|(id, _)| *id == u.id)
                .map_or("active", |(_, s)| *s);
            yaml.push_str(&format!(
                "  - name: person-{}\n    status: {status}\n    accounts: {{ {instance}: {} }}\n",
                u.id, u.id
            ));
        }
        world.write(&format!("people/{file:02}.yaml"), &yaml);
    }
}

/// A world with one instance `name` of `kind` holding `users`, mirrored by the folder.
async fn world_with(kind: SimKind, name: &str, users: &[SimUser], extra: &str) -> World {
    let mut world = World::new();
    world
        .add(name, SimConfig::new(kind, users.to_vec()), extra)
        .await;
    write_people(&world, name, users, &[]);
    world
}

async fn start(world: &World, interval: &str) -> Daemon {
    let folder = world.folder();
    let folder = folder.to_str().expect("utf-8 path");
    let daemon = Daemon::spawn(world.command(&[
        "run",
        folder,
        "--listen",
        "127.0.0.1:0",
        "--interval",
        interval,
    ]))
    .await;
    eventually("ready", Duration::from_secs(30), || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    daemon
}

/// Whether a request reads the whole list of `kind` (a page of it).
fn is_listing(kind: SimKind, r: &RecordedRequest) -> bool {
    match kind {
        SimKind::Zitadel => r.path.ends_with("/_search"),
        SimKind::SuspendApi => r.method == "GET" && r.path == "/v1/users",
        SimKind::StatusApi => r.method == "GET" && r.path == "/users",
        SimKind::Acronis => {
            r.method == "GET"
                && r.path == "/api/2/users"
                && r.query
                    .as_deref()
                    .is_some_and(|q| q.contains("%2C") || q.contains(','))
        }
        _ => false,
    }
}

/// Whether a request reads exactly account `id` and nothing else.
fn reads_one(kind: SimKind, r: &RecordedRequest, id: &str) -> bool {
    r.method == "GET"
        && match kind {
            SimKind::Zitadel => r.path == format!("/resources/v3alpha/users/{id}"),
            SimKind::SuspendApi => r.path == format!("/v1/users/{id}"),
            SimKind::StatusApi => r.path == format!("/users/{id}"),
            SimKind::Acronis => {
                r.path == "/api/2/users" && r.query.as_deref() == Some(&format!("uuids={id}"))
            }
            _ => false,
        }
}

/// Requests other than the Acronis token exchange (a reconnect after each reload).
fn api_requests(sim: &Simulator) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/idp/token"))
        .collect()
}

/// A one-user edit at an instance with `count` accounts: one targeted read of that
/// account, then its write; no list request. Then removing a user makes no request.
async fn a_one_user_edit_reads_only_that_account(kind: SimKind, count: usize) {
    let users = people("p", count);
    let world = world_with(kind, "app", &users, "").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "1h").await;
    assert!(
        api_requests(sim).iter().any(|r| is_listing(kind, r)),
        "the first pass lists everything"
    );
    sim.clear_requests();

    let target = &users[count / 2].id;
    write_people(&world, "app", &users, &[(target.as_str(), "inactive")]);
    eventually("the write", Duration::from_secs(10), || async {
        sim.write_count() == 1
    })
    .await;
    daemon
        .wait_log(
            &["pass finished", "folder_changed", "success"],
            Duration::from_secs(5),
        )
        .await;
    let requests = api_requests(sim);
    assert!(
        !requests.iter().any(|r| is_listing(kind, r)),
        "{kind:?}: a one-user edit listed the instance: {requests:#?}"
    );
    assert_eq!(requests.len(), 2, "{kind:?}: {requests:#?}");
    assert!(reads_one(kind, &requests[0], target), "{requests:#?}");
    assert!(requests[1].is_write && requests[1].path.contains(target.as_str()));
    assert_eq!(sim.user(target).map(|u| u.status), Some("inactive".into()));
    assert_eq!(
        daemon
            .metric(r#"roster_targeted_passes_total{instance="app"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        daemon
            .metric(r#"roster_pass_accounts_read{instance="app"}"#)
            .await,
        Some(1.0)
    );
    eventually(
        "the account counts stay those of the whole instance",
        Duration::from_secs(5),
        || async {
            daemon
                .metric(r#"roster_accounts{instance="app",state="in_sync"}"#)
                .await
                == Some(count as f64)
        },
    )
    .await;

    // Removing a user reads nothing and writes nothing: there is nothing to ask.
    sim.clear_requests();
    let kept: Vec<SimUser> = users
        .iter()
        .filter(|u| u.id != users[0].id)
        .cloned()
        .collect();
    write_people(&world, "app", &kept, &[(target.as_str(), "inactive")]);
    eventually("the second pass", Duration::from_secs(10), || async {
        daemon
            .metric(r#"roster_accounts{instance="app",state="in_sync"}"#)
            .await
            == Some(count as f64 - 1.0)
    })
    .await;
    assert_eq!(
        daemon
            .metric(r#"roster_targeted_passes_total{instance="app"}"#)
            .await,
        Some(2.0)
    );
    assert!(api_requests(sim).is_empty(), "{:#?}", api_requests(sim));
    assert_no_secrets(&world, &daemon.log());
    assert_no_secrets(&world, &daemon.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_user_edit_at_zitadel_with_5000_accounts_reads_only_that_account() {
    a_one_user_edit_reads_only_that_account(SimKind::Zitadel, 5000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_user_edit_at_suspend_api_reads_only_that_account() {
    a_one_user_edit_reads_only_that_account(SimKind::SuspendApi, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_user_edit_at_acronis_reads_only_that_account() {
    a_one_user_edit_reads_only_that_account(SimKind::Acronis, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_many_users_lists_the_instance_as_before() {
    // 60 read-ones would cost more than the 20 pages of the listing.
    let users = people("m", 2000);
    let world = world_with(SimKind::Zitadel, "app", &users, "    max_changes: 100\n").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "1h").await;
    sim.clear_requests();
    let leavers: Vec<(&str, &str)> = users
        .iter()
        .step_by(20)
        .take(60)
        .map(|u| (u.id.as_str(), "inactive"))
        .collect();
    write_people(&world, "app", &users, &leavers);
    eventually("60 writes", Duration::from_secs(15), || async {
        sim.write_count() == 60
    })
    .await;
    let requests = sim.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| is_listing(SimKind::Zitadel, r))
            .count(),
        20,
        "a full read: every page once"
    );
    assert!(!requests
        .iter()
        .any(|r| r.method == "GET" && r.path.starts_with("/resources/v3alpha/users/")));
    assert_eq!(
        daemon.metric_sum("roster_targeted_passes_total", &[]).await,
        0.0
    );
    assert_eq!(
        daemon
            .metric(r#"roster_pass_accounts_read{instance="app"}"#)
            .await,
        Some(2000.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_pass_never_gets_past_the_safety_guard() {
    let users = people("g", 500);
    let world = world_with(SimKind::Zitadel, "app", &users, "    max_changes: 2\n").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "1h").await;

    // Three leavers against a limit of two: refused exactly as a full pass refuses.
    sim.clear_requests();
    let mut leavers: Vec<(&str, &str)> = users[..3]
        .iter()
        .map(|u| (u.id.as_str(), "inactive"))
        .collect();
    write_people(&world, "app", &users, &leavers);
    daemon
        .wait_log(
            &["safety guard", "changes=3", "limit=2"],
            Duration::from_secs(10),
        )
        .await;
    assert!(sim
        .requests()
        .iter()
        .any(|r| is_listing(SimKind::Zitadel, r)));
    eventually(
        "readyz names the refusal of 3",
        Duration::from_secs(5),
        || async {
            let (status, body) = daemon.get("/readyz").await;
            status == 503 && body.contains("app (3 changes, max_changes 2")
        },
    )
    .await;

    // One more leaver: alone it is under the limit, but a full pass counts all four
    // changes, so this pass is a full one and is refused too. No write, ever.
    sim.clear_requests();
    leavers.push((users[3].id.as_str(), "inactive"));
    write_people(&world, "app", &users, &leavers);
    daemon
        .wait_log(
            &["safety guard", "changes=4", "limit=2"],
            Duration::from_secs(10),
        )
        .await;
    assert!(sim
        .requests()
        .iter()
        .any(|r| is_listing(SimKind::Zitadel, r)));
    assert_eq!(sim.write_count(), 0);
    assert_eq!(
        daemon.metric_sum("roster_targeted_passes_total", &[]).await,
        0.0
    );
    eventually(
        "readyz names the refusal of 4",
        Duration::from_secs(5),
        || async {
            let (status, body) = daemon.get("/readyz").await;
            status == 503 && body.contains("app (4 changes, max_changes 2")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_providers_yaml_reads_everything() {
    let users = people("c", 500);
    let world = world_with(SimKind::Zitadel, "app", &users, "").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "1h").await;
    sim.clear_requests();
    // Drift made by hand, then an edit of the instance's settings only: the pass that
    // follows reads the whole list (so it finds the drift and corrects it).
    assert!(sim.set_user_status(&users[7].id, "inactive"));
    let providers = world.folder().join("providers.yaml");
    let text = std::fs::read_to_string(&providers).unwrap();
    assert!(text.contains("    kind: zitadel\n"), "{text}");
    world.write(
        "providers.yaml",
        &text.replacen(
            "    kind: zitadel\n",
            "    kind: zitadel\n    max_changes: 30\n",
            1,
        ),
    );
    eventually("the write", Duration::from_secs(10), || async {
        sim.write_count() == 1
    })
    .await;
    assert_eq!(
        sim.user(&users[7].id).map(|u| u.status),
        Some("active".into())
    );
    let requests = sim.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| is_listing(SimKind::Zitadel, r))
            .count(),
        5,
        "{requests:#?}"
    );
    // The write lands before its pass records itself: wait for the record.
    eventually("the pass is recorded", Duration::from_secs(5), || async {
        daemon
            .metric_sum("roster_passes_total", &[r#"reason="folder_changed""#])
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        daemon.metric_sum("roster_targeted_passes_total", &[]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interval_pass_still_lists_everything() {
    let users = people("i", 300);
    let world = world_with(SimKind::SuspendApi, "app", &users, "").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "3s").await;
    sim.clear_requests();
    write_people(&world, "app", &users, &[(users[1].id.as_str(), "inactive")]);
    eventually("the targeted pass", Duration::from_secs(10), || async {
        daemon
            .metric(r#"roster_targeted_passes_total{instance="app"}"#)
            .await
            == Some(1.0)
    })
    .await;
    // Drift made by hand is found by the interval pass, which reads the whole list.
    assert!(sim.set_user_status(&users[2].id, "inactive"));
    eventually("the interval pass", Duration::from_secs(10), || async {
        daemon
            .metric_sum("roster_passes_total", &[r#"reason="interval""#])
            .await
            >= 1.0
    })
    .await;
    eventually("drift corrected", Duration::from_secs(5), || async {
        sim.user(&users[2].id).map(|u| u.status) == Some("active".into())
    })
    .await;
    assert!(
        sim.requests()
            .iter()
            .filter(|r| is_listing(SimKind::SuspendApi, r))
            .count()
            >= 3,
        "the interval pass read every page"
    );
    assert_eq!(
        daemon
            .metric(r#"roster_pass_accounts_read{instance="app"}"#)
            .await,
        Some(300.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_user_edit_at_status_api_reads_only_that_account() {
    a_one_user_edit_reads_only_that_account(SimKind::StatusApi, 1500).await;
}

/// A status-api world of 300 users, plus `extra` users at the provider only, and the
/// daemon after its first (successful) pass, with the request log cleared.
async fn status_api_after_a_listing(extra: Vec<SimUser>) -> (World, Vec<SimUser>, Daemon) {
    let users = people("s", 300);
    let mut world = World::new();
    let at_provider: Vec<SimUser> = users.iter().cloned().chain(extra).collect();
    world
        .add("app", SimConfig::new(SimKind::StatusApi, at_provider), "")
        .await;
    write_people(&world, "app", &users, &[]);
    let daemon = start(&world, "1h").await;
    world.sims["app"].clear_requests();
    (world, users, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_reads_an_account_named_by_its_identifier_alone() {
    let (world, users, _daemon) = status_api_after_a_listing(Vec::new()).await;
    let sim = &world.sims["app"];
    // The folder names one account by its identifier instead of its id: the listing
    // matched that key to one user too.
    let by_name = format!("{}-name", users[4].id);
    let mut kept = users.clone();
    kept[4].id = by_name.clone();
    write_people(&world, "app", &kept, &[(by_name.as_str(), "suspended")]);
    eventually("the write", Duration::from_secs(10), || async {
        sim.write_count() == 1
    })
    .await;
    let requests = api_requests(sim);
    assert!(!requests.iter().any(|r| is_listing(SimKind::StatusApi, r)));
    assert!(
        reads_one(SimKind::StatusApi, &requests[0], &by_name),
        "{requests:#?}"
    );
    assert_eq!(
        sim.user(&users[4].id).map(|u| u.status),
        Some("suspended".into())
    );
    // The rename (id to identifier) touched that account only: one read, one write.
    assert_eq!(requests.len(), 2, "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_lists_when_the_key_was_ambiguous_in_the_last_listing() {
    // At the provider, "twin" is the id of one user and the identifier of another.
    let mut other = user("s-other", "active");
    other.name = "twin".into();
    let (world, users, daemon) =
        status_api_after_a_listing(vec![user("twin", "active"), other]).await;
    let sim = &world.sims["app"];
    let mut with_twin = users.clone();
    with_twin.push(user("twin", "active"));
    write_people(&world, "app", &with_twin, &[("twin", "inactive")]);
    // 302 users: four pages. The listing shows the ambiguity: no write to either user.
    listed_not_read(sim, &daemon, "twin", 4).await;
}

/// After a folder change that names `key`, the pass listed the status-api instance
/// (`pages` list requests), read no single user by `key`, wrote nothing and was not
/// counted as targeted.
async fn listed_not_read(sim: &Simulator, daemon: &Daemon, key: &str, pages: usize) {
    daemon
        .wait_log(
            &["pass finished", "folder_changed"],
            Duration::from_secs(10),
        )
        .await;
    let requests = api_requests(sim);
    assert_eq!(
        requests
            .iter()
            .filter(|r| is_listing(SimKind::StatusApi, r))
            .count(),
        pages,
        "{requests:#?}"
    );
    assert!(!requests
        .iter()
        .any(|r| reads_one(SimKind::StatusApi, r, key)));
    assert_eq!(sim.write_count(), 0);
    assert_eq!(
        daemon.metric_sum("roster_targeted_passes_total", &[]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_lists_for_a_key_its_last_listing_never_saw() {
    let (world, users, daemon) = status_api_after_a_listing(Vec::new()).await;
    let sim = &world.sims["app"];
    // A key the provider has never shown: only a listing can say it is not there (or
    // that two users carry it).
    let mut with_ghost = users.clone();
    with_ghost.push(user("s-ghost", "active"));
    write_people(&world, "app", &with_ghost, &[("s-ghost", "inactive")]);
    listed_not_read(sim, &daemon, "s-ghost", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_the_next_folder_change_reads_everything() {
    use roster::simulator::{FaultAction, FaultTarget, Faults};
    let users = people("f", 500);
    let world = world_with(SimKind::Zitadel, "app", &users, "").await;
    let sim = &world.sims["app"];
    let daemon = start(&world, "1h").await;
    // Every write fails: the targeted pass for the first edit ends in an error.
    sim.set_faults(Faults::always(
        FaultTarget::Writes,
        FaultAction::Status {
            code: 422,
            retry_after: None,
        },
    ));
    let mut edits = vec![(users[1].id.as_str(), "inactive")];
    write_people(&world, "app", &users, &edits);
    eventually("the failed pass", Duration::from_secs(10), || async {
        daemon
            .metric_sum(
                "roster_passes_total",
                &[r#"reason="folder_changed""#, r#"result="error""#],
            )
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        daemon
            .metric(r#"roster_targeted_passes_total{instance="app"}"#)
            .await,
        Some(1.0)
    );
    // The next edit must not leave the failed write to a targeted pass that skips it:
    // a full pass reads everything and makes both writes.
    sim.set_faults(Faults::default());
    sim.clear_requests();
    edits.push((users[2].id.as_str(), "inactive"));
    write_people(&world, "app", &users, &edits);
    eventually("both writes", Duration::from_secs(10), || async {
        sim.user(&users[1].id).map(|u| u.status) == Some("inactive".into())
            && sim.user(&users[2].id).map(|u| u.status) == Some("inactive".into())
    })
    .await;
    assert!(sim
        .requests()
        .iter()
        .any(|r| is_listing(SimKind::Zitadel, r)));
    assert_eq!(
        daemon
            .metric(r#"roster_targeted_passes_total{instance="app"}"#)
            .await,
        Some(1.0)
    );
}
