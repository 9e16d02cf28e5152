//! Progress for a person at a terminal: one line per provider instance, counting its reads
//! (pages), writes, HTTP requests and retries while `plan` or `apply` runs, so a pass over
//! 100,000 accounts shows a sign of life instead of twelve silent seconds.
//!
//! [`Progress`] is a [`RequestObserver`]: every instance's HTTP client already reports each
//! attempt and each finished call to its observer, so the adapters know nothing of it.
//! The lines are drawn (with `indicatif`) only when asked to be visible, which the CLI does
//! only when stderr is a terminal: never in a pipe, a CI log or the daemon, and never on
//! stdout, which holds the result. Hidden, it still counts, which is what the tests check.

use crate::provider::RequestObserver;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The lines being drawn, if any, so that a log line written meanwhile can lift them out
/// of its way (see [`log_writer`]) instead of landing in the middle of one.
static DRAWING: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn drawing() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    DRAWING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log's stderr writer: each log line is written with the progress lines (if any are
/// drawn) cleared and redrawn below it, so logs and progress never garble each other.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = drawing().clone();
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let active = drawing().clone();
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How often a visible spinner moves, so a slow request still shows the command is alive.
const TICK: Duration = Duration::from_millis(120);

/// What one instance has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reads finished (list pages, batch reads, searches), after their retries.
    pub reads: u64,
    /// Writes finished, after their retries, whatever their outcome.
    pub writes: u64,
    /// HTTP attempts of any kind, retries and token requests included.
    pub requests: u64,
    /// Attempts that were retried.
    pub retries: u64,
}

