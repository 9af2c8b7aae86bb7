//! Goal: a crash at any moment of a compaction loses no acknowledged write, resurrects no
//! deleted key, duplicates nothing, and leaves no file behind once the database is opened
//! for writing again (the orphans are removed and counted).
//!
//! Method: a child process (this test binary, re-executed with environment variables) writes
//! with `Durability::Sync` from one thread, acknowledging each write on stdout, while a
//! second thread seals and compacts every few writes (tiny log and cold segments, so each
//! compaction writes several cold files, rewrites some and retires others), announcing
//! each compaction's start and end. The parent SIGKILLs it after a random number of
//! acknowledgements, or right after (or a random moment after) a compaction started or
//! ended, then checks the crash image read-only (which changes no file) against the model
//! of acknowledged writes (the one write in flight may be wholly there or wholly absent),
//! checks every cold row holds a value that was written for its key, and, most cycles,
//! opens it for writing: exactly the files the MANIFEST does not make live are removed and
//! counted in `Stats::orphans_removed`, and only live files remain. The next child carries
//! on in the same directory. A second test lays down the files of a compaction cut short
//! (before and after its MANIFEST rename) by copying files between closed databases.

mod crash_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crash_support::*;
use rand::Rng;
use strata::{Db, Durability, Options};

const CHILD_TEST: &str = "crash_compaction_child_writes_and_compacts_until_killed";
const ENV_DIR: &str = "STRATA_CRASH_COMPACTION_DIR";
const ENV_SPEC: &str = "STRATA_CRASH_COMPACTION_SPEC";
/// `STRATA-ACK <index>`: write `index` returned Ok.
const ACK: &str = "STRATA-ACK";
/// `STRATA-COMPACT-START <n>`: compaction `n` is about to be called (after its seal).
const START: &str = "STRATA-COMPACT-START";
/// `STRATA-COMPACT-DONE <n>`: compaction `n` returned Ok.
const DONE: &str = "STRATA-COMPACT-DONE";

const DIM: usize = 8;
const CYCLES: u64 = 24;

/// The two tests of this file run one at a time: the `LOCK` of a database is an `flock`,
/// which a child process forked by the kill test holds (inherited) until its `exec`, so a
/// reopen right after `close` in the other test could see `Locked` for that moment.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const KEYS: u64 = 48;

/// The parent's options, and the explicit-compaction child's: no background maintenance, so
/// the parent's file checks (`assert_only_live_files`) see a directory nothing else changes.
fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Sync).segment_bytes_max(4096).cold_segment_bytes_max(4096).auto_compact(false)
}

#[derive(Clone, Copy, Debug)]
struct ChildSpec {
    seed: u64,
    cycle: u64,
    /// The writer asks for a seal + compaction after every this many writes.
    compact_every: u64,
    /// No compactor thread: background maintenance with tiny thresholds compacts (the kill
    /// then lands wherever its runs are).
    background: bool,
}

impl ChildSpec {
    fn encode(&self) -> String {
        format!("{} {} {} {}", self.seed, self.cycle, self.compact_every, u64::from(self.background))
    }

    fn decode(text: &str) -> ChildSpec {
        let fields: Vec<u64> = text.split(' ').map(|f| f.parse().expect("child spec field")).collect();
        let [seed, cycle, compact_every, background] = fields[..] else { panic!("child spec {text:?}") };
        ChildSpec { seed, cycle, compact_every, background: background == 1 }
    }

    fn options(&self) -> Options {
        match self.background {
            false => options(),
            true => options().auto_compact(true).compaction_warm_bytes(8 << 10).compaction_interval_min(Duration::ZERO),
        }
    }
}

/// When the parent kills the child: after acknowledgements, or after a compaction started or ended.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Once this many writes were acknowledged (0: at once, maybe during the child's open).
    Acks(u64),
    /// This many microseconds after compaction `n` announced its start.
    Start { n: u64, delay_us: u64 },
    /// Right after compaction `n` returned (its retirements may still be under way).
    Done(u64),
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    kill: Kill,
    /// Open for writing in the parent (removing orphans, counting them); otherwise the
    /// next child's open does it.
    recover_in_parent: bool,
}

