//! `DeadRows`: which records of one log segment no reader can ever read again — versions
//! the index pruned (superseded or deleted, and no pin between them and the next version),
//! and at open the older versions the index rebuild skipped. A search skips them without
//! asking the index (`vector::log_rows`).
//!
//! **Invariant:** a bit is set only for a record no present or future view reads, so a set
//! bit may be trusted by any reader, with any memory ordering. A bit that is not set says
//! nothing: the reader asks the index. A lost or late mark costs speed, never a result.
//!
//! One bit per `GRANULE` bytes of the segment (no two records share one), in chunks of
//! `CHUNK_BYTES` of the segment allocated on the first mark inside them: a segment whose
//! versions are never superseded costs no bitmap. The hot segment's `DeadRows` is shared
//! with the sealed segment that replaces it (`ActiveSegment::seal`), so marks made before,
//! during and after the seal all land in one place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Segment bytes per bit: no record is shorter (a header and a key byte, aligned).
const GRANULE: usize = 32;
const _: () = assert!(GRANULE <= super::record::RECORD_HEADER_LEN + super::record::RECORD_ALIGN);
/// Segment bytes per chunk of the bitmap (16 MiB: 64 KiB of bits).
const CHUNK_BYTES: usize = 16 << 20;
const WORDS_PER_CHUNK: usize = CHUNK_BYTES / GRANULE / 64;
/// Chunks for the largest segment file.
const CHUNKS: usize = (crate::limits::SEGMENT_FILE_BYTES_MAX as usize).div_ceil(CHUNK_BYTES);

/// The dead records of one log segment (see the module's doc).
pub(crate) struct DeadRows {
    chunks: [OnceLock<Box<[AtomicU64]>>; CHUNKS],
}

impl Default for DeadRows {
    fn default() -> Self {
        DeadRows { chunks: std::array::from_fn(|_| OnceLock::new()) }
    }
}

/// (chunk, word in the chunk, bit) of the record at `offset`.
fn locate(offset: u32) -> (usize, usize, u64) {
    let granule = offset as usize / GRANULE;
    let word = granule / 64;
    (word / WORDS_PER_CHUNK, word % WORDS_PER_CHUNK, 1 << (granule % 64))
}

impl DeadRows {
    /// Marks the record at `offset` dead: the caller guarantees no view reads it now or later.
    pub(crate) fn mark(&self, offset: u32) {
        let (chunk, word, bit) = locate(offset);
        let Some(slot) = self.chunks.get(chunk) else { return }; // beyond any segment: nothing to skip
        let words = slot.get_or_init(|| (0..WORDS_PER_CHUNK).map(|_| AtomicU64::new(0)).collect());
        words[word].fetch_or(bit, Ordering::Relaxed);
    }

    /// Was the record at `offset` marked dead?
    pub(crate) fn is_dead(&self, offset: u32) -> bool {
        let (chunk, word, bit) = locate(offset);
        self.chunks.get(chunk).and_then(OnceLock::get).is_some_and(|words| words[word].load(Ordering::Relaxed) & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks land on their own record only — neighbours 32 bytes apart, both sides of a
    /// chunk boundary, the last offset a segment can have — and unmarked chunks stay
    /// unallocated.
    #[test]
    fn marks_are_per_record_and_chunks_allocated_on_demand() {
        let dead = DeadRows::default();
        let offsets =
            [64u32, 96, 128, (CHUNK_BYTES - 32) as u32, CHUNK_BYTES as u32, (crate::limits::SEGMENT_FILE_BYTES_MAX as u32 - 32) & !7];
        for (i, &offset) in offsets.iter().enumerate() {
            assert!(!dead.is_dead(offset));
            dead.mark(offset);
            for (j, &other) in offsets.iter().enumerate() {
                assert_eq!(dead.is_dead(other), j <= i, "after marking {offset}, offset {other}");
            }
            assert!(!dead.is_dead(offset + 32) || offsets.contains(&(offset + 32)), "the next record is not marked");
        }
        assert!(dead.chunks[2].get().is_none(), "a chunk with no mark is never allocated");
    }
}
