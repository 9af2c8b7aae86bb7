//! Group commit: writers queue their encoded commits; one of them at a time becomes the
//! leader, writes every queued commit with one `write` and (under `Durability::Sync`) one
//! fsync, publishes them, and wakes the others.
//!
//! **Invariant:** commits reach the log in seq order, and seq is assigned in queue order,
//! under the queue lock; the lock is never held across I/O.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::record::{self, RecordView};
use crate::io::aligned::{AlignedBytes, AlignedVec};
use crate::{Error, Result};

/// A commit encoded outside any lock, waiting for its seq.
pub(crate) struct EncodedCommit {
    pub(crate) buffer: AlignedVec,
    /// Each record's view (seq 0 for now) and body checksum state.
    pub(crate) records: Vec<(RecordView, crc32fast::Hasher)>,
    /// key + content + embedding bytes, for write amplification.
    pub(crate) logical_bytes: u64,
}

/// A commit with its seq, ready for the log.
pub(crate) struct PendingCommit {
    pub(crate) seq: u64,
    pub(crate) bytes: Arc<AlignedBytes>,
    pub(crate) views: Vec<RecordView>,
    pub(crate) logical_bytes: u64,
    /// The thread that submitted it (group commit waits a little for the previous group's
    /// writers, see `Shared::append_group`).
    pub(crate) writer: std::thread::ThreadId,
}

struct QueueState {
    next_seq: u64,
    pending: Vec<PendingCommit>,
    leader_active: bool,
    /// Writers blocked in `wait_or_lead` or `lead_remaining`.
    waiters: usize,
    /// Every commit with seq <= this has finished (durable, or failed).
    finished_seq: u64,
    /// Commits with seq >= .0 failed, and the handle is poisoned with cause .1.
    failed_from: Option<(u64, String)>,
    closed: bool,
}

/// What a waiting writer is told to do.
pub(crate) enum Turn {
    /// The commit finished with this result.
    Finished(Result<()>),
    /// Lead: write these commits, then call [`CommitQueue::finish_group`].
    Lead(Vec<PendingCommit>),
}

pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

impl CommitQueue {
    /// `last_seq` is the newest seq on disk; the next commit gets `last_seq + 1`.
    pub(crate) fn new(last_seq: u64) -> Self {
        CommitQueue {
            state: Mutex::new(QueueState {
                next_seq: last_seq + 1,
                pending: Vec::new(),
                leader_active: false,
                waiters: 0,
                finished_seq: last_seq,
                failed_from: None,
                closed: false,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Sound past a poisoned lock: no critical section of this type calls anything that
        // can panic while the state is half-updated (they only move plain values), so the
        // state is consistent; a panic elsewhere in a leader is handled by `abandon_group`.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(state: &QueueState) -> Result<()> {
        if let Some((_, cause)) = &state.failed_from {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        if state.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Is the handle still accepting writes?
    pub(crate) fn check_open(&self) -> Result<()> {
        Self::refuse(&self.lock())
    }

    /// Assigns the next seq, stamps the records with it, and queues the commit.
    pub(crate) fn submit(&self, commit: EncodedCommit) -> Result<u64> {
        let EncodedCommit { mut buffer, records, logical_bytes } = commit;
        let mut state = self.lock();
        Self::refuse(&state)?;
        let seq = state.next_seq;
        if seq > crate::limits::SEQ_MAX {
            return Err(Error::invalid("seq", "the database has used every sequence number up to SEQ_MAX"));
        }
        state.next_seq += 1;
        let last = records.len() - 1;
        let mut views = Vec::with_capacity(records.len());
        for (i, (mut view, body)) in records.into_iter().enumerate() {
            let range = view.start()..view.start() + view.len;
            record::stamp(&mut buffer.bytes_mut()[range], &mut view, seq, i == last, &body);
            views.push(view);
        }
        let writer = std::thread::current().id();
        state.pending.push(PendingCommit { seq, bytes: Arc::new(buffer.freeze()), views, logical_bytes, writer });
        Ok(seq)
    }

    /// Blocks until commit `seq` has finished, or until this thread should lead.
    pub(crate) fn wait_or_lead(&self, seq: u64) -> Turn {
        let mut state = self.lock();
        loop {
            if state.finished_seq >= seq {
                return Turn::Finished(match &state.failed_from {
                    Some((from, cause)) if seq >= *from => Err(Error::Poisoned { cause: cause.clone() }),
                    _ => Ok(()),
                });
            }
            if !state.leader_active {
                state.leader_active = true;
                return Turn::Lead(std::mem::take(&mut state.pending));
            }
            state.waiters += 1;
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiters -= 1;
        }
    }

    /// For the active leader: takes commits queued since its turn began (they will share
    /// its fsync). Never blocks.
    pub(crate) fn take_late_joiners(&self) -> Vec<PendingCommit> {
        let mut state = self.lock();
        debug_assert!(state.leader_active);
        std::mem::take(&mut state.pending)
    }

    /// Ends a leader's turn over a group whose newest seq is `last_seq`.
    pub(crate) fn finish_group(&self, last_seq: u64, first_seq: u64, outcome: Result<(), String>) {
        let mut state = self.lock();
        debug_assert!(state.leader_active);
        state.leader_active = false;
        state.finished_seq = state.finished_seq.max(last_seq);
        if let Err(cause) = outcome {
            state.failed_from = match state.failed_from.take() {
                Some((from, earlier)) => Some((from.min(first_seq), earlier)),
                None => Some((first_seq, cause)),
            };
            // Nothing queued after a failure can be written: fail it all.
            let pending_last = state.pending.iter().map(|c| c.seq).max();
            state.pending.clear();
            if let Some(seq) = pending_last {
                state.finished_seq = state.finished_seq.max(seq);
            }
        }
        let anyone_waiting = state.waiters > 0;
        drop(state);
        if anyone_waiting {
            self.wake.notify_all();
        }
    }

    /// Ends a leader's turn that did not finish (its thread panicked): the handle is
    /// poisoned, every commit queued or in flight fails, and every waiting writer is woken,
    /// so no writer waits for a leader that is gone.
    pub(crate) fn abandon_group(&self, first_seq: u64, cause: String) {
        let mut state = self.lock();
        state.leader_active = false;
        state.failed_from = match state.failed_from.take() {
            Some((from, earlier)) => Some((from.min(first_seq), earlier)),
            None => Some((first_seq, cause)),
        };
        state.pending.clear();
        state.finished_seq = state.finished_seq.max(state.next_seq - 1);
        drop(state);
        self.wake.notify_all();
    }

    /// Refuses every later `submit`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Waits until no leader is active, then takes the lead over whatever is still queued
    /// (commits queued before `close`). `None` when nothing is left.
    pub(crate) fn lead_remaining(&self) -> Option<Vec<PendingCommit>> {
        let mut state = self.lock();
        while state.leader_active {
            state.waiters += 1;
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiters -= 1;
        }
        if state.pending.is_empty() {
            return None;
        }
        state.leader_active = true;
        Some(std::mem::take(&mut state.pending))
    }

    /// Poisons the handle outside a commit (a failed `sync` or `seal`): every commit not
    /// yet finished fails, and so does every later one.
    pub(crate) fn poison(&self, cause: String) {
        let mut state = self.lock();
        let from = state.finished_seq + 1;
        state.failed_from = match state.failed_from.take() {
            Some((earlier_from, earlier)) => Some((earlier_from.min(from), earlier)),
            None => Some((from, cause)),
        };
    }
}
