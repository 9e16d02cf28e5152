//! The daemon's Prometheus metrics, one registry for the whole process, rendered in the
//! OpenMetrics text format by `/metrics`. Names carry the `roster_` prefix; counters end
//! in `_total` and durations in `_seconds` (the encoder adds both suffixes).

use super::pass::{PassResult, Reason};
use crate::apply::{ApplyReport, Outcome};
use crate::notify::NotificationCounts;
use crate::provider::RequestObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The media type `/metrics` answers with; Prometheus negotiates it natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabels {
    pub instance: String,
    /// Why the pass ran: startup, interval, folder_changed, retry, leader_elected,
    /// scheduled.
    pub reason: String,
    /// success, error (a read or write failed) or refused (the safety guard).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub instance: String,
    /// applied, already_converged, blocked (refused by the provider at write time), failed.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub instance: String,
    /// in_sync, drifting, blocked, error.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub instance: String,
    pub method: String,
    /// The HTTP status, or `none` when no answer arrived (timeout, dropped connection).
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub instance: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// valid or invalid.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// Empty when the folder is not in a git checkout.
    pub git_commit: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    leader: Gauge,
    passes: Family<PassLabels, Counter>,
    pass_duration: HistogramFamily<InstanceLabels>,
    last_success: Family<InstanceLabels, Gauge<f64, AtomicU64>>,
    changes: Family<ChangeLabels, Counter>,
    guard_refused: Family<InstanceLabels, Gauge>,
    changes_refused: Family<InstanceLabels, Counter>,
    audit_errors: Family<InstanceLabels, Counter>,
    drift: Family<InstanceLabels, Counter>,
    accounts: Family<AccountLabels, Gauge>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<MethodLabels>,
    retries: Family<InstanceLabels, Counter>,
    desired_valid: Gauge,
    reloads: Family<ResultLabels, Counter>,
    desired_info: Family<CommitLabels, Gauge>,
    notifications: NotificationCounts,
    next_scheduled: Family<InstanceLabels, Gauge<f64, AtomicU64>>,
}

fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("roster");
        let passes = Family::<PassLabels, Counter>::default();
        registry.register(
            "passes",
            "Reconcile passes per instance, by why they ran and how they ended",
            passes.clone(),
        );
        let pass_duration: HistogramFamily<InstanceLabels> =
            Family::new_with_constructor(pass_histogram);
        registry.register_with_unit(
            "pass_duration",
            "Duration of reconcile passes (read, plan and writes) per instance",
            Unit::Seconds,
            pass_duration.clone(),
        );
        let last_success = Family::<InstanceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_successful_pass_timestamp_seconds",
            "Unix time at which the last pass without errors or refusals finished",
            last_success.clone(),
        );
        let changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "changes",
            "Write calls per instance by outcome",
            changes.clone(),
        );
        let guard_refused = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "safety_guard_refused",
            "1 when the last pass at this instance wanted more changes than max_changes and made none",
            guard_refused.clone(),
        );
        let changes_refused = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "changes_refused",
            "Changes not made because the max_changes safety guard refused the pass",
            changes_refused.clone(),
        );
        let audit_errors = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "audit_log_errors",
            "Passes in which an audit line could not be written, so no further write call was made",
            audit_errors.clone(),
        );
        let drift = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "drift_detected",
            "Accounts found changed at the provider after Roster had them in sync",
            drift.clone(),
        );
        let accounts = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "accounts",
            "Accounts named in the folder per instance, by state after the last pass",
            accounts.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP attempts to providers, retries included",
            requests.clone(),
        );
        let request_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(request_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Latency of HTTP attempts to providers",
            Unit::Seconds,
            request_duration.clone(),
        );
        let retries = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "http_retries",
            "HTTP attempts scheduled for retry (429, 503, 5xx, timeouts)",
            retries.clone(),
        );
        let desired_valid = Gauge::default();
        registry.register(
            "desired_state_valid",
            "1 when the folder on disk loaded cleanly; 0 while the last good folder stays in force",
            desired_valid.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "desired_state_reloads",
            "Loads of the desired-state folder (at start, after each change, on SIGHUP), by result",
            reloads.clone(),
        );
        let desired_info = Family::<CommitLabels, Gauge>::default();
        registry.register(
            "desired_state_info",
            "Always 1; labels describe the folder in force",
            desired_info.clone(),
        );
        let notifications = NotificationCounts::default();
        registry.register(
            "notifications",
            "Webhook notifications by result: sent, failed, dropped (queue full), coalesced (over the rate limit)",
            notifications.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this process may reconcile: it holds the leader-election lease, or runs without --leader-election",
            leader.clone(),
        );
        let next_scheduled = Family::<InstanceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "next_scheduled_change_timestamp_seconds",
            "Unix time of the next from or until of an account of this instance, when its loop wakes to apply it; absent when none",
            next_scheduled.clone(),
        );
        Metrics {
            registry,
            next_scheduled,
            leader,
            passes,
            pass_duration,
            last_success,
            changes,
            guard_refused,
            changes_refused,
            audit_errors,
            drift,
            accounts,
            requests,
            request_duration,
            retries,
            desired_valid,
            reloads,
            desired_info,
            notifications,
        }
    }

    /// The counters the webhook notifier increments (`roster_notifications_total`).
    pub fn notifications(&self) -> NotificationCounts {
        self.notifications.clone()
    }

    /// Records whether this process holds the lease (always true without election).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The whole registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Records a load of the folder; `git_commit` is set for a valid one.
    pub fn reloaded(&self, valid: bool) {
        let result = if valid { "valid" } else { "invalid" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.set_valid(valid);
    }

    pub fn set_valid(&self, valid: bool) {
        self.desired_valid.set(i64::from(valid));
    }

    /// Labels the info metric with the commit of the folder now in force.
    pub fn set_folder_commit(&self, git_commit: Option<&str>) {
        self.desired_info.clear();
        self.desired_info
            .get_or_create(&CommitLabels {
                git_commit: git_commit.unwrap_or_default().into(),
            })
            .set(1);
    }

    /// Records one finished pass of `instance`.
    pub fn pass_finished(&self, pass: &PassMetrics<'_>) {
        let instance = || InstanceLabels {
            instance: pass.instance.into(),
        };
        self.passes
            .get_or_create(&PassLabels {
                instance: pass.instance.into(),
                reason: pass.reason.as_str().into(),
                result: pass.result.as_str().into(),
            })
            .inc();
        self.pass_duration
            .get_or_create(&instance())
            .observe(pass.duration.as_secs_f64());
        if pass.result == PassResult::Success {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.last_success.get_or_create(&instance()).set(now);
        }
        self.drift.get_or_create(&instance()).inc_by(pass.drift);
        if let Some(report) = pass.report {
            for outcome in [
                Outcome::Applied,
                Outcome::AlreadyConverged,
                Outcome::Blocked,
                Outcome::Failed,
            ] {
                let counter = self.changes.get_or_create(&ChangeLabels {
                    instance: pass.instance.into(),
                    outcome: outcome.as_str().into(),
                });
                counter.inc_by(report.count(outcome) as u64);
            }
            let refused: usize = report.refused.iter().map(|r| r.changes).sum();
            self.changes_refused
                .get_or_create(&instance())
                .inc_by(refused as u64);
            self.guard_refused
                .get_or_create(&instance())
                .set(i64::from(!report.refused.is_empty()));
            if report.audit_error.is_some() {
                self.audit_errors.get_or_create(&instance()).inc();
            }
        }
        for (state, count) in [
            ("in_sync", pass.accounts.in_sync),
            ("drifting", pass.accounts.drifting),
            ("blocked", pass.accounts.blocked),
            ("error", pass.accounts.error),
        ] {
            self.accounts
                .get_or_create(&AccountLabels {
                    instance: pass.instance.into(),
                    state: state.into(),
                })
                .set(count as i64);
        }
    }

    /// Publishes the next time bound of `instance` (see
    /// [`super::instance::next_boundary`]); `None` removes the series, since no
    /// scheduled change is to come.
    pub fn set_next_scheduled_change(&self, instance: &str, at: Option<time::OffsetDateTime>) {
        let labels = InstanceLabels {
            instance: instance.into(),
        };
        match at {
            Some(at) => {
                let seconds = at.unix_timestamp_nanos() as f64 / 1e9;
                self.next_scheduled.get_or_create(&labels).set(seconds);
            }
            None => {
                self.next_scheduled.remove(&labels);
            }
        }
    }

    /// Drops the per-instance account gauges of an instance that left the folder, so
    /// dashboards do not show its last numbers forever.
    pub fn instance_removed(&self, instance: &str) {
        for state in ["in_sync", "drifting", "blocked", "error"] {
            self.accounts.remove(&AccountLabels {
                instance: instance.into(),
                state: state.into(),
            });
        }
        self.guard_refused.remove(&InstanceLabels {
            instance: instance.into(),
        });
        self.next_scheduled.remove(&InstanceLabels {
            instance: instance.into(),
        });
    }
}

