//! Helpers the tests of every kind share.

use super::*;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

pub(super) fn user(id: &str, name: &str, status: &str) -> SimUser {
    SimUser {
        id: id.to_string(),
        name: name.to_string(),
        status: status.to_string(),
        privileged: false,
        version: 1,
    }
}

pub(super) async fn start(kind: SimKind, users: Vec<SimUser>) -> Simulator {
    Simulator::start(SimConfig::new(kind, users))
        .await
        .expect("start simulator")
}

/// One path segment, percent-encoded the way a careful client does it.
pub(super) fn encode(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

pub(super) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}
