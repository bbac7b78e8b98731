//! Continuous checker: follows every room and feeds the ledger's live pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::TalkClient;
use super::shared::Shared;
use super::targets::{Targets, pick};
use crate::wire::{HistoryPage, ReadFrom};

const PAGE: usize = 1000;

/// Follows `room` until `stop` flips; returns the sequence it has read through.
pub async fn follow_room(
    client: TalkClient,
    targets: Arc<Targets>,
    room: Arc<str>,
    interval: Duration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut pos = 0u64;
    let mut t = 0usize;
    // The creation time of the stream read so far: sequences only start over in a stream
    // made anew.
    let mut epoch: Option<String> = None;
    while !*stop.borrow() {
        let target = pick(&targets.current(), t);
        let mut more = false;
        match client
            .history(&target, &room, pos, PAGE, ReadFrom::Any)
            .await
        {
            Ok(page) => {
                match stream_view(epoch.as_deref(), pos, &page) {
                    View::Current => {}
                    View::Recreated => {
                        tracing::warn!(%room, pos, last = page.stream_last_seq, created = ?page.stream_created, "stream recreated; rereading");
                        pos = 0;
                        shared.ledger().reset(&room);
                        epoch = page.stream_created;
                        continue;
                    }
                    View::Stale => {
                        // A replica catching up after a heal answers with an older state:
                        // nothing went back in time. Ask another server.
                        tracing::debug!(%room, pos, last = page.stream_last_seq, "stale stream view; trying another server");
                        t = t.wrapping_add(1);
                    }
                }
                if epoch.is_none() {
                    epoch.clone_from(&page.stream_created);
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

/// How a history page relates to what the reader has read so far.
#[derive(Debug, PartialEq, Eq)]
enum View {
    /// Consistent with it.
    Current,
    /// The stream was made anew: its sequences start over.
    Recreated,
    /// Behind what was read, under the same stream: a lagging server's view.
    Stale,
}

fn stream_view(epoch: Option<&str>, pos: u64, page: &HistoryPage) -> View {
    let created = page.stream_created.as_deref();
    match (epoch, created) {
        (Some(seen), Some(now)) if seen != now => View::Recreated,
        _ if page.stream_last_seq >= pos => View::Current,
        // A server too old to say when its stream was made: only the sequence tells.
        (_, None) => View::Recreated,
        _ => View::Stale,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(last: u64, created: Option<&str>) -> HistoryPage {
        HistoryPage {
            room: "r".into(),
            messages: vec![],
            more: false,
            stream_last_seq: last,
            stream_created: created.map(str::to_owned),
            served_by: None,
        }
    }

    #[test]
    fn a_lagging_view_of_the_same_stream_is_stale_not_a_reset() {
        // Seen after a healed partition: a server answered 27514 after 28366 was read.
        let t = Some("2026-11-22 10:03:30.1 +00:00:00");
        assert_eq!(stream_view(t, 28_366, &page(27_514, t)), View::Stale);
        assert_eq!(stream_view(t, 28_366, &page(28_400, t)), View::Current);
    }

    #[test]
    fn a_new_creation_time_is_a_reset_whatever_the_sequence() {
        let old = Some("2026-11-22 10:03:30.1 +00:00:00");
        let new = Some("2026-11-22 10:09:00.5 +00:00:00");
        assert_eq!(stream_view(old, 500, &page(10, new)), View::Recreated);
        assert_eq!(stream_view(old, 500, &page(900, new)), View::Recreated);
    }

    #[test]
    fn without_creation_times_only_the_sequence_tells() {
        assert_eq!(stream_view(None, 500, &page(10, None)), View::Recreated);
        assert_eq!(stream_view(None, 500, &page(500, None)), View::Current);
        // The first page names the stream: nothing to compare with yet.
        assert_eq!(stream_view(None, 0, &page(7, Some("t"))), View::Current);
    }
}
