//! The one error type of the tool: a sentence for `strata: error: ...`.

use std::fmt;

/// Why a command failed, as the one line printed on stderr.
#[derive(Debug)]
pub struct Failure(pub String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the cause's message holds.
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl From<strata::Error> for Failure {
    fn from(error: strata::Error) -> Failure {
        Failure(error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure(format!("I/O error: {error}"))
    }
}

impl From<arrow_schema::ArrowError> for Failure {
    fn from(error: arrow_schema::ArrowError) -> Failure {
        Failure(format!("Arrow: {error}"))
    }
}

impl From<parquet::errors::ParquetError> for Failure {
    fn from(error: parquet::errors::ParquetError) -> Failure {
        Failure(format!("Parquet: {error}"))
    }
}

/// `?` on an I/O result with the path in the message.
pub trait IoContext<T> {
    fn at(self, what: &str, path: &std::path::Path) -> Result<T, Failure>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, what: &str, path: &std::path::Path) -> Result<T, Failure> {
        self.map_err(|e| Failure(format!("{what} {}: {e}", path.display())))
    }
}
