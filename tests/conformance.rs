//! The conformance suite every provider kind must pass against its simulator, run with the
//! real binary on loopback. Each property is one function taking the kind; the
//! `for_each_kind!` macro turns it into one test per kind (`plan_makes_no_write::acronis`),
//! so a failure names the kind. Per-kind expectations (the exact write call, the headers
//! every request carries, the id shape) live in one table, [`KindCase`]. The kind quirks
//! follow as plain tests at the end.

mod common;

use common::{assert_no_secrets, token_var, user, Run, World};
use roster::simulator::{
    FaultAction, FaultRule, FaultTarget, RecordedRequest, SimConfig, SimKind, SimUser, Simulator,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The per-kind table.

/// The `X-Tenant-ID` the suspend-api instances are configured with.
const TENANT: &str = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0";
/// The ZITADEL organization context the zitadel instances are configured with.
const ORG: &str = "69629023906488334";
/// A non-default status-api version, so the test proves it comes from `providers.yaml`.
const API_VERSION: &str = "v2";
/// The list page (or, for acronis, `uuids=` batch) size of every kind's adapter.
const PAGE: usize = 100;

/// What conformance means for one kind.
struct KindCase {
    kind: SimKind,
    /// The write's HTTP method.
    method: &'static str,
    /// The write's path for an already percent-encoded id, moving to active (`true`) or not.
    path: fn(&str, bool) -> String,
    /// The write's exact JSON body for the target status, the user's reason and the
    /// revision that was read (acronis `version`).
    body: fn(&str, Option<&str>, u64) -> Value,
    /// Headers every API request carries, beyond `Authorization` and `Accept`.
    headers: &'static [(&'static str, &'static str)],
    /// A query parameter every API request carries.
    query: Option<(&'static str, &'static str)>,
    /// The `Accept` header every request carries.
    accept: &'static str,
    /// The `Content-Type` of a request with a body.
    content_type: &'static str,
    /// The `i`th account id in this API's shape.
    id: fn(usize) -> String,
}

fn uuid(i: usize) -> String {
    format!("0c1d2e3f-4a5b-4c6d-8e7f-{i:012x}")
}

const CASES: [KindCase; 6] = [
    KindCase {
        kind: SimKind::Atlan,
        method: "POST",
        path: |id, _| format!("/api/service/users/{id}"),
        body: |to, _, _| json!({ "enabled": to == "active" }),
        headers: &[],
        query: None,
        accept: "application/json",
        content_type: "application/json",
        id: uuid,
    },
    KindCase {
        kind: SimKind::Zitadel,
        method: "POST",
        path: |id, active| {
            let action = if active { "_activate" } else { "_deactivate" };
            format!("/resources/v3alpha/users/{id}/{action}")
        },
        body: |_, _, _| json!({}),
        headers: &[],
        query: Some(("organization.orgId", ORG)),
        accept: "application/json",
        content_type: "application/json",
        id: |i| (269_629_012_906_488_334_u64 + i as u64).to_string(),
    },
    KindCase {
        kind: SimKind::Acronis,
        method: "PUT",
        path: |id, _| format!("/api/2/users/{id}"),
        body: |to, _, version| json!({ "enabled": to == "active", "version": version }),
        headers: &[],
        query: None,
        accept: "application/json",
        content_type: "application/json",
        id: uuid,
    },
    KindCase {
        kind: SimKind::StatusApi,
        method: "PATCH",
        path: |id, _| format!("/users/{id}"),
        body: |to, reason, _| match reason {
            Some(reason) => json!({ "status": to, "review_comment": reason }),
            None => json!({ "status": to }),
        },
        headers: &[("x-api-version", API_VERSION)],
        query: None,
        accept: "application/json",
        content_type: "application/json",
        id: uuid,
    },
    KindCase {
        kind: SimKind::SuspendApi,
        method: "POST",
        path: |id, _| format!("/v1/users/{id}/suspend"),
        body: |to, _, _| json!({ "active": to == "active" }),
        headers: &[("x-tenant-id", TENANT)],
        query: None,
        accept: "application/json",
        content_type: "application/json",
        id: uuid,
    },
    KindCase {
        kind: SimKind::Scim,
        method: "PATCH",
        path: |id, _| format!("/Users/{id}"),
        body: |to, _, _| {
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": to == "active"}],
            })
        },
        headers: &[],
        query: None,
        accept: "application/scim+json, application/json",
        content_type: "application/scim+json",
        id: uuid,
    },
];

