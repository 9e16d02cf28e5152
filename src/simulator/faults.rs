//! The fault layer: the misbehaviour a test or an operator can switch on, and the per-request
//! decision of which of it applies (latency, injected answers, side effects).

use std::time::Duration;

use serde::Serialize;

use super::Class;

/// Misbehaviour to inject, so retries, backoff, concurrency limits and the client's defences
/// against broken answers can be tested. As JSON (the admin endpoint `PUT /_sim/faults` and
/// `roster simulate --faults FILE`):
/// `{"latency_ms": 0, "rules": [{"target": "reads", "times": 2, "action": {"status": {"code": 429, "retry_after": "1"}}}]}`.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request before it is handled.
    #[serde(default, rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Checked in order for each request. `Delay`, `ConcurrentChange`, `ExpireTokens` and the
    /// answer-shaping actions stack; the first matching `Status` or `Drop` answers and ends the
    /// walk.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl Faults {
    /// One rule, for every matching request (`times: 0`), and no latency.
    pub fn always(target: FaultTarget, action: FaultAction) -> Faults {
        Faults {
            latency: Duration::ZERO,
            rules: vec![FaultRule {
                target,
                times: 0,
                action,
            }],
        }
    }
}

/// Reads a fault configuration from a JSON file (for `roster simulate --faults`).
pub fn load_faults(path: &std::path::Path) -> Result<Faults, FaultsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FaultsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FaultsFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Why a fault configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultsFileError {
    #[error("cannot read fault file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("fault file {} is not a valid fault configuration: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

/// One fault: which requests, how many times, what happens.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Which requests it applies to.
    pub target: FaultTarget,
    /// How many matching requests it affects; 0 means every matching request, forever.
    #[serde(default)]
    pub times: u32,
    /// What happens to them.
    pub action: FaultAction,
}

/// Which API requests a fault rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// Every API request, the acronis token request included.
    Any,
    /// Requests that do not change anything (lists, searches, single reads), not token requests.
    Reads,
    /// Status-changing requests.
    Writes,
    /// The acronis token endpoint.
    Token,
}

/// What a fault does to a matching request. The answer-shaping actions (`MalformedBody` to
/// `EndlessCursor`) change only successful (2xx) answers; an error answer passes unchanged.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer this status with a JSON error body in the kind's error shape, and `Retry-After`
    /// when set (seconds, or an HTTP date).
    Status {
        code: u16,
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// Close the connection without an answer; the request is not handled (a write does not
    /// land).
    Drop,
    /// Handle the request (a write lands in the store), then close the connection without
    /// sending the answer: the reply is lost after the server acted. Logged with status 0.
    DropAfterHandling,
    /// Extra latency for these requests.
    #[serde(rename = "delay_ms", with = "millis")]
    Delay(Duration),
    /// Just before a write is handled, "someone else" edits the account: acronis bumps the
    /// version (the write gets 409); zitadel sets the state the write asks for (the write gets
    /// 400 FAILED_PRECONDITION); other kinds only bump `updated_at`.
    ConcurrentChange,
    /// Acronis: every issued access token becomes invalid now, then the request is handled.
    ExpireTokens,
    /// A 200 whose body is not valid JSON: the real answer with a syntax error after its
    /// opening brace.
    MalformedBody,
    /// The real answer's headers (with its full `Content-Length`) and the first half of its
    /// body, then the connection ends.
    TruncatedBody,
    /// The real answer without this key in every record (every object inside an array), e.g.
    /// `id` or the kind's status field ([`SimKind::status_field`]).
    OmitField(String),
    /// The real answer with an extra string field of this many bytes in front, streamed without
    /// `Content-Length` and generated as it is sent (never held in memory): a list page far
    /// bigger than any sane page.
    OversizedBody(u64),
    /// List answers report this total instead of the real one (atlan `totalRecord` and
    /// `filterRecord`, zitadel `details.totalResult`, status-api `total`): e.g. `1000000`,
    /// `1e18` or, for zitadel, a digit string too long for any integer type. Kinds whose lists
    /// carry no total (acronis, suspend-api) ignore it.
    LyingTotal(serde_json::Value),
    /// suspend-api: the last list page, instead of `next_cursor: null`, points back to the
    /// first cursor the list issued, so a client that follows cursors goes A -> B -> A ...
    /// (with a single page, the first page points to itself). Other kinds ignore it.
    CyclingCursor,
    /// suspend-api: every list page carries a new `next_cursor`, never null; past the real
    /// accounts the pages repeat them under ever new cursors. Other kinds ignore it.
    EndlessCursor,
}

