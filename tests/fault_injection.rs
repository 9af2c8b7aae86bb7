//! Every I/O failure is survived: a small deterministic workload (Sync puts, batches,
//! deletes, TTLs, seal, compact, checkpoint, close/reopen) is run with the N-th I/O
//! operation failing, for every N the workload reaches and every fault kind; then the
//! database is reopened without faults and checked against a model. Method: the
//! `test-hooks` fault injector behind the I/O seam (`FaultVfs`, set with `Options::vfs`)
//! counts the operations in a first run; each case records which writes were acknowledged.
//! Checked: every acknowledged write is present exactly, no unacknowledged batch is partly
//! visible, nothing else is served, nothing panics, a failed write poisons its handle, and a
//! checkpoint that returned `Err` left nothing that opens as a database.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use common::TestClock;
use strata::{Batch, Db, Durability, Options};
use strata_engine::test_hooks::{FaultKind, FaultVfs};

/// The keys the workload touches.
const KEYS: [&[u8]; 6] = [b"k0", b"k1", b"k2", b"k3", b"k4", b"k5"];

/// One step of the workload. Contents are unique per write, so a value names its write.
#[derive(Clone, Copy)]
enum Step {
    /// (key index, content, TTL in ms or 0)
    Put(usize, &'static str, u64),
    Delete(usize),
    /// puts (key, content, TTL ms) and deletes (key, "") applied together
    Batch(&'static [(usize, &'static str, u64)]),
    Seal,
    Compact,
    Advance(u64),
    Checkpoint(&'static str),
    Reopen,
}

const WORKLOAD: &[Step] = &[
    Step::Put(0, "v1", 0),
    Step::Batch(&[(1, "b1", 0), (2, "b2", 0), (0, "", 0)]),
    Step::Put(3, "t1", 1_001),
    Step::Seal,
    Step::Put(4, "v4", 0),
    Step::Delete(1),
    Step::Compact,
    Step::Advance(2_000),
    Step::Batch(&[(0, "b3", 0), (5, "t2", 5_001)]),
    Step::Checkpoint("checkpoint-1"),
    Step::Reopen,
    Step::Put(2, "v2", 0),
    Step::Seal,
    Step::Compact,
    Step::Batch(&[(4, "", 0), (1, "b4", 0)]),
    Step::Checkpoint("checkpoint-2"),
];

/// A key's value as the model holds it: content and expiry (0 = none); `None` = deleted.
type Value = Option<(Vec<u8>, u64)>;

/// One commit the workload attempted.
struct Commit {
    effects: Vec<(usize, Value)>,
    acknowledged: bool,
}

/// What one run of the workload did.
#[derive(Default)]
struct Run {
    commits: Vec<Commit>,
    /// Problems seen while running (poisoning, checkpoints); empty when all held.
    problems: Vec<String>,
}

fn options(clock: &TestClock, vfs: Option<&FaultVfs>) -> Options {
    // No background maintenance: the N-th operation must be the same one in every run
    // (background runs are fault-tested in tests/maintenance.rs).
    let options =
        clock.install(Options::new().durability(Durability::Sync).segment_bytes_max(strata::limits::SEGMENT_BYTES_MIN).auto_compact(false));
    match vfs {
        Some(vfs) => options.vfs(vfs.as_vfs()),
        None => options,
    }
}

/// Runs the workload in `root/db` through `vfs`, recording what each call returned.
fn run_workload(root: &Path, clock: &TestClock, vfs: &FaultVfs) -> Run {
    let path = root.join("db");
    let mut run = Run::default();
    let Ok(mut db) = Db::open(&path, options(clock, Some(vfs))) else { return run };
    let mut poisoned = false;
    for step in WORKLOAD {
        match *step {
            Step::Seal => poisoned |= db.seal().is_err(),
            Step::Compact => {
                let _ = db.compact();
            }
            Step::Advance(ms) => clock.advance(ms),
            Step::Checkpoint(name) => check_checkpoint(&db, &root.join(name), clock, &run.commits, &mut run.problems),
            Step::Reopen => {
                let _ = db.close();
                drop(db);
                poisoned = false;
                match Db::open(&path, options(clock, Some(vfs))) {
                    Ok(reopened) => db = reopened,
                    Err(_) => return run,
                }
            }
            Step::Put(..) | Step::Delete(_) | Step::Batch(_) => {
                let effects = effects_of(step, clock.now());
                let acknowledged = apply(&db, step).is_ok();
                if acknowledged && poisoned {
                    run.problems.push("a write returned Ok on a handle poisoned by an earlier failed write".into());
                }
                if !acknowledged {
                    poisoned = true;
                    check_not_served(&db, &effects, &mut run.problems);
                }
                run.commits.push(Commit { effects, acknowledged });
            }
        }
    }
    let _ = db.close();
    run
}

