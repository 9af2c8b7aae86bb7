//! Helpers shared by the crash, recovery and corruption tests: seeds, an in-memory model of
//! the database, byte-level file surgery, and the on-disk layout facts of
//! `format-spec/log-segment.md` the tests need to aim at a record, a hint block or a trailer.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Batch, Db, Error, Record};

/// Size of the segment header at offset 0 of every log segment.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// Size of a record header; the key follows it.
pub const RECORD_HEADER_LEN: usize = 32;
/// Size of the trailer that ends a sealed segment.
pub const TRAILER_LEN: u64 = 64;
/// A clean close appends one record with no key, content or embedding.
/// A format 2 close mark: a 32-byte header and its own offset as 8 bytes of content.
pub const CLOSE_MARK_LEN: u64 = 40;
/// A group mark (format 2): a 32-byte header and the durable end as 8 bytes of content.
pub const GROUP_MARK_LEN: u64 = 40;
/// The format version field sits right after the 8-byte magic in META, segment headers and
/// trailers; the checksum of those 64-byte blocks is at offset 60 and covers bytes 0..60.
pub const VERSION_AT: usize = 8;
pub const BLOCK_CRC_AT: usize = 60;
/// Trailer fields read by the tests (offsets inside the trailer).
pub const TRAILER_RECORDS_END_AT: usize = 16;
pub const TRAILER_HINT_LEN_AT: usize = 24;
pub const TRAILER_HINT_CRC_AT: usize = 48;
/// A hint entry: a 32-byte header (key length at offset 4), then the key, padded to 8.
pub const HINT_ENTRY_HEADER_LEN: usize = 32;
pub const HINT_ENTRY_KEY_LEN_AT: usize = 4;

/// The seed of this run: `STRATA_TEST_SEED` when set, a fresh random one otherwise. It is
/// printed (libtest shows it when the test fails) so any failure can be replayed.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("STRATA_TEST_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("STRATA_TEST_SEED={text:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed {seed} (replay with STRATA_TEST_SEED={seed})");
    seed
}

/// A deterministic generator for one purpose within a run: the same `(seed, parts)` always
/// gives the same stream, whatever else the test did before.
pub fn rng_for(seed: u64, parts: &[u64]) -> StdRng {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    for &part in parts {
        state = splitmix(state ^ part.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    }
    StdRng::seed_from_u64(state)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs this test binary again as a child doing only `child_test`, with `envs` set, its
/// stdout piped (the child reports there) and its stderr written to `stderr_path`.
pub fn spawn_child<'a>(
    child_test: &str,
    envs: impl IntoIterator<Item = (&'a str, &'a std::ffi::OsStr)>,
    stderr_path: &Path,
) -> std::process::Child {
    let exe = std::env::current_exe().expect("path of the test binary");
    let stderr = std::fs::File::create(stderr_path).expect("child stderr file");
    std::process::Command::new(exe)
        .args(["--exact", child_test, "--nocapture", "--test-threads", "1"])
        .envs(envs)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn the child")
}

pub fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

pub fn random_embedding(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.gen_range(-4.0f32..4.0)).collect()
}

/// The mix of writes a crash test's child makes (`random_commit`).
pub struct WriteMix<'a> {
    /// Keys are `{key_prefix}k{n:02}`, `n` below `keys`.
    pub key_prefix: &'a str,
    pub keys: u64,
    /// Every content starts with this tag, so a stored value names the write that made it.
    pub tag: String,
    pub dim: usize,
    /// Content lengths: 1 write in 20 from `large`, 5 from `medium`, the rest below 200 B.
    pub large: std::ops::Range<usize>,
    pub medium: std::ops::Range<usize>,
    /// Out of 20: single puts below `puts`, single deletes below `puts + deletes`, the rest
    /// batches of 2..=`batch_max` writes, each a delete with `batch_delete_chance`.
    pub puts: i32,
    pub deletes: i32,
    pub batch_max: i32,
    pub batch_delete_chance: f64,
}

