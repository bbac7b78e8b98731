//! `chaosctl get` and `chaosctl describe`: experiments, game days and drill schedules as
//! tables, JSON or YAML. The rendering is pure; [`run_get`] and [`run_describe`] only fetch.

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use firedrill_core::api::{DrillSchedule, Experiment, GameDay, Injection};
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::{ClusterArgs, ClusterError, Op, connect, runtime};

/// The kinds `get` and `describe` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Experiment objects (also: experiment, exp).
    #[value(alias = "experiment", alias = "exp")]
    Experiments,
    /// GameDay objects (also: gameday, gd).
    #[value(alias = "gameday", alias = "gd")]
    Gamedays,
    /// DrillSchedule objects (also: drill, drillschedules, drillschedule).
    #[value(alias = "drill", alias = "drillschedules", alias = "drillschedule")]
    Drills,
}

impl Kind {
    pub fn resource(self) -> &'static str {
        match self {
            Self::Experiments => "experiments",
            Self::Gamedays => "gamedays",
            Self::Drills => "drillschedules",
        }
    }
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A human table.
    #[default]
    Table,
    /// The objects as the API server has them (a List when more than one).
    Json,
    /// The same as YAML.
    Yaml,
}

/// Which namespace(s) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace; `None` is the context's default namespace.
    Namespace(Option<String>),
    All,
}

/// An aligned table: every column as wide as its widest cell, two spaces between columns.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(text, "{cell:<pad$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, headers.to_vec());
    for row in rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

/// A kubectl-style age: `45s`, `12m`, `3h4m`, `5d`.
pub fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(since) = since else {
        return "<unknown>".to_owned();
    };
    let s = (now - since).num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..3600 => format!("{}m", s / 60),
        3600..28800 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h{m}m", s / 3600)
            }
        }
        28800..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// When something is due, relative to now: `in 3h`, `5m ago`, `-`.
pub fn due(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_owned(),
        Some(at) if at >= now => format!("in {}", age(Some(now), at)),
        Some(at) => format!("{} ago", age(Some(at), now)),
    }
}

pub fn created<K: Resource>(object: &K) -> Option<DateTime<Utc>> {
    object
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(crate::cluster::time)
}

fn opt<T: std::fmt::Debug>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:?}"))
}

fn with_namespace<K: Resource>(all: bool, object: &K, mut row: Vec<String>) -> Vec<String> {
    if all {
        row.insert(0, object.meta().namespace.clone().unwrap_or_default());
    }
    row
}

fn headers(all: bool, rest: &[&'static str]) -> Vec<&'static str> {
    let mut h = Vec::new();
    if all {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(rest);
    h
}

/// The experiment's fault: the name the status gives, else the spec's kind.
pub fn fault_of(e: &Experiment) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.fault.clone())
        .unwrap_or_else(|| e.spec.fault.name().to_owned())
}

/// `get experiments` as a table.
pub fn experiments_table(items: &[Experiment], all: bool, now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let s = e.status.clone().unwrap_or_default();
            let row = vec![
                e.name_any(),
                format!("{:?}", s.phase),
                opt(s.verdict),
                fault_of(e),
                format!("{:?}", s.fault_state),
                age(created(e), now),
                if e.annotations()
                    .contains_key(crate::cluster::ABORT_ANNOTATION)
                    && s.verdict.is_none()
                {
                    "abort requested".to_owned()
                } else {
                    s.reason.unwrap_or_default()
                },
            ];
            with_namespace(all, e, row)
        })
        .collect();
    render_table(
        &headers(
            all,
            &[
                "NAME",
                "PHASE",
                "VERDICT",
                "FAULT",
                "FAULT STATE",
                "AGE",
                "REASON",
            ],
        ),
        &rows,
    )
}

/// `get gamedays` as a table.
pub fn gamedays_table(items: &[GameDay], all: bool, now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|g| {
            let s = g.status.clone().unwrap_or_default();
            let steps = g.spec.experiments.len();
            let row = vec![
                g.name_any(),
                format!("{:?}", s.phase),
                opt(s.verdict),
                s.progress.unwrap_or_else(|| format!("0/{steps}")),
                age(created(g), now),
                s.report.unwrap_or_else(|| "-".to_owned()),
            ];
            with_namespace(all, g, row)
        })
        .collect();
    render_table(
        &headers(all, &["NAME", "PHASE", "VERDICT", "STEP", "AGE", "REPORT"]),
        &rows,
    )
}

