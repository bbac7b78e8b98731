//! The netlink path to nftables against the `nft` binary, in namespaces made here (root).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Lab, addr, tcp_works, udp_works};
use firedrill_faults::nft::{self, Backend};
use firedrill_faults::{
    Direction, Error, InjectionId, Netns, Ports, Protocol, RuleSet, rules, run_in,
};
use serde_json::{Value, json};

fn id(s: &str) -> InjectionId {
    InjectionId::new(s).unwrap()
}

fn partition(peers: &[&str], direction: Direction, ports: Option<Ports>) -> RuleSet {
    partition_losing(peers, direction, ports, None)
}

/// A partition that drops `percent` % of the packets it matches (`numgen random`).
fn lossy(peers: &[&str], direction: Direction, ports: Option<Ports>, percent: u32) -> RuleSet {
    partition_losing(peers, direction, ports, Some(percent))
}

fn partition_losing(
    peers: &[&str],
    direction: Direction,
    ports: Option<Ports>,
    loss_percent: Option<u32>,
) -> RuleSet {
    RuleSet::Partition {
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        direction,
        ports,
        loss_percent,
    }
}

/// `nft -j list table inet firedrill` in `ns`, without the version banner; `Null` when
/// there is no table.
fn listing(ns: &Netns) -> Value {
    let out = run_in(ns, || {
        Command::new("nft")
            .args(["-j", "list", "table", "inet", "firedrill"])
            .output()
            .unwrap()
    })
    .unwrap();
    if !out.status.success() {
        return Value::Null;
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array_mut()
        .unwrap()
        .retain(|item| item.get("metainfo").is_none());
    v
}

/// Runs `batch` through the binary in one fresh namespace and through netlink in another,
/// and requires the same listing after it (handles included: both start empty).
fn same_after(lab: &Lab, batch: &Value) {
    let (bin, net) = (lab.ns(0), lab.ns(1));
    nft::run_batch_via(&bin, batch, Backend::Binary).unwrap();
    nft::run_batch_via(&net, batch, Backend::Netlink).unwrap();
    let (want, got) = (listing(&bin), listing(&net));
    assert_eq!(
        got,
        want,
        "netlink vs binary after {}",
        serde_json::to_string(batch).unwrap()
    );
    same_listing(&bin);
    same_listing(&net);
}

/// `nft::list` over netlink and through the binary say the same of `ns`.
fn same_listing(ns: &Netns) -> Option<nft::Installed> {
    let binary = nft::list_via(ns, Backend::Binary).unwrap();
    let netlink = nft::list_via(ns, Backend::Netlink).unwrap();
    assert_eq!(netlink, binary, "listing over netlink vs nft -j list");
    assert_eq!(nft::list(ns).unwrap(), binary, "Backend::Auto");
    binary
}

fn apply(i: &InjectionId, rules: &RuleSet) -> Value {
    rules::apply_batch(i, &rules.validated().unwrap())
}

#[test]
fn netlink_makes_the_same_ruleset_as_the_binary() {
    let lab = Lab::new(2);
    let ports = |protocol, ports: &[u16]| {
        Some(Ports {
            protocol,
            ports: ports.to_vec(),
        })
    };
    let cases = [
        partition(&["10.77.1.0/24"], Direction::Ingress, None),
        partition(
            &["10.1.0.0/16", "10.2.0.0/16", "fd00:2::/64"],
            Direction::Both,
            None,
        ),
        partition(
            &["10.0.0.1", "10.0.0.2", "10.0.0.9"],
            Direction::Egress,
            None,
        ),
        // Adjacent and overlapping ranges, a mask that is not byte-aligned, the ends of the
        // address space.
        partition(
            &[
                "10.0.0.0/25",
                "10.0.0.128/25",
                "10.0.1.0",
                "0.0.0.0/1",
                "255.255.255.255",
            ],
            Direction::Both,
            None,
        ),
        partition(&["10.16.0.0/12"], Direction::Ingress, None),
        partition(&["0.0.0.0/0", "::/0"], Direction::Egress, None),
        partition(
            &["fd00::1", "fd00::2", "fd00:1::/63"],
            Direction::Both,
            None,
        ),
        partition(
            &["10.0.0.0/8", "fd00::/8"],
            Direction::Both,
            ports(Protocol::Any, &[4222, 8222]),
        ),
        partition(
            &["10.0.0.1"],
            Direction::Ingress,
            ports(Protocol::Tcp, &[4222]),
        ),
        RuleSet::Blackout { ports: None },
        RuleSet::Blackout {
            ports: ports(Protocol::Udp, &[53]),
        },
        lossy(&["10.1.0.0/16", "fd00:2::/64"], Direction::Both, None, 30),
        lossy(
            &["10.0.0.1"],
            Direction::Egress,
            ports(Protocol::Tcp, &[4222]),
            1,
        ),
    ];
    for (n, rules) in cases.iter().enumerate() {
        let i = id(&format!("case-{n}"));
        same_after(&lab, &apply(&i, rules));
        // Applying again replaces the rules in place.
        same_after(&lab, &apply(&i, rules));
    }
    // Reverting one, then cleaning up, keeps them equal too.
    same_after(&lab, &rules::revert_batch(&id("case-1")));
    same_after(&lab, &rules::cleanup_batch());
    assert_eq!(listing(&lab.ns(1)), Value::Null);
}

#[test]
fn the_largest_rule_set_is_split_into_messages_the_kernel_takes() {
    // More elements than one netlink attribute can hold: the set's elements go out in
    // several messages of one batch.
    let v4: Vec<String> = (0..3000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i * 2).to_string())
        .collect();
    let v6: Vec<String> = (0..(rules::MAX_PEERS as u32 - 3000))
        .map(|i| format!("fd00:{i:x}::/64"))
        .collect();
    let peers: Vec<&str> = v4.iter().chain(&v6).map(String::as_str).collect();
    let lab = Lab::new(2);
    let rules = partition(&peers, Direction::Both, None);
    same_after(&lab, &apply(&id("big"), &rules));
    let listed = listing(&lab.ns(1)).to_string();
    assert!(listed.contains("10.0.23.110") && listed.contains("\"fd00:447::\""));
}

