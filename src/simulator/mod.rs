//! Built-in provider simulators: one small HTTP server per provider kind, speaking exactly the
//! APIs described in `providers/README.md`, so `roster demo`, the tests and the benchmarks can run
//! without any real SaaS account.
//!
//! How the parts fit: [`server`] runs the HTTP server behind a [`Simulator`] handle and sends
//! `/_sim/*` to [`admin`], every other request to [`pipeline`]. The pipeline asks [`faults`] what
//! to do to the request, lets the kind (through the [`kind`] seam) admit and answer it against
//! the [`store`], and records it in the [`log`]. [`state`] is what all of them share;
//! [`model`] the public vocabulary (kinds, accounts, configuration); [`connection`] cuts
//! connections for dropped-answer faults, [`redact`] keeps secrets out of the log, [`fixture`]
//! makes accounts and [`util`] holds the helpers the kinds share. Each kind's file only adds its
//! routes, JSON rendering and quirks through the `KindApi` trait; a new kind is one new file plus
//! one line in the `api` registry. The glob imports below make each part's crate-private
//! items reachable as `super::name` from its siblings, so the parts import each other by name.

mod acronis;
mod admin;
mod atlan;
mod connection;
mod faults;
mod fixture;
mod kind;
mod log;
mod model;
mod pipeline;
mod redact;
mod scim;
mod server;
mod state;
mod status_api;
mod store;
mod suspend_api;
mod util;
mod zitadel;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use faults::{load_faults, FaultAction, FaultRule, FaultTarget, Faults, FaultsFileError};
pub use fixture::{load_fixture, FixtureError};
pub use log::RecordedRequest;
pub use model::{SimConfig, SimKind, SimUser};
pub use scim::ScimStyle;
pub use server::{serve_forever, Simulator};

use admin::*;
use connection::{ConnHandle, SimListener};
use faults::*;
use kind::*;
use log::*;
use pipeline::*;
use redact::recorded;
use state::*;
use store::*;
use util::*;
