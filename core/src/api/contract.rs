//! The contract between firedrill's parts, written once: every `firedrill.dev/*` label,
//! annotation and finalizer the operator, the agent and chaosctl read or write, how an
//! Injection is named, and how an Injection's journal key is made. Each side imports these;
//! none spells the strings itself, so they cannot drift apart.
//!
//! The namespace-consent and protection names live beside their rules in the protection
//! module; [`super::ABORT_ANNOTATION`] and [`super::PAUSE_KEY`] beside the API group.

/// The zone label of nodes (and, in the lab, of processes), as Kubernetes sets it.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The operator's finalizer on Experiments: it reverts before the Experiment goes.
pub const FINALIZER: &str = "firedrill.dev/revert";
/// The agent's finalizer on Injections: set before it applies, removed once nothing of the
/// Injection is in place on its node.
pub const AGENT_FINALIZER: &str = "firedrill.dev/agent";
/// The GameDay controller's finalizer: a deleted GameDay aborts its running step first.
pub const GAMEDAY_FINALIZER: &str = "firedrill.dev/abort-steps";

/// The one field manager of everything the operator writes.
pub const OPERATOR_FIELD_MANAGER: &str = "firedrill-operator";
/// The one field manager of everything the agent writes.
pub const AGENT_FIELD_MANAGER: &str = "firedrill-agent";

/// Labels every Injection with its Experiment's UID.
pub const EXPERIMENT_UID_LABEL: &str = "firedrill.dev/experiment-uid";
/// Labels every Injection with its Experiment's name, when that fits a label value.
pub const EXPERIMENT_LABEL: &str = "firedrill.dev/experiment";
/// Labels every Injection with its node's name, when that fits a label value, so an agent
/// can watch only its own.
pub const NODE_LABEL: &str = "firedrill.dev/node";
/// Labels a GameDay's step Experiments with the GameDay's UID.
pub const GAMEDAY_UID_LABEL: &str = "firedrill.dev/gameday-uid";
/// Labels a GameDay's step Experiments with the GameDay's name.
pub const GAMEDAY_LABEL: &str = "firedrill.dev/gameday";
/// Labels a DrillSchedule's GameDays with the schedule's UID.
pub const SCHEDULE_UID_LABEL: &str = "firedrill.dev/schedule-uid";
/// Labels a DrillSchedule's GameDays with the schedule's name.
pub const SCHEDULE_LABEL: &str = "firedrill.dev/schedule";
/// Labels a GameDay that chaosctl applied with the name of the plan it came from.
pub const PLAN_LABEL: &str = "firedrill.dev/plan";
/// `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// How many Injections the plan had when they were created.
pub const PLAN_SIZE_ANNOTATION: &str = "firedrill.dev/plan-size";

/// The server-side-apply patch of a `K`'s status subresource. Apply patches need apiVersion
/// and kind; they come from the type, so no writer spells them.
pub fn status_patch<K>(
    status: &impl serde::Serialize,
) -> Result<serde_json::Value, serde_json::Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    Ok(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": serde_json::to_value(status)?,
    }))
}

/// [`status_patch`], written only over the object at `resource_version` (409 otherwise).
/// A controller steps a status from its watch's copy, which can lag its own last write;
/// forced over a newer status, one stepped from a stale copy rewinds the object (at
/// N=1,000 Experiments, 340-685 entered Injecting twice, their timelines losing the first
/// time). A conflict retries once the watch has caught up.
pub fn status_patch_over<K>(
    status: &impl serde::Serialize,
    resource_version: Option<String>,
) -> Result<serde_json::Value, serde_json::Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    let mut patch = status_patch::<K>(status)?;
    if let (Some(rv), Some(object)) = (resource_version, patch.as_object_mut()) {
        object.insert(
            "metadata".to_owned(),
            serde_json::json!({ "resourceVersion": rv }),
        );
    }
    Ok(patch)
}

/// Whether `value` is a label value Kubernetes accepts: at most 63 characters of
/// `[A-Za-z0-9._-]`, alphanumeric at both ends. The empty string is one (Kubernetes allows
/// it), but it identifies nothing: see [`identity_label`].
pub fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

/// A DNS-1123 label, as Kubernetes requires of names used in labels.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `value` as the value of a label that identifies something (a node, an experiment), or
/// `None` when it cannot be one: not a label value, or empty (an empty label would match
/// every unnamed thing at once). Whoever reads such a label falls back to listing and
/// filtering by the spec.
pub fn identity_label(value: &str) -> Option<&str> {
    (!value.is_empty() && is_label_value(value)).then_some(value)
}

