//! Buffers aligned to 8 bytes, so embeddings inside them can be viewed as `&[f32]` in place,
//! exactly as in a page-aligned map.
//!
//! **Large buffers are anonymous maps of their own.** A buffer of at least
//! [`MAPPED_BUFFER_BYTES`] (a commit of a bulk load, a copy of an active segment) is not
//! taken from the allocator but mapped (`io::maps::AnonymousMap`) and unmapped when dropped,
//! so its pages go back to the system at once. From the allocator, glibc's malloc would map
//! the first ones too, but freeing a mapped chunk raises its mapping threshold to that
//! chunk's size: later commit buffers of a few MiB then come from the heap, and freed
//! there (when a segment is sealed and its hot mirror dropped) stay in the process. A
//! 100K-record bulk load (content 64 B–32 KB + 768 floats, batches of 256) left 37 MB of
//! RssAnon behind after the handle was dropped; with this rule, 7 MB
//! (BENCHMARKS.md, "Side by side", RssAnon).
//!
//! **Commit buffers are recycled** ([`BufferPool`]). A fresh map costs a page fault, a
//! zeroed page and a cgroup charge per 4 KiB on first touch, and an unmap (a TLB flush)
//! when dropped: in a bulk load of 8 MB commits that was 38 % of `Db::write`'s time
//! (perf, BENCHMARKS.md, bulk load). The writer's pool keeps up to [`POOL_BUFFERS`] maps
//! of at most [`POOL_BUFFER_BYTES_MAX`] that its commits' buffers came from; the last
//! drop of such a buffer (a reader may hold it after the hot mirror let go) gives its map
//! back, and the next commit reuses its pages. A reused map holds old bytes: they are
//! zeroed as the buffer grows over them, so a buffer reads the same whichever map it has.

use std::sync::{Arc, Mutex};

use crate::io::maps::{AnonymousMap, ReadOnlyMap};

/// Buffers of at least this many bytes are mapped, not allocated (glibc's initial mapping
/// threshold).
pub(crate) const MAPPED_BUFFER_BYTES: usize = 128 * 1024;

/// Maps kept in a pool, at most.
pub(crate) const POOL_BUFFERS: usize = 2;
/// Largest map a pool keeps (a bulk load's commits are a few MiB; a copy of a whole
/// segment is not worth keeping).
pub(crate) const POOL_BUFFER_BYTES_MAX: usize = 16 << 20;

/// Anonymous maps given back by dropped commit buffers, for the next commits (module doc).
/// Owned by the writer; a buffer holds its pool (an `Arc`) until its last drop.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<AnonymousMap>>,
}

impl BufferPool {
    /// An empty buffer with room for `bytes`: from a pooled map that is large enough, else
    /// as [`AlignedVec::with_capacity`] (a new map gets a power-of-two size, so commits of
    /// similar sizes fit each other's maps; only touched pages take memory).
    pub(crate) fn buffer(self: &Arc<Self>, bytes: usize) -> AlignedVec {
        if !(MAPPED_BUFFER_BYTES..=POOL_BUFFER_BYTES_MAX).contains(&bytes) {
            return AlignedVec::with_capacity(bytes);
        }
        let pooled = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let fit =
                free.iter().enumerate().filter(|(_, m)| m.words().len() * 8 >= bytes).min_by_key(|(_, m)| m.words().len()).map(|(i, _)| i);
            fit.map(|i| free.swap_remove(i))
        };
        let (map, dirty) = match pooled {
            Some(map) => (map, true),
            None => match AnonymousMap::new(bytes.next_power_of_two()) {
                Ok(map) => (map, false),
                Err(_) => return AlignedVec::with_capacity(bytes),
            },
        };
        let storage = Storage::Mapped(MappedWords { map: Some(map), dirty, home: Some(self.clone()) });
        AlignedVec { storage, len: 0 }
    }

    /// Keeps `map` for a later buffer, if there is room; else it is unmapped.
    fn give_back(&self, map: AnonymousMap) {
        if map.words().len() * 8 > POOL_BUFFER_BYTES_MAX {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_BUFFERS {
            free.push(map);
        }
    }

    /// Unmaps every pooled map (the writer has been idle: give the memory back).
    pub(crate) fn clear(&self) {
        let drained: Vec<AnonymousMap> = std::mem::take(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()));
        drop(drained); // unmapped outside the lock
    }

    /// Maps pooled now (tests).
    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A buffer's own map, or one lent by a pool, which gets it back on drop.
struct MappedWords {
    /// `Some` until dropped.
    map: Option<AnonymousMap>,
    /// The map held other bytes before (a pool's): words past the buffer's length are not
    /// zero, and are zeroed as the buffer grows over them.
    dirty: bool,
    home: Option<Arc<BufferPool>>,
}

impl MappedWords {
    fn map(&self) -> &AnonymousMap {
        self.map.as_ref().expect("a buffer's map is there until it is dropped")
    }

