//! The golden database of a compaction stopped between two steps
//! (`format-spec/golden/v5/db-step/`, MANIFEST layout 3) stays readable and means what
//! `format-spec/manifest.md` says. Method: an independent reader written from the spec decodes
//! its MANIFEST (layout 3: the log seq floor below `seq_max`, the log segments still listed);
//! the database opened through the public API holds exactly the generator's records, from a
//! state where the same versions sit in a new cold segment and in a listed log segment;
//! `verify` accepts it; a compaction turns it into an ordinary (layout 2) MANIFEST with the
//! same records; `examples/make_golden.rs` regenerates it byte for byte. Every test works on
//! a temporary copy; the committed files are never modified.

#[allow(dead_code)] // the generator's `main` and its other databases are not used here
#[path = "../examples/make_golden.rs"]
mod make_golden;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata::{Db, Options};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v5/db-step")
}

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn copy_of_golden() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    make_golden::copy_dir(&golden_dir(), &dir).unwrap();
    (temp, dir)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The MANIFEST as `format-spec/manifest.md` lays out version 3.
struct StepManifest {
    log_floor: u32,
    seq_max: u64,
    log_seq_floor: u64,
    cold_ids: Vec<u64>,
    log_ids: Vec<u32>,
}

fn decode_step_manifest(b: &[u8]) -> StepManifest {
    assert_eq!(&b[0..8], b"STRATMAN");
    assert_eq!(u32_at(b, 8), 3, "layout version 3: a compaction's step");
    let (cold_count, log_count) = (u32_at(b, 40) as usize, u32_at(b, 44) as usize);
    assert_eq!(b.len(), 96 + 24 * cold_count + 4 * log_count + 4, "length against the counts");
    assert_eq!(u32_at(b, b.len() - 4), crc32fast::hash(&b[..b.len() - 4]), "crc");
    assert_eq!(u32_at(b, 84), 0, "reserved");
    StepManifest {
        log_floor: u32_at(b, 20),
        seq_max: u64_at(b, 32),
        log_seq_floor: u64_at(b, 88),
        cold_ids: (0..cold_count).map(|i| u64_at(b, 96 + 24 * i)).collect(),
        log_ids: (0..log_count).map(|i| u32_at(b, 96 + 24 * cold_count + 4 * i)).collect(),
    }
}

/// Every live record of `db`, by iteration: key -> (content, embedding).
fn records(db: &Db) -> BTreeMap<Vec<u8>, (Vec<u8>, [f32; 3])> {
    db.iter()
        .map(|r| {
            let r = r.expect("iterate");
            let e: [f32; 3] = r.embedding().expect("every row has an embedding").try_into().expect("3 values");
            (r.key().to_vec(), (r.content().to_vec(), e))
        })
        .collect()
}

fn check_records(db: &Db, context: &str) {
    let expected = make_golden::step_db_records();
    assert!(records(db) == expected, "{context}: iteration differs from the generator's records");
    for i in 0..make_golden::STEP_ROW_COUNT {
        let key = make_golden::step_row_key(i);
        let got = db.get(&key).expect("get").map(|r| r.content().to_vec());
        assert_eq!(got, expected.get(&key).map(|(c, _)| c.clone()), "{context}: get row {i}");
    }
    assert_eq!(db.stats().live_records, expected.len() as u64, "{context}: live records counted once");
}

#[test]
fn the_step_manifest_decodes_as_the_spec_says() {
    let m = decode_step_manifest(&std::fs::read(golden_dir().join("MANIFEST")).unwrap());
    // Session 1's compaction moved seq 1..=120; the step moved some of session 2's versions.
    assert_eq!(m.log_seq_floor, 120, "the seq_max the compaction started from");
    assert!(m.seq_max > m.log_seq_floor, "the step's cold segments hold newer versions: {}", m.seq_max);
    assert_eq!(m.log_floor, 2, "log segment 2 is still live: the compaction did not finish");
    assert_eq!(m.log_ids, vec![2, 3], "the log segments stay listed");
    let on_disk = files_under(&golden_dir());
    for id in &m.cold_ids {
        assert!(on_disk.contains_key(&format!("{id:016x}.cold")), "listed cold segment {id} exists");
    }
    assert_eq!(on_disk.keys().filter(|n| n.ends_with(".cold")).count(), m.cold_ids.len(), "no unlisted cold file");
}

#[test]
fn the_step_database_opens_with_exactly_its_records_and_verifies() {
    let (_temp, dir) = copy_of_golden();
    let db = Db::open(&dir, Options::new().read_only(true)).expect("a step's state opens read-only");
    check_records(&db, "read-only");
    db.verify().expect("verify");
    drop(db);
    let db = Db::open(&dir, Options::new().auto_compact(false)).expect("and writable");
    check_records(&db, "writable");
    assert_eq!(db.stats().orphans_removed, 0, "nothing on disk is an orphan");
    db.compact().expect("the next compaction finishes the job");
    check_records(&db, "compacted");
    db.close().expect("close");
    drop(db);
    let manifest = std::fs::read(dir.join("MANIFEST")).unwrap();
    assert_eq!(u32_at(&manifest, 8), 2, "a finished compaction writes layout 2");
    let db = Db::open(&dir, Options::new()).expect("reopen");
    check_records(&db, "reopened");
    db.verify().expect("verify");
}

#[test]
fn make_golden_reproduces_v5_db_step_byte_for_byte() {
    let temp = tempfile::tempdir().unwrap();
    let fresh = temp.path().join("db-step");
    make_golden::write_step_db(&fresh).unwrap();
    let (fresh, golden) = (files_under(&fresh), files_under(&golden_dir()));
    assert_eq!(fresh.keys().collect::<Vec<_>>(), golden.keys().collect::<Vec<_>>(), "file names");
    for (name, bytes) in &golden {
        assert!(fresh[name] == *bytes, "db-step/{name} differs from what today's code writes");
    }
}
