//! An N-server JetStream cluster on loopback, one server per "zone".

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{ServerSpec, SyncPolicy};
use super::error::{NatsError, io_err};
use super::process::{NatsBinary, NatsProcess};

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalClusterSpec {
    /// Number of servers (1 = standalone, no cluster block).
    pub servers: usize,
    pub sync: SyncPolicy,
    /// Directory for configs, logs and data (one subdirectory per server).
    pub base_dir: PathBuf,
    pub cluster_name: String,
    /// How long to wait for each server's client port.
    pub ready_timeout: Duration,
}

impl LocalClusterSpec {
    pub fn new(servers: usize, sync: SyncPolicy, base_dir: impl Into<PathBuf>) -> Self {
        Self {
            servers,
            sync,
            base_dir: base_dir.into(),
            cluster_name: "talk".to_owned(),
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// Zone names used for servers: a, b, c, ...
pub fn zone_name(index: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    match letters.get(index) {
        Some(l) => char::from(*l).to_string(),
        None => format!("z{index}"),
    }
}

/// Builds server specs for `n` servers on loopback with the given ports.
pub fn loopback_specs(
    spec: &LocalClusterSpec,
    client_ports: &[u16],
    cluster_ports: &[u16],
    monitor_ports: &[u16],
) -> Vec<ServerSpec> {
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let clustered = spec.servers > 1;
    (0..spec.servers)
        .map(|i| {
            let zone = zone_name(i);
            let port = |ports: &[u16]| ports.get(i).copied().unwrap_or(0);
            ServerSpec {
                name: format!("talk-{zone}"),
                zone: zone.clone(),
                client_addr: addr(port(client_ports)),
                monitor_addr: Some(addr(port(monitor_ports))),
                cluster_addr: clustered.then(|| addr(port(cluster_ports))),
                routes: if clustered {
                    (0..spec.servers)
                        .filter(|j| *j != i)
                        .map(|j| addr(cluster_ports.get(j).copied().unwrap_or(0)))
                        .collect()
                } else {
                    Vec::new()
                },
                cluster_name: spec.cluster_name.clone(),
                data_dir: spec.base_dir.join(format!("talk-{zone}")).join("data"),
                sync: spec.sync,
            }
        })
        .collect()
}

/// Picks `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, NatsError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io_err("127.0.0.1:0")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(io_err("127.0.0.1:0"))
        })
        .collect()
}

/// A running loopback cluster; all servers are killed on drop.
#[derive(Debug)]
pub struct LocalCluster {
    binary: NatsBinary,
    specs: Vec<ServerSpec>,
    base_dir: PathBuf,
    ready_timeout: Duration,
    servers: Vec<Option<NatsProcess>>,
}

impl LocalCluster {
    /// Starts every server and waits until each accepts client connections.
    pub fn start(binary: NatsBinary, spec: LocalClusterSpec) -> Result<Self, NatsError> {
        if spec.servers == 0 {
            return Err(NatsError::InvalidSpec("servers must be >= 1".into()));
        }
        binary.check(spec.sync)?;
        let ports = free_ports(spec.servers * 3)?;
        let (clients, rest) = ports.split_at(spec.servers);
        let (clusters, monitors) = rest.split_at(spec.servers);
        let specs = loopback_specs(&spec, clients, clusters, monitors);
        fs::create_dir_all(&spec.base_dir).map_err(io_err(spec.base_dir.display()))?;
        let mut cluster = Self {
            binary,
            specs,
            base_dir: spec.base_dir,
            ready_timeout: spec.ready_timeout,
            servers: Vec::new(),
        };
        for i in 0..cluster.specs.len() {
            let process = cluster.spawn(i)?;
            cluster.servers.push(Some(process));
        }
        for server in cluster.servers.iter_mut().flatten() {
            server.wait_ready(cluster.ready_timeout)?;
        }
        Ok(cluster)
    }

    fn spawn(&self, i: usize) -> Result<NatsProcess, NatsError> {
        let spec = self.specs.get(i).ok_or(NatsError::NoSuchServer(i))?;
        let dir = self.server_dir(&spec.name);
        fs::create_dir_all(&dir).map_err(io_err(dir.display()))?;
        NatsProcess::spawn(
            &self.binary,
            spec,
            &dir.join("nats.conf"),
            &dir.join("nats.log"),
        )
    }

    fn server_dir(&self, name: &str) -> PathBuf {
        self.base_dir.join(name)
    }

    pub fn specs(&self) -> &[ServerSpec] {
        &self.specs
    }

    /// `nats://` URLs of all servers, for clients.
    pub fn client_urls(&self) -> Vec<String> {
        self.specs
            .iter()
            .map(|s| format!("nats://{}", s.client_addr))
            .collect()
    }

    /// Process ids of the running servers (benchmarks read their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .flatten()
            .filter_map(NatsProcess::pid)
            .collect()
    }

    /// Index of the server with this name (e.g. a stream leader).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) -> Result<(), NatsError> {
        let slot = self.servers.get_mut(i).ok_or(NatsError::NoSuchServer(i))?;
        if let Some(mut p) = slot.take() {
            p.kill();
        }
        Ok(())
    }

    /// Removes server `i`'s JetStream data directory (disk loss). The server
    /// should be stopped first.
    pub fn wipe_data(&mut self, i: usize) -> Result<(), NatsError> {
        let spec = self.specs.get(i).ok_or(NatsError::NoSuchServer(i))?;
        remove_dir_if_exists(&spec.data_dir)
    }

    /// Starts server `i` again (same config, same ports) and waits for it.
    pub fn restart(&mut self, i: usize) -> Result<(), NatsError> {
        self.kill(i)?;
        let mut process = self.spawn(i)?;
        process.wait_ready(self.ready_timeout)?;
        if let Some(slot) = self.servers.get_mut(i) {
            *slot = Some(process);
        }
        Ok(())
    }

    /// Recent log lines of every server, for test failure messages.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .flatten()
            .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), NatsError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NatsError::Io {
            path: path.display().to_string(),
            source: e,
        }),
    }
}
