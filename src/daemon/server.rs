//! The operator's HTTP endpoint: `/healthz` (the process is alive), `/readyz` (the
//! folder on disk is valid and the last pass of every instance succeeded; the body names
//! the instances that are pending, failing or refused by the guard) and `/metrics`
//! (OpenMetrics text).

use super::metrics::{self, Metrics};
use super::Health;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What the handlers read; shared with the supervisor and the instance loops.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.readiness() {
        Ok(()) => match state.health.standby() {
            Some(note) => (StatusCode::OK, format!("ready, {note}\n")).into_response(),
            None => (StatusCode::OK, "ready\n".to_string()).into_response(),
        },
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}
