//! The state every server task and the [`Simulator`](super::Simulator) handle share.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{
    api, ApiRequest, Class, FaultState, KindApi, RecordedRequest, SimConfig, SimUser, Store,
    MAX_LOGGED_REQUESTS,
};

/// Everything the server tasks and the [`Simulator`] handle share.
pub(super) struct Shared {
    pub(super) api: &'static dyn KindApi,
    /// The configuration; `users` and `faults` have moved into `store` and `faults`.
    pub(super) config: SimConfig,
    pub(super) store: Mutex<Store>,
    pub(super) faults: Mutex<FaultState>,
    pub(super) log: Mutex<VecDeque<RecordedRequest>>,
    /// Issued acronis access tokens and when each expires.
    pub(super) tokens: Mutex<HashMap<String, Instant>>,
    pub(super) stats: Stats,
}

impl Shared {
    pub(super) fn new(mut config: SimConfig) -> Shared {
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

    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(super) fn tokens(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        lock(&self.tokens)
    }

    pub(super) fn bearer_ok(&self, req: &ApiRequest) -> bool {
        req.credentials("Bearer") == Some(self.config.token.as_str())
    }

    /// The page size actually served for a requested one.
    pub(super) fn page_limit(&self, requested: usize) -> usize {
        requested.min(self.config.page_size_max.max(1))
    }

    pub(super) fn users(&self) -> Vec<SimUser> {
        self.store().all().iter().map(|u| u.user.clone()).collect()
    }

    pub(super) fn set_user_status(&self, id: &str, status: &str) -> Option<SimUser> {
        if !self.api.statuses().contains(&status) {
            return None;
        }
        let mut store = self.store();
        let user = store.get_mut(id)?;
        user.set_status(status);
        Some(user.user.clone())
    }

    pub(super) fn clear_requests(&self) {
        lock(&self.log).clear();
        let stats = &self.stats;
        stats.reads.store(0, Ordering::SeqCst);
        stats.writes.store(0, Ordering::SeqCst);
        stats.token_requests.store(0, Ordering::SeqCst);
        let now = stats.in_flight_writes.load(Ordering::SeqCst);
        stats.max_in_flight_writes.store(now, Ordering::SeqCst);
    }

    pub(super) fn record(&self, request: RecordedRequest, class: Class) {
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
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) reads: AtomicUsize,
    pub(super) writes: AtomicUsize,
    pub(super) token_requests: AtomicUsize,
    pub(super) in_flight_writes: AtomicUsize,
    pub(super) max_in_flight_writes: AtomicUsize,
}

/// Counts one write as in flight for as long as it lives.
pub(super) struct InFlightWrite<'a>(&'a Stats);

impl<'a> InFlightWrite<'a> {
    pub(super) fn enter(stats: &'a Stats) -> Self {
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