fn case(kind: SimKind) -> &'static KindCase {
    CASES
        .iter()
        .find(|c| c.kind == kind)
        .expect("every kind has a case")
}

impl KindCase {
    /// The instance name used for this kind in `providers.yaml`.
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// A simulator configuration with every setting the table's headers and query expect.
    fn config(&self, users: Vec<SimUser>) -> SimConfig {
        let mut config = SimConfig::new(self.kind, users);
        config.tenant_id = TENANT.to_string();
        config.api_version = API_VERSION.to_string();
        if self.kind == SimKind::Zitadel {
            config.organization_id = Some(ORG.to_string());
        }
        config
    }

    /// The exact write for account `id` (raw) moving to `to`.
    fn write(
        &self,
        id: &str,
        to: &str,
        reason: Option<&str>,
        version: u64,
    ) -> (String, String, Value) {
        (
            self.method.to_string(),
            (self.path)(&encode(id), to == "active"),
            (self.body)(to, reason, version),
        )
    }

    /// Asserts what every API request of this kind carries.
    fn assert_conformant(&self, r: &RecordedRequest) {
        let what = format!("{}: {} {}", self.name(), r.method, r.path);
        let header = |name: &str| r.headers.get(name).map(String::as_str);
        assert_eq!(header("authorization"), Some("Bearer ***"), "{what}");
        assert_eq!(header("accept"), Some(self.accept), "{what}");
        assert!(
            header("user-agent").is_some_and(|ua| ua.starts_with("roster/")),
            "{what}"
        );
        if r.body.is_some() {
            assert_eq!(header("content-type"), Some(self.content_type), "{what}");
        }
        for (name, value) in self.headers {
            assert_eq!(header(name), Some(*value), "{what}: header {name}");
        }
        if let Some((key, value)) = self.query {
            let query = r.query.as_deref().unwrap_or("");
            let found =
                url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && v == value);
            assert!(found, "{what}: query {query:?} lacks {key}={value}");
        }
    }
}

