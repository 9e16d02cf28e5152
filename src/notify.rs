//! Webhook notifications from `roster run`: the events an operator must hear about.
//!
//! The daemon hands a [`Notification`] to a [`Notifier`], which only puts it in a bounded
//! queue and returns: a background task sends it, so a slow, failing or unreachable
//! receiver never delays or stops a reconcile pass. When the queue is full the oldest
//! notification is dropped (the newest says most about the state now), counted in
//! `roster_notifications_total{result="dropped"}` and logged once per overflow.
//!
//! Each notification is one JSON `POST` with a Slack-compatible body: `text` (escaped
//! with [`escape::slack`], so an untrusted name cannot mention `<!channel>` or make a
//! link) and the same facts as structured fields (see [`Notification`]). Every field is
//! always present; one that does not apply to the event is `null`, so a consumer can
//! rely on one schema.
//!
//! Sends are rate-limited by a token bucket ([`NotifyOptions::per_minute`], bursts of
//! the same size): events over the limit are not sent one by one but coalesced into a
//! single `events_coalesced` message ("and N more events") sent when the bucket has a
//! token again. A send is retried with exponential backoff and jitter after a network
//! error, a timeout, HTTP 429 (its `Retry-After` honoured) or 5xx; another 4xx is not
//! retried. The webhook URL is a [`Secret`]: it appears in no log line, error, `Debug`
//! output or metric (reqwest errors are stripped of it with `without_url`).

use crate::escape;
use crate::secret::Secret;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Consecutive failed passes after which an instance is reported as failing. One failed
/// pass is often a blip that the retry (about 5 s later) fixes; three in a row have
/// lasted half a minute or more and need a person.
pub const FAILING_AFTER: u32 = 3;

/// What happened. Serialized in snake_case: `drift_corrected`, `guard_refused`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A hand-made change at a provider was found and undone.
    DriftCorrected,
    /// The `max_changes` safety guard refused an instance's changes (once per episode).
    GuardRefused,
    /// The instance's passes are no longer refused.
    GuardRecovered,
    /// [`FAILING_AFTER`] passes in a row failed at an instance (once per episode).
    InstanceFailing,
    /// A pass read the instance again after it was reported failing.
    InstanceRecovered,
    /// The folder on disk is invalid (once per distinct set of problems).
    FolderInvalid,
    /// The folder loaded cleanly again.
    FolderRecovered,
    /// Events over the rate limit, counted in one message instead of sent one by one.
    EventsCoalesced,
}

/// One notification: the structured fields of the webhook body. Untrusted values are
/// kept raw here (JSON carries them exactly); only the Slack `text` escapes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub event: Event,
    /// The provider instance, for the events of one instance.
    pub provider: Option<String>,
    pub user: Option<String>,
    pub account_id: Option<String>,
    /// The status found at the provider (drift).
    pub from: Option<String>,
    /// The status Roster set (drift).
    pub to: Option<String>,
    /// What happened, in a sentence, without the other fields' values.
    pub message: String,
    /// The commit of the folder in force (or of the invalid folder), when it is a git
    /// checkout.
    pub git_commit: Option<String>,
}

impl Notification {
    fn new(
        event: Event,
        provider: Option<&str>,
        message: String,
        git_commit: Option<&str>,
    ) -> Self {
        Notification {
            event,
            provider: provider.map(str::to_string),
            user: None,
            account_id: None,
            from: None,
            to: None,
            message,
            git_commit: git_commit.map(str::to_string),
        }
    }

    /// A write at `provider` set `account_id` of `user` back from `from` (set by hand at
    /// the provider) to `to`.
    pub fn drift_corrected(
        provider: &str,
        user: &str,
        account_id: &str,
        from: &str,
        to: &str,
        git_commit: Option<&str>,
    ) -> Self {
        Notification {
            user: Some(user.to_string()),
            account_id: Some(account_id.to_string()),
            from: Some(from.to_string()),
            to: Some(to.to_string()),
            ..Self::new(
                Event::DriftCorrected,
                Some(provider),
                "the account was changed at the provider by hand; Roster set it back".into(),
                git_commit,
            )
        }
    }