/// One commit of `mix`, drawn from `rng`: a put, a delete, or a batch of puts and deletes.
pub fn random_commit(rng: &mut StdRng, mix: &WriteMix<'_>) -> Vec<Op> {
    let op = |rng: &mut StdRng, delete_chance: f64| {
        let key = format!("{}k{:02}", mix.key_prefix, rng.gen_range(0..mix.keys)).into_bytes();
        if rng.gen_bool(delete_chance) {
            return Op::Delete { key };
        }
        let len = match rng.gen_range(0..20) {
            0 => rng.gen_range(mix.large.clone()),
            1..6 => rng.gen_range(mix.medium.clone()),
            _ => rng.gen_range(0..200),
        };
        let mut content = mix.tag.clone().into_bytes();
        content.extend(random_bytes(rng, len));
        let embedding = rng.gen_bool(0.75).then(|| random_embedding(rng, mix.dim));
        Op::Put { key, content, embedding }
    };
    match rng.gen_range(0..20) {
        n if n < mix.puts => vec![op(rng, 0.0)],
        n if n < mix.puts + mix.deletes => vec![op(rng, 1.0)],
        _ => {
            let count = rng.gen_range(2..=mix.batch_max);
            (0..count).map(|_| op(rng, mix.batch_delete_chance)).collect()
        }
    }
}

// ---- the model ----------------------------------------------------------------------------

/// What a live key must hold. Embeddings compare bit for bit.
#[derive(Clone, Debug)]
pub struct Value {
    pub content: Vec<u8>,
    pub embedding: Option<Vec<f32>>,
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        let bits = |e: &Option<Vec<f32>>| e.as_ref().map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        self.content == other.content && bits(&self.embedding) == bits(&other.embedding)
    }
}

impl Value {
    pub fn of(record: &Record) -> Value {
        Value { content: record.content().to_vec(), embedding: record.embedding().map(<[f32]>::to_vec) }
    }
}

/// The live keys of a database and what each holds.
pub type Model = BTreeMap<Vec<u8>, Value>;

