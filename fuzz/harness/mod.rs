//! Shared by the fuzz targets and by `tests/fuzz_corpus_replay.rs`.
//!
//! The file targets (here): put arbitrary bytes where strata expects one of its files, then
//! open (read-only and read-write), iterate, get, verify and stat. Any `Err` is fine; a
//! panic, a hang or UB is a bug. The two targets with more logic have a file each:
//! `api_sequence.rs` (operations checked against a model) and `open_directory.rs` (an
//! arbitrary set of files, open and repair).
#![allow(dead_code)] // each fuzz target calls one entry point; the replay test calls them all

mod api_sequence;
mod open_directory;

#[allow(unused_imports)] // each fuzz target uses one
pub use api_sequence::api_sequence;
#[allow(unused_imports)]
pub use open_directory::{open_directory, open_directory_seeds};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use strata::{Db, Options, Record};

/// An owned record (both newer targets compare them), embedding as raw bits (so -0.0 and
/// NaN payloads compare exactly).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: Vec<u8>,
    content: Vec<u8>,
    embedding_bits: Option<Vec<u32>>,
    seq: u64,
}

impl Entry {
    fn of(record: &Record) -> Entry {
        Entry {
            key: record.key().to_vec(),
            content: record.content().to_vec(),
            embedding_bits: record.embedding().map(bits),
            seq: record.seq(),
        }
    }

    fn embedding(&self) -> Option<Vec<f32>> {
        self.embedding_bits.as_ref().map(|b| b.iter().map(|&b| f32::from_bits(b)).collect())
    }
}

/// The raw bits of `values`.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

