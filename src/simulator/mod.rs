//! Built-in provider simulators: one small HTTP server per provider kind, speaking exactly the
//! APIs described in `providers/README.md`, so `roster demo`, the tests and the benchmarks can run
//! without any real SaaS account.
//!
//! This file is the shared framework: store, auth, fault layer, request log, server and admin
//! endpoints (with `connection.rs` for dropped connections, `redact.rs` for keeping secrets out
//! of the log and `fixture.rs` for the accounts). Each kind's file only adds its routes, JSON
//! rendering and quirks through the `KindApi` trait; a new kind is one new file plus one line in
//! the `api` registry.

mod acronis;
mod atlan;
mod connection;
mod fixture;
mod redact;
mod status_api;
mod suspend_api;
mod zitadel;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use percent_encoding::percent_decode_str;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use connection::{ConnHandle, SimListener};
use redact::recorded;

pub use fixture::{load_fixture, FixtureError};

/// The largest request body a simulator accepts; real clients send a few hundred bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How many requests the log keeps (oldest dropped first), so a long `roster simulate` session
/// cannot grow without bound. Counters are not affected by this cap.
const MAX_LOGGED_REQUESTS: usize = 100_000;

/// The provider kinds Roster can talk to; each has one simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimKind {
    /// Self-hosted user directory with a `status` field.
    StatusApi,
    /// Self-hosted multi-tenant app with suspend/reactivate.
    SuspendApi,
    /// Atlan.
    Atlan,
    /// ZITADEL resource API v3alpha.
    Zitadel,
    /// Acronis Account Management API v2.
    Acronis,
}

impl SimKind {
    /// Every kind, for `roster demo` and for tests that cover them all.
    pub const ALL: [SimKind; 5] = [
        SimKind::StatusApi,
        SimKind::SuspendApi,
        SimKind::Atlan,
        SimKind::Zitadel,
        SimKind::Acronis,
    ];

    /// The name used in configuration files and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            SimKind::StatusApi => "status-api",
            SimKind::SuspendApi => "suspend-api",
            SimKind::Atlan => "atlan",
            SimKind::Zitadel => "zitadel",
            SimKind::Acronis => "acronis",
        }
    }

    /// The kind with this [`name`](Self::name), if any.
    pub fn parse(s: &str) -> Option<SimKind> {
        SimKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl std::fmt::Display for SimKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One account as the simulator stores it, in kind-neutral terms; each kind renders it in its
/// own JSON (see the field comments for what `name` and `status` mean per kind).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SimUser {
    /// The API's id: a uuid, or digits for zitadel.
    pub id: String,
    /// identifier (status-api), email (suspend-api), username (atlan, zitadel), login (acronis).
    pub name: String,
    /// `active` or `inactive`; status-api also `onboarding`, `suspended`, `risky`; atlan
    /// `unknown` (`enabled: null`); zitadel `locked` (and `initial`).
    pub status: String,
    /// Atlan `$admin`, suspend-api `is_owner`: the accounts the APIs refuse to deactivate.
    #[serde(default)]
    pub privileged: bool,
    /// Revision, rendered by acronis as `version`; every change of the account increments it.
    #[serde(default = "one")]
    pub version: u64,
}

fn one() -> u64 {
    1
}

/// How to run one simulator. Build it with [`SimConfig::new`] and change the fields a test needs.
/// `Debug` prints the token as `***`.
#[derive(Clone)]
pub struct SimConfig {
    pub kind: SimKind,
    /// The accounts the simulator starts with (generated or from a fixture).
    pub users: Vec<SimUser>,
    /// The bearer token the API accepts; for acronis the client secret.
    pub token: String,
    /// Acronis OAuth client id.
    pub client_id: String,
    /// The `X-Tenant-ID` suspend-api expects; it is also acronis' `tenant_id`.
    pub tenant_id: String,
    /// Zitadel: when set, every request must carry `?organization.orgId=<it>`, else 403.
    pub organization_id: Option<String>,
    /// The `X-API-Version` status-api expects; anything else answers 400.
    pub api_version: String,
    /// The most records one list page returns, whatever the client asks for.
    pub page_size_max: usize,
    /// Lifetime of an acronis access token.
    pub token_ttl: Duration,
    /// Faults active from the start; [`Simulator::set_faults`] replaces them later.
    pub faults: Faults,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("kind", &self.kind)
            .field("users", &self.users.len())
            .field("token", &"***")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("organization_id", &self.organization_id)
            .field("api_version", &self.api_version)
            .field("page_size_max", &self.page_size_max)
            .field("token_ttl", &self.token_ttl)
            .field("faults", &self.faults)
            .finish()
    }
}

impl SimConfig {
    /// A configuration with the defaults the README examples use (token `sim-token`).
    pub fn new(kind: SimKind, users: Vec<SimUser>) -> SimConfig {
        SimConfig {
            kind,
            users,
            token: "sim-token".to_string(),
            client_id: "roster-client".to_string(),
            tenant_id: "3f6c2a9e-5b1d-4c7e-8a2f-9d0e1b4c6a83".to_string(),
            organization_id: None,
            api_version: "v1".to_string(),
            page_size_max: 100,
            token_ttl: Duration::from_secs(2 * 60 * 60),
            faults: Faults::default(),
        }
    }
}

