//! Runs experiments and game days in the lab: the engine decides, this shell carries out its
//! actions (inject, revert, sample) and records the SLIs for the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::{ExperimentSpec, Phase, WorkloadCounters, fault_end, verification_url};
use firedrill_core::engine::{Action, Observation, step};
use firedrill_core::report::{ExperimentReport, Point, Series};
use firedrill_probes::Prober;

use crate::error::{LabError, Result};
use crate::platform::{LabPlatform, Plan, plan};

pub mod gameday;

/// The SLIs drawn in the report, as named in talk-load's `/sli`.
const SERIES: [&str; 4] = [
    "deliverySuccessRatio",
    "p99LatencyMs",
    "lostMessages",
    "duplicatedMessages",
];

/// How often a held fault is re-checked against the real system.
const RECHECK: TimeDelta = TimeDelta::seconds(1);

/// Something worth telling the person watching.
#[derive(Debug, Clone)]
pub enum Progress {
    /// An experiment starts (index from 1, of total).
    ExperimentStarted {
        name: String,
        index: usize,
        total: usize,
        targets: Vec<String>,
    },
    /// A new timeline entry.
    Timeline {
        name: String,
        phase: Phase,
        message: String,
    },
    /// The live SLIs, every few seconds.
    Slis {
        name: String,
        phase: Phase,
        values: BTreeMap<String, Option<f64>>,
    },
    ExperimentFinished {
        report: Box<ExperimentReport>,
    },
    Pause {
        seconds: u64,
    },
}

/// Runs experiments against an up lab.
#[derive(Debug)]
pub struct Runner {
    platform: Arc<LabPlatform>,
    prober: Prober,
    http: reqwest::Client,
    sli_url: String,
    abort: Arc<AtomicBool>,
}

impl Runner {
    /// A runner whose probes reach the lab's host names (`talk-load.talk`, ...). Setting
    /// `abort` asks the running experiment to stop and revert.
    pub fn new(platform: LabPlatform, abort: Arc<AtomicBool>) -> Result<Self> {
        let mut builder = Prober::builder().default_namespace(crate::topology::NAMESPACE);
        for (host, addr) in &platform.topology().hosts {
            builder = builder.resolve(host, *addr);
        }
        let sli = platform
            .topology()
            .hosts
            .get("talk-load.talk")
            .ok_or_else(|| LabError::State("the lab has no talk-load".to_owned()))?;
        let sli_url = format!("http://{sli}/sli");
        Ok(Self {
            platform: Arc::new(platform),
            prober: builder.build()?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .no_proxy()
                .build()
                .map_err(|e| LabError::State(format!("http client: {e}")))?,
            sli_url,
            abort,
        })
    }

    async fn read_slis(&self) -> Option<serde_json::Value> {
        let response = self.http.get(&self.sli_url).send().await.ok()?;
        response.json().await.ok()
    }

    /// A verification read of talk-load; none when it failed, and the engine asks again.
    async fn verify_workload(&self) -> Option<Observation> {
        let url = verification_url(&self.sli_url)?;
        match firedrill_probes::verification_read(&self.http, &url).await {
            Ok(counters) => Some(Observation::Verified(counters)),
            Err(e) => {
                tracing::warn!(error = %e, "verification read failed");
                None
            }
        }
    }

    async fn inject(&self, id: &str, plan: &Plan, expires_at: DateTime<Utc>) -> Observation {
        let platform = self.platform.clone();
        let (id, plan) = (id.to_owned(), plan.clone());
        let expiry = u64::try_from(expires_at.timestamp()).unwrap_or(0);
        let result = tokio::task::spawn_blocking(move || platform.apply(&id, &plan, expiry)).await;
        match result {
            Ok(Ok(())) => Observation::FaultApplied { at: Utc::now() },
            Ok(Err(e)) => Observation::InjectionFailed {
                at: Utc::now(),
                reason: e.to_string(),
            },
            Err(e) => Observation::InjectionFailed {
                at: Utc::now(),
                reason: format!("the injection task failed: {e}"),
            },
        }
    }

    /// Re-checks the held fault (re-applying what is gone) and reports what it found.
    async fn recheck(&self, id: &str) -> Observation {
        let platform = self.platform.clone();
        let id = id.to_owned();
        let result = tokio::task::spawn_blocking(move || platform.recheck(&id)).await;
        let at = Utc::now();
        match result {
            Ok(Ok(missing)) if missing.is_empty() => Observation::FaultHeld { at },
            Ok(Ok(missing)) => Observation::FaultLapsed {
                at,
                what: missing.join("; "),
            },
            // A check that cannot tell is no evidence that the fault held.
            Ok(Err(e)) => Observation::FaultLapsed {
                at,
                what: format!("the fault could not be checked: {e}"),
            },
            Err(e) => Observation::FaultLapsed {
                at,
                what: format!("the check task failed: {e}"),
            },
        }
    }

