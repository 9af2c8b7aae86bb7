//! Helpers shared by the integration tests: an injectable clock, owned copies of records
//! (compared bit for bit), directory listings.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata::{Options, Record};

/// A wall clock the test moves by hand (milliseconds since the Unix epoch).
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    /// An even start, so tests that advance by even steps and use odd TTLs never land
    /// exactly on an expiry instant.
    pub const START_MS: u64 = 1_700_000_000_000;

    pub fn new() -> TestClock {
        TestClock(Arc::new(AtomicU64::new(Self::START_MS)))
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// `options` with this clock installed.
    pub fn install(&self, options: Options) -> Options {
        let now = self.0.clone();
        options.clock(move || now.load(Ordering::SeqCst))
    }
}

/// An owned copy of a record: key, content, embedding as raw bits (so -0.0 and NaN
/// payloads compare exactly), seq.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub key: Vec<u8>,
    pub content: Vec<u8>,
    pub embedding_bits: Option<Vec<u32>>,
    pub seq: u64,
}

impl Entry {
    pub fn of(record: &Record) -> Entry {
        Entry {
            key: record.key().to_vec(),
            content: record.content().to_vec(),
            embedding_bits: record.embedding().map(bits),
            seq: record.seq(),
        }
    }
}

pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Every record an iterator yields, in its order; panics on an error item.
pub fn collect(iter: impl Iterator<Item = strata::Result<Record>>) -> Vec<Entry> {
    iter.map(|r| Entry::of(&r.expect("iterator item"))).collect()
}

/// (file name, length) of every file in `dir`, sorted: what a call left on disk.
pub fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| {
            let e = e.expect("dir entry");
            (e.file_name().to_string_lossy().into_owned(), e.metadata().expect("metadata").len())
        })
        .collect();
    files.sort();
    files
}

/// Asserts that keys ascend strictly (`descending = false`) or descend strictly.
pub fn assert_strictly_ordered(entries: &[Entry], descending: bool, context: &str) {
    for pair in entries.windows(2) {
        let ok = if descending { pair[0].key > pair[1].key } else { pair[0].key < pair[1].key };
        assert!(ok, "{context}: keys out of order: {:?} then {:?}", pair[0].key, pair[1].key);
    }
}
