//! File-system helpers: durable creation, directory fsync, the writer lock, file names.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

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
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| Error::io_at(dir, "open directory", e))?;
    handle.sync_all().map_err(|e| Error::io_at(dir, "fsync directory", e))
}

/// fdatasync of a file: its data and the metadata needed to read it back (the size).
pub(crate) fn sync_data(file: &File, path: &Path) -> Result<()> {
    #[cfg(feature = "test-hooks")]
    faults::check(path)?;
    file.sync_data().map_err(|e| Error::io_at(path, "fdatasync", e))
}

/// Injected fsync failures, for tests of poisoning (feature `test-hooks` only).
#[cfg(feature = "test-hooks")]
pub(crate) mod faults {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static FAILING_DIRS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

    /// From now on every fdatasync of a file directly inside `dir` fails with EIO.
    pub fn fail_syncs_in(dir: &Path, failing: bool) {
        let mut dirs = FAILING_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        let set = dirs.get_or_insert_with(HashSet::new);
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if failing {
            set.insert(dir);
        } else {
            set.remove(&dir);
        }
    }

    static PANIC_DIRS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

    /// The next group-commit leader of the database in `dir` panics (once), as a bug would.
    pub fn panic_next_leader_in(dir: &Path) {
        let mut dirs = PANIC_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        dirs.get_or_insert_with(HashSet::new).insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()));
    }

    pub(crate) fn panic_if_armed(dir: &Path) {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let armed = PANIC_DIRS.lock().unwrap_or_else(|p| p.into_inner()).as_mut().is_some_and(|set| set.remove(&dir));
        if armed {
            panic!("injected panic in the group-commit leader (test hook)");
        }
    }

    pub(crate) fn check(path: &Path) -> crate::Result<()> {
        let dirs = FAILING_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(set) = dirs.as_ref() else { return Ok(()) };
        let parent = path.parent().map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        if parent.is_some_and(|p| set.contains(&p)) {
            return Err(crate::Error::io_at(path, "fdatasync", std::io::Error::other("injected fsync failure (test hook)")));
        }
        Ok(())
    }
}

pub(crate) fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io_at(path, "open", e))
}

/// Creates a new file (failing if it exists), for appending.
pub(crate) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|e| Error::io_at(path, "create", e))
}

/// Opens an existing file for appending (the active segment only).
pub(crate) fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io_at(path, "open for writing", e))
}

/// How long `DirLock::acquire` keeps trying a lock that another file description holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Directories (canonical paths) whose writer lock this process holds.
static HELD: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The writer lock: an exclusive advisory `flock` on `dir/LOCK`, held for the handle's life,
/// plus this process's own table of locked directories.
///
/// Why both: a second open in this process is refused at once by the table. Across
/// processes `flock` decides — but a `flock` belongs to the open file description, and a
/// child that this process forks (any thread spawning any command) holds a copy of every
/// descriptor until it execs. A lock this process has just released can therefore still
/// look held for a moment; `acquire` retries for up to `LOCK_WAIT` before it says `Locked`.
pub(crate) struct DirLock {
    file: Option<File>,
    canonical: PathBuf,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io_at(dir, "resolve", e))?;
        if !held().insert(canonical.clone()) {
            return Err(Error::Locked { path: dir.to_path_buf() });
        }
        // From here on `lock` owns the table entry; dropping it (on any error) removes it.
        let mut lock = DirLock { file: None, canonical };
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io_at(&path, "open", e))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir.to_path_buf() }),
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io_at(&path, "lock", e)),
            }
        }
        lock.file = Some(file);
        Ok(lock)
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        drop(self.file.take()); // releases the flock (unless a forked child still has a copy)
        held().remove(&self.canonical);
    }
}

fn held() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<PathBuf>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lists the segment ids present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io_at(dir, "list", e))? {
        let entry = entry.map_err(|e| Error::io_at(dir, "list", e))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(parse_segment_file_name) {
            segments.push((id, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(id, _)| *id);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second handle in this process is refused by the table. Another description of
    /// LOCK holding the flock stands for a forked child that has not exec'd yet: acquire
    /// waits for it to go, up to `LOCK_WAIT`, then says Locked.
    #[test]
    fn lock_waits_briefly_for_another_description_and_refuses_a_second_handle_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first");
        assert!(held().contains(&first.canonical), "the table lists the held directory");
        assert!(matches!(DirLock::acquire(dir.path()), Err(Error::Locked { .. })), "second handle in this process");
        assert!(held().contains(&first.canonical), "a refused second handle leaves the first's entry");
        let canonical = first.canonical.clone();
        drop(first);
        assert!(!held().contains(&canonical), "dropping the lock removes its entry");

        let copy = File::options().read(true).write(true).open(dir.path().join(LOCK_FILE_NAME)).expect("open LOCK");
        copy.try_lock().expect("the released lock is free");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(copy);
        });
        let again = DirLock::acquire(dir.path()).expect("acquired once the other description is closed");
        releaser.join().expect("releaser");
        drop(again);

        let holder = File::options().read(true).write(true).open(dir.path().join(LOCK_FILE_NAME)).expect("open LOCK");
        holder.try_lock().expect("free");
        assert!(matches!(DirLock::acquire(dir.path()), Err(Error::Locked { .. })), "held for longer than LOCK_WAIT");
        drop(holder);
        DirLock::acquire(dir.path()).expect("a refused acquire leaves no table entry behind");
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
