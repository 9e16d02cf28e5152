//! Reloading a folder after a change by re-reading only the files that changed.
//!
//! The daemon reloads the whole folder on every change; at 100,000 users most of that
//! time went to parsing files nobody touched. [`FolderCache`] keeps, per user file, what
//! reading it found (its users, names and problems) with the file's metadata and a hash
//! of its bytes. A reload walks the folder as [`super::load`] does, skips the files whose
//! metadata is unchanged (and old enough that a write within the same clock tick cannot
//! hide behind it), reads the others and re-parses those whose bytes changed, then
//! applies the folder-wide rules to the whole result again. `providers.yaml` is read on
//! every reload; when its bytes change every user file is parsed again, since what a user
//! file means depends on the instances it defines.
//!
//! The answer is exactly what [`super::load`] answers for the same folder: the same walk
//! and limits, the same per-file reading, the same folder-wide rules and problem order.

use super::super::folder::{
    self, problem_at, read_regular, total_limit_problem, Names, RawFile, ReadError, MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
};
use super::super::{DesiredState, InvalidFolder, Problem};
use super::{
    all_statuses, check_root, finish, in_parallel, read_instances, read_user_file, FileOutcome,
    PROVIDERS_FILE,
};
use crate::model::KindRegistry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A file whose metadata changed this recently is read whatever its metadata says: a
/// write in the same tick of the file system's clock leaves size and times unchanged.
const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: (u64, u64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
            inode: (metadata.dev(), metadata.ino()),
        }
    }

    /// Whether the file was modified so recently that an unchanged stamp proves nothing
    /// (a second write in the same tick of the file system's clock keeps the times). A
    /// time set back by hand changes the inode's change time, which is in the stamp.
    fn is_racy(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return true;
        };
        let horizon = now.saturating_sub(RACY);
        let modified = i128::from(self.modified.0) * 1_000_000_000 + i128::from(self.modified.1);
        modified >= horizon.as_nanos() as i128
    }
}

/// One user file as last read.
struct Entry {
    stamp: Option<Stamp>,
    hash: u128,
    len: u64,
    outcome: Arc<FileOutcome>,
}

/// Which user files a reload found changed: for each, what reading it found before
/// (`None`: new to the folder, or unreadable) and now (`None`: gone, or unreadable).
#[derive(Default)]
pub struct Changes {
    /// Whether `providers.yaml` changed (or every file was read afresh): anything may
    /// have changed.
    pub everything: bool,
    /// The user files that changed, with their users before and after.
    pub files: Vec<FileChange>,
}

/// One user file a reload found changed.
pub struct FileChange {
    pub file: PathBuf,
    pub before: Option<Arc<FileOutcome>>,
    pub after: Option<Arc<FileOutcome>>,
}

/// Loads a folder again and again, re-reading only what changed (see the module doc).
/// One cache serves one folder; [`load`](FolderCache::load) answers what
/// [`super::load`] answers.
pub struct FolderCache {
    root: PathBuf,
    kinds: KindRegistry,
    hasher: (RandomState, RandomState),
    /// Hash of the `providers.yaml` bytes the entries were read with (`None`: absent or
    /// unreadable).
    providers: Option<u128>,
    files: HashMap<PathBuf, Entry>,
    changes: Changes,
}

/// A user file to parse: its bytes, their hash, its stamp.
type ToParse = (RawFile, u128, Option<Stamp>);

/// A file of the folder on this reload: read now, or known unchanged.
enum Got {
    Read { raw: RawFile, stamp: Option<Stamp> },
    Kept { relative: PathBuf, entry: Entry },
}

impl Got {
    fn relative(&self) -> &Path {
        match self {
            Got::Read { raw, .. } => &raw.relative,
            Got::Kept { relative, .. } => relative,
        }
    }
}

impl FolderCache {
    /// A cache for the folder at `root` that has read nothing yet.
    pub fn new(root: &Path, kinds: KindRegistry) -> FolderCache {
        FolderCache {
            root: root.to_path_buf(),
            kinds,
            hasher: (RandomState::new(), RandomState::new()),
            providers: None,
            files: HashMap::new(),
            changes: Changes {
                everything: true,
                files: Vec::new(),
            },
        }
    }

    /// What the last [`load`](Self::load) found changed since the one before.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// A 128-bit hash of `bytes` under two keys chosen per process, so that a crafted
    /// file cannot aim at the hash of another.
    fn hash(&self, bytes: &[u8]) -> u128 {
        let one = |state: &RandomState| {
            let mut hasher = state.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        };
        (u128::from(one(&self.hasher.0)) << 64) | u128::from(one(&self.hasher.1))
    }