fn plan(seed: u64, cycle: u64) -> (ChildSpec, Plan) {
    let mut rng = rng_for(seed, &[0, cycle]);
    let compact_every = rng.gen_range(4..=12);
    let background = rng.gen_bool(0.35);
    let kill = match rng.gen_range(0..20) {
        // Background runs are not announced: only acknowledgements time the kill.
        _ if background => Kill::Acks(rng.gen_range(1..=150)),
        0 => Kill::Acks(0),
        1..5 => Kill::Acks(rng.gen_range(1..=120)),
        5..9 => Kill::Start { n: rng.gen_range(0..4), delay_us: 0 },
        9..16 => Kill::Start { n: rng.gen_range(0..4), delay_us: rng.gen_range(0..4_000) },
        _ => Kill::Done(rng.gen_range(0..4)),
    };
    (ChildSpec { seed, cycle, compact_every, background }, Plan { kill, recover_in_parent: rng.gen_bool(0.75) })
}

/// Write `index` of the child of `cycle`: a put, a delete, or a batch of puts and deletes.
/// Every content starts with a tag naming the write, so any stored value can be traced
/// back to the write that made it.
fn commit_for(seed: u64, cycle: u64, index: u64) -> Vec<Op> {
    let mix = WriteMix {
        key_prefix: "",
        keys: KEYS,
        tag: format!("c{cycle}/w{index}/"),
        dim: DIM,
        large: 2_000..6_000,
        medium: 200..1_500,
        puts: 11,
        deletes: 3,
        batch_max: 5,
        batch_delete_chance: 0.25,
    };
    random_commit(&mut rng_for(seed, &[1, cycle, index]), &mix)
}

/// The child: does nothing in a normal test run; with the variables set it writes and
/// compacts until it is killed.
#[test]
fn crash_compaction_child_writes_and_compacts_until_killed() {
    let (Some(dir), Ok(spec)) = (std::env::var_os(ENV_DIR), std::env::var(ENV_SPEC)) else { return };
    let spec = ChildSpec::decode(&spec);
    let fail = |what: String| -> ! {
        eprintln!("child {spec:?}: {what}");
        std::process::abort()
    };
    let db = Db::open(&dir, spec.options()).unwrap_or_else(|e| fail(format!("open: {e}")));
    let out = Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            fail(format!("report: {e}"));
        }
    };
    let (ticks, tick) = mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let (db, say) = (&db, &say);
        scope.spawn(move || {
            for n in 0u64.. {
                if tick.recv().is_err() {
                    return;
                }
                db.seal().unwrap_or_else(|e| fail(format!("seal before compaction {n}: {e}")));
                say(format!("{START} {n}"));
                db.compact().unwrap_or_else(|e| fail(format!("compaction {n}: {e}")));
                say(format!("{DONE} {n}"));
            }
        });
        for index in 0u64.. {
            let commit = commit_for(spec.seed, spec.cycle, index);
            if let Err(e) = write_commit(db, &commit) {
                fail(format!("write {index}: {e}"));
            }
            say(format!("{ACK} {index}"));
            if !spec.background && index % spec.compact_every == spec.compact_every - 1 {
                let _ = ticks.try_send(()); // a compaction already asked for is enough
            }
        }
    });
}

/// What the parent saw of one child before it died.
#[derive(Debug, Default)]
struct Seen {
    acked: u64,
    started: u64,
    done: u64,
}

fn run_child(dir: &Path, spec: &ChildSpec, plan: &Plan, stderr_path: &Path, context: &str) -> Seen {
    let mut child = spawn_child(CHILD_TEST, [(ENV_DIR, dir.as_os_str()), (ENV_SPEC, spec.encode().as_ref())], stderr_path);
    let stdout = child.stdout.take().expect("child stdout");
    let mut seen = Seen::default();
    let mut killed = false;
    if matches!(plan.kill, Kill::Acks(0)) {
        child.kill().expect("kill the child");
        killed = true;
    }
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's stdout");
        // libtest may print the test's name on the same line, before the first report.
        let (tag, rest) = if let Some(at) = line.find(ACK) {
            (ACK, &line[at + ACK.len()..])
        } else if let Some(at) = line.find(START) {
            (START, &line[at + START.len()..])
        } else if let Some(at) = line.find(DONE) {
            (DONE, &line[at + DONE.len()..])
        } else {
            continue;
        };
        let n: u64 = rest.trim().parse().unwrap_or_else(|_| panic!("{context}: bad report line {line:?}"));
        let trigger = match tag {
            ACK => {
                assert_eq!(n, seen.acked, "{context}: write {n} acknowledged out of order");
                seen.acked += 1;
                matches!(plan.kill, Kill::Acks(count) if seen.acked >= count)
            }
            START => {
                assert_eq!(n, seen.started, "{context}: compaction {n} started out of order");
                seen.started += 1;
                match plan.kill {
                    Kill::Start { n: at, delay_us } if at == n => {
                        if delay_us > 0 {
                            // Not a synchronisation: it only moves the kill to a random
                            // point inside (or after) the compaction.
                            std::thread::sleep(Duration::from_micros(delay_us));
                        }
                        true
                    }
                    _ => false,
                }
            }
            _ => {
                assert_eq!(n, seen.done, "{context}: compaction {n} ended out of order");
                seen.done += 1;
                matches!(plan.kill, Kill::Done(at) if at == n)
            }
        };
        if trigger && !killed {
            child.kill().expect("kill the child");
            killed = true;
        }
    }
    let status = child.wait().expect("reap the child");
    let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
    assert!(killed && status.signal() == Some(9), "{context}: the child ended by itself ({status}):\n{stderr}");
    seen
}

