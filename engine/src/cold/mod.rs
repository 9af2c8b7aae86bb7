//! The cold tier: immutable columnar segments written by compaction, laid out the way
//! Apache Arrow lays out its arrays, read in place through a read-only map.
//!
//! `layout` holds the byte layout (`format-spec/cold-segment.md`), `filter` the per-segment
//! key filter, `writer` builds a segment file from sorted rows, `segment` maps and reads
//! one, `set` is the ordered set of cold segments a reader resolves keys in, `columns` the
//! public zero-copy view of one segment.

#[cfg(feature = "arrow")]
pub(crate) mod arrow;
pub(crate) mod columns;
pub(crate) mod filter;
pub(crate) mod layout;
pub(crate) mod segment;
pub(crate) mod set;
pub(crate) mod writer;
