//! The HTTP layer every adapter shares: one reqwest client per instance with auth
//! injection, percent-encoded path segments, per-request timeout, `max_concurrency`,
//! `requests_per_second`, bounded retries with backoff and jitter, and `Retry-After`.
//!
//! Non-retryable answers (400, 403, 404, 409, 422...) are handed back to the adapter,
//! which knows what they mean for its kind; the layer only decides *whether to try again*.
//!
//! Providers are not trusted: bodies are streamed with a size limit ([`MAX_BODY_BYTES`]),
//! large string fields an adapter does not need are dropped as their bytes arrive
//! ([`ApiRequest::skip_string_field`]), and a transport failure is described by its
//! cause (DNS, refused, TLS certificate, timeout). A certificate problem is never retried.

use crate::secret::Secret;
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

pub use crate::apply::WriteAccess;

/// The largest response body Roster accepts, counted as bytes received (before any
/// field is skipped). A suspend-api page of 100 users with 256 KB avatars is about
/// 26 MB, so 64 MiB leaves room; a larger body is refused as soon as the limit is passed
/// (or at once, when `Content-Length` announces it), never held whole in memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The longest wait [`HttpClient`] keeps between paced requests, whatever
/// `requests_per_second` says.
const MAX_PACE_INTERVAL: Duration = Duration::from_secs(3600);

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
    /// A read or a write (`write` says which) finished, after every attempt it took,
    /// whether it succeeded or not. Progress displays count these; metrics count the
    /// attempts above and need not implement it.
    fn call_finished(&self, _instance: &str, _write: bool) {}
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
    /// A PEM file of extra trusted CA certificates (the instance's `ca_file`), for a
    /// provider behind a private CA. `SSL_CERT_FILE` is added the same way for every
    /// instance. Both come on top of the built-in public roots.
    pub ca_file: Option<PathBuf>,
}

/// A failure that no retry could fix. Like [`crate::provider::ProviderError`], it carries
/// the instance but its message leaves it out, for the caller to name once.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("credentials rejected (HTTP 401); check the token or client secret")]
    Unauthorized { instance: String },
    #[error("{method} {path}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        instance: String,
        method: String,
        path: String,
        attempts: u32,
        last: String,
    },
    #[error("account id {segment:?} cannot be used in a URL path")]
    BadSegment { instance: String, segment: String },
    #[error("cannot build HTTP client: {reason}")]
    Client { instance: String, reason: String },
    #[error("{reason}")]
    Token { instance: String, reason: String },
    #[error(
        "{method} {path}: {problem}; not retried, since a retry cannot fix a certificate{hint}"
    )]
    Tls {
        instance: String,
        method: String,
        path: String,
        problem: String,
        hint: &'static str,
    },
    #[error("{method} {path}: the answer is larger than {limit} bytes, the most Roster reads from one response")]
    TooLarge {
        instance: String,
        method: String,
        path: String,
        limit: usize,
    },
}

impl HttpError {
    /// The instance this error happened at.
    pub fn instance(&self) -> &str {
        match self {
            HttpError::Unauthorized { instance }
            | HttpError::GaveUp { instance, .. }
            | HttpError::BadSegment { instance, .. }
            | HttpError::Client { instance, .. }
            | HttpError::Token { instance, .. }
            | HttpError::Tls { instance, .. }
            | HttpError::TooLarge { instance, .. } => instance,
        }
    }
}

/// One request, described by path segments so ids are always percent-encoded.
pub struct ApiRequest {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    content_type: &'static str,
    skip: Vec<&'static str>,
}

