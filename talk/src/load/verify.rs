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

use super::checker::StoredLane;
use super::client::TalkClient;
use super::drain::drain_room;
use super::ranges::RangeSet;
use super::shared::Shared;
use super::targets::Targets;

/// How many lost messages a verification names.
const EXAMPLES: usize = 10;

/// How often a read that found messages missing is repeated, and after how long.
const MAX_REREADS: u32 = 3;
const REREAD_AFTER: Duration = Duration::from_secs(5);
/// No read is begun again later than this after the first began: callers wait for the
/// answer (firedrill's `VERIFY_READ_TIMEOUT` is 45 s).
const REREAD_BUDGET: Duration = Duration::from_secs(25);

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
    /// How many times the read was repeated because messages were missing (a replica
    /// catching up serves an incomplete history; what is lost stays missing).
    #[serde(default)]
    pub rereads: u32,
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
        let mut rereads = 0;
        loop {
            let mut v = self.read_once(&stored, deadline).await?;
            v.rereads = rereads;
            v.seconds = started.elapsed().as_secs_f64();
            // The read is served by the stream leader (drain_room reads `from=leader`); a
            // leader elected mid-read may still be applying what its predecessor
            // committed. Lost means still missing once that settled: read again while
            // messages are missing and there is time.
            let again = Instant::now() + REREAD_AFTER;
            let reread_by = started + REREAD_BUDGET.min(self.timeout);
            if v.lost_messages == 0 || rereads >= MAX_REREADS || again >= reread_by {
                return Ok(v);
            }
            tracing::info!(
                missing = v.lost_messages,
                rereads,
                "verification read: messages missing; reading again in case a replica was behind"
            );
            tokio::time::sleep(REREAD_AFTER).await;
            rereads += 1;
        }
    }

    /// One read of every room, against what the stream must hold (`stored`).
    async fn read_once(
        &self,
        stored: &[StoredLane],
        deadline: Instant,
    ) -> Result<Verification, String> {
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
        for lane in stored {
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
        Ok(verification)
    }
}