/// The value `commit` leaves for `key` (the later op of a batch wins), if a put.
fn value_of_commit(commit: &[Op], key: &[u8]) -> Option<Value> {
    let mut value = None;
    for op in commit {
        match op {
            Op::Put { key: k, content, embedding } if k == key => {
                value = Some(Value { content: content.clone(), embedding: embedding.clone() })
            }
            Op::Delete { key: k } if k == key => value = None,
            _ => {}
        }
    }
    value
}

/// The write that made a content: its tag `c{cycle}/w{index}/`.
fn tag_of(content: &[u8]) -> Option<(u64, u64)> {
    let mut parts = content[..content.len().min(32)].splitn(3, |&b| b == b'/');
    let cycle = std::str::from_utf8(parts.next()?.strip_prefix(b"c")?).ok()?.parse().ok()?;
    let index = std::str::from_utf8(parts.next()?.strip_prefix(b"w")?).ok()?.parse().ok()?;
    parts.next()?; // the tag ends with a '/'
    Some((cycle, index))
}

/// Every cold row of `db`: keys ascend strictly within and across segments (no key twice),
/// and each row holds exactly a value some write gave its key.
fn check_cold_rows(db: &Db, seed: u64, context: &str) -> usize {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for segment in db.cold_segments() {
        let columns = segment.columns();
        for i in 0..segment.rows() {
            let key = columns.keys.value(i);
            let content = columns.content.value(i);
            let row = Value { content: content.to_vec(), embedding: columns.embedding(i).map(<[f32]>::to_vec) };
            let written = tag_of(content).and_then(|(cycle, index)| value_of_commit(&commit_for(seed, cycle, index), key));
            assert!(
                written.as_ref() == Some(&row),
                "{context}: cold segment {} row {i} ({}) holds a value no write gave that key",
                segment.id(),
                String::from_utf8_lossy(key)
            );
            keys.push(key.to_vec());
        }
    }
    for pair in keys.windows(2) {
        assert!(pair[0] < pair[1], "{context}: cold keys not strictly ascending across segments: {:?} then {:?}", pair[0], pair[1]);
    }
    keys.len()
}

/// Checks the crash image read-only: settles the write in flight, compares with the model,
/// checks the cold rows, verifies. Changes no file.
fn check_crash_image(dir: &Path, seed: u64, model: &mut Model, in_flight: &[Op], context: &str) -> usize {
    let files_before = DirImage::capture(dir);
    let db = Db::open(dir, options().read_only(true)).unwrap_or_else(|e| panic!("{context}: read-only open: {e}"));
    let found = read_all(&db).unwrap_or_else(|e| panic!("{context}: {e}"));
    if found != *model {
        let mut with = model.clone();
        apply(&mut with, in_flight);
        assert!(
            found == with,
            "{context}: the database matches the acknowledged writes neither without nor with the write in flight:\n  without \
             it: {}\n  with it: {}",
            describe_diff(&found, model),
            describe_diff(&found, &with)
        );
        *model = with;
    }
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: {e}"));
    let cold_rows = check_cold_rows(&db, seed, context);
    db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
    assert_eq!(db.stats().orphans_removed, 0, "{context}: a read-only open removes nothing");
    drop(db);
    assert!(files_before.matches(dir), "{context}: the read-only open changed a file");
    cold_rows
}

/// Opens for writing: exactly the orphans the MANIFEST implies are removed and counted,
/// only live files remain, the data is the model's; then closes cleanly.
fn recover_and_check(dir: &Path, seed: u64, model: &Model, context: &str) -> usize {
    let orphans = expected_orphans(dir);
    let db = Db::open(dir, options()).unwrap_or_else(|e| panic!("{context}: writable open: {e}"));
    assert_eq!(db.stats().orphans_removed, orphans.len() as u64, "{context}: orphans removed, expected {orphans:?}");
    for name in &orphans {
        assert!(!dir.join(name).exists(), "{context}: orphan {name} is still there");
    }
    assert_only_live_files(&db, dir, context);
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: after the writable open: {e}"));
    check_cold_rows(&db, seed, context);
    db.verify().unwrap_or_else(|e| panic!("{context}: verify after the writable open: {e}"));
    db.close().unwrap_or_else(|e| panic!("{context}: close: {e}"));
    drop(db);
    orphans.len()
}