/// `get drills` as a table.
pub fn drills_table(items: &[DrillSchedule], all: bool, now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            let s = d.status.clone().unwrap_or_default();
            let schedule = match &d.spec.time_zone {
                Some(tz) => format!("{} ({tz})", d.spec.schedule),
                None => d.spec.schedule.clone(),
            };
            let row = vec![
                d.name_any(),
                schedule,
                if d.spec.suspend {
                    "suspended".to_owned()
                } else {
                    s.active
                        .clone()
                        .map_or_else(|| "idle".to_owned(), |a| format!("running {a}"))
                },
                opt(s.last_verdict),
                due(s.last_run_at, now),
                if d.spec.suspend {
                    "-".to_owned()
                } else {
                    due(s.next_run_at, now)
                },
                s.history.len().to_string(),
                age(created(d), now),
            ];
            with_namespace(all, d, row)
        })
        .collect();
    render_table(
        &headers(
            all,
            &[
                "NAME",
                "SCHEDULE",
                "STATE",
                "LAST VERDICT",
                "LAST RUN",
                "NEXT RUN",
                "DRILLS",
                "AGE",
            ],
        ),
        &rows,
    )
}

/// Objects as JSON or YAML: one object as itself, several as a `List` (as kubectl does).
pub fn encode<K: Serialize>(
    items: &[K],
    single: bool,
    format: Format,
) -> Result<String, ClusterError> {
    let value = if single && items.len() == 1 {
        serde_json::to_value(&items[0])?
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": serde_json::to_value(items)?,
        })
    };
    Ok(match format {
        Format::Yaml => firedrill_core::yaml::emit(&value),
        _ => format!("{}\n", serde_json::to_string_pretty(&value)?),
    })
}

fn ts(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| {
            format!(
                "{} ({})",
                t.format("%Y-%m-%d %H:%M:%S UTC"),
                due(Some(t), now)
            )
        },
    )
}

fn header<K: Resource<DynamicType = ()>>(out: &mut String, object: &K, now: DateTime<Utc>) {
    let _ = writeln!(
        out,
        "Name:         {}",
        object.meta().name.clone().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Namespace:    {}",
        object.meta().namespace.clone().unwrap_or_default()
    );
    let _ = writeln!(out, "Kind:         {}", K::kind(&()));
    let _ = writeln!(out, "Created:      {}", ts(created(object), now));
    let labels = object.meta().labels.clone().unwrap_or_default();
    if !labels.is_empty() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "Labels:       {}", labels.join(", "));
    }
    if let Some(reason) = object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::cluster::ABORT_ANNOTATION))
    {
        let _ = writeln!(out, "Abort:        requested ({reason})");
    }
}

