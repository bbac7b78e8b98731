//! Typed network rule sets and the nftables JSON they become (pure, no I/O).
//!
//! Each injection owns up to two base chains in the `inet firedrill` table:
//! `<id>-in` on the `prerouting` hook (packets arriving, including ones the namespace would
//! forward — on a node that covers pod traffic) and `<id>-out` on `postrouting` (packets
//! leaving, locally generated or forwarded). Both directions need their own chain because a
//! base chain has exactly one hook. Reverting deletes both chains, which also deletes their
//! rules; other injections' chains are untouched.
//!
//! Packets are dropped silently. Note that a drop on the way *out* is reported to a local
//! sender as `EPERM` (a netfilter property), whereas a drop on the way *in* is pure silence
//! like a real network failure; a partition installed on both sides with
//! [`Direction::Ingress`] is the most realistic.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::id::InjectionId;

/// firedrill's own table; deleting it removes every firedrill rule in a namespace.
pub const TABLE: &str = "firedrill";
/// The table's family: `inet` covers IPv4 and IPv6 with one table.
pub const FAMILY: &str = "inet";
/// Most peers accepted in one rule set (bounds the size of one nft transaction).
pub const MAX_PEERS: usize = 4096;

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `fd00::/64`, or a bare address (full length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network from an address and prefix length; host bits must be zero.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(Error::invalid(
                "cidr",
                format!("{addr}/{prefix}: prefix longer than {max}"),
            ));
        }
        if mask(addr, prefix) != addr {
            return Err(Error::invalid(
                "cidr",
                format!(
                    "{addr}/{prefix}: host bits are set (did you mean {}/{prefix}?)",
                    mask(addr, prefix)
                ),
            ));
        }
        Ok(Self { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.prefix <= other.prefix
            && mask(other.addr, self.prefix) == self.addr
    }

    fn to_nft(self) -> Value {
        if self.prefix == max_prefix(self.addr) {
            json!(self.addr.to_string())
        } else {
            json!({"prefix": {"addr": self.addr.to_string(), "len": self.prefix}})
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("cidr", format!("{s:?} is not an address or CIDR"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                (addr, prefix)
            }
            None => {
                let addr: IpAddr = s.parse().map_err(|_| bad())?;
                (addr, max_prefix(addr))
            }
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ports: Option<Ports>,
    },
    /// Drop everything in both directions except loopback (a zone losing its links).
    Blackout {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ports: Option<Ports>,
    },
}

/// The hook a chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `prerouting`: packets arriving.
    In,
    /// `postrouting`: packets leaving.
    Out,
}

impl Hook {
    /// Both hooks, in chain order.
    pub const ALL: [Hook; 2] = [Hook::In, Hook::Out];

    fn suffix(self) -> &'static str {
        match self {
            Hook::In => "-in",
            Hook::Out => "-out",
        }
    }

    fn nft_hook(self) -> &'static str {
        match self {
            Hook::In => "prerouting",
            Hook::Out => "postrouting",
        }
    }

    /// Parses an nftables hook name.
    pub fn from_nft(s: &str) -> Option<Hook> {
        match s {
            "prerouting" => Some(Hook::In),
            "postrouting" => Some(Hook::Out),
            _ => None,
        }
    }
}

/// The name of the chain `id` owns on `hook`.
pub fn chain_name(id: &InjectionId, hook: Hook) -> String {
    format!("{id}{}", hook.suffix())
}

/// The injection a firedrill chain belongs to, if the name is one of ours.
pub fn parse_chain_name(name: &str) -> Option<(InjectionId, Hook)> {
    Hook::ALL.into_iter().find_map(|hook| {
        let id = name.strip_suffix(hook.suffix())?;
        InjectionId::new(id).ok().map(|id| (id, hook))
    })
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
                Ok(RuleSet::Partition {
                    peers: normalise(peers),
                    direction: *direction,
                    ports: ports(p)?,
                })
            }
            RuleSet::Blackout { ports: p } => Ok(RuleSet::Blackout { ports: ports(p)? }),
        }
    }

    /// The chains this rule set needs, each with its rules as nftables JSON expressions.
    fn chains(&self) -> Vec<(Hook, Vec<Vec<Value>>)> {
        let (peers, hooks, ports): (&[Cidr], &[Hook], &Option<Ports>) = match self {
            RuleSet::Partition {
                peers,
                direction,
                ports,
            } => {
                let hooks: &[Hook] = match direction {
                    Direction::Ingress => &[Hook::In],
                    Direction::Egress => &[Hook::Out],
                    Direction::Both => &Hook::ALL,
                };
                (peers, hooks, ports)
            }
            RuleSet::Blackout { ports } => (&[], &Hook::ALL, ports),
        };
        hooks
            .iter()
            .map(|&hook| {
                let selectors = match self {
                    RuleSet::Partition { .. } => peer_selectors(peers, hook),
                    RuleSet::Blackout { .. } => vec![not_loopback(hook)],
                };
                let mut rules = Vec::new();
                for selector in &selectors {
                    for port_match in port_matches(ports) {
                        let mut expr = vec![selector.clone()];
                        expr.extend(port_match);
                        expr.push(json!({"drop": null}));
                        rules.push(expr);
                    }
                }
                (hook, rules)
            })
            .collect()
    }
}

