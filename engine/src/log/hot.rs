//! The hot tier's bytes: a mirror of the active segment, one buffer per commit (or one for
//! everything recovered at open, a map of the file when it can be), keyed by the commit's
//! offset in the segment, and *regions*: maps of the file's written bytes that the writer
//! adds as the file grows (`REGION_BYTES` apart, `ActiveSegment::map_written`). Reads of hot
//! records are served from here, zero-copy, with the same 8-byte alignment as a map: from
//! the region holding the offset when one does, else from the commit's buffer. A search
//! over a region reads commits in file order, out of the page cache, instead of one heap
//! allocation after another (BENCHMARKS.md, background maintenance, search row).
//!
//! The buffers sit in an append-only array of slots (chunks of doubling size, allocated as
//! the segment grows), ascending by offset: a reader finds a record's buffer by a binary
//! search over the published slots — contiguous memory, no lock, no allocation per commit —
//! and a search walks the published commits in order (`published`, `commit`).
//!
//! **Invariants.** Only the writer (under the writer lock; `writer` here makes it so) adds
//! commits and regions, and truncates. Regions are contiguous from offset 0, each written
//! once and published (`regions_published`, Release/Acquire) after it is set; a region ends
//! where a write to the file ended, so a commit lies in one region or in none, and a region
//! holds exactly the bytes of the commits it covers (and the group marks between them).
//! Every slot is written once; its buffer is dropped only after a region covering its
//! commit is published, so a reader that finds the buffer gone finds the region when it
//! looks again. Commit buffers are handed out shared (an `Arc`), region bytes borrowed for
//! as long as the mirror. `published` is stored with Release after a slot is filled and
//! loaded with Acquire by readers. A truncation (a failed group, never published in the
//! index) lowers `published` and is the segment's last change: the writer is dropped after
//! a failed group (`Shared::publish` poisons), so no commit follows one into this mirror,
//! and the slots above keep their buffers, unreachable through the index, until the mirror
//! is dropped.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;

use super::dead_rows::DeadRows;
use super::record::{self, RecordView};
use crate::io::aligned::AlignedBytes;

/// Slots in the first chunk; chunk `c` has `FIRST_CHUNK_SLOTS << c`.
const FIRST_CHUNK_SLOTS: usize = 256;
/// Chunks: 256 × (2^24 − 1) slots, more than the commits of a segment of
/// `SEGMENT_FILE_BYTES_MAX` (at most one per 8 bytes).
const CHUNKS: usize = 24;
const _: () = assert!((FIRST_CHUNK_SLOTS as u64) * ((1u64 << CHUNKS) - 1) >= crate::limits::SEGMENT_FILE_BYTES_MAX / 8);

/// The writer maps the file's written bytes as a new region once this many have gathered
/// past the last region (`ActiveSegment::map_written`).
pub(crate) const REGION_BYTES: u64 = 4 << 20;
/// Regions of one segment: enough for a file of `SEGMENT_FILE_BYTES_MAX` in regions of at
/// least `REGION_BYTES`.
const REGIONS: usize = (crate::limits::SEGMENT_FILE_BYTES_MAX / REGION_BYTES) as usize + 1;

/// A map of the segment file's bytes `[start, start + bytes.len())`.
struct Region {
    start: u32,
    bytes: Arc<AlignedBytes>,
}

/// One commit's buffer and the segment offset it starts at.
struct Slot {
    offset: AtomicU32,
    /// The length of the commit's first record (0 for the buffer recovery rebuilt, which
    /// starts with the segment header): a search passes over a commit whose first record is
    /// dead and whose rest is too short for another it could use (`vector::log_rows`).
    first_len: AtomicU32,
    /// The buffer's length, read without touching the buffer (a search passes over most
    /// commits, or reads them from a region).
    len: AtomicU32,
    /// Dropped (set to `None`) once a region maps the commit: its bytes are then in the page
    /// cache already, and a buffer would only hold a second copy on the heap.
    buffer: ArcSwapOption<AlignedBytes>,
}

