//! Property tests: valid folders, mutated the way a bad edit, a broken tool or a hostile
//! pull request would (flipped bytes, inserted control bytes, truncation, duplicated
//! lines, renamed keys), never make the loader panic, and every problem it reports
//! points into the folder with a position inside the file. The on-disk and in-memory
//! entry points agree on every case. The fast path for user files agrees exactly with
//! the positioned path on every mutated user file, and never accepts one it rejects.

use super::load::compare_paths;
use super::{load, load_files, InvalidFolder};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const PROVIDERS: &str = "\
providers:
  portal:
    kind: suspend-api
    base_url: http://127.0.0.1:9000
    tenant_id: t-1
    max_changes: 5
    auth: { bearer_token_env: PORTAL_TOKEN }
  helpdesk:
    kind: status-api
    base_url: https://helpdesk.example.com
    timeout: 10s
    auth:
      bearer_token_file: /run/secrets/helpdesk
  acronis:
    kind: acronis
    base_url: https://eu2-cloud.acronis.com
    auth: { client_id_env: ACRONIS_ID, client_secret_env: ACRONIS_SECRET }
";

const PEOPLE: &str = "\
users:
  - name: ann
    status: inactive
    reason: \"Left (HR-1)\"
    accounts:
      portal: p-1
      helpdesk: { id: ann, status: suspended }
  - name: bob
    status: active
    accounts:
      acronis: 6f1e2d3c-0000-4000-8000-000000000001
";

const LEAVERS: &str = "\
# people who left
users:
  - name: cy
    status: inactive
    accounts: { portal: p-3, helpdesk: cy }
";

/// Every shape the fast path reads: flow and block forms, quoted and multi-line
/// scalars, comments, time bounds at both levels, empty accounts.
const VARIED: &str = "\
users:
  - name: ann # a comment
    status: inactive
    reason: 'Left (HR-1): see ticket'
    accounts:
      portal: p-1
      helpdesk: { id: \"ann\", status: suspended }
  - {name: bob, status: active, accounts: {acronis: 6f1e2d3c, portal: p-2}}
  - name: \"cy\"
    status: active
    until: 2026-12-31T18:00:00+01:00
    then: suspended
    accounts:
      helpdesk: cy
      portal: { id: p-3, until: 2027-12-15T18:00:00Z, then: inactive }
  - name: dee
    status: active
    from: 2027-01-04T08:00:00+01:00
    reason: >
      Joins in January
      (HR-7)
    accounts:
      helpdesk:
        id: dee
        before: onboarding
  - name: eve
    status: active
    accounts:
";

/// Every shape the byte scanner reads (the plain subset of YAML), so that its mutations
/// exercise the scanner and not only the parser's path.
pub(super) const SUBSET: &str = "\
# people
users:
- name: ann # a comment
  status: inactive
  reason: 'Left (HR-1), see ticket'

  accounts:
    portal: p-1
    helpdesk: { id: \"ann\", status: suspended }
- name: \"José Ñúñez\"
  status: active
  until: 2026-12-31T18:00:00+01:00
  then: inactive
  accounts: {helpdesk: cy, acronis: 'ac-1'}
-   name: dee
    status: active
    from: 2027-01-04T08:00:00+01:00
    reason: Joins in January #7
    accounts:
      helpdesk:
        id: dee
        before: onboarding
      portal: { id: p-3, until: 2027-12-15T18:00:00Z, then: inactive }
- name: eve
  status: active
  accounts:
";

/// A change of one character to one YAML cares about: what a hand edit gets wrong.
fn structural() -> impl Strategy<Value = (usize, bool, u8)> {
    let chars = prop::sample::select(b" #:-\"'{},\n\tab.~&*!|>[]?%".to_vec());
    (any::<usize>(), any::<bool>(), chars)
}

const FILES: [&str; 3] = ["providers.yaml", "people.yaml", "teams/leavers.yml"];
const KEYS: [&str; 8] = [
    "users",
    "name",
    "status",
    "accounts",
    "id",
    "kind",
    "auth",
    "providers",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, byte: u8 },
    Truncate { at: usize },
    DuplicateLine { line: usize },
    RenameKey { key: usize, to: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let control = prop_oneof![0u8..0x20, Just(0x7f), 0x80u8..=0xff];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), control).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (0..KEYS.len(), "[a-zA-Z_]{0,8}").prop_map(|(key, to)| Mutation::RenameKey { key, to }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, mask } => {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
        Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), *byte),
        Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
        Mutation::DuplicateLine { line } => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let i = line % lines.len();
            let mut out: Vec<&str> = lines[..=i].to_vec();
            out.extend_from_slice(&lines[i..]);
            *bytes = out.concat().into_bytes();
        }
        Mutation::RenameKey { key, to } => {
            let from = format!("{}:", KEYS[*key]);
            let text = String::from_utf8_lossy(bytes).replacen(&from, &format!("{to}:"), 1);
            *bytes = text.into_bytes();
        }
    }
}

