//! What the lab is made of: zones, nodes, addresses and the processes placed on them.
//!
//! Pure data, computed from the options; everything else (network, supervisor, faults)
//! reads it from the lab's state file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use talk::load::Transport;
use talk::server::config::DEFAULT_CHANNEL_WINDOW;

/// The three zones; `topology.kubernetes.io/zone` values of the lab.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// Nodes per zone.
pub const NODES_PER_ZONE: usize = 2;
/// Namespace every lab process belongs to (as on the cluster).
pub const NAMESPACE: &str = "talk";
/// Prefix of every network namespace, interface and bridge the lab creates.
pub const PREFIX: &str = "fdlab";
/// The lab's network: zone `i` is `10.77.(i+1).0/24`, the client zone `10.77.10.0/24` and
/// the host link `10.77.254.0/30`.
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);
pub const NETWORK_PREFIX: u8 = 16;

const CLIENT_SUBNET: u8 = 10;
const NATS_CLIENT_PORT: u16 = 4222;
const NATS_CLUSTER_PORT: u16 = 6222;
const NATS_MONITOR_PORT: u16 = 8222;
const TALK_PORT: u16 = 8080;
const PROMETHEUS_PORT: u16 = 9090;
const ALERTMANAGER_PORT: u16 = 9093;

/// A deliberate weakness the lab can be deployed with, to show a game day catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weakness {
    /// The message stream has one replica (on nats-0) instead of three.
    StreamR1,
    /// Every message-store server and talk-server runs in zone-a.
    SingleZone,
    /// JetStream keeps its default lazy fsync (every two minutes) instead of syncing each write.
    NoFsync,
    /// Only one Prometheus (zone-a's) instead of one per monitoring site.
    SingleMonitor,
}

impl Weakness {
    pub const ALL: [Weakness; 4] = [
        Weakness::StreamR1,
        Weakness::SingleZone,
        Weakness::NoFsync,
        Weakness::SingleMonitor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Weakness::StreamR1 => "stream-r1",
            Weakness::SingleZone => "single-zone",
            Weakness::NoFsync => "no-fsync",
            Weakness::SingleMonitor => "single-monitor",
        }
    }

    /// The catalog experiment that should catch this weakness.
    pub fn caught_by(self) -> &'static str {
        match self {
            Weakness::StreamR1 => "disk-loss",
            Weakness::SingleZone => "zone-blackout",
            // Only a power cut of a quorum of replicas at once loses what was not fsynced.
            Weakness::NoFsync => "site-power-loss",
            Weakness::SingleMonitor => "ops-tool-outage",
        }
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Weakness {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Weakness::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Weakness::ALL.iter().map(|w| w.name()).collect();
                format!("unknown weakness {s:?}; one of: {}", names.join(", "))
            })
    }
}

/// A node: one network namespace, attached to its zone's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `zone-a-1`, ..., `client-1`.
    pub name: String,
    /// `None` for the client node, which stands for users outside every zone.
    pub zone: Option<String>,
    pub addr: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

impl Node {
    /// The network namespace's name (`fdlab-zone-a-1`).
    pub fn netns(&self) -> String {
        format!("{PREFIX}-{}", self.name)
    }
}

/// What a process is; each kind knows its command line (see `render`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Nats {
        client: SocketAddr,
        cluster: SocketAddr,
        monitor: SocketAddr,
        routes: Vec<SocketAddr>,
        always_fsync: bool,
    },
    TalkServer {
        listen: SocketAddr,
        nats: Vec<SocketAddr>,
        replicas: usize,
        placement_zone: Option<String>,
    },
    TalkLoad {
        listen: SocketAddr,
        targets: Vec<SocketAddr>,
    },
    Prometheus {
        listen: SocketAddr,
        scrape: BTreeMap<String, Vec<SocketAddr>>,
        alertmanagers: Vec<SocketAddr>,
    },
    Alertmanager {
        listen: SocketAddr,
    },
    /// The node's page cache for `volume_of`'s data volume (a FUSE filesystem): writes stay
    /// in its memory until fsynced, so killing it with the node's power loses them, as a
    /// real power cut does. A process crash alone does not touch it.
    PageCache {
        volume_of: String,
    },
}

impl Kind {
    /// The address the process serves on; `None` for a page cache.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        match self {
            Kind::Nats { client, .. } => Some(*client),
            Kind::TalkServer { listen, .. }
            | Kind::TalkLoad { listen, .. }
            | Kind::Prometheus { listen, .. }
            | Kind::Alertmanager { listen } => Some(*listen),
            Kind::PageCache { .. } => None,
        }
    }
}

