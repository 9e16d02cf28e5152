//! The provider seam: one small trait every provider kind implements, the registry of
//! kinds, and the shared HTTP layer they all use.
//!
//! An adapter answers two questions and nothing else: "what is the status of these
//! accounts?" (batched) and "set this account to that status" (one write, with the
//! kind's quirks handled inside). Diffing, guards, reporting and scheduling live once,
//! outside the adapters.

pub mod acronis;
pub mod atlan;
pub mod http;
pub mod key_index;
pub mod scim;
pub mod status_api;
pub mod suspend_api;
pub mod zitadel;

use crate::desired::{AuthConfig, InstanceConfig, SecretSource};
use crate::secret::Secret;
use crate::status::Status;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use crate::model::{
    AccountObservation, AuthStyle, Change, HeldAccount, Inventory, KindSpec, Observation,
    ObservedAccount, Refusal, RefusalScope, Setting, WriteOutcome,
};
pub use http::{HttpClient, HttpError, RequestObserver, WriteAccess};

/// A provider kind: the data that describes it and the function that builds its adapter.
pub struct Kind {
    pub spec: KindSpec,
    pub connect: fn(Connect) -> Result<Arc<dyn Provider>, ConnectError>,
}

/// Every provider kind Roster speaks. Adding a kind means one adapter file and one line here.
pub fn kinds() -> &'static [&'static Kind] {
    static KINDS: &[&Kind] = &[
        &atlan::KIND,
        &zitadel::KIND,
        &acronis::KIND,
        &status_api::KIND,
        &suspend_api::KIND,
        &scim::KIND,
    ];
    KINDS
}

/// The descriptions of every kind, as the loader takes them.
pub fn specs() -> &'static [&'static KindSpec] {
    static SPECS: std::sync::OnceLock<Vec<&'static KindSpec>> = std::sync::OnceLock::new();
    SPECS.get_or_init(|| kinds().iter().map(|k| &k.spec).collect())
}

/// Looks a kind up by the name used in `providers.yaml`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    kinds().iter().copied().find(|k| k.spec.name == name)
}

/// One entry of a provider's list, under one of the keys an account may be named by.
pub struct Listed {
    /// The id (or other key, such as status-api's `identifier`) a desired account may use.
    pub key: String,
    /// Which record of the list this is (its position), so that one record listed under
    /// two keys that happen to be equal is not mistaken for two records.
    pub record: usize,
    /// How the record names itself in a message: `user 7c6d...`.
    pub label: String,
    /// Which field `key` came from: `id`, `identifier`.
    pub field: &'static str,
    pub account: ObservedAccount,
}

impl Listed {
    /// A record listed by its id only.
    pub fn by_id(record: usize, id: String, account: ObservedAccount) -> Self {
        Listed {
            label: format!("user {id}"),
            key: id,
            record,
            field: "id",
            account,
        }
    }
}

impl Observation {
    /// Builds the observation of `accounts` from everything a provider listed; listed
    /// accounts nobody asked for are dropped. A key that two different records carry
    /// (one id listed twice, or status-api's id of one user that is another's identifier)
    /// is ambiguous: that account becomes a [`AccountObservation::Failed`] that says so,
    /// whatever the statuses, so Roster never picks one and never writes to it.
    pub fn of_listed(accounts: &[String], listed: impl IntoIterator<Item = Listed>) -> Self {
        let wanted: HashSet<&str> = accounts.iter().map(String::as_str).collect();
        // One slot per wanted key, sized up front: a listing of 100,000 users builds one
        // table, with no list per key; only a key that two records carry (rare, and an
        // error) keeps its entries for the message.
        let mut found: HashMap<String, Slot> = HashMap::with_capacity(wanted.len());
        for mut entry in listed {
            if !wanted.contains(entry.key.as_str()) {
                continue;
            }
            match found.get_mut(entry.key.as_str()) {
                Some(slot) => slot.add(entry),
                None => {
                    let key = std::mem::take(&mut entry.key);
                    found.insert(key, Slot::One(entry));
                }
            }
        }
        let mut observed = HashMap::with_capacity(found.len());
        for (key, slot) in found {
            let observation = match slot {
                Slot::One(entry) => AccountObservation::Found(entry.account),
                Slot::Many(entries) => AccountObservation::Failed(ambiguity(&key, &entries)),
            };
            observed.insert(key, observation);
        }
        Observation { accounts: observed }
    }
}

