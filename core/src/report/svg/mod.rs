//! SVG, for the picture: one experiment's SLIs over time against its fault and recovery
//! windows, so a reader sees at a glance when the system broke and when it came back.
//!
//! Also the one SVG toolkit of the workspace, public for chaosctl's drill trend: [`open`]
//! starts a document, [`palette`] has every colour, and [`escape_text`] / [`escape_attr`]
//! (the reports' XML escaping) make any text safe in it.
//!
//! The timeline's document, time grid, windows and markers are here; `layout` is where
//! things go, `axis` maps time to x, `panel` draws one series, `text` formats numbers.

mod axis;
mod layout;
pub mod palette;
mod panel;
mod text;

use std::fmt::Write as _;

use self::axis::Axis;
use self::layout::{BOTTOM, LABEL, LEFT, PLOT, RIGHT, SLOT, TOP, WIDTH};
use self::panel::{frame, panel};
use self::text::{num, value};
use super::ExperimentReport;
use super::model::verdict_name;
pub use super::xml::{escape_attr, escape_text};

/// Starts a self-contained SVG document `width` × `height` units big: the root element,
/// labelled `label` for screen readers and as its title; the shared style (text, `.title`,
/// `.small`, `.frame`, `.grid`) followed by the picture's own `style` rules; a background.
/// The caller draws the rest and writes `</svg>` last.
pub fn open(out: &mut String, width: f64, height: f64, label: &str, style: &str) {
    use palette::{FRAME, GRID, INK, MUTED, PAPER};
    let (w, h) = (num(width), num(height));
    // `write!` into a `String` cannot fail, so its results are ignored throughout.
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape_attr(label),
    );
    let _ = writeln!(out, "<title>{}</title>", escape_text(label));
    let _ = writeln!(
        out,
        "<style>text{{font-family:sans-serif;font-size:11px;fill:{INK}}}\
         .title{{font-size:15px;font-weight:bold}}.small{{font-size:10px;fill:{MUTED}}}\
         .frame{{fill:none;stroke:{FRAME}}}.grid{{stroke:{GRID}}}{style}</style>",
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"{PAPER}\"/>"
    );
}

/// One experiment's timeline as a self-contained SVG: every [`Series`](super::Series) as
/// its own small line chart, stacked on a shared time axis in seconds from the experiment's
/// start, with the fault window (injection to revert) and the recovery window (revert to
/// recovery) shaded.
///
/// Deterministic: the same experiment always gives the same bytes, so reports can be
/// diffed and committed. Missing timestamps, values and series draw less, never panic.
pub fn timeline_svg(experiment: &ExperimentReport) -> String {
    let axis = Axis::of(experiment);
    let panels = experiment.series.len().max(1);
    let plots_bottom = TOP + panels as f64 * SLOT - (SLOT - LABEL - PLOT);
    let height = plots_bottom + BOTTOM;
    let verdict = verdict_name(experiment.verdict);
    let name = escape_text(&experiment.name);

    let mut out = String::new();
    open(
        &mut out,
        WIDTH,
        height,
        &format!("Timeline of {}: {verdict}", experiment.name),
        &format!(
            ".line{{fill:none;stroke-width:1.5;stroke-linejoin:round}}\
             .marker{{stroke:{};stroke-dasharray:4 3}}",
            palette::MARKER
        ),
    );

    // Title and legend.
    let _ = writeln!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"22\">{name} · {} · <tspan fill=\"{}\">{verdict}</tspan></text>",
        num(LEFT),
        escape_text(&experiment.fault),
        palette::verdict(Some(experiment.verdict)),
    );
    legend(&mut out);

    // Grid, windows and markers span the whole column of plots.
    let top = TOP;
    for (x, label) in axis.ticks() {
        let x = axis.x(x);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>",
            num(top),
            num(plots_bottom),
            x = num(x)
        );
        let _ = writeln!(
            out,
            "<line class=\"frame\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\n\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            num(plots_bottom),
            num(plots_bottom + 4.0),
            num(plots_bottom + 15.0),
            x = num(x)
        );
    }
    let _ = writeln!(
        out,
        "<text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since {}</text>",
        num(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
        num(plots_bottom + 30.0),
        if experiment.started_at.is_some() {
            "experiment start"
        } else {
            "first sample"
        },
    );
    let injected = axis.offset(experiment.injected_at);
    let reverted = axis.offset(experiment.reverted_at);
    let recovered = axis.offset(experiment.recovered_at);
    if let Some(start) = injected {
        // Without a revert the fault may still have been on at the end.
        band(
            &mut out,
            &axis,
            "fault",
            start,
            reverted.unwrap_or(axis.max),
            plots_bottom,
        );
    }
    if let Some(start) = reverted {
        band(
            &mut out,
            &axis,
            "recovery",
            start,
            recovered.unwrap_or(axis.max),
            plots_bottom,
        );
    }
    let markers = [
        ("inject", injected),
        ("revert", reverted),
        ("recovered", recovered),
    ];
    for (i, (label, at)) in markers.into_iter().enumerate() {
        if let Some(at) = at {
            let x = num(axis.x(at));
            let _ = writeln!(
                out,
                "<line class=\"marker\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\n\
                 <text class=\"small\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                num(top - 2.0),
                num(plots_bottom),
                num(top - 14.0 + 10.0 * (i % 2) as f64),
            );
        }
    }

    if experiment.series.is_empty() {
        let plot_top = TOP + LABEL;
        frame(&mut out, plot_top);
        let _ = writeln!(
            out,
            "<text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no SLI series recorded</text>",
            num(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
            num(plot_top + PLOT / 2.0),
        );
    }
    for (i, series) in experiment.series.iter().enumerate() {
        panel(&mut out, &axis, i, series);
    }
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String) {
    let items = [
        ("fault", "fault window (inject → revert)"),
        ("recovery", "recovery window (revert → recovered)"),
    ];
    let mut x = LEFT;
    for (class, label) in items {
        let (fill, _) = band_colors(class);
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"34\" width=\"12\" height=\"10\" fill=\"{fill}\" fill-opacity=\"0.25\"/>\n\
             <text class=\"small\" x=\"{}\" y=\"43\">{}</text>",
            num(x),
            num(x + 16.0),
            escape_text(label),
        );
        x += 220.0;
    }
}

