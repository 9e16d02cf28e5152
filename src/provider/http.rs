//! The HTTP layer every adapter shares: one reqwest client per instance with auth
//! injection, percent-encoded path segments, per-request timeout, `max_concurrency`,
//! `requests_per_second`, bounded retries with backoff and jitter, and `Retry-After`.
//!
//! Non-retryable answers (400, 403, 404, 409, 422...) are handed back to the adapter,
//! which knows what they mean for its kind; the layer only decides *whether to try again*.

use crate::secret::Secret;
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

pub use crate::apply::WriteAccess;

/// How an adapter authenticates each request.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// The value of the `Authorization` header for the next request.
    async fn authorization(&self, client: &reqwest::Client) -> Result<Secret, HttpError>;

    /// Called after a 401 with the `Authorization` value that was rejected. Returns true
    /// when a fresh attempt may succeed (a new token will be used); a static token returns
    /// false and the request fails as "credentials rejected".
    async fn rejected(&self, authorization: &Secret) -> bool;
}

/// A static bearer token from the environment or a file.
pub struct BearerToken(pub Secret);

#[async_trait]
impl Credentials for BearerToken {
    async fn authorization(&self, _client: &reqwest::Client) -> Result<Secret, HttpError> {
        Ok(Secret::new(format!("Bearer {}", self.0.expose())))
    }

    async fn rejected(&self, _authorization: &Secret) -> bool {
        false
    }
}

/// Receives one event per HTTP attempt, for metrics. The default does nothing.
pub trait RequestObserver: Send + Sync {
    /// An attempt finished: `status` is `None` when no answer arrived (timeout, reset).
    fn request_finished(
        &self,
        instance: &str,
        method: &str,
        status: Option<u16>,
        elapsed: Duration,
    );
    /// An attempt is about to be retried.
    fn retry_scheduled(&self, instance: &str);
}

/// A [`RequestObserver`] that ignores everything.
pub struct NoObserver;

impl RequestObserver for NoObserver {
    fn request_finished(&self, _: &str, _: &str, _: Option<u16>, _: Duration) {}
    fn retry_scheduled(&self, _: &str) {}
}

/// Bounds on retrying; the defaults suit both one-shot `apply` and the daemon.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is capped, so one instance cannot stall a pass for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter: a random delay in [d/2, d], d = base * 2^attempt.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        let half = exp / 2;
        half + exp.mul_f64(rand::random::<f64>() * 0.5)
    }
}

/// Settings for one instance's client.
pub struct HttpConfig {
    pub instance: String,
    pub base_url: Url,
    pub timeout: Duration,
    pub max_concurrency: usize,
    pub requests_per_second: Option<f64>,
    pub credentials: Arc<dyn Credentials>,
    /// Headers every request carries (`X-API-Version`, `X-Tenant-ID`).
    pub headers: HeaderMap,
    /// Query parameters every request carries (ZITADEL's `organization.orgId`).
    pub query: Vec<(String, String)>,
    pub retry: RetryPolicy,
    pub observer: Arc<dyn RequestObserver>,
}

/// A failure that no retry could fix.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{instance}: credentials rejected (HTTP 401); check the token or client secret")]
    Unauthorized { instance: String },
    #[error("{instance}: {method} {path}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        instance: String,
        method: String,
        path: String,
        attempts: u32,
        last: String,
    },
    #[error("{instance}: account id {segment:?} cannot be used in a URL path")]
    BadSegment { instance: String, segment: String },
    #[error("{instance}: cannot build HTTP client: {reason}")]
    Client { instance: String, reason: String },
    #[error("{instance}: {reason}")]
    Token { instance: String, reason: String },
}

/// One request, described by path segments so ids are always percent-encoded.
pub struct ApiRequest {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<serde_json::Value>,
}

