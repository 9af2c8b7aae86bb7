//! `PointCache`: where each key's newest version lives, found with one hash probe —
//! what a point get reads before it seeks the skiplist (`read::get_latest`).
//!
//! The skiplist seek is a chain of dependent cache misses, one per level (~60% of a warm
//! get, BENCHMARKS.md). This cache is a set-associative table of `(tag, location)`: four
//! ways per 64-byte set, a seqlock per set, no allocation per key. A location is a log
//! record or a cold row, so a key that lives cold skips the cold segment's key search too.
//! It is *lossy*: a key may be missing (evicted, or never written since this table was
//! built), and a reader then seeks the skiplist as before. What it holds is never trusted on
//! its own: the reader reads the record at that location and takes it only if its key is
//! the key asked for (`read::get_cached`).
//!
//! **Invariant (what makes a hit an answer):** an entry whose record has key `k` names `k`'s
//! newest version. Two kinds of writer keep it:
//! - *the inserter*: every version inserted in the index is written here by the same call
//!   (`Index::insert`), inserts are serialized (the writer slot), and a key's entry is
//!   overwritten in place, never duplicated within its set. A rebuild (growth) is done by
//!   the inserter too. Open alone writes nothing here (`Index::insert_at_open`): it inserts
//!   each key's newest version once, into an empty table, before any reader runs.
//! - *a reader that missed* (`fill`): it took a ticket (the set's stamp) before it looked the
//!   key up in the index, and writes the newest version that lookup found (a log record, or
//!   the cold row when the index holds no version at all) only if the stamp has not moved
//!   since. An insert writes the index before the cache, so an insert whose cache write came
//!   before the ticket was seen by the lookup, and one after it moved the stamp: the fill
//!   then gives up.
//!
//! Retirement only clears entries. A cleared entry is a miss; so is an entry whose segment is
//! gone or retired, or whose record has another key (the reader checks).
//!
//! **Concurrency:** readers never block: a set being written (odd stamp) or changed while read
//! is a miss. The inserter and retirement take the set's stamp by compare-and-swap and wait
//! for each other; a fill takes it only from its ticket's value, once, and never waits.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Ways per set: one set is one cache line.
const WAYS: usize = 4;
/// Sets of the smallest table (16 KiB).
const SETS_MIN: usize = 256;
/// Sets of the largest table (64 MiB, for 2M keys at full size): past it, keys beyond what
/// it holds miss and are sought in the skiplist.
const SETS_MAX: usize = 1 << 20;

/// Cold rows a table is sized for at most (open, `for_keys`): 8 MiB of sets. A cold tier of
/// more keys shares them (gets of the rest miss and search their segment), so the cache's
/// memory stops growing with the cold tier there.
pub(crate) const COLD_ROWS_SIZED_MAX: usize = 1 << 18;

/// One set: a seqlock stamp (odd while written; bits above the lowest count writes, and
/// pick the way a new key evicts, round robin), four 32-bit tags (0 = empty) and four
/// packed locations (`Location::pack`).
#[repr(C, align(64))]
struct Set {
    stamp: AtomicU64,
    tags: [AtomicU32; WAYS],
    locations: [AtomicU64; WAYS],
}

const _: () = assert!(std::mem::size_of::<Set>() == 64, "a set is one cache line");

/// Where a key's newest version lives: a record of a log segment, or a row of the cold set
/// (by the segment's position in the set, which a compaction may change: the reader checks
/// the row's key, as for a log record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    Log { segment_id: u32, offset: u32 },
    Cold { segment: u32, row: u32 },
}

/// The bit that marks a packed cold location. A log segment id or a cold segment position
/// with it set cannot be packed: such a key's way is emptied instead (a miss).
const COLD_BIT: u64 = 1 << 63;

