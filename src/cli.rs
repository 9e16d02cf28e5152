//! The command line: clap definitions, logging setup, and the glue from a command to
//! the library and an exit code. Results go to stdout, logs and progress to stderr.

use crate::apply::{self, ApplyOptions};
use crate::audit::{self, AuditLog};
use crate::desired::{self, DesiredState, Location, Problem};
use crate::escape;
use crate::plan::PlanTime;
use crate::progress::Progress;
use crate::reconcile::{self, Providers};
use crate::report::{self, Format, StatusFormat};
use anyhow::{anyhow, Context};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod completions;
mod import;
mod init;
mod validate;

#[derive(Parser, Debug)]
#[command(
    name = "roster",
    version,
    about = "Reconcile SaaS account statuses with a folder of YAML files",
    after_help = "Examples:
  roster demo                                    # see it work: simulators, no configuration
  roster init && roster validate                 # a first ./desired-state folder
  roster plan --detailed-exitcode                # what would change; exit 2 when something would
  roster apply --audit-log audit.jsonl           # one pass
  roster run --listen 127.0.0.1:9464             # the daemon

Each command's --help ends with its own examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log detail on stderr, one level per -v: plan/apply/validate warn, -v info,
    /// -vv debug (each HTTP request); run info, -v debug, -vv trace.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load and check the folder; no network, no secrets. Exit 0 valid, 1 invalid.
    #[command(after_help = "Examples:
  roster validate                                # ./desired-state
  roster validate --format github desired-state  # annotations on a pull request
  roster validate --format json desired-state    # {\"valid\": ..., \"errors\": [...]}")]
    Validate(ValidateArgs),
    /// Read live state and print the changes a reconcile would make; never writes.
    #[command(after_help = "Examples:
  roster plan                                    # ./desired-state, every instance
  roster plan --provider helpdesk                # one instance (repeatable)
  roster plan --format markdown --detailed-exitcode > plan.md   # a pull-request comment; exit 2: changes pending
  roster plan --format json | jq '.changes[]'
  roster plan --at 2026-12-31T18:00:00+01:00     # the plan as it will be then (still read-only)
  roster plan --upcoming 7d                      # scheduled changes of the coming week")]
    Plan(PlanArgs),
    /// One reconcile pass, then a summary. Exit 0 converged, 1 error, 3 guard refused.
    #[command(after_help = "Examples:
  roster apply --audit-log audit.jsonl           # one pass, every write recorded
  roster apply --provider helpdesk               # one instance (repeatable)
  roster apply --max-changes 100                 # a reviewed bulk offboarding
  roster apply --format markdown > summary.md")]
    Apply(ApplyArgs),
    /// The daemon: reconcile at start, on every folder change and every --interval;
    /// serve /healthz, /readyz and /metrics. Exit 0 after SIGTERM or SIGINT.
    #[command(after_help = "Examples:
  roster run --interval 5m --listen 127.0.0.1:9464 --audit-log audit.jsonl
  roster run /git/desired-state/desired-state --listen 0.0.0.0:9464 --log-format json   # in a container
  roster run --provider atlan --provider zitadel  # one shard of the instances")]
    Run(RunArgs),
    /// Who has access: every account's live status beside the desired one; never writes.
    /// Exit 0, or 1 when an instance or account could not be read.
    #[command(after_help = "Examples:
  roster status                                  # ./desired-state, every user
  roster status desired-state ana.contractor     # one user (several may follow)
  roster status --drift-only --provider helpdesk # only what differs, at one instance
  roster status --format csv > access.csv        # for a spreadsheet or an auditor")]
    Status(StatusArgs),
    /// Start simulators for every provider kind on loopback, then plan, apply, plan again.
    #[command(after_help = "Example:
  roster demo                                    # no configuration, no secrets, no network")]
    Demo,
    /// Run one built-in provider simulator on loopback, for trying Roster by hand.
    #[command(after_help = "Examples:
  roster simulate --kind status-api              # 127.0.0.1:8080, token sim-token (what `roster init` expects)
  roster simulate --kind atlan --users 20000 --port 0 --page-size 100")]
    Simulate(SimulateArgs),
    /// Write an example folder (providers.yaml and one user file) that validates and
    /// plans against `roster simulate --kind status-api`. Never overwrites without --force.
    #[command(after_help = "Examples:
  roster init                                    # ./desired-state
  roster init my-folder && roster validate my-folder
  roster init --force                            # replace the two example files")]
    Init(InitArgs),
    /// Write user files that describe every account the instances hold today (each with
    /// its live status), one file per instance under DIR/imported. Never overwrites
    /// without --force; a summary on stderr.
    #[command(after_help = "Examples:
  roster import                                  # ./desired-state -> desired-state/imported/*.yaml
  roster import --provider atlan --join login    # one instance; join people by login
  roster import --out desired-state/people/imported --force   # replace an earlier import")]
    Import(import::ImportArgs),
    /// Print the shell completion script for bash, zsh or fish to stdout.
    #[command(after_help = "Examples:
  roster completions bash > ~/.local/share/bash-completion/completions/roster
  roster completions zsh > \"${fpath[1]}/_roster\"
  roster completions fish > ~/.config/fish/completions/roster.fish")]
    Completions(CompletionsArgs),
}

