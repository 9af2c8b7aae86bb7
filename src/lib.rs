//! strata: an embedded storage engine for records made of a key, variable-length content
//! and a fixed-size f32 embedding. Every byte written comes back exactly, from every tier,
//! after every restart.
//!
//! ```no_run
//! use strata::{Db, Durability, Options};
//! # fn main() -> strata::Result<()> {
//! let db = Db::open("memories.strata", Options::new().embedding_dim(3).durability(Durability::Sync))?;
//! db.put(b"note/1", b"the content", Some(&[0.1, 0.2, 0.3]))?;
//! let record = db.get(b"note/1")?.expect("just written");
//! assert_eq!(record.content(), b"the content");
//! assert_eq!(record.embedding(), Some(&[0.1f32, 0.2, 0.3][..]));
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! The whole public surface is the one `pub use` block below; `../shared/API.md` is its
//! contract.
#![forbid(unsafe_code)]

#[cfg(feature = "datafusion")]
mod sql;

#[cfg(feature = "datafusion")]
pub use datafusion;
#[cfg(feature = "datafusion")]
pub use sql::SnapshotTable;
#[cfg(feature = "arrow")]
pub use strata_engine::{arrow_array, arrow_schema};
pub use strata_engine::{
    inspect, repair, Batch, BinaryColumn, ColdColumns, ColdSegment, DamagedFile, Db, Decision, Durability, Error, FileKind, FileReport,
    Hit, Iter, LostRange, Metric, Options, Record, RepairReport, Result, Search, Snapshot, Stats, Tier, TierStats, VerifyReport,
    FORMAT_VERSION_LATEST, FORMAT_VERSION_READ_MIN,
};

/// Every bound strata enforces (also documented in `format-spec/limits.md`).
pub mod limits {
    pub use strata_engine::limits::*;
}

// API.md: `Db` and `Snapshot` are `Send + Sync`; records, iterators and errors cross threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Db>();
    send_sync::<Snapshot>();
    send_sync::<Record>();
    send_sync::<Iter>();
    send_sync::<Error>();
    send_sync::<Batch>();
    send_sync::<ColdSegment>();
};
