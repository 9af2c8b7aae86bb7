//! Goal: readers sharing an `Arc<Db>` with concurrent writers and seals always see one
//! consistent state, and every acknowledged write is there at the end and after reopen.
//! Method: writers follow fixed, checkable patterns (per-writer ordered keys, atomic batches
//! over several keys); reader threads check invariants that hold at every instant on
//! snapshots, iterators (both directions) and gets; held snapshots are re-read later.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{assert_strictly_ordered, bits, collect, Entry};
use strata::{Batch, Db, Durability, Options};

const DIM: usize = 4;

// ---- the ordered-writers workload ----------------------------------------------------
//
// Writer `t`, step `i`, does two commits:
//   1. a batch: put `w{t}/{i}`, put `c{t}` (content of step i), put `d{t}/{i}`, delete `d{t}/{i-3}`;
//   2. a single put of `s{t}/{i}`.
// So in every consistent state, with `m` = the number of `w{t}/` keys:
//   `w{t}/` holds exactly steps 0..m; `c{t}` holds step m-1 (absent if m = 0);
//   `d{t}/` holds exactly steps max(0, m-3)..m; `s{t}/` holds steps 0..m or 0..m-1.

#[derive(Clone, Copy, Debug)]
struct Plan {
    writers: usize,
    steps: usize,
    readers: usize,
    durability: Durability,
    segment_bytes_max: u64,
}

fn key(kind: char, t: usize, i: usize) -> Vec<u8> {
    format!("{kind}{t}/{i:06}").into_bytes()
}

fn counter_key(t: usize) -> Vec<u8> {
    format!("c{t}").into_bytes()
}

/// Content of writer `t`'s step `i`: the step, then filler of varying length.
fn content(t: usize, i: usize) -> Vec<u8> {
    let mut bytes = format!("{t}:{i}:").into_bytes();
    bytes.extend((0..(i * 37 + t * 11) % 230).map(|n| (n as u8).wrapping_mul(31) ^ (i as u8)));
    bytes
}

fn embedding(t: usize, i: usize) -> [f32; DIM] {
    [t as f32, i as f32, -(i as f32), 0.25]
}

fn options(plan: &Plan) -> Options {
    Options::new().embedding_dim(DIM).durability(plan.durability).segment_bytes_max(plan.segment_bytes_max)
}

fn write_step(db: &Db, t: usize, i: usize) {
    let (c, e) = (content(t, i), embedding(t, i));
    let mut batch = Batch::new();
    batch.put(&key('w', t, i), &c, Some(&e)).put(&counter_key(t), &c, None).put(&key('d', t, i), &c, Some(&e));
    if i >= 3 {
        batch.delete(&key('d', t, i - 3));
    }
    db.write(batch).expect("batch write");
    db.put(&key('s', t, i), &c, Some(&e)).expect("single put");
}

/// What one writer's keys look like in one state.
#[derive(Default, Debug)]
struct WriterView {
    w: Vec<usize>,
    s: Vec<usize>,
    d: Vec<usize>,
    counter: Option<usize>,
}

/// Parses `key` into (kind, writer, step); checks the record's content and embedding.
fn parse_checked(entry: &Entry) -> (char, usize, usize) {
    let text = std::str::from_utf8(&entry.key).expect("utf-8 key");
    let kind = text.chars().next().expect("non-empty key");
    let step_of_content = |bytes: &[u8]| -> (usize, usize) {
        let text = String::from_utf8_lossy(bytes);
        let mut parts = text.splitn(3, ':');
        let t = parts.next().and_then(|p| p.parse().ok()).expect("content writer");
        let i = parts.next().and_then(|p| p.parse().ok()).expect("content step");
        (t, i)
    };
    let (t, i) = if kind == 'c' {
        let t: usize = text[1..].parse().expect("counter key");
        let (ct, ci) = step_of_content(&entry.content);
        assert_eq!(ct, t, "counter {text} holds another writer's content");
        (t, ci)
    } else {
        let (t, i) = text[1..].split_once('/').expect("kind{t}/{i} key");
        (t.parse().expect("writer"), i.parse().expect("step"))
    };
    assert_eq!(entry.content, content(t, i), "content of {text}");
    let want_embedding = if kind == 'c' { None } else { Some(bits(&embedding(t, i))) };
    assert_eq!(entry.embedding_bits, want_embedding, "embedding of {text}");
    (kind, t, i)
}

