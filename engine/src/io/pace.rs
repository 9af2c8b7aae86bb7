//! `Pace`: the I/O rate limit and stop signal of background compaction
//! (`Options::compaction_bytes_per_sec`). The cold segment writer hands every write to
//! [`Pace::admit`] before it reaches the file: the writes of one run are spread so that the
//! run's bytes never get ahead of `bytes_per_sec × elapsed` by more than one write, and a
//! stop request (the handle closing) ends the run at the next write instead of after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest single sleep, so that a stop request is seen promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// The budget of one background run.
pub(crate) struct Pace {
    /// 0: unlimited.
    bytes_per_sec: u64,
    start: Instant,
    written: std::sync::atomic::AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Pace {
    pub(crate) fn new(bytes_per_sec: u64, stop: Arc<AtomicBool>) -> Pace {
        Pace { bytes_per_sec, start: Instant::now(), written: Default::default(), stop }
    }

    /// Err when the run must stop (the handle is closing). Not `ErrorKind::Interrupted`:
    /// `write_all` and `BufWriter` retry an interrupted write forever.
    pub(crate) fn check_stop(&self) -> std::io::Result<()> {
        if self.stop.load(Ordering::Acquire) {
            return Err(std::io::Error::other("stopped: the database is closing"));
        }
        Ok(())
    }

    /// Accounts for a write of `len` bytes about to happen, sleeping first as long as the
    /// bytes written so far are ahead of the rate.
    pub(crate) fn admit(&self, len: usize) -> std::io::Result<()> {
        self.check_stop()?;
        let written = self.written.fetch_add(len as u64, Ordering::Relaxed);
        if self.bytes_per_sec == 0 {
            return Ok(());
        }
        let due = Duration::from_secs_f64(written as f64 / self.bytes_per_sec as f64);
        loop {
            let elapsed = self.start.elapsed();
            if elapsed >= due {
                return Ok(());
            }
            std::thread::sleep((due - elapsed).min(SLEEP_SLICE));
            self.check_stop()?;
        }
    }
}

/// A writer whose writes are admitted by a [`Pace`] first (none: passed straight through).
pub(crate) struct Paced<'p, W> {
    pub(crate) inner: W,
    pub(crate) pace: Option<&'p Pace>,
}

impl<W: std::io::Write> std::io::Write for Paced<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(pace) = self.pace {
            pace.admit(buf.len())?;
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_request_ends_the_next_admission() {
        let stop = Arc::new(AtomicBool::new(false));
        let pace = Pace::new(0, stop.clone());
        pace.admit(1 << 20).expect("admitted while running");
        stop.store(true, Ordering::Release);
        let error = pace.admit(1).expect_err("refused once stopping");
        assert_ne!(error.kind(), std::io::ErrorKind::Interrupted, "write_all would retry it forever");
    }

    #[test]
    fn the_first_write_is_never_delayed_and_the_rate_is_accounted() {
        let pace = Pace::new(1, Arc::new(AtomicBool::new(false)));
        pace.admit(1_000_000).expect("the first write goes at once: nothing was written before it");
        assert_eq!(pace.written.load(Ordering::Relaxed), 1_000_000);
    }
}
