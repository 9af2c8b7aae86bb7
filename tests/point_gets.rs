//! Goal: `Db::get` answers with each key's newest version whether it comes from the index's
//! point cache or the skiplist: through overwrites, deletes, TTLs, seals, background
//! compaction (which retires what the cache points at), the cache's growth, and reopen; and,
//! with a writer and compactions running, a get never goes back before the last write
//! acknowledged to the reader, nor sees a batch before it is visible whole.
//! Method: a `BTreeMap` model of every write, compared get by get; for the concurrent case,
//! versions numbered by the writer, with a fixed rule for which are deletes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Durability, Options};

/// Small segments; background compaction once `warm_bytes` are warm.
fn options(auto_compact: bool, warm_bytes: u64) -> Options {
    Options::new()
        .auto_compact(auto_compact)
        .embedding_dim(2)
        .durability(Durability::None)
        .segment_bytes_max(64 << 10)
        .cold_segment_bytes_max(128 << 10)
        .compaction_warm_bytes(warm_bytes)
        .compaction_interval_min(Duration::ZERO)
}

/// Keys of both tests: ten times what the cache's first table holds.
const KEYS: u32 = 5_000;

fn key(k: u32) -> Vec<u8> {
    format!("key/{k:05}").into_bytes()
}

fn check_all(db: &Db, model: &BTreeMap<u32, Vec<u8>>, keys: u32, context: &str) {
    for k in 0..keys {
        let got = db.get(&key(k)).expect("get").map(|r| r.content().to_vec());
        assert_eq!(got.as_ref(), model.get(&k), "{context}: key {k}");
    }
}

/// Without background compaction the index holds every key and the cache grows (from the
/// first table's 512 keys, four times); with it, retirement keeps clearing what the cache
/// points at.
#[test]
fn gets_read_the_newest_version_through_growth_compaction_and_reopen() {
    gets_against_the_model(false, 30_000);
    gets_against_the_model(true, 10_000);
}

fn gets_against_the_model(auto_compact: bool, compact_every: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(12);
    {
        let db = Db::open(dir.path(), options(auto_compact, 1 << 20)).expect("open");
        // Every key first.
        for k in 0..KEYS {
            let content = format!("{k}/first").into_bytes();
            db.put(&key(k), &content, Some(&[k as f32, 0.0])).expect("put");
            model.insert(k, content);
        }
        // Held over steps 2000..30000: versions it can see stay in the index, so the cache
        // grows while keys have several versions (a growth must copy the newest).
        let mut held: Option<(strata::Snapshot, BTreeMap<u32, Vec<u8>>)> = None;
        for step in 0..60_000u32 {
            if step == 2_000 {
                thread::sleep(Duration::from_millis(2));
                held = Some((db.snapshot(), model.clone()));
            }
            if step == 30_000 {
                let (snapshot, then) = held.take().expect("held");
                for k in 0..KEYS {
                    let got = snapshot.get(&key(k)).expect("snapshot get").map(|r| r.content().to_vec());
                    assert_eq!(got.as_ref(), then.get(&k), "the snapshot of step 2000: key {k}");
                }
            }
            let k = rng.gen_range(0..KEYS);
            match rng.gen_range(0..10) {
                0..=6 => {
                    let content = format!("{k}/{step}/{}", "x".repeat(rng.gen_range(0..200))).into_bytes();
                    db.put(&key(k), &content, Some(&[k as f32, step as f32])).expect("put");
                    model.insert(k, content);
                }
                7 | 8 => {
                    db.delete(&key(k)).expect("delete");
                    model.remove(&k);
                }
                _ => {
                    // A TTL already past: the key reads as absent from now on.
                    let content = format!("{k}/{step}/expired").into_bytes();
                    db.put_with_ttl(&key(k), &content, None, Duration::from_millis(1)).expect("put_with_ttl");
                    model.remove(&k);
                }
            }
            let probe = rng.gen_range(0..KEYS);
            if step % compact_every == compact_every - 1 {
                thread::sleep(Duration::from_millis(2));
                db.compact().expect("compact");
                check_all(&db, &model, KEYS, &format!("auto_compact {auto_compact}: after compact at step {step}"));
            }
            // A record put with a TTL of 1 ms may still be inside it: only that one may differ.
            let got = db.get(&key(probe)).expect("get").map(|r| r.content().to_vec());
            if !got.as_ref().is_some_and(|c| c.ends_with(b"expired")) {
                assert_eq!(got.as_ref(), model.get(&probe), "auto_compact {auto_compact}: step {step}: key {probe}");
            }
        }
        thread::sleep(Duration::from_millis(2));
        check_all(&db, &model, KEYS, "before close");
    }
    let db = Db::open(dir.path(), options(auto_compact, 1 << 20)).expect("reopen");
    check_all(&db, &model, KEYS, "after reopen");
    db.wait_for_compaction().expect("wait");
    check_all(&db, &model, KEYS, "after reopen and background compaction");
}

/// Version `i` of the writer goes to key `i % KEYS`; it is a delete when `i % 7 == 3`.
fn is_delete(version: u64) -> bool {
    version % 7 == 3
}

/// Compactions are the writer's own `compact()` calls, every 20K versions, each retiring
/// what the cache points at while the readers read.
#[test]
fn a_get_never_reads_older_than_the_last_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(false, 1 << 20)).expect("open");
    let compactions = gets_never_go_back(db, false, 1, |db, version| {
        if version % 20_000 == 0 {
            db.compact().expect("compact");
        }
    });
    assert_eq!(compactions, 2, "compactions ran under the readers");
}

