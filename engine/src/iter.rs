//! `Iter`: live records in key order, forwards and backwards, against one pinned view.
//!
//! The iterator owns what it needs (no borrow of the `Db`): it walks the index (hot and
//! warm versions) and the cold set's key columns in chunks of up to `CHUNK_KEYS` keys each,
//! re-seeking after each chunk, so it never holds skiplist entries across calls. A chunk
//! is merged by key: an index version shadows the cold row of the same key (the index
//! only holds versions newer than the cold tier's), and a tombstone shadows it too. Two
//! chunk buffers (front and back) let `next` and `next_back` meet in the middle without
//! yielding a key twice.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::cold::set::ColdRow;
use crate::db::Shared;
use crate::index::{Direction, ScanChunk, ScanItem};
use crate::read::ReadView;
use crate::snapshots::Pin;
use crate::{Record, Result, Tier};

/// Keys collected per index walk.
const CHUNK_KEYS: usize = 128;

/// A range of user keys with owned bounds.
#[derive(Clone, Debug)]
pub(crate) struct KeyRange {
    pub(crate) lower: Bound<Vec<u8>>,
    pub(crate) upper: Bound<Vec<u8>>,
}

impl KeyRange {
    pub(crate) fn from_bounds<'k>(range: impl RangeBounds<&'k [u8]>) -> KeyRange {
        let own = |b: Bound<&&[u8]>| b.map(|k| k.to_vec());
        KeyRange { lower: own(range.start_bound()), upper: own(range.end_bound()) }
    }

    /// Every key starting with `prefix`.
    pub(crate) fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange { lower: Bound::Included(prefix.to_vec()), upper: prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded) }
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut successor = prefix[..=keep].to_vec();
    successor[keep] += 1;
    Some(successor)
}

/// Iterator over live records; `Item = Result<Record>`. Double-ended: `.rev()` walks keys
/// in descending order. After an error it yields nothing more.
pub struct Iter {
    shared: Arc<Shared>,
    _pin: Arc<Pin>,
    view: ReadView,
    tier: Option<Tier>,
    /// The part of the key range not yet walked.
    remaining: KeyRange,
    middle_done: bool,
    /// Ascending items collected by `next`; `next_back` may take from its end.
    front: VecDeque<Item>,
    /// Keys of the `front` items (refilled only when `front` is empty).
    front_keys: Vec<u8>,
    /// Descending items collected by `next_back`; `next` may take from its end.
    back: VecDeque<Item>,
    back_keys: Vec<u8>,
    failed: bool,
}

/// One merged entry of a chunk: an index version or a cold row.
#[derive(Clone, Debug)]
enum Item {
    Index(ScanItem),
    Cold(ColdRow),
}