/// The model effects of a write step at `now_ms`.
fn effects_of(step: &Step, now_ms: u64) -> Vec<(usize, Value)> {
    let value =
        |content: &str, ttl: u64| (!content.is_empty()).then(|| (content.as_bytes().to_vec(), if ttl == 0 { 0 } else { now_ms + ttl }));
    match *step {
        Step::Put(key, content, ttl) => vec![(key, value(content, ttl))],
        Step::Delete(key) => vec![(key, None)],
        Step::Batch(ops) => ops.iter().map(|&(key, content, ttl)| (key, value(content, ttl))).collect(),
        _ => Vec::new(),
    }
}

fn apply(db: &Db, step: &Step) -> strata::Result<()> {
    let ttl = |ms: u64| Duration::from_millis(ms);
    match *step {
        Step::Put(key, content, 0) => db.put(KEYS[key], content.as_bytes(), None),
        Step::Put(key, content, ms) => db.put_with_ttl(KEYS[key], content.as_bytes(), None, ttl(ms)),
        Step::Delete(key) => db.delete(KEYS[key]),
        Step::Batch(ops) => {
            let mut batch = Batch::new();
            for &(key, content, ms) in ops {
                match (content.is_empty(), ms) {
                    (true, _) => batch.delete(KEYS[key]),
                    (false, 0) => batch.put(KEYS[key], content.as_bytes(), None),
                    (false, ms) => batch.put_with_ttl(KEYS[key], content.as_bytes(), None, ttl(ms)),
                };
            }
            db.write(batch)
        }
        _ => Ok(()),
    }
}

/// An unacknowledged write is never served by the handle that failed it.
fn check_not_served(db: &Db, effects: &[(usize, Value)], problems: &mut Vec<String>) {
    for (key, value) in effects {
        let Some((content, _)) = value else { continue };
        if let Ok(Some(record)) = db.get(KEYS[*key]) {
            if record.content() == &content[..] {
                problems.push(format!("the failing handle serves the unacknowledged write of {:?}", String::from_utf8_lossy(content)));
            }
        }
    }
}

/// A checkpoint that returned `Err` leaves nothing that opens as a database; one that
/// returned `Ok` holds every write acknowledged before it.
fn check_checkpoint(db: &Db, dest: &Path, clock: &TestClock, commits: &[Commit], problems: &mut Vec<String>) {
    match db.checkpoint(dest) {
        Ok(()) => match Db::open(dest, clock.install(Options::new().read_only(true))) {
            Ok(copy) => {
                if let Err(problem) = check_against_model(&copy, commits, clock.now()) {
                    problems.push(format!("checkpoint {}: {problem}", dest.display()));
                }
            }
            Err(e) => problems.push(format!("checkpoint {} returned Ok but does not open: {e}", dest.display())),
        },
        Err(error) => {
            if Db::open(dest, clock.install(Options::new().read_only(true))).is_ok() {
                problems.push(format!("checkpoint returned Err ({error}) but {} opens as a database", dest.display()));
            }
        }
    }
}

/// The contents a key may show: its last acknowledged value, or the value of any
/// unacknowledged commit after it. Expired values read as absent.
fn candidates(commits: &[Commit], key: usize, now_ms: u64) -> Vec<Option<Vec<u8>>> {
    let visible = |value: &Value| value.as_ref().filter(|(_, expiry)| *expiry == 0 || now_ms < *expiry).map(|(c, _)| c.clone());
    let touching: Vec<(&Commit, &Value)> =
        commits.iter().filter_map(|c| c.effects.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| (c, v))).collect();
    let last_acknowledged = touching.iter().rposition(|(c, _)| c.acknowledged);
    let mut out = vec![last_acknowledged.and_then(|i| visible(touching[i].1))];
    out.extend(touching[last_acknowledged.map_or(0, |i| i + 1)..].iter().map(|(_, v)| visible(v)));
    out
}

