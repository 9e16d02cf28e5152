//! Helpers for the daemon tests: `roster run` as a child process with its stderr
//! collected, desired-state folders written the ways editors, git and Kubernetes write
//! them, waits on conditions instead of fixed sleeps, and a strict OpenMetrics checker.

use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable the test folders name in `bearer_token_env`.
pub const TOKEN_ENV: &str = "ROSTER_TEST_TOKEN";

/// A status-api simulator holding `users`.
pub async fn status_sim(users: Vec<SimUser>) -> Simulator {
    let config = SimConfig::new(SimKind::StatusApi, users);
    Simulator::start(config).await.expect("start simulator")
}

/// `providers.yaml` for status-api instances: (name, simulator, extra YAML lines).
pub fn providers_yaml(instances: &[(&str, &Simulator, &str)]) -> String {
    let mut yaml = String::from("providers:\n");
    for (name, sim, extra) in instances {
        yaml.push_str(&format!(
            "  {name}:\n    kind: status-api\n    base_url: {}\n    auth: {{ bearer_token_env: {TOKEN_ENV} }}\n",
            sim.base_url()
        ));
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("    {}\n", line.trim()));
        }
    }
    yaml
}

/// A user file: one user per (user, instance, account id, status).
pub fn users_yaml(accounts: &[(&str, &str, &str, &str)]) -> String {
    let mut yaml = String::from("users:\n");
    for (user, instance, id, status) in accounts {
        yaml.push_str(&format!(
            "  - name: {user}\n    status: {status}\n    accounts:\n      {instance}: {id}\n"
        ));
    }
    yaml
}

/// Writes like an editor's atomic save: a temporary file renamed over the target.
pub fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("roster-test-tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over target");
}

/// Makes `dir` look like a git checkout at `commit`, as `audit::git_commit` reads it.
pub fn fake_git_checkout(dir: &Path, commit: &str) {
    let git = dir.join(".git");
    std::fs::create_dir_all(git.join("refs/heads")).unwrap();
    std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(git.join("refs/heads/main"), format!("{commit}\n")).unwrap();
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `roster run` as a child process, its stderr collected line by line.
pub struct Daemon {
    child: Child,
    _state: tempfile::TempDir,
    pub address: SocketAddr,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts `roster run DIR --listen 127.0.0.1:0 ARGS...` and waits for its address.
    pub async fn start(dir: &Path, args: &[&str]) -> Daemon {
        Daemon::start_env(dir, args, &[]).await
    }

    /// [`start`](Self::start) with these environment variables added.
    pub async fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .arg("run")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env(TOKEN_ENV, "sim-token")
            .envs(env.iter().copied())
            .env_remove("RUST_LOG");
        Daemon::spawn(command).await
    }

    /// Starts a prepared `roster run ... --listen 127.0.0.1:0` command (such as
    /// `World::command` builds) with its stderr collected, and waits for its address.
    /// Unless the command sets `XDG_STATE_HOME`, the daemon gets its own lock directory:
    /// daemon tests run side by side with the same instance names.
    pub async fn spawn(mut command: Command) -> Daemon {
        let state = tempfile::tempdir().expect("state dir");
        if !command
            .get_envs()
            .any(|(name, value)| name == "XDG_STATE_HOME" && value.is_some())
        {
            command.env("XDG_STATE_HOME", state.path());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn roster");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut daemon = Daemon {
            child,
            _state: state,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(address) = daemon.listen_address() {
                daemon.address = address;
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("roster exited early ({status}):\n{}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "no 'listening on' line:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn listen_address(&self) -> Option<SocketAddr> {
        let log = self.log();
        let rest = &log[log.find("listening on ")? + "listening on ".len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Lines of the log containing every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }

    pub async fn wait_log(&self, needles: &[&str], timeout: Duration) {
        eventually(&format!("a log line with {needles:?}"), timeout, || async {
            !self.log_lines(needles).is_empty()
        })
        .await;
    }

    /// GET on the daemon's endpoint: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.address);
        match self.http.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(error) => panic!("GET {url}: {error}\n{}", self.log()),
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// The value of one sample, named exactly as exposed (`name{labels}`), if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics().await, sample)
    }

    /// The sum of every sample of `name` whose labels include all of `labels`.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|line| labels.iter().all(|l| line.contains(l)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread drain the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "roster did not exit within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- roster log ---\n{}--- end ---", self.log());
        }
    }
}

/// The value of the sample named exactly `sample` (`name{labels}`) in an exposition.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
}

/// A temporary folder holding a desired-state folder (and whatever else a test adds).
/// A workspace whose folder wants every one of `ids` inactive at `instance` of `sim`,
/// with `extra` added to the instance's YAML (e.g. `"max_concurrency: 4"`).
pub fn leavers_workspace(
    sim: &Simulator,
    instance: &str,
    ids: &[String],
    extra: &str,
) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "desired-state/providers.yaml",
        &providers_yaml(&[(instance, sim, extra)]),
    );
    let rows: Vec<(&str, &str, &str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), instance, id.as_str(), "inactive"))
        .collect();
    ws.write("desired-state/users.yaml", &users_yaml(&rows));
    ws
}

