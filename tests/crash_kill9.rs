//! Durability under `kill -9` (DESIGN.md contracts 2 and 3): the test re-runs its own binary
//! as a child process that writes forever under `Durability::Sync` (puts, deletes,
//! overwrites, batches; one or two writer threads) and prints an acknowledgement after each
//! write returns. The parent SIGKILLs it at a random point, reopens the database and checks
//! it against a model built from the acknowledgements: every acknowledged write is there
//! exactly, the one write each thread had in flight is wholly there or wholly absent, and
//! `verify` passes. The next child writes to the same directory, for many cycles, some with
//! small segments so kills also land while segments are sealed and rolled, and some left
//! for the child to recover, so recovery of a recovered (or half-recovered) image is tested.

mod crash_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crash_support::*;
use rand::Rng;
use strata::{Db, Durability, Options};

/// The child's test name, and the environment variables that make it act.
const CHILD_TEST: &str = "crash_child_writes_until_killed";
const ENV_DIR: &str = "STRATA_CRASH_CHILD_DIR";
const ENV_SPEC: &str = "STRATA_CRASH_CHILD_SPEC";
/// Prefix of an acknowledgement line: `STRATA-ACK <thread> <index of the write>`.
const ACK: &str = "STRATA-ACK";

const DIM: usize = 8;
/// Crash cycles per run: `STRATA_KILL9_CYCLES`, 30 by default (CI). Long runs
/// (`scripts/kill9-long.sh`) run many seeds, each on a fresh directory, so the database
/// stays small while the cycle count grows.
fn cycles() -> u64 {
    match std::env::var("STRATA_KILL9_CYCLES") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("STRATA_KILL9_CYCLES={text:?} is not a u64")),
        Err(_) => 30,
    }
}
const THREADS_MAX: u64 = 2;
/// Keys per writer thread; thread `t` owns the keys `t{t}/...`, so each thread's writes
/// can be judged on their own.
const KEYS_PER_THREAD: u64 = 40;

/// What one child does: everything it writes follows from these.
#[derive(Clone, Copy, Debug)]
struct ChildSpec {
    seed: u64,
    cycle: u64,
    threads: u64,
    segment_bytes_max: u64,
}

impl ChildSpec {
    fn encode(&self) -> String {
        format!("{} {} {} {}", self.seed, self.cycle, self.threads, self.segment_bytes_max)
    }

    fn decode(text: &str) -> ChildSpec {
        let fields: Vec<u64> = text.split(' ').map(|f| f.parse().expect("child spec field")).collect();
        let [seed, cycle, threads, segment_bytes_max] = fields[..] else { panic!("child spec {text:?}") };
        ChildSpec { seed, cycle, threads, segment_bytes_max }
    }
}

/// What the parent does around one child.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// SIGKILL once this many acknowledgements have been read (0: right after spawning,
    /// while the child may still be starting or recovering).
    kill_after_acks: u64,
    /// After the read-only check, also open for writing (recovering the image) and close
    /// cleanly; otherwise the next child recovers the crash image itself.
    recover_in_parent: bool,
}

fn plan(seed: u64, cycle: u64) -> (ChildSpec, Plan) {
    let mut rng = rng_for(seed, &[0, cycle]);
    let threads = if rng.gen_bool(0.4) { 2 } else { 1 };
    let segment_bytes_max = [4 << 10, 16 << 10, 16 << 10, 64 << 10, 64 << 20][rng.gen_range(0..5)];
    let kill_after_acks = match rng.gen_range(0..20) {
        0..2 => 0,
        2..7 => rng.gen_range(1..=8),
        _ => rng.gen_range(8..=250),
    };
    let plan = Plan { kill_after_acks, recover_in_parent: rng.gen_bool(0.5) };
    (ChildSpec { seed, cycle, threads, segment_bytes_max }, plan)
}

fn options(segment_bytes_max: u64) -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Sync).segment_bytes_max(segment_bytes_max)
}

/// Write `index` of writer `thread` in the child of `cycle`: a single put, a delete or a
/// batch of up to six puts and deletes, always on that thread's keys. The tag makes every
/// version of a key distinct, so a stale one is caught.
fn commit_for(seed: u64, cycle: u64, thread: u64, index: u64) -> Vec<Op> {
    let prefix = format!("t{thread}/");
    let mix = WriteMix {
        key_prefix: &prefix,
        keys: KEYS_PER_THREAD,
        tag: format!("c{cycle}/t{thread}/w{index}/"),
        dim: DIM,
        large: 2_000..9_000,
        medium: 200..2_000,
        puts: 10,
        deletes: 3,
        batch_max: 6,
        batch_delete_chance: 0.2,
    };
    random_commit(&mut rng_for(seed, &[1, cycle, thread, index]), &mix)
}