/// A path segment as the adapters must encode it (what the `url` crate produces).
fn encode(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '/' => "%2F".to_string(),
            '?' => "%3F".to_string(),
            '#' => "%23".to_string(),
            '%' => "%25".to_string(),
            ' ' => "%20".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Generates one `#[tokio::test]` per kind for each property function `fn(SimKind)`.
macro_rules! for_each_kind {
    ($($property:ident),* $(,)?) => {$(
        mod $property {
            use roster::simulator::SimKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn atlan() {
                super::$property(SimKind::Atlan).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn zitadel() {
                super::$property(SimKind::Zitadel).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acronis() {
                super::$property(SimKind::Acronis).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn status_api() {
                super::$property(SimKind::StatusApi).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn suspend_api() {
                super::$property(SimKind::SuspendApi).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scim() {
                super::$property(SimKind::Scim).await
            }
        }
    )*};
}

for_each_kind!(
    plan_makes_no_write,
    apply_makes_exactly_the_needed_writes_then_none,
    reads_are_batched,
    an_exactly_full_last_page_costs_no_extra_read,
    an_unknown_account_is_an_error_entry,
    rejected_credentials_are_a_clear_error,
    retry_after_on_429_is_honoured,
    a_503_read_and_a_dropped_write_are_retried,
    ids_needing_percent_encoding_stay_one_path_segment,
    writes_never_exceed_max_concurrency,
);

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// One account in the desired state: its id, the status wanted, the user's reason.
struct Want {
    id: String,
    status: &'static str,
    reason: Option<&'static str>,
}

fn want(id: impl Into<String>, status: &'static str) -> Want {
    Want {
        id: id.into(),
        status,
        reason: None,
    }
}

/// A user file with one user `u<i>` per account, all at `instance`.
fn users_file(instance: &str, accounts: &[Want]) -> String {
    let mut text = String::from("users:\n");
    for (i, account) in accounts.iter().enumerate() {
        text.push_str(&format!("  - name: u{i}\n    status: {}\n", account.status));
        if let Some(reason) = account.reason {
            text.push_str(&format!("    reason: {reason:?}\n"));
        }
        text.push_str(&format!(
            "    accounts: {{ {instance}: {:?} }}\n",
            account.id
        ));
    }
    text
}

/// A world with one instance of `kind` (named after the kind) holding `users`, after
/// `tweak` adjusted its simulator, and a desired state asking for `accounts`.
async fn world(
    kind: SimKind,
    users: Vec<SimUser>,
    tweak: impl FnOnce(&mut SimConfig),
    extra: &str,
    accounts: &[Want],
) -> World {
    let case = case(kind);
    let mut config = case.config(users);
    tweak(&mut config);
    let mut world = World::new();
    world.add(case.name(), config, extra).await;
    world.write("people.yaml", &users_file(case.name(), accounts));
    world
}

fn sim(world: &World, kind: SimKind) -> &Simulator {
    &world.sims[kind.name()]
}

/// API requests, without the acronis token requests.
fn api_requests(sim: &Simulator) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/idp/token"))
        .collect()
}

/// API reads (lists, searches, batch and single reads).
fn reads(sim: &Simulator) -> Vec<RecordedRequest> {
    api_requests(sim)
        .into_iter()
        .filter(|r| !r.is_write)
        .collect()
}

/// The writes as (method, path, body), sorted by path.
fn write_calls(sim: &Simulator) -> Vec<(String, String, Value)> {
    let mut calls: Vec<_> = sim
        .writes()
        .into_iter()
        .map(|w| (w.method, w.path, w.body.unwrap_or(Value::Null)))
        .collect();
    calls.sort_by(|a, b| a.1.cmp(&b.1));
    calls
}

async fn plan(world: &World) -> (Run, Value) {
    let run = world
        .roster(&["plan", "--format", "json", "desired-state"])
        .await;
    let json = run.json();
    (run, json)
}

async fn apply(world: &World) -> (Run, Value) {
    let run = world
        .roster(&["apply", "--format", "json", "desired-state"])
        .await;
    let json = run.json();
    (run, json)
}

fn status_of(world: &World, kind: SimKind, id: &str) -> Option<String> {
    sim(world, kind).user(id).map(|u| u.status)
}

fn outcomes(report: &Value) -> Vec<String> {
    let mut outcomes: Vec<String> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("?").to_string())
        .collect();
    outcomes.sort();
    outcomes
}

// ---------------------------------------------------------------------------------------------
// Properties every kind must have.

/// `plan` reads, reports the drift, and sends no write request at all.
async fn plan_makes_no_write(kind: SimKind) {
    let c = case(kind);
    let (a, b, s) = ((c.id)(1), (c.id)(2), (c.id)(3));
    let users = vec![user(&a, "active"), user(&b, "inactive"), user(&s, "active")];
    let accounts = [want(&a, "inactive"), want(&b, "active"), want(&s, "active")];
    let world = world(kind, users, |_| {}, "", &accounts).await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    let name = c.name();
    assert_eq!(
        plan["changes"],
        json!([
            {"provider": name, "user": "u0", "account_id": a, "from": "active", "to": "inactive"},
            {"provider": name, "user": "u1", "account_id": b, "from": "inactive", "to": "active"},
        ])
    );
    assert_eq!(plan["in_sync"], 1);
    let detailed = world
        .roster(&["plan", "--detailed-exitcode", "desired-state"])
        .await;
    assert_eq!(detailed.code, 2, "{detailed:?}");

    let sim = sim(&world, kind);
    assert!(!sim.requests().is_empty());
    assert_eq!(sim.write_count(), 0, "{:?}", sim.writes());
    assert!(sim.requests().iter().all(|r| !r.is_write));
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("active"));
}

/// `apply` makes one write per drifting account, with the exact method, path, body and
/// headers; a second `apply` right after makes none.
async fn apply_makes_exactly_the_needed_writes_then_none(kind: SimKind) {
    let c = case(kind);
    let (a, b, s) = ((c.id)(1), (c.id)(2), (c.id)(3));
    let users = vec![user(&a, "active"), user(&b, "inactive"), user(&s, "active")];
    let reason = "Left the company (HR-4411)";
    let accounts = [
        Want {
            reason: Some(reason),
            ..want(&a, "inactive")
        },
        want(&b, "active"),
        want(&s, "active"),
    ];
    let world = world(kind, users, |_| {}, "", &accounts).await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied", "applied"], "{report}");
    let sim = sim(&world, kind);
    let mut expected = vec![
        c.write(&a, "inactive", Some(reason), 1),
        c.write(&b, "active", None, 1),
    ];
    expected.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(write_calls(sim), expected);
    for w in sim.writes() {
        assert_eq!(w.status, 200, "{w:?}");
    }
    for r in api_requests(sim) {
        c.assert_conformant(&r);
    }
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("inactive"));
    assert_eq!(status_of(&world, kind, &b).as_deref(), Some("active"));

    let (again, report) = apply(&world).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(report["results"], json!([]));
    assert_eq!(report["in_sync"], 3);
    assert_eq!(
        sim.write_count(),
        2,
        "a second apply makes no write: {:?}",
        sim.writes()
    );
    // The simulator's request log (served at /_sim/requests) masks the credentials.
    assert_no_secrets(&world, &format!("{:?}", sim.requests()));
}

/// Reading N accounts costs at most ceil(N / page) + 1 read requests.
async fn reads_are_batched(kind: SimKind) {
    assert_read_count(kind, 250, 3).await;
}

/// 200 accounts at 100 a page is exactly two reads: no extra call for an empty page.
async fn an_exactly_full_last_page_costs_no_extra_read(kind: SimKind) {
    assert_read_count(kind, 2 * PAGE, 2).await;
}

/// Plans `n` accounts (all in sync, the provider holding exactly those) and checks the
/// read requests: at most ceil(n / page) + 1, and exactly `expected` for these adapters.
async fn assert_read_count(kind: SimKind, n: usize, expected: usize) {
    let c = case(kind);
    let ids: Vec<String> = (0..n).map(c.id).collect();
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids.iter().map(|id| want(id, "active")).collect();
    let world = world(kind, users, |_| {}, "", &accounts).await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(plan["in_sync"], n);
    assert_eq!(plan["changes"], json!([]));
    let reads = reads(sim(&world, kind));
    let bound = n.div_ceil(PAGE) + 1;
    assert!(
        reads.len() <= bound,
        "{} reads for {n} accounts, more than {bound}",
        reads.len()
    );
    assert_eq!(
        reads.len(),
        expected,
        "{:?}",
        reads
            .iter()
            .map(|r| (&r.path, &r.query))
            .collect::<Vec<_>>()
    );
    assert!(reads.iter().all(|r| r.status == 200));
}

/// An account the provider does not know is an error entry naming it, never a change.
async fn an_unknown_account_is_an_error_entry(kind: SimKind) {
    let c = case(kind);
    let (known, ghost) = ((c.id)(1), (c.id)(999));
    let accounts = [want(&known, "active"), want(&ghost, "inactive")];
    let world = world(kind, vec![user(&known, "active")], |_| {}, "", &accounts).await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        plan["errors"],
        json!([{"provider": c.name(), "user": "u1", "account_id": ghost, "message": "account not found at the provider (404)"}])
    );
    assert_eq!(plan["changes"], json!([]));
    assert_eq!(plan["in_sync"], 1);

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(report["results"], json!([]));
    assert_eq!(sim(&world, kind).write_count(), 0);
}

/// A wrong token (acronis: client secret) is one instance error saying "credentials
/// rejected", without retry storms and without echoing the secret.
async fn rejected_credentials_are_a_clear_error(kind: SimKind) {
    let c = case(kind);
    let a = (c.id)(1);
    let mut world = world(
        kind,
        vec![user(&a, "active")],
        |_| {},
        "",
        &[want(&a, "inactive")],
    )
    .await;
    world.set_env(&token_var(c.name()), Some("tok-WRONG-31337"));

    let (planned, plan) = plan(&world).await;
    assert_eq!(planned.code, 1, "{planned:?}");
    let errors = plan["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{plan}");
    assert_eq!(errors[0]["provider"], c.name());
    assert!(
        errors[0].get("user").is_none(),
        "an instance error, not an account error: {plan}"
    );
    let message = errors[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("credentials rejected"), "{message}");
    assert!(
        !message.starts_with(c.name()),
        "the entry names the provider; its message must not repeat it: {message}"
    );

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(report["results"], json!([]));
    let sim = sim(&world, kind);
    assert_eq!(sim.write_count(), 0);
    let requests = sim.requests();
    assert_eq!(
        requests.len(),
        2,
        "one rejected request per command, no retry: {requests:?}"
    );
    assert!(requests.iter().all(|r| r.status == 401), "{requests:?}");
    if kind == SimKind::Acronis {
        assert_eq!(
            sim.token_requests(),
            2,
            "the token endpoint rejects the client"
        );
    }
    for run in [&planned, &run] {
        assert!(
            !run.stdout.contains("WRONG") && !run.stderr.contains("WRONG"),
            "{run:?}"
        );
    }
    assert_no_secrets(&world, &format!("{requests:?}"));

    let text = world.roster(&["plan", "desired-state"]).await;
    let lines: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with("  x "))
        .collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    assert_eq!(
        lines[0].matches(c.name()).count(),
        1,
        "the error line names the instance exactly once: {:?}",
        lines[0]
    );
    assert!(lines[0].contains("credentials rejected"), "{:?}", lines[0]);
}

