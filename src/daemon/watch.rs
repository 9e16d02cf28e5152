//! Watches the desired-state folder and turns bursts of file events into single reload
//! signals.
//!
//! An editor's atomic save, a `git checkout` touching hundreds of files and a Kubernetes
//! ConfigMap or git-sync symlink swap are each one burst of events; the debounce waits
//! for a short quiet period (bounded by a maximum delay) and then signals once.
//!
//! Besides the folder itself (recursively, following symlinks), the watcher watches the
//! parent of the folder and of every symlink on the folder's path, so that replacing
//! the folder, or swapping a symlink it is reached through, is noticed and the watches
//! are re-established on the new target.

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// How events are grouped into one reload.
#[derive(Clone, Copy, Debug)]
pub struct Debounce {
    /// Signal once no event arrived for this long...
    pub quiet: Duration,
    /// ...or once this long after the first event of a burst, whichever comes first.
    pub max_delay: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(300),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// How often to retry setting up the watches when the folder (or its parent) does not
/// exist yet, as when git-sync has not finished its first clone.
const SETUP_RETRY: Duration = Duration::from_secs(2);

/// State shared between notify's callback thread and the debounce task.
struct Shared {
    /// Monotonic time of the last relevant event, in nanoseconds since `epoch`.
    last_event: AtomicU64,
    /// Number of relevant events so far; a burst is over when no new one arrived.
    events: AtomicU64,
    /// A path the folder is reached through changed: re-resolve before the reload.
    rewatch: AtomicBool,
    /// Paths whose events mean "the folder may now be somewhere else".
    swap_points: Mutex<Vec<PathBuf>>,
    root: PathBuf,
    epoch: Instant,
    wake: Notify,
}

impl Shared {
    fn now_nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn record(&self, rewatch: bool) {
        if rewatch {
            self.rewatch.store(true, Ordering::SeqCst);
        }
        self.last_event.store(self.now_nanos(), Ordering::SeqCst);
        self.events.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn handle(&self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(error = ?error.to_string(), "folder watch error; reloading and re-establishing the watches");
                self.record(true);
                return;
            }
        };
        if !changes_content(&event.kind) {
            return;
        }
        if event.need_rescan() {
            self.record(true);
            return;
        }
        let points = self
            .swap_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut relevant = false;
        let mut rewatch = false;
        for path in &event.paths {
            if points.iter().any(|p| p == path) {
                relevant = true;
                rewatch = true;
            } else if let Ok(inside) = path.strip_prefix(&self.root) {
                relevant |= !in_git_dir(inside);
            }
        }
        drop(points);
        if relevant {
            self.record(rewatch);
        }
    }
}

/// Reads and metadata-only changes (the loader opening files, atime) never change what
/// the folder says; reacting to them would make every reload trigger the next one.
fn changes_content(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
    )
}

/// Git's own bookkeeping (`.git/` when the folder is the repository root) is not content.
/// Other dot-named paths are: a ConfigMap swaps `..data`, editors rename `.x.swp` files.
fn in_git_dir(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| matches!(c, Component::Normal(name) if name == ".git"))
}

/// The paths that, when they change, can make `root` lead somewhere else: `root` itself
/// and every symlink on the way to it.
fn swap_points(root: &Path) -> Vec<PathBuf> {
    let mut points = Vec::new();
    let mut path = PathBuf::new();
    for component in root.components() {
        path.push(component);
        let is_symlink = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if is_symlink && path != root {
            points.push(path.clone());
        }
    }
    points.push(root.to_path_buf());
    points
}

/// Owns the notify watcher and the set of watched paths.
struct Watches {
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
}

impl Watches {
    /// (Re)establishes every watch. `Err` when the folder cannot be watched (yet).
    fn install(&mut self, shared: &Shared) -> notify::Result<()> {
        for path in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&path);
        }
        let points = swap_points(&shared.root);
        for point in &points {
            if let Some(parent) = point.parent() {
                if !self.watched.iter().any(|w| w == parent)
                    && self
                        .watcher
                        .watch(parent, RecursiveMode::NonRecursive)
                        .is_ok()
                {
                    self.watched.push(parent.to_path_buf());
                }
            }
        }
        *shared
            .swap_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = points;
        self.watcher.watch(&shared.root, RecursiveMode::Recursive)?;
        self.watched.push(shared.root.clone());
        Ok(())
    }
}

