//! Background maintenance (DESIGN.md contract 11): one thread per writable handle moves
//! sealed (warm) segments into the cold tier, so that a host that never calls `compact()`
//! still gets bounded disk and a cold tier to search; writers are slowed, then stopped,
//! while it falls behind (write stalls), never left to grow the warm tier without bound.
//!
//! **Control loop.** The writer kicks the worker whenever a segment is sealed (and open
//! kicks it once). A kicked worker runs a compaction when the warm bytes reach the high
//! watermark (`watermark`: a quarter of the cold tier, at least one segment, at most
//! `Options::compaction_warm_bytes`); a run moves every warm segment, so it ends at zero.
//! Runs start at least `compaction_interval_min` apart. A failed run (ENOSPC, EIO, a failed
//! free-space check) is retried after an exponential backoff
//! (`BACKOFF_MIN` doubling up to `BACKOFF_MAX`); its error is kept for
//! `Stats::last_background_error` until a run succeeds. Reads never depend on the worker;
//! a failed run poisons writes only where compaction itself does (a MANIFEST whose install
//! may or may not have happened).
//!
//! **Idle.** After `compaction_idle` (default 10 s) without a write, when anything is warm
//! or at least 1 MiB is hot, the worker seals the active segment and compacts everything (as
//! `compact()` does), so that a database left alone ends fully compacted: no stale versions
//! on disk, the whole data set searchable at the cold tier's speed. On every wakeup it also
//! finishes the retirements no reader holds up any more, and while one is held up it wakes
//! again after a short delay (1 ms, doubling up to 1 s): nothing signals a reader letting
//! go, and the retired segments' index entries slow every get of the keys they cover.
//! With nothing to do after the idle period it sleeps a whole period at a time.
//!
//! **Write stalls.** Before a commit is queued: past `stall_bytes_soft` pending (warm)
//! bytes it is delayed by up to `STALL_DELAY_MAX`, growing linearly towards
//! `stall_bytes_hard`; past the hard limit the writer waits until a run brings the warm
//! bytes back under it — or, when the last run failed, gets that error at once (the write
//! changes nothing; it succeeds again once compaction catches up).
//!
//! **Stop.** `close` sets `stopping`, wakes everyone and joins the thread; a background
//! compaction checks `stopping` (its `Pace`) at every write and every 4096 merged rows and
//! abandons its unpublished files.
//!
//! Why a state machine under one mutex rather than a channel of jobs: the work is
//! level-triggered (how many warm bytes there are), not a queue of requests, and the
//! waiters (`wait_for_compaction`, stalled writers) need the same state the worker keeps
//! — running or not, runs finished, the last error.
//!
//! **Lock order:** `Shared::compaction`, the writer slot, then `state` (a roll kicks while
//! holding the slot); the worker takes neither the slot nor `Shared::compaction` while
//! holding `state` (it retires and compacts with `state` released).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::db::Shared;
use crate::{Error, Result};

/// First retry delay after a failed background run; doubles per consecutive failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay after failed background runs.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest delay a soft write stall adds to one commit.
const STALL_DELAY_MAX: Duration = Duration::from_millis(1);
/// The relative watermark: warm bytes per cold byte at which a run starts (`watermark`).
const WARM_PER_COLD: f64 = 0.25;
/// Hot bytes an idle run needs at least when nothing is warm (a trickle of writes waits for more).
const IDLE_BYTES_MIN: u64 = 1 << 20;
/// Shortest sleep of an idle worker between two looks at the idle condition.
const IDLE_RECHECK_MIN: Duration = Duration::from_millis(10);
/// First delay before the worker looks again at a retirement a reader holds up (the reader
/// may be a get that loaded the table just before the compaction published); doubles per
/// look while it waits.
const RETIRE_RETRY_MIN: Duration = Duration::from_millis(1);
/// Longest delay between two looks at a retirement a reader holds up (an iterator or a
/// snapshot kept open).
const RETIRE_RETRY_MAX: Duration = Duration::from_secs(1);

