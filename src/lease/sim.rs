//! A small in-process Kubernetes Lease API for tests: GET, create (POST) and replace
//! (PUT) of `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`, with the API
//! server's optimistic concurrency (`metadata.resourceVersion`: 409 Conflict on a stale
//! version, 404 when absent, 409 AlreadyExists on a duplicate create) and a bearer-token
//! check. No Kubernetes API server can run where Roster's tests run; this one behaves
//! like it for the calls leader election makes.

use super::api::Lease;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Store {
    leases: BTreeMap<(String, String), Lease>,
    version: u64,
}

#[derive(Clone)]
struct SimState {
    token: String,
    store: Arc<Mutex<Store>>,
}

impl SimState {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running Lease API simulator on a loopback port; stops when dropped.
pub struct LeaseSim {
    address: SocketAddr,
    state: SimState,
    stop: CancellationToken,
}

impl LeaseSim {
    /// Starts on `127.0.0.1:0`, accepting `Authorization: Bearer {token}`.
    pub async fn start(token: &str) -> std::io::Result<LeaseSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let state = SimState {
            token: token.to_string(),
            store: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                post(create),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(read).put(replace),
            )
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move {
            let _ = serve.await;
        });
        Ok(LeaseSim {
            address,
            state,
            stop,
        })
    }

    /// The API server URL to give `--kube-api-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The stored lease, as a GET would return it.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        self.state
            .store()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The holder of the stored lease, if any.
    pub fn holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lease(namespace, name)
            .and_then(|l| l.spec.holder().map(str::to_string))
    }

    /// Replaces the lease's holder the way another candidate would (new holder, renewed
    /// now, a new resourceVersion): what a test does to take the lease from a leader.
    pub fn steal(&self, namespace: &str, name: &str, holder: &str, duration_seconds: u64) {
        let mut store = self.state.store();
        store.version += 1;
        let version = store.version.to_string();
        let now = super::api::micro_time(std::time::SystemTime::now());
        let lease = store
            .leases
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        lease.metadata.name = name.to_string();
        lease.metadata.namespace = Some(namespace.to_string());
        lease.metadata.resource_version = Some(version);
        lease.spec.holder_identity = Some(holder.to_string());
        lease.spec.lease_duration_seconds = Some(duration_seconds);
        lease.spec.acquire_time = Some(now.clone());
        lease.spec.renew_time = Some(now);
    }
}

impl Drop for LeaseSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A Kubernetes `Status` object, the body of every error the API server returns.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

/// `Some(401 answer)` unless the request carries the simulator's bearer token.
fn unauthorized(state: &SimState, headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {}", state.token);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(value) if value == expected => None,
        _ => Some(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        )),
    }
}

async fn read(
    State(state): State<SimState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    match state.store().leases.get(&(ns, name.clone())) {
        Some(lease) => Json(lease.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
        ),
    }
}

async fn create(
    State(state): State<SimState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Json(mut lease): Json<Lease>,
) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let mut store = state.store();
    let key = (ns.clone(), lease.metadata.name.clone());
    if store.leases.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!(
                "leases.coordination.k8s.io \"{}\" already exists",
                lease.metadata.name
            ),
        );
    }
    store.version += 1;
    lease.metadata.resource_version = Some(store.version.to_string());
    lease.metadata.namespace = Some(ns);
    store.leases.insert(key, lease.clone());
    (StatusCode::CREATED, Json(lease)).into_response()
}

async fn replace(
    State(state): State<SimState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(mut lease): Json<Lease>,
) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let mut store = state.store();
    let key = (ns.clone(), name.clone());
    let Some(current) = store.leases.get(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
        );
    };
    if lease.metadata.resource_version != current.metadata.resource_version {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    store.version += 1;
    lease.metadata.resource_version = Some(store.version.to_string());
    lease.metadata.namespace = Some(ns);
    lease.metadata.name = name;
    store.leases.insert(key, lease.clone());
    Json(lease).into_response()
}
