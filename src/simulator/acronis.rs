//! `acronis` (Account Management API v2): OAuth2 client-credentials tokens that expire, batch
//! reads by uuid, and optimistic concurrency on `PUT /api/2/users/{id}` through `version`.
//! Every user belongs to the configured tenant (`SimConfig::tenant_id`), whose user ids
//! `GET /api/2/tenants/{tenant_id}/users` lists; a user's email is `contact.email`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use rand::Rng;
use serde_json::{json, Value};

use super::{
    display_names, email_of, one_in, rfc3339, ApiRequest, KindApi, Reply, Route, Shared, StoredUser,
};

pub(super) struct Acronis;

/// The most uuids one batch read accepts (the API's limit, not `page_size_max`).
const MAX_BATCH: usize = 100;

impl KindApi for Acronis {
    fn statuses(&self) -> &'static [&'static str] {
        &["active", "inactive"]
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        let [api, two, rest @ ..] = segments else {
            return Route::NotFound;
        };
        if api != "api" || two != "2" {
            return Route::NotFound;
        }
        match (method, rest) {
            (&Method::POST, [idp, token]) if idp == "idp" && token == "token" => Route::Token,
            (&Method::GET, [users]) if users == "users" => Route::List,
            (&Method::GET, [tenants, _, users]) if tenants == "tenants" && users == "users" => {
                Route::List
            }
            (&Method::GET, [users, id]) if users == "users" => Route::Get(id.clone()),
            (&Method::PUT, [users, id]) if users == "users" => Route::Write(id.clone()),
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({ "error": {
                "code": status.as_u16(),
                "message": message,
                "details": {},
                "domain": "PlatformAccountServer",
            }}),
        )
    }

    /// API calls need an access token this simulator issued and that has not expired; the token
    /// endpoint authenticates the client itself.
    fn admit(&self, sim: &Shared, req: &ApiRequest, route: &Route) -> Result<(), Reply> {
        if *route == Route::Token {
            return Ok(());
        }
        let valid = req
            .credentials("Bearer")
            .and_then(|token| sim.tokens().get(token).copied())
            .is_some_and(|expires| Instant::now() < expires);
        if valid {
            Ok(())
        } else {
            Err(self.error(
                StatusCode::UNAUTHORIZED,
                "access token is invalid or expired",
            ))
        }
    }

    fn concurrent_change(&self, user: &mut StoredUser, _req: &ApiRequest) {
        user.revise();
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::Token => issue_token(sim, req),
            Route::List => match req.segments.as_slice() {
                [_, _, tenants, tenant, _] if tenants == "tenants" => {
                    self.tenant_users(sim, tenant)
                }
                _ => self.batch(sim, req),
            },
            Route::Get(id) => match sim.store().get(&id) {
                Some(user) => Reply::ok(&render(sim, user)),
                None => self.not_found(&id),
            },
            Route::Write(id) => self.update(sim, req, &id),
            Route::NotFound => self.error(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}

impl Acronis {
    fn batch(&self, sim: &Shared, req: &ApiRequest) -> Reply {
        let Some(uuids) = req.query_param("uuids") else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "query parameter 'uuids' is required",
            );
        };
        let mut ids: Vec<&str> = uuids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        ids.dedup();
        if ids.len() > MAX_BATCH {
            let message = format!("at most {MAX_BATCH} uuids per request, got {}", ids.len());
            return self.error(StatusCode::BAD_REQUEST, &message);
        }
        let store = sim.store();
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| store.get(id))
            .map(|u| render(sim, u))
            .collect();
        Reply::ok(&json!({ "items": items }))
    }

    /// `GET /api/2/tenants/{tenant_id}/users`: the ids of the tenant's users, no more.
    fn tenant_users(&self, sim: &Shared, tenant: &str) -> Reply {
        if tenant != sim.config.tenant_id {
            return self.error(
                StatusCode::NOT_FOUND,
                &format!("tenant '{tenant}' not found"),
            );
        }
        let store = sim.store();
        let items: Vec<&str> = store.all().iter().map(|u| u.user.id.as_str()).collect();
        Reply::ok(&json!({ "items": items }))
    }

    fn update(&self, sim: &Shared, req: &ApiRequest, id: &str) -> Reply {
        #[derive(serde::Deserialize)]
        struct Body {
            enabled: Option<bool>,
            version: Option<u64>,
        }
        let body: Body = match req.json() {
            Ok(body) => body,
            Err(e) => return self.error(StatusCode::BAD_REQUEST, &e),
        };
        let mut store = sim.store();
        let Some(user) = store.get_mut(id) else {
            return self.not_found(id);
        };
        if body.version != Some(user.user.version) {
            let message = format!(
                "version {} does not match the current version; re-read the user and retry",
                body.version
                    .map_or("missing".to_string(), |v| v.to_string())
            );
            return self.error(StatusCode::CONFLICT, &message);
        }
        match body.enabled {
            Some(enabled) => user.set_status(if enabled { "active" } else { "inactive" }),
            None => user.revise(),
        }
        Reply::ok(&render(sim, user))
    }

    fn not_found(&self, id: &str) -> Reply {
        self.error(StatusCode::NOT_FOUND, &format!("user '{id}' not found"))
    }
}

