//! `suspend-api`: a self-hosted multi-tenant app. Accounts are suspended and reactivated with
//! `POST /v1/users/{id}/suspend`, every call must name the tenant, the owner cannot be
//! suspended, and list pages are large because of inline avatars.

use std::sync::OnceLock;

use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::{
    count_param, display_names, hash, one_in, page_range, rfc3339, ApiRequest, CursorFault,
    KindApi, Reply, Route, Shared, StoredUser,
};

pub(super) struct SuspendApi;

impl KindApi for SuspendApi {
    fn statuses(&self) -> &'static [&'static str] {
        &["active", "inactive"]
    }

    fn account_name(&self, handle: &str) -> String {
        format!("{handle}@example.com")
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        match (method, segments) {
            (&Method::GET, [v1, users]) if v1 == "v1" && users == "users" => Route::List,
            (&Method::GET, [v1, users, id]) if v1 == "v1" && users == "users" => {
                Route::Get(id.clone())
            }
            (&Method::POST, [v1, users, id, suspend])
                if v1 == "v1" && users == "users" && suspend == "suspend" =>
            {
                Route::Write(id.clone())
            }
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            429 => "rate_limited",
            503 => "service_unavailable",
            _ if status.is_server_error() => "internal_error",
            _ => "error",
        };
        error(status, code, message, &[])
    }

    fn admit(&self, sim: &Shared, req: &ApiRequest, _route: &Route) -> Result<(), Reply> {
        if !sim.bearer_ok(req) {
            return Err(self.error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
        }
        if req.header("x-tenant-id") == Some(sim.config.tenant_id.as_str()) {
            return Ok(());
        }
        Err(error(
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "X-Tenant-ID is missing or does not match the tenant of this API token",
            &["API tokens are scoped to one tenant: send the tenant id the token was issued for."],
        ))
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::List => list(sim, req),
            Route::Get(id) => match sim.store().get(&id) {
                Some(user) => Reply::raw(StatusCode::OK, user_json(user, Vec::new())),
                None => not_found(&id),
            },
            Route::Write(id) => suspend(sim, req, &id),
            Route::Token | Route::NotFound => self.error(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}

fn list(sim: &Shared, req: &ApiRequest) -> Reply {
    let limit = match count_param(req, "limit", 100) {
        Ok(0) => return bad_request("limit must be at least 1"),
        Ok(n) => sim.page_limit(n),
        Err(e) => return bad_request(&e),
    };
    let offset = match req.query_param("cursor").as_deref().map(decode_cursor) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            let message = "cursor is not one this API returned";
            return error(StatusCode::BAD_REQUEST, "invalid_cursor", message, &[]);
        }
    };
    let store = sim.store();
    let users = store.all();
    let (range, next_cursor) = match req.cursor_fault {
        None => {
            let range = page_range(users.len(), offset, limit);
            let next = (range.end < users.len()).then_some(range.end);
            (range, next)
        }
        Some(CursorFault::Cycling) => {
            let range = page_range(users.len(), offset, limit);
            let first_cursor = if users.len() > limit { limit } else { 0 };
            let next = if range.end < users.len() {
                range.end
            } else {
                first_cursor
            };
            (range, Some(next))
        }
        Some(CursorFault::Endless) => {
            let start = offset.checked_rem(users.len()).unwrap_or(0);
            let range = page_range(users.len(), start, limit);
            let next = offset.saturating_add(range.len().max(1));
            (range, Some(next))
        }
    };
    let next_cursor = next_cursor.map(encode_cursor);
    let mut page = b"{\"data\":[".to_vec();
    for (i, user) in users[range].iter().enumerate() {
        if i > 0 {
            page.push(b',');
        }
        page = user_json(user, page);
    }
    page.extend_from_slice(b"],\"next_cursor\":");
    page.extend_from_slice(json!(next_cursor).to_string().as_bytes());
    page.push(b'}');
    Reply::raw(StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
struct Suspend {
    active: bool,
}

fn suspend(sim: &Shared, req: &ApiRequest, id: &str) -> Reply {
    let body: Suspend = match req.json() {
        Ok(body) => body,
        Err(e) => return bad_request(&e),
    };
    let mut store = sim.store();
    let Some(user) = store.get_mut(id) else {
        return not_found(id);
    };
    if user.user.privileged && !body.active {
        return error(
            StatusCode::FORBIDDEN,
            "owner_cannot_be_suspended",
            "the tenant owner cannot be suspended",
            &["Access policy: transfer tenant ownership to another user before suspending this account."],
        );
    }
    user.set_status(if body.active { "active" } else { "inactive" });
    Reply::raw(StatusCode::OK, user_json(user, Vec::new()))
}

/// A user as the API renders it, except `avatar_base64` (see [`user_json`]).
#[derive(Serialize)]
struct UserJson<'a> {
    id: &'a str,
    email: &'a str,
    name: String,
    roles: &'static [&'static str],
    auth_provider: &'static str,
    active: bool,
    email_verified: bool,
    is_owner: bool,
    created_at: String,
    updated_at: String,
}

