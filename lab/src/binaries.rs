//! Where the lab's programs are: found by `lab up`, recorded in the lab's state, used to
//! launch every process.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the lab's programs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binaries {
    pub nats_server: PathBuf,
    pub talk_server: PathBuf,
    pub talk_load: PathBuf,
    pub prometheus: PathBuf,
    pub alertmanager: PathBuf,
    /// The page cache that loses unsynced writes on a power cut (`firedrill-powerloss`).
    pub powerloss: PathBuf,
}