impl Counts {
    fn describe(&self) -> String {
        let mut text = format!(
            "{} read{}, {} write{} ({} HTTP request{}",
            self.reads,
            plural(self.reads),
            self.writes,
            plural(self.writes),
            self.requests,
            plural(self.requests)
        );
        if self.retries > 0 {
            text.push_str(&format!(
                ", {} retr{}",
                self.retries,
                if self.retries == 1 { "y" } else { "ies" }
            ));
        }
        text.push(')');
        text
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One instance's counters and its line.
struct Line {
    bar: ProgressBar,
    reads: AtomicU64,
    writes: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Line {
    fn counts(&self) -> Counts {
        Counts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    fn redraw(&self, visible: bool) {
        if visible {
            self.bar.set_message(self.counts().describe());
        }
    }
}

/// Per-instance progress lines on stderr, fed by the HTTP clients as their observer.
pub struct Progress {
    /// `None` when hidden: nothing is drawn, the counters still count.
    multi: Option<MultiProgress>,
    lines: BTreeMap<String, Line>,
}

impl Progress {
    /// Lines for `instances`, drawn only when stderr is a terminal.
    pub fn for_stderr<'a>(instances: impl IntoIterator<Item = &'a str>) -> Progress {
        Progress::new(instances, std::io::stderr().is_terminal())
    }

    /// Lines for `instances`, drawn on stderr when `visible`. Names are instance names
    /// (`[a-z0-9][a-z0-9_-]*`, checked by the loader), so they need no escaping.
    pub fn new<'a>(instances: impl IntoIterator<Item = &'a str>, visible: bool) -> Progress {
        let names: Vec<&str> = instances.into_iter().collect();
        let multi = visible.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let style = ProgressStyle::with_template("{spinner} {prefix}  {msg}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let lines = names
            .into_iter()
            .map(|name| {
                let bar = match &multi {
                    Some(multi) => {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(style.clone());
                        bar.set_prefix(format!("{name:<width$}"));
                        bar.set_message("waiting");
                        bar.enable_steady_tick(TICK);
                        bar
                    }
                    None => ProgressBar::hidden(),
                };
                let line = Line {
                    bar,
                    reads: AtomicU64::new(0),
                    writes: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                };
                (name.to_string(), line)
            })
            .collect();
        if let Some(multi) = &multi {
            *drawing() = Some(multi.clone());
        }
        Progress { multi, lines }
    }

    /// Whether the lines are drawn.
    pub fn is_visible(&self) -> bool {
        self.multi.is_some()
    }

    /// What `instance` has done so far; `None` for an instance this display does not know.
    pub fn counts(&self, instance: &str) -> Option<Counts> {
        self.lines.get(instance).map(Line::counts)
    }

    /// A note above the lines ("Applying 3 changes..."), shown only when visible.
    pub fn note(&self, message: &str) {
        if let Some(multi) = &self.multi {
            // Fails only when stderr is gone; progress is never worth an error.
            let _ = multi.println(message);
        }
    }

    /// Removes the lines, so the result printed next is not mixed with them.
    pub fn finish(&self) {
        for line in self.lines.values() {
            line.bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
            *drawing() = None;
        }
    }

    fn line(&self, instance: &str) -> Option<&Line> {
        self.lines.get(instance)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl RequestObserver for Progress {
    fn request_finished(&self, instance: &str, _: &str, _: Option<u16>, _: Duration) {
        if let Some(line) = self.line(instance) {
            line.requests.fetch_add(1, Ordering::Relaxed);
            line.redraw(self.is_visible());
        }
    }

    fn retry_scheduled(&self, instance: &str) {
        if let Some(line) = self.line(instance) {
            line.retries.fetch_add(1, Ordering::Relaxed);
            line.redraw(self.is_visible());
        }
    }

    fn call_finished(&self, instance: &str, write: bool) {
        if let Some(line) = self.line(instance) {
            let counter = if write { &line.writes } else { &line.reads };
            counter.fetch_add(1, Ordering::Relaxed);
            line.redraw(self.is_visible());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::{ApiRequest, BearerToken, HttpClient, HttpConfig, RetryPolicy};
    use crate::secret::Secret;
    use crate::simulator::{SimConfig, SimKind, SimUser, Simulator};
    use reqwest::header::HeaderMap;
    use reqwest::Method;
    use std::sync::Arc;

    fn client(base: &str, token: &str, observer: Arc<Progress>) -> HttpClient {
        HttpClient::new(HttpConfig {
            instance: "helpdesk".into(),
            base_url: url::Url::parse(base).expect("url"),
            timeout: Duration::from_secs(5),
            max_concurrency: 2,
            requests_per_second: None,
            credentials: Arc::new(BearerToken(Secret::new(token))),
            headers: HeaderMap::new(),
            query: vec![],
            retry: RetryPolicy::default(),
            observer,
            ca_file: None,
        })
        .expect("client")
    }

    #[tokio::test]
    async fn counts_reads_and_requests_of_each_instance() {
        let users = vec![SimUser {
            id: "u1".into(),
            name: "u1".into(),
            status: "active".into(),
            privileged: false,
            version: 1,
        }];
        let config = SimConfig::new(SimKind::StatusApi, users);
        let sim = Simulator::start(config.clone()).await.expect("simulator");
        let progress = Arc::new(Progress::new(["helpdesk", "portal"], false));
        assert!(!progress.is_visible());
        let http = client(&sim.base_url(), &config.token, progress.clone());

        for _ in 0..3 {
            http.read(ApiRequest::get(&["users"])).await.expect("read");
        }
        // A read the simulator refuses still counts as a finished read.
        let _ = http
            .read(ApiRequest::new(Method::GET, &["no-such-endpoint"]))
            .await;

        assert_eq!(
            progress.counts("helpdesk"),
            Some(Counts {
                reads: 4,
                writes: 0,
                requests: 4,
                retries: 0
            })
        );
        assert_eq!(progress.counts("portal"), Some(Counts::default()));
        assert_eq!(progress.counts("nosuch"), None);
    }

    #[test]
    fn describes_counts_in_words() {
        let counts = Counts {
            reads: 1000,
            writes: 1,
            requests: 1003,
            retries: 2,
        };
        assert_eq!(
            counts.describe(),
            "1000 reads, 1 write (1003 HTTP requests, 2 retries)"
        );
        assert_eq!(
            Counts::default().describe(),
            "0 reads, 0 writes (0 HTTP requests)"
        );
    }
}