/// What [`Observation::of_listed`] holds for one key while it reads a listing.
enum Slot {
    One(Listed),
    /// Two or more different records carry the key.
    Many(Vec<Listed>),
}

impl Slot {
    /// Adds a listed entry under the same key; the same record listed twice under it
    /// (an id equal to its own identifier) counts once.
    fn add(&mut self, entry: Listed) {
        match self {
            Slot::One(first) if first.record == entry.record => {}
            Slot::One(_) => {
                let previous = std::mem::replace(self, Slot::Many(Vec::with_capacity(2)));
                if let (Slot::One(first), Slot::Many(entries)) = (previous, &mut *self) {
                    entries.push(first);
                    entries.push(entry);
                }
            }
            Slot::Many(entries) => {
                if !entries.iter().any(|e| e.record == entry.record) {
                    entries.push(entry);
                }
            }
        }
    }
}

/// The message of an account whose key several listed records carry.
fn ambiguity(key: &str, entries: &[Listed]) -> String {
    let shown: Vec<String> = entries
        .iter()
        .take(4)
        .map(|e| format!("the {} of {} ({})", e.field, e.label, e.account.status))
        .collect();
    let more = entries.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "ambiguous: {key:?} is {}{more} at the provider; Roster will not pick one or change it until the provider's data is fixed",
        shown.join(" and ")
    )
}

/// The seam between the engine and one provider instance.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Reads the live status of `accounts` with batched list or search calls.
    async fn observe(&self, accounts: &[String]) -> Result<Observation, ProviderError>;

    /// How many requests [`observe_accounts`](Self::observe_accounts) makes for
    /// `accounts`, or `None` when this kind has no targeted read that means exactly what
    /// its listing means. The daemon compares it with what the last listing cost, to
    /// re-read only the accounts a folder change touched when that is cheaper.
    fn targeted_read_cost(&self, accounts: &[String]) -> Option<usize> {
        let _ = accounts;
        None
    }

    /// Reads the live status of just `accounts` with the kind's read-one or batch-read
    /// endpoint, for a pass that only needs them. Same answer as [`observe`](Self::observe)
    /// for these accounts: an account the provider does not know (404) is absent, as one
    /// missing from the listing is. A kind without such an endpoint keeps this default.
    async fn observe_accounts(&self, accounts: &[String]) -> Result<Observation, ProviderError> {
        self.observe(accounts).await
    }

    /// What this adapter's last full listing said about the keys accounts are named by
    /// (see [`key_index`]), for kinds whose targeted read depends on it. The daemon hands
    /// it to the adapter a reload connects for the same instance configuration, so a
    /// folder change does not cost a listing merely because the folder was reloaded.
    fn listing_memory(&self) -> Option<Arc<key_index::KeyIndex>> {
        None
    }

    /// Takes over `memory` from the adapter this one replaces (see
    /// [`listing_memory`](Self::listing_memory)); kinds that keep none ignore it.
    fn recall_listing(&self, memory: Arc<key_index::KeyIndex>) {
        let _ = memory;
    }

    /// Moves one account to `change.to`. Needs a [`WriteAccess`], which only the apply
    /// executor can create: `plan` has no code path that reaches this method.
    async fn set_status(
        &self,
        access: &WriteAccess,
        change: &Change,
    ) -> Result<WriteOutcome, ProviderError>;

    /// Lists every account the instance holds, with the identity fields its API gives,
    /// for `status --unmanaged` and `import`. A kind whose API cannot list everything
    /// keeps this default and says so.
    async fn inventory(&self) -> Result<Inventory, ProviderError> {
        Ok(Inventory::CannotList {
            reason: "this kind cannot list all its accounts".to_string(),
        })
    }
}

