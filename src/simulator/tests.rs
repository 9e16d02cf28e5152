//! Tests of the shared framework: faults, request log, admin endpoints, server lifecycle.

use super::test_support::{encode, http, start, user};
use super::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn status_api_get(sim: &Simulator, path: &str) -> reqwest::RequestBuilder {
    http()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth("sim-token")
        .header("X-API-Version", "v1")
}

fn status_api_patch(sim: &Simulator, id: &str, status: &str) -> reqwest::RequestBuilder {
    http()
        .patch(format!("{}/users/{}", sim.base_url(), encode(id)))
        .bearer_auth("sim-token")
        .header("X-API-Version", "v1")
        .json(&json!({ "status": status }))
}

async fn with_faults(faults: Faults) -> Simulator {
    let mut config = SimConfig::new(SimKind::StatusApi, vec![user("u1", "anna", "active")]);
    config.faults = faults;
    Simulator::start(config).await.expect("start")
}

fn rule(target: FaultTarget, times: u32, action: FaultAction) -> FaultRule {
    FaultRule {
        target,
        times,
        action,
    }
}

fn statuses(sim: &Simulator) -> Vec<u16> {
    sim.requests().iter().map(|r| r.status).collect()
}

#[test]
fn kind_names_round_trip() {
    for kind in SimKind::ALL {
        assert_eq!(SimKind::parse(kind.name()), Some(kind));
        let json = serde_json::to_string(&kind).expect("json");
        assert_eq!(json, format!("\"{}\"", kind.name()));
    }
    assert_eq!(SimKind::parse("okta"), None);
}

#[test]
fn sim_user_defaults_when_deserialized() {
    let u: SimUser =
        serde_json::from_str(r#"{"id":"1","name":"a","status":"active"}"#).expect("user");
    assert_eq!((u.privileged, u.version), (false, 1));
}

#[test]
fn helpers() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    assert_eq!(
        display_names("anna.van-dyke2@example.com"),
        ("Anna".to_string(), "Van Dyke".to_string())
    );
    assert_eq!(display_names("root"), ("Root".to_string(), String::new()));
    assert_eq!(page_range(200, 200, 100), 200..200);
    assert_eq!(page_range(150, 100, 100), 100..150);
}

#[tokio::test]
async fn status_fault_with_retry_after_then_success() {
    let retry = FaultAction::Status {
        code: 429,
        retry_after: Some("2".to_string()),
    };
    let sim = with_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![rule(FaultTarget::Reads, 2, retry)],
    })
    .await;
    for _ in 0..2 {
        let resp = status_api_get(&sim, "/users").send().await.expect("send");
        assert_eq!(resp.status(), 429);
        let retry_after = resp.headers().get("retry-after").cloned();
        assert_eq!(
            retry_after.as_ref().and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    let resp = status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(statuses(&sim), [429, 429, 200]);
    assert_eq!(sim.read_count(), 3);
}

#[tokio::test]
async fn times_zero_is_forever_and_targets_are_respected() {
    let unavailable = FaultAction::Status {
        code: 503,
        retry_after: None,
    };
    let sim = with_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![rule(FaultTarget::Writes, 0, unavailable)],
    })
    .await;
    for _ in 0..3 {
        let resp = status_api_patch(&sim, "u1", "inactive").send().await;
        let resp = resp.expect("send");
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().get("retry-after").is_none());
    }
    let read = status_api_get(&sim, "/users/u1")
        .send()
        .await
        .expect("send");
    assert_eq!(read.status(), 200);
    assert_eq!(sim.user("u1").map(|u| u.status), Some("active".into()));
    assert_eq!((sim.write_count(), sim.read_count()), (3, 1));

    sim.set_faults(Faults::default());
    let resp = status_api_patch(&sim, "u1", "inactive").send().await;
    assert_eq!(resp.expect("send").status(), 200);
}

#[tokio::test]
async fn dropped_connection_gets_no_answer() {
    let sim = with_faults(Faults {
        latency: Duration::ZERO,
        rules: vec![rule(FaultTarget::Any, 1, FaultAction::Drop)],
    })
    .await;
    let dropped = status_api_get(&sim, "/users").send().await;
    assert!(dropped.is_err(), "expected a transport error: {dropped:?}");
    let resp = status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(statuses(&sim), [0, 200]);
}