/// One write operation, as a test issues it and as the model applies it.
#[derive(Clone, Debug)]
pub enum Op {
    Put { key: Vec<u8>, content: Vec<u8>, embedding: Option<Vec<f32>> },
    Delete { key: Vec<u8> },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Applies one commit (a single op or a batch, in order: the later op on a key wins).
pub fn apply(model: &mut Model, commit: &[Op]) {
    for op in commit {
        match op {
            Op::Put { key, content, embedding } => {
                model.insert(key.clone(), Value { content: content.clone(), embedding: embedding.clone() });
            }
            Op::Delete { key } => {
                model.remove(key);
            }
        }
    }
}

/// Writes one commit: a lone op through `put`/`delete`, several through one `Batch`.
pub fn write_commit(db: &Db, commit: &[Op]) -> strata::Result<()> {
    match commit {
        [Op::Put { key, content, embedding }] => db.put(key, content, embedding.as_deref()),
        [Op::Delete { key }] => db.delete(key),
        ops => {
            let mut batch = Batch::new();
            for op in ops {
                match op {
                    Op::Put { key, content, embedding } => batch.put(key, content, embedding.as_deref()),
                    Op::Delete { key } => batch.delete(key),
                };
            }
            db.write(batch)
        }
    }
}

/// Every live record, in iteration order; an error, a duplicate or an out-of-order key is
/// reported as text.
pub fn read_all(db: &Db) -> Result<Model, String> {
    let mut found = Model::new();
    for item in db.iter() {
        let record = item.map_err(|e| format!("iter failed after {} records: {e}", found.len()))?;
        if found.last_key_value().is_some_and(|(last, _)| last.as_slice() >= record.key()) {
            return Err(format!("iter yielded {:?} out of order", String::from_utf8_lossy(record.key())));
        }
        found.insert(record.key().to_vec(), Value::of(&record));
    }
    Ok(found)
}

/// The first few differences between what the database holds and the model, as text.
pub fn describe_diff(found: &Model, expected: &Model) -> String {
    let mut lines = Vec::new();
    for (key, value) in expected {
        match found.get(key) {
            None => lines.push(format!("missing {:?}", String::from_utf8_lossy(key))),
            Some(v) if v != value => lines.push(format!(
                "wrong value for {:?}: content {} bytes (expected {}), first bytes {:?} (expected {:?})",
                String::from_utf8_lossy(key),
                v.content.len(),
                value.content.len(),
                &v.content[..v.content.len().min(24)],
                &value.content[..value.content.len().min(24)],
            )),
            Some(_) => {}
        }
    }
    for key in found.keys().filter(|k| !expected.contains_key(*k)) {
        lines.push(format!("unexpected {:?}", String::from_utf8_lossy(key)));
    }
    let total = lines.len();
    lines.truncate(8);
    format!("{total} differences: {}", lines.join("; "))
}

/// The database holds exactly `expected`: forward and backward iteration and `get`.
pub fn check_db(db: &Db, expected: &Model) -> Result<(), String> {
    let found = read_all(db)?;
    if found != *expected {
        return Err(describe_diff(&found, expected));
    }
    let mut backward = Vec::with_capacity(expected.len());
    for item in db.iter().rev() {
        backward.push(item.map_err(|e| format!("reverse iter failed: {e}"))?.key().to_vec());
    }
    if !backward.iter().eq(expected.keys().rev()) {
        return Err("reverse iteration differs from forward iteration".into());
    }
    for (key, value) in expected {
        match db.get(key) {
            Ok(Some(record)) if Value::of(&record) == *value && record.key() == key.as_slice() => {}
            other => return Err(format!("get({:?}) = {other:?}", String::from_utf8_lossy(key))),
        }
    }
    Ok(())
}

// ---- the on-disk layout ---------------------------------------------------------------------

fn align_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

/// Encoded length of a record (padding included): header, key, embedding from a 4-aligned
/// offset, content, zero padding to 8.
pub fn record_len(key_len: usize, embedding_values: usize, content_len: usize) -> u64 {
    let embedding_start = align_up(RECORD_HEADER_LEN + key_len, 4);
    align_up(embedding_start + embedding_values * 4 + content_len, 8) as u64
}

/// Where the records of `commit` lie when it is appended at `start`: one range per record,
/// in file order. Within a batch an op superseded by a later op on the same key is not written.
pub fn record_ranges(commit: &[Op], start: u64) -> Vec<std::ops::Range<u64>> {
    let mut ranges = Vec::new();
    let mut at = start;
    for (i, op) in commit.iter().enumerate() {
        if commit[i + 1..].iter().any(|later| later.key() == op.key()) {
            continue;
        }
        let len = match op {
            Op::Put { key, content, embedding } => record_len(key.len(), embedding.as_ref().map_or(0, Vec::len), content.len()),
            Op::Delete { key } => record_len(key.len(), 0, 0),
        };
        ranges.push(at..at + len);
        at += len;
    }
    ranges
}

pub fn segment_file_name(segment_id: u32) -> String {
    format!("{segment_id:016x}.log")
}

/// The log segment files of `dir`, ascending by id.
pub fn segment_files(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("list the database directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let id = u32::from_str_radix(name.strip_suffix(".log")?, 16).ok()?;
            Some((id, path))
        })
        .collect();
    files.sort();
    files
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).len()
}

pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// XORs `mask` into the byte at `offset` of the file.
pub fn xor_byte(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).expect("read file to damage");
    bytes[offset as usize] ^= mask;
    std::fs::write(path, bytes).expect("write damaged file");
}

pub fn truncate_file(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open file to cut");
    file.set_len(len).expect("cut file");
}