/// A 429 with `Retry-After: 1`, once on a read and once on a write, is waited out and
/// retried: the pass converges and takes at least the two seconds asked for.
async fn retry_after_on_429_is_honoured(kind: SimKind) {
    let c = case(kind);
    let (a, s) = ((c.id)(1), (c.id)(2));
    let users = vec![user(&a, "active"), user(&s, "active")];
    let rate_limited = |target| FaultRule {
        target,
        times: 1,
        action: FaultAction::Status {
            code: 429,
            retry_after: Some("1".to_string()),
        },
    };
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![
            rate_limited(FaultTarget::Reads),
            rate_limited(FaultTarget::Writes),
        ];
    };
    let world = world(
        kind,
        users,
        tweak,
        "",
        &[want(&a, "inactive"), want(&s, "active")],
    )
    .await;

    let started = Instant::now();
    let (run, report) = apply(&world).await;
    let elapsed = started.elapsed();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"], "{report}");
    assert!(
        elapsed >= Duration::from_millis(1950),
        "Retry-After was not waited out: {elapsed:?}"
    );
    let sim = sim(&world, kind);
    let read_statuses: Vec<u16> = reads(sim).iter().map(|r| r.status).collect();
    assert_eq!(read_statuses, [429, 200], "the 429 then its retry");
    let writes = sim.writes();
    assert_eq!(
        writes.iter().map(|w| w.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert_eq!(
        (&writes[0].path, &writes[0].body),
        (&writes[1].path, &writes[1].body),
        "the same write is retried"
    );
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("inactive"));
}

