//! Shared fixtures for the integration tests: simulators on loopback, a desired-state
//! folder on disk pointing at them, and the real `roster` binary run against it.
#![allow(dead_code)]

use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod daemon;
#[allow(unused_imports)]
pub use daemon::*;

/// A test world: a temporary folder, the simulators, and the secrets the binary gets.
/// Every run of the binary through [`World::roster`] is checked for every secret the
/// world knows (see [`assert_no_secrets`]), so no test can forget to look for a leak.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sims: BTreeMap<String, Simulator>,
    instances: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    /// Environment variables that hold secrets; a value set on one becomes a secret too.
    secret_vars: BTreeSet<String>,
    /// Every secret value the binary was or will be given (tokens, client secrets).
    secrets: BTreeSet<String>,
}

/// What one run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A secret value no output could contain by chance, so a leak cannot hide behind a
/// common word: `roster-test-secret-` and 16 random hex digits.
pub fn distinctive_secret() -> String {
    format!("roster-test-secret-{:016x}", rand::random::<u64>())
}

/// Panics, naming the secret and showing the text, when `text` contains any secret value
/// `world` knows. [`World::roster`] calls it on every stdout and stderr; call it on the
/// other outputs a test reads: audit logs, `/metrics`, daemon logs.
pub fn assert_no_secrets(world: &World, text: &str) {
    for secret in &world.secrets {
        assert!(
            !text.contains(secret.as_str()),
            "secret {secret:?} leaked into an output:\n{text}"
        );
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A user with the given id and live status.
pub fn user(id: &str, status: &str) -> SimUser {
    SimUser {
        id: id.to_string(),
        name: format!("{id}-name"),
        status: status.to_string(),
        privileged: false,
        version: 1,
    }
}

/// The environment variable that holds an instance's token in these tests.
pub fn token_var(instance: &str) -> String {
    format!(
        "ROSTER_TEST_{}_TOKEN",
        instance.to_uppercase().replace('-', "_")
    )
}

impl World {
    pub fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
            sims: BTreeMap::new(),
            instances: BTreeMap::new(),
            env: BTreeMap::new(),
            secret_vars: BTreeSet::new(),
            secrets: BTreeSet::new(),
        }
    }

    /// Every secret value the world gave (or will give) the binary.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.iter().cloned().collect()
    }

    /// The desired-state folder.
    pub fn folder(&self) -> PathBuf {
        self.dir.path().join("desired-state")
    }

    /// Starts a simulator and registers instance `name` for it in `providers.yaml`;
    /// `extra` is added to the instance's YAML (e.g. `"    max_changes: 2\n"`).
    /// The simulator's default token is replaced by a [`distinctive_secret`]; a token the
    /// test chose is kept. Either way it is a secret no output may contain.
    pub async fn add(&mut self, name: &str, mut config: SimConfig, extra: &str) -> &Simulator {
        if config.token == SimConfig::new(config.kind, Vec::new()).token {
            config.token = distinctive_secret();
        }
        let kind = config.kind;
        let sim = Simulator::start(config.clone())
            .await
            .expect("simulator starts");
        let mut yaml = format!(
            "  {name}:\n    kind: {}\n    base_url: {}\n",
            kind.name(),
            sim.base_url()
        );
        match kind {
            SimKind::Acronis => {
                let id_var = format!("{}_ID", token_var(name));
                yaml.push_str(&format!(
                    "    auth: {{ client_id_env: {id_var}, client_secret_env: {} }}\n",
                    token_var(name)
                ));
                self.env.insert(id_var, config.client_id.clone());
                // The secret as it travels in the token request's Basic header.
                self.secrets
                    .insert(base64(&format!("{}:{}", config.client_id, config.token)));
            }
            _ => yaml.push_str(&format!(
                "    auth: {{ bearer_token_env: {} }}\n",
                token_var(name)
            )),
        }
        match kind {
            SimKind::SuspendApi => yaml.push_str(&format!("    tenant_id: {}\n", config.tenant_id)),
            SimKind::StatusApi => {
                yaml.push_str(&format!("    api_version: {}\n", config.api_version))
            }
            SimKind::Zitadel => {
                if let Some(org) = &config.organization_id {
                    yaml.push_str(&format!("    organization_id: \"{org}\"\n"));
                }
            }
            _ => {}
        }
        yaml.push_str(extra);
        self.instances.insert(name.to_string(), yaml);
        self.env.insert(token_var(name), config.token.clone());
        self.secret_vars.insert(token_var(name));
        self.secrets.insert(config.token.clone());
        self.sims.insert(name.to_string(), sim);
        self.write_providers();
        &self.sims[name]
    }

    /// Overrides (or removes, with `None`) an environment variable of the binary. A value
    /// given to a variable that holds a secret (a wrong token, say) is a secret too.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|_| self.secret_vars.contains(name)) {
            self.secrets.insert(v.to_string());
        }
        match value {
            Some(v) => self.env.insert(name.to_string(), v.to_string()),
            None => self.env.remove(name),
        };
    }

    pub fn write_providers(&self) {
        let text = format!(
            "providers:\n{}",
            self.instances.values().cloned().collect::<String>()
        );
        self.write("providers.yaml", &text);
    }

    /// Writes a file of the folder.
    pub fn write(&self, relative: &str, text: &str) {
        let path = self.folder().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Runs `roster ARGS` in the world's directory with its environment, and fails the
    /// test if stdout or stderr contains a secret.
    pub async fn roster(&self, args: &[&str]) -> Run {
        let run = run_roster(self.dir.path(), args, &self.env).await;
        assert_no_secrets(self, &run.stdout);
        assert_no_secrets(self, &run.stderr);
        run
    }

    /// The binary as [`World::roster`] runs it, for a long-lived process (`roster run`):
    /// the caller checks what it reads with [`assert_no_secrets`].
    pub fn command(&self, args: &[&str]) -> Command {
        roster_command(self.dir.path(), args, &self.env)
    }

    /// Like [`roster`](Self::roster), but a run that takes longer than `limit` is killed and
    /// reported as an error, so a hang fails a test instead of stalling it.
    pub async fn roster_within(
        &self,
        args: &[&str],
        limit: std::time::Duration,
    ) -> Result<Run, String> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_STATE_HOME", state_home(self.dir.path()))
            .envs(&self.env)
            .kill_on_drop(true);
        match tokio::time::timeout(limit, command.output()).await {
            Err(_) => Err(format!(
                "roster {} did not finish within {limit:?}",
                args.join(" ")
            )),
            Ok(Err(e)) => Err(format!("roster {} could not run: {e}", args.join(" "))),
            Ok(Ok(output)) => Ok(Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
        }
    }

    /// Total requests the simulators received.
    pub fn request_count(&self) -> usize {
        self.sims.values().map(|s| s.requests().len()).sum()
    }

    pub fn write_count(&self) -> usize {
        self.sims.values().map(|s| s.writes().len()).sum()
    }
}

