//! Helpers shared by `benches/engine.rs` and `examples/bench_core.rs`: how a benchmark
//! "uses" a record, so both measure the same work.
#![allow(dead_code)] // each includer uses its own subset

/// The workload's key for record `index`: `doc/{index:08}` (12 bytes).
pub fn key_of(index: usize) -> Vec<u8> {
    format!("doc/{index:08}").into_bytes()
}

/// Reads every byte: the sum of the slice as little-endian u64 words (vectorizes).
pub fn sum_bytes(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut sum = 0u64;
    for chunk in &mut chunks {
        sum = sum.wrapping_add(u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
    }
    chunks.remainder().iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)))
}

/// Reads every float: the sum of their bits as u32 lanes (vectorizes as well as `sum_bytes`).
pub fn sum_floats(floats: &[f32]) -> u64 {
    u64::from(floats.iter().fold(0u32, |s, f| s.wrapping_add(f.to_bits())))
}

/// A get's "use the record": copy content and embedding out, as a caller would.
pub fn copy_out(content: &[u8], embedding: &[f32], out: &mut (Vec<u8>, Vec<f32>)) {
    out.0.clear();
    out.0.extend_from_slice(content);
    out.1.clear();
    out.1.extend_from_slice(embedding);
    std::hint::black_box(&*out);
}
