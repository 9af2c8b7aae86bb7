//! The in-memory index of the hot and warm tiers, a.k.a. the keydir: a lock-free ordered
//! map from (key, seq) to where that version of the record lives.
//!
//! Every version is its own entry, ordered by key ascending then seq descending, so a
//! reader at snapshot seq `S` finds its version with one seek to `(key, S)`. Entries are
//! never replaced in place (crossbeam's replace unlinks the old node before linking the
//! new one, which a concurrent reader could observe as a missing key); superseded versions
//! are removed by [`Index::prune`] once no pinned snapshot can see them.
//!
//! **Invariant:** for every key, the newest version is never removed by pruning.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::Bound;

use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_skiplist::SkipMap;

use crate::log::record::{RecordKind, RecordView};
use crate::point_cache::{self, Location, PointCache};

/// Whether a version stores data or deletes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionKind {
    Put,
    Delete,
}

/// Where one version of a record lives, and what the index needs to know without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) segment_id: u32,
    /// Byte offset of the record in its segment.
    pub(crate) offset: u32,
    /// key + content + embedding bytes (for stats).
    pub(crate) logical_bytes: u32,
    pub(crate) kind: VersionKind,
    /// Milliseconds since the Unix epoch; 0 = never expires.
    pub(crate) expires_at_ms: u64,
}

impl From<RecordKind> for VersionKind {
    fn from(kind: RecordKind) -> Self {
        debug_assert!(matches!(kind, RecordKind::Put | RecordKind::Delete), "marks are never indexed");
        if kind == RecordKind::Delete {
            VersionKind::Delete
        } else {
            VersionKind::Put
        }
    }
}

impl Version {
    /// The version of the record `view`, found at `offset` in segment `segment_id`.
    pub(crate) fn of_record(segment_id: u32, offset: u32, view: &RecordView) -> Version {
        Version {
            segment_id,
            offset,
            logical_bytes: u32::try_from(view.logical_bytes()).expect("logical size bounded by MAX_RECORD_LOGICAL_BYTES"),
            kind: view.kind.into(),
            expires_at_ms: view.expires_at_ms,
        }
    }

    /// Is this version a live record at wall time `now_ms`?
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.kind == VersionKind::Put && (self.expires_at_ms == 0 || self.expires_at_ms > now_ms)
    }
}

/// Longest key stored inside the index node itself (no separate allocation, no second
/// cache miss per skiplist level while seeking).
const INLINE_KEY_LEN_MAX: usize = 22;

/// A user key as the index stores it: inline when short, on the heap otherwise.
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY_LEN_MAX] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    fn new(key: &[u8]) -> StoredKey {
        if key.len() <= INLINE_KEY_LEN_MAX {
            let mut bytes = [0u8; INLINE_KEY_LEN_MAX];
            bytes[..key.len()].copy_from_slice(key);
            StoredKey::Inline { len: key.len() as u8, bytes }
        } else {
            StoredKey::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredKey::Heap(key) => key,
        }
    }
}

/// The owned key of an index entry.
pub(crate) struct IndexKey {
    user_key: StoredKey,
    seq: u64,
}

const _: () = assert!(INLINE_KEY_LEN_MAX <= u8::MAX as usize);
const _: () = assert!(std::mem::size_of::<IndexKey>() == 32, "an index key is 32 bytes: seq + 24 for the key");

impl IndexKey {
    pub(crate) fn user_key(&self) -> &[u8] {
        self.user_key.as_slice()
    }
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

/// Anything that can be compared as an index key; lets lookups probe with a borrowed
/// `(&[u8], seq)` instead of allocating an `IndexKey`.
pub(crate) trait KeyProbe {
    fn probe_key(&self) -> &[u8];
    fn probe_seq(&self) -> u64;
}

impl KeyProbe for IndexKey {
    fn probe_key(&self) -> &[u8] {
        self.user_key.as_slice()
    }
    fn probe_seq(&self) -> u64 {
        self.seq
    }
}

/// A borrowed probe: `(key, seq)`.
pub(crate) struct Probe<'k>(pub(crate) &'k [u8], pub(crate) u64);