/// `POST /api/2/idp/token`: client credentials via HTTP Basic (or the form), OAuth2 errors.
fn issue_token(sim: &Shared, req: &ApiRequest) -> Reply {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let client = req
        .credentials("Basic")
        .and_then(decode_basic)
        .or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let authenticated =
        client.is_some_and(|(id, secret)| id == sim.config.client_id && secret == sim.config.token);
    if !authenticated {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if field("grant_type").as_deref() != Some("client_credentials") {
        let message = "grant_type must be client_credentials";
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", message);
    }
    let ttl = sim.config.token_ttl;
    let token: String = (0..20)
        .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
        .collect();
    let mut tokens = sim.tokens();
    let now = Instant::now();
    tokens.retain(|_, expires| *expires > now);
    tokens.insert(token.clone(), now + ttl);
    let expires_on = (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Reply::ok(&json!({ "access_token": token, "token_type": "bearer", "expires_on": expires_on }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// `client_id:client_secret` from the base64 of a Basic credential.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(encoded.len() * 3 / 4);
    for c in encoded.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = bits << 6 | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn render(sim: &Shared, u: &StoredUser) -> Value {
    let (first, last) = display_names(&u.user.name);
    let activated = !one_in(20, &u.user.id, 40);
    json!({
        "id": u.user.id,
        "login": u.user.name,
        "enabled": u.is_active(),
        "activated": activated,
        "tenant_id": sim.config.tenant_id,
        "version": u.user.version,
        "contact": { "email": email_of(&u.user.name), "firstname": first, "lastname": last },
        "created_at": rfc3339(u.created),
        "language": "en",
        "terms_accepted": activated,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode, http, start, user};
    use super::super::*;
    use serde_json::{json, Value};
    use std::time::Duration;

    async fn new_token(sim: &Simulator) -> String {
        let resp = http()
            .post(format!("{}/api/2/idp/token", sim.base_url()))
            .basic_auth("roster-client", Some("sim-token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["token_type"], "bearer");
        assert!(body["expires_on"].as_u64().is_some());
        body["access_token"].as_str().expect("token").to_string()
    }

    async fn get(sim: &Simulator, token: &str, path: &str) -> (u16, Value) {
        let resp = http()
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn put(sim: &Simulator, token: &str, id: &str, body: Value) -> (u16, Value) {
        let resp = http()
            .put(format!("{}/api/2/users/{}", sim.base_url(), encode(id)))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    #[tokio::test]
    async fn token_endpoint_checks_client_and_grant() {
        let sim = start(SimKind::Acronis, vec![]).await;
        let url = format!("{}/api/2/idp/token", sim.base_url());
        let form = "application/x-www-form-urlencoded";
        let wrong = http()
            .post(&url)
            .basic_auth("roster-client", Some("bad"))
            .header("content-type", form)
            .body("grant_type=client_credentials");
        let resp = wrong.send().await.expect("send");
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.json::<Value>().await.expect("json")["error"],
            "invalid_client"
        );
        let grant = http()
            .post(&url)
            .basic_auth("roster-client", Some("sim-token"))
            .header("content-type", form)
            .body("grant_type=password");
        assert_eq!(grant.send().await.expect("send").status(), 400);
        let in_form = http()
            .post(&url)
            .header("content-type", form)
            .body("grant_type=client_credentials&client_id=roster-client&client_secret=sim-token");
        assert_eq!(in_form.send().await.expect("send").status(), 200);
        assert_eq!(sim.token_requests(), 3);
        assert_eq!(sim.read_count(), 0);

        let log = serde_json::to_string(&sim.requests()).expect("json");
        assert!(!log.contains("sim-token"), "{log}");
        assert_eq!(
            sim.requests()[0]
                .headers
                .get("authorization")
                .map(String::as_str),
            Some("Basic ***")
        );
        let form_body = sim.requests()[2].body.clone().unwrap_or_default();
        assert_eq!(
            form_body["form"],
            "grant_type=client_credentials&client_id=roster-client&client_secret=***"
        );
    }

    #[tokio::test]
    async fn api_needs_an_issued_unexpired_token() {
        let mut config = SimConfig::new(SimKind::Acronis, vec![user("u1", "anna", "active")]);
        config.token_ttl = Duration::from_millis(300);
        let sim = Simulator::start(config).await.expect("start");
        assert_eq!(
            get(&sim, "sim-token", "/api/2/users/u1").await.0,
            401,
            "the secret is not a token"
        );
        let token = new_token(&sim).await;
        assert_eq!(get(&sim, &token, "/api/2/users/u1").await.0, 200);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (status, body) = get(&sim, &token, "/api/2/users/u1").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(401)));
        let log = serde_json::to_string(&sim.requests()).expect("json");
        assert!(!log.contains(&token));
    }

    #[tokio::test]
    async fn expire_tokens_fault_invalidates_issued_tokens() {
        let sim = start(SimKind::Acronis, vec![user("u1", "anna", "active")]).await;
        let token = new_token(&sim).await;
        sim.set_faults(Faults {
            latency: Duration::ZERO,
            rules: vec![FaultRule {
                target: FaultTarget::Reads,
                times: 1,
                action: FaultAction::ExpireTokens,
            }],
        });
        assert_eq!(get(&sim, &token, "/api/2/users/u1").await.0, 401);
        let fresh = new_token(&sim).await;
        assert_eq!(get(&sim, &fresh, "/api/2/users/u1").await.0, 200);
    }

    #[tokio::test]
    async fn batch_read_by_uuids() {
        let users = SimUser::generate(SimKind::Acronis, 150, 6);
        let sim = start(SimKind::Acronis, users.clone()).await;
        let token = new_token(&sim).await;
        let ids: Vec<&str> = users.iter().take(3).map(|u| u.id.as_str()).collect();
        let path = format!("/api/2/users?uuids={},unknown-id,{}", ids.join(","), ids[0]);
        let (status, body) = get(&sim, &token, &path).await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().expect("items");
        let got: Vec<&str> = items.iter().filter_map(|u| u["id"].as_str()).collect();
        assert_eq!(got, [ids[0], ids[1], ids[2], ids[0]]);
        for field in [
            "id",
            "login",
            "enabled",
            "activated",
            "tenant_id",
            "version",
        ] {
            assert!(items[0].get(field).is_some(), "missing {field}");
        }
        let hundred: Vec<&str> = users.iter().take(100).map(|u| u.id.as_str()).collect();
        let (status, body) = get(
            &sim,
            &token,
            &format!("/api/2/users?uuids={}", hundred.join(",")),
        )
        .await;
        assert_eq!(
            (status, body["items"].as_array().map(Vec::len)),
            (200, Some(100))
        );
        let many: Vec<&str> = users.iter().take(101).map(|u| u.id.as_str()).collect();
        let (status, body) = get(
            &sim,
            &token,
            &format!("/api/2/users?uuids={}", many.join(",")),
        )
        .await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(400)));
    }

    #[tokio::test]
    async fn the_tenant_lists_its_user_ids_and_an_unknown_tenant_is_404() {
        let users = vec![user("u1", "anna", "active"), user("u2", "ben", "inactive")];
        let sim = start(SimKind::Acronis, users).await;
        let token = new_token(&sim).await;
        let tenant = SimConfig::new(SimKind::Acronis, Vec::new()).tenant_id;
        let (status, body) = get(&sim, &token, &format!("/api/2/tenants/{tenant}/users")).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({ "items": ["u1", "u2"] }));
        let (status, body) = get(&sim, &token, "/api/2/tenants/other/users").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (404, Some(404)));
        let (_, batch) = get(&sim, &token, "/api/2/users?uuids=u2").await;
        assert_eq!(batch["items"][0]["contact"]["email"], "ben@example.com");
        assert_eq!(batch["items"][0]["login"], "ben");
        assert_eq!(sim.write_count(), 0, "listing is a read");
    }

    #[tokio::test]
    async fn put_needs_the_current_version_and_bumps_it() {
        let sim = start(SimKind::Acronis, vec![user("u1", "anna", "active")]).await;
        let token = new_token(&sim).await;
        let (_, before) = get(&sim, &token, "/api/2/users/u1").await;
        let activated = before["activated"].clone();
        assert_eq!(before["version"], 1);

        let (status, body) = put(&sim, &token, "u1", json!({"enabled": false})).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (409, Some(409)));
        assert_eq!(
            put(&sim, &token, "u1", json!({"enabled": false, "version": 7}))
                .await
                .0,
            409
        );
        let (status, body) = put(&sim, &token, "u1", json!({"enabled": false, "version": 1})).await;
        assert_eq!(status, 200);
        assert_eq!(
            (body["enabled"].as_bool(), body["version"].as_u64()),
            (Some(false), Some(2))
        );
        assert_eq!(body["activated"], activated);
        assert_eq!(
            put(&sim, &token, "u1", json!({"enabled": true, "version": 1}))
                .await
                .0,
            409
        );
        assert_eq!(
            put(
                &sim,
                &token,
                "nobody",
                json!({"enabled": true, "version": 1})
            )
            .await
            .0,
            404
        );
        assert_eq!(
            put(&sim, &token, "u1", json!({"enabled": "yes", "version": 2}))
                .await
                .0,
            400
        );
        assert_eq!(
            sim.user("u1").map(|u| (u.status, u.version)),
            Some(("inactive".into(), 2))
        );
    }

    #[tokio::test]
    async fn concurrent_change_bumps_the_version_first() {
        let sim = start(SimKind::Acronis, vec![user("u1", "anna", "active")]).await;
        let token = new_token(&sim).await;
        sim.set_faults(Faults {
            latency: Duration::ZERO,
            rules: vec![FaultRule {
                target: FaultTarget::Writes,
                times: 1,
                action: FaultAction::ConcurrentChange,
            }],
        });
        assert_eq!(
            put(&sim, &token, "u1", json!({"enabled": false, "version": 1}))
                .await
                .0,
            409
        );
        let (_, now) = get(&sim, &token, "/api/2/users/u1").await;
        assert_eq!(now["version"], 2);
        assert_eq!(
            put(&sim, &token, "u1", json!({"enabled": false, "version": 2}))
                .await
                .0,
            200
        );
    }
}