/// `describe experiment NAME`: everything a person asks about one experiment.
pub fn describe_experiment(e: &Experiment, injections: &[Injection], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    header(&mut out, e, now);
    let s = e.status.clone().unwrap_or_default();
    if let Some(d) = &e.spec.description {
        let _ = writeln!(out, "Description:  {}", d.trim());
    }
    let _ = writeln!(out, "Fault:        {}", fault_of(e));
    let _ = writeln!(
        out,
        "Targets:      namespaces {}",
        e.spec.target.namespaces.join(", ")
    );
    let _ = writeln!(out, "Duration:     {}", e.spec.duration);
    let _ = writeln!(out, "Recovery:     within {}", e.spec.recovery_deadline);
    if e.spec.dry_run {
        let _ = writeln!(out, "Dry run:      yes (nothing is injected)");
    }
    let _ = writeln!(
        out,
        "Phase:        {:?} (fault {:?})",
        s.phase, s.fault_state
    );
    let _ = writeln!(out, "Verdict:      {}", opt(s.verdict));
    if let Some(r) = &s.reason {
        let _ = writeln!(out, "Reason:       {r}");
    }
    if let Some(r) = &s.aborted_because {
        let _ = writeln!(out, "Aborted:      {r}");
    }
    let _ = writeln!(out, "Started:      {}", ts(s.started_at, now));
    let _ = writeln!(out, "Injected:     {}", ts(s.injected_at, now));
    let _ = writeln!(out, "Reverted:     {}", ts(s.reverted_at, now));
    let _ = writeln!(out, "Finished:     {}", ts(s.finished_at, now));
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}s"));
    let count = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "Figures:      impact after {}, recovered in {}, lost {}, duplicated {}",
        secs(s.time_to_impact_seconds),
        secs(s.time_to_recover_seconds),
        count(s.messages_lost),
        count(s.messages_duplicated)
    );
    if !s.conditions.is_empty() {
        let _ = writeln!(out, "Conditions:");
        let rows: Vec<Vec<String>> = s
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        indent(
            &mut out,
            &render_table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows),
        );
    }
    if !s.probes.is_empty() {
        let _ = writeln!(out, "Probes:");
        let rows: Vec<Vec<String>> = s
            .probes
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    format!("{:?}", p.stage),
                    p.samples.to_string(),
                    p.failures.to_string(),
                    if p.tripped { "yes" } else { "no" }.to_owned(),
                    p.last_value
                        .map_or_else(|| "-".to_owned(), |v| format!("{v}")),
                    p.last_failure.clone().unwrap_or_default(),
                ]
            })
            .collect();
        indent(
            &mut out,
            &render_table(
                &[
                    "PROBE",
                    "STAGE",
                    "SAMPLES",
                    "FAILURES",
                    "TRIPPED",
                    "LAST",
                    "LAST FAILURE",
                ],
                &rows,
            ),
        );
    }
    if !s.slis.is_empty() {
        let _ = writeln!(out, "SLIs (measured at the sample interval):");
        let rows: Vec<Vec<String>> = s
            .slis
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.samples.to_string(),
                    secs(f.time_to_impact_seconds),
                    f.worst_value
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
                    secs(Some(f.unhealthy_seconds)),
                    secs(f.time_to_recover_seconds),
                ]
            })
            .collect();
        indent(
            &mut out,
            &render_table(
                &["SLI", "SAMPLES", "IMPACT", "WORST", "UNHEALTHY", "RECOVERY"],
                &rows,
            ),
        );
    }
    if let Some(c) = &s.fault_check {
        let lapses = match (&c.last_lapse, c.lapses) {
            (_, 0) => "none".to_owned(),
            (Some(what), n) => format!(
                "{n}, longest {:.1}s (last: {what})",
                c.longest_lapse_seconds
            ),
            (None, n) => format!("{n}, longest {:.1}s", c.longest_lapse_seconds),
        };
        let _ = writeln!(
            out,
            "Fault check:  last found whole {}; lapses {lapses}",
            ts(c.last_held_at, now)
        );
    }
    if !injections.is_empty() {
        let _ = writeln!(out, "Injections:");
        indent(&mut out, &injections_table(injections, now));
    }
    if !s.timeline.is_empty() {
        let _ = writeln!(out, "Timeline:");
        for t in &s.timeline {
            let _ = writeln!(
                out,
                "  {} {:?}: {}",
                t.at.format("%H:%M:%S"),
                t.phase,
                t.message
            );
        }
    }
    out
}

/// Injections with their agent-reported state.
pub fn injections_table(items: &[Injection], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.name_any(),
                i.spec.node_name.clone(),
                i.status
                    .as_ref()
                    .map_or_else(|| "Pending".to_owned(), |s| format!("{:?}", s.state)),
                if i.meta().deletion_timestamp.is_some() {
                    "reverting".to_owned()
                } else {
                    "-".to_owned()
                },
                due(Some(i.spec.expires_at), now),
            ]
        })
        .collect();
    render_table(
        &["INJECTION", "NODE", "STATE", "DELETING", "EXPIRES"],
        &rows,
    )
}

