//! The I/O seam: every file-system operation of the engine goes through a [`Vfs`] (path
//! operations) and the [`VfsFile`]s it opens (per-file operations).
//!
//! Why a seam: fault injection (`io/faults.rs`, feature `test-hooks`) needs to fail any
//! chosen operation, and file hygiene (modes, `O_NOFOLLOW`) must hold for every file the
//! engine creates — both are only checkable when there is exactly one place that talks to
//! the operating system. [`OsVfs`] is that place in production; `Options` holds the `Vfs`
//! (the setter exists only with `test-hooks`).
//!
//! **Invariant:** outside `io/`, the engine never names `std::fs`; [`OsVfs`] is the only
//! code that does.

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::io::maps::ReadOnlyMap;
use crate::{Error, Result};

/// Mode of every file the engine creates, whatever the umask (contract 10: private).
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the engine creates, whatever the umask.
pub const DIR_MODE: u32 = 0o700;

/// How [`Vfs::open`] opens a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read-only.
    Read,
    /// An existing file, read-write, not truncated (the active segment).
    ReadWrite,
    /// A new file, read-write; fails if the path exists. Mode [`FILE_MODE`].
    CreateNew,
    /// Read-write, created (mode [`FILE_MODE`]) when missing, never truncated (`LOCK`).
    OpenOrCreate,
    /// A directory, read-only: for fsync and `flock`. Symlinks are followed (the database
    /// path itself may be a link the user made).
    Directory,
}

/// What [`Vfs::metadata`] reports about a path (symlinks followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub len: u64,
    pub is_dir: bool,
}

/// One open file, a.k.a. a file handle. `Read`/`Write`/`Seek` are the per-file data
/// operations; the rest are the metadata and durability ones.
pub trait VfsFile: Read + Write + Seek + Send + Sync {
    /// fdatasync: the data and the metadata needed to read it back (the size).
    fn sync_data(&self) -> io::Result<()>;
    /// fsync of everything (used for directories).
    fn sync_all(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current size (fstat).
    fn file_len(&self) -> io::Result<u64>;
    /// A non-blocking exclusive `flock`: `Ok(false)` when another description holds it.
    fn try_lock(&self) -> io::Result<bool>;
}

/// A file opened through the seam.
pub type File = Box<dyn VfsFile>;

/// The path operations of the file system, a.k.a. the I/O seam or VFS.
pub trait Vfs: Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File>;
    /// Maps a sealed file, or an active segment just recovered, read-only (`io/maps.rs`
    /// holds the `unsafe` and the rule).
    fn map(&self, path: &Path) -> Result<ReadOnlyMap>;
    /// Maps bytes `[offset, offset + len)` of the active segment at `path`, which its
    /// writer has written and only appends after (`io/maps.rs`, invariant 1).
    fn map_range(&self, path: &Path, offset: u64, len: u64) -> Result<ReadOnlyMap>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory (and its missing parents when `recursive`), mode [`DIR_MODE`].
    fn create_dir(&self, path: &Path, recursive: bool) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn metadata(&self, path: &Path) -> io::Result<FileInfo>;
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Bytes available to this process on the file system holding `path` (statvfs
    /// `f_bavail × f_frsize`): background compaction checks it before a run. A test file
    /// system without a notion of space reports unlimited.
    fn free_space(&self, _path: &Path) -> io::Result<u64> {
        Ok(u64::MAX)
    }
}

/// The production [`Vfs`]: `std::fs` with private modes and `O_NOFOLLOW`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsVfs;

/// A plain `std::fs::File` behind the seam.
struct OsFile(std::fs::File);

/// Opens `path` as `mode` asks: private mode on creation, `O_NOFOLLOW` for files.
fn open_std(path: &Path, mode: OpenMode) -> io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true);
    match mode {
        OpenMode::Read | OpenMode::Directory => {}
        OpenMode::ReadWrite => {
            options.write(true);
        }
        OpenMode::CreateNew => {
            options.write(true).create_new(true).mode(FILE_MODE);
        }
        OpenMode::OpenOrCreate => {
            options.write(true).create(true).truncate(false).mode(FILE_MODE);
        }
    }
    if mode != OpenMode::Directory {
        // A symlink planted in the database directory is refused, never followed.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(e.kind(), "it is a symbolic link, and strata does not follow links to database files (O_NOFOLLOW)")
        } else {
            e
        }
    })
}

impl Vfs for OsVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        Ok(Box::new(OsFile(open_std(path, mode)?)))
    }

    fn map(&self, path: &Path) -> Result<ReadOnlyMap> {
        let file = open_std(path, OpenMode::Read).map_err(|e| Error::io_at(path, "open", e))?;
        let len = file.metadata().map_err(|e| Error::io_at(path, "stat", e))?.len();
        ReadOnlyMap::map_sealed(&file, len, path)
    }

    fn map_range(&self, path: &Path, offset: u64, len: u64) -> Result<ReadOnlyMap> {
        let file = open_std(path, OpenMode::Read).map_err(|e| Error::io_at(path, "open", e))?;
        let file_len = file.metadata().map_err(|e| Error::io_at(path, "stat", e))?.len();
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            // Bytes past the end would fault when read: never map them.
            return Err(Error::corruption(path, file_len, format!("asked to map [{offset}, +{len}) of a file this long")));
        }
        ReadOnlyMap::map_written(&file, offset, len, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path, recursive: bool) -> io::Result<()> {
        DirBuilder::new().recursive(recursive).mode(DIR_MODE).create(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.file_name())).collect()
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        let metadata = std::fs::metadata(path)?;
        Ok(FileInfo { len: metadata.len(), is_dir: metadata.is_dir() })
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

impl Read for OsFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for OsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Seek for OsFile {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        self.0.seek(position)
    }
}

impl VfsFile for OsFile {
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn try_lock(&self) -> io::Result<bool> {
        match self.0.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A boxed file is a file: `fs::sync_data(&file, ..)` takes a `File` as it took a
/// `std::fs::File`.
impl<F: VfsFile + ?Sized> VfsFile for Box<F> {
    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        (**self).sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        (**self).file_len()
    }

    fn try_lock(&self) -> io::Result<bool> {
        (**self).try_lock()
    }
}