#[test]
fn kill9_during_compaction_loses_nothing_duplicates_nothing_and_leaves_no_orphan() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed("kill9_during_compaction_loses_nothing_duplicates_nothing_and_leaves_no_orphan");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("db");
    Db::open(&dir, options()).and_then(|db| db.close()).expect("create");
    let mut model = Model::new();
    let (mut orphans_total, mut cold_cycles) = (0, 0);
    for cycle in 0..CYCLES {
        let (spec, plan) = plan(seed, cycle);
        let context = format!("seed {seed}, cycle {cycle} ({spec:?}, {plan:?})");
        let seen = run_child(&dir, &spec, &plan, &temp.path().join(format!("child-{cycle}.stderr")), &context);
        let context = format!("{context}, {seen:?}");
        for index in 0..seen.acked {
            apply(&mut model, &commit_for(seed, cycle, index));
        }
        let in_flight = commit_for(seed, cycle, seen.acked);
        let orphans = expected_orphans(&dir);
        let cold_rows = check_crash_image(&dir, seed, &mut model, &in_flight, &context);
        cold_cycles += usize::from(cold_rows > 0);
        if plan.recover_in_parent {
            orphans_total += recover_and_check(&dir, seed, &model, &context);
        }
        eprintln!(
            "cycle {cycle}: {:?}, {} acks, compactions {}/{} started/done, {} keys, {cold_rows} cold rows in {} cold files, orphans {orphans:?}",
            plan.kill,
            seen.acked,
            seen.started,
            seen.done,
            model.len(),
            cold_files(&dir).len(),
        );
    }
    eprintln!("{orphans_total} orphans removed by the parent over {CYCLES} cycles; {cold_cycles} cycles with a cold tier");

    // After every crash the database takes writes, compacts, and keeps everything.
    let context = format!("seed {seed}, after {CYCLES} cycles");
    recover_and_check(&dir, seed, &model, &context);
    let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let last = vec![Op::Put { key: b"k-last".to_vec(), content: b"written after every crash".to_vec(), embedding: None }];
    write_commit(&db, &last).expect("write after the crashes");
    apply(&mut model, &last);
    db.seal().expect("seal");
    db.compact().expect("compact");
    check_db(&db, &model).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_only_live_files(&db, &dir, &context);
    db.close().expect("close");
    drop(db);
    let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    assert_eq!(db.stats().orphans_removed, 0, "{context}: a clean close leaves no orphan");
    check_db(&db, &model).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
    db.verify().unwrap_or_else(|e| panic!("{context}: verify after reopen: {e}"));
}

// ---- a compaction cut short, laid down by hand ------------------------------------------------

fn det_options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Flush).cold_segment_bytes_max(4096)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "LOCK")
        .collect()
}

