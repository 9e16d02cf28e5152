//! The [`Simulator`] handle and the HTTP server: routes admin endpoints and hands every other
//! request to the pipeline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    admin_clear_faults, admin_clear_requests, admin_faults, admin_requests, admin_set_faults,
    admin_set_status, admin_stats, admin_users, api_request, lock, ConnHandle, FaultState, Faults,
    RecordedRequest, Shared, SimConfig, SimKind, SimListener, SimUser,
};

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
        let mut sim = Simulator {
            shared: Arc::new(Shared::new(config)),
            addr,
            stop: None,
            task: None,
        };
        sim.listen(listener);
        Ok(sim)
    }

    fn listen(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(serve(listener, self.shared.clone(), async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// Takes the instance down: it stops listening (new connections are refused) and closes
    /// open ones, keeping its accounts, faults and request log. [`bring_up`](Self::bring_up)
    /// serves again on the same port. For "the provider is down for a whole pass".
    pub async fn take_down(&mut self) {
        self.stop_serving().await;
    }

    /// Serves again on the same address after [`take_down`](Self::take_down); a no-op while
    /// serving. Fails when the port was taken in the meantime.
    pub async fn bring_up(&mut self) -> std::io::Result<()> {
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr).await?;
            self.listen(listener);
        }
        Ok(())
    }

    async fn stop_serving(&mut self) {
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
        self.stop_serving().await;
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

pub(super) async fn serve(
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
        .route(
            "/_sim/faults",
            get(admin_faults)
                .put(admin_set_faults)
                .delete(admin_clear_faults),
        )
        .fallback(api_request)
        .with_state(shared);
    axum::serve(
        SimListener(listener),
        app.into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(stopped)
    .await
}
