//! File-system helpers over the seam (`io/vfs.rs`) that add the path and the operation to
//! every error: durable creation, directory fsync, bounded reads, the writer lock, file names.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::io::maps::ReadOnlyMap;
use crate::io::vfs::{File, OpenMode, Vfs, VfsFile};
use crate::{Error, Result};

/// Name of the lock file a writer holds an exclusive `flock` on.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";
/// Extension of log segment files: `{id:016x}.log`.
pub(crate) const LOG_EXTENSION: &str = "log";

pub(crate) fn segment_file_name(segment_id: u32) -> String {
    format!("{segment_id:016x}.{LOG_EXTENSION}")
}

/// Parses `{id:016x}.log`; any other name is not a segment.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    u64::from_str_radix(stem, 16).ok().and_then(|id| u32::try_from(id).ok())
}

/// fsync of a directory, so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let handle = vfs.open(dir, OpenMode::Directory).map_err(|e| Error::io_at(dir, "open directory", e))?;
    handle.sync_all().map_err(|e| Error::io_at(dir, "fsync directory", e))
}

/// fdatasync of a file: its data and the metadata needed to read it back (the size).
pub(crate) fn sync_data(file: &dyn VfsFile, path: &Path) -> Result<()> {
    file.sync_data().map_err(|e| Error::io_at(path, "fdatasync", e))
}

pub(crate) fn open_read(vfs: &dyn Vfs, path: &Path) -> Result<File> {
    vfs.open(path, OpenMode::Read).map_err(|e| Error::io_at(path, "open", e))
}

/// Creates a new file (failing if it exists), for appending. Mode 0600.
pub(crate) fn create_new(vfs: &dyn Vfs, path: &Path) -> Result<File> {
    vfs.open(path, OpenMode::CreateNew).map_err(|e| Error::io_at(path, "create", e))
}

/// Opens an existing file for appending (the active segment only).
pub(crate) fn open_append(vfs: &dyn Vfs, path: &Path) -> Result<File> {
    vfs.open(path, OpenMode::ReadWrite).map_err(|e| Error::io_at(path, "open for writing", e))
}

/// The size of an open file.
pub(crate) fn file_len(file: &dyn VfsFile, path: &Path) -> Result<u64> {
    file.file_len().map_err(|e| Error::io_at(path, "stat", e))
}

/// Does `path` exist? Only "not found" is `false`; any other failure is an error.
pub(crate) fn exists(vfs: &dyn Vfs, path: &Path) -> Result<bool> {
    match vfs.metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io_at(path, "stat", e)),
    }
}

/// Removes a file; `action` names why in the error.
pub(crate) fn remove_file(vfs: &dyn Vfs, path: &Path, action: &str) -> Result<()> {
    vfs.remove_file(path).map_err(|e| Error::io_at(path, action, e))
}

/// Removes the directory `dir` and everything under it (directories strata made: a
/// repair's staging). Never follows a link: each entry is first unlinked (which removes a
/// file or a symlink, whatever it points to), and only an entry that unlink refuses because
/// it is a real directory is descended into.
pub(crate) fn remove_tree(vfs: &dyn Vfs, dir: &Path, action: &str) -> Result<()> {
    for name in vfs.list_dir(dir).map_err(|e| Error::io_at(dir, action, e))? {
        let path = dir.join(name);
        if let Err(e) = vfs.remove_file(&path) {
            if !vfs.metadata(&path).is_ok_and(|info| info.is_dir) {
                return Err(Error::io_at(&path, action, e));
            }
            remove_tree(vfs, &path, action)?;
        }
    }
    vfs.remove_dir(dir).map_err(|e| Error::io_at(dir, action, e))
}

/// Renames `from` over `to`; the error names the destination.
pub(crate) fn rename(vfs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    vfs.rename(from, to).map_err(|e| Error::io_at(to, "rename into place", e))
}

/// Creates a directory (mode 0700; its parents too when `recursive`).
pub(crate) fn create_dir(vfs: &dyn Vfs, dir: &Path, recursive: bool, action: &str) -> Result<()> {
    vfs.create_dir(dir, recursive).map_err(|e| Error::io_at(dir, action, e))
}

