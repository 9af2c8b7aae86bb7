//! How a database is opened: `Options`, `Durability`, `Metric`.

use crate::io::vfs::{OsVfs, Vfs};
use crate::limits;
use crate::{Error, Result};

/// When a write is durable, relative to the call returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before a write returns; concurrent writers share one fsync (group commit).
    /// Survives `kill -9` and power loss.
    #[default]
    Sync,
    /// Handed to the OS (`write(2)`) before return: survives `kill -9`, not power loss.
    Flush,
    /// Buffered in the process: survives a clean `close()` or `sync()`.
    None,
}

/// Similarity measure used by vector search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metric {
    /// Cosine similarity; higher is closer.
    #[default]
    Cosine,
    /// Dot product; higher is closer.
    Dot,
    /// Squared euclidean distance; lower is closer.
    L2,
}

/// Options for [`crate::Db::open`]. Built with chained setters from [`Options::new`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    pub(crate) embedding_dim: Option<usize>,
    pub(crate) metric: Metric,
    pub(crate) durability: Durability,
    pub(crate) read_only: bool,
    pub(crate) segment_bytes_max: u64,
    pub(crate) cold_segment_bytes_max: u64,
    /// Threads a search may use; 0 = the number of available cores.
    pub(crate) threads: usize,
    pub(crate) verify_checksums: bool,
    pub(crate) clock: Clock,
    /// The I/O seam every file operation goes through (`io/vfs.rs`): the OS, or a test's.
    pub(crate) vfs: std::sync::Arc<dyn Vfs>,
    /// Background maintenance (`maintenance.rs`) and its thresholds.
    pub(crate) maintenance: MaintenanceOptions,
    /// Retention rule applied by compaction to the version it would keep.
    pub(crate) compaction_filter: Option<CompactionFilter>,
}

/// What a [`Options::compaction_filter`] decides for a record compaction would keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep the record.
    Keep,
    /// Drop it, as if it had been deleted (once no snapshot can see it).
    Drop,
}

/// A retention rule: called by compaction with each record it would keep.
pub(crate) type CompactionFilter = std::sync::Arc<dyn Fn(&crate::Record) -> Decision + Send + Sync>;

/// The thresholds of background maintenance (`Options::auto_compact` and the setters below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MaintenanceOptions {
    pub(crate) auto_compact: bool,
    /// A background compaction starts when the sealed (warm) bytes reach this (the high
    /// watermark); it moves every warm segment, so it ends at zero (the low watermark).
    pub(crate) warm_bytes_high: u64,
    /// Pending bytes past which writers are slowed down, and past which they wait.
    pub(crate) stall_bytes_soft: u64,
    pub(crate) stall_bytes_hard: u64,
    /// Least time between the starts of two background runs.
    pub(crate) interval_min: std::time::Duration,
    /// Write rate of background compaction, bytes per second (0: unlimited).
    pub(crate) bytes_per_sec: u64,
    /// Time without a write after which the worker compacts everything (idle run).
    pub(crate) idle: std::time::Duration,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            auto_compact: true,
            warm_bytes_high: limits::COMPACTION_WARM_BYTES_DEFAULT,
            stall_bytes_soft: 4 * limits::COMPACTION_WARM_BYTES_DEFAULT,
            stall_bytes_hard: 8 * limits::COMPACTION_WARM_BYTES_DEFAULT,
            interval_min: std::time::Duration::from_millis(100),
            bytes_per_sec: 0,
            idle: std::time::Duration::from_secs(10),
        }
    }
}

/// Milliseconds since the Unix epoch; injectable for TTL tests.
#[derive(Clone)]
pub(crate) struct Clock(Option<std::sync::Arc<dyn Fn() -> u64 + Send + Sync>>);

