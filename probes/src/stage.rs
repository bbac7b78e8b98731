//! A stage's probes sampled together, as the engine asks for them.

use std::time::SystemTime;

use firedrill_core::api::{ExperimentSpec, Stage};
use firedrill_core::engine::Observation;
use futures_util::future::join_all;

use crate::Prober;

impl Prober {
    /// Carries out the engine's `Sample { stage, probes }`: samples the named probes of that
    /// stage (the abort conditions for [`Stage::Abort`], the hypothesis otherwise) at once and
    /// returns one observation each, all stamped with the time the last one answered.
    pub async fn sample_stage(
        &self,
        spec: &ExperimentSpec,
        stage: Stage,
        names: &[String],
    ) -> Vec<Observation> {
        let probes = match stage {
            Stage::Abort => &spec.abort_conditions,
            _ => &spec.hypothesis.probes,
        };
        let wanted: Vec<_> = probes.iter().filter(|p| names.contains(&p.name)).collect();
        let outcomes = join_all(wanted.iter().map(|p| self.sample(p))).await;
        let at = SystemTime::now().into();
        wanted
            .iter()
            .zip(outcomes)
            .map(|(p, outcome)| Observation::Sample {
                probe: p.name.clone(),
                stage,
                at,
                outcome,
            })
            .collect()
    }
}
