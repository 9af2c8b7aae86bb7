//! `PointCache`: where each key's newest index version lives, found with one hash probe —
//! what a point get reads before it seeks the skiplist (`read::get_latest`).
//!
//! The skiplist seek is a chain of dependent cache misses, one per level (~60% of a warm
//! get, BENCHMARKS.md). This cache is a set-associative table of `(tag, segment id,
//! offset)`: four ways per 64-byte set, a seqlock per set, no allocation per key. It is
//! *lossy*: a key may be missing (evicted, or never written since this table was built), and
//! a reader then seeks the skiplist as before. What it holds is never trusted on its own: the
//! reader reads the record at that location and takes it only if its key is the key asked
//! for (`read::get_cached`).
//!
//! **Invariant (what makes a hit an answer):** every version inserted in the index is written
//! here by the same call (`Index::insert`), inserts are serialized (the writer slot, or
//! open), and a key's entry is overwritten in place, never duplicated within its set. So an
//! entry whose record has key `k` was written by the *last* insert of `k`: it is `k`'s newest
//! version. Entries are only ever cleared (retirement), never set, by anyone but the inserter;
//! a cleared entry is a miss. A rebuild (growth) is done by the inserter too.
//!
//! **Concurrency:** readers never block: a set being written (odd stamp) or changed while read
//! is a miss. Writers take the set's stamp by compare-and-swap, so the inserter and a
//! retirement clearing entries never interleave within a set.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Ways per set: one set is one cache line.
const WAYS: usize = 4;
/// Sets of the smallest table (16 KiB).
const SETS_MIN: usize = 256;
/// Sets of the largest table (64 MiB, for 2M keys at full size): past it, keys beyond what
/// it holds miss and are sought in the skiplist.
const SETS_MAX: usize = 1 << 20;

/// One set: a seqlock stamp (odd while written; bits above the lowest count writes, and
/// pick the way a new key evicts, round robin), four 32-bit tags (0 = empty) and four
/// locations (`segment_id << 32 | offset`).
#[repr(C, align(64))]
struct Set {
    stamp: AtomicU64,
    tags: [AtomicU32; WAYS],
    locations: [AtomicU64; WAYS],
}

const _: () = assert!(std::mem::size_of::<Set>() == 64, "a set is one cache line");

/// Where a version lives: a log segment and the record's offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment_id: u32,
    pub(crate) offset: u32,
}

impl Location {
    fn pack(self) -> u64 {
        u64::from(self.segment_id) << 32 | u64::from(self.offset)
    }
    fn unpack(word: u64) -> Location {
        Location { segment_id: (word >> 32) as u32, offset: word as u32 }
    }
}

/// A key's 64-bit hash: word at a time, a 128-bit multiply folded per word (the set index
/// from the low bits, the tag from the high ones). Not keyed: chosen keys can only make
/// lookups miss, which costs a skiplist seek, never a wrong answer.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let fold = |h: u64, word: u64| {
        let m = u128::from(h ^ word) * u128::from(K);
        (m as u64) ^ ((m >> 64) as u64)
    };
    let mut h = K ^ key.len() as u64;
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        h = fold(h, u64::from_le_bytes(word.try_into().expect("chunks of 8")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = fold(h, u64::from_le_bytes(last));
    }
    fold(h, K)
}

/// The tag of a hash: its high 32 bits, never 0 (0 marks an empty way).
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32).max(1)
}

pub(crate) struct PointCache {
    sets: Box<[Set]>,
}

impl PointCache {
    /// A table for about `keys` keys: sets for twice as many ways (a power of two, at least
    /// `SETS_MIN`), so that a set of four overflows rarely.
    pub(crate) fn for_keys(keys: usize) -> PointCache {
        let sets = (keys.saturating_mul(2).div_ceil(WAYS)).next_power_of_two().clamp(SETS_MIN, SETS_MAX);
        let sets = (0..sets).map(|_| Set { stamp: AtomicU64::new(0), tags: Default::default(), locations: Default::default() }).collect();
        PointCache { sets }
    }

    /// Should an index of `entries` versions replace this table by a larger one? When it
    /// holds more than the table is sized for, unless the table is as large as it gets.
    pub(crate) fn wants_growth(&self, entries: usize) -> bool {
        entries > self.sets.len() * WAYS / 2 && self.sets.len() < SETS_MAX
    }

    fn set_of(&self, hash: u64) -> &Set {
        &self.sets[hash as usize & (self.sets.len() - 1)]
    }

    /// Where the newest version of the key with `hash` may live; `None` is a miss (nothing
    /// known, or the set was being written). The caller checks the record's key.
    pub(crate) fn get(&self, hash: u64) -> Option<Location> {
        let set = self.set_of(hash);
        let tag = tag_of(hash);
        let before = set.stamp.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let way = set.tags.iter().position(|t| t.load(Ordering::Relaxed) == tag)?;
        let location = set.locations[way].load(Ordering::Relaxed);
        // Seqlock read: the loads above happen before the stamp is read again; a writer that
        // changed any of them has moved the stamp.
        fence(Ordering::Acquire);
        (set.stamp.load(Ordering::Relaxed) == before).then(|| Location::unpack(location))
    }