/// Checks every invariant of the ordered-writers workload on one state (entries in any
/// order) and returns `m` (the number of `w` keys) for each writer.
fn check_state(entries: &[Entry], writers: usize, context: &str) -> Vec<usize> {
    let mut views: Vec<WriterView> = (0..writers).map(|_| WriterView::default()).collect();
    for entry in entries {
        let (kind, t, i) = parse_checked(entry);
        let view = views.get_mut(t).unwrap_or_else(|| panic!("{context}: unknown writer {t}"));
        match kind {
            'w' => view.w.push(i),
            's' => view.s.push(i),
            'd' => view.d.push(i),
            'c' => view.counter = Some(i),
            other => panic!("{context}: unexpected key kind {other}"),
        }
    }
    views
        .into_iter()
        .enumerate()
        .map(|(t, mut v)| {
            v.w.sort_unstable();
            v.s.sort_unstable();
            v.d.sort_unstable();
            let m = v.w.len();
            assert_eq!(v.w, (0..m).collect::<Vec<_>>(), "{context}: writer {t}'s keys are not a prefix of its writes");
            assert_eq!(v.counter, m.checked_sub(1), "{context}: writer {t}'s counter disagrees with its batch");
            assert_eq!(v.d, (m.saturating_sub(3)..m).collect::<Vec<_>>(), "{context}: writer {t}'s batch put/delete seen in part");
            let s_ok = v.s == (0..m).collect::<Vec<_>>() || v.s == (0..m.saturating_sub(1)).collect::<Vec<_>>();
            assert!(s_ok, "{context}: writer {t}: single puts {:?} do not follow batches 0..{m}", v.s);
            m
        })
        .collect()
}

/// (key, content, embedding bits): a record without its seq.
type Plain = (Vec<u8>, Vec<u8>, Option<Vec<u32>>);

fn without_seq(entries: &[Entry]) -> Vec<Plain> {
    entries.iter().map(|e| (e.key.clone(), e.content.clone(), e.embedding_bits.clone())).collect()
}

/// The final state every acknowledged write leads to.
fn expected_final(plan: &Plan) -> Vec<Plain> {
    let mut all = BTreeMap::new();
    for t in 0..plan.writers {
        let last = plan.steps - 1;
        all.insert(counter_key(t), (content(t, last), None));
        for i in 0..plan.steps {
            let e = Some(bits(&embedding(t, i)));
            all.insert(key('w', t, i), (content(t, i), e.clone()));
            all.insert(key('s', t, i), (content(t, i), e.clone()));
            if i + 3 >= plan.steps {
                all.insert(key('d', t, i), (content(t, i), e));
            }
        }
    }
    all.into_iter().map(|(k, (c, e))| (k, c, e)).collect()
}

