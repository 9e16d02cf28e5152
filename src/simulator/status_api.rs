//! `status-api`: a self-hosted user directory with a `status` field, changed by
//! `PATCH /users/{id-or-identifier}` and read by page (`page`/`per_page`/`total`).

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    count_param, display_names, email_of, hash, page_range, rfc3339, ApiRequest, KindApi, Reply,
    Route, Shared, Store, StoredUser,
};

pub(super) struct StatusApi;

const STATUSES: [&str; 5] = ["active", "onboarding", "inactive", "suspended", "risky"];

impl KindApi for StatusApi {
    fn statuses(&self) -> &'static [&'static str] {
        &STATUSES
    }

    fn total_fields(&self) -> &'static [&'static [&'static str]] {
        &[&["total"]]
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        match (method, segments) {
            (&Method::GET, [users]) if users == "users" => Route::List,
            (&Method::GET, [users, id]) if users == "users" => Route::Get(id.clone()),
            (&Method::PATCH, [users, id]) if users == "users" => Route::Write(id.clone()),
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            422 => "invalid_status",
            429 => "rate_limited",
            503 => "unavailable",
            _ if status.is_server_error() => "internal_error",
            _ => "error",
        };
        error(status, code, message)
    }

    fn admit(&self, sim: &Shared, req: &ApiRequest, _route: &Route) -> Result<(), Reply> {
        if !sim.bearer_ok(req) {
            return Err(self.error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
        }
        let expected = sim.config.api_version.as_str();
        match req.header("x-api-version") {
            Some(v) if v == expected => Ok(()),
            got => Err(error(
                StatusCode::BAD_REQUEST,
                "unsupported_api_version",
                &format!("X-API-Version must be '{expected}', got {got:?}"),
            )),
        }
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::List => list(sim, req),
            Route::Get(key) => {
                let store = sim.store();
                match find(&store, &key) {
                    Some(i) => Reply::ok(&render(&store.all()[i])),
                    None => not_found(&key),
                }
            }
            Route::Write(key) => patch(sim, req, &key),
            Route::Token | Route::NotFound => self.error(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}

fn list(sim: &Shared, req: &ApiRequest) -> Reply {
    let page = count_param(req, "page", 1);
    let per_page = count_param(req, "per_page", 100);
    let (page, per_page) = match (page, per_page) {
        (Ok(p), Ok(n)) if p >= 1 && n >= 1 => (p, sim.page_limit(n)),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
        _ => {
            let message = "page and per_page must be at least 1";
            return error(StatusCode::BAD_REQUEST, "bad_request", message);
        }
    };
    let store = sim.store();
    let users = store.all();
    let range = page_range(users.len(), (page - 1).saturating_mul(per_page), per_page);
    let data: Vec<Value> = users[range].iter().map(render).collect();
    Reply::ok(&json!({ "data": data, "page": page, "per_page": per_page, "total": users.len() }))
}

/// The PATCH body; `review_comment` is only kept in the request log.
#[derive(serde::Deserialize)]
struct Patch {
    status: Option<String>,
}

fn patch(sim: &Shared, req: &ApiRequest, key: &str) -> Reply {
    let body: Patch = match req.json() {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    let status = match body.status {
        Some(s) if STATUSES.contains(&s.as_str()) => s,
        other => {
            let message = format!(
                "status must be one of {}, got {other:?}",
                STATUSES.join(", ")
            );
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_status", &message);
        }
    };
    let mut store = sim.store();
    match find(&store, key) {
        Some(i) => {
            let user = store.at_mut(i);
            user.set_status(&status);
            Reply::ok(&render(user))
        }
        None => not_found(key),
    }
}

/// Accounts are addressed by uuid or by identifier.
fn find(store: &Store, key: &str) -> Option<usize> {
    store
        .index_of(key)
        .or_else(|| store.all().iter().position(|u| u.user.name == key))
}

fn render(u: &StoredUser) -> Value {
    let (first, last) = display_names(&u.user.name);
    let user_type = match hash(&u.user.id, 10) % 20 {
        0 => "service_account",
        1..=3 => "contractor",
        _ => "employee",
    };
    let created_by = "scim-sync";
    let updated_by = if u.user.version > 1 {
        "api"
    } else {
        created_by
    };
    json!({
        "id": u.user.id,
        "identifier": u.user.name,
        "name": format!("{first} {last}").trim_end(),
        "email": email_of(&u.user.name),
        "user_type": user_type,
        "status": u.user.status,
        "created_at": rfc3339(u.created),
        "updated_at": rfc3339(u.updated),
        "created_by": created_by,
        "updated_by": updated_by,
    })
}

fn not_found(key: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no user with id or identifier '{key}'"),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode, http, start, user};
    use super::super::*;
    use serde_json::Value;

    async fn get(sim: &Simulator, path: &str) -> (u16, Value) {
        let resp = http()
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth("sim-token")
            .header("X-API-Version", "v1")
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn patch(sim: &Simulator, key: &str, body: &str) -> (u16, Value) {
        let resp = http()
            .patch(format!("{}/users/{}", sim.base_url(), encode(key)))
            .bearer_auth("sim-token")
            .header("X-API-Version", "v1")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    #[tokio::test]
    async fn pages_until_an_exactly_full_last_page() {
        let sim = start(
            SimKind::StatusApi,
            SimUser::generate(SimKind::StatusApi, 200, 1),
        )
        .await;
        let mut seen = Vec::new();
        for page in 1..=3 {
            let (status, body) = get(&sim, &format!("/users?page={page}&per_page=100")).await;
            assert_eq!(status, 200);
            assert_eq!(body["total"], 200);
            assert_eq!(body["per_page"], 100);
            let data = body["data"].as_array().expect("data");
            assert_eq!(data.len(), if page < 3 { 100 } else { 0 }, "page {page}");
            seen.extend(
                data.iter()
                    .map(|u| u["id"].as_str().unwrap_or("").to_string()),
            );
        }
        let ids: Vec<String> = sim.users().into_iter().map(|u| u.id).collect();
        assert_eq!(seen, ids);
        assert_eq!(sim.read_count(), 3);
        assert_eq!(sim.write_count(), 0);
    }

    #[tokio::test]
    async fn clamps_page_size_and_rejects_bad_paging() {
        let sim = start(
            SimKind::StatusApi,
            SimUser::generate(SimKind::StatusApi, 150, 1),
        )
        .await;
        let (_, body) = get(&sim, "/users?per_page=1000").await;
        assert_eq!(body["per_page"], 100);
        assert_eq!(body["data"].as_array().map(Vec::len), Some(100));
        for bad in ["/users?page=0", "/users?per_page=x"] {
            let (status, body) = get(&sim, bad).await;
            assert_eq!(status, 400, "{bad}");
            assert_eq!(body["error"]["code"], "bad_request");
        }
    }

    #[tokio::test]
    async fn record_has_every_documented_field() {
        let sim = start(
            SimKind::StatusApi,
            vec![user("u-1", "anna.schmidt", "risky")],
        )
        .await;
        let (status, body) = get(&sim, "/users/u-1").await;
        assert_eq!(status, 200);
        for field in [
            "id",
            "identifier",
            "name",
            "email",
            "user_type",
            "status",
            "created_at",
            "updated_at",
            "created_by",
            "updated_by",
        ] {
            assert!(body.get(field).is_some(), "missing {field}: {body}");
        }
        assert_eq!(body["name"], "Anna Schmidt");
        assert_eq!(body["status"], "risky");
    }

    #[tokio::test]
    async fn auth_and_api_version_are_enforced() {
        let sim = start(SimKind::StatusApi, vec![user("u-1", "anna", "active")]).await;
        let url = format!("{}/users", sim.base_url());
        let no_token = http().get(&url).header("X-API-Version", "v1").send().await;
        let no_token = no_token.expect("send");
        assert_eq!(no_token.status(), 401);
        let body: Value = no_token.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
        let wrong = http()
            .get(&url)
            .bearer_auth("nope")
            .header("X-API-Version", "v1");
        assert_eq!(wrong.send().await.expect("send").status(), 401);
        let old = http()
            .get(&url)
            .bearer_auth("sim-token")
            .header("X-API-Version", "v0");
        assert_eq!(old.send().await.expect("send").status(), 400);
        let missing = http().get(&url).bearer_auth("sim-token");
        assert_eq!(missing.send().await.expect("send").status(), 400);
    }

    #[tokio::test]
    async fn patch_by_id_or_identifier_with_validation() {
        let sim = start(SimKind::StatusApi, vec![user("u-1", "anna", "active")]).await;
        let (status, body) = patch(
            &sim,
            "anna",
            r#"{"status":"suspended","review_comment":"left"}"#,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "suspended");
        assert_eq!(body["id"], "u-1");
        let (status, _) = patch(&sim, "u-1", r#"{"status":"active"}"#).await;
        assert_eq!(status, 200);
        assert_eq!(sim.user("u-1").map(|u| u.status), Some("active".into()));

        let (status, body) = patch(&sim, "u-1", r#"{"status":"gone"}"#).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("invalid_status"))
        );
        let (status, body) = patch(&sim, "u-1", r#"{"status": "#).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request"))
        );
        let (status, body) = patch(&sim, "nobody", r#"{"status":"active"}"#).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
        assert_eq!(sim.write_count(), 5);
        let logged = &sim.writes()[0];
        assert_eq!(
            logged.body.as_ref().map(|b| b["review_comment"].clone()),
            Some("left".into())
        );
    }

    #[tokio::test]
    async fn percent_encoded_ids_are_one_segment() {
        let ids = ["a/b", "../admin", "x?y", "100%", "sp ace"];
        let users = ids
            .iter()
            .map(|id| user(id, &format!("n-{id}"), "active"))
            .collect();
        let sim = start(SimKind::StatusApi, users).await;
        for id in ids {
            let (status, body) = get(&sim, &format!("/users/{}", encode(id))).await;
            assert_eq!(status, 200, "{id}");
            assert_eq!(body["id"], id);
            let (status, body) = patch(&sim, id, r#"{"status":"inactive"}"#).await;
            assert_eq!((status, body["id"].as_str()), (200, Some(id)));
        }
        let paths: Vec<String> = sim.writes().into_iter().map(|r| r.path).collect();
        assert_eq!(paths[0], "/users/a%2Fb");
        assert_eq!(paths[1], "/users/%2E%2E%2Fadmin");
        assert_eq!(paths[3], "/users/100%25");
        let (status, _) = get(&sim, "/users/a").await;
        assert_eq!(status, 404);
    }
}
