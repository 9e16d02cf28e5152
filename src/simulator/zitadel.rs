//! `zitadel` (resource API v3alpha): `_activate` / `_deactivate` actions that fail with
//! FAILED_PRECONDITION when the user is already in that state, an optional organization context,
//! gRPC-style error bodies and protobuf JSON (64-bit counts as strings).
//!
//! Identity fields, as ZITADEL leaves some out: a user's `name` is its `username`; a name
//! ending in `-bot` is a machine user, which has no `contact` (so no email); an empty name
//! has neither `username` nor `contact`. Every other user has
//! `contact.email.address` (the name itself when it is an address, else
//! `<name>@example.com`).

use axum::http::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::{
    count_param, email_of, page_range, rfc3339, unix_now, ApiRequest, KindApi, Reply, Route,
    Shared, StoredUser,
};

pub(super) struct Zitadel;

/// Zitadel's own ceiling for `query.limit`.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// The owner shown in `details` when no organization is configured.
const DEFAULT_ORG: &str = "100000000000000001";

/// gRPC status codes used in error bodies.
mod grpc {
    pub const UNKNOWN: u16 = 2;
    pub const INVALID_ARGUMENT: u16 = 3;
    pub const NOT_FOUND: u16 = 5;
    pub const PERMISSION_DENIED: u16 = 7;
    pub const RESOURCE_EXHAUSTED: u16 = 8;
    pub const FAILED_PRECONDITION: u16 = 9;
    pub const INTERNAL: u16 = 13;
    pub const UNAVAILABLE: u16 = 14;
    pub const UNAUTHENTICATED: u16 = 16;
}

