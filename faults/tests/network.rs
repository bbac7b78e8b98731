//! nftables faults proved with real traffic between network namespaces (needs root).
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::{Lab, addr, tcp_works, udp_works};
use firedrill_faults::nft::{self, Installed};
use firedrill_faults::{
    Cidr, Direction, Fault, InjectionId, Injector, Netns, Ports, Protocol, RevertOutcome, RuleSet,
    run_in,
};

fn id(s: &str) -> InjectionId {
    InjectionId::new(s).unwrap()
}

fn cidr(a: Ipv4Addr) -> Cidr {
    a.to_string().parse().unwrap()
}

fn partition(peers: Vec<Cidr>, direction: Direction) -> RuleSet {
    RuleSet::Partition {
        peers,
        direction,
        loss_percent: None,
        ports: None,
    }
}

fn far_future() -> u64 {
    firedrill_faults::now_unix() + 3600
}

#[test]
fn partition_blocks_both_ways_and_revert_restores() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let (a_ip, b_ip) = (addr(0, 0), addr(0, 1));
    assert!(tcp_works(&a, &b, b_ip, 0), "baseline a -> b");
    assert!(tcp_works(&b, &a, a_ip, 0), "baseline b -> a");

    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let fault = Fault::Network {
        netns: a.clone(),
        rules: partition(vec![cidr(b_ip)], Direction::Both),
    };
    injector
        .apply(&id("part-both"), &fault, far_future())
        .unwrap();

    let installed = nft::list(&a).unwrap().expect("table exists");
    assert_eq!(installed.injections().len(), 1);
    assert_eq!(installed.chains.len(), 2);
    assert!(!tcp_works(&a, &b, b_ip, 0), "a -> b must be cut");
    assert!(!tcp_works(&b, &a, a_ip, 0), "b -> a must be cut");
    assert!(!udp_works(&a, &b, b_ip));
    assert!(!udp_works(&b, &a, a_ip));

    let r = injector.revert(&id("part-both")).unwrap();
    assert_eq!(r.outcome, RevertOutcome::Reverted);
    assert!(tcp_works(&a, &b, b_ip, 0), "a -> b restored");
    assert!(tcp_works(&b, &a, a_ip, 0), "b -> a restored");
    assert_eq!(nft::list(&a).unwrap(), Some(Installed::default()));
    assert!(injector.journal().entries().unwrap().is_empty());

    // Idempotent: reverting again, and reverting the chains directly, are both fine.
    let again = injector.revert(&id("part-both")).unwrap();
    assert_eq!(again.outcome, RevertOutcome::AlreadyReverted);
    nft::revert(&a, &id("part-both")).unwrap();
}

#[test]
fn one_way_partition_blocks_one_direction_only() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let (a_ip, b_ip) = (addr(0, 0), addr(0, 1));

    // a stops hearing b; a can still talk to b.
    nft::apply(
        &a,
        &id("oneway"),
        &partition(vec![cidr(b_ip)], Direction::Ingress),
    )
    .unwrap();
    assert!(!udp_works(&b, &a, a_ip), "b -> a must be cut");
    assert!(udp_works(&a, &b, b_ip), "a -> b must still work");
    nft::revert(&a, &id("oneway")).unwrap();
    assert!(udp_works(&b, &a, a_ip));

    // The mirror image: a stops sending to b.
    nft::apply(
        &a,
        &id("oneway-out"),
        &partition(vec![cidr(b_ip)], Direction::Egress),
    )
    .unwrap();
    assert!(!udp_works(&a, &b, b_ip), "a -> b must be cut");
    assert!(udp_works(&b, &a, a_ip), "b -> a must still work");
    nft::cleanup(&a).unwrap();
    assert!(udp_works(&a, &b, b_ip));
}

#[test]
fn blackout_cuts_everything_but_loopback() {
    // Links: 0 = (0,1), 1 = (0,2), 2 = (1,2).
    let lab = Lab::mesh(3);
    let (a, b, c) = (lab.ns(0), lab.ns(1), lab.ns(2));
    nft::apply(&a, &id("zone-a"), &RuleSet::Blackout { ports: None }).unwrap();

    assert!(!tcp_works(&b, &a, addr(0, 0), 0), "b -> a");
    assert!(!tcp_works(&c, &a, addr(1, 0), 0), "c -> a");
    assert!(!udp_works(&a, &b, addr(0, 1)), "a -> b");
    assert!(!udp_works(&a, &c, addr(1, 1)), "a -> c");
    assert!(tcp_works(&b, &c, addr(2, 1), 0), "b -> c unaffected");
    assert!(
        tcp_works(&a, &a, Ipv4Addr::LOCALHOST, 0),
        "loopback inside a unaffected"
    );

    nft::revert(&a, &id("zone-a")).unwrap();
    assert!(tcp_works(&b, &a, addr(0, 0), 0));
    assert!(udp_works(&a, &c, addr(1, 1)));
}

