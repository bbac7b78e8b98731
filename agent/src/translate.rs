//! From an Injection to the fault primitives' vocabulary (pure): journal ids, rule sets,
//! and the [`Fault`]s one Injection becomes once its pods are found.
//!
//! One Injection is one *key* (its UID without dashes, 32 characters). It may need several
//! faults — one per pod network namespace and rule set — so each fault is journalled under
//! `<key>-<n>`, which also names its nftables chains. `n` is stable for a given Injection
//! (pod position × 2 + rule-set position), so applying again finds the same records.

use std::collections::BTreeSet;

use firedrill_core::api::NetworkCut;
use firedrill_faults::{Cidr, Direction, Fault, InjectionId, Netns, RuleSet};

use crate::error::{Error, Result};

/// The journal key of an Injection: its UID, lowercase, without dashes.
pub fn key_of(uid: &str) -> Result<String> {
    let key: String = uid
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(key)
    } else {
        Err(Error::Invalid(format!("UID {uid:?} is not a UUID")))
    }
}

/// The id of fault `n` of the Injection with `key`.
pub fn sub_id(key: &str, n: usize) -> Result<InjectionId> {
    Ok(InjectionId::new(format!("{key}-{n}"))?)
}

/// The key a journalled fault belongs to: the id without its `-<n>` suffix (an id not
/// made by [`sub_id`] is its own key, so it is still reverted).
pub fn key_of_id(id: &InjectionId) -> &str {
    let id = id.as_str();
    match id.rsplit_once('-') {
        Some((key, n))
            if !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            key
        }
        _ => id,
    }
}

fn cidrs(field: &str, list: &[String]) -> Result<Vec<Cidr>> {
    list.iter()
        .map(|s| {
            s.parse()
                .map_err(|e| Error::Invalid(format!("network.{field}: {e}")))
        })
        .collect()
}

/// The rule sets a network cut needs: a blackout for `all`; otherwise one partition, both
/// ways when `dropTo` and `dropFrom` name the same networks, else one per direction.
pub fn rule_sets(cut: &NetworkCut) -> Result<Vec<RuleSet>> {
    if cut.all {
        return Ok(vec![RuleSet::Blackout { ports: None }]);
    }
    let to = cidrs("dropTo", &cut.drop_to)?;
    let from = cidrs("dropFrom", &cut.drop_from)?;
    let set = |v: &[Cidr]| v.iter().copied().collect::<BTreeSet<Cidr>>();
    let partition = |peers: Vec<Cidr>, direction| RuleSet::Partition {
        peers,
        direction,
        ports: None,
    };
    let sets = if !to.is_empty() && set(&to) == set(&from) {
        vec![partition(to, Direction::Both)]
    } else {
        let mut sets = Vec::new();
        if !to.is_empty() {
            sets.push(partition(to, Direction::Egress));
        }
        if !from.is_empty() {
            sets.push(partition(from, Direction::Ingress));
        }
        sets
    };
    if sets.is_empty() {
        return Err(Error::Invalid(
            "network: neither all, dropTo nor dropFrom is set, so nothing would be cut".into(),
        ));
    }
    // Fail on bad input here, before anything is applied.
    for s in &sets {
        s.validated()
            .map_err(|e| Error::Invalid(format!("network: {e}")))?;
    }
    Ok(sets)
}

/// The faults of a network cut in `targets` (the node's namespace, or one per pod).
pub fn network_faults(
    key: &str,
    cut: &NetworkCut,
    targets: &[Netns],
) -> Result<Vec<(InjectionId, Fault)>> {
    let sets = rule_sets(cut)?;
    let mut out = Vec::with_capacity(targets.len() * sets.len());
    for (t, netns) in targets.iter().enumerate() {
        for (r, rules) in sets.iter().enumerate() {
            out.push((
                sub_id(key, t * 2 + r)?,
                Fault::Network {
                    netns: netns.clone(),
                    rules: rules.clone(),
                },
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6F1C2A3B-0d4e-4f5a-8b9c-0123456789ab";

    fn cut(all: bool, to: &[&str], from: &[&str]) -> NetworkCut {
        NetworkCut {
            pods: vec![],
            all,
            drop_to: to.iter().map(|s| s.to_string()).collect(),
            drop_from: from.iter().map(|s| s.to_string()).collect(),
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
            rule_sets(&cut(true, &["10.0.0.0/8"], &[])).unwrap(),
            vec![RuleSet::Blackout { ports: None }]
        );
    }

    #[test]
    fn the_same_peers_both_ways_are_one_partition() {
        let sets = rule_sets(&cut(
            false,
            &["10.1.0.0/16", "10.2.0.1"],
            &["10.2.0.1", "10.1.0.0/16"],
        ))
        .unwrap();
        assert!(matches!(
            &sets[..],
            [RuleSet::Partition { direction: Direction::Both, peers, .. }] if peers.len() == 2
        ));
    }

    #[test]
    fn one_way_and_different_peers_are_one_set_per_direction() {
        let sets = rule_sets(&cut(false, &["10.1.0.0/16"], &[])).unwrap();
        assert!(matches!(
            &sets[..],
            [RuleSet::Partition {
                direction: Direction::Egress,
                ..
            }]
        ));
        let sets = rule_sets(&cut(false, &[], &["10.1.0.0/16"])).unwrap();
        assert!(matches!(
            &sets[..],
            [RuleSet::Partition {
                direction: Direction::Ingress,
                ..
            }]
        ));
        let sets = rule_sets(&cut(false, &["10.1.0.0/16"], &["10.2.0.0/16"])).unwrap();
        assert_eq!(sets.len(), 2);
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = rule_sets(&cut(false, &["10.0.0.1/8"], &[])).unwrap_err();
        assert_eq!(err.category(), "invalid");
        assert!(err.to_string().contains("dropTo"), "{err}");
        let err = rule_sets(&cut(false, &[], &["nonsense"])).unwrap_err();
        assert!(err.to_string().contains("dropFrom"), "{err}");
        let err = rule_sets(&cut(false, &[], &[])).unwrap_err();
        assert!(err.to_string().contains("nothing would be cut"), "{err}");
    }

    #[test]
    fn network_faults_number_each_namespace_and_rule_set() {
        let key = key_of(UID).unwrap();
        let targets = [Netns::of_pid(10), Netns::of_pid(20)];
        let faults = network_faults(
            &key,
            &cut(false, &["10.1.0.0/16"], &["10.2.0.0/16"]),
            &targets,
        )
        .unwrap();
        let ids: Vec<String> = faults.iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(
            ids,
            ["-0", "-1", "-2", "-3"]
                .map(|n| format!("{key}{n}"))
                .to_vec()
        );
        assert!(matches!(&faults[2].1, Fault::Network { netns, .. } if *netns == targets[1]));
    }
}