impl Location {
    fn pack(self) -> Option<u64> {
        let (high, low, cold) = match self {
            Location::Log { segment_id, offset } => (segment_id, offset, 0),
            Location::Cold { segment, row } => (segment, row, COLD_BIT),
        };
        let word = u64::from(high) << 32 | u64::from(low);
        (word & COLD_BIT == 0).then_some(word | cold)
    }
    fn unpack(word: u64) -> Location {
        let (high, low) = (((word & !COLD_BIT) >> 32) as u32, word as u32);
        if word & COLD_BIT == 0 {
            Location::Log { segment_id: high, offset: low }
        } else {
            Location::Cold { segment: high, row: low }
        }
    }
}

/// What a reader that missed may write back (`PointCache::fill`): the stamp of the key's set
/// as it read it, before it looked in the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FillTicket {
    stamp: u64,
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
    /// known, or the set was being written). The caller checks the record's key. The ticket
    /// lets a reader that finds the answer elsewhere write it back (`fill`).
    pub(crate) fn get(&self, hash: u64) -> (Option<Location>, FillTicket) {
        let set = self.set_of(hash);
        let tag = tag_of(hash);
        let before = set.stamp.load(Ordering::Acquire);
        let ticket = FillTicket { stamp: before };
        if before & 1 == 1 {
            return (None, ticket);
        }
        let Some(way) = set.tags.iter().position(|t| t.load(Ordering::Relaxed) == tag) else { return (None, ticket) };
        let location = set.locations[way].load(Ordering::Relaxed);
        // Seqlock read: the loads above happen before the stamp is read again; a writer that
        // changed any of them has moved the stamp.
        fence(Ordering::Acquire);
        ((set.stamp.load(Ordering::Relaxed) == before).then(|| Location::unpack(location)), ticket)
    }

    /// Records `location` as the newest version of the key with `hash` (the inserter).
    pub(crate) fn put(&self, hash: u64, location: Location) {
        let set = self.set_of(hash);
        let stamp = lock(set);
        write_way(set, stamp, tag_of(hash), location);
        set.stamp.store(stamp + 2, Ordering::Release);
    }

    /// Records `location` for the key with `hash` on behalf of a reader that missed, only if
    /// no one wrote the key's set since the reader's `get` (`ticket`), which came before its
    /// index lookup: so no insert of this key came between that lookup and this write, and
    /// `location`, the newest version the lookup found, is still the key's newest. Gives up
    /// rather than wait.
    pub(crate) fn fill(&self, hash: u64, ticket: FillTicket, location: Location) {
        let set = self.set_of(hash);
        if ticket.stamp & 1 == 1
            || set.stamp.compare_exchange(ticket.stamp, ticket.stamp + 1, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return;
        }
        fence(Ordering::Release);
        write_way(set, ticket.stamp, tag_of(hash), location);
        set.stamp.store(ticket.stamp + 2, Ordering::Release);
    }

    /// Empties the way of the key with `hash` if it still holds `location` (a version that
    /// retirement removed from the index); a newer version written since stays.
    pub(crate) fn clear(&self, hash: u64, location: Location) {
        let set = self.set_of(hash);
        let stamp = lock(set);
        let tag = tag_of(hash);
        let held = (0..WAYS).find(|&w| set.tags[w].load(Ordering::Relaxed) == tag);
        if let Some(way) = held.filter(|&w| Some(set.locations[w].load(Ordering::Relaxed)) == location.pack()) {
            set.tags[way].store(0, Ordering::Relaxed);
        }
        set.stamp.store(stamp + 2, Ordering::Release);
    }
}

/// Takes `set`'s stamp odd (readers of the set miss meanwhile), waiting out another writer;
/// returns the even stamp it started from. The caller stores that + 2 when done.
fn lock(set: &Set) -> u64 {
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
    // The odd stamp is ordered before the writes that follow (a reader that sees one of them
    // sees the stamp moved).
    fence(Ordering::Release);
    stamp
}

