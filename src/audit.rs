//! The audit log: one JSON line per write call, appended and flushed before the next
//! call, so the record of what Roster did survives any crash or shutdown.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One write call, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub instance: &'a str,
    pub user: &'a str,
    pub account_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// `applied`, `already_converged`, `blocked` or `failed`.
    pub outcome: &'a str,
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<&'a str>,
}

/// An append-only JSON-lines file. Lines are written whole under a lock, so concurrent
/// writers never interleave; `reopen` supports logrotate (SIGHUP).
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(Self::open_file(path)?),
        })
    }

    fn open_file(path: &Path) -> Result<File, AuditError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })
    }

    /// Appends one record as a single line and flushes it to the OS.
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)
            .and_then(|_| file.flush())
            .and_then(|_| file.sync_data())
            .map_err(|source| AuditError {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// Exits the process at once, but never in the middle of a line: waits for a write
    /// in progress to finish (used when a second shutdown signal arrives).
    pub fn exit_process(&self, code: i32) -> ! {
        let _file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::process::exit(code)
    }

    /// Reopens the file at its path, after logrotate moved the old one away.
    pub fn reopen(&self) -> Result<(), AuditError> {
        let fresh = Self::open_file(&self.path)?;
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *file = fresh;
        Ok(())
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

    #[test]
    fn lines_are_appended_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let record = AuditRecord {
            time: "2026-01-01T00:00:00Z".into(),
            instance: "portal",
            user: "jsmith",
            account_id: "u1",
            from: "active",
            to: "inactive",
            outcome: "applied",
            http_status: Some(200),
            message: None,
            git_commit: None,
        };
        log.append(&record).unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        log.reopen().unwrap();
        log.append(&record).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["outcome"], "applied");
        assert_eq!(value["http_status"], 200);
    }
}