impl KeyProbe for Probe<'_> {
    fn probe_key(&self) -> &[u8] {
        self.0
    }
    fn probe_seq(&self) -> u64 {
        self.1
    }
}

fn compare(a: &dyn KeyProbe, b: &dyn KeyProbe) -> Ordering {
    a.probe_key().cmp(b.probe_key()).then_with(|| b.probe_seq().cmp(&a.probe_seq()))
}

impl PartialEq for dyn KeyProbe + '_ {
    fn eq(&self, other: &Self) -> bool {
        compare(self, other) == Ordering::Equal
    }
}
impl Eq for dyn KeyProbe + '_ {}
impl PartialOrd for dyn KeyProbe + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for dyn KeyProbe + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self, other)
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        compare(self, other) == Ordering::Equal
    }
}
impl Eq for IndexKey {}
impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self, other)
    }
}

impl<'a> Borrow<dyn KeyProbe + 'a> for IndexKey {
    fn borrow(&self) -> &(dyn KeyProbe + 'a) {
        self
    }
}

/// One index entry as seen by a scan: the version chosen for a key at a snapshot, and
/// where its key was copied in the scan's key arena.
#[derive(Clone, Debug)]
pub(crate) struct ScanItem {
    pub(crate) seq: u64,
    pub(crate) version: Version,
    pub(crate) key: std::ops::Range<usize>,
}

/// Output of [`Index::scan`]: the items, and their keys back to back in one buffer (one
/// allocation per chunk instead of one per key).
#[derive(Default)]
pub(crate) struct ScanChunk {
    pub(crate) items: Vec<ScanItem>,
    pub(crate) keys: Vec<u8>,
}

impl ScanChunk {
    fn push(&mut self, key: &[u8], seq: u64, version: Version) {
        let start = self.keys.len();
        self.keys.extend_from_slice(key);
        self.items.push(ScanItem { seq, version, key: start..self.keys.len() });
    }

    #[cfg(test)]
    pub(crate) fn key(&self, item: &ScanItem) -> &[u8] {
        &self.keys[item.key.clone()]
    }
}

/// Which way a scan walks the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    Backward,
}

/// The hot+warm index: the ordered versions, and beside them the point cache of each key's
/// newest version (`point_cache`), which `insert` writes and readers that missed may fill.
pub(crate) struct Index {
    map: SkipMap<IndexKey, Version>,
    /// Replaced (grown) only by `insert`, whose callers are serialized.
    newest: ArcSwap<PointCache>,
}

impl Default for Index {
    fn default() -> Index {
        Index::for_keys(0)
    }
}

