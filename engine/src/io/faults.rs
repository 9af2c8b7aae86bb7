//! Fault injection through the I/O seam (feature `test-hooks` only): a [`FaultVfs`] wraps
//! the OS file system, counts every operation, and fails the N-th one of a chosen
//! [`FaultKind`].
//!
//! Operations are counted per kind: the count of a kind is the number of operations that
//! kind can hit (a torn write only hits writes, an EIO hits anything), so a workload run
//! once with [`FaultVfs::counting`] tells a test every N worth trying for each kind. The
//! count is deterministic for a single-threaded workload.
//!
//! fsyncs are counted but not forwarded to the disk: these tests exercise the error paths,
//! not power loss (that is `io/power_loss.rs`), and a real fsync per case would make a full
//! matrix take minutes.

use std::ffi::OsString;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::io::maps::ReadOnlyMap;
use crate::io::vfs::{File, FileInfo, OpenMode, OsVfs, Vfs, VfsFile};
use crate::{Error, Result};

/// What the injected failure looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Any operation fails with `EIO`.
    Eio,
    /// An operation that allocates space (create, write, truncate/extend, mkdir, link,
    /// fsync) fails with `ENOSPC`.
    Enospc,
    /// A write stores about half of its buffer and reports that short length; the next
    /// write to the same file fails with `ENOSPC` (the disk filled up meanwhile).
    ShortWrite,
    /// A write stores about half of its buffer and then fails with `EIO`: a prefix
    /// landed, the call reports an error.
    TornWrite,
    /// An fdatasync of a file or fsync of a directory fails with `EIO`.
    Fsync,
    /// A rename fails with `EIO`.
    Rename,
    /// An unlink fails with `EIO`.
    Unlink,
}

impl FaultKind {
    /// Every kind, for test matrices.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Eio,
        FaultKind::Enospc,
        FaultKind::ShortWrite,
        FaultKind::TornWrite,
        FaultKind::Fsync,
        FaultKind::Rename,
        FaultKind::Unlink,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Can this kind hit `op`?
    fn applies_to(self, op: Op) -> bool {
        match self {
            FaultKind::Eio => op != Op::Seek,
            FaultKind::Enospc => matches!(op, Op::Create | Op::Write | Op::SetLen | Op::CreateDir | Op::HardLink | Op::Sync),
            FaultKind::ShortWrite | FaultKind::TornWrite => op == Op::Write,
            FaultKind::Fsync => op == Op::Sync,
            FaultKind::Rename => op == Op::Rename,
            FaultKind::Unlink => op == Op::Remove,
        }
    }

    fn error(self) -> io::Error {
        let code = if self == FaultKind::Enospc { libc::ENOSPC } else { libc::EIO };
        let os = io::Error::from_raw_os_error(code);
        io::Error::new(os.kind(), format!("injected fault {self:?} (test hook): {os}"))
    }
}

/// One operation of the seam, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Open,
    Create,
    Read,
    Write,
    Seek,
    Sync,
    SetLen,
    Stat,
    Lock,
    Map,
    Rename,
    Remove,
    CreateDir,
    ListDir,
    HardLink,
    Canonicalize,
}

/// Shared by a `FaultVfs` and every file it opened.
#[derive(Default)]
struct State {
    /// The planned fault: kind index + 1 (0 = none) and the 1-based N.
    planned_kind: AtomicU64,
    planned_nth: AtomicU64,
    counts: [AtomicU64; FaultKind::ALL.len()],
    fired: AtomicBool,
    /// Every sync fails while set (the poisoning tests).
    failing_syncs: AtomicBool,
    /// What `free_space` reports: 0 = the real figure, else the figure + 1.
    free_space: AtomicU64,
    /// While set, creating a file whose name ends with this fails with this kind's error.
    failing_creates: std::sync::Mutex<Option<(String, FaultKind)>>,
}

