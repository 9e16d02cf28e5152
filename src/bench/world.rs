//! The benchmark's world: one in-process simulator per provider kind holding generated
//! accounts, and a desired-state folder that names every one of them, either mirroring the
//! live status (in sync) or with a chosen share of accounts set to the opposite status
//! (drift). Also knows the request lower bounds each kind allows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roster::simulator::{Faults, SimConfig, SimKind, SimUser, Simulator};

/// How the bench's world is built.
#[derive(Clone, Debug)]
pub struct WorldSpec {
    /// The kinds, one instance each (named after its kind).
    pub kinds: Vec<SimKind>,
    /// Accounts per instance; the folder names every one of them.
    pub accounts: usize,
    /// Share of accounts (0.0 to 1.0) whose desired status is the opposite of the live one.
    pub drift: f64,
    /// Latency the simulators add to every API request.
    pub latency: Duration,
    /// `max_concurrency` of every instance; `None` keeps Roster's default.
    pub max_concurrency: Option<usize>,
    /// Users per user file.
    pub users_per_file: usize,
}

/// One instance: its simulator, its accounts and which of them drift.
pub struct Instance {
    pub name: String,
    pub kind: SimKind,
    pub sim: Simulator,
    pub users: Vec<SimUser>,
    /// Desired status of each account, in the order of `users`.
    pub desired: Vec<String>,
    /// The token (acronis: client secret) the simulator accepts; never printed.
    pub token: String,
    pub client_id: String,
    pub tenant_id: String,
}

impl Instance {
    /// Accounts whose desired status differs from the live one.
    pub fn drifted(&self) -> usize {
        self.users
            .iter()
            .zip(&self.desired)
            .filter(|(u, d)| u.status != **d)
            .count()
    }
}

/// The running simulators and the folder that describes them.
pub struct World {
    pub instances: Vec<Instance>,
    pub folder: PathBuf,
    /// Environment variables the roster child needs (token variable names to values).
    pub env: BTreeMap<String, String>,
    pub spec: WorldSpec,
}

/// The page size the adapter asks for and the simulator serves (the adapters' constants:
/// `PAGE_SIZE` in `src/provider/*.rs`; ZITADEL allows up to 1000). Acronis: ids per batch read.
pub fn page_size(kind: SimKind) -> usize {
    match kind {
        SimKind::Zitadel => 1000,
        SimKind::StatusApi
        | SimKind::SuspendApi
        | SimKind::Atlan
        | SimKind::Acronis
        | SimKind::Scim => 100,
    }
}

/// The kinds the workloads run, one instance each: the five the targets were set for
/// ("5 × 20,000 accounts"), so figures stay comparable as kinds are added.
/// The order matters: the first is the status-api instance that B2 and W4's edits use.
pub const KINDS: [SimKind; 5] = [
    SimKind::StatusApi,
    SimKind::SuspendApi,
    SimKind::Atlan,
    SimKind::Zitadel,
    SimKind::Acronis,
];

/// The fewest requests one pass can read `accounts` accounts with (the simulator holds exactly
/// the folder's accounts): pages at the kind's page size; Acronis batches of 100 ids plus its
/// one token request.
pub fn read_bound(kind: SimKind, accounts: usize) -> usize {
    let pages = accounts.div_ceil(page_size(kind)).max(1);
    match kind {
        SimKind::Acronis => pages + 1,
        _ => pages,
    }
}

/// The longest chain of requests that must follow one another in a pass that writes: the
/// cursor-paged suspend-api learns each page's successor from the previous page; Acronis needs
/// its token before reading; every write needs the read that found the drift.
pub fn sequential_chain(kind: SimKind, accounts: usize, writes: usize) -> usize {
    let write = usize::from(writes > 0);
    match kind {
        SimKind::SuspendApi => accounts.div_ceil(page_size(kind)).max(1) + write,
        SimKind::Acronis => 2 + write,
        _ => 1 + write,
    }
}

/// The instance name used for a kind.
pub fn instance_name(kind: SimKind) -> String {
    kind.name().to_string()
}

fn token_var(name: &str) -> String {
    format!(
        "BENCH_{}_TOKEN",
        name.to_uppercase().replace(['-', '.'], "_")
    )
}