/// Arguments of `roster init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The folder to create (or fill).
    #[arg(default_value = "desired-state")]
    pub dir: PathBuf,
    /// Overwrite providers.yaml and people.yaml when they exist.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `roster completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish (elvish and powershell work too).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Provider kind: atlan, zitadel, acronis, status-api, suspend-api or scim.
    #[arg(long)]
    pub kind: String,
    /// Generate this many users (ignored with --fixture).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Load users from a YAML or JSON file instead of generating them.
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The bearer token (acronis: the client secret) the simulator accepts.
    #[arg(long, default_value = "sim-token")]
    pub token: String,
    /// Seed of the generated users.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The most records one list page returns.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Inject faults from this JSON file (the body `PUT /_sim/faults` takes; see README).
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FolderArgs {
    /// The desired-state folder.
    #[arg(default_value = "desired-state")]
    pub dir: PathBuf,
    /// Limit the command to these provider instances (repeatable).
    #[arg(long = "provider", value_name = "NAME")]
    pub providers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    /// text: problems on stderr for people; json: one document on stdout for tools;
    /// github: GitHub Actions `::error` annotations on stdout, shown on the pull request.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
}

/// How `roster validate` reports, see [`validate::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    Github,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when there are no changes, 2 when changes are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// The guard limit to warn about, as `apply --max-changes` would use it.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<usize>,
    /// Evaluate the folder's time bounds at this instant instead of now (RFC 3339 with
    /// an offset, e.g. 2026-12-31T18:00:00+01:00); live state is read as usual.
    #[arg(long, value_name = "TIME", value_parser = desired::parse_instant)]
    pub at: Option<time::OffsetDateTime>,
    /// List the scheduled changes still to come within this horizon (humantime: 30d,
    /// 12h; 0s for none).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub upcoming: Duration,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Only these users (names as in the folder).
    #[arg(value_name = "USER")]
    pub users: Vec<String>,
    /// text for people, json for tools, csv for spreadsheets (formula-like cells are
    /// prefixed with ' so a spreadsheet shows them as text).
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    /// Only the accounts whose live status differs from the desired one.
    #[arg(long)]
    pub drift_only: bool,
    /// Also list the accounts each instance holds that no file claims (kinds that can
    /// list all their accounts; an acronis instance needs `tenant_id`).
    #[arg(long)]
    pub unmanaged: bool,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Replace every instance's max_changes for this run.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<usize>,
    /// Lift the max_changes safety guard for this run.
    #[arg(long)]
    pub allow_mass_change: bool,
    /// Append one JSON line per write call to this file.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Where the per-instance lock files live (default $XDG_STATE_HOME/roster, else
    /// /var/lib/roster); use the same one as the daemon on this machine.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Time between passes when nothing changes (humantime: 30s, 5m, 1h), with a little jitter.
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    pub interval: Duration,
    /// Address for /healthz, /readyz and /metrics (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Append one JSON line per write call to this file; reopened on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Lower every instance's max_changes, on every pass (never raises it: raise
    /// max_changes in providers.yaml, in a reviewed commit).
    #[arg(long, value_name = "N")]
    pub max_changes: Option<usize>,
    /// Refused: the daemon never lifts the guard (see `run_daemon`); kept so that an old
    /// command line gets a clear error rather than "unexpected argument".
    #[arg(long, hide = true)]
    pub allow_mass_change: bool,
    /// On SIGTERM/SIGINT, how long to wait for calls in flight before giving up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace_period: Duration,
    /// POST a JSON (Slack-compatible) notification to this URL on drift corrected, a
    /// guard refusal, a failing instance, an invalid folder, and recovery. https:// (http
    /// only to loopback). The URL is a secret: never logged or shown.
    #[arg(
        long,
        value_name = "URL",
        env = "ROSTER_NOTIFY_WEBHOOK",
        hide_env_values = true,
        value_parser = secret_value
    )]
    pub notify_webhook: Option<crate::secret::Secret>,
    /// Where the per-instance lock files live (default $XDG_STATE_HOME/roster, else
    /// /var/lib/roster); a second process on this machine waits for them.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub election: ElectionArgs,
}

