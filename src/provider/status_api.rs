//! `status-api`: a self-hosted user directory with a `status` field.
//! Reads `GET /users?page&per_page`; writes `PATCH /users/{id-or-identifier}`.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, offset_pages, Connect, ConnectError, KindSpec, Observation, ObservedAccount,
    Provider, ProviderError, Setting, WriteAccess, WriteOutcome,
};
use crate::plan::Change;
use crate::status::Status;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub static KIND: KindSpec = KindSpec {
    name: "status-api",
    statuses: &["active", "inactive", "onboarding", "suspended", "risky"],
    auth: super::AuthStyle::Bearer,
    settings: &[Setting {
        key: "api_version",
        required: false,
    }],
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
    total: usize,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    identifier: Option<String>,
    status: String,
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
    ) -> Result<(Vec<User>, usize), ProviderError> {
        let page = offset / per_page.max(1) + 1;
        let request = ApiRequest::get(&["users"])
            .query("page", page)
            .query("per_page", per_page);
        let response = self.http.read(request).await?;
        self.expect_success(&response, "users")?;
        let page: Page = response.json(self.instance())?;
        Ok((page.data, page.total))
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

#[async_trait]
impl Provider for StatusApi {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = offset_pages(PAGE_SIZE, |offset, limit| self.page(offset, limit)).await?;
        // An account may be named by its uuid or by its identifier: list it under both.
        let listed = users.into_iter().flat_map(|user| {
            let account = ObservedAccount::new(Status::new(user.status));
            let by_identifier = user
                .identifier
                .map(|identifier| (identifier, account.clone()));
            std::iter::once((user.id, account)).chain(by_identifier)
        });
        Ok(Observation::of_listed(accounts, listed))
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
