//! Finding the nats-server binary and owning a running server process.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{ServerSpec, SyncPolicy, render};
use super::error::{NatsError, io_err};

/// Env var naming the nats-server binary; otherwise `nats-server` on PATH.
pub const BINARY_ENV: &str = "TALK_NATS_SERVER";

/// A nats-server binary and its version.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
}

impl NatsBinary {
    /// Finds the binary via `TALK_NATS_SERVER` or PATH and reads its version.
    pub fn locate() -> Result<Self, NatsError> {
        let path = std::env::var_os(BINARY_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        Self::at(path)
    }

    /// Uses the binary at `path`.
    pub fn at(path: PathBuf) -> Result<Self, NatsError> {
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|e| NatsError::BinaryMissing(format!("{}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let version = parse_version(&text).ok_or(NatsError::UnknownVersion { output: text })?;
        Ok(Self { path, version })
    }

    /// `sync_interval` (and so fsync `always`) arrived in nats-server 2.10.
    pub fn supports_sync_interval(&self) -> bool {
        self.version >= (2, 10, 0)
    }

    /// Refuses a spec this binary cannot honour, instead of silently
    /// running with weaker durability than asked for.
    pub fn check(&self, sync: SyncPolicy) -> Result<(), NatsError> {
        if sync != SyncPolicy::ServerDefault && !self.supports_sync_interval() {
            let (a, b, c) = self.version;
            return Err(NatsError::SyncUnsupported {
                version: format!("{a}.{b}.{c}"),
                policy: sync.to_string(),
            });
        }
        Ok(())
    }

    /// The command that runs a server from `config`; callers may wrap it
    /// (e.g. to enter a network namespace) before [`NatsProcess::spawn_command`].
    pub fn command(&self, config: &Path) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-c").arg(config);
        cmd
    }
}

/// Parses `nats-server: v2.10.29` into (2, 10, 29).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().rsplit('v').next()?.trim();
    let mut parts = v.split(['.', '-', ' ']).map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// A running nats-server. Killed (SIGKILL) on drop, so tests never leak
/// servers even when they panic.
#[derive(Debug)]
pub struct NatsProcess {
    name: String,
    client_addr: SocketAddr,
    log_path: PathBuf,
    child: Option<Child>,
}

impl NatsProcess {
    /// Writes `spec`'s config to `config_path` and starts the server, logging
    /// to `log_path`.
    pub fn spawn(
        binary: &NatsBinary,
        spec: &ServerSpec,
        config_path: &Path,
        log_path: &Path,
    ) -> Result<Self, NatsError> {
        binary.check(spec.sync)?;
        fs::create_dir_all(&spec.data_dir).map_err(io_err(spec.data_dir.display()))?;
        fs::write(config_path, render(spec)).map_err(io_err(config_path.display()))?;
        Self::spawn_command(
            binary.command(config_path),
            &spec.name,
            spec.client_addr,
            log_path,
        )
    }

    /// Starts an already prepared command (see [`NatsBinary::command`]).
    pub fn spawn_command(
        mut cmd: Command,
        name: &str,
        client_addr: SocketAddr,
        log_path: &Path,
    ) -> Result<Self, NatsError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(io_err(log_path.display()))?;
        let log2 = log.try_clone().map_err(io_err(log_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| NatsError::BinaryMissing(format!("{cmd:?}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            client_addr,
            log_path: log_path.to_owned(),
            child: Some(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits until the client port accepts connections.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), NatsError> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !self.is_running() {
                break;
            }
            if TcpStream::connect_timeout(&self.client_addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(NatsError::NotReady {
            name: self.name.clone(),
            waited_ms: start.elapsed().as_millis(),
            log: self.log_tail(),
        })
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL, like a power cut for the process (not for the page cache).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if the server has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Result<(), NatsError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|source| {
            NatsError::Signal {
                name: self.name.clone(),
                source,
            }
        })?;
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("nats-server: v2.10.29\n"), Some((2, 10, 29)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("garbage"), None);
    }
}
