//! One writer per instance on one machine: an exclusive lock file per provider instance
//! under the state directory (`<state-dir>/locks/<instance>.lock`), held with an OS
//! advisory lock (`flock`).
//!
//! The OS, not Roster, releases the lock when the holder's file is closed, so a process
//! that dies (even by `kill -9`) never leaves a stale lock behind. The file's content
//! names the holder (host, pid, command, since) only so that the process that finds the
//! lock held can say who holds it; the content is never trusted for the locking itself.

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The state directory when neither `--state-dir` nor `XDG_STATE_HOME` is given.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/roster";

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The OS error is in the message, not a `source`, so it is printed once.
    #[error(
        "cannot create the state directory {path} (it holds the lock files that keep two \
         Roster processes off one instance): {error}; pass --state-dir DIR (or set \
         XDG_STATE_HOME) to a directory this user can write, the same one for every Roster \
         process on this machine"
    )]
    StateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "cannot open the lock file {path}: {error}; every Roster process writing to this \
         instance on this machine must be able to open it (run as the daemon's user, or \
         fix the permissions)"
    )]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot lock {path}: {error}")]
    Flock {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Another process holds the lock (`apply` does not wait).
    #[error(
        "instance {instance} is locked by another Roster process: {holder}; it may be \
         writing to this instance. Wait for it to finish, or stop it, then run again \
         (lock file {path})"
    )]
    Held {
        instance: String,
        holder: HolderText,
        path: PathBuf,
    },
}

/// The holder a lock file names, as the process that found the lock held reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// `roster run` or `roster apply`.
    pub command: String,
    /// RFC 3339, when the lock was taken.
    pub since: String,
}

impl Holder {
    /// This process, taking a lock for `command` now.
    pub fn current(command: &str) -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// The holder in a message: the file's content is written by another process and is
/// shown escaped; an unreadable one (being written this instant) is said to be unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderText(pub Option<Box<Holder>>);

impl fmt::Display for HolderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(h) => write!(
                f,
                "{:?} with pid {} on host {:?}, since {:?}",
                h.command, h.pid, h.host, h.since
            ),
            None => {
                f.write_str("a process that has not yet written its name (pid and host unknown)")
            }
        }
    }
}

/// The host name for lock files and the default leader-election identity.
pub fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name
    }
}

/// The state directory: `--state-dir`, else `$XDG_STATE_HOME/roster`, else
/// [`SYSTEM_STATE_DIR`]; created if missing.
///
/// Only one fallback, and only for the default: when [`SYSTEM_STATE_DIR`] does not exist
/// and this user cannot create it (a laptop, a CI runner), `$HOME/.local/state/roster`
/// (XDG's own default for `XDG_STATE_HOME`) is used and logged. No daemon can be using
/// the system directory then, since it does not exist. A system directory that exists
/// but cannot be used, or a directory named by `--state-dir`/`XDG_STATE_HOME` that cannot
/// be created, is an error with advice: a second, private lock directory there would let
/// an operator's `apply` run beside the daemon that uses the shared one.
pub fn state_dir(flag: Option<&Path>) -> Result<PathBuf, LockError> {
    resolve_state_dir(
        flag,
        std::env::var_os("XDG_STATE_HOME"),
        Path::new(SYSTEM_STATE_DIR),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn resolve_state_dir(
    flag: Option<&Path>,
    xdg_state_home: Option<std::ffi::OsString>,
    system: &Path,
    home: Option<PathBuf>,
) -> Result<PathBuf, LockError> {
    if let Some(path) = flag {
        return create_state_dir(path);
    }
    if let Some(xdg) = xdg_state_home.filter(|v| !v.is_empty()) {
        return create_state_dir(&PathBuf::from(xdg).join("roster"));
    }
    match create_state_dir(system) {
        Ok(path) => Ok(path),
        Err(error) if !system.exists() => {
            let Some(home) = home.filter(|h| h.is_absolute()) else {
                return Err(error);
            };
            let path = create_state_dir(&home.join(".local/state/roster"))?;
            tracing::info!(
                state_dir = %path.display(),
                "{} cannot be created by this user; lock files go to {} (pass --state-dir to choose)",
                system.display(),
                path.display()
            );
            Ok(path)
        }
        Err(error) => Err(error),
    }
}

fn create_state_dir(path: &Path) -> Result<PathBuf, LockError> {
    std::fs::create_dir_all(path.join("locks")).map_err(|error| LockError::StateDir {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(path.to_path_buf())
}

/// The lock file of `instance`. Instance names are validated by the loader (lower-case
/// letters, digits, `-`, `_`), so they are safe as file names.
pub fn lock_path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{instance}.lock"))
}

/// A held instance lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    instance: String,
    /// Kept open: closing the file releases the `flock`.
    _file: File,
}

impl InstanceLock {
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

/// The outcome of one attempt to take a lock without waiting.
#[derive(Debug)]
pub enum Attempt {
    Acquired(InstanceLock),
    /// Held by another process (or another lock of this process), named by its file.
    Held(HolderText),
}

/// Tries once to take the lock of `instance` for `command`; never blocks.
pub fn try_lock(state_dir: &Path, instance: &str, command: &str) -> Result<Attempt, LockError> {
    let path = lock_path(state_dir, instance);
    // Not truncated on open: the holder's name must survive a failed attempt.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| LockError::Open {
            path: path.clone(),
            error,
        })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Attempt::Held(read_holder(&mut file))),
        Err(errno) => {
            return Err(LockError::Flock {
                path,
                error: errno.into(),
            })
        }
    }
    // The name is for messages only; a failure to write it does not weaken the lock.
    let holder = Holder::current(command);
    if let Ok(text) = serde_json::to_string(&holder) {
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(format!("{text}\n").as_bytes()))
            .and_then(|()| file.flush());
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "cannot write the holder's name into the lock file; the lock is held");
        }
    }
    Ok(Attempt::Acquired(InstanceLock {
        instance: instance.to_string(),
        _file: file,
    }))
}

