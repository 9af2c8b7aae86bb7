//! The hot tier's bytes: an in-memory mirror of the active segment, one buffer per commit
//! (or one for everything recovered at open), keyed by the commit's offset in the segment.
//! The active segment file is never mapped (see `io/maps.rs`), so reads of hot records are
//! served from here, zero-copy, with the same 8-byte alignment as a map.

use std::ops::Bound;
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use super::record::{self, RecordView};
use crate::io::aligned::AlignedBytes;

/// The active segment's records, readable without locks while the writer appends.
pub(crate) struct HotSegment {
    pub(crate) embedding_dim: usize,
    buffers: SkipMap<u32, Arc<AlignedBytes>>,
}

impl HotSegment {
    pub(crate) fn new(embedding_dim: usize) -> Self {
        HotSegment { embedding_dim, buffers: SkipMap::new() }
    }

    /// Publishes the bytes of a commit that starts at segment offset `offset`.
    pub(crate) fn add(&self, offset: u32, bytes: Arc<AlignedBytes>) {
        debug_assert!(offset.is_multiple_of(record::RECORD_ALIGN as u32));
        self.buffers.insert(offset, bytes);
    }

    /// Drops every commit buffer that starts at or after `end` (the commits of a failed
    /// group, never published in the index).
    pub(crate) fn truncate(&self, end: u64) {
        while let Some(last) = self.buffers.back() {
            if u64::from(*last.key()) < end {
                break;
            }
            last.remove();
        }
        debug_assert!(self.end() <= end.max(super::header::SEGMENT_HEADER_LEN as u64));
    }

    /// Segment offset just past the last published byte (the header's end when empty).
    pub(crate) fn end(&self) -> u64 {
        self.buffers.back().map_or(super::header::SEGMENT_HEADER_LEN as u64, |e| u64::from(*e.key()) + e.value().bytes().len() as u64)
    }

    /// A cursor for reading records at ascending offsets (one forward pass over the buffers).
    pub(crate) fn cursor(&self) -> HotCursor<'_> {
        HotCursor { segment: self, current: None }
    }

    /// The buffer holding the record at `offset` and the record's start inside it, parsed.
    /// Hot bytes were encoded by this process, so the checksum is verified only in debug
    /// builds; a `None` means the index points at nothing, a bug reported by the caller.
    pub(crate) fn record(&self, offset: u32) -> Option<(Arc<AlignedBytes>, RecordView)> {
        let entry = self.buffers.upper_bound(Bound::Included(&offset))?;
        let start = (offset - *entry.key()) as usize;
        let buffer = entry.value().clone();
        let view = record::parse_trusted(buffer.bytes(), start, self.embedding_dim).ok()?;
        Some((buffer, view))
    }
}

/// Reads a hot segment's records at ascending offsets: each lookup moves forward from the
/// buffer of the last one (a step to the next node per commit passed) instead of seeking
/// from the skiplist's head.
pub(crate) struct HotCursor<'a> {
    segment: &'a HotSegment,
    current: Option<crossbeam_skiplist::map::Entry<'a, u32, Arc<AlignedBytes>>>,
}

impl HotCursor<'_> {
    /// As `HotSegment::record`. Offsets below the last one are found too (by a seek).
    pub(crate) fn record(&mut self, offset: u32) -> Option<(Arc<AlignedBytes>, RecordView)> {
        let mut entry = match self.current.take() {
            Some(entry) if *entry.key() <= offset => entry,
            _ => self.segment.buffers.upper_bound(Bound::Included(&offset))?,
        };
        // Forward to the last buffer that starts at or before `offset`, comparing node keys
        // only (a buffer's bytes are read once, for the record itself).
        let mut steps = 0;
        while let Some(next) = entry.next().filter(|next| *next.key() <= offset) {
            if steps == CURSOR_STEPS_MAX {
                entry = self.segment.buffers.upper_bound(Bound::Included(&offset))?; // far ahead: one seek
                break;
            }
            entry = next;
            steps += 1;
        }
        let start = (offset - *entry.key()) as usize;
        let buffer = entry.value().clone();
        let view = record::parse_trusted(buffer.bytes(), start, self.segment.embedding_dim).ok()?;
        self.current = Some(entry);
        Some((buffer, view))
    }
}

/// Buffers a cursor steps over before it seeks instead.
const CURSOR_STEPS_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::aligned::AlignedVec;
    use crate::log::header::SEGMENT_HEADER_LEN;
    use crate::log::record::{encode_one, RecordFields, RecordKind};

    /// A hot segment of commits of one to three records (records at many offsets per
    /// buffer), and every pattern of lookups a cursor meets — ascending with small and
    /// large gaps (past `CURSOR_STEPS_MAX` buffers), repeated, backwards, beyond the end —
    /// answered as `HotSegment::record` answers them.
    #[test]
    fn a_cursor_finds_what_record_finds() {
        let hot = HotSegment::new(0);
        let mut offset = SEGMENT_HEADER_LEN as u32;
        let mut record_offsets = Vec::new();
        for commit in 0..300u32 {
            let mut bytes = AlignedVec::with_capacity(0);
            for r in 0..=commit % 3 {
                record_offsets.push(offset + bytes.len() as u32);
                let key = format!("key{commit}/{r}");
                let fields = RecordFields { kind: RecordKind::Put, key: key.as_bytes(), content: b"c", embedding: None, expires_at_ms: 0 };
                bytes.extend_from_slice(encode_one(&fields, u64::from(commit) + 1, r == commit % 3).bytes());
            }
            let len = bytes.len() as u32;
            hot.add(offset, Arc::new(bytes.freeze()));
            offset += len;
        }
        let same = |a: Option<(Arc<AlignedBytes>, RecordView)>, b: Option<(Arc<AlignedBytes>, RecordView)>| match (a, b) {
            (None, None) => true,
            (Some((ab, av)), Some((bb, bv))) => Arc::ptr_eq(&ab, &bb) && av.key == bv.key && av.seq == bv.seq,
            _ => false,
        };
        for stride in [1usize, 2, 5, 97, 250] {
            let mut cursor = hot.cursor();
            for &at in record_offsets.iter().step_by(stride) {
                assert!(same(cursor.record(at), hot.record(at)), "stride {stride}, offset {at}");
                assert!(same(cursor.record(at), hot.record(at)), "again at {at}");
            }
        }
        let mut cursor = hot.cursor();
        for &at in record_offsets.iter().rev().step_by(7) {
            assert!(same(cursor.record(at), hot.record(at)), "backwards, offset {at}");
        }
        assert!(cursor.record(offset).is_none() && hot.record(offset).is_none(), "past the end");
        assert!(cursor.record(record_offsets[0]).is_some(), "a seek back after the end");
    }
}
