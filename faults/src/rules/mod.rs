//! Typed network rule sets and the nftables JSON they become (pure, no I/O).
//!
//! Each injection owns up to two base chains in the `inet firedrill` table:
//! `<id>-in` on the `prerouting` hook (packets arriving, including ones the namespace would
//! forward — on a node that covers pod traffic) and `<id>-out` on `postrouting` (packets
//! leaving, locally generated or forwarded). Both directions need their own chain because a
//! base chain has exactly one hook. Reverting deletes both chains, which also deletes their
//! rules; other injections' chains are untouched.
//!
//! Packets are dropped silently. Note that a drop on the way *out* is reported to a local
//! sender as `EPERM` (a netfilter property), whereas a drop on the way *in* is pure silence
//! like a real network failure; a partition installed on both sides with
//! [`Direction::Ingress`] is the most realistic.
//!
//! `cidr` is the peers' networks, `set` the rule set as asked for and its validation,
//! `batch` the chains and nft transactions it becomes.

mod batch;
mod cidr;
mod set;

pub use batch::{
    FAMILY, Hook, TABLE, apply_batch, chain_name, cleanup_batch, parse_chain_name, revert_batch,
};
pub use cidr::Cidr;
pub use set::{Direction, MAX_PEERS, Ports, Protocol, RuleSet};