    /// Records `location` as the newest version of the key with `hash`: over that key's way
    /// if its tag is there, else in an empty way, else over the way written longest ago.
    pub(crate) fn put(&self, hash: u64, location: Location) {
        let tag = tag_of(hash);
        self.write_set(hash, |set, stamp| {
            let way = (0..WAYS)
                .find(|&w| set.tags[w].load(Ordering::Relaxed) == tag)
                .or_else(|| (0..WAYS).find(|&w| set.tags[w].load(Ordering::Relaxed) == 0))
                .unwrap_or((stamp >> 1) as usize % WAYS);
            set.tags[way].store(tag, Ordering::Relaxed);
            set.locations[way].store(location.pack(), Ordering::Relaxed);
        });
    }

    /// Empties the way of the key with `hash` if it still holds `location` (a version that
    /// retirement removed from the index); a newer version written since stays.
    pub(crate) fn clear(&self, hash: u64, location: Location) {
        let tag = tag_of(hash);
        self.write_set(hash, |set, _| {
            let held = (0..WAYS).find(|&w| set.tags[w].load(Ordering::Relaxed) == tag);
            if let Some(way) = held.filter(|&w| set.locations[w].load(Ordering::Relaxed) == location.pack()) {
                set.tags[way].store(0, Ordering::Relaxed);
            }
        });
    }

    /// Runs `write` on the set of `hash` with its stamp held odd (readers of the set miss
    /// meanwhile). `write` gets the stamp it started from.
    fn write_set(&self, hash: u64, write: impl FnOnce(&Set, u64)) {
        let set = self.set_of(hash);
        let mut stamp = set.stamp.load(Ordering::Relaxed);
        loop {
            if stamp & 1 == 0 {
                match set.stamp.compare_exchange_weak(stamp, stamp + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => stamp = now,
                }
            } else {
                std::hint::spin_loop();
                stamp = set.stamp.load(Ordering::Relaxed);
            }
        }
        // The odd stamp is ordered before the writes below (a reader that sees one of them
        // sees the stamp moved).
        fence(Ordering::Release);
        write(set, stamp);
        set.stamp.store(stamp + 2, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment_id: u32, offset: u32) -> Location {
        Location { segment_id, offset }
    }

    #[test]
    fn a_key_keeps_one_entry_which_its_last_put_wrote() {
        let cache = PointCache::for_keys(0);
        let h = key_hash(b"k");
        assert_eq!(cache.get(h), None);
        cache.put(h, at(1, 64));
        cache.put(h, at(2, 128));
        assert_eq!(cache.get(h), Some(at(2, 128)));
        let set = cache.set_of(h);
        let tagged = set.tags.iter().filter(|t| t.load(Ordering::Relaxed) == tag_of(h)).count();
        assert_eq!(tagged, 1, "overwritten in place, not a second way");
    }

    #[test]
    fn clear_empties_only_the_location_it_names() {
        let cache = PointCache::for_keys(0);
        let h = key_hash(b"k");
        cache.put(h, at(1, 64));
        cache.clear(h, at(1, 72));
        assert_eq!(cache.get(h), Some(at(1, 64)), "another location: a newer version stays");
        cache.clear(h, at(1, 64));
        assert_eq!(cache.get(h), None);
    }

    #[test]
    fn a_full_set_evicts_the_way_written_longest_ago() {
        let cache = PointCache::for_keys(0);
        // Hashes of one set (same low bits), different tags.
        let hashes: Vec<u64> = (1..=5u64).map(|i| i << 32).collect();
        for (i, &h) in hashes.iter().enumerate() {
            cache.put(h, at(1, i as u32));
        }
        assert_eq!(cache.get(hashes[0]), None, "the first written went");
        for (i, &h) in hashes.iter().enumerate().skip(1) {
            assert_eq!(cache.get(h), Some(at(1, i as u32)));
        }
    }

    #[test]
    fn sized_for_twice_the_ways_within_bounds() {
        assert_eq!(PointCache::for_keys(0).sets.len(), SETS_MIN);
        let cache = PointCache::for_keys(100_000);
        assert_eq!(cache.sets.len(), 65_536, "100K keys: 200K ways, 50K sets, rounded up");
        assert!(!cache.wants_growth(100_000));
        assert!(cache.wants_growth(131_073), "past half its ways");
        let largest = PointCache::for_keys(usize::MAX);
        assert_eq!(largest.sets.len(), SETS_MAX);
        assert!(!largest.wants_growth(usize::MAX), "the largest table does not grow");
    }

    #[test]
    fn hashes_spread_keys_that_differ_in_one_byte() {
        let mut sets = std::collections::HashSet::new();
        for i in 0..1024u32 {
            sets.insert(key_hash(format!("doc/{i:08}").as_bytes()) as usize & 1023);
        }
        assert!(sets.len() > 600, "1024 keys fell in {} of 1024 sets", sets.len());
        assert_ne!(key_hash(b""), key_hash(b"\0"), "length is hashed");
    }
}
