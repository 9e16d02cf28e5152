//! Child processes and what they cost: wall time and peak resident memory of a command that
//! runs to its end (from `wait4`), and CPU seconds and memory of a running one (from /proc).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// How one finished child went.
#[derive(Debug)]
pub struct Finished {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub wall: Duration,
    /// Peak resident set size, in bytes.
    pub peak_rss: u64,
    /// CPU time (user + system) the child used.
    pub cpu: Duration,
    /// CPU time the bench's own process used meanwhile: its in-process simulators serving
    /// the child (the bench does nothing else while it waits).
    pub simulators_cpu: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// `roster ARGS` with a minimal environment: PATH, `env`, and `XDG_STATE_HOME` under `dir`
/// (so locks of apply and run stay in the bench's own directory).
pub fn roster_command(
    roster: &Path,
    dir: &Path,
    args: &[&str],
    env: &BTreeMap<String, String>,
) -> Command {
    let mut command = Command::new(roster);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_STATE_HOME", dir.join("state"))
        .envs(env)
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end with stdout and stderr sent to files under `dir`, and measures
/// its wall time and peak RSS. Blocking: call it from `spawn_blocking` in async code.
pub fn run_measured(mut command: Command, dir: &Path, label: &str) -> anyhow::Result<Finished> {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let err = std::fs::File::create(&err_path)
        .with_context(|| format!("creating {}", err_path.display()))?;
    command.stdout(out).stderr(err);
    let own_before = own_cpu();
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let (status, usage) = wait4(child.id())?;
    let wall = started.elapsed();
    let simulators_cpu = own_cpu().saturating_sub(own_before);
    // wait4 reaped the child; the handle only holds the pid now.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Ok(Finished {
        code,
        wall,
        // ru_maxrss is in kilobytes on Linux.
        peak_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        cpu: cpu_time(&usage),
        simulators_cpu,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// User + system time of a resource usage record.
fn cpu_time(usage: &libc::rusage) -> Duration {
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// CPU time this process has used so far, all threads.
fn own_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer points to a live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    cpu_time(&usage)
}

/// Waits for the child `pid` and returns its wait status and resource usage.
fn wait4(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point to live, writable values of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for the child");
        }
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat field {i}"))
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Ok((field(11)? + field(12)?) / ticks)
}

/// A `/proc/PID/status` memory line (`VmRSS`, `VmHWM`) in bytes.
pub fn memory(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// `roster run` as a child, its stderr collected, its metrics endpoint known.
pub struct Daemon {
    child: Child,
    pub address: SocketAddr,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
    log_path: PathBuf,
}

impl Daemon {
    /// Starts `command` (a `roster run ... --listen 127.0.0.1:0`) and waits for its address.
    pub async fn start(mut command: Command, log_path: PathBuf) -> anyhow::Result<Daemon> {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting roster run")?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let mut daemon = Daemon {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            http,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(address) = daemon.listen_address() {
                daemon.address = address;
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                bail!("roster run exited early ({status}):\n{}", daemon.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "roster run printed no 'listening on' line:\n{}",
                    daemon.log()
                );
            }
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
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Status code of `GET path`; 0 when the daemon did not answer.
    pub async fn status(&self, path: &str) -> u16 {
        match self
            .http
            .get(format!("http://{}{path}", self.address))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The sum of every sample of metric `name` (all label sets).
    pub async fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.address))
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await
            .context("reading /metrics")?;
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Polls `/readyz` until 200, or fails after `timeout` with the daemon's log.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.status("/readyz").await == 200 {
                return Ok(started.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("roster run exited ({status}):\n{}", self.log());
            }
            if started.elapsed() > timeout {
                self.keep_log();
                bail!(
                    "roster run not ready after {timeout:?}; its log is in {}",
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes the collected log next to the bench's other outputs.
    pub fn keep_log(&self) {
        let _ = std::fs::write(&self.log_path, self.log());
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 10 s).
    pub fn stop(mut self) {
        self.keep_log();
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill with a pid of our own child has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
