//! `atlan`: Atlan's service API. Reads `GET /api/service/users?limit&offset&sort`;
//! writes `POST /api/service/users/{id} {"enabled": bool}`.
//!
//! Quirk: admins cannot be deactivated (403 "admin cannot disable fellow admins"), so a
//! desired deactivation of a `$admin` is planned as blocked, and a 403 on write is too.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, lenient_text, offset_pages, parse_json, Change, Connect, ConnectError, HeldAccount,
    Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount, Provider, ProviderError,
    Refusal, RefusalScope, WriteAccess, WriteOutcome,
};
use crate::status::Status;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub static KIND: Kind = Kind {
    spec: KindSpec {
        name: "atlan",
        statuses: &["active", "inactive"],
        auth: super::AuthStyle::Bearer,
        settings: &[],
    },
    connect,
};

const PAGE_SIZE: usize = 100;
const ADMIN_REASON: &str =
    "admin users cannot be deactivated: remove the admin role in Atlan first";
const UNKNOWN_REASON: &str = "Atlan reports no enabled state (enabled: null); check the user in Atlan before Roster changes it";

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let token = BearerToken(cx.auth.bearer_ref(&cx.instance.name)?);
    let http = cx.http(Arc::new(token), HeaderMap::new(), Vec::new())?;
    Ok(Arc::new(Atlan { http }))
}

struct Atlan {
    http: HttpClient,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    filter_record: u64,
    records: Vec<User>,
}

/// `Option` fields are optional to serde; through `deserialize_with` a missing one is an
/// error ("missing field") while an explicit `null` still reads as `None`.
fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<bool>::deserialize(d)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    /// Required but nullable: `null` is Atlan's "unknown" (never changed), while a record
    /// without the field is a broken answer, an error naming the field.
    #[serde(deserialize_with = "required_nullable")]
    enabled: Option<bool>,
    #[serde(default)]
    workspace_role: Option<String>,
    /// Identity for `inventory`; read leniently, never needed to reconcile.
    #[serde(default, deserialize_with = "lenient_text")]
    username: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    email: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl Atlan {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    async fn page(&self, offset: usize, limit: usize) -> Result<(Vec<User>, u64), ProviderError> {
        let request = ApiRequest::get(&["api", "service", "users"])
            .query("limit", limit)
            .query("offset", offset)
            .query("sort", "username");
        let response = self.http.read(request).await?;
        if !response.is_success() {
            return Err(self.error(&response, "users"));
        }
        parse_page(self.instance(), &response.body)
    }

    /// Every user, page by page: the one place that knows how Atlan pages, shared by
    /// `observe` and `inventory`.
    async fn users(&self) -> Result<Vec<User>, ProviderError> {
        offset_pages(
            self.instance(),
            PAGE_SIZE,
            |u: &User| &u.id,
            |offset, limit| self.page(offset, limit),
        )
        .await
    }

    fn error(&self, response: &ApiResponse, account: &str) -> ProviderError {
        api_error(self.instance(), response, account, |body| {
            serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .map(|b| b.message)
        })
    }
}

/// Parses one list page: its records and `filterRecord`, the total to page up to.
fn parse_page(instance: &str, body: &[u8]) -> Result<(Vec<User>, u64), ProviderError> {
    let page: Page = parse_json(instance, "list page", body)?;
    Ok((page.records, page.filter_record))
}

fn observed(user: &User) -> ObservedAccount {
    match user.enabled {
        None => ObservedAccount {
            status: Status::new("unknown"),
            refusal: Some(Refusal {
                applies_to: RefusalScope::AnyChange,
                reason: UNKNOWN_REASON.to_string(),
            }),
            revision: None,
        },
        Some(enabled) => {
            let mut account = ObservedAccount::new(if enabled {
                Status::active()
            } else {
                Status::inactive()
            });
            if user.workspace_role.as_deref() == Some("$admin") {
                account.refusal = Some(Refusal {
                    applies_to: RefusalScope::Deactivation,
                    reason: ADMIN_REASON.to_string(),
                });
            }
            account
        }
    }
}

/// A listed user as `inventory` reports it: its `username` is the login.
fn held(user: &User) -> HeldAccount {
    HeldAccount {
        id: user.id.clone(),
        aliases: Vec::new(),
        login: user.username.clone(),
        email: user.email.clone(),
        live: observed(user),
    }
}

#[async_trait]
impl Provider for Atlan {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = self.users().await?;
        let listed = users
            .iter()
            .enumerate()
            .map(|(record, user)| Listed::by_id(record, user.id.clone(), observed(user)));
        Ok(Observation::of_listed(accounts, listed))
    }

    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        let users = self.users().await?;
        Ok(Inventory::Listed(users.iter().map(held).collect()))
    }

    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError> {
        let body = json!({ "enabled": change.to.is_active() });
        let request = ApiRequest::new(
            Method::POST,
            &["api", "service", "users", &change.account_id],
        )
        .json(body);
        let response = self.http.write(access, request).await?;
        let http_status = response.status.as_u16();
        if response.is_success() {
            return Ok(WriteOutcome::Applied { http_status });
        }
        match self.error(&response, &change.account_id) {
            ProviderError::Api { message, .. } if http_status == 403 && !change.to.is_active() => {
                Ok(WriteOutcome::Refused {
                    http_status,
                    reason: format!("{message} ({ADMIN_REASON})"),
                })
            }
            error => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::hostile;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: hostile::CASES, ..Default::default() })]
        /// Mutated and hostile pages never panic; what cannot be used is a clear error.
        #[test]
        fn hostile_pages_never_panic(page in hostile::page(serde_json::json!({"totalRecord": 2, "filterRecord": 2, "records": [
            {"id": "a", "username": "a", "enabled": true, "workspaceRole": "$admin"},
            {"id": "b", "username": "b", "enabled": null, "workspaceRole": "$member"}]}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_page("x", &body) {
                Ok((users, _total)) => { for user in &users { let _ = observed(user); } }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            match parse_page("x", &body) {
                Ok((users, _total)) => { for user in &users { let _ = observed(user); } }
                Err(e) => hostile::assert_clear(&e),
            }
        }
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let cases = [
            (r#"{"filterRecord": -1, "records": []}"#, "response is missing or has an invalid field: list page: field filterRecord: invalid value: integer `-1`, expected u64"),
            (r#"{"filterRecord": "2", "records": []}"#, "response is missing or has an invalid field: list page: field filterRecord: invalid type: string \"2\", expected u64"),
            (r#"{"filterRecord": 1e400, "records": []}"#, "response is missing or has an invalid field: list page: field filterRecord: number out of range"),
            (r#"{"filterRecord": 2, "records": [{"id": "a", "enabled": true}, {"id": "b", "enabled": "yes"}]}"#, "response is missing or has an invalid field: list page: field records[1].enabled: invalid type: string \"yes\", expected a boolean"),
            (r#"{"records": []}"#, "response is missing or has an invalid field: list page: missing field `filterRecord`"),
        ];
        for (body, expected) in cases {
            let error = parse_page("x", body.as_bytes()).err().unwrap().to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse_page("x", body.as_bytes()).err().unwrap();
        hostile::assert_clear(&error);
    }
}
