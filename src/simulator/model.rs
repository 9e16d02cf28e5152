//! The simulators' vocabulary: which kind, which accounts, how a simulator is configured.

use std::time::Duration;

use serde::Serialize;

use super::{Faults, ScimStyle};

/// The provider kinds Roster can talk to; each has one simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimKind {
    /// Self-hosted user directory with a `status` field.
    StatusApi,
    /// Self-hosted multi-tenant app with suspend/reactivate.
    SuspendApi,
    /// Atlan.
    Atlan,
    /// ZITADEL resource API v3alpha.
    Zitadel,
    /// Acronis Account Management API v2.
    Acronis,
    /// Any SCIM 2.0 service provider.
    Scim,
}

impl SimKind {
    /// Every kind, for `roster demo` and for tests that cover them all.
    pub const ALL: [SimKind; 6] = [
        SimKind::StatusApi,
        SimKind::SuspendApi,
        SimKind::Atlan,
        SimKind::Zitadel,
        SimKind::Acronis,
        SimKind::Scim,
    ];

    /// The name used in configuration files and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            SimKind::StatusApi => "status-api",
            SimKind::SuspendApi => "suspend-api",
            SimKind::Atlan => "atlan",
            SimKind::Zitadel => "zitadel",
            SimKind::Acronis => "acronis",
            SimKind::Scim => "scim",
        }
    }

    /// The field of a list record that carries the account's status (what the
    /// `OmitField` fault removes to make a record miss its status).
    pub fn status_field(&self) -> &'static str {
        match self {
            SimKind::StatusApi => "status",
            SimKind::SuspendApi | SimKind::Scim => "active",
            SimKind::Atlan | SimKind::Acronis => "enabled",
            SimKind::Zitadel => "state",
        }
    }

    /// The kind with this [`name`](Self::name), if any.
    pub fn parse(s: &str) -> Option<SimKind> {
        SimKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl std::fmt::Display for SimKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One account as the simulator stores it, in kind-neutral terms; each kind renders it in its
/// own JSON (see the field comments for what `name` and `status` mean per kind).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SimUser {
    /// The API's id: a uuid, or digits for zitadel.
    pub id: String,
    /// identifier (status-api), email (suspend-api), username (atlan, zitadel), login (acronis).
    pub name: String,
    /// `active` or `inactive`; status-api also `onboarding`, `suspended`, `risky`; atlan
    /// `unknown` (`enabled: null`); zitadel `locked` (and `initial`).
    pub status: String,
    /// Atlan `$admin`, suspend-api `is_owner`: the accounts the APIs refuse to deactivate.
    #[serde(default)]
    pub privileged: bool,
    /// Revision, rendered by acronis as `version`; every change of the account increments it.
    #[serde(default = "one")]
    pub version: u64,
}

pub(super) fn one() -> u64 {
    1
}

/// How to run one simulator. Build it with [`SimConfig::new`] and change the fields a test needs.
/// `Debug` prints the token as `***`.
#[derive(Clone)]
pub struct SimConfig {
    pub kind: SimKind,
    /// The accounts the simulator starts with (generated or from a fixture).
    pub users: Vec<SimUser>,
    /// The bearer token the API accepts; for acronis the client secret.
    pub token: String,
    /// Acronis OAuth client id.
    pub client_id: String,
    /// The `X-Tenant-ID` suspend-api expects; it is also acronis' `tenant_id`.
    pub tenant_id: String,
    /// Zitadel: when set, every request must carry `?organization.orgId=<it>`, else 403.
    pub organization_id: Option<String>,
    /// The `X-API-Version` status-api expects; anything else answers 400.
    pub api_version: String,
    /// The most records one list page returns, whatever the client asks for.
    pub page_size_max: usize,
    /// Lifetime of an acronis access token.
    pub token_ttl: Duration,
    /// SCIM: how `active` is served and how PATCH answers.
    pub scim: ScimStyle,
    /// Faults active from the start; [`Simulator::set_faults`] replaces them later.
    pub faults: Faults,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("kind", &self.kind)
            .field("users", &self.users.len())
            .field("token", &"***")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("organization_id", &self.organization_id)
            .field("api_version", &self.api_version)
            .field("page_size_max", &self.page_size_max)
            .field("token_ttl", &self.token_ttl)
            .field("scim", &self.scim)
            .field("faults", &self.faults)
            .finish()
    }
}

impl SimConfig {
    /// A configuration with the defaults the README examples use (token `sim-token`).
    pub fn new(kind: SimKind, users: Vec<SimUser>) -> SimConfig {
        SimConfig {
            kind,
            users,
            token: "sim-token".to_string(),
            client_id: "roster-client".to_string(),
            tenant_id: "3f6c2a9e-5b1d-4c7e-8a2f-9d0e1b4c6a83".to_string(),
            organization_id: None,
            api_version: "v1".to_string(),
            page_size_max: 100,
            token_ttl: Duration::from_secs(2 * 60 * 60),
            scim: ScimStyle::default(),
            faults: Faults::default(),
        }
    }
}