/// A 503 without `Retry-After` on a read and a connection dropped before a write is
/// answered are retried with backoff, and the pass converges.
async fn a_503_read_and_a_dropped_write_are_retried(kind: SimKind) {
    let c = case(kind);
    let a = (c.id)(1);
    let unavailable = FaultAction::Status {
        code: 503,
        retry_after: None,
    };
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![
            fault(FaultTarget::Reads, 1, unavailable),
            fault(FaultTarget::Writes, 1, FaultAction::Drop),
        ];
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"], "{report}");
    let sim = sim(&world, kind);
    assert_eq!(
        reads(sim).iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 200]
    );
    assert_eq!(
        sim.writes().iter().map(|w| w.status).collect::<Vec<_>>(),
        [0, 200],
        "dropped, then retried"
    );
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("inactive"));
}

/// Ids with `/`, `..`, `?`, `%`, `#` and spaces are one percent-encoded path segment.
async fn ids_needing_percent_encoding_stay_one_path_segment(kind: SimKind) {
    let ids = ["a/b", "../admin", "x?y", "100%", "sp ace#1"];
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids.iter().map(|id| want(*id, "inactive")).collect();
    let world = world(kind, users, |_| {}, "", &accounts).await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"; 5], "{report}");
    let c = case(kind);
    let mut expected: Vec<_> = ids
        .iter()
        .map(|id| c.write(id, "inactive", None, 1))
        .collect();
    expected.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(write_calls(sim(&world, kind)), expected);
    for id in ids {
        assert_eq!(
            status_of(&world, kind, id).as_deref(),
            Some("inactive"),
            "{id}"
        );
    }
}

