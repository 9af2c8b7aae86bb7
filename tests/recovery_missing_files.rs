//! Goal: a file the database's own records say should exist and does not (the MANIFEST of
//! a compacted database, a log segment in the middle of the sequence) makes open refuse
//! with `Corruption` naming it and delete nothing (DESIGN.md contract 9); `strata::repair`
//! then brings every salvageable record back with its seq. A crash during a first
//! compaction (unlisted cold segments, a staged MANIFEST, every log segment present) is not
//! such a state: it opens and the leftovers are removed.
//!
//! Method: databases built through the public API, files removed or planted by hand,
//! directory listings compared before and after, records compared bit for bit with what was
//! read back right after writing them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{collect, listing, Entry};
use strata::{Db, Durability, Error, Options};

const DIM: usize = 4;

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Flush)
}

fn embedding(i: u32) -> Vec<f32> {
    vec![i as f32, -(i as f32) / 3.0, 0.5, f32::from_bits(0x3f80_0001 + i)]
}

/// Puts `key` and returns the record as read back (its seq included).
fn put(db: &Db, model: &mut BTreeMap<Vec<u8>, Entry>, key: &[u8], content: &[u8], i: u32) {
    db.put(key, content, Some(&embedding(i))).expect("put");
    let record = db.get(key).expect("get").expect("just written");
    model.insert(key.to_vec(), Entry::of(&record));
}

fn assert_corruption_naming(error: &Error, file_name: &str) {
    match error {
        Error::Corruption { path, detail, .. } => {
            assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(file_name), "names the missing file: {error}");
            assert!(detail.ends_with("run strata::repair to salvage"), "tells the user what to do: {detail}");
        }
        other => panic!("expected Corruption naming {file_name}, got {other}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Put 1000 records, seal, compact, put 1, close, delete the MANIFEST.
fn compacted_without_manifest(dir: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut model = BTreeMap::new();
    let db = Db::open(dir, options()).expect("open");
    for i in 0..1000u32 {
        put(&db, &mut model, format!("key/{i:05}").as_bytes(), format!("content {i}").as_bytes(), i);
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    put(&db, &mut model, b"key/after-compaction", b"written after the compaction", 7);
    db.close().expect("close");
    drop(db);
    assert!(listing(dir).iter().any(|(name, _)| name.ends_with(".cold")), "the compaction wrote a cold segment");
    std::fs::remove_file(dir.join("MANIFEST")).expect("remove MANIFEST");
    model
}

#[test]
fn a_lost_manifest_refuses_to_open_deletes_nothing_and_repair_brings_all_back() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("db");
    let model = compacted_without_manifest(&dir);
    assert_eq!(model.len(), 1001);
    let before = listing(&dir);
    for opts in [options(), options().read_only(true)] {
        let error = Db::open(&dir, opts).expect_err("a lost MANIFEST is not an empty cold tier");
        assert_corruption_naming(&error, "MANIFEST");
        assert_eq!(listing(&dir), before, "a refused open deletes nothing (the cold segment above all)");
    }

    let report = strata::repair(&dir).expect("repair");
    assert!(report.rebuilt);
    assert!(report.damaged_files.iter().any(|f| f.missing && f.path.ends_with("MANIFEST")), "{report:?}");
    assert_eq!(report.records_written, 1001);
    let db = Db::open(&dir, options()).expect("open after repair");
    db.verify().expect("verify after repair");
    let expected: Vec<Entry> = model.values().cloned().collect();
    assert_eq!(collect(db.iter()), expected, "all 1001 records, bit for bit, with their seqs");
    db.close().expect("close");
    let aside = report.originals_dir.expect("originals kept");
    for (name, len) in &before {
        if name != "LOCK" {
            assert_eq!(std::fs::metadata(aside.join(name)).expect("original kept").len(), *len, "{name} kept aside");
        }
    }
}

#[test]
fn a_lost_middle_segment_refuses_to_open_and_never_serves_its_deleted_keys() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("db");
    let mut model = BTreeMap::new();
    let db = Db::open(&dir, options()).expect("open");
    for i in 0..10u32 {
        put(&db, &mut model, format!("a/{i}").as_bytes(), b"first segment", i);
    }
    db.seal().expect("seal 1");
    for i in 0..5u32 {
        db.delete(format!("a/{i}").as_bytes()).expect("delete");
    }
    db.seal().expect("seal 2");
    for i in 0..5u32 {
        put(&db, &mut model, format!("b/{i}").as_bytes(), b"third segment", i);
    }
    db.close().expect("close");
    drop(db);
    let names: Vec<String> = listing(&dir).into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".log")).collect();
    assert_eq!(names, ["0000000000000001.log", "0000000000000002.log", "0000000000000003.log"]);
    std::fs::remove_file(dir.join("0000000000000002.log")).expect("remove the segment with the deletes");
    let before = listing(&dir);
    for opts in [options(), options().read_only(true)] {
        let error = Db::open(&dir, opts).expect_err("a gap in the segment ids is corruption");
        assert_corruption_naming(&error, "0000000000000002.log");
        assert_eq!(listing(&dir), before, "a refused open changes nothing");
    }

    // Repair salvages what is left: the deletes were in the lost file, so the first puts of
    // a/0..a/4 are the newest versions salvaged. The report names the missing file.
    let report = strata::repair(&dir).expect("repair");
    let missing: Vec<&Path> = report.damaged_files.iter().filter(|f| f.missing).map(|f| f.path.as_path()).collect();
    assert_eq!(missing, [dir.join("0000000000000002.log").as_path()], "{report:?}");
    let db = Db::open(&dir, options()).expect("open after repair");
    db.verify().expect("verify");
    assert_eq!(collect(db.iter()), model.values().cloned().collect::<Vec<_>>());
}

