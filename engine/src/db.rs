//! `Db`: the handle a host program holds. Every method takes `&self`; share it with `Arc`.
//!
//! Writes go to `Shared::writer` (`write.rs`: queue → group leader → durable → index →
//! `visible_seq`); reads to `read.rs` (`visible_seq` → index seek → segment table →
//! `Record`); compaction and retirement to `compact/`, the background worker to
//! `maintenance.rs`. This file holds the handle and the state they share.
//!
//! **API boundary:** everything `pub` here is re-exported by the `strata` crate.

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::batch::{Expiry, PutFields, WriteOp};
use crate::compact::retire::Retirements;
use crate::index::Index;
use crate::io::fs::DirLock;
use crate::iter::{Iter, KeyRange};
use crate::log::writer::ActiveSegment;
use crate::manifest::Manifest;
use crate::read::{ReadView, Snapshot};
use crate::segments::{PublishedTable, SegmentRef, SegmentTable};
use crate::snapshots::{Pin, SnapshotRegistry};
use crate::write::Writer;
use crate::{Batch, Error, Hit, Options, Record, Result, Search, Stats, Tier, VerifyReport};

/// An open database. `Send + Sync`.
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

/// The engine state shared by the handle, its snapshots and its iterators.
///
/// **Owners.** Each piece of state has one owner that changes it: the write path
/// (`writer`, `write.rs`) owns the commit queue, the active segment, group commit, pruning
/// and the write totals, and advances `visible_seq`; compaction (`compact/`) owns
/// `manifest` and installs cold sets; `retirements` (`compact/retire.rs`) removes what a
/// compaction replaced; `maintenance` owns the background worker. `segments` is replaced
/// only through `PublishedTable::publish`, which takes the held writer slot as proof: by a
/// seal (`Writer::roll`), a compaction's install and a retirement, so no two publishers race
/// and each table is built from the one before.
///
/// **Lock order.** A thread holding one of these locks takes only locks listed after it:
/// 1. `compaction` — for the whole of a compaction (explicit or background); `close` takes
///    it to wait for one to finish;
/// 2. `retirements` — released before the writer slot is taken (`Retirements::finish`);
/// 3. the writer slot (`Writer::slot`) — a commit group, a seal, a compaction's install, a
///    retirement's table swap, `published_state`, `close`;
/// 4. under the writer slot only leaves: the writer's `previous_group_writers` (the
///    group-commit leader) and `manifest` (a compaction's install, `published_state`; also
///    taken alone);
/// 5. the writer's `deferred_prune` (after the group, the slot released), and under it the
///    snapshot registry's lock (a leaf, `SnapshotRegistry`);
/// 6. `lock` (the directory lock), released last by `close`.
///
/// The maintenance worker's state lock (`Maintenance::state`) is a leaf: the worker
/// finishes retirements before it takes it and runs a compaction after releasing it, and
/// writers consult it (`throttle`) holding nothing.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    /// 0 = the database stores no embeddings.
    pub(crate) embedding_dim: usize,
    pub(crate) read_only: bool,
    pub(crate) index: Index,
    pub(crate) segments: PublishedTable,
    /// Newest seq whose commit is durable (per the durability mode) and in the index.
    pub(crate) visible_seq: AtomicU64,
    pub(crate) snapshots: Arc<SnapshotRegistry>,
    /// The write path: the commit queue, the active segment, group commit, the write totals
    /// and the poison path (`write.rs`).
    pub(crate) writer: Writer,
    pub(crate) lock: Mutex<Option<DirLock>>,
    /// The manifest as last written (or read at open).
    pub(crate) manifest: Mutex<Manifest>,
    /// Held for the whole of a compaction: one at a time.
    pub(crate) compaction: Mutex<()>,
    /// Compactions whose old segments readers may still need (`compact/retire.rs`).
    pub(crate) retirements: Retirements,
    /// Files left by an interrupted compaction that open removed.
    pub(crate) orphans_removed: u64,
    /// The background worker and the counters of compaction work.
    pub(crate) maintenance: Arc<crate::maintenance::Maintenance>,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, options: Options, embedding_dim: usize, parts: SharedParts) -> Shared {
        Shared {
            dir,
            read_only: options.read_only,
            options,
            embedding_dim,
            index: parts.index,
            segments: PublishedTable::new(parts.table),
            visible_seq: AtomicU64::new(parts.last_seq),
            snapshots: Arc::new(SnapshotRegistry::default()),
            writer: Writer::new(parts.last_seq, parts.writer, parts.written),
            lock: Mutex::new(parts.lock),
            manifest: Mutex::new(parts.manifest),
            compaction: Mutex::new(()),
            retirements: Retirements::default(),
            orphans_removed: parts.orphans_removed,
            maintenance: Arc::new(crate::maintenance::Maintenance::new()),
        }
    }

    /// Locks `mutex`; a panic while it was held (a bug in strata) poisons the handle — later
    /// writes fail with `Error::Poisoned`, reads go on — instead of being ignored.
    pub(crate) fn lock_or_poison<'a, T>(&self, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        match mutex.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.writer.refuse_writes("a panic while holding an engine lock".into());
                mutex.clear_poison();
                poisoned.into_inner()
            }
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    /// A pinned view of the current state, for snapshots and iterators.
    ///
    /// The table is loaded after the pin (so it holds every segment a version <= the pin
    /// lives in). If a compaction published it after the pin was taken, its cold set may
    /// already lack a version the pin needs (replaced by a newer one, or dropped with a
    /// tombstone newer than the pin): then the view is taken again, at a seq that sees
    /// everything that compaction moved (it was visible before it was compacted).
    pub(crate) fn pinned_view(&self) -> (Arc<Pin>, ReadView) {
        loop {
            let pin = Arc::new(Pin::new(&self.snapshots, &self.visible_seq));
            let table = self.segments.load_full();
            if table.cold.seq_max <= pin.seq {
                let view = ReadView { seq: pin.seq, table, now_ms: self.now_ms() };
                return (pin, view);
            }
        }
    }

    /// Under the writer lock no commit is half-written: flushes the active segment so its
    /// file holds every published byte, then captures the segment table, the active
    /// segment's published end and the newest published seq together (verify, checkpoint).
    pub(crate) fn published_state(&self) -> Result<PublishedState> {
        self.writer.flushed(|| {
            let table = self.segments.load_full();
            let hot_end = table.segments.values().find_map(|s| match s {
                SegmentRef::Hot(hot) => Some(hot.end()),
                SegmentRef::Sealed(_) => None,
            });
            let manifest = self.lock_or_poison(&self.manifest).clone();
            PublishedState { table, hot_end, last_seq: self.visible_seq.load(Ordering::Acquire), manifest }
        })
    }

    /// Finishes the compactions whose old segments no reader can need any more
    /// (`compact/retire.rs`). Cheap when nothing is pending; `true` while some retirement
    /// still waits for a reader.
    pub(crate) fn finish_retirements(&self) -> bool {
        self.retirements.finish(self)
    }

    fn close(&self) -> Result<()> {
        // The background worker stops first (a run in progress abandons its unpublished
        // files); then an explicit compaction in progress finishes: it must not publish
        // after the lock is released.
        self.maintenance.stop();
        let _no_compaction = self.lock_or_poison(&self.compaction);
        // Best effort: what cannot be retired now is removed as orphans by the next open.
        self.finish_retirements();
        let result = self.writer.close(self);
        *self.lock_or_poison(&self.lock) = None;
        result
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.writer.check_open()
    }

    /// Seals the active segment if it holds records; a failure poisons the handle.
    pub(crate) fn seal_active(&self) -> Result<()> {
        self.writer.seal_active(self)
    }

    fn commit(&self, ops: &[WriteOp<'_>]) -> Result<()> {
        self.writer.commit(self, ops)
    }
}

