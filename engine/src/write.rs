//! The write path and its one owner, [`Writer`]: the commit queue, the active segment (the
//! log writer slot), group commit, seals, pruning after a group, the write totals, and the
//! single poison path.
//!
//! A write flows: validate → encode (no lock) → queue with a seq (`log::commit`) → the
//! group leader appends the group to the active segment, makes it durable per
//! `Durability`, inserts the versions in the index and advances `visible_seq` → the
//! writers return. Pruning of the versions the group superseded runs after the queue is
//! released.
//!
//! **Poisoning.** A failed write or fsync may have left a partial commit in the active
//! segment's buffer or file, and a failed fsync leaves unknown what reached the disk. Every
//! such failure goes through [`Writer::poison`]: the active segment is dropped (it writes
//! nothing on drop, not even a close mark) and the queue refuses every later write with
//! `Error::Poisoned`; reads go on. [`Writer::refuse_writes`] is the same for a failure that
//! leaves the log intact but the handle unsure of its own state (a MANIFEST rename that may
//! or may not have happened, a panic while an engine lock was held): the queue refuses
//! writes and the active segment is left as it is, so `close` still marks a clean end.
//!
//! **Locks** (their place in the engine's order is written on `Shared`): `slot` (the
//! writer slot), and under it only `previous_group_writers`; `deferred_prune` is taken
//! after a group, with the slot released.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::batch::{self, WriteOp};
use crate::db::Shared;
use crate::index::Version;
use crate::io::aligned::BufferPool;
use crate::log::commit::{CommitQueue, PendingCommit, Turn};
use crate::log::writer::ActiveSegment;
use crate::segments::SegmentRef;
use crate::{Durability, Error, Result};

/// Deferred keys a leader re-prunes per group when no snapshot was released.
const DEFERRED_PRUNE_PER_GROUP: usize = 8;

/// How many times a group leader takes commits queued during its appends before its fsync.
const LATE_JOIN_ROUNDS: usize = 2;
/// Most CPU yields a Sync leader spends waiting for the previous group's writers to rejoin.
const JOIN_YIELDS_MAX: usize = 16;

fn lost_writer() -> Error {
    Error::Poisoned { cause: "the log writer was lost to an earlier failure".into() }
}

/// The writer slot, held: a commit group, a seal, a compaction's install, a retirement's
/// table swap. Holding one is what [`crate::segments::PublishedTable::publish`] asks for.
pub(crate) type WriterSlot<'a> = MutexGuard<'a, Option<ActiveSegment>>;

/// The owner of the write path of one handle. `None` in the slot: read-only, closed, or
/// poisoned (the queue then says which).
pub(crate) struct Writer {
    queue: CommitQueue,
    /// The active segment; `None` when read-only, closed, or after a failed write.
    slot: Mutex<Option<ActiveSegment>>,
    /// The writer threads of the last group (leader-only; see `take_late_joiners`).
    previous_group_writers: Mutex<Vec<ThreadId>>,
    /// Keys whose superseded versions a snapshot kept, with the release count at that time.
    deferred_prune: Mutex<(u64, VecDeque<Box<[u8]>>)>,
    /// Logical bytes the host wrote (keys, contents, embeddings) through this handle and
    /// the ones before it (restored from the MANIFEST's totals at open).
    pub(crate) logical_bytes_written: AtomicU64,
    /// Bytes written to disk for them: log records, marks, trailers, compaction output.
    pub(crate) disk_bytes_written: AtomicU64,
    /// Maps for commits' buffers, reused (`io/aligned.rs`); emptied when the writer is idle.
    pub(crate) buffers: Arc<BufferPool>,
}

impl Writer {
    /// `last_seq`: the newest seq recovered; `written`: the totals (logical, disk) to start from.
    pub(crate) fn new(last_seq: u64, active: Option<ActiveSegment>, written: (u64, u64)) -> Writer {
        Writer {
            queue: CommitQueue::new(last_seq),
            slot: Mutex::new(active),
            previous_group_writers: Mutex::new(Vec::new()),
            deferred_prune: Mutex::new((0, VecDeque::new())),
            logical_bytes_written: AtomicU64::new(written.0),
            disk_bytes_written: AtomicU64::new(written.1),
            buffers: Arc::new(BufferPool::default()),
        }
    }