/// Starts watching `dir`. The receiver yields one `()` per settled burst of changes;
/// at most one signal waits in it, so a slow consumer sees bursts collapse.
pub fn spawn(
    dir: &Path,
    debounce: Debounce,
    stop: CancellationToken,
) -> Result<mpsc::Receiver<()>, notify::Error> {
    let root = std::path::absolute(dir).map_err(notify::Error::io)?;
    let shared = Arc::new(Shared {
        last_event: AtomicU64::new(0),
        events: AtomicU64::new(0),
        rewatch: AtomicBool::new(false),
        swap_points: Mutex::new(Vec::new()),
        root,
        epoch: Instant::now(),
        wake: Notify::new(),
    });
    let callback = {
        let shared = shared.clone();
        move |event| shared.handle(event)
    };
    let watcher = notify::recommended_watcher(callback)?;
    let mut watches = Watches {
        watcher,
        watched: Vec::new(),
    };
    let mut installed = match watches.install(&shared) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(folder = ?shared.root, error = ?error.to_string(), "cannot watch the folder yet; retrying every {}s", SETUP_RETRY.as_secs());
            false
        }
    };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut seen = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(SETUP_RETRY), if !installed => {
                    if watches.install(&shared).is_ok() {
                        tracing::info!(folder = ?shared.root, "watching the folder");
                        installed = true;
                        let _ = tx.try_send(());
                    }
                    continue;
                }
            }
            if shared.events.load(Ordering::SeqCst) == seen {
                continue;
            }
            let first = Instant::now();
            loop {
                let last =
                    shared.epoch + Duration::from_nanos(shared.last_event.load(Ordering::SeqCst));
                let deadline = (last + debounce.quiet).min(first + debounce.max_delay);
                if Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
            seen = shared.events.load(Ordering::SeqCst);
            if shared.rewatch.swap(false, Ordering::SeqCst) || !installed {
                installed = match watches.install(&shared) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(folder = ?shared.root, error = ?error.to_string(), "cannot watch the folder; retrying every {}s", SETUP_RETRY.as_secs());
                        false
                    }
                };
            }
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_internals_are_ignored_but_other_dot_paths_are_not() {
        assert!(in_git_dir(Path::new(".git/index")));
        assert!(in_git_dir(Path::new("sub/.git/HEAD")));
        assert!(!in_git_dir(Path::new("..data")));
        assert!(!in_git_dir(Path::new("..2024_01_01/users.yaml")));
        assert!(!in_git_dir(Path::new(".gitignore")));
    }

    #[test]
    fn reads_and_metadata_do_not_count() {
        use notify::event::{AccessKind, CreateKind, MetadataKind, RenameMode};
        assert!(!changes_content(&EventKind::Access(AccessKind::Any)));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
    }

    #[test]
    fn swap_points_include_the_folder_and_symlinks_on_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("rev1/desired-state")).unwrap();
        std::os::unix::fs::symlink(base.join("rev1"), base.join("link")).unwrap();
        let root = base.join("link/desired-state");
        assert_eq!(swap_points(&root), vec![base.join("link"), root.clone()]);
        let plain = base.join("rev1/desired-state");
        assert_eq!(swap_points(&plain), vec![plain.clone()]);
    }

    async fn next_signal(rx: &mut mpsc::Receiver<()>, within: Duration) -> bool {
        tokio::time::timeout(within, rx.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn a_burst_is_one_signal_and_a_symlink_swap_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("rev1")).unwrap();
        std::os::unix::fs::symlink(base.join("rev1"), base.join("current")).unwrap();
        let stop = CancellationToken::new();
        let debounce = Debounce {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let mut rx = spawn(&base.join("current"), debounce, stop.clone()).unwrap();

        for i in 0..100 {
            std::fs::write(base.join(format!("rev1/f{i}.yaml")), "users: []\n").unwrap();
        }
        assert!(next_signal(&mut rx, Duration::from_secs(3)).await);
        assert!(!next_signal(&mut rx, Duration::from_millis(400)).await);

        // Reading the files (as the loader does) is not a change.
        for i in 0..100 {
            std::fs::read(base.join(format!("current/f{i}.yaml"))).unwrap();
        }
        assert!(!next_signal(&mut rx, Duration::from_millis(400)).await);

        // A git-sync style swap: new target, new symlink renamed over the old one.
        std::fs::create_dir_all(base.join("rev2")).unwrap();
        std::os::unix::fs::symlink(base.join("rev2"), base.join("current.tmp")).unwrap();
        std::fs::rename(base.join("current.tmp"), base.join("current")).unwrap();
        assert!(next_signal(&mut rx, Duration::from_secs(3)).await);
        assert!(!next_signal(&mut rx, Duration::from_millis(400)).await);

        // After the swap, the new target is the one watched.
        std::fs::write(base.join("rev2/new.yaml"), "users: []\n").unwrap();
        assert!(next_signal(&mut rx, Duration::from_secs(3)).await);
        stop.cancel();
    }
}
