//! The dirty-extent model of one file: bytes written but not yet fsynced.
//!
//! Pure data structure, no I/O. The backing file holds the durable bytes; an [`Overlay`]
//! holds the newer, volatile ones. Extents never overlap and never touch (touching ones are
//! merged), so a later write simply replaces the bytes it covers: that is "write order".

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};

/// Dirty extents of one file, keyed by their offset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overlay {
    extents: BTreeMap<u64, Vec<u8>>,
}

impl Overlay {
    /// An overlay with nothing dirty.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing is waiting for an fsync.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Number of dirty bytes (what a power cut would lose).
    pub fn dirty_bytes(&self) -> u64 {
        self.extents.values().map(|v| v.len() as u64).sum()
    }

    /// Number of separate dirty extents.
    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    /// End offset of the last dirty extent, 0 when clean.
    pub fn end(&self) -> u64 {
        self.extents
            .last_key_value()
            .map_or(0, |(start, data)| start + data.len() as u64)
    }

    /// Logical file size given the backing file's size: writes past EOF extend it, and
    /// truncation is applied to the backing file and to the overlay alike, so it never shrinks
    /// below the backing size.
    pub fn size(&self, backing_len: u64) -> u64 {
        backing_len.max(self.end())
    }

    /// Records a write of `data` at `offset`, replacing any older dirty bytes it covers.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset.saturating_add(data.len() as u64);
        // Extents that overlap or touch [offset, end]: merging touching ones keeps appends in
        // one growing buffer, so an fsync writes one extent, not thousands.
        let mut touching: Vec<u64> = Vec::new();
        if let Some((&start, old)) = self.extents.range(..=offset).next_back()
            && start + old.len() as u64 >= offset
        {
            touching.push(start);
        }
        touching.extend(
            self.extents
                .range((Excluded(offset), Included(end)))
                .map(|(&start, _)| start),
        );
        let (Some(&first), Some(&last)) = (touching.first(), touching.last()) else {
            self.extents.insert(offset, data.to_vec());
            return;
        };
        let last_end = self
            .extents
            .get(&last)
            .map_or(end, |v| last + v.len() as u64);
        let start = first.min(offset);
        let new_end = end.max(last_end);
        let total = usize_of(new_end - start);
        // Reuse the first extent's buffer when it starts the merged range: an append then
        // costs only the appended bytes (amortised), not a copy of the whole extent.
        let mut buf = if first <= offset {
            self.extents.remove(&first).unwrap_or_default()
        } else {
            Vec::with_capacity(total)
        };
        buf.resize(total, 0);
        for s in touching {
            if let Some(old) = self.extents.remove(&s) {
                let at = usize_of(s - start);
                buf[at..at + old.len()].copy_from_slice(&old);
            }
        }
        let at = usize_of(offset - start);
        buf[at..at + data.len()].copy_from_slice(data);
        self.extents.insert(start, buf);
    }

    /// Copies the dirty bytes that fall in `[offset, offset + buf.len())` over `buf`, which
    /// the caller filled with the backing bytes (zeros past the backing EOF).
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        if buf.is_empty() {
            // BTreeMap::range panics on an empty range with both ends excluded.
            return;
        }
        let end = offset.saturating_add(buf.len() as u64);
        let before = self
            .extents
            .range(..=offset)
            .next_back()
            .map(|(&s, v)| (s, v));
        let within = self
            .extents
            .range((Excluded(offset), Excluded(end)))
            .map(|(&s, v)| (s, v));
        for (start, data) in before.into_iter().chain(within) {
            let ext_end = start + data.len() as u64;
            let lo = start.max(offset);
            let hi = ext_end.min(end);
            if lo >= hi {
                continue;
            }
            let src = usize_of(lo - start)..usize_of(hi - start);
            let dst = usize_of(lo - offset)..usize_of(hi - offset);
            buf[dst].copy_from_slice(&data[src]);
        }
    }

    /// True when every byte of `[offset, offset + len)` is dirty, so the backing file need
    /// not be read at all.
    pub fn covers(&self, offset: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        self.extents
            .range(..=offset)
            .next_back()
            .is_some_and(|(&s, v)| s + v.len() as u64 >= offset.saturating_add(len))
    }

    /// Drops dirty bytes at or past `len` (the backing file is truncated separately).
    pub fn truncate(&mut self, len: u64) {
        drop(self.extents.split_off(&len));
        if let Some((&start, data)) = self.extents.iter_mut().next_back()
            && start + data.len() as u64 > len
        {
            data.truncate(usize_of(len - start));
        }
    }

    /// The dirty extents in offset order, for writing them to the backing file.
    pub fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.extents.iter().map(|(&s, v)| (s, v.as_slice()))
    }

    /// Forgets everything (after a successful fsync, or on power loss).
    pub fn clear(&mut self) {
        self.extents.clear();
    }
}

