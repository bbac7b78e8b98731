//! The colours of every picture firedrill draws (the report's timelines, chaosctl's drill
//! trend), so a verdict, a fault window or a grid line looks the same in each. The hues are
//! the Tableau 10 set: distinct for most colour-blind readers and on paper.

use crate::api::Verdict;

pub const BLUE: &str = "#1f77b4";
pub const ORANGE: &str = "#ff7f0e";
pub const GREEN: &str = "#2ca02c";
pub const RED: &str = "#d62728";
pub const PURPLE: &str = "#9467bd";
pub const BROWN: &str = "#8c564b";
pub const PINK: &str = "#e377c2";
pub const GREY: &str = "#7f7f7f";
pub const CYAN: &str = "#17becf";

/// Text.
pub const INK: &str = "#333";
/// Secondary text: legends, axis notes.
pub const MUTED: &str = "#666";
/// Event markers (inject, revert, recovered).
pub const MARKER: &str = "#555";
/// Plot frames and ticks.
pub const FRAME: &str = "#bbb";
/// Grid lines.
pub const GRID: &str = "#eee";
/// The background.
pub const PAPER: &str = "#fff";

/// The fault window (inject → revert): the colour of a failure.
pub const FAULT: &str = RED;
/// The recovery window (revert → recovered).
pub const RECOVERY: &str = ORANGE;

/// One colour per data series, in order, without the windows' red and orange.
pub const SERIES: [&str; 6] = [BLUE, GREEN, PURPLE, CYAN, BROWN, PINK];

/// A verdict's colour; no verdict yet (not run, still running) is grey like a skip.
pub fn verdict(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Passed) => GREEN,
        Some(Verdict::Failed) => RED,
        Some(Verdict::Aborted) => ORANGE,
        Some(Verdict::Skipped) | None => GREY,
    }
}
