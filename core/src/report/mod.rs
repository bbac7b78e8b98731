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