/// With `max_concurrency: 2` and slow answers, at most two writes are ever in flight.
async fn writes_never_exceed_max_concurrency(kind: SimKind) {
    let c = case(kind);
    let ids: Vec<String> = (0..10).map(c.id).collect();
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids.iter().map(|id| want(id, "inactive")).collect();
    let tweak = |config: &mut SimConfig| config.faults.latency = Duration::from_millis(100);
    let world = world(kind, users, tweak, "    max_concurrency: 2\n", &accounts).await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"; 10], "{report}");
    let sim = sim(&world, kind);
    assert_eq!(sim.write_count(), 10);
    let max = sim.max_in_flight_writes();
    assert!((1..=2).contains(&max), "{max} writes in flight at once");
}

// ---------------------------------------------------------------------------------------------
// Kind quirks.

fn privileged(id: &str, status: &str) -> SimUser {
    SimUser {
        privileged: true,
        ..user(id, status)
    }
}

fn fault(target: FaultTarget, times: u32, action: FaultAction) -> FaultRule {
    FaultRule {
        target,
        times,
        action,
    }
}

/// Atlan: deactivating a `$admin` is blocked in the plan and never attempted; re-enabling
/// a disabled admin is an ordinary change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atlan_admin_deactivation_is_blocked_in_the_plan() {
    let kind = SimKind::Atlan;
    let (admin, former) = (uuid(1), uuid(2));
    let users = vec![
        privileged(&admin, "active"),
        privileged(&former, "inactive"),
    ];
    let world = world(
        kind,
        users,
        |_| {},
        "",
        &[want(&admin, "inactive"), want(&former, "active")],
    )
    .await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    let blocked = plan["blocked"].as_array().expect("blocked");
    assert_eq!(blocked.len(), 1, "{plan}");
    assert_eq!(
        (&blocked[0]["user"], &blocked[0]["account_id"]),
        (&json!("u0"), &json!(admin))
    );
    assert!(
        blocked[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("admin"),
        "{plan}"
    );
    assert_eq!(
        plan["changes"].as_array().map(Vec::len),
        Some(1),
        "re-enabling an admin is allowed: {plan}"
    );

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"]);
    let calls = write_calls(sim(&world, kind));
    assert_eq!(
        calls,
        [case(kind).write(&former, "active", None, 1)],
        "no write for the blocked admin"
    );
    assert_eq!(status_of(&world, kind, &admin).as_deref(), Some("active"));
}

/// Atlan: a 403 when deactivating (an admin the list did not show as one) is a blocked
/// entry, not a failure, and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atlan_write_time_403_is_blocked() {
    let kind = SimKind::Atlan;
    let a = uuid(1);
    let forbidden = FaultAction::Status {
        code: 403,
        retry_after: None,
    };
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Writes, 1, forbidden)]
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "a known refusal is not an error: {run:?}");
    assert_eq!(outcomes(&report), ["blocked"], "{report}");
    assert_eq!(report["results"][0]["http_status"], 403);
    let blocked = report["blocked"].as_array().expect("blocked");
    assert_eq!(blocked.len(), 1, "{report}");
    assert_eq!(blocked[0]["account_id"], a);
    assert!(
        blocked[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("admin"),
        "{report}"
    );
    assert_eq!(sim(&world, kind).write_count(), 1, "a 403 is not retried");
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("active"));
}

/// ZITADEL: when someone else made the change between read and write, the 400
/// FAILED_PRECONDITION is confirmed with a re-read and counted as converged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zitadel_precondition_race_counts_as_converged() {
    let kind = SimKind::Zitadel;
    let c = case(kind);
    let a = (c.id)(1);
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Writes, 1, FaultAction::ConcurrentChange)];
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["already_converged"], "{report}");
    assert_eq!(report["results"][0]["http_status"], 400);
    let sim = sim(&world, kind);
    let calls: Vec<(String, String, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    let user_path = format!("/resources/v3alpha/users/{a}");
    assert_eq!(
        calls,
        [
            (
                "POST".to_string(),
                "/resources/v3alpha/users/_search".to_string(),
                200
            ),
            ("POST".to_string(), format!("{user_path}/_deactivate"), 400),
            ("GET".to_string(), user_path, 200),
        ]
    );
    for r in sim.requests() {
        c.assert_conformant(&r);
    }
    let (again, report) = apply(&world).await;
    assert_eq!(
        (again.code, &report["results"]),
        (0, &json!([])),
        "{again:?}"
    );
    assert_eq!(sim.write_count(), 1);
}

