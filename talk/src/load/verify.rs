//! A verification read on demand (`GET /verify`): every room read again from its start,
//! and every message the stream must hold by then looked for. The live reader counts a
//! message lost only while it has not read it; one it read and the stream lost afterwards
//! (a wiped single replica, the unsynced tail of a power cut) it never sees again. This
//! read does, so a caller that asks before and after an experiment knows exactly what the
//! experiment lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::TalkClient;
use super::drain::drain_room;
use super::ranges::RangeSet;
use super::shared::Shared;
use super::targets::Targets;

/// How many lost messages a verification names.
const EXAMPLES: usize = 10;

/// What one verification read found. The counts are over the whole run so far: the
/// difference between two reads is what was lost between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Messages the stream must hold (read earlier, or acknowledged) and does not.
    pub lost_messages: u64,
    /// Messages the stream holds more than once.
    pub duplicated_messages: u64,
    /// Messages the stream must hold, looked for.
    pub checked_messages: u64,
    /// Messages read back.
    pub read_messages: u64,
    pub seconds: f64,
    /// Up to ten lost messages, as `room/producer:counter`.
    pub lost_examples: Vec<String>,
}

/// Runs verification reads, one at a time.
#[derive(Debug)]
pub struct Verifier {
    pub shared: Arc<Shared>,
    pub client: TalkClient,
    pub targets: Arc<Targets>,
    pub rooms: Vec<Arc<str>>,
    /// How long one read may take in all.
    pub timeout: Duration,
    /// Reads run one at a time: two at once would only compete for the same servers.
    pub busy: tokio::sync::Mutex<()>,
}

impl Verifier {
    pub async fn verify(&self) -> Result<Verification, String> {
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        // Taken before the read begins: everything in it was stored by now.
        let stored = self.shared.ledger().stored();
        let deadline = started + self.timeout;
        let mut present: HashMap<Arc<str>, HashMap<String, RangeSet>> = HashMap::new();
        let mut duplicated = 0u64;
        let mut read = 0u64;
        for room in &self.rooms {
            let lanes = present.entry(room.clone()).or_default();
            drain_room(&self.client, &self.targets, room, 0, deadline, |m| {
                read += 1;
                let producer = m.payload.producer.as_str();
                let set = match lanes.get_mut(producer) {
                    Some(set) => set,
                    None => lanes.entry(producer.to_owned()).or_default(),
                };
                if !set.insert(m.payload.counter) {
                    duplicated += 1;
                }
            })
            .await?;
        }
        let empty = RangeSet::default();
        let mut verification = Verification {
            duplicated_messages: duplicated,
            read_messages: read,
            ..Verification::default()
        };
        let mut examples = Vec::new();
        for lane in &stored {
            let held = present
                .get(&lane.room)
                .and_then(|lanes| lanes.get(&*lane.producer))
                .unwrap_or(&empty);
            let missing = lane.missing(held);
            verification.checked_messages += lane.len();
            verification.lost_messages += missing.len() as u64;
            examples.extend(
                missing
                    .iter()
                    .take(EXAMPLES)
                    .map(|&c| (lane.room.clone(), lane.producer.clone(), c)),
            );
        }
        examples.sort();
        verification.lost_examples = examples
            .iter()
            .take(EXAMPLES)
            .map(|(room, producer, c)| format!("{room}/{producer}:{c}"))
            .collect();
        verification.seconds = started.elapsed().as_secs_f64();
        Ok(verification)
    }
}
