//! The API request pipeline: classify, count, fault, admit, handle, record.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::{
    lock, recorded, ApiRequest, Class, ConnHandle, FaultAnswer, FaultPlan, InFlightWrite, Reply,
    Route, Shape, Shared,
};

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
    let mut req = ApiRequest::new(parts, body.unwrap_or_default());
    let route = sim
        .api
        .route(&req.method, &req.segments)
        .or_not_found_if_empty();
    let class = route.class(&req.method);
    let _in_flight = (class == Class::Write).then(|| InFlightWrite::enter(&sim.stats));

    let answer = if too_large {
        let message = format!("request body larger than {MAX_BODY_BYTES} bytes");
        Answer::Reply(sim.api.error(StatusCode::PAYLOAD_TOO_LARGE, &message))
    } else {
        answer(&sim, &mut req, route, class).await
    };
    sim.record(recorded(&sim, &req, class, answer.status()), class);
    match answer {
        Answer::Reply(reply) => reply.into_response(),
        Answer::Drop => {
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::Truncated(reply) => truncated(reply),
        Answer::Oversized(reply, bytes) => oversized(reply, bytes),
    }
}

/// What the pipeline sends back for one request.
pub(super) enum Answer {
    /// A complete answer.
    Reply(Reply),
    /// No answer: the connection is closed.
    Drop,
    /// The answer's headers and the first half of its body, then the connection ends.
    Truncated(Reply),
    /// The answer with a padding field of this many bytes streamed in front of its content.
    Oversized(Reply, u64),
}

impl Answer {
    /// The status for the request log: 0 when no answer was sent.
    fn status(&self) -> u16 {
        match self {
            Answer::Reply(r) | Answer::Truncated(r) | Answer::Oversized(r, _) => r.status.as_u16(),
            Answer::Drop => 0,
        }
    }
}

/// Faults first (latency, injected answers, side effects), then auth and the kind's handler,
/// then the faults that change or withhold a successful answer.
pub(super) async fn answer(
    sim: &Shared,
    req: &mut ApiRequest,
    route: Route,
    class: Class,
) -> Answer {
    let plan = lock(&sim.faults).plan(class);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    match plan.answer {
        Some(FaultAnswer::Drop) => Answer::Drop,
        Some(FaultAnswer::Status(code, ref retry_after)) => {
            Answer::Reply(fault_reply(sim, code, retry_after.clone()))
        }
        None => {
            apply_side_effects(sim, req, &route, &plan);
            req.cursor_fault = plan.cursor;
            let is_list = route == Route::List;
            let reply = match sim.api.admit(sim, req, &route) {
                Ok(()) => sim.api.handle(sim, req, route),
                Err(refusal) => refusal,
            };
            if plan.drop_after_handling {
                Answer::Drop
            } else {
                shape(sim, reply, &plan.shapes, is_list)
            }
        }
    }
}

/// Applies the answer-shaping faults to a successful answer.
fn shape(sim: &Shared, mut reply: Reply, shapes: &[Shape], is_list: bool) -> Answer {
    if !reply.status.is_success() {
        return Answer::Reply(reply);
    }
    let mut ending = None;
    for shape in shapes {
        match shape {
            Shape::Malformed => reply.body = malformed(&reply.body),
            Shape::OmitField(field) => reply.body = omit_field(&reply.body, field),
            Shape::LyingTotal(total) if is_list => {
                reply.body = set_total(&reply.body, sim.api.total_fields(), total)
            }
            Shape::LyingTotal(_) => {}
            Shape::Truncated | Shape::Oversized(_) => ending = Some(shape),
        }
    }
    match ending {
        Some(Shape::Truncated) => Answer::Truncated(reply),
        Some(Shape::Oversized(bytes)) => Answer::Oversized(reply, *bytes),
        _ => Answer::Reply(reply),
    }
}

/// The body with a syntax error right after its opening brace (`{,,"data":...`).
fn malformed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    match body.split_first() {
        Some((b'{', rest)) => {
            out.extend_from_slice(b"{,,");
            out.extend_from_slice(rest);
        }
        _ => {
            out.extend_from_slice(b"{,,");
            out.extend_from_slice(body);
        }
    }
    out
}

/// The body without `field` in every object that is an element of an array.
fn omit_field(body: &[u8], field: &str) -> Vec<u8> {
    fn walk(value: &mut serde_json::Value, field: &str, in_array: bool) {
        match value {
            serde_json::Value::Object(map) => {
                if in_array {
                    map.remove(field);
                }
                map.values_mut().for_each(|v| walk(v, field, false));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, field, true)),
            _ => {}
        }
    }
    rewrite(body, |value| walk(value, field, false))
}

/// The body with each of `paths` (where present) replaced by `total`.
fn set_total(body: &[u8], paths: &[&[&str]], total: &serde_json::Value) -> Vec<u8> {
    rewrite(body, |value| {
        for path in paths {
            let pointer: String = path.iter().map(|key| format!("/{key}")).collect();
            if let Some(slot) = value.pointer_mut(&pointer) {
                *slot = total.clone();
            }
        }
    })
}

/// Parses a JSON body, changes it and renders it again; a body that is not JSON is unchanged.
fn rewrite(body: &[u8], change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    change(&mut value);
    serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
}

/// Full `Content-Length`, half the body, then a body error: hyper closes the connection.
fn truncated(reply: Reply) -> Response {
    let length = reply.body.len();
    let mut body = reply.body;
    body.truncate(length / 2);
    let cut = std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "truncated by a fault",
    );
    // The pause lets hyper send the headers and the prefix before it sees the error.
    let chunks =
        futures::stream::iter([Ok(Bytes::from(body))]).chain(futures::stream::once(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Err(cut)
        }));
    streamed(
        reply.status,
        reply.headers,
        Some(length),
        Body::from_stream(chunks),
    )
}

/// `{"_padding":"xxx...",<the rest of the real object>`, generated while it is sent.
fn oversized(reply: Reply, padding: u64) -> Response {
    /// One chunk of padding, shared by every oversized answer.
    static PAD: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let rest = match reply.body.split_first() {
        Some((b'{', rest)) => rest.to_vec(),
        _ => b"}".to_vec(),
    };
    let separator: &'static [u8] = if rest.first() == Some(&b'}') {
        b"\""
    } else {
        b"\","
    };
    let head = futures::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from_static(
        b"{\"_padding\":\"",
    ))]);
    let pad = futures::stream::unfold(padding, |left| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left).map_or(PAD.len(), |left| left.min(PAD.len()));
        Some((Ok(Bytes::from_static(&PAD[..n])), left - n as u64))
    });
    let tail = futures::stream::iter([Ok(Bytes::from_static(separator)), Ok(Bytes::from(rest))]);
    let chunks = head.chain(pad).chain(tail);
    streamed(reply.status, reply.headers, None, Body::from_stream(chunks))
}

fn streamed(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    length: Option<usize>,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(length) = length {
        map.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    for (name, value) in headers {
        map.insert(name, value);
    }
    response
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
