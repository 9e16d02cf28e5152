//! `roster run --notify-webhook`: the real binary against the built-in simulators, with a
//! webhook receiver on loopback recording every body. Each test checks that no secret
//! (a provider token, the webhook URL's path token) reaches a body, stderr or /metrics.

mod common;

use common::*;
use roster::simulator::{SimConfig, SimKind};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A webhook receiver on 127.0.0.1.
struct Hook {
    /// The URL with a secret path token, as chat services issue them.
    url: String,
    token: String,
    /// Every body received (recorded on arrival, before any answer), with its
    /// Content-Type.
    received: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests answered so far (a hanging receiver answers none).
    answered: Arc<AtomicUsize>,
}

enum Answer {
    /// These statuses first, then 200 to everything.
    Statuses(Vec<u16>),
    /// Never answers.
    Hang,
}

async fn hook(answer: Answer) -> Hook {
    let token = distinctive_secret();
    let received = Arc::new(Mutex::new(Vec::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let (hang, statuses) = match answer {
        Answer::Statuses(list) => (false, list),
        Answer::Hang => (true, Vec::new()),
    };
    let statuses = Arc::new(Mutex::new(std::collections::VecDeque::from(statuses)));
    let (record, count) = (received.clone(), answered.clone());
    let app = axum::Router::new().route(
        &format!("/hook/{token}"),
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (record, count, statuses) = (record.clone(), count.clone(), statuses.clone());
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                record.lock().unwrap().push((content_type, value));
                if hang {
                    std::future::pending::<()>().await;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Hook {
        url: format!("http://{address}/hook/{token}"),
        token,
        received,
        answered,
    }
}

impl Hook {
    fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Bodies of `event`, in the order received.
    fn events(&self, event: &str) -> Vec<Value> {
        self.bodies()
            .into_iter()
            .filter(|b| b["event"] == event)
            .collect()
    }

    async fn wait_for(&self, event: &str, daemon: &Daemon) {
        eventually(&format!("a {event} notification"), WAIT, || async {
            !self.events(event).is_empty()
        })
        .await;
        assert!(daemon.log().contains("webhook notifications on"));
    }
}

/// A world with one status-api instance `helpdesk` holding `users`, and a user file.
async fn world(users: &[(&str, &str, &str)], extra: &str) -> World {
    let mut world = World::new();
    let sim_users = users
        .iter()
        .map(|(_, id, status)| user(id, status))
        .collect();
    world
        .add(
            "helpdesk",
            SimConfig::new(SimKind::StatusApi, sim_users),
            extra,
        )
        .await;
    world
}

fn people(accounts: &[(&str, &str, &str)]) -> String {
    let rows: Vec<(&str, &str, &str, &str)> = accounts
        .iter()
        .map(|(name, id, status)| (*name, "helpdesk", *id, *status))
        .collect();
    users_yaml(&rows)
}

/// `roster run` with the world's environment and the webhook URL in
/// `ROSTER_NOTIFY_WEBHOOK`.
async fn start(world: &mut World, hook: &Hook) -> Daemon {
    world.set_env("ROSTER_NOTIFY_WEBHOOK", Some(&hook.url));
    let folder = world.folder();
    let folder = folder.to_str().unwrap();
    Daemon::spawn(world.command(&["run", folder, "--listen", "127.0.0.1:0", "--interval", "1s"]))
        .await
}

/// No provider token and no part of the webhook URL in any body, the log or /metrics.
async fn assert_clean(world: &World, hook: &Hook, daemon: &Daemon) {
    let metrics = daemon.metrics().await;
    if let Err(problem) = check_exposition(&metrics) {
        panic!("{problem}\n{metrics}");
    }
    assert!(metrics.contains("# TYPE roster_notifications counter"));
    let bodies = serde_json::to_string(&hook.bodies()).unwrap();
    for text in [&bodies, &daemon.log(), &metrics] {
        assert_no_secrets(world, text);
        assert!(!text.contains(&hook.token), "webhook token leaked:\n{text}");
        assert!(!text.contains(&hook.url), "webhook URL leaked:\n{text}");
    }
    for (content_type, _) in hook.received.lock().unwrap().iter() {
        assert_eq!(content_type, "application/json");
    }
}

#[tokio::test]
async fn drift_corrected_is_notified_with_every_field_after_a_retried_500() {
    let accounts = [
        ("quinn", "u-quinn", "active"),
        ("georg", "u-georg", "inactive"),
    ];
    let mut world = world(&accounts, "").await;
    world.write("people.yaml", &people(&accounts));
    fake_git_checkout(&world.folder(), "0123456789abcdef0123456789abcdef01234567");
    let hook = hook(Answer::Statuses(vec![500])).await;
    let daemon = start(&mut world, &hook).await;
    eventually("ready", WAIT, || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    assert!(hook.bodies().is_empty(), "no event at a clean start");

    assert!(world.sims["helpdesk"].set_user_status("u-quinn", "inactive"));
    hook.wait_for("drift_corrected", &daemon).await;
    eventually("the retried notification answered", WAIT, || async {
        daemon
            .metric_sum("roster_notifications_total", &["result=\"sent\""])
            .await
            == 1.0
    })
    .await;
    let drift = hook.events("drift_corrected");
    assert_eq!(drift.len(), 2, "the 500 was retried: {drift:?}");
    assert_eq!(drift[0], drift[1], "a retry sends the same body");
    let body = &drift[0];
    assert_eq!(body["provider"], "helpdesk");
    assert_eq!(body["user"], "quinn");
    assert_eq!(body["account_id"], "u-quinn");
    assert_eq!(body["from"], "inactive");
    assert_eq!(body["to"], "active");
    assert_eq!(
        body["git_commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Roster corrected drift at helpdesk: quinn (account u-quinn) was inactive, set back to active"
        ),
        "{text}"
    );
    assert_eq!(
        world.sims["helpdesk"].user("u-quinn").unwrap().status,
        "active"
    );
    assert_eq!(hook.bodies().len(), 2, "nothing else: {:?}", hook.bodies());
    assert_clean(&world, &hook, &daemon).await;
}

#[tokio::test]
async fn a_guard_refusal_is_notified_once_and_so_is_its_recovery() {
    let live = [("a", "u-a", "active"), ("b", "u-b", "active")];
    let mut world = world(&live, "    max_changes: 1\n").await;
    world.write(
        "people.yaml",
        &people(&[("a", "u-a", "inactive"), ("b", "u-b", "inactive")]),
    );
    let hook = hook(Answer::Statuses(Vec::new())).await;
    let daemon = start(&mut world, &hook).await;
    hook.wait_for("guard_refused", &daemon).await;
    // Several more refused passes (one a second): still one notification.
    eventually("three refused passes", WAIT, || async {
        daemon
            .metric_sum("roster_passes_total", &["result=\"refused\""])
            .await
            >= 3.0
    })
    .await;
    let refused = hook.events("guard_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["provider"], "helpdesk");
    assert_eq!(refused[0]["user"], Value::Null);
    let message = refused[0]["message"].as_str().unwrap();
    assert!(
        message.contains("refused 2 changes (max_changes 1)"),
        "{message}"
    );

    let providers = std::fs::read_to_string(world.folder().join("providers.yaml")).unwrap();
    save(
        &world.folder().join("providers.yaml"),
        &providers.replace("max_changes: 1", "max_changes: 5"),
    );
    hook.wait_for("guard_recovered", &daemon).await;
    assert_eq!(
        world.sims["helpdesk"].user("u-a").unwrap().status,
        "inactive"
    );
    let events: Vec<Value> = hook.bodies().iter().map(|b| b["event"].clone()).collect();
    assert_eq!(events, ["guard_refused", "guard_recovered"]);
    assert_clean(&world, &hook, &daemon).await;
}

#[tokio::test]
async fn an_invalid_folder_is_notified_once_per_version_and_its_recovery() {
    let accounts = [("quinn", "u-quinn", "active")];
    let mut world = world(&accounts, "").await;
    world.write("people.yaml", &people(&accounts));
    let hook = hook(Answer::Statuses(Vec::new())).await;
    let daemon = start(&mut world, &hook).await;
    eventually("ready", WAIT, || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;

    let broken = "users:\n  - name: quinn\n    stauts: <!channel> active\n";
    save(&world.folder().join("people.yaml"), broken);
    hook.wait_for("folder_invalid", &daemon).await;
    // The same invalid content saved again is not a new version.
    save(&world.folder().join("people.yaml"), broken);
    daemon
        .wait_log(&["still invalid, with the same problems"], WAIT)
        .await;
    let invalid = hook.events("folder_invalid");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    let message = invalid[0]["message"].as_str().unwrap();
    assert!(message.contains("people.yaml:3:5"), "{message}");
    assert!(message.contains("stauts"), "{message}");
    assert_eq!(invalid[0]["provider"], Value::Null);

    save(&world.folder().join("people.yaml"), &people(&accounts));
    hook.wait_for("folder_recovered", &daemon).await;
    let events: Vec<Value> = hook.bodies().iter().map(|b| b["event"].clone()).collect();
    assert_eq!(events, ["folder_invalid", "folder_recovered"]);
    assert_clean(&world, &hook, &daemon).await;
}

#[tokio::test]
async fn a_failing_instance_is_notified_after_three_failed_passes_and_its_recovery() {
    let accounts = [("quinn", "u-quinn", "active")];
    let mut world = world(&accounts, "").await;
    world.write("people.yaml", &people(&accounts));
    let hook = hook(Answer::Statuses(Vec::new())).await;
    let daemon = start(&mut world, &hook).await;
    eventually("ready", WAIT, || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;

    world.sims.get_mut("helpdesk").unwrap().take_down().await;
    hook.wait_for("instance_failing", &daemon).await;
    let failed = daemon
        .metric_sum("roster_passes_total", &["result=\"error\""])
        .await;
    assert!(failed >= 3.0, "notified after {failed} failed passes");
    let failing = hook.events("instance_failing");
    assert_eq!(failing[0]["provider"], "helpdesk");
    let message = failing[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the last 3 passes failed: "),
        "{message}"
    );

    world
        .sims
        .get_mut("helpdesk")
        .unwrap()
        .bring_up()
        .await
        .unwrap();
    hook.wait_for("instance_recovered", &daemon).await;
    let events: Vec<Value> = hook.bodies().iter().map(|b| b["event"].clone()).collect();
    assert_eq!(events, ["instance_failing", "instance_recovered"]);
    assert_clean(&world, &hook, &daemon).await;
}

#[tokio::test]
async fn a_hanging_receiver_never_delays_a_pass_or_the_shutdown() {
    let accounts = [("quinn", "u-quinn", "active")];
    let mut world = world(&accounts, "").await;
    // Invalid at start: the folder_invalid notification hangs at the receiver.
    world.write(
        "people.yaml",
        "users:\n  - name: quinn\n    stauts: active\n",
    );
    let hook = hook(Answer::Hang).await;
    let mut daemon = start(&mut world, &hook).await;
    eventually("the first notification in flight", WAIT, || async {
        !hook.bodies().is_empty()
    })
    .await;

    save(&world.folder().join("people.yaml"), &people(&accounts));
    eventually("ready while the receiver hangs", WAIT, || async {
        daemon.get("/readyz").await.0 == 200
    })
    .await;
    assert!(world.sims["helpdesk"].set_user_status("u-quinn", "inactive"));
    eventually("drift corrected while the receiver hangs", WAIT, || async {
        world.sims["helpdesk"].user("u-quinn").unwrap().status == "active"
    })
    .await;
    let passes = daemon
        .metric_sum("roster_passes_total", &["result=\"success\""])
        .await;
    eventually("passes go on", WAIT, || async {
        daemon
            .metric_sum("roster_passes_total", &["result=\"success\""])
            .await
            > passes
    })
    .await;
    assert_eq!(
        hook.answered.load(Ordering::SeqCst),
        0,
        "the receiver never answered"
    );
    assert_clean(&world, &hook, &daemon).await;

    daemon.signal("TERM");
    let status = daemon.wait_exit(WAIT).await;
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(daemon
        .log()
        .contains("notifications still queued at shutdown were not sent"));
}

#[tokio::test]
async fn the_url_is_shown_neither_by_help_nor_when_refused() {
    let mut world = World::new();
    world.write("people.yaml", "users: []\n");
    world.write("providers.yaml", "providers: {}\n");
    let token = distinctive_secret();
    let url = format!("https://hooks.example.com/services/{token}");
    world.set_env("ROSTER_NOTIFY_WEBHOOK", Some(&url));
    let help = world.roster(&["run", "--help"]).await;
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.contains("[env: ROSTER_NOTIFY_WEBHOOK]"),
        "{}",
        help.stdout
    );
    assert!(!help.stdout.contains(&token), "{}", help.stdout);

    let plain = format!("http://hooks.example.com/services/{token}");
    let refused = world
        .roster(&["run", "--listen", "127.0.0.1:0", "--notify-webhook", &plain])
        .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("--notify-webhook must use https:// (plain http only for a loopback host)"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(&token), "{}", refused.stderr);
}
