//! Hostile folders: what a pull request can put in the desired-state folder to make
//! Roster act on part of it, hang, exhaust memory or print a secret. Each runs the real
//! `roster validate` (with a 20 s kill switch: a hang fails the test rather than the run)
//! and compares what the user sees.
//!
//! `tests/hostile/<case>/` holds the cases git can store, with `expected.txt`: the exact
//! stderr of `roster validate .` run inside the case (empty when the folder is valid).
//! Set `ROSTER_BLESS=1` to rewrite the `expected.txt` files from the binary's output,
//! then review the diff. Cases git cannot store (FIFOs, sockets, device symlinks,
//! symlink loops, huge files) are built here in a temporary folder.

mod common;

use common::{user, World};
use roster::simulator::{SimConfig, SimKind};
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a hang is what this catches, not slowness.
const KILL_AFTER: Duration = Duration::from_secs(20);

const PROVIDERS: &str = "\
providers:
  portal:
    kind: suspend-api
    base_url: http://127.0.0.1:9000
    tenant_id: t-1
    auth: { bearer_token_env: PORTAL_TOKEN }
";

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `roster ARGS` in `cwd`, killing it (and failing) after [`KILL_AFTER`].
fn roster(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("roster starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + KILL_AFTER;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "roster {args:?} in {} did not finish within {KILL_AFTER:?}",
                cwd.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    }
}

fn validate(dir: &Path) -> Output {
    roster(dir, &["validate", "."])
}

