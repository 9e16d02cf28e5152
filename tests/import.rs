//! Listing every account an instance holds (`Provider::inventory`, what `roster import`
//! and `status --unmanaged` start from), and `roster import` as a user runs it: the real
//! adapters and the real binary against the simulators on loopback.

mod common;

use roster::desired::{AuthConfig, InstanceConfig, Location, SecretSource};
use roster::model::{HeldAccount, Inventory, RefusalScope};
use roster::provider::http::NoObserver;
use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn sim_user(id: &str, name: &str, status: &str, privileged: bool) -> SimUser {
    SimUser {
        id: id.to_string(),
        name: name.to_string(),
        status: status.to_string(),
        privileged,
        version: 1,
    }
}

/// Connects the real adapter of `config.kind` to a simulator started from `config`, with
/// the given kind-specific settings; the secret travels in a file, as in production.
async fn connected(
    config: SimConfig,
    settings: &[(&str, &str)],
) -> (
    Simulator,
    Arc<dyn roster::provider::Provider>,
    tempfile::TempDir,
) {
    let sim = Simulator::start(config.clone()).await.expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &config.token).expect("secret file");
    let auth = match config.kind {
        SimKind::Acronis => {
            let id = dir.path().join("client-id");
            std::fs::write(&id, &config.client_id).expect("client id file");
            AuthConfig::ClientCredentials {
                client_id: SecretSource::File(id),
                client_secret: SecretSource::File(secret),
            }
        }
        _ => AuthConfig::Bearer(SecretSource::File(secret)),
    };
    let kind = roster::provider::kind(config.kind.name()).expect("kind");
    let instance = InstanceConfig {
        name: "x".into(),
        kind: &kind.spec,
        base_url: url::Url::parse(&sim.base_url()).expect("url"),
        auth,
        max_concurrency: 4,
        requests_per_second: None,
        timeout: Duration::from_secs(10),
        max_changes: 25,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ca_file: None,
        location: Location::default(),
    };
    let provider = roster::provider::connect(&instance, Arc::new(NoObserver)).expect("connect");
    (sim, provider, dir)
}

/// The inventory of an instance that can list, in the provider's order.
async fn listed(config: SimConfig, settings: &[(&str, &str)]) -> (Simulator, Vec<HeldAccount>) {
    let (sim, provider, _dir) = connected(config, settings).await;
    match provider.inventory().await.expect("inventory") {
        Inventory::Listed(accounts) => (sim, accounts),
        other => panic!("expected a list, got {other:?}"),
    }
}

/// `(id, aliases, login, email, status)` of each listed account.
type Identity = (String, Vec<String>, Option<String>, Option<String>, String);

fn identities(accounts: &[HeldAccount]) -> Vec<Identity> {
    accounts
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                a.aliases.clone(),
                a.login.clone(),
                a.email.clone(),
                a.live.status.to_string(),
            )
        })
        .collect()
}

fn identity(
    id: &str,
    aliases: &[&str],
    login: Option<&str>,
    email: Option<&str>,
    status: &str,
) -> Identity {
    (
        id.to_string(),
        aliases.iter().map(|a| a.to_string()).collect(),
        login.map(str::to_string),
        email.map(str::to_string),
        status.to_string(),
    )
}

#[tokio::test]
async fn atlan_lists_every_page_with_username_email_and_what_cannot_be_set() {
    let mut users: Vec<SimUser> = (0..230)
        .map(|i| sim_user(&format!("u{i:03}"), &format!("user{i:03}"), "active", false))
        .collect();
    users[0] = sim_user("u000", "root", "active", true);
    users[1] = sim_user("u001", "ghost", "unknown", false);
    let (sim, accounts) = listed(SimConfig::new(SimKind::Atlan, users), &[]).await;
    assert_eq!(accounts.len(), 230);
    assert_eq!(sim.read_count(), 3, "three pages of 100, each read once");
    let by_id: BTreeMap<&str, &HeldAccount> = accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let root = by_id["u000"];
    assert_eq!(
        identities(std::slice::from_ref(root)),
        [identity(
            "u000",
            &[],
            Some("root"),
            Some("root@example.com"),
            "active"
        )]
    );
    let admin = root.live.refusal.as_ref().expect("admin refusal");
    assert_eq!(admin.applies_to, RefusalScope::Deactivation);
    let ghost = &by_id["u001"].live;
    assert_eq!(ghost.status.as_str(), "unknown");
    assert_eq!(
        ghost.refusal.as_ref().map(|r| r.applies_to),
        Some(RefusalScope::AnyChange)
    );
    assert_eq!(sim.write_count(), 0);
}

