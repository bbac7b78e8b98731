//! A set of `u64` kept as disjoint inclusive ranges: a producer's counters, sent or read,
//! are almost contiguous, so a set of millions of them is a handful of ranges.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive ranges `start..=end`, keyed by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The range holding `x`, as (start, end).
    fn range_of(&self, x: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.ranges.range(..=x).next_back()?;
        (x <= end).then_some((start, end))
    }

    pub fn contains(&self, x: u64) -> bool {
        self.range_of(x).is_some()
    }

    /// Adds `x`; false when it was already there.
    pub fn insert(&mut self, x: u64) -> bool {
        if self.contains(x) {
            return false;
        }
        // Joins the range ending at x-1 and the one starting at x+1, if any.
        let below = x
            .checked_sub(1)
            .and_then(|b| self.range_of(b))
            .map(|(start, _)| start);
        let above = x.checked_add(1).and_then(|a| self.ranges.remove(&a));
        let start = below.unwrap_or(x);
        let end = above.unwrap_or(x);
        self.ranges.insert(start, end);
        true
    }

    /// Number of ranges (what the memory use is proportional to).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The values of `self` that are not in `other`, ascending. Costs time in proportion to
    /// the ranges of both and the values returned, not to the values of `self`.
    pub fn missing_from<'a>(&'a self, other: &'a RangeSet) -> impl Iterator<Item = u64> + 'a {
        self.ranges.iter().flat_map(move |(&start, &end)| {
            let mut out = Vec::new();
            let mut x = start;
            while x <= end {
                match other.range_of(x) {
                    Some((_, covered_to)) => match covered_to.checked_add(1) {
                        Some(next) => x = next,
                        None => break,
                    },
                    None => {
                        // Up to the next range of `other`, or to `end`.
                        let stop = other
                            .ranges
                            .range(x..)
                            .next()
                            .map_or(end, |(&s, _)| s.saturating_sub(1).min(end));
                        out.push(x..=stop);
                        match stop.checked_add(1) {
                            Some(next) => x = next,
                            None => break,
                        }
                    }
                }
            }
            out.into_iter().flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_coalesce() {
        let mut s = RangeSet::default();
        assert!(s.insert(1));
        assert!(s.insert(3));
        assert_eq!(s.ranges(), 2);
        assert!(s.insert(2));
        assert_eq!(s.ranges(), 1, "1..=3 is one range");
        assert!(!s.insert(2));
        for x in 5..1000 {
            s.insert(x);
        }
        assert_eq!(s.ranges(), 2);
        assert_eq!(s.len(), 998);
        assert!(s.contains(1) && s.contains(999) && !s.contains(4) && !s.contains(0));
        assert!(s.insert(4));
        assert_eq!(s.ranges(), 1);
        assert!(s.insert(0) && s.insert(u64::MAX) && s.contains(u64::MAX));
    }

    #[test]
    fn missing_from_lists_the_gaps() {
        let mut all = RangeSet::default();
        let mut some = RangeSet::default();
        for x in 1..=20 {
            all.insert(x);
        }
        for x in [1, 2, 3, 7, 8, 15, 20, 25] {
            some.insert(x);
        }
        let missing: Vec<u64> = all.missing_from(&some).collect();
        assert_eq!(
            missing,
            vec![4, 5, 6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19]
        );
        assert_eq!(all.missing_from(&all).count(), 0);
        assert_eq!(
            some.missing_from(&RangeSet::default()).collect::<Vec<_>>(),
            vec![1, 2, 3, 7, 8, 15, 20, 25]
        );
    }
}
