//! Continuous checker: follows every room and feeds the ledger's live pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::TalkClient;
use super::run::Shared;

const PAGE: usize = 1000;

/// Follows `room` until `stop` flips; returns the sequence it has read through.
pub async fn follow_room(
    client: TalkClient,
    targets: Vec<String>,
    room: Arc<str>,
    interval: Duration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut pos = 0u64;
    let mut t = 0usize;
    while !*stop.borrow() {
        let target = targets
            .get(t % targets.len().max(1))
            .cloned()
            .unwrap_or_default();
        let mut more = false;
        match client.history(&target, &room, pos, PAGE).await {
            Ok(page) => {
                if page.stream_last_seq < pos {
                    // The stream went back in time (recreated after data
                    // loss): read it again from the start.
                    tracing::warn!(%room, pos, last = page.stream_last_seq, "stream reset; rereading");
                    pos = 0;
                    shared.ledger().reset(&room);
                    continue;
                }
                let mut ledger = shared.ledger();
                for m in &page.messages {
                    ledger.read(&room, &m.payload.producer, m.payload.counter, m.seq);
                    pos = pos.max(m.seq);
                }
                // Only what was read counts as passed: a replica still catching up (after a
                // restart or a new disk) serves a prefix of the room while the stream's last
                // sequence is already further, and messages beyond the prefix are late, not
                // lost.
                more = page.more;
                ledger.advance(&room, pos);
            }
            Err(e) => {
                tracing::debug!(%room, error = %e, "history read failed");
                t = t.wrapping_add(1);
            }
        }
        if !more {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
    pos
}

/// Recomputes lost/duplicated from the ledger every `interval`.
pub async fn publish_checks(
    shared: Arc<Shared>,
    interval: Duration,
    grace: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_lost = 0;
    while !*stop.borrow() {
        {
            let ledger = shared.ledger();
            let now = Instant::now();
            let lost = ledger.lost(now, grace);
            let dup = ledger.duplicated();
            // Which messages are missing, each time the count changes: a message that later
            // reappears was late, one that never does was lost.
            let examples = (lost != last_lost).then(|| ledger.lost_examples(now, grace, 10));
            drop(ledger);
            if let Some(examples) = examples {
                tracing::warn!(
                    lost,
                    was = last_lost,
                    ?examples,
                    "acknowledged messages unread"
                );
                last_lost = lost;
            }
            shared
                .sli
                .lost
                .store(lost, std::sync::atomic::Ordering::Relaxed);
            shared
                .sli
                .duplicated
                .store(dup, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}