/// `Duration` as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

pub(super) struct FaultState {
    /// The configuration as it was set, for `GET /_sim/faults`.
    pub(super) configured: Faults,
    pub(super) latency: Duration,
    pub(super) rules: Vec<ArmedRule>,
}

pub(super) struct ArmedRule {
    pub(super) rule: FaultRule,
    /// None: forever.
    pub(super) remaining: Option<u32>,
}

/// What the fault layer decided for one request.
#[derive(Default)]
pub(super) struct FaultPlan {
    pub(super) delay: Duration,
    pub(super) concurrent_change: bool,
    pub(super) expire_tokens: bool,
    pub(super) answer: Option<FaultAnswer>,
    /// Close the connection after handling, instead of answering.
    pub(super) drop_after_handling: bool,
    /// Changes to a successful answer, in rule order.
    pub(super) shapes: Vec<Shape>,
    /// suspend-api list paging misbehaviour.
    pub(super) cursor: Option<CursorFault>,
}

/// How a successful answer is changed before it is sent.
#[derive(Clone, Debug)]
pub(super) enum Shape {
    Malformed,
    Truncated,
    OmitField(String),
    Oversized(u64),
    LyingTotal(serde_json::Value),
}

/// How a cursor-paged list misbehaves (read by the kind's list handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CursorFault {
    Cycling,
    Endless,
}

pub(super) enum FaultAnswer {
    Status(u16, Option<String>),
    Drop,
}

impl FaultState {
    pub(super) fn new(faults: Faults) -> FaultState {
        let rules = faults
            .rules
            .iter()
            .cloned()
            .map(|rule| ArmedRule {
                remaining: (rule.times > 0).then_some(rule.times),
                rule,
            })
            .collect();
        FaultState {
            latency: faults.latency,
            rules,
            configured: faults,
        }
    }

    /// Decides what happens to one request and counts the rules it used down.
    pub(super) fn plan(&mut self, class: Class) -> FaultPlan {
        let mut plan = FaultPlan {
            delay: self.latency,
            ..FaultPlan::default()
        };
        for armed in &mut self.rules {
            if armed.remaining == Some(0) || !targets(armed.rule.target, class) {
                continue;
            }
            if let Some(n) = armed.remaining.as_mut() {
                *n -= 1;
            }
            match &armed.rule.action {
                FaultAction::Delay(d) => plan.delay += *d,
                FaultAction::ConcurrentChange => plan.concurrent_change = true,
                FaultAction::ExpireTokens => plan.expire_tokens = true,
                FaultAction::DropAfterHandling => plan.drop_after_handling = true,
                FaultAction::MalformedBody => plan.shapes.push(Shape::Malformed),
                FaultAction::TruncatedBody => plan.shapes.push(Shape::Truncated),
                FaultAction::OmitField(field) => plan.shapes.push(Shape::OmitField(field.clone())),
                FaultAction::OversizedBody(bytes) => plan.shapes.push(Shape::Oversized(*bytes)),
                FaultAction::LyingTotal(total) => {
                    plan.shapes.push(Shape::LyingTotal(total.clone()))
                }
                FaultAction::CyclingCursor => plan.cursor = Some(CursorFault::Cycling),
                FaultAction::EndlessCursor => plan.cursor = Some(CursorFault::Endless),
                FaultAction::Status { code, retry_after } => {
                    plan.answer = Some(FaultAnswer::Status(*code, retry_after.clone()));
                    break;
                }
                FaultAction::Drop => {
                    plan.answer = Some(FaultAnswer::Drop);
                    break;
                }
            }
        }
        plan
    }
}

pub(super) fn targets(target: FaultTarget, class: Class) -> bool {
    match target {
        FaultTarget::Any => true,
        FaultTarget::Reads => class == Class::Read,
        FaultTarget::Writes => class == Class::Write,
        FaultTarget::Token => class == Class::Token,
    }
}