fn copy(from: &Path, to: &Path, name: &str, as_name: &str) {
    std::fs::copy(from.join(name), to.join(as_name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
}

/// Opens `dir` read-only (must remove nothing, read `model`), then for writing: `orphans`
/// are removed and counted, the rest of the directory is `live`, the data is `model`.
fn check_orphans_removed(dir: &Path, orphans: &BTreeSet<String>, live: &BTreeSet<String>, model: &Model, context: &str) {
    let before = names(dir);
    let db = Db::open(dir, det_options().read_only(true)).unwrap_or_else(|e| panic!("{context}: read-only open: {e}"));
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: read-only: {e}"));
    assert_eq!(db.stats().orphans_removed, 0, "{context}: read-only open");
    drop(db);
    assert_eq!(names(dir), before, "{context}: a read-only open removes no orphan");

    let expected: BTreeSet<String> = expected_orphans(dir).into_iter().collect();
    assert_eq!(&expected, orphans, "{context}: the MANIFEST makes exactly the planted files orphans");
    let db = Db::open(dir, det_options()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    assert_eq!(db.stats().orphans_removed, orphans.len() as u64, "{context}: orphans_removed counts {orphans:?}");
    assert_eq!(&names(dir), live, "{context}: exactly the orphans were removed");
    assert_only_live_files(&db, dir, context);
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: {e}"));
    db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir, det_options()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    assert_eq!(db.stats().orphans_removed, 0, "{context}: nothing left to remove on the next open");
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
}

#[test]
fn files_of_a_compaction_cut_short_are_removed_counted_and_lose_nothing() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let temp = tempfile::tempdir().expect("temp dir");
    let (before_dir, after_dir) = (temp.path().join("before"), temp.path().join("after"));
    let mut rng = rng_for(11, &[0]);
    let mut model = Model::new();
    let put = |rng: &mut rand::rngs::StdRng, i: u64, round: u64| -> Vec<Op> {
        let mut content = format!("round {round} key {i}/").into_bytes();
        let len = rng.gen_range(0..300);
        content.extend(random_bytes(rng, len));
        vec![Op::Put { key: format!("k{i:04}").into_bytes(), content, embedding: rng.gen_bool(0.7).then(|| random_embedding(rng, DIM)) }]
    };

    // "before": a cold tier (several segments), then sealed overwrites and deletions
    // spread over every cold segment, then hot writes; closed cleanly.
    let db = Db::open(&before_dir, det_options()).expect("open");
    for i in 0..200 {
        let commit = put(&mut rng, i, 0);
        write_commit(&db, &commit).expect("write");
        apply(&mut model, &commit);
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    assert!(db.cold_segments().len() >= 3, "several cold segments");
    for i in (0..200).step_by(3) {
        let commit = if i % 2 == 0 { put(&mut rng, i, 1) } else { vec![Op::Delete { key: format!("k{i:04}").into_bytes() }] };
        write_commit(&db, &commit).expect("write");
        apply(&mut model, &commit);
    }
    db.seal().expect("seal");
    for i in (1..200).step_by(7) {
        let commit = put(&mut rng, i, 2);
        write_commit(&db, &commit).expect("write");
        apply(&mut model, &commit);
    }
    db.close().expect("close");
    drop(db);
    let before_image = DirImage::capture(&before_dir);
    let before_names = names(&before_dir);

    // "after": the same database once its compaction has finished.
    before_image.write_to(&after_dir);
    let db = Db::open(&after_dir, det_options()).expect("open the copy");
    db.compact().expect("compact the copy");
    check_db(&db, &model).expect("the compacted copy holds the model");
    db.close().expect("close");
    drop(db);
    let after_names = names(&after_dir);

    // 1. A crash after the new cold segments and MANIFEST.tmp were written, before the
    //    rename: the database is "before" plus those files.
    let crashed = temp.path().join("crash-before-rename");
    before_image.write_to(&crashed);
    let mut orphans = BTreeSet::new();
    for name in after_names.iter().filter(|n| n.ends_with(".cold") && !before_names.contains(*n)) {
        copy(&after_dir, &crashed, name, name);
        orphans.insert(name.clone());
    }
    assert!(!orphans.is_empty(), "the compaction wrote new cold segments");
    copy(&after_dir, &crashed, "MANIFEST", "MANIFEST.tmp");
    orphans.insert("MANIFEST.tmp".to_string());
    check_orphans_removed(&crashed, &orphans, &before_names, &model, "crash before the MANIFEST rename");

    // 2. A crash after the rename, before the replaced files were deleted: "after" plus
    //    the replaced cold segments, the compacted log segments, and a stale MANIFEST.tmp.
    let crashed = temp.path().join("crash-after-rename");
    DirImage::capture(&after_dir).write_to(&crashed);
    let mut orphans = BTreeSet::new();
    for name in before_names.iter().filter(|n| !after_names.contains(*n)) {
        copy(&before_dir, &crashed, name, name);
        orphans.insert(name.clone());
    }
    assert!(orphans.iter().any(|n| n.ends_with(".cold")), "the compaction replaced cold segments: {orphans:?}");
    assert!(orphans.iter().any(|n| n.ends_with(".log")), "the compaction retired log segments: {orphans:?}");
    copy(&before_dir, &crashed, "MANIFEST", "MANIFEST.tmp");
    orphans.insert("MANIFEST.tmp".to_string());
    check_orphans_removed(&crashed, &orphans, &after_names, &model, "crash after the MANIFEST rename");

    // 3. Only a log segment below the floor: a retirement that deleted the cold files but
    //    not yet that log segment.
    let crashed = temp.path().join("crash-mid-retirement");
    DirImage::capture(&after_dir).write_to(&crashed);
    let floor = read_manifest(&after_dir).expect("a MANIFEST").log_floor;
    let below: Vec<String> = segment_files(&before_dir)
        .into_iter()
        .filter(|(id, _)| *id < floor)
        .map(|(_, p)| p.file_name().and_then(|n| n.to_str()).expect("name").to_string())
        .collect();
    let name = below.last().expect("a log segment below the floor").clone();
    copy(&before_dir, &crashed, &name, &name);
    check_orphans_removed(&crashed, &BTreeSet::from([name]), &after_names, &model, "crash mid-retirement");
}