#[tokio::test]
async fn latency_and_delay_stack() {
    let sim = with_faults(Faults {
        latency: Duration::from_millis(20),
        rules: vec![rule(
            FaultTarget::Reads,
            1,
            FaultAction::Delay(Duration::from_millis(300)),
        )],
    })
    .await;
    let started = Instant::now();
    status_api_get(&sim, "/users").send().await.expect("send");
    assert!(started.elapsed() >= Duration::from_millis(320));
    let started = Instant::now();
    status_api_get(&sim, "/users").send().await.expect("send");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(20) && elapsed < Duration::from_millis(300));
}

#[tokio::test]
async fn max_in_flight_writes_counts_during_latency() {
    let users = (0..5).map(|i| user(&format!("u{i}"), &format!("n{i}"), "active"));
    let mut config = SimConfig::new(SimKind::StatusApi, users.collect());
    config.faults.latency = Duration::from_millis(300);
    let sim = Simulator::start(config).await.expect("start");
    let writes: Vec<_> = (0..5)
        .map(|i| tokio::spawn(status_api_patch(&sim, &format!("u{i}"), "inactive").send()))
        .collect();
    for write in writes {
        let resp = write.await.expect("join").expect("send");
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(sim.max_in_flight_writes(), 5);
    assert_eq!(sim.write_count(), 5);
    status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(sim.max_in_flight_writes(), 5, "reads are not writes");
    sim.clear_requests();
    assert_eq!((sim.max_in_flight_writes(), sim.write_count()), (0, 0));
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn request_log_never_holds_the_secret() {
    let secret = "s3cr3t-value";
    let mut config = SimConfig::new(SimKind::StatusApi, vec![user("u1", "anna", "active")]);
    config.token = secret.to_string();
    let sim = Simulator::start(config).await.expect("start");
    let url = format!("{}/users/u1?access_token={secret}&x=1", sim.base_url());
    let resp = http()
        .patch(url)
        .bearer_auth(secret)
        .header("X-API-Version", "v1")
        .header("X-Api-Key", secret)
        .json(&json!({ "status": "inactive", "password": secret, "note": format!("t={secret}") }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let logged = &sim.requests()[0];
    let text = serde_json::to_string(&sim.requests()).expect("json");
    assert!(!text.contains(secret), "{text}");
    assert_eq!(
        logged.headers.get("authorization").map(String::as_str),
        Some("Bearer ***")
    );
    assert_eq!(
        logged.headers.get("x-api-version").map(String::as_str),
        Some("v1")
    );
    assert_eq!(logged.query.as_deref(), Some("access_token=***&x=1"));
    assert_eq!(logged.method, "PATCH");
    assert_eq!(logged.path, "/users/u1");
    assert!(logged.is_write);
    let body = logged.body.clone().unwrap_or_default();
    assert_eq!(body["status"], "inactive");
    assert_eq!(body["password"], "***");
}

#[tokio::test]
async fn admin_endpoints_drive_a_standalone_simulator_unrecorded() {
    let sim = start(SimKind::StatusApi, vec![user("a/b", "anna", "active")]).await;
    status_api_get(&sim, "/users").send().await.expect("send");
    let base = sim.base_url();
    let stats: Value = http()
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats,
        json!({"reads": 1, "writes": 0, "token_requests": 0, "max_in_flight_writes": 0})
    );

    let url = format!("{base}/_sim/users/{}/status", encode("a/b"));
    let resp = http()
        .put(&url)
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sim.user("a/b").map(|u| (u.status, u.version)),
        Some(("suspended".into(), 2))
    );
    let bad = http()
        .put(&url)
        .json(&json!({"status": "bogus"}))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    let garbage = http().put(&url).body("{").send().await.expect("send");
    assert_eq!(garbage.status(), 400);
    let missing = http()
        .put(format!("{base}/_sim/users/zz/status"))
        .json(&json!({"status": "active"}));
    assert_eq!(missing.send().await.expect("send").status(), 404);

    let users: Vec<SimUser> = http()
        .get(format!("{base}/_sim/users"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(users, sim.users());
    let log: Vec<RecordedRequest> = http()
        .get(format!("{base}/_sim/requests"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(log, sim.requests());
    assert_eq!(log.len(), 1, "admin calls are not recorded");
    let cleared = http()
        .delete(format!("{base}/_sim/requests"))
        .send()
        .await
        .expect("send");
    assert_eq!(cleared.status(), 204);
    assert!(sim.requests().is_empty());
    assert_eq!(sim.read_count(), 0);
}

#[tokio::test]
async fn drift_by_hand_is_not_a_request() {
    let sim = start(SimKind::Atlan, vec![user("u1", "anna", "active")]).await;
    assert!(sim.set_user_status("u1", "unknown"));
    assert!(
        !sim.set_user_status("u1", "suspended"),
        "atlan has no suspended"
    );
    assert!(!sim.set_user_status("nobody", "active"));
    assert_eq!(sim.user("u1").map(|u| u.status), Some("unknown".into()));
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn every_kind_rejects_missing_auth_and_unknown_routes() {
    for kind in SimKind::ALL {
        let sim = start(kind, vec![user("1", "anna", "active")]).await;
        let list = match kind {
            SimKind::StatusApi => "/users",
            SimKind::SuspendApi => "/v1/users",
            SimKind::Atlan => "/api/service/users",
            SimKind::Zitadel => "/resources/v3alpha/users/1",
            SimKind::Acronis => "/api/2/users/1",
            SimKind::Scim => "/Users",
        };
        let resp = http()
            .get(format!("{}{list}", sim.base_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 401, "{kind}");
        let body: Value = resp.json().await.expect("json error body");
        assert!(body.is_object(), "{kind}: {body}");
        let resp = http()
            .delete(format!("{}/nowhere", sim.base_url()))
            .bearer_auth("sim-token");
        let resp = resp
            .header("X-API-Version", "v1")
            .send()
            .await
            .expect("send");
        assert!(
            matches!(resp.status().as_u16(), 401 | 403 | 404),
            "{kind}: {}",
            resp.status()
        );
        assert!(sim
            .requests()
            .iter()
            .all(|r| !r.headers.values().any(|v| v.contains("sim-token"))));
        assert_eq!(
            sim.write_count(),
            1,
            "{kind}: a misrouted DELETE counts as a write attempt"
        );
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = start(SimKind::StatusApi, vec![]).await;
    let base = sim.base_url();
    let pooled = http();
    let resp = pooled.get(format!("{base}/_sim/stats")).send().await;
    assert_eq!(resp.expect("send").status(), 200);
    let started = Instant::now();
    sim.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "idle keep-alive connections close"
    );
    assert!(http()
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn serve_forever_serves_until_dropped() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = SimConfig::new(SimKind::Atlan, vec![user("u1", "anna", "active")]);
    let server = tokio::spawn(serve_forever(config, addr));
    let url = format!("http://{addr}/_sim/users");
    let mut users = None;
    for _ in 0..100 {
        if let Ok(resp) = http().get(&url).send().await {
            users = resp.json::<Vec<SimUser>>().await.ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(users.map(|u| u.len()), Some(1));
    server.abort();
}

#[tokio::test]
async fn drop_after_handling_applies_the_write_and_loses_the_answer() {
    let sim = with_faults(Faults::always(
        FaultTarget::Writes,
        FaultAction::DropAfterHandling,
    ))
    .await;
    let lost = status_api_patch(&sim, "u1", "inactive").send().await;
    assert!(lost.is_err(), "expected a transport error: {lost:?}");
    assert_eq!(sim.user("u1").map(|u| u.status), Some("inactive".into()));
    assert_eq!(statuses(&sim), [0]);
}

#[tokio::test]
async fn malformed_and_truncated_bodies_are_not_json() {
    let sim = with_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::MalformedBody,
    ))
    .await;
    let resp = status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(text.starts_with("{,,"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());

    sim.set_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::TruncatedBody,
    ));
    let resp = status_api_get(&sim, "/users")
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let length = resp.content_length().expect("full content length");
    assert!(length > 20);
    assert!(resp.bytes().await.is_err(), "the body is cut");
    assert_eq!(statuses(&sim), [200, 200]);
}

#[tokio::test]
async fn error_answers_are_not_reshaped() {
    let sim = with_faults(Faults::always(FaultTarget::Any, FaultAction::MalformedBody)).await;
    let resp = status_api_get(&sim, "/users/nobody")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn omit_field_removes_it_from_every_record() {
    let sim = with_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::OmitField(SimKind::StatusApi.status_field().to_string()),
    ))
    .await;
    let body: Value = status_api_get(&sim, "/users")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"][0]["id"], "u1");
    assert!(body["data"][0].get("status").is_none(), "{body}");
    assert_eq!(body["total"], 1);
}

#[tokio::test]
async fn oversized_body_is_streamed_valid_json() {
    let padding = 3 * 1024 * 1024 + 17;
    let sim = with_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::OversizedBody(padding),
    ))
    .await;
    let resp = status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), None, "streamed without a length");
    let bytes = resp.bytes().await.expect("body");
    assert!(bytes.len() as u64 > padding);
    let body: Value = serde_json::from_slice(&bytes).expect("still JSON");
    assert_eq!(body["data"][0]["id"], "u1");
    assert_eq!(
        body["_padding"].as_str().map(str::len),
        Some(padding as usize)
    );
}

#[tokio::test]
async fn lying_total_replaces_the_total_of_lists_only() {
    let sim = with_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::LyingTotal(json!(1_000_000_000_000_000_000_u64)),
    ))
    .await;
    let list: Value = status_api_get(&sim, "/users")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], json!(1_000_000_000_000_000_000_u64));
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let one: Value = status_api_get(&sim, "/users/u1")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(one["id"], "u1");
}