/// The body of the child process. In a normal test run (no environment variables) it does
/// nothing; `acknowledged_writes_survive_kill9_and_batches_stay_whole` runs this binary with
/// `--exact crash_child_writes_until_killed` and the variables set.
#[test]
fn crash_child_writes_until_killed() {
    let (Some(dir), Ok(spec)) = (std::env::var_os(ENV_DIR), std::env::var(ENV_SPEC)) else { return };
    let spec = ChildSpec::decode(&spec);
    let fail = |what: String| -> ! {
        // Abort rather than panic: a panicking thread would leave the other one writing,
        // and the parent tells SIGABRT from its own SIGKILL.
        eprintln!("child {spec:?}: {what}");
        std::process::abort()
    };
    let db = Db::open(&dir, options(spec.segment_bytes_max)).unwrap_or_else(|e| fail(format!("open: {e}")));
    let out = Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..spec.threads {
            let (db, out) = (&db, &out);
            scope.spawn(move || {
                for index in 0u64.. {
                    let commit = commit_for(spec.seed, spec.cycle, thread, index);
                    if let Err(e) = write_commit(db, &commit) {
                        fail(format!("write {index} of thread {thread}: {e}"));
                    }
                    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = writeln!(out, "{ACK} {thread} {index}").and_then(|()| out.flush()) {
                        fail(format!("acknowledge: {e}"));
                    }
                }
            });
        }
    });
}

/// Runs one child on `dir`, kills it per `plan`, and returns how many writes each thread
/// acknowledged (every acknowledgement printed before death is read).
fn run_child(dir: &Path, spec: &ChildSpec, plan: &Plan, stderr_path: &Path, context: &str) -> Vec<u64> {
    let mut child = spawn_child(CHILD_TEST, [(ENV_DIR, dir.as_os_str()), (ENV_SPEC, spec.encode().as_ref())], stderr_path);
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = vec![0u64; spec.threads as usize];
    let mut killed = false;
    if plan.kill_after_acks == 0 {
        child.kill().expect("kill the child");
        killed = true;
    }
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's stdout");
        // libtest may print the test's name on the same line, before the first ack.
        let Some(ack) = line.find(ACK).map(|at| &line[at + ACK.len()..]) else { continue };
        let fields: Vec<u64> = ack.split_whitespace().map(|f| f.parse().expect("ack field")).collect();
        let [thread, index] = fields[..] else { panic!("{context}: bad ack line {line:?}") };
        let count = &mut acked[thread as usize];
        assert_eq!(index, *count, "{context}: thread {thread} acknowledged write {index} out of order");
        *count += 1;
        if !killed && acked.iter().sum::<u64>() >= plan.kill_after_acks {
            child.kill().expect("kill the child");
            killed = true;
        }
    }
    let status = child.wait().expect("reap the child");
    let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
    assert!(killed && status.signal() == Some(9), "{context}: the child ended by itself ({status}):\n{stderr}");
    acked
}

