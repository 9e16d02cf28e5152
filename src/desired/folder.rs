//! Finding and reading the folder's files on disk, within fixed bounds.
//!
//! The folder comes from a pull request, so it may hold anything a file system can: a
//! FIFO that blocks a reader forever, a symlink to `/dev/zero` that never ends, symlink
//! loops that make a naive walk exponential, millions of entries. Whatever it holds, the
//! walk and the reads here finish within bounded time and memory:
//!
//! - only regular files are read (after following symlinks); a FIFO, socket or device
//!   with a YAML name is a problem, and is never opened in a way that can block
//!   (metadata first, then `O_NONBLOCK` and `fstat` on the opened handle, so a swap
//!   between the check and the open cannot block either);
//! - each file is at most [`MAX_FILE_BYTES`], all files together at most
//!   [`MAX_TOTAL_BYTES`], the walk sees at most [`MAX_ENTRIES`] entries and
//!   [`MAX_DEPTH`] folder levels;
//! - every folder is walked once, identified by (device, inode): a symlink back to a
//!   folder that contains it is a loop and is reported once, a folder reached a second
//!   time through another symlink is skipped.

use super::{Location, Problem};
use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest single file Roster reads: a user file with 100,000 users is about 20 MiB
/// smaller than this.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most bytes all YAML files of the folder may hold together.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// The most directory entries (files, folders, anything) the walk looks at.
pub const MAX_ENTRIES: usize = 100_000;
/// The deepest folder nesting the walk enters.
pub const MAX_DEPTH: usize = 32;

/// What a file's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameClass {
    /// Ends in `.yaml` or `.yml`: read.
    Yaml,
    /// Ends in a case variant (`.YAML`, `.Yml`): an error, because it would otherwise be
    /// skipped without a word and its users ignored.
    CaseVariant,
    /// Starts with `.` (`.git`, Kubernetes' `..data`): ignored, and not walked into.
    Hidden,
    /// Anything else: ignored.
    Other,
}

/// Classifies one file or folder name (not a path).
pub fn classify(name: &str) -> NameClass {
    if name.starts_with('.') {
        return NameClass::Hidden;
    }
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => return NameClass::Other,
    };
    match ext {
        "yaml" | "yml" => NameClass::Yaml,
        _ if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
            NameClass::CaseVariant
        }
        _ => NameClass::Other,
    }
}

/// The problem for a file whose extension is a case variant of `.yaml`/`.yml`.
pub fn case_variant_problem(file: String, name: &str) -> Problem {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    problem_at(
        file,
        format!(
            "'.{ext}' is not read (only lower-case '.yaml' and '.yml' are), so the users in it would be ignored: rename it to '{stem}.{}'",
            ext.to_ascii_lowercase()
        ),
    )
}

/// A problem without a position (a whole file or folder).
pub fn problem_at(file: String, message: impl Into<String>) -> Problem {
    Problem {
        location: Location {
            file: file.into(),
            ..Location::default()
        },
        message: message.into(),
    }
}

/// How paths of the folder are shown: relative paths joined to the root as the user
/// typed it. Names are kept as they are; every output escapes them where it renders them
/// (a file name with a line break cannot forge an output line).
pub struct Names {
    root: String,
}

impl Names {
    pub fn new(root: &Path) -> Names {
        let text = root.to_string_lossy();
        let trimmed = text.trim_end_matches('/');
        let root = if trimmed.is_empty() && text.starts_with('/') {
            "/".to_string()
        } else {
            trimmed.to_string()
        };
        Names { root }
    }

    /// The folder itself.
    pub fn root(&self) -> String {
        self.root.clone()
    }

    /// A path relative to the folder.
    pub fn show(&self, relative: &Path) -> String {
        let relative = relative.to_string_lossy().into_owned();
        if relative.is_empty() {
            self.root.clone()
        } else if self.root.is_empty() || self.root == "." {
            relative
        } else if self.root.ends_with('/') {
            format!("{}{relative}", self.root)
        } else {
            format!("{}/{relative}", self.root)
        }
    }
}

/// Why one file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}, not a regular file: only regular files are read (remove it, or give it a name that does not end in .yaml or .yml)")]
    NotRegular(&'static str),
    #[error("{size} bytes, over the limit of 16 MiB for one file: split it into smaller files")]
    TooLarge { size: u64 },
    #[error("broken symlink: its target does not exist")]
    BrokenSymlink,
    #[error("symlink loop: too many levels of symbolic links")]
    SymlinkLoop,
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// A failed `stat`/`open`, with the two cases a user can fix named plainly.
    fn from_open(path: &Path, error: io::Error) -> ReadError {
        if error.raw_os_error() == Some(libc::ELOOP) {
            ReadError::SymlinkLoop
        } else if error.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_ok() {
            ReadError::BrokenSymlink
        } else {
            ReadError::Io(error)
        }
    }
}