fn random_secret(rng: &mut impl Rng) -> String {
    let n: u128 = rng.random();
    format!("bench-{n:032x}")
}

impl World {
    /// Starts the simulators and writes the folder under `dir/desired-state`.
    pub async fn start(spec: WorldSpec, dir: &Path, seed: u64) -> anyhow::Result<World> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut instances = Vec::new();
        let mut env = BTreeMap::new();
        for (k, kind) in spec.kinds.iter().copied().enumerate() {
            let users = SimUser::generate(kind, spec.accounts, seed + k as u64);
            let mut config = SimConfig::new(kind, users.clone());
            config.token = random_secret(&mut rng);
            config.page_size_max = page_size(kind);
            config.faults = Faults {
                latency: spec.latency,
                rules: Vec::new(),
            };
            let token = config.token.clone();
            let client_id = config.client_id.clone();
            let tenant_id = config.tenant_id.clone();
            let sim = Simulator::start(config)
                .await
                .with_context(|| format!("starting the {kind} simulator"))?;
            let desired = drifted_statuses(&users, spec.drift, &mut rng);
            let name = instance_name(kind);
            env.insert(token_var(&name), token.clone());
            if kind == SimKind::Acronis {
                env.insert(format!("{}_ID", token_var(&name)), client_id.clone());
            }
            instances.push(Instance {
                name,
                kind,
                sim,
                users,
                desired,
                token,
                client_id,
                tenant_id,
            });
        }
        let folder = dir.join("desired-state");
        let world = World {
            instances,
            folder,
            env,
            spec,
        };
        world.write_folder(None)?;
        Ok(world)
    }

    /// `providers.yaml`, for these instances.
    pub fn providers_yaml(&self) -> String {
        let mut yaml = String::from("providers:\n");
        for i in &self.instances {
            let _ = writeln!(
                yaml,
                "  {}:\n    kind: {}\n    base_url: {}\n    max_changes: 1000000",
                i.name,
                i.kind.name(),
                i.sim.base_url()
            );
            if let Some(c) = self.spec.max_concurrency {
                let _ = writeln!(yaml, "    max_concurrency: {c}");
            }
            let var = token_var(&i.name);
            match i.kind {
                SimKind::Acronis => {
                    let _ = writeln!(
                        yaml,
                        "    auth: {{ client_id_env: {var}_ID, client_secret_env: {var} }}"
                    );
                }
                _ => {
                    let _ = writeln!(yaml, "    auth: {{ bearer_token_env: {var} }}");
                }
            }
            match i.kind {
                SimKind::SuspendApi => {
                    let _ = writeln!(yaml, "    tenant_id: {}", i.tenant_id);
                }
                SimKind::StatusApi => yaml.push_str("    api_version: v1\n"),
                _ => {}
            }
        }
        yaml
    }

    /// Writes `providers.yaml` and the user files. `flip` (user index, instance index) sets
    /// that one account to the opposite of its desired status (the daemon edit).
    pub fn write_folder(&self, flip: Option<(usize, usize)>) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.folder.join("people"))
            .with_context(|| format!("creating {}", self.folder.display()))?;
        write(&self.folder.join("providers.yaml"), &self.providers_yaml())?;
        let per_file = self.spec.users_per_file.max(1);
        for (file, start) in (0..self.spec.accounts).step_by(per_file).enumerate() {
            let end = (start + per_file).min(self.spec.accounts);
            let text = self.user_file(start..end, flip);
            write(&self.user_file_path(file), &text)?;
        }
        Ok(())
    }

    /// The path of the `file`-th user file.
    pub fn user_file_path(&self, file: usize) -> PathBuf {
        self.folder
            .join("people")
            .join(format!("team-{file:04}.yaml"))
    }

    /// The user file for users `range`: user `i` holds account `i` of every instance.
    pub fn user_file(&self, range: std::ops::Range<usize>, flip: Option<(usize, usize)>) -> String {
        let mut yaml = String::with_capacity(range.len() * 200);
        yaml.push_str("users:\n");
        for i in range {
            let status = |k: usize| -> &str {
                let desired = self.instances[k].desired[i].as_str();
                if flip == Some((i, k)) {
                    opposite(desired)
                } else {
                    desired
                }
            };
            let user_status = status(0);
            let _ = write!(
                yaml,
                "  - name: p{i:06}\n    status: {user_status}\n    accounts:\n"
            );
            for (k, inst) in self.instances.iter().enumerate() {
                let id = &inst.users[i].id;
                let s = status(k);
                if s == user_status {
                    let _ = writeln!(yaml, "      {}: \"{id}\"", inst.name);
                } else {
                    let _ = writeln!(yaml, "      {}: {{ id: \"{id}\", status: {s} }}", inst.name);
                }
            }
        }
        yaml
    }

    /// Total accounts the folder names.
    pub fn accounts(&self) -> usize {
        self.instances.iter().map(|i| i.users.len()).sum()
    }

    /// The fewest requests a pass can make over every instance: reads plus one write per
    /// drifted account.
    pub fn request_bound(&self) -> usize {
        self.instances
            .iter()
            .map(|i| read_bound(i.kind, i.users.len()) + i.drifted())
            .sum()
    }

    /// Requests the simulators received since the last [`clear`](Self::clear), token
    /// requests included.
    pub fn requests(&self) -> usize {
        self.instances
            .iter()
            .map(|i| i.sim.read_count() + i.sim.write_count() + i.sim.token_requests())
            .sum()
    }

    /// Writes the simulators received since the last clear.
    pub fn writes(&self) -> usize {
        self.instances.iter().map(|i| i.sim.write_count()).sum()
    }

    /// Resets the simulators' counters and request logs.
    pub fn clear(&self) {
        for i in &self.instances {
            i.sim.clear_requests();
        }
    }

    /// Stops every simulator.
    pub async fn shutdown(self) {
        for i in self.instances {
            i.sim.shutdown().await;
        }
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `active` for `inactive` and the other way round.
pub fn opposite(status: &str) -> &'static str {
    if status == "active" {
        "inactive"
    } else {
        "active"
    }
}