/// One reader pass, `round` picks the read path. Returns the `m` it saw per writer.
fn reader_round(db: &Db, plan: &Plan, round: usize, seen: &mut [usize]) {
    let writers = plan.writers;
    match round % 4 {
        0 => {
            let snapshot = db.snapshot();
            let forward = collect(snapshot.iter());
            assert_strictly_ordered(&forward, false, "snapshot iter");
            let m = check_state(&forward, writers, "snapshot iter");
            let mut backward = collect(snapshot.iter().rev());
            assert_strictly_ordered(&backward, true, "snapshot iter().rev()");
            backward.reverse();
            assert_eq!(backward, forward, "one snapshot read forwards and backwards");
            for (t, &m) in m.iter().enumerate() {
                let counter = snapshot.get(&counter_key(t)).expect("snapshot get");
                let want = forward.iter().find(|e| e.key == counter_key(t));
                assert_eq!(counter.as_ref().map(Entry::of).as_ref(), want, "snapshot get agrees with its iter");
                let range = collect(snapshot.range(&key('w', t, 0)[..]..&key('w', t, m)[..]));
                assert_eq!(range.len(), m, "snapshot range over writer {t}'s keys");
            }
            raise(seen, &m);
        }
        1 | 2 => {
            // An iterator created between two snapshots reads a state between theirs, however
            // long it takes to consume while writers and seals go on.
            let rev = round % 4 == 2;
            let before = db.snapshot();
            let iter = db.iter();
            let after = db.snapshot();
            let mut got = if rev { collect(iter.rev()) } else { collect(iter) };
            assert_strictly_ordered(&got, rev, if rev { "db.iter().rev()" } else { "db.iter()" });
            if rev {
                got.reverse();
            }
            let m = check_state(&got, writers, "db.iter()");
            let before = collect(before.iter());
            let after = collect(after.iter());
            let (m_before, m_after) = (check_state(&before, writers, "before"), check_state(&after, writers, "after"));
            for t in 0..writers {
                assert!(m_before[t] <= m[t] && m[t] <= m_after[t], "iterator state is not between the snapshots around its creation");
            }
            if before == after {
                assert_eq!(got, before, "nothing committed around the iterator's creation: it reads that state");
            }
            raise(seen, &m);
        }
        _ => {
            // Monotonic reads: a write once seen stays visible to later plain gets.
            for (t, &m) in seen.iter().enumerate().filter(|(_, &m)| m > 0) {
                let record = db.get(&key('w', t, m - 1)).expect("get").expect("a write seen earlier is still visible");
                assert_eq!(record.content(), content(t, m - 1));
                let counter = db.get(&counter_key(t)).expect("get").expect("counter seen earlier");
                let (_, _, step) = parse_checked(&Entry::of(&counter));
                assert!(step + 1 >= m, "counter went back from {} to {step}", m - 1);
            }
            let prefix = collect(db.prefix(b"w0/"));
            assert_strictly_ordered(&prefix, false, "prefix w0/");
            assert!(prefix.len() >= seen[0], "prefix scan lost writes seen earlier");
        }
    }
}

fn raise(seen: &mut [usize], m: &[usize]) {
    for (s, &m) in seen.iter_mut().zip(m) {
        *s = (*s).max(m);
    }
}

