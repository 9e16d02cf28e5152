//! A user file read the positioned way: every rule of a user and of its accounts,
//! reported where it is broken.

use super::super::bounds::{AccountBounds, RawBounds};
use super::super::yaml::{suggest, FileReader};
use super::super::{Account, Location, Problem, User};
use super::providers::Instances;
use crate::model::KindRegistry;
use crate::status::Status;
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

pub(super) const USER_KEYS: &[&str] = &[
    "name", "status", "reason", "accounts", "from", "until", "then", "before",
];
pub(super) const ACCOUNT_KEYS: &[&str] = &["id", "status", "from", "until", "then", "before"];
/// Reads a user file's users; `names` receives every user's name with its position,
/// including users with other problems, so a duplicate name is always reported.
pub(super) fn read_users(
    node: &Node,
    file: &str,
    instances: &Instances,
    users: &mut Vec<User>,
    names: &mut Vec<(String, Location)>,
    problems: &mut Vec<Problem>,
) {
    let mut r = FileReader::new(file, problems);
    let Some(top) = r.mapping(node, "a user file") else {
        return;
    };
    r.check_keys(top, &["users"], "a user file");
    let Some(list_node) = top.get_node("users") else {
        if top.get_node("providers").is_some() {
            r.problem(
                FileReader::map_start(top),
                "providers are defined only in providers.yaml at the root of the folder",
            );
        } else if top.keys().all(|k| k.as_str() == "users") {
            r.problem(
                FileReader::map_start(top),
                "a user file needs the key 'users'",
            );
        }
        return;
    };
    let list = match list_node {
        Node::Sequence(list) => list,
        Node::Scalar(s) if s.as_str().is_empty() || s.as_str() == "~" => {
            let key = top
                .keys()
                .find(|k| k.as_str() == "users")
                .map_or(s.span(), |k| k.span());
            r.problem(
                key,
                "'users' is empty: list the users, or write `users: []` if this file is meant to hold none",
            );
            return;
        }
        other => {
            r.problem(
                FileReader::start(other),
                "'users' must be a list (each entry starting with '- name: ...')",
            );
            return;
        }
    };
    for entry in list.iter() {
        if let Some(name) = entry.as_mapping().and_then(|m| m.get_scalar("name")) {
            names.push((name.as_str().to_string(), r.location(name.span())));
        }
        if let Some(user) = read_user(&mut r, entry, instances) {
            users.push(user);
        }
    }
}

fn read_user(r: &mut FileReader, node: &Node, instances: &Instances) -> Option<User> {
    let map = r.mapping(node, "a user")?;
    let problems_before = r.count();
    r.check_keys(map, USER_KEYS, "a user");
    let name = r
        .required(map, "name", "a user")
        .map(|n| n.as_str().to_string());
    let what = format!("user '{}'", name.as_deref().unwrap_or("?"));
    let default_status = r.optional(map, "status", &what);
    if let Some(status) = default_status {
        let all: Vec<&str> = all_statuses(instances.registry);
        if !all.contains(&status.as_str()) {
            let hint = suggest(status.as_str(), &all)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            r.problem(
                status.span(),
                format!(
                    "unknown status '{}' for {what}{hint}; statuses: {}",
                    status.as_str(),
                    all.join(", ")
                ),
            );
        }
    }
    let reason = r
        .optional(map, "reason", &what)
        .map(|s| s.as_str().to_string());
    let bounds = RawBounds::read(r, map, &what, &all_statuses(instances.registry));
    bounds.check_order(r, &what);
    let mut accounts = Vec::new();
    if let Some(accounts_node) = map.get_node("accounts") {
        match accounts_node {
            Node::Mapping(accounts_map) => {
                check_user_bounds_apply(r, &bounds, accounts_map, &what);
                for (instance, value) in accounts_map.iter() {
                    let user = UserDefaults {
                        status: default_status,
                        bounds,
                        what: &what,
                    };
                    if let Some(account) = read_account(r, instance, value, &user, instances) {
                        accounts.push(account);
                    }
                }
            }
            Node::Scalar(s) if s.as_str().is_empty() || s.as_str() == "~" => {}
            other => r.problem(
                FileReader::start(other),
                format!("'accounts' of {what} must map provider instances to account ids"),
            ),
        }
    }
    if r.count() > problems_before {
        return None;
    }
    Some(User {
        name: name?,
        reason,
        accounts,
        location: r.location(FileReader::map_start(map)),
    })
}