/// `describe gameday NAME`.
pub fn describe_gameday(g: &GameDay, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    header(&mut out, g, now);
    let s = g.status.clone().unwrap_or_default();
    if let Some(d) = &g.spec.description {
        let _ = writeln!(out, "Description:  {}", d.trim());
    }
    let _ = writeln!(
        out,
        "Policy:       {:?} on failure, {} between experiments",
        g.spec.failure_policy, g.spec.pause_between
    );
    let _ = writeln!(out, "Phase:        {:?}", s.phase);
    let _ = writeln!(out, "Verdict:      {}", opt(s.verdict));
    let _ = writeln!(out, "Started:      {}", ts(s.started_at, now));
    let _ = writeln!(out, "Finished:     {}", ts(s.finished_at, now));
    if let Some(r) = &s.report {
        let _ = writeln!(out, "Report:       {r}");
    }
    let _ = writeln!(out, "Steps:");
    let rows: Vec<Vec<String>> = g
        .spec
        .experiments
        .iter()
        .map(|step| {
            let result = s.results.iter().find(|r| r.name == step.name);
            let source = match (&step.experiment_ref, &step.spec) {
                (Some(r), _) => format!("ref {}", r.name),
                (None, Some(spec)) => spec.fault.name().to_owned(),
                (None, None) => "-".to_owned(),
            };
            vec![
                step.name.clone(),
                source,
                result
                    .and_then(|r| r.experiment.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                opt(result.and_then(|r| r.verdict)),
                result
                    .map(|r| {
                        let mut why = r.reason.clone().unwrap_or_default();
                        if !r.failed_probes.is_empty() {
                            let _ = write!(why, " [failed: {}]", r.failed_probes.join(", "));
                        }
                        why.trim().to_owned()
                    })
                    .unwrap_or_default(),
            ]
        })
        .collect();
    indent(
        &mut out,
        &render_table(
            &["STEP", "EXPERIMENT SPEC", "OBJECT", "VERDICT", "REASON"],
            &rows,
        ),
    );
    out
}

/// `describe drill NAME`.
pub fn describe_drill(d: &DrillSchedule, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    header(&mut out, d, now);
    let s = d.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "Schedule:     {} ({}){}",
        d.spec.schedule,
        d.spec.time_zone.as_deref().unwrap_or("UTC"),
        if d.spec.suspend { ", SUSPENDED" } else { "" }
    );
    let _ = writeln!(
        out,
        "Policy:       concurrency {:?}, starting deadline {}, keep {} drills",
        d.spec.concurrency_policy, d.spec.starting_deadline, d.spec.history_limit
    );
    let _ = writeln!(
        out,
        "Game day:     {} experiments",
        d.spec.game_day.experiments.len()
    );
    let _ = writeln!(out, "Active:       {}", s.active.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "Last run:     {}", ts(s.last_run_at, now));
    let _ = writeln!(out, "Last verdict: {}", opt(s.last_verdict));
    let _ = writeln!(out, "Next run:     {}", ts(s.next_run_at, now));
    let _ = writeln!(out, "History:");
    indent(&mut out, &crate::history::history_table(&s.history));
    out
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

// ---------------------------------------------------------------------------------------
// I/O

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(Some(ns)) => Api::namespaced(client.clone(), ns),
        Scope::Namespace(None) => Api::default_namespaced(client.clone()),
    }
}

/// Lists (or gets by name) objects of one kind.
pub async fn fetch<K>(
    client: &Client,
    scope: &Scope,
    name: Option<&str>,
    resource: &'static str,
    selector: Option<&str>,
) -> Result<Vec<K>, ClusterError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = api(client, scope);
    let ns = match scope {
        Scope::Namespace(Some(ns)) => Some(ns.clone()),
        Scope::Namespace(None) => Some(client.default_namespace().to_owned()),
        Scope::All => None,
    };
    match name {
        Some(name) => {
            let op = Op::new("get", resource).ns(ns.as_deref()).name(name);
            let object = api
                .get(name)
                .await
                .map_err(|e| ClusterError::from_kube(e, &op))?;
            Ok(vec![object])
        }
        None => {
            let op = Op::new("list", resource).ns(ns.as_deref());
            let mut params = ListParams::default();
            if let Some(selector) = selector {
                params = params.labels(selector);
            }
            let mut items = api
                .list(&params)
                .await
                .map_err(|e| ClusterError::from_kube(e, &op))?
                .items;
            items.sort_by_key(|o| (o.meta().namespace.clone(), o.meta().name.clone()));
            Ok(items)
        }
    }
}

pub fn scope(namespace: Option<String>, all: bool) -> Scope {
    if all {
        Scope::All
    } else {
        Scope::Namespace(namespace)
    }
}