impl<'a> UserJson<'a> {
    fn of(u: &'a StoredUser) -> UserJson<'a> {
        let h = hash(&u.user.id, 20);
        let (first, last) = display_names(&u.user.name);
        let roles: &'static [&'static str] = match (u.user.privileged, h % 10) {
            (true, _) => &["owner", "admin"],
            (false, 0) => &["admin", "member"],
            _ => &["member"],
        };
        UserJson {
            id: &u.user.id,
            email: &u.user.name,
            name: format!("{first} {last}").trim_end().to_string(),
            roles,
            auth_provider: ["local", "oidc", "saml"][(h / 10 % 3) as usize],
            active: u.is_active(),
            email_verified: !one_in(10, &u.user.id, 22),
            is_owner: u.user.privileged,
            created_at: rfc3339(u.created),
            updated_at: rfc3339(u.updated),
        }
    }
}

/// Appends a user's JSON to `out`. The avatar is spliced in by hand: it is large and, being a
/// base64 data URI, never needs escaping, so copying it is much cheaper than serializing it
/// (list pages of 10,000 users stay fast even in debug builds).
fn user_json(u: &StoredUser, mut out: Vec<u8>) -> Vec<u8> {
    let start = out.len();
    if serde_json::to_writer(&mut out, &UserJson::of(u)).is_err() || out.pop() != Some(b'}') {
        out.truncate(start);
        out.extend_from_slice(b"null");
        return out;
    }
    match avatar_for(&u.user.id) {
        Some(avatar) => {
            out.extend_from_slice(b",\"avatar_base64\":\"");
            out.extend_from_slice(avatar.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        None => out.extend_from_slice(b",\"avatar_base64\":null}"),
    }
    out
}

/// About one account in ten has an avatar of 64 to 256 KB; they are built once and shared.
fn avatar_for(id: &str) -> Option<&'static str> {
    static AVATARS: OnceLock<Vec<String>> = OnceLock::new();
    if !one_in(10, id, 21) {
        return None;
    }
    let avatars = AVATARS.get_or_init(|| [48, 96, 144, 190].map(|kb| avatar(kb * 1024)).to_vec());
    avatars.get((hash(id, 23) % 4) as usize).map(String::as_str)
}

/// A data URI of `raw_len` pseudo-random bytes (base64 makes it a third larger).
fn avatar(raw_len: usize) -> String {
    let mut x: u32 = 0x9e37_79b9 ^ raw_len as u32;
    let bytes: Vec<u8> = (0..raw_len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    format!("data:image/png;base64,{}", base64(&bytes))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Cursors are opaque to clients; here they are the hex of `o:<offset>`.
fn encode_cursor(offset: usize) -> String {
    format!("o:{offset}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

fn not_found(id: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no user with id '{id}'"),
        &[],
    )
}

fn bad_request(message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, "bad_request", message, &[])
}

fn error(status: StatusCode, code: &str, message: &str, notices: &[&str]) -> Reply {
    Reply::json(
        status,
        &json!({ "code": code, "message": message, "details": {}, "notices": notices }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{http, start, user};
    use super::super::*;
    use serde_json::Value;

    fn call(sim: &Simulator, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        http()
            .request(method, format!("{}{path}", sim.base_url()))
            .bearer_auth("sim-token")
            .header(
                "X-Tenant-ID",
                SimConfig::new(SimKind::SuspendApi, vec![]).tenant_id,
            )
    }

    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn suspend(sim: &Simulator, id: &str, active: bool) -> (u16, Value) {
        let req = call(
            sim,
            reqwest::Method::POST,
            &format!("/v1/users/{id}/suspend"),
        );
        send(req.json(&serde_json::json!({ "active": active }))).await
    }

    #[tokio::test]
    async fn cursor_paging_ends_with_null_on_an_exactly_full_page() {
        let sim = start(
            SimKind::SuspendApi,
            SimUser::generate(SimKind::SuspendApi, 200, 2),
        )
        .await;
        let (status, first) = send(call(&sim, reqwest::Method::GET, "/v1/users?limit=100")).await;
        assert_eq!(status, 200);
        assert_eq!(first["data"].as_array().map(Vec::len), Some(100));
        let cursor = first["next_cursor"].as_str().expect("cursor").to_string();
        let path = format!("/v1/users?limit=100&cursor={cursor}");
        let (_, second) = send(call(&sim, reqwest::Method::GET, &path)).await;
        assert_eq!(second["data"].as_array().map(Vec::len), Some(100));
        assert_eq!(second["next_cursor"], Value::Null);
        assert_eq!(
            second["data"][99]["id"].as_str(),
            sim.users().last().map(|u| u.id.as_str())
        );

        let (status, body) = send(call(&sim, reqwest::Method::GET, "/v1/users?cursor=zz")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
    }

    #[tokio::test]
    async fn records_carry_all_fields_and_some_large_avatars() {
        let sim = start(
            SimKind::SuspendApi,
            SimUser::generate(SimKind::SuspendApi, 100, 3),
        )
        .await;
        let (_, page) = send(call(&sim, reqwest::Method::GET, "/v1/users")).await;
        let data = page["data"].as_array().expect("data").clone();
        for field in [
            "id",
            "email",
            "name",
            "roles",
            "auth_provider",
            "active",
            "email_verified",
            "is_owner",
            "created_at",
            "updated_at",
            "avatar_base64",
        ] {
            assert!(
                data.iter().all(|u| u.get(field).is_some()),
                "missing {field}"
            );
        }
        let sizes: Vec<usize> = data
            .iter()
            .filter_map(|u| u["avatar_base64"].as_str().map(str::len))
            .collect();
        assert!(
            !sizes.is_empty() && sizes.len() < 40,
            "{} avatars",
            sizes.len()
        );
        assert!(
            sizes.iter().all(|s| (64_000..=262_144).contains(s)),
            "{sizes:?}"
        );
        let avatar = data
            .iter()
            .find_map(|u| u["avatar_base64"].as_str())
            .unwrap_or("");
        assert!(avatar.starts_with("data:image/png;base64,"));
    }

    #[tokio::test]
    async fn tenant_is_checked_on_every_route() {
        let sim = start(
            SimKind::SuspendApi,
            vec![user("u1", "a@example.com", "active")],
        )
        .await;
        for (method, path) in [
            (reqwest::Method::GET, "/v1/users"),
            (reqwest::Method::GET, "/v1/users/u1"),
            (reqwest::Method::POST, "/v1/users/u1/suspend"),
        ] {
            let url = format!("{}{path}", sim.base_url());
            for tenant in [None, Some("other-tenant")] {
                let mut req = http()
                    .request(method.clone(), &url)
                    .bearer_auth("sim-token");
                if let Some(t) = tenant {
                    req = req.header("X-Tenant-ID", t);
                }
                let (status, body) = send(req.json(&serde_json::json!({"active": false}))).await;
                assert_eq!(
                    (status, body["code"].as_str()),
                    (403, Some("tenant_mismatch"))
                );
                assert!(body["notices"].as_array().is_some_and(|n| !n.is_empty()));
            }
        }
        assert_eq!(sim.user("u1").map(|u| u.status), Some("active".into()));
    }

    #[tokio::test]
    async fn owner_cannot_be_suspended_but_others_can() {
        let mut owner = user("own", "owner@example.com", "active");
        owner.privileged = true;
        let sim = start(
            SimKind::SuspendApi,
            vec![owner, user("u1", "a@example.com", "active")],
        )
        .await;
        let (status, body) = suspend(&sim, "own", false).await;
        assert_eq!(status, 403);
        assert_eq!(body["code"], "owner_cannot_be_suspended");
        assert_eq!(body["details"], serde_json::json!({}));
        assert_eq!(body["notices"].as_array().map(Vec::len), Some(1));

        let (status, body) = suspend(&sim, "u1", false).await;
        assert_eq!((status, body["active"].as_bool()), (200, Some(false)));
        assert_eq!(sim.user("u1").map(|u| u.status), Some("inactive".into()));
        let (status, body) = suspend(&sim, "u1", true).await;
        assert_eq!((status, body["active"].as_bool()), (200, Some(true)));
        let (status, body) = suspend(&sim, "ghost", true).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
        let bad = call(&sim, reqwest::Method::POST, "/v1/users/u1/suspend").body("{\"active\":");
        assert_eq!(send(bad).await.0, 400);
    }
}
