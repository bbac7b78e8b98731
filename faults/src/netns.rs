//! Running code inside a network namespace without `unsafe`.
//!
//! Network-namespace membership is a property of each *thread* (the kernel keeps it in the
//! task's `nsproxy`), and `setns(CLONE_NEWNET)`, unlike the mount or user namespace, is
//! allowed in a multi-threaded process. So we spawn a short-lived thread, move only that
//! thread into the target namespace, and run the work there: sockets it opens belong to
//! the namespace, and children it spawns (`std::process::Command` forks/`posix_spawn`s from
//! the calling thread) inherit the thread's namespace. The thread then ends, so no other
//! code of the process ever runs in the wrong namespace.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a network fault is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Netns {
    /// The namespace this process runs in (the node's, for a `hostNetwork` agent).
    Host,
    /// A namespace file: `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
}

/// The kernel's identity of a namespace (device and inode of its nsfs file), recorded so a
/// revert after a crash does not touch a different namespace that reuses the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl Netns {
    /// A namespace created by `ip netns add NAME`.
    pub fn named(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && name != "."
            && name != "..";
        if !valid {
            return Err(Error::invalid("netns name", format!("{name:?}")));
        }
        Ok(Netns::Path(Path::new("/run/netns").join(name)))
    }

    /// The namespace of a running process (e.g. a pod's pause container).
    pub fn of_pid(pid: i32) -> Self {
        Netns::Path(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// A short label for logs and errors.
    pub fn display(&self) -> String {
        match self {
            Netns::Host => "host".to_string(),
            Netns::Path(p) => p.display().to_string(),
        }
    }

    /// The namespace's identity; `Ok(None)` when its file is gone (the namespace died).
    pub fn identity(&self) -> Result<Option<NetnsIdentity>> {
        let path = match self {
            Netns::Host => Path::new("/proc/self/ns/net"),
            Netns::Path(p) => p.as_path(),
        };
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(NetnsIdentity {
                dev: m.dev(),
                ino: m.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Netns {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Runs `f` inside `ns` (see the module docs for why a dedicated thread is safe).
pub fn run_in<T, F>(ns: &Netns, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = match ns {
        Netns::Host => return Ok(f()),
        Netns::Path(p) => p,
    };
    let netns_err = |source| Error::Netns {
        path: path.clone(),
        source,
    };
    // Open before spawning so a missing namespace is reported without a thread.
    let file = File::open(path).map_err(netns_err)?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| netns_err(e.into()))?;
            drop(file);
            Ok(f())
        });
        worker
            .join()
            .map_err(|_| Error::Internal("netns worker thread panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_validates() {
        assert_eq!(
            Netns::named("fd-a_1").unwrap(),
            Netns::Path("/run/netns/fd-a_1".into())
        );
        for bad in ["", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(Netns::named(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_shape() {
        assert_eq!(serde_json::to_string(&Netns::Host).unwrap(), "\"host\"");
        assert_eq!(
            serde_json::to_string(&Netns::of_pid(7)).unwrap(),
            r#"{"path":"/proc/7/ns/net"}"#
        );
    }

    #[test]
    fn missing_namespace_is_an_error_and_has_no_identity() {
        let ns = Netns::Path("/nonexistent/ns".into());
        assert_eq!(run_in(&ns, || ()).unwrap_err().category(), "netns");
        assert_eq!(ns.identity().unwrap(), None);
    }
}