#[tokio::test]
async fn zitadel_lists_username_and_email_where_present_and_locked_users_as_such() {
    let users = vec![
        sim_user("1", "anna", "active", false),
        sim_user("2", "ci-bot", "inactive", false),
        sim_user("3", "", "locked", false),
    ];
    let (_sim, accounts) = listed(SimConfig::new(SimKind::Zitadel, users), &[]).await;
    assert_eq!(
        identities(&accounts),
        [
            identity("1", &[], Some("anna"), Some("anna@example.com"), "active"),
            identity("2", &[], Some("ci-bot"), None, "inactive"),
            identity("3", &[], None, None, "locked"),
        ]
    );
    let locked = accounts[2].live.refusal.as_ref().expect("locked refusal");
    assert_eq!(locked.applies_to, RefusalScope::AnyChange);
    assert!(locked.reason.contains("locked"), "{}", locked.reason);
}

#[tokio::test]
async fn acronis_lists_the_tenant_then_reads_its_users_in_batches() {
    let users: Vec<SimUser> = (0..150)
        .map(|i| {
            sim_user(
                &format!("id-{i:03}"),
                &format!("login{i:03}"),
                "active",
                false,
            )
        })
        .collect();
    let config = SimConfig::new(SimKind::Acronis, users);
    let tenant = config.tenant_id.clone();
    let (sim, accounts) = listed(config, &[("tenant_id", &tenant)]).await;
    assert_eq!(accounts.len(), 150);
    assert_eq!(
        identities(&accounts[..1]),
        [identity(
            "id-000",
            &[],
            Some("login000"),
            Some("login000@example.com"),
            "active"
        )]
    );
    assert_eq!(accounts[0].live.revision, Some(1));
    let paths: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            format!("/api/2/tenants/{tenant}/users"),
            "/api/2/users".to_string(),
            "/api/2/users".to_string()
        ],
        "one tenant list, then two batch reads of at most 100"
    );
}

#[tokio::test]
async fn acronis_without_tenant_id_cannot_list_and_says_which_setting_is_missing() {
    let config = SimConfig::new(SimKind::Acronis, vec![sim_user("a", "a", "active", false)]);
    let (sim, provider, _dir) = connected(config, &[]).await;
    match provider.inventory().await.expect("inventory") {
        Inventory::CannotList { reason } => assert!(reason.contains("tenant_id"), "{reason}"),
        other => panic!("expected CannotList, got {other:?}"),
    }
    assert_eq!(sim.requests().len(), 0, "nothing is asked of the provider");
}

#[tokio::test]
async fn acronis_with_an_unknown_tenant_is_an_error_naming_the_setting() {
    let config = SimConfig::new(SimKind::Acronis, vec![sim_user("a", "a", "active", false)]);
    let (_sim, provider, _dir) = connected(config, &[("tenant_id", "no-such-tenant")]).await;
    let error = provider.inventory().await.expect_err("unknown tenant");
    let message = error.to_string();
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(message.contains("tenant_id"), "{message}");
}

#[tokio::test]
async fn status_api_lists_the_identifier_as_alias_and_login() {
    let users = vec![
        sim_user("9f1c", "ana", "suspended", false),
        sim_user("7b2d", "Bob@Corp.example", "onboarding", false),
    ];
    let (_sim, accounts) = listed(SimConfig::new(SimKind::StatusApi, users), &[]).await;
    assert_eq!(
        identities(&accounts),
        [
            identity(
                "9f1c",
                &["ana"],
                Some("ana"),
                Some("ana@example.com"),
                "suspended"
            ),
            identity(
                "7b2d",
                &["Bob@Corp.example"],
                Some("Bob@Corp.example"),
                Some("Bob@Corp.example"),
                "onboarding"
            ),
        ]
    );
}

