//! `roster init [DIR]`: the newcomer's first folder. It writes a commented
//! `providers.yaml` and one user file that validate as written, and whose one instance
//! points at the simulator `roster simulate --kind status-api` starts with its defaults,
//! so `roster plan` shows a real change a minute after installing. Existing files are
//! never overwritten unless `--force` says so: a folder may already hold real people.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The files `roster init` writes, relative to the folder, with their contents.
pub const FILES: [(&str, &str); 2] = [("providers.yaml", PROVIDERS), ("people.yaml", PEOPLE)];

/// The environment variable the example instance reads its token from.
pub const TOKEN_VARIABLE: &str = "HELPDESK_TOKEN";

const PROVIDERS: &str = r#"# Provider instances Roster reconciles: one entry per SaaS tenant or self-hosted API.
# Secrets are never written here, only the name of the environment variable (or the
# file) that holds them. See the README's "The folder" for every key.
providers:
  # The instance name (here `helpdesk`) is what user files refer to.
  helpdesk:
    # atlan | zitadel | acronis | status-api | suspend-api | scim
    kind: status-api
    # This example points at the simulator that
    #   roster simulate --kind status-api
    # starts on loopback (token `sim-token`). Put your real URL here; it must be
    # https:// unless the host is loopback or you set `allow_insecure_http: true`.
    base_url: http://127.0.0.1:8080
    auth:
      bearer_token_env: HELPDESK_TOKEN   # or bearer_token_file: /run/secrets/helpdesk
    # Optional, every kind:
    # max_concurrency: 8        # requests in flight to this instance
    # requests_per_second: 10   # steady rate; 429 Retry-After is always honoured
    # timeout: 30s              # per request
    max_changes: 25             # safety guard: apply refuses a pass with more changes

  # A second instance, for instance an Atlan tenant:
  # atlan:
  #   kind: atlan
  #   base_url: https://acme.atlan.com
  #   auth: { bearer_token_env: ATLAN_API_TOKEN }
"#;

const PEOPLE: &str = r#"# People and the status each of their accounts should have. Any number of
# *.yaml files, in any sub-folder, may hold users; Roster reads them all as one.
users:
  # Someone who left: every account listed here is disabled by `roster apply`.
  # Keep leavers in the folder; accounts in no file are left alone.
  - name: georg
    status: inactive
    reason: Left the company (HR-4411)   # shown in plans and sent where an API takes a comment
    accounts:
      helpdesk: georg.petrov            # short form: the account's id at that instance

  # Someone who stays: Roster re-enables the account if it is disabled by hand.
  - name: quinn
    status: active
    accounts:
      helpdesk: { id: quinn.nguyen }    # long form; may also set its own `status:`
"#;

/// Why `roster init` wrote nothing (or not everything); each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{}; nothing was written (use --force to overwrite)", exists_text(.0))]
    Exists(Vec<PathBuf>),
    #[error("cannot create the folder {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `a.yaml: already exists` or `a.yaml, b.yaml: already exist`.
fn exists_text(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let verb = if names.len() == 1 { "exists" } else { "exist" };
    format!("{}: already {verb}", names.join(", "))
}

/// Writes the example folder into `dir` (created when missing) and returns the paths
/// written. Without `force`, an existing file stops it before anything is written, and
/// each file is created exclusively, so a file that appears meanwhile is not replaced.
pub fn write_folder(dir: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    let paths: Vec<PathBuf> = FILES.iter().map(|(name, _)| dir.join(name)).collect();
    if !force {
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    for (path, (_, text)) in paths.iter().zip(FILES) {
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let write_error = |source| InitError::Write {
            path: path.clone(),
            source,
        };
        let mut file = options.open(path).map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)?;
    }
    Ok(paths)
}

/// What to do next, printed after the files were written.
pub fn next_steps(dir: &Path, written: &[PathBuf]) -> String {
    let dir = dir.display();
    let mut text = String::from("Wrote:\n");
    for path in written {
        text.push_str(&format!("  {}\n", path.display()));
    }
    text.push_str(&format!(
        "\nTry it against a simulator on loopback:\n\
         \x20 roster validate {dir}\n\
         \x20 roster simulate --kind status-api &     # a helpdesk on 127.0.0.1:8080, token sim-token\n\
         \x20 export {TOKEN_VARIABLE}=sim-token\n\
         \x20 roster plan {dir}                  # georg: active -> inactive\n\
         \x20 roster apply {dir}\n\
         \nThen point providers.yaml at your real providers and list your people.\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired;

    #[test]
    fn the_written_folder_validates_and_names_the_simulator_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("desired-state");
        let written = write_folder(&folder, false).unwrap();
        assert_eq!(written.len(), 2);
        let state = desired::load(&folder, crate::provider::specs()).unwrap();
        assert_eq!(state.instances.len(), 1);
        assert_eq!(state.users.len(), 2);
        assert_eq!(state.account_count(), 2);
    }

    #[test]
    fn an_existing_file_stops_it_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("people.yaml"), "users: []\n").unwrap();
        let error = write_folder(dir.path(), false).unwrap_err();
        assert!(matches!(&error, InitError::Exists(paths) if paths.len() == 1));
        assert!(error.to_string().contains("people.yaml: already exists"));
        assert!(!dir.path().join("providers.yaml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("people.yaml")).unwrap(),
            "users: []\n"
        );
    }

    #[test]
    fn force_overwrites_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("people.yaml"), "users: []\n").unwrap();
        write_folder(dir.path(), true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("people.yaml")).unwrap(),
            PEOPLE
        );
    }
}