/// Wraps a secret argument at once, so that `Debug` of the arguments never shows it.
/// It never fails: clap would quote a rejected value in its error.
fn secret_value(text: &str) -> Result<crate::secret::Secret, std::convert::Infallible> {
    Ok(crate::secret::Secret::new(text))
}

/// `roster run --leader-election`: several replicas, one writer (a Kubernetes Lease).
#[derive(Args, Debug)]
pub struct ElectionArgs {
    /// Reconcile only while holding a coordination.k8s.io/v1 Lease (identity: POD_NAME,
    /// else the host name); other replicas stay ready and idle.
    #[arg(long, requires_all = ["lease_namespace", "lease_name"])]
    pub leader_election: bool,
    /// The Lease's namespace (usually the pod's own).
    #[arg(long, value_name = "NS", requires = "leader_election")]
    pub lease_namespace: Option<String>,
    /// The Lease's name; one per deployment (per `--provider` shard).
    #[arg(long, value_name = "NAME", requires = "leader_election")]
    pub lease_name: Option<String>,
    /// How long a lease holds without renewal: a dead leader's successor takes over
    /// within this (whole seconds, at least 3s).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_lease_duration, requires = "leader_election")]
    pub lease_duration: Duration,
    /// For tests: the Kubernetes API URL instead of the in-cluster one.
    #[arg(long, hide = true, value_name = "URL", requires = "leader_election")]
    pub kube_api_url: Option<String>,
    /// For tests: the bearer token file used with --kube-api-url.
    #[arg(long, hide = true, value_name = "FILE", requires = "kube_api_url")]
    pub kube_token_file: Option<PathBuf>,
}

/// `leaseDurationSeconds` is a whole number of seconds; under 3s the holder would have
/// to renew more than once a second.
fn parse_lease_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".into());
    }
    if duration < Duration::from_secs(3) {
        return Err("must be at least 3s".into());
    }
    Ok(duration)
}

/// An interval under a second would turn the daemon into a busy loop against providers.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(interval)
}

/// The exit code of a command line that did not parse (a misspelt flag, a missing value):
/// EX_USAGE from sysexits.h, so a typo in a CI script can never pass for "changes
/// pending" (2) or "guard refused" (3).
pub const EXIT_USAGE: u8 = 64;

/// Prints clap's message for a command line that did not parse and returns its exit code:
/// 0 for `--help` and `--version` (printed to stdout), [`EXIT_USAGE`] for anything else.
pub fn usage_error(error: &clap::Error) -> u8 {
    // Printing can only fail when stdout/stderr are closed; the exit code still says it.
    let _ = error.print();
    if error.use_stderr() {
        EXIT_USAGE
    } else {
        0
    }
}

