//! A generator of large, valid desired-state folders, for measuring the loader and the
//! engine at scale (`cargo run --release --example synthetic_folder -- DIR 100000 100`).
//! Deterministic: the same arguments always write the same bytes, so measurements
//! taken on different days compare.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// The five instances of a synthetic folder, one per built-in kind, with the statuses a
/// generated account may take there.
const INSTANCES: [(&str, &[&str]); 5] = [
    ("atlan", &["active", "inactive"]),
    ("zitadel", &["active", "inactive"]),
    ("acronis", &["active", "inactive"]),
    (
        "helpdesk",
        &["active", "inactive", "suspended", "onboarding"],
    ),
    ("portal", &["active", "inactive"]),
];

/// The `providers.yaml` of a synthetic folder.
pub const PROVIDERS: &str = "\
# A synthetic folder written by roster::desired::synthetic::write_folder.
providers:
  atlan:
    kind: atlan
    base_url: https://acme.atlan.com
    auth: { bearer_token_env: ATLAN_API_TOKEN }
  zitadel:
    kind: zitadel
    base_url: https://acme.zitadel.cloud
    auth: { bearer_token_env: ZITADEL_PAT }
  acronis:
    kind: acronis
    base_url: https://eu2-cloud.acronis.com
    auth: { client_id_env: ACRONIS_CLIENT_ID, client_secret_env: ACRONIS_CLIENT_SECRET }
  helpdesk:
    kind: status-api
    base_url: https://helpdesk.acme.example
    auth: { bearer_token_env: HELPDESK_TOKEN }
  portal:
    kind: suspend-api
    base_url: https://portal.acme.example
    tenant_id: t-1
    auth: { bearer_token_env: PORTAL_TOKEN }
";

/// A small deterministic generator (SplitMix64), so no seed or crate is needed.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The text of user file `index` (0-based) holding users `first..first + count`: each
/// user has 2 to 5 accounts at distinct instances; some are inactive with a reason, some
/// have an account with its own status, some are time-bound.
pub fn user_file(index: usize, first: usize, count: usize) -> String {
    let mut mix = Mix(index as u64 + 1);
    let mut text = String::with_capacity(count * 160);
    text.push_str("users:\n");
    for n in first..first + count {
        let status = if mix.below(10) == 0 {
            "inactive"
        } else {
            "active"
        };
        let _ = write!(text, "  - name: user{n:06}\n    status: {status}\n");
        if status == "inactive" {
            let _ = writeln!(text, "    reason: Left the company (HR-{n})");
        }
        if mix.below(50) == 0 {
            text.push_str("    until: 2027-06-30T18:00:00+02:00\n");
        }
        text.push_str("    accounts:\n");
        let accounts = 2 + mix.below(4);
        let start = mix.below(INSTANCES.len());
        for k in 0..accounts {
            let (instance, statuses) = INSTANCES[(start + k) % INSTANCES.len()];
            if mix.below(8) == 0 {
                let own = statuses[mix.below(statuses.len())];
                let _ = writeln!(
                    text,
                    "      {instance}: {{ id: {instance}-{n:06}, status: {own} }}"
                );
            } else {
                let _ = writeln!(text, "      {instance}: {instance}-{n:06}");
            }
        }
    }
    text
}

/// Writes a valid folder to `dir` (created if missing): `providers.yaml` with five
/// instances (one per built-in kind) and `users` users spread evenly over `files` files
/// under `people/`.
pub fn write_folder(dir: &Path, users: usize, files: usize) -> io::Result<()> {
    let people = dir.join("people");
    std::fs::create_dir_all(&people)?;
    std::fs::write(dir.join("providers.yaml"), PROVIDERS)?;
    let files = files.max(1);
    let mut first = 0;
    for index in 0..files {
        let count = users / files + usize::from(index < users % files);
        std::fs::write(
            people.join(format!("team-{index:04}.yaml")),
            user_file(index, first, count),
        )?;
        first += count;
    }
    Ok(())
}

