//! `providers.yaml`: the provider instances, each checked against its kind (keys,
//! settings, auth style), with every problem at its position.

use super::super::secrets::{looks_like_secret, quoted, valid_env_name};
use super::super::yaml::{suggest, FileReader};
use super::super::{AuthConfig, InstanceConfig, Problem, SecretSource};
use crate::model::{AuthStyle, KindRegistry, KindSpec};
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

const COMMON_INSTANCE_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "auth",
    "max_concurrency",
    "requests_per_second",
    "timeout",
    "max_changes",
    "allow_insecure_http",
    "ca_file",
];
const DEFAULT_MAX_CONCURRENCY: usize = 8;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CHANGES: usize = 25;

/// Instances read from `providers.yaml`: the valid ones, plus the kind (if known) of
/// every named one, so that user files are not flooded with "unknown instance" errors
/// for an instance whose own definition has a typo.
pub(super) struct Instances {
    pub(super) valid: BTreeMap<String, InstanceConfig>,
    pub(super) kinds: BTreeMap<String, Option<&'static KindSpec>>,
    /// Every kind a file may name; its statuses are what a user-level status may be.
    pub(super) registry: KindRegistry,
}

impl Instances {
    /// No instance yet (providers.yaml missing or unreadable).
    pub(super) fn none(registry: KindRegistry) -> Self {
        Instances {
            valid: BTreeMap::new(),
            kinds: BTreeMap::new(),
            registry,
        }
    }
}

pub(super) fn read_providers(
    node: &Node,
    file: &str,
    problems: &mut Vec<Problem>,
    registry: KindRegistry,
) -> Instances {
    let mut r = FileReader::new(file, problems);
    let mut instances = Instances::none(registry);
    let Some(top) = r.mapping(node, "providers.yaml") else {
        return instances;
    };
    r.check_keys(top, &["providers"], "providers.yaml");
    let Some(providers_node) = top.get_node("providers") else {
        r.problem(
            FileReader::map_start(top),
            "providers.yaml is missing the key 'providers'",
        );
        return instances;
    };
    let Some(providers) = r.mapping(providers_node, "'providers'") else {
        return instances;
    };
    for (name, body) in providers.iter() {
        let name_text = name.as_str();
        if !valid_instance_name(name_text) {
            r.problem(
                name.span(),
                format!("invalid instance name '{name_text}': use lower-case letters, digits, '-' and '_', starting with a letter or digit"),
            );
        }
        let what = format!("provider '{name_text}'");
        let Some(map) = r.mapping(body, &what) else {
            instances.kinds.insert(name_text.to_string(), None);
            continue;
        };
        let kind = read_kind(&mut r, map, &what, registry);
        instances.kinds.insert(name_text.to_string(), kind);
        if let Some(config) = read_instance(&mut r, name_text, map, kind, &what) {
            if valid_instance_name(name_text) {
                instances.valid.insert(name_text.to_string(), config);
            }
        }
    }
    instances
}

fn valid_instance_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn read_kind(
    r: &mut FileReader,
    map: &MarkedMappingNode,
    what: &str,
    registry: KindRegistry,
) -> Option<&'static KindSpec> {
    let kind = r.required(map, "kind", what)?;
    let found = registry.iter().copied().find(|k| k.name == kind.as_str());
    if found.is_none() {
        let names: Vec<&str> = registry.iter().map(|k| k.name).collect();
        let hint = suggest(kind.as_str(), &names)
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        r.problem(
            kind.span(),
            format!(
                "unknown kind {}{hint}; known kinds: {}",
                quoted(kind.as_str()),
                names.join(", ")
            ),
        );
    }
    found
}

