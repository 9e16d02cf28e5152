//! The `scim` kind against its simulator, one test per quirk real SCIM servers have: capped
//! pages, `active` as a string or left out, `op` in any case, SCIM error bodies, 204
//! replies, 429 with `Retry-After`, and accounts named by `userName`. The properties every
//! kind shares are in `tests/conformance.rs`.

mod common;

use common::{user, Run, World};
use roster::simulator::{
    FaultAction, FaultRule, FaultTarget, ScimStyle, SimConfig, SimKind, SimUser, Simulator,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM user with an id, a `userName` and a live status.
fn scim_user(id: &str, user_name: &str, status: &str) -> SimUser {
    SimUser {
        name: user_name.to_string(),
        ..user(id, status)
    }
}

/// A world with one `scim` instance named `slack` holding `users`, served in `style`,
/// after `tweak`, and a user `p<i>` per `(account, status)` of `accounts`.
async fn world(
    users: Vec<SimUser>,
    style: ScimStyle,
    tweak: impl FnOnce(&mut SimConfig),
    extra: &str,
    accounts: &[(&str, &str)],
) -> World {
    let mut config = SimConfig::new(SimKind::Scim, users);
    config.scim = style;
    config.token = TOKEN.to_string();
    tweak(&mut config);
    let mut world = World::new();
    world.add("slack", config, extra).await;
    let mut text = String::from("users:\n");
    for (i, (account, status)) in accounts.iter().enumerate() {
        text.push_str(&format!(
            "  - name: p{i}\n    status: {status}\n    accounts: {{ slack: {account:?} }}\n"
        ));
    }
    world.write("people.yaml", &text);
    world
}

fn sim(world: &World) -> &Simulator {
    &world.sims["slack"]
}

async fn json_run(world: &World, command: &str) -> (Run, Value) {
    let run = world
        .roster(&[command, "--format", "json", "desired-state"])
        .await;
    let json = run.json();
    (run, json)
}

fn status_of(world: &World, id: &str) -> Option<String> {
    sim(world).user(id).map(|u| u.status)
}

/// (path, query) of every read.
fn reads(sim: &Simulator) -> Vec<(String, String)> {
    sim.requests()
        .into_iter()
        .filter(|r| !r.is_write)
        .map(|r| (r.path, r.query.unwrap_or_default()))
        .collect()
}

fn outcomes(report: &Value) -> Vec<(String, Value)> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("?").to_string(),
                r["http_status"].clone(),
            )
        })
        .collect()
}

/// A server that grants 7 users a page when asked for 100 is read 7 at a time, from
/// `startIndex` 1 (1-based), until `totalResults`: every account is seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_pages_are_read_by_what_the_server_grants() {
    let users: Vec<SimUser> = (0..30)
        .map(|i| {
            scim_user(
                &format!("u{i:02}"),
                &format!("user{i}@example.com"),
                "active",
            )
        })
        .collect();
    let accounts: Vec<(String, &str)> = (0..30)
        .map(|i| {
            (
                format!("u{i:02}"),
                if i == 29 { "inactive" } else { "active" },
            )
        })
        .collect();
    let accounts: Vec<(&str, &str)> = accounts.iter().map(|(a, s)| (a.as_str(), *s)).collect();
    let tweak = |config: &mut SimConfig| config.page_size_max = 7;
    let world = world(users, ScimStyle::plain(), tweak, "", &accounts).await;

    let (run, plan) = json_run(&world, "plan").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(plan["in_sync"], 29, "{plan}");
    assert_eq!(
        plan["changes"],
        json!([{"provider": "slack", "user": "p29", "account_id": "u29", "from": "active", "to": "inactive"}]),
        "the last user, on the last short page, is read too"
    );
    let expected: Vec<(String, String)> = [
        "startIndex=1&count=100",
        "startIndex=8&count=7",
        "startIndex=15&count=7",
        "startIndex=22&count=7",
        "startIndex=29&count=7",
    ]
    .iter()
    .map(|q| ("/Users".to_string(), q.to_string()))
    .collect();
    let mut seen = reads(sim(&world));
    seen.sort_by_key(|(_, q)| {
        q.split(['=', '&'])
            .nth(1)
            .and_then(|n| n.parse::<u32>().ok())
    });
    assert_eq!(seen, expected);
}

