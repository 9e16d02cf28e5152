//! Roster: declarative reconciliation of SaaS account statuses.
//!
//! The folder of YAML files ([`desired`]) says which status each account should have;
//! adapters ([`provider`]) read the live status; a pure function ([`plan`]) diffs them;
//! executors ([`apply`], [`daemon`]) make only the calls needed to converge.

pub mod access;
pub mod apply;
pub mod audit;
pub mod cli;
pub mod daemon;
pub mod demo;
pub mod desired;
pub mod escape;
pub mod import;
pub mod lease;
pub mod lock;
pub mod model;
pub mod notify;
pub mod plan;
pub mod progress;
pub mod provider;
pub mod reconcile;
pub mod report;
pub mod secret;
pub mod simulator;
pub mod status;
