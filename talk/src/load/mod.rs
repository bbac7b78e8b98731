//! talk-load: open-loop load, live SLIs and a Jepsen-style loss checker.

pub mod checker;
