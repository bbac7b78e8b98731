//! All three controllers together — Experiment, GameDay, DrillSchedule — and the sweep of
//! orphaned Injections, behind one leader election: only the leader runs any of them, and
//! all stop when it loses the lease.

use std::sync::Arc;

use tokio::sync::watch;

use crate::gameday::{self, GameDayContext};
use crate::lease::{LeaderElector, LeaseConfig};
use crate::reconcile::{self, Context};
use crate::{schedule, sweep};

/// A future that completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the three controllers until `stop` completes; reconciliations in flight finish.
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = watch::channel(false);
    let signal = tokio::spawn(async move {
        stop.await;
        tx.send_replace(true);
    });
    let game_days = Arc::new(GameDayContext::new(ctx.clone()));
    tokio::join!(
        reconcile::run(ctx.clone(), stopped(rx.clone())),
        sweep::run(ctx.clone(), stopped(rx.clone())),
        gameday::run(game_days, stopped(rx.clone())),
        schedule::run(ctx, stopped(rx)),
    );
    signal.abort();
}

/// Runs the controllers only while this replica holds the leader lease; a standby waits and
/// takes over when the leader's lease expires. Returns when `shutdown` turns true.
pub async fn run_with_election(
    ctx: Arc<Context>,
    lease: LeaseConfig,
    shutdown: watch::Receiver<bool>,
) {
    let (leading_tx, leading) = watch::channel(false);
    let elector = LeaderElector::new(ctx.client.clone(), lease);
    let election = tokio::spawn(elector.run(leading_tx, shutdown.clone()));
    loop {
        let mut to_lead = leading.clone();
        let mut stopping = shutdown.clone();
        tokio::select! {
            r = to_lead.wait_for(|l| *l) => if r.is_err() { break },
            _ = stopping.wait_for(|s| *s) => break,
        }
        ctx.metrics.leader.set(1);
        let mut lost = leading.clone();
        let mut stopping = shutdown.clone();
        let stop = async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        };
        run(ctx.clone(), stop).await;
        ctx.metrics.leader.set(0);
        if *shutdown.borrow() {
            break;
        }
    }
    if let Err(e) = election.await {
        tracing::warn!(error = %e, "the election task failed");
    }
}