    /// The guard refused `changes` changes at `provider`, over its limit `limit`.
    pub fn guard_refused(
        provider: &str,
        changes: usize,
        limit: usize,
        git_commit: Option<&str>,
    ) -> Self {
        Self::new(
            Event::GuardRefused,
            Some(provider),
            format!(
                "the safety guard refused {changes} changes (max_changes {limit}); none are made \
                 until the folder changes for this instance or a person runs \
                 `roster apply --allow-mass-change`"
            ),
            git_commit,
        )
    }

    fn guard_recovered(provider: &str, git_commit: Option<&str>) -> Self {
        Self::new(
            Event::GuardRecovered,
            Some(provider),
            "the safety guard no longer refuses this instance's changes".into(),
            git_commit,
        )
    }

    fn instance_failing(
        provider: &str,
        failures: u32,
        error: Option<&str>,
        git_commit: Option<&str>,
    ) -> Self {
        let mut message = format!("the last {failures} passes failed");
        if let Some(error) = error {
            message.push_str(": ");
            message.push_str(error);
        }
        Self::new(Event::InstanceFailing, Some(provider), message, git_commit)
    }

    fn instance_recovered(provider: &str, git_commit: Option<&str>) -> Self {
        Self::new(
            Event::InstanceRecovered,
            Some(provider),
            "a pass read the instance again after failing passes".into(),
            git_commit,
        )
    }

    /// The folder on disk is invalid with these problems; the last good one stays in force.
    pub fn folder_invalid(problems: &[String], git_commit: Option<&str>) -> Self {
        const SHOWN: usize = 5;
        let mut message = format!(
            "the desired-state folder is invalid ({} problem{}); the last good folder stays in force: {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ")
        );
        if problems.len() > SHOWN {
            message.push_str(&format!("; and {} more", problems.len() - SHOWN));
        }
        Self::new(Event::FolderInvalid, None, message, git_commit)
    }

    /// The folder loaded cleanly again.
    pub fn folder_recovered(git_commit: Option<&str>) -> Self {
        Self::new(
            Event::FolderRecovered,
            None,
            "the desired-state folder is valid again and in force".into(),
            git_commit,
        )
    }

    fn coalesced(count: u64, per_minute: u32) -> Self {
        Self::new(
            Event::EventsCoalesced,
            None,
            format!(
                "and {count} more event{} not sent one by one (rate limit: {per_minute} per \
                 minute); see the daemon's log",
                if count == 1 { "" } else { "s" }
            ),
            None,
        )
    }

    /// The Slack `text`: one line, every value from a file or a provider escaped.
    pub fn text(&self) -> String {
        let field = |value: &Option<String>| escape::slack(value.as_deref().unwrap_or("?"));
        let headline = match self.event {
            Event::DriftCorrected => format!(
                "Roster corrected drift at {}: {} (account {}) was {}, set back to {}",
                field(&self.provider),
                field(&self.user),
                field(&self.account_id),
                field(&self.from),
                field(&self.to)
            ),
            Event::GuardRefused => format!(
                "Roster: safety guard refused changes at {}",
                field(&self.provider)
            ),
            Event::GuardRecovered => format!(
                "Roster: safety guard no longer refuses changes at {}",
                field(&self.provider)
            ),
            Event::InstanceFailing => format!("Roster: {} is failing", field(&self.provider)),
            Event::InstanceRecovered => format!("Roster: {} recovered", field(&self.provider)),
            Event::FolderInvalid => "Roster: the desired-state folder is invalid".to_string(),
            Event::FolderRecovered => "Roster: the desired-state folder is valid again".to_string(),
            Event::EventsCoalesced => "Roster: rate limit reached".to_string(),
        };
        let mut text = format!("{headline}: {}", escape::slack(&self.message));
        if let Some(commit) = &self.git_commit {
            text.push_str(&format!(" (commit {})", escape::slack(commit)));
        }
        text
    }

    /// The webhook body: `text` and the structured fields, as JSON that is safe to print.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            text: String,
            #[serde(flatten)]
            fields: &'a Notification,
        }
        let body = Body {
            text: self.text(),
            fields: self,
        };
        // Serializing plain strings and options cannot fail; an empty object is never sent.
        let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string());
        escape::json_safe(&json).into_owned()
    }
}

