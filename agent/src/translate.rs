//! From an Injection to the fault primitives' vocabulary (pure): journal ids, rule sets,
//! and the [`Fault`]s one Injection becomes once its pods are found.
//!
//! One Injection is one *key* (its UID without dashes, 32 characters). It may need several
//! faults — one per pod network namespace and rule set — so each fault is journalled under
//! `<key>-<n>`, which also names its nftables chains. `n` is stable for a given Injection
//! (pod position × 2 + rule-set position), so applying again finds the same records.

use firedrill_core::api::{NetworkCut, TrafficDirection, journal_key, journal_part, key_of_part};
use firedrill_faults::{Cidr, Direction, Fault, InjectionId, Netns, RuleSet};

use crate::error::{Error, Result};

/// The journal key of an Injection (see [`journal_key`]).
pub fn key_of(uid: &str) -> Result<String> {
    journal_key(uid).map_err(|e| Error::Invalid(e.to_string()))
}

/// The id of fault `n` of the Injection with `key`.
pub fn sub_id(key: &str, n: usize) -> Result<InjectionId> {
    Ok(InjectionId::new(journal_part(key, n))?)
}

/// The key a journalled fault belongs to (see [`key_of_part`]).
pub fn key_of_id(id: &InjectionId) -> &str {
    key_of_part(id.as_str())
}

/// The fault library's direction for the contract's.
pub fn direction(direction: TrafficDirection) -> Direction {
    match direction {
        TrafficDirection::Both => Direction::Both,
        TrafficDirection::Egress => Direction::Egress,
        TrafficDirection::Ingress => Direction::Ingress,
    }
}

/// The rule set a network cut needs: a blackout for `all`, else a partition from `peers` in
/// the cut's direction, as the planner decided it.
pub fn rule_sets(cut: &NetworkCut) -> Result<Vec<RuleSet>> {
    let set = match (cut.all, cut.peers.is_empty()) {
        (true, true) => RuleSet::Blackout { ports: None },
        (false, false) => RuleSet::Partition {
            peers: cut
                .peers
                .iter()
                .map(|s| {
                    s.parse::<Cidr>()
                        .map_err(|e| Error::Invalid(format!("network.peers: {e}")))
                })
                .collect::<Result<_>>()?,
            direction: direction(cut.direction),
            loss_percent: cut.loss_percent,
            ports: None,
        },
        (true, false) => {
            return Err(Error::Invalid(
                "network: all and peers are both set; a cut is one or the other".into(),
            ));
        }
        (false, true) => {
            return Err(Error::Invalid(
                "network: neither all nor peers is set, so nothing would be cut".into(),
            ));
        }
    };
    // Fail on bad input here, before anything is applied.
    set.validated()
        .map_err(|e| Error::Invalid(format!("network: {e}")))?;
    Ok(vec![set])
}

/// The faults of a network cut in `targets` (the node's namespace, or one per pod).
pub fn network_faults(
    key: &str,
    cut: &NetworkCut,
    targets: &[Netns],
) -> Result<Vec<(InjectionId, Fault)>> {
    let mut out = Vec::with_capacity(targets.len());
    for (t, netns) in targets.iter().enumerate() {
        out.extend(pod_network_faults(key, cut, t, netns)?);
    }
    Ok(out)
}

/// The faults of a network cut for the pod at `index` of `cut.pods` (or the node, index 0)
/// in `netns`: one per rule set, numbered pod × 2 + set.
pub fn pod_network_faults(
    key: &str,
    cut: &NetworkCut,
    index: usize,
    netns: &Netns,
) -> Result<Vec<(InjectionId, Fault)>> {
    rule_sets(cut)?
        .into_iter()
        .enumerate()
        .map(|(r, rules)| {
            Ok((
                sub_id(key, index * 2 + r)?,
                Fault::Network {
                    netns: netns.clone(),
                    rules,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6F1C2A3B-0d4e-4f5a-8b9c-0123456789ab";

    fn cut(all: bool, peers: &[&str], direction: TrafficDirection) -> NetworkCut {
        NetworkCut {
            pods: vec![],
            all,
            peers: peers.iter().map(|s| s.to_string()).collect(),
            direction,
            loss_percent: None,
        }
    }

    #[test]
    fn keys_and_ids_round_trip_within_the_id_limit() {
        let key = key_of(UID).unwrap();
        assert_eq!(key, "6f1c2a3b0d4e4f5a8b9c0123456789ab");
        let id = sub_id(&key, 999).unwrap();
        assert!(id.as_str().len() <= firedrill_faults::id::MAX_ID_LEN);
        assert_eq!(key_of_id(&id), key);
        let foreign = InjectionId::new("lab-thing").unwrap();
        assert_eq!(key_of_id(&foreign), "lab-thing");
        assert_eq!(key_of_id(&InjectionId::new("plain").unwrap()), "plain");
        for bad in ["", "../etc", "x".repeat(40).as_str()] {
            assert_eq!(key_of(bad).unwrap_err().category(), "invalid");
        }
    }

    #[test]
    fn all_is_a_blackout() {
        assert_eq!(
            rule_sets(&cut(true, &[], TrafficDirection::Both)).unwrap(),
            vec![RuleSet::Blackout { ports: None }]
        );
    }

    #[test]
    fn peers_are_one_partition_in_the_planned_direction() {
        for (planned, applied) in [
            (TrafficDirection::Both, Direction::Both),
            (TrafficDirection::Egress, Direction::Egress),
            (TrafficDirection::Ingress, Direction::Ingress),
        ] {
            let sets = rule_sets(&cut(false, &["10.1.0.0/16", "10.2.0.1/32"], planned)).unwrap();
            assert!(
                matches!(
                    &sets[..],
                    [RuleSet::Partition { direction, peers, .. }] if *direction == applied && peers.len() == 2
                ),
                "{sets:?}"
            );
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = rule_sets(&cut(false, &["10.0.0.1/8"], TrafficDirection::Both)).unwrap_err();
        assert_eq!(err.category(), "invalid");
        assert!(err.to_string().contains("peers"), "{err}");
        let err = rule_sets(&cut(false, &["nonsense"], TrafficDirection::Egress)).unwrap_err();
        assert!(err.to_string().contains("peers"), "{err}");
        let err = rule_sets(&cut(false, &[], TrafficDirection::Both)).unwrap_err();
        assert!(err.to_string().contains("nothing would be cut"), "{err}");
        let err = rule_sets(&cut(true, &["10.0.0.0/8"], TrafficDirection::Both)).unwrap_err();
        assert!(err.to_string().contains("one or the other"), "{err}");
    }

    #[test]
    fn network_faults_number_each_namespace_and_rule_set() {
        let key = key_of(UID).unwrap();
        let targets = [Netns::of_pid(10), Netns::of_pid(20)];
        let faults = network_faults(
            &key,
            &cut(false, &["10.1.0.0/16"], TrafficDirection::Egress),
            &targets,
        )
        .unwrap();
        let ids: Vec<String> = faults.iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(
            ids,
            // Pod position × 2 + rule-set position: the scheme older agents journalled
            // under (two rule sets per pod), kept so their entries are still found.
            ["-0", "-2"].map(|n| format!("{key}{n}")).to_vec()
        );
        assert!(matches!(&faults[1].1, Fault::Network { netns, .. } if *netns == targets[1]));
    }
}