/// A commit's bytes: borrowed from the region that maps them, or its buffer, shared.
pub(crate) enum CommitBytes<'a> {
    Mapped(&'a [u8]),
    Buffer(Arc<AlignedBytes>),
}

impl CommitBytes<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            CommitBytes::Mapped(bytes) => bytes,
            CommitBytes::Buffer(buffer) => buffer.bytes(),
        }
    }
}

/// The active segment's records, readable without locks while the writer appends.
pub(crate) struct HotSegment {
    pub(crate) embedding_dim: usize,
    /// Records no reader can read again (shared with the sealed segment that replaces this).
    pub(crate) dead: Arc<DeadRows>,
    chunks: [OnceLock<Box<[Slot]>>; CHUNKS],
    /// Slots readers may use.
    published: AtomicUsize,
    /// Maps of the file from offset 0 on, each starting where the previous one ends
    /// (allocated with the first one).
    regions: OnceLock<Box<[OnceLock<Region>]>>,
    /// Regions readers may use.
    regions_published: AtomicUsize,
    /// Held by `add`, `add_region` and `truncate` (one writer at a time); holds how many
    /// slots from the first have had their buffers dropped (`add_region`).
    writer: Mutex<usize>,
}

/// (chunk, index in the chunk) of slot `i`.
fn locate(i: usize) -> (usize, usize) {
    let block = i / FIRST_CHUNK_SLOTS + 1;
    let chunk = (usize::BITS - 1 - block.leading_zeros()) as usize;
    (chunk, i - FIRST_CHUNK_SLOTS * ((1 << chunk) - 1))
}

impl HotSegment {
    pub(crate) fn new(embedding_dim: usize) -> Self {
        HotSegment {
            embedding_dim,
            dead: Arc::default(),
            chunks: std::array::from_fn(|_| OnceLock::new()),
            published: AtomicUsize::new(0),
            regions: OnceLock::new(),
            regions_published: AtomicUsize::new(0),
            writer: Mutex::new(0),
        }
    }

    /// Region `i`, below a count `regions_published` gave.
    fn region(&self, i: usize) -> Option<&Region> {
        self.regions.get()?.get(i)?.get()
    }

    /// Segment offset up to which regions map the file (0 when none does).
    pub(crate) fn mapped_end(&self) -> u64 {
        match self.regions_published.load(Ordering::Acquire) {
            0 => 0,
            n => self.region(n - 1).map_or(0, |r| u64::from(r.start) + r.bytes.bytes().len() as u64),
        }
    }

    /// Publishes a map of the file's bytes from `mapped_end` on (`bytes`, written by
    /// successful writes, never changed again: `io/maps.rs`, invariant 1). From then on
    /// records below its end are served from it: file order, contiguous, out of the page
    /// cache. The buffers of the commits it covers are dropped after it is published. Returns
    /// false (and publishes nothing) when the regions are full or `bytes` is not 8-byte
    /// aligned in memory.
    pub(crate) fn add_region(&self, bytes: Arc<AlignedBytes>) -> bool {
        let mut released = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.regions_published.load(Ordering::Relaxed);
        let start = self.mapped_end();
        let Ok(start32) = u32::try_from(start) else { return false };
        let aligned = bytes.bytes().as_ptr().align_offset(record::RECORD_ALIGN) == 0;
        let regions = self.regions.get_or_init(|| (0..REGIONS).map(|_| OnceLock::new()).collect());
        if !aligned || n >= regions.len() || regions[n].set(Region { start: start32, bytes }).is_err() {
            return false;
        }
        self.regions_published.store(n + 1, Ordering::Release);
        // Readers that looked before the store and then find a buffer gone look again and
        // find the region (`record`, `commit`).
        let end = self.mapped_end();
        let published = self.published.load(Ordering::Relaxed);
        let mut i = *released;
        while i < published {
            let slot = self.slot(i);
            if u64::from(slot.offset.load(Ordering::Relaxed)) + u64::from(slot.len.load(Ordering::Relaxed)) > end {
                break;
            }
            slot.buffer.store(None);
            i += 1;
        }
        *released = i;
        true
    }