/// A failure talking to a provider instance. Every variant carries the instance, but the
/// message leaves it out: plan and apply entries, the audit log and the daemon's log lines
/// all name the instance in a field of their own, and a message that repeated it would read
/// `x helpdesk  helpdesk: credentials rejected`. Use [`ProviderError::instance`] where the
/// instance must be named and no field does it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("credentials rejected (HTTP 401); check the token or client secret")]
    CredentialsRejected { instance: String },
    #[error("account {account} not found (HTTP 404)")]
    NotFound { instance: String, account: String },
    #[error("HTTP {status}: {message}")]
    Api {
        instance: String,
        status: u16,
        message: String,
    },
    #[error("response is missing or has an invalid field: {detail}")]
    InvalidResponse { instance: String, detail: String },
    #[error("the user list cannot be trusted, so this pass uses none of it: {detail}")]
    Listing { instance: String, detail: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl ProviderError {
    /// The instance this error happened at.
    pub fn instance(&self) -> &str {
        match self {
            ProviderError::CredentialsRejected { instance }
            | ProviderError::NotFound { instance, .. }
            | ProviderError::Api { instance, .. }
            | ProviderError::InvalidResponse { instance, .. }
            | ProviderError::Listing { instance, .. } => instance,
            ProviderError::Http(error) => error.instance(),
        }
    }

    /// The HTTP status behind this error, when an answer arrived.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ProviderError::CredentialsRejected { .. } => Some(401),
            ProviderError::NotFound { .. } => Some(404),
            ProviderError::Api { status, .. } => Some(*status),
            ProviderError::Http(HttpError::Unauthorized { .. }) => Some(401),
            _ => None,
        }
    }
}

/// Why a provider instance could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("provider '{instance}': environment variable {variable} is not set")]
    MissingEnv { instance: String, variable: String },
    #[error("provider '{instance}': cannot read secret file {path}: {reason}")]
    SecretFile {
        instance: String,
        path: String,
        reason: String,
    },
    #[error("provider '{instance}': secret in {source_name} is empty")]
    EmptySecret {
        instance: String,
        source_name: String,
    },
    #[error("provider '{instance}': {message}")]
    Invalid { instance: String, message: String },
}

/// Credentials read from the environment or files, ready for a kind to use.
pub enum ResolvedAuth {
    Bearer(Secret),
    ClientCredentials {
        client_id: Secret,
        client_secret: Secret,
    },
}

/// What a kind's `connect` function receives.
pub struct Connect<'a> {
    pub instance: &'a InstanceConfig,
    pub auth: ResolvedAuth,
    pub observer: Arc<dyn RequestObserver>,
}

/// Resolves an instance's secrets and builds its adapter. Fails early, naming the
/// instance and the variable or file, when a secret is missing.
pub fn connect(
    instance: &InstanceConfig,
    observer: Arc<dyn RequestObserver>,
) -> Result<Arc<dyn Provider>, ConnectError> {
    let auth = match &instance.auth {
        AuthConfig::Bearer(token) => ResolvedAuth::Bearer(read_secret(&instance.name, token)?),
        AuthConfig::ClientCredentials {
            client_id,
            client_secret,
        } => ResolvedAuth::ClientCredentials {
            client_id: read_secret(&instance.name, client_id)?,
            client_secret: read_secret(&instance.name, client_secret)?,
        },
    };
    let kind = kind(instance.kind.name).ok_or_else(|| ConnectError::Invalid {
        instance: instance.name.clone(),
        message: format!("no adapter speaks the kind '{}'", instance.kind.name),
    })?;
    (kind.connect)(Connect {
        instance,
        auth,
        observer,
    })
}

fn read_secret(instance: &str, source: &SecretSource) -> Result<Secret, ConnectError> {
    let value = match source {
        SecretSource::Env(variable) => {
            std::env::var(variable).map_err(|_| ConnectError::MissingEnv {
                instance: instance.to_string(),
                variable: variable.clone(),
            })?
        }
        SecretSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| ConnectError::SecretFile {
                instance: instance.to_string(),
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            })?
        }
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(ConnectError::EmptySecret {
            instance: instance.to_string(),
            source_name: source.to_string(),
        });
    }
    Ok(Secret::new(value))
}

