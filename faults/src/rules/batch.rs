//! The nftables JSON a rule set becomes: one set of chains per injection in firedrill's
//! own table, and the transactions that install, revert and clean them up.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cidr::{Cidr, max_prefix};
use super::set::{Direction, Ports, Protocol, RuleSet};
use crate::id::InjectionId;

/// firedrill's own table; deleting it removes every firedrill rule in a namespace.
pub const TABLE: &str = "firedrill";
/// The table's family: `inet` covers IPv4 and IPv6 with one table.
pub const FAMILY: &str = "inet";

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
    /// The chains this rule set needs, each with its rules as nftables JSON expressions.
    fn chains(&self) -> Vec<(Hook, Vec<Vec<Value>>)> {
        let (peers, hooks, ports): (&[Cidr], &[Hook], &Option<Ports>) = match self {
            RuleSet::Partition {
                peers,
                direction,
                ports,
                ..
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
        let loss = match self {
            RuleSet::Partition {
                loss_percent: Some(percent),
                ..
            } => Some(random_share(*percent)),
            _ => None,
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
                        expr.extend(loss.clone());
                        expr.push(json!({"drop": null}));
                        rules.push(expr);
                    }
                }
                (hook, rules)
            })
            .collect()
    }
}

/// A peer as nftables JSON: a bare address, or a prefix.
fn cidr_nft(c: &Cidr) -> Value {
    if c.prefix() == max_prefix(c.addr()) {
        json!(c.addr().to_string())
    } else {
        json!({"prefix": {"addr": c.addr().to_string(), "len": c.prefix()}})
    }
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
            .filter(|c| c.addr().is_ipv4() == v4)
            .map(cidr_nft)
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

/// Matches `percent` of the packets, each drawn on its own: `numgen random mod 100 <
/// percent` (the kernel's per-packet random number; no netem needed). Last before the
/// verdict, so only packets the rule is about draw.
fn random_share(percent: u32) -> Value {
    json!({"match": {
        "op": "<",
        "left": {"numgen": {"mode": "random", "mod": 100, "offset": 0}},
        "right": percent,
    }})
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
    fn ingress_partition_json() {
        let rs = RuleSet::Partition {
            peers: cidrs(&["10.0.0.0/8", "192.168.1.1"]),
            direction: Direction::Ingress,
            loss_percent: None,
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
            loss_percent: None,
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
            loss_percent: None,
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
}
