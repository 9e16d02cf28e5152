//! `scim`: a SCIM 2.0 service provider (RFC 7643 / 7644), as Slack, GitHub Enterprise or
//! any app Entra ID provisions exposes it. Lists `GET /Users?startIndex&count` (1-based,
//! pages capped at `page_size_max`), reads `GET /Users/{id}`, and changes `active` with
//! `PATCH /Users/{id}` and a PatchOp. [`ScimStyle`] switches on the quirks real servers
//! have: `active` as a string, `active` left out, 204 instead of 200.

use axum::http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{
    count_param, display_names, email_of, hash, page_range, rfc3339, ApiRequest, KindApi, Reply,
    Route, Shared, StoredUser,
};

pub(super) struct Scim;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// How a SCIM simulator shows the quirks of real servers. Which accounts get a quirk is
/// decided by a hash of their id, so the same accounts get it on every run, whether
/// they are generated or come from a fixture.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimStyle {
    /// Share of accounts (0.0 to 1.0) whose `active` is served as the string `"True"` or
    /// `"False"`, as Entra ID sends it.
    pub string_active: f64,
    /// Share of active accounts served without `active` at all (RFC 7643: absent means
    /// active). Wins over `string_active` for an account both pick.
    pub absent_active: f64,
    /// Answer a successful PATCH with 204 and no body, instead of 200 with the user.
    pub patch_no_content: bool,
}

impl Default for ScimStyle {
    /// A mix, so that a client meets every shape of `active` in any list of a few users.
    fn default() -> Self {
        ScimStyle {
            string_active: 0.25,
            absent_active: 0.1,
            patch_no_content: false,
        }
    }
}

impl ScimStyle {
    /// Plain RFC answers: `active` always a boolean, PATCH answers 200.
    pub fn plain() -> Self {
        ScimStyle {
            string_active: 0.0,
            absent_active: 0.0,
            patch_no_content: false,
        }
    }

    /// `active` as `user` is served: a boolean, a string, or absent (`None`).
    fn active(&self, user: &StoredUser) -> Option<Value> {
        let active = user.is_active();
        let id = &user.user.id;
        if active && picked(id, 41, self.absent_active) {
            None
        } else if picked(id, 43, self.string_active) {
            Some(json!(if active { "True" } else { "False" }))
        } else {
            Some(json!(active))
        }
    }
}

/// Whether the account `id` is among the `share` an option picks (per `salt`).
fn picked(id: &str, salt: u64, share: f64) -> bool {
    let scaled = (share.clamp(0.0, 1.0) * 10_000.0).round() as u64;
    hash(id, salt) % 10_000 < scaled
}

impl KindApi for Scim {
    fn statuses(&self) -> &'static [&'static str] {
        &["active", "inactive"]
    }

    fn account_name(&self, handle: &str) -> String {
        email_of(handle)
    }

    fn total_fields(&self) -> &'static [&'static [&'static str]] {
        &[&["totalResults"]]
    }

    fn route(&self, method: &Method, segments: &[String]) -> Route {
        match (method, segments) {
            (&Method::GET, [users]) if users == "Users" => Route::List,
            (&Method::GET, [users, id]) if users == "Users" => Route::Get(id.clone()),
            (&Method::PATCH, [users, id]) if users == "Users" => Route::Write(id.clone()),
            _ => Route::NotFound,
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        error(status, None, message)
    }

    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply {
        match route {
            Route::List => list(sim, req),
            Route::Get(id) => match sim.store().get(&id) {
                Some(user) => scim_reply(StatusCode::OK, &render(sim, user)),
                None => not_found(&id),
            },
            Route::Write(id) => patch(sim, req, &id),
            Route::Token | Route::NotFound => {
                error(StatusCode::NOT_FOUND, None, "no such endpoint")
            }
        }
    }
}