    /// The writer slot. A panic while it was held (a bug in strata) may have left a
    /// partial commit in the active segment's buffer or file: the writer is dropped (it
    /// writes nothing on drop) and the handle poisoned, never written through again.
    pub(crate) fn slot(&self) -> WriterSlot<'_> {
        match self.slot.lock() {
            Ok(slot) => slot,
            Err(poisoned) => {
                let mut slot = poisoned.into_inner();
                self.slot.clear_poison();
                if slot.is_some() {
                    self.poison(&mut slot, "a panic while writing the log".into());
                }
                slot
            }
        }
    }

    /// The poison path: drops the active segment held in `slot` (its file may hold a
    /// partial commit, or bytes a failed fsync left unknown) and refuses every later write.
    pub(crate) fn poison(&self, slot: &mut Option<ActiveSegment>, cause: String) {
        *slot = None;
        self.queue.poison(cause);
    }

    /// Refuses every later write with `Error::Poisoned { cause }`, leaving the active
    /// segment intact (see the module doc).
    pub(crate) fn refuse_writes(&self, cause: String) {
        self.queue.poison(cause);
    }

    /// `Ok` while writes are accepted; else `Closed` or `Poisoned`.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.queue.check_open()
    }

    /// `Db::sync`: flushes and fsyncs the active segment.
    pub(crate) fn sync(&self) -> Result<()> {
        self.check_open()?;
        let mut slot = self.slot();
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        if let Err(e) = writer.sync() {
            self.poison(&mut slot, e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Flushes the active segment so its file holds every published byte, then runs
    /// `capture` with the slot held (no commit half-written); `published_state`.
    pub(crate) fn flushed<T>(&self, capture: impl FnOnce() -> T) -> Result<T> {
        let mut slot = self.slot();
        if let Some(writer) = slot.as_mut() {
            if let Err(e) = writer.flush() {
                // Part of the buffer may have reached the file: never write behind it.
                self.poison(&mut slot, e.to_string());
                return Err(e);
            }
        }
        Ok(capture())
    }

    /// `close`'s part: refuses new commits, writes the queued ones, then the clean-close
    /// mark at `shared`'s visible seq; the slot is left empty.
    pub(crate) fn close(&self, shared: &Shared) -> Result<()> {
        self.queue.close();
        while let Some(group) = self.queue.lead_remaining() {
            self.lead(shared, group);
        }
        let mut slot = self.slot();
        match slot.take() {
            Some(mut writer) => writer.write_close_mark(shared.visible_seq.load(Ordering::Acquire)),
            None => Ok(()),
        }
    }

    pub(crate) fn commit(&self, shared: &Shared, ops: &[WriteOp<'_>]) -> Result<()> {
        if shared.read_only {
            return Err(Error::ReadOnly);
        }
        if ops.len() > crate::limits::MAX_BATCH_OPS {
            return Err(Error::invalid(
                "batch",
                format!("{} operations exceeds MAX_BATCH_OPS = {}", ops.len(), crate::limits::MAX_BATCH_OPS),
            ));
        }
        for op in ops {
            batch::validate(op, shared.embedding_dim)?;
        }
        self.queue.check_open()?;
        if ops.is_empty() {
            return Ok(());
        }
        shared.maintenance.throttle(shared)?; // a write stall while compaction is behind
        let encoded = batch::encode(ops, shared.embedding_dim, shared.now_ms(), &self.buffers)?;
        let seq = self.queue.submit(encoded)?;
        loop {
            match self.queue.wait_or_lead(seq) {
                Turn::Finished(result) => return result,
                Turn::Lead(group) => self.lead(shared, group),
            }
        }
    }

    /// One leader turn: write, make durable, publish, then release the queue.
    fn lead(&self, shared: &Shared, mut group: Vec<PendingCommit>) {
        let Some(first) = group.first().map(|c| c.seq) else {
            self.queue.finish_group(0, 0, Ok(()));
            return;
        };
        let turn = LeaderTurn { queue: &self.queue, first_seq: first, finished: false };
        shared.maintenance.note_write();
        let outcome = self.write_group(shared, &mut group).map_err(|e| e.to_string());
        turn.finish();
        let last = group.last().map_or(first, |c| c.seq);
        match outcome {
            Ok(superseding) => {
                self.queue.finish_group(last, first, Ok(()));
                self.prune_after(shared, &group, &superseding);
            }
            Err(cause) => self.queue.finish_group(last, first, Err(cause)),
        }
        // Compacted segments waiting on readers.
        shared.finish_retirements();
    }

    /// Writes the group (and any late joiners, which it appends to `group`), publishes it,
    /// and returns the (commit, record) positions of records that superseded an older
    /// version of their key — the only ones pruning needs to look at.
    fn write_group(&self, shared: &Shared, group: &mut Vec<PendingCommit>) -> Result<Vec<(usize, usize)>> {
        let mut slot = self.slot();
        #[cfg(feature = "test-hooks")]
        crate::io::fs::leader_panics::panic_if_armed(&shared.dir);
        let published_end = slot.as_ref().map(|w| (w.hot.clone(), w.hot.end()));
        let placed = match self.append_group(shared, &mut slot, group) {
            Ok(placed) => placed,
            Err(e) => {
                // The file may hold a partial commit. The group's own failure (below, in
                // `lead`: `finish_group` with the error) is what refuses later writes.
                *slot = None;
                self.unpublish_hot(shared, published_end);
                return Err(e);
            }
        };
        let mut superseding = Vec::new();
        for (c, (commit, (segment_id, base))) in group.iter().zip(placed).enumerate() {
            for (r, view) in commit.views.iter().enumerate() {
                let version = Version::of_record(segment_id, base + view.start() as u32, view);
                if shared.index.insert(&commit.bytes.bytes()[view.key.clone()], commit.seq, version) {
                    superseding.push((c, r));
                }
            }
        }
        let last = group.last().map_or(0, |c| c.seq);
        debug_assert!(last > shared.visible_seq.load(Ordering::Relaxed));
        shared.visible_seq.store(last, Ordering::Release);
        Ok(superseding)
    }

    /// After a failed group: drops its commits from the hot mirrors, so that what the hot
    /// tier holds (and `published_state`, hence a checkpoint, copies) ends at the last
    /// published commit. No reader can reach them (they never reached the index). `before`:
    /// the hot mirror the group started in and its end then; a mirror of a segment the group
    /// rolled into holds nothing published.
    fn unpublish_hot(&self, shared: &Shared, before: Option<(Arc<crate::log::hot::HotSegment>, u64)>) {
        for segment in shared.segments.load().segments.values() {
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
    fn append_group(&self, shared: &Shared, slot: &mut WriterSlot<'_>, group: &mut Vec<PendingCommit>) -> Result<Vec<(u32, u32)>> {
        let mut placed = Vec::with_capacity(group.len());
        let first_seq = group.first().map_or(0, |c| c.seq);
        debug_assert_eq!(first_seq.checked_sub(1), Some(shared.visible_seq.load(Ordering::Acquire)), "seqs are consecutive");
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        let before_mark = writer.len();
        writer.begin_group(first_seq.saturating_sub(1))?;
        self.disk_bytes_written.fetch_add(writer.len() - before_mark, Ordering::Relaxed);
        let mut previous_writers = shared.lock_or_poison(&self.previous_group_writers);
        for round in 0..=LATE_JOIN_ROUNDS {
            if round > 0 {
                let late = self.take_late_joiners(shared, group, &previous_writers);
                if late.is_empty() {
                    break;
                }
                group.extend(late);
            }
            for commit in &group[placed.len()..] {
                let writer = slot.as_mut().ok_or_else(lost_writer)?;
                let base = writer.append_commit(commit.bytes.clone(), &commit.views)?;
                writer.map_written(shared.options.vfs.as_ref());
                writer.start_writeback(shared.options.vfs.as_ref())?;
                placed.push((writer.segment_id, base));
                self.logical_bytes_written.fetch_add(commit.logical_bytes, Ordering::Relaxed);
                self.disk_bytes_written.fetch_add(commit.bytes.bytes().len() as u64, Ordering::Relaxed);
                if writer.len() >= shared.options.segment_bytes_max {
                    self.roll(shared, slot)?;
                }
            }
            if shared.options.durability != Durability::Sync {
                break; // no fsync to share
            }
        }
        debug_assert_eq!(placed.len(), group.len());
        previous_writers.clear();
        previous_writers.extend(group.iter().map(|c| c.writer));
        drop(previous_writers);
        let writer = slot.as_mut().ok_or_else(lost_writer)?;
        match shared.options.durability {
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
    fn take_late_joiners(
        &self,
        shared: &Shared,
        group: &[PendingCommit],
        previous_writers: &[std::thread::ThreadId],
    ) -> Vec<PendingCommit> {
        let mut late = self.queue.take_late_joiners();
        if shared.options.durability != Durability::Sync {
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
    fn roll(&self, shared: &Shared, slot: &mut WriterSlot<'_>) -> Result<()> {
        let Some(writer) = slot.take() else { return Ok(()) };
        let segment_id = writer.segment_id;
        let before = writer.len();
        let sealed = Arc::new(writer.seal(shared.options.vfs.as_ref())?);
        self.disk_bytes_written.fetch_add(sealed.file_len() - before, Ordering::Relaxed);
        let next_id = segment_id.checked_add(1).ok_or_else(|| Error::invalid("segment id", "segment ids exhausted"))?;
        let next = ActiveSegment::create(shared.options.vfs.as_ref(), &shared.dir, next_id, shared.embedding_dim)?;
        self.disk_bytes_written.fetch_add(next.len(), Ordering::Relaxed); // its header
        let table = shared.segments.load().with(segment_id, SegmentRef::Sealed(sealed)).with(next_id, SegmentRef::Hot(next.hot.clone()));
        shared.segments.publish(slot, table);
        **slot = Some(next);
        shared.maintenance.kick(); // the warm tier grew
        Ok(())
    }

    /// Seals the active segment if it holds records (`Db::seal`, and `compact` first of
    /// all); a failure poisons the handle (the slot is left empty by `roll`).
    pub(crate) fn seal_active(&self, shared: &Shared) -> Result<()> {
        let mut slot = self.slot();
        if !slot.as_ref().is_some_and(ActiveSegment::has_records) {
            return Ok(());
        }
        if let Err(e) = self.roll(shared, &mut slot) {
            self.poison(&mut slot, e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Drops the versions the group superseded that no reader can see any more.
    /// Each version removed is marked dead in its segment (`DeadRows`) for searches.
    fn prune_after(&self, shared: &Shared, group: &[PendingCommit], superseding: &[(usize, usize)]) {
        let mut deferred = Vec::new();
        // The table holds every segment an index version points into: retirement removes a
        // segment's index entries before the segment.
        let table = shared.segments.load();
        let dead = |version: &Version| {
            if let Some(segment) = table.get(version.segment_id) {
                segment.dead_rows().mark(version.offset);
            }
        };
        if !superseding.is_empty() {
            let pins = shared.snapshots.pins_with_visible(&shared.visible_seq);
            for &(c, r) in superseding {
                let key = &group[c].bytes.bytes()[group[c].views[r].key.clone()];
                if shared.index.prune(key, &pins, dead) {
                    deferred.push(Box::from(key));
                }
            }
        }
        let mut state = shared.lock_or_poison(&self.deferred_prune);
        let releases = shared.snapshots.releases();
        // Retry deferred keys: all of them when a snapshot went away, else a few per group
        // (a version kept because a concurrent leader published past the pins frees soon).
        let budget = if state.0 == releases { DEFERRED_PRUNE_PER_GROUP } else { state.1.len() };
        state.0 = releases;
        if budget > 0 && !state.1.is_empty() {
            let pins = shared.snapshots.pins_with_visible(&shared.visible_seq);
            for _ in 0..budget.min(state.1.len()) {
                let Some(key) = state.1.pop_front() else { break };
                if shared.index.prune(&key, &pins, dead) {
                    state.1.push_back(key);
                }
            }
        }
        state.1.extend(deferred);
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