    fn map_mut(&mut self) -> &mut AnonymousMap {
        self.map.as_mut().expect("a buffer's map is there until it is dropped")
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        if let (Some(map), Some(home)) = (self.map.take(), &self.home) {
            home.give_back(map);
        }
    }
}

/// Where a buffer's 8-byte words live.
enum Storage {
    Heap(Vec<u64>),
    /// Words `[0, capacity)`; the ones past the buffer's length are zero unless `dirty`.
    Mapped(MappedWords),
}

impl Storage {
    fn with_capacity(bytes: usize) -> Storage {
        if bytes >= MAPPED_BUFFER_BYTES {
            // A failed map (the address space or the map count exhausted) falls back to
            // the allocator, which reports running out of memory its own way.
            if let Ok(map) = AnonymousMap::new(bytes.div_ceil(8) * 8) {
                return Storage::Mapped(MappedWords { map: Some(map), dirty: false, home: None });
            }
        }
        Storage::Heap(Vec::with_capacity(bytes.div_ceil(8)))
    }

    fn words(&self) -> &[u64] {
        match self {
            Storage::Heap(words) => words,
            Storage::Mapped(mapped) => mapped.map().words(),
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        match self {
            Storage::Heap(words) => words,
            Storage::Mapped(mapped) => mapped.map_mut().words_mut(),
        }
    }
}

/// An immutable byte buffer whose start is 8-byte aligned.
pub(crate) struct AlignedBytes {
    storage: Frozen,
    len: usize,
}

/// Where an immutable buffer's bytes live.
enum Frozen {
    Words(Storage),
    /// A read-only map of a whole file (page-aligned): the active segment as recovery keeps
    /// it (`open::load_active`, `ActiveSegment::resume`).
    File(ReadOnlyMap),
}

impl AlignedBytes {
    /// The bytes of a file as mapped (`len` is the map's length).
    pub(crate) fn from_map(map: ReadOnlyMap) -> AlignedBytes {
        let len = map.bytes().len();
        AlignedBytes { storage: Frozen::File(map), len }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.storage {
            Frozen::Words(words) => &bytemuck::cast_slice::<u64, u8>(words.words())[..self.len],
            Frozen::File(map) => map.bytes(),
        }
    }

    /// Whether the bytes are a file's map (`from_map`).
    pub(crate) fn is_file_map(&self) -> bool {
        matches!(self.storage, Frozen::File(_))
    }

    /// Whether the buffer is an anonymous map of its own (tests of the rule above).
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        matches!(self.storage, Frozen::Words(Storage::Mapped(_)))
    }
}

/// A growable byte buffer with 8-byte aligned storage.
pub(crate) struct AlignedVec {
    storage: Storage,
    len: usize,
}

impl Default for AlignedVec {
    fn default() -> Self {
        AlignedVec { storage: Storage::Heap(Vec::new()), len: 0 }
    }
}

impl AlignedVec {
    /// An empty buffer with room for `bytes`: mapped from [`MAPPED_BUFFER_BYTES`] on.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        AlignedVec { storage: Storage::with_capacity(bytes), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Grows by `count` zero bytes and returns them for writing.
    pub(crate) fn extend_zeroed(&mut self, count: usize) -> &mut [u8] {
        let start = self.len;
        let end = start.checked_add(count).expect("aligned buffer length overflows usize");
        match &mut self.storage {
            Storage::Heap(words) => words.resize(end.div_ceil(8), 0),
            Storage::Mapped(mapped) if end <= mapped.map().words().len() * 8 => {
                if mapped.dirty {
                    bytemuck::cast_slice_mut::<u64, u8>(mapped.map_mut().words_mut())[start..end].fill(0);
                } // else still zero
            }
            Storage::Mapped(mapped) => {
                let mut grown = Storage::with_capacity(end.max(mapped.map().words().len() * 16));
                if let Storage::Heap(words) = &mut grown {
                    words.resize(end.div_ceil(8), 0);
                }
                let old = start.div_ceil(8);
                grown.words_mut()[..old].copy_from_slice(&mapped.map().words()[..old]);
                self.storage = grown;
            }
        }
        self.len = end;
        &mut bytemuck::cast_slice_mut::<u64, u8>(self.storage.words_mut())[start..end]
    }

