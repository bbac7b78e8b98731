//! `chaosctl describe`: one experiment, game day or drill schedule in detail, tables inside
//! drawn like `get`'s. The text is pure; [`run_describe`] only fetches and prints.

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use firedrill_core::api::{DrillSchedule, EXPERIMENT_UID_LABEL, Experiment, GameDay, Injection};
use kube::{Resource, ResourceExt};

use crate::access::{Kind, Scope, created, fault_of, fetch};
use crate::cluster::{ClusterArgs, ClusterError, connect, runtime};
use crate::output::{
    Column, Table, count, due, indent, opt, recovery, seconds, sli_figure_cells, timestamp as ts,
    width_budget,
};

/// The budget of a table indented under a heading.
fn inner(width: Option<usize>) -> Option<usize> {
    width.map(|w| w.saturating_sub(2))
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

/// `describe experiment NAME`: everything a person asks about one experiment. Its tables
/// fit `width` (see [`crate::output`]; `None`: no budget).
pub fn describe_experiment(
    e: &Experiment,
    injections: &[Injection],
    now: DateTime<Utc>,
    width: Option<usize>,
) -> String {
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
    let _ = writeln!(
        out,
        "Figures:      impact after {}, recovered in {}, lost {}, duplicated {}",
        seconds(s.time_to_impact_seconds),
        recovery(s.time_to_recover_seconds, &s.slis),
        count(s.messages_lost),
        count(s.messages_duplicated)
    );
    if !s.conditions.is_empty() {
        let _ = writeln!(out, "Conditions:");
        let mut table = Table::new([
            Column::keep("TYPE"),
            Column::keep("STATUS"),
            Column::keep("REASON"),
            Column::cut("MESSAGE"),
        ]);
        for c in &s.conditions {
            table.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]);
        }
        indent(&mut out, &table.render(inner(width)));
    }
    if !s.probes.is_empty() {
        let _ = writeln!(out, "Probes:");
        let mut table = Table::new([
            Column::keep("PROBE"),
            Column::keep("STAGE"),
            Column::keep("SAMPLES").right(),
            Column::keep("FAILURES").right(),
            Column::keep("TRIPPED"),
            Column::keep("LAST").right(),
            Column::cut("LAST FAILURE"),
        ]);
        for p in &s.probes {
            table.push(vec![
                p.name.clone(),
                format!("{:?}", p.stage),
                p.samples.to_string(),
                p.failures.to_string(),
                if p.tripped { "yes" } else { "no" }.to_owned(),
                p.last_value
                    .map_or_else(|| "-".to_owned(), |v| format!("{v}")),
                p.last_failure.clone().unwrap_or_default(),
            ]);
        }
        indent(&mut out, &table.render(inner(width)));
    }
    if !s.slis.is_empty() {
        let _ = writeln!(out, "SLIs (measured at the sample interval):");
        let mut table = Table::new([
            Column::keep("SLI"),
            Column::keep("SAMPLES").right(),
            Column::keep("IMPACT").right(),
            Column::keep("WORST").right(),
            Column::keep("UNHEALTHY").right(),
            Column::keep("RECOVERY").right(),
        ]);
        for f in &s.slis {
            let mut row = vec![f.name.clone(), f.samples.to_string()];
            row.extend(sli_figure_cells(f));
            table.push(row);
        }
        indent(&mut out, &table.render(inner(width)));
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
        indent(
            &mut out,
            &injections_table(injections, now).render(inner(width)),
        );
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
pub fn injections_table(items: &[Injection], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        Column::keep("INJECTION"),
        Column::keep("NODE"),
        Column::keep("STATE"),
        Column::keep("DELETING"),
        Column::keep("EXPIRES"),
    ]);
    for i in items {
        table.push(vec![
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
        ]);
    }
    table
}

