//! chaosctl's library: every command's logic, pure where it can be; `main.rs` only parses
//! the command line and dispatches.

pub mod access;
pub mod cluster;
pub mod crds;
pub mod describe;
#[cfg(test)]
mod fixtures;
pub mod gameday;
pub mod get;
pub mod history;
pub mod lab;
pub mod output;
pub mod pause;
pub mod stop;
pub mod validate;

use cluster::ClusterError;

/// Errors that stop a command before it can give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not render the CRDs: {0}")]
    Render(#[from] serde_json::Error),
    #[error("{0}")]
    Lab(#[from] firedrill_lab::LabError),
    #[error("[{cat}] {err}", cat = .0.category(), err = .0)]
    Cluster(#[from] ClusterError),
}