impl ApiRequest {
    pub fn new(method: Method, segments: &[&str]) -> Self {
        ApiRequest {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            content_type: "application/json",
            skip: Vec::new(),
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

    /// Sends the JSON body under another media type than `application/json` (SCIM's
    /// `application/scim+json`, which SCIM servers are required to accept).
    pub fn content_type(mut self, media_type: &'static str) -> Self {
        self.content_type = media_type;
        self
    }

    /// Drops the contents of every JSON string stored under the key `field`, anywhere in
    /// the answer, while it streams in: the value arrives as `""`. For large fields the
    /// adapter never reads (suspend-api `avatar_base64`), so they are never held in memory.
    pub fn skip_string_field(mut self, field: &'static str) -> Self {
        self.skip.push(field);
        self
    }
}

/// A final answer: 2xx, or a status the adapter must interpret.
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Bytes,
    /// True when an earlier attempt of this same call was sent but its answer was lost (the
    /// connection dropped or timed out, or a gateway answered 5xx): that attempt may have
    /// been applied, so a write's "already in that state" answer most likely means Roster
    /// made the change itself.
    pub earlier_attempt_unanswered: bool,
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
        crate::provider::parse_json(instance, "answer", &self.body)
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
        let mut builder = reqwest::Client::builder();
        let ca_files = config
            .ca_file
            .iter()
            .map(|path| (path.clone(), "ca_file"))
            .chain(
                std::env::var_os("SSL_CERT_FILE")
                    .filter(|v| !v.is_empty())
                    .map(|v| (PathBuf::from(v), "SSL_CERT_FILE")),
            );
        for (path, origin) in ca_files {
            for certificate in read_ca_file(&config.instance, &path, origin)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
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

    /// The instance's `max_concurrency`: how many of its requests are in flight at most,
    /// reads and writes together. Adapters read that many pages or batches at once; the
    /// client's own limit then never makes one of them wait on another.
    pub fn max_concurrency(&self) -> usize {
        self.config.max_concurrency.max(1)
    }

    /// Sends a read. Reads never change provider state, whatever their method.
    pub async fn read(&self, request: ApiRequest) -> Result<ApiResponse, HttpError> {
        let result = self.send(request).await;
        self.config
            .observer
            .call_finished(&self.config.instance, false);
        result
    }

    /// Sends a write. The [`WriteAccess`] argument is what keeps `plan` unable to write.
    pub async fn write(
        &self,
        _access: &WriteAccess,
        request: ApiRequest,
    ) -> Result<ApiResponse, HttpError> {
        let result = self.send(request).await;
        self.config
            .observer
            .call_finished(&self.config.instance, true);
        result
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
        let method = request.method.as_str();
        let mut attempt: u32 = 0;
        let mut refreshed_credentials = false;
        let mut earlier_attempt_unanswered = false;
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
                    .header(CONTENT_TYPE, HeaderValue::from_static(request.content_type))
                    .body(body.to_string());
            }
            let started = Instant::now();
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    read_body(response, &request.skip)
                        .await
                        .map(|body| (status, retry_after, body))
                }
                Err(e) => Err(BodyError::Transport(Transport::of(&e))),
            };
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
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "http request"
            );
            let (delay, last, unanswered) = match outcome {
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
                    (wait, format!("HTTP {}", status.as_u16()), false)
                }
                Ok((status, _, _)) if status.is_server_error() => (
                    policy.backoff(attempt),
                    format!("HTTP {}", status.as_u16()),
                    true,
                ),
                Ok((status, _, body)) => {
                    return Ok(ApiResponse {
                        status,
                        body,
                        earlier_attempt_unanswered,
                    })
                }
                Err(BodyError::TooLarge) => {
                    return Err(HttpError::TooLarge {
                        instance: self.config.instance.clone(),
                        method: method.to_string(),
                        path,
                        limit: MAX_BODY_BYTES,
                    })
                }
                Err(BodyError::Transport(Transport::Tls(problem))) => {
                    return Err(HttpError::Tls {
                        instance: self.config.instance.clone(),
                        method: method.to_string(),
                        path,
                        hint: problem.hint(),
                        problem: problem.describe(),
                    })
                }
                Err(BodyError::Transport(transport)) => (
                    policy.backoff(attempt),
                    transport.describe(&url, self.config.timeout),
                    transport.may_have_arrived(),
                ),
            };
            earlier_attempt_unanswered |= unanswered;
            if attempt >= policy.max_retries {
                return Err(HttpError::GaveUp {
                    instance: self.config.instance.clone(),
                    method: method.to_string(),
                    path,
                    attempts: attempt.saturating_add(1),
                    last,
                });
            }
            attempt = attempt.saturating_add(1);
            self.config.observer.retry_scheduled(&self.config.instance);
            tracing::debug!(instance = %self.config.instance, %path, attempt, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason = %last, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Spaces requests evenly at `requests_per_second`.
    async fn pace(&self) {
        let (Some(pacer), Some(rps)) = (&self.pacer, self.config.requests_per_second) else {
            return;
        };
        let interval = Duration::try_from_secs_f64(1.0 / rps)
            .unwrap_or(MAX_PACE_INTERVAL)
            .min(MAX_PACE_INTERVAL);
        let wait_until = {
            let mut next = pacer.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot.checked_add(interval).unwrap_or(slot);
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

/// Reads the PEM certificates of `path` (an instance's `ca_file` or `SSL_CERT_FILE`).
fn read_ca_file(
    instance: &str,
    path: &std::path::Path,
    origin: &str,
) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let error = |reason: String| HttpError::Client {
        instance: instance.to_string(),
        reason: format!("{origin} {}: {reason}", path.display()),
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {}", e.kind())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| error("is not a PEM file of certificates".to_string()))?;
    if certificates.is_empty() {
        return Err(error("holds no PEM certificate".to_string()));
    }
    Ok(certificates)
}

/// Why reading an answer failed.
#[derive(Debug)]
enum BodyError {
    Transport(Transport),
    TooLarge,
}

/// Streams a body into memory, refusing it past [`MAX_BODY_BYTES`] and dropping the
/// string values of `skip` fields as they arrive.
async fn read_body(
    mut response: reqwest::Response,
    skip: &[&'static str],
) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut filter = SkipStringFields::new(skip);
    let mut received: usize = 0;
    let mut kept = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(Transport::of(&e)))?
    {
        received = received.saturating_add(chunk.len());
        if received > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        filter.feed(&chunk, &mut kept);
    }
    Ok(Bytes::from(kept))
}

/// A byte-level JSON filter that empties the string value of chosen keys, so a large
/// field is dropped while it streams in instead of being parsed and discarded later.
/// It only tracks JSON's lexical structure (strings, escapes, the `:` after a key), so it
/// needs no nesting state and works across chunk boundaries. Anything that is not a
/// string value of a skipped key passes through unchanged; invalid JSON stays invalid.
pub(crate) struct SkipStringFields<'a> {
    fields: &'a [&'static str],
    state: LexState,
    /// The raw bytes of the string being read, kept only while short enough to be a field name.
    token: Vec<u8>,
    token_fits: bool,
    /// The string just closed matched a skipped field and may be followed by `:`.
    key_matched: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LexState {
    /// Between tokens.
    Outside,
    /// Inside a string that is kept; `escaped` after a backslash.
    InString { escaped: bool },
    /// After a skipped key's `:`, before its value.
    AwaitValue,
    /// Inside a string whose bytes are dropped.
    Skipping { escaped: bool },
}

impl<'a> SkipStringFields<'a> {
    pub(crate) fn new(fields: &'a [&'static str]) -> Self {
        SkipStringFields {
            fields,
            state: LexState::Outside,
            token: Vec::new(),
            token_fits: true,
            key_matched: false,
        }
    }

    fn longest_field(&self) -> usize {
        self.fields.iter().map(|f| f.len()).max().unwrap_or(0)
    }

    /// Appends the kept bytes of `chunk` to `out`.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.fields.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        let longest = self.longest_field();
        let mut rest = chunk;
        while let Some((&byte, tail)) = rest.split_first() {
            match self.state {
                LexState::Skipping { escaped: true } => {
                    // The escaped byte is dropped like the rest of the string.
                    self.state = LexState::Skipping { escaped: false };
                }
                LexState::Skipping { escaped: false } => {
                    // Drop everything up to the next quote or backslash in one step.
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => rest = &[],
                        Some(i) => {
                            if rest[i] == b'"' {
                                out.push(b'"');
                                self.state = LexState::Outside;
                            } else {
                                self.state = LexState::Skipping { escaped: true };
                            }
                            rest = &rest[i + 1..];
                        }
                    }
                    continue;
                }
                LexState::InString { escaped } => {
                    out.push(byte);
                    if !escaped && byte == b'"' {
                        self.state = LexState::Outside;
                        self.key_matched = self.token_fits
                            && self.fields.iter().any(|f| f.as_bytes() == self.token);
                    } else {
                        self.state = LexState::InString {
                            escaped: !escaped && byte == b'\\',
                        };
                        if self.token.len() < longest {
                            self.token.push(byte);
                        } else {
                            self.token_fits = false;
                        }
                    }
                }
                LexState::AwaitValue => {
                    if byte.is_ascii_whitespace() {
                        out.push(byte);
                    } else if byte == b'"' {
                        out.push(byte);
                        self.state = LexState::Skipping { escaped: false };
                    } else {
                        self.state = LexState::Outside;
                        continue;
                    }
                }
                LexState::Outside => {
                    out.push(byte);
                    if byte == b'"' {
                        self.state = LexState::InString { escaped: false };
                        self.token.clear();
                        self.token_fits = true;
                        self.key_matched = false;
                    } else if byte == b':' && self.key_matched {
                        self.key_matched = false;
                        self.state = LexState::AwaitValue;
                    } else if !byte.is_ascii_whitespace() {
                        self.key_matched = false;
                    }
                }
            }
            rest = tail;
        }
    }
}