impl State {
    /// Counts `op`; returns the planned kind when this is the operation it must fail.
    fn hit(&self, op: Op) -> Option<FaultKind> {
        let planned = self.planned_kind.load(Ordering::SeqCst);
        let mut fire = None;
        for kind in FaultKind::ALL {
            if kind.applies_to(op) {
                let n = self.counts[kind.index()].fetch_add(1, Ordering::SeqCst) + 1;
                if planned == kind.index() as u64 + 1 && n == self.planned_nth.load(Ordering::SeqCst) {
                    fire = Some(kind);
                }
            }
        }
        if op == Op::Sync && self.failing_syncs.load(Ordering::SeqCst) {
            fire = Some(FaultKind::Fsync);
        }
        if fire.is_some() {
            self.fired.store(true, Ordering::SeqCst);
        }
        fire
    }

    fn check(&self, op: Op) -> io::Result<()> {
        match self.hit(op) {
            Some(kind) => Err(kind.error()),
            None => Ok(()),
        }
    }
}

/// A [`Vfs`] over the OS one that counts operations and injects one planned fault.
/// Clones share their counters and plan.
#[derive(Clone)]
pub struct FaultVfs {
    inner: Arc<dyn Vfs>,
    state: Arc<State>,
}

impl Default for FaultVfs {
    fn default() -> Self {
        FaultVfs::counting()
    }
}

impl FaultVfs {
    /// Counts operations and fails none.
    pub fn counting() -> FaultVfs {
        FaultVfs { inner: Arc::new(OsVfs), state: Arc::new(State::default()) }
    }

    /// Fails the `nth` (1-based) operation that `kind` can hit, and no other.
    pub fn failing(kind: FaultKind, nth: u64) -> FaultVfs {
        let vfs = FaultVfs::counting();
        vfs.state.planned_nth.store(nth, Ordering::SeqCst);
        vfs.state.planned_kind.store(kind.index() as u64 + 1, Ordering::SeqCst);
        vfs
    }

    /// How many operations `kind` could have hit so far.
    pub fn count(&self, kind: FaultKind) -> u64 {
        self.state.counts[kind.index()].load(Ordering::SeqCst)
    }

    /// Whether an injected fault has been returned.
    pub fn fired(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// While `failing`, every fdatasync and directory fsync fails with `EIO`.
    pub fn fail_syncs(&self, failing: bool) {
        self.state.failing_syncs.store(failing, Ordering::SeqCst);
    }

    /// The seam as `Options::vfs` takes it.
    /// Makes `free_space` report `bytes` (a full disk for background compaction), or the
    /// real figure again with `None`.
    pub fn set_free_space(&self, bytes: Option<u64>) {
        self.state.free_space.store(bytes.map_or(0, |b| b.saturating_add(1).max(1)), Ordering::SeqCst);
    }

    /// While `Some((suffix, kind))`: creating any file whose name ends with `suffix` fails
    /// with `kind`'s error (e.g. every new `.cold` file: background compaction's output).
    /// Not counted as the planned fault; `None` stops it.
    pub fn fail_creating(&self, failing: Option<(&str, FaultKind)>) {
        *self.state.failing_creates.lock().unwrap_or_else(|p| p.into_inner()) = failing.map(|(s, k)| (s.to_string(), k));
    }

    pub fn as_vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }
}

impl Vfs for FaultVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let creates = matches!(mode, OpenMode::CreateNew | OpenMode::OpenOrCreate);
        if creates {
            let failing = self.state.failing_creates.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some((_, kind)) = failing.filter(|(suffix, _)| path.to_string_lossy().ends_with(suffix.as_str())) {
                self.state.fired.store(true, Ordering::SeqCst);
                return Err(kind.error());
            }
        }
        self.state.check(if creates { Op::Create } else { Op::Open })?;
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(FaultFile { inner, state: self.state.clone(), next_write_fails: false }))
    }

    fn map(&self, path: &Path) -> Result<ReadOnlyMap> {
        self.state.check(Op::Map).map_err(|e| Error::io_at(path, "mmap", e))?;
        self.inner.map(path)
    }

    fn map_range(&self, path: &Path, offset: u64, len: u64) -> Result<ReadOnlyMap> {
        self.state.check(Op::Map).map_err(|e| Error::io_at(path, "mmap", e))?;
        self.inner.map_range(path, offset, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state.check(Op::Rename)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state.check(Op::Remove)?;
        self.inner.remove_file(path)
    }

    fn create_dir(&self, path: &Path, recursive: bool) -> io::Result<()> {
        self.state.check(Op::CreateDir)?;
        self.inner.create_dir(path, recursive)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.state.check(Op::Remove)?;
        self.inner.remove_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.state.check(Op::ListDir)?;
        self.inner.list_dir(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state.check(Op::HardLink)?;
        self.inner.hard_link(from, to)
    }

    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        self.state.check(Op::Stat)?;
        self.inner.metadata(path)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.state.check(Op::Canonicalize)?;
        self.inner.canonicalize(path)
    }

    /// Not a counted operation (it changes nothing and cannot fail usefully).
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        match self.state.free_space.load(Ordering::SeqCst) {
            0 => self.inner.free_space(path),
            reported => Ok(reported - 1),
        }
    }
}

