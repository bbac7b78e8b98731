//! The checker's verdict: counts per room and in total.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts for one room (or the total).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomReport {
    pub sent: u64,
    pub acked: u64,
    pub indeterminate: u64,
    pub read: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub recovered: u64,
    pub out_of_order: u64,
    /// A few lost ids (`producer:counter@seq`), to start an investigation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_examples: Vec<String>,
}

impl RoomReport {
    /// Adds `o`'s counts (and examples, up to the limit) to these.
    pub(super) fn add(&mut self, o: &RoomReport) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.indeterminate += o.indeterminate;
        self.read += o.read;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.unexpected += o.unexpected;
        self.recovered += o.recovered;
        self.out_of_order += o.out_of_order;
        for e in &o.lost_examples {
            if self.lost_examples.len() < MAX_EXAMPLES {
                self.lost_examples.push(e.clone());
            }
        }
    }

    /// True when nothing acknowledged went missing and nothing appeared twice
    /// or from nowhere.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0 && self.out_of_order == 0
    }
}

/// The whole verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub total: RoomReport,
    pub rooms: BTreeMap<String, RoomReport>,
}

/// Most lost ids kept as examples per room (and in the total).
pub(super) const MAX_EXAMPLES: usize = 10;