/// `chaosctl get KIND [NAME]`.
pub fn run_get(
    cluster: &ClusterArgs,
    kind: Kind,
    name: Option<&str>,
    scope: Scope,
    selector: Option<&str>,
    format: Format,
) -> Result<ExitCode, ClusterError> {
    if name.is_some() && scope == Scope::All {
        return Err(ClusterError::Usage(
            "a NAME needs one namespace: use -n NAMESPACE instead of -A".to_owned(),
        ));
    }
    runtime()?.block_on(async {
        let (client, _) = connect(cluster).await?;
        // The kill switch is the first thing to know; a pause that cannot be read (no
        // firedrill there, or no right to read Namespaces) is not worth failing `get` over.
        let firedrill = cluster.firedrill_namespace();
        if let Ok(Some(why)) = crate::pause::read(&client, firedrill).await {
            eprintln!("{}", crate::pause::banner(firedrill, &why));
        }
        let all = scope == Scope::All;
        let now = Utc::now();
        let text = match kind {
            Kind::Experiments => {
                let items: Vec<Experiment> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                render(&items, name.is_some(), format, |i| {
                    experiments_table(i, all, now)
                })?
            }
            Kind::Gamedays => {
                let items: Vec<GameDay> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                render(&items, name.is_some(), format, |i| {
                    gamedays_table(i, all, now)
                })?
            }
            Kind::Drills => {
                let items: Vec<DrillSchedule> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                render(&items, name.is_some(), format, |i| {
                    drills_table(i, all, now)
                })?
            }
        };
        match text {
            Some(text) => print!("{text}"),
            None => eprintln!(
                "no {} found {}",
                kind.resource(),
                match &scope {
                    Scope::All => "in any namespace".to_owned(),
                    Scope::Namespace(Some(ns)) => format!("in namespace {ns}"),
                    Scope::Namespace(None) =>
                        format!("in namespace {}", client.default_namespace()),
                }
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The text to print, or `None` for an empty table.
fn render<K: Serialize>(
    items: &[K],
    single: bool,
    format: Format,
    table: impl Fn(&[K]) -> String,
) -> Result<Option<String>, ClusterError> {
    match format {
        Format::Table if items.is_empty() => Ok(None),
        Format::Table => Ok(Some(table(items))),
        other => encode(items, single, other).map(Some),
    }
}

/// `chaosctl describe KIND NAME`.
pub fn run_describe(
    cluster: &ClusterArgs,
    kind: Kind,
    name: &str,
    namespace: Option<String>,
) -> Result<ExitCode, ClusterError> {
    runtime()?.block_on(async {
        let (client, _) = connect(cluster).await?;
        let scope = Scope::Namespace(namespace);
        let now = Utc::now();
        let text = match kind {
            Kind::Experiments => {
                let items: Vec<Experiment> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                let mut out = String::new();
                for e in &items {
                    let selector = format!(
                        "firedrill.dev/experiment-uid={}",
                        e.uid().unwrap_or_default()
                    );
                    // In firedrill's own namespace, not the Experiment's: found by UID.
                    let injections: Vec<Injection> =
                        fetch(&client, &Scope::All, None, "injections", Some(&selector)).await?;
                    out.push_str(&describe_experiment(e, &injections, now));
                }
                out
            }
            Kind::Gamedays => {
                let items: Vec<GameDay> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                items.iter().map(|g| describe_gameday(g, now)).collect()
            }
            Kind::Drills => {
                let items: Vec<DrillSchedule> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                items.iter().map(|d| describe_drill(d, now)).collect()
            }
        };
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::{ExperimentStatus, Phase, Verdict};

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    pub(crate) fn experiment(name: &str) -> Experiment {
        let yaml = format!(
            "apiVersion: firedrill.dev/v1alpha1\nkind: Experiment\nmetadata:\n  name: {name}\n  namespace: talk\n  creationTimestamp: \"2023-11-14T22:13:20Z\"\nspec:\n  target: {{namespaces: [talk]}}\n  fault: {{zoneBlackout: {{zone: zone-a}}}}\n  duration: 30s\n  hypothesis: {{probes: []}}\n"
        );
        let docs = firedrill_core::yaml::parse_documents(&yaml, Default::default()).unwrap();
        serde_json::from_value(docs[0].value.clone()).unwrap()
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(Some(at(0)), at(45)), "45s");
        assert_eq!(age(Some(at(0)), at(600)), "10m");
        assert_eq!(age(Some(at(0)), at(3 * 3600 + 240)), "3h4m");
        assert_eq!(age(Some(at(0)), at(10 * 3600)), "10h");
        assert_eq!(age(Some(at(0)), at(5 * 86400)), "5d");
        assert_eq!(age(None, at(0)), "<unknown>");
        assert_eq!(due(Some(at(100)), at(40)), "in 60s");
        assert_eq!(due(Some(at(0)), at(600)), "10m ago");
    }

    #[test]
    fn tables_align_and_trim() {
        let t = render_table(
            &["NAME", "PHASE", "NOTE"],
            &[
                vec!["a".into(), "Holding".into(), String::new()],
                vec!["longer".into(), "X".into(), "n".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME    PHASE    NOTE\na       Holding\nlonger  X        n\n"
        );
    }

    #[test]
    fn experiment_rows_show_phase_verdict_fault_and_namespace() {
        let mut e = experiment("zb");
        e.status = Some(ExperimentStatus {
            phase: Phase::Completed,
            verdict: Some(Verdict::Passed),
            ..Default::default()
        });
        let now = Utc.with_ymd_and_hms(2023, 11, 14, 22, 23, 20).unwrap();
        let t = experiments_table(&[e.clone(), experiment("pending")], true, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE  NAME"), "{t}");
        assert!(
            lines[1].contains("talk") && lines[1].contains("Completed"),
            "{t}"
        );
        assert!(
            lines[1].contains("Passed") && lines[1].contains("zoneBlackout"),
            "{t}"
        );
        assert!(lines[1].contains("10m"), "{t}");
        assert!(
            lines[2].contains("Pending") && lines[2].contains(" - "),
            "{t}"
        );
        let t = experiments_table(&[e], false, now);
        assert!(t.starts_with("NAME "), "{t}");
    }

    #[test]
    fn json_of_one_is_the_object_and_of_many_a_list() {
        let one = encode(&[experiment("a")], true, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["kind"], "Experiment");
        assert_eq!(v["metadata"]["name"], "a");
        let many = encode(&[experiment("a"), experiment("b")], false, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&many).unwrap();
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][1]["metadata"]["name"], "b");
        let yaml = encode(&[experiment("a")], true, Format::Yaml).unwrap();
        assert!(yaml.contains("kind: Experiment"), "{yaml}");
        assert!(yaml.contains("zone: zone-a"), "{yaml}");
    }

    #[test]
    fn describe_shows_status_abort_and_timeline() {
        let mut e = experiment("zb");
        e.annotations_mut()
            .insert(crate::cluster::ABORT_ANNOTATION.into(), "manual".into());
        e.status = Some(ExperimentStatus {
            phase: Phase::Reverting,
            reason: Some("aborted".into()),
            timeline: vec![firedrill_core::api::TimelineEntry {
                at: at(5),
                phase: Phase::Reverting,
                message: "abort requested".into(),
            }],
            ..Default::default()
        });
        let text = describe_experiment(&e, &[], at(10));
        assert!(text.contains("Name:         zb"), "{text}");
        assert!(text.contains("Abort:        requested (manual)"), "{text}");
        assert!(text.contains("Phase:        Reverting"), "{text}");
        assert!(
            text.contains("22:13:25 Reverting: abort requested"),
            "{text}"
        );
        assert!(text.contains("Fault:        zoneBlackout"), "{text}");
        assert!(!text.contains("SLIs"), "no figures yet: {text}");
    }

    #[test]
    fn describe_shows_each_slis_figures_and_the_fault_check() {
        let mut e = experiment("zb");
        e.status = Some(ExperimentStatus {
            phase: Phase::Completed,
            slis: vec![firedrill_core::api::SliFigures {
                name: "p99-latency".into(),
                samples: 41,
                time_to_impact_seconds: Some(7.04),
                worst_value: Some(4808.0),
                unhealthy_seconds: 10.0,
                time_to_recover_seconds: Some(2.1),
                ..Default::default()
            }],
            fault_check: Some(firedrill_core::api::FaultCheck {
                last_held_at: Some(at(8)),
                lapses: 1,
                longest_lapse_seconds: 8.2,
                last_lapse: Some("chain fd-x-in gone".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = describe_experiment(&e, &[], at(10));
        let row = text
            .lines()
            .find(|l| l.contains("p99-latency"))
            .unwrap_or_else(|| panic!("{text}"));
        for figure in ["41", "7.0s", "4808.000", "10.0s", "2.1s"] {
            assert!(row.contains(figure), "{figure} in {row}");
        }
        assert!(
            text.contains("lapses 1, longest 8.2s (last: chain fd-x-in gone)"),
            "{text}"
        );
    }
}
