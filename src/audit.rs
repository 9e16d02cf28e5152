//! The audit log: for every write call, an `intent` line written (and, for a regular
//! file, synced to disk) *before* the call is made, and an `outcome` line after it, the
//! two paired by `write_id`. A call whose intent line cannot be written is not made, so
//! every call that may have reached a provider is on record, even after `kill -9`.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which half of a write call a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// Written before the call: the call may have reached the provider from here on.
    Intent,
    /// Written after the call: what the provider answered.
    Outcome,
}

/// What a write call achieved, the fields only an `outcome` line has.
#[derive(Debug, Clone, Serialize)]
pub struct AuditOutcome<'a> {
    /// `applied`, `already_converged`, `blocked` or `failed`.
    pub outcome: &'a str,
    /// `null` when no answer came (timeout, dropped connection).
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub event: AuditEvent,
    /// The same on a call's intent and outcome lines; unique across runs.
    pub write_id: &'a str,
    pub instance: &'a str,
    pub user: &'a str,
    pub account_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// The user's `reason` from the folder (intent lines), so the record says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Present on outcome lines only.
    #[serde(flatten)]
    pub result: Option<AuditOutcome<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<&'a str>,
    /// The time bound whose instant made `to` the desired status, when one did: the
    /// record then says the write was scheduled, not asked for by an edit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledCause>,
}

/// Which time bound (contract section 7) decided a write's desired status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledCause {
    /// `until` (the `then` status took effect) or `from` (the status took effect).
    pub bound: &'static str,
    /// The bound's instant, RFC 3339 in UTC.
    pub at: String,
}

/// Why the audit log cannot be opened or written. The OS error is part of the message
/// (not a `source`), so a report that prints the chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "--audit-log -: standard output carries plans and summaries, so audit lines cannot go \
         there; give a file (or /dev/stderr to send them to standard error)"
    )]
    Stdout,
    #[error("cannot open the audit log {path}: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("cannot write the audit log {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// The open file, and whether it is a regular file (only those are synced: `fsync` of
/// a pipe or a terminal fails with EINVAL although the line was written).
struct Target {
    /// Shared so that a sync runs outside the lock: concurrent intents then share the
    /// file system's journal commits instead of queueing for one sync each.
    file: Arc<File>,
    regular: bool,
}

/// An append-only JSON-lines file. Each line is one `write` of the complete line under
/// a lock, so concurrent writers never interleave and a signal never cuts a line;
/// `reopen` supports logrotate (SIGHUP).
pub struct AuditLog {
    path: PathBuf,
    target: Mutex<Target>,
    /// Distinguishes this process's `write_id`s from those of every other run.
    run_id: u32,
    sequence: AtomicU64,
}