/// The keys of `model` that belong to writer `thread`.
fn part(model: &Model, thread: u64) -> Model {
    let prefix = format!("t{thread}/").into_bytes();
    model.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn describe_commit(commit: &[Op]) -> String {
    let ops: Vec<String> = commit
        .iter()
        .map(|op| match op {
            Op::Put { key, content, .. } => format!("put {} ({} bytes)", String::from_utf8_lossy(key), content.len()),
            Op::Delete { key } => format!("delete {}", String::from_utf8_lossy(key)),
        })
        .collect();
    format!("[{}]", ops.join(", "))
}

/// Decides, thread by thread, whether the write that was in flight when the child died was
/// applied (whole) or not at all, and updates `model` to match; anything else fails.
fn settle(model: &mut Model, found: &Model, in_flight: &[Vec<Op>], context: &str) {
    let strays: Vec<_> = found.keys().filter(|k| !(0..THREADS_MAX).any(|t| k.starts_with(format!("t{t}/").as_bytes()))).collect();
    assert!(strays.is_empty(), "{context}: keys nobody wrote: {strays:?}");
    for thread in 0..THREADS_MAX {
        let (found_part, without) = (part(found, thread), part(model, thread));
        if found_part == without {
            continue;
        }
        let Some(commit) = in_flight.get(thread as usize) else {
            panic!("{context}: thread {thread} did not run, yet its keys changed: {}", describe_diff(&found_part, &without));
        };
        let mut with = without.clone();
        apply(&mut with, commit);
        assert!(
            found_part == with,
            "{context}: thread {thread}: the database matches the acknowledged writes neither without nor with the write in \
             flight {}:\n  without it: {}\n  with it: {}",
            describe_commit(commit),
            describe_diff(&found_part, &without),
            describe_diff(&found_part, &with),
        );
        apply(model, commit);
    }
}

/// What the kill left as the newest segment file, in words (for the cycle summary), and
/// its path.
fn newest_segment(dir: &Path) -> (String, Option<PathBuf>) {
    let Some((_, path)) = segment_files(dir).pop() else { return ("(none)".into(), None) };
    let bytes = std::fs::read(&path).expect("read the newest segment");
    let len = bytes.len() as u64;
    let state = if len < SEGMENT_HEADER_LEN {
        "cut short at creation"
    } else if len >= SEGMENT_HEADER_LEN + TRAILER_LEN && bytes[bytes.len() - TRAILER_LEN as usize..].starts_with(b"STRATSEG") {
        "sealed"
    } else {
        "active"
    };
    (format!("{state} ({len} bytes)"), Some(path))
}

/// Checks the crash image as the child left it, through a read-only open (which changes no
/// file): settles the writes in flight, then the whole model, then `verify`.
fn check_crash_image(dir: &Path, spec: &ChildSpec, model: &mut Model, in_flight: &[Vec<Op>], context: &str) {
    let db = Db::open(dir, options(spec.segment_bytes_max).read_only(true)).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let found = read_all(&db).unwrap_or_else(|e| panic!("{context}: {e}"));
    let before = model.clone();
    settle(model, &found, in_flight, context);
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: {e}"));
    db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
    eprintln!(
        "cycle {}: {} thread(s), {}-byte segments, in flight applied: {}, {} keys, {} segment files, the newest {}",
        spec.cycle,
        spec.threads,
        spec.segment_bytes_max,
        before != *model,
        model.len(),
        segment_files(dir).len(),
        newest_segment(dir).0,
    );
}

/// Opens for writing (recovering the crash image: a torn tail is cut), checks, closes cleanly.
fn recover_and_check(dir: &Path, spec: &ChildSpec, model: &Model, context: &str) {
    let (_, newest) = newest_segment(dir);
    let len_of = |path: &Option<PathBuf>| path.as_deref().filter(|p| p.exists()).map_or(0, file_len);
    let crashed_len = len_of(&newest);
    let db = Db::open(dir, options(spec.segment_bytes_max)).unwrap_or_else(|e| panic!("{context}: recovering open: {e}"));
    if len_of(&newest) < crashed_len {
        eprintln!("cycle {}: recovery cut {} bytes off the newest segment", spec.cycle, crashed_len - len_of(&newest));
    }
    check_db(&db, model).unwrap_or_else(|e| panic!("{context}: after recovery: {e}"));
    db.verify().unwrap_or_else(|e| panic!("{context}: verify after recovery: {e}"));
    db.close().unwrap_or_else(|e| panic!("{context}: close: {e}"));
}

#[test]
fn acknowledged_writes_survive_kill9_and_batches_stay_whole() {
    let seed = test_seed("acknowledged_writes_survive_kill9_and_batches_stay_whole");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("db");
    // Create the database first, so even a child killed before its open leaves one to check.
    Db::open(&dir, options(strata::limits::SEGMENT_BYTES_DEFAULT)).and_then(|db| db.close()).expect("create");
    let mut model = Model::new();
    let cycles = cycles();
    let mut acknowledged = 0u64;
    for cycle in 0..cycles {
        let (spec, plan) = plan(seed, cycle);
        let context = format!("seed {seed}, cycle {cycle} ({spec:?}, {plan:?})");
        let acked = run_child(&dir, &spec, &plan, &temp.path().join(format!("child-{cycle}.stderr")), &context);
        let context = format!("{context}, acknowledged {acked:?}");
        acknowledged += acked.iter().sum::<u64>();
        for (thread, &count) in (0..).zip(&acked) {
            for index in 0..count {
                apply(&mut model, &commit_for(seed, cycle, thread, index));
            }
        }
        let in_flight: Vec<Vec<Op>> = (0..).zip(&acked).map(|(thread, &count)| commit_for(seed, cycle, thread, count)).collect();
        check_crash_image(&dir, &spec, &mut model, &in_flight, &context);
        if plan.recover_in_parent {
            recover_and_check(&dir, &spec, &model, &context);
        }
    }

    // After every crash: the database still takes writes, and keeps them.
    let context = format!("seed {seed}, after {cycles} cycles");
    let db = Db::open(&dir, options(16 << 10)).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    check_db(&db, &model).unwrap_or_else(|e| panic!("{context}: {e}"));
    let last = vec![Op::Put { key: b"t0/last".to_vec(), content: b"written after every crash".to_vec(), embedding: None }];
    write_commit(&db, &last).expect("write after the crashes");
    apply(&mut model, &last);
    db.close().expect("close");
    drop(db);
    let db = Db::open(&dir, options(16 << 10).read_only(true)).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    check_db(&db, &model).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
    db.verify().unwrap_or_else(|e| panic!("{context}: verify after reopen: {e}"));
    // The line scripts/kill9-long.sh adds up.
    eprintln!("kill9: seed {seed}: {cycles} cycles, {acknowledged} acknowledged writes, none lost");
}