    /// The region holding segment offset `offset`, if one maps it.
    fn region_at(&self, offset: u32) -> Option<&Region> {
        let n = self.regions_published.load(Ordering::Acquire);
        let last = self.region(n.checked_sub(1)?)?;
        if u64::from(offset) >= u64::from(last.start) + last.bytes.bytes().len() as u64 {
            return None;
        }
        // Regions [0, lo) start at or before `offset`.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.region(mid).is_some_and(|r| r.start <= offset) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.region(lo.checked_sub(1)?)
    }

    /// Slot `i`, which must have been allocated (`i` below a published count, or the
    /// writer's next slot after `add` allocated it).
    fn slot(&self, i: usize) -> &Slot {
        let (chunk, at) = locate(i);
        &self.chunks[chunk].get().expect("slot of an allocated chunk")[at]
    }

    fn offset_of(&self, i: usize) -> u32 {
        self.slot(i).offset.load(Ordering::Relaxed)
    }

    /// Publishes the bytes of a commit that starts at segment offset `offset`, after every
    /// buffer already published.
    pub(crate) fn add(&self, offset: u32, bytes: Arc<AlignedBytes>) {
        debug_assert!(offset.is_multiple_of(record::RECORD_ALIGN as u32));
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let i = self.published.load(Ordering::Relaxed);
        debug_assert!(i == 0 || u64::from(offset) >= self.end(), "buffers are added in offset order");
        let (chunk, at) = locate(i);
        let slots = self.chunks[chunk].get_or_init(|| {
            (0..FIRST_CHUNK_SLOTS << chunk)
                .map(|_| Slot {
                    offset: AtomicU32::new(u32::MAX),
                    first_len: AtomicU32::new(0),
                    len: AtomicU32::new(0),
                    buffer: ArcSwapOption::empty(),
                })
                .collect()
        });
        let first_len = match offset {
            0 => 0,
            _ => record::parse_trusted(bytes.bytes(), 0, self.embedding_dim).map_or(0, |view| view.len as u32),
        };
        let len = bytes.bytes().len() as u32; // a commit fits a segment, whose offsets are u32
        if slots[at].len.load(Ordering::Relaxed) != 0 {
            // A commit after a truncation: unreachable (the writer is gone, see the module's
            // invariants). Publishing nothing keeps every published slot as it was.
            debug_assert!(false, "a commit added to a hot mirror after a truncation");
            return;
        }
        slots[at].buffer.store(Some(bytes));
        slots[at].offset.store(offset, Ordering::Relaxed);
        slots[at].first_len.store(first_len, Ordering::Relaxed);
        slots[at].len.store(len, Ordering::Relaxed);
        self.published.store(i + 1, Ordering::Release);
    }

