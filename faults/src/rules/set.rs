//! What an injection does to a namespace's traffic, as asked for, and its validation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use crate::error::{Error, Result};

/// Most peers accepted in one rule set (bounds the size of one nft transaction).
pub const MAX_PEERS: usize = 4096;

/// Which packets of a namespace a partition drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Packets arriving from the peers.
    Ingress,
    /// Packets leaving towards the peers.
    Egress,
    /// Both.
    Both,
}

/// Transport protocol for a port filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    /// TCP and UDP.
    Any,
}

/// Restricts a rule set to traffic where either side uses one of these ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ports {
    pub protocol: Protocol,
    pub ports: Vec<u16>,
}

/// What an injection does to a namespace's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSet {
    /// Drop traffic from and/or to these networks.
    Partition {
        peers: Vec<Cidr>,
        direction: Direction,
        /// Drop only this share of it (whole percent, 1 to 100, drawn at random per
        /// packet); unset drops all of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_percent: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ports: Option<Ports>,
    },
    /// Drop everything in both directions except loopback (a zone losing its links).
    Blackout {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ports: Option<Ports>,
    },
}

impl RuleSet {
    /// Checks the rule set and returns it in canonical form (peers sorted, duplicates and
    /// networks covered by another peer removed — nftables rejects overlapping intervals).
    pub fn validated(&self) -> Result<RuleSet> {
        let ports = |p: &Option<Ports>| -> Result<Option<Ports>> {
            let Some(p) = p else { return Ok(None) };
            if p.ports.is_empty() {
                return Err(Error::invalid("ports", "port list is empty"));
            }
            if p.ports.contains(&0) {
                return Err(Error::invalid("ports", "port 0 is not a port"));
            }
            let set: BTreeSet<u16> = p.ports.iter().copied().collect();
            Ok(Some(Ports {
                protocol: p.protocol,
                ports: set.into_iter().collect(),
            }))
        };
        match self {
            RuleSet::Partition {
                peers,
                direction,
                loss_percent,
                ports: p,
            } => {
                if peers.is_empty() {
                    return Err(Error::invalid(
                        "peers",
                        "a partition needs at least one peer",
                    ));
                }
                if peers.len() > MAX_PEERS {
                    return Err(Error::invalid(
                        "peers",
                        format!("{} peers, at most {MAX_PEERS}", peers.len()),
                    ));
                }
                if let Some(percent) = loss_percent
                    && !(1..=100).contains(percent)
                {
                    return Err(Error::invalid(
                        "loss_percent",
                        format!("{percent} is not a share of packets: give 1 to 100"),
                    ));
                }
                Ok(RuleSet::Partition {
                    peers: normalise(peers),
                    direction: *direction,
                    // Dropping 100 % is the plain cut, so it installs the very same rules.
                    loss_percent: loss_percent.filter(|&p| p < 100),
                    ports: ports(p)?,
                })
            }
            RuleSet::Blackout { ports: p } => Ok(RuleSet::Blackout { ports: ports(p)? }),
        }
    }
}

fn normalise(peers: &[Cidr]) -> Vec<Cidr> {
    // Sorting puts a wider network before the networks it contains (same address, shorter
    // prefix first; contained networks have addresses >= the container's).
    let mut sorted: Vec<Cidr> = peers.to_vec();
    sorted.sort_by_key(|c| (c.addr().is_ipv6(), c.addr(), c.prefix()));
    let mut out: Vec<Cidr> = Vec::with_capacity(sorted.len());
    for c in sorted {
        if !out.iter().rev().take(1).any(|kept| kept.contains(&c)) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn validation_normalises_peers() {
        let rs = RuleSet::Partition {
            peers: cidrs(&[
                "10.0.1.0/24",
                "10.0.0.0/16",
                "10.0.0.5",
                "fd00::1",
                "10.0.0.0/16",
            ]),
            direction: Direction::Both,
            loss_percent: None,
            ports: Some(Ports {
                protocol: Protocol::Tcp,
                ports: vec![443, 80, 443],
            }),
        };
        let RuleSet::Partition { peers, ports, .. } = rs.validated().unwrap() else {
            panic!("kind changed")
        };
        assert_eq!(peers, cidrs(&["10.0.0.0/16", "fd00::1"]));
        assert_eq!(ports.unwrap().ports, vec![80, 443]);
    }

    #[test]
    fn validation_rejects_empty_inputs() {
        let empty = RuleSet::Partition {
            peers: vec![],
            direction: Direction::Both,
            loss_percent: None,
            ports: None,
        };
        assert!(empty.validated().is_err());
        let no_ports = RuleSet::Blackout {
            ports: Some(Ports {
                protocol: Protocol::Any,
                ports: vec![],
            }),
        };
        assert!(no_ports.validated().is_err());
        let zero = RuleSet::Blackout {
            ports: Some(Ports {
                protocol: Protocol::Any,
                ports: vec![0],
            }),
        };
        assert!(zero.validated().is_err());
    }

    #[test]
    fn rule_set_serde_shape() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.0/8"]),
            direction: Direction::Ingress,
            loss_percent: None,
            ports: None,
        };
        let s = serde_json::to_string(&rs).unwrap();
        assert_eq!(
            s,
            r#"{"partition":{"peers":["10.0.0.0/8"],"direction":"ingress"}}"#
        );
        assert_eq!(serde_json::from_str::<RuleSet>(&s).unwrap(), rs);
    }
}
