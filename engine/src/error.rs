//! The one error type of the public API.

use std::path::PathBuf;

/// Every error strata returns. `Display` reads as a sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error; the message names the file where one is known.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk are not what strata wrote.
    #[error("corruption in {} at byte offset {offset}: {detail}", path.display())]
    Corruption { path: PathBuf, offset: u64, detail: String },
    /// An argument broke a documented rule or limit; nothing was changed.
    #[error("invalid argument `{argument}`: {detail}")]
    InvalidArgument { argument: &'static str, detail: String },
    /// Another handle (in this or another process) holds the database open for writing.
    #[error("database {} is locked: another handle has it open for writing", path.display())]
    Locked { path: PathBuf },
    /// A file was written by a format version this build does not read.
    #[error("{} has format version {found}; this build reads versions {read_min} to {latest}", path.display())]
    UnsupportedVersion { path: PathBuf, found: u32, read_min: u32, latest: u32 },
    /// A write on a handle opened with `read_only(true)`.
    #[error("the database was opened read-only")]
    ReadOnly,
    /// An earlier write or fsync failed: the handle refuses writes until reopened.
    #[error("the handle is poisoned by an earlier failed write or fsync ({cause}); reopen the database")]
    Poisoned { cause: String },
    /// The handle was closed with `close()`.
    #[error("the database handle is closed")]
    Closed,
    /// The operation belongs to a part of strata that is not built yet.
    #[error("{operation} is not implemented yet in this version of strata")]
    Unsupported { operation: &'static str },
}

/// `std::result::Result` with strata's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption { path: path.into(), offset, detail: detail.into() }
    }

    pub(crate) fn invalid(argument: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument { argument, detail: detail.into() }
    }

    /// An I/O error with the file (and what was being done) in its message.
    pub(crate) fn io_at(path: &std::path::Path, action: &str, error: std::io::Error) -> Self {
        Error::Io(std::io::Error::new(error.kind(), format!("{action} {}: {error}", path.display())))
    }
}