/// `page_size` sets `count`; a value that is not a page size is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_is_sent_as_count_and_checked() {
    let users = vec![scim_user("u1", "ann", "active")];
    let world = world(
        users.clone(),
        ScimStyle::plain(),
        |_| {},
        "    page_size: 25\n",
        &[("u1", "active")],
    )
    .await;
    let (run, _) = json_run(&world, "plan").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        reads(sim(&world)),
        [("/Users".to_string(), "startIndex=1&count=25".to_string())]
    );

    let world = world_with_extra(users, "    page_size: lots\n").await;
    let run = world.roster(&["plan", "desired-state"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("page_size must be a whole number from 1 to 1000, got \"lots\""),
        "{run:?}"
    );
    assert!(sim(&world).requests().is_empty());
}

async fn world_with_extra(users: Vec<SimUser>, extra: &str) -> World {
    world(
        users,
        ScimStyle::plain(),
        |_| {},
        extra,
        &[("u1", "active")],
    )
    .await
}

/// Entra ID sends `active` as `"True"`/`"False"`: read as the statuses they mean, and
/// written back as a boolean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_as_a_string_is_read() {
    let users = vec![
        scim_user("a", "ann", "active"),
        scim_user("b", "bob", "inactive"),
        scim_user("c", "cy", "inactive"),
    ];
    let strings = ScimStyle {
        string_active: 1.0,
        ..ScimStyle::plain()
    };
    let accounts = [("a", "inactive"), ("b", "active"), ("c", "inactive")];
    let world = world(users, strings, |_| {}, "", &accounts).await;

    let (run, plan) = json_run(&world, "plan").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        plan["changes"],
        json!([
            {"provider": "slack", "user": "p0", "account_id": "a", "from": "active", "to": "inactive"},
            {"provider": "slack", "user": "p1", "account_id": "b", "from": "inactive", "to": "active"},
        ])
    );
    assert_eq!(plan["in_sync"], 1);
    assert_eq!(
        served_active(&world).await,
        [
            Some(json!("True")),
            Some(json!("False")),
            Some(json!("False"))
        ]
    );
    let (run, _) = json_run(&world, "apply").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(status_of(&world, "a").as_deref(), Some("inactive"));
    assert_eq!(status_of(&world, "b").as_deref(), Some("active"));
    let (_, again) = json_run(&world, "plan").await;
    assert_eq!(
        (&again["changes"], &again["in_sync"]),
        (&json!([]), &json!(3))
    );
}

/// A user without `active` is active (RFC 7643's default): in sync when wanted active, a
/// change when wanted inactive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_active_means_active() {
    let users = vec![
        scim_user("a", "ann", "active"),
        scim_user("b", "bob", "active"),
    ];
    let absent = ScimStyle {
        absent_active: 1.0,
        ..ScimStyle::plain()
    };
    let world = world(
        users,
        absent,
        |_| {},
        "",
        &[("a", "active"), ("b", "inactive")],
    )
    .await;

    let (run, plan) = json_run(&world, "plan").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        plan["changes"],
        json!([{"provider": "slack", "user": "p1", "account_id": "b", "from": "active", "to": "inactive"}])
    );
    assert_eq!(plan["in_sync"], 1);
    assert_eq!(
        served_active(&world).await,
        [None, None],
        "the quirk was served"
    );
}

/// The token every test simulator here accepts; a secret no output may contain.
const TOKEN: &str = "roster-scim-test-token-3f9c";

