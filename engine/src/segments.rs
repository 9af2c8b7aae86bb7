//! The segment table: every segment a reader can resolve a version in, by id, and the
//! cold segments. Immutable; the writer (seal) and compaction publish a new table (copy,
//! change, swap). A reader that loaded a table keeps every segment in it alive.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cold::set::ColdSet;
use crate::log::dead_rows::DeadRows;
use crate::log::hot::HotSegment;
use crate::log::segment::SealedSegment;
use crate::write::WriterSlot;
use crate::Tier;

/// One log segment as readers see it.
#[derive(Clone)]
pub(crate) enum SegmentRef {
    /// The active segment: records are read from its in-memory mirror.
    Hot(Arc<HotSegment>),
    /// A sealed segment: records are read from its map.
    Sealed(Arc<SealedSegment>),
}

impl SegmentRef {
    /// The records of this segment no reader can read again.
    pub(crate) fn dead_rows(&self) -> &DeadRows {
        match self {
            SegmentRef::Hot(hot) => &hot.dead,
            SegmentRef::Sealed(sealed) => &sealed.dead,
        }
    }
}

/// The published segment table: any thread loads it, and only a holder of the writer slot
/// replaces it (a seal, a compaction's install, a retirement), so publishers never race and
/// each table is built from the one before it.
pub(crate) struct PublishedTable(ArcSwap<SegmentTable>);

impl PublishedTable {
    pub(crate) fn new(table: SegmentTable) -> PublishedTable {
        PublishedTable(ArcSwap::from_pointee(table))
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<SegmentTable>> {
        self.0.load()
    }

    pub(crate) fn load_full(&self) -> Arc<SegmentTable> {
        self.0.load_full()
    }

    /// Replaces the table; `_held` proves the writer slot is held.
    pub(crate) fn publish(&self, _held: &WriterSlot<'_>, table: SegmentTable) {
        self.0.store(Arc::new(table));
    }
}

#[derive(Clone, Default)]
pub(crate) struct SegmentTable {
    pub(crate) segments: BTreeMap<u32, SegmentRef>,
    /// Sealed segments already compacted into `cold` whose index entries are not yet
    /// removed (a reader of an older table may still need them). They stay resolvable;
    /// their records count as cold.
    pub(crate) retired: BTreeSet<u32>,
    pub(crate) cold: Arc<ColdSet>,
}

impl SegmentTable {
    pub(crate) fn get(&self, segment_id: u32) -> Option<&SegmentRef> {
        self.segments.get(&segment_id)
    }

    /// The tier of the records of log segment `segment_id`.
    pub(crate) fn tier_of(&self, segment_id: u32) -> Option<Tier> {
        let segment = self.segments.get(&segment_id)?;
        Some(match segment {
            SegmentRef::Hot(_) => Tier::Hot,
            SegmentRef::Sealed(_) if self.retired.contains(&segment_id) => Tier::Cold,
            SegmentRef::Sealed(_) => Tier::Warm,
        })
    }

    /// A copy with `segment_id` set to `segment`.
    pub(crate) fn with(&self, segment_id: u32, segment: SegmentRef) -> SegmentTable {
        let mut next = self.clone();
        next.segments.insert(segment_id, segment);
        next
    }

    /// Sealed segments not yet compacted, ascending by id.
    pub(crate) fn warm(&self) -> impl DoubleEndedIterator<Item = &Arc<SealedSegment>> + '_ {
        self.segments.iter().filter(|(id, _)| !self.retired.contains(id)).filter_map(|(_, s)| match s {
            SegmentRef::Sealed(sealed) => Some(sealed),
            SegmentRef::Hot(_) => None,
        })
    }
}