/// How much of a `len`-byte write lands before a short or torn write stops: about half,
/// cut at an 8-byte boundary when that leaves something (the kernel and the disk stop at
/// page or sector boundaries, which are multiples of 8, the alignment of log records — so
/// the bytes after the tear line up with records, as they would on a real disk).
fn torn_prefix_len(len: usize) -> usize {
    match (len / 2) & !7 {
        0 => len / 2,
        aligned => aligned,
    }
}

/// A file opened through a [`FaultVfs`].
struct FaultFile {
    inner: File,
    state: Arc<State>,
    /// Set by a short write: the next write fails with `ENOSPC`.
    next_write_fails: bool,
}

impl Read for FaultFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.check(Op::Read)?;
        self.inner.read(buf)
    }
}

impl Write for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if std::mem::take(&mut self.next_write_fails) {
            return Err(FaultKind::Enospc.error());
        }
        match self.state.hit(Op::Write) {
            None => self.inner.write(buf),
            Some(FaultKind::ShortWrite) if buf.len() > 1 => {
                let landed = torn_prefix_len(buf.len());
                self.inner.write_all(&buf[..landed])?;
                self.next_write_fails = true;
                Ok(landed)
            }
            Some(kind @ FaultKind::TornWrite) => {
                self.inner.write_all(&buf[..torn_prefix_len(buf.len())])?;
                Err(kind.error())
            }
            Some(kind) => Err(kind.error()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for FaultFile {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        self.state.check(Op::Seek)?;
        self.inner.seek(position)
    }
}

impl VfsFile for FaultFile {
    fn sync_data(&self) -> io::Result<()> {
        self.state.check(Op::Sync)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.state.check(Op::Sync)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.state.check(Op::SetLen)?;
        self.inner.set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        self.state.check(Op::Stat)?;
        self.inner.file_len()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.state.check(Op::Lock)?;
        self.inner.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting is per kind, the planned operation fails once with its kind, a short write
    /// lands a prefix and makes the next write fail, a torn write lands a prefix and fails.
    #[test]
    fn fails_exactly_the_planned_operation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let counting = FaultVfs::counting();
        let mut file = counting.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all(&[1; 32]).expect("write");
        file.sync_data().expect("sync");
        counting.rename(&path, &dir.path().join("g")).expect("rename");
        let counts: Vec<u64> = FaultKind::ALL.iter().map(|&k| counting.count(k)).collect();
        assert_eq!(counts, [4, 3, 1, 1, 1, 1, 0], "Eio Enospc Short Torn Fsync Rename Unlink");
        assert!(!counting.fired());

        let syncs = FaultVfs::failing(FaultKind::Fsync, 1);
        let file = syncs.open(&dir.path().join("h"), OpenMode::CreateNew).expect("create");
        assert!(file.sync_data().is_err() && syncs.fired(), "the first sync fails");
        file.sync_data().expect("only the planned one fails");

        for (kind, second_write_ok) in [(FaultKind::ShortWrite, false), (FaultKind::TornWrite, true)] {
            let vfs = FaultVfs::failing(kind, 1);
            let path = dir.path().join(format!("{kind:?}"));
            let mut file = vfs.open(&path, OpenMode::CreateNew).expect("create");
            let first = file.write(&[7; 40]);
            assert_eq!(first.ok(), (kind == FaultKind::ShortWrite).then_some(16), "{kind:?}: 20 cut to 16");
            assert_eq!(file.write(&[8; 8]).is_ok(), second_write_ok, "{kind:?}");
            assert_eq!(file.file_len().expect("len"), if second_write_ok { 24 } else { 16 }, "{kind:?}: the prefix landed");
        }
    }
}
