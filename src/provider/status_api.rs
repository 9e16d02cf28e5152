//! `status-api`: a self-hosted user directory with a `status` field.
//! Reads `GET /users?page&per_page`; writes `PATCH /users/{id-or-identifier}`.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, lenient_text, offset_pages, parse_json, Change, Connect, ConnectError, HeldAccount,
    Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount, Provider, ProviderError,
    Setting, WriteAccess, WriteOutcome,
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
        name: "status-api",
        statuses: &["active", "inactive", "onboarding", "suspended", "risky"],
        auth: super::AuthStyle::Bearer,
        settings: &[Setting {
            key: "api_version",
            required: false,
        }],
    },
    connect,
};

const PAGE_SIZE: usize = 100;

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let name = &cx.instance.name;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-api-version",
        cx.header(cx.instance.setting("api_version").unwrap_or("v1"))?,
    );
    let token = BearerToken(cx.auth.bearer_ref(name)?);
    let http = cx.http(Arc::new(token), headers, Vec::new())?;
    Ok(Arc::new(StatusApi { http }))
}

struct StatusApi {
    http: HttpClient,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<User>,
    total: u64,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    identifier: Option<String>,
    status: String,
    /// Identity for `inventory`, read leniently; never needed to reconcile.
    #[serde(default, deserialize_with = "lenient_text")]
    email: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl StatusApi {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    /// One list page, addressed by offset so the shared pager can drive it.
    async fn page(
        &self,
        offset: usize,
        per_page: usize,
    ) -> Result<(Vec<User>, u64), ProviderError> {
        let page = (offset / per_page.max(1)).saturating_add(1);
        let request = ApiRequest::get(&["users"])
            .query("page", page)
            .query("per_page", per_page);
        let response = self.http.read(request).await?;
        self.expect_success(&response, "users")?;
        parse_page(self.instance(), &response.body)
    }

    /// Every user, page by page: the one place that knows how this API pages, shared by
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

    fn expect_success(&self, response: &ApiResponse, account: &str) -> Result<(), ProviderError> {
        if response.is_success() {
            return Ok(());
        }
        Err(api_error(self.instance(), response, account, |body| {
            let body: ErrorBody = serde_json::from_slice(body).ok()?;
            Some(format!("{}: {}", body.error.code, body.error.message))
        }))
    }
}

/// Parses one list page: its users and `total`.
fn parse_page(instance: &str, body: &[u8]) -> Result<(Vec<User>, u64), ProviderError> {
    let page: Page = parse_json(instance, "list page", body)?;
    Ok((page.data, page.total))
}

/// Every key a listed user may be named by: its `id`, and its `identifier` when it has
/// one. A key two users share is then ambiguous (see [`Observation::of_listed`]).
fn listed(users: Vec<User>) -> impl Iterator<Item = Listed> {
    users.into_iter().enumerate().flat_map(|(record, user)| {
        let account = ObservedAccount::new(Status::new(user.status));
        let label = format!("user {}", user.id);
        let by_identifier = user.identifier.map(|identifier| Listed {
            key: identifier,
            record,
            label: label.clone(),
            field: "identifier",
            account: account.clone(),
        });
        std::iter::once(Listed {
            key: user.id,
            record,
            label,
            field: "id",
            account,
        })
        .chain(by_identifier)
    })
}

/// A listed user as `inventory` reports it: the `identifier` is both an alias (a user
/// file may name the account by it) and the login.
fn held(user: User) -> HeldAccount {
    HeldAccount {
        live: ObservedAccount::new(Status::new(user.status)),
        aliases: user.identifier.iter().cloned().collect(),
        login: user.identifier.filter(|i| !i.trim().is_empty()),
        email: user.email,
        id: user.id,
    }
}

#[async_trait]
impl Provider for StatusApi {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = self.users().await?;
        // An account may be named by its uuid or by its identifier: list it under both.
        Ok(Observation::of_listed(accounts, listed(users)))
    }

    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        let users = self.users().await?;
        Ok(Inventory::Listed(users.into_iter().map(held).collect()))
    }

    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError> {
        let mut body = json!({ "status": change.to.as_str() });
        if let Some(reason) = &change.reason {
            body["review_comment"] = json!(reason);
        }
        let request = ApiRequest::new(Method::PATCH, &["users", &change.account_id]).json(body);
        let response = self.http.write(access, request).await?;
        self.expect_success(&response, &change.account_id)?;
        Ok(WriteOutcome::Applied {
            http_status: response.status.as_u16(),
        })
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
        fn hostile_pages_never_panic(page in hostile::page(serde_json::json!({"data": [
            {"id": "u1", "identifier": "bob", "status": "active"},
            {"id": "bob", "identifier": "ann", "status": "inactive"}],
            "page": 1, "per_page": 100, "total": 2}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_page("x", &body) {
                Ok((users, _total)) => {
                    let wanted = vec!["bob".to_string(), "u1".to_string(), "ann".to_string()];
                    let _ = Observation::of_listed(&wanted, listed(users));
                }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            match parse_page("x", &body) {
                Ok((users, _total)) => {
                    let wanted = vec!["bob".to_string(), "u1".to_string(), "ann".to_string()];
                    let _ = Observation::of_listed(&wanted, listed(users));
                }
                Err(e) => hostile::assert_clear(&e),
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
