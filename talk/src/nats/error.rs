//! Errors from starting and controlling nats-server processes.

/// Errors from starting and controlling nats-server processes.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "nats-server not found ({0}); install it with `apt-get install nats-server` \
         or point TALK_NATS_SERVER at a binary"
    )]
    BinaryMissing(String),
    #[error("could not read nats-server version from {output:?}")]
    UnknownVersion { output: String },
    #[error(
        "nats-server {version} does not support `sync_interval` (needs >= 2.10); \
         fsync policy {policy} cannot be configured. Debian bookworm ships 2.9.10: \
         use a newer build (e.g. `go install github.com/nats-io/nats-server/v2@v2.12.15`) \
         and set TALK_NATS_SERVER to it"
    )]
    SyncUnsupported { version: String, policy: String },
    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server {name} did not become ready within {waited_ms} ms; log: {log}")]
    NotReady {
        name: String,
        waited_ms: u128,
        log: String,
    },
    #[error("no server with index {0}")]
    NoSuchServer(usize),
    #[error("signal to {name}: {source}")]
    Signal {
        name: String,
        #[source]
        source: nix::Error,
    },
}

impl NatsError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::BinaryMissing(_) | Self::UnknownVersion { .. } => "binary",
            Self::SyncUnsupported { .. } | Self::InvalidSpec(_) => "config",
            Self::Io { .. } => "io",
            Self::NotReady { .. } => "not_ready",
            Self::NoSuchServer(_) => "no_such_server",
            Self::Signal { .. } => "signal",
        }
    }
}

pub(crate) fn io_err(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> NatsError {
    let path = path.to_string();
    move |source| NatsError::Io { path, source }
}