/// Misbehaviour to inject, so retries, backoff and concurrency limits can be tested.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added to every API request before it is handled.
    pub latency: Duration,
    /// Checked in order for each request. `Delay`, `ConcurrentChange` and `ExpireTokens` stack;
    /// the first matching `Status` or `Drop` answers and ends the walk.
    pub rules: Vec<FaultRule>,
}

/// One fault: which requests, how many times, what happens.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Which requests it applies to.
    pub target: FaultTarget,
    /// How many matching requests it affects; 0 means every matching request, forever.
    pub times: u32,
    /// What happens to them.
    pub action: FaultAction,
}

/// Which API requests a fault rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every API request, the acronis token request included.
    Any,
    /// Requests that do not change anything (lists, searches, single reads), not token requests.
    Reads,
    /// Status-changing requests.
    Writes,
    /// The acronis token endpoint.
    Token,
}

/// What a fault does to a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer this status with a JSON error body in the kind's error shape, and `Retry-After`
    /// when set.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Close the connection without an answer.
    Drop,
    /// Extra latency for these requests.
    Delay(Duration),
    /// Just before a write is handled, "someone else" edits the account: acronis bumps the
    /// version (the write gets 409); zitadel sets the state the write asks for (the write gets
    /// 400 FAILED_PRECONDITION); other kinds only bump `updated_at`.
    ConcurrentChange,
    /// Acronis: every issued access token becomes invalid now, then the request is handled.
    ExpireTokens,
}

/// One API request as the simulator saw it, secrets removed, so tests can assert exact calls.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The raw path as received, still percent-encoded (e.g. `/users/a%2Fb`).
    pub path: String,
    /// The raw query string; values of secret parameters (`client_secret`...) replaced by `***`.
    pub query: Option<String>,
    /// Lower-case names; `authorization` is `Bearer ***` / `Basic ***`, never the secret.
    pub headers: BTreeMap<String, String>,
    /// The JSON body when present; form bodies as `{"form": "<raw>"}` with secrets removed,
    /// other bodies as `{"raw": "<text>"}`.
    pub body: Option<serde_json::Value>,
    /// True for status-changing calls; false for reads, zitadel `_search` and the acronis token.
    pub is_write: bool,
    /// The status the simulator answered; 0 when the connection was dropped without an answer.
    pub status: u16,
}

/// A running simulator. Dropping it stops the server; [`Simulator::shutdown`] stops it gracefully.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Simulator {
    /// Starts a simulator on a loopback port chosen by the OS.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on the given address.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, shared.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Which API this simulator speaks.
    pub fn kind(&self) -> SimKind {
        self.shared.config.kind
    }

    /// `http://127.0.0.1:PORT`, the `base` of the README's URLs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every recorded API request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// Only the status-changing requests.
    pub fn writes(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.is_write)
            .cloned()
            .collect()
    }

    /// API requests that were not writes nor token requests.
    pub fn read_count(&self) -> usize {
        self.shared.stats.reads.load(Ordering::SeqCst)
    }

    /// Status-changing API requests (misrouted PUT/PATCH/POST/DELETE included).
    pub fn write_count(&self) -> usize {
        self.shared.stats.writes.load(Ordering::SeqCst)
    }

    /// Requests to the acronis token endpoint.
    pub fn token_requests(&self) -> usize {
        self.shared.stats.token_requests.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests and resets every counter, e.g. between two passes.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// The highest number of writes handled at once since the start or the last clear.
    pub fn max_in_flight_writes(&self) -> usize {
        self.shared
            .stats
            .max_in_flight_writes
            .load(Ordering::SeqCst)
    }

    /// Every account, in the store's order.
    pub fn users(&self) -> Vec<SimUser> {
        self.shared.users()
    }

    /// One account by id, as it is now.
    pub fn user(&self, id: &str) -> Option<SimUser> {
        self.shared.store().get(id).map(|u| u.user.clone())
    }

    /// Changes an account "by hand" (drift), without recording a request. False when the id is
    /// unknown or the kind cannot represent that status.
    pub fn set_user_status(&self, id: &str, status: &str) -> bool {
        self.shared.set_user_status(id, status).is_some()
    }

    /// Replaces the fault configuration, e.g. to break a simulator in the middle of a test.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = FaultState::new(faults);
    }

    /// Stops accepting connections and waits (briefly) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs a simulator until the returned future is dropped (for `roster simulate`).
pub async fn serve_forever(config: SimConfig, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(
        listener,
        Arc::new(Shared::new(config)),
        std::future::pending(),
    )
    .await
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/_sim/requests",
            get(admin_requests).delete(admin_clear_requests),
        )
        .route("/_sim/users", get(admin_users))
        .route("/_sim/users/{id}/status", put(admin_set_status))
        .route("/_sim/stats", get(admin_stats))
        .fallback(api_request)
        .with_state(shared);
    axum::serve(
        SimListener(listener),
        app.into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(stopped)
    .await
}

