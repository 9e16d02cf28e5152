//! `roster status` as a user runs it: the real binary against the simulators on loopback.

mod common;

use common::{user, World};
use roster::simulator::{SimConfig, SimKind};

/// A helpdesk where ana drifts (live active, desired inactive), bob is in sync and
/// `=cmd` (a hostile id) is missing; and a portal, unless `portal_down`, in sync.
async fn drifting_world(portal_down: bool) -> World {
    let mut world = World::new();
    world
        .add(
            "helpdesk",
            SimConfig::new(
                SimKind::StatusApi,
                vec![user("ana", "active"), user("bob", "active")],
            ),
            "",
        )
        .await;
    world
        .add(
            "portal",
            SimConfig::new(SimKind::SuspendApi, vec![user("p-ana", "inactive")]),
            "",
        )
        .await;
    world.write(
        "people.yaml",
        "users:
  - name: ana
    status: inactive
    accounts: { helpdesk: ana, portal: p-ana }
  - name: bob
    status: active
    accounts: { helpdesk: bob }
  - name: cy
    status: active
    accounts: { helpdesk: \"=cmd\" }
",
    );
    if portal_down {
        if let Some(portal) = world.sims.remove("portal") {
            portal.shutdown().await;
        }
    }
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_in_all_three_formats_and_no_write() {
    let world = drifting_world(false).await;
    let json = world
        .roster(&["status", "--format", "json", "desired-state"])
        .await;
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(
        json.json(),
        serde_json::json!({
            "format_version": 1,
            "accounts": [
                {"user": "ana", "provider": "helpdesk", "account_id": "ana", "desired": "inactive", "live": "active", "in_sync": false},
                {"user": "ana", "provider": "portal", "account_id": "p-ana", "desired": "inactive", "live": "inactive", "in_sync": true},
                {"user": "bob", "provider": "helpdesk", "account_id": "bob", "desired": "active", "live": "active", "in_sync": true},
                {"user": "cy", "provider": "helpdesk", "account_id": "=cmd", "desired": "active", "live": "not_found", "in_sync": false}
            ],
            "unmanaged": [],
            "errors": []
        })
    );
    let csv = world
        .roster(&["status", "--format", "csv", "desired-state"])
        .await;
    assert_eq!(csv.code, 0, "{csv:?}");
    assert_eq!(
        csv.stdout,
        "user,provider,account_id,desired,live,in_sync\r\n\
         ana,helpdesk,ana,inactive,active,false\r\n\
         ana,portal,p-ana,inactive,inactive,true\r\n\
         bob,helpdesk,bob,active,active,true\r\n\
         cy,helpdesk,'=cmd,active,not_found,false\r\n"
    );
    let text = world.roster(&["status", "desired-state"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.starts_with(
            "ana\n  ! helpdesk  ana    desired inactive  live active     drift\n    portal    p-ana  desired inactive  live inactive\n\nbob\n"
        ),
        "{}",
        text.stdout
    );
    assert!(text
        .stdout
        .ends_with("Status: 4 accounts, 2 in sync, 2 drifting, 0 errors.\n"));
    assert_eq!(world.write_count(), 0, "status never writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_only_a_user_filter_and_a_provider_narrow_the_output() {
    let world = drifting_world(false).await;
    let accounts = |run: &common::Run| -> Vec<String> {
        run.json()["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{}@{}",
                    a["user"].as_str().unwrap(),
                    a["provider"].as_str().unwrap()
                )
            })
            .collect()
    };
    let drift = world
        .roster(&[
            "status",
            "--format",
            "json",
            "--drift-only",
            "desired-state",
        ])
        .await;
    assert_eq!(accounts(&drift), ["ana@helpdesk", "cy@helpdesk"]);
    let ana = world
        .roster(&["status", "--format", "json", "desired-state", "ana"])
        .await;
    assert_eq!(accounts(&ana), ["ana@helpdesk", "ana@portal"]);
    let portal = world
        .roster(&[
            "status",
            "--format",
            "json",
            "--provider",
            "portal",
            "desired-state",
        ])
        .await;
    assert_eq!(accounts(&portal), ["ana@portal"]);
    let bob_portal = world.sims["portal"].requests().len();
    let bob = world
        .roster(&["status", "--format", "json", "desired-state", "bob"])
        .await;
    assert_eq!(accounts(&bob), ["bob@helpdesk"]);
    assert_eq!(
        world.sims["portal"].requests().len(),
        bob_portal,
        "an instance where the selected users have no account is not read"
    );
    let nobody = world.roster(&["status", "desired-state", "zed"]).await;
    assert_eq!(nobody.code, 1, "{nobody:?}");
    assert!(
        nobody.stderr.contains("no such user in the folder: zed"),
        "{}",
        nobody.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_be_read_exits_1_after_printing_the_rest() {
    let world = drifting_world(true).await;
    let json = world
        .roster(&["status", "--format", "json", "desired-state"])
        .await;
    assert_eq!(json.code, 1, "{json:?}");
    let value = json.json();
    assert_eq!(value["accounts"].as_array().unwrap().len(), 3, "{value}");
    assert_eq!(value["errors"][0]["provider"], "portal");
    assert!(value["errors"][0].get("user").is_none());
    let text = world.roster(&["status", "desired-state"]).await;
    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .contains("Errors (not read):\n  portal: nothing was read: "),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("bob\n"), "the rest is still printed");
    let csv = world
        .roster(&["status", "--format", "csv", "desired-state"])
        .await;
    assert_eq!(csv.code, 1);
    assert_eq!(csv.stdout.lines().count(), 4, "header and three accounts");
    assert!(
        csv.stderr.contains("portal: nothing was read"),
        "{}",
        csv.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_lists_exactly_the_accounts_no_file_claims() {
    let mut world = World::new();
    let mut carla = user("c-uuid", "active");
    carla.name = "carla".into();
    let mut eve = user("e-uuid", "inactive");
    eve.name = "eve".into();
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, vec![user("ana", "active"), carla, eve]),
            "",
        )
        .await;
    world
        .add(
            "portal",
            SimConfig::new(
                SimKind::SuspendApi,
                vec![user("p-ana", "inactive"), user("p-zed", "active")],
            ),
            "",
        )
        .await;
    world
        .add(
            "backup",
            SimConfig::new(SimKind::Acronis, vec![user("b-ana", "active")]),
            "",
        )
        .await;
    world.write(
        "people.yaml",
        "users:
  - name: ana
    status: active
    accounts: { helpdesk: ana, portal: p-ana, backup: b-ana }
  - name: carla
    status: active
    accounts: { helpdesk: carla }
",
    );
    let json = world
        .roster(&["status", "--unmanaged", "--format", "json", "desired-state"])
        .await;
    assert_eq!(json.code, 0, "nothing failed to read: {json:?}");
    let doc = json.json();
    assert_eq!(
        doc["unmanaged"],
        serde_json::json!([
            {"provider": "helpdesk", "account_id": "e-uuid", "login": "eve", "live": "inactive"},
            {"provider": "portal", "account_id": "p-zed", "login": "p-zed-name", "live": "active"}
        ]),
        "carla is claimed by her identifier, ana everywhere by id; suspend-api gives an email (its simulator serves the name there) and no login: {doc}"
    );
    assert_eq!(
        doc["not_listed"][0]["provider"], "backup",
        "an acronis instance without tenant_id says it cannot list: {doc}"
    );

    // A user filter narrows the accounts, never what counts as claimed.
    let text = world
        .roster(&["status", "--unmanaged", "desired-state", "ana"])
        .await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(!text.stdout.contains("carla\n"), "{}", text.stdout);
    assert!(
        text.stdout.contains("  ? helpdesk  e-uuid  eve"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("c-uuid"),
        "carla's account is claimed by a file even when only ana is shown: {}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("  backup: unmanaged accounts unknown: "),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(", 2 unmanaged, 0 errors."),
        "{}",
        text.stdout
    );
    let writes: usize = world.sims.values().map(|s| s.write_count()).sum();
    assert_eq!(writes, 0, "status never writes");
}
