//! Game-day reports: one data model, rendered as Markdown, JSON, JUnit XML and SVG.
//!
//! Pure: the runner (lab or operator) fills a [`GameDayReport`]; rendering does no I/O.
//! `model` is the data, `xml` the escaping JUnit and SVG share, and each renderer has its
//! own module; [`svg`] is also the SVG toolkit (document, palette, escaping) chaosctl draws
//! with.

mod json;
mod junit;
mod markdown;
mod model;
pub mod svg;
mod xml;

pub use json::json;
pub use junit::junit;
pub use markdown::markdown;
pub use model::{ExperimentReport, FailedProbe, GameDayReport, Point, Series};
pub use svg::timeline_svg;

use crate::api::SliFigures;

/// What stands for a time to recover that was not needed: the SLIs that left their
/// tolerance were back within it before the revert.
pub const HEALED_WHILE_HELD: &str = "healed while held";

/// A time to recover written by `seconds`, or [`HEALED_WHILE_HELD`] when there is none
/// because one of `slis` healed while the fault held (see
/// [`SliFigures::healed_while_held`]). Every report and table says it the same way.
pub fn recovery(
    time_to_recover: Option<f64>,
    slis: &[SliFigures],
    seconds: impl Fn(Option<f64>) -> String,
) -> String {
    match time_to_recover {
        None if slis.iter().any(|f| f.healed_while_held) => HEALED_WHILE_HELD.to_owned(),
        t => seconds(t),
    }
}

/// A measured SLI value (a worst value) as every report and table writes it: a tenth for
/// values of 100 and more (milliseconds), thousandths below (ratios), without trailing
/// zeros. The raw float (`5509.270125000001`) claims a precision no sample has.
pub fn measured(value: f64) -> String {
    let decimals = if value.abs() >= 100.0 { 1 } else { 3 };
    let text = format!("{value:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" | "" => "0".to_owned(),
        t => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_values_keep_the_digits_that_mean_something() {
        assert_eq!(measured(5509.270125000001), "5509.3");
        assert_eq!(measured(1008.14871), "1008.1");
        assert_eq!(measured(4808.0), "4808");
        assert_eq!(measured(15005.0), "15005");
        assert_eq!(measured(0.95), "0.95");
        assert_eq!(measured(0.9512345), "0.951");
        assert_eq!(measured(1.0), "1");
        assert_eq!(measured(0.0), "0");
        assert_eq!(measured(-0.0001), "0");
        assert_eq!(measured(-2.5), "-2.5");
    }

    fn seconds(v: Option<f64>) -> String {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}s"))
    }

    #[test]
    fn a_time_to_recover_not_needed_says_why() {
        let healed = SliFigures {
            name: "p99-latency".into(),
            unhealthy_seconds: 2.0,
            healed_while_held: true,
            ..SliFigures::default()
        };
        let steady = SliFigures {
            name: "delivery".into(),
            ..SliFigures::default()
        };
        let both = [steady.clone(), healed];
        assert_eq!(recovery(None, &both, seconds), HEALED_WHILE_HELD);
        assert_eq!(recovery(None, &[steady], seconds), "-");
        // Another SLI's measured recovery is the experiment's figure.
        assert_eq!(recovery(Some(4.25), &both, seconds), "4.2s");
    }
}