/// `GET /Users`: `startIndex` is 1-based (below 1 counts as 1), `count` is capped at
/// `page_size_max`, and `count=0` answers only the total (RFC 7644 section 3.4.2.4).
fn list(sim: &Shared, req: &ApiRequest) -> Reply {
    if req.query_param("filter").is_some() {
        let message = "this simulator does not support filters; list with startIndex and count";
        return error(StatusCode::BAD_REQUEST, Some("invalidFilter"), message);
    }
    let start = match req.query_param("startIndex") {
        None => 1,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => usize::try_from(n.max(1)).unwrap_or(usize::MAX),
            Err(_) => {
                let message = format!("startIndex must be an integer, got '{v}'");
                return error(StatusCode::BAD_REQUEST, Some("invalidValue"), &message);
            }
        },
    };
    let count = match count_param(req, "count", sim.config.page_size_max) {
        Ok(n) => sim.page_limit(n.max(1)).min(n),
        Err(message) => return error(StatusCode::BAD_REQUEST, Some("invalidValue"), &message),
    };
    let store = sim.store();
    let users = store.all();
    let range = page_range(users.len(), start - 1, count);
    let resources: Vec<Value> = users[range].iter().map(|u| render(sim, u)).collect();
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": users.len(),
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    scim_reply(StatusCode::OK, &body)
}

/// `PATCH /Users/{id}`: a PatchOp whose operations set `active`, by `path` or by a value
/// object; `op` is matched ignoring case, the value may be a boolean or "True"/"False".
fn patch(sim: &Shared, req: &ApiRequest, id: &str) -> Reply {
    let media = req.header("content-type").unwrap_or("");
    if !(media.starts_with("application/scim+json") || media.starts_with("application/json")) {
        let message = format!("Content-Type must be application/scim+json, got {media:?}");
        return error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), &message);
    }
    let active = match req
        .json::<Value>()
        .map_err(|e| (None, e))
        .and_then(wanted_active)
    {
        Ok(active) => active,
        Err((scim_type, message)) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(scim_type.unwrap_or("invalidSyntax")),
                &message,
            )
        }
    };
    let mut store = sim.store();
    let Some(user) = store.get_mut(id) else {
        return not_found(id);
    };
    if let Some(active) = active {
        user.set_status(if active { "active" } else { "inactive" });
    }
    if sim.config.scim.patch_no_content {
        return Reply::raw(StatusCode::NO_CONTENT, Vec::new());
    }
    scim_reply(StatusCode::OK, &render(sim, user))
}

type Refusal = (Option<&'static str>, String);

/// The `active` a PatchOp asks for (`None` when it leaves it alone), or why it is refused.
fn wanted_active(body: Value) -> Result<Option<bool>, Refusal> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v == PATCH_SCHEMA)) {
        let message = format!("schemas must contain {PATCH_SCHEMA}");
        return Err((Some("invalidSyntax"), message));
    }
    let operations = match body.get("Operations").and_then(Value::as_array) {
        Some(ops) if !ops.is_empty() => ops,
        _ => {
            let message = "Operations must be a non-empty array".to_string();
            return Err((Some("invalidSyntax"), message));
        }
    };
    let mut active = None;
    for op in operations {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        if !(name.eq_ignore_ascii_case("replace") || name.eq_ignore_ascii_case("add")) {
            let message = format!("op {name:?} is not supported here; use replace");
            return Err((Some("invalidSyntax"), message));
        }
        let value = op.get("value").unwrap_or(&Value::Null);
        let set = match op.get("path").and_then(Value::as_str) {
            Some(path) if path.eq_ignore_ascii_case("active") => value,
            Some(path) => {
                let message = format!("path {path:?} cannot be changed here; only active");
                return Err((Some("invalidPath"), message));
            }
            None => match value.as_object().and_then(|v| active_of(v)) {
                Some(set) => set,
                None => {
                    let message = "a value object without a path must set active".to_string();
                    return Err((Some("invalidValue"), message));
                }
            },
        };
        active = Some(boolean(set).ok_or_else(|| {
            let message = format!("active must be a boolean, got {set}");
            (Some("invalidValue"), message)
        })?);
    }
    Ok(active)
}

/// The `active` member of a value object, its name matched ignoring case.
fn active_of(value: &Map<String, Value>) -> Option<&Value> {
    value
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("active"))
        .map(|(_, v)| v)
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn render(sim: &Shared, u: &StoredUser) -> Value {
    let (given, family) = display_names(&u.user.name);
    let mut user = json!({
        "schemas": [USER_SCHEMA],
        "id": u.user.id,
        "externalId": format!("ext-{:x}", hash(&u.user.id, 47)),
        "userName": u.user.name,
        "name": {"givenName": given, "familyName": family},
        "displayName": format!("{given} {family}").trim_end(),
        "emails": [
            {"value": format!("{}@alias.example.com", given.to_lowercase()), "type": "other"},
            {"value": email_of(&u.user.name), "type": "work", "primary": true},
        ],
        "meta": {
            "resourceType": "User",
            "created": rfc3339(u.created),
            "lastModified": rfc3339(u.updated),
            "version": format!("W/\"{}\"", u.user.version),
        },
    });
    if let (Some(active), Some(fields)) = (sim.config.scim.active(u), user.as_object_mut()) {
        fields.insert("active".to_string(), active);
    }
    user
}