impl Iter {
    pub(crate) fn new(shared: Arc<Shared>, pin: Arc<Pin>, view: ReadView, range: KeyRange, tier: Option<Tier>) -> Iter {
        let empty = match (&range.lower, &range.upper) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
                l > u || (l == u && !(matches!(range.lower, Bound::Included(_)) && matches!(range.upper, Bound::Included(_))))
            }
            _ => false,
        };
        Iter {
            shared,
            _pin: pin,
            view,
            tier,
            remaining: range,
            middle_done: empty,
            front: VecDeque::new(),
            front_keys: Vec::new(),
            back: VecDeque::new(),
            back_keys: Vec::new(),
            failed: false,
        }
    }

    fn refill(&mut self, direction: Direction) {
        let forward = direction == Direction::Forward;
        let mut chunk = ScanChunk::default();
        let mut cold_rows = Vec::new();
        let lower = self.remaining.lower.as_ref().map(Vec::as_slice);
        let upper = self.remaining.upper.as_ref().map(Vec::as_slice);
        let index_stop = self.shared.index.scan(lower, upper, self.view.seq, direction, CHUNK_KEYS, &mut chunk);
        let cold = &self.view.table.cold;
        let cold_stop = if cold.segments.is_empty() { None } else { cold.scan(lower, upper, forward, CHUNK_KEYS, &mut cold_rows) };
        // Both sources are complete up to the nearer of their stops; beyond it, the next chunk.
        let boundary = match (index_stop, cold_stop) {
            (None, None) => None,
            (Some(stop), None) | (None, Some(stop)) => Some(stop),
            (Some(a), Some(b)) => Some(if (a <= b) == forward { a } else { b }),
        };
        let ScanChunk { items, keys } = chunk;
        let within = |key: &[u8]| boundary.as_deref().is_none_or(|b| if forward { key <= b } else { key >= b });
        let (now, seq, table, tier) = (self.view.now_ms, self.view.seq, &self.view.table, self.tier);
        let index_wanted =
            |item: &ScanItem| item.version.is_live(now) && tier.is_none_or(|t| table.tier_of(item.version.segment_id) == Some(t));
        let cold_wanted = |row: ColdRow| {
            let segment = cold.segment(row);
            segment.seq(row.row as usize) <= seq && segment.is_live(row.row as usize, now) && tier.is_none_or(|t| t == Tier::Cold)
        };
        let mut merged = Vec::with_capacity(items.len() + cold_rows.len());
        // A version in a segment this table lists as retired is superseded by the table's
        // cold set (which holds that compaction's output): the cold row, or nothing when the
        // compaction dropped the key (a tombstone, an expiry, the compaction filter).
        let mut index_items =
            items.into_iter().filter(|i| within(&keys[i.key.clone()]) && !table.retired.contains(&i.version.segment_id)).peekable();
        let mut cold_items = cold_rows.into_iter().filter(|&r| within(cold.key(r))).peekable();
        loop {
            let order = match (index_items.peek(), cold_items.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(i), Some(&c)) => {
                    let order = keys[i.key.clone()].cmp(cold.key(c));
                    if forward {
                        order
                    } else {
                        order.reverse()
                    }
                }
            };
            if order.is_le() {
                let Some(item) = index_items.next() else { break };
                if order.is_eq() {
                    cold_items.next(); // shadowed by the newer version (or deletion) in the index
                }
                if index_wanted(&item) {
                    merged.push(Item::Index(item));
                }
            } else if let Some(row) = cold_items.next() {
                if cold_wanted(row) {
                    merged.push(Item::Cold(row));
                }
            }
        }
        let (queue, arena) = if forward { (&mut self.front, &mut self.front_keys) } else { (&mut self.back, &mut self.back_keys) };
        debug_assert!(queue.is_empty(), "a chunk's keys are replaced only when no item of it is left");
        queue.extend(merged);
        *arena = keys;
        match boundary {
            Some(key) if forward => self.remaining.lower = Bound::Excluded(key),
            Some(key) => self.remaining.upper = Bound::Excluded(key),
            None => self.middle_done = true,
        }
    }

    /// Resolves an item; an index item's key is in the keys of the chunk it came from.
    fn emit(&mut self, item: Item, from_front: bool) -> Option<Result<Record>> {
        let result = match item {
            Item::Index(item) => {
                let key = if from_front { &self.front_keys[item.key.clone()] } else { &self.back_keys[item.key.clone()] };
                self.view.resolve_keyed(&self.shared, key, item.seq, &item.version)
            }
            Item::Cold(row) => self.view.resolve_cold(&self.shared, row),
        };
        self.failed = result.is_err();
        Some(result)
    }
}

impl Iter {
    /// The next live entry's tier and logical bytes, without reading the record (stats).
    pub(crate) fn next_meta(&mut self) -> Option<(Tier, u64)> {
        loop {
            if let Some(item) = self.front.pop_front() {
                let table = &self.view.table;
                return Some(match item {
                    Item::Index(item) => {
                        (table.tier_of(item.version.segment_id).unwrap_or(Tier::Warm), u64::from(item.version.logical_bytes))
                    }
                    Item::Cold(row) => {
                        let segment = table.cold.segment(row);
                        let r = row.row as usize;
                        let bytes =
                            segment.key_range(r).len() + segment.content_range(r).len() + segment.embedding_range(r).map_or(0, |e| e.len());
                        (Tier::Cold, bytes as u64)
                    }
                });
            }
            if self.middle_done {
                return None;
            }
            self.refill(Direction::Forward);
        }
    }
}

impl Iterator for Iter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        // Bounded: each pass either yields, or walks one more chunk of a finite range.
        while !self.failed {
            if let Some(item) = self.front.pop_front() {
                return self.emit(item, true);
            }
            if !self.middle_done {
                self.refill(Direction::Forward);
                continue;
            }
            let item = self.back.pop_back()?;
            return self.emit(item, false);
        }
        None
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        while !self.failed {
            if let Some(item) = self.back.pop_front() {
                return self.emit(item, false);
            }
            if !self.middle_done {
                self.refill(Direction::Backward);
                continue;
            }
            let item = self.front.pop_back()?;
            return self.emit(item, true);
        }
        None
    }
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").field("seq", &self.view.seq).field("remaining", &self.remaining).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
