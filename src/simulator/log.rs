//! The request log and counters: what a simulator received, secrets removed, so tests can assert
//! the exact calls a pass made.

use std::collections::BTreeMap;

use serde::Serialize;

/// How many requests the log keeps (oldest dropped first), so a long `roster simulate` session
/// cannot grow without bound. Counters are not affected by this cap.
pub(super) const MAX_LOGGED_REQUESTS: usize = 100_000;

/// One API request as the simulator saw it, secrets removed, so tests can assert exact calls.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The raw path as received, still percent-encoded (e.g. `/users/a%2Fb`).
    pub path: String,
    /// The raw query string; values of secret parameters (`client_secret`...) replaced by `***`.
    pub query: Option<String>,
    /// Lower-case names; `authorization` is `Bearer ***` / `Basic ***`, never the secret.
    pub headers: BTreeMap<String, String>,
    /// The JSON body when present; form bodies as `{"form": "<raw>"}` with secrets removed,
    /// other bodies as `{"raw": "<text>"}`.
    pub body: Option<serde_json::Value>,
    /// True for status-changing calls; false for reads, zitadel `_search` and the acronis token.
    pub is_write: bool,
    /// The status the simulator answered; 0 when the connection was dropped without an answer
    /// (after the request was handled, for `FaultAction::DropAfterHandling`).
    pub status: u16,
}
