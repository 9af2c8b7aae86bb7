//! Goal: an I/O failure at any point of `strata::repair` loses nothing. Whatever operation
//! fails and however (EIO, ENOSPC, short or torn write, fsync, rename, unlink), the repair
//! returns an error or succeeds — never panics — and afterwards:
//! - a writable open either refuses (the original, still damaged) or serves exactly what a
//!   fault-free repair salvages (the swap passed its commit point and is rolled forward);
//! - a second, fault-free `repair` succeeds and the database holds exactly the salvage;
//! - every original file is still there byte for byte, in the directory or kept aside in
//!   `repair-<n>/` (contract 9: repair deletes nothing that may hold data).
//!
//! Method: a database with every tier (cold, sealed warm, hot) whose MANIFEST and one sealed
//! segment record are damaged; the fault-free repair of a copy is the reference. The
//! `test-hooks` `FaultVfs` (through `test_hooks::repair_with_vfs`) counts every operation of
//! one repair, then fails the N-th for every N and every fault kind, each on a fresh copy.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::{collect, Entry};
use strata::{Db, Durability, Error, Options};
use strata_engine::test_hooks::{repair_with_vfs, FaultKind, FaultVfs};

const DIM: usize = 4;

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Flush).segment_bytes_max(16 << 10).auto_compact(false)
}

fn embedding(i: u32) -> [f32; DIM] {
    [i as f32, -0.5, 1.0 / (i as f32 + 1.0), 0.0]
}

/// Every file under `dir` (recursively), by path relative to `dir`, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.strip_prefix(dir).expect("under dir").to_path_buf(), std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for (name, bytes) in files_under(from) {
        std::fs::write(to.join(name), bytes).expect("copy file");
    }
}

/// Flips one byte in the middle of `key`'s content in the log segment `file`.
fn damage_record(dir: &Path, file: &str, key: &[u8]) {
    let path = dir.join(file);
    let mut bytes = std::fs::read(&path).expect("read segment");
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the key is in the segment") + key.len() + 3;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).expect("write damaged segment");
}

/// A database with a cold tier, two sealed warm segments and a hot one; then its MANIFEST
/// and one record of the first sealed segment are damaged, so open refuses it.
fn build_damaged(dir: &Path) {
    let db = Db::open(dir, options()).expect("open");
    for i in 0..40u32 {
        db.put(format!("cold/{i:02}").as_bytes(), format!("cold content {i}").as_bytes(), Some(&embedding(i))).expect("put");
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    for i in 0..30u32 {
        db.put(format!("warm/{i:02}").as_bytes(), &vec![b'w'; 200 + i as usize], None).expect("put");
    }
    db.delete(b"cold/03").expect("delete");
    db.seal().expect("seal");
    for i in 0..20u32 {
        db.put(format!("hot/{i:02}").as_bytes(), format!("hot content {i}").as_bytes(), Some(&embedding(i + 100))).expect("put");
    }
    db.close().expect("close");
    drop(db);
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    let warm = logs.iter().find(|n| std::fs::read(dir.join(n)).expect("read").windows(7).any(|w| w == b"warm/07")).expect("warm segment");
    damage_record(dir, warm, b"warm/07");
    let manifest = dir.join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).expect("read MANIFEST");
    bytes[13] ^= 0x01; // the generation: a checksum mismatch
    std::fs::write(&manifest, bytes).expect("damage MANIFEST");
    let opened = Db::open(dir, options()).map(|_| ());
    assert!(matches!(opened, Err(Error::Corruption { .. })), "the damaged database must be refused: {opened:?}");
}

fn contents(dir: &Path) -> strata::Result<Vec<Entry>> {
    let db = Db::open(dir, options())?;
    let entries = collect(db.iter());
    db.verify()?;
    db.close()?;
    Ok(entries)
}

/// Every original file is in `dir` or in one of its `repair-<n>/` directories, unchanged.
fn originals_kept(dir: &Path, originals: &BTreeMap<PathBuf, Vec<u8>>) -> Result<(), String> {
    let now = files_under(dir);
    for (name, bytes) in originals {
        let kept = now.iter().any(|(path, b)| b == bytes && (path == name || path.file_name() == Some(name.as_os_str())));
        if !kept {
            return Err(format!("original {} is gone or changed", name.display()));
        }
    }
    Ok(())
}

/// One case: repair under `vfs`, then the checks of the module comment.
fn run_case(damaged: &Path, dir: &Path, vfs: &FaultVfs, expected: &[Entry]) -> Result<(), String> {
    copy_dir(damaged, dir);
    let originals = files_under(damaged);
    let outcome = catch_unwind(AssertUnwindSafe(|| repair_with_vfs(dir, vfs.as_vfs()))).map_err(|_| "repair panicked".to_string())?;
    if outcome.is_err() {
        match contents(dir) {
            Ok(found) if found != expected => return Err("after the failed repair an open serves something else".into()),
            Ok(_) | Err(Error::Corruption { .. }) => {}
            Err(other) => return Err(format!("after the failed repair, open: {other}")),
        }
    }
    strata::repair(dir).map_err(|e| format!("the fault-free repair after it: {e}"))?;
    let found = contents(dir).map_err(|e| format!("open after repair: {e}"))?;
    if found != expected {
        return Err(format!("after repair: {} records, expected {}", found.len(), expected.len()));
    }
    originals_kept(dir, &originals)
}

#[test]
fn a_failure_at_any_io_operation_of_repair_loses_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    let damaged = temp.path().join("damaged");
    build_damaged(&damaged);

    let reference = temp.path().join("reference");
    copy_dir(&damaged, &reference);
    let counting = FaultVfs::counting();
    let report = repair_with_vfs(&reference, counting.as_vfs()).expect("fault-free repair");
    assert!(report.rebuilt, "the damaged database is rebuilt");
    let expected = contents(&reference).expect("the repaired database opens");
    assert!(expected.len() >= 80, "the salvage keeps the intact records ({} kept)", expected.len());
    assert!(!expected.iter().any(|e| e.key == b"warm/07"), "the damaged record is not served");

    let mut failures = Vec::new();
    for kind in FaultKind::ALL {
        let count = counting.count(kind);
        let mut fired = 0;
        for nth in 1..=count {
            let vfs = FaultVfs::failing(kind, nth);
            let dir = temp.path().join(format!("{kind:?}-{nth}"));
            if let Err(problem) = run_case(&damaged, &dir, &vfs, &expected) {
                failures.push(format!("{kind:?} at operation {nth}: {problem}"));
            }
            fired += u64::from(vfs.fired());
            std::fs::remove_dir_all(&dir).expect("remove case dir");
        }
        eprintln!("repair_faults: {kind:?}: {count} cases run, fault fired in {fired}");
        assert!(kind == FaultKind::Unlink || count > 0, "repair reaches no operation {kind:?} can hit");
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}
