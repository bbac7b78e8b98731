//! The one error type of the fault primitives.

use std::path::PathBuf;

/// Everything that can go wrong while applying, inspecting or reverting a fault.
///
/// Each variant has a stable [`Error::category`] used as a metric label and in events,
/// so renaming a variant never changes dashboards.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An injection id that cannot name a chain or a journal file.
    #[error("invalid injection id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// Any other input that fails validation (CIDR, path, empty target set, ...).
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },

    /// The operation needs privileges this process does not have.
    #[error("permission denied: {0}")]
    Permission(String),

    /// Opening or entering a network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The `nft` binary could not be run at all.
    #[error("cannot run nft: {0}")]
    NftSpawn(#[source] std::io::Error),

    /// `nft` ran and refused the rule set.
    #[error("nft failed ({status}): {stderr}")]
    Nft { status: String, stderr: String },

    /// The kernel refused an nftables transaction sent over netlink: the same refusal `nft`
    /// reports as [`Error::Nft`], so it shares its category.
    #[error("nftables refused {what}: {errno}")]
    NftRefused {
        what: String,
        errno: nix::errno::Errno,
    },

    /// Talking netlink to nftables failed: the socket, sending, or receiving the answers.
    #[error("nftables netlink: {0}")]
    NftNetlink(String),

    /// `nft` printed something we could not understand.
    #[error("unexpected nft output: {0}")]
    NftOutput(String),

    /// Signalling or inspecting a process failed (other than it being gone).
    #[error("process {pid}: {source}")]
    Process {
        pid: i32,
        #[source]
        source: std::io::Error,
    },

    /// Mounting, unmounting or reading the mount table failed.
    #[error("mount {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Deleting a directory's contents failed part-way.
    #[error("wipe {path}: {source}")]
    Wipe {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing the crash journal failed.
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A journal file exists but does not parse; it is left in place for a human.
    #[error("corrupt journal entry {path}: {source}")]
    JournalCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// `nft` did not finish in time and was killed.
    #[error("nft did not finish within {}s and was killed", .after.as_secs())]
    NftTimeout { after: std::time::Duration },

    /// A call into the kernel did not return in time (a hung mount, a blocked `/proc`
    /// read); it may still finish later, see [`crate::bounded`].
    #[error("{what} did not finish within {}s", .after.as_secs())]
    Timeout {
        what: String,
        after: std::time::Duration,
    },

    /// An earlier call on the same injection has not returned yet (it timed out and may
    /// still land); this one is refused rather than run beside it.
    #[error("{what} of injection {id} refused: an earlier call on it has not returned yet")]
    Busy { id: String, what: String },

    /// A worker thread panicked; a bug, reported instead of propagated.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A short, stable, snake_case name for metrics labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Permission(_) => "permission",
            Error::Netns { .. } => "netns",
            Error::NftSpawn(_) => "nft_spawn",
            Error::Nft { .. } | Error::NftRefused { .. } => "nft",
            Error::NftNetlink(_) => "nft_netlink",
            Error::NftTimeout { .. } => "nft_timeout",
            Error::NftOutput(_) => "nft_output",
            Error::Process { .. } => "process",
            Error::Mount { .. } => "mount",
            Error::Wipe { .. } => "wipe",
            Error::Journal { .. } => "journal",
            Error::JournalCorrupt { .. } => "journal_corrupt",
            Error::Timeout { .. } => "timeout",
            Error::Busy { .. } => "busy",
            Error::Internal(_) => "internal",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable_snake_case() {
        let e = Error::invalid("cidr", "bad");
        assert_eq!(e.category(), "invalid_input");
        let e = Error::Nft {
            status: "exit status: 1".into(),
            stderr: "x".into(),
        };
        assert_eq!(e.category(), "nft");
        assert!(e.to_string().contains("nft failed"));
    }
}