/// Rewrites the version field of a 64-byte block (META, segment header, trailer) starting
/// at `block_at`, and recomputes its checksum so only the version is "wrong".
pub fn set_block_version(bytes: &mut [u8], block_at: usize, version: u32) {
    bytes[block_at + VERSION_AT..block_at + VERSION_AT + 4].copy_from_slice(&version.to_le_bytes());
    fix_block_crc(bytes, block_at);
}

/// Recomputes the checksum of the 64-byte block at `block_at` (it covers bytes 0..60).
pub fn fix_block_crc(bytes: &mut [u8], block_at: usize) {
    let block = &mut bytes[block_at..block_at + 64];
    let crc = crc32fast::hash(&block[..BLOCK_CRC_AT]);
    block[BLOCK_CRC_AT..BLOCK_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The files of a database directory (every file but `LOCK`), held in memory so a test can
/// lay down fresh copies of one image many times.
#[derive(Clone)]
pub struct DirImage {
    pub files: Vec<(String, Vec<u8>)>,
}

impl DirImage {
    pub fn capture(dir: &Path) -> DirImage {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).expect("list the database directory") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 file name").to_string();
            if name != "LOCK" {
                files.push((name, std::fs::read(&path).expect("read database file")));
            }
        }
        files.sort();
        DirImage { files }
    }

    pub fn file(&self, name: &str) -> &[u8] {
        &self.files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no file {name} in the image")).1
    }

    pub fn file_mut(&mut self, name: &str) -> &mut Vec<u8> {
        &mut self.files.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no file {name} in the image")).1
    }

    /// Writes the image into a new directory `dir`.
    pub fn write_to(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("create image directory");
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes).expect("write image file");
        }
    }

    /// Is `dir` byte for byte this image (LOCK aside)?
    pub fn matches(&self, dir: &Path) -> bool {
        DirImage::capture(dir).files == self.files
    }
}

/// Asserts `result` is `Error::Corruption` in the file named `file_name` at an offset in
/// `offsets`; returns the offset.
#[track_caller]
pub fn expect_corruption<T: std::fmt::Debug>(
    result: strata::Result<T>,
    file_name: &str,
    offsets: std::ops::Range<u64>,
    context: &str,
) -> u64 {
    match result {
        Err(Error::Corruption { path, offset, detail }) => {
            assert!(
                path.file_name().and_then(|n| n.to_str()) == Some(file_name),
                "{context}: corruption reported in {} ({detail}), expected {file_name}",
                path.display()
            );
            assert!(offsets.contains(&offset), "{context}: corruption at offset {offset} ({detail}), expected in {offsets:?}");
            offset
        }
        other => panic!("{context}: expected Error::Corruption in {file_name} at {offsets:?}, got {other:?}"),
    }
}

// ---- the MANIFEST (format-spec/manifest.md) ---------------------------------------------------

/// What the tests read from a `MANIFEST`: which files it makes live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestFacts {
    pub generation: u64,
    pub log_floor: u32,
    pub next_cold_id: u64,
    pub seq_max: u64,
    pub cold_ids: Vec<u64>,
    pub log_ids: Vec<u32>,
}

/// Header lengths of MANIFEST layout versions 1, 2 and 3 (`format-spec/manifest.md`).
pub const MANIFEST_V1_HEADER_LEN: usize = 48;
pub const MANIFEST_HEADER_LEN: usize = 88;
pub const MANIFEST_V3_HEADER_LEN: usize = 96;
pub const MANIFEST_COLD_ENTRY_LEN: usize = 24;