#[tokio::test]
async fn suspend_api_follows_the_cursor_and_lists_emails_and_the_owner() {
    let mut users: Vec<SimUser> = (0..120)
        .map(|i| {
            sim_user(
                &format!("p{i:03}"),
                &format!("p{i:03}@corp.example"),
                "active",
                false,
            )
        })
        .collect();
    users[5] = sim_user("p005", "owner@corp.example", "active", true);
    let config = SimConfig::new(SimKind::SuspendApi, users);
    let tenant = config.tenant_id.clone();
    let (sim, accounts) = listed(config, &[("tenant_id", &tenant)]).await;
    assert_eq!(accounts.len(), 120);
    assert_eq!(sim.read_count(), 2, "two cursor pages");
    let owner = accounts.iter().find(|a| a.id == "p005").expect("owner");
    assert_eq!(owner.email.as_deref(), Some("owner@corp.example"));
    assert_eq!(owner.login, None);
    assert_eq!(
        owner.live.refusal.as_ref().map(|r| r.applies_to),
        Some(RefusalScope::Deactivation)
    );
}

/// A world of five instances (providers.yaml lists them in name order): anna at four of
/// them under one email in different cases, a machine user `ci-bot` whose ZITADEL
/// account has no email (joined by login), an Atlan admin, an Atlan `enabled: null`, a
/// locked ZITADEL user, one email at two Atlan accounts, an Acronis instance without
/// `tenant_id`, and a helpdesk account that people.yaml already claims by identifier.
async fn team_world() -> common::World {
    let mut world = common::World::new();
    let atlan = vec![
        sim_user("a-anna", "anna.schmidt", "active", false),
        sim_user("a-ben", "ben", "active", true),
        sim_user("a-ghost", "ghost", "unknown", false),
        sim_user("a-team1", "team@example.com", "active", false),
        sim_user("a-team2", "Team@Example.com", "inactive", false),
    ];
    world
        .add("atlan", SimConfig::new(SimKind::Atlan, atlan), "")
        .await;
    world
        .add(
            "backup",
            SimConfig::new(
                SimKind::Acronis,
                vec![sim_user("b-1", "anna.schmidt", "active", false)],
            ),
            "",
        )
        .await;
    let helpdesk = vec![
        sim_user("h-anna", "Anna.Schmidt@Example.COM", "suspended", false),
        sim_user("h-ci", "ci-bot", "active", false),
        sim_user("h-cy", "cy", "risky", false),
    ];
    world
        .add("helpdesk", SimConfig::new(SimKind::StatusApi, helpdesk), "")
        .await;
    let vault = SimConfig::new(
        SimKind::Acronis,
        vec![sim_user("v-anna", "anna.schmidt", "inactive", false)],
    );
    let tenant = format!("    tenant_id: {}\n", vault.tenant_id);
    world.add("vault", vault, &tenant).await;
    let zitadel = vec![
        sim_user("100", "anna.schmidt", "active", false),
        sim_user("200", "ci-bot", "inactive", false),
        sim_user("300", "eve", "locked", false),
    ];
    world
        .add("zitadel", SimConfig::new(SimKind::Zitadel, zitadel), "")
        .await;
    world.write(
        "people.yaml",
        "users:\n  - name: cy\n    status: risky\n    accounts: { helpdesk: cy }\n",
    );
    world
}

