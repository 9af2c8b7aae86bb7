//! Every bound strata enforces, in one place. Each is checked at the API boundary with an
//! `Err(InvalidArgument)` and documented in `format-spec/limits.md`.

/// Longest key, in bytes. Keys are never empty.
pub const MAX_KEY_LEN: usize = 16 * 1024;
/// Longest content, in bytes. Empty content is valid.
pub const MAX_CONTENT_LEN: usize = 16 * 1024 * 1024;
/// Largest embedding dimension (number of f32 values per vector).
pub const MAX_EMBEDDING_DIM: usize = 65_536;
/// Most operations in one `Batch`.
pub const MAX_BATCH_OPS: usize = 1_000_000;
/// Most encoded bytes in one commit (a single put or a whole batch).
pub const MAX_COMMIT_BYTES: usize = 512 * 1024 * 1024;
/// Default size at which the active log segment is sealed.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest allowed `Options::segment_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024;
/// Largest allowed `Options::segment_bytes_max`.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Largest records region of a segment: it is sealed once it passes `SEGMENT_BYTES_MAX`,
/// so it holds at most one more commit. Record offsets therefore fit in a `u32`.
pub const SEGMENT_RECORDS_BYTES_MAX: u64 = SEGMENT_BYTES_MAX + MAX_COMMIT_BYTES as u64;
/// Largest segment file a reader accepts: the records region, a hint block no larger than
/// it (a hint entry is never larger than its record), the header and the trailer.
pub const SEGMENT_FILE_BYTES_MAX: u64 = 2 * SEGMENT_RECORDS_BYTES_MAX + 128;
/// Default sealed (warm) bytes at which background compaction starts (`Options::compaction_warm_bytes`).
pub const COMPACTION_WARM_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default size at which compaction starts a new cold segment, and about how much a
/// compaction writes between two of its key-range steps.
pub const COLD_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Largest `META` file a reader accepts: its fixed 64-byte layout. Checked (fstat, then a
/// read of at most one byte more) before anything is read, so a planted huge file or a
/// device that never ends is `Corruption`, not an unbounded read.
pub const META_FILE_BYTES_MAX: u64 = 64;
/// Largest `MANIFEST` file a reader accepts (64 MiB: over two million cold segments), checked
/// like `META_FILE_BYTES_MAX` before the file is read into memory.
pub const MANIFEST_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest segment id; ids are written as 16 hex digits in file names.
pub const SEGMENT_ID_MAX: u64 = u32::MAX as u64;

/// Largest commit sequence number. A record, trailer, MANIFEST or cold row claiming a larger
/// seq is corrupt (so `last_seq + 1` can never overflow); a handle that would assign a
/// larger one refuses the write. At a million commits per second it lasts 292 000 years.
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// Logical bytes of one record: key + content + embedding bytes.
pub const MAX_RECORD_LOGICAL_BYTES: usize = MAX_KEY_LEN + MAX_CONTENT_LEN + MAX_EMBEDDING_DIM * 4;

const _: () = assert!(MAX_KEY_LEN as u64 <= u32::MAX as u64);
const _: () = assert!(MAX_CONTENT_LEN as u64 <= u32::MAX as u64);
const _: () = assert!(SEGMENT_RECORDS_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(MAX_RECORD_LOGICAL_BYTES < MAX_COMMIT_BYTES);
const _: () = assert!(SEGMENT_FILE_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(MAX_EMBEDDING_DIM <= u32::MAX as usize / 4);