impl Connect<'_> {
    /// Builds the instance's HTTP client from its settings in `providers.yaml`.
    pub fn http(
        &self,
        credentials: Arc<dyn http::Credentials>,
        headers: reqwest::header::HeaderMap,
        query: Vec<(String, String)>,
    ) -> Result<HttpClient, ConnectError> {
        HttpClient::new(http::HttpConfig {
            instance: self.instance.name.clone(),
            base_url: self.instance.base_url.clone(),
            timeout: self.instance.timeout,
            max_concurrency: self.instance.max_concurrency,
            requests_per_second: self.instance.requests_per_second,
            credentials,
            headers,
            query,
            retry: http::RetryPolicy::default(),
            observer: self.observer.clone(),
            ca_file: self.instance.ca_file.clone(),
        })
        .map_err(|e| ConnectError::Invalid {
            instance: self.instance.name.clone(),
            message: e.to_string(),
        })
    }

    /// A header value from a setting, rejecting characters a header cannot carry.
    pub fn header(&self, value: &str) -> Result<reqwest::header::HeaderValue, ConnectError> {
        reqwest::header::HeaderValue::from_str(value).map_err(|_| ConnectError::Invalid {
            instance: self.instance.name.clone(),
            message: format!("{value:?} cannot be sent as an HTTP header"),
        })
    }
}

impl ResolvedAuth {
    /// The bearer token of a [`AuthStyle::Bearer`] kind.
    pub fn bearer_ref(&self, instance: &str) -> Result<Secret, ConnectError> {
        match self {
            ResolvedAuth::Bearer(token) => Ok(token.clone()),
            ResolvedAuth::ClientCredentials { .. } => Err(ConnectError::Invalid {
                instance: instance.to_string(),
                message: "this kind takes a bearer token, not client credentials".into(),
            }),
        }
    }
}

