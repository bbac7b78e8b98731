//! The experiment engine: a pure function from (spec, recorded status, time, observations) to
//! the next status and the actions a platform must carry out. No I/O happens here, so the
//! operator and the lab share it and every path is testable without mocks.
//!
//! [`step`] drives one step over the step's state (`run`): `observe` takes in what the
//! platform saw, `phases` moves the lifecycle on and settles the verdict, `conditions`
//! writes the status conditions; `types` is what goes in and comes out.

mod conditions;
mod observe;
mod phases;
mod run;
mod step;
mod types;

pub use step::step;
pub use types::{Action, INJECT_TIMEOUT, Observation, Outcome, Transition, VERIFY_PATIENCE};