#[test]
fn netlink_knows_numgen_and_counter() {
    let lab = Lab::new(2);
    let batch = json!({"nftables": [
        {"add": {"table": {"family": "inet", "name": "firedrill"}}},
        {"add": {"chain": {"family": "inet", "table": "firedrill", "name": "loss-in",
            "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}}},
        {"add": {"rule": {"family": "inet", "table": "firedrill", "chain": "loss-in", "expr": [
            {"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 100, "offset": 0}},
                "right": 25}},
            {"counter": null},
            {"drop": null}]}}}]});
    same_after(&lab, &batch);
}

#[test]
fn revert_over_netlink_is_idempotent() {
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    let i = id("idem");
    let revert = rules::revert_batch(&i);
    // Nothing there yet: no table, no chains.
    nft::run_batch_via(&ns, &revert, Backend::Netlink).unwrap();
    nft::run_batch_via(
        &ns,
        &apply(&i, &RuleSet::Blackout { ports: None }),
        Backend::Netlink,
    )
    .unwrap();
    assert_eq!(nft::list(&ns).unwrap().unwrap().chains.len(), 2);
    for _ in 0..2 {
        nft::run_batch_via(&ns, &revert, Backend::Netlink).unwrap();
        assert!(nft::list(&ns).unwrap().unwrap().chains.is_empty());
    }
    for _ in 0..2 {
        nft::run_batch_via(&ns, &rules::cleanup_batch(), Backend::Netlink).unwrap();
        assert_eq!(nft::list(&ns).unwrap(), None);
    }
}

#[test]
fn a_partition_over_netlink_cuts_real_traffic_and_its_revert_restores_it() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let (a_ip, b_ip) = (addr(0, 0), addr(0, 1));
    assert!(tcp_works(&a, &b, b_ip, 0), "baseline");
    let i = id("cut");
    let rules = partition(&[&b_ip.to_string()], Direction::Both, None);
    for r in nft::apply_many_with(std::slice::from_ref(&a), &i, &rules, 1, Backend::Netlink) {
        r.unwrap();
    }
    assert!(!tcp_works(&a, &b, b_ip, 0), "a -> b cut");
    assert!(!tcp_works(&b, &a, a_ip, 0), "b -> a cut");
    assert!(!udp_works(&a, &b, b_ip), "udp a -> b cut");
    for r in nft::revert_many_with(std::slice::from_ref(&a), &i, 1, Backend::Netlink) {
        r.unwrap();
    }
    assert!(tcp_works(&a, &b, b_ip, 0), "a -> b restored");
    assert!(udp_works(&b, &a, a_ip), "udp b -> a restored");

    // A blackout spares loopback only.
    nft::run_batch_via(
        &a,
        &apply(&i, &RuleSet::Blackout { ports: None }),
        Backend::Netlink,
    )
    .unwrap();
    assert!(!tcp_works(&b, &a, a_ip, 0), "b -> a blacked out");
    assert!(
        tcp_works(&a, &a, std::net::Ipv4Addr::LOCALHOST, 0),
        "loopback"
    );
    nft::revert(&a, &i).unwrap();
    assert!(tcp_works(&b, &a, a_ip, 0), "restored");
}

#[test]
fn a_kernel_refusal_is_a_typed_error_and_leaves_nothing_behind() {
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    let table = json!({"family": "inet", "name": "firedrill"});
    // A rule for a chain that does not exist: the table added first is rolled back too.
    let missing_chain = json!({"nftables": [
        {"add": {"table": table}},
        {"add": {"rule": {"family": "inet", "table": "firedrill", "chain": "nope", "expr": [
            {"drop": null}]}}}]});
    let err = nft::run_batch_via(&ns, &missing_chain, Backend::Netlink).unwrap_err();
    match &err {
        Error::NftRefused { what, errno } => {
            assert_eq!(*errno, nix::errno::Errno::ENOENT, "{err}");
            assert!(what.contains("add rule inet firedrill nope"), "{err}");
        }
        other => panic!("expected NftRefused, got {other:?}"),
    }
    assert_eq!(err.category(), "nft");
    assert_eq!(nft::list(&ns).unwrap(), None, "the whole batch was refused");

    // A base chain the kernel does not accept: a `route` chain on prerouting.
    let bad_chain = json!({"nftables": [
        {"add": {"table": table}},
        {"add": {"chain": {"family": "inet", "table": "firedrill", "name": "bad",
            "type": "route", "hook": "prerouting", "prio": 0, "policy": "accept"}}}]});
    let err = nft::run_batch_via(&ns, &bad_chain, Backend::Netlink).unwrap_err();
    assert!(
        matches!(&err, Error::NftRefused { what, .. } if what.contains("add chain inet firedrill bad")),
        "{err:?}"
    );
    // The binary refuses the same batch.
    let err = nft::run_batch_via(&ns, &bad_chain, Backend::Binary).unwrap_err();
    assert_eq!(err.category(), "nft");
    assert_eq!(nft::list(&ns).unwrap(), None);
}

#[test]
fn what_the_encoder_does_not_know_goes_to_the_binary() {
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    let batch = json!({"nftables": [
        {"add": {"table": {"family": "inet", "name": "firedrill"}}},
        {"add": {"chain": {"family": "inet", "table": "firedrill", "name": "lim-in",
            "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}}},
        {"add": {"rule": {"family": "inet", "table": "firedrill", "chain": "lim-in", "expr": [
            {"limit": {"rate": 10, "per": "second"}}, {"accept": null}]}}}]});
    let err = nft::run_batch_via(&ns, &batch, Backend::Netlink).unwrap_err();
    assert_eq!(err.category(), "invalid_input", "{err}");
    assert_eq!(nft::list(&ns).unwrap(), None, "netlink sent nothing");
    nft::run_batch(&ns, &batch).unwrap();
    assert_eq!(nft::list(&ns).unwrap().unwrap().rule_count(), 1);
}

#[test]
fn listing_over_netlink_matches_the_binary() {
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    // No table at all.
    assert_eq!(same_listing(&ns), None);
    // A table without chains.
    nft::run_batch_via(
        &ns,
        &json!({"nftables": [{"add": {"table": {"family": "inet", "name": "firedrill"}}}]}),
        Backend::Binary,
    )
    .unwrap();
    assert_eq!(same_listing(&ns), Some(nft::Installed::default()));
    // Injections' base chains, a regular chain with rules that is nobody's, and chains of
    // the same name in other tables (another name, another family) that must not count.
    nft::apply(&ns, &id("one"), &RuleSet::Blackout { ports: None }).unwrap();
    nft::apply(
        &ns,
        &id("two"),
        &partition(&["10.0.0.0/8"], Direction::Egress, None),
    )
    .unwrap();
    let rule = |family: &str, table: &str, chain: &str| {
        json!({"add": {"rule": {"family": family, "table": table, "chain": chain,
            "expr": [{"counter": null}]}}})
    };
    let chain = |family: &str, table: &str, name: &str| json!({"add": {"chain": {"family": family, "table": table, "name": name}}});
    nft::run_batch_via(
        &ns,
        &json!({"nftables": [
            chain("inet", "firedrill", "stray"),
            rule("inet", "firedrill", "stray"),
            rule("inet", "firedrill", "stray"),
            rule("inet", "firedrill", "stray"),
            {"add": {"table": {"family": "inet", "name": "other"}}},
            chain("inet", "other", "stray"),
            rule("inet", "other", "stray"),
            chain("inet", "other", "one-in"),
            {"add": {"table": {"family": "ip", "name": "firedrill"}}},
            chain("ip", "firedrill", "two-out"),
            rule("ip", "firedrill", "two-out"),
        ]}),
        Backend::Binary,
    )
    .unwrap();
    let listed = same_listing(&ns).unwrap();
    let ids: Vec<String> = listed.injections().keys().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["one", "two"]);
    let stray = listed.chains.iter().find(|c| c.name == "stray").unwrap();
    assert_eq!((stray.hook.as_deref(), stray.rules), (None, 3));
    assert!(
        listed
            .chains
            .iter()
            .any(|c| c.hook.as_deref() == Some("prerouting"))
    );
    // One injection reverted, then the table's chains gone: the table stays, empty.
    nft::revert(&ns, &id("one")).unwrap();
    let listed = same_listing(&ns).unwrap();
    assert_eq!(listed.injections().len(), 1);
    nft::revert(&ns, &id("two")).unwrap();
    nft::run_batch_via(
        &ns,
        &json!({"nftables": [
            {"flush": {"chain": {"family": "inet", "table": "firedrill", "name": "stray"}}},
            {"delete": {"chain": {"family": "inet", "table": "firedrill", "name": "stray"}}},
        ]}),
        Backend::Binary,
    )
    .unwrap();
    assert_eq!(same_listing(&ns), Some(nft::Installed::default()));
    // The other tables do not make firedrill's appear.
    nft::cleanup(&ns).unwrap();
    assert_eq!(same_listing(&ns), None);
}

#[test]
fn listing_over_netlink_is_refused_without_the_namespace() {
    let gone = Netns::Path("/run/netns/fd-no-such-namespace".into());
    let err = nft::list_via(&gone, Backend::Netlink).unwrap_err();
    assert_eq!(err.category(), "netns", "{err}");
}