/// Runs `f` over `items` with at most `limit` futures in flight, keeping input order in
/// the result. A new future starts as soon as any one finishes (not when the oldest does),
/// so one slow answer does not hold the others' slots. Callers pass the instance's
/// `max_concurrency`; the HTTP client holds the same limit for all of the instance's
/// requests together (reads and writes share it, first come first served), so this
/// bound only keeps the queue short and never waits on a permit of its own.
pub(crate) async fn bounded<T, F, Fut, R>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    // A loop rather than stream adapters: closures over the futures' types would be
    // inferred higher-ranked, and an adapter's `observe` would then not be provably `Send`.
    let mut queue = items.into_iter().map(f).enumerate();
    let mut running = FuturesUnordered::new();
    for (index, future) in queue.by_ref().take(limit.max(1)) {
        running.push(numbered(index, future));
    }
    let mut results = Vec::new();
    while let Some(done) = running.next().await {
        results.push(done);
        if let Some((index, future)) = queue.next() {
            running.push(numbered(index, future));
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// How many targeted reads of one instance are in flight at once.
const TARGETED_CONCURRENCY: usize = 8;

/// Reads `accounts` one request each through `read` (a kind's read-one call), a few at a
/// time: [`Provider::observe_accounts`] for kinds whose API reads one user by id. A 404
/// ([`ProviderError::NotFound`]) leaves the account out, exactly as absence from the
/// listing does; any other failure fails the whole read, as a failed list page does.
pub(crate) async fn observe_each<F, Fut>(
    accounts: &[String],
    read: F,
) -> Result<Observation, ProviderError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<ObservedAccount, ProviderError>>,
{
    let unique: Vec<String> = accounts
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    let reads = bounded(unique, TARGETED_CONCURRENCY, |id| {
        let read = read(id.clone());
        async move { (id, read.await) }
    })
    .await;
    let mut observation = Observation::default();
    for (id, read) in reads {
        match read {
            Ok(account) => {
                observation
                    .accounts
                    .insert(id, AccountObservation::Found(account));
            }
            Err(ProviderError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(observation)
}

/// `future`'s output with its position in the input, for [`bounded`].
async fn numbered<Fut: std::future::Future>(index: usize, future: Fut) -> (usize, Fut::Output) {
    (index, future.await)
}

/// The most list pages one pass reads from one instance (1,000,000 users at 100 a page).
/// A provider that reports a larger total, or whose cursor does not end by then, is an
/// instance error rather than a pass that never finishes.
pub const MAX_PAGES: usize = 10_000;

/// A fingerprint of a page's ids, to notice a server that ignores the offset or cursor
/// and serves the same page again.
pub(crate) fn page_fingerprint<'a>(ids: impl IntoIterator<Item = &'a str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for id in ids {
        id.hash(&mut hasher);
    }
    hasher.finish()
}

/// Reads an offset-paged list. The first page tells the total and the page length the
/// server grants; the remaining pages (at most [`MAX_PAGES`]) are then read with up to
/// `concurrency` (the instance's `max_concurrency`) in flight, each next page asked for
/// as soon as one arrives. `fetch(offset, limit)` returns one page's items and the total
/// it reports; `id` names an item. An exactly full last page costs no extra call.
///
/// The provider's numbers are checked, never trusted: a total needing more than
/// [`MAX_PAGES`] pages, a total that grows while the list is read, a page that repeats an
/// earlier one, and records after a short page (the list shifted, so some could be
/// missed) are instance errors. A total larger than the list (short or empty pages at
/// the end) just ends the list.
pub(crate) async fn offset_pages<T, F, Fut>(
    instance: &str,
    limit: usize,
    concurrency: usize,
    id: fn(&T) -> &str,
    fetch: F,
) -> Result<Vec<T>, ProviderError>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, u64), ProviderError>>,
{
    use futures::stream::{self, StreamExt};
    let listing = |detail: String| ProviderError::Listing {
        instance: instance.to_string(),
        detail,
    };
    let (mut items, total) = fetch(0, limit).await?;
    let granted = items.len();
    if granted == 0 || u64::try_from(granted).map_or(true, |g| g >= total) {
        return Ok(items);
    }
    let step = u64::try_from(granted).unwrap_or(u64::MAX);
    let more_pages = (total - step).div_ceil(step);
    if more_pages >= MAX_PAGES as u64 {
        return Err(listing(format!(
            "it reports {total} users, which would take {} pages of {granted}; Roster reads at most {MAX_PAGES} pages in a pass",
            more_pages.saturating_add(1)
        )));
    }
    let offsets: Vec<usize> = (1..=more_pages)
        .filter_map(|n| usize::try_from(n).ok()?.checked_mul(granted))
        .collect();
    let mut seen = HashMap::new();
    seen.insert(page_fingerprint(items.iter().map(id)), 0usize);
    let mut short_at: Option<usize> = None;
    let mut checked_after_short = 0;
    let mut pages = stream::iter(offsets.into_iter().map(|offset| {
        let page = fetch(offset, granted);
        async move { (offset, page.await) }
    }))
    .buffered(concurrency.max(1));
    while let Some((offset, page)) = pages.next().await {
        let (page, page_total) = page?;
        if page_total > total {
            return Err(listing(format!(
                "its total grew from {total} to {page_total} while the list was read (at offset {offset}); the next pass will try again"
            )));
        }
        if let Some(short) = short_at {
            if !page.is_empty() {
                return Err(listing(format!(
                    "the page at offset {short} was short but the page at offset {offset} has users: the list shifted while it was read, so some users could be missed"
                )));
            }
            // The list ended before the total said; check the pages already asked for,
            // then stop rather than read every page of an inflated total.
            checked_after_short += 1;
            if checked_after_short >= concurrency.max(1) {
                break;
            }
            continue;
        }
        if !page.is_empty() {
            if let Some(earlier) = seen.insert(page_fingerprint(page.iter().map(id)), offset) {
                return Err(listing(format!(
                    "the page at offset {offset} repeats the page at offset {earlier}: the provider ignores the offset"
                )));
            }
        }
        if page.len() < granted {
            short_at = Some(offset);
        }
        items.extend(page);
    }
    Ok(items)
}

/// Parses a provider's JSON answer. An error names the instance, what was being read and
/// the path of the offending field (`records[3].enabled: invalid type...`), so a broken
/// provider is easy to report.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    instance: &str,
    what: &str,
    body: &[u8],
) -> Result<T, ProviderError> {
    // The common case at full speed; only a body that fails is read again, tracking the
    // path of the field that failed for the message.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let invalid = |detail: String| ProviderError::InvalidResponse {
        instance: instance.to_string(),
        detail,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        invalid(if path == "." {
            format!("{what}: {inner}")
        } else {
            format!("{what}: field {path}: {inner}")
        })
    })?;
    deserializer
        .end()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    Ok(value)
}

