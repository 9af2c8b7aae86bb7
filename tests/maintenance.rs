//! Goal: background maintenance (DESIGN.md contract 11, `Options::auto_compact`) keeps a
//! database that is only written and read bounded and correct: sealed data moves to the cold
//! tier without `compact()`; a failing background run (no space, EIO) loses nothing, is
//! reported and retried, and resumes once the cause is gone; writers stall instead of growing
//! the warm tier without bound; the compaction filter and TTLs drop exactly what they should,
//! never under a reader that can still see it; `close` stops a running compaction cleanly.
//!
//! Method: small segments and tiny thresholds, so maintenance runs constantly, checked
//! against a `BTreeMap` model of every write. Waiting is done with `wait_for_compaction`,
//! never by sleeping; nothing asserts on time.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{collect, TestClock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Decision, Durability, Error, Options};
use strata_engine::test_hooks::{FaultKind, FaultVfs};

const DIM: usize = 4;
const WARM_BYTES: u64 = 32 << 10;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(auto: bool) -> Options {
    Options::new()
        .embedding_dim(DIM)
        .durability(Durability::None)
        .segment_bytes_max(8 << 10)
        .cold_segment_bytes_max(16 << 10)
        .auto_compact(auto)
        .compaction_warm_bytes(WARM_BYTES)
        .compaction_interval_min(Duration::ZERO)
        .write_stall_bytes(1 << 20, 2 << 20)
}

fn content(rng: &mut StdRng, key: u32, round: u32) -> Vec<u8> {
    let mut bytes = format!("k{key}/r{round}/").into_bytes();
    let len = rng.gen_range(100..500);
    bytes.extend((0..len).map(|i| (i as u8) ^ (key as u8) ^ (round as u8)));
    bytes
}

fn embedding(key: u32) -> [f32; DIM] {
    [key as f32, 1.0, -0.5, 0.25]
}

/// Overwrites each of `keys` keys `rounds` times and deletes 30 % of them, into `db` and the model.
fn overwrite_workload(db: &Db, model: &mut Model, seed: u64, keys: u32, rounds: u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..rounds {
        for key in 0..keys {
            let k = format!("key/{key:05}").into_bytes();
            let c = content(&mut rng, key, round);
            db.put(&k, &c, Some(&embedding(key))).expect("put");
            model.insert(k, c);
        }
    }
    for key in (0..keys).filter(|k| k % 10 < 3) {
        let k = format!("key/{key:05}").into_bytes();
        db.delete(&k).expect("delete");
        model.remove(&k);
    }
}

fn check(db: &Db, model: &Model, context: &str) {
    let found: Model = collect(db.iter()).into_iter().map(|e| (e.key, e.content)).collect();
    assert_eq!(found.len(), model.len(), "{context}: record count");
    assert!(found == *model, "{context}: the database differs from the model");
}

/// The name of the newest log segment file (ids only grow; names are zero-padded hex).
fn newest_log_file(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".log"))
        .max()
        .expect("the active segment's file")
}

fn cold_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("list").filter(|e| e.as_ref().expect("entry").file_name().to_string_lossy().ends_with(".cold")).count()
}

#[test]
fn a_host_that_never_compacts_gets_a_cold_tier_and_bounded_disk() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut disk = Vec::new();
    for auto in [false, true] {
        let dir = temp.path().join(format!("auto-{auto}"));
        let db = Db::open(&dir, options(auto)).expect("open");
        let mut model = Model::new();
        overwrite_workload(&db, &mut model, 7, 400, 5);
        db.wait_for_compaction().expect("maintenance");
        let stats = db.stats();
        check(&db, &model, &format!("auto_compact({auto})"));
        if auto {
            assert!(stats.compactions > 0 && stats.cold.records > 0, "background maintenance moved nothing: {stats:?}");
            assert!(stats.pending_compaction_bytes < WARM_BYTES, "idle maintenance leaves the warm tier under the watermark: {stats:?}");
            assert!(stats.bytes_reclaimed > 0 && stats.bytes_compacted > 0, "{stats:?}");
            assert_eq!(stats.last_background_error, None);
        } else {
            assert_eq!(stats.compactions, 0, "no background work without auto_compact");
            assert_eq!(stats.cold.records, 0);
        }
        disk.push(stats.disk_bytes);
        db.close().expect("close");
        drop(db);
        let db = Db::open(&dir, options(auto)).expect("reopen");
        check(&db, &model, &format!("auto_compact({auto}) reopened"));
        db.verify().expect("verify");
    }
    // 5 versions per key and 30 % deleted: without maintenance every version stays on disk.
    assert!(disk[1] * 2 < disk[0], "background maintenance should at least halve the disk bytes: {} vs {} without", disk[1], disk[0]);
}