/// Every problem names a file of the folder (or the folder) and, when it has a
/// position, one inside that file.
fn check_positions(
    invalid: &InvalidFolder,
    root: &str,
    files: &[(PathBuf, Vec<u8>)],
) -> Result<(), TestCaseError> {
    prop_assert!(!invalid.problems.is_empty());
    for problem in &invalid.problems {
        let location = &problem.location;
        prop_assert!(!problem.message.is_empty());
        prop_assert!(
            *location.file == *root || location.file.starts_with(&format!("{root}/")),
            "{problem}"
        );
        if location.line == 0 {
            prop_assert_eq!(location.column, 0, "{}", problem);
            continue;
        }
        prop_assert!(location.column >= 1, "{}", problem);
        let relative = &location.file[root.len() + 1..];
        let Some((_, bytes)) = files.iter().find(|(p, _)| p == Path::new(relative)) else {
            return Err(TestCaseError::fail(format!(
                "{problem}: not a file of the folder"
            )));
        };
        let lines = bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
        prop_assert!(
            location.line <= lines + 1,
            "{} (file has {} lines)",
            problem,
            lines
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_folders_never_panic_and_problems_point_into_the_folder(
        mutations in prop::collection::vec((0..FILES.len(), mutation()), 1..4)
    ) {
        let mut files: Vec<(PathBuf, Vec<u8>)> = FILES
            .iter()
            .zip([PROVIDERS, PEOPLE, LEAVERS])
            .map(|(path, text)| (PathBuf::from(path), text.as_bytes().to_vec()))
            .collect();
        for (file, mutation) in &mutations {
            apply(&mut files[*file].1, mutation);
        }
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (path, bytes) in &files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            std::fs::write(&full, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let root = dir.path().display().to_string();
        let on_disk = load(dir.path(), crate::provider::specs());
        let in_memory = load_files(dir.path(), files.clone(), crate::provider::specs());
        match (&on_disk, &in_memory) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.users.len(), b.users.len());
                prop_assert_eq!(a.account_count(), b.account_count());
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(&a.problems, &b.problems);
                check_positions(a, &root, &files)?;
            }
            _ => prop_assert!(false, "disk and memory disagree: {on_disk:?} / {in_memory:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_agrees_with_the_positioned_path(
        base in 0..3usize,
        mutations in prop::collection::vec(mutation(), 0..4)
    ) {
        let mut bytes = [PEOPLE, LEAVERS, VARIED][base].as_bytes().to_vec();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        // The fast path sees only text that passed the file-level checks.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Err(disagreement) = compare_paths(PROVIDERS, text) {
                return Err(TestCaseError::fail(format!("{text:?}\n{disagreement}")));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_scanner_agrees_with_the_positioned_path(
        base in 0..2usize,
        edits in prop::collection::vec(structural(), 0..4)
    ) {
        let text = [SUBSET, super::synthetic::w3_user_file(0, 3).as_str()][base].to_string();
        let mut bytes = text.into_bytes();
        for (at, replace, byte) in &edits {
            let at = at % (bytes.len() + 1);
            if *replace && at < bytes.len() {
                bytes[at] = *byte;
            } else {
                bytes.insert(at, *byte);
            }
        }
        let providers = if base == 0 { PROVIDERS } else { W3_PROVIDERS };
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Err(disagreement) = compare_paths(providers, text) {
                return Err(TestCaseError::fail(format!("{text:?}\n{disagreement}")));
            }
        }
    }
}

/// The instances the benchmark's W3 folder names.
pub(super) const W3_PROVIDERS: &str = "\
providers:
  status-api: { kind: status-api, base_url: http://127.0.0.1:9000, auth: { bearer_token_env: T0 } }
  suspend-api: { kind: suspend-api, base_url: http://127.0.0.1:9001, tenant_id: t, auth: { bearer_token_env: T1 } }
  atlan: { kind: atlan, base_url: http://127.0.0.1:9002, auth: { bearer_token_env: T2 } }
  zitadel: { kind: zitadel, base_url: http://127.0.0.1:9003, auth: { bearer_token_env: T3 } }
  acronis: { kind: acronis, base_url: http://127.0.0.1:9004, auth: { client_id_env: I4, client_secret_env: T4 } }
";

#[test]
fn the_scanner_reads_the_subset_and_the_paths_agree_on_it() {
    assert_eq!(compare_paths(PROVIDERS, SUBSET), Ok(true));
    assert_eq!(
        compare_paths(W3_PROVIDERS, &super::synthetic::w3_user_file(0, 20)),
        Ok(true)
    );
}

#[test]
fn the_fast_path_reads_every_valid_shape() {
    for text in [PEOPLE, LEAVERS, VARIED, "users: []\n"] {
        assert_eq!(compare_paths(PROVIDERS, text), Ok(true), "{text}");
    }
    let synthetic = super::synthetic::user_file(0, 0, 200);
    assert_eq!(
        compare_paths(super::synthetic::PROVIDERS, &synthetic),
        Ok(true)
    );
}

#[test]
fn the_unmutated_folder_is_valid() {
    let files = FILES
        .iter()
        .zip([PROVIDERS, PEOPLE, LEAVERS])
        .map(|(path, text)| (PathBuf::from(path), text.as_bytes().to_vec()));
    let state = load_files(Path::new("root"), files, crate::provider::specs()).expect("valid");
    assert_eq!(state.account_count(), 5);
}