#[test]
fn port_filter_only_cuts_those_ports() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let b_ip = addr(0, 1);
    let cut = 4222;
    let open = 8222;
    let rules = RuleSet::Partition {
        peers: vec![cidr(b_ip)],
        direction: Direction::Both,
        loss_percent: None,
        ports: Some(Ports {
            protocol: Protocol::Tcp,
            ports: vec![cut],
        }),
    };
    nft::apply(&a, &id("ports"), &rules).unwrap();
    assert!(!tcp_works(&a, &b, b_ip, cut), "port {cut} cut");
    assert!(tcp_works(&a, &b, b_ip, open), "port {open} open");
    assert!(udp_works(&a, &b, b_ip), "udp untouched");
    nft::revert(&a, &id("ports")).unwrap();
    assert!(tcp_works(&a, &b, b_ip, cut));
}

#[test]
fn cleanup_deletes_the_table_and_injections_are_independent() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let b_ip = addr(0, 1);
    nft::apply(
        &a,
        &id("one"),
        &partition(vec![cidr(b_ip)], Direction::Ingress),
    )
    .unwrap();
    nft::apply(
        &a,
        &id("two"),
        &partition(vec![cidr(b_ip)], Direction::Egress),
    )
    .unwrap();
    // Re-applying replaces instead of duplicating.
    nft::apply(
        &a,
        &id("two"),
        &partition(vec![cidr(b_ip)], Direction::Egress),
    )
    .unwrap();
    let installed = nft::list(&a).unwrap().unwrap();
    assert_eq!(installed.injections().len(), 2);
    assert_eq!(installed.rule_count(), 2);

    nft::revert(&a, &id("one")).unwrap();
    let installed = nft::list(&a).unwrap().unwrap();
    assert_eq!(
        installed.injections().keys().collect::<Vec<_>>(),
        vec![&id("two")]
    );
    assert!(!udp_works(&a, &b, b_ip), "two still active");

    nft::cleanup(&a).unwrap();
    assert_eq!(nft::list(&a).unwrap(), None);
    nft::cleanup(&a).unwrap();
    assert!(udp_works(&a, &b, b_ip));
}

#[test]
fn apply_many_and_revert_many_over_namespaces() {
    let lab = Lab::new(3);
    let all = lab.all();
    let rules = partition(vec!["10.99.0.0/16".parse().unwrap()], Direction::Both);
    for r in nft::apply_many(&all, &id("many"), &rules) {
        r.unwrap();
    }
    for ns in &all {
        assert_eq!(nft::list(ns).unwrap().unwrap().chains.len(), 2);
    }
    for r in nft::revert_many(&all, &id("many")) {
        r.unwrap();
    }
    for ns in &all {
        assert!(nft::list(ns).unwrap().unwrap().chains.is_empty());
    }
}

#[test]
fn revert_after_namespace_is_gone_reports_target_gone() {
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let fault = Fault::Network {
        netns: ns.clone(),
        rules: RuleSet::Blackout { ports: None },
    };
    injector.apply(&id("gone"), &fault, far_future()).unwrap();
    drop(lab);
    let r = injector.revert(&id("gone")).unwrap();
    assert_eq!(r.outcome, RevertOutcome::TargetGone);
    assert!(injector.journal().entries().unwrap().is_empty());
}

#[test]
fn bad_input_is_rejected_before_anything_is_recorded() {
    let lab = Lab::new(1);
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let fault = Fault::Network {
        netns: lab.ns(0),
        rules: partition(vec![], Direction::Both),
    };
    let err = injector
        .apply(&id("bad"), &fault, far_future())
        .unwrap_err();
    assert_eq!(err.category(), "invalid_input");
    let missing = Fault::Network {
        netns: firedrill_faults::Netns::named("fdt-does-not-exist").unwrap(),
        rules: RuleSet::Blackout { ports: None },
    };
    assert!(injector.apply(&id("bad"), &missing, far_future()).is_err());
    assert!(injector.journal().entries().unwrap().is_empty());
    assert_eq!(nft::list(&lab.ns(0)).unwrap(), None);
}

