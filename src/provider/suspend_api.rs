//! `suspend-api`: a self-hosted multi-tenant app with suspend/reactivate.
//! Reads `GET /v1/users?limit&cursor`; writes `POST /v1/users/{id}/suspend {active}`.

use super::http::{ApiRequest, ApiResponse, BearerToken, HttpClient};
use super::{
    api_error, Connect, ConnectError, KindSpec, Observation, ObservedAccount, Provider,
    ProviderError, Refusal, RefusalScope, Setting, WriteAccess, WriteOutcome,
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
    name: "suspend-api",
    statuses: &["active", "inactive"],
    auth: super::AuthStyle::Bearer,
    settings: &[Setting {
        key: "tenant_id",
        required: true,
    }],
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

/// A list page. `avatar_base64` and every other field the engine does not need are
/// skipped by the parser without being kept.
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

fn error_code(response: &ApiResponse) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(&response.body)
        .ok()
        .map(|b| b.code)
}

#[async_trait]
impl Provider for SuspendApi {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = ApiRequest::get(&["v1", "users"]).query("limit", PAGE_SIZE);
            if let Some(cursor) = &cursor {
                request = request.query("cursor", cursor);
            }
            let response = self.http.read(request).await?;
            if !response.is_success() {
                // A tenant mismatch fails every call: one instance error, not one per account.
                return Err(self.error(&response, "users"));
            }
            let page: Page = response.json(self.instance())?;
            listed.extend(page.data.into_iter().map(|user| {
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
                (user.id, account)
            }));
            match page.next_cursor {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next.as_str()) => {
                    cursor = Some(next)
                }
                _ => break,
            }
        }
        Ok(Observation::of_listed(accounts, listed))
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
