//! The seam between the framework and one kind: the [`KindApi`] trait, its registry, and the
//! request/answer types a kind works with.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use rand::rngs::StdRng;
use serde::Serialize;

use super::{
    acronis, atlan, scim, status_api, suspend_api, uuid, zitadel, CursorFault, Shared, SimKind,
    StoredUser,
};

/// What one provider kind adds to the framework. Implemented by a unit struct in each kind's file.
pub(super) trait KindApi: Send + Sync {
    /// The statuses this kind can represent; drift by hand is limited to these.
    fn statuses(&self) -> &'static [&'static str];

    /// The account `name` for a generated person whose handle is e.g. `anna.schmidt`.
    fn account_name(&self, handle: &str) -> String {
        handle.to_string()
    }

    /// A fresh id in this API's format.
    fn new_id(&self, rng: &mut StdRng) -> String {
        uuid(rng)
    }

    /// Which operation the request asks for (segments are percent-decoded).
    fn route(&self, method: &Method, segments: &[String]) -> Route;

    /// The kind's error body for a status without a more specific code (faults, 404 routes).
    fn error(&self, status: StatusCode, message: &str) -> Reply;

    /// Auth and required headers; by default `Authorization: Bearer <token>`.
    fn admit(&self, sim: &Shared, req: &ApiRequest, _route: &Route) -> Result<(), Reply> {
        if sim.bearer_ok(req) {
            Ok(())
        } else {
            Err(self.error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"))
        }
    }

    /// "Someone else" edits the account right before a write (fault `ConcurrentChange`).
    fn concurrent_change(&self, user: &mut StoredUser, _req: &ApiRequest) {
        user.touch();
    }

    /// Where list answers carry their total, as JSON object keys from the top (for the
    /// `LyingTotal` fault); none by default.
    fn total_fields(&self) -> &'static [&'static [&'static str]] {
        &[]
    }

    /// Answers an admitted request.
    fn handle(&self, sim: &Shared, req: &ApiRequest, route: Route) -> Reply;
}

/// The registry: the one place that maps a kind to its implementation.
pub(super) fn api(kind: SimKind) -> &'static dyn KindApi {
    match kind {
        SimKind::StatusApi => &status_api::StatusApi,
        SimKind::SuspendApi => &suspend_api::SuspendApi,
        SimKind::Atlan => &atlan::Atlan,
        SimKind::Zitadel => &zitadel::Zitadel,
        SimKind::Acronis => &acronis::Acronis,
        SimKind::Scim => &scim::Scim,
    }
}

/// The operations every kind's API is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// A list, search or batch read.
    List,
    /// Read one account.
    Get(String),
    /// Change one account's status.
    Write(String),
    /// Issue an access token (acronis).
    Token,
    /// Nothing here.
    NotFound,
}

/// How a request counts, for the log, the counters and fault targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Read,
    Write,
    Token,
}

impl Route {
    pub(super) fn class(&self, method: &Method) -> Class {
        match self {
            Route::List | Route::Get(_) => Class::Read,
            Route::Write(_) => Class::Write,
            Route::Token => Class::Token,
            // A misrouted PUT/PATCH/POST still counts as a write attempt, so "zero writes"
            // assertions catch it.
            Route::NotFound if is_safe(method) => Class::Read,
            Route::NotFound => Class::Write,
        }
    }

    /// An empty id (`/users/`) names nothing.
    pub(super) fn or_not_found_if_empty(self) -> Route {
        match &self {
            Route::Get(id) | Route::Write(id) if id.is_empty() => Route::NotFound,
            _ => self,
        }
    }
}

pub(super) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// An API request with its body read and its path split into percent-decoded segments.
pub(super) struct ApiRequest {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) segments: Vec<String>,
    pub(super) query: Option<String>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// How a cursor-paged list should misbehave (set by the fault layer).
    pub(super) cursor_fault: Option<CursorFault>,
}

impl ApiRequest {
    pub(super) fn new(parts: axum::http::request::Parts, body: Bytes) -> ApiRequest {
        let path = parts.uri.path().to_string();
        let segments = path
            .split('/')
            .skip(1)
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        ApiRequest {
            method: parts.method,
            path,
            segments,
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
            cursor_fault: None,
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a query parameter, decoded.
    pub(super) fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The credentials after `<scheme> ` in `Authorization`, scheme compared case-insensitively.
    pub(super) fn credentials(&self, scheme: &str) -> Option<&str> {
        let value = self.header("authorization")?;
        let (got, rest) = value.split_once(' ')?;
        got.eq_ignore_ascii_case(scheme).then(|| rest.trim())
    }

    /// The body as JSON; the error message is meant for a 400 answer.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON body: {e}"))
    }

    /// Like [`json`](Self::json), but an empty body is the type's default.
    pub(super) fn json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
    ) -> Result<T, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            self.json()
        }
    }
}

/// A JSON answer built by a kind.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Reply {
        match serde_json::to_vec(body) {
            Ok(body) => Reply {
                status,
                body,
                headers: Vec::new(),
            },
            Err(e) => Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: format!("{{\"message\":\"cannot render JSON: {e}\"}}").into_bytes(),
                headers: Vec::new(),
            },
        }
    }

    pub(super) fn ok(body: &impl Serialize) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    /// An answer whose JSON the kind rendered itself.
    pub(super) fn raw(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