/// The label selector that lists one node's Injections, if its name fits a label.
pub fn node_selector(node: &str) -> Option<String> {
    identity_label(node).map(|node| format!("{NODE_LABEL}={node}"))
}

/// 64-bit FNV-1a over `parts` (separated): a hash that is the same in every build, for
/// object names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Lowercase letters, digits and single dashes, at most `max` characters, no dash at
/// either end.
fn dns_part(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// An Injection's name: readable (experiment and node), unique per experiment UID, node and
/// action key, and the same every time it is computed, so creating it again is a no-op.
pub fn injection_name(experiment: &str, uid: &str, node: &str, key: &str) -> String {
    let hash = fnv1a(&[uid, node, key]);
    let mut parts = vec![dns_part(experiment, 40), dns_part(node, 20)];
    parts.retain(|p| !p.is_empty());
    parts.push(format!("{:012x}", hash & 0xffff_ffff_ffff));
    parts.join("-")
}

/// Why a UID cannot be a journal key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("UID {0:?} is not a UUID")]
pub struct NotAUid(pub String);

/// The journal key of an Injection on its node: its UID, lowercase, without dashes (32
/// characters). The key names the agent's journal entries and nftables chains, so it must
/// stay the same across agent versions.
pub fn journal_key(uid: &str) -> Result<String, NotAUid> {
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
        Err(NotAUid(uid.to_owned()))
    }
}

/// The journal id of part `n` of the Injection with journal `key`.
pub fn journal_part(key: &str, n: usize) -> String {
    format!("{key}-{n}")
}

/// The key a journal id belongs to: the id without its `-<n>` suffix. An id not made by
/// [`journal_part`] is its own key, so it is still reverted.
pub fn key_of_part(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((key, n))
            if !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            key
        }
        _ => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_follow_kubernetes_and_identities_are_never_empty() {
        for ok in ["a", "zone-a-1", "A.b_c-9", &"x".repeat(63), ""] {
            assert!(is_label_value(ok), "{ok:?}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        assert_eq!(identity_label(""), None);
        assert_eq!(identity_label("zone-a-1"), Some("zone-a-1"));
        assert_eq!(
            node_selector("zone-a-1").as_deref(),
            Some("firedrill.dev/node=zone-a-1")
        );
        assert_eq!(node_selector(""), None);
        assert_eq!(node_selector("a/b"), None);
    }

    #[test]
    fn injection_names_are_stable_readable_and_distinct_per_key() {
        let a = injection_name("Zone Blackout!", "uid-1", "node.a", "processes");
        assert_eq!(
            a,
            injection_name("Zone Blackout!", "uid-1", "node.a", "processes")
        );
        assert!(a.starts_with("zone-blackout-node-a-"), "{a}");
        assert_ne!(
            a,
            injection_name("Zone Blackout!", "uid-1", "node.a", "network")
        );
        assert_ne!(
            a,
            injection_name("Zone Blackout!", "uid-2", "node.a", "processes")
        );
        // The hash is the same in every build (a fixed function, not std's random hasher):
        // the name of an Injection in flight must not change across versions.
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            injection_name("zone-blackout", "u", "n", "k"),
            format!(
                "zone-blackout-n-{:012x}",
                fnv1a(&["u", "n", "k"]) & 0xffff_ffff_ffff
            )
        );
    }

    #[test]
    fn status_patches_name_their_type() {
        let patch = status_patch::<crate::api::Injection>(&crate::api::InjectionStatus::default())
            .expect("patch");
        assert_eq!(patch["apiVersion"], "firedrill.dev/v1alpha1");
        assert_eq!(patch["kind"], "Injection");
        assert_eq!(patch["status"]["state"], "Pending");
        let patch = status_patch::<crate::api::GameDay>(&serde_json::json!({})).expect("patch");
        assert_eq!(patch["kind"], "GameDay");
    }

    #[test]
    fn journal_keys_and_parts_round_trip() {
        let key = journal_key("6F1C2A3B-0d4e-4f5a-8b9c-0123456789ab").expect("key");
        assert_eq!(key, "6f1c2a3b0d4e4f5a8b9c0123456789ab");
        assert_eq!(key_of_part(&journal_part(&key, 999)), key);
        assert_eq!(key_of_part("lab-thing"), "lab-thing");
        assert_eq!(key_of_part("plain"), "plain");
        for bad in ["", "../etc", &"x".repeat(40)] {
            assert!(journal_key(bad).is_err(), "{bad:?}");
        }
    }
}
