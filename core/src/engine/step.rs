//! One step of the engine: observations in, the next status and the actions out.

use chrono::{DateTime, Utc};

use super::run::Run;
use super::types::{Observation, Transition};
use crate::api::{ExperimentSpec, ExperimentStatus};

/// Advances an experiment. Deterministic: the same inputs always give the same transition, and
/// everything needed to continue is in the returned status.
pub fn step(
    spec: &ExperimentSpec,
    status: &ExperimentStatus,
    now: DateTime<Utc>,
    observations: &[Observation],
) -> Transition {
    let mut run = Run {
        spec,
        s: status.clone(),
        now,
        actions: Vec::new(),
    };
    run.s.fault = Some(spec.fault.name().to_owned());
    for observation in observations {
        run.observe(observation);
    }
    // Each pass either changes phase or settles; the lifecycle has eight phases.
    for _ in 0..16 {
        let before = run.s.phase;
        run.advance();
        if run.s.phase == before {
            break;
        }
    }
    run.update_conditions();
    Transition {
        status: run.s,
        actions: run.actions,
    }
}