impl Clock {
    pub(crate) fn now_ms(&self) -> u64 {
        match &self.0 {
            Some(f) => f(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            embedding_dim: None,
            metric: Metric::Cosine,
            durability: Durability::Sync,
            read_only: false,
            segment_bytes_max: limits::SEGMENT_BYTES_DEFAULT,
            cold_segment_bytes_max: limits::COLD_SEGMENT_BYTES_DEFAULT,
            threads: 0,
            verify_checksums: true,
            clock: Clock(None),
            vfs: std::sync::Arc::new(OsVfs),
            maintenance: MaintenanceOptions::default(),
            compaction_filter: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("embedding_dim", &self.embedding_dim)
            .field("metric", &self.metric)
            .field("durability", &self.durability)
            .field("read_only", &self.read_only)
            .field("segment_bytes_max", &self.segment_bytes_max)
            .field("cold_segment_bytes_max", &self.cold_segment_bytes_max)
            .field("threads", &self.threads)
            .field("verify_checksums", &self.verify_checksums)
            .field("maintenance", &self.maintenance)
            .field("compaction_filter", &self.compaction_filter.is_some())
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Defaults: no embedding dimension, cosine metric, `Durability::Sync`, read-write,
    /// 64 MiB segments.
    pub fn new() -> Self {
        Self::default()
    }

    /// The embedding dimension, fixed per database and stored on disk. Opening an existing
    /// database with a different dimension is `InvalidArgument`.
    pub fn embedding_dim(mut self, dim: usize) -> Self {
        self.embedding_dim = Some(dim);
        self
    }

    /// The default metric of `nearest()`.
    pub fn metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// When writes become durable; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Open without the write lock; every write returns `Error::ReadOnly`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Size at which the active log segment is sealed (hot → warm).
    pub fn segment_bytes_max(mut self, bytes: u64) -> Self {
        self.segment_bytes_max = bytes;
        self
    }

    /// Size at which compaction starts a new cold segment (default 64 MiB; at least
    /// `SEGMENT_BYTES_MIN`). Smaller cold segments make compaction's output files smaller,
    /// its rewrites of clustered keys smaller, and its key-range steps shorter (a step
    /// publishes about this many bytes and frees the segments they replace); a key lookup
    /// still reads one segment, as cold key ranges never overlap.
    pub fn cold_segment_bytes_max(mut self, bytes: u64) -> Self {
        self.cold_segment_bytes_max = bytes;
        self
    }

    /// Threads one search (or batch of searches) may use to scan the cold tier (default:
    /// the number of available cores; 1 = the calling thread only).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The threads a search uses: `threads`, or the available cores when it is 0.
    pub(crate) fn search_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// Verify record checksums on reads (default `true`, as RocksDB's `verify_checksums`):
    /// a warm record or a cold row the first time this handle reads it (a bit per record or
    /// row remembers it held, as a block cache verifies a block when it loads it; those
    /// files are never written again). With
    /// `false`, reads trust the bytes after the structural checks; `Db::verify`, recovery
    /// and compaction still check every checksum.
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Background maintenance (default `true`): a thread of the handle compacts sealed
    /// segments into the cold tier once they reach `compaction_warm_bytes`, and writers are
    /// slowed, then stopped, while it falls behind (`write_stall_bytes`). With `false` data
    /// moves only on `seal()` and `compact()`, and writes never stall.
    pub fn auto_compact(mut self, on: bool) -> Self {
        self.maintenance.auto_compact = on;
        self
    }

    /// A retention rule compaction applies to every record it would keep (the newest live
    /// version of a key): `Decision::Drop` removes it as a delete would. Only versions no
    /// snapshot or iterator can see any more disappear (older readers keep their view). It
    /// must be a pure function of the record; a panic in it fails the compaction.
    pub fn compaction_filter(mut self, filter: impl Fn(&crate::Record) -> Decision + Send + Sync + 'static) -> Self {
        self.compaction_filter = Some(std::sync::Arc::new(filter));
        self
    }

    /// The most sealed (warm) bytes background compaction lets accumulate before it starts
    /// (default `limits::COMPACTION_WARM_BYTES_DEFAULT`, 256 MiB). While the cold tier is
    /// small it starts earlier: at a quarter of the cold tier's bytes, at least one segment.
    pub fn compaction_warm_bytes(mut self, bytes: u64) -> Self {
        self.maintenance.warm_bytes_high = bytes;
        self
    }

    /// Write stalls: past `soft` bytes awaiting compaction each commit is delayed (up to
    /// 1 ms, growing towards `hard`); past `hard` writers wait for background compaction
    /// (or get its error). Defaults: 4× and 8× `compaction_warm_bytes`' default.
    pub fn write_stall_bytes(mut self, soft: u64, hard: u64) -> Self {
        self.maintenance.stall_bytes_soft = soft;
        self.maintenance.stall_bytes_hard = hard;
        self
    }

    /// Least time between the starts of two background compactions (default 100 ms).
    pub fn compaction_interval_min(mut self, interval: std::time::Duration) -> Self {
        self.maintenance.interval_min = interval;
        self
    }

    /// Time without a write after which background maintenance seals and compacts
    /// everything (default 10 s), when anything is warm or at least 1 MiB is hot: a database left alone
    /// ends fully compacted, but for a hot tail of under 1 MiB written after the last run (a
    /// trickle of writes is not compacted record by record).
    pub fn compaction_idle(mut self, idle: std::time::Duration) -> Self {
        self.maintenance.idle = idle;
        self
    }

    /// Most bytes per second background compaction writes (default 0: unlimited). An
    /// explicit `compact()` is never limited.
    pub fn compaction_bytes_per_sec(mut self, bytes: u64) -> Self {
        self.maintenance.bytes_per_sec = bytes;
        self
    }

    /// Replace the wall clock used for TTL expiry (milliseconds since the Unix epoch).
    #[cfg(feature = "test-hooks")]
    pub fn clock(mut self, now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Clock(Some(std::sync::Arc::new(now_ms)));
        self
    }

    /// Replace the file system the engine uses (every open, read, write, fsync, rename,
    /// unlink, map…), e.g. with a fault injector (`test_hooks::FaultVfs`).
    #[cfg(feature = "test-hooks")]
    pub fn vfs(mut self, vfs: std::sync::Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(dim) = self.embedding_dim {
            if dim == 0 || dim > limits::MAX_EMBEDDING_DIM {
                return Err(Error::invalid("embedding_dim", format!("must be 1..={}, got {dim}", limits::MAX_EMBEDDING_DIM)));
            }
        }
        let range = limits::SEGMENT_BYTES_MIN..=limits::SEGMENT_BYTES_MAX;
        if !range.contains(&self.segment_bytes_max) {
            return Err(Error::invalid(
                "segment_bytes_max",
                format!("must be {}..={}, got {}", range.start(), range.end(), self.segment_bytes_max),
            ));
        }
        let m = &self.maintenance;
        if m.stall_bytes_soft > m.stall_bytes_hard || m.stall_bytes_hard < m.warm_bytes_high {
            return Err(Error::invalid(
                "write_stall_bytes",
                format!(
                    "need compaction_warm_bytes <= hard and soft <= hard, got warm {} soft {} hard {}",
                    m.warm_bytes_high, m.stall_bytes_soft, m.stall_bytes_hard
                ),
            ));
        }
        if self.cold_segment_bytes_max < limits::SEGMENT_BYTES_MIN {
            return Err(Error::invalid(
                "cold_segment_bytes_max",
                format!("must be at least {}, got {}", limits::SEGMENT_BYTES_MIN, self.cold_segment_bytes_max),
            ));
        }
        Ok(())
    }
}