/// The instances of the benchmark's W3 folder (`src/bench/workloads.rs`), in its order.
const W3_KINDS: [&str; 5] = ["status-api", "suspend-api", "atlan", "zitadel", "acronis"];

/// The `providers.yaml` of the benchmark's W3 folder: one instance per kind, named after
/// it, on loopback addresses `validate` never contacts.
fn w3_providers() -> String {
    let mut text = String::from("providers:\n");
    for (n, kind) in W3_KINDS.iter().enumerate() {
        let auth = if *kind == "acronis" {
            format!("client_id_env: BENCH_ID_{n}, client_secret_env: BENCH_TOKEN_{n}")
        } else {
            format!("bearer_token_env: BENCH_TOKEN_{n}")
        };
        let _ = writeln!(
            text,
            "  {kind}:\n    kind: {kind}\n    base_url: http://127.0.0.1:{}\n    auth: {{ {auth} }}",
            9000 + n
        );
        if *kind == "suspend-api" {
            text.push_str("    tenant_id: 3f6c2a9e-5b1d-4c7e-8a2f-9d0e1b4c6a83\n");
        }
    }
    text
}

/// The text of the benchmark's W3 user file holding users `first..first + count`: two
/// accounts each (one short form, one long form, ids quoted) and a quoted `reason`,
/// byte for byte what `roster-bench` writes.
pub fn w3_user_file(first: usize, count: usize) -> String {
    let id = |k: usize, i: usize| match W3_KINDS[k] {
        "zitadel" => format!("{}", 69_629_012_906_000_000_u64 + i as u64),
        _ => format!("{k:08x}-5b1d-4c7e-8a2f-{i:012x}"),
    };
    let mut text = String::with_capacity(count * 200);
    text.push_str("users:\n");
    for i in first..first + count {
        let status = if i % 10 == 0 { "inactive" } else { "active" };
        let (a, b) = (i % 5, (i + 1) % 5);
        let _ = write!(
            text,
            "  - name: person{i:06}\n    status: {status}\n    reason: \"HR-{i}\"\n    accounts:\n      {}: \"{}\"\n      {}: {{ id: \"{}\", status: active }}\n",
            W3_KINDS[a],
            id(a, i),
            W3_KINDS[b],
            id(b, i)
        );
    }
    text
}

/// Writes the benchmark's W3 folder to `dir`: `users` users in `files` files of
/// [`w3_user_file`], so the loader can be measured on that shape without the benchmark.
pub fn write_w3_folder(dir: &Path, users: usize, files: usize) -> io::Result<()> {
    let people = dir.join("people");
    std::fs::create_dir_all(&people)?;
    std::fs::write(dir.join("providers.yaml"), w3_providers())?;
    let per_file = users.div_ceil(files.max(1)).max(1);
    for (index, first) in (0..users).step_by(per_file).enumerate() {
        let count = per_file.min(users - first);
        std::fs::write(
            people.join(format!("team-{index:04}.yaml")),
            w3_user_file(first, count),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_folder;

    #[test]
    fn a_synthetic_folder_is_valid_and_has_what_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), 250, 3).unwrap();
        let state = super::super::load(dir.path(), crate::provider::specs()).unwrap();
        assert_eq!(state.users.len(), 250);
        assert_eq!(state.instances.len(), 5);
        let accounts = state.account_count();
        assert!((500..=1250).contains(&accounts), "{accounts}");
        assert!(state.users.iter().any(|u| u.reason.is_some()));
    }

    #[test]
    fn a_w3_folder_is_valid_with_two_accounts_each() {
        let dir = tempfile::tempdir().unwrap();
        super::write_w3_folder(dir.path(), 250, 3).unwrap();
        let state = super::super::load(dir.path(), crate::provider::specs()).unwrap();
        assert_eq!(state.users.len(), 250);
        assert_eq!(state.account_count(), 500);
        assert!(state.users.iter().all(|u| u.reason.is_some()));
    }
}
