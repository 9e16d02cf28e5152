//! `atlan`: `POST /api/service/users/{id}` with `{"enabled": bool}`; admins cannot be disabled;
//! lists page by `limit`/`offset` sorted by username.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    count_param, display_names, email_of, hash, one_in, page_range, uuid, ApiRequest, KindApi,
    Reply, Route, Shared, StoredUser,
};

pub(super) struct Atlan;

impl KindApi for Atlan {
    fn statuses(&self) -> &'static [&'static str] {
        &["active", "inactive", "unknown"]
    }

    fn total_fields(&self) -> &'static [&'static [&'static str]] {
        &[&["totalRecord"], &["filterRecord"]]
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        match (method, segments) {
            (&Method::GET, [api, service, users])
                if api == "api" && service == "service" && users == "users" =>
            {
                Route::List
            }
            (&Method::POST, [api, service, users, id])
                if api == "api" && service == "service" && users == "users" =>
            {
                Route::Write(id.clone())
            }
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        let reason = status.canonical_reason().unwrap_or("Error");
        Reply::json(
            status,
            &json!({
                "code": status.as_u16(),
                "error": reason,
                "message": message,
                "requestId": uuid(&mut rand::rng()),
            }),
        )
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::List => self.list(sim, req),
            Route::Write(id) => self.set_enabled(sim, req, &id),
            Route::Get(_) | Route::Token | Route::NotFound => {
                self.error(StatusCode::NOT_FOUND, "no such route")
            }
        }
    }
}

impl Atlan {
    fn list(&self, sim: &Shared, req: &ApiRequest) -> Reply {
        let paging = count_param(req, "limit", 100).and_then(|limit| {
            let offset = count_param(req, "offset", 0)?;
            match limit {
                0 => Err("limit must be at least 1".to_string()),
                n => Ok((sim.page_limit(n), offset)),
            }
        });
        let (limit, offset) = match paging {
            Ok(paging) => paging,
            Err(e) => return self.error(StatusCode::BAD_REQUEST, &e),
        };
        let descending = match req.query_param("sort").as_deref() {
            None | Some("username") => false,
            Some("-username") => true,
            Some(other) => {
                let message = format!("cannot sort by '{other}' (use username or -username)");
                return self.error(StatusCode::BAD_REQUEST, &message);
            }
        };
        let store = sim.store();
        let users: Vec<&StoredUser> = if descending {
            store.sorted_by_name().rev().collect()
        } else {
            store.sorted_by_name().collect()
        };
        let range = page_range(users.len(), offset, limit);
        let records: Vec<Value> = users[range].iter().map(|u| render(u)).collect();
        Reply::ok(&json!({
            "totalRecord": users.len(),
            "filterRecord": users.len(),
            "records": records,
        }))
    }

    fn set_enabled(&self, sim: &Shared, req: &ApiRequest, id: &str) -> Reply {
        #[derive(serde::Deserialize)]
        struct Body {
            enabled: bool,
        }
        let body: Body = match req.json() {
            Ok(body) => body,
            Err(e) => return self.error(StatusCode::BAD_REQUEST, &e),
        };
        let mut store = sim.store();
        let Some(user) = store.get_mut(id) else {
            let message = format!("user '{id}' not found");
            return self.error(StatusCode::NOT_FOUND, &message);
        };
        if user.user.privileged && !body.enabled {
            return self.error(StatusCode::FORBIDDEN, "admin cannot disable fellow admins");
        }
        user.set_status(if body.enabled { "active" } else { "inactive" });
        Reply::ok(&render(user))
    }
}

