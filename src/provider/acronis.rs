//! `acronis`: Acronis Cyber Cloud Account Management API v2, with OAuth2 client
//! credentials. Reads `GET /api/2/users?uuids=...` (100 ids a call); writes
//! `PUT /api/2/users/{id} {"enabled", "version"}` with optimistic concurrency.

use super::http::{
    retry_after, ApiRequest, ApiResponse, Credentials, HttpClient, HttpError, RequestObserver,
    RetryPolicy, Transport,
};
use super::{
    already_note, api_error, bounded, lenient_text, parse_json, text_of, Change, Connect,
    ConnectError, HeldAccount, Inventory, Kind, KindSpec, Listed, Observation, ObservedAccount,
    Provider, ProviderError, ResolvedAuth, Setting, WriteAccess, WriteOutcome,
};
use crate::secret::Secret;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use url::Url;

pub static KIND: Kind = Kind {
    spec: KindSpec {
        name: "acronis",
        statuses: &["active", "inactive"],
        auth: super::AuthStyle::ClientCredentials,
        // The tenant whose users `status --unmanaged` and `import` list; reconciling
        // needs no tenant, since it reads the accounts the folder names by id.
        settings: &[Setting {
            key: "tenant_id",
            required: false,
        }],
    },
    connect,
};

/// Why an instance without `tenant_id` cannot list its accounts.
const NO_TENANT: &str = "an acronis instance lists its accounts only with the `tenant_id` setting (the tenant whose users to list); add it to the instance in providers.yaml";

/// The most ids one batch read may carry.
const BATCH: usize = 100;
/// A token is renewed this long before `expires_on` (or, for a token issued for less than
/// twice this, halfway through its life).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The longest a token is used, whatever its `expires_on` says (Acronis issues two-hour
/// tokens), so that an absurd expiry can neither overflow a clock nor keep a token forever.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn connect(cx: Connect) -> Result<Arc<dyn Provider>, ConnectError> {
    let name = cx.instance.name.clone();
    let ResolvedAuth::ClientCredentials {
        client_id,
        client_secret,
    } = &cx.auth
    else {
        return Err(ConnectError::Invalid {
            instance: name,
            message: "acronis needs client credentials (client_id_env, client_secret_env)".into(),
        });
    };
    let mut token_url = cx.instance.base_url.clone();
    token_url
        .path_segments_mut()
        .map_err(|_| ConnectError::Invalid {
            instance: name.clone(),
            message: "base_url cannot have a path".into(),
        })?
        .pop_if_empty()
        .extend(["api", "2", "idp", "token"]);
    let tokens = Arc::new(TokenSource {
        instance: name,
        token_url,
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        current: Mutex::new(None),
        fetched: AtomicU64::new(0),
        observer: cx.observer.clone(),
    });
    let http = cx.http(tokens.clone(), HeaderMap::new(), Vec::new())?;
    let tenant_id = cx.instance.setting("tenant_id").map(str::to_string);
    Ok(Arc::new(Acronis { http, tenant_id }))
}

/// One access token per instance, shared by every request, fetched lazily and renewed
/// shortly before it expires or once after a 401. The lock makes concurrent requests
/// wait for a single fetch instead of each asking for a token.
struct TokenSource {
    instance: String,
    token_url: Url,
    client_id: Secret,
    client_secret: Secret,
    /// The token and when to renew it.
    current: Mutex<Option<(Secret, SystemTime)>>,
    fetched: AtomicU64,
    /// The instance's request observer: a token request is an HTTP request like any other,
    /// so it is counted in `roster_http_requests_total` and the latency histogram.
    observer: Arc<dyn RequestObserver>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_on: u64,
}

/// Why one token request did not give a token.
enum TokenAttempt {
    /// Worth another attempt, after `wait` (`Retry-After`) or a backoff.
    Retry {
        wait: Option<Duration>,
        reason: String,
    },
    Fatal(HttpError),
}

impl TokenSource {
    fn error(&self, reason: impl Into<String>) -> HttpError {
        HttpError::Token {
            instance: self.instance.clone(),
            reason: reason.into(),
        }
    }