/// The worker's state, shared with the threads that wait on it.
#[derive(Default)]
struct State {
    /// Something changed that may call for a run (a seal, a `wait_for_compaction`).
    kicked: bool,
    /// `close` is stopping the worker.
    stopping: bool,
    /// A background compaction is in progress.
    running: bool,
    /// Background runs finished, successful or not.
    runs: u64,
    /// Consecutive failed runs (the backoff exponent); 0 after a success.
    failures: u32,
    /// The last failed run's error, until a run succeeds.
    last_error: Option<(std::io::ErrorKind, String)>,
    /// No run starts before this instant (the minimum interval, or the backoff).
    not_before: Option<Instant>,
}

/// Counters of compaction work, explicit and background (`Stats`).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) compactions: AtomicU64,
    pub(crate) bytes_compacted: AtomicU64,
    pub(crate) bytes_reclaimed: AtomicU64,
    pub(crate) stall_us: AtomicU64,
}

/// The background worker of one handle, and what writers and waiters share with it.
pub(crate) struct Maintenance {
    state: Mutex<State>,
    /// Wakes the worker (a kick, or stop).
    wake: Condvar,
    /// Wakes `wait_for_compaction` and stalled writers: a run ended, or the worker looked
    /// and found nothing to do, or stop.
    progress: Condvar,
    /// Also readable without the lock: checked by a running compaction (its `Pace`).
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) counters: Counters,
    /// When this handle's last commit group was written, in ms since `epoch`.
    last_write_ms: AtomicU64,
    epoch: Instant,
}

impl Maintenance {
    pub(crate) fn new() -> Maintenance {
        Maintenance {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
            counters: Counters::default(),
            last_write_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A commit group was written (the idle clock restarts).
    pub(crate) fn note_write(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_write_ms.store(ms, Ordering::Relaxed);
    }

    fn since_last_write(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last_write_ms.load(Ordering::Relaxed)))
    }