fn render(u: &StoredUser) -> Value {
    let (first, last) = display_names(&u.user.name);
    let enabled = match u.user.status.as_str() {
        "active" => json!(true),
        "inactive" => json!(false),
        _ => Value::Null,
    };
    let role = match (u.user.privileged, hash(&u.user.id, 30) % 10) {
        (true, _) => "$admin",
        (false, 0) => "$guest",
        _ => "$member",
    };
    json!({
        "id": u.user.id,
        "username": u.user.name,
        "email": email_of(&u.user.name),
        "emailVerified": !one_in(10, &u.user.id, 31),
        "enabled": enabled,
        "firstName": first,
        "lastName": last,
        "workspaceRole": role,
        "createdTimestamp": u.created * 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode, http, start, user};
    use super::super::*;
    use serde_json::Value;

    async fn list(sim: &Simulator, query: &str) -> (u16, Value) {
        let url = format!("{}/api/service/users?{query}", sim.base_url());
        let resp = http()
            .get(url)
            .bearer_auth("sim-token")
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn set(sim: &Simulator, id: &str, enabled: bool) -> (u16, Value) {
        let url = format!("{}/api/service/users/{}", sim.base_url(), encode(id));
        let req = http().post(url).bearer_auth("sim-token");
        let resp = req
            .json(&serde_json::json!({ "enabled": enabled }))
            .send()
            .await;
        let resp = resp.expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    #[tokio::test]
    async fn offset_paging_sorted_by_username() {
        let sim = start(SimKind::Atlan, SimUser::generate(SimKind::Atlan, 200, 4)).await;
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let (status, body) =
                list(&sim, &format!("limit=100&offset={offset}&sort=username")).await;
            assert_eq!(status, 200);
            assert_eq!(
                (body["totalRecord"].as_u64(), body["filterRecord"].as_u64()),
                (Some(200), Some(200))
            );
            let records = body["records"].as_array().expect("records");
            names.extend(
                records
                    .iter()
                    .map(|r| r["username"].as_str().unwrap_or("").to_string()),
            );
            offset += records.len();
            if offset >= 200 {
                break;
            }
        }
        assert_eq!(sim.read_count(), 2);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let (_, past) = list(&sim, "limit=100&offset=200&sort=username").await;
        assert_eq!(past["records"].as_array().map(Vec::len), Some(0));
        let (status, body) = list(&sim, "sort=email").await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(400)));
    }

    #[tokio::test]
    async fn enabled_maps_status_including_unknown() {
        let mut admin = user("adm", "boss", "active");
        admin.privileged = true;
        let users = vec![
            user("a", "anna", "active"),
            user("b", "ben", "inactive"),
            user("c", "cleo", "unknown"),
            admin,
        ];
        let sim = start(SimKind::Atlan, users).await;
        let (_, body) = list(&sim, "sort=username").await;
        let by_name = |n: &str| {
            body["records"]
                .as_array()
                .and_then(|r| r.iter().find(|u| u["username"] == n).cloned())
                .unwrap_or_default()
        };
        assert_eq!(by_name("anna")["enabled"], true);
        assert_eq!(by_name("ben")["enabled"], false);
        assert_eq!(by_name("cleo")["enabled"], Value::Null);
        assert_eq!(by_name("boss")["workspaceRole"], "$admin");
        for field in [
            "id",
            "username",
            "enabled",
            "email",
            "emailVerified",
            "firstName",
            "lastName",
            "workspaceRole",
        ] {
            assert!(by_name("anna").get(field).is_some(), "missing {field}");
        }
    }

    #[tokio::test]
    async fn admins_cannot_be_disabled() {
        let mut admin = user("adm", "boss", "active");
        admin.privileged = true;
        let sim = start(SimKind::Atlan, vec![admin, user("a", "anna", "active")]).await;
        let (status, body) = set(&sim, "adm", false).await;
        assert_eq!(status, 403);
        assert_eq!(body["code"], 403);
        assert_eq!(body["error"], "Forbidden");
        assert_eq!(body["message"], "admin cannot disable fellow admins");
        assert!(body["requestId"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(sim.user("adm").map(|u| u.status), Some("active".into()));

        let (status, body) = set(&sim, "a", false).await;
        assert_eq!((status, body["enabled"].as_bool()), (200, Some(false)));
        let (status, body) = set(&sim, "a", true).await;
        assert_eq!((status, body["enabled"].as_bool()), (200, Some(true)));
        assert_eq!(set(&sim, "nobody", true).await.0, 404);
        assert_eq!(sim.write_count(), 4);
    }

    #[tokio::test]
    async fn malformed_body_is_400_and_auth_is_401() {
        let sim = start(SimKind::Atlan, vec![user("a", "anna", "active")]).await;
        let url = format!("{}/api/service/users/a", sim.base_url());
        let bad = http()
            .post(&url)
            .bearer_auth("sim-token")
            .body("{\"enabled\": \"no\"}");
        assert_eq!(bad.send().await.expect("send").status(), 400);
        let anonymous = http().get(format!("{}/api/service/users", sim.base_url()));
        let resp = anonymous.send().await.expect("send");
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            (body["code"].as_u64(), body["error"].as_str()),
            (Some(401), Some("Unauthorized"))
        );
    }
}