    /// Fetches a token, waiting out 429 and 503 (`Retry-After`) and retrying other 5xx
    /// answers and transport errors with backoff, as every other request does.
    async fn fetch(&self, client: &reqwest::Client) -> Result<(Secret, SystemTime), HttpError> {
        let policy = RetryPolicy::default();
        let mut attempt: u32 = 0;
        loop {
            let (wait, reason) = match self.fetch_once(client).await {
                Ok(token) => return Ok(token),
                Err(TokenAttempt::Fatal(error)) => return Err(error),
                Err(TokenAttempt::Retry { wait, reason }) => (wait, reason),
            };
            if attempt >= policy.max_retries {
                return Err(self.error(format!(
                    "{reason} (gave up after {} attempts)",
                    attempt.saturating_add(1)
                )));
            }
            let wait = wait
                .map(|d| d.min(policy.max_retry_after))
                .unwrap_or_else(|| policy.backoff(attempt));
            attempt += 1;
            self.observer.retry_scheduled(&self.instance);
            tracing::debug!(instance = %self.instance, attempt, delay_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), %reason, "retrying the token request");
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_once(
        &self,
        client: &reqwest::Client,
    ) -> Result<(Secret, SystemTime), TokenAttempt> {
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let sent = client
            .post(self.token_url.clone())
            .basic_auth(self.client_id.expose(), Some(self.client_secret.expose()))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await;
        self.observer.request_finished(
            &self.instance,
            "POST",
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let response = sent.map_err(|e| match Transport::of(&e) {
            // A certificate problem is not fixed by asking again.
            Transport::Tls(_) => TokenAttempt::Fatal(self.error(format!(
                "token request failed: {}",
                crate::provider::http::describe_tls(&e)
            ))),
            transport => TokenAttempt::Retry {
                wait: None,
                reason: format!("token request failed: {}", transport.short()),
            },
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(TokenAttempt::Fatal(self.error(format!(
                "client credentials rejected by the token endpoint (HTTP {})",
                status.as_u16()
            ))));
        }
        if !status.is_success() {
            let reason = format!("token endpoint answered HTTP {}", status.as_u16());
            return Err(
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                {
                    TokenAttempt::Retry {
                        wait: retry_after(response.headers()),
                        reason,
                    }
                } else if status.is_server_error() {
                    TokenAttempt::Retry { wait: None, reason }
                } else {
                    TokenAttempt::Fatal(self.error(reason))
                },
            );
        }
        let body = response.bytes().await.map_err(|_| TokenAttempt::Retry {
            wait: None,
            reason: "token response was cut off".to_string(),
        })?;
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            TokenAttempt::Fatal(self.error(format!("token response is missing a field: {e}")))
        })?;
        tracing::debug!(instance = %self.instance, expires_on = token.expires_on, "fetched access token");
        Ok((
            Secret::new(token.access_token),
            renew_at(SystemTime::now(), token.expires_on),
        ))
    }
}

/// When to renew a token that expires at `expires_on` (unix seconds): [`REFRESH_MARGIN`]
/// before, or halfway for a short-lived one, with the lifetime clamped to
/// [`MAX_TOKEN_LIFETIME`]. Never panics, whatever the provider sent.
fn renew_at(now: SystemTime, expires_on: u64) -> SystemTime {
    let lifetime = match UNIX_EPOCH.checked_add(Duration::from_secs(expires_on)) {
        Some(expiry) => expiry.duration_since(now).unwrap_or(Duration::ZERO),
        // Beyond what the clock can hold: as far in the future as anything.
        None => MAX_TOKEN_LIFETIME,
    }
    .min(MAX_TOKEN_LIFETIME);
    let usable = lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2));
    now.checked_add(usable).unwrap_or(now)
}

#[async_trait]
impl Credentials for TokenSource {
    async fn authorization(&self, client: &reqwest::Client) -> Result<Secret, HttpError> {
        let mut current = self.current.lock().await;
        let fresh = current
            .as_ref()
            .is_some_and(|(_, renew_at)| SystemTime::now() < *renew_at);
        if !fresh {
            *current = Some(self.fetch(client).await?);
        }
        let (token, _) = current.as_ref().ok_or_else(|| self.error("no token"))?;
        Ok(Secret::new(format!("Bearer {}", token.expose())))
    }

    async fn rejected(&self, authorization: &Secret) -> bool {
        let mut current = self.current.lock().await;
        // Concurrent requests rejected with the same token share one new token: only the
        // first drops it; the others find a newer one already in place.
        let rejected = authorization.expose().strip_prefix("Bearer ");
        if current
            .as_ref()
            .is_some_and(|(token, _)| Some(token.expose()) == rejected)
        {
            *current = None;
        }
        true
    }
}

