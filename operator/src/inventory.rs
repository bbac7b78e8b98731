//! What exists right now, for the gauges: the Experiments by phase, the Injections by state,
//! how far past its expiry the oldest applied Injection is, and how long each node's oldest
//! Injection has waited for its agent.
//!
//! Every replica, leader or standby, keeps two reflector stores (the Experiments the
//! controller watches, the Injections it writes) and counts them at scrape time, so a
//! deleted object stops counting as soon as its watch event arrives and the figures do not
//! depend on a leader: a fault left past its expiry is seen when the operator's leader
//! election is what broke. Until both stores have listed once, no figures are exported
//! (an empty store would claim that nothing is wrong).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    Experiment, ExperimentStatus, Injection, InjectionState, InjectionStatus, Phase,
};
use futures_util::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::reconcile::{self, Context};

/// Every phase, in lifecycle order: each is exported, at 0 when no Experiment is in it.
pub const PHASES: [Phase; 8] = [
    Phase::Pending,
    Phase::SteadyStateBefore,
    Phase::Injecting,
    Phase::Holding,
    Phase::Reverting,
    Phase::Recovering,
    Phase::SteadyStateAfter,
    Phase::Completed,
];

/// Every Injection state: each is exported, at 0 when no Injection is in it.
pub const STATES: [InjectionState; 5] = [
    InjectionState::Pending,
    InjectionState::Applied,
    InjectionState::Reverted,
    InjectionState::Failed,
    InjectionState::Refused,
];

/// Where `phase` sits in [`PHASES`]; a new phase does not compile until it has a place.
fn phase_slot(phase: Phase) -> usize {
    match phase {
        Phase::Pending => 0,
        Phase::SteadyStateBefore => 1,
        Phase::Injecting => 2,
        Phase::Holding => 3,
        Phase::Reverting => 4,
        Phase::Recovering => 5,
        Phase::SteadyStateAfter => 6,
        Phase::Completed => 7,
    }
}

/// Where `state` sits in [`STATES`].
fn state_slot(state: InjectionState) -> usize {
    match state {
        InjectionState::Pending => 0,
        InjectionState::Applied => 1,
        InjectionState::Reverted => 2,
        InjectionState::Failed => 3,
        InjectionState::Refused => 4,
    }
}

/// The gauges' values at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Experiments per phase, in [`PHASES`] order.
    pub experiments: [i64; PHASES.len()],
    /// Injections per state, in [`STATES`] order.
    pub injections: [i64; STATES.len()],
    /// Seconds the oldest Applied Injection is past its `expiresAt` (0 when none is).
    pub past_expiry_seconds: f64,
    /// Per node: seconds since the oldest Injection its agent has not reported on yet was
    /// created. A node cut off by a fault its agent announced (it cannot report until the
    /// fault ends) is left out; nodes with nothing waiting are absent.
    pub pending_seconds: BTreeMap<String, f64>,
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64().max(0.0)
}

fn state(injection: &Injection) -> InjectionState {
    injection
        .status
        .as_ref()
        .map_or(InjectionState::Pending, |s| s.state)
}

/// Counts `experiments` and `injections` as of `now`.
pub fn figures(
    experiments: &[Arc<Experiment>],
    injections: &[Arc<Injection>],
    now: DateTime<Utc>,
) -> Figures {
    let mut figures = Figures::default();
    for experiment in experiments {
        let phase = experiment
            .status
            .as_ref()
            .map_or(Phase::Pending, |s| s.phase);
        figures.experiments[phase_slot(phase)] += 1;
    }
    // Nodes whose agent said it is cutting them off: silent until the fault's expiry.
    let cut_off: Vec<&str> = injections
        .iter()
        .filter(|i| {
            state(i) == InjectionState::Applied
                && i.spec.action.cuts_node_off()
                && i.spec.expires_at > now
        })
        .map(|i| i.spec.node_name.as_str())
        .collect();
    for injection in injections {
        let state = state(injection);
        figures.injections[state_slot(state)] += 1;
        match state {
            InjectionState::Applied => {
                let past = seconds_between(injection.spec.expires_at, now);
                figures.past_expiry_seconds = figures.past_expiry_seconds.max(past);
            }
            InjectionState::Pending => {
                let node = injection.spec.node_name.as_str();
                let created = injection
                    .creation_timestamp()
                    .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0));
                let Some(created) = created else {
                    continue;
                };
                if cut_off.contains(&node) {
                    continue;
                }
                let waited = seconds_between(created, now);
                let oldest = figures.pending_seconds.entry(node.to_owned()).or_default();
                *oldest = oldest.max(waited);
            }
            InjectionState::Reverted | InjectionState::Failed | InjectionState::Refused => {}
        }
    }
    figures
}

