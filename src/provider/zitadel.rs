//! `zitadel`: ZITADEL's resource API v3alpha. Reads `POST .../users/_search`; writes
//! `POST .../users/{id}/_deactivate` or `_activate`.
//!
//! Quirks: `_deactivate` on an already inactive user (and `_activate` on an active one)
//! answers 400 FAILED_PRECONDITION; after re-reading the user this counts as converged.
//! Locked and other states are shown as they are and never changed.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    already_note, api_error, lenient_text, offset_pages, parse_json, text_of, Change, Connect,
    ConnectError, HeldAccount, Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount,
    Provider, ProviderError, Refusal, RefusalScope, Setting, WriteAccess, WriteOutcome,
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
        name: "zitadel",
        statuses: &["active", "inactive"],
        auth: super::AuthStyle::Bearer,
        settings: &[Setting {
            key: "organization_id",
            required: false,
        }],
    },
    connect,
};

/// The largest page ZITADEL serves; servers that grant less are paged by what they grant.
const PAGE_SIZE: usize = 1000;
const USERS: &[&str] = &["resources", "v3alpha", "users"];
/// gRPC's FAILED_PRECONDITION, as ZITADEL writes it in error bodies.
const FAILED_PRECONDITION: i64 = 9;

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let query = cx
        .instance
        .setting("organization_id")
        .map(|org| vec![("organization.orgId".to_string(), org.to_string())])
        .unwrap_or_default();
    let token = BearerToken(cx.auth.bearer_ref(&cx.instance.name)?);
    let http = cx.http(Arc::new(token), HeaderMap::new(), query)?;
    Ok(Arc::new(Zitadel { http }))
}

struct Zitadel {
    http: HttpClient,
}

#[derive(Deserialize)]
struct SearchResponse {
    details: SearchDetails,
    #[serde(default)]
    result: Vec<User>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchDetails {
    /// A string of digits: protobuf JSON writes 64-bit integers as strings.
    total_result: String,
}

#[derive(Deserialize)]
struct User {
    id: String,
    state: String,
    /// Identity for `inventory`, read leniently: both may be absent (a machine user has
    /// no email), and neither is needed to reconcile.
    #[serde(default, deserialize_with = "lenient_text")]
    username: Option<String>,
    /// `contact.email.address`, where the user has one. Only the address is kept: a
    /// listing of 100,000 users would otherwise hold 100,000 JSON trees until it is read.
    #[serde(default, rename = "contact", deserialize_with = "contact_email")]
    email: Option<String>,
}

/// `contact.email.address` as text, read leniently: any other shape is no email.
fn contact_email<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let contact = <Option<serde_json::Value> as Deserialize>::deserialize(d)?;
    Ok(text_of(
        contact
            .as_ref()
            .and_then(|c| c.get("email"))
            .and_then(|e| e.get("address")),
    ))
}

#[derive(Deserialize)]
struct GetResponse {
    user: User,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: i64,
    #[serde(default)]
    message: String,
}

fn path(id: &str, action: Option<&str>) -> Vec<String> {
    USERS
        .iter()
        .map(|s| s.to_string())
        .chain([id.to_string()])
        .chain(action.map(String::from))
        .collect()
}

impl Zitadel {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    async fn page(&self, offset: usize, limit: usize) -> Result<(Vec<User>, u64), ProviderError> {
        let request = ApiRequest::new(Method::POST, &[USERS, &["_search"]].concat())
            .query("query.offset", offset)
            .query("query.limit", limit)
            .json(json!({ "filters": [] }));
        let response = self.http.read(request).await?;
        if !response.is_success() {
            return Err(self.error(&response, "users"));
        }
        parse_page(self.instance(), &response.body)
    }

    /// Every user, page by page: the one place that knows how ZITADEL's search pages,
    /// shared by `observe` and `inventory`.
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

    async fn read_one(&self, id: &str) -> Result<User, ProviderError> {
        let segments = path(id, None);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let response = self.http.read(ApiRequest::get(&segments)).await?;
        if !response.is_success() {
            return Err(self.error(&response, id));
        }
        Ok(response.json::<GetResponse>(self.instance())?.user)
    }

    fn error(&self, response: &ApiResponse, account: &str) -> ProviderError {
        api_error(self.instance(), response, account, |body| {
            serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .map(|b| b.message)
        })
    }
}

/// Parses one search page: its users and `details.totalResult` (a string of digits).
fn parse_page(instance: &str, body: &[u8]) -> Result<(Vec<User>, u64), ProviderError> {
    let invalid = |detail: String| ProviderError::InvalidResponse {
        instance: instance.to_string(),
        detail,
    };
    let page: SearchResponse = parse_json(instance, "search page", body)?;
    let total = page.details.total_result.trim();
    let total = total.parse::<u64>().map_err(|_| {
        invalid(format!(
            "details.totalResult is not a whole number of users: {:?}",
            page.details
                .total_result
                .chars()
                .take(40)
                .collect::<String>()
        ))
    })?;
    Ok((page.result, total))
}