    async fn revert(&self, id: &str) -> Option<Observation> {
        let platform = self.platform.clone();
        let id = id.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            platform.revert(&id)?;
            platform.is_active(&id)
        })
        .await;
        match result {
            Ok(Ok(false)) => Some(Observation::FaultReverted { at: Utc::now() }),
            // Not confirmed: the engine asks again.
            Ok(Ok(true)) | Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Runs one experiment to completion. The fault is reverted before this returns, whatever
    /// happens; a plan the lab cannot carry out is an error before anything starts.
    pub async fn run_experiment(
        &self,
        name: &str,
        spec: &ExperimentSpec,
        index: usize,
        total: usize,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ExperimentReport> {
        let plan = plan(spec, self.platform.topology())?;
        let id = injection_id(name);
        progress(Progress::ExperimentStarted {
            name: name.to_owned(),
            index,
            total,
            targets: plan.targets.clone(),
        });
        let mut series: BTreeMap<&str, Vec<Point>> =
            SERIES.iter().map(|s| (*s, Vec::new())).collect();
        let mut status = firedrill_core::api::ExperimentStatus::default();
        let mut pending: Vec<Observation> = Vec::new();
        let mut told = 0;
        let mut abort_sent = false;
        let mut last_sli_report = Utc::now() - TimeDelta::seconds(60);
        let mut last_recheck = Utc::now() - RECHECK;
        let run = self.platform.run_dir();
        loop {
            // The dead man's switch: a pass of this loop is the driver alive (see
            // crate::heartbeat); a killed or wedged runner's fault is reverted by the
            // supervisor within its timeout.
            if let Err(e) = run.renew_heartbeat(&id) {
                tracing::warn!(error = %e, "cannot renew the heartbeat; the supervisor will revert the fault");
            }
            if self.abort.load(Ordering::SeqCst) && !abort_sent {
                pending.push(Observation::AbortRequested {
                    reason: "interrupted (Ctrl-C)".to_owned(),
                });
                abort_sent = true;
            }
            let now = Utc::now();
            let transition = step(spec, &status, now, &std::mem::take(&mut pending));
            status = transition.status;
            for entry in status.timeline.iter().skip(told) {
                progress(Progress::Timeline {
                    name: name.to_owned(),
                    phase: entry.phase,
                    message: entry.message.clone(),
                });
            }
            told = status.timeline.len();
            if status.phase == Phase::Completed {
                break;
            }
            let mut next = now + TimeDelta::seconds(1);
            for action in transition.actions {
                match action {
                    Action::Inject { expires_at } => {
                        // The node side ends it at the duration on its own, too.
                        let ends_at = fault_end(Utc::now(), Some(spec.duration), expires_at);
                        pending.push(self.inject(&id, &plan, ends_at).await);
                    }
                    Action::Revert => pending.extend(self.revert(&id).await),
                    Action::Sample { stage, probes } => {
                        pending.extend(self.prober.sample_stage(spec, stage, &probes).await);
                    }
                    Action::VerifyWorkload => pending.extend(self.verify_workload().await),
                    Action::RequeueAt(at) => {
                        next = next.min(at.max(now + TimeDelta::milliseconds(100)));
                    }
                }
            }
            // A fault that just took effect or just went starts the next phase's samples
            // at once, so impact and recovery are timed from the change, not from the
            // retry tick after it.
            if pending.iter().any(|o| {
                matches!(
                    o,
                    Observation::FaultApplied { .. } | Observation::FaultReverted { .. }
                )
            }) {
                next = now;
            }
            // The fault must really hold while it is held: a lapse is found, put right and
            // reported, at most a second after it happens.
            if status.phase == Phase::Holding && Utc::now() - last_recheck >= RECHECK {
                last_recheck = Utc::now();
                pending.push(self.recheck(&id).await);
                next = next.min(last_recheck + RECHECK);
            }
            // SLIs for the picture and the loss counters for RPO, once per pass.
            let slis = self.read_slis().await;
            let at = Utc::now();
            let mut values = BTreeMap::new();
            for (key, points) in &mut series {
                let value = slis
                    .as_ref()
                    .and_then(|v| v.get(*key))
                    .and_then(|v| v.as_f64());
                points.push(Point { at, value });
                values.insert((*key).to_owned(), value);
            }
            if let Some(counters) = slis.as_ref().and_then(WorkloadCounters::from_document) {
                pending.push(Observation::Workload(counters));
            }
            if at - last_sli_report >= TimeDelta::seconds(5) {
                last_sli_report = at;
                progress(Progress::Slis {
                    name: name.to_owned(),
                    phase: status.phase,
                    values,
                });
            }
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
        }
        // Belt and braces: the engine never completes with the fault in place, but nothing
        // of this experiment may outlive it.
        let platform = self.platform.clone();
        let cleanup_id = id.clone();
        let _ = tokio::task::spawn_blocking(move || platform.revert(&cleanup_id)).await;
        run.clear_heartbeat(&id);
        let series = series
            .into_iter()
            .map(|(name, points)| Series {
                name: name.to_owned(),
                points,
            })
            .collect();
        let fault = spec.fault.name();
        let report = ExperimentReport::from_status(name, fault, &status, series);
        progress(Progress::ExperimentFinished {
            report: Box::new(report.clone()),
        });
        Ok(report)
    }
}

/// A journal-safe injection id unique to this run of `name`.
fn injection_id(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "exp" } else { clean };
    format!("{clean}-{}", Utc::now().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_ids_are_valid_for_the_journal() {
        for name in [
            "zone-blackout",
            "Disk_Loss!!",
            "",
            "a-very-long-experiment-name-indeed-yes",
        ] {
            let id = injection_id(name);
            firedrill_faults::InjectionId::new(format!("{id}-12")).expect("valid id");
        }
    }
}