/// A user-level `then` (or `before`) needs an `until` (or `from`) on the user or on one
/// of its accounts; otherwise it is a mistake that would silently do nothing.
fn check_user_bounds_apply(
    r: &mut FileReader,
    bounds: &RawBounds,
    accounts: &MarkedMappingNode,
    what: &str,
) {
    let any_account_sets = |key: &str| {
        accounts.iter().any(|(_, value)| {
            value
                .as_mapping()
                .is_some_and(|m| m.get_node(key).is_some())
        })
    };
    for (key, node, bound, set) in [
        ("then", bounds.then, "until", bounds.until.is_some()),
        ("before", bounds.before, "from", bounds.from.is_some()),
    ] {
        if let Some(node) = node {
            if !set && !any_account_sets(bound) {
                r.problem(
                    node.span(),
                    format!(
                        "'{key}' of {what} never takes effect: neither the user nor any of its accounts sets '{bound}'"
                    ),
                );
            }
        }
    }
}

/// What an account inherits from its user.
struct UserDefaults<'u, 'n> {
    status: Option<&'n marked_yaml::types::MarkedScalarNode>,
    bounds: RawBounds<'n>,
    what: &'u str,
}

pub(super) fn all_statuses(registry: KindRegistry) -> Vec<&'static str> {
    let mut all: Vec<&str> = registry
        .iter()
        .flat_map(|k| k.statuses.iter().copied())
        .collect();
    all.sort();
    all.dedup();
    all
}

fn read_account(
    r: &mut FileReader,
    instance: &marked_yaml::types::MarkedScalarNode,
    value: &Node,
    user: &UserDefaults,
    instances: &Instances,
) -> Option<Account> {
    let (default_status, user_what) = (user.status, user.what);
    let instance_name = instance.as_str();
    let what = format!("account '{instance_name}' of {user_what}");
    let (id, own_status, own_bounds) = match value {
        Node::Mapping(map) => {
            r.check_keys(map, ACCOUNT_KEYS, &what);
            (
                r.required(map, "id", &what),
                r.optional(map, "status", &what),
                RawBounds::read(r, map, &what, &all_statuses(instances.registry)),
            )
        }
        other => (
            r.string(other, &format!("the id of {what}")),
            None,
            RawBounds::default(),
        ),
    };
    if let Some(id) = id {
        let text = id.as_str();
        if text == "." || text == ".." || text.chars().any(char::is_control) {
            r.problem(
                id.span(),
                format!("account id '{text}' of {what} cannot be sent to a provider"),
            );
        }
    }
    let kind = match instances.kinds.get(instance_name) {
        Some(kind) => *kind,
        None => {
            let names: Vec<&str> = instances.kinds.keys().map(String::as_str).collect();
            let hint = suggest(instance_name, &names)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_else(|| {
                    format!(
                        "; defined instances: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                });
            r.problem(
                instance.span(),
                format!("unknown provider instance '{instance_name}' for {user_what}{hint}"),
            );
            return None;
        }
    };
    let status = match (own_status, default_status) {
        (Some(own), _) => own,
        (None, Some(default)) => default,
        (None, None) => {
            r.problem(
                instance.span(),
                format!("{what} has no status: set 'status' on the user or on this account"),
            );
            return None;
        }
    };
    if own_status.is_none() && !all_statuses(instances.registry).contains(&status.as_str()) {
        // An unknown default status is reported once, at the user's own 'status'; the
        // accounts that inherit it add nothing.
        return None;
    }
    if let Some(kind) = kind {
        if !kind.statuses.contains(&status.as_str()) {
            let origin = if own_status.is_some() {
                String::new()
            } else {
                format!(" (the default of {user_what})")
            };
            let hint = suggest(status.as_str(), kind.statuses)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            let at = if own_status.is_some() {
                status.span()
            } else {
                instance.span()
            };
            r.problem(
                at,
                format!(
                    "status '{}'{origin} cannot be set at '{instance_name}' (kind {}){hint}; it accepts: {}",
                    status.as_str(),
                    kind.name,
                    kind.statuses.join(", ")
                ),
            );
        }
    }
    let bounds = AccountBounds {
        own: own_bounds,
        user: user.bounds,
        instance: instance.span(),
        instance_name,
        what: &what,
        user_what,
    }
    .resolve(r, kind);
    let id = id?;
    Some(Account {
        instance: instance_name.to_string(),
        id: id.as_str().to_string(),
        status: Status::new(status.as_str()),
        bounds,
        location: r.location(id.span()),
    })
}