/// One process of the deployment ("pod"), placed on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Unique, like a pod name (`nats-0`, `talk-server-zone-a`, `prometheus-a`).
    pub name: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub kind: Kind,
    /// Whether it keeps data in `data/<name>` (the volume a disk loss takes).
    pub has_data: bool,
}

impl Process {
    pub fn namespace(&self) -> &'static str {
        NAMESPACE
    }
}

/// How talk-load sends (`--transport`) and how many sends one talk-server channel holds in
/// flight (`--channel-window`). Both are talk's own defaults: a send channel per producer, as
/// a chat app's client keeps one (a channel a partition silences is closed within 3 s and
/// opened again, see talk/README.md). `--talk-transport http` gives one request per send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TalkSettings {
    pub transport: Transport,
    pub channel_window: usize,
}

impl Default for TalkSettings {
    fn default() -> Self {
        Self {
            transport: Transport::Channel,
            channel_window: DEFAULT_CHANNEL_WINDOW,
        }
    }
}

/// The whole lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub weakness: Option<Weakness>,
    /// talk-load's transport and talk-server's channel window (absent from a lab state
    /// recorded before they were settable: talk's defaults).
    #[serde(default)]
    pub talk: TalkSettings,
    pub nodes: Vec<Node>,
    pub processes: Vec<Process>,
    /// Host names the catalog's probes use (`talk-load.talk`) and where they point.
    pub hosts: BTreeMap<String, SocketAddr>,
}

fn zone_letter(zone: &str) -> &str {
    zone.strip_prefix("zone-").unwrap_or(zone)
}

fn sa(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(addr, port))
}