fn band_colors(class: &str) -> (&'static str, &'static str) {
    match class {
        "fault" => (palette::FAULT, "fault window"),
        _ => (palette::RECOVERY, "recovery window"),
    }
}

fn band(out: &mut String, axis: &Axis, class: &str, from: f64, to: f64, bottom: f64) {
    let (fill, title) = band_colors(class);
    let (a, b) = (axis.x(from.min(to)), axis.x(from.max(to)));
    let _ = writeln!(
        out,
        "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" \
         fill-opacity=\"0.15\"><title>{title}: {}s to {}s</title></rect>",
        num(a),
        num(TOP),
        num(b - a),
        num(bottom - TOP),
        value(from),
        value(to),
    );
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::api::{Phase, TimelineEntry, Verdict};
    use crate::report::xml::tests::well_formed;
    use crate::report::{Point, Series};

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .unwrap()
    }

    fn series(name: &str, points: &[(i64, Option<f64>)]) -> Series {
        Series {
            name: name.to_owned(),
            points: points
                .iter()
                .map(|&(t, value)| Point { at: at(t), value })
                .collect(),
        }
    }

    /// An experiment whose series cover the awkward cases: a gap, all-`None`, no points,
    /// a constant, a single point, a lone point between gaps, and huge values.
    fn experiment() -> ExperimentReport {
        ExperimentReport {
            name: "zone <a> & 'b'".to_owned(),
            fault: "zoneBlackout".to_owned(),
            verdict: Verdict::Failed,
            reason: Some("SLO broken".to_owned()),
            time_to_impact_seconds: Some(2.0),
            time_to_recover_seconds: None,
            slis: vec![],
            messages_lost: Some(3),
            messages_duplicated: None,
            failed_probes: Vec::new(),
            started_at: Some(at(0)),
            injected_at: Some(at(10)),
            reverted_at: Some(at(40)),
            recovered_at: Some(at(55)),
            finished_at: Some(at(60)),
            timeline: vec![TimelineEntry {
                at: at(0),
                phase: Phase::SteadyStateBefore,
                message: "steady".to_owned(),
            }],
            series: vec![
                series(
                    "deliverySuccessRatio",
                    &[
                        (0, Some(1.0)),
                        (10, Some(0.99)),
                        (20, None),
                        (30, Some(0.41)),
                        (50, Some(0.97)),
                    ],
                ),
                series("unreadable", &[(0, None), (30, None)]),
                series("empty", &[]),
                series(
                    "constant",
                    &[(0, Some(5.0)), (30, Some(5.0)), (60, Some(5.0))],
                ),
                series("single", &[(25, Some(-3.5))]),
                series(
                    "lone",
                    &[
                        (0, Some(1.0)),
                        (10, None),
                        (20, Some(f64::NAN)),
                        (25, Some(2.0)),
                        (30, None),
                    ],
                ),
                series(
                    "huge",
                    &[
                        (0, Some(f64::MAX)),
                        (30, Some(-f64::MAX)),
                        (35, Some(f64::INFINITY)),
                    ],
                ),
            ],
        }
    }

    fn assert_sane(svg: &str) {
        well_formed(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        for bad in [
            "NaN",
            "inf",
            "<script",
            "href",
            "url(",
            "@import",
            "@font-face",
        ] {
            assert!(!svg.contains(bad), "{bad} in\n{svg}");
        }
    }

    #[test]
    fn one_path_per_series_with_data() {
        let svg = timeline_svg(&experiment());
        assert_sane(&svg);
        // deliverySuccessRatio, constant, single, lone, huge; not unreadable or empty.
        assert_eq!(svg.matches("<path ").count(), 5, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 0);
        assert_eq!(svg.matches(">no data</text>").count(), 2);
        for name in [
            "deliverySuccessRatio",
            "unreadable",
            "empty",
            "constant",
            "single",
        ] {
            assert!(svg.contains(&format!(">{name}</text>")), "{name}");
        }
    }

    #[test]
    fn gaps_split_the_line() {
        let svg = timeline_svg(&experiment());
        let paths: Vec<&str> = svg.lines().filter(|l| l.starts_with("<path ")).collect();
        // The gap at 20s splits the first series in two subpaths.
        assert_eq!(paths[0].matches('M').count(), 2, "{}", paths[0]);
        assert_eq!(paths[0].matches('L').count(), 2, "{}", paths[0]);
        // Lone points (single, and both points of lone) are dots.
        assert_eq!(svg.matches("<circle ").count(), 3, "{svg}");
    }

    #[test]
    fn labels_show_min_and_max() {
        let svg = timeline_svg(&experiment());
        assert!(svg.contains("text-anchor=\"end\">1</text>"));
        assert!(svg.contains("text-anchor=\"end\">0.41</text>"));
        assert!(svg.contains("text-anchor=\"end\">5</text>"));
        assert!(svg.contains("text-anchor=\"end\">-3.5</text>"));
        assert!(svg.contains("text-anchor=\"end\">1.80e308</text>"));
        assert!(svg.contains(">seconds since experiment start</text>"));
        assert!(
            svg.contains(">0</text>") && svg.contains(">60</text>"),
            "{svg}"
        );
    }

    #[test]
    fn windows_markers_and_title() {
        let svg = timeline_svg(&experiment());
        // 10s..40s and 40s..55s on a 0..60s axis 696px wide from x=80.
        assert!(
            svg.contains("<rect class=\"fault\" x=\"196.0\" y=\"76.0\" width=\"348.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("<rect class=\"recovery\" x=\"544.0\" y=\"76.0\" width=\"174.0\""),
            "{svg}"
        );
        assert_eq!(svg.matches("<line class=\"marker\"").count(), 3);
        assert!(
            svg.contains("<title>Timeline of zone &lt;a&gt; &amp; &apos;b&apos;: Failed</title>")
        );
        assert!(svg.contains(">Failed</tspan>"));
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(
            timeline_svg(&experiment()),
            timeline_svg(&experiment().clone())
        );
    }

    #[test]
    fn degenerate_experiments_do_not_panic() {
        let mut bare = experiment();
        bare.series.clear();
        bare.timeline.clear();
        for stamp in [
            &mut bare.started_at,
            &mut bare.injected_at,
            &mut bare.reverted_at,
            &mut bare.recovered_at,
            &mut bare.finished_at,
        ] {
            *stamp = None;
        }
        let svg = timeline_svg(&bare);
        assert_sane(&svg);
        assert!(svg.contains("no SLI series recorded"));
        assert!(!svg.contains("class=\"fault\"") && !svg.contains("class=\"marker\""));

        // No start, only samples: the axis starts at the first sample.
        let mut unanchored = bare.clone();
        unanchored.series = vec![series("late", &[(100, Some(1.0)), (130, Some(2.0))])];
        let svg = timeline_svg(&unanchored);
        assert_sane(&svg);
        assert!(svg.contains("seconds since first sample"));
        assert!(svg.contains(">30</text>"));

        // Injected but never reverted: the fault window runs to the end, no recovery window.
        let mut stuck = experiment();
        stuck.reverted_at = None;
        stuck.recovered_at = None;
        let svg = timeline_svg(&stuck);
        assert_sane(&svg);
        assert!(svg.contains("<rect class=\"fault\" x=\"196.0\" y=\"76.0\" width=\"580.0\""));
        assert!(!svg.contains("class=\"recovery\""));

        // Everything at one instant, points out of order, points before the start.
        let mut instant = bare.clone();
        instant.started_at = Some(at(0));
        instant.series = vec![
            series("same", &[(0, Some(1.0)), (0, Some(2.0))]),
            series("backwards", &[(5, Some(1.0)), (-5, Some(2.0)), (0, None)]),
        ];
        assert_sane(&timeline_svg(&instant));
        instant.series.truncate(1);
        assert_sane(&timeline_svg(&instant));
    }
}
