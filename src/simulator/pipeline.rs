//! The API request pipeline: classify, count, fault, admit, handle, record.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;

/// The largest request body a simulator accepts; real clients send a few hundred bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(super) async fn api_request(
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
pub(super) async fn answer(
    sim: &Shared,
    req: &ApiRequest,
    route: Route,
    class: Class,
) -> Option<Reply> {
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

pub(super) fn fault_reply(sim: &Shared, code: u16, retry_after: Option<String>) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = sim.api.error(status, "simulated fault");
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        reply.headers.push((header::RETRY_AFTER, value));
    }
    reply
}

pub(super) fn apply_side_effects(sim: &Shared, req: &ApiRequest, route: &Route, plan: &FaultPlan) {
    if plan.expire_tokens {
        sim.tokens().clear();
    }
    if let (true, Route::Write(id)) = (plan.concurrent_change, route) {
        if let Some(user) = sim.store().get_mut(id) {
            sim.api.concurrent_change(user, req);
        }
    }
}