/// Turns a bound on user keys into a bound on index entries covering every version.
fn lower_probe(bound: Bound<&[u8]>) -> Bound<Probe<'_>> {
    match bound {
        Bound::Included(k) => Bound::Included(Probe(k, u64::MAX)),
        Bound::Excluded(k) => Bound::Excluded(Probe(k, 0)),
        Bound::Unbounded => Bound::Unbounded,
    }
}
fn upper_probe(bound: Bound<&[u8]>) -> Bound<Probe<'_>> {
    match bound {
        Bound::Included(k) => Bound::Included(Probe(k, 0)),
        Bound::Excluded(k) => Bound::Excluded(Probe(k, u64::MAX)),
        Bound::Unbounded => Bound::Unbounded,
    }
}
fn as_dyn<'p, 'k>(bound: &'p Bound<Probe<'k>>) -> Bound<&'p (dyn KeyProbe + 'k)> {
    match bound {
        Bound::Included(p) => Bound::Included(p as &dyn KeyProbe),
        Bound::Excluded(p) => Bound::Excluded(p as &dyn KeyProbe),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Index {
    /// An empty index whose point cache is sized for about `keys` keys (open knows how many
    /// it will insert, and how many cold rows gets may fill in).
    pub(crate) fn for_keys(keys: usize) -> Index {
        Index { map: SkipMap::new(), newest: ArcSwap::from_pointee(PointCache::for_keys(keys)) }
    }

    /// Inserts a version, the newest of its key; returns whether the key has an older
    /// version (pruning has something to look at).
    ///
    /// Callers are serialized (the writer slot, or open) and insert a key's versions in seq
    /// order: the point cache's invariant (`point_cache`) rests on it.
    pub(crate) fn insert(&self, key: &[u8], seq: u64, version: Version) -> bool {
        let entry = self.map.insert(IndexKey { user_key: StoredKey::new(key), seq }, version);
        let cache = self.newest.load();
        if cache.wants_growth(self.map.len()) {
            self.grow_point_cache();
        } else {
            cache.put(point_cache::key_hash(key), location_of(&version));
        }
        entry.next().is_some_and(|older| older.key().user_key() == key)
    }

    /// `insert` for open, which inserts each key's newest version once, before any reader
    /// can run: the skiplist only. The point cache, new and empty, then holds nothing stale,
    /// and gets fill it as they miss (`PointCache::fill`). Open saves a random write into the
    /// table per key (BENCHMARKS.md, "Core engine").
    pub(crate) fn insert_at_open(&self, key: &[u8], seq: u64, version: Version) {
        self.map.insert(IndexKey { user_key: StoredKey::new(key), seq }, version);
    }

    /// Replaces the point cache by one for twice the index's entries, holding each key's
    /// newest version. O(entries), on the inserter's thread; the table doubles, so each
    /// insert pays for O(1) of it. Entries that a concurrent retirement removes meanwhile
    /// may be copied: they are stale, and a stale entry's segment is gone or retired, which
    /// a reader takes as a miss.
    fn grow_point_cache(&self) {
        let cache = PointCache::for_keys(self.map.len().saturating_mul(2));
        let mut previous: Option<crossbeam_skiplist::map::Entry<'_, IndexKey, Version>> = None;
        for entry in self.map.iter() {
            if previous.as_ref().is_some_and(|p| p.key().user_key() == entry.key().user_key()) {
                continue; // an older version: the first entry of a key is its newest
            }
            cache.put(point_cache::key_hash(entry.key().user_key()), location_of(entry.value()));
            previous = Some(entry);
        }
        self.newest.store(Arc::new(cache));
    }

    /// The point cache of each key's newest version (`point_cache`): a reader looks there
    /// first, checks that the record found has its key, and may `fill` what it found instead.
    pub(crate) fn point_cache(&self) -> arc_swap::Guard<Arc<PointCache>> {
        self.newest.load()
    }

    /// Number of entries (versions), for stats and tests.
    pub(crate) fn entries_count(&self) -> usize {
        self.map.len()
    }

    /// The newest version of `key` with seq <= `at_seq`.
    pub(crate) fn newest_at(&self, key: &[u8], at_seq: u64) -> Option<(u64, Version)> {
        let probe = Probe(key, at_seq);
        let entry = self.map.lower_bound(Bound::Included(&probe as &dyn KeyProbe))?;
        (entry.key().user_key() == key).then(|| (entry.key().seq(), *entry.value()))
    }

    /// Removes the versions of `key` that no reader can see. `pins` are the seqs readers
    /// may read at (every registered snapshot, and last the visible seq read with them),
    /// ascending. A version is kept if it is the newest, if some pin falls in
    /// `[its seq, next newer version's seq)`, or if the next newer version is above the last
    /// pin: it was published after the pins were read, and a reader may have pinned between
    /// (pruners run concurrently with later leaders). Each version removed is handed to
    /// `removed` (no reader reads it again: `DeadRows`). Returns whether a superseded
    /// version was kept (the caller retries those keys later).
    pub(crate) fn prune(&self, key: &[u8], pins: &[u64], mut removed: impl FnMut(&Version)) -> bool {
        debug_assert!(pins.windows(2).all(|w| w[0] <= w[1]), "pins are sorted");
        let lower = Probe(key, u64::MAX);
        let upper = Probe(key, 0);
        let mut newer_seq: Option<u64> = None;
        let mut kept_for_snapshot = false;
        for entry in self.map.range::<dyn KeyProbe, _>((Bound::Included(&lower as &dyn KeyProbe), Bound::Included(&upper as &dyn KeyProbe)))
        {
            let seq = entry.key().seq();
            if let Some(newer) = newer_seq {
                // A pin p with seq <= p < newer reads this version.
                let first_pin_at_or_above = pins.partition_point(|&p| p < seq);
                let newer_than_pins = pins.last().is_none_or(|&last| newer > last);
                let needed = newer_than_pins || pins.get(first_pin_at_or_above).is_some_and(|&p| p < newer);
                if needed {
                    kept_for_snapshot = true;
                } else if entry.remove() {
                    removed(entry.value());
                }
            }
            newer_seq = Some(seq);
        }
        kept_for_snapshot
    }

    /// Collects up to `limit` keys' versions as of `at_seq` between `lower` and `upper`
    /// (bounds on user keys), walking in `direction`. Deleted keys are skipped unless
    /// `with_deletes`. Returns the items and the user key where the walk stopped (the last
    /// key looked at) when it stopped because of `limit`, `None` when the range is done.
    pub(crate) fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        at_seq: u64,
        direction: Direction,
        limit: usize,
        out: &mut ScanChunk,
    ) -> Option<Vec<u8>> {
        debug_assert!(limit > 0);
        let (lo, hi) = (lower_probe(lower), upper_probe(upper));
        let range = self.map.range::<dyn KeyProbe, _>((as_dyn(&lo), as_dyn(&hi)));
        let mut keys_seen = 0usize;
        match direction {
            Direction::Forward => {
                let mut current: Option<crossbeam_skiplist::map::Entry<'_, IndexKey, Version>> = None;
                for entry in range {
                    if current.as_ref().is_some_and(|c| c.key().user_key() == entry.key().user_key()) {
                        continue; // an older version of a key already decided
                    }
                    if entry.key().seq() > at_seq {
                        continue; // too new for this snapshot; an older version may follow
                    }
                    if keys_seen == limit {
                        return current.map(|c| c.key().user_key().to_vec());
                    }
                    keys_seen += 1;
                    out.push(entry.key().user_key(), entry.key().seq(), *entry.value());
                    current = Some(entry);
                }
                None
            }
            Direction::Backward => {
                // Versions of one key arrive oldest first; the last one <= at_seq wins. If it
                // was removed after it was read (compacted into the cold tier, whose newer
                // versions may already be gone too), the key is looked up again forwards,
                // which sees its newest remaining version in one step.
                let decide = |candidate: &crossbeam_skiplist::map::Entry<'_, IndexKey, Version>| {
                    if candidate.is_removed() {
                        self.newest_at(candidate.key().user_key(), at_seq)
                    } else {
                        Some((candidate.key().seq(), *candidate.value()))
                    }
                };
                let mut group: Option<crossbeam_skiplist::map::Entry<'_, IndexKey, Version>> = None;
                let mut candidate: Option<crossbeam_skiplist::map::Entry<'_, IndexKey, Version>> = None;
                for entry in range.rev() {
                    let same = group.as_ref().is_some_and(|g| g.key().user_key() == entry.key().user_key());
                    if !same {
                        if let (Some((seq, version)), Some(g)) = (candidate.take().and_then(|c| decide(&c)), group.as_ref()) {
                            out.push(g.key().user_key(), seq, version);
                            keys_seen += 1;
                        }
                        if keys_seen == limit {
                            return group.map(|g| g.key().user_key().to_vec());
                        }
                        group = Some(entry.clone());
                    }
                    if entry.key().seq() <= at_seq {
                        candidate = Some(entry);
                    }
                }
                if let (Some((seq, version)), Some(g)) = (candidate.and_then(|c| decide(&c)), group.as_ref()) {
                    out.push(g.key().user_key(), seq, version);
                }
                None
            }
        }
    }

    /// Removes every version stored in one of `segment_ids` (segments compacted into the
    /// cold tier, which now holds what a reader can still ask for). The caller guarantees no
    /// reader reads below the newest seq those segments hold.
    ///
    /// In two passes, so that a concurrent scan in either direction never sees a key go
    /// back to an older version: first the compacted versions that a newer compacted
    /// version of the same key supersedes (no reader can read them); then each key's one
    /// remaining compacted version, which the cold row of that key replaces exactly.
    pub(crate) fn remove_segments(&self, segment_ids: &std::collections::BTreeSet<u32>) {
        if segment_ids.is_empty() {
            return; // a compaction step retires cold segments only: no walk of the index
        }
        let compacted = |entry: &crossbeam_skiplist::map::Entry<'_, IndexKey, Version>| segment_ids.contains(&entry.value().segment_id);
        let mut newer: Option<crossbeam_skiplist::map::Entry<'_, IndexKey, Version>> = None;
        for entry in self.map.iter() {
            let superseded =
                compacted(&entry) && newer.as_ref().is_some_and(|n| n.key().user_key() == entry.key().user_key() && compacted(n));
            if superseded {
                entry.remove();
            } else {
                newer = Some(entry);
            }
        }
        let cache = self.newest.load();
        for entry in self.map.iter() {
            if compacted(&entry) && entry.remove() {
                cache.clear(point_cache::key_hash(entry.key().user_key()), location_of(entry.value()));
            }
        }
    }
}