/// A TLS failure of `error` in words, with the hint a user needs (`ca_file`).
pub(crate) fn describe_tls(error: &reqwest::Error) -> String {
    match Transport::of(error) {
        Transport::Tls(problem) => format!("{}{}", problem.describe(), problem.hint()),
        other => other.short(),
    }
}

/// A transport failure, classified by walking the error's `source()` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    Dns(String),
    Refused,
    Tls(TlsProblem),
    /// No answer in time; `connecting` when the connection itself was not made, so the
    /// request never went out.
    Timeout {
        connecting: bool,
    },
    /// Another failure before the request was sent.
    Connect(String),
    /// The connection broke after the request went out, or while the answer streamed in.
    Dropped,
}

/// What was wrong with the server's TLS certificate or handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsProblem {
    UnknownIssuer,
    Expired,
    NotYetValid,
    WrongName,
    Revoked,
    Other(String),
}

impl TlsProblem {
    fn of(error: &rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => TlsProblem::UnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => TlsProblem::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::NotYetValid,
                C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongName,
                C::Revoked => TlsProblem::Revoked,
                other => TlsProblem::Other(format!("invalid certificate ({other:?})")),
            },
            other => TlsProblem::Other(other.to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            TlsProblem::UnknownIssuer => {
                "TLS certificate problem: unknown issuer (the server's certificate is not signed by a trusted CA)".into()
            }
            TlsProblem::Expired => "TLS certificate problem: the server's certificate has expired".into(),
            TlsProblem::NotYetValid => "TLS certificate problem: the server's certificate is not valid yet".into(),
            TlsProblem::WrongName => {
                "TLS certificate problem: name mismatch (the server's certificate is not valid for this host name)".into()
            }
            TlsProblem::Revoked => "TLS certificate problem: the server's certificate is revoked".into(),
            TlsProblem::Other(detail) => format!("TLS failed: {detail}"),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => {
                " (for a private CA, set ca_file on the instance or SSL_CERT_FILE)"
            }
            _ => "",
        }
    }
}

