//! Registered snapshots: the seqs that readers (snapshots and iterators) are reading at.
//! Pruning of superseded versions keeps whatever one of them can still see.
//!
//! **Invariant:** a pin's seq is read from `visible_seq` under the registry lock, and the
//! pruner reads `visible_seq` under the same lock, so no pin can appear below the pruner's
//! view of the visible seq.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct SnapshotRegistry {
    pins: Mutex<BTreeMap<u64, usize>>,
    /// Bumped whenever a pin is released, so deferred pruning knows to retry.
    releases: AtomicU64,
}

impl SnapshotRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a reader at the current visible seq and returns that seq.
    pub(crate) fn pin(&self, visible_seq: &AtomicU64) -> u64 {
        let mut pins = self.lock();
        let seq = visible_seq.load(Ordering::Acquire);
        *pins.entry(seq).or_insert(0) += 1;
        seq
    }

    pub(crate) fn unpin(&self, seq: u64) {
        let mut pins = self.lock();
        if let Some(count) = pins.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&seq);
            }
        } else {
            debug_assert!(false, "unpin of a seq that was never pinned");
        }
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    /// Every pinned seq plus the current visible seq, ascending, deduplicated.
    pub(crate) fn pins_with_visible(&self, visible_seq: &AtomicU64) -> Vec<u64> {
        let pins = self.lock();
        let visible = visible_seq.load(Ordering::Acquire);
        let mut all: Vec<u64> = pins.keys().copied().collect();
        if all.last().is_none_or(|&last| last < visible) {
            all.push(visible);
        } else if !all.contains(&visible) {
            all.push(visible);
            all.sort_unstable();
        }
        all
    }

    /// The smallest pinned seq, if any reader is pinned.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.lock().keys().next().copied()
    }

    pub(crate) fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }
}

/// A registered reader; unregisters on drop. Shared by a snapshot and its iterators.
pub(crate) struct Pin {
    pub(crate) seq: u64,
    registry: Arc<SnapshotRegistry>,
}

impl Pin {
    pub(crate) fn new(registry: &Arc<SnapshotRegistry>, visible_seq: &AtomicU64) -> Pin {
        let seq = registry.pin(visible_seq);
        Pin { seq, registry: registry.clone() }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.registry.unpin(self.seq);
    }
}
