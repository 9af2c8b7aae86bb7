//! The one place in the engine with `unsafe`: read-only memory maps of files that no longer
//! change (and, without `unsafe`, anonymous maps for large buffers).
//!
//! memmap2's contract (`Mmap::map` is `unsafe`): the behaviour is undefined if the mapped
//! file is modified or truncated — by this process or another — while the map is alive,
//! because the `&[u8]` handed out would change under Rust's aliasing rules or fault on
//! access. strata upholds it as follows:
//! 1. Only bytes that are never written again are mapped: a *sealed* log segment (its
//!    trailer was written and fsynced before it was mapped), a cold segment, or the
//!    *active segment* as recovery keeps it, mapped by a writable handle at open
//!    (`open::load_active`); when recovery must cut a torn tail, that map is dropped first
//!    and the file is mapped again after the cut (`ActiveSegment::resume`). **Invariant:** strata never
//!    opens a sealed file for writing again; the write path only appends to the active
//!    segment, after the end it had when it was mapped (a failed write leaves the segment
//!    broken, and nothing truncates it); recovery, the only truncation, runs with no map of
//!    the file alive, under the writer lock. The same holds for the *regions* of the
//!    active segment its writer maps as it grows (`ReadOnlyMap::map_written`): each covers
//!    bytes already handed to the OS by successful writes, which the writer only appends
//!    after.
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
    /// Maps `file` (opened read-only from `path` by `vfs::OsVfs`, `len` bytes long) as it is
    /// now: a sealed file, or the active segment right after its recovery (invariant 1).
    pub(crate) fn map_sealed(file: &impl AsRawFd, len: u64, path: &Path) -> Result<Self> {
        if len == 0 {
            return Ok(ReadOnlyMap { map: None });
        }
        // SAFETY: `file` is a sealed strata file, or an active segment just cut to its
        // recovered prefix (see the module comment): its first `len` bytes are never written
        // or truncated by strata while any map of it is alive, so the bytes behind the
        // returned slice cannot change. The map is read-only (PROT_READ).
        let map = unsafe { memmap2::MmapOptions::new().map(file) }.map_err(|e| Error::io_at(path, "mmap", e))?;
        Ok(ReadOnlyMap { map: Some(map) })
    }

    /// Maps bytes `[offset, offset + len)` of the active segment `file` (opened read-only
    /// from `path` by `vfs::OsVfs`): bytes its writer has handed to the OS and only appends
    /// after (invariant 1), mapped for the hot tier (`HotSegment::add_region`).
    pub(crate) fn map_written(file: &impl AsRawFd, offset: u64, len: u64, path: &Path) -> Result<Self> {
        if len == 0 {
            return Ok(ReadOnlyMap { map: None });
        }
        let len_usize = usize::try_from(len).map_err(|_| Error::invalid("map length", "beyond the address space"))?;
        // SAFETY: `[offset, offset + len)` of the active segment was written by its writer,
        // which only appends after it, and nothing truncates the file while the handle that
        // maps it lives (see the module comment, invariant 1): the bytes behind the returned
        // slice cannot change, and the file is at least that long. Read-only (PROT_READ).
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len_usize).map(file) };
        Ok(ReadOnlyMap { map: Some(map.map_err(|e| Error::io_at(path, "mmap", e))?) })
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

/// An anonymous, private, writable map of whole 8-byte words, zero when made: the storage
/// of large aligned buffers (`io::aligned`), returned to the system when dropped. Making
/// one is safe (no file behind it); it lives here with the other maps.
pub(crate) struct AnonymousMap {
    map: memmap2::MmapMut,
}

impl AnonymousMap {
    /// `bytes` (a positive multiple of 8) of zeros.
    pub(crate) fn new(bytes: usize) -> std::io::Result<Self> {
        debug_assert!(bytes > 0 && bytes.is_multiple_of(8));
        Ok(AnonymousMap { map: memmap2::MmapOptions::new().len(bytes).map_anon()? })
    }

    /// The words (page-aligned, so the cast cannot fail).
    pub(crate) fn words(&self) -> &[u64] {
        bytemuck::cast_slice(&self.map[..])
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        bytemuck::cast_slice_mut(&mut self.map[..])
    }
}
