//! A FUSE filesystem that models what a power cut does to data written but never fsynced.
//!
//! It mirrors a backing directory. File contents written through the mount stay in this
//! process's memory (an [`overlay::Overlay`] per file, our "page cache") until the file is
//! fsynced; metadata operations (create, mkdir, rename, unlink, truncate, chmod...) go to
//! the backing directory at once. Killing the daemon with SIGKILL is a power cut: the
//! backing directory then holds exactly what was fsynced. SIGTERM flushes everything.
//!
//! The binary `firedrill-powerloss` is the usual entry point; [`daemon::serve`] is what it
//! runs, and [`mountinfo`] helps callers wait for the mount and clean up after a SIGKILL.

pub mod daemon;
pub mod error;
pub mod fs;
pub mod mountinfo;
pub mod nodes;
pub mod overlay;

pub use daemon::{Options, Shutdown, serve};
pub use error::{Error, Result};
pub use fs::{Control, FlushStats, PowerlossFs};
pub use overlay::Overlay;
