//! `chaosctl get`: experiments, game days and drill schedules as tables (`-o wide` with more
//! columns), JSON or YAML. The tables are pure; [`run_get`] only fetches and prints.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    DrillSchedule, Experiment, Fault, FaultKind, GameDay, Injection, PeerGroup,
};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::access::{Kind, Scope, created, fault_of, fetch};
use crate::cluster::{ClusterArgs, ClusterError, connect, runtime};
use crate::output::{Column, Format, Table, age, due, encode, opt, recovery, width_budget};

/// What a `get` table shows besides the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    /// `-A`: a NAMESPACE column first.
    pub all_namespaces: bool,
    /// `-o wide`: the extra columns.
    pub wide: bool,
}

impl View {
    /// The columns: NAMESPACE when every namespace is listed, then `base`, with the wide
    /// ones before the last (free-text) column so that text stays at the end of the line.
    fn columns(self, base: &[Column], wide: &[Column]) -> Vec<Column> {
        let mut columns = Vec::new();
        if self.all_namespaces {
            columns.push(Column::keep("NAMESPACE"));
        }
        let (last, rest) = base
            .split_last()
            .map_or((None, base), |(l, r)| (Some(l), r));
        columns.extend_from_slice(rest);
        if self.wide {
            columns.extend_from_slice(wide);
        }
        columns.extend(last.cloned());
        columns
    }

    /// One row in the same order as [`View::columns`].
    fn row<K: Resource>(
        self,
        object: &K,
        mut base: Vec<String>,
        wide: impl FnOnce() -> Vec<String>,
    ) -> Vec<String> {
        let mut row = Vec::new();
        if self.all_namespaces {
            row.push(object.meta().namespace.clone().unwrap_or_default());
        }
        let last = base.pop();
        row.append(&mut base);
        if self.wide {
            row.extend(wide());
        }
        row.extend(last);
        row
    }
}

fn joined(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.as_ref().to_owned()).collect();
    if items.is_empty() {
        "<none>".to_owned()
    } else {
        items.join(",")
    }
}

fn peers(group: &PeerGroup) -> String {
    match &group.selector {
        Some(selector) if group.zones.is_empty() => format!("pods {}", selector.to_query()),
        _ => joined(&group.zones),
    }
}

/// The fault's parameters in a few words, for `-o wide`.
pub fn fault_detail(fault: &Fault) -> String {
    match fault.kind() {
        Some(FaultKind::ZoneBlackout(z)) => format!(
            "{} {:?}{}",
            joined(z.all_zones()),
            z.mode,
            if z.cut_network { "" } else { ", network kept" }
        ),
        Some(FaultKind::NetworkPartition(p)) => {
            format!("{} | {} {:?}", peers(&p.left), peers(&p.right), p.direction)
        }
        Some(FaultKind::NetworkLoss(l)) => format!(
            "{} | {} {:?} {}%",
            peers(&l.left),
            peers(&l.right),
            l.direction,
            l.percent
        ),
        Some(FaultKind::DiskLoss(d)) => match &d.volume {
            Some(volume) => format!("{:?} volume {volume}", d.mode),
            None => format!("{:?}", d.mode),
        },
        Some(FaultKind::OpsToolOutage(o)) => format!("{:?}", o.mode),
        Some(FaultKind::PodKill(k)) => format!("grace {}s", k.grace_period_seconds),
        None => "-".to_owned(),
    }
}

/// The nodes each experiment's Injections are on, by `namespace/name` (an Injection's
/// `spec.experiment`).
pub fn nodes_by_experiment(injections: &[Injection]) -> BTreeMap<String, BTreeSet<String>> {
    let mut nodes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in injections {
        nodes
            .entry(i.spec.experiment.clone())
            .or_default()
            .insert(i.spec.node_name.clone());
    }
    nodes
}

/// `get experiments` as a table. `injections` feed `-o wide`'s NODES (`None`: they could
/// not be read).
pub fn experiments_table(
    items: &[Experiment],
    injections: Option<&[Injection]>,
    view: View,
    now: DateTime<Utc>,
) -> Table {
    let nodes = injections.map(nodes_by_experiment);
    let mut table = Table::new(view.columns(
        &[
            Column::keep("NAME"),
            Column::keep("PHASE"),
            Column::keep("VERDICT"),
            Column::keep("FAULT"),
            Column::keep("FAULT STATE"),
            Column::keep("AGE"),
            Column::cut("REASON"),
        ],
        &[
            Column::keep("TARGETS"),
            Column::keep("DETAIL"),
            Column::keep("NODES"),
            Column::keep("DURATION"),
            Column::keep("RECOVERY").right(),
            Column::keep("LOST").right(),
        ],
    ));
    for e in items {
        let s = e.status.clone().unwrap_or_default();
        let abort_requested = e
            .annotations()
            .contains_key(crate::cluster::ABORT_ANNOTATION)
            && s.verdict.is_none();
        let base = vec![
            e.name_any(),
            format!("{:?}", s.phase),
            opt(s.verdict),
            fault_of(e),
            format!("{:?}", s.fault_state),
            age(created(e), now),
            if abort_requested {
                "abort requested".to_owned()
            } else {
                s.reason.clone().unwrap_or_default()
            },
        ];
        let wide = || {
            let key = format!("{}/{}", e.namespace().unwrap_or_default(), e.name_any());
            vec![
                joined(&e.spec.target.namespaces),
                fault_detail(&e.spec.fault),
                match &nodes {
                    Some(nodes) => joined(nodes.get(&key).into_iter().flatten()),
                    None => "<unknown>".to_owned(),
                },
                e.spec.duration.to_string(),
                recovery(s.time_to_recover_seconds, &s.slis),
                s.messages_lost
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ]
        };
        table.push(view.row(e, base, wide));
    }
    table
}

