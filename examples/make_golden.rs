//! Writes the golden files of format v1: a small database with fixed content (see
//! `format-spec/golden/v1/README.md`), damaged copies of it, and a second database with a
//! cold tier (`db-cold/`: a MANIFEST, a cold segment, a warm and a hot log segment).
//! Run: `cargo run --example make_golden -- format-spec/golden/v1`
//!
//! The output is deterministic: one writer thread, one commit at a time, the TTL clock
//! injected (the `test-hooks` feature of the dev-dependency `strata-engine`), and strata
//! zeroes every padding byte. `tests/format_golden.rs` and `tests/format_golden_cold.rs` run
//! the same functions into a temporary directory and compare the result with the committed
//! files byte for byte.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::{Batch, Db, Durability, Options};

/// The wall clock the generator runs at, in ms since the Unix epoch (2023-11-14T22:13:20Z).
pub const CLOCK_MS: u64 = 1_700_000_000_000;
/// TTL of `ttl/far`: it expires at `CLOCK_MS + TTL_FAR_MS` = 4_700_000_000_000 (year 2118).
pub const TTL_FAR_MS: u64 = 3_000_000_000_000;
/// TTL of `ttl/past`: it expired one millisecond after it was written.
pub const TTL_PAST_MS: u64 = 1;
/// Embedding dimension of the golden database.
pub const EMBEDDING_DIM: usize = 4;
/// The key that holds a 0x00 and a 0xFF byte.
pub const ODD_KEY: &[u8] = &[0x00, 0xFF, b'k', 0x00, 0xFF];
/// Its content: every kind of byte a text-minded decoder trips on.
pub const ODD_CONTENT: &[u8] = &[0xFF, 0x00, 0x7F, 0x80];
/// Its embedding: -0.0, the smallest subnormal, the largest and the most negative f32.
pub const ODD_EMBEDDING: [f32; 4] = [-0.0, f32::from_bits(1), f32::MAX, f32::MIN];
/// Content of `delta`: 100 bytes, 0..100.
pub fn delta_content() -> Vec<u8> {
    (0u8..100).collect()
}

fn options() -> Options {
    Options::new().embedding_dim(EMBEDDING_DIM).durability(Durability::Sync).auto_compact(false).clock(|| CLOCK_MS)
}

/// Writes the golden database into `dir`, which must not exist, and removes its `LOCK`.
///
/// Session 1 writes seq 1..=7 and closes (a close mark ends segment 1). Session 2 reopens,
/// writes seq 8..=9, seals segment 1 (so it holds a close mark between records), writes
/// seq 10..=11 in segment 2 and seals it, writes seq 12..=14 in segment 3 and closes: a
/// close mark ends the active segment 3.
pub fn write_db(dir: &Path) -> strata::Result<()> {
    assert!(!dir.exists(), "{} already exists", dir.display());
    let db = Db::open(dir, options())?;
    db.put(b"alpha", b"first version of alpha", Some(&[1.0, 2.0, 3.0, 4.0]))?; // seq 1
    db.put(b"beta", b"", Some(&[0.5, -0.5, 0.25, -0.25]))?; // seq 2: empty content
    db.put(b"gamma", b"no embedding; deleted later in a batch", None)?; // seq 3
    db.put(ODD_KEY, ODD_CONTENT, Some(&ODD_EMBEDDING))?; // seq 4
    db.put_with_ttl(b"ttl/far", b"expires in the year 2118", None, Duration::from_millis(TTL_FAR_MS))?; // seq 5
    db.put_with_ttl(b"ttl/past", b"expired long ago", Some(&[0.0, 0.0, 0.0, 1.0]), Duration::from_millis(TTL_PAST_MS))?; // seq 6
    db.put(b"doomed", b"to be deleted", None)?; // seq 7
    db.close()?;
    drop(db);

    let db = Db::open(dir, options())?;
    db.put(b"alpha", b"second version of alpha", Some(&[4.0, 3.0, 2.0, 1.0]))?; // seq 8: overwrite
    db.delete(b"doomed")?; // seq 9
    db.seal()?; // segment 1 sealed, segment 2 started

    let mut batch = Batch::new(); // seq 10: three records (the first put is superseded)
    batch
        .put(b"batch/1", b"dropped: a later operation on the same key wins", None)
        .put(b"batch/2", b"second in batch", Some(&[0.125, 0.25, 0.375, 0.5]))
        .delete(b"gamma")
        .put(b"batch/1", b"first in batch", None);
    db.write(batch)?;
    db.put(b"delta", &delta_content(), None)?; // seq 11
    db.seal()?; // segment 2 sealed, segment 3 started

    db.put(b"epsilon", b"first record of the active segment", Some(&[-1.0, -2.0, -3.0, -4.0]))?; // seq 12
    db.put(b"zeta", b"the middle record", Some(&[1.5, 2.5, 3.5, 4.5]))?; // seq 13
    let mut batch = Batch::new(); // seq 14: the last commit, two records
    batch.put(b"omega/1", b"last commit, part 1", Some(&[9.0, 8.0, 7.0, 6.0])).put(b"omega/2", b"last commit, part 2", None);
    db.write(batch)?;
    db.close()?;
    drop(db);
    std::fs::remove_file(dir.join("LOCK"))?;
    Ok(())
}

