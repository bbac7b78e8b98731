//! The lab's network: one namespace per node, a router namespace holding one bridge per
//! zone, and a veth from the host to the router so the host can reach every node.
//!
//! Built with `ip` (argv only, no shell). Deleting the namespaces removes every interface
//! and bridge with them, so teardown cannot leave links behind.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use firedrill_faults::{Netns, run_in};

use crate::error::{LabError, Result};
use crate::topology::{NETWORK, NETWORK_PREFIX, PREFIX, Topology, bridge_of};

/// The router's namespace.
pub fn router_netns() -> String {
    format!("{PREFIX}-router")
}

/// The host side of the host↔router link.
pub fn host_link() -> String {
    format!("{PREFIX}-host")
}

const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 254, 1);
const ROUTER_HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 254, 2);

/// Runs `ip` with `args`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Names of the lab's network namespaces that exist now.
pub fn existing_namespaces() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect();
    names.sort();
    names
}

/// Path of a named namespace, as the fault library wants it.
pub fn netns_path(name: &str) -> Netns {
    Netns::Path(Path::new("/run/netns").join(name))
}

fn enable_forwarding(netns: &str) -> Result<()> {
    run_in(&netns_path(netns), || {
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| LabError::io("/proc/sys/net/ipv4/ip_forward", e))
    })?
}

/// Creates every namespace, bridge, link, address and route of `topology`.
pub fn create(topology: &Topology) -> Result<()> {
    let router = router_netns();
    ip(&["netns", "add", &router])?;
    ip(&["-n", &router, "link", "set", "lo", "up"])?;
    enable_forwarding(&router)?;
    for (bridge, gateway) in topology.zone_subnets() {
        ip(&["-n", &router, "link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["-n", &router, "link", "set", &bridge, "up"])?;
    }
    for (i, node) in topology.nodes.iter().enumerate() {
        let ns = node.netns();
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let port = format!("{PREFIX}-p{i}");
        ip(&[
            "-n", &router, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &router,
            "link",
            "set",
            &port,
            "master",
            &bridge_of(node),
            "up",
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", node.addr),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &node.gateway.to_string(),
        ])?;
    }
    // The host reaches the lab through the router; it needs no forwarding of its own.
    let host = host_link();
    ip(&[
        "link", "add", &host, "type", "veth", "peer", "name", "uplink", "netns", &router,
    ])?;
    ip(&["addr", "add", &format!("{HOST_ADDR}/30"), "dev", &host])?;
    ip(&["link", "set", &host, "up"])?;
    ip(&[
        "-n",
        &router,
        "addr",
        "add",
        &format!("{ROUTER_HOST_ADDR}/30"),
        "dev",
        "uplink",
    ])?;
    ip(&["-n", &router, "link", "set", "uplink", "up"])?;
    ip(&[
        "route",
        "add",
        &format!("{NETWORK}/{NETWORK_PREFIX}"),
        "via",
        &ROUTER_HOST_ADDR.to_string(),
        "dev",
        &host,
    ])?;
    Ok(())
}

/// Deletes every lab namespace (and with them their links and nftables tables) and the
/// host link. Idempotent; returns what it deleted.
pub fn delete_all() -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for ns in existing_namespaces() {
        match ip(&["netns", "delete", &ns]) {
            Ok(()) => deleted.push(ns),
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Deleting the router removes the veth's peer, and so the host side; this covers a
    // router namespace that was never created. The kernel tears a deleted namespace down
    // asynchronously, so the host side may vanish between the look and the delete: gone
    // is what was wanted.
    let host_side = Path::new("/sys/class/net").join(host_link());
    if host_side.exists() {
        match ip(&["link", "delete", &host_link()]) {
            Ok(()) => deleted.push(host_link()),
            Err(_) if !host_side.exists() => {}
            Err(e) => return Err(e),
        }
    }
    if errors.is_empty() {
        Ok(deleted)
    } else {
        Err(LabError::Command {
            command: "ip netns delete".to_owned(),
            detail: errors.join("; "),
        })
    }
}

/// Refuses to build the lab over an address range the host already routes.
pub fn check_address_range_free() -> Result<()> {
    let out = Command::new("ip")
        .args([
            "-4",
            "route",
            "show",
            "root",
            &format!("{NETWORK}/{NETWORK_PREFIX}"),
        ])
        .output()
        .map_err(|e| LabError::Command {
            command: "ip route show".to_owned(),
            detail: e.to_string(),
        })?;
    let routes = String::from_utf8_lossy(&out.stdout);
    let foreign: Vec<&str> = routes
        .lines()
        .filter(|l| !l.contains(&host_link()) && !l.trim().is_empty())
        .collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(LabError::State(format!(
            "the lab's network {NETWORK}/{NETWORK_PREFIX} is already routed on this host ({}); \
             the lab will not shadow it",
            foreign.join("; ")
        )))
    }
}
