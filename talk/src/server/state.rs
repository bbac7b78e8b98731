//! What every handler shares: the store, the configuration, the metrics and the flags.

use std::sync::atomic::AtomicBool;

use tokio::sync::watch;

use super::config::ServerConfig;
use super::metrics::ServerMetrics;
use crate::store::MessageStore;

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub store: MessageStore,
    pub config: ServerConfig,
    pub metrics: ServerMetrics,
    /// The stream exists (set once `ensure_stream` succeeded).
    pub stream_ready: AtomicBool,
    /// Flips to true on shutdown so live streams end and drain can finish.
    pub shutdown: watch::Receiver<bool>,
}
