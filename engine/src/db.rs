//! `Db`: the handle a host program holds. Every method takes `&self`; share it with `Arc`.
//!
//! A write flows: validate → encode (no lock) → queue with a seq (`log::commit`) → the
//! group leader appends the group to the active segment, makes it durable per
//! `Durability`, inserts the versions in the index and advances `visible_seq` → the
//! writers return. A read flows: `visible_seq` → index seek → segment table → `Record`.
//!
//! **API boundary:** everything `pub` here is re-exported by the `strata` crate.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::batch::{self, Expiry, PutFields, WriteOp};
use crate::compact::Retirement;
use crate::index::{Index, Version};
use crate::io::fs::{self, DirLock};
use crate::iter::{Iter, KeyRange};
use crate::log::commit::{CommitQueue, PendingCommit, Turn};
use crate::log::writer::ActiveSegment;
use crate::manifest::Manifest;
use crate::read::{ReadView, Snapshot};
use crate::segments::{SegmentRef, SegmentTable};
use crate::snapshots::{Pin, SnapshotRegistry};
use crate::{Batch, Durability, Error, Hit, Options, Record, Result, Search, Stats, Tier, VerifyReport};

/// Deferred keys a leader re-prunes per group when no snapshot was released.
const DEFERRED_PRUNE_PER_GROUP: usize = 8;

/// How many times a group leader takes commits queued during its appends before its fsync.
const LATE_JOIN_ROUNDS: usize = 2;
/// Most CPU yields a Sync leader spends waiting for the previous group's writers to rejoin.
const JOIN_YIELDS_MAX: usize = 16;

fn lost_writer() -> Error {
    Error::Poisoned { cause: "the log writer was lost to an earlier failure".into() }
}

/// How many times an unpinned `get` retries when pruning raced with it before it pins.
const GET_RETRIES_UNPINNED: usize = 8;

/// An open database. `Send + Sync`.
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

