//! The vocabulary the engine and the provider adapters share: statuses, what an adapter
//! observed, the change it is asked to make, what the write achieved, and the data that
//! describes a kind.
//!
//! It sits at the bottom of the crate so the arrows run one way: `desired` and the
//! adapters in `provider` depend on it, `plan` is computed from it, and the executors
//! (`apply`, the daemon, `status`, `import`) sit above all of them. Nothing here does I/O.

pub use crate::status::Status;
use serde::Serialize;
use std::collections::HashMap;

/// What the rest of Roster must know about one provider kind to validate a folder: its
/// name in `providers.yaml`, the statuses it can set and the settings and credentials it
/// takes. Pure data, so the loader can check a folder without knowing any adapter; the
/// adapter that speaks the kind pairs it with a `connect` function in
/// [`crate::provider::Kind`].
#[derive(Debug)]
pub struct KindSpec {
    pub name: &'static str,
    /// Statuses a user file may ask for; `active` and `inactive` are always among them.
    pub statuses: &'static [&'static str],
    pub auth: AuthStyle,
    /// Kind-specific keys of an instance in `providers.yaml`.
    pub settings: &'static [Setting],
}

/// Every kind a folder may name, handed to the loader by the caller that knows the
/// adapters (`provider::specs()`), so that validating a folder never depends on them.
pub type KindRegistry = &'static [&'static KindSpec];

/// How a kind authenticates, which decides the keys allowed under `auth:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStyle {
    /// `bearer_token_env` or `bearer_token_file`.
    Bearer,
    /// OAuth2 client credentials: `client_id_env|file` and `client_secret_env|file`.
    ClientCredentials,
}

/// A kind-specific key of an instance, such as `tenant_id` for `suspend-api`.
#[derive(Debug)]
pub struct Setting {
    pub key: &'static str,
    pub required: bool,
}

/// The live view of the accounts one instance was asked about, keyed by the account id
/// exactly as the desired state names it. An id that is absent was not found.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub accounts: HashMap<String, AccountObservation>,
}

/// What a provider said about one account.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountObservation {
    Found(ObservedAccount),
    /// The account could not be read (403 on a targeted read, say); the message says why.
    Failed(String),
}

/// The live state of one account, with everything the pure plan function needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedAccount {
    pub status: Status,
    /// Set when the provider is known to refuse some changes to this account.
    pub refusal: Option<Refusal>,
    /// An opaque revision the write must carry (Acronis `version`); never invented.
    pub revision: Option<u64>,
}

impl ObservedAccount {
    pub fn new(status: Status) -> Self {
        ObservedAccount {
            status,
            refusal: None,
            revision: None,
        }
    }
}

/// A change the provider refuses, known before any write is attempted (Atlan admins,
/// the suspend-api tenant owner, ZITADEL locked users).
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub applies_to: RefusalScope,
    pub reason: String,
}

/// Which changes a [`Refusal`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalScope {
    /// Any move away from `active` (an admin may be re-enabled, not disabled).
    Deactivation,
    /// Every change.
    AnyChange,
}

impl Refusal {
    /// Whether this refusal blocks moving the account to `to`.
    pub fn blocks(&self, to: &Status) -> bool {
        match self.applies_to {
            RefusalScope::AnyChange => true,
            RefusalScope::Deactivation => !to.is_active(),
        }
    }
}

/// What a single write achieved.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// The provider made the change.
    Applied { http_status: u16 },
    /// The account was already in the desired status when the write landed (a race with
    /// a person or another tool); nothing left to do.
    AlreadyConverged { http_status: u16, note: String },
    /// The provider refused the change for a known reason (admin, owner): a blocked entry.
    Refused { http_status: u16, reason: String },
}

/// One status change: a single write call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub provider: String,
    pub user: String,
    pub account_id: String,
    pub from: Status,
    pub to: Status,
    /// The user's `reason`, sent where an API takes a comment.
    #[serde(skip)]
    pub reason: Option<String>,
    /// The revision read with the status (Acronis `version`), for optimistic concurrency.
    #[serde(skip)]
    pub revision: Option<u64>,
}

/// Every account an instance holds, as its API lists them: what `roster status
/// --unmanaged` and `roster import` start from.
#[derive(Clone, Debug, PartialEq)]
pub enum Inventory {
    /// The whole list, in the provider's order.
    Listed(Vec<HeldAccount>),
    /// This instance cannot list all its accounts (an `acronis` instance without
    /// `tenant_id`); the reason is shown once for the instance instead of an empty list.
    CannotList { reason: String },
}

/// One account a provider holds, with the identity fields its API gives.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldAccount {
    /// The id a user file would name the account by.
    pub id: String,
    /// Other keys a user file may name the same account by (status-api's `identifier`,
    /// SCIM's `userName`), so a claimed account is recognised under any of them.
    pub aliases: Vec<String>,
    /// The login or user name, where the API gives one.
    pub login: Option<String>,
    /// The email address, where the API gives one.
    pub email: Option<String>,
    /// The live status, with the changes the provider is known to refuse.
    pub live: ObservedAccount,
}
