//! `scim`: any SCIM 2.0 service provider (RFC 7643 / 7644): Slack, GitHub Enterprise,
//! Zoom, Atlassian and every app that Entra ID or Okta provisions.
//!
//! Reads `GET {base}/Users?startIndex&count` (1-based; a server may grant fewer than
//! `count`); writes `PATCH {base}/Users/{id}` with a PatchOp that replaces `active`. An
//! account may be named by its `id` or its `userName`; SCIM addresses a user only by `id`,
//! so the listing also tells the write which `id` a `userName` stands for.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, offset_pages, parse_json, Change, Connect, ConnectError, HeldAccount, Inventory,
    Kind, KindSpec, Listed, Observation, ObservedAccount, Provider, ProviderError, Setting,
    WriteAccess, WriteOutcome,
};
use crate::model::AccountObservation;
use crate::status::Status;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::Method;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub static KIND: Kind = Kind {
    spec: KindSpec {
        name: "scim",
        statuses: &["active", "inactive"],
        auth: super::AuthStyle::Bearer,
        settings: &[Setting {
            key: "page_size",
            required: false,
        }],
    },
    connect,
};

/// The `count` asked for when the instance sets no `page_size`.
const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `page_size` accepted: servers cap pages far lower, and a larger page only
/// makes one answer bigger.
const MAX_PAGE_SIZE: usize = 1000;
/// The media type of SCIM request bodies (RFC 7644 section 3.1).
const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let name = &cx.instance.name;
    let page_size = match cx.instance.setting("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(value) => page_size(value).map_err(|message| ConnectError::Invalid {
            instance: name.clone(),
            message,
        })?,
    };
    let token = BearerToken(cx.auth.bearer_ref(name)?);
    // RFC 7644 requires servers to accept `application/scim+json`, not `application/json`;
    // the shared layer adds `application/json` after it, for the servers that want that.
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(SCIM_JSON));
    let http = cx.http(Arc::new(token), headers, Vec::new())?;
    Ok(Arc::new(Scim {
        http,
        page_size,
        ids: Mutex::new(HashMap::new()),
    }))
}

/// Checks the `page_size` setting: a whole number from 1 to [`MAX_PAGE_SIZE`].
fn page_size(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(format!(
            "page_size must be a whole number from 1 to {MAX_PAGE_SIZE}, got {value:?}"
        )),
    }
}

struct Scim {
    http: HttpClient,
    page_size: usize,
    /// The SCIM `id` of every account the last listings found, keyed by the name the
    /// desired state uses (an `id` maps to itself, a `userName` to its record's `id`), so
    /// a write addresses the very record the plan was made from.
    ids: Mutex<HashMap<String, String>>,
}

/// A `ListResponse` (RFC 7644 section 3.4.2).
#[derive(Deserialize)]
struct ListResponse {
    #[serde(rename = "totalResults")]
    total_results: u64,
    /// Absent (or null) when there is nothing to list.
    #[serde(rename = "Resources", default)]
    resources: Option<Vec<User>>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(rename = "userName", default)]
    user_name: Option<String>,
    /// `None` when absent or null: active, by RFC 7643's default.
    #[serde(default, deserialize_with = "flag")]
    active: Option<bool>,
    #[serde(default)]
    emails: Option<Vec<Email>>,
}

#[derive(Deserialize)]
struct Email {
    #[serde(default)]
    value: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    primary: Option<bool>,
}

impl User {
    fn status(&self) -> Status {
        if self.active == Some(false) {
            Status::inactive()
        } else {
            Status::active()
        }
    }

    /// The primary email address, else the first one.
    fn email(&self) -> Option<String> {
        let emails = self.emails.as_deref().unwrap_or_default();
        emails
            .iter()
            .find(|e| e.primary == Some(true) && e.value.is_some())
            .or_else(|| emails.iter().find(|e| e.value.is_some()))
            .and_then(|e| e.value.clone())
    }
}

/// A SCIM boolean: `true`/`false`, or the strings `"True"`/`"False"` in any case (as
/// Entra ID sends them); null is unassigned. Anything else is an error naming the field.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean or \"True\"/\"False\", got {}",
            describe(&other)
        ))),
    }
}

/// A short description of an unexpected JSON value, never the whole value.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 20 => format!("the string {s:?}"),
        Value::String(_) => "a long string".to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
    }
}

/// A SCIM error (RFC 7644 section 3.12); `status` is a string by the RFC, a number at
/// some servers.
#[derive(Deserialize)]
struct ScimError {
    #[serde(default)]
    detail: Option<String>,
    #[serde(rename = "scimType", default)]
    scim_type: Option<String>,
}

