//! Heap buffers aligned to 8 bytes, so embeddings inside them can be viewed as `&[f32]`
//! in place, exactly as in a page-aligned map.

/// An immutable byte buffer whose start is 8-byte aligned.
pub(crate) struct AlignedBytes {
    words: Box<[u64]>,
    len: usize,
}

impl AlignedBytes {
    pub(crate) fn from_vec(words: Vec<u64>, len: usize) -> Self {
        assert!(len <= words.len() * 8, "aligned buffer length beyond its storage");
        AlignedBytes { words: words.into_boxed_slice(), len }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// A growable byte buffer with 8-byte aligned storage.
#[derive(Default)]
pub(crate) struct AlignedVec {
    words: Vec<u64>,
    len: usize,
}

impl AlignedVec {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        AlignedVec { words: Vec::with_capacity(bytes.div_ceil(8)), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Grows by `count` zero bytes and returns them for writing.
    pub(crate) fn extend_zeroed(&mut self, count: usize) -> &mut [u8] {
        let start = self.len;
        self.len += count;
        self.words.resize(self.len.div_ceil(8), 0);
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[start..self.len]
    }

    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        self.extend_zeroed(data.len()).copy_from_slice(data);
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }

    pub(crate) fn freeze(self) -> AlignedBytes {
        AlignedBytes::from_vec(self.words, self.len)
    }
}