/// Runs the ordered-writers workload with readers, a sealer and a held snapshot, then
/// checks the final state, seqs, and the state after reopen.
fn run_ordered_writers(plan: Plan) {
    assert!(plan.steps >= 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), options(&plan)).expect("open"));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(plan.writers + plan.readers + 1));
    let (halfway_tx, halfway_rx) = mpsc::channel::<()>();

    let writers: Vec<_> = (0..plan.writers)
        .map(|t| {
            let (db, start, halfway) = (db.clone(), start.clone(), halfway_tx.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..plan.steps {
                    write_step(&db, t, i);
                    if t == 0 && i == plan.steps / 2 {
                        halfway.send(()).expect("main thread listens");
                    }
                }
            })
        })
        .collect();
    drop(halfway_tx);
    let readers: Vec<_> = (0..plan.readers)
        .map(|r| {
            let (db, start, done) = (db.clone(), start.clone(), done.clone());
            thread::spawn(move || {
                start.wait();
                let mut seen = vec![0usize; plan.writers];
                let mut rounds = 0usize;
                loop {
                    reader_round(&db, &plan, rounds + r, &mut seen);
                    rounds += 1;
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
                rounds
            })
        })
        .collect();
    let sealer = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut seals = 0usize;
            loop {
                db.seal().expect("seal during writes");
                seals += 1;
                if done.load(Ordering::Acquire) {
                    break;
                }
            }
            seals
        })
    };

    start.wait();
    halfway_rx.recv().expect("writer 0 reaches halfway");
    let held = db.snapshot();
    let held_entries = collect(held.iter());
    check_state(&held_entries, plan.writers, "held snapshot");

    for writer in writers {
        writer.join().expect("writer thread");
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        assert!(reader.join().expect("reader thread") > 0, "every reader ran");
    }
    assert!(sealer.join().expect("sealer thread") > 0, "the sealer ran");

    assert_eq!(collect(held.iter()), held_entries, "a snapshot held across writes and seals keeps its state");
    for entry in &held_entries {
        assert_eq!(held.get(&entry.key).expect("get").as_ref().map(Entry::of).as_ref(), Some(entry));
    }
    assert!(held.get(&key('w', 0, plan.steps - 1)).expect("get").is_none(), "the held snapshot does not see later writes");
    drop(held);

    let final_entries = collect(db.iter());
    assert_eq!(without_seq(&final_entries), expected_final(&plan), "every acknowledged write, exactly");
    check_seq_order(&final_entries, &plan);
    db.verify().expect("verify after concurrent writes");
    let db = Arc::into_inner(db).expect("all threads joined");
    db.close().expect("close");
    drop(db);

    let db = Db::open(dir.path(), options(&plan)).expect("reopen");
    assert_eq!(collect(db.iter()), final_entries, "the same records and seqs after reopen");
    db.close().expect("close");
}

/// Per writer, commits are sequential: batch i < single put i < batch i+1 in seq.
fn check_seq_order(entries: &[Entry], plan: &Plan) {
    let seq_of = |k: &[u8]| entries.iter().find(|e| e.key == k).map(|e| e.seq).expect("key present");
    for t in 0..plan.writers {
        let mut previous = 0u64;
        for i in 0..plan.steps {
            let (batch, single) = (seq_of(&key('w', t, i)), seq_of(&key('s', t, i)));
            assert!(previous < batch && batch < single, "writer {t} step {i}: seqs {previous} < {batch} < {single} do not grow");
            previous = single;
        }
        let last = plan.steps - 1;
        let counter = seq_of(&counter_key(t));
        assert!(counter > seq_of(&key('s', t, last - 1)) && counter < seq_of(&key('s', t, last)), "counter seq is its batch's");
    }
}

#[test]
fn sync_writers_with_readers_see_consistent_states_and_keep_every_acknowledged_write() {
    // Durability::Sync with several writers: group commit shares fsyncs between them.
    run_ordered_writers(Plan { writers: 4, steps: 40, readers: 2, durability: Durability::Sync, segment_bytes_max: 8 * 1024 });
}

#[test]
fn buffered_writers_with_readers_and_seals_see_consistent_states_and_keep_every_write() {
    run_ordered_writers(Plan { writers: 6, steps: 300, readers: 3, durability: Durability::None, segment_bytes_max: 4096 });
}

// ---- the overwriting-batches workload ------------------------------------------------
//
// Every writer commits batches over the same GROUP keys: either all of them set to one tag
// `{writer}:{n}` or all of them deleted. Any consistent state therefore has all GROUP keys
// with one tag, or none of them. Old versions are superseded constantly, so this also
// checks that pruning keeps exactly what held snapshots still read.

const GROUP: usize = 16;

fn group_key(k: usize) -> Vec<u8> {
    format!("g/{k:02}").into_bytes()
}

fn tagged_content(t: usize, n: usize, k: usize) -> Vec<u8> {
    let mut bytes = format!("{t}:{n}:").into_bytes();
    bytes.resize(8 + (n * 13 + k * 29) % 180, b'a' + (k as u8));
    bytes
}