/// `get gamedays` as a table.
pub fn gamedays_table(items: &[GameDay], view: View, now: DateTime<Utc>) -> Table {
    let mut table = Table::new(view.columns(
        &[
            Column::keep("NAME"),
            Column::keep("PHASE"),
            Column::keep("VERDICT"),
            Column::keep("STEP"),
            Column::keep("AGE"),
            Column::cut("REPORT"),
        ],
        &[
            Column::keep("STEPS"),
            Column::keep("ON FAILURE"),
            Column::keep("TOOK"),
            Column::keep("WAITING FOR"),
        ],
    ));
    for g in items {
        let s = g.status.clone().unwrap_or_default();
        let steps = g.spec.experiments.len();
        let base = vec![
            g.name_any(),
            format!("{:?}", s.phase),
            opt(s.verdict),
            s.progress.clone().unwrap_or_else(|| format!("0/{steps}")),
            age(created(g), now),
            s.report.clone().unwrap_or_else(|| "-".to_owned()),
        ];
        let wide = || {
            vec![
                joined(g.spec.experiments.iter().map(|s| &s.name)),
                format!("{:?}", g.spec.failure_policy),
                match (s.started_at, s.finished_at) {
                    (Some(start), Some(end)) => age(Some(start), end),
                    (Some(start), None) => format!("{} so far", age(Some(start), now)),
                    _ => "-".to_owned(),
                },
                s.message.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        };
        table.push(view.row(g, base, wide));
    }
    table
}

/// `get drills` as a table.
pub fn drills_table(items: &[DrillSchedule], view: View, now: DateTime<Utc>) -> Table {
    let mut table = Table::new(view.columns(
        &[
            Column::keep("NAME"),
            Column::keep("SCHEDULE"),
            Column::keep("STATE"),
            Column::keep("LAST VERDICT"),
            Column::keep("LAST RUN"),
            Column::keep("NEXT RUN"),
            Column::keep("DRILLS").right(),
            Column::keep("AGE"),
        ],
        &[
            Column::keep("STEPS"),
            Column::keep("CONCURRENCY"),
            Column::keep("DEADLINE"),
            Column::keep("KEEP").right(),
            Column::keep("LAST GAME DAY"),
        ],
    ));
    for d in items {
        let s = d.status.clone().unwrap_or_default();
        let schedule = match &d.spec.time_zone {
            Some(tz) => format!("{} ({tz})", d.spec.schedule),
            None => d.spec.schedule.clone(),
        };
        let base = vec![
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
        let wide = || {
            vec![
                joined(d.spec.game_day.experiments.iter().map(|s| &s.name)),
                format!("{:?}", d.spec.concurrency_policy),
                d.spec.starting_deadline.to_string(),
                d.spec.history_limit.to_string(),
                // The status keeps the newest first.
                s.history
                    .first()
                    .map_or_else(|| "-".to_owned(), |r| r.game_day.clone()),
            ]
        };
        table.push(view.row(d, base, wide));
    }
    table
}

/// What `get` says (on stderr, like kubectl) when nothing matched.
pub fn nothing_found(kind: Kind, scope: &Scope, default_namespace: &str) -> String {
    format!(
        "no {} found {}",
        kind.resource(),
        match scope {
            Scope::All => "in any namespace".to_owned(),
            Scope::Namespace(Some(ns)) => format!("in namespace {ns}"),
            Scope::Namespace(None) => format!("in namespace {default_namespace}"),
        }
    )
}

/// The text to print, or `None` for an empty table.
fn render<K: Serialize>(
    items: &[K],
    single: bool,
    format: Format,
    table: impl FnOnce(&[K]) -> Table,
) -> Result<Option<String>, ClusterError> {
    match format {
        Format::Table | Format::Wide if items.is_empty() => Ok(None),
        // `-o wide` asks for everything: no width budget.
        Format::Wide => Ok(Some(table(items).render(None))),
        Format::Table => Ok(Some(table(items).render(Some(width_budget())))),
        other => encode(items, single, other).map(Some),
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
        let view = View {
            all_namespaces: scope == Scope::All,
            wide: format == Format::Wide,
        };
        let now = Utc::now();
        let text = match kind {
            Kind::Experiments => {
                let items: Vec<Experiment> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                // NODES comes from the Injections (in firedrill's namespace); one that cannot
                // be read is worth a warning, not a failed `get`.
                let injections: Option<Vec<Injection>> = if view.wide && !items.is_empty() {
                    match fetch(&client, &Scope::All, None, "injections", None).await {
                        Ok(i) => Some(i),
                        Err(e) => {
                            eprintln!("warning: NODES unknown: {e}");
                            None
                        }
                    }
                } else {
                    None
                };
                render(&items, name.is_some(), format, |i| {
                    experiments_table(i, injections.as_deref(), view, now)
                })?
            }
            Kind::Gamedays => {
                let items: Vec<GameDay> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                render(&items, name.is_some(), format, |i| {
                    gamedays_table(i, view, now)
                })?
            }
            Kind::Drills => {
                let items: Vec<DrillSchedule> =
                    fetch(&client, &scope, name, kind.resource(), selector).await?;
                render(&items, name.is_some(), format, |i| {
                    drills_table(i, view, now)
                })?
            }
        };
        match text {
            Some(text) => print!("{text}"),
            None => eprintln!(
                "{}",
                nothing_found(kind, &scope, client.default_namespace())
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests;
