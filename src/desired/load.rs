//! Reads a desired-state folder from disk and validates it as one unit, collecting every
//! problem of every file before answering.

use super::yaml::{suggest, FileReader};
use super::{
    Account, AuthConfig, DesiredState, InstanceConfig, InvalidFolder, Location, Problem,
    SecretSource, User,
};
use crate::provider::{self, AuthStyle, KindSpec};
use crate::status::Status;
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{LoaderOptions, Node};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The file at the root of the folder that defines provider instances.
pub const PROVIDERS_FILE: &str = "providers.yaml";

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
const USER_KEYS: &[&str] = &["name", "status", "reason", "accounts"];
const ACCOUNT_KEYS: &[&str] = &["id", "status"];
const DEFAULT_MAX_CONCURRENCY: usize = 8;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CHANGES: usize = 25;

/// Loads and validates the folder at `root`. No network, no secrets: safe for
/// pull-request CI. Either the whole folder is valid, or every problem is returned.
pub fn load(root: &Path) -> Result<DesiredState, InvalidFolder> {
    let mut problems = Vec::new();
    let display_root = root.to_string_lossy().trim_end_matches('/').to_string();
    let display = |relative: &Path| {
        if relative.as_os_str().is_empty() {
            display_root.clone()
        } else if display_root.is_empty() || display_root == "." {
            relative.display().to_string()
        } else {
            format!("{display_root}/{}", relative.display())
        }
    };

    if !root.is_dir() {
        return Err(InvalidFolder {
            problems: vec![Problem {
                location: Location {
                    file: display(Path::new("")),
                    ..Location::default()
                },
                message: "not a directory; pass the desired-state folder".into(),
            }],
        });
    }

    let mut files = Vec::new();
    collect_yaml_files(root, Path::new(""), 0, &mut files, &mut problems, &display);
    files.sort();

    let providers_path = Path::new(PROVIDERS_FILE);
    let instances = if files.iter().any(|f| f == providers_path) {
        let file = display(providers_path);
        read_text(&root.join(providers_path), &file, &mut problems)
            .and_then(|text| parse(&text, &file, &mut problems))
            .map(|node| read_providers(&node, &file, &mut problems))
            .unwrap_or_default()
    } else {
        problems.push(Problem {
            location: Location {
                file: display(providers_path),
                ..Location::default()
            },
            message:
                "file not found: the folder must define its provider instances in providers.yaml"
                    .into(),
        });
        Instances::default()
    };

    let mut users = Vec::new();
    let mut names = Vec::new();
    for relative in files.iter().filter(|f| f.as_path() != providers_path) {
        let file = display(relative);
        if let Some(node) = read_text(&root.join(relative), &file, &mut problems)
            .and_then(|t| parse(&t, &file, &mut problems))
        {
            read_users(
                &node,
                &file,
                &instances,
                &mut users,
                &mut names,
                &mut problems,
            );
        }
    }
    check_unique_names(&names, &mut problems);
    check_unique_accounts(&users, &mut problems);

    if problems.is_empty() {
        Ok(DesiredState {
            root: root.to_path_buf(),
            instances: instances.valid,
            users,
        })
    } else {
        let mut order: HashMap<String, usize> = HashMap::new();
        for (i, file) in std::iter::once(display(providers_path))
            .chain(files.iter().map(|f| display(f)))
            .enumerate()
        {
            order.entry(file).or_insert(i);
        }
        problems.sort_by_key(|p| {
            (
                order.get(&p.location.file).copied().unwrap_or(usize::MAX),
                p.location.line,
                p.location.column,
            )
        });
        problems.dedup();
        Err(InvalidFolder { problems })
    }
}