#[test]
fn every_stored_case_prints_exactly_its_expected_problems() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("tests/hostile")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "the corpus is missing: {cases:?}");
    let bless = std::env::var_os("ROSTER_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in &cases {
        let out = validate(case);
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &out.stderr).expect("bless");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let expected_code = if expected.is_empty() { 0 } else { 1 };
        if out.stderr != expected || out.code != expected_code {
            mismatches.push(format!(
                "{}: exit {} (expected {expected_code})\n--- expected\n{expected}--- got\n{}",
                case.display(),
                out.code,
                out.stderr
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn no_secret_of_the_corpus_is_ever_printed() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    for case in ["secrets-prefixes", "secrets-high-entropy"] {
        let dir = corpus.join(case);
        let providers = std::fs::read_to_string(dir.join("providers.yaml")).expect("read");
        let out = validate(&dir);
        assert_eq!(out.code, 1, "{case}");
        let printed = format!("{}{}", out.stdout, out.stderr);
        for line in providers.lines() {
            let Some((_, value)) = line
                .split_once(": \"")
                .or_else(|| line.split_once("file: "))
            else {
                continue;
            };
            let value = value.trim_end_matches([' ', '}', '"']);
            if value.len() >= 8 && !value.starts_with('/') {
                let secret = &value[value.len() - 8..];
                assert!(
                    !printed.contains(secret),
                    "{case}: '{secret}' was printed:\n{printed}"
                );
            }
        }
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}

/// A folder with a valid providers.yaml, in a temporary directory.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("providers.yaml"), PROVIDERS).expect("write");
    dir
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

fn lines(out: &Output) -> Vec<&str> {
    out.stderr.lines().collect()
}

#[test]
fn special_files_are_refused_without_blocking() {
    let dir = folder();
    let d = dir.path();
    mkfifo(&d.join("fifo.yaml"));
    symlink("/dev/zero", d.join("zero.yaml")).expect("symlink");
    symlink("/dev/null", d.join("null.yml")).expect("symlink");
    let _socket = std::os::unix::net::UnixListener::bind(d.join("socket.yaml")).expect("socket");
    mkfifo(&d.join("not-yaml.fifo"));
    let out = validate(d);
    let tail = "not a regular file: only regular files are read (remove it, or give it a name that does not end in .yaml or .yml)";
    assert_eq!(
        lines(&out),
        [
            format!("fifo.yaml: a named pipe (FIFO), {tail}").as_str(),
            &format!("null.yml: a character device, {tail}"),
            &format!("socket.yaml: a socket, {tail}"),
            &format!("zero.yaml: a character device, {tail}"),
            "error: .: invalid (4 problems)",
        ]
    );
    assert_eq!(out.code, 1);
}

#[test]
fn a_fifo_as_providers_file_is_one_problem_and_plan_does_not_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    mkfifo(&dir.path().join("providers.yaml"));
    let out = validate(dir.path());
    assert_eq!(
        lines(&out),
        [
            "providers.yaml: a named pipe (FIFO), not a regular file: only regular files are read (remove it, or give it a name that does not end in .yaml or .yml)",
            "error: .: invalid (1 problem)",
        ]
    );
    let plan = roster(dir.path(), &["plan", "."]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    assert!(
        plan.stderr.contains("a named pipe (FIFO)"),
        "{}",
        plan.stderr
    );
}

#[test]
fn files_over_the_limits_are_refused_unread() {
    let dir = folder();
    let big = std::fs::File::create(dir.path().join("big.yaml")).expect("create");
    big.set_len(17 * 1024 * 1024).expect("sparse file");
    let out = validate(dir.path());
    assert_eq!(
        lines(&out),
        [
            "big.yaml: 17825792 bytes, over the limit of 16 MiB for one file: split it into smaller files",
            "error: .: invalid (1 problem)",
        ]
    );

    let dir = folder();
    for i in 0..5 {
        let f = std::fs::File::create(dir.path().join(format!("part{i}.yaml"))).expect("create");
        f.set_len(15 * 1024 * 1024).expect("sparse file");
    }
    let out = validate(dir.path());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(".: the folder's YAML files add up to more than 64 MiB (the limit); stopped reading at part4.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn symlink_loops_are_reported_once_and_do_not_explode_the_walk() {
    let dir = folder();
    let d = dir.path();
    symlink(".", d.join("a")).expect("symlink");
    symlink(".", d.join("b")).expect("symlink");
    symlink("y.yaml", d.join("x.yaml")).expect("symlink");
    symlink("x.yaml", d.join("y.yaml")).expect("symlink");
    symlink("missing.yaml", d.join("broken.yaml")).expect("symlink");
    let out = validate(d);
    assert_eq!(
        lines(&out),
        [
            "a: symlink loop: it leads back to ., which contains it; remove the symlink",
            "b: symlink loop: it leads back to ., which contains it; remove the symlink",
            "broken.yaml: broken symlink: its target does not exist",
            "x.yaml: symlink loop: too many levels of symbolic links",
            "y.yaml: symlink loop: too many levels of symbolic links",
            "error: .: invalid (5 problems)",
        ]
    );
}

#[test]
fn a_folder_reached_many_times_is_read_once() {
    // d0 holds one user; each level links twice to the level below, so a walk that
    // followed every path would read that user 2^30 times.
    let dir = folder();
    let d = dir.path();
    std::fs::create_dir(d.join("d0")).expect("mkdir");
    std::fs::write(
        d.join("d0/people.yaml"),
        "users:\n  - name: ann\n    status: active\n    accounts: { portal: p-1 }\n",
    )
    .expect("write");
    for level in 1..=30 {
        let here = d.join(format!("d{level}"));
        std::fs::create_dir(&here).expect("mkdir");
        let below = format!("../d{}", level - 1);
        symlink(&below, here.join("a")).expect("symlink");
        symlink(&below, here.join("b")).expect("symlink");
    }
    let out = validate(d);
    assert_eq!(out.stderr, "");
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("1 users, 1 accounts"),
        "the user is read once: {}",
        out.stdout
    );
}

#[test]
fn a_folder_with_too_many_entries_stops_at_the_cap() {
    let dir = folder();
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    for i in 0..=roster::desired::MAX_ENTRIES {
        std::fs::File::create(many.join(i.to_string())).expect("create");
    }
    let out = validate(dir.path());
    assert_eq!(
        lines(&out),
        [
            ".: the folder holds more than 100000 entries (the limit); stopped walking at many",
            "error: .: invalid (1 problem)",
        ]
    );
}

#[test]
fn control_characters_in_a_file_name_cannot_forge_output_lines() {
    let dir = folder();
    std::fs::write(
        dir.path().join("a\nerror: .: valid.yaml"),
        "users:\n  - name: a\0\n",
    )
    .expect("write");
    let out = validate(dir.path());
    assert_eq!(
        lines(&out),
        [
            "a\\nerror: .: valid.yaml:2:12: a NUL byte (U+0000) is not allowed in a desired-state file: remove it",
            "error: .: invalid (1 problem)",
        ]
    );
}

/// A valid user file whose apply would make changes: the simulator's accounts are all
/// active, the file wants two of them inactive.
const USERS: &str = "\
users:
  - name: ann
    status: inactive
    reason: Left (HR-1)
    accounts:
      portal: p-1
  - name: bob
    status: active
    accounts:
      portal: { id: p-2, status: inactive }
";

/// The invalid variants of the folder that `apply` must refuse, as (what, file name,
/// bytes). The byte mutations are spread over the whole file.
fn invalid_variants() -> Vec<(String, String, Vec<u8>)> {
    let base = USERS.as_bytes();
    let mut variants = Vec::new();
    let n = base.len();
    for (i, at) in [0, n / 5, 2 * n / 5, 3 * n / 5, 4 * n / 5, n - 1]
        .into_iter()
        .enumerate()
    {
        let mut bytes = base.to_vec();
        bytes.insert(at, [0u8, 0x1b, 0xff][i % 3]);
        variants.push((
            format!("byte inserted at {at}"),
            "people.yaml".into(),
            bytes,
        ));
        let mut bytes = base.to_vec();
        bytes[at] = [0x7f, 0x08, 0xc3][i % 3];
        variants.push((
            format!("byte replaced at {at}"),
            "people.yaml".into(),
            bytes,
        ));
    }
    let text = |s: &str| s.as_bytes().to_vec();
    variants.extend([
        ("case variant".into(), "people.YAML".into(), text(USERS)),
        (
            "empty file".into(),
            "people.yaml".into(),
            text("# nobody\n"),
        ),
        ("users: null".into(), "people.yaml".into(), text("users:\n")),
        (
            "second document".into(),
            "people.yaml".into(),
            text(&format!("{USERS}---\n{USERS}")),
        ),
        (
            "status typo".into(),
            "people.yaml".into(),
            text(&USERS.replace(
                "status: inactive\n    reason",
                "status: inactve\n    reason",
            )),
        ),
        (
            "unknown key".into(),
            "people.yaml".into(),
            text(&USERS.replace("reason:", "raeson:")),
        ),
        (
            "duplicate user".into(),
            "people.yaml".into(),
            text(&USERS.replace("name: bob", "name: ann")),
        ),
        (
            "truncated mid-entry".into(),
            "people.yaml".into(),
            base[..USERS.find("id: p-2").unwrap_or(0) + 4].to_vec(),
        ),
    ]);
    variants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_on_any_invalid_folder_sends_no_request() {
    let mut world = World::new();
    world
        .add(
            "portal",
            SimConfig::new(
                SimKind::SuspendApi,
                vec![user("p-1", "active"), user("p-2", "active")],
            ),
            "",
        )
        .await;
    let folder = world.folder();
    let dir = folder.to_string_lossy().into_owned();
    let variants = invalid_variants();
    assert!(variants.len() >= 20, "{} variants", variants.len());
    for (what, name, bytes) in &variants {
        let path = folder.join(name);
        std::fs::write(&path, bytes).expect("write");
        let run = world.roster(&["apply", &dir]).await;
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        assert!(run.stderr.contains("invalid ("), "{what}: {}", run.stderr);
        assert_eq!(world.request_count(), 0, "{what}: the simulator was called");
        std::fs::remove_file(&path).expect("remove");
    }
    // Special files as well: a FIFO and a /dev/zero symlink next to the valid file.
    world.write("people.yaml", USERS);
    mkfifo(&folder.join("fifo.yaml"));
    let run = world.roster(&["apply", &dir]).await;
    assert_eq!((run.code, world.request_count()), (1, 0), "{}", run.stderr);
    std::fs::remove_file(folder.join("fifo.yaml")).expect("remove");
    symlink("/dev/zero", folder.join("zero.yaml")).expect("symlink");
    let run = world.roster(&["apply", &dir]).await;
    assert_eq!((run.code, world.request_count()), (1, 0), "{}", run.stderr);
    std::fs::remove_file(folder.join("zero.yaml")).expect("remove");

    // The same folder, valid, does reach the simulator and change both accounts: the
    // zero counts above are the loader's doing, not a disconnected simulator.
    let run = world.roster(&["apply", &dir]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(world.write_count(), 2);
}