/// Runs the real binary in `cwd` with exactly `env` added to a minimal environment. The
/// value of every variable whose name says it holds a secret (`TOKEN`, `SECRET`,
/// `PASSWORD`, `PAT`) is checked against stdout and stderr, as [`World::roster`] does.
pub async fn run_roster(cwd: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Run {
    let run = run_roster_unchecked(cwd, args, env).await;
    for (name, value) in env {
        let upper = name.to_uppercase();
        let secret_name = ["TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|word| upper.contains(word))
            || upper.split('_').any(|part| part == "PAT");
        if secret_name && value.len() >= 5 {
            for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                assert!(
                    !text.contains(value.as_str()),
                    "the value of {name} leaked into an output ({stream}):\n{text}"
                );
            }
        }
    }
    run
}

async fn run_roster_unchecked(cwd: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.clone();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = roster_command(&cwd, &args, &env)
            .output()
            .expect("roster runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

/// `roster ARGS` in `cwd` with exactly `env` added to a minimal environment.
fn roster_command(cwd: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_STATE_HOME", state_home(cwd))
        .envs(env);
    command
}

/// A lock directory per test folder (`apply` and `run` lock instances there): tests run
/// side by side with the same instance names.
fn state_home(cwd: &Path) -> PathBuf {
    cwd.join(".roster-state")
}

/// Standard base64 with padding (RFC 4648), for the form a client secret takes in an
/// HTTP Basic header; small enough not to need a crate.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