/// ZITADEL: a locked user is shown as `locked` and any change is blocked, never attempted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zitadel_locked_users_are_blocked() {
    let kind = SimKind::Zitadel;
    let c = case(kind);
    let (a, b) = ((c.id)(1), (c.id)(2));
    let users = vec![user(&a, "locked"), user(&b, "locked")];
    let world = world(
        kind,
        users,
        |_| {},
        "",
        &[want(&a, "inactive"), want(&b, "active")],
    )
    .await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(plan["changes"], json!([]));
    let blocked = plan["blocked"].as_array().expect("blocked");
    assert_eq!(blocked.len(), 2, "{plan}");
    for entry in blocked {
        assert!(
            entry["reason"].as_str().unwrap_or("").contains("locked"),
            "{plan}"
        );
    }
    let (run, _) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim(&world, kind).write_count(), 0);
    assert_eq!(status_of(&world, kind, &a).as_deref(), Some("locked"));
}

/// ZITADEL without `organization_id` sends no organization context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zitadel_without_organization_sends_no_org_context() {
    let kind = SimKind::Zitadel;
    let a = (case(kind).id)(1);
    let tweak = |config: &mut SimConfig| config.organization_id = None;
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;
    let (run, _) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    let requests = sim(&world, kind).requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in requests {
        assert!(
            !r.query.as_deref().unwrap_or("").contains("organization"),
            "{r:?}"
        );
    }
}

/// Acronis: one token serves a whole pass of batched reads and concurrent writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_one_token_for_a_whole_pass() {
    let kind = SimKind::Acronis;
    let ids: Vec<String> = (0..250).map(uuid).collect();
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| want(id, if i % 50 == 0 { "inactive" } else { "active" }))
        .collect();
    let world = world(kind, users, |_| {}, "", &accounts).await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"; 5], "{report}");
    let sim = sim(&world, kind);
    assert_eq!((sim.read_count(), sim.write_count()), (3, 5));
    assert_eq!(sim.token_requests(), 1, "one token for the whole pass");
    let token = &sim.requests()[0];
    assert_eq!(
        (token.method.as_str(), token.path.as_str()),
        ("POST", "/api/2/idp/token")
    );
    assert_eq!(
        token.headers.get("authorization").map(String::as_str),
        Some("Basic ***")
    );
    assert_eq!(
        token.body,
        Some(json!({ "form": "grant_type=client_credentials" }))
    );
}

/// Acronis: a token that the server issued for less than the usual two hours is still
/// reused, not fetched again for every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_short_lived_token_is_still_reused() {
    let kind = SimKind::Acronis;
    let ids: Vec<String> = (0..250).map(uuid).collect();
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids.iter().map(|id| want(id, "active")).collect();
    let tweak = |config: &mut SimConfig| config.token_ttl = Duration::from_secs(60);
    let world = world(kind, users, tweak, "", &accounts).await;
    let (run, _) = plan(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    let sim = sim(&world, kind);
    assert_eq!(sim.read_count(), 3);
    assert_eq!(sim.token_requests(), 1, "a 60 s token serves a 1 s pass");
}

/// Acronis: when the token expires mid-pass, the writes that get 401 fetch one new token
/// (not one each) and are retried; everything converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_expired_token_is_refreshed_once() {
    let kind = SimKind::Acronis;
    let ids: Vec<String> = (0..4).map(uuid).collect();
    let users = ids.iter().map(|id| user(id, "active")).collect();
    let accounts: Vec<Want> = ids.iter().map(|id| want(id, "inactive")).collect();
    let tweak = |config: &mut SimConfig| {
        config.faults.latency = Duration::from_millis(50);
        config.faults.rules = vec![fault(FaultTarget::Writes, 1, FaultAction::ExpireTokens)];
    };
    let world = world(kind, users, tweak, "", &accounts).await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"; 4], "{report}");
    let sim = sim(&world, kind);
    let statuses: Vec<u16> = sim.writes().iter().map(|w| w.status).collect();
    assert!(
        statuses.contains(&401),
        "the expired token was used once: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        sim.token_requests(),
        2,
        "the first token, then one refresh: {:?}",
        sim.requests()
    );
    for id in &ids {
        assert_eq!(status_of(&world, kind, id).as_deref(), Some("inactive"));
    }
}

