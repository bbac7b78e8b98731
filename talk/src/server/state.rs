//! What every handler shares: the store, the configuration, the metrics and the flags.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, watch};

use super::config::ServerConfig;
use super::metrics::ServerMetrics;
use crate::store::MessageStore;

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub store: MessageStore,
    pub config: ServerConfig,
    pub metrics: ServerMetrics,
    /// The stream exists (set once `ensure_stream` succeeded, cleared when a publish
    /// finds it gone).
    pub stream_ready: AtomicBool,
    /// Wakes the task that creates the stream again (see [`AppState::stream_gone`]).
    pub stream_lost: Notify,
    /// Flips to true on shutdown so live streams end and drain can finish.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// A publish found no stream for its subject: the stream is created again, once,
    /// however many sends found it gone. What the old stream held is not recreated;
    /// readers see a new creation time and count what is missing.
    pub fn stream_gone(&self) {
        if self.stream_ready.swap(false, Ordering::AcqRel) {
            tracing::error!(stream = %self.config.stream, "the stream is gone; creating it again");
            self.stream_lost.notify_one();
        }
    }
}