fn read_instance(
    r: &mut FileReader,
    name: &str,
    map: &MarkedMappingNode,
    kind: Option<&'static KindSpec>,
    what: &str,
) -> Option<InstanceConfig> {
    let problems_before = r.count();
    if let Some(kind) = kind {
        let allowed: Vec<&str> = COMMON_INSTANCE_KEYS
            .iter()
            .copied()
            .chain(kind.settings.iter().map(|s| s.key))
            .collect();
        r.check_keys(map, &allowed, what);
    }
    let allow_insecure_http = match map.get_node("allow_insecure_http") {
        None => false,
        Some(node) => match node.as_scalar().and_then(|s| s.as_bool()) {
            Some(b) => b,
            None => {
                r.problem(
                    node.span(),
                    format!("'allow_insecure_http' of {what} must be true or false"),
                );
                false
            }
        },
    };
    let base_url = r.required(map, "base_url", what).and_then(|value| {
        match Url::parse(value.as_str()) {
            Ok(url) if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") => {
                r.problem(value.span(), format!("'base_url' of {what} must be an http(s) URL with a host"));
                None
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                r.problem(value.span(), format!("'base_url' of {what} must not hold a user name or password (the URL is not shown); credentials go in 'auth'"));
                None
            }
            Ok(url) if url.query().is_some() || url.fragment().is_some() => {
                r.problem(value.span(), format!("'base_url' of {what} must not have a query or fragment"));
                None
            }
            Ok(url) if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) => {
                r.problem(
                    value.span(),
                    format!("'base_url' of {what} must use https:// (plain http is only allowed for loopback hosts, or with allow_insecure_http: true)"),
                );
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                r.problem(value.span(), format!("'base_url' of {what} is not a valid URL: {e}"));
                None
            }
        }
    });
    let auth = kind.and_then(|kind| read_auth(r, map, kind.auth, what));
    let max_concurrency = number(r, map, "max_concurrency", what, 1.0, 1024.0).map(|n| n as usize);
    let requests_per_second = number(r, map, "requests_per_second", what, 0.001, 100_000.0);
    let max_changes = number(r, map, "max_changes", what, 0.0, 1_000_000.0).map(|n| n as usize);
    let timeout =
        r.optional(map, "timeout", what).and_then(|value| {
            match humantime::parse_duration(value.as_str()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    r.problem(
                        value.span(),
                        format!("'timeout' of {what} must be longer than zero"),
                    );
                    None
                }
                Err(e) => {
                    r.problem(
                        value.span(),
                        format!("'timeout' of {what} is not a duration such as 30s or 2m: {e}"),
                    );
                    None
                }
            }
        });
    // A relative `ca_file` is relative to the folder that holds providers.yaml.
    let ca_file = r.optional(map, "ca_file", what).map(|value| {
        let folder = Path::new(r.file).parent().unwrap_or(Path::new(""));
        folder.join(value.as_str())
    });
    let mut settings = BTreeMap::new();
    if let Some(kind) = kind {
        for setting in kind.settings {
            let value = if setting.required {
                r.required(map, setting.key, what)
            } else {
                r.optional(map, setting.key, what)
            };
            if let Some(value) = value {
                settings.insert(setting.key.to_string(), value.as_str().to_string());
            }
        }
    }
    if r.count() > problems_before {
        return None;
    }
    Some(InstanceConfig {
        name: name.to_string(),
        kind: kind?,
        base_url: base_url?,
        auth: auth?,
        max_concurrency: max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        requests_per_second,
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        max_changes: max_changes.unwrap_or(DEFAULT_MAX_CHANGES),
        settings,
        ca_file,
        location: r.location(FileReader::map_start(map)),
    })
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An optional number key within `[min, max]`.
fn number(
    r: &mut FileReader,
    map: &MarkedMappingNode,
    key: &str,
    what: &str,
    min: f64,
    max: f64,
) -> Option<f64> {
    let value = r.optional(map, key, what)?;
    let parsed = value.as_str().parse::<f64>().ok().filter(|n| n.is_finite());
    let integer = !matches!(key, "requests_per_second");
    match parsed {
        Some(n) if n >= min && n <= max && (!integer || n.fract() == 0.0) => Some(n),
        _ => {
            let kind = if integer {
                "a whole number"
            } else {
                "a number"
            };
            r.problem(
                value.span(),
                format!(
                    "'{key}' of {what} must be {kind} from {min} to {max}, got {}",
                    quoted(value.as_str())
                ),
            );
            None
        }
    }
}