/// Every key shows one of its candidates, the iterator agrees with `get`, and every
/// unacknowledged commit is visible whole or not at all.
fn check_against_model(db: &Db, commits: &[Commit], now_ms: u64) -> Result<(), String> {
    let mut observed = BTreeMap::new();
    for (key, name) in KEYS.iter().enumerate() {
        let value = db.get(name).map_err(|e| format!("get {name:?}: {e}"))?.map(|r| r.content().to_vec());
        let allowed = candidates(commits, key, now_ms);
        if !allowed.contains(&value) {
            return Err(format!("key {:?} reads {:?}, expected one of {:?}", lossy(name), value.as_deref().map(lossy), allowed));
        }
        observed.insert(name.to_vec(), value);
    }
    let mut listed = BTreeMap::new();
    for record in db.iter() {
        let record = record.map_err(|e| format!("iter: {e}"))?;
        listed.insert(record.key().to_vec(), Some(record.content().to_vec()));
    }
    observed.retain(|_, v| v.is_some());
    if listed != observed {
        return Err(format!("iter lists {} keys, get finds {}", listed.len(), observed.len()));
    }
    for (index, commit) in commits.iter().enumerate().filter(|(_, c)| !c.acknowledged) {
        let mut seen = Vec::new();
        for (key, value) in &commit.effects {
            // Only keys no later commit touches, with a put that is still visible, tell.
            let later = commits[index + 1..].iter().any(|c| c.effects.iter().any(|(k, _)| k == key));
            let Some((content, expiry)) = value.as_ref().filter(|_| !later) else { continue };
            if *expiry == 0 || now_ms < *expiry {
                seen.push(observed.get(KEYS[*key]).and_then(|v| v.as_deref()) == Some(&content[..]));
            }
        }
        if seen.iter().any(|&s| s) && !seen.iter().all(|&s| s) {
            return Err(format!("unacknowledged commit {index} is partly visible"));
        }
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One case: the workload with the `nth` operation of `kind` failing, then a clean reopen.
/// Returns the problems found (empty: the case passed) and whether the fault fired.
fn run_case(kind: FaultKind, nth: u64) -> (Vec<String>, bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let vfs = FaultVfs::failing(kind, nth);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut run = run_workload(root.path(), &clock, &vfs);
        match Db::open(root.path().join("db"), options(&clock, None)) {
            Ok(db) => {
                if let Err(problem) = check_against_model(&db, &run.commits, clock.now()) {
                    run.problems.push(format!("after reopen: {problem}"));
                }
            }
            Err(e) => run.problems.push(format!("reopen without faults fails: {e}")),
        }
        run.problems
    }));
    let problems = outcome.unwrap_or_else(|panic| {
        let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        vec![format!("panic: {}", message.unwrap_or_default())]
    });
    (problems, vfs.fired())
}

#[test]
fn every_single_io_failure_leaves_a_database_that_matches_the_model() {
    let counting = FaultVfs::counting();
    let root = tempfile::tempdir().expect("tempdir");
    let clean = run_workload(root.path(), &TestClock::new(), &counting);
    assert!(clean.problems.is_empty(), "the workload without faults: {:?}", clean.problems);
    assert!(clean.commits.iter().all(|c| c.acknowledged), "every write succeeds without faults");

    let mut failures = Vec::new();
    for kind in FaultKind::ALL {
        let count = counting.count(kind);
        assert!(count > 0, "the workload reaches no operation that {kind:?} can hit");
        let (mut passed, mut fired) = (0, 0);
        for nth in 1..=count {
            let (problems, did_fire) = run_case(kind, nth);
            fired += u64::from(did_fire);
            if problems.is_empty() {
                passed += 1;
            } else {
                failures.push(format!("{kind:?} at operation {nth}: {}", problems.join("; ")));
            }
        }
        eprintln!("fault_injection: {kind:?}: {count} cases run, {passed} passed, fault fired in {fired}");
    }
    for failure in &failures {
        eprintln!("FAILED {failure}");
    }
    assert!(failures.is_empty(), "{} fault cases failed; the first: {}", failures.len(), failures[0]);
}

// ---- the active segment's background writeback ------------------------------------------

