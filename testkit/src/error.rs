//! One error for the harness: what the API server said, a manifest that is not an object,
//! or a wait that ran out.

use std::time::Duration;

/// What went wrong in a harness call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("not a valid object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{what} not within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