/// Walks the folder, skipping names that start with `.`; follows symlinks so that
/// Kubernetes ConfigMap and git-sync layouts work.
fn collect_yaml_files(
    root: &Path,
    relative: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
    display: &dyn Fn(&Path) -> String,
) {
    if depth > 32 {
        problems.push(problem_at(
            display(relative),
            "folder nesting is too deep (a symlink loop?)",
        ));
        return;
    }
    let entries = match std::fs::read_dir(root.join(relative)) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(problem_at(
                display(relative),
                &format!("cannot read folder: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text.starts_with('.') {
            continue;
        }
        let path = relative.join(&name);
        let Ok(metadata) = std::fs::metadata(root.join(&path)) else {
            problems.push(problem_at(
                display(&path),
                "cannot read (a broken symlink?)",
            ));
            continue;
        };
        if metadata.is_dir() {
            collect_yaml_files(root, &path, depth + 1, files, problems, display);
        } else if name_text.ends_with(".yaml") || name_text.ends_with(".yml") {
            files.push(path);
        }
    }
}

fn problem_at(file: String, message: &str) -> Problem {
    Problem {
        location: Location {
            file,
            ..Location::default()
        },
        message: message.to_string(),
    }
}

fn read_text(path: &Path, file: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            problems.push(problem_at(
                file.to_string(),
                &format!("cannot read file: {e}"),
            ));
            None
        }
    }
}

/// Parses one file. An empty file (or one with only comments) is `None` without a problem.
fn parse(text: &str, file: &str, problems: &mut Vec<Problem>) -> Option<Node> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        return None;
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => Some(node),
        Err(error) => {
            use marked_yaml::LoadError as E;
            let (marker, message) = match &error {
                E::TopLevelMustBeMapping(m) => (
                    Some(*m),
                    "the file must be a mapping (for example `users:`)".to_string(),
                ),
                E::DuplicateKey(inner) => (
                    inner.key.span().start().copied(),
                    format!(
                        "duplicate key '{}' (first defined on line {})",
                        inner.key.as_str(),
                        inner.prev_key.span().start().map(|m| m.line()).unwrap_or(0)
                    ),
                ),
                E::ScanError(m, e) => (Some(*m), format!("invalid YAML: {}", e.info())),
                E::UnexpectedAnchor(m) => (
                    Some(*m),
                    "YAML anchors and aliases are not supported".to_string(),
                ),
                E::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".to_string()),
                E::MappingKeyMustBeScalar(m) => {
                    (Some(*m), "mapping keys must be plain values".to_string())
                }
                other => (None, format!("invalid YAML: {other}")),
            };
            let (line, column) = marker.map(|m| (m.line(), m.column())).unwrap_or((0, 0));
            problems.push(Problem {
                location: Location {
                    file: file.to_string(),
                    line,
                    column,
                },
                message,
            });
            None
        }
    }
}

/// Instances read from `providers.yaml`: the valid ones, plus the kind (if known) of
/// every named one, so that user files are not flooded with "unknown instance" errors
/// for an instance whose own definition has a typo.
#[derive(Default)]
struct Instances {
    valid: BTreeMap<String, InstanceConfig>,
    kinds: BTreeMap<String, Option<&'static KindSpec>>,
}

