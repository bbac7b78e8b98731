//! The lab's one error type.

use std::path::PathBuf;

/// Everything that can go wrong bringing up, running or tearing down the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs privileges this process does not have.
    #[error("{0}")]
    Privileges(String),
    /// A program the lab runs is missing.
    #[error("{what} not found: {hint}")]
    MissingProgram { what: String, hint: String },
    /// A command (ip, nft) failed.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lab is not up (no state file), or its state cannot be read.
    #[error("{0}")]
    State(String),
    /// Another run directory's lab is up; the lab's names are fixed, so only one fits.
    #[error(
        "a lab is already up in {}: only one lab fits on a machine; take it down first with \
         `chaosctl lab down --dir {}`",
        .0.display(),
        .0.display()
    )]
    OtherLabUp(PathBuf),
    /// A process did not become ready in time.
    #[error("{0}")]
    NotReady(String),
    /// `chaosctl lab stop-all` paused the lab; nothing runs until `chaosctl lab resume`.
    #[error("the lab is {0}")]
    Paused(String),
    /// An experiment cannot run in the lab as written (targets, blast radius).
    #[error("{0}")]
    Plan(String),
    /// The fault planner refused the experiment (the same refusal as on a cluster).
    #[error("{}: {source}", source.field())]
    Refused {
        #[from]
        source: firedrill_core::planner::PlanError,
    },
    #[error(transparent)]
    Fault(#[from] firedrill_faults::Error),
    #[error(transparent)]
    Probe(#[from] firedrill_probes::Error),
}

impl LabError {
    /// A stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            LabError::Privileges(_) => "privileges",
            LabError::MissingProgram { .. } => "missing_program",
            LabError::Command { .. } => "command",
            LabError::Io { .. } => "io",
            LabError::State(_) => "state",
            LabError::OtherLabUp(_) => "other_lab_up",
            LabError::NotReady(_) => "not_ready",
            LabError::Paused(_) => "paused",
            LabError::Plan(_) | LabError::Refused { .. } => "plan",
            LabError::Fault(e) => e.category(),
            LabError::Probe(_) => "probe",
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