pub(crate) fn location_of(version: &Version) -> Location {
    Location::Log { segment_id: version.segment_id, offset: version.offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(offset: u32, kind: VersionKind) -> Version {
        Version { segment_id: 1, offset, logical_bytes: 1, kind, expires_at_ms: 0 }
    }

    #[test]
    fn inline_and_heap_keys_compare_as_their_bytes() {
        let index = Index::default();
        let long = vec![7u8; INLINE_KEY_LEN_MAX + 1];
        let exact = vec![7u8; INLINE_KEY_LEN_MAX];
        for key in [&long[..], &exact[..], b"", b"\x07"] {
            assert!(!index.insert(key, 1, version(1, VersionKind::Put)), "first version of a key");
        }
        assert!(index.insert(&long, 2, version(2, VersionKind::Put)), "second version of the long key");
        assert_eq!(index.newest_at(&long, 9).map(|(s, _)| s), Some(2));
        assert_eq!(index.newest_at(&exact, 9).map(|(s, _)| s), Some(1));
        let mut chunk = ScanChunk::default();
        index.scan(Bound::Unbounded, Bound::Unbounded, 9, Direction::Forward, 10, &mut chunk);
        let keys: Vec<&[u8]> = chunk.items.iter().map(|i| chunk.key(i)).collect();
        assert_eq!(keys, vec![&b""[..], b"\x07", &exact[..], &long[..]]);
    }

    #[test]
    fn newest_at_picks_the_snapshot_version() {
        let index = Index::default();
        index.insert(b"a", 1, version(10, VersionKind::Put));
        index.insert(b"a", 5, version(20, VersionKind::Delete));
        index.insert(b"a\0", 3, version(30, VersionKind::Put));
        assert_eq!(index.newest_at(b"a", 0), None);
        assert_eq!(index.newest_at(b"a", 4).unwrap().1.offset, 10);
        assert_eq!(index.newest_at(b"a", 5).unwrap().1.offset, 20);
        assert_eq!(index.newest_at(b"a\0", 9).unwrap().1.offset, 30);
        assert_eq!(index.newest_at(b"", 9), None);
    }

    #[test]
    fn prune_keeps_exactly_what_pins_can_see() {
        let index = Index::default();
        for (seq, offset) in [(1, 1), (4, 4), (7, 7), (9, 9)] {
            index.insert(b"k", seq, version(offset, VersionKind::Put));
        }
        // Pins at 5 (sees seq 4) and 9 (sees seq 9): seqs 1 and 7 go.
        index.prune(b"k", &[5, 9], |_| {});
        let seqs: Vec<u64> = (0..=10).filter_map(|s| index.newest_at(b"k", s).map(|(q, _)| q)).collect();
        assert_eq!(seqs, vec![4, 4, 4, 4, 4, 9, 9], "reads at 4..=8 see seq 4, at 9..=10 seq 9, below 4 nothing");
        assert_eq!(index.entries_count(), 2);
        index.prune(b"k", &[20], |_| {});
        assert_eq!(index.entries_count(), 1, "the newest version always stays");
    }

    #[test]
    fn prune_keeps_versions_superseded_after_the_pins_were_read() {
        let index = Index::default();
        for seq in [3, 11, 12] {
            index.insert(b"k", seq, version(seq as u32, VersionKind::Put));
        }
        // Pins read when the visible seq was 10: seq 11 and 12 were published later, and a
        // reader may have pinned at 11 meanwhile, so 11 stays; 3 is what a reader at 10 sees.
        assert!(index.prune(b"k", &[10], |_| {}), "kept versions are reported for a retry");
        assert_eq!(index.entries_count(), 3);
        assert!(!index.prune(b"k", &[12], |_| {}));
        assert_eq!(index.entries_count(), 1);
    }

    #[test]
    fn scans_agree_in_both_directions_with_limits() {
        let index = Index::default();
        for (i, key) in [&b"a"[..], b"b", b"c", b"d", b"e"].iter().enumerate() {
            index.insert(key, 1 + i as u64, version(i as u32, VersionKind::Put));
            index.insert(key, 10 + i as u64, version(100 + i as u32, VersionKind::Put));
        }
        for at in [0u64, 3, 12, 99] {
            let mut forward = ScanChunk::default();
            let mut from: Option<Vec<u8>> = None;
            loop {
                let lower = from.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                match index.scan(lower, Bound::Unbounded, at, Direction::Forward, 2, &mut forward) {
                    Some(k) => from = Some(k),
                    None => break,
                }
            }
            let mut backward = ScanChunk::default();
            let mut to: Option<Vec<u8>> = None;
            loop {
                let upper = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                match index.scan(Bound::Unbounded, upper, at, Direction::Backward, 2, &mut backward) {
                    Some(k) => to = Some(k),
                    None => break,
                }
            }
            backward.items.reverse();
            let f: Vec<(u64, u32)> = forward.items.iter().map(|i| (i.seq, i.version.offset)).collect();
            let b: Vec<(u64, u32)> = backward.items.iter().map(|i| (i.seq, i.version.offset)).collect();
            let keys: Vec<&[u8]> = forward.items.iter().map(|i| forward.key(i)).collect();
            let back_keys: Vec<&[u8]> = backward.items.iter().map(|i| backward.key(i)).collect();
            assert_eq!(keys, back_keys, "at {at}");
            assert_eq!(f, b, "at {at}");
            let expected: Vec<(u64, u32)> = (0..5u64)
                .filter_map(|i| {
                    if 10 + i <= at {
                        Some((10 + i, 100 + i as u32))
                    } else if i < at {
                        Some((1 + i, i as u32))
                    } else {
                        None
                    }
                })
                .collect();
            assert_eq!(f, expected, "at {at}");
        }
    }
}