/// Writes `location` for `tag` in a locked set: over that tag's way if it is there, else in
/// an empty way, else over the way written longest ago (round robin by `stamp`). A location
/// that cannot be packed empties the tag's way instead, so no older entry outlives it.
fn write_way(set: &Set, stamp: u64, tag: u32, location: Location) {
    let held = (0..WAYS).find(|&w| set.tags[w].load(Ordering::Relaxed) == tag);
    let Some(word) = location.pack() else {
        if let Some(way) = held {
            set.tags[way].store(0, Ordering::Relaxed);
        }
        return;
    };
    let way = held.or_else(|| (0..WAYS).find(|&w| set.tags[w].load(Ordering::Relaxed) == 0)).unwrap_or((stamp >> 1) as usize % WAYS);
    set.tags[way].store(tag, Ordering::Relaxed);
    set.locations[way].store(word, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment_id: u32, offset: u32) -> Location {
        Location::Log { segment_id, offset }
    }

    #[test]
    fn a_key_keeps_one_entry_which_its_last_put_wrote() {
        let cache = PointCache::for_keys(0);
        let h = key_hash(b"k");
        assert_eq!(cache.get(h).0, None);
        cache.put(h, at(1, 64));
        cache.put(h, at(2, 128));
        assert_eq!(cache.get(h).0, Some(at(2, 128)));
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
        assert_eq!(cache.get(h).0, Some(at(1, 64)), "another location: a newer version stays");
        cache.clear(h, at(1, 64));
        assert_eq!(cache.get(h).0, None);
    }

    #[test]
    fn a_full_set_evicts_the_way_written_longest_ago() {
        let cache = PointCache::for_keys(0);
        // Hashes of one set (same low bits), different tags.
        let hashes: Vec<u64> = (1..=5u64).map(|i| i << 32).collect();
        for (i, &h) in hashes.iter().enumerate() {
            cache.put(h, at(1, i as u32));
        }
        assert_eq!(cache.get(hashes[0]).0, None, "the first written went");
        for (i, &h) in hashes.iter().enumerate().skip(1) {
            assert_eq!(cache.get(h).0, Some(at(1, i as u32)));
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

    #[test]
    fn a_fill_writes_only_if_the_set_is_unchanged_since_its_ticket() {
        let cache = PointCache::for_keys(0);
        let h = key_hash(b"k");
        let cold = Location::Cold { segment: 3, row: 9 };
        let (missed, ticket) = cache.get(h);
        assert_eq!(missed, None);
        cache.fill(h, ticket, cold);
        assert_eq!(cache.get(h).0, Some(cold), "nothing wrote the set: the fill lands");

        let (_, stale) = cache.get(h);
        cache.put(h, at(5, 64)); // an insert after the reader's lookup
        cache.fill(h, stale, cold);
        assert_eq!(cache.get(h).0, Some(at(5, 64)), "a fill never overwrites an insert made after its ticket");

        // Any write to the set voids a ticket, another key's included.
        let other = h ^ (1 << 40); // same set, another tag
        let (_, ticket) = cache.get(h);
        cache.put(other, at(6, 8));
        cache.fill(h, ticket, cold);
        assert_eq!(cache.get(h).0, Some(at(5, 64)));

        // A ticket taken while the set was being written never fills.
        cache.fill(h, FillTicket { stamp: 1 }, cold);
        assert_eq!(cache.get(h).0, Some(at(5, 64)));
        let tagged = cache.set_of(h).tags.iter().filter(|t| t.load(Ordering::Relaxed) == tag_of(h)).count();
        assert_eq!(tagged, 1, "a fill overwrites the key's way like a put");
    }

    #[test]
    fn locations_round_trip_and_an_unpackable_one_empties_the_way() {
        for location in [
            at(0, 0),
            at(u32::MAX >> 1, u32::MAX),
            Location::Cold { segment: 0, row: 0 },
            Location::Cold { segment: u32::MAX >> 1, row: 7 },
        ] {
            assert_eq!(location.pack().map(Location::unpack), Some(location));
        }
        assert_eq!(at(1 << 31, 0).pack(), None);
        let cache = PointCache::for_keys(0);
        let h = key_hash(b"k");
        cache.put(h, at(1, 64));
        cache.put(h, at(1 << 31, 8));
        assert_eq!(cache.get(h).0, None, "the older version must not stay as if it were the newest");
    }
}