    /// Loads the folder as [`super::load`] does, re-reading only the files that changed
    /// since the last call.
    pub fn load(&mut self) -> Result<DesiredState, InvalidFolder> {
        let root = self.root.clone();
        let names = Names::new(&root);
        let old = std::mem::take(&mut self.files);
        let before: HashMap<PathBuf, Arc<FileOutcome>> = old
            .iter()
            .map(|(path, entry)| (path.clone(), entry.outcome.clone()))
            .collect();
        if let Err(invalid) = check_root(&root, &names) {
            self.providers = None;
            self.changes = changes_between(before, &self.files, true);
            return Err(invalid);
        }
        // What a user file means depends on providers.yaml: when its bytes changed, no
        // entry counts. It is read again below within the folder's limits; should it
        // change in between, the load starts over without entries.
        let providers_now = read_regular(&root.join(PROVIDERS_FILE), MAX_FILE_BYTES)
            .ok()
            .map(|bytes| self.hash(&bytes));
        let mut everything = providers_now.is_none() || providers_now != self.providers;
        let mut kept = if everything { HashMap::new() } else { old };
        loop {
            let fresh = kept.is_empty();
            if let Some(result) = self.load_with(&root, &names, kept) {
                self.changes = changes_between(before, &self.files, everything);
                return result;
            }
            debug_assert!(!fresh, "a load without entries never starts over");
            kept = HashMap::new();
            everything = true;
        }
    }

    /// One load using the entries `kept`; `None` when providers.yaml turned out to
    /// differ from what they were read with (then nothing of this attempt is kept).
    fn load_with(
        &mut self,
        root: &Path,
        names: &Names,
        mut kept: HashMap<PathBuf, Entry>,
    ) -> Option<Result<DesiredState, InvalidFolder>> {
        let with_entries = !kept.is_empty();
        let mut problems: Vec<Problem> = Vec::new();
        let paths = folder::walk_folder(root, names, &mut problems);
        let now = SystemTime::now();
        let providers_path = Path::new(PROVIDERS_FILE);

        // Read within the limits exactly as `folder::read_folder` does, but keep the
        // entries of the files whose stamp is unchanged instead of reading them.
        let mut got: Vec<Got> = Vec::with_capacity(paths.len());
        let mut total: u64 = 0;
        for relative in paths {
            let remaining = MAX_TOTAL_BYTES.saturating_sub(total);
            let limit = MAX_FILE_BYTES.min(remaining);
            let path = root.join(&relative);
            let metadata = std::fs::metadata(&path).ok();
            let stamp = metadata.as_ref().map(Stamp::of);
            let unchanged = kept.get(&relative).is_some_and(|entry| {
                entry.len <= limit
                    && metadata.as_ref().is_some_and(|m| m.is_file())
                    && entry
                        .stamp
                        .is_some_and(|s| Some(s) == stamp && !s.is_racy(now))
            });
            if unchanged {
                if let Some(entry) = kept.remove(&relative) {
                    total += entry.len;
                    got.push(Got::Kept { relative, entry });
                    continue;
                }
            }
            match read_regular(&path, limit) {
                Ok(bytes) => {
                    total += bytes.len() as u64;
                    // The stamp, taken before the read, counts only for these bytes.
                    let stamp = stamp.filter(|s| s.len == bytes.len() as u64);
                    got.push(Got::Read {
                        raw: RawFile { relative, bytes },
                        stamp,
                    });
                }
                Err(ReadError::TooLarge { .. }) if remaining < MAX_FILE_BYTES => {
                    problems.push(total_limit_problem(names, &relative));
                    break;
                }
                Err(e) => problems.push(problem_at(names.show(&relative), e.to_string())),
            }
        }

        let providers_raw = got.iter().find_map(|g| match g {
            Got::Read { raw, .. } if raw.relative == providers_path => Some(raw),
            _ => None,
        });
        let providers_hash = providers_raw.map(|raw| self.hash(&raw.bytes));
        if with_entries && (providers_hash.is_none() || providers_hash != self.providers) {
            return None;
        }
        self.providers = providers_hash;
        let instances = read_instances(providers_raw, names, &mut problems, self.kinds);

        // A file read again whose bytes are those of its entry keeps the entry.
        let mut order: Vec<PathBuf> = Vec::with_capacity(got.len());
        let mut slots: Vec<Result<Entry, ToParse>> = Vec::new();
        for g in got {
            order.push(g.relative().to_path_buf());
            match g {
                Got::Kept { entry, .. } => slots.push(Ok(entry)),
                Got::Read { raw, .. } if raw.relative == providers_path => {}
                Got::Read { raw, stamp } => {
                    let hash = self.hash(&raw.bytes);
                    match kept.remove(&raw.relative) {
                        Some(entry) if entry.hash == hash => {
                            slots.push(Ok(Entry { stamp, ..entry }))
                        }
                        _ => slots.push(Err((raw, hash, stamp))),
                    }
                }
            }
        }
        let to_parse: Vec<&RawFile> = slots
            .iter()
            .filter_map(|slot| slot.as_ref().err().map(|(raw, _, _)| raw))
            .collect();
        let statuses = all_statuses(self.kinds);
        let positioned = std::sync::Mutex::new(());
        let mut outcomes = in_parallel(&to_parse, |raw| {
            read_user_file(
                raw,
                &names.show(&raw.relative),
                &instances,
                &statuses,
                &positioned,
            )
        })
        .into_iter();
        let mut entries: Vec<(PathBuf, Entry)> = Vec::with_capacity(slots.len());
        let mut slots = slots.into_iter();
        for relative in &order {
            if relative == providers_path {
                continue;
            }
            let entry = match slots.next() {
                Some(Ok(entry)) => entry,
                Some(Err((raw, hash, stamp))) => match outcomes.next() {
                    Some(outcome) => Entry {
                        stamp,
                        hash,
                        len: raw.bytes.len() as u64,
                        outcome: Arc::new(outcome),
                    },
                    None => break,
                },
                None => break,
            };
            entries.push((relative.clone(), entry));
        }

        let mut users = Vec::new();
        let mut user_names = Vec::new();
        let mut files = HashMap::with_capacity(entries.len());
        for (relative, entry) in entries {
            users.extend(entry.outcome.users.iter().cloned());
            user_names.extend(entry.outcome.names.iter().cloned());
            problems.extend(entry.outcome.problems.iter().cloned());
            files.insert(relative, entry);
        }
        self.files = files;
        let order = order.iter().map(PathBuf::as_path);
        Some(finish(
            root, names, order, instances, users, user_names, problems,
        ))
    }
}