/// Account counts of one instance after a pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountCounts {
    pub in_sync: usize,
    pub drifting: usize,
    pub blocked: usize,
    pub error: usize,
}

/// What [`Metrics::pass_finished`] records.
pub struct PassMetrics<'a> {
    pub instance: &'a str,
    pub reason: Reason,
    pub result: PassResult,
    pub duration: Duration,
    /// Absent when the pass ended before apply (instance unreadable, not connected).
    pub report: Option<&'a ApplyReport>,
    pub accounts: AccountCounts,
    pub drift: u64,
}

/// Feeds the HTTP metrics and counts one instance's requests, so each pass can report
/// how many it made. One per instance loop; it outlives reconnects.
pub struct InstanceObserver {
    metrics: Arc<Metrics>,
    requests: AtomicU64,
}

impl InstanceObserver {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        InstanceObserver {
            metrics,
            requests: AtomicU64::new(0),
        }
    }

    /// HTTP attempts made through this observer so far.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl RequestObserver for InstanceObserver {
    fn request_finished(
        &self,
        instance: &str,
        method: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                instance: instance.into(),
                method: method.into(),
                status: status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            })
            .inc();
        self.metrics
            .request_duration
            .get_or_create(&MethodLabels {
                instance: instance.into(),
                method: method.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    fn retry_scheduled(&self, instance: &str) {
        self.metrics
            .retries
            .get_or_create(&InstanceLabels {
                instance: instance.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_conventions() {
        let metrics = Arc::new(Metrics::new());
        metrics.reloaded(true);
        metrics.set_folder_commit(Some("0123456789abcdef0123456789abcdef01234567"));
        let observer = InstanceObserver::new(metrics.clone());
        observer.request_finished("portal", "GET", Some(200), Duration::from_millis(12));
        observer.request_finished("portal", "POST", None, Duration::from_secs(30));
        observer.retry_scheduled("portal");
        metrics.pass_finished(&PassMetrics {
            instance: "portal",
            reason: Reason::Startup,
            result: PassResult::Success,
            duration: Duration::from_millis(80),
            report: Some(&ApplyReport::default()),
            accounts: AccountCounts {
                in_sync: 3,
                ..AccountCounts::default()
            },
            drift: 0,
        });
        assert_eq!(observer.request_count(), 2);
        let text = metrics.encode().unwrap();
        for expected in [
            "# TYPE roster_passes counter",
            r#"roster_passes_total{instance="portal",reason="startup",result="success"} 1"#,
            "# TYPE roster_pass_duration_seconds histogram",
            r#"roster_http_requests_total{instance="portal",method="GET",status="200"} 1"#,
            r#"roster_http_requests_total{instance="portal",method="POST",status="none"} 1"#,
            r#"roster_http_retries_total{instance="portal"} 1"#,
            r#"roster_accounts{instance="portal",state="in_sync"} 3"#,
            "roster_desired_state_valid 1",
            r#"roster_desired_state_reloads_total{result="valid"} 1"#,
            r#"roster_desired_state_info{git_commit="0123456789abcdef0123456789abcdef01234567"} 1"#,
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }

        metrics.set_folder_commit(None);
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"roster_desired_state_info{git_commit=""} 1"#));
        assert!(!text.contains("0123456789abcdef0123456789abcdef01234567"));
    }
}
