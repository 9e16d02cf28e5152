//! `roster demo`: the embedded default. Starts a simulator for every provider kind on
//! loopback, points the example folder at them, then plans, applies and plans again,
//! through exactly the code paths `plan` and `apply` use. No configuration, no secrets.

use crate::apply::{self, ApplyOptions};
use crate::desired::{self, DesiredState};
use crate::escape;
use crate::plan::PlanTime;
use crate::provider::http::NoObserver;
use crate::reconcile;
use crate::report;
use crate::simulator::{
    FaultAction, FaultRule, FaultTarget, Faults, SimConfig, SimKind, SimUser, Simulator,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The example folder, embedded so the demo runs from anywhere.
const EXAMPLE: &[(&str, &str)] = &[
    (
        "providers.yaml",
        include_str!("../desired-state/providers.yaml"),
    ),
    (
        "teams/engineering.yaml",
        include_str!("../desired-state/teams/engineering.yaml"),
    ),
    (
        "teams/sales.yaml",
        include_str!("../desired-state/teams/sales.yaml"),
    ),
    (
        "teams/operations.yaml",
        include_str!("../desired-state/teams/operations.yaml"),
    ),
    (
        "leavers.yaml",
        include_str!("../desired-state/leavers.yaml"),
    ),
    (
        "contractors.yaml",
        include_str!("../desired-state/contractors.yaml"),
    ),
];

/// The SCIM instance the demo adds to the example folder (a Slack workspace, reached
/// through its SCIM API), and the file of its two people, whose accounts are named by
/// `userName` as people usually know them.
const SCIM_INSTANCE: &str = "
  slack:
    kind: scim
    base_url: https://api.slack.com/scim/v2
    auth: { bearer_token_env: SLACK_SCIM_TOKEN }
";
const SCIM_PEOPLE: (&str, &str) = (
    "teams/design.yaml",
    "users:
  - name: noor.haddad
    status: active
    accounts: { slack: noor.haddad@acme.example }
  - name: omar.rahman
    status: inactive
    reason: \"Left 2026-11-24 (HR-4431)\"
    accounts: { slack: omar.rahman@acme.example }
",
);

/// The live state the simulators start in, where it differs from the folder:
/// (instance, account id, live status, privileged).
const LIVE: &[(&str, &str, &str, bool)] = &[
    ("zitadel", "69629012906488102", "inactive", false),
    (
        "portal",
        "7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f",
        "inactive",
        false,
    ),
    ("helpdesk", "bruno", "onboarding", false),
    (
        "atlan",
        "8e9f0a1b-2c3d-4e5f-a6b7-c8d9e0f1a2b3",
        "active",
        true,
    ),
    ("helpdesk", "farid", "inactive", false),
    (
        "portal",
        "3f4a5b6c-7d8e-4f9a-0b1c-2d3e4f5a6b7c",
        "inactive",
        false,
    ),
    (
        "portal",
        "0a1b2c3d-4e5f-4a6b-7c8d-9e0f1a2b3c4d",
        "active",
        true,
    ),
    ("helpdesk", "ines", "active", false),
    (
        "atlan",
        "02aaddf5-b9be-4433-9bfa-4a7d9a7ae4f5",
        "active",
        false,
    ),
    ("zitadel", "69629012906488334", "active", false),
    (
        "acronis",
        "5e6f7a8b-9c0d-4e1f-2a3b-4c5d6e7f8a9b",
        "active",
        false,
    ),
    ("helpdesk", "jsmith", "active", false),
    (
        "portal",
        "6b7c8d9e-0f1a-4b2c-3d4e-5f6a7b8c9d0e",
        "active",
        false,
    ),
    (
        "atlan",
        "7d8e9f0a-1b2c-4d3e-4f5a-6b7c8d9e0f1a",
        "active",
        true,
    ),
    (
        "acronis",
        "8f9a0b1c-2d3e-4f4a-5b6c-7d8e9f0a1b2c",
        "active",
        false,
    ),
    ("helpdesk", "mara", "active", false),
    ("slack", "omar.rahman@acme.example", "active", false),
    (
        "portal",
        "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "active",
        false,
    ),
];

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo: the embedded example folder is invalid:\n{0}")]
    Invalid(#[from] desired::InvalidFolder),
    #[error("demo: {0}")]
    Setup(String),
}

/// The example user who becomes a scheduled leaver: their file, and the lines after
/// which the demo adds an `until` a few days after the demo's "now".
const SCHEDULED_LEAVER: (&str, &str) = (
    "teams/sales.yaml",
    "  - name: grace.obi\n    status: active\n",
);

/// Three days after `now`, on the hour: the last day of the demo's scheduled leaver.
fn leaving_day(now: time::OffsetDateTime) -> time::OffsetDateTime {
    let day = now + time::Duration::days(3);
    day.replace_time(time::Time::from_hms(day.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

/// A file of the example folder as the demo writes it: the scheduled leaver's file gets
/// an `until`, so the plan shows an upcoming section.
fn example_text(name: &str, text: &str, until: time::OffsetDateTime) -> Result<String, DemoError> {
    let (file, anchor) = SCHEDULED_LEAVER;
    if name != file {
        return Ok(text.to_string());
    }
    if !text.contains(anchor) {
        return Err(DemoError::Setup(format!(
            "{file} no longer holds the scheduled leaver grace.obi"
        )));
    }
    Ok(text.replacen(
        anchor,
        &format!(
            "{anchor}    until: {}   # a scheduled leaver: inactive from then on\n    reason: \"Last day (HR-5190)\"\n",
            crate::plan::format_utc(until)
        ),
        1,
    ))
}

/// Runs the demo and returns what it printed.
pub async fn run() -> Result<String, DemoError> {
    let workdir = tempfile::tempdir()?;
    let folder = workdir.path().join("desired-state");
    let until = leaving_day(time::OffsetDateTime::now_utc());
    for (name, text) in EXAMPLE {
        let path = folder.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, example_text(name, text, until)?)?;
    }
    let providers = folder.join("providers.yaml");
    let mut text = std::fs::read_to_string(&providers)?;
    text.push_str(SCIM_INSTANCE);
    std::fs::write(&providers, text)?;
    std::fs::write(folder.join(SCIM_PEOPLE.0), SCIM_PEOPLE.1)?;
    let example = desired::load(&folder, crate::provider::specs())?;
    let simulators = start_simulators(&example).await?;
    write_providers(&folder, workdir.path(), &example, &simulators)?;
    let desired = desired::load(&folder, crate::provider::specs())?;
    let instances: Vec<_> = desired.instances.values().collect();
    let providers = reconcile::connect_all(&instances, Arc::new(NoObserver)).map_err(|errors| {
        DemoError::Setup(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Roster demo: {} people, {} accounts at {} provider instances ({} simulators on loopback).\n",
        desired.users.len(),
        desired.account_count(),
        desired.instances.len(),
        simulators.len()
    );
    let width = simulators
        .keys()
        .map(|n| escape::width(n))
        .max()
        .unwrap_or(0);
    for (name, sim) in &simulators {
        let pad = width.saturating_sub(escape::width(name));
        let name = escape::text(name);
        let _ = writeln!(
            out,
            "  {name}{:pad$}  {:<12} {}",
            "",
            sim.kind().name(),
            sim.base_url()
        );
    }

    let options = ApplyOptions::default();
    let plan = reconcile::plan_live(&desired, &providers, PlanTime::now()).await;
    let _ = writeln!(out, "\n== 1. roster plan: what a merge would change ==\n");
    out.push_str(&report::plan_text(
        &plan,
        &apply::guard_refusals(&plan, &desired, &options),
    ));
    if !plan.upcoming.is_empty() {
        out.push_str(
            "\nUpcoming entries come from time bounds in the folder (grace.obi has an `until`):\n\
             nothing is due yet; `roster run` makes each change at its time.\n",
        );
    }
    if !plan.blocked.is_empty() {
        out.push_str(
            "\nBlocked entries are changes the provider is known to refuse (an Atlan workspace admin\n\
             cannot be deactivated until someone removes the admin role). Roster makes no call for them.\n",
        );
    }

    out.push_str(
        "\nslack is a SCIM 2.0 service provider (the kind that covers Slack, GitHub Enterprise and every\n\
         app Entra ID or Okta provisions): its accounts are named by userName, read in the pages of\n\
         two the server grants, and written by id with PATCH /Users/{id}.\n",
    );

    let _ = writeln!(out, "\n== 2. roster apply: one reconcile pass ==\n");
    let summary = apply::apply(&plan, &desired, &providers, &options, None).await;
    out.push_str(&report::apply_text(&summary));
    if summary.count(apply::Outcome::AlreadyConverged) > 0 {
        out.push_str(
            "\n'already_converged' means someone changed that ZITADEL account between Roster's read and\n\
             its write: ZITADEL refused the now-pointless call, Roster re-read the user, saw the desired\n\
             state and counted it as done instead of failed.\n",
        );
    }

    let writes: usize = simulators.values().map(|s| s.write_count()).sum();
    let again = reconcile::plan_live(&desired, &providers, PlanTime::now()).await;
    let _ = writeln!(out, "\n== 3. roster plan again: converged ==\n");
    out.push_str(&report::plan_text(&again, &[]));
    let _ = writeln!(
        out,
        "\nThe simulators received {writes} write calls in all; the second plan made none."
    );

    let _ = writeln!(
        out,
        "\n== 4. roster status --drift-only --unmanaged: who has access the folder does not say ==\n"
    );
    let status = reconcile::status_live(
        &desired,
        &desired,
        &providers,
        Some(&providers),
        time::OffsetDateTime::now_utc(),
        true,
    )
    .await;
    out.push_str(&report::render_status(&status, report::StatusFormat::Text));
    out.push_str(
        "\nDrift left after apply is what the providers refuse (see Blocked above); unmanaged\n\
         accounts are held at a provider but claimed by no file: declare them, or offboard them.\n\
         Try it on your own folder: roster validate, roster plan, roster apply, roster status\n\
         (see README.md).\n",
    );
    for (_, sim) in simulators {
        sim.shutdown().await;
    }
    Ok(out)
}

/// One simulator per instance, holding the folder's accounts in their demo live state,
/// plus a few accounts in no file, which Roster must leave alone.
async fn start_simulators(
    desired: &DesiredState,
) -> Result<BTreeMap<String, Simulator>, DemoError> {
    let mut simulators = BTreeMap::new();
    for (name, instance) in &desired.instances {
        let kind = SimKind::parse(instance.kind.name).ok_or_else(|| {
            DemoError::Setup(format!("no simulator for kind {}", instance.kind.name))
        })?;
        let mut users: Vec<SimUser> = desired
            .users
            .iter()
            .flat_map(|u| u.accounts.iter().map(move |a| (u, a)))
            .filter(|(_, a)| &a.instance == name)
            .enumerate()
            .map(|(n, (user, account))| {
                let live = LIVE
                    .iter()
                    .find(|(i, id, _, _)| i == name && *id == account.id);
                // A SCIM server gives every account an id; the folder names them by
                // userName.
                let (id, user_name) = if kind == SimKind::Scim {
                    let id = format!("9d1c5e2f-4a3b-4c7d-8e9f-{n:012x}");
                    (id, account.id.clone())
                } else {
                    (account.id.clone(), user.name.clone())
                };
                SimUser {
                    id,
                    name: user_name,
                    status: live
                        .map(|l| l.2.to_string())
                        .unwrap_or_else(|| account.status.to_string()),
                    privileged: live.is_some_and(|l| l.3),
                    version: 1,
                }
            })
            .collect();
        users.extend(SimUser::generate(kind, 3, 7));
        let mut config = SimConfig::new(kind, users);
        config.token = format!("demo-{name}-secret");
        if let Some(tenant) = instance.setting("tenant_id") {
            config.tenant_id = tenant.to_string();
        }
        config.organization_id = instance.setting("organization_id").map(String::from);
        if kind == SimKind::Scim {
            // Pages of two: the SCIM server caps what Roster asks for.
            config.page_size_max = 2;
        }
        if kind == SimKind::Zitadel {
            config.faults = Faults {
                rules: vec![FaultRule {
                    target: FaultTarget::Writes,
                    times: 1,
                    action: FaultAction::ConcurrentChange,
                }],
                ..Faults::default()
            };
        }
        simulators.insert(name.clone(), Simulator::start(config).await?);
    }
    Ok(simulators)
}

/// Rewrites `providers.yaml` to point every instance at its simulator, with secrets in files.
fn write_providers(
    folder: &Path,
    workdir: &Path,
    desired: &DesiredState,
    simulators: &BTreeMap<String, Simulator>,
) -> Result<(), DemoError> {
    let mut yaml = String::from("providers:\n");
    for (name, instance) in &desired.instances {
        let sim = &simulators[name];
        let secret = workdir.join(format!("{name}.secret"));
        std::fs::write(&secret, format!("demo-{name}-secret"))?;
        let _ = writeln!(
            yaml,
            "  {name}:\n    kind: {}\n    base_url: {}",
            instance.kind.name,
            sim.base_url()
        );
        for (key, value) in &instance.settings {
            let _ = writeln!(yaml, "    {key}: \"{value}\"");
        }
        if instance.kind.auth == crate::model::AuthStyle::ClientCredentials {
            let id = workdir.join(format!("{name}.client-id"));
            std::fs::write(&id, "roster-client")?;
            let _ = writeln!(
                yaml,
                "    auth:\n      client_id_file: {}\n      client_secret_file: {}",
                id.display(),
                secret.display()
            );
        } else {
            let _ = writeln!(
                yaml,
                "    auth:\n      bearer_token_file: {}",
                secret.display()
            );
        }
    }
    std::fs::write(folder.join("providers.yaml"), yaml)?;
    Ok(())
}