/// How a pass ended, as the episode tracker needs it.
#[derive(Clone, Copy, Debug)]
pub enum PassEnd<'a> {
    /// Everything read and every needed write made.
    Success,
    /// The pass failed; `failures` passes in a row so far, `error` the first reason.
    Failed {
        failures: u32,
        error: Option<&'a str>,
    },
    /// The safety guard refused `changes` over `limit`.
    Refused { changes: usize, limit: usize },
    /// Shutdown interrupted it: says nothing about the instance.
    Interrupted,
}

/// Per instance, which alerts are open, so each episode (a refusal, a failing streak) is
/// reported once when it starts and once when it ends, never on every pass.
#[derive(Debug, Default)]
pub struct Episodes {
    guard_refused: bool,
    failing: bool,
}

impl Episodes {
    /// The notifications a pass of `provider` that ended so calls for.
    pub fn after_pass(
        &mut self,
        provider: &str,
        end: PassEnd<'_>,
        git_commit: Option<&str>,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        let read_fine = matches!(end, PassEnd::Success | PassEnd::Refused { .. });
        if read_fine && self.failing {
            self.failing = false;
            out.push(Notification::instance_recovered(provider, git_commit));
        }
        match end {
            PassEnd::Success if self.guard_refused => {
                self.guard_refused = false;
                out.push(Notification::guard_recovered(provider, git_commit));
            }
            PassEnd::Refused { changes, limit } if !self.guard_refused => {
                self.guard_refused = true;
                out.push(Notification::guard_refused(
                    provider, changes, limit, git_commit,
                ));
            }
            PassEnd::Failed { failures, error } if failures >= FAILING_AFTER && !self.failing => {
                self.failing = true;
                out.push(Notification::instance_failing(
                    provider, failures, error, git_commit,
                ));
            }
            _ => {}
        }
        out
    }
}

/// Labels of `roster_notifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// sent; failed (every attempt failed, or a 4xx); dropped (queue full); coalesced
    /// (over the rate limit, counted into an `events_coalesced` message).
    pub result: String,
}

/// The counter family the daemon registers as `roster_notifications_total`.
pub type NotificationCounts = Family<NotificationLabels, Counter>;

/// Limits of the sender. The defaults suit a chat channel.
#[derive(Clone, Debug)]
pub struct NotifyOptions {
    /// Notifications waiting to be sent; beyond it the oldest is dropped.
    pub queue: usize,
    /// Sends per minute, and the burst allowed at once.
    pub per_minute: u32,
    /// Attempts per notification, the first one included.
    pub attempts: u32,
    /// The first retry's delay; doubled each attempt, with jitter.
    pub backoff: Duration,
    /// The longest wait before a retry, `Retry-After` included.
    pub max_backoff: Duration,
    /// One attempt's limit, connect to end of the response headers.
    pub timeout: Duration,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            queue: 100,
            per_minute: 20,
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why notifications cannot start. No variant holds the URL: it is a secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("--notify-webhook (or ROSTER_NOTIFY_WEBHOOK) is empty; give the webhook URL, or leave it unset")]
    Empty,
    #[error(
        "--notify-webhook is not a valid URL ({0}); the value is not shown because it is a secret"
    )]
    InvalidUrl(url::ParseError),
    #[error(
        "--notify-webhook must use https:// (plain http only for a loopback host); the value is \
         not shown because it is a secret"
    )]
    Insecure,
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Checks the webhook URL: `https://`, or `http://` to a loopback host (like `base_url`).
pub fn check_url(url: &Secret) -> Result<(), NotifyError> {
    if url.expose().trim().is_empty() {
        return Err(NotifyError::Empty);
    }
    let parsed = url::Url::parse(url.expose()).map_err(NotifyError::InvalidUrl)?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(NotifyError::Insecure),
    }
}