/// The two stores the gauges are counted from.
#[derive(Clone)]
pub struct Inventory {
    pub experiments: Store<Experiment>,
    pub injections: Store<Injection>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("experiments", &self.experiments.len())
            .field("injections", &self.injections.len())
            .finish()
    }
}

impl Inventory {
    /// The figures as of `now`.
    pub fn figures(&self, now: DateTime<Utc>) -> Figures {
        figures(&self.experiments.state(), &self.injections.state(), now)
    }
}

/// What the stores keep of an Experiment: its phase (the timeline, probe records and
/// managed fields of a thousand Experiments are not worth holding twice).
fn slim_experiment(experiment: &mut Experiment) {
    experiment.managed_fields_mut().clear();
    if let Some(status) = experiment.status.as_mut() {
        *status = ExperimentStatus {
            phase: status.phase,
            ..ExperimentStatus::default()
        };
    }
}

/// What the stores keep of an Injection: its spec and state.
fn slim_injection(injection: &mut Injection) {
    injection.managed_fields_mut().clear();
    if let Some(status) = injection.status.as_mut() {
        *status = InjectionStatus {
            state: status.state,
            ..InjectionStatus::default()
        };
    }
}

/// Logs a failed watch (the watcher retries with a backoff; the store keeps what it had).
async fn report<T>(kind: &'static str, event: Result<T, watcher::Error>) {
    if let Err(e) = event {
        tracing::warn!(kind, error = %e, "inventory watch failed; retrying");
    }
}