struct Acronis {
    http: HttpClient,
    /// The optional `tenant_id` setting: without it the instance cannot list.
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    items: Vec<User>,
}

/// `GET /api/2/tenants/{tenant_id}/users`: the ids of the tenant's users.
#[derive(Deserialize)]
struct TenantUsers {
    items: Vec<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    enabled: bool,
    version: u64,
    /// Identity for `inventory`, read leniently; never needed to reconcile.
    #[serde(default, deserialize_with = "lenient_text")]
    login: Option<String>,
    /// `contact.email`, where the user has one. Only the address is kept: a read of
    /// 100,000 users would otherwise hold 100,000 JSON trees until it is planned.
    #[serde(default, rename = "contact", deserialize_with = "contact_email")]
    email: Option<String>,
}

/// `contact.email` as text, read leniently: any other shape is no email.
fn contact_email<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let contact = <Option<serde_json::Value> as Deserialize>::deserialize(d)?;
    Ok(text_of(contact.as_ref().and_then(|c| c.get("email"))))
}

/// A user as `inventory` reports it: `login` and `contact.email`, where present.
fn held(user: &User) -> HeldAccount {
    HeldAccount {
        id: user.id.clone(),
        aliases: Vec::new(),
        login: user.login.clone(),
        email: user.email.clone(),
        live: observed(user),
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

fn observed(user: &User) -> ObservedAccount {
    let status = if user.enabled {
        crate::status::Status::active()
    } else {
        crate::status::Status::inactive()
    };
    ObservedAccount {
        status,
        refusal: None,
        revision: Some(user.version),
    }
}

/// Parses a tenant's user list: the ids, each once, in the order given.
fn parse_tenant_users(instance: &str, body: &[u8]) -> Result<Vec<String>, ProviderError> {
    let list: TenantUsers = parse_json(instance, "tenant user list", body)?;
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .items
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// Parses a batch read: the users found (unknown ids are simply absent).
fn parse_batch(instance: &str, body: &[u8]) -> Result<Vec<User>, ProviderError> {
    let batch: Batch = parse_json(instance, "batch read", body)?;
    Ok(batch.items)
}

impl Acronis {
    fn instance(&self) -> &str {
        self.http.instance()
    }

    fn error(&self, response: &ApiResponse, account: &str) -> ProviderError {
        api_error(self.instance(), response, account, |body| {
            let body: ErrorBody = serde_json::from_slice(body).ok()?;
            body.error.and_then(|e| e.message).or(body.message)
        })
    }

    /// Reads up to [`BATCH`] users by id; unknown ids are simply absent.
    async fn batch(&self, uuids: String) -> Result<Vec<User>, ProviderError> {
        let response = self
            .http
            .read(ApiRequest::get(&["api", "2", "users"]).query("uuids", uuids))
            .await?;
        if !response.is_success() {
            return Err(self.error(&response, "users"));
        }
        parse_batch(self.instance(), &response.body)
    }

    /// Reads the users with these ids: batches of [`BATCH`], a few at once, and one by
    /// one an id with a comma (it cannot travel in `uuids=`). Unknown ids are absent from
    /// the answer. The one place that knows how to read many Acronis users, shared by
    /// `observe` and `inventory`.
    async fn read_users(&self, ids: &[String]) -> Result<Vec<User>, ProviderError> {
        let (batchable, single): (Vec<&String>, Vec<&String>) =
            ids.iter().partition(|id| !id.contains(','));
        let chunks: Vec<String> = batchable
            .chunks(BATCH)
            .map(|c| c.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))
            .collect();
        let mut users = Vec::new();
        for batch in bounded(chunks, self.http.max_concurrency(), |ids| self.batch(ids)).await {
            users.extend(batch?);
        }
        for id in single {
            match self.read_one(id).await {
                // Keyed by the id asked for, as a targeted read answers for exactly it.
                Ok(user) => users.push(User {
                    id: id.clone(),
                    ..user
                }),
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(users)
    }

    /// The ids of the users of `tenant`.
    async fn tenant_users(&self, tenant: &str) -> Result<Vec<String>, ProviderError> {
        let request = ApiRequest::get(&["api", "2", "tenants", tenant, "users"]);
        let response = self.http.read(request).await?;
        if response.status.as_u16() == 404 {
            return Err(ProviderError::Api {
                instance: self.instance().to_string(),
                status: 404,
                message: format!(
                    "tenant {tenant:?} not found: check the instance's `tenant_id` in providers.yaml"
                ),
            });
        }
        if !response.is_success() {
            return Err(self.error(&response, "users"));
        }
        parse_tenant_users(self.instance(), &response.body)
    }

    async fn read_one(&self, id: &str) -> Result<User, ProviderError> {
        let response = self
            .http
            .read(ApiRequest::get(&["api", "2", "users", id]))
            .await?;
        if !response.is_success() {
            return Err(self.error(&response, id));
        }
        response.json(self.instance())
    }

    async fn put(
        &self,
        access: &WriteAccess,
        id: &str,
        enabled: bool,
        version: u64,
    ) -> Result<ApiResponse, ProviderError> {
        let request = ApiRequest::new(Method::PUT, &["api", "2", "users", id])
            .json(json!({ "enabled": enabled, "version": version }));
        Ok(self.http.write(access, request).await?)
    }
}

#[async_trait]
impl Provider for Acronis {
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        let users = self.read_users(accounts).await?;
        // One id twice in the answers is ambiguous: a failed entry, never a pick.
        let listed = users
            .iter()
            .enumerate()
            .map(|(record, user)| Listed::by_id(record, user.id.clone(), observed(user)));
        Ok(Observation::of_listed(accounts, listed))
    }

    /// Lists the tenant's user ids, then reads them in batches. Without `tenant_id` the
    /// instance cannot list, and says so rather than pretending it holds no one.
    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        let Some(tenant) = &self.tenant_id else {
            return Ok(Inventory::CannotList {
                reason: NO_TENANT.to_string(),
            });
        };
        let ids = self.tenant_users(tenant).await?;
        let users = self.read_users(&ids).await?;
        let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        Ok(Inventory::Listed(
            users
                .iter()
                .filter(|u| wanted.contains(u.id.as_str()))
                .map(held)
                .collect(),
        ))
    }

    /// `observe` already reads by id, a batch of up to [`BATCH`] ids per request (an id
    /// with a comma on its own): the default `observe_accounts` is the targeted read.
    fn targeted_read_cost(&self, accounts: &[String]) -> Option<usize> {
        let single = accounts.iter().filter(|id| id.contains(',')).count();
        Some((accounts.len() - single).div_ceil(BATCH) + single)
    }

    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError> {
        let enabled = change.to.is_active();
        let version = match change.revision {
            Some(version) => version,
            None => self.read_one(&change.account_id).await?.version,
        };
        let response = self
            .put(access, &change.account_id, enabled, version)
            .await?;
        if response.status.as_u16() != 409 {
            return if response.is_success() {
                Ok(WriteOutcome::Applied {
                    http_status: response.status.as_u16(),
                })
            } else {
                Err(self.error(&response, &change.account_id))
            };
        }
        // Someone changed the user since the read: re-read, re-check, retry once.
        let fresh = self.read_one(&change.account_id).await?;
        if fresh.enabled == enabled {
            return Ok(WriteOutcome::AlreadyConverged {
                http_status: 409,
                note: already_note(
                    &change.to,
                    response.earlier_attempt_unanswered,
                    "when re-read after a version conflict",
                ),
            });
        }
        let retry = self
            .put(access, &change.account_id, enabled, fresh.version)
            .await?;
        if retry.is_success() {
            Ok(WriteOutcome::Applied {
                http_status: retry.status.as_u16(),
            })
        } else {
            Err(self.error(&retry, &change.account_id))
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
        fn hostile_pages_never_panic(page in hostile::page(serde_json::json!({"items": [
            {"id": "a", "enabled": true, "activated": true, "version": 3},
            {"id": "b", "enabled": false, "activated": false, "version": 4294967295u64}]}))) {
            let body = serde_json::to_vec(&page).unwrap();
            match parse_batch("x", &body) {
                Ok(users) => {
                    let listed = users.iter().enumerate().map(|(i, u)| Listed::by_id(i, u.id.clone(), observed(u)));
                    let _ = Observation::of_listed(&["a".to_string()], listed);
                }
                Err(e) => hostile::assert_clear(&e),
            }
        }

        /// Arbitrary bytes are an error too, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body: Vec<u8> = body;
            match parse_batch("x", &body) {
                Ok(users) => {
                    let listed = users.iter().enumerate().map(|(i, u)| Listed::by_id(i, u.id.clone(), observed(u)));
                    let _ = Observation::of_listed(&["a".to_string()], listed);
                }
                Err(e) => hostile::assert_clear(&e),
            }
        }
    }

    #[test]
    fn an_absurd_expiry_is_clamped_and_never_panics() {
        let now = SystemTime::now();
        for expires_on in [u64::MAX, u64::MAX / 2, i64::MAX as u64] {
            let at = renew_at(now, expires_on);
            assert_eq!(
                at.duration_since(now).unwrap(),
                MAX_TOKEN_LIFETIME - REFRESH_MARGIN
            );
        }
        assert_eq!(renew_at(now, 0), now);
        let two_hours = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 7200;
        let at = renew_at(now, two_hours).duration_since(now).unwrap();
        assert!(
            at <= Duration::from_secs(6900) && at >= Duration::from_secs(6890),
            "{at:?}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse_batch("x", body.as_bytes()).err().unwrap();
        hostile::assert_clear(&error);
    }
}

#[cfg(test)]
mod token_metrics {
    use super::*;
    use crate::desired::{AuthConfig, InstanceConfig, Location, SecretSource};
    use crate::simulator::{SimConfig, SimKind, SimUser, Simulator};
    use std::sync::Mutex as StdMutex;

    /// Records every attempt the client reports, as the daemon's metrics do.
    #[derive(Default)]
    struct Recorder(StdMutex<Vec<(String, String, Option<u16>)>>);

    impl RequestObserver for Recorder {
        fn request_finished(&self, instance: &str, method: &str, status: Option<u16>, _: Duration) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((instance.to_string(), method.to_string(), status));
            }
        }
        fn retry_scheduled(&self, _: &str) {}
    }

    async fn observe_with(secret: &str) -> (Vec<(String, String, Option<u16>)>, usize) {
        let user = SimUser {
            id: "a".into(),
            name: "a".into(),
            status: "active".into(),
            privileged: false,
            version: 1,
        };
        let config = SimConfig::new(SimKind::Acronis, vec![user]);
        let sim = Simulator::start(config.clone()).await.expect("simulator");
        let instance = InstanceConfig {
            name: "backup".into(),
            kind: &KIND.spec,
            base_url: Url::parse(&sim.base_url()).expect("url"),
            auth: AuthConfig::ClientCredentials {
                client_id: SecretSource::Env("UNUSED".into()),
                client_secret: SecretSource::Env("UNUSED".into()),
            },
            max_concurrency: 2,
            requests_per_second: None,
            timeout: Duration::from_secs(5),
            max_changes: 25,
            settings: Default::default(),
            ca_file: None,
            location: Location::default(),
        };
        let recorder = Arc::new(Recorder::default());
        let provider = connect(Connect {
            instance: &instance,
            auth: ResolvedAuth::ClientCredentials {
                client_id: Secret::new(config.client_id.clone()),
                client_secret: Secret::new(secret),
            },
            observer: recorder.clone(),
        })
        .map_err(|e| e.to_string())
        .expect("connect");
        let _ = provider.observe(&["a".to_string()]).await;
        let seen = recorder.0.lock().map(|s| s.clone()).unwrap_or_default();
        (seen, sim.token_requests())
    }

    #[tokio::test]
    async fn the_token_request_is_counted_like_every_other_request() {
        let config = SimConfig::new(SimKind::Acronis, Vec::new());
        let (seen, token_requests) = observe_with(&config.token).await;
        assert_eq!(token_requests, 1);
        assert_eq!(
            seen,
            vec![
                ("backup".to_string(), "POST".to_string(), Some(200)),
                ("backup".to_string(), "GET".to_string(), Some(200)),
            ]
        );
    }

    #[tokio::test]
    async fn a_rejected_token_request_is_counted_with_its_status() {
        let (seen, token_requests) = observe_with("wrong-secret").await;
        assert_eq!(token_requests, 1);
        assert_eq!(
            seen,
            vec![("backup".to_string(), "POST".to_string(), Some(401))]
        );
    }
}
