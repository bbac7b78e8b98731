//! Jepsen-style queue checker: compares what was sent with what was read.
//!
//! Pure: it takes the send log and the messages read back, and counts per
//! room: acknowledged messages never read (lost), messages read more than
//! once (duplicated), messages read that were never sent to that room
//! (unexpected), failed/timed-out sends that did arrive (recovered; a
//! failed send is indeterminate, never lost), and real-time order
//! violations (out of order).
//!
//! [`Ledger`] does it incrementally in memory that does not grow with the length of the
//! run; [`check`] is the same over whole logs. Both give a [`CheckReport`].

mod history;
mod ledger;
mod report;

pub use history::{MsgId, ReadRecord, SendOutcome, SendRecord, check};
pub use ledger::{Ledger, StoredLane};
pub use report::{CheckReport, RoomReport};
