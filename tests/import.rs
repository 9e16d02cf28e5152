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
