//! Final drain: read every room's whole history back.

use std::sync::Arc;
use std::time::Instant;

use super::checker::ReadRecord;
use super::client::TalkClient;

const PAGE: usize = 1000;

/// Reads all of `room` from the start; retries each page until `deadline`.
pub async fn drain_room(
    client: &TalkClient,
    targets: &[String],
    room: &Arc<str>,
    deadline: Instant,
) -> Result<Vec<ReadRecord>, String> {
    let mut reads = Vec::new();
    let mut after = 0u64;
    let mut t = 0usize;
    let mut last_error = String::new();
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "room {room}: drain deadline passed after {} messages: {last_error}",
                reads.len()
            ));
        }
        let target = targets
            .get(t % targets.len().max(1))
            .cloned()
            .unwrap_or_default();
        match client.history(&target, room, after, PAGE).await {
            Ok(page) => {
                for m in &page.messages {
                    reads.push(ReadRecord {
                        room: room.clone(),
                        seq: m.seq,
                        producer: Arc::from(m.payload.producer.as_str()),
                        counter: m.payload.counter,
                    });
                    after = after.max(m.seq);
                }
                if !page.more {
                    return Ok(reads);
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