/// Reads a whole small file, refusing one larger than `bytes_max` before reading it: the
/// size is checked (fstat) and then at most `bytes_max + 1` bytes are read, so a file that
/// grows, or a device that never ends, cannot make the read unbounded. `Ok(None)` when the
/// file does not exist. `what` names the file kind in the corruption error.
pub(crate) fn read_bounded(vfs: &dyn Vfs, path: &Path, bytes_max: u64, what: &str) -> Result<Option<Vec<u8>>> {
    let file = match vfs.open(path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io_at(path, "open", e)),
    };
    let too_large = || Error::corruption(path, 0, format!("{what} is larger than its limit of {bytes_max} bytes"));
    let len = file_len(file.as_ref(), path)?;
    if len > bytes_max {
        return Err(too_large());
    }
    let capacity = usize::try_from(len).map_err(|_| too_large())?;
    let mut bytes = Vec::with_capacity(capacity);
    file.take(bytes_max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| Error::io_at(path, "read", e))?;
    if bytes.len() as u64 > bytes_max {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Maps a sealed file (or an active segment just recovered) read-only, through the seam.
pub(crate) fn map(vfs: &dyn Vfs, path: &Path) -> Result<ReadOnlyMap> {
    vfs.map(path)
}

/// How long `DirLock::acquire` keeps trying a lock that another file description holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Directories (canonical paths) whose writer lock this process holds.
static HELD: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The writer lock: an exclusive advisory `flock` on the database directory itself and on
/// `dir/LOCK`, held for the handle's life, plus this process's own table of locked
/// directories.
///
/// Why the directory: a lock on a file can be dodged by deleting the file (the next
/// writer creates a new `LOCK` and locks that); the directory cannot be replaced while it
/// holds the database. `LOCK` is still taken so that older builds, which only know it,
/// are excluded too.
///
/// Why the table: a second open in this process is refused at once. Across processes
/// `flock` decides — but a `flock` belongs to the open file description, and a child that
/// this process forks (any thread spawning any command) holds a copy of every descriptor
/// until it execs. A lock this process has just released can therefore still look held for
/// a moment; `acquire` retries for up to `LOCK_WAIT` before it says `Locked`.
pub(crate) struct DirLock {
    files: Vec<File>,
    canonical: PathBuf,
}

impl DirLock {
    pub(crate) fn acquire(vfs: &dyn Vfs, dir: &Path) -> Result<DirLock> {
        let canonical = vfs.canonicalize(dir).map_err(|e| Error::io_at(dir, "resolve", e))?;
        if !held().insert(canonical.clone()) {
            return Err(Error::Locked { path: dir.to_path_buf() });
        }
        // From here on `lock` owns the table entry; dropping it (on any error) removes it.
        let mut lock = DirLock { files: Vec::with_capacity(2), canonical };
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let directory = vfs.open(dir, OpenMode::Directory).map_err(|e| Error::io_at(dir, "open directory", e))?;
        lock_until(directory.as_ref(), dir, dir, deadline)?;
        lock.files.push(directory);
        let path = dir.join(LOCK_FILE_NAME);
        let file = vfs.open(&path, OpenMode::OpenOrCreate).map_err(|e| Error::io_at(&path, "open", e))?;
        lock_until(file.as_ref(), &path, dir, deadline)?;
        lock.files.push(file);
        Ok(lock)
    }
}

/// Takes the `flock` of `file`, retrying until `deadline` (see `DirLock`).
fn lock_until(file: &dyn VfsFile, path: &Path, dir: &Path, deadline: std::time::Instant) -> Result<()> {
    loop {
        match file.try_lock() {
            Ok(true) => return Ok(()),
            Ok(false) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(false) => return Err(Error::Locked { path: dir.to_path_buf() }),
            Err(e) => return Err(Error::io_at(path, "lock", e)),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        self.files.clear(); // releases the flocks (unless a forked child still has a copy)
        held().remove(&self.canonical);
    }
}

fn held() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<PathBuf>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lists the names (and paths) of the entries of `dir` that `parse` accepts, sorted by the
/// parsed id.
pub(crate) fn list_parsed<T: Ord + Copy>(vfs: &dyn Vfs, dir: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<(T, PathBuf)>> {
    let mut found = Vec::new();
    for name in vfs.list_dir(dir).map_err(|e| Error::io_at(dir, "list", e))? {
        if let Some(id) = name.to_str().and_then(&parse) {
            found.push((id, dir.join(name)));
        }
    }
    found.sort_unstable_by_key(|(id, _)| *id);
    Ok(found)
}

/// Lists the segment ids present in `dir`, ascending.
pub(crate) fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    list_parsed(vfs, dir, parse_segment_file_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::vfs::OsVfs;

    /// Another open file description of `path` (as a forked child would hold).
    fn other_description(path: &Path) -> File {
        OsVfs.open(path, OpenMode::OpenOrCreate).expect("open LOCK")
    }

    /// A second handle in this process is refused by the table. Another description of
    /// LOCK holding the flock stands for a forked child that has not exec'd yet: acquire
    /// waits for it to go, up to `LOCK_WAIT`, then says Locked.
    #[test]
    fn lock_waits_briefly_for_another_description_and_refuses_a_second_handle_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(&OsVfs, dir.path()).expect("first");
        assert!(held().contains(&first.canonical), "the table lists the held directory");
        assert!(matches!(DirLock::acquire(&OsVfs, dir.path()), Err(Error::Locked { .. })), "second handle in this process");
        assert!(held().contains(&first.canonical), "a refused second handle leaves the first's entry");
        let canonical = first.canonical.clone();
        drop(first);
        assert!(!held().contains(&canonical), "dropping the lock removes its entry");

        let copy = other_description(&dir.path().join(LOCK_FILE_NAME));
        assert!(copy.try_lock().expect("try_lock"), "the released lock is free");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(copy);
        });
        let again = DirLock::acquire(&OsVfs, dir.path()).expect("acquired once the other description is closed");
        releaser.join().expect("releaser");
        drop(again);

        let holder = other_description(&dir.path().join(LOCK_FILE_NAME));
        assert!(holder.try_lock().expect("try_lock"), "free");
        assert!(matches!(DirLock::acquire(&OsVfs, dir.path()), Err(Error::Locked { .. })), "held for longer than LOCK_WAIT");
        drop(holder);
        DirLock::acquire(&OsVfs, dir.path()).expect("a refused acquire leaves no table entry behind");

        // The directory's own flock counts even when LOCK is gone (deleted by hand).
        let directory = OsVfs.open(dir.path(), OpenMode::Directory).expect("open directory");
        assert!(directory.try_lock().expect("try_lock"), "directory lock free");
        OsVfs.remove_file(&dir.path().join(LOCK_FILE_NAME)).expect("rm LOCK");
        assert!(matches!(DirLock::acquire(&OsVfs, dir.path()), Err(Error::Locked { .. })), "the directory lock is held");
    }

    #[test]
    fn segment_names_round_trip_and_reject_others() {
        for id in [0, 1, 0xabc, u32::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(id)), Some(id));
        }
        for bad in ["1.log", "000000000000000A.log", "0000000000000001.lo", "00000001000000000.log", "x.log"] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_segment_file_name("0000000100000000.log"), None, "beyond u32");
    }
}

/// Injected panics in the group-commit leader, for tests of poisoning (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
pub(crate) mod leader_panics {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static PANIC_DIRS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    /// Set once any directory was armed. Until then a commit pays one load here, not a
    /// `canonicalize` (a `readlink` per path component): the examples and benches are built
    /// with this feature (it is a dev-dependency feature), and they time commits.
    static ANY_ARMED: AtomicBool = AtomicBool::new(false);

    /// The next group-commit leader of the database in `dir` panics (once), as a bug would.
    pub fn panic_next_leader_in(dir: &Path) {
        let mut dirs = PANIC_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        dirs.get_or_insert_with(HashSet::new).insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()));
        ANY_ARMED.store(true, Ordering::Release);
    }

    pub(crate) fn panic_if_armed(dir: &Path) {
        if !ANY_ARMED.load(Ordering::Acquire) {
            return;
        }
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let armed = PANIC_DIRS.lock().unwrap_or_else(|p| p.into_inner()).as_mut().is_some_and(|set| set.remove(&dir));
        if armed {
            panic!("injected panic in the group-commit leader (test hook)");
        }
    }
}
