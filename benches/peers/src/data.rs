//! The records, made from their index alone (splitmix64), so that every process — the
//! parent's baselines and each engine's child — writes and checks exactly the same bytes
//! without holding a copy.

/// splitmix64: one well-mixed u64 per input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn key_of(i: usize) -> Vec<u8> {
    format!("doc/{i:08}").into_bytes()
}

/// A `dim`-value embedding in [-1, 1).
pub fn embedding_of(i: usize, dim: usize) -> Vec<f32> {
    (0..dim).map(|j| (mix((i as u64) << 16 ^ j as u64) >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect()
}

/// `count` indices in `0..n`, from `seed`.
pub fn random_indices(count: usize, n: usize, seed: u64) -> Vec<usize> {
    (0..count).map(|c| (mix(seed ^ (c as u64) << 20) % n as u64) as usize).collect()
}

pub struct Data {
    records: usize,
    dim: usize,
    content_max: usize,
}

/// One record's bytes, reused from record to record.
#[derive(Default)]
pub struct Scratch {
    pub key: Vec<u8>,
    pub content: Vec<u8>,
    pub embedding: Vec<f32>,
}

impl Scratch {
    /// The value the key-value engines store: content, then the embedding's bytes.
    pub fn value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(self.content.len() + self.embedding.len() * 4);
        value.extend_from_slice(&self.content);
        value.extend_from_slice(embedding_bytes(&self.embedding));
        value
    }
}

/// An embedding's bytes, little-endian, as one slice: every engine copies a record's
/// embedding with one `memcpy`, not a push per float.
pub fn embedding_bytes(embedding: &[f32]) -> &[u8] {
    const _: () = assert!(cfg!(target_endian = "little"), "stored embeddings are little-endian");
    bytemuck::cast_slice(embedding)
}

impl Data {
    pub fn new(records: usize, dim: usize, content_max: usize) -> Data {
        Data { records, dim, content_max: content_max.max(64) }
    }

    /// Content length of record `i`: 64 B .. `content_max`, log-uniform.
    fn content_len(&self, i: usize) -> usize {
        let unit = (mix(i as u64 ^ 0xC0FFEE) >> 11) as f64 / (1u64 << 53) as f64;
        let (lo, hi) = (64f64.ln(), (self.content_max as f64).ln());
        ((lo + unit * (hi - lo)).exp() as usize).clamp(64, self.content_max)
    }

    pub fn record(&self, i: usize, out: &mut Scratch) {
        out.key = key_of(i);
        let len = self.content_len(i);
        out.content.clear();
        let mut word = 0u64;
        for b in 0..len {
            if b % 8 == 0 {
                word = mix((i as u64) << 32 ^ b as u64);
            }
            out.content.push((word >> ((b % 8) * 8)) as u8);
        }
        out.embedding = embedding_of(i, self.dim);
    }

    /// Key + content + embedding bytes of every record.
    pub fn logical_bytes(&self) -> u64 {
        (0..self.records).map(|i| (key_of(i).len() + self.content_len(i) + self.dim * 4) as u64).sum()
    }
}
