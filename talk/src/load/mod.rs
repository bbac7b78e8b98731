//! talk-load: open-loop load, live SLIs and a Jepsen-style loss checker.
//!
//! [`generator`] sends, [`reader`] follows rooms for the continuous loss
//! check, [`sli`] keeps the sliding window behind `GET /sli`, [`drain`]
//! reads everything back at the end and [`checker`] gives the verdict.

pub mod balancer;
pub mod checker;
pub mod client;
pub mod config;
pub mod drain;
pub mod generator;
pub mod ranges;
pub mod reader;
pub mod run;
pub mod sli;
pub mod targets;
pub mod verify;

pub use config::{LoadConfig, Profile};
pub use run::{LoadReport, run};

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
    Client(#[from] client::ClientError),
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
