//! `suspend-api`: a self-hosted multi-tenant app with suspend/reactivate.
//! Reads `GET /v1/users?limit&cursor`; writes `POST /v1/users/{id}/suspend {active}`.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, lenient_text, page_fingerprint, parse_json, Change, Connect, ConnectError,
    HeldAccount, Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount, Provider,
    ProviderError, Refusal, RefusalScope, Setting, WriteAccess, WriteOutcome, MAX_PAGES,
};
use crate::status::Status;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub static KIND: Kind = Kind {
    spec: KindSpec {
        name: "suspend-api",
        statuses: &["active", "inactive"],
        auth: super::AuthStyle::Bearer,
        settings: &[Setting {
            key: "tenant_id",
            required: true,
        }],
    },
    connect,
};

const PAGE_SIZE: usize = 100;
const OWNER_REASON: &str = "the tenant owner cannot be suspended";

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let name = &cx.instance.name;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-tenant-id",
        cx.header(cx.instance.setting("tenant_id").unwrap_or_default())?,
    );
    let token = BearerToken(cx.auth.bearer_ref(name)?);
    let http = cx.http(Arc::new(token), headers, Vec::new())?;
    Ok(Arc::new(SuspendApi { http }))
}

struct SuspendApi {
    http: HttpClient,
}

/// A list page. `avatar_base64` is emptied by the HTTP layer while the page streams in
/// (see [`ApiRequest::skip_string_field`]); it and every other field the engine does not
/// need are then skipped by the parser.
#[derive(Deserialize)]
struct Page {
    data: Vec<User>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    active: bool,
    #[serde(default)]
    is_owner: bool,
    /// Identity for `inventory`, read leniently; never needed to reconcile.
    #[serde(default, deserialize_with = "lenient_text")]
    email: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    notices: Vec<String>,
}

impl SuspendApi {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    /// Every user: follows `next_cursor` to the end of the list, reading at most
    /// [`MAX_PAGES`] pages. A cursor seen before (a cycle), a page that repeats an earlier
    /// one, or an empty page that still points further are instance errors, never an
    /// endless loop. The one place that knows how this API pages, shared by `observe` and
    /// `inventory`.
    async fn users(&self) -> Result<Vec<User>, ProviderError> {
        let listing = |detail: String| ProviderError::Listing {
            instance: self.instance().to_string(),
            detail,
        };
        let mut users = Vec::new();
        let mut cursor: Option<String> = None;
        let mut cursors_seen = HashSet::new();
        let mut pages_seen = HashMap::new();
        for page_number in 1..=MAX_PAGES {
            let mut request = ApiRequest::get(&["v1", "users"])
                .query("limit", PAGE_SIZE)
                .skip_string_field("avatar_base64");
            if let Some(cursor) = &cursor {
                request = request.query("cursor", cursor);
            }
            let response = self.http.read(request).await?;
            if !response.is_success() {
                // A tenant mismatch fails every call: one instance error, not one per account.
                return Err(self.error(&response, "users"));
            }
            let (page, next) = parse_page(self.instance(), &response.body)?;
            let fingerprint = page_fingerprint(page.iter().map(|u| u.id.as_str()));
            if !page.is_empty() {
                if let Some(earlier) = pages_seen.insert(fingerprint, page_number) {
                    return Err(listing(format!(
                        "page {page_number} repeats page {earlier}: the provider ignores the cursor"
                    )));
                }
            }
            let Some(next) = next else {
                users.extend(page);
                return Ok(users);
            };
            if page.is_empty() {
                return Err(listing(format!(
                    "page {page_number} is empty but names a next cursor ({})",
                    shown(&next)
                )));
            }
            users.extend(page);
            if !cursors_seen.insert(next.clone()) {
                return Err(listing(format!(
                    "the cursor {} after page {page_number} was already followed: the cursors go round in a cycle",
                    shown(&next)
                )));
            }
            cursor = Some(next);
        }
        Err(listing(format!(
            "the list did not end after {MAX_PAGES} pages of {PAGE_SIZE}, the most Roster reads in a pass"
        )))
    }

    fn error(&self, response: &ApiResponse, account: &str) -> ProviderError {
        api_error(self.instance(), response, account, |body| {
            let body: ErrorBody = serde_json::from_slice(body).ok()?;
            Some(if body.notices.is_empty() {
                format!("{}: {}", body.code, body.message)
            } else {
                format!(
                    "{}: {} (notices: {})",
                    body.code,
                    body.message,
                    body.notices.join("; ")
                )
            })
        })
    }
}

fn listed(users: Vec<User>) -> impl Iterator<Item = Listed> {
    users
        .into_iter()
        .enumerate()
        .map(|(record, user)| Listed::by_id(record, user.id.clone(), observed(&user)))
}

/// A listed user as `inventory` reports it: the API gives an email and no login.
fn held(user: &User) -> HeldAccount {
    HeldAccount {
        id: user.id.clone(),
        aliases: Vec::new(),
        login: None,
        email: user.email.clone(),
        live: observed(user),
    }
}

fn error_code(response: &ApiResponse) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(&response.body)
        .ok()
        .map(|b| b.code)
}

/// Parses one list page: its users and the cursor of the next page, if any.
fn parse_page(instance: &str, body: &[u8]) -> Result<(Vec<User>, Option<String>), ProviderError> {
    let page: Page = parse_json(instance, "list page", body)?;
    Ok((page.data, page.next_cursor.filter(|c| !c.is_empty())))
}

fn observed(user: &User) -> ObservedAccount {
    let status = if user.active {
        Status::active()
    } else {
        Status::inactive()
    };
    let mut account = ObservedAccount::new(status);
    if user.is_owner {
        account.refusal = Some(Refusal {
            applies_to: RefusalScope::Deactivation,
            reason: OWNER_REASON.to_string(),
        });
    }
    account
}

/// The cursor as shown in a message: cut short, since it comes from the provider.
fn shown(cursor: &str) -> String {
    let mut text: String = cursor.chars().take(40).collect();
    if cursor.chars().count() > 40 {
        text.push('…');
    }
    format!("{text:?}")
}

#[async_trait]
impl Provider for SuspendApi {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        Ok(Observation::of_listed(
            accounts,
            listed(self.users().await?),
        ))
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
        let body = json!({ "active": change.to.is_active() });
        let request = ApiRequest::new(
            Method::POST,
            &["v1", "users", &change.account_id, "suspend"],
        )
        .json(body);
        let response = self.http.write(access, request).await?;
        let http_status = response.status.as_u16();
        if response.is_success() {
            return Ok(WriteOutcome::Applied { http_status });
        }
        let error = self.error(&response, &change.account_id);
        let known_refusal = http_status == 403
            && !change.to.is_active()
            && error_code(&response).as_deref() != Some("tenant_mismatch");
        match error {
            ProviderError::Api { message, .. } if known_refusal => Ok(WriteOutcome::Refused {
                http_status,
                reason: message,
            }),
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
        fn hostile_pages_never_panic(page in hostile::page(serde_json::json!({"data": [
            {"id": "a", "active": true, "is_owner": false, "avatar_base64": "data:image/png;base64,QUJD"},
            {"id": "b", "active": false, "is_owner": true, "avatar_base64": null}],
            "next_cursor": "c2"}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_page("x", &body) {
                Ok((users, _next)) => {
                    let _ = Observation::of_listed(&["a".to_string()], listed(users));
                }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            match parse_page("x", &body) {
                Ok((users, _next)) => {
                    let _ = Observation::of_listed(&["a".to_string()], listed(users));
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
