//! The log: hot (active) and warm (sealed) segments.
//!
//! A segment file is a header, whole commits of checksummed records, and — once sealed —
//! a hint block (the index entries of every record) and a trailer. See
//! `format-spec/log-segment.md`.

pub(crate) mod commit;
pub(crate) mod dead_rows;
pub(crate) mod header;
pub(crate) mod hot;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod segment;
pub(crate) mod trailer;
pub(crate) mod writer;
