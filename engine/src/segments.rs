//! The segment table: every segment a reader can resolve a version in, by id. Immutable;
//! the writer publishes a new table (copy, change, swap) when a segment is sealed or added.
//! A reader that loaded a table keeps every segment in it alive.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::log::hot::HotSegment;
use crate::log::segment::SealedSegment;
use crate::Tier;

/// One segment as readers see it.
#[derive(Clone)]
pub(crate) enum SegmentRef {
    /// The active segment: records are read from its in-memory mirror.
    Hot(Arc<HotSegment>),
    /// A sealed segment: records are read from its map.
    Sealed(Arc<SealedSegment>),
}

impl SegmentRef {
    pub(crate) fn tier(&self) -> Tier {
        match self {
            SegmentRef::Hot(_) => Tier::Hot,
            SegmentRef::Sealed(_) => Tier::Warm,
        }
    }
}

#[derive(Clone, Default)]
pub(crate) struct SegmentTable {
    pub(crate) segments: BTreeMap<u32, SegmentRef>,
}

impl SegmentTable {
    pub(crate) fn get(&self, segment_id: u32) -> Option<&SegmentRef> {
        self.segments.get(&segment_id)
    }

    /// A copy with `segment_id` set to `segment`.
    pub(crate) fn with(&self, segment_id: u32, segment: SegmentRef) -> SegmentTable {
        let mut next = self.clone();
        next.segments.insert(segment_id, segment);
        next
    }
}
