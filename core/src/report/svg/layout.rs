//! Where a timeline's parts go, in SVG user units.

pub(super) const WIDTH: f64 = 800.0;
/// Room for the value labels left of the plots.
pub(super) const LEFT: f64 = 80.0;
pub(super) const RIGHT: f64 = 24.0;
/// Room for the title, the legend and the marker labels above the first plot.
pub(super) const TOP: f64 = 76.0;
/// One series: its name, its plot, and a gap before the next.
pub(super) const SLOT: f64 = 108.0;
pub(super) const LABEL: f64 = 16.0;
pub(super) const PLOT: f64 = 80.0;
/// Room for the time axis below the last plot.
pub(super) const BOTTOM: f64 = 36.0;
/// Keeps lines off the plot's frame.
pub(super) const PAD: f64 = 4.0;