#[test]
fn a_first_compaction_that_never_installed_its_manifest_still_opens_and_cleans_up() {
    let temp = tempfile::tempdir().expect("tempdir");
    let (dir, compacted) = (temp.path().join("db"), temp.path().join("compacted"));
    let mut model = BTreeMap::new();
    let db = Db::open(&dir, options()).expect("open");
    for i in 0..300u32 {
        put(&db, &mut model, format!("k/{i:04}").as_bytes(), &vec![b'x'; (i % 50) as usize], i);
    }
    db.seal().expect("seal");
    db.delete(b"k/0007").expect("delete");
    model.remove(&b"k/0007"[..]);
    db.close().expect("close");
    drop(db);
    // The same database compacted: its cold segment and MANIFEST are what the crashed
    // compaction had written (fdatasynced) before the rename of MANIFEST.tmp.
    copy_dir(&dir, &compacted);
    let db = Db::open(&compacted, options()).expect("open copy");
    db.compact().expect("compact");
    db.close().expect("close copy");
    drop(db);
    let mut planted = Vec::new();
    for (name, _) in listing(&compacted).into_iter().filter(|(n, _)| n.ends_with(".cold")) {
        std::fs::copy(compacted.join(&name), dir.join(&name)).expect("plant cold");
        planted.push(name);
    }
    std::fs::copy(compacted.join("MANIFEST"), dir.join("MANIFEST.tmp")).expect("plant MANIFEST.tmp");
    assert!(!planted.is_empty());

    let db = Db::open(&dir, options()).expect("every log segment is there: the cold files are orphans");
    assert_eq!(db.stats().orphans_removed, planted.len() as u64 + 1);
    assert_eq!(collect(db.iter()), model.values().cloned().collect::<Vec<_>>());
    db.verify().expect("verify");
    db.close().expect("close");
    let left: Vec<String> = listing(&dir).into_iter().map(|(n, _)| n).collect();
    assert!(left.iter().all(|n| !n.ends_with(".cold") && n != "MANIFEST.tmp"), "orphans removed: {left:?}");
}

/// Without a MANIFEST, a cold segment is an orphan only if the log holds everything it does:
/// one holding a seq newer than the log's newest proves the log's tail is gone too. A cold
/// segment cut short (no footer) was never finished and is an orphan.
#[test]
fn without_a_manifest_a_cold_segment_newer_than_the_log_is_corruption_and_a_torn_one_an_orphan() {
    let temp = tempfile::tempdir().expect("tempdir");
    let (dir, longer) = (temp.path().join("db"), temp.path().join("longer"));
    let mut model = BTreeMap::new();
    let db = Db::open(&dir, options()).expect("open");
    for i in 0..100u32 {
        put(&db, &mut model, format!("k/{i:04}").as_bytes(), b"v", i);
    }
    db.seal().expect("seal");
    db.close().expect("close");
    drop(db);
    copy_dir(&dir, &longer);
    let db = Db::open(&longer, options()).expect("open copy");
    db.put(b"k/newer", b"newer than anything in db", None).expect("put");
    db.seal().expect("seal");
    db.compact().expect("compact");
    db.close().expect("close");
    drop(db);
    let cold = listing(&longer).into_iter().map(|(n, _)| n).find(|n| n.ends_with(".cold")).expect("cold");
    let bytes = std::fs::read(longer.join(&cold)).expect("read cold");

    std::fs::write(dir.join(&cold), &bytes).expect("plant a newer cold segment");
    let before = listing(&dir);
    assert_corruption_naming(&Db::open(&dir, options()).expect_err("not provably an orphan"), "MANIFEST");
    assert_eq!(listing(&dir), before, "nothing deleted");

    std::fs::write(dir.join(&cold), &bytes[..bytes.len() / 2]).expect("plant a torn one");
    let db = Db::open(&dir, options()).expect("a cold segment without a footer was never finished");
    assert_eq!(db.stats().orphans_removed, 1);
    assert_eq!(collect(db.iter()), model.values().cloned().collect::<Vec<_>>());
}