/// Decodes `dir/MANIFEST` (layout and checksum checked); `None` when there is none.
pub fn read_manifest(dir: &Path) -> Option<ManifestFacts> {
    let bytes = match std::fs::read(dir.join("MANIFEST")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("read MANIFEST: {e}"),
    };
    assert!(bytes.len() >= MANIFEST_V1_HEADER_LEN + 4 && bytes.starts_with(b"STRATMAN"), "MANIFEST of {} bytes", bytes.len());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let header_len = match u32_at(8) {
        1 => MANIFEST_V1_HEADER_LEN,
        2 => MANIFEST_HEADER_LEN,
        3 => MANIFEST_V3_HEADER_LEN, // a compaction's step
        other => panic!("MANIFEST layout version {other}"),
    };
    let cold_count = u32_at(40) as usize;
    let log_count = u32_at(44) as usize;
    let crc_at = header_len + cold_count * MANIFEST_COLD_ENTRY_LEN + log_count * 4;
    assert_eq!(bytes.len(), crc_at + 4, "MANIFEST length against its counts");
    assert_eq!(crc32fast::hash(&bytes[..crc_at]), u32_at(crc_at), "MANIFEST checksum");
    let cold_ids = (0..cold_count).map(|i| read_u64(&bytes, header_len + i * MANIFEST_COLD_ENTRY_LEN)).collect();
    let logs_at = header_len + cold_count * MANIFEST_COLD_ENTRY_LEN;
    let log_ids = (0..log_count).map(|i| u32_at(logs_at + i * 4)).collect();
    Some(ManifestFacts {
        generation: read_u64(&bytes, 12),
        log_floor: u32_at(20),
        next_cold_id: read_u64(&bytes, 24),
        seq_max: read_u64(&bytes, 32),
        cold_ids,
        log_ids,
    })
}

pub fn cold_file_name(cold_id: u64) -> String {
    format!("{cold_id:016x}.cold")
}

/// The cold segment files of `dir`, ascending by id.
pub fn cold_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("list the database directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let id = u64::from_str_radix(name.strip_suffix(".cold")?, 16).ok()?;
            Some((id, path))
        })
        .collect();
    files.sort();
    files
}

/// The files a writable open of `dir` must remove as orphans of an interrupted compaction,
/// judged by the MANIFEST (or its absence): log segments below `log_floor`, cold segments
/// it does not list, a `MANIFEST.tmp`. Sorted file names.
pub fn expected_orphans(dir: &Path) -> Vec<String> {
    let manifest = read_manifest(dir).unwrap_or_default();
    let mut orphans: Vec<String> = Vec::new();
    for (id, path) in segment_files(dir) {
        if id < manifest.log_floor {
            orphans.push(path.file_name().and_then(|n| n.to_str()).expect("name").to_string());
        }
    }
    for (id, _) in cold_files(dir) {
        if !manifest.cold_ids.contains(&id) {
            orphans.push(cold_file_name(id));
        }
    }
    if dir.join("MANIFEST.tmp").exists() {
        orphans.push("MANIFEST.tmp".to_string());
    }
    orphans.sort();
    orphans
}

/// After a writable open of `dir`: every file is one `db` needs — `META`, `MANIFEST`,
/// `LOCK`, exactly the cold segments it reads, and as many log segments as its hot and
/// warm tiers count (all at or above the MANIFEST's `log_floor`); nothing else.
pub fn assert_only_live_files(db: &Db, dir: &Path, context: &str) {
    let stats = db.stats();
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the database directory")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut live_cold: Vec<u64> = db.cold_segments().iter().map(|s| s.id()).collect();
    live_cold.sort();
    let on_disk_cold: Vec<u64> = cold_files(dir).into_iter().map(|(id, _)| id).collect();
    assert_eq!(on_disk_cold, live_cold, "{context}: the cold files on disk are exactly the live cold segments: {names:?}");
    let logs = segment_files(dir);
    assert_eq!(logs.len() as u64, stats.hot.segments + stats.warm.segments, "{context}: log files against live log segments: {names:?}");
    let floor = read_manifest(dir).map_or(0, |m| m.log_floor);
    assert!(logs.iter().all(|(id, _)| *id >= floor), "{context}: a log segment below log_floor {floor} is left: {names:?}");
    for name in &names {
        let known = matches!(name.as_str(), "META" | "MANIFEST" | "LOCK") || name.ends_with(".log") || name.ends_with(".cold");
        assert!(known, "{context}: unexpected file {name} in {names:?}");
    }
}