/// Maps a ZITADEL state to a status; anything but active/inactive is shown as it is
/// (`USER_STATE_LOCKED` → `locked`) and blocked.
fn observed(state: &str) -> ObservedAccount {
    match state {
        "USER_STATE_ACTIVE" => ObservedAccount::new(Status::active()),
        "USER_STATE_INACTIVE" => ObservedAccount::new(Status::inactive()),
        other => {
            let name = other
                .strip_prefix("USER_STATE_")
                .unwrap_or(other)
                .to_ascii_lowercase();
            let reason = if name == "locked" {
                "the user is locked in ZITADEL; unlocking is a separate human decision".to_string()
            } else {
                format!("ZITADEL state {other} cannot be changed by Roster")
            };
            ObservedAccount {
                status: Status::new(name),
                refusal: Some(Refusal {
                    applies_to: RefusalScope::AnyChange,
                    reason,
                }),
                revision: None,
            }
        }
    }
}

/// A listed user as `inventory` reports it: `username` is the login and
/// `contact.email.address` the email, each where present.
fn held(user: &User) -> HeldAccount {
    HeldAccount {
        id: user.id.clone(),
        aliases: Vec::new(),
        login: user.username.clone(),
        email: user.email.clone(),
        live: observed(&user.state),
    }
}

#[async_trait]
impl Provider for Zitadel {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = self.users().await?;
        let listed = users
            .into_iter()
            .enumerate()
            .map(|(record, user)| Listed::by_id(record, user.id, observed(&user.state)));
        Ok(Observation::of_listed(accounts, listed))
    }

    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        let users = self.users().await?;
        Ok(Inventory::Listed(users.iter().map(held).collect()))
    }

    /// One `GET .../users/{id}` per account.
    fn targeted_read_cost(&self, accounts: &[String]) -> Option<usize> {
        Some(accounts.len())
    }

    /// Reads each account with `GET .../users/{id}`; a 404 means not found, and an
    /// answer about another id is an error rather than a guess.
    async fn observe_accounts(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        super::observe_each(accounts, |id| async move {
            let user = self.read_one(&id).await?;
            if user.id != id {
                return Err(ProviderError::InvalidResponse {
                    instance: self.instance().to_string(),
                    detail: format!("reading user {id:?} answered user {:?}", user.id),
                });
            }
            Ok(observed(&user.state))
        })
        .await
    }

    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError> {
        let action = if change.to.is_active() {
            "_activate"
        } else {
            "_deactivate"
        };
        let segments = path(&change.account_id, Some(action));
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let request = ApiRequest::new(Method::POST, &segments).json(json!({}));
        let response = self.http.write(access, request).await?;
        let http_status = response.status.as_u16();
        if response.is_success() {
            return Ok(WriteOutcome::Applied { http_status });
        }
        let precondition = http_status == 400
            && serde_json::from_slice::<ErrorBody>(&response.body)
                .is_ok_and(|b| b.code == FAILED_PRECONDITION);
        if precondition {
            // The state changed between read and write; confirm it is now the desired one.
            let now = observed(&self.read_one(&change.account_id).await?.state);
            if now.status == change.to {
                return Ok(WriteOutcome::AlreadyConverged {
                    http_status,
                    note: already_note(
                        &change.to,
                        response.earlier_attempt_unanswered,
                        "when the write landed (changed by someone else since the read)",
                    ),
                });
            }
        }
        Err(self.error(&response, &change.account_id))
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
        fn hostile_pages_never_panic(page in hostile::page(serde_json::json!({"details": {"totalResult": "2", "appliedLimit": "100"}, "result": [
            {"id": "1", "state": "USER_STATE_ACTIVE", "username": "x"},
            {"id": "2", "state": "USER_STATE_LOCKED"}]}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_page("x", &body) {
                Ok((users, _total)) => { for user in &users { let _ = observed(&user.state); } }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            match parse_page("x", &body) {
                Ok((users, _total)) => { for user in &users { let _ = observed(&user.state); } }
                Err(e) => hostile::assert_clear(&e),
            }
        }
    }

    #[test]
    fn identity_fields_in_odd_shapes_read_as_absent_and_never_fail_the_page() {
        let body = br#"{"details": {"totalResult": "4"}, "result": [
            {"id": "1", "state": "USER_STATE_ACTIVE", "username": "anna", "contact": {"email": {"address": "Anna@Example.com"}}},
            {"id": "2", "state": "USER_STATE_ACTIVE", "username": 7, "contact": {"email": "x@y"}},
            {"id": "3", "state": "USER_STATE_ACTIVE", "username": "  ", "contact": null},
            {"id": "4", "state": "USER_STATE_LOCKED", "contact": [1, 2]}]}"#;
        let (users, total) = parse_page("x", body).unwrap();
        assert_eq!(total, 4);
        let identity: Vec<(Option<String>, Option<String>)> = users
            .iter()
            .map(|u| (held(u).login, held(u).email))
            .collect();
        assert_eq!(
            identity,
            [
                (Some("anna".into()), Some("Anna@Example.com".into())),
                (None, None),
                (None, None),
                (None, None),
            ]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse_page("x", body.as_bytes()).err().unwrap();
        hostile::assert_clear(&error);
    }
}
