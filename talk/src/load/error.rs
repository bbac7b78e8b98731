//! Errors that stop talk-load.

use super::client::ClientError;

/// Errors that stop talk-load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("bind SLI endpoint {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Client(#[from] ClientError),
    #[error("writing report to {path}: {source}")]
    Report {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding report: {0}")]
    Encode(#[from] serde_json::Error),
}

impl LoadError {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Bind { .. } => "bind",
            Self::Client(_) => "client",
            Self::Report { .. } => "report",
            Self::Encode(_) => "encode",
        }
    }
}