#[test]
fn a_background_run_that_fails_loses_nothing_reports_backs_off_and_resumes() {
    for kind in [FaultKind::Enospc, FaultKind::Eio] {
        let temp = tempfile::tempdir().expect("tempdir");
        let vfs = FaultVfs::counting();
        vfs.fail_creating(Some((".cold", kind)));
        let db = Db::open(temp.path(), options(true).vfs(vfs.as_vfs())).expect("open");
        let mut model = Model::new();
        overwrite_workload(&db, &mut model, 11, 200, 3);
        let error = db.wait_for_compaction().expect_err("the background run cannot create its output");
        assert!(matches!(error, Error::Io(_)), "{kind:?}: {error:?}");
        let stats = db.stats();
        let reported = stats.last_background_error.clone().expect("the failure is in the stats");
        assert!(reported.contains("injected fault"), "{kind:?}: {reported}");
        assert_eq!(stats.compactions, 0);
        assert_eq!(cold_files(temp.path()), 0, "a failed run leaves no file behind");
        // Reads never depend on the worker; writes go on (the failure risked no durability).
        check(&db, &model, &format!("{kind:?}: while failing"));
        db.put(b"written/while-failing", b"still accepted", None).expect("a write while maintenance fails");
        model.insert(b"written/while-failing".to_vec(), b"still accepted".to_vec());

        vfs.fail_creating(None); // the disk has room again
        db.wait_for_compaction().expect("the retry after the backoff succeeds");
        let stats = db.stats();
        assert!(stats.compactions > 0 && stats.cold.records > 0, "{kind:?}: resumed: {stats:?}");
        assert_eq!(stats.last_background_error, None, "a successful run clears the error");
        check(&db, &model, &format!("{kind:?}: after resuming"));
        db.close().expect("close");
        drop(db);
        let db = Db::open(temp.path(), options(true)).expect("reopen");
        check(&db, &model, &format!("{kind:?}: reopened"));
        db.verify().expect("verify");
    }
}

#[test]
fn no_free_space_stops_background_runs_and_writes_past_the_hard_limit_but_loses_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    let vfs = FaultVfs::counting();
    vfs.set_free_space(Some(0));
    let (soft, hard) = (64 << 10, 128 << 10);
    let db = Db::open(temp.path(), options(true).write_stall_bytes(soft, hard).vfs(vfs.as_vfs())).expect("open");
    let mut model = Model::new();
    let mut rng = StdRng::seed_from_u64(3);
    let mut refused = None;
    for i in 0..2_000u32 {
        let key = format!("key/{i:05}").into_bytes();
        let value = content(&mut rng, i, 0);
        match db.put(&key, &value, None) {
            Ok(()) => {
                model.insert(key, value);
            }
            Err(error) => {
                refused = Some((i, error));
                break;
            }
        }
    }
    let (at, error) = refused.expect("past the hard limit, with compaction failing, writes are refused");
    assert!(error.to_string().contains("background compaction failed"), "{error}");
    let stats = db.stats();
    assert!(stats.pending_compaction_bytes >= hard, "refused only past the hard limit: {stats:?}");
    assert!(stats.pending_compaction_bytes < hard + (16 << 10), "the warm tier stopped at the hard limit: {stats:?}");
    assert!(at > 0, "writes were accepted up to the hard limit");
    assert!(stats.last_background_error.as_deref().is_some_and(|e| e.contains("bytes free")), "{stats:?}");
    check(&db, &model, "a refused write changed nothing");

    vfs.set_free_space(None);
    db.wait_for_compaction().expect("with room again, maintenance catches up");
    let key = b"key/after".to_vec();
    db.put(&key, b"accepted again", None).expect("writes are accepted again");
    model.insert(key, b"accepted again".to_vec());
    check(&db, &model, "after catching up");
    assert!(db.stats().pending_compaction_bytes < hard);
}