// ---------------------------------------------------------------------------------------------
// The seam between the framework and one kind.

/// What one provider kind adds to the framework. Implemented by a unit struct in each kind's file.
trait KindApi: Send + Sync {
    /// The statuses this kind can represent; drift by hand is limited to these.
    fn statuses(&self) -> &'static [&'static str];

    /// The account `name` for a generated person whose handle is e.g. `anna.schmidt`.
    fn account_name(&self, handle: &str) -> String {
        handle.to_string()
    }

    /// A fresh id in this API's format.
    fn new_id(&self, rng: &mut StdRng) -> String {
        uuid(rng)
    }

    /// Which operation the request asks for (segments are percent-decoded).
    fn route(&self, method: &Method, segments: &[String]) -> Route;

    /// The kind's error body for a status without a more specific code (faults, 404 routes).
    fn error(&self, status: StatusCode, message: &str) -> Reply;

    /// Auth and required headers; by default `Authorization: Bearer <token>`.
    fn admit(&self, sim: &Shared, req: &ApiRequest, _route: &Route) -> Result<(), Reply> {
        if sim.bearer_ok(req) {
            Ok(())
        } else {
            Err(self.error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"))
        }
    }

    /// "Someone else" edits the account right before a write (fault `ConcurrentChange`).
    fn concurrent_change(&self, user: &mut StoredUser, _req: &ApiRequest) {
        user.touch();
    }

    /// Answers an admitted request.
    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply;
}

/// The registry: the one place that maps a kind to its implementation.
fn api(kind: SimKind) -> &'static dyn KindApi {
    match kind {
        SimKind::StatusApi => &status_api::StatusApi,
        SimKind::SuspendApi => &suspend_api::SuspendApi,
        SimKind::Atlan => &atlan::Atlan,
        SimKind::Zitadel => &zitadel::Zitadel,
        SimKind::Acronis => &acronis::Acronis,
    }
}

/// The operations every kind's API is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// A list, search or batch read.
    List,
    /// Read one account.
    Get(String),
    /// Change one account's status.
    Write(String),
    /// Issue an access token (acronis).
    Token,
    /// Nothing here.
    NotFound,
}

/// How a request counts, for the log, the counters and fault targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Read,
    Write,
    Token,
}

impl Route {
    fn class(&self, method: &Method) -> Class {
        match self {
            Route::List | Route::Get(_) => Class::Read,
            Route::Write(_) => Class::Write,
            Route::Token => Class::Token,
            // A misrouted PUT/PATCH/POST still counts as a write attempt, so "zero writes"
            // assertions catch it.
            Route::NotFound if is_safe(method) => Class::Read,
            Route::NotFound => Class::Write,
        }
    }

    /// An empty id (`/users/`) names nothing.
    fn or_not_found_if_empty(self) -> Route {
        match &self {
            Route::Get(id) | Route::Write(id) if id.is_empty() => Route::NotFound,
            _ => self,
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// An API request with its body read and its path split into percent-decoded segments.
struct ApiRequest {
    method: Method,
    path: String,
    segments: Vec<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl ApiRequest {
    fn new(parts: axum::http::request::Parts, body: Bytes) -> ApiRequest {
        let path = parts.uri.path().to_string();
        let segments = path
            .split('/')
            .skip(1)
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        ApiRequest {
            method: parts.method,
            path,
            segments,
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a query parameter, decoded.
    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The credentials after `<scheme> ` in `Authorization`, scheme compared case-insensitively.
    fn credentials(&self, scheme: &str) -> Option<&str> {
        let value = self.header("authorization")?;
        let (got, rest) = value.split_once(' ')?;
        got.eq_ignore_ascii_case(scheme).then(|| rest.trim())
    }

    /// The body as JSON; the error message is meant for a 400 answer.
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON body: {e}"))
    }

    /// Like [`json`](Self::json), but an empty body is the type's default.
    fn json_or_default<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            self.json()
        }
    }
}

/// A JSON answer built by a kind.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    fn json(status: StatusCode, body: &impl Serialize) -> Reply {
        match serde_json::to_vec(body) {
            Ok(body) => Reply {
                status,
                body,
                headers: Vec::new(),
            },
            Err(e) => Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: format!("{{\"message\":\"cannot render JSON: {e}\"}}").into_bytes(),
                headers: Vec::new(),
            },
        }
    }

