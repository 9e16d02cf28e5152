//! Reads a desired-state folder from disk and validates it as one unit, collecting every
//! problem of every file before answering.

use super::bounds::{AccountBounds, RawBounds};
use super::folder::{self, problem_at, NameClass, Names, RawFile, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
use super::secrets::{looks_like_secret, valid_env_name};
use super::text;
use super::yaml::{
    hidden_problems, past_value_limit, suggest, FileReader, HIDDEN_SUFFIX, MAX_PROBLEMS_PER_FILE,
    MAX_VALUES_PER_FILE,
};
use super::{
    Account, AuthConfig, DesiredState, InstanceConfig, InvalidFolder, Location, Problem,
    SecretSource, User,
};
use crate::model::{AuthStyle, KindSpec};
use crate::provider;
use crate::status::Status;
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{LoaderOptions, Node};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use url::Url;

mod fast;

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
const USER_KEYS: &[&str] = &[
    "name", "status", "reason", "accounts", "from", "until", "then", "before",
];
const ACCOUNT_KEYS: &[&str] = &["id", "status", "from", "until", "then", "before"];
const DEFAULT_MAX_CONCURRENCY: usize = 8;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CHANGES: usize = 25;

/// Loads and validates the folder at `root`. No network, no secrets: safe for
/// pull-request CI. Either the whole folder is valid, or every problem is returned.
/// Reading is bounded whatever the folder holds (see [`super::folder`]).
pub fn load(root: &Path) -> Result<DesiredState, InvalidFolder> {
    let names = Names::new(root);
    let refuse = |message: String| InvalidFolder {
        problems: vec![problem_at(names.root(), message)],
    };
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            return Err(refuse(
                "not a directory: pass the desired-state folder, not a file".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(refuse(
            "does not exist: pass the path of the desired-state folder (default ./desired-state)"
                .into(),
        )),
        Err(e) => return Err(refuse(format!("cannot read folder: {e}"))),
    }
    let mut problems = Vec::new();
    let files = folder::read_folder(root, &names, &mut problems);
    validate(root, &names, files, problems)
}

/// Loads a folder given as files in memory (path relative to the folder, bytes), as if
/// they were on disk at `root`: the same name rules, size limits and validation as
/// [`load`], without touching the file system. Made for fuzzing and for tools that hold
/// a folder in memory (a pull request's blobs).
pub fn load_files(
    root: &Path,
    files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>,
) -> Result<DesiredState, InvalidFolder> {
    let names = Names::new(root);
    let mut problems = Vec::new();
    let mut kept = Vec::new();
    for (relative, bytes) in files {
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        let hidden = relative
            .iter()
            .any(|p| folder::classify(&p.to_string_lossy()) == NameClass::Hidden);
        if !plain || relative.as_os_str().is_empty() {
            problems.push(problem_at(
                names.show(&relative),
                "not a relative path inside the folder",
            ));
        } else if !hidden {
            let name = relative
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match folder::classify(&name) {
                NameClass::Yaml => kept.push(RawFile { relative, bytes }),
                NameClass::CaseVariant => {
                    problems.push(folder::case_variant_problem(names.show(&relative), &name))
                }
                NameClass::Hidden | NameClass::Other => {}
            }
        }
    }
    kept.sort_by(|a, b| a.relative.cmp(&b.relative));
    let mut total: u64 = 0;
    let mut read = Vec::with_capacity(kept.len());
    for file in kept {
        let size = file.bytes.len() as u64;
        if size > MAX_FILE_BYTES {
            let error = folder::ReadError::TooLarge { size };
            problems.push(problem_at(names.show(&file.relative), error.to_string()));
            continue;
        }
        total += size;
        if total > MAX_TOTAL_BYTES {
            problems.push(problem_at(
                names.root(),
                format!(
                    "the folder's YAML files add up to more than 64 MiB (the limit); stopped reading at {}",
                    names.show(&file.relative)
                ),
            ));
            break;
        }
        read.push(file);
    }
    validate(root, &names, read, problems)
}

/// Validates the files read from a folder as one unit; `problems` holds what reading
/// them already found.
fn validate(
    root: &Path,
    names: &Names,
    files: Vec<RawFile>,
    mut problems: Vec<Problem>,
) -> Result<DesiredState, InvalidFolder> {
    let providers_path = Path::new(PROVIDERS_FILE);
    let providers_file = names.show(providers_path);
    let instances = match files.iter().find(|f| f.relative == providers_path) {
        Some(raw) => text_of(raw, &providers_file, &mut problems)
            .and_then(|text| {
                if text::is_blank(text) {
                    problems.push(problem_at(
                        providers_file.clone(),
                        "the file is empty: define the provider instances under 'providers:'",
                    ));
                    None
                } else {
                    parse(text, &providers_file, &mut problems)
                }
            })
            .map(|node| read_providers(&node, &providers_file, &mut problems))
            .unwrap_or_default(),
        None => {
            // Not when reading it failed, or a limit stopped the walk before it.
            let explained = problems
                .iter()
                .any(|p| *p.location.file == *providers_file || *p.location.file == *names.root());
            if !explained {
                problems.push(problem_at(
                    providers_file.clone(),
                    "file not found: the folder must define its provider instances in providers.yaml",
                ));
            }
            Instances::default()
        }
    };

    let statuses = all_statuses();
    let user_files: Vec<&RawFile> = files
        .iter()
        .filter(|f| f.relative != providers_path)
        .collect();
    let outcomes = in_parallel(&user_files, |raw| {
        read_user_file(raw, &names.show(&raw.relative), &instances, &statuses)
    });
    let mut users = Vec::with_capacity(outcomes.iter().map(|o| o.read.users.len()).sum());
    let mut user_names = Vec::with_capacity(users.capacity());
    for outcome in outcomes {
        users.extend(outcome.read.users);
        user_names.extend(outcome.read.names);
        problems.extend(outcome.problems);
    }
    check_unique_names(&user_names, &mut problems);
    check_unique_accounts(&users, &mut problems);

    if problems.is_empty() {
        return Ok(DesiredState {
            root: root.to_path_buf(),
            instances: instances.valid,
            users,
        });
    }
    let mut order: HashMap<String, usize> = HashMap::new();
    for (i, file) in std::iter::once(providers_file)
        .chain(files.iter().map(|f| names.show(&f.relative)))
        .enumerate()
    {
        order.entry(file).or_insert(i);
    }
    problems.sort_by(|a, b| {
        let key = |p: &Problem| {
            (
                order.get(&*p.location.file).copied().unwrap_or(usize::MAX),
                // A file's "N more problems" line closes its problems.
                p.message.ends_with(HIDDEN_SUFFIX),
                p.location.line,
                p.location.column,
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.location.file.cmp(&b.location.file))
    });
    problems.dedup();
    Err(InvalidFolder { problems })
}

/// What reading one user file found: its users (none if it has a problem) and its
/// problems.
struct FileOutcome {
    read: fast::FileUsers,
    problems: Vec<Problem>,
}

/// Reads one user file: the fast path first, and the positioned path, which words every
/// problem, whenever the fast path meets anything but a plainly valid file.
fn read_user_file(
    raw: &RawFile,
    file: &str,
    instances: &Instances,
    statuses: &[&'static str],
) -> FileOutcome {
    let mut outcome = FileOutcome {
        read: fast::FileUsers::default(),
        problems: Vec::new(),
    };
    let problems = &mut outcome.problems;
    let Some(text) = text_of(raw, file, problems) else {
        return outcome;
    };
    if text::is_blank(text) {
        problems.push(problem_at(
            file.to_string(),
            "holds no users (only blank lines, comments or '---'): delete the file, or write `users: []` if it is meant to hold none",
        ));
        return outcome;
    }
    if let Some(read) = fast::read_users(text, file, instances, statuses) {
        outcome.read = read;
        return outcome;
    }
    if let Some(node) = parse(text, file, problems) {
        read_users(
            &node,
            file,
            instances,
            &mut outcome.read.users,
            &mut outcome.read.names,
            problems,
        );
    }
    outcome
}

/// Runs `work` on every item on as many threads as the machine has cores (files are
/// independent until the folder-wide rules), answering the results in item order.
fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// For the differential property test: reads user file `text` both ways against the
/// instances of `providers`. `Ok(true)`: the fast path accepted it and both paths agree
/// exactly (users, accounts, bounds, positions, names); `Ok(false)`: the fast path
/// declined; `Err`: the paths disagree, or the fast path accepted a file the positioned
/// path rejects.
#[cfg(test)]
pub(super) fn compare_paths(providers: &str, text: &str) -> Result<bool, String> {
    let mut problems = Vec::new();
    let instances = parse(providers, "providers.yaml", &mut problems)
        .map(|node| read_providers(&node, "providers.yaml", &mut problems))
        .unwrap_or_default();
    let statuses = all_statuses();
    let Some(fast) = fast::read_users(text, "people.yaml", &instances, &statuses) else {
        return Ok(false);
    };
    let mut slow = fast::FileUsers::default();
    let mut problems = Vec::new();
    if let Some(node) = parse(text, "people.yaml", &mut problems) {
        read_users(
            &node,
            "people.yaml",
            &instances,
            &mut slow.users,
            &mut slow.names,
            &mut problems,
        );
    }
    if !problems.is_empty() {
        return Err(format!(
            "the fast path accepted a file with problems: {problems:?}"
        ));
    }
    let (fast, slow) = (
        format!("{:?} {:?}", fast.users, fast.names),
        format!("{:?} {:?}", slow.users, slow.names),
    );
    if fast != slow {
        return Err(format!("fast: {fast}\nslow: {slow}"));
    }
    Ok(true)
}

/// A file's text, or its problem (encoding, control characters, a second document).
fn text_of<'b>(raw: &'b RawFile, file: &str, problems: &mut Vec<Problem>) -> Option<&'b str> {
    let checked = text::decode(&raw.bytes, file)
        .and_then(|text| text::check_single_document(text, file).map(|()| text));
    match checked {
        Ok(text) => Some(text),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

/// Parses one file's text (never blank: the callers say what a blank file means).
fn parse(text: &str, file: &str, problems: &mut Vec<Problem>) -> Option<Node> {
    if let Some((line, column)) = past_value_limit(text, MAX_VALUES_PER_FILE) {
        problems.push(Problem {
            location: Location {
                file: file.into(),
                line,
                column,
            },
            message: format!("more than {MAX_VALUES_PER_FILE} YAML values in one file (the limit) from here on: split it into smaller files"),
        });
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
                        "duplicate key {} (first defined on line {})",
                        quoted(inner.key.as_str()),
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
                    file: file.into(),
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
    let mut r = FileReader::new(file, problems);
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
    let found = provider::specs()
        .iter()
        .copied()
        .find(|k| k.name == kind.as_str());
    if found.is_none() {
        let names: Vec<&str> = provider::specs().iter().map(|k| k.name).collect();
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

/// A value from the file for a message, in quotes, unless it looks like a secret.
fn quoted(value: &str) -> String {
    match looks_like_secret(value, false) {
        Some(_) => "(not shown: it looks like a secret)".to_string(),
        None => format!("'{value}'"),
    }
}

/// The problem for a secret pasted where its name or path belongs. The value itself is
/// never part of the message.
fn pasted_secret(key: &str, what: &str, looks: &str, instead: &str) -> String {
    format!(
        "'{key}' of {what} holds what looks like {looks}, not a name: write {instead}, never the secret itself. The value is not shown; if it is a real secret, revoke it, since it is now in this file's history"
    )
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
    let bounds = RawBounds::read(r, map, &what, &all_statuses());
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

fn all_statuses() -> Vec<&'static str> {
    let mut all: Vec<&str> = provider::specs()
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
                RawBounds::read(r, map, &what, &all_statuses()),
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
    if own_status.is_none() && !all_statuses().contains(&status.as_str()) {
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

/// Problems of a whole-folder check, at most [`MAX_PROBLEMS_PER_FILE`] per file; the
/// rest are counted in one closing line per file when it is dropped.
struct Capped<'a> {
    problems: &'a mut Vec<Problem>,
    per_file: BTreeMap<std::sync::Arc<str>, (usize, usize)>,
}

impl<'a> Capped<'a> {
    fn new(problems: &'a mut Vec<Problem>) -> Capped<'a> {
        Capped {
            problems,
            per_file: BTreeMap::new(),
        }
    }

    fn push(&mut self, problem: Problem) {
        let (shown, hidden) = self
            .per_file
            .entry(problem.location.file.clone())
            .or_default();
        if *shown < MAX_PROBLEMS_PER_FILE {
            *shown += 1;
            self.problems.push(problem);
        } else {
            *hidden += 1;
        }
    }
}

impl Drop for Capped<'_> {
    fn drop(&mut self) {
        for (file, (_, hidden)) in &self.per_file {
            if *hidden > 0 {
                self.problems.push(hidden_problems(file, *hidden));
            }
        }
    }
}

/// A map with a fast hasher, seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A user name is used once across the folder.
fn check_unique_names(names: &[(String, Location)], problems: &mut Vec<Problem>) {
    let mut problems = Capped::new(problems);
    let mut first_use: FastMap<&str, &Location> = FastMap::default();
    first_use.reserve(names.len());
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
    let mut problems = Capped::new(problems);
    let mut claimed: FastMap<(&str, &str), (&str, &Location)> = FastMap::default();
    claimed.reserve(users.iter().map(|u| u.accounts.len()).sum());
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
    fn the_contracts_time_bound_example_loads_with_effective_bounds() {
        let state = load_folder(
            PROVIDERS,
            &[(
                "people.yaml",
                "users:
  - name: ana.contractor
    status: active
    until: 2026-12-31T18:00:00+01:00
    then: suspended
    accounts:
      helpdesk: ana
      portal: { id: 3f4a, until: 2026-12-15T18:00:00+01:00, then: inactive }
  - name: tom.joiner
    status: active
    from: 2027-01-04T08:00:00+01:00
    before: inactive
    accounts: { helpdesk: tom }
",
            )],
        )
        .unwrap();
        let at = |text: &str| crate::desired::parse_instant(text).unwrap();
        let ana = &state.users[0];
        let helpdesk = &ana.accounts[0].bounds;
        assert_eq!(helpdesk.until, Some(at("2026-12-31T17:00:00Z")));
        assert_eq!(helpdesk.then.as_str(), "suspended");
        let portal = &ana.accounts[1].bounds;
        assert_eq!(
            portal.until,
            Some(at("2026-12-15T17:00:00Z")),
            "account-level wins"
        );
        assert_eq!(portal.then.as_str(), "inactive");
        let tom = &state.users[1].accounts[0].bounds;
        assert_eq!(tom.from, Some(at("2027-01-04T07:00:00Z")));
        assert_eq!((tom.until, tom.before.as_str()), (None, "inactive"));
    }

    #[test]
    fn every_time_bound_rule_reports_its_position() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "no offset",
                "users:\n  - name: a\n    status: active\n    until: 2026-12-31T18:00:00\n    accounts: { portal: p }\n",
                "people.yaml:4:12: 'until' of user 'a': '2026-12-31T18:00:00' has no UTC offset; write it with one, e.g. '2026-12-31T18:00:00Z' or '2026-12-31T18:00:00+01:00'",
            ),
            (
                "impossible date",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portal: { id: p, from: 2026-02-30T08:00:00Z }\n",
                "people.yaml:5:30: 'from' of account 'portal' of user 'a': '2026-02-30T08:00:00Z' is not a valid RFC 3339 time such as 2026-12-31T18:00:00+01:00 (day was not in range)",
            ),
            (
                "not a time",
                "users:\n  - name: a\n    status: active\n    from: next monday\n    accounts: { portal: p }\n",
                "people.yaml:4:11: 'from' of user 'a': 'next monday' is not a valid RFC 3339 time such as 2026-12-31T18:00:00+01:00 (the 'year' component could not be parsed)",
            ),
            (
                "from not before until (user)",
                "users:\n  - name: a\n    status: active\n    from: 2027-01-04T08:00:00+01:00\n    until: 2027-01-04T07:00:00Z\n    accounts: { portal: p }\n",
                "people.yaml:5:12: 'from' (2027-01-04T08:00:00+01:00) of user 'a' must be earlier than 'until' (2027-01-04T07:00:00Z)",
            ),
            (
                "from not before until (user from, account until)",
                "users:\n  - name: a\n    status: active\n    from: 2027-01-04T08:00:00+01:00\n    accounts:\n      portal: { id: p, until: 2026-12-15T18:00:00+01:00 }\n",
                "people.yaml:6:31: 'from' (2027-01-04T08:00:00+01:00) of account 'portal' of user 'a' must be earlier than 'until' (2026-12-15T18:00:00+01:00)",
            ),
            (
                "unknown then",
                "users:\n  - name: a\n    status: active\n    until: 2026-12-31T18:00:00Z\n    then: suspnded\n    accounts: { helpdesk: h }\n",
                "people.yaml:5:11: unknown status 'suspnded' in 'then' of user 'a' (did you mean 'suspended'?); statuses: active, inactive, onboarding, risky, suspended",
            ),
            (
                "then the kind cannot take (user level)",
                "users:\n  - name: a\n    status: active\n    until: 2026-12-31T18:00:00Z\n    then: suspended\n    accounts: { helpdesk: h, portal: p }\n",
                "people.yaml:6:30: 'then' status 'suspended' of user 'a' cannot be set at 'portal' (kind suspend-api); it accepts: active, inactive",
            ),
            (
                "before the kind cannot take (account level)",
                "users:\n  - name: a\n    status: active\n    accounts:\n      portal: { id: p, from: 2026-12-31T18:00:00Z, before: onboarding }\n",
                "people.yaml:5:60: 'before' status 'onboarding' cannot be set at 'portal' (kind suspend-api); it accepts: active, inactive",
            ),
            (
                "then without until",
                "users:\n  - name: a\n    status: active\n    then: suspended\n    accounts: { helpdesk: h }\n",
                "people.yaml:4:11: 'then' of user 'a' never takes effect: neither the user nor any of its accounts sets 'until'",
            ),
            (
                "before without from (account)",
                "users:\n  - name: a\n    status: active\n    accounts:\n      helpdesk: { id: h, before: onboarding }\n",
                "people.yaml:5:34: 'before' of account 'helpdesk' of user 'a' never takes effect: neither the account nor its user sets 'from'",
            ),
            (
                "misspelt bound key",
                "users:\n  - name: a\n    status: active\n    untill: 2026-12-31T18:00:00Z\n",
                "people.yaml:4:5: unknown key 'untill' in a user (did you mean 'until'?)",
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
                "providers.yaml:5:31: 'bearer_token_env' of 'auth' of provider 'x' must name an environment variable (letters, digits, '_'), never hold the secret itself; the value is not shown",
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

    #[test]
    fn a_misspelt_default_status_is_one_problem_at_its_position() {
        let problems = users_problems(
            "users:\n  - name: a\n    status: actve\n    accounts:\n      portal: p\n      helpdesk: h\n  - name: b\n    status: inactiv\n    accounts:\n      portal: q\n      helpdesk: { id: i }\n",
        );
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with("people.yaml:3:13: unknown status 'actve'"));
        assert!(problems[1].starts_with("people.yaml:8:13: unknown status 'inactiv'"));
    }

    #[test]
    fn a_pasted_secret_is_refused_without_being_shown() {
        let secrets = [
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789",
            "glpat-abcdefghij0123456789",
            "xoxb-1234-5678-abcdef",
            "AKIAIOSFODNN7EXAMPLE",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "3f9a1c0e7b2d4f6a8c9e1b3d5f7a9c0e",
        ];
        for secret in secrets {
            for key in ["bearer_token_env", "bearer_token_file", "token"] {
                let text = format!("providers:\n  x:\n    kind: atlan\n    base_url: https://a.example\n    auth: {{ {key}: \"{secret}\" }}\n");
                let problems = load_folder(&text, &[]).unwrap_err();
                assert!(!problems.is_empty(), "{key}: {secret}");
                let all = problems.join("\n");
                assert!(all.contains("looks like"), "{key}: {all}");
                assert!(!all.contains(secret), "{key} echoes the secret: {all}");
            }
        }
        let acronis = "providers:\n  x:\n    kind: acronis\n    base_url: https://a.example\n    auth: { client_id_env: ID, client_secret_file: q8ZrT4mW2xYk9LpV7nB3cJ6hG1fD5sA0 }\n";
        assert_eq!(
            load_folder(acronis, &[]).unwrap_err(),
            vec!["providers.yaml:5:52: 'client_secret_file' of 'auth' of provider 'x' holds what looks like a long random string (a token or key), not a name: write the path of the file that holds it (for example /run/secrets/atlan), never the secret itself. The value is not shown; if it is a real secret, revoke it, since it is now in this file's history".to_string()]
        );
        let key = "providers:\n  x:\n    kind: atlan\n    base_url: https://u:ghp_abc@a.example\n    auth: { ghp_abcdef: x, bearer_token_env: T }\n";
        let all = load_folder(key, &[]).unwrap_err().join("\n");
        assert!(!all.contains("ghp_abc"), "{all}");
        assert!(
            all.contains("must not hold a user name or password"),
            "{all}"
        );
    }

    #[test]
    fn empty_files_are_problems_not_silence() {
        for (text, expected) in [
            ("", "people.yaml: holds no users (only blank lines, comments or '---'): delete the file, or write `users: []` if it is meant to hold none"),
            ("# all gone\n---\n", "people.yaml: holds no users (only blank lines, comments or '---'): delete the file, or write `users: []` if it is meant to hold none"),
            ("users:\n", "people.yaml:1:1: 'users' is empty: list the users, or write `users: []` if this file is meant to hold none"),
        ] {
            assert_eq!(users_problems(text), vec![expected.to_string()], "{text:?}");
        }
        assert!(load_folder(PROVIDERS, &[("none.yaml", "users: []\n")]).is_ok());
        assert_eq!(
            load_folder("# nothing\n", &[]).unwrap_err(),
            vec!["providers.yaml: the file is empty: define the provider instances under 'providers:'".to_string()]
        );
    }

    #[test]
    fn a_missing_folder_and_a_file_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let problems = load(&missing).unwrap_err().problems;
        assert_eq!(
            problems[0].to_string(),
            format!("{}: does not exist: pass the path of the desired-state folder (default ./desired-state)", missing.display())
        );
        let file = dir.path().join("f.yaml");
        std::fs::write(&file, "users: []\n").unwrap();
        let problems = load(&file).unwrap_err().problems;
        assert_eq!(
            problems[0].to_string(),
            format!(
                "{}: not a directory: pass the desired-state folder, not a file",
                file.display()
            )
        );
    }

    #[test]
    fn in_memory_and_on_disk_folders_load_alike() {
        let files = [
            ("providers.yaml", PROVIDERS),
            ("people/a.yaml", "users:\n  - name: a\n    status: actve\n"),
            ("leavers.YAML", "users: []\n"),
            (".git/x.yaml", "broken: ["),
            ("notes.txt", "ignored"),
        ];
        let on_disk = load_folder(PROVIDERS, &files[1..]).unwrap_err();
        let in_memory = load_files(
            Path::new("root"),
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec())),
        )
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string().replace("root/", ""))
        .collect::<Vec<_>>();
        assert_eq!(on_disk, in_memory);
        assert_eq!(on_disk.len(), 2, "{on_disk:#?}");
        assert_eq!(on_disk[1], "leavers.YAML: '.YAML' is not read (only lower-case '.yaml' and '.yml' are), so the users in it would be ignored: rename it to 'leavers.yaml'");
    }

    #[test]
    fn a_flood_of_problems_is_cut_per_file_and_counted() {
        let flood = format!("users: [{}a]\n", "a,".repeat(149));
        let dups = "users:\n".to_string() + &"  - name: d\n    status: active\n".repeat(102);
        let problems =
            load_folder(PROVIDERS, &[("flood.yaml", &flood), ("dups.yaml", &dups)]).unwrap_err();
        assert_eq!(problems.len(), 202, "{problems:#?}");
        assert_eq!(
            problems[100],
            "dups.yaml: 1 more problems in this file are not shown (at most 100 per file)"
        );
        assert!(
            problems[101].starts_with("flood.yaml:1:9: a user must be a mapping"),
            "{}",
            problems[101]
        );
        assert_eq!(
            problems[201],
            "flood.yaml: 50 more problems in this file are not shown (at most 100 per file)"
        );
    }
}