/// `active` of every user as the simulator serves it (`None`: left out).
async fn served_active(world: &World) -> Vec<Option<Value>> {
    let body: Value = http()
        .get(format!("{}/Users", sim(world).base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|u| u.get("active").cloned())
        .collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The simulator matches `op` ignoring case (`Replace`, `REPLACE`), as real servers must.
#[tokio::test]
async fn the_simulator_matches_op_ignoring_case() {
    let mut config = SimConfig::new(SimKind::Scim, vec![scim_user("a", "ann", "active")]);
    config.token = "scim-test-token".to_string();
    let sim = Simulator::start(config).await.expect("simulator");
    for (op, value, expected) in [
        ("Replace", json!(false), "inactive"),
        ("REPLACE", json!(true), "active"),
        ("rePlace", json!("False"), "inactive"),
    ] {
        let response = http()
            .patch(format!("{}/Users/a", sim.base_url()))
            .bearer_auth("scim-test-token")
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": [PATCH_OP], "Operations": [{"op": op, "path": "active", "value": value}]})
                    .to_string(),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{op}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["id"], "a");
        assert_eq!(
            sim.user("a").map(|u| u.status).as_deref(),
            Some(expected),
            "{op}"
        );
    }
    assert_eq!(sim.write_count(), 3);
}

/// A SCIM error body (`status` a string, `detail`) becomes the message Roster reports:
/// for a failed read in the plan, for a failed write in the apply summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_error_bodies_are_shown_in_plan_and_apply() {
    let users = vec![scim_user("a", "ann", "active")];
    let failing = |target, code| FaultRule {
        target,
        times: 0,
        action: FaultAction::Status {
            code,
            retry_after: None,
        },
    };
    let tweak =
        |config: &mut SimConfig| config.faults.rules = vec![failing(FaultTarget::Reads, 400)];
    let reading = world(
        users.clone(),
        ScimStyle::plain(),
        tweak,
        "",
        &[("a", "inactive")],
    )
    .await;
    let (run, plan) = json_run(&reading, "plan").await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        plan["errors"],
        json!([{"provider": "slack", "message": "HTTP 400: simulated fault"}])
    );

    let tweak =
        |config: &mut SimConfig| config.faults.rules = vec![failing(FaultTarget::Writes, 403)];
    let writing = world(users, ScimStyle::plain(), tweak, "", &[("a", "inactive")]).await;
    let (run, report) = json_run(&writing, "apply").await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(outcomes(&report), [("failed".to_string(), json!(403))]);
    assert_eq!(
        report["results"][0]["message"], "HTTP 403: simulated fault",
        "{report}"
    );
    assert_eq!(sim(&writing).write_count(), 1, "a 403 is not retried");
}

/// A PATCH answered 204 with no body is a change made: `applied`, and the next pass makes
/// no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_reply_counts_as_applied() {
    let users = vec![
        scim_user("a", "ann", "active"),
        scim_user("b", "bob", "inactive"),
    ];
    let no_content = ScimStyle {
        patch_no_content: true,
        ..ScimStyle::default()
    };
    let world = world(
        users,
        no_content,
        |_| {},
        "",
        &[("a", "inactive"), ("b", "active")],
    )
    .await;

    let (run, report) = json_run(&world, "apply").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        outcomes(&report),
        [
            ("applied".to_string(), json!(204)),
            ("applied".to_string(), json!(204))
        ]
    );
    assert_eq!(status_of(&world, "a").as_deref(), Some("inactive"));
    assert_eq!(status_of(&world, "b").as_deref(), Some("active"));
    let (again, report) = json_run(&world, "apply").await;
    assert_eq!((again.code, &report["results"]), (0, &json!([])));
    assert_eq!(sim(&world).write_count(), 2);
}