pub struct Workspace {
    pub temp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            temp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.temp.path().join(relative)
    }

    /// Writes `relative` (creating folders), plainly.
    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that `text` is a well-formed OpenMetrics exposition, strictly: every family
/// has `# HELP` and `# TYPE` before its samples, every sample is `name{labels} value`
/// with a name that belongs to a declared family (with the suffixes its type allows),
/// label values are quoted, values are numbers, and the text ends with `# EOF`.
pub fn check_exposition(text: &str) -> Result<(), String> {
    use std::collections::BTreeMap;
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, bool> = BTreeMap::new();
    let mut samples = 0;
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        return Err("does not end with # EOF".into());
    }
    for (number, line) in lines.iter().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if *line == "# EOF" {
            if number + 1 != lines.len() {
                return Err(at("# EOF before the end"));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().ok_or_else(|| at("comment without a name"))?;
            let rest = parts.next().unwrap_or_default();
            if !valid_name(name) {
                return Err(at("bad metric name"));
            }
            match keyword {
                "TYPE" => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "summary",
                        "stateset",
                        "gaugehistogram",
                        "unknown",
                    ];
                    if !known.contains(&rest) {
                        return Err(at("unknown type"));
                    }
                    if types.insert(name.to_string(), rest.to_string()).is_some() {
                        return Err(at("second # TYPE for a family"));
                    }
                }
                "HELP" => {
                    helps.insert(name.to_string(), true);
                }
                "UNIT" => {
                    if !name.ends_with(&format!("_{rest}")) {
                        return Err(at("unit is not the name's suffix"));
                    }
                }
                _ => return Err(at("unknown comment keyword")),
            }
            continue;
        }
        let (name, after_name) = split_name(line).ok_or_else(|| at("no metric name"))?;
        let after_labels = match after_name.strip_prefix('{') {
            Some(labels) => check_labels(labels).map_err(|why| at(&why))?,
            None => after_name,
        };
        let value = after_labels
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let value = value.split(' ').next().unwrap_or_default();
        let numeric = matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok();
        if !numeric {
            return Err(at("value is not a number"));
        }
        let family = types
            .iter()
            .filter(|(family, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_sum", "_count", "_created"],
                    "info" => &["_info"],
                    "summary" => &["", "_sum", "_count", "_created"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| name == format!("{family}{s}"))
            })
            .map(|(family, _)| family.clone())
            .next()
            .ok_or_else(|| at("sample of no declared family (missing # TYPE?)"))?;
        if !helps.contains_key(&family) {
            return Err(at("family without # HELP"));
        }
        if !name.starts_with("roster_") {
            return Err(at("name without the roster_ prefix"));
        }
        if name.ends_with("_bucket") && !after_name.contains("le=\"") {
            return Err(at("bucket without le"));
        }
        samples += 1;
    }
    if samples == 0 {
        return Err("no samples".into());
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn split_name(line: &str) -> Option<(&str, &str)> {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..end];
    valid_name(name).then(|| (name, &line[end..]))
}

/// Checks `key="value",...}` and returns what follows the closing brace.
fn check_labels(mut rest: &str) -> Result<&str, String> {
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (key, after_key) = split_name(rest).ok_or("bad label name")?;
        if key.starts_with("__") {
            return Err("reserved label name".into());
        }
        let mut chars = after_key
            .strip_prefix("=\"")
            .ok_or("label without =\"")?
            .char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    chars.next();
                }
                Some((i, '"')) => break i,
                Some(_) => {}
                None => return Err("unterminated label value".into()),
            }
        };
        rest = &after_key[2 + end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

/// The audit log at `path`, each line parsed; panics unless every line is whole JSON
/// and the file ends with a newline (so no line was cut).
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the last audit line is cut: {text:?}"
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {line:?}"))
        })
        .collect()
}