    /// Grows by `count` bytes whose values are unspecified (zeros, or what a pooled map held
    /// before) and returns them: for a caller that writes every one of them, and so skips
    /// zeroing a reused map first (`record::append`).
    pub(crate) fn extend_for_overwrite(&mut self, count: usize) -> &mut [u8] {
        let start = self.len;
        let end = start.checked_add(count).expect("aligned buffer length overflows usize");
        let fits_in_map = matches!(&self.storage, Storage::Mapped(mapped) if end <= mapped.map().words().len() * 8);
        if !fits_in_map {
            return self.extend_zeroed(count);
        }
        self.len = end;
        &mut bytemuck::cast_slice_mut::<u64, u8>(self.storage.words_mut())[start..end]
    }

    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        self.extend_zeroed(data.len()).copy_from_slice(data);
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(self.storage.words())[..self.len]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(self.storage.words_mut())[..self.len]
    }

    pub(crate) fn freeze(self) -> AlignedBytes {
        AlignedBytes { storage: Frozen::Words(self.storage), len: self.len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Filled in steps of odd sizes, in both storages and across a mapped buffer's growth:
    /// the bytes are those written, the rest of each step zero, the start 8-byte aligned.
    #[test]
    fn heap_and_mapped_buffers_hold_what_was_written() {
        for capacity in [0, 100, MAPPED_BUFFER_BYTES - 1, MAPPED_BUFFER_BYTES, 3 * MAPPED_BUFFER_BYTES + 5] {
            let mut buffer = AlignedVec::with_capacity(capacity);
            let mut model: Vec<u8> = Vec::new();
            let mut step = 1usize;
            while model.len() < 2 * capacity + 1000 {
                let fill = (model.len() % 251) as u8;
                let fresh = buffer.extend_zeroed(step);
                assert!(fresh.iter().all(|&b| b == 0), "capacity {capacity}: fresh bytes must be zero");
                fresh[..step / 2].fill(fill);
                model.extend(std::iter::repeat_n(fill, step / 2).chain(std::iter::repeat_n(0, step - step / 2)));
                buffer.extend_from_slice(&[fill ^ 0xff; 3]);
                model.extend_from_slice(&[fill ^ 0xff; 3]);
                step = step * 3 + 7;
            }
            assert_eq!(buffer.len(), model.len());
            assert_eq!(buffer.bytes(), &model[..]);
            buffer.bytes_mut()[0] ^= 1;
            model[0] ^= 1;
            let frozen = buffer.freeze();
            assert_eq!(frozen.bytes(), &model[..]);
            assert_eq!(frozen.bytes().as_ptr() as usize % 8, 0);
        }
    }

    #[test]
    fn large_buffers_are_mapped_small_ones_are_not() {
        assert!(!AlignedVec::with_capacity(MAPPED_BUFFER_BYTES - 1).freeze().is_mapped());
        assert!(AlignedVec::with_capacity(MAPPED_BUFFER_BYTES).freeze().is_mapped());
        let mut grown = AlignedVec::with_capacity(10);
        grown.extend_zeroed(4 * MAPPED_BUFFER_BYTES);
        assert!(!grown.freeze().is_mapped(), "a heap buffer that grows stays on the heap");
    }

    /// A pooled map comes back with the old commit's bytes in it: the buffer made from it
    /// must read exactly as a fresh one (zeros where nothing was written).
    #[test]
    fn a_reused_map_reads_as_a_fresh_one() {
        let pool = Arc::new(BufferPool::default());
        let size = 3 * MAPPED_BUFFER_BYTES + 40;
        let mut first = pool.buffer(size);
        first.extend_zeroed(size).fill(0xA5);
        drop(first.freeze());
        assert_eq!(pool.pooled(), 1, "the last drop gave the map back");
        let mut second = pool.buffer(size - 1000);
        assert_eq!(pool.pooled(), 0, "and the next buffer took it");
        let mut model = Vec::new();
        for step in [7usize, 1, 4096, 13, MAPPED_BUFFER_BYTES, 5] {
            let fresh = second.extend_zeroed(step);
            assert!(fresh.iter().all(|&b| b == 0), "bytes a reused map held before read as zero");
            fresh[0] = step as u8;
            model.push(step as u8);
            model.extend(std::iter::repeat_n(0, step - 1));
            second.extend_from_slice(&[1, 2, 3]);
            model.extend_from_slice(&[1, 2, 3]);
        }
        assert_eq!(second.freeze().bytes(), &model[..]);
    }

    /// A map goes back only when the buffer's last holder drops it (a reader may hold a
    /// commit's bytes after the hot mirror let go); the pool keeps at most `POOL_BUFFERS`,
    /// none too large or too small, and `clear` empties it.
    #[test]
    fn the_pool_takes_maps_back_on_the_last_drop_and_keeps_few() {
        let pool = Arc::new(BufferPool::default());
        let shared = Arc::new(pool.buffer(MAPPED_BUFFER_BYTES).freeze());
        let reader = shared.clone();
        drop(shared);
        assert_eq!(pool.pooled(), 0, "a reader still holds the bytes");
        drop(reader);
        assert_eq!(pool.pooled(), 1);
        let buffers: Vec<AlignedVec> = (0..POOL_BUFFERS + 2).map(|_| pool.buffer(2 * MAPPED_BUFFER_BYTES)).collect();
        drop(buffers);
        assert_eq!(pool.pooled(), POOL_BUFFERS);
        drop(pool.buffer(POOL_BUFFER_BYTES_MAX + 1).freeze());
        drop(pool.buffer(MAPPED_BUFFER_BYTES - 1).freeze());
        assert_eq!(pool.pooled(), POOL_BUFFERS, "a whole segment's copy or a heap buffer is not pooled");
        pool.clear();
        assert_eq!(pool.pooled(), 0);
    }
}