fn read(world: &common::World, file: &str) -> String {
    std::fs::read_to_string(world.folder().join("imported").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `user -> [(instance, id, status)]` of the folder as Roster loads it.
fn loaded(world: &common::World) -> BTreeMap<String, Vec<(String, String, String)>> {
    let state = roster::desired::load(&world.folder(), roster::provider::specs())
        .expect("the folder loads");
    state
        .users
        .iter()
        .map(|u| {
            let accounts = u
                .accounts
                .iter()
                .map(|a| (a.instance.clone(), a.id.clone(), a.status.to_string()))
                .collect();
            (u.name.clone(), accounts)
        })
        .collect()
}

fn acc(instance: &str, id: &str, status: &str) -> (String, String, String) {
    (instance.to_string(), id.to_string(), status.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_joins_people_across_kinds_and_the_next_plan_is_empty() {
    let world = team_world().await;
    let run = world.roster(&["import", "desired-state"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(world.write_count(), 0, "import only reads");

    let users = loaded(&world);
    let expected: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::from([
        (
            "anna.schmidt".to_string(),
            vec![
                acc("atlan", "a-anna", "active"),
                acc("helpdesk", "h-anna", "suspended"),
                acc("vault", "v-anna", "inactive"),
                acc("zitadel", "100", "active"),
            ],
        ),
        ("ben".to_string(), vec![acc("atlan", "a-ben", "active")]),
        (
            "ci-bot".to_string(),
            vec![
                acc("helpdesk", "h-ci", "active"),
                acc("zitadel", "200", "inactive"),
            ],
        ),
        ("cy".to_string(), vec![acc("helpdesk", "cy", "risky")]),
        ("team".to_string(), vec![acc("atlan", "a-team1", "active")]),
        (
            "team-2".to_string(),
            vec![acc("atlan", "a-team2", "inactive")],
        ),
    ]);
    assert_eq!(users, expected);

    let atlan = read(&world, "atlan.yaml");
    assert!(
        atlan.contains(
            "  - name: anna.schmidt   # anna.schmidt@example.com\n    status: active\n    accounts:\n      atlan: \"a-anna\"\n      helpdesk: { id: \"h-anna\", status: suspended }\n      vault: { id: \"v-anna\", status: inactive }\n      zitadel: \"100\"\n"
        ),
        "{atlan}"
    );
    let note = "  # not joined: the email \"team@example.com\" links 2 accounts at one instance (\"a-team1\", \"a-team2\"), so Roster cannot tell whose is whose\n";
    assert_eq!(atlan.matches(note).count(), 2, "{atlan}");
    assert!(
        atlan.contains("  # - name: ghost   # ghost@example.com\n  #   accounts:\n  #     atlan: \"a-ghost\"   # live status 'unknown': Atlan reports no enabled state (enabled: null)"),
        "{atlan}"
    );
    let helpdesk = read(&world, "helpdesk.yaml");
    assert!(
        helpdesk.contains("  - name: ci-bot   # ci-bot@example.com\n    status: active\n    accounts:\n      helpdesk: \"h-ci\"\n      zitadel: { id: \"200\", status: inactive }\n"),
        "{helpdesk}"
    );
    let zitadel = read(&world, "zitadel.yaml");
    assert!(zitadel.contains("users: []\n"), "{zitadel}");
    assert!(
        zitadel.contains(
            "  #     zitadel: \"300\"   # live status 'locked': the user is locked in ZITADEL"
        ),
        "{zitadel}"
    );
    assert!(read(&world, "vault.yaml").contains("users: []\n"));
    assert!(!world.folder().join("imported/backup.yaml").exists());

    for line in [
        "Imported 9 account(s) into 5 user(s), 2 of them joined across instances.",
        "  desired-state/imported/atlan.yaml: 4 user(s), 7 account(s)",
        "  desired-state/imported/helpdesk.yaml: 1 user(s), 2 account(s)",
        "Skipped 1 account(s) that a file already claims (helpdesk: 1).",
        "Written as comments, not imported: 2 account(s) Roster cannot manage as they are:",
        "Not joined: 2 account(s) share an email or login ambiguously; each is its own user, with a comment that says why.",
        "Cannot list backup, nothing imported from it: an acronis instance lists its accounts only with the `tenant_id` setting",
    ] {
        assert!(run.stderr.contains(line), "missing {line:?} in:\n{}", run.stderr);
    }

    let validate = world.roster(&["validate", "desired-state"]).await;
    assert_eq!(validate.code, 0, "{validate:?}");
    let plan = world
        .roster(&[
            "plan",
            "desired-state",
            "--format",
            "json",
            "--detailed-exitcode",
        ])
        .await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["errors"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["blocked"], serde_json::json!([]), "{plan}");
    assert_eq!(world.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_never_overwrites_without_force_and_rewrites_the_same_bytes() {
    let world = team_world().await;
    let first = world.roster(&["import", "desired-state"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let files = ["atlan.yaml", "helpdesk.yaml", "vault.yaml", "zitadel.yaml"];
    let before: Vec<String> = files.iter().map(|f| read(&world, f)).collect();

    let again = world.roster(&["import", "desired-state"]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("desired-state/imported/atlan.yaml, desired-state/imported/helpdesk.yaml, desired-state/imported/vault.yaml, desired-state/imported/zitadel.yaml: already exist; nothing was written (use --force"),
        "{}",
        again.stderr
    );

    let forced = world.roster(&["import", "desired-state", "--force"]).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    let after: Vec<String> = files.iter().map(|f| read(&world, f)).collect();
    assert_eq!(before, after, "unchanged live state, the same bytes");
    assert_eq!(first.stderr, forced.stderr, "and the same summary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_only_inside_the_folder_and_only_the_chosen_instances() {
    let mut world = common::World::new();
    let hostile = vec![
        sim_user(
            "h-1",
            "eve\n- name: forged\u{1b}[2J\u{202e}",
            "active",
            false,
        ),
        sim_user("h-2", "x\"}: {y", "inactive", false),
    ];
    world
        .add("helpdesk", SimConfig::new(SimKind::StatusApi, hostile), "")
        .await;
    world
        .add(
            "zitadel",
            SimConfig::new(
                SimKind::Zitadel,
                vec![sim_user("1", "zed", "active", false)],
            ),
            "",
        )
        .await;
    world.write("people.yaml", "users: []\n");

    let outside = world
        .roster(&["import", "desired-state", "--out", "elsewhere"])
        .await;
    assert_eq!(outside.code, 64, "{outside:?}");
    assert!(
        outside.stderr.contains("not inside the folder"),
        "{}",
        outside.stderr
    );
    assert!(!world.dir.path().join("elsewhere").exists());

    let run = world
        .roster(&[
            "import",
            "desired-state",
            "--provider",
            "helpdesk",
            "--out",
            "desired-state/people/from-helpdesk",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let folder = world.folder().join("people/from-helpdesk");
    let names: Vec<String> = std::fs::read_dir(&folder)
        .expect("out folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["helpdesk.yaml"]);
    let text = std::fs::read_to_string(folder.join("helpdesk.yaml")).expect("file");
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{text:?}"
    );
    let users = loaded(&world);
    assert_eq!(
        users,
        BTreeMap::from([
            (
                "eve-name-forged-2j".to_string(),
                vec![acc("helpdesk", "h-1", "active")]
            ),
            ("x-y".to_string(), vec![acc("helpdesk", "h-2", "inactive")]),
        ]),
        "{text}"
    );
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_user_lives_in_the_file_of_its_first_instance_in_providers_yaml() {
    let mut world = common::World::new();
    world
        .add(
            "atlan",
            SimConfig::new(
                SimKind::Atlan,
                vec![sim_user("a-1", "anna", "active", false)],
            ),
            "",
        )
        .await;
    world
        .add(
            "zitadel",
            SimConfig::new(
                SimKind::Zitadel,
                vec![sim_user("9", "anna", "inactive", false)],
            ),
            "",
        )
        .await;
    // The helper writes instances in name order; put zitadel first.
    let providers =
        std::fs::read_to_string(world.folder().join("providers.yaml")).expect("providers");
    let (head, zitadel) = providers.split_once("  zitadel:").expect("zitadel block");
    world.write(
        "providers.yaml",
        &format!(
            "providers:\n  zitadel:{zitadel}{}",
            &head["providers:\n".len()..]
        ),
    );
    let run = world.roster(&["import", "desired-state"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let zitadel = read(&world, "zitadel.yaml");
    assert!(
        zitadel.contains("  - name: anna   # anna@example.com\n    status: inactive\n    accounts:\n      zitadel: \"9\"\n      atlan: { id: \"a-1\", status: active }\n"),
        "{zitadel}"
    );
    assert!(read(&world, "atlan.yaml").contains("users: []\n"));
}
