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

/// Looks up a run of keys in ascending order in one forward pass over a `ColdSet` (the
/// search's index walk marking the cold rows its keys shadow): each lookup starts where the
/// last one ended and gallops (1, 2, 4 ... rows, then a binary search), so keys that are
/// close in the cold tier cost a few comparisons in cache instead of a whole `find`.
pub(crate) struct ColdCursor<'a> {
    set: &'a ColdSet,
    /// Segments before it hold only keys below every key still to come.
    segment: usize,
    /// Rows of `segment` before it hold only keys below every key still to come.
    row: usize,
    /// The last key looked up (debug builds check the order).
    #[cfg(debug_assertions)]
    last: Option<Vec<u8>>,
}

impl<'a> ColdCursor<'a> {
    /// A cursor for keys in `lower..`.
    pub(crate) fn new(set: &'a ColdSet, lower: Bound<&[u8]>) -> ColdCursor<'a> {
        let segment = match lower {
            Bound::Unbounded => 0,
            Bound::Included(k) | Bound::Excluded(k) => set.segments.partition_point(|s| &s.footer.max_key[..] < k),
        };
        ColdCursor {
            set,
            segment,
            row: 0,
            #[cfg(debug_assertions)]
            last: None,
        }
    }

    /// The row holding `key`, as `ColdSet::find` would answer. Keys must come in strictly
    /// ascending order, none below the cursor's `lower`.
    pub(crate) fn find(&mut self, key: &[u8]) -> Option<ColdRow> {
        #[cfg(debug_assertions)]
        {
            debug_assert!(self.last.as_deref().is_none_or(|last| last < key), "cursor keys ascend");
            self.last = Some(key.to_vec());
        }
        while self.set.segments.get(self.segment).is_some_and(|s| &s.footer.max_key[..] < key) {
            (self.segment, self.row) = (self.segment + 1, 0);
        }
        let segment = self.set.segments.get(self.segment)?;
        if !segment.may_contain(key, super::filter::key_hash(key)) {
            return None; // the position stays a valid lower bound for the next key
        }
        let rows = segment.rows();
        // Gallop: rows before `lo` are below `key`; `hi` is past the end or at a key >= it.
        let (mut lo, mut hi, mut step) = (self.row, self.row, 1usize);
        while hi < rows && segment.key(hi) < key {
            lo = hi + 1;
            hi = hi.saturating_add(step).min(rows);
            step = step.saturating_mul(2);
        }
        let lo = segment.lower_bound_in(key, lo, hi);
        self.row = lo;
        (lo < rows && segment.key(lo) == key).then_some(ColdRow { segment: self.segment as u32, row: lo as u32 })
    }
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

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::sync::Arc;

    use super::*;
    use crate::cold::layout::cold_file_name;
    use crate::cold::writer::{write_segment, OwnedRow, OwnedRows};
    use crate::io::vfs::OsVfs;

    /// Three segments of disjoint key ranges (one empty), then every ascending subsequence
    /// of probes a walk could pass — present keys, absent ones between, before and after
    /// segments, long gaps and neighbours — answered by a cursor exactly as `find` does.
    #[test]
    fn a_cursor_answers_ascending_lookups_as_find_does() {
        let dir = tempfile::tempdir().unwrap();
        let ranges: [std::ops::Range<u32>; 3] = [0..900, 900..900, 1000..1300];
        let mut segments = Vec::new();
        for (id, range) in ranges.iter().enumerate() {
            // Even numbers only: the odd ones between are absent.
            let rows = OwnedRows(
                range
                    .clone()
                    .filter(|i| i % 2 == 0)
                    .map(|i| OwnedRow { key: format!("k{i:05}").into_bytes(), content: vec![], embedding: None, seq: 1, expires_at_ms: 0 })
                    .collect(),
            );
            let path = dir.path().join(cold_file_name(id as u64));
            write_segment(&OsVfs, &path, id as u64, 0, &rows, None).unwrap();
            segments.push(Arc::new(crate::cold::segment::ColdFile::open(&OsVfs, &path, id as u64, 0).unwrap()));
        }
        segments.retain(|s| s.rows() > 0); // a set holds no empty segment
        let set = ColdSet::new(segments, 1);
        let probes: Vec<Vec<u8>> = (0..1400u32).map(|i| format!("k{i:05}").into_bytes()).collect();
        for stride in [1usize, 2, 3, 7, 64, 401] {
            for start in [0usize, 1, 899, 950] {
                let lower = probes[start].clone();
                let mut cursor = ColdCursor::new(&set, Bound::Included(&lower));
                for probe in probes[start..].iter().step_by(stride) {
                    assert_eq!(cursor.find(probe), set.find(probe), "stride {stride}, start {start}, probe {probe:?}");
                }
            }
        }
        let mut unbounded = ColdCursor::new(&set, Bound::Unbounded);
        for probe in [&b"a"[..], b"k00000", b"k00899", b"k00900", b"k01298", b"zz"] {
            assert_eq!(unbounded.find(probe), set.find(probe), "{probe:?}");
        }
    }
}
