//! Background writeback: an fdatasync of a file that is being appended to, run on a thread
//! of its own through a second, read-only description of the file, so that the appender goes
//! on writing while the disk catches up (RocksDB's `bytes_per_sync`). The active segment
//! (`log/writer.rs`) keeps one.
//!
//! **Invariant:** at most one writeback of a file is in flight; `start` is called only
//! after `finish` collected the previous one. A writeback's success makes durable every byte
//! handed to the OS before it started (`upto`); its failure is the file's, as a failed
//! fdatasync of the appender's own descriptor would be (the kernel may have dropped the
//! pages it failed to write), and the owner must treat the file as broken.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::io::fs;
use crate::io::vfs::{File, OpenMode, Vfs};
use crate::{Error, Result};

/// The background writebacks of one file.
pub(crate) struct Writeback {
    path: PathBuf,
    /// The second description, opened at the first `start`.
    file: Option<Arc<File>>,
    in_flight: Option<InFlight>,
    /// How far the last started writeback reaches (0 before the first).
    started_upto: u64,
}

struct InFlight {
    upto: u64,
    done: JoinHandle<Result<()>>,
}

impl Writeback {
    pub(crate) fn new(path: PathBuf) -> Writeback {
        Writeback { path, file: None, in_flight: None, started_upto: 0 }
    }

    /// How far the last started writeback reaches (0 before the first).
    pub(crate) fn started_upto(&self) -> u64 {
        self.started_upto
    }

    /// A writeback is running (started, its thread not yet done).
    pub(crate) fn is_running(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|w| !w.done.is_finished())
    }

    /// Starts an fdatasync that covers every byte handed to the OS before `upto`. Nothing
    /// starts when the second description cannot be opened or no thread spawned: the
    /// owner's own fdatasync at the end does all the work then.
    pub(crate) fn start(&mut self, vfs: &dyn Vfs, upto: u64) {
        assert!(self.in_flight.is_none(), "one writeback at a time: finish the previous one first");
        let file = match &self.file {
            Some(file) => file.clone(),
            None => match vfs.open(&self.path, OpenMode::Read) {
                Ok(file) => self.file.insert(Arc::new(file)).clone(),
                Err(_) => return,
            },
        };
        let path = self.path.clone();
        let spawned = std::thread::Builder::new().name("strata-writeback".into()).spawn(move || fs::sync_data(file.as_ref(), &path));
        if let Ok(done) = spawned {
            self.in_flight = Some(InFlight { upto, done });
            self.started_upto = upto;
        }
    }

    /// Waits for the writeback in flight, if any: `Ok(Some(upto))` when it succeeded (every
    /// byte before `upto` is durable), `Ok(None)` when none was in flight, its error (or its
    /// thread's panic, as `Poisoned`) when it failed.
    pub(crate) fn finish(&mut self) -> Result<Option<u64>> {
        let Some(in_flight) = self.in_flight.take() else { return Ok(None) };
        let outcome = in_flight
            .done
            .join()
            .unwrap_or_else(|_| Err(Error::Poisoned { cause: format!("the background writeback of {} panicked", self.path.display()) }));
        outcome.map(|()| Some(in_flight.upto))
    }
}