/// Runs the parsed command and returns the process exit code; an error is printed to
/// stderr in the chosen log format and exits 1.
pub fn execute(cli: Cli) -> u8 {
    let format = cli.log_format;
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if let Some(rejected) = error.downcast_ref::<FolderRejected>() {
                for problem in &rejected.problems {
                    say_line(format, "", &problem.to_string());
                }
            }
            say(format, "error: ", &format!("{error:#}"));
            1
        }
    }
}

/// A folder that did not load, so a command read and changed nothing. [`execute`] prints
/// each problem as one escaped line before this summary: a problem's text holds file
/// names and YAML values, and a newline in one must not start a line of its own.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: invalid ({count}); nothing was read or changed")]
struct FolderRejected {
    dir: String,
    count: String,
    problems: Vec<Problem>,
}

/// Writes an error for people to stderr: as text, `text_prefix` before the first line;
/// with `--log-format json`, one JSON object per line, so log shippers never see a
/// stray plain line. Each line is escaped here, at the edge: messages carry file names,
/// YAML values and provider answers, and none of them may move a terminal's cursor or
/// forge a line (an ESC or CR shows as `\u{1b}`, `\r`).
fn say(format: LogFormat, text_prefix: &str, message: &str) {
    for line in say_lines(format, text_prefix, message) {
        eprintln!("{line}");
    }
}

/// Writes `line` as one line, as [`say`] does, with any line break inside it escaped.
fn say_line(format: LogFormat, text_prefix: &str, line: &str) {
    for line in render_lines(format, text_prefix, std::iter::once(line)) {
        eprintln!("{line}");
    }
}

/// The stderr lines [`say`] writes, escaped.
fn say_lines(format: LogFormat, text_prefix: &str, message: &str) -> Vec<String> {
    render_lines(format, text_prefix, message.lines())
}

fn render_lines<'a>(
    format: LogFormat,
    text_prefix: &str,
    lines: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    lines
        .enumerate()
        .map(|(i, line)| match format {
            LogFormat::Text if i == 0 => format!("{text_prefix}{}", escape::text(line)),
            LogFormat::Text => escape::text(line).into_owned(),
            LogFormat::Json => escape::json_safe(
                &serde_json::json!({
                    "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                    "level": "ERROR",
                    "message": line,
                    "target": "roster",
                })
                .to_string(),
            )
            .into_owned(),
        })
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let daemon = matches!(cli.command, Command::Run(_));
    init_logging(cli.verbose, cli.log_format, daemon);
    match cli.command {
        Command::Validate(args) => validate(&args, cli.log_format),
        Command::Plan(args) => runtime()?.block_on(plan(args)),
        Command::Status(args) => runtime()?.block_on(status(args)),
        Command::Apply(args) => runtime()?.block_on(apply(args)),
        Command::Run(args) => runtime()?.block_on(run_daemon(args)),
        Command::Demo => {
            let text = runtime()?.block_on(crate::demo::run())?;
            print(&text)?;
            Ok(0)
        }
        Command::Simulate(args) => runtime()?.block_on(simulate(args)),
        Command::Init(args) => {
            let written = init::write_folder(&args.dir, args.force)?;
            print(&init::next_steps(&args.dir, &written))?;
            Ok(0)
        }
        Command::Import(args) => runtime()?.block_on(import::run(args, cli.log_format)),
        Command::Completions(args) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&completions::script(args.shell))?;
            stdout.flush()?;
            Ok(0)
        }
    }
}

async fn run_daemon(args: RunArgs) -> anyhow::Result<u8> {
    // Lifting the guard on every future pass would let one bad commit, months later,
    // change every account: a mass change is a one-off decision made by a person.
    if args.allow_mass_change {
        return Err(anyhow!(
            "roster run does not take --allow-mass-change: it would lift the safety guard on every \
             future pass. Raise max_changes for the instance in a reviewed commit, or run \
             `roster apply --allow-mass-change` once by hand, then start the daemon without it"
        ));
    }
    crate::daemon::run(crate::daemon::DaemonConfig {
        dir: args.folder.dir,
        interval: args.interval,
        listen: args.listen,
        audit_log: args.audit_log,
        providers: args.folder.providers,
        max_changes: args.max_changes,
        grace_period: args.grace_period,
        notify_webhook: args.notify_webhook,
        state_dir: args.state_dir,
        election: election_config(args.election)?,
    })
    .await?;
    Ok(0)
}

