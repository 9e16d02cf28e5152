//! `roster import [DIR]`: lists every account of the selected instances and writes user
//! files that describe them, one per instance, under `DIR/imported/` (or `--out`). The
//! decisions are [`crate::import::build`]'s; this is the I/O around it: where the files
//! go (always inside the folder), never overwriting without `--force`, writing nothing
//! when an instance cannot be read, and checking that the folder still validates.

use super::{say, say_line, unknown_providers, FolderArgs, FolderRejected, LogFormat, EXIT_USAGE};
use crate::desired::{self, InstanceConfig};
use crate::escape;
use crate::import::{self, Existing, Join, Source};
use crate::model::Inventory;
use crate::progress::Progress;
use crate::reconcile;
use anyhow::anyhow;
use clap::Args;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Arguments of `roster import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    /// How accounts at several instances are recognised as one person's: email
    /// (case-insensitive; else login where both sides have one), login, or none.
    #[arg(long, value_enum, default_value_t = Join::Email)]
    pub join: Join,
    /// The folder to write the files to, inside DIR (default DIR/imported). A relative
    /// path is taken from the current directory, as DIR is.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Overwrite the files of an earlier import.
    #[arg(long)]
    pub force: bool,
}

/// Why `roster import` stopped before or while writing; each names the file or instance.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error("{}: already {}; nothing was written (use --force to replace the files of an earlier import)", list(.0), if .0.len() == 1 { "exists" } else { "exist" })]
    Exists(Vec<PathBuf>),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `roster import`: 0 when the files were written (or there was nothing to list),
/// 1 on an error (nothing written), [`EXIT_USAGE`] for an `--out` outside the folder.
pub async fn run(args: ImportArgs, log_format: LogFormat) -> anyhow::Result<u8> {
    let dir = &args.folder.dir;
    let desired =
        desired::load(dir, crate::provider::specs()).map_err(|invalid| FolderRejected {
            dir: dir.display().to_string(),
            count: invalid.count_text(),
            problems: invalid.problems,
        })?;
    let unknown = unknown_providers(&desired, &args.folder.providers);
    if !unknown.is_empty() {
        return Err(anyhow!(unknown.join("\n")));
    }
    let out = match output_folder(dir, args.out.as_deref()) {
        Ok(out) => out,
        Err(message) => {
            say(log_format, "error: ", &message);
            return Ok(EXIT_USAGE);
        }
    };
    let mut selected = reconcile::select(&desired, &args.folder.providers)?;
    // providers.yaml order: a joined user goes to the file of its first instance.
    selected.sort_by_key(|i| (i.location.line, i.location.column, i.name.clone()));
    selected.dedup_by(|a, b| a.name == b.name);
    let sources = match list_all(&selected).await? {
        Ok(sources) => sources,
        Err(failures) => {
            for failure in failures {
                say_line(log_format, "error: ", &failure);
            }
            say(log_format, "error: ", "not every selected instance could be listed, so nothing was written (joins need every instance); fix it, or leave the instance out with --provider");
            return Ok(1);
        }
    };
    let targets: Vec<PathBuf> = sources
        .iter()
        .filter(|s| matches!(s.inventory, Inventory::Listed(_)))
        .map(|s| out.join(format!("{}.yaml", s.instance)))
        .collect();
    if let Some(clash) = targets
        .iter()
        .find(|t| normal(t) == normal(&dir.join("providers.yaml")))
    {
        say(
            log_format,
            "error: ",
            &format!(
                "--out: {} would replace the folder's providers.yaml; choose a sub-folder",
                clash.display()
            ),
        );
        return Ok(EXIT_USAGE);
    }
    if !args.force {
        let existing: Vec<PathBuf> = targets.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(ImportError::Exists(existing).into());
        }
    }
    let replaced: HashSet<PathBuf> = targets.iter().map(|t| normal(t)).collect();
    let existing = Existing::of(&desired, |user| {
        replaced.contains(&normal(Path::new(&*user.location.file)))
    });
    let import = import::build(&sources, &existing, args.join);
    let files: Vec<(PathBuf, &import::ImportFile)> = import
        .files
        .iter()
        .map(|f| (out.join(f.file_name()), f))
        .collect();
    let backups = write_all(&files, args.force)?;
    if let Err(invalid) = desired::load(dir, crate::provider::specs()) {
        restore(&backups);
        for problem in &invalid.problems {
            say_line(log_format, "", &problem.to_string());
        }
        return Err(anyhow!(
            "the imported files do not validate with the rest of {} (a bug in Roster: please report it with the problems above); the files were put back as they were",
            dir.display()
        ));
    }
    let shown: Vec<(String, &import::ImportFile)> = files
        .iter()
        .map(|(path, file)| (path.display().to_string(), *file))
        .collect();
    let mut lines = import.summary.lines(&shown);
    lines.push(format!(
        "Next: review the files, commit them, and `roster plan {}` shows no changes.",
        dir.display()
    ));
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        writeln!(stderr, "{}", escape::text(&line))?;
    }
    Ok(0)
}

/// Lists every selected instance at once. The outer error is a connection problem (a
/// missing secret); the inner one names each instance that could not be listed.
async fn list_all(
    selected: &[&InstanceConfig],
) -> anyhow::Result<Result<Vec<Source>, Vec<String>>> {
    let progress = Arc::new(Progress::for_stderr(
        selected.iter().map(|instance| instance.name.as_str()),
    ));
    let providers = reconcile::connect_all(selected, progress.clone()).map_err(|errors| {
        anyhow!(errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    progress.note(&format!(
        "Listing the accounts of {} provider instance(s)...",
        providers.len()
    ));
    let listings = futures::future::join_all(selected.iter().map(|instance| {
        let provider = providers.get(&instance.name).cloned();
        async move {
            let result = match provider {
                Some(provider) => provider.inventory().await.map_err(|e| e.to_string()),
                None => Err("not connected".to_string()),
            };
            (*instance, result)
        }
    }))
    .await;
    progress.finish();
    let mut sources = Vec::new();
    let mut failures = Vec::new();
    for (instance, result) in listings {
        match result {
            Ok(inventory) => sources.push(Source {
                instance: instance.name.clone(),
                kind: instance.kind,
                inventory,
            }),
            Err(message) => failures.push(format!("{}: {message}", instance.name)),
        }
    }
    Ok(if failures.is_empty() {
        Ok(sources)
    } else {
        Err(failures)
    })
}

/// Where the files go: `DIR/imported`, or `--out` when it lies inside `DIR` (after
/// following symbolic links), given back as `DIR/<the part below DIR>` so it names files
/// the way the loader does. A path outside the folder, or through a hidden folder (which
/// the loader ignores), is a usage error.
fn output_folder(dir: &Path, out: Option<&Path>) -> Result<PathBuf, String> {
    let Some(out) = out else {
        return Ok(dir.join("imported"));
    };
    let outside = || {
        format!(
            "--out {}: not inside the folder {}; the imported files must be part of it (for example --out {})",
            out.display(),
            dir.display(),
            dir.join("people").join("imported").display()
        )
    };
    let root = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let target = resolved(&absolute(out)).ok_or_else(outside)?;
    let below = target.strip_prefix(&root).map_err(|_| outside())?;
    if below
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    {
        return Err(format!(
            "--out {}: Roster ignores folders whose name starts with '.', so it would never read the imported files; choose another folder",
            out.display()
        ));
    }
    Ok(dir.join(below))
}

/// `path` from the current directory, with `.` and `..` resolved by name.
fn absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_default()
    };
    let mut out = PathBuf::new();
    for component in base.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// An absolute path with its longest existing prefix resolved through symbolic links, so
/// a link inside the folder that points outside it is seen for what it is.
fn resolved(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name()?.to_os_string());
        if !existing.pop() {
            return None;
        }
    }
    let mut real = existing.canonicalize().ok()?;
    for part in rest.iter().rev() {
        real.push(part);
    }
    Some(real)
}

/// A path compared by its components, without `.` steps: `./ds/a.yaml` is `ds/a.yaml`.
fn normal(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// A file written and what it held before (`None`: it did not exist).
type Backup = (PathBuf, Option<Vec<u8>>);

/// Writes every file through a temporary file and a rename, so none is ever half
/// written. Without `force` a file that appeared meanwhile is not replaced. On an error
/// the files already written are put back, and the error names the file.
fn write_all(
    files: &[(PathBuf, &import::ImportFile)],
    force: bool,
) -> Result<Vec<Backup>, ImportError> {
    let mut backups = Vec::new();
    for (path, file) in files {
        let before = std::fs::read(path).ok();
        if let Err(source) = write_one(path, file.text.as_bytes(), force) {
            restore(&backups);
            return Err(ImportError::Write {
                path: path.clone(),
                source,
            });
        }
        backups.push((path.clone(), before));
    }
    Ok(backups)
}

fn write_one(path: &Path, bytes: &[u8], force: bool) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    if force {
        temp.persist(path).map_err(|e| e.error)?;
    } else {
        temp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// Puts back what the files held before this import; best effort, each failure logged.
fn restore(backups: &[Backup]) {
    for (path, before) in backups.iter().rev() {
        let result = match before {
            Some(bytes) => std::fs::write(path, bytes),
            None => std::fs::remove_file(path),
        };
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "could not put the file back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_folder_must_be_inside_the_folder_and_not_hidden() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("ds");
        std::fs::create_dir_all(dir.join("people")).unwrap();
        std::fs::create_dir_all(temp.path().join("elsewhere")).unwrap();
        assert_eq!(output_folder(&dir, None).unwrap(), dir.join("imported"));
        assert_eq!(
            output_folder(&dir, Some(&dir.join("people/new"))).unwrap(),
            dir.join("people/new")
        );
        assert_eq!(
            output_folder(&dir, Some(&dir.join("people/../x"))).unwrap(),
            dir.join("x")
        );
        for outside in [
            temp.path().join("elsewhere"),
            dir.join("../elsewhere"),
            PathBuf::from("/"),
        ] {
            let error = output_folder(&dir, Some(&outside)).unwrap_err();
            assert!(error.contains("not inside the folder"), "{error}");
        }
        let hidden = output_folder(&dir, Some(&dir.join(".git/x"))).unwrap_err();
        assert!(hidden.contains("starts with '.'"), "{hidden}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(temp.path().join("elsewhere"), dir.join("link")).unwrap();
            let error = output_folder(&dir, Some(&dir.join("link/sub"))).unwrap_err();
            assert!(error.contains("not inside the folder"), "{error}");
        }
    }

    #[test]
    fn a_path_is_compared_without_its_dot_steps() {
        assert_eq!(
            normal(Path::new("./ds/./imported/a.yaml")),
            normal(Path::new("ds/imported/a.yaml"))
        );
    }
}