#[tokio::test]
async fn suspend_api_cursors_cycle_or_never_end() {
    let users = (0..5).map(|i| user(&format!("u{i}"), &format!("n{i}@x.org"), "active"));
    let mut config = SimConfig::new(SimKind::SuspendApi, users.collect());
    config.page_size_max = 2;
    config.faults = Faults::always(FaultTarget::Reads, FaultAction::CyclingCursor);
    let tenant = config.tenant_id.clone();
    let sim = Simulator::start(config).await.expect("start");
    let page = |cursor: Option<String>| {
        let mut url = format!("{}/v1/users?limit=100", sim.base_url());
        if let Some(cursor) = cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let request = http()
            .get(url)
            .bearer_auth("sim-token")
            .header("X-Tenant-ID", tenant.clone());
        async move {
            let body: Value = request
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            let ids: Vec<String> = body["data"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|u| u["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (ids, body["next_cursor"].as_str().map(str::to_string))
        }
    };
    let (first, a) = page(None).await;
    let (second, b) = page(a.clone()).await;
    let (third, back) = page(b.clone()).await;
    assert_eq!((first.len(), second.len(), third.len()), (2, 2, 1));
    assert!(a.is_some() && a != b);
    assert_eq!(back, a, "A -> B -> A");

    sim.set_faults(Faults::always(
        FaultTarget::Reads,
        FaultAction::EndlessCursor,
    ));
    let mut cursor = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (ids, next) = page(cursor).await;
        assert!(!ids.is_empty());
        let next = next.expect("never null");
        assert!(seen.insert(next.clone()), "cursor {next} repeated");
        cursor = Some(next);
    }
}

#[tokio::test]
async fn faults_round_trip_through_the_admin_endpoint() {
    let sim = start(SimKind::StatusApi, vec![user("u1", "anna", "active")]).await;
    let url = format!("{}/_sim/faults", sim.base_url());
    let config = json!({
        "latency_ms": 5,
        "rules": [
            {"target": "reads", "times": 1, "action": {"status": {"code": 429, "retry_after": "1"}}},
            {"target": "writes", "action": "drop_after_handling"},
            {"target": "any", "times": 2, "action": {"delay_ms": 10}},
            {"target": "reads", "action": {"lying_total": "99999999999999999999999"}}
        ]
    });
    let resp = http().put(&url).json(&config).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let got: Value = http()
        .get(&url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let expected = json!({
        "latency_ms": 5,
        "rules": [
            {"target": "reads", "times": 1, "action": {"status": {"code": 429, "retry_after": "1"}}},
            {"target": "writes", "times": 0, "action": "drop_after_handling"},
            {"target": "any", "times": 2, "action": {"delay_ms": 10}},
            {"target": "reads", "times": 0, "action": {"lying_total": "99999999999999999999999"}}
        ]
    });
    assert_eq!(got, expected);
    let limited = status_api_get(&sim, "/users").send().await.expect("send");
    assert_eq!(limited.status(), 429);
    let bad = http()
        .put(&url)
        .json(&json!({"rules": [{"target": "all"}]}))
        .send()
        .await;
    assert_eq!(bad.expect("send").status(), 400);
    let cleared = http().delete(&url).send().await.expect("send");
    assert_eq!(cleared.status(), 204);
    let got: Value = http()
        .get(&url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(got, json!({"latency_ms": 0, "rules": []}));
}

#[tokio::test]
async fn fault_file_loads_and_names_itself_when_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("faults.json");
    std::fs::write(
        &good,
        r#"{"rules": [{"target": "writes", "action": "drop"}]}"#,
    )
    .expect("write");
    let faults = load_faults(&good).expect("loads");
    assert_eq!(faults.rules.len(), 1);
    assert!(matches!(faults.rules[0].action, FaultAction::Drop));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"rules": [], "latncy_ms": 3}"#).expect("write");
    let message = load_faults(&bad).expect_err("unknown key").to_string();
    assert!(
        message.contains("bad.json") && message.contains("latncy_ms"),
        "{message}"
    );
}

#[tokio::test]
async fn taken_down_refuses_connections_then_serves_the_same_state() {
    let mut sim = start(SimKind::StatusApi, vec![user("u1", "anna", "active")]).await;
    let base = sim.base_url();
    status_api_get(&sim, "/users").send().await.expect("send");
    sim.take_down().await;
    let refused = http().get(format!("{base}/users")).send().await;
    assert!(refused.is_err_and(|e| e.is_connect()), "connection refused");
    assert!(sim.set_user_status("u1", "inactive"));
    sim.bring_up().await.expect("same port again");
    assert_eq!(sim.base_url(), base);
    let body: Value = status_api_get(&sim, "/users/u1")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "inactive");
    assert_eq!(sim.requests().len(), 2, "the log survives");
}

