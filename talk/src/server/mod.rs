//! talk-server: HTTP API for sending, reading and streaming room messages, and a WebSocket
//! send channel for pipelined sends.

mod api;
mod channel;
pub mod config;
mod metrics;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use api::ApiError;
pub use config::ServerConfig;

use crate::store::{MessageStore, StoreError};
use metrics::ServerMetrics;
use state::AppState;

/// Errors that stop talk-server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("message store: {0}")]
    Store(#[from] StoreError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

impl ServerError {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Bind { .. } => "bind",
            Self::Store(e) => e.category(),
            Self::Serve(_) => "serve",
        }
    }
}

/// Binds `config.listen` and serves until SIGTERM/SIGINT.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    serve(config, listener, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes, then drains in-flight
/// requests (live streams are closed first).
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let store = MessageStore::connect(
        &config.nats_urls,
        config.stream_spec(),
        config.nats_timeout,
        false,
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        store,
        metrics: ServerMetrics::new(),
        stream_ready: AtomicBool::new(false),
        stream_lost: Notify::new(),
        shutdown: stop_rx,
        config,
    });
    tokio::spawn(ensure_stream_loop(state.clone()));
    let app = router(state.clone());
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%addr, "talk-server listening");
    // Replies and live-stream events are small writes: without TCP_NODELAY, Nagle holds
    // each one back until the previous one is acknowledged.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing live streams, draining requests");
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(ServerError::Serve)?;
    drain_channels(&state).await;
    Ok(())
}

/// Waits (up to a publish timeout and a second) for the send channels to answer what they
/// have in flight and close: they run apart from the HTTP connections that graceful
/// shutdown waits for, and a channel cut off leaves its sends indeterminate.
async fn drain_channels(state: &AppState) {
    let deadline = tokio::time::Instant::now() + state.config.nats_timeout + Duration::from_secs(1);
    while state.metrics.channels.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_request_bytes;
    let batch_limit = state.config.max_batch_request_bytes;
    Router::new()
        .route(
            "/rooms/{room}/messages",
            post(api::send_message).get(api::history),
        )
        .route(
            "/rooms/{room}/messages/batch",
            post(api::send_batch).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .route("/rooms/{room}/stream", get(api::live_stream))
        .route("/channel", get(channel::channel))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

// Retries until the stream exists (NATS may come up after us), and again each time a
// publish finds it gone, for as long as the server runs.
async fn ensure_stream_loop(state: Arc<AppState>) {
    loop {
        let mut delay = Duration::from_millis(200);
        loop {
            match state.store.ensure_stream().await {
                Ok(()) => {
                    state.stream_ready.store(true, Ordering::Release);
                    tracing::info!(stream = %state.config.stream, "stream ready");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stream not ready yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        state.stream_lost.notified().await;
    }
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
        }
    }
}
