//! Retiring what a compaction replaced: the log segments it moved to the cold tier and the
//! cold segments it rewrote stay readable until no reader can need them, then their index
//! entries go, then the segments leave the table, then their files are deleted. The one
//! owner of that queue is [`Retirements`]; compaction's install pushes to it, and any
//! thread that finishes a write group, a seal, a compaction or a close (and the maintenance
//! worker when idle) calls [`Retirements::finish`].
//!
//! **Invariant:** retirements finish in compaction order, and only as a ready prefix: the
//! index entries of an older compaction hold older versions than a newer one's cold rows,
//! and must never outlive the entries of a newer compaction (they would hide its rows).
//!
//! **Locks:** `pending` is taken before the writer slot and released before it
//! (`Shared`'s lock order).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cold::set::ColdSet;
use crate::db::Shared;
use crate::io::fs;

/// A compaction whose old segments are waiting for readers to let go of them.
pub(crate) struct Retirement {
    /// The cold set the compaction replaced: while a table holding it is alive, a reader
    /// may rely on the index entries of the compacted log segments.
    pub(crate) replaced_cold: Arc<ColdSet>,
    /// Newest seq in the compacted log segments: a reader pinned below it may need a
    /// version compaction dropped, which only the index entries still reach.
    pub(crate) seq_max: u64,
    pub(crate) log_ids: Vec<u32>,
    pub(crate) files: Vec<PathBuf>,
}

/// The compactions whose old segments readers may still need, oldest first.
#[derive(Default)]
pub(crate) struct Retirements {
    pending: Mutex<Vec<Retirement>>,
    /// `pending` is not empty: lets `finish` return without the lock on every write group.
    any_pending: AtomicBool,
}

impl Retirements {
    /// Queues `retirement` (a compaction just installed), behind every earlier one.
    pub(crate) fn push(&self, shared: &Shared, retirement: Retirement) {
        shared.lock_or_poison(&self.pending).push(retirement);
        self.any_pending.store(true, Ordering::Release);
    }

    /// Finishes the compactions whose old segments no reader can need any more: no segment
    /// table holding the cold set they replaced is alive, and no reader is pinned below the
    /// newest seq they compacted. Then their index entries go, then the segments leave the
    /// table, then their files are deleted. Cheap when nothing is pending (one atomic
    /// load). Best effort on the deletions: the manifest no longer lists those files, so one
    /// that cannot be deleted now is an orphan the next open removes (and counts in `Stats`).
    pub(crate) fn finish(&self, shared: &Shared) -> bool {
        if !self.any_pending.load(Ordering::Acquire) {
            return false;
        }
        // Held until the index entries are gone, so retirements finish one after another.
        let mut pending = shared.lock_or_poison(&self.pending);
        let oldest_pin = shared.snapshots.oldest();
        // In compaction order, and only a ready prefix: the index entries of an older
        // compaction hold older versions, and must never outlive those of a newer one (they
        // would then hide the newer cold row).
        let ready_count = pending
            .iter()
            .take_while(|r| Arc::strong_count(&r.replaced_cold) == 1 && oldest_pin.is_none_or(|pin| pin >= r.seq_max))
            .count();
        let ready: Vec<Retirement> = pending.drain(..ready_count).collect();
        let still_pending = !pending.is_empty();
        self.any_pending.store(still_pending, Ordering::Release);
        if ready.is_empty() {
            return still_pending;
        }
        let log_ids: std::collections::BTreeSet<u32> = ready.iter().flat_map(|r| r.log_ids.iter().copied()).collect();
        shared.index.remove_segments(&log_ids);
        drop(pending);
        {
            let writer = shared.writer.slot();
            let mut next = (**shared.segments.load()).clone();
            for id in &log_ids {
                next.segments.remove(id);
                next.retired.remove(id);
            }
            shared.segments.publish(&writer, next);
        }
        for path in ready.iter().flat_map(|r| r.files.iter()) {
            let _ = shared.options.vfs.remove_file(path);
        }
        let _ = fs::sync_dir(shared.options.vfs.as_ref(), &shared.dir);
        still_pending
    }
}
