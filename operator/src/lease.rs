//! Hand-written on purpose (weighed in Dec 2026 against kube-lease-manager 0.13,
//! kube-leader-election 0.44, kube-coordinate 2.0.0-rc.0): the last two need kube 4 and 2 (we
//! are on 5); all three call a lease expired at `renewTime + duration` by the local clock,
//! which clock skew breaks; kube-lease-manager renews once per `duration - grace`, not every
//! `retry_period`, and the agents' dead man's switch counts unchanged renew times; its tests
//! need a k3s container. Ours keeps `decide` pure and unit-tested, and reads as the agent does.
//!
//! Leader election with a `coordination.k8s.io/v1` Lease (kube-rs has none), the way
//! client-go does it:
//!
//! - the leader renews the lease every `retry_period` and stops acting if it could not renew
//!   for `renew_deadline` (shorter than the lease duration, so it stops before anyone may
//!   take over);
//! - a standby takes over when the lease record (holder and renew time) has not changed for
//!   the lease duration *by its own clock*: a clock skew between replicas can neither make it
//!   take over early nor keep it from taking over;
//! - every write carries the resourceVersion it read, so two standbys cannot both win;
//! - a leader shutting down releases the lease, so its standby takes over at once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::{Error, FIELD_MANAGER};

/// How the election is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name (its pod's).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the lease is renewed or tried.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease: create it, held by us.
    Create,
    /// Nobody holds it, or its holder let it expire: take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and has renewed recently.
    Follow { holder: String },
}

/// The part of the lease that changes when its holder renews.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: Option<&LeaseSpec>) -> Self {
        Self {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec.and_then(|s| s.renew_time.clone()),
            transitions: spec.and_then(|s| s.lease_transitions),
        }
    }
}

/// Decides from the lease (`None` when there is none), when its current record was first
/// seen by this replica (`observed_at`, by our own clock), and the time now.
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    observed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(default_duration, |s| {
            Duration::from_secs(s.unsigned_abs().into())
        });
    let duration = TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX);
    if now >= observed_at + duration {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    }
}

fn micro(at: DateTime<Utc>) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(at.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Runs the election for one replica.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The record last seen, and when by our clock it was first seen.
    observed: Option<(Record, DateTime<Utc>)>,
}

/// When the record was first seen: `now` if it differs from the one last seen.
fn observe(
    observed: &mut Option<(Record, DateTime<Utc>)>,
    record: Record,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match observed {
        Some((seen, at)) if *seen == record => *at,
        _ => {
            *observed = Some((record, now));
            now
        }
    }
}

fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn params() -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        }
    }

    /// One round: creates, takes over or renews the lease when it may. `Ok(true)` while this
    /// replica holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let now = Utc::now();
        let lease = self.api.get_opt(&self.config.name).await?;
        let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
        let observed_at = observe(&mut self.observed, Record::of(spec), now);
        let decision = decide(
            spec,
            &self.config.identity,
            observed_at,
            now,
            self.config.lease_duration,
        );
        let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(seconds(self.config.lease_duration)),
            acquire_time: acquired.or_else(|| Some(micro(now))),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let result = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(mine(0, None)),
                };
                self.api.create(&Self::params(), &lease).await
            }
            Decision::Acquire | Decision::Renew => {
                let Some(mut lease) = lease else {
                    return Ok(false);
                };
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == Decision::Renew {
                    mine(transitions, old.acquire_time)
                } else {
                    mine(transitions.saturating_add(1), None)
                });
                // The resourceVersion read above makes this fail if anyone wrote since.
                self.api
                    .replace(&self.config.name, &Self::params(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                let record = Record::of(written.spec.as_ref());
                self.observed = Some((record, now));
                Ok(true)
            }
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up if we hold it, so a standby takes over without waiting.
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(micro(Utc::now()));
        match self
            .api
            .replace(&self.config.name, &Self::params(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the election until `shutdown` turns true, publishing on `leading` whether this
    /// replica is the leader. Releases the lease on shutdown.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let is_leader = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: could not read or write the lease");
                    // Keep acting only within the renew deadline of the last renewal.
                    *leading.borrow()
                        && last_renewal.is_some_and(|t| t.elapsed() < self.config.renew_deadline)
                }
            };
            if is_leader != *leading.borrow() {
                if is_leader {
                    tracing::info!(identity = %self.config.identity, "became the leader");
                } else {
                    tracing::warn!(identity = %self.config.identity, "lost the leader lease");
                }
                leading.send_replace(is_leader);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
        leading.send_replace(false);
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;
    use chrono::TimeZone;

    fn held_by(holder: &str, renewed: DateTime<Utc>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(micro(renewed)),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_missing_lease_is_created_and_an_empty_one_taken() {
        assert_eq!(decide(None, "me", at(0), at(0), D), Decision::Create);
        let empty = LeaseSpec::default();
        assert_eq!(
            decide(Some(&empty), "me", at(0), at(0), D),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_renews() {
        let lease = held_by("me", at(0));
        assert_eq!(
            decide(Some(&lease), "me", at(0), at(100), D),
            Decision::Renew
        );
    }

    #[test]
    fn a_standby_takes_over_only_after_the_lease_expires_by_its_own_clock() {
        let lease = held_by("other", at(0));
        let follow = Decision::Follow {
            holder: "other".into(),
        };
        assert_eq!(decide(Some(&lease), "me", at(0), at(14), D), follow);
        assert_eq!(
            decide(Some(&lease), "me", at(0), at(15), D),
            Decision::Acquire
        );
        // The holder's renewTime is far in the past by our clock (skew), but we saw this
        // record change just now: it is not expired.
        let skewed = held_by("other", at(-3600));
        assert_eq!(decide(Some(&skewed), "me", at(100), at(101), D), follow);
    }

    #[test]
    fn the_lease_duration_written_in_the_lease_wins() {
        let mut lease = held_by("other", at(0));
        lease.lease_duration_seconds = Some(60);
        assert!(matches!(
            decide(Some(&lease), "me", at(0), at(30), D),
            Decision::Follow { .. }
        ));
        lease.lease_duration_seconds = Some(0);
        assert_eq!(
            decide(Some(&lease), "me", at(0), at(15), D),
            Decision::Acquire
        );
    }

    #[test]
    fn a_record_is_observed_at_its_first_sighting_only() {
        let record = Record::of(Some(&held_by("other", at(0))));
        let mut observed = None;
        assert_eq!(observe(&mut observed, record.clone(), at(1)), at(1));
        assert_eq!(observe(&mut observed, record, at(9)), at(1));
        let renewed = Record::of(Some(&held_by("other", at(5))));
        assert_eq!(observe(&mut observed, renewed, at(10)), at(10));
    }

    #[test]
    fn micro_times_keep_microseconds() {
        let t = Utc
            .timestamp_opt(1_700_000_000, 123_456_000)
            .single()
            .expect("t");
        assert_eq!(micro(t).0.as_microsecond(), t.timestamp_micros());
    }
}
