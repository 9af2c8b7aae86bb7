//! `ColdSet`: the cold segments of one published state, ordered by key. Compaction writes
//! them with disjoint key ranges and at most one version per key, so a key is looked up
//! in at most one segment.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::segment::ColdFile;

/// A row of a cold segment: index of the segment in its set, row in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ColdRow {
    pub(crate) segment: u32,
    pub(crate) row: u32,
}

/// The cold segments of a published state. Immutable once published.
#[derive(Default)]
pub(crate) struct ColdSet {
    /// Ascending by key; key ranges disjoint (`max_key` of one < `min_key` of the next).
    pub(crate) segments: Vec<Arc<ColdFile>>,
    /// Newest seq any compaction moved into this set (the MANIFEST's `seq_max`): a reader
    /// pinned below it must not use this set (`Shared::pinned_view`).
    pub(crate) seq_max: u64,
}

impl ColdSet {
    pub(crate) fn new(segments: Vec<Arc<ColdFile>>, seq_max: u64) -> ColdSet {
        debug_assert!(segments.windows(2).all(|w| w[0].footer.max_key < w[1].footer.min_key), "cold key ranges are disjoint and ordered");
        debug_assert!(segments.iter().all(|s| s.footer.seq_max <= seq_max));
        ColdSet { segments, seq_max }
    }

    pub(crate) fn segment(&self, row: ColdRow) -> &Arc<ColdFile> {
        &self.segments[row.segment as usize]
    }

    pub(crate) fn key(&self, row: ColdRow) -> &[u8] {
        self.segment(row).key(row.row as usize)
    }

    /// The row holding `key`: one segment chosen by key range, then its filter and key search.
    pub(crate) fn find(&self, key: &[u8]) -> Option<ColdRow> {
        let s = self.segments.partition_point(|s| &s.footer.max_key[..] < key);
        let row = self.segments.get(s)?.find(key)?;
        Some(ColdRow { segment: s as u32, row: row as u32 })
    }

    /// The first row at or after `lower`, if any.
    fn first_at_or_after(&self, lower: Bound<&[u8]>) -> Option<ColdRow> {
        let (mut s, mut row) = match lower {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) => {
                let s = self.segments.partition_point(|s| &s.footer.max_key[..] < k);
                (s, self.segments.get(s).map_or(0, |seg| seg.lower_bound(k)))
            }
            Bound::Excluded(k) => {
                let s = self.segments.partition_point(|s| &s.footer.max_key[..] <= k);
                (s, self.segments.get(s).map_or(0, |seg| seg.upper_bound(k)))
            }
        };
        while s < self.segments.len() {
            if row < self.segments[s].rows() {
                return Some(ColdRow { segment: s as u32, row: row as u32 });
            }
            (s, row) = (s + 1, 0);
        }
        None
    }

    /// The last row at or before `upper`, if any.
    fn last_at_or_before(&self, upper: Bound<&[u8]>) -> Option<ColdRow> {
        // `end`: segments [0, s) may hold rows in range; in segment s - 1, rows [0, end).
        let (s, end) = match upper {
            Bound::Unbounded => (self.segments.len(), None),
            Bound::Included(k) => {
                let s = self.segments.partition_point(|s| &s.footer.min_key[..] <= k);
                (s, s.checked_sub(1).map(|i| self.segments[i].upper_bound(k)))
            }
            Bound::Excluded(k) => {
                let s = self.segments.partition_point(|s| &s.footer.min_key[..] < k);
                (s, s.checked_sub(1).map(|i| self.segments[i].lower_bound(k)))
            }
        };
        let mut s = s.checked_sub(1)?;
        let mut end = end.unwrap_or(self.segments[s].rows());
        loop {
            if end > 0 {
                return Some(ColdRow { segment: s as u32, row: (end - 1) as u32 });
            }
            s = s.checked_sub(1)?;
            end = self.segments[s].rows();
        }
    }

    fn next(&self, at: ColdRow) -> Option<ColdRow> {
        let mut s = at.segment as usize;
        let mut row = at.row as usize + 1;
        while s < self.segments.len() {
            if row < self.segments[s].rows() {
                return Some(ColdRow { segment: s as u32, row: row as u32 });
            }
            (s, row) = (s + 1, 0);
        }
        None
    }

    fn previous(&self, at: ColdRow) -> Option<ColdRow> {
        if at.row > 0 {
            return Some(ColdRow { segment: at.segment, row: at.row - 1 });
        }
        let mut s = at.segment as usize;
        loop {
            s = s.checked_sub(1)?;
            if let Some(last) = self.segments[s].rows().checked_sub(1) {
                return Some(ColdRow { segment: s as u32, row: last as u32 });
            }
        }
    }

    /// Collects up to `limit` rows with keys in `(lower, upper)`, ascending when `forward`
    /// else descending. Returns the key of the last row collected when it stopped because
    /// of `limit` (more may follow), `None` when the range is done.
    pub(crate) fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        forward: bool,
        limit: usize,
        out: &mut Vec<ColdRow>,
    ) -> Option<Vec<u8>> {
        debug_assert!(limit > 0);
        let in_range = |key: &[u8]| RangeBounds::<[u8]>::contains(&(lower, upper), key);
        let mut at = if forward { self.first_at_or_after(lower) } else { self.last_at_or_before(upper) };
        let mut taken = 0;
        while let Some(row) = at {
            if !in_range(self.key(row)) {
                return None;
            }
            if taken == limit {
                return out.last().map(|&last| self.key(last).to_vec());
            }
            out.push(row);
            taken += 1;
            at = if forward { self.next(row) } else { self.previous(row) };
        }
        None
    }
}