/// Content of the writeback tests' puts: 8 of them pass `WRITEBACK_BYTES` (8 MiB).
const LARGE: usize = 1 << 20;

fn writeback_options(vfs: &FaultVfs, durability: Durability) -> Options {
    Options::new().durability(durability).auto_compact(false).vfs(vfs.as_vfs())
}

fn large_content(i: usize) -> Vec<u8> {
    (0..LARGE).map(|b| (b * 7 + i * 13) as u8).collect()
}

/// fdatasyncs from the first put to the end of `close`, for `puts` puts of `LARGE` bytes.
fn syncs_of(durability: Durability, puts: usize) -> u64 {
    let root = tempfile::tempdir().expect("tempdir");
    let vfs = FaultVfs::counting();
    let db = Db::open(root.path().join("db"), writeback_options(&vfs, durability)).expect("open");
    let before = vfs.count(FaultKind::Fsync);
    for i in 0..puts {
        db.put(format!("k{i:02}").as_bytes(), &large_content(i), None).expect("put");
    }
    db.close().expect("close"); // waits for a writeback in flight
    vfs.count(FaultKind::Fsync) - before
}

#[test]
fn unsynced_appends_past_the_writeback_threshold_are_fdatasynced_in_the_background() {
    for durability in [Durability::None, Durability::Flush, Durability::Sync] {
        // What one small put and the close cost, against 20 MiB of puts.
        let baseline = syncs_of(durability, 1);
        let syncs = syncs_of(durability, 20) - baseline;
        if durability == Durability::Sync {
            // Each put is its own fdatasync, and no writeback: the writer keeps the file durable.
            assert_eq!(syncs, 19, "{durability:?}: one fdatasync per commit, none more");
        } else {
            // Only writebacks sync: one per 8 MiB, one at a time, so 20 MiB holds one or two.
            assert!((1..=2).contains(&syncs), "{durability:?}: {syncs} fdatasyncs during 20 MiB of appends");
        }
    }
}

#[test]
fn a_failed_background_writeback_fails_the_next_sync_and_refuses_writes() {
    // Count the fdatasyncs open makes, so that the first one after it is the writeback's.
    let root = tempfile::tempdir().expect("tempdir");
    let counting = FaultVfs::counting();
    let db = Db::open(root.path().join("db"), writeback_options(&counting, Durability::None)).expect("open");
    let open_syncs = counting.count(FaultKind::Fsync);
    drop(db);

    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("db");
    let vfs = FaultVfs::failing(FaultKind::Fsync, open_syncs + 1);
    let db = Db::open(&path, writeback_options(&vfs, Durability::None)).expect("open");
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..12 {
        match db.put(format!("k{i:02}").as_bytes(), &large_content(i), None) {
            Ok(()) => acknowledged.push(i),
            Err(_) => refused += 1,
        }
    }
    assert!(acknowledged.len() >= 8, "the puts before the writeback are acknowledged: {acknowledged:?}");
    // Wait until the background writeback has run (and failed): then the writer's own
    // fdatasync would succeed (one fault only), and the failure `sync` must report is the
    // writeback's, whose pages the kernel may have dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !vfs.fired() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(vfs.fired(), "no background writeback ran after 12 MiB of unsynced appends");
    let sync = db.sync();
    let error = sync.expect_err("sync after a failed writeback");
    let message = error.to_string();
    assert!(message.contains("fdatasync") && message.contains(".log"), "the error names the operation and the file: {message}");
    assert!(db.put(b"after", b"x", None).is_err(), "a write after the failed writeback is refused");
    eprintln!("writeback failure: {} puts acknowledged, {refused} refused", acknowledged.len());
    drop(db);

    // Durability::None promised nothing, but no crash happened: every acknowledged put is in
    // the file and comes back exactly; nothing refused is served.
    let db = Db::open(&path, Options::new().auto_compact(false)).expect("reopen without faults");
    for i in 0..12 {
        let got = db.get(format!("k{i:02}").as_bytes()).expect("get");
        if acknowledged.contains(&i) {
            assert_eq!(got.map(|r| r.content().to_vec()), Some(large_content(i)), "acknowledged put k{i:02}");
        }
    }
    assert!(db.get(b"after").expect("get").is_none(), "the refused write is not served");
}
