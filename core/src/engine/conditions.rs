//! The Kubernetes conditions an experiment's status carries, derived from its phase and
//! fault state.

use chrono::{DateTime, Utc};

use crate::api::{Condition, FaultState, Phase};

use super::run::Run;

impl Run<'_> {
    pub(super) fn update_conditions(&mut self) {
        let active = self.s.fault_state.may_be_active();
        let status = if active { "True" } else { "False" };
        let reason = format!("{:?}", self.s.fault_state);
        let message = match self.s.fault_state {
            FaultState::NotInjected => "nothing has been injected",
            FaultState::Injecting => "the fault is being applied",
            FaultState::Injected => "the fault is in effect",
            FaultState::Reverting => "the fault is being reverted",
            FaultState::Reverted => "the fault was reverted",
        };
        set_condition(
            &mut self.s.conditions,
            "FaultActive",
            status,
            &reason,
            message,
            self.now,
        );
        let done = self.s.phase == Phase::Completed;
        let message = self
            .s
            .reason
            .clone()
            .unwrap_or_else(|| format!("{:?}", self.s.phase));
        let reason = self
            .s
            .verdict
            .map_or_else(|| format!("{:?}", self.s.phase), |v| format!("{v:?}"));
        set_condition(
            &mut self.s.conditions,
            "Completed",
            if done { "True" } else { "False" },
            &reason,
            &message,
            self.now,
        );
    }
}

/// Sets a condition, moving its transition time only when its status changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
                c.status = status.to_owned();
            }
            reason.clone_into(&mut c.reason);
            message.clone_into(&mut c.message);
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now,
        }),
    }
}
