//! Everything that touches the operating system: maps, fsync, locks, file names.
//!
//! **Invariant:** only this module calls `fsync`/`fdatasync` and creates memory maps.

pub(crate) mod aligned;
pub(crate) mod fs;
pub(crate) mod maps;