/// The engine state shared by the handle, its snapshots and its iterators.
///
/// **Lock order.** A thread holding one of these locks takes only locks listed after it:
/// 1. `compaction` — for the whole of a compaction (explicit or background); `close` takes
///    it to wait for one to finish;
/// 2. `retirements` — released before the writer slot is taken (`finish_retirements`);
/// 3. `writer` — the log writer slot: a commit group, a seal, a compaction's install, a
///    retirement's table swap, `published_state`, `close`;
/// 4. under `writer` only leaves: `previous_group_writers` (the group-commit leader) and
///    `manifest` (a compaction's install, `published_state`; also taken alone);
/// 5. `deferred_prune` (after the group, the writer released), and under it the snapshot
///    registry's lock (a leaf, `SnapshotRegistry`);
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
    pub(crate) segments: ArcSwap<SegmentTable>,
    /// Newest seq whose commit is durable (per the durability mode) and in the index.
    pub(crate) visible_seq: AtomicU64,
    pub(crate) snapshots: Arc<SnapshotRegistry>,
    pub(crate) queue: CommitQueue,
    /// The active segment; `None` when read-only, closed, or after a failed write.
    pub(crate) writer: Mutex<Option<ActiveSegment>>,
    pub(crate) lock: Mutex<Option<DirLock>>,
    /// Keys whose superseded versions a snapshot kept, with the release count at that time.
    deferred_prune: Mutex<(u64, VecDeque<Box<[u8]>>)>,
    /// The writer threads of the last group (leader-only; see `take_late_joiners`).
    previous_group_writers: Mutex<Vec<std::thread::ThreadId>>,
    pub(crate) logical_bytes_written: AtomicU64,
    pub(crate) disk_bytes_written: AtomicU64,
    /// The manifest as last written (or read at open).
    pub(crate) manifest: Mutex<Manifest>,
    /// Held for the whole of a compaction: one at a time.
    pub(crate) compaction: Mutex<()>,
    /// Compactions whose old segments readers may still need (`finish_retirements`).
    pub(crate) retirements: Mutex<Vec<Retirement>>,
    pub(crate) retirement_pending: AtomicBool,
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
            segments: ArcSwap::from_pointee(parts.table),
            visible_seq: AtomicU64::new(parts.last_seq),
            snapshots: Arc::new(SnapshotRegistry::default()),
            queue: CommitQueue::new(parts.last_seq),
            writer: Mutex::new(parts.writer),
            lock: Mutex::new(parts.lock),
            deferred_prune: Mutex::new((0, VecDeque::new())),
            previous_group_writers: Mutex::new(Vec::new()),
            logical_bytes_written: AtomicU64::new(parts.written.0),
            disk_bytes_written: AtomicU64::new(parts.written.1),
            manifest: Mutex::new(parts.manifest),
            compaction: Mutex::new(()),
            retirements: Mutex::new(Vec::new()),
            retirement_pending: AtomicBool::new(false),
            orphans_removed: parts.orphans_removed,
            maintenance: Arc::new(crate::maintenance::Maintenance::new()),
        }
    }

    /// The writer slot. A panic while it was held (a bug in strata) may have left a
    /// partial commit in the active segment's buffer or file: the writer is dropped (it
    /// writes nothing on drop) and the handle poisoned, never written through again.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Option<ActiveSegment>> {
        match self.writer.lock() {
            Ok(slot) => slot,
            Err(poisoned) => {
                let mut slot = poisoned.into_inner();
                if slot.take().is_some() {
                    self.queue.poison("a panic while writing the log".into());
                }
                self.writer.clear_poison();
                slot
            }
        }
    }

    /// Locks `mutex`; a panic while it was held (a bug in strata) poisons the handle — later
    /// writes fail with `Error::Poisoned`, reads go on — instead of being ignored.
    pub(crate) fn lock_or_poison<'a, T>(&self, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        match mutex.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.queue.poison("a panic while holding an engine lock".into());
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
        let mut slot = self.writer();
        if let Some(writer) = slot.as_mut() {
            if let Err(e) = writer.flush() {
                // Part of the buffer may have reached the file: never write behind it.
                *slot = None;
                self.queue.poison(e.to_string());
                return Err(e);
            }
        }
        let table = self.segments.load_full();
        let hot_end = table.segments.values().find_map(|s| match s {
            SegmentRef::Hot(hot) => Some(hot.end()),
            SegmentRef::Sealed(_) => None,
        });
        let manifest = self.lock_or_poison(&self.manifest).clone();
        Ok(PublishedState { table, hot_end, last_seq: self.visible_seq.load(Ordering::Acquire), manifest })
    }

    // ---- retiring compacted segments ---------------------------------------------------

    /// Finishes the compactions whose old segments no reader can need any more: no segment
    /// table holding the cold set they replaced is alive, and no reader is pinned below the
    /// newest seq they compacted. Then their index entries go, then the segments leave the
    /// table, then their files are deleted. Cheap when nothing is pending. Best effort on
    /// the deletions: the manifest no longer lists those files, so one that cannot be
    /// deleted now is an orphan the next open removes (and counts in `Stats`).
    pub(crate) fn finish_retirements(&self) {
        if !self.retirement_pending.load(Ordering::Acquire) {
            return;
        }
        // Held until the index entries are gone, so retirements finish one after another.
        let mut pending = self.lock_or_poison(&self.retirements);
        let oldest_pin = self.snapshots.oldest();
        // In compaction order, and only a ready prefix: the index entries of an older
        // compaction hold older versions, and must never outlive those of a newer one (they
        // would then hide the newer cold row).
        let ready_count = pending
            .iter()
            .take_while(|r| Arc::strong_count(&r.replaced_cold) == 1 && oldest_pin.is_none_or(|pin| pin >= r.seq_max))
            .count();
        let ready: Vec<Retirement> = pending.drain(..ready_count).collect();
        self.retirement_pending.store(!pending.is_empty(), Ordering::Release);
        if ready.is_empty() {
            return;
        }
        let log_ids: std::collections::BTreeSet<u32> = ready.iter().flat_map(|r| r.log_ids.iter().copied()).collect();
        self.index.remove_segments(&log_ids);
        drop(pending);
        {
            let _writer = self.writer();
            let mut next = (**self.segments.load()).clone();
            for id in &log_ids {
                next.segments.remove(id);
                next.retired.remove(id);
            }
            self.segments.store(Arc::new(next));
        }
        for path in ready.iter().flat_map(|r| r.files.iter()) {
            let _ = self.options.vfs.remove_file(path);
        }
        let _ = fs::sync_dir(self.options.vfs.as_ref(), &self.dir);
    }

    // ---- the write path ---------------------------------------------------------------

    fn commit(&self, ops: &[WriteOp<'_>]) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if ops.len() > crate::limits::MAX_BATCH_OPS {
            return Err(Error::invalid(
                "batch",
                format!("{} operations exceeds MAX_BATCH_OPS = {}", ops.len(), crate::limits::MAX_BATCH_OPS),
            ));
        }
        for op in ops {
            batch::validate(op, self.embedding_dim)?;
        }
        self.queue.check_open()?;
        if ops.is_empty() {
            return Ok(());
        }
        self.maintenance.throttle(self)?; // a write stall while compaction is behind
        let encoded = batch::encode(ops, self.embedding_dim, self.now_ms())?;
        let seq = self.queue.submit(encoded)?;
        loop {
            match self.queue.wait_or_lead(seq) {
                Turn::Finished(result) => return result,
                Turn::Lead(group) => self.lead(group),
            }
        }
    }

    /// One leader turn: write, make durable, publish, then release the queue.
    fn lead(&self, mut group: Vec<PendingCommit>) {
        let Some(first) = group.first().map(|c| c.seq) else {
            self.queue.finish_group(0, 0, Ok(()));
            return;
        };
        let turn = LeaderTurn { queue: &self.queue, first_seq: first, finished: false };
        self.maintenance.note_write();
        let outcome = self.write_group(&mut group).map_err(|e| e.to_string());
        turn.finish();
        let last = group.last().map_or(first, |c| c.seq);
        match outcome {
            Ok(superseding) => {
                self.queue.finish_group(last, first, Ok(()));
                self.prune_after(&group, &superseding);
            }
            Err(cause) => self.queue.finish_group(last, first, Err(cause)),
        }
        // Compacted segments waiting on readers.
        self.finish_retirements();
    }

    /// Writes the group (and any late joiners, which it appends to `group`), publishes it,
    /// and returns the (commit, record) positions of records that superseded an older
    /// version of their key — the only ones pruning needs to look at.
    fn write_group(&self, group: &mut Vec<PendingCommit>) -> Result<Vec<(usize, usize)>> {
        let mut slot = self.writer();
        #[cfg(feature = "test-hooks")]
        crate::io::fs::leader_panics::panic_if_armed(&self.dir);
        let published_end = slot.as_ref().map(|w| (w.hot.clone(), w.hot.end()));
        let placed = match self.append_group(&mut slot, group) {
            Ok(placed) => placed,
            Err(e) => {
                *slot = None; // poison: the file may hold a partial commit
                self.unpublish_hot(published_end);
                return Err(e);
            }
        };
        let mut superseding = Vec::new();
        for (c, (commit, (segment_id, base))) in group.iter().zip(placed).enumerate() {
            for (r, view) in commit.views.iter().enumerate() {
                let version = Version::of_record(segment_id, base + view.start() as u32, view);
                if self.index.insert(&commit.bytes.bytes()[view.key.clone()], commit.seq, version) {
                    superseding.push((c, r));
                }
            }
        }
        let last = group.last().map_or(0, |c| c.seq);
        debug_assert!(last > self.visible_seq.load(Ordering::Relaxed));
        self.visible_seq.store(last, Ordering::Release);
        Ok(superseding)
    }

    /// After a failed group: drops its commits from the hot mirrors, so that what the hot
    /// tier holds (and `published_state`, hence a checkpoint, copies) ends at the last
    /// published commit. No reader can reach them (they never reached the index). `before`:
    /// the hot mirror the group started in and its end then; a mirror of a segment the group
    /// rolled into holds nothing published.
    fn unpublish_hot(&self, before: Option<(Arc<crate::log::hot::HotSegment>, u64)>) {
        for segment in self.segments.load().segments.values() {
            if let SegmentRef::Hot(hot) = segment {
                let keep = match &before {
                    Some((first, end)) if Arc::ptr_eq(first, hot) => *end,
                    _ => crate::log::header::SEGMENT_HEADER_LEN as u64,
                };
                hot.truncate(keep);
            }
        }
    }

    /// Appends the group (sealing and rolling segments as they fill) and runs the
    /// durability step. Before an fsync, commits queued meanwhile join the group so they
    /// share it (at most `LATE_JOIN_ROUNDS` times). Returns where each commit landed.
    fn append_group(&self, slot: &mut Option<ActiveSegment>, group: &mut Vec<PendingCommit>) -> Result<Vec<(u32, u32)>> {
        let mut placed = Vec::with_capacity(group.len());
        let first_seq = group.first().map_or(0, |c| c.seq);
        debug_assert_eq!(first_seq.checked_sub(1), Some(self.visible_seq.load(Ordering::Acquire)), "seqs are consecutive");
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        let before_mark = writer.len();
        writer.begin_group(first_seq.saturating_sub(1))?;
        self.disk_bytes_written.fetch_add(writer.len() - before_mark, Ordering::Relaxed);
        let mut previous_writers = self.lock_or_poison(&self.previous_group_writers);
        for round in 0..=LATE_JOIN_ROUNDS {
            if round > 0 {
                let late = self.take_late_joiners(group, &previous_writers);
                if late.is_empty() {
                    break;
                }
                group.extend(late);
            }
            for commit in &group[placed.len()..] {
                let writer = slot.as_mut().ok_or_else(lost_writer)?;
                let base = writer.append_commit(commit.bytes.clone(), &commit.views)?;
                writer.map_written(self.options.vfs.as_ref());
                placed.push((writer.segment_id, base));
                self.logical_bytes_written.fetch_add(commit.logical_bytes, Ordering::Relaxed);
                self.disk_bytes_written.fetch_add(commit.bytes.bytes().len() as u64, Ordering::Relaxed);
                if writer.len() >= self.options.segment_bytes_max {
                    self.roll(slot)?;
                }
            }
            if self.options.durability != Durability::Sync {
                break; // no fsync to share
            }
        }
        debug_assert_eq!(placed.len(), group.len());
        previous_writers.clear();
        previous_writers.extend(group.iter().map(|c| c.writer));
        drop(previous_writers);
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        match self.options.durability {
            Durability::Sync => writer.sync()?,
            Durability::Flush => writer.flush()?,
            Durability::None => {}
        }
        Ok(placed)
    }

    /// Commits queued since the group was taken. Under `Durability::Sync`, when writers of
    /// the previous group are not in this one, they were just woken and are likely about to
    /// commit again: the leader yields the CPU a few times so they can join this fsync
    /// instead of waiting for the next one (the group-commit delay of MySQL and RocksDB,
    /// bounded by `JOIN_YIELDS_MAX`, and skipped for a lone writer).
    fn take_late_joiners(&self, group: &[PendingCommit], previous_writers: &[std::thread::ThreadId]) -> Vec<PendingCommit> {
        let mut late = self.queue.take_late_joiners();
        if self.options.durability != Durability::Sync {
            return late;
        }
        let missing = |late: &[PendingCommit]| previous_writers.iter().any(|w| !group.iter().chain(late).any(|c| c.writer == *w));
        for _ in 0..JOIN_YIELDS_MAX {
            if !missing(&late) {
                break;
            }
            std::thread::yield_now();
            late.extend(self.queue.take_late_joiners());
        }
        late
    }

    /// Seals the active segment (hot → warm) and starts the next one. On error the slot
    /// is left empty (the handle is poisoned).
    pub(crate) fn roll(&self, slot: &mut Option<ActiveSegment>) -> Result<()> {
        let Some(writer) = slot.take() else { return Ok(()) };
        let segment_id = writer.segment_id;
        let before = writer.len();
        let sealed = Arc::new(writer.seal(self.options.vfs.as_ref())?);
        self.disk_bytes_written.fetch_add(sealed.file_len() - before, Ordering::Relaxed);
        let next_id = segment_id.checked_add(1).ok_or_else(|| Error::invalid("segment id", "segment ids exhausted"))?;
        let next = ActiveSegment::create(self.options.vfs.as_ref(), &self.dir, next_id, self.embedding_dim)?;
        self.disk_bytes_written.fetch_add(next.len(), Ordering::Relaxed); // its header
        let table = self.segments.load().with(segment_id, SegmentRef::Sealed(sealed)).with(next_id, SegmentRef::Hot(next.hot.clone()));
        self.segments.store(Arc::new(table));
        *slot = Some(next);
        self.maintenance.kick(); // the warm tier grew
        Ok(())
    }

    /// Seals the active segment if it holds records (`Db::seal`, and `compact` first of
    /// all); a failure poisons the handle (the slot is left empty by `roll`).
    pub(crate) fn seal_active(&self) -> Result<()> {
        let mut slot = self.writer();
        if !slot.as_ref().is_some_and(ActiveSegment::has_records) {
            return Ok(());
        }
        if let Err(e) = self.roll(&mut slot) {
            drop(slot);
            self.queue.poison(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Drops the versions the group superseded that no reader can see any more.
    /// Each version removed is marked dead in its segment (`DeadRows`) for searches.
    fn prune_after(&self, group: &[PendingCommit], superseding: &[(usize, usize)]) {
        let mut deferred = Vec::new();
        // The table holds every segment an index version points into: retirement removes a
        // segment's index entries before the segment.
        let table = self.segments.load();
        let dead = |version: &Version| {
            if let Some(segment) = table.get(version.segment_id) {
                segment.dead_rows().mark(version.offset);
            }
        };
        if !superseding.is_empty() {
            let pins = self.snapshots.pins_with_visible(&self.visible_seq);
            for &(c, r) in superseding {
                let key = &group[c].bytes.bytes()[group[c].views[r].key.clone()];
                if self.index.prune(key, &pins, dead) {
                    deferred.push(Box::from(key));
                }
            }
        }
        let mut state = self.lock_or_poison(&self.deferred_prune);
        let releases = self.snapshots.releases();
        // Retry deferred keys: all of them when a snapshot went away, else a few per group
        // (a version kept because a concurrent leader published past the pins frees soon).
        let budget = if state.0 == releases { DEFERRED_PRUNE_PER_GROUP } else { state.1.len() };
        state.0 = releases;
        if budget > 0 && !state.1.is_empty() {
            let pins = self.snapshots.pins_with_visible(&self.visible_seq);
            for _ in 0..budget.min(state.1.len()) {
                let Some(key) = state.1.pop_front() else { break };
                if self.index.prune(&key, &pins, dead) {
                    state.1.push_back(key);
                }
            }
        }
        state.1.extend(deferred);
    }

    fn close(&self) -> Result<()> {
        // The background worker stops first (a run in progress abandons its unpublished
        // files); then an explicit compaction in progress finishes: it must not publish
        // after the lock is released.
        self.maintenance.stop();
        let _no_compaction = self.lock_or_poison(&self.compaction);
        // Best effort: what cannot be retired now is removed as orphans by the next open.
        self.finish_retirements();
        self.queue.close();
        while let Some(group) = self.queue.lead_remaining() {
            self.lead(group);
        }
        let mut result = Ok(());
        {
            let mut slot = self.writer();
            if let Some(mut writer) = slot.take() {
                result = writer.write_close_mark(self.visible_seq.load(Ordering::Acquire));
            }
        }
        *self.lock_or_poison(&self.lock) = None;
        result
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.queue.check_open()
    }
}

/// A leader's turn in progress. If the leader's thread unwinds (a panic: a bug in strata)
/// before the turn is finished, dropping this abandons the group: the handle is poisoned and
/// every waiting writer woken, instead of waiting forever for a leader that is gone.
struct LeaderTurn<'a> {
    queue: &'a CommitQueue,
    first_seq: u64,
    finished: bool,
}

impl LeaderTurn<'_> {
    /// The group was written (or failed with an error): the caller ends the turn itself.
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for LeaderTurn<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.queue.abandon_group(self.first_seq, "a panic in the group-commit leader".into());
        }
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
        self.shared.queue.check_open()?;
        let mut slot = self.shared.writer();
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        if let Err(e) = writer.sync() {
            *slot = None;
            drop(slot);
            self.shared.queue.poison(e.to_string());
            return Err(e);
        }
        Ok(())
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
        let shared = &*self.shared;
        let mut seq = shared.visible_seq.load(Ordering::Acquire);
        for _ in 0..GET_RETRIES_UNPINNED {
            // Usually the newest version in the index is visible: one lookup decides. A key
            // with no version at all (one that lives cold, or none) costs that lookup alone.
            let newest = shared.index.newest_at(key, u64::MAX);
            let only_newer_versions = newest.is_some_and(|(newest_seq, _)| newest_seq > seq);
            let found = match newest {
                Some((newest_seq, version)) if newest_seq <= seq => Some((newest_seq, version)),
                Some(_) => {
                    // A newer version exists. The version `seq` reads may have been pruned
                    // since (no pin holds it once the visible seq moved on), leaving one kept
                    // for an old snapshot: only trust the answer if the visible seq did not move.
                    let at_seq = shared.index.newest_at(key, seq);
                    let now = shared.visible_seq.load(Ordering::Acquire);
                    if now != seq {
                        seq = now;
                        continue;
                    }
                    at_seq
                }
                None => None,
            };
            if let Some((found_seq, version)) = found {
                // The clock is read only for a record with a TTL.
                let now_ms = if version.expires_at_ms == 0 { 0 } else { shared.now_ms() };
                if !version.is_live(now_ms) {
                    return Ok(None);
                }
                let table = shared.segments.load();
                if table.get(version.segment_id).is_none() {
                    // Its segment was compacted and retired since the lookup: the entry is
                    // gone from the index too, and the record is in the cold tier. Look again.
                    continue;
                }
                if table.retired.contains(&version.segment_id) {
                    // Compacted: this table's cold set supersedes the entry (`ReadView::get`).
                    return crate::read::get_cold(shared, &table, key, None, None);
                }
                return crate::read::resolve_keyed(shared, &table, key, found_seq, &version).map(Some);
            }
            if only_newer_versions {
                // Only newer versions exist: either the key is new since `seq`, or pruning
                // removed the version `seq` saw because the visible seq moved on. Re-read it.
                let now = shared.visible_seq.load(Ordering::Acquire);
                if now != seq {
                    seq = now;
                    continue;
                }
            }
            // No version in the index at `seq`: the cold tier of a table loaded after the
            // lookup (a retirement removes index entries only after publishing their cold set).
            return crate::read::get_cold(shared, &shared.segments.load(), key, None, None);
        }
        let (_pin, view) = shared.pinned_view();
        view.get(shared, key)
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
