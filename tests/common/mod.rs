//! Shared fixtures for the integration tests: simulators on loopback, a desired-state
//! folder on disk pointing at them, and the real `roster` binary run against it.
#![allow(dead_code)]

use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod daemon;
#[allow(unused_imports)]
pub use daemon::*;

/// A test world: a temporary folder, the simulators, and the secrets the binary gets.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sims: BTreeMap<String, Simulator>,
    instances: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

/// What one run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
        }
    }

    /// The desired-state folder.
    pub fn folder(&self) -> PathBuf {
        self.dir.path().join("desired-state")
    }

    /// Starts a simulator and registers instance `name` for it in `providers.yaml`;
    /// `extra` is added to the instance's YAML (e.g. `"    max_changes: 2\n"`).
    pub async fn add(&mut self, name: &str, config: SimConfig, extra: &str) -> &Simulator {
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
        self.sims.insert(name.to_string(), sim);
        self.write_providers();
        &self.sims[name]
    }

    /// Overrides (or removes, with `None`) an environment variable of the binary.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
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

    /// Runs `roster ARGS` with the folder as DIR appended when `with_dir`.
    pub async fn roster(&self, args: &[&str]) -> Run {
        run_roster(self.dir.path(), args, &self.env).await
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

/// Runs the real binary in `cwd` with exactly `env` added to a minimal environment.
pub async fn run_roster(cwd: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.clone();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(&args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
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
