//! `status-api`: a self-hosted user directory with a `status` field.
//! Reads `GET /users?page&per_page`; writes `PATCH /users/{id-or-identifier}`. After a
//! listing, a folder change reads each touched account with `GET /users/{key}` when the
//! listing matched that key to exactly one user (see [`super::key_index`]).

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::key_index::KeyIndex;
use super::{
    api_error, lenient_text, offset_pages, parse_json, AccountObservation, Change, Connect,
    ConnectError, HeldAccount, Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount,
    Provider, ProviderError, Setting, WriteAccess, WriteOutcome,
};
use crate::status::Status;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

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
    Ok(Arc::new(StatusApi {
        http,
        memory: Mutex::new(None),
    }))
}

/// How many targeted reads run at once.
const TARGETED_CONCURRENCY: usize = 8;

struct StatusApi {
    http: HttpClient,
    /// What the last full listing said about each key; `None` before the first.
    memory: Mutex<Option<Arc<KeyIndex>>>,
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
            self.http.max_concurrency(),
            |u: &User| &u.id,
            |offset, limit| self.page(offset, limit),
        )
        .await
    }

    /// The key index of the last full listing, if any.
    fn memory(&self) -> Option<Arc<KeyIndex>> {
        // A panic while holding the lock left a whole `Option<Arc>` behind, never half.
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every user, and remembers which user each key named (for targeted reads).
    async fn listing(&self) -> Result<Vec<User>, ProviderError> {
        let users = self.users().await?;
        let mut index = KeyIndex::new();
        for (record, user) in users.iter().enumerate() {
            index.insert(&user.id, record, &user.id);
            if let Some(identifier) = &user.identifier {
                index.insert(identifier, record, &user.id);
            }
        }
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(index));
        Ok(users)
    }

    /// `GET /users/{key}`: the user, or `None` when the provider knows no such key (404).
    async fn read_one(&self, key: &str) -> Result<Option<User>, ProviderError> {
        let response = self.http.read(ApiRequest::get(&["users", key])).await?;
        if response.status.as_u16() == 404 {
            return Ok(None);
        }
        self.expect_success(&response, key)?;
        parse_json(self.instance(), "user", &response.body).map(Some)
    }

    /// [`read_one`](Self::read_one), answered with its key.
    async fn read_keyed<'k>(
        &self,
        key: &'k String,
    ) -> (&'k String, Result<Option<User>, ProviderError>) {
        (key, self.read_one(key).await)
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
        let users = self.listing().await?;
        // An account may be named by its uuid or by its identifier: list it under both.
        Ok(Observation::of_listed(accounts, listed(users)))
    }

    /// One `GET /users/{key}` per account, but only when the last listing matched every
    /// key to exactly one user: a key it never saw, or saw on two users, may be
    /// ambiguous, which only a listing shows.
    fn targeted_read_cost(&self, accounts: &[String]) -> Option<usize> {
        let memory = self.memory()?;
        accounts
            .iter()
            .all(|key| memory.is_unique(key))
            .then_some(accounts.len())
    }

    /// Reads each account with `GET /users/{key}`. The answer counts only if it is the
    /// user the last listing matched the key to (by id, and the key is that user's id
    /// or identifier); anything else (a 404, another user) means the provider changed
    /// since, so the accounts are read the listing way instead, which says exactly what
    /// a full pass would. The write, `PATCH /users/{key}`, goes to the user this read.
    async fn observe_accounts(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        use futures::StreamExt;
        let Some(memory) = self
            .memory()
            .filter(|m| accounts.iter().all(|key| m.is_unique(key)))
        else {
            return self.observe(accounts).await;
        };
        let keys: std::collections::BTreeSet<&String> = accounts.iter().collect();
        let reads: Vec<_> = keys.into_iter().map(|key| self.read_keyed(key)).collect();
        let reads: Vec<(&String, Result<Option<User>, ProviderError>)> =
            futures::stream::iter(reads)
                .buffer_unordered(TARGETED_CONCURRENCY)
                .collect()
                .await;
        let mut observation = Observation::default();
        for (key, read) in reads {
            let user = match read? {
                Some(user)
                    if (user.id == *key || user.identifier.as_ref() == Some(key))
                        && memory.names(key, &user.id) =>
                {
                    user
                }
                _ => {
                    tracing::info!(
                        instance = %self.instance(),
                        account = ?key,
                        "the provider no longer matches this key as its last listing did; reading the list instead"
                    );
                    return self.observe(accounts).await;
                }
            };
            observation.accounts.insert(
                key.clone(),
                AccountObservation::Found(ObservedAccount::new(Status::new(user.status))),
            );
        }
        Ok(observation)
    }

    fn listing_memory(&self) -> Option<Arc<KeyIndex>> {
        self.memory()
    }

    fn recall_listing(&self, memory: Arc<KeyIndex>) {
        let mut held = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(memory);
        }
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