/// Acronis: an API 401 with a fresh token fetches one new token, retries once, then
/// reports rejected credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_api_401_fetches_one_new_token_then_fails() {
    let kind = SimKind::Acronis;
    let a = uuid(1);
    let unauthorized = FaultAction::Status {
        code: 401,
        retry_after: None,
    };
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Reads, 0, unauthorized)]
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let (run, plan) = plan(&world).await;
    assert_eq!(run.code, 1, "{run:?}");
    let message = plan["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("credentials rejected"), "{plan}");
    let sim = sim(&world, kind);
    assert_eq!(
        (sim.token_requests(), sim.read_count()),
        (2, 2),
        "{:?}",
        sim.requests()
    );
}

/// Acronis: a stale `version` (409) is re-read, re-checked and retried once with the
/// version the API returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_version_conflict_is_retried_once_and_converges() {
    let kind = SimKind::Acronis;
    let c = case(kind);
    let a = uuid(1);
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Writes, 1, FaultAction::ConcurrentChange)];
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(outcomes(&report), ["applied"], "{report}");
    let sim = sim(&world, kind);
    let calls: Vec<(String, String, Option<Value>, u16)> = api_requests(sim)
        .into_iter()
        .map(|r| (r.method, r.path, r.body, r.status))
        .collect();
    let (method, path, first) = c.write(&a, "inactive", None, 1);
    let (_, _, second) = c.write(&a, "inactive", None, 2);
    assert_eq!(
        calls[1..],
        [
            (method.clone(), path.clone(), Some(first), 409),
            ("GET".to_string(), path.clone(), None, 200),
            (method, path, Some(second), 200),
        ],
        "{calls:?}"
    );
    assert_eq!(
        sim.user(&a).map(|u| (u.status, u.version)),
        Some(("inactive".to_string(), 3))
    );
    let (again, report) = apply(&world).await;
    assert_eq!(
        (again.code, &report["results"]),
        (0, &json!([])),
        "{again:?}"
    );
}

/// Acronis: a second conflict in a row is a failure after exactly one retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_repeated_conflict_fails_after_one_retry() {
    let kind = SimKind::Acronis;
    let a = uuid(1);
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Writes, 2, FaultAction::ConcurrentChange)];
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;
    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(outcomes(&report), ["failed"], "{report}");
    assert_eq!(report["results"][0]["http_status"], 409);
    let statuses: Vec<u16> = sim(&world, kind)
        .writes()
        .iter()
        .map(|w| w.status)
        .collect();
    assert_eq!(statuses, [409, 409]);
}

/// Acronis: a 429 from the token endpoint is waited out like any other 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acronis_token_endpoint_429_is_honoured() {
    let kind = SimKind::Acronis;
    let a = uuid(1);
    let rate_limited = FaultAction::Status {
        code: 429,
        retry_after: Some("1".to_string()),
    };
    let tweak = |config: &mut SimConfig| {
        config.faults.rules = vec![fault(FaultTarget::Token, 1, rate_limited)]
    };
    let world = world(
        kind,
        vec![user(&a, "active")],
        tweak,
        "",
        &[want(&a, "inactive")],
    )
    .await;

    let started = Instant::now();
    let (run, report) = apply(&world).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(outcomes(&report), ["applied"], "{report}");
    let sim = sim(&world, kind);
    assert_eq!(sim.token_requests(), 2, "the 429, then the token");
}

/// Not a test: prints, per kind, the read requests and wall time of one `plan` over
/// 10,000 accounts. `cargo test --release --test conformance -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_reads_for_10k_accounts() {
    const N: usize = 10_000;
    for c in &CASES {
        let ids: Vec<String> = (0..N).map(c.id).collect();
        let users = ids.iter().map(|id| user(id, "active")).collect();
        let accounts: Vec<Want> = ids.iter().map(|id| want(id, "active")).collect();
        let world = world(c.kind, users, |_| {}, "", &accounts).await;
        let started = Instant::now();
        let (run, plan) = plan(&world).await;
        let elapsed = started.elapsed();
        assert_eq!(
            (run.code, &plan["in_sync"]),
            (0, &json!(N)),
            "{}",
            run.stderr
        );
        let sim = sim(&world, c.kind);
        println!(
            "{:<12} {N} accounts: {:>4} read requests (bound {}), {} token requests, plan took {:>6.0} ms",
            c.name(),
            sim.read_count(),
            N.div_ceil(PAGE) + 1,
            sim.token_requests(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
}