#[test]
fn writers_are_slowed_past_the_soft_limit_and_the_stall_is_counted() {
    let temp = tempfile::tempdir().expect("tempdir");
    // The stall band starts at 0: whatever is warm slows each commit a little.
    let db =
        Db::open(temp.path(), options(true).compaction_warm_bytes(48 << 10).write_stall_bytes(0, 64 << 10).durability(Durability::None))
            .expect("open");
    let mut model = Model::new();
    overwrite_workload(&db, &mut model, 5, 300, 3);
    db.wait_for_compaction().expect("maintenance");
    let stats = db.stats();
    assert!(stats.stall_ms > 0, "commits in the stall band were delayed: {stats:?}");
    check(&db, &model, "after stalls");
}

#[test]
fn the_compaction_filter_and_ttls_drop_records_only_once_no_reader_can_see_them() {
    let temp = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let filtered = |record: &strata::Record| if record.content().starts_with(b"drop") { Decision::Drop } else { Decision::Keep };
    let opts = clock.install(options(false).compaction_filter(filtered));
    let db = Db::open(temp.path(), opts.clone()).expect("open");
    let mut model = Model::new();
    for i in 0..300u32 {
        let key = format!("key/{i:04}").into_bytes();
        let value = match i % 3 {
            0 => format!("drop me {i}").into_bytes(),
            _ => format!("keep me {i}").into_bytes(),
        };
        if i % 7 == 0 {
            db.put_with_ttl(&key, &value, None, Duration::from_secs(60)).expect("put with ttl");
        } else {
            db.put(&key, &value, None).expect("put");
            model.insert(key, value);
        }
    }
    let everything: Model = collect(db.iter()).into_iter().map(|e| (e.key, e.content)).collect();
    let snapshot = db.snapshot();
    clock.advance(61_000); // every TTL has expired
    db.compact().expect("compact");
    // Reads: the filter's drops are gone like deletes; the expired records too.
    model.retain(|_, v| !v.starts_with(b"drop"));
    check(&db, &model, "after the filtered compaction");
    assert!(db.get(b"key/0003").expect("get").is_none(), "a dropped record is not served");
    // The snapshot taken before still sees every record it saw — the filter's drops and the
    // expired records too (a snapshot judges TTLs at the time it was taken).
    let held: Model = collect(snapshot.iter()).into_iter().map(|e| (e.key, e.content)).collect();
    assert!(everything.iter().any(|(k, v)| v.starts_with(b"drop") && held_expired(k)));
    assert!(
        held == everything,
        "a snapshot keeps its view across a filtered compaction: {} records, {} before",
        held.len(),
        everything.len()
    );
    assert!(snapshot.get(b"key/0003").expect("snapshot get").is_some(), "the snapshot still reads a dropped record");
    drop(snapshot);
    db.close().expect("close");
    drop(db);
    let db = Db::open(temp.path(), opts).expect("reopen");
    check(&db, &model, "reopened");
    assert_eq!(db.stats().cold.records, model.len() as u64, "one cold row per kept record, nothing else");

    // A filter that panics fails the compaction and changes nothing.
    let panicking = clock.install(options(false).compaction_filter(|_| panic!("a buggy retention rule")));
    db.close().expect("close");
    drop(db);
    let db = Db::open(temp.path(), panicking).expect("open with a panicking filter");
    db.put(b"key/new", b"new", None).expect("put");
    model.insert(b"key/new".to_vec(), b"new".to_vec());
    let files_before = common::listing(temp.path());
    let error = db.compact().expect_err("the filter panicked");
    assert!(matches!(error, Error::InvalidArgument { .. }), "{error:?}");
    check(&db, &model, "after the failed compaction");
    let files_after = common::listing(temp.path());
    assert!(files_after.iter().filter(|(n, _)| n.ends_with(".cold")).eq(files_before.iter().filter(|(n, _)| n.ends_with(".cold"))));
}

