//! strata-engine: the storage engine behind the `strata` crate — log segments (hot and
//! warm tiers), columnar cold segments and compaction, the in-memory index, group commit,
//! recovery, snapshots.
//! `ARCHITECTURE.md` at the repository root maps this crate.
#![deny(unsafe_code)]

mod batch;
mod checkpoint;
mod cold;
mod compact;
mod db;
mod error;
mod format;
mod index;
mod inspect;
mod io;
mod iter;
pub mod limits;
mod log;
mod maintenance;
mod manifest;
mod meta;
mod open;
mod options;
mod point_cache;
mod read;
mod record;
mod repair;
mod search;
mod segments;
mod snapshots;
mod stats;
mod vector;
mod verify;
mod write;

pub use batch::Batch;
pub use cold::columns::{BinaryColumn, ColdColumns, ColdSegment};
pub use db::Db;
pub use error::{Error, Result};
pub use format::{FORMAT_VERSION_LATEST, FORMAT_VERSION_READ_MIN};
pub use inspect::{inspect, FileKind, FileReport};
pub use iter::Iter;
pub use options::{Decision, Durability, Metric, Options};
pub use read::Snapshot;
pub use record::Record;
pub use search::{Hit, Search};
pub use stats::{DamagedFile, LostRange, RepairReport, Stats, Tier, TierStats, VerifyReport};
#[cfg(feature = "arrow")]
pub use {arrow_array, arrow_schema};

/// Hooks for the project's own tests (feature `test-hooks`); not part of the API.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    pub use crate::io::faults::{FaultKind, FaultVfs};
    pub use crate::io::fs::leader_panics::panic_next_leader_in;
    pub use crate::io::maps::ReadOnlyMap;
    pub use crate::io::power_loss::{CrashImage, CrashPoint, ImageMode, PowerLossVfs};
    pub use crate::io::vfs::{File, FileInfo, OpenMode, OsVfs, Vfs, VfsFile, DIR_MODE, FILE_MODE};

    /// [`crate::repair`] with every file operation through `vfs` (fault injection).
    pub fn repair_with_vfs(path: &std::path::Path, vfs: std::sync::Arc<dyn Vfs>) -> crate::Result<crate::RepairReport> {
        crate::repair::repair(&vfs, path)
    }
}

/// Offline repair of the database at `path` (takes the writer lock): salvages every intact
/// record of every tier into a rebuilt database that opens and verifies, keeping each
/// record's seq. The original files are moved aside into `path/repair-<n>/`, never deleted.
/// A database that opens and verifies is left as it is. Idempotent and crash-safe: after a
/// crash, run it again (or open the database for writing) to finish. Steps and guarantees:
/// `format-spec/recovery.md`, "Repair".
pub fn repair(path: &std::path::Path) -> Result<RepairReport> {
    repair::repair(&Options::new().vfs, path)
}