fn read_auth(
    r: &mut FileReader,
    map: &MarkedMappingNode,
    style: AuthStyle,
    what: &str,
) -> Option<AuthConfig> {
    let Some(node) = map.get_node("auth") else {
        r.problem(
            FileReader::map_start(map),
            format!("{what} is missing the required key 'auth'"),
        );
        return None;
    };
    let auth = r.mapping(node, &format!("'auth' of {what}"))?;
    let auth_what = format!("'auth' of {what}");
    match style {
        AuthStyle::Bearer => {
            r.check_keys(auth, &["bearer_token_env", "bearer_token_file"], &auth_what);
            check_unknown_auth_values(
                r,
                auth,
                &["bearer_token_env", "bearer_token_file"],
                &auth_what,
            );
            secret_source(r, auth, "bearer_token", &auth_what).map(AuthConfig::Bearer)
        }
        AuthStyle::ClientCredentials => {
            r.check_keys(
                auth,
                &[
                    "client_id_env",
                    "client_id_file",
                    "client_secret_env",
                    "client_secret_file",
                ],
                &auth_what,
            );
            check_unknown_auth_values(
                r,
                auth,
                &[
                    "client_id_env",
                    "client_id_file",
                    "client_secret_env",
                    "client_secret_file",
                ],
                &auth_what,
            );
            let client_id = secret_source(r, auth, "client_id", &auth_what);
            let client_secret = secret_source(r, auth, "client_secret", &auth_what);
            Some(AuthConfig::ClientCredentials {
                client_id: client_id?,
                client_secret: client_secret?,
            })
        }
    }
}

/// A secret pasted as the value of an unknown key of `auth:` (`token: ghp_...`) is
/// reported on top of the unknown key, without its value, so that it gets revoked.
fn check_unknown_auth_values(
    r: &mut FileReader,
    auth: &MarkedMappingNode,
    known: &[&str],
    what: &str,
) {
    for (key, value) in auth.iter() {
        if known.contains(&key.as_str()) || looks_like_secret(key.as_str(), false).is_some() {
            continue;
        }
        if let Some(looks) = value
            .as_scalar()
            .and_then(|v| looks_like_secret(v.as_str(), false))
        {
            r.problem(
                value.span(),
                format!("the value of '{}' in {what} looks like {looks}; it is not shown: write the name of an environment variable or the path of a file instead, and if it is a real secret, revoke it", key.as_str()),
            );
        }
    }
}

/// Exactly one of `<stem>_env` and `<stem>_file`.
fn secret_source(
    r: &mut FileReader,
    auth: &MarkedMappingNode,
    stem: &str,
    what: &str,
) -> Option<SecretSource> {
    let env_key = format!("{stem}_env");
    let file_key = format!("{stem}_file");
    let env = r.optional(auth, &env_key, what);
    let file = r.optional(auth, &file_key, what);
    match (env, file) {
        (Some(_), Some(file)) => {
            r.problem(
                file.span(),
                format!("{what}: give either '{env_key}' or '{file_key}', not both"),
            );
            None
        }
        (Some(env), None) => {
            let name = env.as_str();
            if let Some(looks) = looks_like_secret(name, false) {
                r.problem(
                    env.span(),
                    pasted_secret(&env_key, what, looks, "the name of the environment variable that holds it (for example ATLAN_API_TOKEN)"),
                );
                None
            } else if valid_env_name(name) {
                Some(SecretSource::Env(name.to_string()))
            } else {
                r.problem(
                    env.span(),
                    format!("'{env_key}' of {what} must name an environment variable (letters, digits, '_'), never hold the secret itself; the value is not shown"),
                );
                None
            }
        }
        (None, Some(file)) => match looks_like_secret(file.as_str(), true) {
            Some(looks) => {
                r.problem(
                    file.span(),
                    pasted_secret(
                        &file_key,
                        what,
                        looks,
                        "the path of the file that holds it (for example /run/secrets/atlan)",
                    ),
                );
                None
            }
            None => Some(SecretSource::File(PathBuf::from(file.as_str()))),
        },
        (None, None) => {
            if auth.get_node(&env_key).is_none() && auth.get_node(&file_key).is_none() {
                r.problem(
                    FileReader::map_start(auth),
                    format!(
                        "{what} needs '{env_key}' (an environment variable name) or '{file_key}'"
                    ),
                );
            }
            None
        }
    }
}

/// The problem for a secret pasted where its name or path belongs. The value itself is
/// never part of the message.
fn pasted_secret(key: &str, what: &str, looks: &str, instead: &str) -> String {
    format!(
        "'{key}' of {what} holds what looks like {looks}, not a name: write {instead}, never the secret itself. The value is not shown; if it is a real secret, revoke it, since it is now in this file's history"
    )
}
