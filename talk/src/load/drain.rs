//! Final drain: read a room's history back, page by page.

use std::time::Instant;

use super::client::TalkClient;
use super::targets::{Targets, pick};
use crate::wire::{ReadFrom, StoredMessage};

const PAGE: usize = 1000;

/// Reads `room` from sequence > `after` to its end, handing each message to `on_message`
/// in stream order as its page arrives (nothing is collected); retries each page until
/// `deadline`. Returns how many messages were read and the last sequence. Every page is
/// read from the stream leader: these reads count losses, and a replica rebuilding from its
/// peers serves only a prefix (after a disk loss, none at all).
pub async fn drain_room(
    client: &TalkClient,
    targets: &Targets,
    room: &str,
    mut after: u64,
    deadline: Instant,
    mut on_message: impl FnMut(&StoredMessage),
) -> Result<(u64, u64), String> {
    let mut count = 0u64;
    let mut t = 0usize;
    let mut last_error = String::new();
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "room {room}: drain deadline passed after {count} messages: {last_error}"
            ));
        }
        let target = pick(&targets.current(), t);
        match client
            .history(&target, room, after, PAGE, ReadFrom::Leader)
            .await
        {
            Ok(page) => {
                for m in &page.messages {
                    on_message(m);
                    count += 1;
                    after = after.max(m.seq);
                }
                if !page.more {
                    return Ok((count, after));
                }
            }
            Err(e) => {
                last_error = e.to_string();
                t = t.wrapping_add(1);
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    }
}