/// What kind of non-regular file `metadata` describes, or `None` for a regular file.
fn irregular(metadata: &Metadata) -> Option<&'static str> {
    let ft = metadata.file_type();
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a folder")
    } else if ft.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

fn check(metadata: &Metadata, limit: u64) -> Result<(), ReadError> {
    if let Some(kind) = irregular(metadata) {
        return Err(ReadError::NotRegular(kind));
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge {
            size: metadata.len(),
        });
    }
    Ok(())
}

/// Reads one regular file of at most `limit` bytes, never blocking on a special file.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let before = fs::metadata(path).map_err(|e| ReadError::from_open(path, e))?;
    check(&before, limit)?;
    let (file, opened) = open_checked(path, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    // A file that grows after the fstat is still cut off one byte past the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Opens `path` without ever blocking and checks the opened handle itself (`fstat`),
/// so that whatever the path names by now, only a regular file within `limit` is kept.
fn open_checked(path: &Path, limit: u64) -> Result<(File, Metadata), ReadError> {
    // O_NONBLOCK: should the path have become a FIFO since the check, the open returns
    // at once instead of waiting for a writer; fstat below then refuses it.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ReadError::from_open(path, e))?;
    let opened = file.metadata()?;
    check(&opened, limit)?;
    Ok((file, opened))
}

/// One YAML file of the folder: its path relative to the root, and its bytes.
#[derive(Default)]
pub struct RawFile {
    pub relative: PathBuf,
    pub bytes: Vec<u8>,
}

/// Walks the folder at `root` and reads its YAML files, within the bounds above. Every
/// problem met on the way is added to `problems`; the files that could be read are
/// returned in sorted path order.
pub fn read_folder(root: &Path, names: &Names, problems: &mut Vec<Problem>) -> Vec<RawFile> {
    let files = walk_folder(root, names, problems);
    let mut total: u64 = 0;
    let mut read = Vec::with_capacity(files.len());
    for relative in files {
        let remaining = MAX_TOTAL_BYTES.saturating_sub(total);
        match read_regular(&root.join(&relative), MAX_FILE_BYTES.min(remaining)) {
            Ok(bytes) => {
                total += bytes.len() as u64;
                read.push(RawFile { relative, bytes });
            }
            Err(ReadError::TooLarge { .. }) if remaining < MAX_FILE_BYTES => {
                problems.push(total_limit_problem(names, &relative));
                break;
            }
            Err(e) => problems.push(problem_at(names.show(&relative), e.to_string())),
        }
    }
    read
}

/// The problem of the file at which the folder's YAML files passed [`MAX_TOTAL_BYTES`].
pub fn total_limit_problem(names: &Names, relative: &Path) -> Problem {
    problem_at(
        names.root(),
        format!(
            "the folder's YAML files add up to more than 64 MiB (the limit); stopped reading at {}",
            names.show(relative)
        ),
    )
}

/// Walks the folder at `root` within the bounds above, without reading any file: the
/// YAML files' paths relative to the root, sorted. Problems met on the way are added to
/// `problems`.
pub fn walk_folder(root: &Path, names: &Names, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let mut walk = Walk {
        root,
        names,
        problems,
        entries: 0,
        walked: HashSet::new(),
        stack: Vec::new(),
        files: Vec::new(),
        stopped: false,
    };
    match fs::metadata(root) {
        Ok(metadata) => walk.folder(Path::new(""), &metadata, 0),
        Err(e) => walk
            .problems
            .push(problem_at(names.root(), format!("cannot read folder: {e}"))),
    }
    let mut files = std::mem::take(&mut walk.files);
    files.sort();
    files
}

struct Walk<'a> {
    root: &'a Path,
    names: &'a Names,
    problems: &'a mut Vec<Problem>,
    entries: usize,
    /// (device, inode) of every folder walked so far.
    walked: HashSet<(u64, u64)>,
    /// The folders from the root down to the one being walked.
    stack: Vec<((u64, u64), PathBuf)>,
    files: Vec<PathBuf>,
    /// Set once a limit is hit: nothing more is walked.
    stopped: bool,
}