fn read_providers(node: &Node, file: &str, problems: &mut Vec<Problem>) -> Instances {
    let mut r = FileReader { file, problems };
    let mut instances = Instances::default();
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
        let kind = read_kind(&mut r, map, &what);
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

fn read_kind(r: &mut FileReader, map: &MarkedMappingNode, what: &str) -> Option<&'static KindSpec> {
    let kind = r.required(map, "kind", what)?;
    let found = provider::kind(kind.as_str());
    if found.is_none() {
        let names: Vec<&str> = provider::kinds().iter().map(|k| k.name).collect();
        let hint = suggest(kind.as_str(), &names)
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        r.problem(
            kind.span(),
            format!(
                "unknown kind '{}'{hint}; known kinds: {}",
                kind.as_str(),
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
    let problems_before = r.problems.len();
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
    if r.problems.len() > problems_before {
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
                    "'{key}' of {what} must be {kind} from {min} to {max}, got '{}'",
                    value.as_str()
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
            let client_id = secret_source(r, auth, "client_id", &auth_what);
            let client_secret = secret_source(r, auth, "client_secret", &auth_what);
            Some(AuthConfig::ClientCredentials {
                client_id: client_id?,
                client_secret: client_secret?,
            })
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
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Some(SecretSource::Env(name.to_string()))
            } else {
                r.problem(
                    env.span(),
                    format!("'{env_key}' of {what} must name an environment variable (letters, digits, '_'), never hold the secret itself"),
                );
                None
            }
        }
        (None, Some(file)) => Some(SecretSource::File(PathBuf::from(file.as_str()))),
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

/// Reads a user file's users; `names` receives every user's name with its position,
/// including users with other problems, so a duplicate name is always reported.
fn read_users(
    node: &Node,
    file: &str,
    instances: &Instances,
    users: &mut Vec<User>,
    names: &mut Vec<(String, Location)>,
    problems: &mut Vec<Problem>,
) {
    let mut r = FileReader { file, problems };
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
        Node::Scalar(s) if s.as_str().is_empty() || s.as_str() == "~" => return,
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
    let problems_before = r.problems.len();
    r.check_keys(map, USER_KEYS, "a user");
    let name = r
        .required(map, "name", "a user")
        .map(|n| n.as_str().to_string());
    let what = format!("user '{}'", name.as_deref().unwrap_or("?"));
    let default_status = r.optional(map, "status", &what);
    if let Some(status) = default_status {
        let all: Vec<&str> = all_statuses();
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
    let mut accounts = Vec::new();
    if let Some(accounts_node) = map.get_node("accounts") {
        match accounts_node {
            Node::Mapping(accounts_map) => {
                for (instance, value) in accounts_map.iter() {
                    if let Some(account) =
                        read_account(r, instance, value, default_status, instances, &what)
                    {
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
    if r.problems.len() > problems_before {
        return None;
    }
    Some(User {
        name: name?,
        reason,
        accounts,
        location: r.location(FileReader::map_start(map)),
    })
}

fn all_statuses() -> Vec<&'static str> {
    let mut all: Vec<&str> = provider::kinds()
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
    default_status: Option<&marked_yaml::types::MarkedScalarNode>,
    instances: &Instances,
    user_what: &str,
) -> Option<Account> {
    let instance_name = instance.as_str();
    let what = format!("account '{instance_name}' of {user_what}");
    let (id, own_status) = match value {
        Node::Mapping(map) => {
            r.check_keys(map, ACCOUNT_KEYS, &what);
            (
                r.required(map, "id", &what),
                r.optional(map, "status", &what),
            )
        }
        other => (r.string(other, &format!("the id of {what}")), None),
    };
    if let Some(id) = id {
        let text = id.as_str();
        if text == "." || text == ".." || text.chars().any(char::is_control) {
            r.problem(
                id.span(),
                format!(
                    "account id '{}' of {what} cannot be sent to a provider",
                    text.escape_debug()
                ),
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
    let id = id?;
    Some(Account {
        instance: instance_name.to_string(),
        id: id.as_str().to_string(),
        status: Status::new(status.as_str()),
        location: r.location(id.span()),
    })
}

/// A user name is used once across the folder.
fn check_unique_names(names: &[(String, Location)], problems: &mut Vec<Problem>) {
    let mut first_use: HashMap<&str, &Location> = HashMap::new();
    for (name, location) in names {
        match first_use.get(name.as_str()) {
            Some(first) => problems.push(Problem {
                location: location.clone(),
                message: format!("user name '{name}' is already used at {first}; names must be unique across the folder"),
            }),
            None => {
                first_use.insert(name, location);
            }
        }
    }
}

/// A provider account (instance + id) is claimed by one user only.
fn check_unique_accounts(users: &[User], problems: &mut Vec<Problem>) {
    let mut claimed: HashMap<(&str, &str), (&str, &Location)> = HashMap::new();
    for user in users {
        for account in &user.accounts {
            let key = (account.instance.as_str(), account.id.as_str());
            if let Some((owner, first)) = claimed.get(&key) {
                problems.push(Problem {
                    location: account.location.clone(),
                    message: format!(
                        "account '{}' at '{}' is already claimed by user '{owner}' at {first}; an account belongs to one user",
                        account.id, account.instance
                    ),
                });
            } else {
                claimed.insert(key, (&user.name, &account.location));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDERS: &str = "\
providers:
  portal:
    kind: suspend-api
    base_url: http://127.0.0.1:9000
    tenant_id: t-1
    auth: { bearer_token_env: PORTAL_TOKEN }
  helpdesk:
    kind: status-api
    base_url: https://helpdesk.example.com
    auth:
      bearer_token_file: /run/secrets/helpdesk
  acronis:
    kind: acronis
    base_url: https://eu2-cloud.acronis.com
    auth: { client_id_env: ACRONIS_ID, client_secret_env: ACRONIS_SECRET }
";

    /// Loads a folder made of `PROVIDERS` (or `providers`) and the given user files.
    fn load_folder(providers: &str, files: &[(&str, &str)]) -> Result<DesiredState, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("providers.yaml"), providers).unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let prefix = format!("{}/", dir.path().display());
        load(dir.path()).map_err(|invalid| {
            invalid
                .problems
                .iter()
                .map(|p| p.to_string().replace(&prefix, ""))
                .collect()
        })
    }

    fn users_problems(text: &str) -> Vec<String> {
        load_folder(PROVIDERS, &[("people.yaml", text)])
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_folder_loads_with_effective_statuses() {
        let state = load_folder(
            PROVIDERS,
            &[
                ("b/team.yaml", "users:\n  - name: ben\n    status: active\n    accounts:\n      helpdesk: { id: ben, status: suspended }\n      portal: p-2\n"),
                ("a.yml", "users:\n  - name: ann\n    status: inactive\n    reason: Left (HR-1)\n    accounts:\n      portal: p-1\n"),
                (".hidden/x.yaml", "not: [valid"),
                ("notes.txt", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(state.instances.len(), 3);
        let names: Vec<&str> = state.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["ann", "ben"], "files are read in sorted path order");
        let ben = &state.users[1];
        assert_eq!(ben.accounts[0].status.as_str(), "suspended");
        assert_eq!(ben.accounts[1].status.as_str(), "active");
        assert_eq!(state.users[0].reason.as_deref(), Some("Left (HR-1)"));
        let portal = &state.instances["portal"];
        assert_eq!(portal.setting("tenant_id"), Some("t-1"));
        assert_eq!(portal.max_changes, 25);
        assert_eq!(portal.timeout, Duration::from_secs(30));
        assert_eq!(portal.max_concurrency, 8);
        assert_eq!(
            state.instances["helpdesk"].auth,
            AuthConfig::Bearer(SecretSource::File("/run/secrets/helpdesk".into()))
        );
    }

    #[test]
    fn every_user_file_rule_reports_its_position() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown user key",
                "users:\n  - name: a\n    stauts: active\n    status: active\n",
                "people.yaml:3:5: unknown key 'stauts' in a user (did you mean 'status'?)",
            ),
            (
                "unknown account key",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portal: { id: p, staus: active }\n",
                "people.yaml:5:24: unknown key 'staus' in account 'portal' of user 'a' (did you mean 'status'?)",
            ),
            (
                "unknown top-level key",
                "user:\n  - name: a\n",
                "people.yaml:1:1: unknown key 'user' in a user file (did you mean 'users'?)",
            ),
            (
                "missing name",
                "users:\n  - status: active\n",
                "people.yaml:2:5: a user is missing the required key 'name'",
            ),
            (
                "unknown instance",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portl: p\n",
                "people.yaml:5:7: unknown provider instance 'portl' for user 'a' (did you mean 'portal'?)",
            ),
            (
                "no status anywhere",
                "users:\n  - name: a\n    accounts:\n      portal: p\n",
                "people.yaml:4:7: account 'portal' of user 'a' has no status: set 'status' on the user or on this account",
            ),
            (
                "status the kind cannot set (own)",
                "users:\n  - name: a\n    accounts:\n      portal: { id: p, status: suspended }\n",
                "people.yaml:4:32: status 'suspended' cannot be set at 'portal' (kind suspend-api); it accepts: active, inactive",
            ),
            (
                "status the kind cannot set (default)",
                "users:\n  - name: a\n    status: risky\n    accounts:\n      portal: p\n",
                "people.yaml:5:7: status 'risky' (the default of user 'a') cannot be set at 'portal' (kind suspend-api); it accepts: active, inactive",
            ),
            (
                "unknown status",
                "users:\n  - name: a\n    status: actve\n",
                "people.yaml:3:13: unknown status 'actve' for user 'a' (did you mean 'active'?); statuses: active, inactive, onboarding, risky, suspended",
            ),
            (
                "empty id",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portal: \"\"\n",
                "people.yaml:5:15: the id of account 'portal' of user 'a' is empty",
            ),
            (
                "dot-dot id",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portal: \"..\"\n",
                "people.yaml:5:15: account id '..' of account 'portal' of user 'a' cannot be sent to a provider",
            ),
            (
                "users is not a list",
                "users:\n  name: a\n",
                "people.yaml:2:3: 'users' must be a list (each entry starting with '- name: ...')",
            ),
            (
                "duplicate key",
                "users:\n  - name: a\n    name: b\n",
                "people.yaml:3:5: duplicate key 'name' (first defined on line 2)",
            ),
            (
                "invalid YAML",
                "users:\n  - name: [a\n",
                "people.yaml:3:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
            ),
        ];
        let mismatches: Vec<String> = cases
            .iter()
            .filter_map(|(what, text, expected)| {
                let problems = users_problems(text);
                (problems != vec![expected.to_string()])
                    .then(|| format!("{what}: got {problems:?}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    #[test]
    fn names_and_accounts_are_unique_across_files() {
        let problems = load_folder(
            PROVIDERS,
            &[
                ("a.yaml", "users:\n  - name: jo\n    status: active\n    accounts:\n      portal: p-1\n"),
                ("b.yaml", "users:\n  - name: jo\n    status: active\n  - name: max\n    status: active\n    accounts:\n      portal: p-1\n"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            problems,
            vec![
                "b.yaml:2:11: user name 'jo' is already used at a.yaml:2:11; names must be unique across the folder".to_string(),
                "b.yaml:7:15: account 'p-1' at 'portal' is already claimed by user 'jo' at a.yaml:5:15; an account belongs to one user".to_string(),
            ]
        );
    }

    #[test]
    fn every_providers_rule_reports_its_position() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown kind",
                "providers:\n  x:\n    kind: atlan2\n    base_url: https://a.example\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:3:11: unknown kind 'atlan2' (did you mean 'atlan'?); known kinds: atlan, zitadel, acronis, status-api, suspend-api",
            ),
            (
                "plain http to a remote host",
                "providers:\n  x:\n    kind: atlan\n    base_url: http://a.example\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:4:15: 'base_url' of provider 'x' must use https:// (plain http is only allowed for loopback hosts, or with allow_insecure_http: true)",
            ),
            (
                "a secret written inline",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    auth: { bearer_token_env: \"abc-123.secret\" }\n",
                "providers.yaml:5:31: 'bearer_token_env' of 'auth' of provider 'x' must name an environment variable (letters, digits, '_'), never hold the secret itself",
            ),
            (
                "missing auth",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n",
                "providers.yaml:3:5: provider 'x' is missing the required key 'auth'",
            ),
            (
                "both env and file",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    auth: { bearer_token_env: T, bearer_token_file: /f }\n",
                "providers.yaml:5:53: 'auth' of provider 'x': give either 'bearer_token_env' or 'bearer_token_file', not both",
            ),
            (
                "bearer keys on a client-credentials kind",
                "providers:\n  x:\n    kind: acronis\n    base_url: https://a.example\n    auth: { client_id_env: I, client_secret_env: S, bearer_token_env: T }\n",
                "providers.yaml:5:53: unknown key 'bearer_token_env' in 'auth' of provider 'x' (expected one of: client_id_env, client_id_file, client_secret_env, client_secret_file)",
            ),
            (
                "missing client secret",
                "providers:\n  x:\n    kind: acronis\n    base_url: https://a.example\n    auth: { client_id_env: I }\n",
                "providers.yaml:5:13: 'auth' of provider 'x' needs 'client_secret_env' (an environment variable name) or 'client_secret_file'",
            ),
            (
                "setting of another kind",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    tenant_id: t\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:5:5: unknown key 'tenant_id' in provider 'x' (expected one of: kind, base_url, auth, max_concurrency, requests_per_second, timeout, max_changes, allow_insecure_http, ca_file)",
            ),
            (
                "bad numbers",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    max_changes: -1\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:5:18: 'max_changes' of provider 'x' must be a whole number from 0 to 1000000, got '-1'",
            ),
            (
                "bad duration",
                "providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    timeout: soon\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:5:14: 'timeout' of provider 'x' is not a duration such as 30s or 2m: expected number at 0",
            ),
            (
                "bad instance name",
                "providers:\n  My_Atlan:\n    kind: atlan\n    base_url: https://a.example\n    auth: { bearer_token_env: T }\n",
                "providers.yaml:2:3: invalid instance name 'My_Atlan': use lower-case letters, digits, '-' and '_', starting with a letter or digit",
            ),
        ];
        let mismatches: Vec<String> = cases
            .iter()
            .filter_map(|(what, text, expected)| {
                let problems = load_folder(text, &[]).err().unwrap_or_default();
                (problems != vec![expected.to_string()])
                    .then(|| format!("{what}: got {problems:?}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    #[test]
    fn insecure_http_is_allowed_for_loopback_or_when_asked() {
        for url in [
            "http://localhost:8080",
            "http://127.0.0.5",
            "http://[::1]:9000",
        ] {
            let text = format!("providers:\n  x:\n    kind: atlan\n    base_url: {url}\n    auth: {{ bearer_token_env: T }}\n");
            assert!(load_folder(&text, &[]).is_ok(), "{url}");
        }
        let text = "providers:\n  x:\n    kind: atlan\n    base_url: http://atlan.lan\n    allow_insecure_http: true\n    auth: { bearer_token_env: T }\n";
        assert!(load_folder(text, &[]).is_ok());
    }

    #[test]
    fn a_missing_providers_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let problems = load(dir.path()).unwrap_err().problems;
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().ends_with("providers.yaml: file not found: the folder must define its provider instances in providers.yaml"));
    }

    #[test]
    fn all_problems_of_all_files_come_at_once() {
        let problems = load_folder(
            "providers:\n  x:\n    kind: nope\n",
            &[
                ("a.yaml", "users:\n  - name: a\n    stauts: x\n"),
                (
                    "b.yaml",
                    "users:\n  - name: b\n    status: active\n    accounts: { y: 1 }\n",
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with(
            "providers.yaml:3:5: provider 'x' is missing the required key 'base_url'"
        ));
        assert!(problems[1].starts_with("providers.yaml:3:11: unknown kind 'nope'"));
        assert!(problems[2].starts_with("a.yaml:3:5"));
        assert!(problems[3].starts_with("b.yaml:4:17: unknown provider instance 'y'"));
    }
}
