//! Where a simulator's accounts come from: generated (demos, benchmarks) or a fixture file
//! (tests that need exact accounts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use marked_yaml::{LoadError, LoaderOptions, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{api, SimKind, SimUser};

const FIRST_NAMES: [&str; 40] = [
    "anna", "ben", "chloe", "daniel", "elena", "farid", "grace", "hugo", "ines", "jonas", "kira",
    "liam", "maria", "noah", "olga", "pedro", "quinn", "rosa", "sami", "tara", "uma", "victor",
    "wen", "ximena", "yusuf", "zoe", "amir", "bianca", "carlos", "dana", "emil", "fatima", "georg",
    "hana", "ivan", "julia", "kofi", "lena", "mateo", "nora",
];

const LAST_NAMES: [&str; 40] = [
    "schmidt",
    "garcia",
    "nguyen",
    "okafor",
    "kowalski",
    "rossi",
    "tanaka",
    "silva",
    "murphy",
    "novak",
    "haddad",
    "jensen",
    "kim",
    "lopez",
    "meyer",
    "patel",
    "weber",
    "smith",
    "dubois",
    "hansen",
    "ivanova",
    "costa",
    "fischer",
    "ali",
    "berg",
    "chen",
    "diaz",
    "eriksen",
    "fontaine",
    "gruber",
    "horvat",
    "iyer",
    "jovanovic",
    "keller",
    "larsen",
    "moreau",
    "nakamura",
    "olsen",
    "petrov",
    "quint",
];

impl SimUser {
    /// `count` realistic accounts for `kind`, the same for the same seed: about 10% inactive and
    /// 1% privileged (privileged accounts are active, so deactivating them hits the quirk).
    pub fn generate(kind: SimKind, count: usize, seed: u64) -> Vec<SimUser> {
        let api = api(kind);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen: HashMap<String, usize> = HashMap::new();
        (0..count)
            .map(|_| {
                let first = FIRST_NAMES[rng.random_range(..FIRST_NAMES.len())];
                let last = LAST_NAMES[rng.random_range(..LAST_NAMES.len())];
                let base = format!("{first}.{last}");
                let n = seen.entry(base.clone()).or_insert(0);
                *n += 1;
                let handle = if *n == 1 { base } else { format!("{base}{n}") };
                let privileged = rng.random_bool(0.01);
                let inactive = !privileged && rng.random_bool(0.10);
                SimUser {
                    id: api.new_id(&mut rng),
                    name: api.account_name(&handle),
                    status: if inactive { "inactive" } else { "active" }.to_string(),
                    privileged,
                    version: 1,
                }
            })
            .collect()
    }
}

/// Why a fixture file could not be used; always names the file (and the position when known).
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read fixture {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Loads accounts from a YAML or JSON file: a list of users, or a mapping with a `users:` list.
/// Each user has `id`, `name`, `status` and optionally `privileged` and `version`.
pub fn load_fixture(path: &Path) -> Result<Vec<SimUser>, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_fixture(&text).map_err(|message| FixtureError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses fixture text; errors start with `line:col: ` when the position is known.
fn parse_fixture(text: &str) -> Result<Vec<SimUser>, String> {
    let options = || LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, options()) {
        Err(LoadError::TopLevelMustBeMapping(_)) => {
            marked_yaml::parse_yaml_with_options(0, text, options().toplevel_sequence())
        }
        other => other,
    }
    .map_err(|e| format!("{e}"))?;
    let list = match &root {
        Node::Sequence(list) => list,
        Node::Mapping(map) => map.get_sequence("users").ok_or_else(|| {
            format!(
                "{}: expected a list of users or a mapping with a 'users' list",
                at(&root)
            )
        })?,
        Node::Scalar(_) => return Err(format!("{}: expected a list of users", at(&root))),
    };
    let mut first_seen: HashMap<String, String> = HashMap::new();
    let mut users = Vec::with_capacity(list.len());
    for node in list.iter() {
        let user = user_from(node)?;
        if let Some(prev) = first_seen.insert(user.id.clone(), at(node)) {
            return Err(format!(
                "{}: duplicate id '{}' (first at {prev})",
                at(node),
                user.id
            ));
        }
        users.push(user);
    }
    Ok(users)
}

fn user_from(node: &Node) -> Result<SimUser, String> {
    const KEYS: [&str; 5] = ["id", "name", "status", "privileged", "version"];
    let map = node
        .as_mapping()
        .ok_or_else(|| format!("{}: expected a user mapping (id, name, status)", at(node)))?;
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{}: unknown key '{}' (expected one of {})",
                key.span()
                    .start()
                    .map_or("?".to_string(), ToString::to_string),
                key.as_str(),
                KEYS.join(", ")
            ));
        }
    }
    let text = |key: &str| -> Result<String, String> {
        let value = map
            .get_node(key)
            .ok_or_else(|| format!("{}: missing key '{key}'", at(node)))?;
        match value.as_scalar() {
            Some(s) if !s.as_str().is_empty() => Ok(s.as_str().to_string()),
            _ => Err(format!("{}: '{key}' must be a non-empty string", at(value))),
        }
    };
    let privileged = match map.get_node("privileged") {
        None => false,
        Some(v) => v
            .as_scalar()
            .and_then(|s| s.as_bool())
            .ok_or_else(|| format!("{}: 'privileged' must be true or false", at(v)))?,
    };
    let version = match map.get_node("version") {
        None => 1,
        Some(v) => v
            .as_scalar()
            .and_then(|s| s.as_u64())
            .ok_or_else(|| format!("{}: 'version' must be a whole number", at(v)))?,
    };
    Ok(SimUser {
        id: text("id")?,
        name: text("name")?,
        status: text("status")?,
        privileged,
        version,
    })
}