/// `describe gameday NAME`.
pub fn describe_gameday(g: &GameDay, now: DateTime<Utc>, width: Option<usize>) -> String {
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
    let mut table = Table::new([
        Column::keep("STEP"),
        Column::keep("EXPERIMENT SPEC"),
        Column::keep("OBJECT"),
        Column::keep("VERDICT"),
        Column::cut("REASON"),
    ]);
    for step in &g.spec.experiments {
        let result = s.results.iter().find(|r| r.name == step.name);
        let source = match (&step.experiment_ref, &step.spec) {
            (Some(r), _) => format!("ref {}", r.name),
            (None, Some(spec)) => spec.fault.name().to_owned(),
            (None, None) => "-".to_owned(),
        };
        table.push(vec![
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
        ]);
    }
    indent(&mut out, &table.render(inner(width)));
    out
}

/// `describe drill NAME`.
pub fn describe_drill(d: &DrillSchedule, now: DateTime<Utc>, width: Option<usize>) -> String {
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
    indent(
        &mut out,
        &crate::history::history_table(&s.history, inner(width)),
    );
    out
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
        let width = Some(width_budget());
        let text = match kind {
            Kind::Experiments => {
                let items: Vec<Experiment> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                let mut out = String::new();
                for e in &items {
                    let selector =
                        format!("{EXPERIMENT_UID_LABEL}={}", e.uid().unwrap_or_default());
                    // In firedrill's own namespace, not the Experiment's: found by UID.
                    let injections: Vec<Injection> =
                        fetch(&client, &Scope::All, None, "injections", Some(&selector)).await?;
                    out.push_str(&describe_experiment(e, &injections, now, width));
                }
                out
            }
            Kind::Gamedays => {
                let items: Vec<GameDay> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                items
                    .iter()
                    .map(|g| describe_gameday(g, now, width))
                    .collect()
            }
            Kind::Drills => {
                let items: Vec<DrillSchedule> =
                    fetch(&client, &scope, Some(name), kind.resource(), None).await?;
                items
                    .iter()
                    .map(|d| describe_drill(d, now, width))
                    .collect()
            }
        };
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::{ExperimentStatus, Phase};

    use super::*;
    use crate::fixtures::experiment;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
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
        let text = describe_experiment(&e, &[], at(10), Some(120));
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
        let text = describe_experiment(&e, &[], at(10), Some(120));
        let row = text
            .lines()
            .find(|l| l.contains("p99-latency"))
            .unwrap_or_else(|| panic!("{text}"));
        for figure in ["41", "7.0s", "4808", "10.0s", "2.1s"] {
            assert!(row.contains(figure), "{figure} in {row}");
        }
        assert!(
            text.contains("lapses 1, longest 8.2s (last: chain fd-x-in gone)"),
            "{text}"
        );
    }

    #[test]
    fn describe_tables_are_indented_aligned_and_fit_the_width() {
        let mut g = crate::fixtures::game_day("q");
        g.status = Some(firedrill_core::api::GameDayStatus {
            results: vec![firedrill_core::api::StepResult {
                name: "zone-blackout".into(),
                experiment: Some("q-zone-blackout-with-a-much-longer-object-name".into()),
                verdict: Some(firedrill_core::api::Verdict::Failed),
                reason: Some("SLO delivery broken ".repeat(10)),
                failed_probes: vec!["delivery".into()],
                ..Default::default()
            }],
            ..Default::default()
        });
        let text = describe_gameday(&g, at(10), Some(120));
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "Steps:")
            .skip(1)
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        assert!(table[0].starts_with("  STEP "), "{text}");
        let verdict = table[0].find("VERDICT").unwrap();
        assert_eq!(table[1].find("Failed"), Some(verdict), "{text}");
        assert_eq!(table[2].find("-  "), table[0].find("OBJECT"), "{text}");
        for line in &table {
            assert!(line.chars().count() <= 120, "{line:?}");
        }
        assert!(table[1].ends_with('…'), "{text}");
    }
}