fn normalise(peers: &[Cidr]) -> Vec<Cidr> {
    // Sorting puts a wider network before the networks it contains (same address, shorter
    // prefix first; contained networks have addresses >= the container's).
    let mut sorted: Vec<Cidr> = peers.to_vec();
    sorted.sort_by_key(|c| (c.addr.is_ipv6(), c.addr, c.prefix));
    let mut out: Vec<Cidr> = Vec::with_capacity(sorted.len());
    for c in sorted {
        if !out.iter().rev().take(1).any(|kept| kept.contains(&c)) {
            out.push(c);
        }
    }
    out
}

fn peer_selectors(peers: &[Cidr], hook: Hook) -> Vec<Value> {
    let field = match hook {
        Hook::In => "saddr",
        Hook::Out => "daddr",
    };
    let mut out = Vec::new();
    for (protocol, v4) in [("ip", true), ("ip6", false)] {
        let set: Vec<Value> = peers
            .iter()
            .filter(|c| c.addr.is_ipv4() == v4)
            .map(|c| c.to_nft())
            .collect();
        if !set.is_empty() {
            out.push(json!({"match": {
                "op": "==",
                "left": {"payload": {"protocol": protocol, "field": field}},
                "right": {"set": set},
            }}));
        }
    }
    out
}

fn not_loopback(hook: Hook) -> Value {
    let key = match hook {
        Hook::In => "iifname",
        Hook::Out => "oifname",
    };
    json!({"match": {"op": "!=", "left": {"meta": {"key": key}}, "right": "lo"}})
}

/// Alternatives (one rule each) restricting a rule to the ports; one empty alternative
/// when there is no port filter. A port matches on either side of the packet.
fn port_matches(ports: &Option<Ports>) -> Vec<Vec<Value>> {
    let Some(p) = ports else {
        return vec![vec![]];
    };
    let proto = match p.protocol {
        Protocol::Tcp => json!("tcp"),
        Protocol::Udp => json!("udp"),
        Protocol::Any => json!({"set": ["tcp", "udp"]}),
    };
    ["dport", "sport"]
        .into_iter()
        .map(|field| {
            vec![
                json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto}}),
                json!({"match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "th", "field": field}},
                    "right": {"set": p.ports},
                }}),
            ]
        })
        .collect()
}

fn table() -> Value {
    json!({"family": FAMILY, "name": TABLE})
}

fn chain_ref(name: &str) -> Value {
    json!({"family": FAMILY, "table": TABLE, "name": name})
}

/// One nft transaction that (re)installs `rules` for `id`: creates the table if needed,
/// creates or empties the injection's chains and fills them. Applying twice is the same as
/// applying once, and the kernel applies the whole batch or nothing.
///
/// `rules` must come from [`RuleSet::validated`].
pub fn apply_batch(id: &InjectionId, rules: &RuleSet) -> Value {
    let mut cmds = vec![json!({"add": {"table": table()}})];
    for (hook, chain_rules) in rules.chains() {
        let name = chain_name(id, hook);
        let mut chain = chain_ref(&name);
        if let Value::Object(m) = &mut chain {
            m.insert("type".into(), json!("filter"));
            m.insert("hook".into(), json!(hook.nft_hook()));
            m.insert("prio".into(), json!(0));
            m.insert("policy".into(), json!("accept"));
        }
        cmds.push(json!({"add": {"chain": chain}}));
        cmds.push(json!({"flush": {"chain": chain_ref(&name)}}));
        for expr in chain_rules {
            cmds.push(json!({"add": {"rule": {
                "family": FAMILY, "table": TABLE, "chain": name, "expr": expr,
            }}}));
        }
    }
    json!({"nftables": cmds})
}

/// One nft transaction deleting every chain `id` may own. `add` before `delete` makes it
/// succeed whether or not the table and chains exist (nft 1.0.6 has no `destroy`);
/// `add chain` without a hook leaves an existing base chain as it is.
pub fn revert_batch(id: &InjectionId) -> Value {
    let mut cmds = vec![json!({"add": {"table": table()}})];
    for hook in Hook::ALL {
        let name = chain_name(id, hook);
        cmds.push(json!({"add": {"chain": chain_ref(&name)}}));
        cmds.push(json!({"delete": {"chain": chain_ref(&name)}}));
    }
    json!({"nftables": cmds})
}