/// `line:col` of a node, for error messages.
fn at(node: &Node) -> String {
    node.span()
        .start()
        .map_or("?".to_string(), |m| format!("{}:{}", m.line(), m.column()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_is_deterministic_and_realistic() {
        let a = SimUser::generate(SimKind::SuspendApi, 1000, 7);
        assert_eq!(a, SimUser::generate(SimKind::SuspendApi, 1000, 7));
        assert_ne!(a, SimUser::generate(SimKind::SuspendApi, 1000, 8));
        let inactive = a.iter().filter(|u| u.status == "inactive").count();
        assert!((50..=150).contains(&inactive), "{inactive} inactive");
        let privileged = a.iter().filter(|u| u.privileged).count();
        assert!((1..=30).contains(&privileged), "{privileged} privileged");
        assert!(a.iter().all(|u| u.name.ends_with("@example.com")));
        let names: std::collections::HashSet<_> = a.iter().map(|u| &u.name).collect();
        assert_eq!(names.len(), a.len(), "names are unique");
    }

    #[test]
    fn generated_ids_follow_each_api() {
        let zitadel = SimUser::generate(SimKind::Zitadel, 5, 1);
        assert!(zitadel
            .iter()
            .all(|u| u.id.len() == 18 && u.id.bytes().all(|b| b.is_ascii_digit())));
        let acronis = SimUser::generate(SimKind::Acronis, 5, 1);
        assert!(acronis
            .iter()
            .all(|u| u.id.len() == 36 && u.id.as_bytes()[14] == b'4'));
    }

    #[test]
    fn parses_bare_list_users_key_and_json() {
        let yaml = "- id: u1\n  name: anna\n  status: active\n- id: '42'\n  name: ben\n  status: inactive\n  privileged: true\n  version: 3\n";
        let users = parse_fixture(yaml).expect("bare list");
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].id, "42");
        assert!(users[1].privileged);
        assert_eq!(users[1].version, 3);
        assert_eq!(users[0].version, 1);

        let keyed = parse_fixture("users:\n  - {id: u1, name: anna, status: active}\n");
        assert_eq!(keyed.expect("users key")[0].name, "anna");

        let json =
            r#"{"users": [{"id": "u1", "name": "a@b.c", "status": "active", "version": 2}]}"#;
        assert_eq!(parse_fixture(json).expect("json")[0].version, 2);
        let json_list = r#"[{"id": "u1", "name": "x", "status": "active"}]"#;
        assert_eq!(parse_fixture(json_list).expect("json list").len(), 1);
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            (
                "- id: u1\n  name: a\n  stauts: active\n",
                "3:3: unknown key 'stauts'",
            ),
            ("- id: u1\n  name: a\n", "missing key 'status'"),
            (
                "- {id: u1, name: a, status: active}\n- {id: u1, name: b, status: active}\n",
                "duplicate id 'u1' (first at 1:3)",
            ),
            (
                "- {id: u1, name: a, status: active, version: two}\n",
                "'version' must be a whole number",
            ),
            ("people: []\n", "'users' list"),
        ];
        for (text, expected) in cases {
            let err = parse_fixture(text).expect_err(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn load_fixture_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.yaml");
        std::fs::write(&path, "- id: u1\n  name: a\n").expect("write");
        let err = load_fixture(&path).expect_err("missing status").to_string();
        assert!(err.starts_with(&format!("{}:", path.display())), "{err}");
        let missing = load_fixture(&dir.path().join("nope.yaml")).expect_err("missing file");
        assert!(missing.to_string().contains("nope.yaml"));
    }
}