/// The message of a SCIM error body: its `detail`, and its `scimType` when it has one.
fn error_message(body: &[u8]) -> Option<String> {
    let error: ScimError = serde_json::from_slice(body).ok()?;
    match (error.detail, error.scim_type) {
        (Some(detail), Some(kind)) => Some(format!("{detail} (scimType {kind})")),
        (Some(detail), None) => Some(detail),
        (None, Some(kind)) => Some(format!("scimType {kind}")),
        (None, None) => None,
    }
}

impl Scim {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    /// One list page, addressed by a 0-based offset so the shared pager can drive it
    /// (SCIM's `startIndex` is that offset plus one).
    async fn page(&self, offset: usize, count: usize) -> Result<(Vec<User>, u64), ProviderError> {
        let request = ApiRequest::get(&["Users"])
            .query("startIndex", offset.saturating_add(1))
            .query("count", count);
        let response = self.http.read(request).await?;
        self.expect_success(&response, "Users")?;
        parse_page(self.instance(), &response.body)
    }

    /// Every user the server lists. The first page tells how many the server grants per
    /// page (it may cap `count`); the pager then asks for pages of that size, and checks
    /// the totals and pages as for every offset-paged kind.
    async fn list(&self) -> Result<Vec<User>, ProviderError> {
        offset_pages(
            self.instance(),
            self.page_size,
            |u: &User| &u.id,
            |offset, count| self.page(offset, count),
        )
        .await
    }

    fn expect_success(&self, response: &ApiResponse, account: &str) -> Result<(), ProviderError> {
        if response.is_success() {
            return Ok(());
        }
        Err(api_error(self.instance(), response, account, error_message))
    }

    /// The SCIM `id` of the account the desired state names `account`, from the last
    /// listing; when no listing found it yet (a write without a read before it), one is
    /// made now.
    async fn id_of(&self, account: &str) -> Result<String, ProviderError> {
        if let Some(id) = self.known_id(account) {
            return Ok(id);
        }
        let observation = self.observe(&[account.to_string()]).await?;
        if let Some(AccountObservation::Failed(message)) = observation.accounts.get(account) {
            return Err(ProviderError::Listing {
                instance: self.instance().to_string(),
                detail: message.clone(),
            });
        }
        self.known_id(account)
            .ok_or_else(|| ProviderError::NotFound {
                instance: self.instance().to_string(),
                account: account.to_string(),
            })
    }

    fn known_id(&self, account: &str) -> Option<String> {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.get(account).cloned()
    }
}

/// Parses one list page: its users and `totalResults`.
fn parse_page(instance: &str, body: &[u8]) -> Result<(Vec<User>, u64), ProviderError> {
    let page: ListResponse = parse_json(instance, "list page", body)?;
    Ok((page.resources.unwrap_or_default(), page.total_results))
}

/// Every key a listed user may be named by, with the `id` each stands for: its `id`, and
/// its `userName` when it has one, both exactly as listed. (A server compares user names
/// ignoring case, but the folder's rule that an account is claimed once compares them
/// exactly: matching `Bob` and `bob` to one user would let two entries steer it.) A key
/// two users share is ambiguous (see [`Observation::of_listed`]).
fn listed(users: &[User]) -> impl Iterator<Item = (Listed, &str)> {
    users.iter().enumerate().flat_map(|(record, user)| {
        let account = ObservedAccount::new(user.status());
        let label = format!("user {}", user.id);
        let by_name = user.user_name.as_ref().map(|name| {
            let entry = Listed {
                key: name.clone(),
                record,
                label: label.clone(),
                field: "userName",
                account: account.clone(),
            };
            (entry, user.id.as_str())
        });
        let by_id = Listed {
            key: user.id.clone(),
            record,
            label,
            field: "id",
            account,
        };
        std::iter::once((by_id, user.id.as_str())).chain(by_name)
    })
}