    /// A panic while the state was held (a bug) leaves the state consistent enough: every
    /// field is a plain value. Recovered rather than propagated into writers.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            poisoned.into_inner()
        })
    }

    /// Starts the worker of a writable handle with `auto_compact` on, and kicks it once
    /// (the database may already hold warm data past the watermark).
    pub(crate) fn start(shared: &Arc<Shared>) -> Result<()> {
        if shared.read_only || !shared.options.maintenance.auto_compact {
            return Ok(());
        }
        let weak = Arc::downgrade(shared);
        let maintenance = shared.maintenance.clone();
        let handle = std::thread::Builder::new()
            .name("strata-maintenance".into())
            .spawn(move || worker(&maintenance, &weak))
            .map_err(|e| Error::io_at(&shared.dir, "start the maintenance thread for", e))?;
        *shared.maintenance.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        shared.maintenance.kick();
        Ok(())
    }

    /// Tells the worker that a run may be needed.
    pub(crate) fn kick(&self) {
        self.lock().kicked = true;
        self.wake.notify_one();
    }

    /// The stop signal a background compaction's `Pace` watches.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Stops the worker and waits for it (a running compaction abandons its work). Idempotent.
    pub(crate) fn stop(&self) {
        {
            let mut state = self.lock();
            state.stopping = true;
            self.stopping.store(true, Ordering::Release);
        }
        self.wake.notify_all();
        self.progress.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join(); // a panic in the worker was already caught and recorded
            }
        }
    }

    /// The last failed background run's error, until a run succeeds (`Stats`).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lock().last_error.as_ref().map(|(_, message)| message.clone())
    }

    /// Blocks until background maintenance has nothing left to do: no run in progress and
    /// the warm bytes under the watermark. `Err` with the run's error when a run that ended
    /// after the call began failed. `Ok` at once without `auto_compact`.
    pub(crate) fn wait_idle(&self, shared: &Shared) -> Result<()> {
        if shared.read_only || !shared.options.maintenance.auto_compact {
            return Ok(());
        }
        let mut state = self.lock();
        let runs_at_start = state.runs;
        state.kicked = true;
        self.wake.notify_one();
        loop {
            if state.stopping {
                return Ok(());
            }
            if let (false, true, Some(error)) = (state.running, state.runs > runs_at_start, &state.last_error) {
                return Err(background_error(error));
            }
            if !state.running && !state.kicked && !needs_run(shared) {
                return Ok(());
            }
            state = self.progress.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The write stall, before a commit is queued (module comment).
    pub(crate) fn throttle(&self, shared: &Shared) -> Result<()> {
        let options = &shared.options.maintenance;
        if !options.auto_compact {
            return Ok(());
        }
        let pending = warm_bytes(shared);
        if pending <= options.stall_bytes_soft {
            return Ok(());
        }
        let start = Instant::now();
        let result = if pending < options.stall_bytes_hard {
            let span = (options.stall_bytes_hard - options.stall_bytes_soft).max(1);
            let fraction = (pending - options.stall_bytes_soft) as f64 / span as f64;
            std::thread::sleep(STALL_DELAY_MAX.mul_f64(fraction.min(1.0)));
            Ok(())
        } else {
            self.wait_under_hard_limit(shared)
        };
        let stalled = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters.stall_us.fetch_add(stalled, Ordering::Relaxed);
        result
    }

    fn wait_under_hard_limit(&self, shared: &Shared) -> Result<()> {
        let hard = shared.options.maintenance.stall_bytes_hard;
        let mut state = self.lock();
        loop {
            if state.stopping || warm_bytes(shared) < hard {
                return Ok(());
            }
            if let (false, Some(error)) = (state.running, &state.last_error) {
                return Err(background_error(error));
            }
            state.kicked = true;
            self.wake.notify_one();
            state = self.progress.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn background_error((kind, message): &(std::io::ErrorKind, String)) -> Error {
    Error::Io(std::io::Error::new(*kind, format!("background compaction failed: {message}")))
}

/// Sealed bytes not yet compacted: what background compaction has pending.
pub(crate) fn warm_bytes(shared: &Shared) -> u64 {
    shared.segments.load().warm().map(|s| s.file_len()).sum()
}

fn needs_run(shared: &Shared) -> bool {
    warm_bytes(shared) >= watermark(shared)
}

/// The warm bytes at which a background run starts: a quarter of the cold tier's bytes
/// (`WARM_PER_COLD`), at least one log segment, at most `compaction_warm_bytes`. Relative
/// while the cold tier is small, so that a small database does not carry up to 256 MiB of
/// stale versions; absolute once it is large. Either way a run rewrites at most about
/// `1 / WARM_PER_COLD` bytes of cold data per warm byte it moves (write amplification).
pub(crate) fn watermark(shared: &Shared) -> u64 {
    let options = &shared.options;
    let cold: u64 = shared.segments.load().cold.segments.iter().map(|s| s.file_len()).sum();
    ((cold as f64 * WARM_PER_COLD) as u64).max(options.segment_bytes_max).min(options.maintenance.warm_bytes_high).max(1)
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// Is an idle run due: no write for `idle`, and something sealed is still warm, or at least
/// `IDLE_BYTES_MIN` are hot (so a trickle of writes is not compacted record by record)?
fn idle_due(maintenance: &Maintenance, shared: &Shared) -> bool {
    let idle = shared.options.maintenance.idle;
    maintenance.since_last_write() >= idle && (warm_bytes(shared) > 0 || hot_bytes(shared) >= IDLE_BYTES_MIN)
}

/// How long a worker with nothing to do sleeps, `since_last_write` after the last write:
/// until the idle period ends, or a whole period once it has ended (nothing changes by
/// itself until the next write; polling then would wake the thread for nothing).
fn idle_wait(idle: Duration, since_last_write: Duration) -> Duration {
    let rest = idle.saturating_sub(since_last_write);
    if rest.is_zero() { idle } else { rest }.max(IDLE_RECHECK_MIN)
}

/// Bytes of records in the active segment (its mirror), header excluded.
fn hot_bytes(shared: &Shared) -> u64 {
    let table = shared.segments.load();
    table
        .segments
        .values()
        .filter_map(|s| match s {
            crate::segments::SegmentRef::Hot(hot) => Some(hot.end().saturating_sub(crate::log::header::SEGMENT_HEADER_LEN as u64)),
            crate::segments::SegmentRef::Sealed(_) => None,
        })
        .sum()
}

/// The worker thread's body: wait for a kick or the idle timeout (respecting
/// `not_before`), run if needed, record the outcome, wake the waiters. Holds the handle only
/// during a check or a run, so a handle dropped without `close` is not kept alive by its worker.
fn worker(maintenance: &Maintenance, weak: &Weak<Shared>) {
    let mut retire_retry = RETIRE_RETRY_MIN;
    loop {
        // Compacted segments whose readers have gone: their index entries, map and file go
        // now, not only at the next write (a database left alone frees them too). Before
        // `state` is taken: retiring takes the writer slot, which comes first in the order.
        // While one waits for a reader the worker looks again after `retire_retry`.
        let retire_pending = match weak.upgrade() {
            Some(shared) => shared.finish_retirements(),
            None => return,
        };
        let retire_wait = if retire_pending {
            let wait = retire_retry;
            retire_retry = (retire_retry * 2).min(RETIRE_RETRY_MAX);
            Some(wait)
        } else {
            retire_retry = RETIRE_RETRY_MIN;
            None
        };
        let mut state = maintenance.lock();
        if state.stopping {
            return;
        }
        let now = Instant::now();
        if let Some(at) = state.not_before.filter(|&at| at > now) {
            let timeout = retire_wait.map_or(at - now, |wait| wait.min(at - now));
            drop(maintenance.wake.wait_timeout(state, timeout).unwrap_or_else(|p| p.into_inner()));
            continue;
        }
        let kicked = std::mem::take(&mut state.kicked);
        let Some(shared) = weak.upgrade() else { return };
        let trigger = if kicked && needs_run(&shared) {
            Some(crate::compact::Trigger::Background)
        } else if idle_due(maintenance, &shared) {
            Some(crate::compact::Trigger::Idle)
        } else {
            None
        };
        let Some(trigger) = trigger else {
            let idle = shared.options.maintenance.idle;
            if maintenance.since_last_write() >= idle {
                shared.writer.buffers.clear(); // idle: the commit buffers' maps go back to the system
            }
            drop(shared);
            if kicked {
                maintenance.progress.notify_all(); // looked, and found nothing to do
            }
            // Until the idle period since the last write ends; once it has ended with nothing
            // to do, a whole period again (a write meanwhile makes the next look wait for the
            // rest of its own period). A retirement waiting for a reader looks sooner.
            let timeout = idle_wait(idle, maintenance.since_last_write());
            let timeout = retire_wait.map_or(timeout, |wait| wait.min(timeout));
            drop(maintenance.wake.wait_timeout(state, timeout).unwrap_or_else(|p| p.into_inner()));
            continue;
        };
        state.running = true;
        drop(state);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::compact::compact(&shared, trigger)));
        let mut state = maintenance.lock();
        state.running = false;
        state.runs += 1;
        match outcome {
            Ok(Ok(())) => {
                state.failures = 0;
                state.last_error = None;
                state.not_before = Some(started + shared.options.maintenance.interval_min);
                state.kicked = true; // writes during the run may have sealed more
            }
            Ok(Err(_)) if state.stopping => {}
            Ok(Err(error)) => {
                state.failures = state.failures.saturating_add(1);
                let kind = match &error {
                    Error::Io(e) => e.kind(),
                    _ => std::io::ErrorKind::Other,
                };
                state.last_error = Some((kind, error.to_string()));
                state.not_before = Some(Instant::now() + backoff(state.failures));
                state.kicked = true; // retried after the backoff
            }
            Err(_) => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some((std::io::ErrorKind::Other, "a panic in background compaction (a bug in strata)".into()));
                state.not_before = Some(Instant::now() + backoff(state.failures));
            }
        }
        drop(state);
        drop(shared);
        maintenance.progress.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_sleeps_until_the_idle_period_ends_then_a_whole_period() {
        let idle = Duration::from_secs(10);
        assert_eq!(idle_wait(idle, Duration::from_secs(3)), Duration::from_secs(7));
        assert_eq!(idle_wait(idle, Duration::from_millis(9_995)), IDLE_RECHECK_MIN);
        // Past the period with nothing to do: a whole period, not a 10 ms poll.
        assert_eq!(idle_wait(idle, idle), idle);
        assert_eq!(idle_wait(idle, Duration::from_secs(3600)), idle);
        assert_eq!(idle_wait(Duration::ZERO, Duration::from_secs(1)), IDLE_RECHECK_MIN);
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(4), BACKOFF_MIN * 8);
        assert_eq!(backoff(40), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