impl AuditLog {
    /// Opens (creating) `path` for appending. `-` is refused: stdout is for results.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if path.as_os_str() == "-" {
            return Err(AuditError::Stdout);
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            target: Mutex::new(Self::open_target(path)?),
            run_id: rand::random(),
            sequence: AtomicU64::new(0),
        })
    }

    fn open_target(path: &Path) -> Result<Target, AuditError> {
        let open_error = |error| AuditError::Open {
            path: path.display().to_string(),
            error,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        let regular = file.metadata().map_err(open_error)?.file_type().is_file();
        Ok(Target {
            file: Arc::new(file),
            regular,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Target> {
        self.target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh id pairing one call's intent and outcome lines.
    pub fn next_write_id(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{:08x}-{n}", self.run_id)
    }

    /// Appends one record as a single line with one `write`. An intent line is then
    /// synced to disk when the target is a regular file; an outcome line reaches the
    /// disk with the next intent's sync (or at close), since losing it in a power cut
    /// only leaves an intent without an outcome, which the next pass resolves by reading
    /// the live status. Any error (disk full, a short write) is returned: the caller must
    /// then make no call that this line was to announce.
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let write_error = |error| AuditError::Write {
            path: self.path.display().to_string(),
            error,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| write_error(e.into()))?;
        line.push(b'\n');
        let file = {
            let target = self.lock();
            let written = (&*target.file).write(&line).map_err(write_error)?;
            if written != line.len() {
                return Err(write_error(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("only {written} of {} bytes written", line.len()),
                )));
            }
            (target.regular && record.event == AuditEvent::Intent).then(|| target.file.clone())
        };
        if let Some(file) = file {
            file.sync_data().map_err(write_error)?;
        }
        Ok(())
    }

    /// Exits the process at once, but never in the middle of a line: waits for a write
    /// in progress to finish (used when a second shutdown signal arrives).
    pub fn exit_process(&self, code: i32) -> ! {
        let _target = self.lock();
        std::process::exit(code)
    }

    /// Reopens the file at its path, after logrotate moved the old one away.
    pub fn reopen(&self) -> Result<(), AuditError> {
        let fresh = Self::open_target(&self.path)?;
        let old = std::mem::replace(&mut *self.lock(), fresh);
        old.sync();
        Ok(())
    }
}

impl Target {
    /// Best effort: the lines are already with the OS; this only hastens the disk.
    fn sync(&self) {
        if self.regular {
            if let Err(error) = self.file.sync_data() {
                tracing::warn!(error = ?error.to_string(), "cannot sync the audit log to disk");
            }
        }
    }
}

/// Outcome lines are not synced one by one; closing the log syncs the last of them.
impl Drop for AuditLog {
    fn drop(&mut self) {
        self.lock().sync();
    }
}

/// The commit checked out in `folder`, or in the nearest enclosing git checkout, read
/// from `.git` directly so that no `git` binary is needed.
pub fn git_commit(folder: &Path) -> Option<String> {
    let start = folder.canonicalize().ok()?;
    let git_dir = start
        .ancestors()
        .map(|dir| dir.join(".git"))
        .find(|p| p.exists())?;
    let git_dir = if git_dir.is_file() {
        let text = std::fs::read_to_string(&git_dir).ok()?;
        let target = text.trim().strip_prefix("gitdir:")?.trim();
        git_dir.parent()?.join(target)
    } else {
        git_dir
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_hex_commit(head).then(|| head.to_string());
    };
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    for dir in [&git_dir, &common] {
        if let Ok(text) = std::fs::read_to_string(dir.join(reference)) {
            let commit = text.trim();
            if is_hex_commit(commit) {
                return Some(commit.to_string());
            }
        }
        if let Ok(packed) = std::fs::read_to_string(dir.join("packed-refs")) {
            for line in packed.lines() {
                if let Some((commit, name)) = line.split_once(' ') {
                    if name == reference && is_hex_commit(commit) {
                        return Some(commit.to_string());
                    }
                }
            }
        }
    }
    None
}

fn is_hex_commit(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_head_from_a_plain_git_dir() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(git.join("refs/heads/main"), format!("{commit}\n")).unwrap();
        std::fs::create_dir(dir.path().join("desired-state")).unwrap();
        assert_eq!(
            git_commit(&dir.path().join("desired-state")).as_deref(),
            Some(commit)
        );

        std::fs::remove_file(git.join("refs/heads/main")).unwrap();
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{commit} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(commit));

        std::fs::write(git.join("HEAD"), format!("{commit}\n")).unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(commit));
    }

    fn record<'a>(write_id: &'a str, result: Option<AuditOutcome<'a>>) -> AuditRecord<'a> {
        AuditRecord {
            time: "2026-01-01T00:00:00Z".into(),
            event: if result.is_some() {
                AuditEvent::Outcome
            } else {
                AuditEvent::Intent
            },
            write_id,
            instance: "portal",
            user: "jsmith",
            account_id: "u1",
            from: "active",
            to: "inactive",
            reason: Some("Left (HR-1)"),
            result,
            git_commit: None,
            scheduled: None,
        }
    }

    #[test]
    fn intent_and_outcome_lines_are_appended_whole_and_paired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let id = log.next_write_id();
        assert_ne!(id, log.next_write_id(), "ids are unique");
        log.append(&record(&id, None)).unwrap();
        let outcome = AuditOutcome {
            outcome: "failed",
            http_status: None,
            message: Some("timed out"),
        };
        log.append(&record(&id, Some(outcome))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "intent");
        assert_eq!(lines[0]["reason"], "Left (HR-1)");
        assert!(lines[0].get("outcome").is_none());
        assert!(lines[0].get("http_status").is_none());
        assert_eq!(lines[1]["event"], "outcome");
        assert_eq!(lines[1]["write_id"], lines[0]["write_id"]);
        assert_eq!(lines[1]["outcome"], "failed");
        assert!(lines[1]["http_status"].is_null());
        assert_eq!(lines[1]["message"], "timed out");

        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        log.reopen().unwrap();
        log.append(&record(&id, None)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_dash_is_refused_rather_than_creating_a_file_named_dash() {
        let error = AuditLog::open(Path::new("-")).err().unwrap();
        assert!(matches!(error, AuditError::Stdout));
        assert!(error.to_string().contains("/dev/stderr"), "{error}");
    }

    #[test]
    fn a_full_device_fails_loudly() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        let error = log.append(&record("x-1", None)).err().unwrap();
        assert!(error.to_string().contains("/dev/full"), "{error}");
    }

    #[test]
    fn a_pipe_takes_the_line_without_a_false_sync_failure() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (mut reader, writer) = std::io::pipe().unwrap();
        let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
        let log = AuditLog::open(Path::new(&path)).unwrap();
        log.append(&record("x-1", None)).unwrap();
        drop(log);
        drop(writer);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert!(
            text.ends_with("}\n") && text.contains("\"intent\""),
            "{text}"
        );
    }

    #[test]
    fn an_open_error_names_the_os_error_once() {
        let error = AuditLog::open(Path::new("/nonexistent-dir/audit.jsonl"))
            .err()
            .unwrap();
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(chain.matches("os error").count(), 1, "{chain}");
    }
}