/// One nft transaction deleting firedrill's table (idempotent the same way).
pub fn cleanup_batch() -> Value {
    json!({"nftables": [
        {"add": {"table": table()}},
        {"delete": {"table": table()}},
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InjectionId {
        InjectionId::new(s).unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "fd00::/64".parse::<Cidr>().unwrap().to_string(),
            "fd00::/64"
        );
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "x/8",
            "10.0.0.0/",
            "::/129",
            "1.2.3",
        ] {
            assert_eq!(
                bad.parse::<Cidr>().unwrap_err().category(),
                "invalid_input",
                "{bad}"
            );
        }
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
    fn ingress_partition_json() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.0/8", "192.168.1.1"]),
            direction: Direction::Ingress,
            ports: None,
        };
        let batch = apply_batch(&id("p1"), &rs.validated().unwrap());
        let expected = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "firedrill"}}},
            {"add": {"chain": {"family": "inet", "table": "firedrill", "name": "p1-in",
                "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}}},
            {"flush": {"chain": {"family": "inet", "table": "firedrill", "name": "p1-in"}}},
            {"add": {"rule": {"family": "inet", "table": "firedrill", "chain": "p1-in", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"set": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.168.1.1"]}}},
                {"drop": null}
            ]}}}
        ]});
        assert_eq!(batch, expected);
    }

    #[test]
    fn both_directions_dual_stack_with_ports() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.0/8", "fd00::/8"]),
            direction: Direction::Both,
            ports: Some(Ports {
                protocol: Protocol::Any,
                ports: vec![4222],
            }),
        };
        let batch = apply_batch(&id("p2"), &rs.validated().unwrap());
        let cmds = batch["nftables"].as_array().unwrap();
        let rules: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("rule")).collect();
        // 2 hooks x 2 families x 2 port sides.
        assert_eq!(rules.len(), 8);
        let out_rule = rules.iter().find(|r| r["chain"] == "p2-out").unwrap();
        let expr = out_rule["expr"].as_array().unwrap();
        assert_eq!(expr[0]["match"]["left"]["payload"]["field"], "daddr");
        assert_eq!(expr[1]["match"]["right"], json!({"set": ["tcp", "udp"]}));
        assert_eq!(expr[2]["match"]["right"], json!({"set": [4222]}));
        assert_eq!(expr[3], json!({"drop": null}));
        let v6 = rules
            .iter()
            .filter(|r| r["expr"][0]["match"]["left"]["payload"]["protocol"] == "ip6");
        assert_eq!(v6.count(), 4);
    }

    #[test]
    fn egress_partition_uses_postrouting_only() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.1"]),
            direction: Direction::Egress,
            ports: None,
        };
        let batch = apply_batch(&id("e"), &rs.validated().unwrap());
        let chains: Vec<&Value> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"].get("chain"))
            .collect();
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0]["name"], "e-out");
        assert_eq!(chains[0]["hook"], "postrouting");
    }

    #[test]
    fn blackout_spares_loopback() {
        let batch = apply_batch(&id("b"), &RuleSet::Blackout { ports: None });
        let cmds = batch["nftables"].as_array().unwrap();
        let rules: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("rule")).collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0]["expr"],
            json!([{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"drop": null}])
        );
        assert_eq!(rules[1]["chain"], "b-out");
        assert_eq!(
            rules[1]["expr"][0]["match"]["left"]["meta"]["key"],
            "oifname"
        );
    }

    #[test]
    fn revert_and_cleanup_are_add_then_delete() {
        let batch = revert_batch(&id("x"));
        let cmds = batch["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 5);
        assert_eq!(cmds[1]["add"]["chain"]["name"], "x-in");
        assert_eq!(cmds[2]["delete"]["chain"]["name"], "x-in");
        assert_eq!(cmds[4]["delete"]["chain"]["name"], "x-out");
        let batch = cleanup_batch();
        assert_eq!(batch["nftables"][1]["delete"]["table"]["name"], "firedrill");
    }

    #[test]
    fn chain_names_round_trip() {
        for hook in Hook::ALL {
            let name = chain_name(&id("a-in"), hook);
            assert_eq!(parse_chain_name(&name), Some((id("a-in"), hook)));
        }
        assert_eq!(parse_chain_name("input"), None);
        assert_eq!(parse_chain_name("-in"), None);
    }

    #[test]
    fn rule_set_serde_shape() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.0/8"]),
            direction: Direction::Ingress,
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
