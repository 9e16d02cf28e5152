//! Admin endpoints under `/_sim/`: not recorded, no auth, so a person or a test can drive a
//! standalone simulator.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{lock, FaultState, Faults, RecordedRequest, Reply, Shared};

pub(super) async fn admin_requests(State(sim): State<Arc<Shared>>) -> Response {
    let log: Vec<RecordedRequest> = lock(&sim.log).iter().cloned().collect();
    Reply::ok(&log).into_response()
}

pub(super) async fn admin_clear_requests(State(sim): State<Arc<Shared>>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

/// `GET /_sim/faults`: the fault configuration as it was last set.
pub(super) async fn admin_faults(State(sim): State<Arc<Shared>>) -> Response {
    Reply::ok(&lock(&sim.faults).configured).into_response()
}

/// `PUT /_sim/faults`: replaces the fault configuration (rule counters start again).
pub(super) async fn admin_set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *lock(&sim.faults) = FaultState::new(faults);
            Reply::ok(&lock(&sim.faults).configured).into_response()
        }
        Err(e) => Reply::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": format!("not a fault configuration: {e}") }),
        )
        .into_response(),
    }
}

/// `DELETE /_sim/faults`: no faults any more.
pub(super) async fn admin_clear_faults(State(sim): State<Arc<Shared>>) -> StatusCode {
    *lock(&sim.faults) = FaultState::new(Faults::default());
    StatusCode::NO_CONTENT
}

pub(super) async fn admin_users(State(sim): State<Arc<Shared>>) -> Response {
    Reply::ok(&sim.users()).into_response()
}

pub(super) async fn admin_stats(State(sim): State<Arc<Shared>>) -> Response {
    let stats = &sim.stats;
    Reply::ok(&serde_json::json!({
        "reads": stats.reads.load(Ordering::SeqCst),
        "writes": stats.writes.load(Ordering::SeqCst),
        "token_requests": stats.token_requests.load(Ordering::SeqCst),
        "max_in_flight_writes": stats.max_in_flight_writes.load(Ordering::SeqCst),
    }))
    .into_response()
}

pub(super) async fn admin_set_status(
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
