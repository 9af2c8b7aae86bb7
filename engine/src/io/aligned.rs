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

use crate::io::maps::{AnonymousMap, ReadOnlyMap};

/// Buffers of at least this many bytes are mapped, not allocated (glibc's initial mapping
/// threshold).
pub(crate) const MAPPED_BUFFER_BYTES: usize = 128 * 1024;

/// Where a buffer's 8-byte words live.
enum Storage {
    Heap(Vec<u64>),
    /// Words `[0, capacity)`; the ones past the buffer's length are still zero.
    Mapped(AnonymousMap),
}

impl Storage {
    fn with_capacity(bytes: usize) -> Storage {
        if bytes >= MAPPED_BUFFER_BYTES {
            // A failed map (the address space or the map count exhausted) falls back to
            // the allocator, which reports running out of memory its own way.
            if let Ok(map) = AnonymousMap::new(bytes.div_ceil(8) * 8) {
                return Storage::Mapped(map);
            }
        }
        Storage::Heap(Vec::with_capacity(bytes.div_ceil(8)))
    }

    fn words(&self) -> &[u64] {
        match self {
            Storage::Heap(words) => words,
            Storage::Mapped(map) => map.words(),
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        match self {
            Storage::Heap(words) => words,
            Storage::Mapped(map) => map.words_mut(),
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
            Storage::Mapped(map) if end <= map.words().len() * 8 => {} // still zero
            Storage::Mapped(map) => {
                let mut grown = Storage::with_capacity(end.max(map.words().len() * 16));
                if let Storage::Heap(words) = &mut grown {
                    words.resize(end.div_ceil(8), 0);
                }
                let old = start.div_ceil(8);
                grown.words_mut()[..old].copy_from_slice(&map.words()[..old]);
                self.storage = grown;
            }
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
}