/// Every key cold first, so readers fill the cache with cold rows; then background
/// compaction keeps moving the writer's versions cold and rewriting cold segments (their
/// rows change places) while the readers read. In batches: while a batch is inserted but not
/// yet visible, a reader finds only versions newer than its seq, and the cold row it reads
/// then must not be filled as the key's newest.
#[test]
fn a_get_of_a_cold_key_never_reads_older_than_the_last_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(true, 64 << 10)).expect("open");
    for k in 0..KEYS {
        db.put(&key(k), format!("{k}/0").as_bytes(), Some(&[1.0, 0.0])).expect("put");
    }
    db.compact().expect("compact");
    assert_eq!(db.stats().index_entries, 0, "every key cold");
    let compactions = gets_never_go_back(db, true, 100, |_, _| {});
    assert!(compactions >= 3, "background compactions ran under the readers ({compactions})");
}

/// Readers check every get against the versions acknowledged and started (the writer's
/// version `i` goes to key `i % KEYS`, a delete when `is_delete(i)`; `preloaded`: every key
/// already holds a put "k/0") while the writer writes versions `1..` and calls `between`
/// after each, `batch` versions to a write (fewer than `KEYS`: each to another key). Returns
/// `Stats::compactions` when the writer is done, before the readers stop.
fn gets_never_go_back(db: Db, preloaded: bool, batch: u64, between: impl Fn(&Db, u64)) -> u64 {
    const KEYS: u64 = self::KEYS as u64;
    const VERSIONS: u64 = 50_000;
    let db = Arc::new(db);
    // acknowledged[k]: the newest version of key k whose write returned (0: none yet; the
    // writer starts at version 1). started: versions whose write has begun.
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (db, acknowledged, started, done) = (db.clone(), acknowledged.clone(), started.clone(), done.clone());
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(r);
                let mut checked = 0u64;
                while !done.load(Ordering::Acquire) {
                    let k = rng.gen_range(0..KEYS);
                    let floor = acknowledged[k as usize].load(Ordering::Acquire);
                    let got = db.get(&key(k as u32)).expect("get");
                    let ceiling = started.load(Ordering::Acquire);
                    match got {
                        Some(record) => {
                            let text = String::from_utf8(record.content().to_vec()).expect("utf8");
                            let (of_key, version) = text.split_once('/').expect("k/version");
                            let version: u64 = version.parse().expect("version");
                            assert_eq!(of_key.parse::<u64>().expect("key"), k, "a record of another key");
                            assert!(version >= floor, "key {k}: read version {version}, version {floor} was acknowledged");
                            assert!(version <= ceiling && !is_delete(version), "key {k}: version {version} never written as a put");
                        }
                        None => {
                            // Absent: never acknowledged, or some delete of k at or after the
                            // acknowledged version.
                            let from = if floor == 0 { k } else { floor };
                            let deleted = (from..=ceiling).step_by(KEYS as usize).any(is_delete);
                            assert!((floor == 0 && !preloaded) || deleted, "key {k}: absent, version {floor} was acknowledged");
                        }
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    for first in (1..=VERSIONS).step_by(batch as usize) {
        let versions = first..(first + batch).min(VERSIONS + 1);
        started.store(versions.end - 1, Ordering::Release);
        let mut write = strata::Batch::new();
        for version in versions.clone() {
            let k = key((version % KEYS) as u32);
            if is_delete(version) {
                write.delete(&k);
            } else {
                write.put(&k, format!("{}/{version}", version % KEYS).as_bytes(), Some(&[1.0, 0.0]));
            }
        }
        db.write(write).expect("write");
        for version in versions {
            acknowledged[(version % KEYS) as usize].store(version, Ordering::Release);
            between(&db, version);
        }
    }
    let compactions = db.stats().compactions;
    done.store(true, Ordering::Release);
    let checked: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(checked > 1_000, "the readers ran ({checked} gets)");
    compactions
}

/// A batch of `BATCH_KEYS` puts, all with content `n`: readers of its first key must never
/// see `n` before the batch is visible whole (its last key, read after, holds `n` too, and so
/// does a snapshot taken after).
#[test]
fn a_get_sees_a_batch_only_once_it_is_visible_whole() {
    const BATCH_KEYS: u32 = 200;
    const BATCHES: u64 = 1_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), options(false, 1 << 20)).expect("open"));
    let read_number = |record: Option<strata::Record>| -> u64 {
        record.map_or(0, |r| String::from_utf8(r.content().to_vec()).expect("utf8").parse().expect("number"))
    };
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut checked = 0u64;
            while !done.load(Ordering::Acquire) {
                let first = read_number(db.get(&key(0)).expect("get first"));
                let last = read_number(db.get(&key(BATCH_KEYS - 1)).expect("get last"));
                let snapshot = db.snapshot();
                let in_snapshot = read_number(snapshot.get(&key(0)).expect("snapshot get"));
                assert!(last >= first, "the first key read batch {first}, the last key after it read batch {last}");
                assert!(in_snapshot >= first, "a get read batch {first}, a snapshot taken after it reads batch {in_snapshot}");
                checked += 1;
            }
            checked
        })
    };
    for n in 1..=BATCHES {
        let mut batch = strata::Batch::new();
        for k in 0..BATCH_KEYS {
            batch.put(&key(k), n.to_string().as_bytes(), Some(&[0.0, 1.0]));
        }
        db.write(batch).expect("write");
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().expect("reader") > 100, "the reader ran");
}