/// File names of the golden database.
pub const META: &str = "META";
pub const SEGMENT_1: &str = "0000000000000001.log";
pub const SEGMENT_2: &str = "0000000000000002.log";
pub const SEGMENT_3: &str = "0000000000000003.log";

/// One damaged copy of the golden database: its directory name and what was done to it.
pub struct Variant {
    pub name: &'static str,
    pub damage: fn(&Path) -> std::io::Result<()>,
}

/// Every damaged copy, in the order `corrupt/README.md` lists them.
pub const VARIANTS: &[Variant] = &[
    Variant { name: "meta-flip", damage: |dir| flip(&dir.join(META), 12) },
    Variant { name: "meta-missing", damage: |dir| std::fs::remove_file(dir.join(META)) },
    Variant { name: "sealed-record-flip", damage: |dir| flip_in(&dir.join(SEGMENT_1), b"expires in the year 2118", 0) },
    Variant { name: "sealed-hint-flip", damage: |dir| flip_in_hint(&dir.join(SEGMENT_2), b"delta") },
    Variant { name: "sealed-trailer-flip", damage: |dir| flip_from_end(&dir.join(SEGMENT_1), 64 - 32) },
    Variant { name: "active-middle-record-flip", damage: |dir| flip_in(&dir.join(SEGMENT_3), b"the middle record", 4) },
    Variant { name: "active-last-record-flip", damage: |dir| flip_in(&dir.join(SEGMENT_3), b"last commit, part 2", 0) },
    Variant { name: "active-close-mark-flip", damage: |dir| flip_from_end(&dir.join(SEGMENT_3), 32 - 16) },
    Variant { name: "active-torn-tail", damage: |dir| cut_after(&dir.join(SEGMENT_3), b"last commit, part 2", 8) },
    Variant { name: "torn-creation", damage: |dir| truncate_to(&dir.join(SEGMENT_3), 10) },
];

/// Writes every variant of the database `db` into `out/<name>/`; `out` must not exist.
pub fn write_variants(db: &Path, out: &Path) -> std::io::Result<()> {
    assert!(!out.exists(), "{} already exists", out.display());
    std::fs::create_dir_all(out)?;
    for variant in VARIANTS {
        let dir = out.join(variant.name);
        copy_dir(db, &dir)?;
        (variant.damage)(&dir)?;
    }
    Ok(())
}

/// Copies the plain files of `from` into a new directory `to`.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    change(&mut bytes);
    std::fs::write(path, bytes)
}

/// Inverts every bit of the byte at `offset`.
fn flip(path: &Path, offset: usize) -> std::io::Result<()> {
    edit(path, |bytes| bytes[offset] ^= 0xFF)
}

fn flip_from_end(path: &Path, back: usize) -> std::io::Result<()> {
    edit(path, |bytes| {
        let at = bytes.len() - back;
        bytes[at] ^= 0xFF;
    })
}

/// Offset of the only occurrence of `needle` in the file's bytes.
fn find_once(bytes: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "{:?} must occur exactly once", String::from_utf8_lossy(needle));
    hits[0]
}

/// Flips byte `plus` of the only occurrence of `needle`.
fn flip_in(path: &Path, needle: &[u8], plus: usize) -> std::io::Result<()> {
    edit(path, |bytes| {
        let at = find_once(bytes, needle) + plus;
        bytes[at] ^= 0xFF;
    })
}