/// The leader-election settings, in-cluster unless a test gives `--kube-api-url`.
fn election_config(args: ElectionArgs) -> anyhow::Result<Option<crate::lease::LeaseConfig>> {
    if !args.leader_election {
        return Ok(None);
    }
    let api = match args.kube_api_url {
        Some(base_url) => crate::lease::api::ApiConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            token_file: args.kube_token_file,
            ca_file: None,
        },
        None => crate::lease::api::ApiConfig::in_cluster()?,
    };
    Ok(Some(crate::lease::LeaseConfig {
        namespace: args.lease_namespace.unwrap_or_default(),
        name: args.lease_name.unwrap_or_default(),
        identity: crate::lease::default_identity(),
        duration: args.lease_duration,
        api,
    }))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Sets up stderr logging: warnings by default for one-shot commands, info for the daemon,
/// and each `-v` one level more, so `run -v` shows each HTTP request as `plan -vv` does.
pub fn init_logging(verbose: u8, format: LogFormat, daemon: bool) {
    let level = log_level(verbose, daemon);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("roster={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::log_writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Roster's own log level: the command's default (warn for one-shot commands, whose
/// stdout is the result; info for the daemon, whose log is its output) raised by `-v`s.
fn log_level(verbose: u8, daemon: bool) -> &'static str {
    const LEVELS: [&str; 4] = ["warn", "info", "debug", "trace"];
    let default = usize::from(daemon);
    LEVELS[(default + usize::from(verbose)).min(LEVELS.len() - 1)]
}

/// Checks the folder (and that every `--provider` names one of its instances) and reports
/// in the chosen format. The exit code is the same in every format: 0 valid, 1 invalid.
fn validate(args: &ValidateArgs, log_format: LogFormat) -> anyhow::Result<u8> {
    let dir = &args.folder.dir;
    let (problems, summary) = match desired::load(dir, crate::provider::specs()) {
        Ok(state) => {
            let unknown = unknown_providers(&state, &args.folder.providers);
            if unknown.is_empty() {
                let summary = format!(
                    "{}: valid ({} provider instances, {} users, {} accounts)",
                    dir.display(),
                    state.instances.len(),
                    state.users.len(),
                    state.account_count()
                );
                match args.format {
                    ValidateFormat::Text => println!("{summary}"),
                    _ => {
                        print(&validate::render(&[], args.format)?)?;
                        eprintln!("{summary}");
                    }
                }
                return Ok(0);
            }
            // The folder is fine but the command line asks for an instance it lacks:
            // said like `plan` says it, and for tools as a problem of providers.yaml.
            let file = providers_file(&state, dir);
            let problems = unknown
                .iter()
                .map(|message| Problem {
                    location: Location {
                        file: file.as_str().into(),
                        ..Location::default()
                    },
                    message: message.clone(),
                })
                .collect();
            (problems, unknown.join("\n"))
        }
        Err(invalid) => {
            let summary = format!("{}: invalid ({})", dir.display(), invalid.count_text());
            if args.format == ValidateFormat::Text {
                for problem in &invalid.problems {
                    say_line(log_format, "", &problem.to_string());
                }
            }
            (invalid.problems, summary)
        }
    };
    if args.format != ValidateFormat::Text {
        print(&validate::render(&problems, args.format)?)?;
    }
    say(log_format, "error: ", &summary);
    Ok(1)
}

/// The path of the folder's `providers.yaml` as problems name it.
fn providers_file(state: &DesiredState, dir: &Path) -> String {
    state
        .instances
        .values()
        .next()
        .map(|instance| instance.location.file.to_string())
        .unwrap_or_else(|| dir.join("providers.yaml").display().to_string())
}

/// One message for each `--provider` name the folder does not define, with the closest
/// defined name when there is one: a misspelt name must fail, never select nothing.
fn unknown_providers(state: &DesiredState, names: &[String]) -> Vec<String> {
    let defined: Vec<&str> = state.instances.keys().map(String::as_str).collect();
    names
        .iter()
        .filter(|name| !state.instances.contains_key(name.as_str()))
        .map(|name| {
            let hint = closest(name, &defined)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            format!(
                "--provider {name}: no such instance in providers.yaml (defined: {}){hint}",
                defined.join(", ")
            )
        })
        .collect()
}

/// The defined name within a typo's reach of `word` (the loader's rule for keys).
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4) && *distance < c.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Loads the folder and connects the selected instances, failing early and clearly. The
/// instances report their requests to the returned progress display.
fn prepare(folder: &FolderArgs) -> anyhow::Result<(DesiredState, Providers, Arc<Progress>)> {
    let desired =
        desired::load(&folder.dir, crate::provider::specs()).map_err(|invalid| FolderRejected {
            dir: folder.dir.display().to_string(),
            count: invalid.count_text(),
            problems: invalid.problems,
        })?;
    let unknown = unknown_providers(&desired, &folder.providers);
    if !unknown.is_empty() {
        return Err(anyhow!(unknown.join("\n")));
    }
    let selected = reconcile::select(&desired, &folder.providers)?;
    let progress = Arc::new(Progress::for_stderr(
        selected.iter().map(|instance| instance.name.as_str()),
    ));
    let providers = reconcile::connect_all(&selected, progress.clone()).map_err(|errors| {
        anyhow!(errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    progress.note(&format!(
        "Reading {} provider instance(s) for {} accounts...",
        providers.len(),
        desired.account_count()
    ));
    Ok((desired, providers, progress))
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

async fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    if let Some(at) = args.at {
        eprintln!(
            "note: the folder's time bounds are evaluated at {} (--at), not now; live state is read now",
            crate::plan::format_utc(at)
        );
    }
    let (desired, providers, progress) = prepare(&args.folder)?;
    let time = PlanTime {
        at: args.at.unwrap_or_else(time::OffsetDateTime::now_utc),
        horizon: args.upcoming,
    };
    let plan = reconcile::plan_live(&desired, &providers, time).await;
    progress.finish();
    let options = ApplyOptions {
        max_changes: args.max_changes,
        ..ApplyOptions::default()
    };
    let guard = apply::guard_refusals(&plan, &desired, &options);
    print(&report::render_plan(&plan, &guard, args.format))?;
    Ok(if !plan.errors.is_empty() {
        1
    } else if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    })
}

/// `roster status`: reads through the same path as `plan` (no write access exists
/// here), only the accounts of the selected users, at the selected instances.
async fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let (folder, providers, progress) = prepare(&args.folder)?;
    let desired = crate::access::only_users(&folder, &args.users)?;
    // Every selected instance is listed with --unmanaged, even one no selected user has
    // an account at: its accounts may all be unmanaged.
    let listed = providers.clone();
    let observed: Providers = providers
        .into_iter()
        .filter(|(name, _)| {
            desired
                .users
                .iter()
                .any(|u| u.accounts.iter().any(|a| &a.instance == name))
        })
        .collect();
    let report = reconcile::status_live(
        &folder,
        &desired,
        &observed,
        args.unmanaged.then_some(&listed),
        time::OffsetDateTime::now_utc(),
        args.drift_only,
    )
    .await;
    progress.finish();
    print(&report::render_status(&report, args.format))?;
    if args.format == StatusFormat::Csv && !report.errors.is_empty() {
        eprint!("error: not read:\n{}", report::status_errors_text(&report));
    }
    if args.format == StatusFormat::Csv && !report.not_listed.is_empty() {
        eprint!("note: cannot list:\n{}", report::not_listed_text(&report));
    }
    Ok(report.exit_code())
}

async fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    let (desired, providers, progress) = prepare(&args.folder)?;
    // Every instance it may write, locked before the first read, so the plan it applies
    // cannot be overtaken by another Roster writing there; released at exit.
    let state_dir = crate::lock::state_dir(args.state_dir.as_deref())?;
    let _locks = crate::lock::lock_all(&state_dir, providers.keys(), "roster apply")?;
    let audit = args.audit_log.as_deref().map(AuditLog::open).transpose()?;
    let options = ApplyOptions {
        max_changes: args.max_changes,
        allow_mass_change: args.allow_mass_change,
        guard_held: false,
        git_commit: audit::git_commit(&args.folder.dir),
        stop: None,
        fence: None,
    };
    // Each instance is read, planned and written on its own: a slow one delays no other.
    let summary = reconcile::apply_live(
        &desired,
        &providers,
        PlanTime::now(),
        &options,
        audit.as_ref(),
    )
    .await;
    progress.finish();
    print(&report::render_apply(&summary, args.format))?;
    Ok(summary.exit_code() as u8)
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    use crate::simulator::{self, SimConfig, SimKind, SimUser};
    let kind = SimKind::parse(&args.kind).ok_or_else(|| {
        let names: Vec<&str> = SimKind::ALL.iter().map(|k| k.name()).collect();
        anyhow!(
            "--kind {}: unknown kind; use one of {}",
            args.kind,
            names.join(", ")
        )
    })?;
    let users = match &args.fixture {
        Some(path) => simulator::load_fixture(path)?,
        None => SimUser::generate(kind, args.users, args.seed),
    };
    let mut config = SimConfig::new(kind, users);
    config.token = args.token;
    config.page_size_max = args.page_size.max(1);
    if let Some(path) = &args.faults {
        config.faults = simulator::load_faults(path)?;
    }
    let token = if config.token == "sim-token" {
        "sim-token"
    } else {
        "set by --token"
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    drop(listener);
    eprintln!(
        "simulating {} with {} users on http://{addr} (token: {token}, tenant_id: {}, acronis client_id: {}, {} fault rules); Ctrl-C stops",
        kind.name(),
        config.users.len(),
        config.tenant_id,
        config.client_id,
        config.faults.rules.len()
    );
    tokio::select! {
        result = simulator::serve_forever(config, addr) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_adds_one_level_from_the_commands_default() {
        let cases = [
            (0, false, "warn"),
            (1, false, "info"),
            (2, false, "debug"),
            (3, false, "trace"),
            (0, true, "info"),
            (1, true, "debug"),
            (2, true, "trace"),
            (9, true, "trace"),
        ];
        for (verbose, daemon, level) in cases {
            assert_eq!(
                log_level(verbose, daemon),
                level,
                "-v x{verbose}, daemon {daemon}"
            );
        }
    }

    #[test]
    fn said_lines_carry_no_terminal_control() {
        let message = "bad file \u{1b}[2Jevil.yaml\rforged\nsecond \u{202e}line";
        let text = say_lines(LogFormat::Text, "error: ", message);
        assert_eq!(
            text,
            [
                r"error: bad file \u{1b}[2Jevil.yaml\rforged",
                r"second \u{202e}line"
            ]
        );
        let json = say_lines(LogFormat::Json, "error: ", message);
        assert_eq!(json.len(), 2);
        for line in &json {
            assert!(
                !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{line:?}"
            );
        }
        let first: serde_json::Value = serde_json::from_str(&json[0]).expect("json");
        assert_eq!(first["message"], "bad file \u{1b}[2Jevil.yaml\rforged");
    }

    #[test]
    fn a_lease_duration_is_whole_seconds_and_at_least_three() {
        assert_eq!(parse_lease_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_lease_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_lease_duration("1500ms")
            .unwrap_err()
            .contains("whole"));
        assert!(parse_lease_duration("2s")
            .unwrap_err()
            .contains("at least 3s"));
        assert!(parse_lease_duration("soon").is_err());
    }

    #[test]
    fn unknown_provider_names_the_closest_instance_only_when_close() {
        let names = ["helpdesk", "portal", "atlan"];
        assert_eq!(closest("helpdsk", &names), Some("helpdesk"));
        assert_eq!(closest("portl", &names), Some("portal"));
        assert_eq!(closest("nosuch", &names), None);
        assert_eq!(closest("a", &names), None);
    }
}