fn read_holder(file: &mut File) -> HolderText {
    let mut text = String::new();
    let read = file.rewind().and_then(|()| {
        file.take(4096).read_to_string(&mut text)?;
        Ok(())
    });
    HolderText(
        read.ok()
            .and_then(|()| serde_json::from_str::<Holder>(text.trim()).ok())
            .map(Box::new),
    )
}

/// `apply`: takes the lock of every instance it may write, or fails naming the holder
/// of the first one held. Locks taken before the failure are released on return.
pub fn lock_all<'a>(
    state_dir: &Path,
    instances: impl IntoIterator<Item = &'a String>,
    command: &str,
) -> Result<Vec<InstanceLock>, LockError> {
    let mut held = Vec::new();
    for instance in instances {
        match try_lock(state_dir, instance, command)? {
            Attempt::Acquired(lock) => held.push(lock),
            Attempt::Held(holder) => {
                return Err(LockError::Held {
                    instance: instance.clone(),
                    holder,
                    path: lock_path(state_dir, instance),
                })
            }
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_an_instance_is_refused_and_names_the_holder_until_released() {
        let temp = tempfile::tempdir().unwrap();
        let dir = state_dir(Some(temp.path())).unwrap();
        let dir = dir.as_path();
        let first = match try_lock(dir, "helpdesk", "roster run").unwrap() {
            Attempt::Acquired(lock) => lock,
            Attempt::Held(holder) => panic!("free lock held by {holder}"),
        };
        assert_eq!(first.instance(), "helpdesk");
        // A second open file description in the same process conflicts like another process.
        let error = lock_all(
            dir,
            &["portal".to_string(), "helpdesk".to_string()],
            "roster apply",
        )
        .unwrap_err();
        let message = error.to_string();
        let pid = std::process::id();
        assert!(
            message.starts_with(&format!(
                "instance helpdesk is locked by another Roster process: \"roster run\" with pid {pid} on host {:?}",
                hostname()
            )),
            "{message}"
        );
        // The failed attempt released the lock it had taken on the other instance.
        assert!(matches!(
            try_lock(dir, "portal", "roster apply").unwrap(),
            Attempt::Acquired(_)
        ));
        drop(first);
        let locks = lock_all(dir, &["helpdesk".to_string()], "roster apply").unwrap();
        assert_eq!(locks.len(), 1);
        let text = std::fs::read_to_string(lock_path(dir, "helpdesk")).unwrap();
        let holder: Holder = serde_json::from_str(text.trim()).unwrap();
        assert_eq!((holder.pid, holder.command.as_str()), (pid, "roster apply"));
    }

    #[test]
    fn an_unreadable_holder_name_is_reported_as_unknown_and_hostile_text_is_escaped() {
        assert!(HolderText(None)
            .to_string()
            .contains("pid and host unknown"));
        let hostile = HolderText(Some(Box::new(Holder {
            host: "evil\nhost".into(),
            pid: 7,
            command: "roster run".into(),
            since: "now".into(),
        })));
        assert!(!hostile.to_string().contains('\n'), "{hostile}");
    }

    #[test]
    fn only_a_missing_system_dir_falls_back_to_the_home_state_dir() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let home = temp.path().join("home");
        // The system directory cannot exist under a file: fall back to $HOME's.
        let missing = file.join("roster");
        let used = resolve_state_dir(None, None, &missing, Some(home.clone())).unwrap();
        assert_eq!(used, home.join(".local/state/roster"));
        assert!(used.join("locks").is_dir());
        // XDG_STATE_HOME, when set, is used and never replaced.
        let xdg = temp.path().join("xdg");
        let used = resolve_state_dir(None, Some(xdg.clone().into()), &missing, None).unwrap();
        assert_eq!(used, xdg.join("roster"));
        let broken = Some(file.join("x").into_os_string());
        assert!(resolve_state_dir(None, broken, &missing, Some(home.clone())).is_err());
        // An existing system directory that cannot be used is an error, not a fallback.
        let existing = temp.path().join("system");
        std::fs::create_dir(&existing).unwrap();
        std::fs::write(existing.join("locks"), "").unwrap();
        let error = resolve_state_dir(None, None, &existing, Some(home)).unwrap_err();
        assert!(
            error.to_string().contains("pass --state-dir DIR"),
            "{error}"
        );
        // No home to fall back to: the error.
        assert!(resolve_state_dir(None, None, &missing, None).is_err());
    }

    #[test]
    fn an_uncreatable_state_dir_is_an_error_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let error = state_dir(Some(&file.join("sub"))).unwrap_err().to_string();
        assert!(error.contains("pass --state-dir DIR"), "{error}");
        let made = state_dir(Some(&dir.path().join("new"))).unwrap();
        assert!(made.join("locks").is_dir());
    }
}
