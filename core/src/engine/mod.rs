//! The experiment engine: a pure function from (spec, recorded status, time, observations) to
//! the next status and the actions a platform must carry out. No I/O happens here, so the
//! operator and the lab share it and every path is testable without mocks.

mod step;

pub use step::{Action, INJECT_TIMEOUT, Observation, Outcome, Transition, VERIFY_PATIENCE, step};
