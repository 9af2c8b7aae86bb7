//! `Iter`: live records in key order, forwards and backwards, against one pinned view.
//!
//! The iterator owns what it needs (no borrow of the `Db`): it walks the index in chunks of
//! `CHUNK_KEYS` keys, re-seeking after each chunk, so it never holds skiplist entries
//! across calls. Two chunk buffers (front and back) let `next` and `next_back` meet in
//! the middle without yielding a key twice.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

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
    front: VecDeque<ScanItem>,
    /// Keys of the `front` items (refilled only when `front` is empty).
    front_keys: Vec<u8>,
    /// Descending items collected by `next_back`; `next` may take from its end.
    back: VecDeque<ScanItem>,
    back_keys: Vec<u8>,
    failed: bool,
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
        let mut chunk = ScanChunk::default();
        let lower = self.remaining.lower.as_ref().map(Vec::as_slice);
        let upper = self.remaining.upper.as_ref().map(Vec::as_slice);
        let stopped_at = self.shared.index.scan(lower, upper, self.view.seq, direction, CHUNK_KEYS, &mut chunk);
        let ScanChunk { items, keys } = chunk;
        let (now, table) = (self.view.now_ms, &self.view.table);
        let tier = self.tier;
        let wanted = |item: &ScanItem| {
            item.version.is_live(now) && tier.is_none_or(|t| table.get(item.version.segment_id).is_some_and(|s| s.tier() == t))
        };
        match direction {
            Direction::Forward => {
                debug_assert!(self.front.is_empty(), "the front keys are replaced only when no front item needs them");
                self.front.extend(items.into_iter().filter(wanted));
                self.front_keys = keys;
                match stopped_at {
                    Some(key) => self.remaining.lower = Bound::Excluded(key),
                    None => self.middle_done = true,
                }
            }
            Direction::Backward => {
                debug_assert!(self.back.is_empty(), "the back keys are replaced only when no back item needs them");
                self.back.extend(items.into_iter().filter(wanted));
                self.back_keys = keys;
                match stopped_at {
                    Some(key) => self.remaining.upper = Bound::Excluded(key),
                    None => self.middle_done = true,
                }
            }
        }
    }

    /// Resolves an item whose key is in `keys`; the record must carry that key.
    fn emit(&mut self, item: ScanItem, from_front: bool) -> Option<Result<Record>> {
        let key = if from_front { &self.front_keys[item.key.clone()] } else { &self.back_keys[item.key.clone()] };
        let result = self.view.resolve_keyed(&self.shared, key, item.seq, &item.version);
        self.failed = result.is_err();
        Some(result)
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
