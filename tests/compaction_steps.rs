//! Goal: a compaction that rewrites many cold segments publishes its work in key-range steps
//! (`compact/mod.rs`): each step's MANIFEST replaces the rewritten cold segments it covers,
//! whose files go before the compaction ends, so that the old and the new cold tier do not
//! both sit on disk for the length of the run. Between two steps a version is both in a new
//! cold segment and in a log segment still listed: reads, a reopen (the MANIFEST's own log
//! seq floor, layout 3), `verify` and the next compaction must all accept that state, and
//! serve exactly the model.
//!
//! Method: a cold tier of many small segments, every one of them touched by overwrites, and a
//! compaction whose second MANIFEST rename fails (`FaultVfs`): it has published one step and
//! stops there. Checked against a `BTreeMap` model of every write.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::collect;
use strata::{Db, Durability, FileKind, Metric, Options, Search};
use strata_engine::test_hooks::{FaultKind, FaultVfs};

const DIM: usize = 4;
const KEYS: u32 = 600;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options() -> Options {
    Options::new()
        .embedding_dim(DIM)
        .durability(Durability::None)
        .segment_bytes_max(8 << 10)
        .cold_segment_bytes_max(16 << 10)
        .auto_compact(false)
}

fn write_round(db: &Db, model: &mut Model, round: u32) {
    for key in 0..KEYS {
        let k = format!("key/{key:05}").into_bytes();
        let c = format!("key {key} round {round} ").repeat(1 + (key % 7) as usize).into_bytes();
        db.put(&k, &c, Some(&embedding(key, round))).expect("put");
        model.insert(k, c);
    }
    // Deletes spread over every segment: each step drops tombstones too.
    for key in (round..KEYS).step_by(11) {
        let k = format!("key/{key:05}").into_bytes();
        db.delete(&k).expect("delete");
        model.remove(&k);
    }
}

fn embedding(key: u32, round: u32) -> [f32; DIM] {
    [key as f32, round as f32, 0.5, -1.0]
}

/// The round a live key's content was written in (its embedding says it too).
fn round_of(content: &[u8]) -> f32 {
    let text = String::from_utf8_lossy(content);
    text.split(" round ").nth(1).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok()).expect("content names its round")
}

fn check(db: &Db, model: &Model, context: &str) {
    // Search sees each live key once, with its newest version's embedding: L2 distance to
    // (key, 0, 0.5, -1) is the round squared.
    for key in [0u32, 7, KEYS / 3, KEYS - 2] {
        let query = embedding(key, 0);
        let hits = db.search(&Search::new(&query).k(KEYS as usize * 2).metric(Metric::L2)).expect("search");
        let keys: BTreeSet<Vec<u8>> = hits.iter().map(|h| h.key.clone()).collect();
        assert_eq!((hits.len(), keys.len()), (model.len(), model.len()), "{context}: search returns each live key once");
        assert!(keys.iter().eq(model.keys()), "{context}: search returns the live keys");
        let k = format!("key/{key:05}").into_bytes();
        if let Some(content) = model.get(&k) {
            let hit = hits.iter().find(|h| h.key == k).expect("the query's own key");
            assert_eq!(hit.score, round_of(content) * round_of(content), "{context}: key {key} scored from its newest version");
        }
    }
    let found: Model = collect(db.iter()).into_iter().map(|e| (e.key, e.content)).collect();
    assert!(found == *model, "{context}: the database differs from the model ({} against {} records)", found.len(), model.len());
    for key in [0, 1, KEYS / 2, KEYS - 1, KEYS + 5] {
        let k = format!("key/{key:05}").into_bytes();
        assert_eq!(db.get(&k).expect("get").map(|r| r.content().to_vec()), model.get(&k).cloned(), "{context}: get {key}");
    }
}

fn cold_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cold"))
        .collect()
}

fn manifest_layout(dir: &Path) -> Option<u32> {
    strata::inspect(dir).expect("inspect").into_iter().find(|f| f.kind == FileKind::Manifest).and_then(|f| f.format_version)
}

#[test]
fn a_compaction_cut_short_after_a_step_has_freed_what_the_step_replaced_and_loses_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    let vfs = FaultVfs::counting();
    let mut model = Model::new();
    let db = Db::open(temp.path(), options().vfs(vfs.as_vfs())).expect("open");
    write_round(&db, &mut model, 0);
    db.compact().expect("first compaction");
    let before = cold_files(temp.path());
    assert!(before.len() >= 4, "a cold tier of several segments: {before:?}");
    assert_eq!(manifest_layout(temp.path()), Some(2), "a finished compaction leaves a whole MANIFEST");
    write_round(&db, &mut model, 1); // every cold segment gets new versions
    drop(db);

    // The next compaction's first step renames its MANIFEST; the second rename fails.
    let counting = FaultVfs::counting();
    drop(Db::open(temp.path(), options().vfs(counting.as_vfs())).expect("reopen"));
    let vfs = FaultVfs::failing(FaultKind::Rename, counting.count(FaultKind::Rename) + 2);
    let db = Db::open(temp.path(), options().vfs(vfs.as_vfs())).expect("reopen");
    assert!(db.compact().is_err(), "the second step's MANIFEST rename fails");
    assert!(vfs.fired());
    check(&db, &model, "the failed compaction's handle");
    let after = cold_files(temp.path());
    let freed: Vec<&String> = before.difference(&after).collect();
    assert!(!freed.is_empty(), "the first step deleted the cold segments it replaced, before the compaction ended: {after:?}");
    assert!(after.len() < before.len() * 2, "the old and the new cold tier are not both on disk");
    drop(db);

    assert_eq!(manifest_layout(temp.path()), Some(3), "the MANIFEST on disk is the first step's");
    let db = Db::open(temp.path(), options()).expect("a step's state opens");
    check(&db, &model, "reopened at a step");
    db.verify().expect("a step's state verifies");
    db.compact().expect("the next compaction finishes the job");
    assert_eq!(manifest_layout(temp.path()), Some(2));
    check(&db, &model, "compacted after the step");
    let stats = db.stats();
    assert_eq!((stats.hot.records, stats.warm.records, stats.index_entries), (0, 0, 0), "everything cold: {stats:?}");
    assert_eq!(stats.cold.records, model.len() as u64, "one row per live key: {stats:?}");
    db.close().expect("close");
    drop(db);
    let db = Db::open(temp.path(), options()).expect("reopen");
    assert_eq!(db.stats().orphans_removed, 0, "nothing left behind");
    check(&db, &model, "reopened");
    db.verify().expect("verify");
}