struct Shared {
    queue: Mutex<VecDeque<Notification>>,
    capacity: usize,
    wake: Notify,
    closed: CancellationToken,
    /// Set while the queue overflows, so an overflow is logged once, not per drop.
    overflowing: AtomicBool,
    counts: NotificationCounts,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn count(&self, result: &str) {
        self.counts
            .get_or_create(&NotificationLabels {
                result: result.into(),
            })
            .inc();
    }

    fn pop(&self) -> Option<Notification> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }

    /// The next notification; `None` once closed and empty.
    async fn next(&self) -> Option<Notification> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(notification) = self.pop() {
                return Some(notification);
            }
            if self.closed.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => {}
            }
        }
    }
}

/// Sends notifications in the background. Cloning shares the queue; a disabled notifier
/// (no `--notify-webhook`) accepts and discards everything.
#[derive(Clone, Default)]
pub struct Notifier {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.shared.is_some() {
            "Notifier(webhook ***)"
        } else {
            "Notifier(off)"
        })
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Checks `url` and starts the background sender on the current tokio runtime.
    pub fn start(
        url: Secret,
        options: NotifyOptions,
        counts: NotificationCounts,
    ) -> Result<Self, NotifyError> {
        check_url(&url)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            // A redirect could carry the body elsewhere; webhooks answer directly.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(describe(&e.without_url())))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            capacity: options.queue.max(1),
            wake: Notify::new(),
            closed: CancellationToken::new(),
            overflowing: AtomicBool::new(false),
            counts,
            task: Mutex::new(None),
        });
        let sender = Sender {
            shared: shared.clone(),
            client,
            url,
            options,
        };
        let task = tokio::spawn(sender.run());
        *shared.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(Notifier {
            shared: Some(shared),
        })
    }

    /// Queues `notification` and returns at once; never waits for the network.
    pub fn notify(&self, notification: Notification) {
        let Some(shared) = &self.shared else { return };
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = if queue.len() >= shared.capacity {
            queue.pop_front()
        } else {
            None
        };
        queue.push_back(notification);
        drop(queue);
        match dropped {
            Some(old) => {
                shared.count("dropped");
                if !shared.overflowing.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        event = ?old.event,
                        queue = shared.capacity,
                        "notification queue full (the webhook is slow or down); dropping the oldest notifications, counted in roster_notifications_total{{result=\"dropped\"}}"
                    );
                }
            }
            None => shared.overflowing.store(false, Ordering::SeqCst),
        }
        shared.wake.notify_one();
    }

    /// At shutdown: sends what is queued (over the rate limit, as one summary), waiting
    /// at most `within`; then gives up on the rest.
    pub async fn close(&self, within: Duration) {
        let Some(shared) = &self.shared else { return };
        shared.closed.cancel();
        let task = shared.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(within, &mut task).await.is_err() {
                task.abort();
                tracing::warn!("notifications still queued at shutdown were not sent");
            }
        }
    }
}

/// A token bucket: `capacity` tokens, refilled evenly over a minute.
struct Bucket {
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Bucket {
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.capacity / 60.0).min(self.capacity);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) * 60.0 / self.capacity,
            ))
        }
    }
}

/// The background task: takes notifications off the queue and delivers them.
struct Sender {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: Secret,
    options: NotifyOptions,
}