/// A 429 with `Retry-After: 1` on the write (Slack shares one limit across a workspace's
/// SCIM apps) is waited out and the same PATCH sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_and_retried() {
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![FaultRule {
            target: FaultTarget::Writes,
            times: 1,
            action: FaultAction::Status {
                code: 429,
                retry_after: Some("1".to_string()),
            },
        }]
    };
    let users = vec![scim_user("a", "ann", "active")];
    let world = world(users, ScimStyle::plain(), tweak, "", &[("a", "inactive")]).await;

    let started = Instant::now();
    let (run, report) = json_run(&world, "apply").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was not waited out"
    );
    assert_eq!(outcomes(&report), [("applied".to_string(), json!(200))]);
    let writes = sim(&world).writes();
    assert_eq!(
        writes.iter().map(|w| w.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert_eq!(writes[0].body, writes[1].body, "the same PATCH again");
    assert_eq!(status_of(&world, "a").as_deref(), Some("inactive"));
}

/// An account named by `userName` is found in the listing and written at `/Users/{id}`.
/// A name that is one user's id and another's `userName` is ambiguous, and a `userName`
/// in another case than the server lists is not found: error entries, never a write (so
/// two spellings in the folder can never steer one account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_named_by_user_name_is_written_by_id() {
    let id = "2819c223-7f76-453a-919d-413861904646";
    let users = vec![
        scim_user(id, "bjensen@example.com", "active"),
        scim_user("kim", "kim.lee@example.com", "active"),
        scim_user("u-3", "kim", "active"),
    ];
    let accounts = [
        ("bjensen@example.com", "inactive"),
        ("kim", "inactive"),
        ("Kim.Lee@Example.com", "inactive"),
    ];
    let world = world(users, ScimStyle::default(), |_| {}, "", &accounts).await;

    let (run, plan) = json_run(&world, "plan").await;
    assert_eq!(run.code, 1, "the ambiguous account is an error: {run:?}");
    assert_eq!(
        plan["changes"],
        json!([{"provider": "slack", "user": "p0", "account_id": "bjensen@example.com", "from": "active", "to": "inactive"}])
    );
    let errors = plan["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{plan}");
    assert_eq!(errors[0]["account_id"], "kim");
    let message = errors[0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("ambiguous") && message.contains("the userName of user u-3"),
        "{message}"
    );
    assert_eq!(
        (&errors[1]["account_id"], &errors[1]["message"]),
        (
            &json!("Kim.Lee@Example.com"),
            &json!("account not found at the provider (404)")
        )
    );

    let (run, report) = json_run(&world, "apply").await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(outcomes(&report), [("applied".to_string(), json!(200))]);
    let writes = sim(&world).writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path, format!("/Users/{id}"));
    assert_eq!(
        writes[0].body,
        Some(
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]})
        )
    );
    assert_eq!(
        writes[0].headers.get("content-type").map(String::as_str),
        Some("application/scim+json")
    );
    assert_eq!(status_of(&world, id).as_deref(), Some("inactive"));
    assert_eq!(status_of(&world, "kim").as_deref(), Some("active"));
    assert_eq!(status_of(&world, "u-3").as_deref(), Some("active"));
}

/// `roster status --unmanaged` lists the SCIM accounts no file claims, by `id` or by
/// `userName`, with the `userName` as login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_unmanaged_lists_unclaimed_scim_accounts() {
    let users = vec![
        scim_user("a", "ann@example.com", "active"),
        scim_user("b", "bob@example.com", "inactive"),
        scim_user("c", "cy@example.com", "inactive"),
    ];
    let tweak = |config: &mut SimConfig| config.page_size_max = 2;
    let accounts = [("a", "active"), ("bob@example.com", "inactive")];
    let world = world(users, ScimStyle::default(), tweak, "", &accounts).await;

    let run = world
        .roster(&["status", "--unmanaged", "--format", "json", "desired-state"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    assert_eq!(
        doc["unmanaged"],
        json!([{"provider": "slack", "account_id": "c", "login": "cy@example.com", "live": "inactive"}]),
        "{doc}"
    );
    assert_eq!(sim(&world).write_count(), 0);
}

/// `roster simulate --kind scim` serves the SCIM API on loopback.
#[tokio::test]
async fn roster_simulate_serves_scim() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["simulate", "--kind", "scim", "--users", "12", "--port", "0"])
        .args(["--page-size", "5"])
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
    assert!(line.starts_with("simulating scim with 12 users"), "{line}");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address in the start line");
    let mut body = Value::Null;
    for _ in 0..100 {
        if let Ok(response) = http()
            .get(format!("{base}/Users?startIndex=6&count=100"))
            .bearer_auth("sim-token")
            .send()
            .await
        {
            body = response.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            &body["totalResults"],
            &body["startIndex"],
            &body["itemsPerPage"]
        ),
        (&json!(12), &json!(6), &json!(5))
    );
    child.kill().await.expect("stop the simulator");
}
