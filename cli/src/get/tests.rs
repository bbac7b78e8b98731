//! The unit tests of `get`'s tables.

use chrono::TimeZone;
use firedrill_core::api::{
    DrillRecord, DrillScheduleStatus, ExperimentStatus, GameDayStatus, Phase, Verdict,
};

use super::*;
use crate::fixtures::{drill, experiment, game_day, injection};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 11, 14, 22, 23, 20).unwrap()
}

/// Where each header starts; every row's cell must start at the same place.
fn header_starts(text: &str, table: &Table) -> Vec<usize> {
    let header = text.lines().next().unwrap();
    table
        .headers()
        .iter()
        .map(|h| header.find(h).unwrap_or_else(|| panic!("{h} in {text}")))
        .collect()
}

#[test]
fn experiment_rows_show_phase_verdict_fault_and_namespace() {
    let mut e = experiment("zb");
    e.status = Some(ExperimentStatus {
        phase: Phase::Completed,
        verdict: Some(Verdict::Passed),
        ..Default::default()
    });
    let all = View {
        all_namespaces: true,
        ..Default::default()
    };
    let t = experiments_table(&[e.clone(), experiment("pending")], None, all, now());
    let t = t.render(Some(120));
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
    let t = experiments_table(&[e], None, View::default(), now()).render(Some(120));
    assert!(t.starts_with("NAME "), "{t}");
}

#[test]
fn a_long_experiment_name_keeps_every_column_aligned() {
    // As long as a name can be with the other columns and a cut REASON in 120.
    let long = "quarterly-dr-20260101-090000-zone-blackout-zone-a";
    let mut failing = experiment(long);
    failing.status = Some(ExperimentStatus {
        phase: Phase::Completed,
        verdict: Some(Verdict::Failed),
        reason: Some(format!(
            "SLO delivery broken: {}",
            "ratio 0.41 < 0.99; ".repeat(8)
        )),
        ..Default::default()
    });
    let items = [experiment("zb"), failing];
    let table = experiments_table(&items, None, View::default(), now());
    let text = table.render(Some(120));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let starts = header_starts(&text, &table);
    for line in &lines[1..] {
        // The PHASE and AGE cells start under their headers, whatever the name's length.
        assert_eq!(
            line.find("Pending").or(line.find("Completed")),
            Some(starts[1])
        );
        assert_eq!(line.find("10m"), Some(starts[5]), "{text}");
        assert!(line.chars().count() <= 120, "{line:?} over budget");
    }
    assert!(lines[2].starts_with(long), "the name is whole: {text}");
    assert!(lines[2].ends_with('…'), "the reason is cut: {text}");
}

#[test]
fn wide_adds_targets_detail_nodes_and_figures() {
    let mut e = experiment("zb");
    e.status = Some(ExperimentStatus {
        phase: Phase::Completed,
        verdict: Some(Verdict::Passed),
        reason: Some("all probes held".into()),
        time_to_recover_seconds: Some(7.5),
        messages_lost: Some(0),
        ..Default::default()
    });
    let injections = [
        injection("zb-b", "talk/zb", "node-b"),
        injection("zb-a", "talk/zb", "node-a"),
        injection("zb-a2", "talk/zb", "node-a"),
        injection("other", "talk/other", "node-c"),
    ];
    let narrow = experiments_table(&[e.clone()], Some(&injections), View::default(), now());
    let wide_view = View {
        wide: true,
        ..Default::default()
    };
    let wide = experiments_table(&[e.clone()], Some(&injections), wide_view, now());
    assert_eq!(
        wide.headers(),
        [
            "NAME",
            "PHASE",
            "VERDICT",
            "FAULT",
            "FAULT STATE",
            "AGE",
            "TARGETS",
            "DETAIL",
            "NODES",
            "DURATION",
            "RECOVERY",
            "LOST",
            "REASON"
        ]
    );
    assert_eq!(narrow.headers().len() + 6, wide.headers().len());
    let text = wide.render(None);
    let row = text.lines().nth(1).unwrap();
    for cell in [
        "talk",
        "zone-a Kill",
        "node-a,node-b",
        "30s",
        "7.5s",
        "all probes held",
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }
    assert!(!row.contains("node-c"), "{row}");
    assert!(
        row.ends_with("all probes held"),
        "free text stays last: {row}"
    );
    // Injections that could not be read, and none at all.
    let text = experiments_table(&[e.clone()], None, wide_view, now()).render(None);
    assert!(text.contains("<unknown>"), "{text}");
    let text = experiments_table(&[e], Some(&[]), wide_view, now()).render(None);
    assert!(text.contains("<none>"), "{text}");
}

