//! The per-segment key filter: a blocked Bloom filter. Each key sets `PROBES` bits inside
//! one 64-byte block, so a lookup touches one cache line. Byte-exact definition (the hash
//! included) in `format-spec/cold-segment.md`, "Key filter".

/// Filter bits per key.
pub(crate) const BITS_PER_KEY: usize = 10;
/// Bits set (and tested) per key.
pub(crate) const PROBES: u32 = 7;
/// Bytes per filter block: one cache line.
pub(crate) const BLOCK_BYTES: usize = 64;
const BLOCK_BITS: u32 = (BLOCK_BYTES * 8) as u32;

/// The 64-bit key hash of the filter: FNV-1a over the key bytes, then MurmurHash3's
/// 64-bit finalizer (FNV alone mixes the last bytes poorly). Part of the format.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Bytes of the filter of a segment with `rows` keys: at least one block.
pub(crate) fn filter_len(rows: usize) -> usize {
    let blocks = (rows * BITS_PER_KEY).div_ceil(BLOCK_BYTES * 8).max(1);
    blocks * BLOCK_BYTES
}

/// The block and the bits (within the block) of `hash`.
fn probes(hash: u64, blocks: usize) -> (usize, impl Iterator<Item = u32>) {
    let block = ((hash >> 32) % blocks as u64) as usize;
    let mut bit = hash as u32;
    let step = ((hash >> 16) as u32) | 1;
    let bits = (0..PROBES).map(move |_| {
        let at = bit % BLOCK_BITS;
        bit = bit.wrapping_add(step);
        at
    });
    (block, bits)
}

/// Sets the bits of `hash` in `filter` (whose length is a whole number of blocks).
pub(crate) fn insert(filter: &mut [u8], hash: u64) {
    debug_assert!(!filter.is_empty() && filter.len().is_multiple_of(BLOCK_BYTES));
    let (block, bits) = probes(hash, filter.len() / BLOCK_BYTES);
    let block = &mut filter[block * BLOCK_BYTES..(block + 1) * BLOCK_BYTES];
    for bit in bits {
        block[(bit / 8) as usize] |= 1 << (bit % 8);
    }
}

/// `false`: the key is certainly not in the segment. `true`: it may be.
pub(crate) fn may_contain(filter: &[u8], hash: u64) -> bool {
    if filter.is_empty() || !filter.len().is_multiple_of(BLOCK_BYTES) {
        return true; // not a filter this build wrote: never rule a key out
    }
    let (block, mut bits) = probes(hash, filter.len() / BLOCK_BYTES);
    let block = &filter[block * BLOCK_BYTES..(block + 1) * BLOCK_BYTES];
    bits.all(|bit| block[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_mostly_not() {
        let rows = 10_000;
        let mut filter = vec![0u8; filter_len(rows)];
        for i in 0..rows {
            insert(&mut filter, key_hash(format!("key-{i}").as_bytes()));
        }
        assert!((0..rows).all(|i| may_contain(&filter, key_hash(format!("key-{i}").as_bytes()))), "no false negatives");
        let false_positives = (0..rows).filter(|i| may_contain(&filter, key_hash(format!("other-{i}").as_bytes()))).count();
        assert!(false_positives < rows / 25, "false-positive rate {false_positives}/{rows} is above 4%");
    }

    #[test]
    fn the_hash_is_the_specified_one() {
        // The filter is on disk: these values (computed independently from the definition in
        // format-spec/cold-segment.md) must never change.
        assert_eq!(key_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(key_hash(b"strata"), 0x5a4f_965e_8a9b_0ac3);
    }
}