/// Flips the first byte of `key` where it appears in the hint block (its last occurrence;
/// the first is in the record).
fn flip_in_hint(path: &Path, key: &[u8]) -> std::io::Result<()> {
    edit(path, |bytes| {
        let at = bytes.windows(key.len()).rposition(|w| w == key).expect("key in the hint block");
        bytes[at] ^= 0xFF;
    })
}

/// Cuts the file `keep` bytes into the only occurrence of `needle`.
fn cut_after(path: &Path, needle: &[u8], keep: usize) -> std::io::Result<()> {
    edit(path, |bytes| {
        let at = find_once(bytes, needle) + keep;
        bytes.truncate(at);
    })
}

fn truncate_to(path: &Path, len: usize) -> std::io::Result<()> {
    edit(path, |bytes| bytes.truncate(len))
}

// ---- db-cold: a database with a cold tier ----------------------------------------------

/// Embedding dimension of `db-cold` (3, so that no column length is a multiple of 16).
pub const COLD_DIM: usize = 3;
/// Rows `r/000` ..= `r/149` of `db-cold`: enough for three fences and a four-block filter.
pub const COLD_ROW_COUNT: usize = 150;
/// TTL of `ttl/soon`: it expires at `CLOCK_MS + 1000`, after both compactions ran (so it is
/// a cold row), long before anyone reads the golden files.
pub const TTL_SOON_MS: u64 = 1_000;
/// `Options::cold_segment_bytes_max` of `db-cold`: compaction cuts its rows into two cold
/// segments.
pub const COLD_SEGMENT_BYTES_MAX: u64 = 8192;
/// The smallest key of `db-cold`: one 0x00 byte.
pub const COLD_MIN_KEY: &[u8] = &[0x00];
/// The largest key of `db-cold`: twelve 0xFF bytes.
pub const COLD_MAX_KEY: &[u8] = &[0xFF; 12];

/// Key of row `i`: `r/000` .. `r/149`.
pub fn cold_row_key(i: usize) -> Vec<u8> {
    format!("r/{i:03}").into_bytes()
}

/// Content of row `i`: empty for every fifth row.
pub fn cold_row_content(i: usize) -> Vec<u8> {
    if i.is_multiple_of(5) {
        Vec::new()
    } else {
        format!("content of row {i}").into_bytes()
    }
}

/// Embedding of row `i`: none for every third row.
pub fn cold_row_embedding(i: usize) -> Option<[f32; 3]> {
    (!i.is_multiple_of(3)).then(|| [i as f32, i as f32 + 0.5, -(i as f32)])
}