/// Desired statuses: the live one, except for `share` (at least one) of the non-privileged
/// accounts, which get the opposite (a privileged account cannot be deactivated, so drift
/// there would be blocked rather than written).
fn drifted_statuses(users: &[SimUser], share: f64, rng: &mut StdRng) -> Vec<String> {
    let mut desired: Vec<String> = users.iter().map(|u| u.status.clone()).collect();
    // A world with drift has at least one drifted account, however small.
    let want = match (users.len() as f64 * share).round() as usize {
        0 if share > 0.0 => 1,
        n => n,
    };
    let candidates: Vec<usize> = (0..users.len())
        .filter(|&i| {
            !users[i].privileged && matches!(users[i].status.as_str(), "active" | "inactive")
        })
        .collect();
    let mut chosen =
        rand::seq::index::sample(rng, candidates.len(), want.min(candidates.len())).into_vec();
    chosen.sort_unstable();
    for c in chosen {
        let i = candidates[c];
        desired[i] = opposite(&users[i].status).to_string();
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounds_follow_page_sizes() {
        assert_eq!(read_bound(SimKind::StatusApi, 20_000), 200);
        assert_eq!(read_bound(SimKind::Zitadel, 20_000), 20);
        assert_eq!(read_bound(SimKind::Acronis, 20_000), 201);
        assert_eq!(read_bound(SimKind::Atlan, 1), 1);
        assert_eq!(sequential_chain(SimKind::SuspendApi, 10_000, 100), 101);
        assert_eq!(sequential_chain(SimKind::StatusApi, 10_000, 0), 1);
    }

    #[test]
    fn drift_flips_exactly_the_share_of_unprivileged_accounts() {
        let users = SimUser::generate(SimKind::Atlan, 1000, 7);
        let mut rng = StdRng::seed_from_u64(1);
        let desired = drifted_statuses(&users, 0.01, &mut rng);
        let flipped: Vec<usize> = (0..users.len())
            .filter(|&i| users[i].status != desired[i])
            .collect();
        assert_eq!(flipped.len(), 10);
        assert!(flipped.iter().all(|&i| !users[i].privileged));
    }
}