/// Lengths here come from buffers that exist in memory, so they fit in usize.
fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A file simulated with a Vec as backing plus an overlay, as the FUSE adapter uses them.
    #[derive(Default)]
    struct Sim {
        backing: Vec<u8>,
        overlay: Overlay,
    }

    impl Sim {
        fn with_backing(backing: Vec<u8>) -> Self {
            Self {
                backing,
                overlay: Overlay::new(),
            }
        }
        fn write(&mut self, off: u64, data: &[u8]) {
            self.overlay.write(off, data);
        }
        fn truncate(&mut self, len: u64) {
            self.backing.resize(len as usize, 0);
            self.overlay.truncate(len);
        }
        fn fsync(&mut self) {
            for (off, data) in self.overlay.extents() {
                let end = off as usize + data.len();
                if self.backing.len() < end {
                    self.backing.resize(end, 0);
                }
                self.backing[off as usize..end].copy_from_slice(data);
            }
            self.overlay.clear();
        }
        fn size(&self) -> u64 {
            self.overlay.size(self.backing.len() as u64)
        }
        fn read(&self, off: u64, len: u64) -> Vec<u8> {
            let size = self.size();
            if off >= size {
                return Vec::new();
            }
            let n = len.min(size - off) as usize;
            let mut buf = vec![0; n];
            let b = self.backing.len();
            let lo = (off as usize).min(b);
            let hi = (off as usize + n).min(b);
            buf[..hi - lo].copy_from_slice(&self.backing[lo..hi]);
            self.overlay.apply(off, &mut buf);
            buf
        }
        fn all(&self) -> Vec<u8> {
            self.read(0, self.size())
        }
    }

    /// The obvious model: one Vec for what readers see, one for what survives a power cut.
    #[derive(Default)]
    struct Model {
        visible: Vec<u8>,
        durable: Vec<u8>,
    }

    impl Model {
        fn write(&mut self, off: u64, data: &[u8]) {
            if data.is_empty() {
                // A zero-length write does not extend a file.
                return;
            }
            let end = off as usize + data.len();
            if self.visible.len() < end {
                self.visible.resize(end, 0);
            }
            self.visible[off as usize..end].copy_from_slice(data);
        }
        fn truncate(&mut self, len: u64) {
            self.visible.resize(len as usize, 0);
            self.durable.resize(len as usize, 0);
        }
        fn fsync(&mut self) {
            self.durable = self.visible.clone();
        }
    }

    #[test]
    fn empty_overlay_reads_backing() {
        let s = Sim::with_backing(b"hello".to_vec());
        assert_eq!(s.all(), b"hello");
        assert_eq!(s.size(), 5);
        assert!(s.overlay.is_empty());
        assert_eq!(s.overlay.end(), 0);
    }

    #[test]
    fn overlapping_writes_later_wins() {
        let mut s = Sim::default();
        s.write(0, b"aaaaaaaaaa");
        s.write(3, b"bbb");
        s.write(5, b"cccc");
        assert_eq!(s.all(), b"aaabbcccca");
        assert_eq!(s.overlay.extent_count(), 1);
        // A write that straddles the start of an existing extent.
        s.write(20, b"xxxx");
        s.write(18, b"yyy");
        assert_eq!(&s.all()[18..], b"yyyxxx");
        assert_eq!(s.overlay.extent_count(), 2);
        // A write bridging two extents merges them into one.
        s.write(9, &[b'z'; 11]);
        assert_eq!(s.overlay.extent_count(), 1);
        assert_eq!(s.all(), b"aaabbcccczzzzzzzzzzzyxxx");
    }

    #[test]
    fn write_past_eof_leaves_zero_hole() {
        let mut s = Sim::with_backing(b"abc".to_vec());
        s.write(6, b"xy");
        assert_eq!(s.size(), 8);
        assert_eq!(s.all(), b"abc\0\0\0xy");
        s.fsync();
        assert_eq!(s.backing, b"abc\0\0\0xy");
    }

    #[test]
    fn write_covering_several_extents_replaces_them() {
        let mut s = Sim::default();
        s.write(2, b"aa");
        s.write(6, b"bb");
        s.write(10, b"cc");
        assert_eq!(s.overlay.extent_count(), 3);
        s.write(0, b"0123456789abcd");
        assert_eq!(s.overlay.extent_count(), 1);
        assert_eq!(s.all(), b"0123456789abcd");
    }

    #[test]
    fn touching_writes_merge_and_appends_grow_one_extent() {
        let mut o = Overlay::new();
        for i in 0..1000u64 {
            o.write(i * 200, &[i as u8; 200]);
        }
        assert_eq!(o.extent_count(), 1);
        assert_eq!(o.dirty_bytes(), 200_000);
        assert_eq!(o.end(), 200_000);
        // A write that ends exactly where an extent starts merges too.
        let mut o = Overlay::new();
        o.write(10, b"b");
        o.write(9, b"a");
        assert_eq!(o.extents().collect::<Vec<_>>(), vec![(9, &b"ab"[..])]);
    }

    #[test]
    fn truncate_clips_overlay_then_write_again() {
        let mut s = Sim::with_backing(vec![b'a'; 1000]);
        s.write(1000, &[b'b'; 1000]);
        s.truncate(500);
        assert_eq!(s.size(), 500);
        assert_eq!(s.all(), vec![b'a'; 500]);
        assert!(s.overlay.is_empty());
        s.write(800, b"abc");
        assert_eq!(s.size(), 803);
        let all = s.all();
        assert_eq!(&all[..500], &[b'a'; 500][..]);
        assert_eq!(&all[500..800], &[0u8; 300][..]);
        assert_eq!(&all[800..], b"abc");
    }

    #[test]
    fn truncate_inside_an_extent_and_grow() {
        let mut s = Sim::default();
        s.write(0, b"0123456789");
        s.truncate(4);
        assert_eq!(s.all(), b"0123");
        // Growing by truncate reads zeros, not the clipped bytes.
        s.truncate(8);
        assert_eq!(s.all(), b"0123\0\0\0\0");
        s.truncate(0);
        assert!(s.overlay.is_empty());
        assert_eq!(s.size(), 0);
    }

    #[test]
    fn covers_and_apply_partial_ranges() {
        let mut o = Overlay::new();
        o.write(100, &[1; 100]);
        assert!(o.covers(100, 100));
        assert!(o.covers(150, 50));
        assert!(!o.covers(150, 51));
        assert!(!o.covers(99, 2));
        assert!(o.covers(5, 0));
        o.apply(150, &mut []);
        let mut buf = [9u8; 20];
        o.apply(90, &mut buf);
        assert_eq!(&buf[..10], &[9; 10]);
        assert_eq!(&buf[10..], &[1; 10]);
        let mut buf = [9u8; 20];
        o.apply(195, &mut buf);
        assert_eq!(&buf[..5], &[1; 5]);
        assert_eq!(&buf[5..], &[9; 15]);
    }

    #[test]
    fn fsync_drains_only_dirty_extents() {
        let mut s = Sim::with_backing(vec![7; 4096]);
        s.write(4096, b"tail");
        s.write(10, b"head");
        let ext: Vec<_> = s.overlay.extents().map(|(o, d)| (o, d.len())).collect();
        assert_eq!(ext, vec![(10, 4), (4096, 4)]);
        s.fsync();
        assert!(s.overlay.is_empty());
        assert_eq!(s.backing.len(), 4100);
        assert_eq!(&s.backing[10..14], b"head");
    }

    #[test]
    fn power_cut_keeps_only_synced_bytes() {
        let mut s = Sim::default();
        s.write(0, b"synced");
        s.fsync();
        s.write(6, b"-lost");
        assert_eq!(s.all(), b"synced-lost");
        // Power cut: the overlay is gone.
        s.overlay.clear();
        assert_eq!(s.all(), b"synced");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        Truncate(u64),
        Fsync,
        Read(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..3000, proptest::collection::vec(any::<u8>(), 0..400))
                .prop_map(|(o, d)| Op::Write(o, d)),
            1 => (0u64..3500).prop_map(Op::Truncate),
            1 => Just(Op::Fsync),
            3 => (0u64..3500, 0u64..1200).prop_map(|(o, l)| Op::Read(o, l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn matches_the_obvious_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut sim = Sim::default();
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Write(o, d) => { sim.write(o, &d); model.write(o, &d); }
                    Op::Truncate(l) => { sim.truncate(l); model.truncate(l); }
                    Op::Fsync => { sim.fsync(); model.fsync(); }
                    Op::Read(o, l) => {
                        let want: Vec<u8> = model.visible.iter().copied()
                            .skip(o as usize).take(l as usize).collect();
                        prop_assert_eq!(sim.read(o, l), want);
                    }
                }
                prop_assert_eq!(sim.size(), model.visible.len() as u64);
                prop_assert_eq!(&sim.all(), &model.visible);
                // What a power cut would leave.
                prop_assert_eq!(&sim.backing, &model.durable);
                // Invariant: extents are sorted, non-empty, and neither overlap nor touch.
                let mut prev_end: Option<u64> = None;
                for (start, data) in sim.overlay.extents() {
                    prop_assert!(!data.is_empty());
                    if let Some(p) = prev_end { prop_assert!(start > p); }
                    prev_end = Some(start + data.len() as u64);
                }
            }
        }
    }
}