/// Writes the cold-tier golden database into `dir`, which must not exist, and removes its
/// `LOCK`. The clock starts at `CLOCK_MS` and is moved forward only where noted.
///
/// Session 1 writes seq 1..=160 and closes. Session 2 (seq 161..=172) overwrites and
/// deletes, seals segment 1, compacts it into cold segment 1; writes to segment 2, seals it,
/// compacts cold segment 1 and segment 2 into cold segment 2; writes to segment 3 and seals
/// it (a warm segment the MANIFEST does not list); writes to segment 4 and closes.
pub fn write_cold_db(dir: &Path) -> strata::Result<()> {
    assert!(!dir.exists(), "{} already exists", dir.display());
    let clock = Arc::new(AtomicU64::new(CLOCK_MS));
    let options = || {
        let clock = clock.clone();
        Options::new()
            .embedding_dim(COLD_DIM)
            .durability(Durability::Sync)
            .auto_compact(false)
            .cold_segment_bytes_max(COLD_SEGMENT_BYTES_MAX)
            .clock(move || clock.load(Ordering::SeqCst))
    };
    let db = Db::open(dir, options())?;
    db.put(b"alpha", b"first version of alpha", Some(&[1.0, 2.0, 3.0]))?; // seq 1
    db.put(b"beta", b"", Some(&[0.5, -0.5, 0.25]))?; // seq 2: empty content
    db.put(b"gamma", b"no embedding; deleted after the first compaction", None)?; // seq 3
    db.put(ODD_KEY, ODD_CONTENT, Some(&[-0.0, f32::from_bits(1), f32::MAX]))?; // seq 4
    db.put(COLD_MIN_KEY, b"the smallest key", None)?; // seq 5
    db.put(COLD_MAX_KEY, b"the largest key", Some(&[f32::MIN, 0.0, 1.0]))?; // seq 6
    db.put_with_ttl(b"ttl/far", b"expires in the year 2118", None, Duration::from_millis(TTL_FAR_MS))?; // seq 7
    db.put_with_ttl(b"ttl/soon", b"expires one second after it was written", Some(&[7.0, 8.0, 9.0]), Duration::from_millis(TTL_SOON_MS))?; // seq 8
    db.put_with_ttl(b"ttl/past", b"expired before the first compaction", None, Duration::from_millis(TTL_PAST_MS))?; // seq 9
    db.put(b"doomed", b"to be deleted", None)?; // seq 10
    for i in 0..COLD_ROW_COUNT {
        let embedding = cold_row_embedding(i);
        db.put(&cold_row_key(i), &cold_row_content(i), embedding.as_ref().map(|e| &e[..]))?;
        // seq 11 + i
    }
    db.close()?;
    drop(db);

    let db = Db::open(dir, options())?;
    db.put(b"alpha", b"second version of alpha", Some(&[3.0, 2.0, 1.0]))?; // seq 161: overwrite
    db.delete(b"doomed")?; // seq 162
    db.put(b"r/042", b"overwritten before the first compaction", None)?; // seq 163
    db.seal()?; // segment 1 sealed, segment 2 started
    clock.store(CLOCK_MS + 10, Ordering::SeqCst); // ttl/past has expired, ttl/soon has not
    db.compact()?; // cold segment 1 <- segment 1; MANIFEST generation 1

    db.delete(b"gamma")?; // seq 164: a tombstone over a cold row
    db.put(b"r/100", b"overwrites a cold row before the second compaction", Some(&[1.0, 0.0, 0.0]))?; // seq 165
    db.put(b"mid/1", b"a new key between cold rows", None)?; // seq 166
    db.seal()?; // segment 2 sealed, segment 3 started
    clock.store(CLOCK_MS + 20, Ordering::SeqCst);
    db.compact()?; // cold segment 2 <- cold segment 1 + segment 2; MANIFEST generation 2

    db.put(b"warm/1", b"in a sealed segment the MANIFEST does not list", Some(&[0.0, 1.0, 0.0]))?; // seq 167
    db.delete(b"r/010")?; // seq 168: a warm tombstone over a cold row
    db.put(b"r/020", b"a warm version over a cold row", None)?; // seq 169
    db.seal()?; // segment 3 sealed, segment 4 started

    db.put(b"hot/1", b"in the active segment", Some(&[0.0, 0.0, 1.0]))?; // seq 170
    db.put(b"beta", b"beta, rewritten in the hot tier", None)?; // seq 171: a hot version over a cold row
    db.delete(b"r/149")?; // seq 172: a hot tombstone over the cold row before the largest key
    db.close()?;
    drop(db);
    std::fs::remove_file(dir.join("LOCK"))?;
    Ok(())
}

/// Rows of the step database's first session: keys `s/000 ..`.
pub const STEP_ROW_COUNT: usize = 120;
/// `cold_segment_bytes_max` of the step database: about 30 rows per cold segment, so its
/// second compaction rewrites several segments and publishes a step after each.
pub const STEP_COLD_SEGMENT_BYTES_MAX: u64 = 4096;

/// Key of row `i` of the step database.
pub fn step_row_key(i: usize) -> Vec<u8> {
    format!("s/{i:03}").into_bytes()
}

/// Content of row `i` in session `round` (0 or 1) of the step database.
pub fn step_row_content(i: usize, round: usize) -> Vec<u8> {
    format!("row {i}, version {round}, ").repeat(1 + i % 3).into_bytes()
}

/// Embedding of row `i` in session `round` of the step database.
pub fn step_row_embedding(i: usize, round: usize) -> [f32; 3] {
    [i as f32, round as f32, -1.5]
}

/// Session 2 of the step database deletes every row `i` with `i % 7 == 3`, then overwrites
/// every row with `i % 4 == 1` (so row 17 is deleted, then written again).
pub fn step_row_overwritten(i: usize) -> bool {
    i % 4 == 1
}

