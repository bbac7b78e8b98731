//! What the GameDay controller needs beside the Experiment controller's context.

use std::sync::Arc;
use std::time::Duration;

use firedrill_core::api::GameDay;
use kube::ResourceExt;
use tokio::sync::Mutex;

use crate::Error;
use crate::reconcile::Context;

/// How often a queued step (overlapping targets) is tried again.
pub(super) const QUEUE_RETRY: Duration = Duration::from_secs(5);

/// What the GameDay controller needs beside the Experiment controller's context.
#[derive(Debug)]
pub struct GameDayContext {
    pub base: Arc<Context>,
    /// Held while checking for overlapping targets and creating a step's Experiment.
    pub(super) start: Mutex<()>,
}

impl GameDayContext {
    pub fn new(base: Arc<Context>) -> Self {
        Self {
            base,
            start: Mutex::new(()),
        }
    }
}

pub(super) fn namespace(game_day: &GameDay) -> Result<String, Error> {
    game_day.namespace().ok_or(Error::MissingField("namespace"))
}
