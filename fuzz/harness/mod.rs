//! Shared by the fuzz targets and by `tests/fuzz_corpus_replay.rs`: put arbitrary bytes
//! where strata expects one of its files, then open (read-only and read-write), iterate,
//! get, verify and stat. Any `Err` is fine; a panic, a hang or UB is a bug.
#![allow(dead_code)] // each fuzz target calls one entry point; the replay test calls them all

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use strata::{Db, Options};

const DIM: usize = 4;

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("strata-fuzz-{}-{n}", std::process::id()));
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