/// Watches what the controller watches, into two stores that the context's metrics count
/// from once both have listed. Runs until dropped, on every replica.
pub async fn run(ctx: Arc<Context>) {
    let (experiments, watched) = reconcile::experiment_watch(&ctx);
    let (injections, written) = reconcile::injection_watch(&ctx);
    let (experiment_store, experiment_writer) = reflector::store();
    let (injection_store, injection_writer) = reflector::store();
    let experiment_events = watcher(experiments, watched)
        .default_backoff()
        .modify(slim_experiment);
    let injection_events = watcher(injections, written)
        .default_backoff()
        .modify(slim_injection);
    let ready = async {
        let listed = tokio::try_join!(
            experiment_store.wait_until_ready(),
            injection_store.wait_until_ready()
        );
        if listed.is_ok() {
            ctx.metrics.watch(Inventory {
                experiments: experiment_store.clone(),
                injections: injection_store.clone(),
            });
        }
    };
    tokio::join!(
        reflector::reflector(experiment_writer, experiment_events)
            .for_each(|e| report("Experiment", e)),
        reflector::reflector(injection_writer, injection_events)
            .for_each(|e| report("Injection", e)),
        ready,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::at;
    use firedrill_core::api::{InjectionSpec, NodeAction, ProcessAction, ProcessSignal};
    use firedrill_core::planner::isolate;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    pub fn experiment(name: &str, phase: Option<Phase>) -> Arc<Experiment> {
        let mut e = Experiment::new(name, crate::testing::catalog("zone-blackout"));
        e.status = phase.map(|phase| ExperimentStatus {
            phase,
            ..Default::default()
        });
        Arc::new(e)
    }

    /// An Injection on `node`, created at `at(created)`, expiring at `at(expires)`.
    pub fn injection(
        name: &str,
        node: &str,
        state: Option<InjectionState>,
        created: i64,
        expires: i64,
        cuts_node_off: bool,
    ) -> Arc<Injection> {
        let action = if cuts_node_off {
            isolate(vec![])
        } else {
            NodeAction {
                network: None,
                processes: Some(ProcessAction {
                    pods: vec![],
                    signal: ProcessSignal::Freeze,
                }),
                read_only_volume: None,
            }
        };
        let mut i = Injection::new(
            name,
            InjectionSpec {
                node_name: node.to_owned(),
                experiment: "talk/x".to_owned(),
                action,
                expires_at: at(expires),
                hold_for: None,
                heartbeat: None,
            },
        );
        let created =
            Timestamp::from_second(at(created).timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
        i.metadata.creation_timestamp = Some(Time(created));
        i.status = state.map(|state| InjectionStatus {
            state,
            ..Default::default()
        });
        Arc::new(i)
    }

    #[test]
    fn the_slots_follow_the_exported_order() {
        for (slot, phase) in PHASES.iter().enumerate() {
            assert_eq!(phase_slot(*phase), slot, "{phase:?}");
        }
        for (slot, state) in STATES.iter().enumerate() {
            assert_eq!(state_slot(*state), slot, "{state:?}");
        }
    }

    #[test]
    fn experiments_count_by_phase_and_one_without_status_is_pending() {
        let experiments = [
            experiment("a", None),
            experiment("b", Some(Phase::Holding)),
            experiment("c", Some(Phase::Holding)),
            experiment("d", Some(Phase::Completed)),
        ];
        let f = figures(&experiments, &[], at(0));
        assert_eq!(f.experiments, [1, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(f.injections, [0; 5]);
        assert_eq!(f.past_expiry_seconds, 0.0);
        assert!(f.pending_seconds.is_empty());
    }

    #[test]
    fn the_oldest_applied_injection_past_its_expiry_counts_and_only_applied_ones() {
        use InjectionState::*;
        let injections = [
            // Applied, 90 s past expiry.
            injection("a", "n1", Some(Applied), 0, 10, false),
            // Applied, 30 s past expiry.
            injection("b", "n2", Some(Applied), 0, 70, false),
            // Applied, not yet expired.
            injection("c", "n3", Some(Applied), 0, 500, false),
            // Reverted or failed long after the expiry: no fault on the system.
            injection("d", "n4", Some(Reverted), 0, 1, false),
            injection("e", "n4", Some(Failed), 0, 1, false),
        ];
        let f = figures(&[], &injections, at(100));
        assert_eq!(f.past_expiry_seconds, 90.0);
        assert_eq!(f.injections, [0, 3, 1, 1, 0]);
        let none_late = figures(&[], &injections[2..], at(100));
        assert_eq!(none_late.past_expiry_seconds, 0.0);
    }

    #[test]
    fn pending_injections_give_each_node_its_oldest_wait_except_a_node_cut_off() {
        use InjectionState::*;
        let injections = [
            injection("a", "n1", None, 10, 500, false),
            injection("b", "n1", Some(Pending), 40, 500, false),
            injection("c", "n2", Some(Pending), 90, 500, false),
            // n3 announced that it is cutting itself off: its other Injection cannot be
            // reported until the cut ends.
            injection("d", "n3", Some(Applied), 0, 500, true),
            injection("e", "n3", Some(Pending), 0, 500, false),
            // n4's cut has expired: it should be back and reporting.
            injection("f", "n4", Some(Applied), 0, 50, true),
            injection("g", "n4", Some(Pending), 20, 500, false),
        ];
        let f = figures(&[], &injections, at(100));
        let want: BTreeMap<String, f64> = [("n1", 90.0), ("n2", 10.0), ("n4", 80.0)]
            .into_iter()
            .map(|(n, s)| (n.to_owned(), s))
            .collect();
        assert_eq!(f.pending_seconds, want);
        assert_eq!(f.injections, [5, 2, 0, 0, 0]);
        assert_eq!(f.past_expiry_seconds, 50.0);
    }

    #[test]
    fn the_stores_keep_only_what_is_counted() {
        let mut e = (*experiment("a", Some(Phase::Holding))).clone();
        if let Some(s) = e.status.as_mut() {
            s.reason = Some("long".into());
        }
        slim_experiment(&mut e);
        assert_eq!(
            e.status,
            Some(ExperimentStatus {
                phase: Phase::Holding,
                ..Default::default()
            })
        );
        let mut i = (*injection("i", "n", Some(InjectionState::Applied), 0, 1, false)).clone();
        if let Some(s) = i.status.as_mut() {
            s.message = Some("long".into());
        }
        slim_injection(&mut i);
        assert_eq!(
            i.status.map(|s| (s.state, s.message)),
            Some((InjectionState::Applied, None))
        );
    }
}