/// The address of node `n` (1-based) on subnet `subnet`.
fn node_addr(subnet: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, subnet, 10 + n as u8)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Topology {
    /// The lab as deployed with `weakness` (or as it should be, with `None`).
    pub fn new(weakness: Option<Weakness>) -> Self {
        let mut nodes = Vec::new();
        for (i, zone) in ZONES.iter().enumerate() {
            let subnet = i as u8 + 1;
            for n in 1..=NODES_PER_ZONE {
                nodes.push(Node {
                    name: format!("{zone}-{n}"),
                    zone: Some((*zone).to_owned()),
                    addr: node_addr(subnet, n),
                    gateway: Ipv4Addr::new(10, 77, subnet, 1),
                });
            }
        }
        nodes.push(Node {
            name: "client-1".to_owned(),
            zone: None,
            addr: node_addr(CLIENT_SUBNET, 1),
            gateway: Ipv4Addr::new(10, 77, CLIENT_SUBNET, 1),
        });
        let addr_of = |node: &str| -> Ipv4Addr {
            nodes
                .iter()
                .find(|n| n.name == node)
                .map_or(Ipv4Addr::UNSPECIFIED, |n| n.addr)
        };

        // Placement: in a healthy lab, zone Z's nats on Z-1, its talk-server on Z-2. With
        // `single-zone` everything lands on zone-a's two nodes, on separate ports.
        let single_zone = weakness == Some(Weakness::SingleZone);
        let mut processes = Vec::new();
        let nats_nodes: Vec<(String, u16)> = (0..ZONES.len())
            .map(|i| {
                if single_zone {
                    (format!("zone-a-{}", 1 + i % 2), i as u16)
                } else {
                    (format!("{}-1", ZONES[i]), 0)
                }
            })
            .collect();
        let nats_addr = |i: usize, base: u16| sa(addr_of(&nats_nodes[i].0), base + nats_nodes[i].1);
        let nats_clients: Vec<SocketAddr> = (0..ZONES.len())
            .map(|i| nats_addr(i, NATS_CLIENT_PORT))
            .collect();
        for (i, zone) in ZONES.iter().enumerate() {
            let node = &nats_nodes[i].0;
            let placed_zone = if single_zone { "zone-a" } else { zone };
            let name = format!("nats-{i}");
            processes.push(Process {
                name: page_cache_of(&name),
                node: node.clone(),
                labels: labels(&[
                    ("app.kubernetes.io/name", "page-cache"),
                    ("firedrill.dev/volume-of", &name),
                    ("topology.kubernetes.io/zone", placed_zone),
                ]),
                kind: Kind::PageCache {
                    volume_of: name.clone(),
                },
                has_data: false,
            });
            processes.push(Process {
                name: name.clone(),
                node: node.clone(),
                labels: labels(&[
                    ("app.kubernetes.io/name", "nats"),
                    ("statefulset.kubernetes.io/pod-name", &name),
                    ("topology.kubernetes.io/zone", placed_zone),
                ]),
                kind: Kind::Nats {
                    client: nats_addr(i, NATS_CLIENT_PORT),
                    cluster: nats_addr(i, NATS_CLUSTER_PORT),
                    monitor: nats_addr(i, NATS_MONITOR_PORT),
                    routes: (0..ZONES.len())
                        .filter(|j| *j != i)
                        .map(|j| nats_addr(j, NATS_CLUSTER_PORT))
                        .collect(),
                    always_fsync: weakness != Some(Weakness::NoFsync),
                },
                has_data: true,
            });
        }
        let r1 = weakness == Some(Weakness::StreamR1);
        let mut talk_servers = Vec::new();
        for (i, zone) in ZONES.iter().enumerate() {
            let (node, port, placed_zone) = if single_zone {
                ("zone-a-2".to_owned(), TALK_PORT + i as u16, "zone-a")
            } else {
                (format!("{zone}-2"), TALK_PORT, *zone)
            };
            let listen = sa(addr_of(&node), port);
            talk_servers.push(listen);
            // Every talk-server gets every NATS server; the client connects to one of them
            // at random (async-nats shuffles the list), as behind a Kubernetes Service.
            let nats = nats_clients.clone();
            processes.push(Process {
                name: format!("talk-server-{}", zone_letter(zone)),
                node,
                labels: labels(&[
                    ("app.kubernetes.io/name", "talk-server"),
                    ("topology.kubernetes.io/zone", placed_zone),
                ]),
                kind: Kind::TalkServer {
                    listen,
                    nats,
                    replicas: if r1 { 1 } else { 3 },
                    placement_zone: r1.then(|| "zone-a".to_owned()),
                },
                has_data: false,
            });
        }
        let talk_load = sa(addr_of("client-1"), TALK_PORT);
        processes.push(Process {
            name: "talk-load".to_owned(),
            node: "client-1".to_owned(),
            labels: labels(&[("app.kubernetes.io/name", "talk-load")]),
            kind: Kind::TalkLoad {
                listen: talk_load,
                targets: talk_servers.clone(),
            },
            has_data: false,
        });

        let alertmanager = sa(addr_of("zone-c-2"), ALERTMANAGER_PORT);
        let mut scrape = BTreeMap::new();
        scrape.insert("talk-load".to_owned(), vec![talk_load]);
        scrape.insert("talk-server".to_owned(), talk_servers);
        scrape.insert("alertmanager".to_owned(), vec![alertmanager]);
        let monitor_sites: &[&str] = if weakness == Some(Weakness::SingleMonitor) {
            &["zone-a"]
        } else {
            &["zone-a", "zone-b"]
        };
        let mut hosts = BTreeMap::new();
        hosts.insert("talk-load.talk".to_owned(), talk_load);
        for site in monitor_sites {
            let letter = zone_letter(site);
            let listen = sa(addr_of(&format!("{site}-2")), PROMETHEUS_PORT);
            let name = format!("prometheus-{letter}");
            hosts.insert(format!("{name}.talk"), listen);
            processes.push(Process {
                name,
                node: format!("{site}-2"),
                labels: labels(&[
                    ("app.kubernetes.io/name", "prometheus"),
                    ("firedrill.dev/ops-tool", "true"),
                    ("firedrill.dev/ops-site", site),
                    ("topology.kubernetes.io/zone", site),
                ]),
                kind: Kind::Prometheus {
                    listen,
                    scrape: scrape.clone(),
                    alertmanagers: vec![alertmanager],
                },
                has_data: true,
            });
        }
        hosts.insert("alertmanager.talk".to_owned(), alertmanager);
        processes.push(Process {
            name: "alertmanager".to_owned(),
            node: "zone-c-2".to_owned(),
            labels: labels(&[
                ("app.kubernetes.io/name", "alertmanager"),
                ("firedrill.dev/ops-tool", "true"),
                ("firedrill.dev/ops-site", "zone-c"),
                ("topology.kubernetes.io/zone", "zone-c"),
            ]),
            kind: Kind::Alertmanager {
                listen: alertmanager,
            },
            has_data: true,
        });

        Self {
            weakness,
            talk: TalkSettings::default(),
            nodes,
            processes,
            hosts,
        }
    }

    /// The same lab with talk-load and talk-server launched with `talk`.
    pub fn with_talk(mut self, talk: TalkSettings) -> Self {
        self.talk = talk;
        self
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn process(&self, name: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The page cache in front of `process`'s data volume, if it has one.
    pub fn page_cache_for(&self, process: &str) -> Option<&Process> {
        self.processes
            .iter()
            .find(|p| matches!(&p.kind, Kind::PageCache { volume_of } if volume_of == process))
    }

    /// Nodes of `zone`.
    pub fn nodes_in(&self, zone: &str) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.zone.as_deref() == Some(zone))
            .collect()
    }

    /// Processes running on `node`.
    pub fn processes_on(&self, node: &str) -> Vec<&Process> {
        self.processes.iter().filter(|p| p.node == node).collect()
    }

    /// The subnet of a zone's bridge, as (address, prefix) of the router side.
    pub fn zone_subnets(&self) -> Vec<(String, Ipv4Addr)> {
        let mut out: Vec<(String, Ipv4Addr)> = Vec::new();
        for node in &self.nodes {
            let bridge = bridge_of(node);
            if !out.iter().any(|(b, _)| *b == bridge) {
                out.push((bridge, node.gateway));
            }
        }
        out
    }
}

