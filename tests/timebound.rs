//! Time-bound access as a user runs it: the real binary, the simulators on loopback, and
//! instants passed with `--at`, so no test waits for the clock.

mod common;

use common::{user, World};
use roster::simulator::{SimConfig, SimKind};

/// A helpdesk where ana (a contractor leaving on 2026-12-31) and tom (joining on
/// 2027-01-04) are both live `active` and `inactive` as the folder wants them today.
async fn scheduled_world() -> World {
    let mut world = World::new();
    world
        .add(
            "helpdesk",
            SimConfig::new(
                SimKind::StatusApi,
                vec![user("ana", "active"), user("tom", "inactive")],
            ),
            "",
        )
        .await;
    world.write(
        "people.yaml",
        "users:
  - name: ana.contractor
    status: active
    until: 2026-12-31T18:00:00+01:00
    then: suspended
    accounts: { helpdesk: ana }
  - name: tom.joiner
    status: active
    from: 2027-01-04T08:00:00+01:00
    accounts: { helpdesk: tom }
",
    );
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_at_a_later_instant_shows_the_future_status_and_writes_nothing() {
    let world = scheduled_world().await;
    let before = world
        .roster(&[
            "plan",
            "--format",
            "json",
            "--at",
            "2026-12-05T00:00:00Z",
            "desired-state",
        ])
        .await;
    assert_eq!(before.code, 0, "{before:?}");
    let json = before.json();
    assert_eq!(json["changes"], serde_json::json!([]), "{json}");
    assert_eq!(
        json["upcoming"],
        serde_json::json!([
            {"provider": "helpdesk", "user": "ana.contractor", "account_id": "ana", "at": "2026-12-31T17:00:00Z", "to": "suspended"}
        ]),
        "tom's start is beyond the 30-day horizon"
    );

    let after = world
        .roster(&[
            "plan",
            "--format",
            "json",
            "--at",
            "2027-01-04T07:00:00Z",
            "--detailed-exitcode",
            "desired-state",
        ])
        .await;
    assert_eq!(after.code, 2, "changes pending: {after:?}");
    let json = after.json();
    let changes: Vec<(&str, &str, &str)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap(),
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("ana.contractor", "active", "suspended"),
            ("tom.joiner", "inactive", "active")
        ]
    );
    assert_eq!(json["upcoming"], serde_json::json!([]));
    assert!(
        after
            .stderr
            .contains("evaluated at 2027-01-04T07:00:00Z (--at), not now"),
        "{}",
        after.stderr
    );
    assert_eq!(world.write_count(), 0, "plan --at never writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upcoming_follows_the_horizon_in_every_format() {
    let world = scheduled_world().await;
    let args = |horizon: &'static str, format: &'static str| {
        [
            "plan",
            "--at",
            "2026-12-20T00:00:00Z",
            "--upcoming",
            horizon,
            "--format",
            format,
            "desired-state",
        ]
    };
    let json = world.roster(&args("30d", "json")).await.json();
    let at: Vec<&str> = json["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["at"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["2026-12-31T17:00:00Z", "2027-01-04T07:00:00Z"]);
    let none = world.roster(&args("0s", "json")).await.json();
    assert_eq!(none["upcoming"], serde_json::json!([]));
    let week = world.roster(&args("7d", "json")).await.json();
    assert_eq!(
        week["upcoming"],
        serde_json::json!([]),
        "both are more than 7 days away"
    );

    let markdown = world.roster(&args("30d", "markdown")).await;
    assert_eq!(markdown.code, 0, "{markdown:?}");
    assert!(
        markdown.stdout.contains(
            "- on 2026-12-31 17:00 UTC **ana.contractor** becomes **suspended** at helpdesk\n"
        ),
        "{}",
        markdown.stdout
    );
    let text = world.roster(&args("30d", "text")).await;
    assert!(
        text.stdout
            .contains("  @ 2027-01-04 07:00 UTC  tom.joiner      becomes active at helpdesk\n"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_without_an_offset_is_refused_with_its_position() {
    let world = scheduled_world().await;
    world.write(
        "more.yaml",
        "users:\n  - name: x\n    status: active\n    until: 2026-12-31T18:00:00\n    accounts: { helpdesk: x }\n",
    );
    let run = world.roster(&["validate", "desired-state"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "more.yaml:4:12: 'until' of user 'x': '2026-12-31T18:00:00' has no UTC offset"
        ),
        "{}",
        run.stderr
    );
    let bad_at = world
        .roster(&["plan", "--at", "2026-12-31T18:00:00", "desired-state"])
        .await;
    assert_eq!(bad_at.code, 64, "a usage error: {bad_at:?}");
    assert_eq!(world.request_count(), 0, "nothing was read");
}