impl Walk<'_> {
    fn folder(&mut self, relative: &Path, metadata: &Metadata, depth: usize) {
        let id = (metadata.dev(), metadata.ino());
        if let Some((_, ancestor)) = self.stack.iter().find(|(seen, _)| *seen == id) {
            let message = format!(
                "symlink loop: it leads back to {}, which contains it; remove the symlink",
                self.names.show(ancestor)
            );
            self.problems
                .push(problem_at(self.names.show(relative), message));
            return;
        }
        if !self.walked.insert(id) {
            return;
        }
        if depth > MAX_DEPTH {
            self.problems.push(problem_at(
                self.names.show(relative),
                format!("folders are nested more than {MAX_DEPTH} levels deep here; not read"),
            ));
            return;
        }
        let entries = match fs::read_dir(self.root.join(relative)) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(problem_at(
                    self.names.show(relative),
                    format!("cannot read folder: {e}"),
                ));
                return;
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                self.problems.push(problem_at(
                    self.names.root(),
                    format!(
                        "the folder holds more than {MAX_ENTRIES} entries (the limit); stopped walking at {}",
                        self.names.show(relative)
                    ),
                ));
                self.stopped = true;
                return;
            }
            match entry {
                Ok(entry) => children.push(entry),
                Err(e) => self.problems.push(problem_at(
                    self.names.show(relative),
                    format!("cannot read folder: {e}"),
                )),
            }
        }
        children.sort_by_key(|e| e.file_name());
        self.stack.push((id, relative.to_path_buf()));
        for entry in children {
            if self.stopped {
                break;
            }
            self.entry(relative, &entry, depth);
        }
        self.stack.pop();
    }

    fn entry(&mut self, parent: &Path, entry: &fs::DirEntry, depth: usize) {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let class = classify(&name_text);
        if class == NameClass::Hidden {
            return;
        }
        let relative = parent.join(&name);
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(e) => {
                self.problems.push(problem_at(
                    self.names.show(&relative),
                    format!("cannot read: {e}"),
                ));
                return;
            }
        };
        // Only symlinks need a stat to learn what they point to; folders need their
        // (device, inode). Other entries are judged when read.
        if file_type.is_symlink() || file_type.is_dir() {
            let path = self.root.join(&relative);
            match fs::metadata(&path) {
                Ok(metadata) if metadata.is_dir() => {
                    return self.folder(&relative, &metadata, depth + 1);
                }
                Ok(_) => {}
                Err(e) => {
                    let error = ReadError::from_open(&path, e);
                    self.problems
                        .push(problem_at(self.names.show(&relative), error.to_string()));
                    return;
                }
            }
        }
        match class {
            NameClass::Yaml => self.files.push(relative),
            NameClass::CaseVariant => self
                .problems
                .push(case_variant_problem(self.names.show(&relative), &name_text)),
            NameClass::Hidden | NameClass::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_by_their_extension() {
        for (name, class) in [
            ("a.yaml", NameClass::Yaml),
            ("a.yml", NameClass::Yaml),
            ("a.b.yaml", NameClass::Yaml),
            ("leavers.YAML", NameClass::CaseVariant),
            ("a.Yml", NameClass::CaseVariant),
            ("a.yAmL", NameClass::CaseVariant),
            (".hidden.yaml", NameClass::Hidden),
            ("..data", NameClass::Hidden),
            ("yaml", NameClass::Other),
            ("a.yaml.bak", NameClass::Other),
            ("a.json", NameClass::Other),
        ] {
            assert_eq!(classify(name), class, "{name}");
        }
    }

    #[test]
    fn names_are_joined_to_the_root_as_typed() {
        let names = Names::new(Path::new("dir/"));
        assert_eq!(names.show(Path::new("a\nb.yaml")), "dir/a\nb.yaml");
        assert_eq!(names.show(Path::new("")), "dir");
        assert_eq!(Names::new(Path::new(".")).show(Path::new("x")), "x");
    }

    #[test]
    fn a_fifo_swapped_in_after_the_check_is_opened_without_blocking_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swapped.yaml");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        // No writer ever opens the FIFO: a blocking open would never return, so the
        // open runs on a thread and the test fails after 20 s instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open_checked(&path, MAX_FILE_BYTES).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the open blocked");
        assert!(matches!(
            result,
            Err(ReadError::NotRegular("a named pipe (FIFO)"))
        ));
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, vec![b'#'; 11]).unwrap();
        assert!(matches!(
            read_regular(&path, 10),
            Err(ReadError::TooLarge { size: 11 })
        ));
        assert_eq!(read_regular(&path, 11).unwrap().len(), 11);
    }
}