/// A JSON answer with SCIM's media type.
fn scim_reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = Reply::json(status, body);
    reply.headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    ));
    reply
}

fn not_found(id: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        None,
        &format!("Resource {id} not found"),
    )
}

/// A SCIM error (RFC 7644 section 3.12): `status` is a string.
fn error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Reply {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let (Some(kind), Some(fields)) = (scim_type, body.as_object_mut()) {
        fields.insert("scimType".to_string(), json!(kind));
    }
    scim_reply(status, &body)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode, http, user};
    use super::super::*;
    use serde_json::{json, Value};

    async fn start(users: Vec<SimUser>, style: ScimStyle) -> Simulator {
        let mut config = SimConfig::new(SimKind::Scim, users);
        config.scim = style;
        Simulator::start(config).await.expect("start")
    }

    async fn get(sim: &Simulator, path: &str) -> (u16, Value) {
        let resp = http()
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth("sim-token")
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn patch(sim: &Simulator, id: &str, body: Value) -> (u16, String) {
        let resp = http()
            .patch(format!("{}/Users/{}", sim.base_url(), encode(id)))
            .bearer_auth("sim-token")
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.text().await.expect("text"))
    }

    fn op(op: &str, value: Value) -> Value {
        json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": op, "path": "active", "value": value}]})
    }

    #[tokio::test]
    async fn pages_are_one_based_and_capped() {
        let users = SimUser::generate(SimKind::Scim, 25, 3);
        let mut config = SimConfig::new(SimKind::Scim, users.clone());
        config.page_size_max = 10;
        let sim = Simulator::start(config).await.expect("start");
        let (status, body) = get(&sim, "/Users?startIndex=1&count=100").await;
        assert_eq!(status, 200);
        assert_eq!(body["schemas"][0], super::LIST_SCHEMA);
        assert_eq!(
            (
                &body["totalResults"],
                &body["itemsPerPage"],
                &body["startIndex"]
            ),
            (&json!(25), &json!(10), &json!(1))
        );
        assert_eq!(body["Resources"][0]["id"], users[0].id.as_str());
        let (_, body) = get(&sim, "/Users?startIndex=21&count=100").await;
        let ids: Vec<&str> = body["Resources"]
            .as_array()
            .expect("Resources")
            .iter()
            .filter_map(|u| u["id"].as_str())
            .collect();
        let expected: Vec<&str> = users[20..].iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, expected);
        let (_, body) = get(&sim, "/Users?startIndex=0&count=0").await;
        assert_eq!(
            (&body["totalResults"], &body["startIndex"]),
            (&json!(25), &json!(1))
        );
        assert_eq!(body["Resources"], json!([]));
        let (status, body) = get(&sim, "/Users?count=many").await;
        assert_eq!((status, &body["scimType"]), (400, &json!("invalidValue")));
        assert_eq!(body["status"], "400", "status is a string: {body}");
    }

    #[tokio::test]
    async fn active_is_served_as_configured() {
        let users = vec![user("a", "ann", "active"), user("b", "bob", "inactive")];
        let shapes = |style: ScimStyle| {
            let users = users.clone();
            async move {
                let sim = start(users, style).await;
                let (_, body) = get(&sim, "/Users").await;
                let shapes: Vec<Option<Value>> = body["Resources"]
                    .as_array()
                    .expect("Resources")
                    .iter()
                    .map(|u| u.get("active").cloned())
                    .collect();
                shapes
            }
        };
        assert_eq!(
            shapes(ScimStyle::plain()).await,
            [Some(json!(true)), Some(json!(false))]
        );
        let strings = ScimStyle {
            string_active: 1.0,
            ..ScimStyle::plain()
        };
        assert_eq!(
            shapes(strings).await,
            [Some(json!("True")), Some(json!("False"))]
        );
        let absent = ScimStyle {
            absent_active: 1.0,
            string_active: 1.0,
            ..ScimStyle::plain()
        };
        assert_eq!(
            shapes(absent).await,
            [None, Some(json!("False"))],
            "only an active account can leave active out"
        );
    }

    #[tokio::test]
    async fn the_default_style_mixes_every_shape() {
        let sim = start(
            SimUser::generate(SimKind::Scim, 200, 9),
            ScimStyle::default(),
        )
        .await;
        let (_, body) = get(&sim, "/Users?count=200").await;
        let resources = body["Resources"].as_array().expect("Resources").clone();
        let count =
            |f: fn(Option<&Value>) -> bool| resources.iter().filter(|u| f(u.get("active"))).count();
        assert!(count(|a| a.is_none()) > 0);
        assert!(count(|a| a.is_some_and(Value::is_string)) > 0);
        assert!(count(|a| a.is_some_and(Value::is_boolean)) > 0);
    }

    #[tokio::test]
    async fn op_is_matched_ignoring_case_and_value_may_be_a_string() {
        let sim = start(vec![user("a", "ann", "active")], ScimStyle::plain()).await;
        for (name, value, expected) in [
            ("Replace", json!(false), "inactive"),
            ("REPLACE", json!("True"), "active"),
            ("replace", json!("false"), "inactive"),
            ("Add", json!(true), "active"),
        ] {
            let (status, body) = patch(&sim, "a", op(name, value)).await;
            assert_eq!(status, 200, "{name}: {body}");
            assert_eq!(sim.user("a").map(|u| u.status).as_deref(), Some(expected));
        }
        let no_path = json!({"schemas": [super::PATCH_SCHEMA],
            "Operations": [{"op": "replace", "value": {"Active": false}}]});
        assert_eq!(patch(&sim, "a", no_path).await.0, 200);
        assert_eq!(sim.user("a").map(|u| u.status).as_deref(), Some("inactive"));
    }

    #[tokio::test]
    async fn bad_patches_get_scim_errors() {
        let sim = start(vec![user("a", "ann", "active")], ScimStyle::plain()).await;
        let cases = [
            (op("remove", json!(false)), 400, "invalidSyntax"),
            (op("replace", json!("yes")), 400, "invalidValue"),
            (
                json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
                400,
                "invalidSyntax",
            ),
            (
                json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "userName", "value": "x"}]}),
                400,
                "invalidPath",
            ),
        ];
        for (body, code, scim_type) in cases {
            let (status, text) = patch(&sim, "a", body.clone()).await;
            let answer: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(status, code, "{body}: {text}");
            assert_eq!(answer["scimType"], scim_type, "{body}: {text}");
            assert_eq!(answer["schemas"][0], super::ERROR_SCHEMA);
            assert_eq!(answer["status"], code.to_string());
        }
        let (status, text) = patch(&sim, "nobody", op("replace", json!(false))).await;
        assert_eq!(status, 404);
        assert!(text.contains("Resource nobody not found"), "{text}");
        assert_eq!(sim.user("a").map(|u| u.status).as_deref(), Some("active"));
    }

    #[tokio::test]
    async fn patch_may_answer_204_without_a_body() {
        let style = ScimStyle {
            patch_no_content: true,
            ..ScimStyle::plain()
        };
        let sim = start(vec![user("a", "ann", "active")], style).await;
        let (status, body) = patch(&sim, "a", op("replace", json!(false))).await;
        assert_eq!((status, body.as_str()), (204, ""));
        assert_eq!(sim.user("a").map(|u| u.status).as_deref(), Some("inactive"));
        assert_eq!(sim.write_count(), 1);
    }

    #[tokio::test]
    async fn one_user_has_the_documented_fields() {
        let sim = start(
            vec![user("a/1", "anna.schmidt@example.com", "active")],
            ScimStyle::plain(),
        )
        .await;
        let (status, body) = get(&sim, &format!("/Users/{}", encode("a/1"))).await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], "a/1");
        assert_eq!(body["userName"], "anna.schmidt@example.com");
        assert_eq!(body["active"], true);
        assert_eq!(body["emails"][1]["primary"], true);
        assert_eq!(body["emails"][1]["value"], "anna.schmidt@example.com");
        let (status, body) = get(&sim, "/Users/nobody").await;
        assert_eq!((status, &body["status"]), (404, &json!("404")));
    }
}
