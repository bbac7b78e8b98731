//! One series' small line chart in a timeline.

use std::fmt::Write as _;

use super::axis::Axis;
use super::layout::{LABEL, LEFT, PAD, PLOT, RIGHT, SLOT, TOP, WIDTH};
use super::palette::SERIES;
use super::text::{num, value};
use crate::report::xml::escape_text;
use crate::report::{Point, Series};

/// One series' chart: its name, its frame, its min and max, and its line with gaps where
/// the SLI could not be read.
pub(super) fn panel(out: &mut String, axis: &Axis, index: usize, series: &Series) {
    let slot_top = TOP + index as f64 * SLOT;
    let plot_top = slot_top + LABEL;
    let plot_bottom = plot_top + PLOT;
    let color = SERIES[index % SERIES.len()];
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" style=\"fill:{color}\">{}</text>",
        num(LEFT),
        num(slot_top + 12.0),
        escape_text(&series.name),
    );
    frame(out, plot_top);

    let mut points: Vec<&Point> = series.points.iter().collect();
    points.sort_by_key(|p| p.at);
    let finite = |p: &Point| p.value.filter(|v| v.is_finite());
    let values: Vec<f64> = points.iter().filter_map(|p| finite(p)).collect();
    let (Some(lo), Some(hi)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        let _ = writeln!(
            out,
            "<text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>",
            num(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
            num(plot_top + PLOT / 2.0),
        );
        return;
    };

    let y = |v: f64| {
        // Halves first, so that a range near f64::MAX cannot overflow to infinity.
        let range = hi / 2.0 - lo / 2.0;
        let fraction = if range > 0.0 {
            ((v / 2.0 - lo / 2.0) / range).clamp(0.0, 1.0)
        } else {
            0.5
        };
        plot_bottom - PAD - fraction * (PLOT - 2.0 * PAD)
    };
    let label_x = num(LEFT - 6.0);
    if hi > lo {
        let _ = writeln!(
            out,
            "<text x=\"{label_x}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <text x=\"{label_x}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            num(plot_top + PAD + 4.0),
            value(hi),
            num(plot_bottom - PAD),
            value(lo),
        );
    } else {
        let _ = writeln!(
            out,
            "<text x=\"{label_x}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            num(plot_top + PLOT / 2.0 + 4.0),
            value(lo),
        );
    }

    // Runs of readable points become subpaths; a lone point between gaps becomes a dot.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for point in &points {
        match (finite(point), axis.offset(Some(point.at))) {
            (Some(v), Some(t)) => {
                if let Some(run) = runs.last_mut() {
                    run.push((axis.x(t), y(v)));
                }
            }
            _ => {
                if runs.last().is_some_and(|run| !run.is_empty()) {
                    runs.push(Vec::new());
                }
            }
        }
    }
    let mut d = String::new();
    let mut dots = String::new();
    for run in runs.iter().filter(|run| !run.is_empty()) {
        for (i, (x, y)) in run.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if i == 0 { "M" } else { " L" },
                num(*x),
                num(*y)
            );
        }
        d.push(' ');
        if let [(x, y)] = run.as_slice() {
            let _ = writeln!(
                dots,
                "<circle cx=\"{}\" cy=\"{}\" r=\"2\" fill=\"{color}\"/>",
                num(*x),
                num(*y)
            );
        }
    }
    let _ = writeln!(
        out,
        "<path class=\"line\" stroke=\"{color}\" d=\"{}\"/>",
        d.trim_end()
    );
    out.push_str(&dots);
}

/// A plot's frame.
pub(super) fn frame(out: &mut String, plot_top: f64) {
    let _ = writeln!(
        out,
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
        num(LEFT),
        num(plot_top),
        num(WIDTH - LEFT - RIGHT),
        num(PLOT),
    );
}
