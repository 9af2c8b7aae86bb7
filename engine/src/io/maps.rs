//! The one place in the engine with `unsafe`: read-only memory maps of sealed files.
//!
//! memmap2's contract (`Mmap::map` is `unsafe`): the behaviour is undefined if the mapped
//! file is modified or truncated — by this process or another — while the map is alive,
//! because the `&[u8]` handed out would change under Rust's aliasing rules or fault on
//! access. strata upholds it as follows:
//! 1. Only *sealed* files are mapped: a sealed log segment (its trailer was written and
//!    fsynced before it was mapped) or a cold segment. **Invariant:** strata never opens a
//!    sealed file for writing again; the write path only appends to the active segment,
//!    which is never mapped, and recovery only truncates the active segment.
//! 2. Deleting a mapped file (compaction) is fine: the inode lives until the map is dropped.
//! 3. Another process writing the directory is excluded by the `LOCK` file for writers;
//!    read-only handles never modify files. A user editing files by hand while strata runs
//!    is outside the contract, as with every mmap-based engine (LMDB documents the same).
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Error, Result};

/// A read-only map of a whole sealed file (public only to name it in the `test-hooks` `Vfs`
/// trait; nothing outside this module can make one). Empty files are represented without a map
/// (mapping zero bytes is an error on Linux).
pub struct ReadOnlyMap {
    map: Option<memmap2::Mmap>,
}

impl ReadOnlyMap {
    /// Maps `file` (opened read-only from `path` by `vfs::OsVfs`, `len` bytes long) as it is now.
    pub(crate) fn map_sealed(file: &impl AsRawFd, len: u64, path: &Path) -> Result<Self> {
        if len == 0 {
            return Ok(ReadOnlyMap { map: None });
        }
        // SAFETY: `file` is a sealed strata file (see the module comment): it is never written,
        // truncated or reopened for writing by strata while any map of it is alive, so the
        // bytes behind the returned slice cannot change. The map is read-only (PROT_READ).
        let map = unsafe { memmap2::MmapOptions::new().map(file) }.map_err(|e| Error::io_at(path, "mmap", e))?;
        Ok(ReadOnlyMap { map: Some(map) })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(map) => map,
            None => &[],
        }
    }

    /// Tells the kernel the map will be read front to back (scans, verify).
    pub(crate) fn advise_sequential(&self) {
        if let Some(map) = &self.map {
            let _ = map.advise(memmap2::Advice::Sequential);
        }
    }
}
