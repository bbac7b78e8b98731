//! Label selectors with the same shape as Kubernetes' `LabelSelector`, but strict: a typo in a
//! selector must be an error, never a silently broader selection.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Selects objects by their labels. At least one of `matchLabels` and `matchExpressions`
/// must be given: an empty selector would select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)"
).message("a selector must have matchLabels or matchExpressions: an empty selector would select everything"))]
pub struct LabelSelector {
    /// Labels that must all be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based label requirement, for example `zone In [a, b]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)"
).message("operators In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// A set-based label operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// True when there is nothing to match on (which would select everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy this selector. An empty selector matches nothing: callers
    /// must never turn a missing selector into "everything".
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.is_empty() {
            return false;
        }
        let labels_match = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        labels_match
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// The selector in the API server's `labelSelector` query syntax.
    pub fn to_query(&self) -> String {
        let labels = self.match_labels.iter().map(|(k, v)| format!("{k}={v}"));
        let exprs = self.match_expressions.iter().map(|req| match req.operator {
            SelectorOperator::In => format!("{} in ({})", req.key, req.values.join(",")),
            SelectorOperator::NotIn => format!("{} notin ({})", req.key, req.values.join(",")),
            SelectorOperator::Exists => req.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", req.key),
        });
        labels.chain(exprs).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_selector_matches_nothing() {
        assert!(!LabelSelector::default().matches(&labels(&[("app", "nats")])));
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: labels(&[("app", "nats")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "zone".into(),
                operator: SelectorOperator::In,
                values: vec!["a".into(), "b".into()],
            }],
        };
        assert!(selector.matches(&labels(&[("app", "nats"), ("zone", "a")])));
        assert!(!selector.matches(&labels(&[("app", "nats"), ("zone", "c")])));
        assert!(!selector.matches(&labels(&[("app", "talk"), ("zone", "a")])));
        assert_eq!(selector.to_query(), "app=nats,zone in (a,b)");
    }
}