    fn ok(body: &impl Serialize) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    /// An answer whose JSON the kind rendered itself.
    fn raw(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state.

/// Everything the server tasks and the [`Simulator`] handle share.
struct Shared {
    api: &'static dyn KindApi,
    /// The configuration; `users` and `faults` have moved into `store` and `faults`.
    config: SimConfig,
    store: Mutex<Store>,
    faults: Mutex<FaultState>,
    log: Mutex<VecDeque<RecordedRequest>>,
    /// Issued acronis access tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    stats: Stats,
}

impl Shared {
    fn new(mut config: SimConfig) -> Shared {
        let users = std::mem::take(&mut config.users);
        let faults = std::mem::take(&mut config.faults);
        Shared {
            api: api(config.kind),
            config,
            store: Mutex::new(Store::new(users)),
            faults: Mutex::new(FaultState::new(faults)),
            log: Mutex::new(VecDeque::new()),
            tokens: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        lock(&self.tokens)
    }

    fn bearer_ok(&self, req: &ApiRequest) -> bool {
        req.credentials("Bearer") == Some(self.config.token.as_str())
    }

    /// The page size actually served for a requested one.
    fn page_limit(&self, requested: usize) -> usize {
        requested.min(self.config.page_size_max.max(1))
    }

    fn users(&self) -> Vec<SimUser> {
        self.store().all().iter().map(|u| u.user.clone()).collect()
    }

    fn set_user_status(&self, id: &str, status: &str) -> Option<SimUser> {
        if !self.api.statuses().contains(&status) {
            return None;
        }
        let mut store = self.store();
        let user = store.get_mut(id)?;
        user.set_status(status);
        Some(user.user.clone())
    }

    fn clear_requests(&self) {
        lock(&self.log).clear();
        let stats = &self.stats;
        stats.reads.store(0, Ordering::SeqCst);
        stats.writes.store(0, Ordering::SeqCst);
        stats.token_requests.store(0, Ordering::SeqCst);
        let now = stats.in_flight_writes.load(Ordering::SeqCst);
        stats.max_in_flight_writes.store(now, Ordering::SeqCst);
    }

    fn record(&self, request: RecordedRequest, class: Class) {
        let counter = match class {
            Class::Read => &self.stats.reads,
            Class::Write => &self.stats.writes,
            Class::Token => &self.stats.token_requests,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let mut log = lock(&self.log);
        if log.len() >= MAX_LOGGED_REQUESTS {
            log.pop_front();
        }
        log.push_back(request);
    }
}

/// Locks a mutex even if a panicking thread poisoned it: the data is plain and stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Stats {
    reads: AtomicUsize,
    writes: AtomicUsize,
    token_requests: AtomicUsize,
    in_flight_writes: AtomicUsize,
    max_in_flight_writes: AtomicUsize,
}

/// Counts one write as in flight for as long as it lives.
struct InFlightWrite<'a>(&'a Stats);

impl<'a> InFlightWrite<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight_writes.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight_writes.fetch_max(now, Ordering::SeqCst);
        InFlightWrite(stats)
    }
}