/// An optional identity field (a login, an email) read leniently: a string that is not
/// blank is kept, anything else (absent, `null`, a number, an object) reads as `None`.
/// Identity fields only serve `inventory`; a provider that sends one in an odd shape
/// must not stop `observe` from reading statuses.
pub(crate) fn lenient_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let value = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(text_of(value.as_ref()))
}

/// The text of a JSON value when it is a string that is not blank.
pub(crate) fn text_of(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// Why a write found the account already in the desired state. When an earlier attempt
/// of this same call lost its answer, that attempt most likely made the change: saying
/// "someone else" would send an operator hunting for a person who does not exist.
pub(crate) fn already_note(
    to: &Status,
    earlier_attempt_unanswered: bool,
    otherwise: &str,
) -> String {
    if earlier_attempt_unanswered {
        format!("already {to}: an earlier attempt of this same call lost its answer and most likely applied it; the retry was told it was already done")
    } else {
        format!("already {to} {otherwise}")
    }
}

/// Turns a non-2xx answer into an error: 404 names the account, anything else carries
/// the provider's own message, extracted by `message` from the kind's error shape.
pub(crate) fn api_error(
    instance: &str,
    response: &http::ApiResponse,
    account: &str,
    message: impl FnOnce(&[u8]) -> Option<String>,
) -> ProviderError {
    let status = response.status.as_u16();
    if status == 404 {
        return ProviderError::NotFound {
            instance: instance.to_string(),
            account: account.to_string(),
        };
    }
    ProviderError::Api {
        instance: instance.to_string(),
        status,
        message: message(&response.body).unwrap_or_else(|| response.text_snippet()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A list of `len` users named `u0`, `u1`... served in pages, with the total `total`
    /// reported on every page (or `total_at(offset)` when given), counting fetches.
    struct FakeList {
        len: usize,
        total: fn(usize) -> u64,
        fetches: AtomicUsize,
    }

    impl FakeList {
        fn new(len: usize, total: fn(usize) -> u64) -> Self {
            FakeList {
                len,
                total,
                fetches: AtomicUsize::new(0),
            }
        }

        async fn page(
            &self,
            offset: usize,
            limit: usize,
        ) -> Result<(Vec<String>, u64), ProviderError> {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let end = offset.saturating_add(limit).min(self.len);
            let items = (offset.min(end)..end).map(|i| format!("u{i}")).collect();
            Ok((items, (self.total)(offset)))
        }
    }

    fn id(s: &String) -> &str {
        s
    }

    /// The `max_concurrency` these tests read with.
    const CONCURRENCY: usize = 8;

    async fn read(list: &FakeList, limit: usize) -> Result<Vec<String>, ProviderError> {
        offset_pages("x", limit, CONCURRENCY, id, |offset, limit| {
            list.page(offset, limit)
        })
        .await
    }

    #[tokio::test]
    async fn honest_totals_read_every_page_once() {
        let list = FakeList::new(250, |_| 250);
        let items = read(&list, 100).await.unwrap();
        assert_eq!(items.len(), 250);
        assert_eq!(list.fetches.load(Ordering::Relaxed), 3);
        let exact = FakeList::new(200, |_| 200);
        assert_eq!(read(&exact, 100).await.unwrap().len(), 200);
        assert_eq!(exact.fetches.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_huge_total_is_refused_before_reading_more() {
        let list = FakeList::new(100, |_| u64::MAX);
        let error = read(&list, 100).await.unwrap_err().to_string();
        assert!(error.contains("18446744073709551615 users"), "{error}");
        assert!(error.contains("at most 10000 pages"), "{error}");
        assert_eq!(list.fetches.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_inflated_total_ends_at_the_short_page_with_few_extra_reads() {
        // 150 users, but the total claims 900,000: the list ends at the short page.
        let list = FakeList::new(150, |_| 900_000);
        let items = read(&list, 100).await.unwrap();
        assert_eq!(items.len(), 150);
        assert!(list.fetches.load(Ordering::Relaxed) <= 2 + 2 * CONCURRENCY);
    }

    #[tokio::test]
    async fn a_growing_total_is_an_instance_error() {
        let list = FakeList::new(1000, |offset| 300 + offset as u64);
        let error = read(&list, 100).await.unwrap_err().to_string();
        assert!(error.contains("total grew from 300"), "{error}");
    }

    #[tokio::test]
    async fn a_page_that_ignores_the_offset_is_an_instance_error() {
        let fetch = |_offset: usize, _limit: usize| async {
            Ok::<_, ProviderError>((vec!["a".to_string(), "b".to_string()], 10))
        };
        let error = offset_pages("x", 2, CONCURRENCY, id, fetch)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("repeats the page at offset 0"), "{error}");
    }

    #[tokio::test]
    async fn records_after_a_short_page_are_an_instance_error() {
        let fetch = |offset: usize, _limit: usize| async move {
            let items = match offset {
                0 => vec!["a".to_string(), "b".to_string()],
                2 => vec!["c".to_string()],
                _ => vec![format!("z{offset}"), format!("y{offset}")],
            };
            Ok::<_, ProviderError>((items, 6))
        };
        let error = offset_pages("x", 2, CONCURRENCY, id, fetch)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("page at offset 2 was short"), "{error}");
    }

    /// Calls in flight now, and the most there were at once.
    #[derive(Default)]
    struct InFlight {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl InFlight {
        async fn during(&self, wait: std::time::Duration) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(wait).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn offset_pages_are_read_with_the_instances_concurrency() {
        for concurrency in [1, 3, 8, 16] {
            let flight = InFlight::default();
            let flight = &flight;
            let fetch = |offset: usize, limit: usize| async move {
                flight.during(std::time::Duration::from_millis(20)).await;
                let end = offset.saturating_add(limit).min(2000);
                let items = (offset.min(end)..end).map(|i| format!("u{i}")).collect();
                Ok::<_, ProviderError>((items, 2000))
            };
            let items = offset_pages("x", 100, concurrency, id, fetch)
                .await
                .unwrap();
            assert_eq!(items.len(), 2000);
            assert_eq!(
                flight.most.load(Ordering::SeqCst),
                concurrency,
                "19 pages after the first, {concurrency} at a time"
            );
        }
    }

    /// One slow call does not hold the other slots: with a limit of 2, every other call
    /// starts and ends while the first is still running (the first waits for the last to
    /// start), and the results keep input order. Reading in rounds, or holding a slot until
    /// the oldest call ends, would never start the third call: the test would time out.
    #[tokio::test]
    async fn bounded_starts_the_next_call_as_soon_as_any_one_finishes() {
        let last_started = tokio::sync::Notify::new();
        let last_started = &last_started;
        let run = bounded((0..6).collect(), 2, |i: u64| async move {
            match i {
                0 => last_started.notified().await,
                5 => last_started.notify_one(),
                _ => tokio::task::yield_now().await,
            }
            i * 10
        });
        let results = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("the quick calls went past the slow one");
        assert_eq!(results, vec![0, 10, 20, 30, 40, 50]);
        let flight = InFlight::default();
        let flight = &flight;
        bounded((0..20).collect(), 8, |_: u32| async move {
            flight.during(std::time::Duration::from_millis(20)).await;
        })
        .await;
        assert_eq!(flight.most.load(Ordering::SeqCst), 8);
    }

    fn account(status: &str) -> ObservedAccount {
        ObservedAccount::new(Status::new(status))
    }

    #[test]
    fn one_id_on_two_records_is_a_failed_entry_whatever_the_statuses() {
        for (first, second) in [("active", "inactive"), ("inactive", "inactive")] {
            let listed = vec![
                Listed::by_id(0, "a".into(), account(first)),
                Listed::by_id(1, "b".into(), account("active")),
                Listed::by_id(2, "a".into(), account(second)),
            ];
            let wanted = vec!["a".to_string(), "b".to_string()];
            let observation = Observation::of_listed(&wanted, listed);
            let Some(AccountObservation::Failed(message)) = observation.accounts.get("a") else {
                panic!(
                    "expected a failed entry: {:?}",
                    observation.accounts.get("a")
                );
            };
            assert!(
                message.starts_with("ambiguous: \"a\" is the id of user a ("),
                "{message}"
            );
            assert!(
                message.contains(&format!("({first})")) && message.contains(&format!("({second})")),
                "{message}"
            );
            assert_eq!(
                observation.accounts.get("b"),
                Some(&AccountObservation::Found(account("active")))
            );
        }
    }

    #[test]
    fn unwanted_duplicates_are_ignored_and_one_record_under_one_key_twice_is_found() {
        let listed = vec![
            Listed::by_id(0, "x".into(), account("active")),
            Listed::by_id(1, "x".into(), account("inactive")),
            Listed::by_id(2, "a".into(), account("active")),
            Listed {
                key: "a".into(),
                record: 2,
                label: "user a".into(),
                field: "identifier",
                account: account("active"),
            },
        ];
        let observation = Observation::of_listed(&["a".to_string()], listed);
        assert_eq!(observation.accounts.len(), 1);
        assert_eq!(
            observation.accounts.get("a"),
            Some(&AccountObservation::Found(account("active")))
        );
    }

    #[test]
    fn the_lost_reply_note_does_not_blame_someone_else() {
        let lost = already_note(&Status::inactive(), true, "(changed by someone else)");
        assert!(
            lost.contains("an earlier attempt of this same call"),
            "{lost}"
        );
        assert!(!lost.contains("someone else"), "{lost}");
        let raced = already_note(&Status::inactive(), false, "(changed by someone else)");
        assert_eq!(raced, "already inactive (changed by someone else)");
    }
}

/// Hostile list pages for the adapters' property tests: a valid page template whose
/// fields are dropped, replaced by huge, negative, fractional or stringly numbers, wrong
/// types or deep nesting, and whose arrays have records duplicated.
#[cfg(test)]
pub(crate) mod hostile {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Cases per adapter; each runs in well under a second in a debug build.
    pub const CASES: u32 = 400;

    fn deep(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, _| json!([inner]))
    }

    fn leaf() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(-1)),
            Just(json!(1e308)),
            Just(json!(2.5)),
            Just(json!("18446744073709551616000")),
            Just(json!("-5")),
            Just(json!("")),
            Just(json!("7")),
            Just(Value::Null),
            Just(json!(true)),
            Just(json!([])),
            Just(json!({})),
            Just(deep(40)),
            Just(json!("x".repeat(5000))),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(|n| Value::String(n.to_string())),
        ]
        .boxed()
    }

    /// Mutations of `template`, kept valid often enough that the happy path runs too.
    pub fn page(template: Value) -> BoxedStrategy<Value> {
        let structured = match template {
            Value::Object(map) => {
                let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = map
                    .into_iter()
                    .map(|(key, value)| {
                        prop_oneof![
                            12 => page(value).prop_map(move |v| Some((key.clone(), v))),
                            1 => Just(None),
                        ]
                        .boxed()
                    })
                    .collect();
                fields
                    .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
                    .boxed()
            }
            Value::Array(items) => {
                let items: Vec<BoxedStrategy<Value>> = items.into_iter().map(page).collect();
                (items, any::<bool>())
                    .prop_map(|(mut items, duplicate)| {
                        if duplicate {
                            items.extend(items.clone());
                        }
                        Value::Array(items)
                    })
                    .boxed()
            }
            other => Just(other).boxed(),
        };
        prop_oneof![8 => structured, 1 => leaf()].boxed()
    }

    /// Checks what every adapter promises about a page it could not parse: an error
    /// that carries the instance (its message leaves it to the caller), never a panic.
    pub fn assert_clear(error: &super::ProviderError) {
        let message = error.to_string();
        assert_eq!(error.instance(), "x", "{message}");
        assert!(!message.starts_with("x: "), "{message}");
        assert!(message.len() > 10, "{message}");
    }
}
