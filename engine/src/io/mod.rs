//! Everything that touches the operating system: the I/O seam, maps, fsync, locks, file
//! names.
//!
//! **Invariant:** only this module touches the file system: every open, read, write,
//! fsync, rename, unlink, truncate, map, directory creation and listing of the engine goes
//! through the [`vfs::Vfs`] held by `Options`, and only `vfs::OsVfs` calls `std::fs`.
//! **Invariant:** only this module calls `fsync`/`fdatasync` and creates memory maps.

pub(crate) mod aligned;
#[cfg(feature = "test-hooks")]
pub(crate) mod faults;
pub(crate) mod fs;
pub(crate) mod maps;
pub(crate) mod pace;
#[cfg(feature = "test-hooks")]
pub(crate) mod power_loss;
pub(crate) mod vfs;
pub(crate) mod writeback;