/// The user files whose outcome differs between `before` and `after`.
fn changes_between(
    mut before: HashMap<PathBuf, Arc<FileOutcome>>,
    after: &HashMap<PathBuf, Entry>,
    everything: bool,
) -> Changes {
    let mut files: Vec<FileChange> = Vec::new();
    for (path, entry) in after {
        let was = before.remove(path);
        if was.as_ref().is_some_and(|w| Arc::ptr_eq(w, &entry.outcome)) {
            continue;
        }
        files.push(FileChange {
            file: path.clone(),
            before: was,
            after: Some(entry.outcome.clone()),
        });
    }
    files.extend(before.into_iter().map(|(file, was)| FileChange {
        file,
        before: Some(was),
        after: None,
    }));
    files.sort_by(|a, b| a.file.cmp(&b.file));
    Changes { everything, files }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::fs;

    const PROVIDERS: [&str; 3] = [
        "providers:\n  h:\n    kind: status-api\n    base_url: http://127.0.0.1:1\n    auth: { bearer_token_env: T }\n  o:\n    kind: zitadel\n    base_url: http://127.0.0.1:2\n    auth: { bearer_token_env: T }\n",
        // Without `o`: every account there becomes a problem.
        "providers:\n  h:\n    kind: status-api\n    base_url: http://127.0.0.1:1\n    auth: { bearer_token_env: T }\n",
        "providers: [",
    ];

    /// User files to write: valid ones, ones that clash across files (a name, an
    /// account), broken ones, a blank one.
    const USER_FILES: [&str; 10] = [
        "users:\n  - name: ann\n    status: active\n    accounts: { h: a1, o: a1 }\n",
        "users:\n  - name: bob\n    status: inactive\n    reason: Left\n    accounts: { h: b1 }\n",
        "users:\n  - name: ann\n    status: active\n    accounts: { h: a2 }\n",
        "users:\n  - name: cid\n    status: active\n    accounts: { h: a1 }\n",
        "users:\n  - name: dee\n    status: inactive\n    accounts: { o: d1 }\n",
        "users:\n  - name: eve\n    status: bogus\n    accounts: { h: e1 }\n",
        "users: [\n",
        "# nothing\n",
        "users:\n  - name: fay\n    status: active\n    until: 2030-01-01T00:00:00Z\n    then: inactive\n    accounts: { h: f1, x: f1 }\n",
        "users:\n  - name: gus\n    status: active\n    accounts: { h: g1 }\n  - name: bob\n    status: active\n    accounts: { h: g2 }\n",
    ];

    const PATHS: [&str; 7] = [
        "a.yaml",
        "b.yml",
        "people/c.yaml",
        "people/deep/d.yaml",
        "z.yaml",
        "E.YAML",
        "people/.hidden.yaml",
    ];

    /// Sets a written file's modification time well in the past (a distinct one per
    /// write), so that the next load trusts its stamp instead of reading it.
    fn age(path: &Path, step: u64) {
        let then = SystemTime::now() - Duration::from_secs(3600) + Duration::from_nanos(step);
        if let Ok(file) = fs::File::options().write(true).open(path) {
            let _ = file.set_modified(then);
        }
    }

    fn shown(result: &Result<DesiredState, InvalidFolder>) -> String {
        match result {
            Ok(state) => format!("ok {state:?}"),
            Err(invalid) => format!("invalid {:?}", invalid.problems),
        }
    }

    /// One random step: write, delete or rename a user file, or change providers.yaml.
    fn step(rng: &mut StdRng, root: &Path, n: u64, aged: bool) -> String {
        let path = |rng: &mut StdRng| root.join(PATHS[rng.random_range(0..PATHS.len())]);
        let done = match rng.random_range(0..10) {
            0 => {
                let text = PROVIDERS[rng.random_range(0..PROVIDERS.len())];
                let target = root.join(PROVIDERS_FILE);
                fs::write(&target, text).unwrap();
                if aged {
                    age(&target, n);
                }
                format!("providers.yaml := {text:?}")
            }
            1 => {
                let target = root.join(PROVIDERS_FILE);
                let _ = fs::remove_file(&target);
                "rm providers.yaml".to_string()
            }
            2 | 3 => {
                let target = path(rng);
                let _ = fs::remove_file(&target);
                format!("rm {}", target.display())
            }
            4 | 5 => {
                let (from, to) = (path(rng), path(rng));
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                let moved = fs::rename(&from, &to).is_ok();
                format!("mv {} {} ({moved})", from.display(), to.display())
            }
            _ => {
                let target = path(rng);
                let text = USER_FILES[rng.random_range(0..USER_FILES.len())];
                fs::create_dir_all(target.parent().unwrap()).unwrap();
                fs::write(&target, text).unwrap();
                if aged {
                    age(&target, n);
                }
                format!("{} := {text:?}", target.display())
            }
        };
        done
    }

    fn differential(seed: u64, aged: bool) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("desired");
        fs::create_dir(&root).unwrap();
        fs::write(root.join(PROVIDERS_FILE), PROVIDERS[0]).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cache = FolderCache::new(&root, provider::specs());
        let mut history = Vec::new();
        for n in 0..60 {
            let incremental = shown(&cache.load());
            let full = shown(&crate::desired::load(&root, provider::specs()));
            assert_eq!(incremental, full, "seed {seed}, after: {history:#?}");
            history.push(step(&mut rng, &root, n, aged));
        }
    }

    #[test]
    fn the_incremental_load_is_the_full_load_after_every_random_change() {
        for seed in 0..12 {
            differential(seed, false);
        }
    }

    #[test]
    fn files_with_trusted_stamps_are_kept_and_the_answer_is_still_the_full_load() {
        for seed in 100..112 {
            differential(seed, true);
        }
    }

    #[test]
    fn only_the_changed_files_are_reported_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join(PROVIDERS_FILE), PROVIDERS[0]).unwrap();
        fs::write(root.join("a.yaml"), USER_FILES[0]).unwrap();
        fs::write(root.join("b.yaml"), USER_FILES[1]).unwrap();
        let mut cache = FolderCache::new(root, provider::specs());
        cache.load().unwrap();
        assert!(cache.changes().everything);
        assert_eq!(cache.changes().files.len(), 2);

        // Rewritten with the same bytes (fresh times): nothing changed.
        fs::write(root.join("a.yaml"), USER_FILES[0]).unwrap();
        cache.load().unwrap();
        assert!(!cache.changes().everything);
        assert!(cache.changes().files.is_empty());

        // One file edited: that file, with its users before and after.
        fs::write(root.join("b.yaml"), USER_FILES[4]).unwrap();
        let state = cache.load().unwrap();
        assert_eq!(state.users.len(), 2);
        let changes = cache.changes();
        assert!(!changes.everything);
        assert_eq!(changes.files.len(), 1);
        let change = &changes.files[0];
        assert_eq!(change.file, Path::new("b.yaml"));
        let names = |o: &Option<Arc<FileOutcome>>| -> Vec<String> {
            o.iter()
                .flat_map(|o| o.users().iter().map(|u| u.name.clone()))
                .collect()
        };
        assert_eq!(names(&change.before), ["bob"]);
        assert_eq!(names(&change.after), ["dee"]);

        // providers.yaml changed: everything.
        fs::write(root.join(PROVIDERS_FILE), PROVIDERS[1]).unwrap();
        assert!(cache.load().is_err());
        assert!(cache.changes().everything);
    }
}
