//! The loader's rules, each with the exact message and position a user sees.

use super::*;
use crate::desired::AuthConfig;
use crate::desired::SecretSource;
use std::time::Duration;

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
    load(dir.path(), crate::provider::specs()).map_err(|invalid| {
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
            (problems != vec![expected.to_string()]).then(|| format!("{what}: got {problems:?}"))
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
            (problems != vec![expected.to_string()]).then(|| format!("{what}: got {problems:?}"))
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
                "providers.yaml:3:11: unknown kind 'atlan2' (did you mean 'atlan'?); known kinds: atlan, zitadel, acronis, status-api, suspend-api, scim",
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
            (problems != vec![expected.to_string()]).then(|| format!("{what}: got {problems:?}"))
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
    let problems = load(dir.path(), crate::provider::specs())
        .unwrap_err()
        .problems;
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
    assert!(problems[0]
        .starts_with("providers.yaml:3:5: provider 'x' is missing the required key 'base_url'"));
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
        vec![
            "providers.yaml: the file is empty: define the provider instances under 'providers:'"
                .to_string()
        ]
    );
}

#[test]
fn a_missing_folder_and_a_file_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let problems = load(&missing, crate::provider::specs())
        .unwrap_err()
        .problems;
    assert_eq!(
            problems[0].to_string(),
            format!("{}: does not exist: pass the path of the desired-state folder (default ./desired-state)", missing.display())
        );
    let file = dir.path().join("f.yaml");
    std::fs::write(&file, "users: []\n").unwrap();
    let problems = load(&file, crate::provider::specs()).unwrap_err().problems;
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
        crate::provider::specs(),
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