/// See `step_row_overwritten`.
pub fn step_row_deleted(i: usize) -> bool {
    i % 7 == 3
}

/// Writes the golden database of a compaction stopped between two steps into `dir`, which
/// must not exist, and removes its `LOCK` (`format-spec/manifest.md`, layout version 3).
///
/// Session 1 writes rows 0..120 (seq 1..=120) and compacts them into four cold segments.
/// Session 2 deletes and overwrites rows all over the key range, then compacts: the
/// compaction publishes its first step (a layout 3 MANIFEST, the cold segment it replaced
/// deleted), and the second step's MANIFEST rename fails (`FaultVfs`), which stops it. The
/// orphans that leaves (`MANIFEST.tmp`, the second step's cold segment) are removed.
pub fn write_step_db(dir: &Path) -> strata::Result<()> {
    use strata_engine::test_hooks::{FaultKind, FaultVfs};
    assert!(!dir.exists(), "{} already exists", dir.display());
    let options = |vfs: &FaultVfs| {
        Options::new()
            .embedding_dim(COLD_DIM)
            .durability(Durability::Sync)
            .auto_compact(false)
            .cold_segment_bytes_max(STEP_COLD_SEGMENT_BYTES_MAX)
            .clock(|| CLOCK_MS)
            .vfs(vfs.as_vfs())
    };
    let counting = FaultVfs::counting();
    let db = Db::open(dir, options(&counting))?;
    for i in 0..STEP_ROW_COUNT {
        db.put(&step_row_key(i), &step_row_content(i, 0), Some(&step_row_embedding(i, 0)))?;
    }
    db.compact()?;
    db.close()?;
    drop(db);

    let counting = FaultVfs::counting();
    drop(Db::open(dir, options(&counting))?);
    let vfs = FaultVfs::failing(FaultKind::Rename, counting.count(FaultKind::Rename) + 2);
    let db = Db::open(dir, options(&vfs))?;
    for i in (0..STEP_ROW_COUNT).filter(|&i| step_row_deleted(i)) {
        db.delete(&step_row_key(i))?;
    }
    // Descending, so that the log's newest seq (row 1's put) lies in the first step: its
    // cold segment then holds the log segment's newest version, which only the MANIFEST's
    // log seq floor lets open accept.
    for i in (0..STEP_ROW_COUNT).rev().filter(|&i| step_row_overwritten(i)) {
        db.put(&step_row_key(i), &step_row_content(i, 1), Some(&step_row_embedding(i, 1)))?;
    }
    let stopped = db.compact();
    assert!(stopped.is_err() && vfs.fired(), "the second step's MANIFEST rename was to fail: {stopped:?}");
    drop(db);
    // What a crash before the second step's rename leaves, less what the next open would
    // remove as orphans: the staged MANIFEST.tmp and the second step's cold segment.
    std::fs::remove_file(dir.join("MANIFEST.tmp"))?;
    for file in strata::inspect(dir)?.into_iter().filter(|f| f.kind == strata::FileKind::ColdOrphan) {
        std::fs::remove_file(dir.join(file.name))?;
    }
    std::fs::remove_file(dir.join("LOCK"))?;
    Ok(())
}

/// What the step database holds: key -> (content, embedding).
pub fn step_db_records() -> std::collections::BTreeMap<Vec<u8>, (Vec<u8>, [f32; 3])> {
    (0..STEP_ROW_COUNT)
        .filter(|&i| step_row_overwritten(i) || !step_row_deleted(i))
        .map(|i| {
            let round = usize::from(step_row_overwritten(i));
            (step_row_key(i), (step_row_content(i, round), step_row_embedding(i, round)))
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out: PathBuf =
        std::env::args_os().nth(1).map(PathBuf::from).ok_or("usage: make_golden <output dir, e.g. format-spec/golden/v1>")?;
    let db = out.join("db");
    write_db(&db)?;
    write_variants(&db, &out.join("corrupt"))?;
    write_cold_db(&out.join("db-cold"))?;
    write_step_db(&out.join("db-step"))?;
    println!(
        "wrote {}, {}, {} and {}",
        db.display(),
        out.join("corrupt").display(),
        out.join("db-cold").display(),
        out.join("db-step").display()
    );
    Ok(())
}