#[async_trait]
impl Provider for Scim {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = self.list().await?;
        let mut ids: HashMap<String, &str> = HashMap::new();
        let observation = Observation::of_listed(
            accounts,
            listed(&users).map(|(entry, id)| {
                ids.insert(entry.key.clone(), id);
                entry
            }),
        );
        // Keep the id of every account found exactly once: an ambiguous key is a failed
        // entry, which is never written.
        let mut known = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, seen) in &observation.accounts {
            match (seen, ids.get(key)) {
                (AccountObservation::Found(_), Some(id)) => {
                    known.insert(key.clone(), (*id).to_string());
                }
                _ => {
                    known.remove(key);
                }
            }
        }
        Ok(observation)
    }

    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError> {
        let id = self.id_of(&change.account_id).await?;
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "active", "value": change.to.is_active()}],
        });
        let request = ApiRequest::new(Method::PATCH, &["Users", &id])
            .json(body)
            .content_type(SCIM_JSON);
        let response = self.http.write(access, request).await?;
        self.expect_success(&response, &change.account_id)?;
        // 200 with the user, or 204 with no body: both mean the change was made.
        Ok(WriteOutcome::Applied {
            http_status: response.status.as_u16(),
        })
    }

    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        let users = self.list().await?;
        Ok(Inventory::Listed(
            users
                .into_iter()
                .map(|user| HeldAccount {
                    live: ObservedAccount::new(user.status()),
                    email: user.email(),
                    aliases: user
                        .user_name
                        .iter()
                        .filter(|name| **name != user.id)
                        .cloned()
                        .collect(),
                    login: user.user_name,
                    id: user.id,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::hostile;

    fn users(body: Value) -> Vec<User> {
        let body = serde_json::to_vec(&body).unwrap();
        parse_page("x", &body).unwrap().0
    }

    #[test]
    fn active_may_be_a_bool_a_string_in_any_case_absent_or_null() {
        let page = users(json!({"totalResults": 7, "Resources": [
            {"id": "1", "active": true},
            {"id": "2", "active": false},
            {"id": "3", "active": "True"},
            {"id": "4", "active": "FALSE"},
            {"id": "5", "active": "false"},
            {"id": "6"},
            {"id": "7", "active": null},
        ]}));
        let statuses: Vec<String> = page.iter().map(|u| u.status().to_string()).collect();
        assert_eq!(
            statuses,
            ["active", "inactive", "active", "inactive", "inactive", "active", "active"]
        );
    }

    #[test]
    fn an_active_that_is_no_boolean_is_an_error_naming_the_field() {
        for bad in [json!("yes"), json!(1), json!({})] {
            let body = json!({"totalResults": 1, "Resources": [{"id": "1", "active": bad}]});
            let error = parse_page("x", &serde_json::to_vec(&body).unwrap())
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("Resources[0].active"), "{error}");
            assert!(error.contains("\"True\"/\"False\""), "{error}");
        }
    }

    #[test]
    fn no_resources_is_an_empty_page_and_a_missing_total_is_an_error() {
        let (page, total) = parse_page("x", br#"{"totalResults": 0}"#).unwrap();
        assert!(page.is_empty());
        assert_eq!(total, 0);
        let (page, _) = parse_page("x", br#"{"totalResults": 0, "Resources": null}"#).unwrap();
        assert!(page.is_empty());
        let error = parse_page("x", br#"{"Resources": []}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("totalResults"), "{error}");
    }

    #[test]
    fn the_primary_email_wins_else_the_first() {
        let page = users(json!({"totalResults": 3, "Resources": [
            {"id": "1", "emails": [{"value": "a@x"}, {"value": "b@x", "primary": true}]},
            {"id": "2", "emails": [{"value": "c@x", "primary": "False"}, {"value": "d@x"}]},
            {"id": "3", "emails": null},
        ]}));
        let emails: Vec<Option<String>> = page.iter().map(User::email).collect();
        assert_eq!(
            emails,
            [Some("b@x".to_string()), Some("c@x".to_string()), None]
        );
    }

    #[test]
    fn scim_errors_show_detail_and_type() {
        let body = br#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400", "scimType": "mutability", "detail": "active is read-only"}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("active is read-only (scimType mutability)")
        );
        assert_eq!(
            error_message(br#"{"status": 500, "detail": "boom"}"#).as_deref(),
            Some("boom")
        );
        assert_eq!(error_message(b"<html>"), None);
    }

    #[test]
    fn page_size_is_checked() {
        assert_eq!(page_size("50"), Ok(50));
        assert_eq!(page_size(" 1000 "), Ok(1000));
        for bad in ["0", "1001", "-5", "ten", ""] {
            let error = page_size(bad).unwrap_err();
            assert!(error.contains("from 1 to 1000"), "{bad}: {error}");
        }
    }

    fn observe(accounts: &[&str], body: Value) -> Observation {
        let accounts: Vec<String> = accounts.iter().map(|a| a.to_string()).collect();
        let page = users(body);
        Observation::of_listed(&accounts, listed(&page).map(|(entry, _)| entry))
    }

    #[test]
    fn accounts_are_found_by_id_or_by_exact_user_name() {
        let observation = observe(
            &["u1", "bob@example.com", "Ann@Example.com", "ghost"],
            json!({"totalResults": 2, "Resources": [
                {"id": "u1", "userName": "ann@example.com", "active": true},
                {"id": "u2", "userName": "bob@example.com", "active": "False"},
            ]}),
        );
        let status = |key: &str| match observation.accounts.get(key) {
            Some(AccountObservation::Found(a)) => Some(a.status.to_string()),
            _ => None,
        };
        assert_eq!(status("u1").as_deref(), Some("active"));
        assert_eq!(status("bob@example.com").as_deref(), Some("inactive"));
        assert!(!observation.accounts.contains_key("Ann@Example.com"));
        assert!(!observation.accounts.contains_key("ghost"));
    }

    #[test]
    fn a_user_name_that_is_another_users_id_is_ambiguous() {
        let observation = observe(
            &["bob"],
            json!({"totalResults": 2, "Resources": [
                {"id": "bob", "userName": "robert", "active": true},
                {"id": "u2", "userName": "bob", "active": false},
            ]}),
        );
        let Some(AccountObservation::Failed(message)) = observation.accounts.get("bob") else {
            panic!("{:?}", observation.accounts);
        };
        assert!(message.contains("the id of user bob"), "{message}");
        assert!(message.contains("the userName of user u2"), "{message}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: hostile::CASES, ..Default::default() })]
        /// Mutated and hostile pages never panic; what cannot be used is a clear error.
        #[test]
        fn hostile_pages_never_panic(page in hostile::page(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 2, "startIndex": 1, "itemsPerPage": 2,
            "Resources": [
                {"id": "u1", "userName": "bob", "active": "True", "emails": [{"value": "b@x", "primary": true}]},
                {"id": "bob", "userName": "ann", "active": false}]}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_page("x", &body) {
                Ok((users, _total)) => {
                    let wanted = vec!["bob".to_string(), "u1".to_string(), "ann".to_string()];
                    let _ = Observation::of_listed(&wanted, listed(&users).map(|(e, _)| e));
                    let _: Vec<Option<String>> = users.iter().map(User::email).collect();
                }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            if let Err(e) = parse_page("x", &body) {
                hostile::assert_clear(&e);
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse_page("x", body.as_bytes()).err().unwrap();
        hostile::assert_clear(&error);
    }
}

#[cfg(test)]
mod against_the_simulator {
    use super::*;
    use crate::desired::{AuthConfig, InstanceConfig, Location, SecretSource};
    use crate::provider::http::NoObserver;
    use crate::provider::ResolvedAuth;
    use crate::secret::Secret;
    use crate::simulator::{ScimStyle, SimConfig, SimKind, SimUser, Simulator};
    use std::time::Duration;

    async fn adapter(users: Vec<SimUser>, page_size_max: usize) -> (Simulator, Arc<dyn Provider>) {
        let mut config = SimConfig::new(SimKind::Scim, users);
        config.page_size_max = page_size_max;
        config.scim = ScimStyle {
            string_active: 0.5,
            absent_active: 0.5,
            patch_no_content: false,
        };
        let sim = Simulator::start(config.clone()).await.expect("simulator");
        let instance = InstanceConfig {
            name: "slack".into(),
            kind: &KIND.spec,
            base_url: url::Url::parse(&sim.base_url()).expect("url"),
            auth: AuthConfig::Bearer(SecretSource::Env("UNUSED".into())),
            max_concurrency: 2,
            requests_per_second: None,
            timeout: Duration::from_secs(5),
            max_changes: 25,
            settings: Default::default(),
            ca_file: None,
            location: Location::default(),
        };
        let provider = connect(Connect {
            instance: &instance,
            auth: ResolvedAuth::Bearer(Secret::new(config.token.clone())),
            observer: Arc::new(NoObserver),
        })
        .map_err(|e| e.to_string())
        .expect("connect");
        (sim, provider)
    }

    /// The inventory lists every user across capped pages, with `userName` as login and
    /// alias and the primary email, whatever shape `active` is served in.
    #[tokio::test]
    async fn the_inventory_lists_everyone_with_login_and_primary_email() {
        let users = SimUser::generate(SimKind::Scim, 23, 4);
        let (sim, provider) = adapter(users.clone(), 5).await;
        let Inventory::Listed(held) = provider.inventory().await.expect("inventory") else {
            panic!("a SCIM instance can list its accounts");
        };
        assert_eq!(sim.read_count(), 5, "23 users at 5 a page");
        assert_eq!(held.len(), users.len());
        for (account, user) in held.iter().zip(&users) {
            assert_eq!(account.id, user.id);
            assert_eq!(account.login.as_deref(), Some(user.name.as_str()));
            assert_eq!(account.aliases, std::slice::from_ref(&user.name));
            assert_eq!(account.email.as_deref(), Some(user.name.as_str()));
            assert_eq!(account.live.status.as_str(), user.status);
        }
        assert!(held.iter().any(|a| a.live.status == Status::inactive()));
    }
}