/// Keys written with a TTL in the filter test (`i % 7 == 0`).
fn held_expired(key: &[u8]) -> bool {
    let i: u32 = std::str::from_utf8(&key[4..]).expect("utf-8").parse().expect("number");
    i.is_multiple_of(7)
}

#[test]
fn close_stops_a_running_background_compaction_and_leaves_no_orphan() {
    let temp = tempfile::tempdir().expect("tempdir");
    // 20 KB/s: the run over ~100 KiB of warm data takes seconds; close must not wait for it.
    let slow = options(true).compaction_bytes_per_sec(20_000);
    let db = Db::open(temp.path(), slow.clone()).expect("open");
    let mut model = Model::new();
    overwrite_workload(&db, &mut model, 13, 200, 1);
    while db.stats().compactions == 0 && cold_files(temp.path()) == 0 {
        std::thread::yield_now(); // until the run has started writing
    }
    db.close().expect("close while a background compaction runs");
    drop(db);
    let db = Db::open(temp.path(), options(false)).expect("reopen");
    check(&db, &model, "after a close that stopped the run");
    assert_eq!(db.stats().orphans_removed, 0, "the stopped run removed its own unpublished files");
    db.verify().expect("verify");
}

/// The idle rule moves what the watermark leaves: once no write came for `compaction_idle`
/// and something is warm, the active segment is sealed and everything goes cold. Made
/// deterministic: the workload's background runs settle first (with a 20 ms idle period, a
/// pause of a loaded machine between two writes can start an idle run mid-workload, after
/// which a tail of under 1 MiB stays hot by design: the trickle rule, below), then single
/// puts until one rolls the active segment, so the last write leaves a warm segment and an
/// empty active one, and what is left to run (the idle run, or a background one if that
/// segment reached the watermark) seals nothing new.
#[test]
fn a_database_left_idle_ends_fully_compacted() {
    let temp = tempfile::tempdir().expect("tempdir");
    let opts = options(true).compaction_warm_bytes(1 << 40).write_stall_bytes(1 << 41, 1 << 42).compaction_idle(Duration::from_millis(20));
    let db = Db::open(temp.path(), opts).expect("open");
    let mut model = Model::new();
    overwrite_workload(&db, &mut model, 17, 2_000, 2); // about 2.4 MB, over the 1 MiB minimum
    db.wait_for_compaction().expect("the background runs settle");
    // What the background runs left warm (under the watermark) may still start an idle run
    // while the tail below is written. Whatever a run takes meanwhile, the loop ends on a
    // put that rolled the segment (seen as a new, higher-numbered log file: the new active
    // segment), so nothing written is left hot and something is warm for the idle run.
    let mut rng = StdRng::seed_from_u64(18);
    for key in 0.. {
        let before = newest_log_file(temp.path());
        let k = format!("tail/{key:05}").into_bytes();
        let c = content(&mut rng, key, 9);
        db.put(&k, &c, Some(&embedding(key))).expect("put");
        model.insert(k, c);
        if newest_log_file(temp.path()) > before {
            break;
        }
        assert!(key < 1_000, "8 KiB segments roll within a few dozen puts");
    }
    // A liveness bound, not a speed figure: the idle run is due 20 ms after the last write;
    // 24 000 looks 5 ms apart are minutes.
    for look in 0.. {
        let stats = db.stats();
        assert_eq!(stats.last_background_error, None);
        // Everything cold, and the compacted segments retired (their index entries and files gone).
        if stats.hot.records + stats.warm.records == 0 && stats.compactions > 0 && stats.index_entries == 0 {
            assert_eq!(stats.cold.records, model.len() as u64, "every live record is cold");
            break;
        }
        assert!(look < 24_000, "no idle compaction after {look} looks: {stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    check(&db, &model, "after the idle compaction");
    let stats = db.stats();
    assert!(stats.space_amplification < 1.5, "the stale versions are gone: {stats:?}");
}

/// A background compaction whose old segments a reader still holds retires them once that
/// reader goes, without waiting for a write, a seal or the idle run: their index entries
/// (heap, and a slower get for every key they cover), maps and files go. Checked with the
/// idle run an hour away, so only the retry after a blocked retirement can free them.
#[test]
fn a_retirement_blocked_by_a_reader_finishes_once_the_reader_goes_without_another_write() {
    let temp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(temp.path(), options(true).compaction_idle(Duration::from_secs(3600))).expect("open");
    let mut rng = StdRng::seed_from_u64(23);
    let mut model = Model::new();
    let mut put = |db: &Db, range: std::ops::Range<u32>| {
        for key in range {
            let k = format!("key/{key:05}").into_bytes();
            let c = content(&mut rng, key, 0);
            db.put(&k, &c, Some(&embedding(key))).expect("put");
            model.insert(k, c);
        }
    };
    put(&db, 0..400);
    db.wait_for_compaction().expect("maintenance");
    // Unique keys: once nothing is waiting to retire, every index entry is a hot or warm record.
    let unretired = |db: &Db| {
        let stats = db.stats();
        stats.index_entries - (stats.hot.records + stats.warm.records)
    };
    let reader = db.iter(); // holds the current table, and a pin at the current seq
    let runs_before = db.stats().compactions;
    put(&db, 400..800);
    db.wait_for_compaction().expect("maintenance");
    assert!(db.stats().compactions > runs_before, "the writes past the watermark ran a compaction");
    assert!(unretired(&db) > 0, "the reader holds the compacted segments' index entries");
    let log_files = || {
        std::fs::read_dir(temp.path())
            .expect("list")
            .filter(|e| e.as_ref().expect("entry").file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    let logs_held = log_files();
    drop(reader);
    // A retirement removes the index entries first, then the files: wait for both. A
    // liveness bound, not a speed figure: 4 000 looks 5 ms apart are 20 s.
    for look in 0.. {
        let logs_left = log_files();
        if unretired(&db) == 0 && logs_left < logs_held {
            break;
        }
        assert!(
            look < 4_000,
            "the compacted segments were never retired after the reader went ({logs_left} of {logs_held} log files left): {:?}",
            db.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    check(&db, &model, "after the retirement");
}

/// `Stats::write_amplification` counts the database's history, not the handle's: a reopen
/// starts from the MANIFEST's write totals plus what the log holds after them (records
/// newer than the totals' seq, log bytes past where the totals left the log). Checked for a
/// database never compacted (the log is its whole history), one compacted with writes after
/// the compaction (hot and sealed), and after a second compaction by the reopened handle.
#[test]
fn write_amplification_is_kept_across_reopen() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("db");
    let mut model = Model::new();
    let close_and_reopen = |db: Db| -> (f64, Db) {
        let before = db.stats().write_amplification;
        db.close().expect("close");
        drop(db);
        (before, Db::open(&dir, options(false)).expect("reopen"))
    };
    // The close mark a close appends (40 bytes per segment) is the only byte a reopen
    // counts that the handle did not.
    let assert_kept = |before: f64, after: f64, context: &str| {
        assert!(
            before > 0.0 && (after - before).abs() <= before * 0.001,
            "{context}: write amplification {before} before close, {after} after"
        );
    };

    let db = Db::open(&dir, options(false)).expect("open");
    overwrite_workload(&db, &mut model, 11, 300, 2);
    let (before, db) = close_and_reopen(db);
    assert_kept(before, db.stats().write_amplification, "never compacted");

    db.compact().expect("compact");
    overwrite_workload(&db, &mut model, 12, 300, 1);
    db.seal().expect("seal");
    overwrite_workload(&db, &mut model, 13, 100, 1);
    let (before, db) = close_and_reopen(db);
    assert!(before > 1.5, "a compaction that rewrote every live record counts its output: {before}");
    assert_kept(before, db.stats().write_amplification, "compacted, then sealed and hot writes");

    overwrite_workload(&db, &mut model, 14, 200, 1);
    db.compact().expect("second compaction");
    let (before, db) = close_and_reopen(db);
    assert_kept(before, db.stats().write_amplification, "compacted again after a reopen");
    check(&db, &model, "reopened");
}
