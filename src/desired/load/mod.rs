//! Reads a desired-state folder from disk and validates it as one unit, collecting every
//! problem of every file before answering.
//!
//! One concept per file: `parse` turns a file's bytes into a positioned YAML tree (or its
//! problem), `providers` reads `providers.yaml`, `users` reads a user file the
//! positioned way, `fast` reads a plainly valid user file in one pass without the tree,
//! and `unique` holds the folder-wide rules. This file ties them: it reads the files
//! (in parallel: they are independent until the folder-wide rules), merges them in file
//! order and sorts the problems.

mod fast;
mod incremental;
mod parse;
mod providers;
mod scan;
mod unique;
mod users;

#[cfg(test)]
mod tests;

use super::folder::{self, problem_at, NameClass, Names, RawFile, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
use super::text;
use super::yaml::HIDDEN_SUFFIX;
use super::{DesiredState, InvalidFolder, Problem};
use crate::model::KindRegistry;
use parse::{parse, text_of};
use providers::{read_providers, Instances};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use unique::{check_unique_accounts, check_unique_names};
use users::{all_statuses, read_users};

pub use incremental::{Changes, FileChange, FolderCache};

/// The file at the root of the folder that defines provider instances.
pub const PROVIDERS_FILE: &str = "providers.yaml";

/// Loads and validates the folder at `root`. No network, no secrets: safe for
/// pull-request CI. Either the whole folder is valid, or every problem is returned.
/// Reading is bounded whatever the folder holds (see [`super::folder`]). `kinds` are the
/// provider kinds a file may name (`crate::provider::specs()`).
pub fn load(root: &Path, kinds: KindRegistry) -> Result<DesiredState, InvalidFolder> {
    let names = Names::new(root);
    check_root(root, &names)?;
    let mut problems = Vec::new();
    let files = folder::read_folder(root, &names, &mut problems);
    validate(root, &names, files, problems, kinds)
}

/// The folder itself exists and is a folder.
fn check_root(root: &Path, names: &Names) -> Result<(), InvalidFolder> {
    let refuse = |message: String| InvalidFolder {
        problems: vec![problem_at(names.root(), message)],
    };
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            return Err(refuse(
                "not a directory: pass the desired-state folder, not a file".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(refuse(
            "does not exist: pass the path of the desired-state folder (default ./desired-state)"
                .into(),
        )),
        Err(e) => return Err(refuse(format!("cannot read folder: {e}"))),
    }
    Ok(())
}

/// Loads a folder given as files in memory (path relative to the folder, bytes), as if
/// they were on disk at `root`: the same name rules, size limits and validation as
/// [`load`], without touching the file system. Made for fuzzing and for tools that hold
/// a folder in memory (a pull request's blobs).
pub fn load_files(
    root: &Path,
    files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>,
    kinds: KindRegistry,
) -> Result<DesiredState, InvalidFolder> {
    let names = Names::new(root);
    let mut problems = Vec::new();
    let mut kept = Vec::new();
    for (relative, bytes) in files {
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        let hidden = relative
            .iter()
            .any(|p| folder::classify(&p.to_string_lossy()) == NameClass::Hidden);
        if !plain || relative.as_os_str().is_empty() {
            problems.push(problem_at(
                names.show(&relative),
                "not a relative path inside the folder",
            ));
        } else if !hidden {
            let name = relative
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match folder::classify(&name) {
                NameClass::Yaml => kept.push(RawFile { relative, bytes }),
                NameClass::CaseVariant => {
                    problems.push(folder::case_variant_problem(names.show(&relative), &name))
                }
                NameClass::Hidden | NameClass::Other => {}
            }
        }
    }
    kept.sort_by(|a, b| a.relative.cmp(&b.relative));
    let mut total: u64 = 0;
    let mut read = Vec::with_capacity(kept.len());
    for file in kept {
        let size = file.bytes.len() as u64;
        if size > MAX_FILE_BYTES {
            let error = folder::ReadError::TooLarge { size };
            problems.push(problem_at(names.show(&file.relative), error.to_string()));
            continue;
        }
        total += size;
        if total > MAX_TOTAL_BYTES {
            problems.push(problem_at(
                names.root(),
                format!(
                    "the folder's YAML files add up to more than 64 MiB (the limit); stopped reading at {}",
                    names.show(&file.relative)
                ),
            ));
            break;
        }
        read.push(file);
    }
    validate(root, &names, read, problems, kinds)
}

/// Validates the files read from a folder as one unit; `problems` holds what reading
/// them already found.
fn validate(
    root: &Path,
    names: &Names,
    mut files: Vec<RawFile>,
    mut problems: Vec<Problem>,
    kinds: KindRegistry,
) -> Result<DesiredState, InvalidFolder> {
    let providers_path = Path::new(PROVIDERS_FILE);
    let providers = files.iter().find(|f| f.relative == providers_path);
    let instances = read_instances(providers, names, &mut problems, kinds);
    let statuses = all_statuses(kinds);
    // Each user file's bytes are moved out to be dropped once read: the folder's text
    // and its users are then never all in memory at once.
    let user_files: Vec<std::sync::Mutex<RawFile>> = files
        .iter_mut()
        .filter(|f| f.relative != providers_path)
        .map(|f| {
            let bytes = std::mem::take(&mut f.bytes);
            std::sync::Mutex::new(RawFile {
                relative: f.relative.clone(),
                bytes,
            })
        })
        .collect();
    // One positioned parse at a time: its tree is what a hostile file makes large, so
    // the memory bound stays that of one file whatever the number of cores.
    let positioned = std::sync::Mutex::new(());
    let outcomes = in_parallel(&user_files, |slot| {
        let raw = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
        read_user_file(
            &raw,
            &names.show(&raw.relative),
            &instances,
            &statuses,
            &positioned,
        )
    });
    let mut users = Vec::with_capacity(outcomes.iter().map(|o| o.users.len()).sum());
    let mut user_names = Vec::with_capacity(users.capacity());
    for outcome in outcomes {
        users.extend(outcome.users);
        user_names.extend(outcome.names);
        problems.extend(outcome.problems);
    }
    let order = files.iter().map(|f| f.relative.as_path());
    finish(root, names, order, instances, users, user_names, problems)
}

/// Reads `providers.yaml` (`providers`, if the folder has it): the instances user files
/// may name. Its problems, or its absence, go to `problems`.
fn read_instances(
    providers: Option<&RawFile>,
    names: &Names,
    problems: &mut Vec<Problem>,
    kinds: KindRegistry,
) -> Instances {
    let providers_file = names.show(Path::new(PROVIDERS_FILE));
    match providers {
        Some(raw) => text_of(raw, &providers_file, problems)
            .and_then(|text| {
                if text::is_blank(text) {
                    problems.push(problem_at(
                        providers_file.clone(),
                        "the file is empty: define the provider instances under 'providers:'",
                    ));
                    None
                } else {
                    parse(text, &providers_file, problems)
                }
            })
            .map(|node| read_providers(&node, &providers_file, problems, kinds))
            .unwrap_or_else(|| Instances::none(kinds)),
        None => {
            // Not when reading it failed, or a limit stopped the walk before it.
            let explained = problems
                .iter()
                .any(|p| *p.location.file == *providers_file || *p.location.file == *names.root());
            if !explained {
                problems.push(problem_at(
                    providers_file.clone(),
                    "file not found: the folder must define its provider instances in providers.yaml",
                ));
            }
            Instances::none(kinds)
        }
    }
}

/// Applies the folder-wide rules to the users of every file and answers the folder, or
/// all its problems in file order (`files`: every YAML file read, in path order).
fn finish<'f>(
    root: &Path,
    names: &Names,
    files: impl Iterator<Item = &'f Path>,
    instances: Instances,
    users: Vec<Arc<super::User>>,
    user_names: Vec<(String, super::Location)>,
    mut problems: Vec<Problem>,
) -> Result<DesiredState, InvalidFolder> {
    let providers_file = names.show(Path::new(PROVIDERS_FILE));
    check_unique_names(&user_names, &mut problems);
    drop(user_names);
    check_unique_accounts(&users, &mut problems);

    if problems.is_empty() {
        return Ok(DesiredState {
            root: root.to_path_buf(),
            instances: instances.valid,
            users,
        });
    }
    let mut order: HashMap<String, usize> = HashMap::new();
    for (i, file) in std::iter::once(providers_file)
        .chain(files.map(|f| names.show(f)))
        .enumerate()
    {
        order.entry(file).or_insert(i);
    }
    problems.sort_by(|a, b| {
        let key = |p: &Problem| {
            (
                order.get(&*p.location.file).copied().unwrap_or(usize::MAX),
                // A file's "N more problems" line closes its problems.
                p.message.ends_with(HIDDEN_SUFFIX),
                p.location.line,
                p.location.column,
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.location.file.cmp(&b.location.file))
    });
    problems.dedup();
    Err(InvalidFolder { problems })
}

/// What reading one user file found: its users (none if it has a problem) and its
/// problems.
pub struct FileOutcome {
    /// Shared with every folder built from this outcome (see [`super::DesiredState`]).
    users: Vec<Arc<super::User>>,
    names: Vec<(String, super::Location)>,
    problems: Vec<Problem>,
}

impl FileOutcome {
    /// The file's users (none when it has a problem).
    pub fn users(&self) -> &[Arc<super::User>] {
        &self.users
    }

    fn of(read: fast::FileUsers, problems: Vec<Problem>) -> Self {
        FileOutcome {
            users: read.users.into_iter().map(Arc::new).collect(),
            names: read.names,
            problems,
        }
    }
}

/// Reads one user file: the fast path first, and the positioned path, which words every
/// problem, whenever the fast path meets anything but a plainly valid file.
fn read_user_file(
    raw: &RawFile,
    file: &str,
    instances: &Instances,
    statuses: &[&'static str],
    positioned: &std::sync::Mutex<()>,
) -> FileOutcome {
    let mut read = fast::FileUsers::default();
    let mut problems = Vec::new();
    let Some(text) = text_of(raw, file, &mut problems) else {
        return FileOutcome::of(read, problems);
    };
    if text::is_blank(text) {
        problems.push(problem_at(
            file.to_string(),
            "holds no users (only blank lines, comments or '---'): delete the file, or write `users: []` if it is meant to hold none",
        ));
        return FileOutcome::of(read, problems);
    }
    if let Some(fast) = fast::read_users(text, file, instances, statuses) {
        return FileOutcome::of(fast, problems);
    }
    // A worker that panicked while holding the lock left nothing half-done in `()`.
    let _one_at_a_time = positioned.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(node) = parse(text, file, &mut problems) {
        read_users(
            &node,
            file,
            instances,
            &mut read.users,
            &mut read.names,
            &mut problems,
        );
    }
    FileOutcome::of(read, problems)
}

/// Runs `work` on every item on as many threads as the machine has cores (files are
/// independent until the folder-wide rules), answering the results in item order.
fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// For the differential property test: reads user file `text` every way against the
/// instances of `providers`. `Ok(true)`: a fast way (the byte scanner, the parser's
/// events) accepted it and each that did agrees exactly with the positioned path (users,
/// accounts, bounds, positions, names); `Ok(false)`: both fast ways declined; `Err`: a
/// fast way disagrees, or accepted a file the positioned path rejects.
#[cfg(test)]
pub(super) fn compare_paths(providers: &str, text: &str) -> Result<bool, String> {
    use crate::provider;
    let mut problems = Vec::new();
    let instances = parse(providers, "providers.yaml", &mut problems)
        .map(|node| read_providers(&node, "providers.yaml", &mut problems, provider::specs()))
        .unwrap_or_else(|| Instances::none(provider::specs()));
    let statuses = all_statuses(provider::specs());
    let fast = fast::read_users_both(text, "people.yaml", &instances, &statuses);
    if fast.iter().all(Option::is_none) {
        return Ok(false);
    }
    let mut slow = fast::FileUsers::default();
    let mut problems = Vec::new();
    if let Some(node) = parse(text, "people.yaml", &mut problems) {
        read_users(
            &node,
            "people.yaml",
            &instances,
            &mut slow.users,
            &mut slow.names,
            &mut problems,
        );
    }
    let slow = format!("{:?} {:?}", slow.users, slow.names);
    for (way, read) in ["scanner", "events"].iter().zip(fast) {
        let Some(read) = read else { continue };
        if !problems.is_empty() {
            return Err(format!(
                "the {way} fast path accepted a file with problems: {problems:?}"
            ));
        }
        let fast = format!("{:?} {:?}", read.users, read.names);
        if fast != slow {
            return Err(format!("{way}: {fast}\npositioned: {slow}"));
        }
    }
    Ok(true)
}