/// A consistent capture of what is published, from [`Shared::published_state`].
pub(crate) struct PublishedState {
    pub(crate) table: Arc<SegmentTable>,
    /// End of the active segment's published bytes (`None` without an active segment).
    pub(crate) hot_end: Option<u64>,
    pub(crate) last_seq: u64,
    /// The manifest the table was published with (compaction publishes both under the
    /// writer lock).
    pub(crate) manifest: Manifest,
}

/// What `open` assembled for `Shared::new`.
pub(crate) struct SharedParts {
    pub(crate) index: Index,
    pub(crate) table: SegmentTable,
    pub(crate) last_seq: u64,
    pub(crate) writer: Option<ActiveSegment>,
    pub(crate) lock: Option<DirLock>,
    pub(crate) manifest: Manifest,
    pub(crate) orphans_removed: u64,
    /// The write counters (logical bytes, disk bytes) this handle starts from.
    pub(crate) written: (u64, u64),
}

impl Db {
    /// Opens (creating if missing, unless read-only) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        crate::open::open(path.as_ref(), options)
    }

    // ---- writing ----------------------------------------------------------------------

    /// Stores `content` (and `embedding`) under `key`, replacing any earlier version.
    pub fn put(&self, key: &[u8], content: &[u8], embedding: Option<&[f32]>) -> Result<()> {
        self.shared.commit(&[WriteOp { key, put: Some(PutFields { content, embedding, ttl: None }) }])
    }

    /// As `put`, and the record expires `ttl` from now.
    pub fn put_with_ttl(&self, key: &[u8], content: &[u8], embedding: Option<&[f32]>, ttl: Duration) -> Result<()> {
        self.shared.commit(&[WriteOp { key, put: Some(PutFields { content, embedding, ttl: Some(Expiry::After(ttl)) }) }])
    }

    /// Deletes `key`; deleting a missing key is `Ok`.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.shared.commit(&[WriteOp { key, put: None }])
    }

    /// Applies `batch` atomically: all or nothing, also across a crash.
    pub fn write(&self, batch: Batch) -> Result<()> {
        let ops: Vec<WriteOp<'_>> = batch.ops().collect();
        self.shared.commit(&ops)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        if self.shared.read_only {
            return Ok(());
        }
        self.shared.writer.sync()
    }

    /// Seals the active segment (hot → warm) and starts a new one. A no-op when the
    /// active segment holds no records.
    pub fn seal(&self) -> Result<()> {
        self.shared.check_writable()?;
        self.shared.seal_active()?;
        self.shared.finish_retirements();
        Ok(())
    }

    /// Flushes, fsyncs, writes the clean-close mark and releases the write lock. Later
    /// writes return `Error::Closed`; reads keep working. `Drop` does the same best-effort.
    pub fn close(&self) -> Result<()> {
        self.shared.close()
    }

    // ---- reading ----------------------------------------------------------------------

    /// The live record stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        crate::read::get_latest(&self.shared, key)
    }

    /// All live records, ascending by key (`.rev()` for descending).
    pub fn iter(&self) -> Iter {
        self.range(..)
    }

    /// Live records with keys in `range`, e.g. `db.range(&b"a"[..]..&b"m"[..])`.
    pub fn range<'k>(&self, range: impl RangeBounds<&'k [u8]>) -> Iter {
        let (pin, view) = self.shared.pinned_view();
        Iter::new(self.shared.clone(), pin, view, KeyRange::from_bounds(range), None)
    }

    /// Live records whose key starts with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Iter {
        let (pin, view) = self.shared.pinned_view();
        Iter::new(self.shared.clone(), pin, view, KeyRange::prefix(prefix), None)
    }

    /// Live records whose newest version is stored in `tier`.
    pub fn iter_tier(&self, tier: Tier) -> Iter {
        let (pin, view) = self.shared.pinned_view();
        Iter::new(self.shared.clone(), pin, view, KeyRange { lower: Bound::Unbounded, upper: Bound::Unbounded }, Some(tier))
    }

    /// The cold tier's segments as they are now, ascending by key range, each viewable as
    /// zero-copy Arrow-layout columns (`ColdSegment::columns`).
    pub fn cold_segments(&self) -> Vec<crate::ColdSegment> {
        self.shared.segments.load().cold.segments.iter().map(|f| crate::ColdSegment::new(f.clone())).collect()
    }

    /// A consistent, frozen view of the database as of now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.shared.clone())
    }

    // ---- vector search ------------------------------------------------------------------

    /// The `k` records whose embeddings are closest to `query` under the database's metric
    /// (`Options::metric`), closest first, ties by key ascending. Exact, over every tier.
    pub fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search(&Search::new(query).k(k))
    }

    /// One search (k, metric, min_score, key prefix, filter), against a consistent view.
    pub fn search(&self, search: &Search<'_>) -> Result<Vec<Hit>> {
        Ok(self.search_batch_refs(&[search])?.pop().unwrap_or_default())
    }

    /// Many searches in one pass over the data; one hit list per search, in order.
    pub fn search_batch(&self, searches: &[Search<'_>]) -> Result<Vec<Vec<Hit>>> {
        self.search_batch_refs(&searches.iter().collect::<Vec<_>>())
    }

    fn search_batch_refs(&self, searches: &[&Search<'_>]) -> Result<Vec<Vec<Hit>>> {
        let (_pin, view) = self.shared.pinned_view();
        crate::vector::scan::search(&self.shared, &view, searches, self.shared.options.search_threads())
    }

    // ---- maintenance ------------------------------------------------------------------

    /// Seals the active segment, then moves every sealed (warm) segment into the cold tier
    /// and merges the cold tier: keeps the newest version of each key, drops overwritten
    /// versions, deletions and expired records, and publishes the result atomically. Blocks
    /// until done (RocksDB's `CompactRange` over everything): when it returns, every record
    /// written before the call is cold. Snapshots and iterators taken before keep reading
    /// what they saw; the old files are deleted once they are gone (checked at the next
    /// write, seal, compact or close). Cold segments no warm key falls into and without
    /// expired rows are kept as they are, not rewritten.
    pub fn compact(&self) -> Result<()> {
        crate::compact::compact(&self.shared, crate::compact::Trigger::Explicit)
    }

    /// Blocks until background maintenance (`Options::auto_compact`) has nothing left to
    /// do: no compaction running and the sealed bytes under `compaction_warm_bytes` (RocksDB's
    /// `WaitForCompact`). `Err` with its error when a background run that ended meanwhile
    /// failed (it is retried after a backoff; call again to wait for the retry). `Ok` at
    /// once when background maintenance is off, read-only or closed.
    pub fn wait_for_compaction(&self) -> Result<()> {
        self.shared.maintenance.wait_idle(&self.shared)
    }

    /// Counters: live records and bytes, disk bytes, amplification, per-tier figures.
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.shared)
    }

    /// Re-reads every file and checks every checksum.
    pub fn verify(&self) -> Result<VerifyReport> {
        crate::verify::verify(&self.shared)
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist).
    pub fn checkpoint(&self, dest: &Path) -> Result<()> {
        crate::checkpoint::checkpoint(&self.shared, dest)
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The embedding dimension stored in `META` (0 = records carry no embedding).
    pub fn embedding_dim(&self) -> usize {
        self.shared.embedding_dim
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if !self.shared.read_only {
            let _ = self.shared.close();
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.shared.dir).field("options", &self.shared.options).finish_non_exhaustive()
    }
}