impl Transport {
    /// Classifies a reqwest error by its cause. reqwest's own message is not used: it
    /// carries the whole URL, and only the path we log ourselves may reach a message.
    pub(crate) fn of(error: &reqwest::Error) -> Self {
        let mut dns = None;
        let mut io_kind = None;
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = next {
            // io::Error's source() skips the error it wraps (and hyper nests io::Errors
            // in io::Errors), so unwrap those by hand.
            let mut inner = Some(current);
            while let Some(error) = inner {
                if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                    return Transport::Tls(TlsProblem::of(tls));
                }
                let Some(io) = error.downcast_ref::<std::io::Error>() else {
                    break;
                };
                if io.kind() != std::io::ErrorKind::Other || io_kind.is_none() {
                    io_kind = Some(io.kind());
                }
                if dns.is_some() {
                    dns = Some(io.to_string());
                }
                inner = io
                    .get_ref()
                    .map(|e| e as &(dyn std::error::Error + 'static));
            }
            if current.to_string().starts_with("dns error") {
                dns = Some(
                    current
                        .source()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "the name does not resolve".into()),
                );
            }
            next = current.source();
        }
        if let Some(detail) = dns {
            return Transport::Dns(detail);
        }
        if error.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
            return Transport::Timeout {
                connecting: error.is_connect(),
            };
        }
        if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
            return Transport::Refused;
        }
        if error.is_connect() {
            return Transport::Connect(
                io_kind.map_or_else(|| "unknown cause".to_string(), |k| k.to_string()),
            );
        }
        Transport::Dropped
    }

    /// Whether the request may have reached the server (and been applied) before the
    /// failure: not for failures while connecting.
    fn may_have_arrived(&self) -> bool {
        matches!(
            self,
            Transport::Timeout { connecting: false } | Transport::Dropped
        )
    }

    /// The cause in a few words, without host or timeout.
    pub(crate) fn short(&self) -> String {
        match self {
            Transport::Dns(detail) => format!("DNS lookup failed: {detail}"),
            Transport::Refused => "connection refused".into(),
            Transport::Tls(problem) => problem.describe(),
            Transport::Timeout { .. } => "timed out".into(),
            Transport::Connect(detail) => format!("cannot connect: {detail}"),
            Transport::Dropped => "connection dropped before the whole answer arrived".into(),
        }
    }

    fn describe(&self, url: &Url, timeout: Duration) -> String {
        let host = url.host_str().unwrap_or("?");
        let port = url.port_or_known_default().unwrap_or(0);
        match self {
            Transport::Dns(detail) => format!("DNS lookup of {host} failed: {detail}"),
            Transport::Refused => format!("connection refused by {host}:{port}"),
            Transport::Tls(problem) => problem.describe(),
            Transport::Timeout { connecting: true } => format!(
                "timed out after {} connecting to {host}:{port}",
                humantime::format_duration(timeout)
            ),
            Transport::Timeout { connecting: false } => {
                format!("timed out after {}", humantime::format_duration(timeout))
            }
            Transport::Connect(detail) => format!("cannot connect to {host}:{port}: {detail}"),
            Transport::Dropped => "connection dropped before the whole answer arrived".into(),
        }
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
            ca_file: None,
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

    fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut filter = SkipStringFields::new(&["avatar_base64"]);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            filter.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn skipped_fields_arrive_empty_whatever_the_chunking() {
        let input = br#"{"data":[{"id":"a","avatar_base64":"data:image/png;base64,QUJD\"x\\y","note":"avatar_base64"},{"avatar_base64" : null,"id":"b"},{"id":"c","avatar_base64":  "Zm9v"}],"next_cursor":null}"#;
        let expected = br#"{"data":[{"id":"a","avatar_base64":"","note":"avatar_base64"},{"avatar_base64" : null,"id":"b"},{"id":"c","avatar_base64":  ""}],"next_cursor":null}"#;
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            assert_eq!(
                String::from_utf8_lossy(&filtered(input, chunk)),
                String::from_utf8_lossy(expected),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_key_that_only_starts_like_a_skipped_one_is_kept() {
        let input = br#"{"avatar_base64_url":"keep","x_avatar_base64":"keep","s":"\"avatar_base64\":\"keep\""}"#;
        assert_eq!(filtered(input, 5), input.to_vec());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// For any JSON with avatars anywhere, the filtered bytes parse to the same value
        /// with every avatar string emptied, however the bytes are cut into chunks.
        #[test]
        fn filter_equals_parse_then_empty(value in json_value(), chunk in 1usize..40) {
            let input = serde_json::to_vec(&value).unwrap();
            let out: serde_json::Value = serde_json::from_slice(&filtered(&input, chunk)).unwrap();
            proptest::prop_assert_eq!(out, emptied(value));
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\:{}, é]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![Just("avatar_base64".to_string()), "[a-z_\"]{0,14}"],
                        inner
                    ),
                    0..6
                )
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn emptied(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Array(items) => Value::Array(items.into_iter().map(emptied).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(_) if k == "avatar_base64" => {
                            (k, Value::String(String::new()))
                        }
                        other => (k, emptied(other)),
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    fn quick_client(base: &str, rps: Option<f64>) -> HttpClient {
        quick_client_with_timeout(base, rps, Duration::from_secs(5))
    }

    fn quick_client_with_timeout(base: &str, rps: Option<f64>, timeout: Duration) -> HttpClient {
        HttpClient::new(HttpConfig {
            instance: "test".into(),
            base_url: Url::parse(base).unwrap(),
            timeout,
            max_concurrency: 1,
            requests_per_second: rps,
            credentials: Arc::new(BearerToken(Secret::new("t"))),
            headers: HeaderMap::new(),
            query: vec![],
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                max_retry_after: Duration::from_millis(5),
            },
            observer: Arc::new(NoObserver),
            ca_file: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_and_is_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = quick_client(&format!("http://127.0.0.1:{port}"), None);
        let error = c.read(ApiRequest::get(&["users"])).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            format!("GET /users: gave up after 3 attempts: connection refused by 127.0.0.1:{port}")
        );
    }

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_limit_and_a_announced_one_at_once() {
        use axum::routing::get;
        fn endless() -> axum::body::Body {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let stream =
                futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(stream)
        }
        let announced = || {
            axum::http::Response::builder()
                .header("content-length", (MAX_BODY_BYTES + 1).to_string())
                .body(endless())
                .unwrap()
        };
        let base = serve(
            axum::Router::new()
                .route("/endless", get(move || async move { endless() }))
                .route("/announced", get(move || async move { announced() })),
        )
        .await;
        let c = quick_client(&base, None);
        for path in ["endless", "announced"] {
            let error = c.read(ApiRequest::get(&[path])).await.err().unwrap();
            assert_eq!(
                error.to_string(),
                format!("GET /{path}: the answer is larger than {MAX_BODY_BYTES} bytes, the most Roster reads from one response")
            );
        }
    }

    #[tokio::test]
    async fn an_absurd_request_rate_never_panics() {
        use axum::routing::get;
        let base = serve(axum::Router::new().route("/users", get(|| async { "[]" }))).await;
        let c = quick_client(&base, Some(f64::MIN_POSITIVE));
        let response = c.read(ApiRequest::get(&["users"])).await.unwrap();
        assert!(response.is_success());
        assert!(!response.earlier_attempt_unanswered);
    }

    /// A resolver that fails like getaddrinfo does for a name that does not exist. The
    /// machine's resolver would ask a network server about `.invalid`, so the failure is
    /// made here, and the rest of the chain (hyper's "dns error") is the real one.
    struct NoSuchName;

    impl reqwest::dns::Resolve for NoSuchName {
        fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(async {
                let error = std::io::Error::other(
                    "failed to lookup address information: Name or service not known",
                );
                Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
            })
        }
    }

    #[tokio::test]
    async fn a_dns_failure_is_named_with_its_host() {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(NoSuchName))
            .build()
            .unwrap();
        let url = Url::parse("https://portal.roster.invalid/v1/users").unwrap();
        let error = client.get(url.clone()).send().await.unwrap_err();
        let transport = Transport::of(&error);
        assert!(!transport.may_have_arrived());
        assert_eq!(
            transport.describe(&url, Duration::from_secs(30)),
            "DNS lookup of portal.roster.invalid failed: failed to lookup address information: Name or service not known"
        );
    }

    /// Reads and writes share one send path; a read shows the flag a write would carry.
    #[tokio::test]
    async fn a_timed_out_attempt_marks_the_answer_as_possibly_repeated() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut connection = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                connection += 1;
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                if connection == 1 {
                    // Keep the first connection open and silent: the client times out.
                    held.push(tcp);
                    continue;
                }
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            }
        });
        let c = quick_client_with_timeout(&base, None, Duration::from_millis(300));
        let response = c.read(ApiRequest::get(&["users"])).await.unwrap();
        assert!(response.is_success());
        assert!(response.earlier_attempt_unanswered);
    }
}
