//! The shared time axis of a timeline.

use chrono::{DateTime, Utc};

use super::layout::{LEFT, RIGHT, WIDTH};
use crate::report::ExperimentReport;

/// The shared time axis: seconds from the experiment's start (or, without one, from the
/// earliest timestamp), covering every timestamp the experiment has.
pub(super) struct Axis {
    pub(super) origin: Option<DateTime<Utc>>,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Axis {
    pub(super) fn of(e: &ExperimentReport) -> Self {
        let stamps = [
            e.started_at,
            e.injected_at,
            e.reverted_at,
            e.recovered_at,
            e.finished_at,
        ]
        .into_iter()
        .flatten()
        .chain(e.timeline.iter().map(|t| t.at))
        .chain(e.series.iter().flat_map(|s| s.points.iter().map(|p| p.at)));
        let origin = e.started_at.or_else(|| stamps.clone().min());
        let mut axis = Self {
            origin,
            min: 0.0,
            max: 0.0,
        };
        for at in stamps {
            if let Some(offset) = axis.offset(Some(at)) {
                axis.min = axis.min.min(offset);
                axis.max = axis.max.max(offset);
            }
        }
        // A zero-length axis would divide by zero; give it a second.
        if axis.max - axis.min < 0.001 {
            axis.max = axis.min + 1.0;
        }
        axis
    }

    pub(super) fn offset(&self, at: Option<DateTime<Utc>>) -> Option<f64> {
        Some((at? - self.origin?).num_milliseconds() as f64 / 1000.0)
    }

    pub(super) fn x(&self, seconds: f64) -> f64 {
        LEFT + (seconds - self.min) / (self.max - self.min) * (WIDTH - LEFT - RIGHT)
    }

    /// About six round ticks (1, 2 or 5 times a power of ten) with their labels.
    pub(super) fn ticks(&self) -> Vec<(f64, String)> {
        let span = self.max - self.min;
        let mut step = None;
        'search: for exponent in -3..=13 {
            for mantissa in [1.0, 2.0, 5.0] {
                let candidate = mantissa * 10f64.powi(exponent);
                if candidate * 6.0 >= span {
                    step = Some((candidate, usize::try_from(-exponent).unwrap_or(0)));
                    break 'search;
                }
            }
        }
        let Some((step, decimals)) = step else {
            return Vec::new();
        };
        let first = (self.min / step).ceil() as i64;
        let last = (self.max / step).floor() as i64;
        (first..=last.min(first + 20))
            .map(|k| {
                let at = k as f64 * step;
                (at, format!("{at:.decimals$}"))
            })
            .collect()
    }
}
