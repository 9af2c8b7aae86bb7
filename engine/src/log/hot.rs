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