impl KindApi for Zitadel {
    fn statuses(&self) -> &'static [&'static str] {
        &["active", "inactive", "locked", "initial"]
    }

    fn new_id(&self, rng: &mut StdRng) -> String {
        rng.random_range(200_000_000_000_000_000_u64..300_000_000_000_000_000)
            .to_string()
    }

    fn total_fields(&self) -> &'static [&'static [&'static str]] {
        &[&["details", "totalResult"]]
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        let [resources, v3alpha, users, rest @ ..] = segments else {
            return Route::NotFound;
        };
        if resources != "resources" || v3alpha != "v3alpha" || users != "users" {
            return Route::NotFound;
        }
        match (method, rest) {
            (&Method::POST, [search]) if search == "_search" => Route::List,
            (&Method::GET, [id]) => Route::Get(id.clone()),
            (&Method::POST, [id, action]) if action == "_activate" || action == "_deactivate" => {
                Route::Write(id.clone())
            }
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        let code = match status.as_u16() {
            400 => grpc::INVALID_ARGUMENT,
            401 => grpc::UNAUTHENTICATED,
            403 => grpc::PERMISSION_DENIED,
            404 => grpc::NOT_FOUND,
            429 => grpc::RESOURCE_EXHAUSTED,
            503 => grpc::UNAVAILABLE,
            _ if status.is_server_error() => grpc::INTERNAL,
            _ => grpc::UNKNOWN,
        };
        error(status, code, message)
    }

    fn admit(&self, sim: &Shared, req: &ApiRequest, _route: &Route) -> Result<(), Reply> {
        if !sim.bearer_ok(req) {
            return Err(self.error(
                StatusCode::UNAUTHORIZED,
                "Errors.Token.Invalid: missing or invalid bearer token",
            ));
        }
        match &sim.config.organization_id {
            Some(org) if req.query_param("organization.orgId").as_ref() != Some(org) => {
                Err(self.error(StatusCode::FORBIDDEN, "permission denied"))
            }
            _ => Ok(()),
        }
    }

    fn concurrent_change(&self, user: &mut StoredUser, req: &ApiRequest) {
        match wanted_state(req) {
            Some(status) => user.set_status(status),
            None => user.touch(),
        }
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::List => self.search(sim, req),
            Route::Get(id) => match sim.store().get(&id) {
                Some(user) => Reply::ok(&json!({ "user": render(sim, user) })),
                None => not_found(&id),
            },
            Route::Write(id) => self.change_state(sim, req, &id),
            Route::Token | Route::NotFound => self.error(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}

impl Zitadel {
    fn search(&self, sim: &Shared, req: &ApiRequest) -> Reply {
        // Filters are validated but not applied: the engine always lists everything.
        let body = match req.json_or_default::<Value>() {
            Ok(body) => body,
            Err(e) => return self.error(StatusCode::BAD_REQUEST, &e),
        };
        if !(body.is_null() || body.is_object())
            || body.get("filters").is_some_and(|f| !f.is_array())
        {
            let message = "body must be an object with a 'filters' list";
            return self.error(StatusCode::BAD_REQUEST, message);
        }
        let limit = match count_param(req, "query.limit", DEFAULT_LIMIT) {
            Ok(n) if n > MAX_LIMIT => Err(format!("query.limit {n} exceeds {MAX_LIMIT}")),
            Ok(0) => Ok(DEFAULT_LIMIT),
            other => other,
        };
        let paging = limit.and_then(|l| Ok((l, count_param(req, "query.offset", 0)?)));
        let (limit, offset) = match paging {
            Ok((limit, offset)) => (sim.page_limit(limit), offset),
            Err(e) => return self.error(StatusCode::BAD_REQUEST, &e),
        };
        let store = sim.store();
        let users = store.all();
        let result: Vec<Value> = users[page_range(users.len(), offset, limit)]
            .iter()
            .map(|u| render(sim, u))
            .collect();
        Reply::ok(&json!({
            "details": {
                "totalResult": users.len().to_string(),
                "appliedLimit": limit.to_string(),
                "timestamp": rfc3339(unix_now()),
            },
            "result": result,
        }))
    }

    fn change_state(&self, sim: &Shared, req: &ApiRequest, id: &str) -> Reply {
        if let Err(e) = req.json_or_default::<Value>() {
            return self.error(StatusCode::BAD_REQUEST, &e);
        }
        let Some(wanted) = wanted_state(req) else {
            return self.error(StatusCode::NOT_FOUND, "no such route");
        };
        let mut store = sim.store();
        let Some(user) = store.get_mut(id) else {
            return not_found(id);
        };
        let refusal = match (wanted, user.user.status.as_str()) {
            ("inactive", "inactive") => {
                Some("Errors.User.AlreadyInactive: user is already deactivated")
            }
            ("active", "inactive") => None,
            ("active", _) => Some("Errors.User.NotInactive: user is not deactivated"),
            (_, "locked") => Some("Errors.User.Locked: user is locked; unlock it first"),
            (_, "initial") => Some("Errors.User.CantDeactivateInitial: user is not set up yet"),
            _ => None,
        };
        if let Some(message) = refusal {
            return error(StatusCode::BAD_REQUEST, grpc::FAILED_PRECONDITION, message);
        }
        user.set_status(wanted);
        Reply::ok(&json!({ "details": details(sim, user) }))
    }
}

/// The state an `_activate` / `_deactivate` asks for.
fn wanted_state(req: &ApiRequest) -> Option<&'static str> {
    match req.segments.last().map(String::as_str) {
        Some("_activate") => Some("active"),
        Some("_deactivate") => Some("inactive"),
        _ => None,
    }
}

/// The suffix of a machine user's name: such a user has no email.
const MACHINE_SUFFIX: &str = "-bot";

fn render(sim: &Shared, u: &StoredUser) -> Value {
    let mut user = json!({
        "id": u.user.id,
        "state": format!("USER_STATE_{}", u.user.status.to_uppercase()),
        "details": details(sim, u),
    });
    let name = u.user.name.as_str();
    if !name.is_empty() {
        user["username"] = json!(name);
        if !name.ends_with(MACHINE_SUFFIX) {
            user["contact"] = json!({ "email": { "address": email_of(name), "isVerified": true } });
        }
    }
    user
}

fn details(sim: &Shared, u: &StoredUser) -> Value {
    let org = sim.config.organization_id.as_deref().unwrap_or(DEFAULT_ORG);
    json!({
        "id": u.user.id,
        "created": rfc3339(u.created),
        "changed": rfc3339(u.updated),
        "owner": { "type": "OWNER_TYPE_ORG", "id": org },
    })
}

fn not_found(id: &str) -> Reply {
    let message = format!("Errors.User.NotFound: user '{id}' could not be found");
    error(StatusCode::NOT_FOUND, grpc::NOT_FOUND, &message)
}

fn error(status: StatusCode, code: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "code": code,
            "message": message,
            "details": [{ "@type": "type.googleapis.com/zitadel.v1.ErrorDetail", "message": message }],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode, http, start, user};
    use super::super::*;
    use serde_json::Value;

    const USERS: &str = "/resources/v3alpha/users";

    async fn post(sim: &Simulator, path_and_query: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = http()
            .post(format!("{}{USERS}{path_and_query}", sim.base_url()))
            .bearer_auth("sim-token");
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn search(sim: &Simulator, query: &str) -> (u16, Value) {
        post(
            sim,
            &format!("/_search?{query}"),
            Some(r#"{"filters": []}"#),
        )
        .await
    }

    #[tokio::test]
    async fn search_pages_with_string_totals() {
        let sim = start(
            SimKind::Zitadel,
            SimUser::generate(SimKind::Zitadel, 200, 5),
        )
        .await;
        for (offset, expected) in [(0, 100), (100, 100), (200, 0)] {
            let (status, body) =
                search(&sim, &format!("query.offset={offset}&query.limit=100")).await;
            assert_eq!(status, 200);
            assert_eq!(body["details"]["totalResult"], "200");
            assert_eq!(body["details"]["appliedLimit"], "100");
            assert_eq!(body["result"].as_array().map(Vec::len), Some(expected));
        }
        let (_, default) = post(&sim, "/_search", None).await;
        assert_eq!(default["result"].as_array().map(Vec::len), Some(100));
        let (_, clamped) = search(&sim, "query.limit=1000").await;
        assert_eq!(clamped["details"]["appliedLimit"], "100");
        let (status, body) = search(&sim, "query.limit=1001").await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(3)));
        let (status, _) = post(&sim, "/_search", Some("{nope")).await;
        assert_eq!(status, 400);
        assert_eq!(sim.write_count(), 0, "search is a read");
    }

    #[tokio::test]
    async fn identity_fields_are_absent_where_zitadel_leaves_them_out() {
        let users = vec![
            user("1", "anna", "active"),
            user("2", "ci-bot", "active"),
            user("3", "", "locked"),
            user("4", "Ben@Example.org", "inactive"),
        ];
        let sim = start(SimKind::Zitadel, users).await;
        let (status, body) = search(&sim, "query.limit=10").await;
        assert_eq!(status, 200);
        let result = body["result"].as_array().expect("result");
        let identity: Vec<(Value, Value)> = result
            .iter()
            .map(|u| {
                (
                    u["username"].clone(),
                    u["contact"]["email"]["address"].clone(),
                )
            })
            .collect();
        assert_eq!(
            identity,
            vec![
                ("anna".into(), "anna@example.com".into()),
                ("ci-bot".into(), Value::Null),
                (Value::Null, Value::Null),
                ("Ben@Example.org".into(), "Ben@Example.org".into()),
            ]
        );
        assert!(result[1].get("contact").is_none());
        assert!(result[2].get("username").is_none());
    }

    #[tokio::test]
    async fn get_one_and_states() {
        let users = vec![
            user("1", "anna", "active"),
            user("2", "ben", "locked"),
            user("3", "cy", "inactive"),
        ];
        let sim = start(SimKind::Zitadel, users).await;
        let get = |id: &str| {
            http()
                .get(format!("{}{USERS}/{}", sim.base_url(), encode(id)))
                .bearer_auth("sim-token")
                .send()
        };
        let body: Value = get("2").await.expect("send").json().await.expect("json");
        assert_eq!(body["user"]["id"], "2");
        assert_eq!(body["user"]["state"], "USER_STATE_LOCKED");
        let missing = get("9").await.expect("send");
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.expect("json");
        assert_eq!(body["code"], 5);
        assert_eq!(
            body["details"][0]["@type"],
            "type.googleapis.com/zitadel.v1.ErrorDetail"
        );
    }

    #[tokio::test]
    async fn activate_and_deactivate_preconditions() {
        let users = vec![user("1", "anna", "active"), user("2", "ben", "locked")];
        let sim = start(SimKind::Zitadel, users).await;
        let (status, body) = post(&sim, "/1/_deactivate", None).await;
        assert_eq!(status, 200);
        assert_eq!(body["details"]["id"], "1");
        assert_eq!(sim.user("1").map(|u| u.status), Some("inactive".into()));

        let (status, body) = post(&sim, "/1/_deactivate", Some("{}")).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(9)));
        assert!(body["details"][0]["@type"].is_string());
        let (status, _) = post(&sim, "/1/_activate", None).await;
        assert_eq!(status, 200);
        let (status, body) = post(&sim, "/1/_activate", None).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(9)));

        for action in ["_activate", "_deactivate"] {
            let (status, body) = post(&sim, &format!("/2/{action}"), None).await;
            assert_eq!((status, body["code"].as_u64()), (400, Some(9)), "{action}");
        }
        assert_eq!(sim.user("2").map(|u| u.status), Some("locked".into()));
        assert_eq!(post(&sim, "/7/_activate", None).await.0, 404);
        assert_eq!(sim.write_count(), 7);
    }

    #[tokio::test]
    async fn organization_context_is_required_when_configured() {
        let mut config = SimConfig::new(SimKind::Zitadel, vec![user("1", "anna", "active")]);
        config.organization_id = Some("42".to_string());
        let sim = Simulator::start(config).await.expect("start");
        let (status, body) = search(&sim, "query.limit=10").await;
        assert_eq!((status, body["code"].as_u64()), (403, Some(7)));
        assert_eq!(search(&sim, "organization.orgId=41").await.0, 403);
        let (status, body) = search(&sim, "organization.orgId=42").await;
        assert_eq!(status, 200);
        assert_eq!(body["result"][0]["details"]["owner"]["id"], "42");
        let (status, _) = post(&sim, "/1/_deactivate?organization.orgId=42", None).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn concurrent_change_makes_the_write_a_precondition_failure() {
        let mut config = SimConfig::new(SimKind::Zitadel, vec![user("1", "anna", "active")]);
        config.faults.rules.push(FaultRule {
            target: FaultTarget::Writes,
            times: 1,
            action: FaultAction::ConcurrentChange,
        });
        let sim = Simulator::start(config).await.expect("start");
        let (status, body) = post(&sim, "/1/_deactivate", None).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(9)));
        assert_eq!(sim.user("1").map(|u| u.status), Some("inactive".into()));
    }
}