/// The name of the page cache in front of `process`'s volume.
pub fn page_cache_of(process: &str) -> String {
    format!("{process}-page-cache")
}

/// The bridge (in the router namespace) a node is attached to: one per zone, one for clients.
pub fn bridge_of(node: &Node) -> String {
    match &node.zone {
        Some(zone) => format!("br-{}", zone_letter(zone)),
        None => "br-client".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_lab_spreads_over_three_zones_with_two_nodes_each() {
        let t = Topology::new(None);
        for zone in ZONES {
            assert_eq!(t.nodes_in(zone).len(), NODES_PER_ZONE);
            let zone_procs: Vec<_> = t
                .processes
                .iter()
                .filter(|p| t.node(&p.node).and_then(|n| n.zone.as_deref()) == Some(zone))
                .map(|p| p.name.as_str())
                .collect();
            assert!(zone_procs.iter().any(|p| p.starts_with("nats-")), "{zone}");
            assert!(
                zone_procs.iter().any(|p| p.starts_with("talk-server")),
                "{zone}"
            );
        }
        assert!(t.hosts.contains_key("prometheus-a.talk"));
        assert!(t.hosts.contains_key("prometheus-b.talk"));
        let prom_zones: Vec<_> = t
            .processes
            .iter()
            .filter(|p| matches!(p.kind, Kind::Prometheus { .. }))
            .map(|p| t.node(&p.node).and_then(|n| n.zone.clone()))
            .collect();
        assert_eq!(prom_zones.len(), 2);
        assert_ne!(prom_zones[0], prom_zones[1]);
    }

    #[test]
    fn addresses_and_listeners_are_unique() {
        for weakness in [None].into_iter().chain(Weakness::ALL.map(Some)) {
            let t = Topology::new(weakness);
            let mut addrs: Vec<_> = t.nodes.iter().map(|n| n.addr).collect();
            addrs.sort();
            addrs.dedup();
            assert_eq!(addrs.len(), t.nodes.len());
            let mut listens = Vec::new();
            for p in &t.processes {
                match &p.kind {
                    Kind::Nats {
                        client,
                        cluster,
                        monitor,
                        ..
                    } => listens.extend([*client, *cluster, *monitor]),
                    Kind::TalkServer { listen, .. }
                    | Kind::TalkLoad { listen, .. }
                    | Kind::Prometheus { listen, .. }
                    | Kind::Alertmanager { listen } => listens.push(*listen),
                    Kind::PageCache { volume_of } => {
                        assert!(t.process(volume_of).is_some_and(|v| v.has_data));
                    }
                }
                assert!(t.node(&p.node).is_some(), "{} on unknown node", p.name);
            }
            let n = listens.len();
            listens.sort();
            listens.dedup();
            assert_eq!(listens.len(), n, "{weakness:?}");
        }
    }

    #[test]
    fn weaknesses_change_what_they_say() {
        let r1 = Topology::new(Some(Weakness::StreamR1));
        assert!(
            r1.processes
                .iter()
                .any(|p| matches!(p.kind, Kind::TalkServer { replicas: 1, .. }))
        );
        let single = Topology::new(Some(Weakness::SingleZone));
        for p in &single.processes {
            if p.name.starts_with("nats") || p.name.starts_with("talk-server") {
                assert!(p.node.starts_with("zone-a"), "{}", p.name);
            }
        }
        let lazy = Topology::new(Some(Weakness::NoFsync));
        assert!(lazy.processes.iter().any(|p| matches!(
            p.kind,
            Kind::Nats {
                always_fsync: false,
                ..
            }
        )));
        let mono = Topology::new(Some(Weakness::SingleMonitor));
        assert!(!mono.hosts.contains_key("prometheus-b.talk"));
        assert_eq!("no-fsync".parse::<Weakness>(), Ok(Weakness::NoFsync));
        assert!("fsync".parse::<Weakness>().is_err());
    }
}
