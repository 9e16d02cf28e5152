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