#[tokio::test]
async fn lying_total_reaches_every_total_field() {
    let total = json!("999999999999999999999999");
    let cases = [
        (
            SimKind::Atlan,
            "/api/service/users",
            vec!["/totalRecord", "/filterRecord"],
        ),
        (
            SimKind::Zitadel,
            "/resources/v3alpha/users/_search",
            vec!["/details/totalResult"],
        ),
    ];
    for (kind, path, pointers) in cases {
        let mut config = SimConfig::new(kind, vec![user("1", "anna", "active")]);
        config.faults = Faults::always(FaultTarget::Reads, FaultAction::LyingTotal(total.clone()));
        let sim = Simulator::start(config).await.expect("start");
        let url = format!("{}{path}", sim.base_url());
        let request = match kind {
            SimKind::Zitadel => http().post(url).json(&json!({"filters": []})),
            _ => http().get(url),
        };
        let resp = request.bearer_auth("sim-token").send().await.expect("send");
        assert_eq!(resp.status(), 200, "{kind}");
        let body: Value = resp.json().await.expect("json");
        for pointer in pointers {
            assert_eq!(
                body.pointer(pointer),
                Some(&total),
                "{kind} {pointer}: {body}"
            );
        }
    }
}

#[test]
fn every_documented_fault_action_parses() {
    let actions = [
        r#"{"status": {"code": 429, "retry_after": "2"}}"#,
        r#"{"status": {"code": 503}}"#,
        r#""drop""#,
        r#""drop_after_handling""#,
        r#"{"delay_ms": 1500}"#,
        r#""concurrent_change""#,
        r#""expire_tokens""#,
        r#""malformed_body""#,
        r#""truncated_body""#,
        r#"{"omit_field": "id"}"#,
        r#"{"oversized_body": 134217728}"#,
        r#"{"lying_total": 1000000}"#,
        r#"{"lying_total": "999999999999999999999999"}"#,
        r#""cycling_cursor""#,
        r#""endless_cursor""#,
    ];
    for action in actions {
        let parsed: Result<FaultAction, _> = serde_json::from_str(action);
        assert!(parsed.is_ok(), "{action}: {parsed:?}");
    }
    for target in ["any", "reads", "writes", "token"] {
        let rule = format!(r#"{{"target": "{target}", "action": "drop"}}"#);
        let parsed: FaultRule = serde_json::from_str(&rule).expect("rule");
        assert_eq!(parsed.times, 0, "times defaults to forever");
    }
    let unknown: Result<FaultAction, _> = serde_json::from_str(r#""explode""#);
    assert!(unknown.is_err());
}