    /// Unpublishes every commit buffer that starts at or after `end` (the commits of a
    /// failed group, never published in the index): the mirror's last change.
    pub(crate) fn truncate(&self, end: u64) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = self.published.load(Ordering::Relaxed);
        while n > 0 && u64::from(self.offset_of(n - 1)) >= end {
            n -= 1;
        }
        self.published.store(n, Ordering::Release);
        debug_assert!(self.end() <= end.max(super::header::SEGMENT_HEADER_LEN as u64));
    }

    /// Segment offset just past the last published byte (the header's end when empty).
    pub(crate) fn end(&self) -> u64 {
        match self.published.load(Ordering::Acquire) {
            0 => super::header::SEGMENT_HEADER_LEN as u64,
            n => {
                let slot = self.slot(n - 1);
                u64::from(slot.offset.load(Ordering::Relaxed)) + u64::from(slot.len.load(Ordering::Relaxed))
            }
        }
    }

    /// The last published slot starting at or before `offset`, among the first `published`.
    fn slot_at_or_before(&self, offset: u32, published: usize) -> Option<usize> {
        // partition_point over slot indices: slots [0, p) start at or before `offset`.
        let (mut lo, mut hi) = (0usize, published);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.offset_of(mid) <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Slot `i`'s buffer, or `None` once a region maps its commit.
    fn buffer(&self, i: usize) -> Option<Arc<AlignedBytes>> {
        self.slot(i).buffer.load_full()
    }

    /// How many commits readers may use now (`commit(i)` for `i` below it).
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// The segment offset commit `i` (below a count `published` gave) starts at, and the
    /// length of its first record (0 when unknown: the buffer recovery rebuilt).
    pub(crate) fn commit_start(&self, i: usize) -> (u32, u32) {
        let slot = self.slot(i);
        (slot.offset.load(Ordering::Relaxed), slot.first_len.load(Ordering::Relaxed))
    }

    /// Commit `i` (below a count `published` gave): the segment offset it starts at and its
    /// bytes, borrowed for as long as the mirror — from the region that maps them when one
    /// does, else from the commit's buffer.
    pub(crate) fn commit(&self, i: usize) -> Option<(u32, CommitBytes<'_>)> {
        let slot = self.slot(i);
        let offset = slot.offset.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed) as usize;
        // Twice at most: a buffer found gone was dropped after its region was published.
        for _ in 0..2 {
            if let Some(region) = self.region_at(offset) {
                let start = (offset - region.start) as usize;
                return Some((offset, CommitBytes::Mapped(region.bytes.bytes().get(start..start + len)?)));
            }
            if let Some(buffer) = self.buffer(i) {
                return Some((offset, CommitBytes::Buffer(buffer)));
            }
        }
        None
    }

    /// The buffer holding the record at `offset` and the record's start inside it, parsed:
    /// the region that maps it, else its commit's buffer. Hot bytes were encoded by this
    /// process, so the checksum is verified only in debug builds; a `None` means the index
    /// points at nothing, a bug reported by the caller.
    pub(crate) fn record(&self, offset: u32) -> Option<(Arc<AlignedBytes>, RecordView)> {
        // Twice at most: a buffer found gone was dropped after its region was published.
        for _ in 0..2 {
            if let Some(region) = self.region_at(offset) {
                let start = (offset - region.start) as usize;
                let view = record::parse_trusted(region.bytes.bytes(), start, self.embedding_dim).ok()?;
                return Some((region.bytes.clone(), view));
            }
            let i = self.slot_at_or_before(offset, self.published.load(Ordering::Acquire))?;
            if let Some(buffer) = self.buffer(i) {
                let start = (offset - self.offset_of(i)) as usize;
                let view = record::parse_trusted(buffer.bytes(), start, self.embedding_dim).ok()?;
                return Some((buffer, view));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::aligned::AlignedVec;
    use crate::log::header::SEGMENT_HEADER_LEN;
    use crate::log::record::{encode_one, RecordFields, RecordKind};

    /// `published` and `commit` give back every added buffer at its offset, in order, across
    /// chunk boundaries; a truncation lowers the count to the commits before the cut, and a
    /// record is still found at its offset.
    #[test]
    fn commits_come_back_in_order_and_a_truncation_lowers_the_count() {
        let hot = HotSegment::new(0);
        let mut offset = SEGMENT_HEADER_LEN as u32;
        let mut added: Vec<(u32, Arc<AlignedBytes>)> = Vec::new();
        for commit in 0..800u32 {
            let key = format!("key{commit}");
            let fields = RecordFields { kind: RecordKind::Put, key: key.as_bytes(), content: b"c", embedding: None, expires_at_ms: 0 };
            let bytes: AlignedVec = encode_one(&fields, u64::from(commit) + 1, true);
            let bytes = Arc::new(bytes.freeze());
            hot.add(offset, bytes.clone());
            added.push((offset, bytes.clone()));
            offset += bytes.bytes().len() as u32;
        }
        assert_eq!(hot.published(), added.len());
        for (i, (at, bytes)) in added.iter().enumerate() {
            let (got_at, got) = hot.commit(i).expect("a published commit");
            assert!(got_at == *at && std::ptr::eq(got.bytes(), bytes.bytes()), "commit {i}");
        }
        hot.truncate(u64::from(added[500].0));
        assert_eq!(hot.published(), 500);
        let (_, view) = hot.record(added[499].0).expect("a record before the cut");
        assert_eq!(view.seq, 500);
    }

    /// Once a region maps the file's first commits, records and commits below its end are
    /// read from it (the same bytes, at the same offsets) and their buffers are dropped;
    /// those after it are read from their buffers; a second region continues where the
    /// first ends.
    #[test]
    fn records_below_the_mapped_end_come_from_the_regions() {
        let hot = HotSegment::new(0);
        let mut file = vec![0u8; SEGMENT_HEADER_LEN]; // what the file holds, header first
        let mut offsets = Vec::new();
        for seq in 1..=300u64 {
            let key = format!("key{seq}");
            let content = vec![seq as u8; (seq as usize * 7) % 50];
            let fields = RecordFields { kind: RecordKind::Put, key: key.as_bytes(), content: &content, embedding: None, expires_at_ms: 0 };
            let bytes: AlignedVec = encode_one(&fields, seq, true);
            let bytes = Arc::new(bytes.freeze());
            offsets.push(file.len() as u32);
            hot.add(file.len() as u32, bytes.clone());
            file.extend_from_slice(bytes.bytes());
        }
        let region_of = |bytes: &[u8]| {
            let mut v = AlignedVec::with_capacity(bytes.len());
            v.extend_from_slice(bytes);
            Arc::new(v.freeze())
        };
        let (first, second) = (offsets[100] as usize, offsets[200] as usize);
        assert_eq!(hot.mapped_end(), 0);
        let first_region = region_of(&file[..first]);
        assert!(hot.add_region(first_region.clone()));
        let second_region = region_of(&file[first..second]);
        assert!(hot.add_region(second_region.clone()));
        assert_eq!(hot.mapped_end(), second as u64);
        for (i, &at) in offsets.iter().enumerate() {
            let (buffer, view) = hot.record(at).expect("a published record");
            assert_eq!(view.seq, i as u64 + 1, "record at {at}");
            let expected = match i {
                _ if i < 100 => Some(&first_region),
                _ if i < 200 => Some(&second_region),
                _ => None,
            };
            assert_eq!(expected.map(|r| Arc::ptr_eq(r, &buffer)), expected.map(|_| true), "record {i} from its region");
            let (got_at, bytes) = hot.commit(i).expect("a published commit");
            let end = offsets.get(i + 1).map_or(file.len(), |&e| e as usize);
            assert!(got_at == at && bytes.bytes() == &file[at as usize..end], "commit {i}");
            assert_eq!(hot.buffer(i).is_none(), i < 200, "commit {i}'s buffer is dropped once a region maps it");
        }
    }

    /// Readers racing the writer as it adds commits and regions (dropping the buffers the
    /// regions cover) always find every published record and commit, with its own bytes.
    #[test]
    fn readers_racing_regions_always_find_published_records() {
        use std::sync::atomic::AtomicBool;
        let hot = Arc::new(HotSegment::new(0));
        let file = Arc::new(Mutex::new(vec![0u8; SEGMENT_HEADER_LEN])); // what the file holds
        let offsets: Arc<Mutex<Vec<u32>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (hot, offsets, done) = (hot.clone(), offsets.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut checked = 0u64;
                    let mut x = r as usize;
                    while !done.load(Ordering::Relaxed) {
                        let n = hot.published();
                        if n == 0 {
                            continue;
                        }
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        // Mostly the newest commits: those a region is about to cover.
                        let i = if x & 1 == 0 { (x >> 33) % n } else { n - 1 - (x >> 33) % n.min(300) };
                        let at = offsets.lock().unwrap()[i];
                        let (_, view) = hot.record(at).unwrap_or_else(|| panic!("record {i} at {at} not found"));
                        assert_eq!(view.seq, i as u64 + 1);
                        let (got_at, bytes) = hot.commit(i).unwrap_or_else(|| panic!("commit {i} not found"));
                        assert_eq!(got_at, at);
                        let view = record::parse_trusted(bytes.bytes(), 0, 0).expect("the commit's own bytes");
                        assert_eq!(view.seq, i as u64 + 1);
                        checked += 1;
                    }
                    checked
                })
            })
            .collect();
        let aligned = |bytes: &[u8]| {
            let mut v = AlignedVec::with_capacity(bytes.len());
            v.extend_from_slice(bytes);
            Arc::new(v.freeze())
        };
        for seq in 1..=40_000u64 {
            let key = format!("key{seq}");
            let fields = RecordFields { kind: RecordKind::Put, key: key.as_bytes(), content: b"v", embedding: None, expires_at_ms: 0 };
            let bytes = Arc::new(encode_one(&fields, seq, true).freeze());
            let at = file.lock().unwrap().len() as u32;
            offsets.lock().unwrap().push(at); // before it is published, so readers can look it up
            file.lock().unwrap().extend_from_slice(bytes.bytes());
            hot.add(at, bytes);
            if seq % 97 == 0 {
                let region = aligned(&file.lock().unwrap()[hot.mapped_end() as usize..]);
                assert!(hot.add_region(region));
            }
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().expect("reader") > 0, "the reader checked something");
        }
    }

    /// Slot `i` is found in the chunk that holds it: chunk boundaries at 256, 768, 1792 ...
    #[test]
    fn slots_map_to_chunks_of_doubling_size() {
        assert_eq!(
            [locate(0), locate(255), locate(256), locate(767), locate(768), locate(1791), locate(1792)],
            [(0, 0), (0, 255), (1, 0), (1, 511), (2, 0), (2, 1023), (3, 0)]
        );
        let mut expected = (0usize, 0usize);
        for i in 0..100_000 {
            assert_eq!(locate(i), expected, "slot {i}");
            expected.1 += 1;
            if expected.1 == FIRST_CHUNK_SLOTS << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    /// A truncation (a failed group) unpublishes the buffers from its offset on, and every
    /// record before it reads as before.
    #[test]
    fn truncate_drops_the_tail() {
        let hot = HotSegment::new(0);
        let commit = |seq: u64| {
            let key = format!("k{seq}");
            let fields = RecordFields { kind: RecordKind::Put, key: key.as_bytes(), content: b"v", embedding: None, expires_at_ms: 0 };
            Arc::new(encode_one(&fields, seq, true).freeze())
        };
        let mut offsets = Vec::new();
        let mut offset = SEGMENT_HEADER_LEN as u32;
        for seq in 1..=600 {
            let bytes = commit(seq);
            let len = bytes.bytes().len() as u32;
            hot.add(offset, bytes);
            offsets.push(offset);
            offset += len;
        }
        let cut = offsets[400];
        hot.truncate(u64::from(cut));
        assert_eq!(hot.end(), u64::from(cut));
        assert_eq!(hot.published(), 400);
        assert!(hot.record(offsets[450]).is_none() && hot.record(cut).is_none(), "a dropped commit is gone");
        for (i, &at) in offsets[..400].iter().enumerate() {
            assert_eq!(hot.record(at).map(|(_, v)| v.seq), Some(i as u64 + 1), "kept commit at {at}");
        }
    }
}