const DIM: usize = 4;

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("strata-fuzz-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A new directory path (not created) for one input of the targets in `api_sequence.rs`
/// and `open_directory.rs`: on tmpfs (`/dev/shm`) when there is one, so that their many
/// fsyncs cost little; `tag` tells the runs apart.
fn fuzz_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("strata-fuzz-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A real, cleanly closed database of dimension `DIM` with a few records, to mutate.
fn template(dir: &Path) {
    let db = Db::open(dir, Options::new().embedding_dim(DIM)).expect("template database opens");
    db.put(b"a", b"first", Some(&[1.0, 2.0, 3.0, 4.0])).expect("template write");
    db.put(b"b", b"", None).expect("template write");
    db.close().expect("template close");
}

fn exercise(dir: &Path) {
    for read_only in [true, false] {
        let Ok(db) = Db::open(dir, Options::new().read_only(read_only)) else { continue };
        let mut keys = Vec::new();
        for record in db.iter().take(10_000) {
            match record {
                Ok(record) => {
                    keys.push(record.key().to_vec());
                    let _ = (record.content().len(), record.embedding().map(|e| e.len()));
                }
                Err(_) => break,
            }
        }
        for record in db.iter().rev().take(10_000) {
            if record.is_err() {
                break;
            }
        }
        for key in &keys {
            let _ = db.get(key);
        }
        let _ = db.verify();
        let _ = db.stats();
    }
}

fn segment_name(id: u32) -> String {
    format!("{id:016x}.log")
}

/// `data` replaces the active segment of a template database.
pub fn open_active_segment(data: &[u8]) {
    let dir = fresh_dir();
    template(&dir);
    std::fs::write(dir.join(segment_name(1)), data).expect("write fuzz input");
    exercise(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `data` becomes a sealed (older) segment, followed by an empty active one.
pub fn open_sealed_segment(data: &[u8]) {
    let dir = fresh_dir();
    template(&dir);
    {
        let db = Db::open(&dir, Options::new()).expect("template reopens");
        db.seal().expect("template seals");
        db.close().expect("template closes");
    }
    std::fs::write(dir.join(segment_name(1)), data).expect("write fuzz input");
    exercise(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `data` replaces the META file.
pub fn open_meta(data: &[u8]) {
    let dir = fresh_dir();
    template(&dir);
    std::fs::write(dir.join("META"), data).expect("write fuzz input");
    exercise(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the cold tier: cold segments and the MANIFEST -----------------------------------------

/// The cold segment of the cold template: the first compaction allocates id 0.
const COLD_NAME: &str = "0000000000000000.cold";
const MANIFEST: &str = "MANIFEST";

/// The files of a database with a cold tier, built once per process and kept in memory:
/// records put, one overwritten, one deleted, one with a far TTL; sealed and compacted
/// (cold segment 0, listed by the MANIFEST); then a sealed warm segment that overwrites a
/// cold key and adds one, so that a `compact()` in the exercise merges warm and cold; then
/// the active segment; closed.
fn cold_template_files() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = fresh_dir();
        let db = Db::open(&dir, Options::new().embedding_dim(DIM)).expect("cold template opens");
        db.put(b"a", b"first", Some(&[1.0, 2.0, 3.0, 4.0])).expect("template write");
        db.put(b"b", b"", None).expect("template write");
        db.put(&[0x00, 0xFF], b"odd key", Some(&[-0.0, 0.5, -0.5, 0.0])).expect("template write");
        db.put(b"c", b"doomed", None).expect("template write");
        db.put_with_ttl(b"t", b"far", None, std::time::Duration::from_secs(1 << 32)).expect("template write");
        db.put(b"a", b"second", Some(&[4.0, 3.0, 2.0, 1.0])).expect("template write");
        db.delete(b"c").expect("template write");
        db.seal().expect("template seals");
        db.compact().expect("template compacts");
        db.put(b"b", b"warm", None).expect("template write");
        db.put(b"d", b"new", Some(&[0.0, 0.0, 0.0, 1.0])).expect("template write");
        db.seal().expect("template seals");
        db.put(b"e", b"hot", None).expect("template write");
        db.close().expect("template closes");
        drop(db);
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("template listing")
            .map(|e| e.expect("template entry"))
            .filter(|e| e.file_name() != "LOCK")
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("template file")))
            .collect();
        files.sort();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(files.iter().any(|(name, _)| name == COLD_NAME) && files.iter().any(|(name, _)| name == MANIFEST));
        files
    })
}

/// A fresh copy of the cold template.
fn cold_template(dir: &Path) {
    std::fs::create_dir_all(dir).expect("fuzz dir");
    for (name, bytes) in cold_template_files() {
        std::fs::write(dir.join(name), bytes).expect("template copy");
    }
}

/// The template's valid cold segment (a seed of the `open_cold_segment` corpus).
pub fn cold_template_segment() -> Vec<u8> {
    cold_template_files().iter().find(|(name, _)| name == COLD_NAME).map(|(_, b)| b.clone()).expect("cold segment")
}

/// The template's valid MANIFEST (a seed of the `open_manifest` corpus).
pub fn cold_template_manifest() -> Vec<u8> {
    cold_template_files().iter().find(|(name, _)| name == MANIFEST).map(|(_, b)| b.clone()).expect("MANIFEST")
}

/// Vector searches over every tier (the cold tier is scanned straight from its columns):
/// each metric, a key prefix, a filter that reads the record.
fn search_all(db: &Db) {
    let query = [1.0, 0.5, -0.5, 0.25];
    let _ = db.nearest(&query, 3);
    for metric in [strata::Metric::Cosine, strata::Metric::Dot, strata::Metric::L2] {
        let _ = db.search(&strata::Search::new(&query).k(2).metric(metric).prefix(b"a"));
    }
    let _ = db.search(&strata::Search::new(&query).k(100).filter(|r| !r.content().is_empty()));
}

/// `exercise`, then what only a database with a cold tier has: vector searches, reads
/// without row checks, the zero-copy columns, a compaction that merges the warm segment
/// into the cold tier, and a reopen of its result.
fn exercise_cold(dir: &Path) {
    exercise(dir);
    if let Ok(db) = Db::open(dir, Options::new().read_only(true)) {
        search_all(&db);
    }
    if let Ok(db) = Db::open(dir, Options::new().read_only(true).verify_checksums(false)) {
        let mut keys = Vec::new();
        for record in db.iter().take(10_000) {
            let Ok(record) = record else { break };
            keys.push(record.key().to_vec());
            let _ = (record.content().len(), record.embedding().map(|e| e.len()));
        }
        for key in &keys {
            let _ = db.get(key).map(|r| r.map(|r| r.content().len()));
        }
        search_all(&db);
        for segment in db.cold_segments() {
            let columns = segment.columns();
            for i in 0..columns.rows().min(10_000) {
                let _ = (columns.keys.value(i).len(), columns.content.value(i).len(), columns.embedding(i).map(|e| e.len()));
                let _ = (columns.seqs[i], columns.expires_at_ms[i]);
            }
        }
    }
    if let Ok(db) = Db::open(dir, Options::new()) {
        if db.compact().is_ok() {
            let _ = db.iter().take(10_000).count();
            let _ = db.verify();
        }
        let _ = db.close();
    }
    if let Ok(db) = Db::open(dir, Options::new().read_only(true)) {
        let _ = db.iter().take(10_000).count();
        let _ = db.verify();
    }
}

/// CRC-32 (IEEE), bitwise: the harness needs no dependency beyond strata.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn put_u32(b: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = at.checked_add(4).and_then(|end| b.get_mut(at..end)) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

/// `bytes[at..at + len]`, if it lies inside `bytes` (lengths from the input are arbitrary).
fn range_in(bytes: &[u8], at: u64, len: u64) -> Option<std::ops::Range<usize>> {
    let at = usize::try_from(at).ok()?;
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    (end <= bytes.len()).then_some(at..end)
}

/// Makes every checksum of a (mutated) cold segment agree with its bytes, wherever the
/// structure lets the harness find them (format-spec/cold-segment.md): the row checksums,
/// the 11 buffer checksums, the header's and the footer's. Fuzzed bytes then get past the
/// checksums to the structural checks and the readers.
fn fix_cold_checksums(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    if b.len() < 88 {
        return b;
    }
    let tail = b.len() - 24;
    let Some(footer_len) = get_u64(&b, tail).and_then(|l| usize::try_from(l).ok()) else { return b };
    if footer_len < 304 || footer_len > tail - 64 {
        let crc = crc32(&b[..60]);
        put_u32(&mut b, 60, crc);
        return b;
    }
    let body = tail - footer_len;
    let entry = |b: &[u8], k: usize| Some((get_u64(b, body + 24 * k)?, get_u64(b, body + 24 * k + 8)?));
    // Row checksums: key ‖ content ‖ embedding (if valid) ‖ seq ‖ expiry, for each row.
    let rows = get_u64(&b, 24).unwrap_or(0).min(1 << 20) as usize;
    let dim = get_u32(&b, 12).unwrap_or(0).min(1 << 16) as usize;
    let ranges: Option<Vec<std::ops::Range<usize>>> = (0..11).map(|k| entry(&b, k).and_then(|(at, len)| range_in(&b, at, len))).collect();
    if let Some(r) = ranges.filter(|r| r.iter().all(|r| r.end <= body)) {
        let offsets = |column: usize, i: usize| get_u64(&b[r[column].clone()], 8 * i);
        let mut crcs = Vec::with_capacity(rows);
        for i in 0..rows {
            let field = |column: usize, width: usize| b.get(r[column].clone())?.get(width * i..width * (i + 1));
            let binary = |offsets_column: usize, data_column: usize| -> Option<&[u8]> {
                let (from, to) = (offsets(offsets_column, i)?, offsets(offsets_column, i + 1)?);
                let data = &b[r[data_column].clone()];
                data.get(usize::try_from(from).ok()?..usize::try_from(to).ok()?)
            };
            let (Some(key), Some(content), Some(seq), Some(expires)) = (binary(0, 1), binary(2, 3), field(6, 8), field(7, 8)) else {
                break;
            };
            let valid = b[r[4].clone()].get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0);
            let embedding = if valid && dim > 0 { field(5, 4 * dim) } else { Some(&[][..]) };
            let Some(embedding) = embedding else { break };
            crcs.push(crc32(&[key, content, embedding, seq, expires].concat()));
        }
        let crc_column = r[8].clone();
        for (i, crc) in crcs.into_iter().enumerate() {
            if 4 * i + 4 <= crc_column.len() {
                put_u32(&mut b, crc_column.start + 4 * i, crc);
            }
        }
    }
    for k in 0..11 {
        if let Some(range) = entry(&b, k).and_then(|(at, len)| range_in(&b, at, len)) {
            let crc = crc32(&b[range]);
            put_u32(&mut b, body + 24 * k + 16, crc);
        }
    }
    let crc = crc32(&b[..60]);
    put_u32(&mut b, 60, crc);
    let crc = crc32(&b[body..tail + 12]);
    put_u32(&mut b, tail + 12, crc);
    b
}

/// Sets the MANIFEST's entry of the cold segment (the only one) to `rows` and `file_len`,
/// and its checksum to match (format-spec/manifest.md).
fn set_manifest_entry(dir: &Path, rows: u64, file_len: u64) {
    let path = dir.join(MANIFEST);
    let mut m = std::fs::read(&path).expect("template MANIFEST");
    m[56..64].copy_from_slice(&rows.to_le_bytes());
    m[64..72].copy_from_slice(&file_len.to_le_bytes());
    let at = m.len() - 4;
    let crc = crc32(&m[..at]);
    m[at..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, m).expect("write MANIFEST");
}

/// `data` becomes the cold segment of a database whose MANIFEST lists it, three ways:
/// with the MANIFEST as it was (its rows and length rarely match: rejected after the
/// segment's own checks); with the MANIFEST's entry made to match the input's length and
/// header row count; and, when that changes anything, with the input's checksums fixed up
/// too, so that mutations reach the structural checks and the readers.
pub fn open_cold_segment(data: &[u8]) {
    let dir = fresh_dir();
    cold_template(&dir);
    std::fs::write(dir.join(COLD_NAME), data).expect("write fuzz input");
    if let Ok(db) = Db::open(&dir, Options::new().read_only(true)) {
        let _ = db.iter().take(10_000).count();
    }
    let rows_of = |b: &[u8]| get_u64(b, 24).unwrap_or(0);
    set_manifest_entry(&dir, rows_of(data), data.len() as u64);
    exercise_cold(&dir);
    let fixed = fix_cold_checksums(data);
    if fixed != data {
        let _ = std::fs::remove_dir_all(&dir);
        cold_template(&dir);
        std::fs::write(dir.join(COLD_NAME), &fixed).expect("write fuzz input");
        set_manifest_entry(&dir, rows_of(&fixed), fixed.len() as u64);
        exercise_cold(&dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `data` becomes the MANIFEST of a database with a cold tier: as it is, and (when that
/// changes it) with its checksum fixed up, so that mutations reach the checks after it and
/// open's classification of the files (orphans, missing files, seq floors).
pub fn open_manifest(data: &[u8]) {
    let dir = fresh_dir();
    for bytes in [Some(data.to_vec()), fixed_manifest(data)].into_iter().flatten() {
        cold_template(&dir);
        std::fs::write(dir.join(MANIFEST), &bytes).expect("write fuzz input");
        exercise_cold(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `data` with its last 4 bytes replaced by the CRC-32 of the rest; `None` when too short or
/// already so.
fn fixed_manifest(data: &[u8]) -> Option<Vec<u8>> {
    let at = data.len().checked_sub(4).filter(|&at| at >= 48)?;
    let mut fixed = data.to_vec();
    let crc = crc32(&data[..at]);
    fixed[at..].copy_from_slice(&crc.to_le_bytes());
    (fixed != data).then_some(fixed)
}