fn is_delete_round(n: usize) -> bool {
    n % 7 == 5
}

/// Checks a state is whole; returns its tag (writer, n), or `None` when the group is absent.
fn check_whole(entries: &[Entry], context: &str) -> Option<(usize, usize)> {
    if entries.is_empty() {
        return None;
    }
    assert_eq!(entries.len(), GROUP, "{context}: a batch seen in part: {:?}", entries.iter().map(|e| &e.key).collect::<Vec<_>>());
    let tag = |e: &Entry| -> (usize, usize) {
        let text = String::from_utf8_lossy(&e.content);
        let mut parts = text.splitn(3, ':');
        (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
    };
    let (t, n) = tag(&entries[0]);
    for (k, entry) in entries.iter().enumerate() {
        assert_eq!(entry.key, group_key(k), "{context}: keys");
        assert_eq!(entry.content, tagged_content(t, n, k), "{context}: key {k} is from another batch than key 0");
    }
    Some((t, n))
}

#[test]
fn overwriting_batches_are_seen_whole_and_held_snapshots_keep_their_state() {
    let (writers, steps, readers) = (3usize, 150usize, 2usize);
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || Db::open(dir.path(), Options::new().durability(Durability::None).segment_bytes_max(4096));
    let db = Arc::new(open().expect("open"));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(writers + readers));

    let writer_threads: Vec<_> = (0..writers)
        .map(|t| {
            let (db, start) = (db.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for n in 0..steps {
                    let mut batch = Batch::new();
                    for k in 0..GROUP {
                        if is_delete_round(n) {
                            batch.delete(&group_key(k));
                        } else {
                            batch.put(&group_key(k), &tagged_content(t, n, k), None);
                        }
                    }
                    db.write(batch).expect("batch");
                    if n % 40 == 39 {
                        db.seal().expect("seal");
                    }
                }
            })
        })
        .collect();
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (db, start, done) = (db.clone(), start.clone(), done.clone());
            thread::spawn(move || {
                start.wait();
                let mut held: VecDeque<(strata::Snapshot, Vec<Entry>)> = VecDeque::new();
                let mut rounds = 0usize;
                loop {
                    let snapshot = db.snapshot();
                    let entries = collect(snapshot.iter());
                    check_whole(&entries, "fresh snapshot");
                    held.push_back((snapshot, entries));
                    let plain = collect(db.iter().rev());
                    assert_strictly_ordered(&plain, true, "db.iter().rev()");
                    check_whole(&plain.into_iter().rev().collect::<Vec<_>>(), "db.iter().rev()");
                    let (old, old_entries) = &held[rounds % held.len()];
                    assert_eq!(&collect(old.iter()), old_entries, "a held snapshot changed under writes");
                    let first = old.get(&group_key(0)).expect("get").map(|r| Entry::of(&r));
                    assert_eq!(first.as_ref(), old_entries.first(), "held snapshot get");
                    if held.len() > 4 {
                        held.pop_front();
                    }
                    rounds += 1;
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
                for (snapshot, entries) in &held {
                    assert_eq!(&collect(snapshot.iter()), entries, "held snapshot at the end");
                }
                rounds
            })
        })
        .collect();

    for writer in writer_threads {
        writer.join().expect("writer");
    }
    done.store(true, Ordering::Release);
    for reader in reader_threads {
        assert!(reader.join().expect("reader") > 0, "every reader ran");
    }
    assert!(!is_delete_round(steps - 1));
    let final_entries = collect(db.iter());
    let (_, n) = check_whole(&final_entries, "final").expect("the last batches put the group");
    assert_eq!(n, steps - 1, "the final state is some writer's last batch");
    let db = Arc::into_inner(db).expect("threads joined");
    db.close().expect("close");
    drop(db);
    let db = open().expect("reopen");
    assert_eq!(collect(db.iter()), final_entries, "the same after reopen");
    db.close().expect("close");
}