impl ApiRequest {
    pub fn new(method: Method, segments: &[&str]) -> Self {
        ApiRequest {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn get(segments: &[&str]) -> Self {
        Self::new(Method::GET, segments)
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// A final answer: 2xx, or a status the adapter must interpret.
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// Parses the body, naming the instance when a required field is missing.
    pub fn json<T: DeserializeOwned>(
        &self,
        instance: &str,
    ) -> Result<T, crate::provider::ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            crate::provider::ProviderError::InvalidResponse {
                instance: instance.to_string(),
                detail: e.to_string(),
            }
        })
    }

    /// The body as text for error messages, cut to a readable length.
    pub fn text_snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut snippet: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            snippet.push('…');
        }
        snippet
    }
}

/// The per-instance client. Cheap to share behind an `Arc`.
pub struct HttpClient {
    config: HttpConfig,
    client: reqwest::Client,
    in_flight: Semaphore,
    pacer: Option<Mutex<Instant>>,
}

impl HttpClient {
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_host = attempt.previous().first().is_some_and(|first| {
                    first.host_str() == attempt.url().host_str()
                        && first.port() == attempt.url().port()
                });
                if same_host && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| HttpError::Client {
                instance: config.instance.clone(),
                reason: e.to_string(),
            })?;
        let pacer = config
            .requests_per_second
            .filter(|rps| *rps > 0.0)
            .map(|_| Mutex::new(Instant::now()));
        Ok(HttpClient {
            in_flight: Semaphore::new(config.max_concurrency.max(1)),
            client,
            pacer,
            config,
        })
    }

    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// The underlying client, for credential flows (token endpoints) that need it.
    pub fn raw_client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn base_url(&self) -> &Url {
        &self.config.base_url
    }

    /// Sends a read. Reads never change provider state, whatever their method.
    pub async fn read(&self, request: ApiRequest) -> Result<ApiResponse, HttpError> {
        self.send(request).await
    }

    /// Sends a write. The [`WriteAccess`] argument is what keeps `plan` unable to write.
    pub async fn write(
        &self,
        _access: &WriteAccess,
        request: ApiRequest,
    ) -> Result<ApiResponse, HttpError> {
        self.send(request).await
    }

    /// Builds the URL of `segments` under the base URL, each segment percent-encoded
    /// (`/`, `?`, `%` and `#` included) so an id can never change the path.
    pub fn url(&self, segments: &[String], query: &[(String, String)]) -> Result<Url, HttpError> {
        let mut url = self.config.base_url.clone();
        for segment in segments {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(HttpError::BadSegment {
                    instance: self.config.instance.clone(),
                    segment: segment.clone(),
                });
            }
        }
        {
            let mut path = url.path_segments_mut().map_err(|_| HttpError::Client {
                instance: self.config.instance.clone(),
                reason: "base_url cannot have a path".into(),
            })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        let all_query: Vec<&(String, String)> = self.config.query.iter().chain(query).collect();
        if !all_query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in all_query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn send(&self, request: ApiRequest) -> Result<ApiResponse, HttpError> {
        let url = self.url(&request.segments, &request.query)?;
        let path = url.path().to_string();
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| HttpError::Client {
                instance: self.config.instance.clone(),
                reason: "client closed".into(),
            })?;
        let policy = &self.config.retry;
        let mut attempt: u32 = 0;
        let mut refreshed_credentials = false;
        loop {
            self.pace().await;
            let authorization = self.config.credentials.authorization(&self.client).await?;
            let mut builder = self
                .client
                .request(request.method.clone(), url.clone())
                .headers(self.config.headers.clone())
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            let mut auth_value =
                HeaderValue::from_str(authorization.expose()).map_err(|_| HttpError::Client {
                    instance: self.config.instance.clone(),
                    reason: "credential contains characters not allowed in a header".into(),
                })?;
            auth_value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, auth_value);
            if let Some(body) = &request.body {
                builder = builder
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body.to_string());
            }
            let started = Instant::now();
            let result = builder.send().await;
            let outcome = match result {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    match response.bytes().await {
                        Ok(body) => Ok((status, retry_after, body)),
                        Err(e) => Err(describe_transport(&e)),
                    }
                }
                Err(e) => Err(describe_transport(&e)),
            };
            let method = request.method.as_str();
            self.config.observer.request_finished(
                &self.config.instance,
                method,
                outcome.as_ref().ok().map(|(s, _, _)| s.as_u16()),
                started.elapsed(),
            );
            tracing::debug!(
                instance = %self.config.instance,
                method,
                path = %path,
                status = outcome.as_ref().ok().map(|(s, _, _)| s.as_u16()),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "http request"
            );
            let (delay, last) = match outcome {
                Ok((status, _, _)) if status == StatusCode::UNAUTHORIZED => {
                    if !refreshed_credentials
                        && self.config.credentials.rejected(&authorization).await
                    {
                        refreshed_credentials = true;
                        continue;
                    }
                    return Err(HttpError::Unauthorized {
                        instance: self.config.instance.clone(),
                    });
                }
                Ok((status, retry_after, _))
                    if status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    let wait = retry_after
                        .map(|d| d.min(policy.max_retry_after))
                        .unwrap_or_else(|| policy.backoff(attempt));
                    (wait, format!("HTTP {}", status.as_u16()))
                }
                Ok((status, _, _)) if status.is_server_error() => {
                    (policy.backoff(attempt), format!("HTTP {}", status.as_u16()))
                }
                Ok((status, _, body)) => return Ok(ApiResponse { status, body }),
                Err(reason) => (policy.backoff(attempt), reason),
            };
            if attempt >= policy.max_retries {
                return Err(HttpError::GaveUp {
                    instance: self.config.instance.clone(),
                    method: method.to_string(),
                    path,
                    attempts: attempt + 1,
                    last,
                });
            }
            attempt += 1;
            self.config.observer.retry_scheduled(&self.config.instance);
            tracing::debug!(instance = %self.config.instance, %path, attempt, delay_ms = delay.as_millis() as u64, reason = %last, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Spaces requests evenly at `requests_per_second`.
    async fn pace(&self) {
        let (Some(pacer), Some(rps)) = (&self.pacer, self.config.requests_per_second) else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rps);
        let wait_until = {
            let mut next = pacer.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A transport error in words, without the URL (which reqwest would include) so that
/// nothing but the path we log ourselves can reach a message.
fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else if error.is_body() || error.is_decode() {
        "connection dropped while reading the answer".into()
    } else {
        "connection error".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> HttpClient {
        HttpClient::new(HttpConfig {
            instance: "test".into(),
            base_url: Url::parse(base).unwrap(),
            timeout: Duration::from_secs(1),
            max_concurrency: 1,
            requests_per_second: None,
            credentials: Arc::new(BearerToken(Secret::new("t"))),
            headers: HeaderMap::new(),
            query: vec![],
            retry: RetryPolicy::default(),
            observer: Arc::new(NoObserver),
        })
        .unwrap()
    }

    #[test]
    fn ids_stay_one_encoded_segment() {
        let c = client("http://127.0.0.1:1/api");
        let segs = |id: &str| vec!["users".to_string(), id.to_string()];
        assert_eq!(c.url(&segs("a/b"), &[]).unwrap().path(), "/api/users/a%2Fb");
        assert_eq!(
            c.url(&segs("../admin"), &[]).unwrap().path(),
            "/api/users/..%2Fadmin"
        );
        assert_eq!(c.url(&segs("x?y"), &[]).unwrap().path(), "/api/users/x%3Fy");
        assert_eq!(
            c.url(&segs("100%"), &[]).unwrap().path(),
            "/api/users/100%25"
        );
        assert_eq!(
            c.url(&segs("a#b c"), &[]).unwrap().path(),
            "/api/users/a%23b%20c"
        );
        assert!(c.url(&segs(".."), &[]).is_err());
        assert!(c.url(&segs("."), &[]).is_err());
    }

    #[test]
    fn base_url_trailing_slash_is_harmless() {
        let c = client("http://127.0.0.1:1/");
        assert_eq!(c.url(&["users".into()], &[]).unwrap().path(), "/users");
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..10 {
            let d = p.backoff(attempt);
            let full = p
                .base_delay
                .saturating_mul(2u32.pow(attempt))
                .min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
