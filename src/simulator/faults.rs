//! The fault layer: the misbehaviour a test or an operator can switch on, and the per-request
//! decision of which of it applies (latency, injected answers, side effects).

use std::time::Duration;

use super::*;

/// Misbehaviour to inject, so retries, backoff and concurrency limits can be tested.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added to every API request before it is handled.
    pub latency: Duration,
    /// Checked in order for each request. `Delay`, `ConcurrentChange` and `ExpireTokens` stack;
    /// the first matching `Status` or `Drop` answers and ends the walk.
    pub rules: Vec<FaultRule>,
}

/// One fault: which requests, how many times, what happens.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Which requests it applies to.
    pub target: FaultTarget,
    /// How many matching requests it affects; 0 means every matching request, forever.
    pub times: u32,
    /// What happens to them.
    pub action: FaultAction,
}

/// Which API requests a fault rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// What a fault does to a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer this status with a JSON error body in the kind's error shape, and `Retry-After`
    /// when set.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Close the connection without an answer.
    Drop,
    /// Extra latency for these requests.
    Delay(Duration),
    /// Just before a write is handled, "someone else" edits the account: acronis bumps the
    /// version (the write gets 409); zitadel sets the state the write asks for (the write gets
    /// 400 FAILED_PRECONDITION); other kinds only bump `updated_at`.
    ConcurrentChange,
    /// Acronis: every issued access token becomes invalid now, then the request is handled.
    ExpireTokens,
}

// ---------------------------------------------------------------------------------------------
// Faults.

pub(super) struct FaultState {
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
}

pub(super) enum FaultAnswer {
    Status(u16, Option<String>),
    Drop,
}

impl FaultState {
    pub(super) fn new(faults: Faults) -> FaultState {
        let rules = faults
            .rules
            .into_iter()
            .map(|rule| ArmedRule {
                remaining: (rule.times > 0).then_some(rule.times),
                rule,
            })
            .collect();
        FaultState {
            latency: faults.latency,
            rules,
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