impl Sender {
    async fn run(self) {
        let mut bucket = Bucket::new(self.options.per_minute, Instant::now());
        while let Some(notification) = self.shared.next().await {
            let wait = match bucket.take(Instant::now()) {
                Ok(()) => {
                    self.deliver(&notification).await;
                    continue;
                }
                Err(wait) => wait,
            };
            // Over the limit: this one and every event until a token is back become one
            // summary. At shutdown the summary goes out at once.
            self.shared.count("coalesced");
            let mut count = 1;
            tracing::info!(event = ?notification.event, "notification over the rate limit; coalescing events into one summary");
            let until = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = self.shared.closed.cancelled() => {
                        while let Some(skipped) = self.shared.pop() {
                            tracing::info!(event = ?skipped.event, "notification over the rate limit; coalesced");
                            self.shared.count("coalesced");
                            count += 1;
                        }
                        break;
                    }
                    next = self.shared.next() => match next {
                        Some(skipped) => {
                            tracing::info!(event = ?skipped.event, "notification over the rate limit; coalesced");
                            self.shared.count("coalesced");
                            count += 1;
                        }
                        None => break,
                    },
                }
            }
            let _ = bucket.take(Instant::now());
            self.deliver(&Notification::coalesced(count, self.options.per_minute))
                .await;
        }
    }

    /// POSTs one notification, retrying what a retry can fix.
    async fn deliver(&self, notification: &Notification) {
        let body = notification.body();
        let event = notification.event;
        let attempts = self.options.attempts.max(1);
        for attempt in 1..=attempts {
            let response = self
                .client
                .post(self.url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (why, retry_after) = match response {
                Ok(response) if response.status().is_success() => {
                    self.shared.count("sent");
                    tracing::debug!(?event, "notification sent");
                    return;
                }
                Ok(response) => {
                    let status = response.status();
                    if status.as_u16() != 429 && !status.is_server_error() {
                        self.shared.count("failed");
                        tracing::warn!(?event, status = status.as_u16(), "the webhook refused a notification; not retried (check the webhook URL)");
                        return;
                    }
                    (
                        format!("HTTP {}", status.as_u16()),
                        retry_after(response.headers()),
                    )
                }
                Err(error) => (describe(&error.without_url()), None),
            };
            if attempt == attempts {
                self.shared.count("failed");
                tracing::warn!(?event, attempts, error = %why, "notification not delivered; giving up");
                return;
            }
            let exponent = (attempt - 1).min(16);
            let backoff = self
                .options
                .backoff
                .saturating_mul(1 << exponent)
                .mul_f64(0.5 + 0.5 * rand::random::<f64>());
            let delay = retry_after.unwrap_or(backoff).min(self.options.max_backoff);
            tracing::warn!(
                ?event,
                attempt,
                error = %why,
                retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)),
                "notification not delivered; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An error and its causes on one line. Callers pass reqwest errors through
/// `without_url` first: their `Display` names the URL, which is a secret here.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_slack_text_plus_every_structured_field() {
        let n = Notification::drift_corrected(
            "helpdesk",
            "<!channel> eve",
            "u-1",
            "inactive",
            "active",
            Some("abc123"),
        );
        let body: serde_json::Value = serde_json::from_str(&n.body()).unwrap();
        assert_eq!(
            body["text"],
            "Roster corrected drift at helpdesk: &lt;!channel&gt; eve (account u-1) was inactive, \
             set back to active: the account was changed at the provider by hand; Roster set it \
             back (commit abc123)"
        );
        assert_eq!(body["event"], "drift_corrected");
        assert_eq!(body["provider"], "helpdesk");
        assert_eq!(
            body["user"], "<!channel> eve",
            "structured fields are exact"
        );
        assert_eq!(body["account_id"], "u-1");
        assert_eq!(body["from"], "inactive");
        assert_eq!(body["to"], "active");
        assert_eq!(body["git_commit"], "abc123");
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 9, "{keys:?}");

        let invalid = Notification::folder_invalid(&["a.yaml:1:1: bad\n<!here>".into()], None);
        let body: serde_json::Value = serde_json::from_str(&invalid.body()).unwrap();
        assert_eq!(
            body["provider"],
            serde_json::Value::Null,
            "absent fields are null"
        );
        assert_eq!(body["git_commit"], serde_json::Value::Null);
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("bad\\n&lt;!here&gt;"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_long_problem_list_is_cut_with_a_count() {
        let problems: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let n = Notification::folder_invalid(&problems, None);
        assert!(n.message.contains("(8 problems)"), "{}", n.message);
        assert!(n.message.contains("p4; and 3 more"), "{}", n.message);
        assert!(!n.message.contains("p5"));
    }

    #[test]
    fn each_episode_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let mut episodes = Episodes::default();
        let events =
            |list: Vec<Notification>| list.into_iter().map(|n| n.event).collect::<Vec<_>>();
        let refused = PassEnd::Refused {
            changes: 30,
            limit: 25,
        };
        assert_eq!(
            events(episodes.after_pass("a", refused, None)),
            [Event::GuardRefused]
        );
        assert_eq!(events(episodes.after_pass("a", refused, None)), []);
        assert_eq!(
            events(episodes.after_pass("a", PassEnd::Interrupted, None)),
            []
        );
        assert_eq!(
            events(episodes.after_pass("a", PassEnd::Success, None)),
            [Event::GuardRecovered]
        );
        assert_eq!(events(episodes.after_pass("a", PassEnd::Success, None)), []);

        for failures in 1..FAILING_AFTER {
            let end = PassEnd::Failed {
                failures,
                error: Some("HTTP 503"),
            };
            assert_eq!(events(episodes.after_pass("a", end, None)), []);
        }
        let end = PassEnd::Failed {
            failures: FAILING_AFTER,
            error: Some("HTTP 503"),
        };
        let failing = episodes.after_pass("a", end, Some("c1"));
        assert_eq!(failing[0].event, Event::InstanceFailing);
        assert_eq!(failing[0].message, "the last 3 passes failed: HTTP 503");
        assert_eq!(failing[0].git_commit.as_deref(), Some("c1"));
        let end = PassEnd::Failed {
            failures: FAILING_AFTER + 1,
            error: None,
        };
        assert_eq!(events(episodes.after_pass("a", end, None)), []);
        // A refused pass read the instance: it recovered, and the guard episode starts.
        assert_eq!(
            events(episodes.after_pass("a", refused, None)),
            [Event::InstanceRecovered, Event::GuardRefused]
        );
    }

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9/h",
        ] {
            assert!(check_url(&Secret::new(ok)).is_ok(), "{ok}");
        }
        assert!(matches!(
            check_url(&Secret::new(" ")),
            Err(NotifyError::Empty)
        ));
        for bad in [
            "http://hooks.example.com/secret-path",
            "ftp://x/secret-path",
            "not a url secret-path",
        ] {
            let error = check_url(&Secret::new(bad)).unwrap_err().to_string();
            assert!(!error.contains("secret-path"), "{error}");
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut bucket = Bucket::new(6, start);
        for _ in 0..6 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(bucket.take(start + Duration::from_secs(10)).is_ok());
        assert!(bucket.take(start + Duration::from_secs(11)).is_err());
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        headers.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    /// A webhook receiver on loopback that records bodies and answers the statuses in
    /// `script` first (then 200), each after `delay`.
    struct Receiver {
        url: Secret,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    async fn receiver(script: Vec<(u16, Option<&'static str>)>, delay: Duration) -> Receiver {
        use axum::http::StatusCode;
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let recorded = bodies.clone();
        let app = axum::Router::new().route(
            "/hook/secret-path",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let recorded = recorded.clone();
                let script = script.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    assert_eq!(headers["content-type"], "application/json");
                    recorded
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    let (status, retry_after) =
                        script.lock().unwrap().pop_front().unwrap_or((200, None));
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(value) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", value.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: Secret::new(format!("http://{address}/hook/secret-path")),
            bodies,
        }
    }

    fn fast() -> NotifyOptions {
        NotifyOptions {
            backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            ..NotifyOptions::default()
        }
    }

    fn count(counts: &NotificationCounts, result: &str) -> u64 {
        counts
            .get_or_create(&NotificationLabels {
                result: result.into(),
            })
            .get()
    }

    async fn until(what: &str, mut condition: impl FnMut() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_network_error_is_described_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/hook/secret-path");
        let error = reqwest::Client::new().post(&url).send().await.unwrap_err();
        assert!(
            error.to_string().contains("secret-path"),
            "reqwest names the URL"
        );
        let described = describe(&error.without_url());
        assert!(!described.contains("secret-path"), "{described}");
        assert!(!described.contains("/hook"), "{described}");
    }

    #[tokio::test]
    async fn a_500_and_a_429_are_retried_and_another_4xx_is_not() {
        let hook = receiver(vec![(500, None), (429, Some("0"))], Duration::ZERO).await;
        let counts = NotificationCounts::default();
        let notifier = Notifier::start(hook.url.clone(), fast(), counts.clone()).unwrap();
        assert_eq!(format!("{notifier:?}"), "Notifier(webhook ***)");
        notifier.notify(Notification::folder_recovered(None));
        until("the retried send", || count(&counts, "sent") == 1).await;
        assert_eq!(hook.bodies.lock().unwrap().len(), 3, "500, 429, then 200");
        // A 404 is refused for good: not retried.
        let hook = receiver(vec![(404, None)], Duration::ZERO).await;
        let counts = NotificationCounts::default();
        let notifier = Notifier::start(hook.url.clone(), fast(), counts.clone()).unwrap();
        notifier.notify(Notification::folder_recovered(None));
        until("the refused send", || count(&counts, "failed") == 1).await;
        notifier.close(Duration::from_secs(1)).await;
        assert_eq!(hook.bodies.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn over_the_rate_limit_events_become_one_summary() {
        let hook = receiver(Vec::new(), Duration::ZERO).await;
        let counts = NotificationCounts::default();
        let options = NotifyOptions {
            per_minute: 2,
            ..fast()
        };
        let notifier = Notifier::start(hook.url.clone(), options, counts.clone()).unwrap();
        for i in 0..6 {
            notifier.notify(Notification::guard_refused(&format!("i{i}"), 30, 25, None));
        }
        until("two sends", || count(&counts, "sent") == 2).await;
        // The summary waits for a token (30 s at 2 per minute); shutdown sends it at once.
        notifier.close(Duration::from_secs(5)).await;
        let bodies = hook.bodies.lock().unwrap();
        let events: Vec<&str> = bodies
            .iter()
            .map(|b| b["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["guard_refused", "guard_refused", "events_coalesced"]
        );
        assert!(
            bodies[2]["text"]
                .as_str()
                .unwrap()
                .contains("and 4 more events"),
            "{}",
            bodies[2]
        );
        assert_eq!(count(&counts, "coalesced"), 4);
    }

    #[tokio::test]
    async fn a_hanging_receiver_never_blocks_notify_and_the_oldest_are_dropped() {
        let hook = receiver(Vec::new(), Duration::from_secs(30)).await;
        let counts = NotificationCounts::default();
        let options = NotifyOptions { queue: 3, ..fast() };
        let notifier = Notifier::start(hook.url.clone(), options, counts.clone()).unwrap();
        for i in 0..10 {
            notifier.notify(Notification::guard_refused(&format!("i{i}"), 30, 25, None));
        }
        // One is in flight (hanging), three wait; the rest were dropped oldest first.
        until("drops", || count(&counts, "dropped") >= 6).await;
        let queued: Vec<String> = notifier
            .shared
            .as_ref()
            .unwrap()
            .queue
            .lock()
            .unwrap()
            .iter()
            .filter_map(|n| n.provider.clone())
            .collect();
        assert_eq!(queued, ["i7", "i8", "i9"]);
        notifier.close(Duration::from_millis(100)).await;
    }
}