impl Drop for InFlightWrite<'_> {
    fn drop(&mut self) {
        self.0.in_flight_writes.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The accounts, in insertion order, with an index by id and the order by name.
struct Store {
    users: Vec<StoredUser>,
    by_id: HashMap<String, usize>,
    /// Indexes into `users`, sorted by name (names never change, so this is computed once).
    by_name: Vec<usize>,
}

impl Store {
    fn new(users: Vec<SimUser>) -> Store {
        let users: Vec<StoredUser> = users.into_iter().map(StoredUser::new).collect();
        let mut by_id = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            by_id.entry(u.user.id.clone()).or_insert(i);
        }
        let mut by_name: Vec<usize> = (0..users.len()).collect();
        by_name.sort_by(|a, b| users[*a].user.name.cmp(&users[*b].user.name));
        Store {
            users,
            by_id,
            by_name,
        }
    }

    fn all(&self) -> &[StoredUser] {
        &self.users
    }

    /// Every account, sorted by name.
    fn sorted_by_name(&self) -> impl DoubleEndedIterator<Item = &StoredUser> {
        self.by_name.iter().map(|i| &self.users[*i])
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    fn get(&self, id: &str) -> Option<&StoredUser> {
        self.index_of(id).map(|i| &self.users[i])
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut StoredUser> {
        self.index_of(id).map(|i| &mut self.users[i])
    }

    fn at_mut(&mut self, index: usize) -> &mut StoredUser {
        &mut self.users[index]
    }
}

/// A [`SimUser`] plus the timestamps every kind renders.
struct StoredUser {
    user: SimUser,
    /// Unix seconds; derived from the id so generated data is deterministic.
    created: u64,
    /// Unix seconds of the last change.
    updated: u64,
}

impl StoredUser {
    fn new(user: SimUser) -> StoredUser {
        const JAN_2022: u64 = 1_640_995_200;
        let created = JAN_2022 + hash(&user.id, 1) % (730 * 86_400);
        let updated = created + hash(&user.id, 2) % (90 * 86_400);
        StoredUser {
            user,
            created,
            updated,
        }
    }

    /// Marks the account as changed now (always moving `updated` forward).
    fn touch(&mut self) {
        self.updated = unix_now().max(self.updated + 1);
    }

    /// A change that is a new revision (acronis `version`).
    fn revise(&mut self) {
        self.user.version += 1;
        self.touch();
    }

    fn set_status(&mut self, status: &str) {
        self.user.status = status.to_string();
        self.revise();
    }

    fn is_active(&self) -> bool {
        self.user.status == "active"
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

struct FaultState {
    latency: Duration,
    rules: Vec<ArmedRule>,
}

struct ArmedRule {
    rule: FaultRule,
    /// None: forever.
    remaining: Option<u32>,
}

/// What the fault layer decided for one request.
#[derive(Default)]
struct FaultPlan {
    delay: Duration,
    concurrent_change: bool,
    expire_tokens: bool,
    answer: Option<FaultAnswer>,
}

enum FaultAnswer {
    Status(u16, Option<String>),
    Drop,
}

impl FaultState {
    fn new(faults: Faults) -> FaultState {
        let rules = faults
            .rules
            .into_iter()
            .map(|rule| ArmedRule {
                remaining: (rule.times > 0).then_some(rule.times),
                rule,
            })
            .collect();
        FaultState {
            latency: faults.latency,
            rules,
        }
    }

    /// Decides what happens to one request and counts the rules it used down.
    fn plan(&mut self, class: Class) -> FaultPlan {
        let mut plan = FaultPlan {
            delay: self.latency,
            ..FaultPlan::default()
        };
        for armed in &mut self.rules {
            if armed.remaining == Some(0) || !targets(armed.rule.target, class) {
                continue;
            }
            if let Some(n) = armed.remaining.as_mut() {
                *n -= 1;
            }
            match &armed.rule.action {
                FaultAction::Delay(d) => plan.delay += *d,
                FaultAction::ConcurrentChange => plan.concurrent_change = true,
                FaultAction::ExpireTokens => plan.expire_tokens = true,
                FaultAction::Status { code, retry_after } => {
                    plan.answer = Some(FaultAnswer::Status(*code, retry_after.clone()));
                    break;
                }
                FaultAction::Drop => {
                    plan.answer = Some(FaultAnswer::Drop);
                    break;
                }
            }
        }
        plan
    }
}

fn targets(target: FaultTarget, class: Class) -> bool {
    match target {
        FaultTarget::Any => true,
        FaultTarget::Reads => class == Class::Read,
        FaultTarget::Writes => class == Class::Write,
        FaultTarget::Token => class == Class::Token,
    }
}

// ---------------------------------------------------------------------------------------------
// The API request pipeline: classify, count, fault, admit, handle, record.

async fn api_request(
    State(sim): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let too_large = body.is_err();
    let req = ApiRequest::new(parts, body.unwrap_or_default());
    let route = sim
        .api
        .route(&req.method, &req.segments)
        .or_not_found_if_empty();
    let class = route.class(&req.method);
    let _in_flight = (class == Class::Write).then(|| InFlightWrite::enter(&sim.stats));

    let reply = if too_large {
        let message = format!("request body larger than {MAX_BODY_BYTES} bytes");
        Some(sim.api.error(StatusCode::PAYLOAD_TOO_LARGE, &message))
    } else {
        answer(&sim, &req, route, class).await
    };
    let status = reply.as_ref().map_or(0, |r| r.status.as_u16());
    sim.record(recorded(&sim, &req, class, status), class);
    match reply {
        Some(reply) => reply.into_response(),
        None => {
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Faults first (latency, injected answers, side effects), then auth and the kind's handler.
/// None means: drop the connection without an answer.
async fn answer(sim: &Shared, req: &ApiRequest, route: Route, class: Class) -> Option<Reply> {
    let plan = lock(&sim.faults).plan(class);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    match plan.answer {
        Some(FaultAnswer::Drop) => None,
        Some(FaultAnswer::Status(code, retry_after)) => Some(fault_reply(sim, code, retry_after)),
        None => {
            apply_side_effects(sim, req, &route, &plan);
            let admitted = sim.api.admit(sim, req, &route);
            Some(admitted.map_or_else(|refusal| refusal, |()| sim.api.handle(sim, req, route)))
        }
    }
}

fn fault_reply(sim: &Shared, code: u16, retry_after: Option<String>) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = sim.api.error(status, "simulated fault");
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        reply.headers.push((header::RETRY_AFTER, value));
    }
    reply
}

fn apply_side_effects(sim: &Shared, req: &ApiRequest, route: &Route, plan: &FaultPlan) {
    if plan.expire_tokens {
        sim.tokens().clear();
    }
    if let (true, Route::Write(id)) = (plan.concurrent_change, route) {
        if let Some(user) = sim.store().get_mut(id) {
            sim.api.concurrent_change(user, req);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints: not recorded, no auth, so a person or a test can drive a standalone simulator.

async fn admin_requests(State(sim): State<Arc<Shared>>) -> Response {
    let log: Vec<RecordedRequest> = lock(&sim.log).iter().cloned().collect();
    Reply::ok(&log).into_response()
}

async fn admin_clear_requests(State(sim): State<Arc<Shared>>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn admin_users(State(sim): State<Arc<Shared>>) -> Response {
    Reply::ok(&sim.users()).into_response()
}

async fn admin_stats(State(sim): State<Arc<Shared>>) -> Response {
    let stats = &sim.stats;
    Reply::ok(&serde_json::json!({
        "reads": stats.reads.load(Ordering::SeqCst),
        "writes": stats.writes.load(Ordering::SeqCst),
        "token_requests": stats.token_requests.load(Ordering::SeqCst),
        "max_in_flight_writes": stats.max_in_flight_writes.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn admin_set_status(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    struct Body {
        status: String,
    }
    let admin_error = |status, message: String| {
        Reply::json(status, &serde_json::json!({ "error": message })).into_response()
    };
    let body: Body = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"status\": \"...\"}}: {e}"),
            )
        }
    };
    if !sim.api.statuses().contains(&body.status.as_str()) {
        let known = sim.api.statuses().join(", ");
        let message = format!(
            "{} cannot represent status '{}' (known: {known})",
            sim.config.kind, body.status
        );
        return admin_error(StatusCode::BAD_REQUEST, message);
    }
    match sim.set_user_status(&id, &body.status) {
        Some(user) => Reply::ok(&user).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, format!("no user with id '{id}'")),
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers the kinds share.

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2024-05-01T12:00:00Z` for unix seconds, without a date crate.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// A stable hash (FNV-1a) for deriving per-account details (avatars, roles) deterministically.
fn hash(text: &str, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Deterministically true for about one account in `n` (per `salt`).
fn one_in(n: u64, id: &str, salt: u64) -> bool {
    hash(id, salt).is_multiple_of(n)
}

/// A random version-4 uuid.
fn uuid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A query parameter that must be a non-negative integer, or its default when absent.
fn count_param(req: &ApiRequest, name: &str, default: usize) -> Result<usize, String> {
    match req.query_param(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            format!("query parameter '{name}' must be a non-negative integer, got '{v}'")
        }),
    }
}

/// The index range of one page.
fn page_range(total: usize, offset: usize, limit: usize) -> std::ops::Range<usize> {
    let start = offset.min(total);
    start..start.saturating_add(limit).min(total)
}

/// First and last name for display, from an account name like `anna.schmidt2@example.com`.
fn display_names(name: &str) -> (String, String) {
    let local = name.split('@').next().unwrap_or(name);
    let mut parts = local
        .split(['.', '_', '-'])
        .map(|p| p.trim_end_matches(|c: char| c.is_ascii_digit()))
        .filter(|p| !p.is_empty())
        .map(capitalize);
    let first = parts.next().unwrap_or_else(|| local.to_string());
    let last = parts.collect::<Vec<_>>().join(" ");
    (first, last)
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The account's email: the name itself when it is one, else `<name>@example.com`.
fn email_of(name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@example.com")
    }
}

/// Helpers the tests of every kind share.
#[cfg(test)]
mod test_support {
    use super::*;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

    pub(super) fn user(id: &str, name: &str, status: &str) -> SimUser {
        SimUser {
            id: id.to_string(),
            name: name.to_string(),
            status: status.to_string(),
            privileged: false,
            version: 1,
        }
    }

    pub(super) async fn start(kind: SimKind, users: Vec<SimUser>) -> Simulator {
        Simulator::start(SimConfig::new(kind, users))
            .await
            .expect("start simulator")
    }

    /// One path segment, percent-encoded the way a careful client does it.
    pub(super) fn encode(id: &str) -> String {
        utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
    }

    pub(super) fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{encode, http, start, user};
    use super::*;
    use serde_json::{json, Value};

    fn status_api_get(sim: &Simulator, path: &str) -> reqwest::RequestBuilder {
        http()
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth("sim-token")
            .header("X-API-Version", "v1")
    }

    fn status_api_patch(sim: &Simulator, id: &str, status: &str) -> reqwest::RequestBuilder {
        http()
            .patch(format!("{}/users/{}", sim.base_url(), encode(id)))
            .bearer_auth("sim-token")
            .header("X-API-Version", "v1")
            .json(&json!({ "status": status }))
    }

    async fn with_faults(faults: Faults) -> Simulator {
        let mut config = SimConfig::new(SimKind::StatusApi, vec![user("u1", "anna", "active")]);
        config.faults = faults;
        Simulator::start(config).await.expect("start")
    }

    fn rule(target: FaultTarget, times: u32, action: FaultAction) -> FaultRule {
        FaultRule {
            target,
            times,
            action,
        }
    }

    fn statuses(sim: &Simulator) -> Vec<u16> {
        sim.requests().iter().map(|r| r.status).collect()
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in SimKind::ALL {
            assert_eq!(SimKind::parse(kind.name()), Some(kind));
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert_eq!(SimKind::parse("okta"), None);
    }

    #[test]
    fn sim_user_defaults_when_deserialized() {
        let u: SimUser =
            serde_json::from_str(r#"{"id":"1","name":"a","status":"active"}"#).expect("user");
        assert_eq!((u.privileged, u.version), (false, 1));
    }

    #[test]
    fn helpers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(
            display_names("anna.van-dyke2@example.com"),
            ("Anna".to_string(), "Van Dyke".to_string())
        );
        assert_eq!(display_names("root"), ("Root".to_string(), String::new()));
        assert_eq!(page_range(200, 200, 100), 200..200);
        assert_eq!(page_range(150, 100, 100), 100..150);
    }

    #[tokio::test]
    async fn status_fault_with_retry_after_then_success() {
        let retry = FaultAction::Status {
            code: 429,
            retry_after: Some("2".to_string()),
        };
        let sim = with_faults(Faults {
            latency: Duration::ZERO,
            rules: vec![rule(FaultTarget::Reads, 2, retry)],
        })
        .await;
        for _ in 0..2 {
            let resp = status_api_get(&sim, "/users").send().await.expect("send");
            assert_eq!(resp.status(), 429);
            let retry_after = resp.headers().get("retry-after").cloned();
            assert_eq!(
                retry_after.as_ref().and_then(|v| v.to_str().ok()),
                Some("2")
            );
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        let resp = status_api_get(&sim, "/users").send().await.expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(statuses(&sim), [429, 429, 200]);
        assert_eq!(sim.read_count(), 3);
    }

    #[tokio::test]
    async fn times_zero_is_forever_and_targets_are_respected() {
        let unavailable = FaultAction::Status {
            code: 503,
            retry_after: None,
        };
        let sim = with_faults(Faults {
            latency: Duration::ZERO,
            rules: vec![rule(FaultTarget::Writes, 0, unavailable)],
        })
        .await;
        for _ in 0..3 {
            let resp = status_api_patch(&sim, "u1", "inactive").send().await;
            let resp = resp.expect("send");
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().get("retry-after").is_none());
        }
        let read = status_api_get(&sim, "/users/u1")
            .send()
            .await
            .expect("send");
        assert_eq!(read.status(), 200);
        assert_eq!(sim.user("u1").map(|u| u.status), Some("active".into()));
        assert_eq!((sim.write_count(), sim.read_count()), (3, 1));

        sim.set_faults(Faults::default());
        let resp = status_api_patch(&sim, "u1", "inactive").send().await;
        assert_eq!(resp.expect("send").status(), 200);
    }

    #[tokio::test]
    async fn dropped_connection_gets_no_answer() {
        let sim = with_faults(Faults {
            latency: Duration::ZERO,
            rules: vec![rule(FaultTarget::Any, 1, FaultAction::Drop)],
        })
        .await;
        let dropped = status_api_get(&sim, "/users").send().await;
        assert!(dropped.is_err(), "expected a transport error: {dropped:?}");
        let resp = status_api_get(&sim, "/users").send().await.expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(statuses(&sim), [0, 200]);
    }

    #[tokio::test]
    async fn latency_and_delay_stack() {
        let sim = with_faults(Faults {
            latency: Duration::from_millis(20),
            rules: vec![rule(
                FaultTarget::Reads,
                1,
                FaultAction::Delay(Duration::from_millis(300)),
            )],
        })
        .await;
        let started = Instant::now();
        status_api_get(&sim, "/users").send().await.expect("send");
        assert!(started.elapsed() >= Duration::from_millis(320));
        let started = Instant::now();
        status_api_get(&sim, "/users").send().await.expect("send");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(20) && elapsed < Duration::from_millis(300));
    }

    #[tokio::test]
    async fn max_in_flight_writes_counts_during_latency() {
        let users = (0..5).map(|i| user(&format!("u{i}"), &format!("n{i}"), "active"));
        let mut config = SimConfig::new(SimKind::StatusApi, users.collect());
        config.faults.latency = Duration::from_millis(300);
        let sim = Simulator::start(config).await.expect("start");
        let writes: Vec<_> = (0..5)
            .map(|i| tokio::spawn(status_api_patch(&sim, &format!("u{i}"), "inactive").send()))
            .collect();
        for write in writes {
            let resp = write.await.expect("join").expect("send");
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(sim.max_in_flight_writes(), 5);
        assert_eq!(sim.write_count(), 5);
        status_api_get(&sim, "/users").send().await.expect("send");
        assert_eq!(sim.max_in_flight_writes(), 5, "reads are not writes");
        sim.clear_requests();
        assert_eq!((sim.max_in_flight_writes(), sim.write_count()), (0, 0));
        assert!(sim.requests().is_empty());
    }

    #[tokio::test]
    async fn request_log_never_holds_the_secret() {
        let secret = "s3cr3t-value";
        let mut config = SimConfig::new(SimKind::StatusApi, vec![user("u1", "anna", "active")]);
        config.token = secret.to_string();
        let sim = Simulator::start(config).await.expect("start");
        let url = format!("{}/users/u1?access_token={secret}&x=1", sim.base_url());
        let resp = http()
            .patch(url)
            .bearer_auth(secret)
            .header("X-API-Version", "v1")
            .header("X-Api-Key", secret)
            .json(
                &json!({ "status": "inactive", "password": secret, "note": format!("t={secret}") }),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let logged = &sim.requests()[0];
        let text = serde_json::to_string(&sim.requests()).expect("json");
        assert!(!text.contains(secret), "{text}");
        assert_eq!(
            logged.headers.get("authorization").map(String::as_str),
            Some("Bearer ***")
        );
        assert_eq!(
            logged.headers.get("x-api-version").map(String::as_str),
            Some("v1")
        );
        assert_eq!(logged.query.as_deref(), Some("access_token=***&x=1"));
        assert_eq!(logged.method, "PATCH");
        assert_eq!(logged.path, "/users/u1");
        assert!(logged.is_write);
        let body = logged.body.clone().unwrap_or_default();
        assert_eq!(body["status"], "inactive");
        assert_eq!(body["password"], "***");
    }

    #[tokio::test]
    async fn admin_endpoints_drive_a_standalone_simulator_unrecorded() {
        let sim = start(SimKind::StatusApi, vec![user("a/b", "anna", "active")]).await;
        status_api_get(&sim, "/users").send().await.expect("send");
        let base = sim.base_url();
        let stats: Value = http()
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(
            stats,
            json!({"reads": 1, "writes": 0, "token_requests": 0, "max_in_flight_writes": 0})
        );

        let url = format!("{base}/_sim/users/{}/status", encode("a/b"));
        let resp = http()
            .put(&url)
            .json(&json!({"status": "suspended"}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            sim.user("a/b").map(|u| (u.status, u.version)),
            Some(("suspended".into(), 2))
        );
        let bad = http()
            .put(&url)
            .json(&json!({"status": "bogus"}))
            .send()
            .await
            .expect("send");
        assert_eq!(bad.status(), 400);
        let garbage = http().put(&url).body("{").send().await.expect("send");
        assert_eq!(garbage.status(), 400);
        let missing = http()
            .put(format!("{base}/_sim/users/zz/status"))
            .json(&json!({"status": "active"}));
        assert_eq!(missing.send().await.expect("send").status(), 404);

        let users: Vec<SimUser> = http()
            .get(format!("{base}/_sim/users"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(users, sim.users());
        let log: Vec<RecordedRequest> = http()
            .get(format!("{base}/_sim/requests"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(log, sim.requests());
        assert_eq!(log.len(), 1, "admin calls are not recorded");
        let cleared = http()
            .delete(format!("{base}/_sim/requests"))
            .send()
            .await
            .expect("send");
        assert_eq!(cleared.status(), 204);
        assert!(sim.requests().is_empty());
        assert_eq!(sim.read_count(), 0);
    }

    #[tokio::test]
    async fn drift_by_hand_is_not_a_request() {
        let sim = start(SimKind::Atlan, vec![user("u1", "anna", "active")]).await;
        assert!(sim.set_user_status("u1", "unknown"));
        assert!(
            !sim.set_user_status("u1", "suspended"),
            "atlan has no suspended"
        );
        assert!(!sim.set_user_status("nobody", "active"));
        assert_eq!(sim.user("u1").map(|u| u.status), Some("unknown".into()));
        assert!(sim.requests().is_empty());
    }

    #[tokio::test]
    async fn every_kind_rejects_missing_auth_and_unknown_routes() {
        for kind in SimKind::ALL {
            let sim = start(kind, vec![user("1", "anna", "active")]).await;
            let list = match kind {
                SimKind::StatusApi => "/users",
                SimKind::SuspendApi => "/v1/users",
                SimKind::Atlan => "/api/service/users",
                SimKind::Zitadel => "/resources/v3alpha/users/1",
                SimKind::Acronis => "/api/2/users/1",
            };
            let resp = http()
                .get(format!("{}{list}", sim.base_url()))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 401, "{kind}");
            let body: Value = resp.json().await.expect("json error body");
            assert!(body.is_object(), "{kind}: {body}");
            let resp = http()
                .delete(format!("{}/nowhere", sim.base_url()))
                .bearer_auth("sim-token");
            let resp = resp
                .header("X-API-Version", "v1")
                .send()
                .await
                .expect("send");
            assert!(
                matches!(resp.status().as_u16(), 401 | 403 | 404),
                "{kind}: {}",
                resp.status()
            );
            assert!(sim
                .requests()
                .iter()
                .all(|r| !r.headers.values().any(|v| v.contains("sim-token"))));
            assert_eq!(
                sim.write_count(),
                1,
                "{kind}: a misrouted DELETE counts as a write attempt"
            );
            sim.shutdown().await;
        }
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let sim = start(SimKind::StatusApi, vec![]).await;
        let base = sim.base_url();
        let pooled = http();
        let resp = pooled.get(format!("{base}/_sim/stats")).send().await;
        assert_eq!(resp.expect("send").status(), 200);
        let started = Instant::now();
        sim.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "idle keep-alive connections close"
        );
        assert!(http()
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .is_err());
    }

    #[tokio::test]
    async fn serve_forever_serves_until_dropped() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let config = SimConfig::new(SimKind::Atlan, vec![user("u1", "anna", "active")]);
        let server = tokio::spawn(serve_forever(config, addr));
        let url = format!("http://{addr}/_sim/users");
        let mut users = None;
        for _ in 0..100 {
            if let Ok(resp) = http().get(&url).send().await {
                users = resp.json::<Vec<SimUser>>().await.ok();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(users.map(|u| u.len()), Some(1));
        server.abort();
    }
}