#[test]
fn run_in_moves_only_the_worker_thread_and_its_children() {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::new(1);
    let ns = lab.ns(0);
    let target = ns.identity().unwrap().unwrap();
    let own_ino = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let before = own_ino();
    assert_ne!(before, target.ino);

    let (thread_ino, child_link) = firedrill_faults::run_in(&ns, || {
        let child = std::process::Command::new("readlink")
            .arg("/proc/self/ns/net")
            .output()
            .unwrap();
        (own_ino(), String::from_utf8(child.stdout).unwrap())
    })
    .unwrap();
    assert_eq!(thread_ino, target.ino, "worker thread is inside");
    assert_eq!(
        child_link.trim(),
        format!("net:[{}]", target.ino),
        "child inherits"
    );
    assert_eq!(own_ino(), before, "caller thread never moved");
}

#[test]
fn a_recheck_finds_rules_deleted_behind_its_back_and_reapplying_restores_them() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let b_ip = addr(0, 1);
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let fault = Fault::Network {
        netns: a.clone(),
        rules: partition(vec![cidr(b_ip)], Direction::Both),
    };
    let id = id("lapse-net");
    injector.apply(&id, &fault, far_future()).unwrap();
    let entry = injector.journal().get(&id).unwrap().expect("recorded");
    assert_eq!(injector.missing(&entry).unwrap(), None, "just applied");

    // Someone (an `nft flush ruleset`, a CNI restart) removes our chains.
    nft::cleanup(&a).unwrap();
    assert!(tcp_works(&a, &b, b_ip, 0), "the partition is gone");
    let what = injector.missing(&entry).unwrap().expect("a lapse");
    assert!(what.contains("lapse-net"), "{what}");

    injector.apply(&id, &fault, far_future()).unwrap();
    assert_eq!(injector.missing(&entry).unwrap(), None, "re-applied");
    assert!(!tcp_works(&a, &b, b_ip, 0), "cut again");
    injector.revert(&id).unwrap();
}

/// How many of `count` numbered UDP datagrams sent from `from` arrive at `to` (listening on
/// `addr`). Sent in bursts of 100, each drained before the next, so a full socket buffer
/// cannot pass for packet loss.
fn datagrams_through(from: &Netns, to: &Netns, addr: Ipv4Addr, count: u32) -> u32 {
    let rx = run_in(to, || UdpSocket::bind((addr, 0))).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let target = rx.local_addr().unwrap();
    let tx = run_in(from, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .unwrap()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 8];
    for burst in (0..count).step_by(100) {
        for n in burst..(burst + 100).min(count) {
            // A drop on the way out is EPERM from send: it simply does not arrive.
            let _ = tx.send_to(&n.to_be_bytes(), target);
        }
        while let Ok((4, _)) = rx.recv_from(&mut buf) {
            seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
        }
    }
    u32::try_from(seen.len()).unwrap()
}

#[test]
fn a_lossy_partition_drops_the_asked_share_of_10000_packets() {
    const PACKETS: u32 = 10_000;
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let b_ip = addr(0, 1);
    assert_eq!(
        datagrams_through(&a, &b, b_ip, PACKETS),
        PACKETS,
        "baseline"
    );
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    for percent in [1u32, 30, 90] {
        let i = id(&format!("loss-{percent}"));
        let fault = Fault::Network {
            netns: a.clone(),
            rules: RuleSet::Partition {
                peers: vec![cidr(b_ip)],
                direction: Direction::Both,
                loss_percent: Some(percent),
                ports: None,
            },
        };
        injector.apply(&i, &fault, far_future()).unwrap();
        let through = datagrams_through(&a, &b, b_ip, PACKETS);
        let lost = f64::from(PACKETS - through) * 100.0 / f64::from(PACKETS);
        eprintln!("asked {percent} %: {through}/{PACKETS} through, {lost:.2} % lost");
        assert!(
            (lost - f64::from(percent)).abs() <= 5.0,
            "asked {percent} %, lost {lost:.2} %"
        );
        injector.revert(&i).unwrap();
        assert_eq!(
            datagrams_through(&a, &b, b_ip, PACKETS),
            PACKETS,
            "after reverting {percent} %"
        );
    }
}