#[test]
fn game_day_and_drill_tables_have_wide_columns() {
    let mut g = game_day("q");
    g.status = Some(GameDayStatus {
        progress: Some("1/2".into()),
        started_at: Some(now() - chrono::Duration::seconds(600)),
        message: Some("pause before disk-loss".into()),
        ..Default::default()
    });
    let t = gamedays_table(std::slice::from_ref(&g), View::default(), now());
    assert_eq!(
        t.headers(),
        ["NAME", "PHASE", "VERDICT", "STEP", "AGE", "REPORT"]
    );
    let text = t.render(Some(120));
    assert!(text.lines().nth(1).unwrap().contains("1/2"), "{text}");
    let wide = View {
        wide: true,
        all_namespaces: true,
    };
    let t = gamedays_table(&[g], wide, now());
    assert_eq!(t.headers().len(), 11);
    let text = t.render(None);
    let row = text.lines().nth(1).unwrap();
    for cell in [
        "talk",
        "zone-blackout,disk-loss",
        "Stop",
        "10m so far",
        "pause before",
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }

    let mut d = drill("quarterly");
    d.status = Some(DrillScheduleStatus {
        last_verdict: Some(Verdict::Passed),
        history: vec![DrillRecord {
            game_day: "quarterly-3".into(),
            scheduled_for: now(),
            started_at: None,
            finished_at: None,
            verdict: Some(Verdict::Passed),
            passed: Some(4),
            failed: Some(0),
            note: None,
        }],
        ..Default::default()
    });
    let t = drills_table(std::slice::from_ref(&d), View::default(), now());
    let text = t.render(Some(120));
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.starts_with("quarterly ") && row.contains("(Asia/Seoul)"),
        "{text}"
    );
    let t = drills_table(&[d], wide, now());
    let text = t.render(None);
    let row = text.lines().nth(1).unwrap();
    for cell in ["blackout", "Forbid", "quarterly-3"] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }
}

#[test]
fn fault_details_name_the_parameters() {
    let e = experiment("zb");
    assert_eq!(fault_detail(&e.spec.fault), "zone-a Kill");
    let partition: Fault = serde_json::from_value(serde_json::json!({
        "networkPartition": {
            "left": {"zones": ["zone-a"]},
            "right": {"selector": {"matchLabels": {"app": "nats"}}},
            "direction": "Both"
        }
    }))
    .unwrap();
    assert_eq!(fault_detail(&partition), "zone-a | pods app=nats Both");
}

#[test]
fn nothing_found_says_where_it_looked() {
    assert_eq!(
        nothing_found(Kind::Gamedays, &Scope::Namespace(None), "talk"),
        "no gamedays found in namespace talk"
    );
    assert_eq!(
        nothing_found(Kind::Experiments, &Scope::All, "talk"),
        "no experiments found in any namespace"
    );
    let empty: Vec<Experiment> = Vec::new();
    for format in [Format::Table, Format::Wide] {
        let text = render(&empty, false, format, |i| {
            experiments_table(i, None, View::default(), now())
        })
        .unwrap();
        assert_eq!(text, None, "an empty table prints nothing on stdout");
    }
    let text = render(&empty, false, Format::Json, |_| Table::default()).unwrap();
    assert!(text.unwrap().contains("\"kind\": \"List\""));
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
