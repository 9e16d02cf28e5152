//! What a pass of an instance loop is: why it ran and how it ended. Shared by the loop
//! that schedules passes and the metrics that count them.

use std::fmt;

/// Why a pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The first pass after the daemon started.
    Startup,
    /// The periodic pass that catches drift made at the provider.
    Interval,
    /// The folder changed what this instance should look like (or it was just added).
    FolderChanged,
    /// The previous pass failed; backing off.
    Retry,
    /// This replica just acquired the leader-election lease.
    LeaderElected,
    /// A `from` or `until` of one of this instance's accounts was just reached.
    Scheduled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Interval => "interval",
            Reason::FolderChanged => "folder_changed",
            Reason::Retry => "retry",
            Reason::LeaderElected => "leader_elected",
            Reason::Scheduled => "scheduled",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a pass ended, for scheduling and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassResult {
    /// Everything read, every needed write made.
    Success,
    /// A read or a write failed, or the instance could not be connected.
    Error,
    /// The safety guard refused the pass: reported every pass, but not retried early,
    /// since only a person (or a folder change) can resolve it.
    Refused,
    /// Shutdown (or the instance leaving the folder) interrupted the pass.
    Interrupted,
}

impl PassResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PassResult::Success => "success",
            PassResult::Error => "error",
            PassResult::Refused => "refused",
            PassResult::Interrupted => "interrupted",
        }
    }
}
