//! Goal: readers never see a torn, stale or invented state while compaction moves data
//! from the warm to the cold tier underneath them, and nothing is lost by it.
//!
//! Method: writers own disjoint key groups; each write is one batch over a whole group,
//! putting every key of it at a new generation (content and embedding derived from group,
//! generation and key) or deleting the whole group. So in every consistent state a group
//! is wholly absent or wholly present at one generation, and generations only grow. A
//! compactor thread loops seal + compact (tiny log and cold segments: many files, many
//! retirements) while the writers write; reader threads check the invariant on every
//! snapshot, forward and backward iteration, prefix scan and vector search, check every `get` returns a
//! value written for that key and never an older one than it saw before, re-read held
//! snapshots after compactions (they must not change), and walk iterators created before
//! a compaction and consumed after it. Every loop is bounded by counts, not time. At the
//! end the database equals the writers' model, also after a final compaction and reopen.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use common::{bits, collect, Entry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Batch, Db, Durability, Metric, Options, Search};

const DIM: usize = 4;
const WRITERS: usize = 2;
const GROUPS_PER_WRITER: usize = 12;
const KEYS_PER_GROUP: usize = 5;
const STEPS_PER_WRITER: u64 = 300;
const COMPACTIONS_MIN: u64 = 25;
const READERS: usize = 3;
const READER_ROUNDS_MIN: u64 = 20;

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::None).segment_bytes_max(8 << 10).cold_segment_bytes_max(4096)
}

fn group_prefix(group: usize) -> Vec<u8> {
    format!("g{group:03}/").into_bytes()
}

fn key(group: usize, i: usize) -> Vec<u8> {
    format!("g{group:03}/k{i}").into_bytes()
}

/// Content of key `i` of `group` at generation `generation`: the three numbers, then filler
/// whose length and bytes depend on them.
fn content(group: usize, generation: u64, i: usize) -> Vec<u8> {
    let mut bytes = format!("{group}:{generation}:{i}:").into_bytes();
    let len = (generation as usize * 37 + i * 11 + group) % 180;
    bytes.extend((0..len).map(|n| (n as u8).wrapping_mul(29) ^ (generation as u8) ^ (i as u8)));
    bytes
}

fn embedding(group: usize, generation: u64, i: usize) -> Option<[f32; DIM]> {
    (i % 3 != 2).then(|| [group as f32, generation as f32, -(i as f32), 0.5 / (generation as f32 + 1.0)])
}

/// Parses a record of the workload and checks its bytes: returns (group, generation, i).
fn parse_checked(entry: &Entry, context: &str) -> (usize, u64, usize) {
    let text = std::str::from_utf8(&entry.key).unwrap_or_else(|_| panic!("{context}: non-utf-8 key {:?}", entry.key));
    let (g, k) = text.strip_prefix('g').and_then(|t| t.split_once("/k")).unwrap_or_else(|| panic!("{context}: key {text}"));
    let (group, i): (usize, usize) = (g.parse().expect("group"), k.parse().expect("key index"));
    let head = String::from_utf8_lossy(&entry.content[..entry.content.len().min(24)]).into_owned();
    let mut parts = head.splitn(4, ':');
    let (cg, generation, ci) = (parts.next(), parts.next(), parts.next());
    let generation: u64 = generation.and_then(|g| g.parse().ok()).unwrap_or_else(|| panic!("{context}: {text}: content {head:?}"));
    assert_eq!(cg.and_then(|c| c.parse::<usize>().ok()), Some(group), "{context}: {text}: content of another group: {head:?}");
    assert_eq!(ci.and_then(|c| c.parse::<usize>().ok()), Some(i), "{context}: {text}: content of another key: {head:?}");
    assert_eq!(entry.content, content(group, generation, i), "{context}: {text}: content bytes at generation {generation}");
    assert_eq!(entry.embedding_bits, embedding(group, generation, i).map(|e| bits(&e)), "{context}: {text}: embedding");
    (group, generation, i)
}

/// Checks a whole state (entries in key order): every group wholly present at one
/// generation or wholly absent; returns each present group's generation.
fn check_state(entries: &[Entry], context: &str) -> BTreeMap<usize, u64> {
    for pair in entries.windows(2) {
        assert!(pair[0].key < pair[1].key, "{context}: keys not strictly ascending: {:?} then {:?}", pair[0].key, pair[1].key);
    }
    let mut groups: BTreeMap<usize, (u64, Vec<usize>, u64)> = BTreeMap::new();
    for entry in entries {
        let (group, generation, i) = parse_checked(entry, context);
        let slot = groups.entry(group).or_insert((generation, Vec::new(), entry.seq));
        assert_eq!(slot.0, generation, "{context}: group {group} mixes generations {} and {generation}", slot.0);
        assert_eq!(slot.2, entry.seq, "{context}: group {group}: one batch, one seq");
        slot.1.push(i);
    }
    groups
        .into_iter()
        .map(|(group, (generation, keys, _))| {
            assert_eq!(keys, (0..KEYS_PER_GROUP).collect::<Vec<_>>(), "{context}: group {group} is torn at generation {generation}");
            (group, generation)
        })
        .collect()
}

/// Generations only grow: what a thread sees present is never older than what it saw
/// before, and a group that is never deleted never disappears.
fn check_monotonic(seen: &mut BTreeMap<usize, u64>, state: &BTreeMap<usize, u64>, context: &str) {
    for (&group, &generation) in seen.iter() {
        assert!(
            deletable(group) || state.contains_key(&group),
            "{context}: group {group}, never deleted, was at generation {generation} and is now missing"
        );
    }
    for (&group, &generation) in state {
        let last = seen.entry(group).or_insert(generation);
        assert!(generation >= *last, "{context}: group {group} went back from generation {last} to {generation}");
        *last = generation;
    }
}

/// Groups with an even number are sometimes deleted; the others never are, so once a
/// reader saw one it must see it in every later state.
fn deletable(group: usize) -> bool {
    group.is_multiple_of(2)
}

/// One writer step: the group it writes, and whether it deletes the group.
fn writer_step(rng: &mut StdRng, writer: usize) -> (usize, bool) {
    let group = writer * GROUPS_PER_WRITER + rng.gen_range(0..GROUPS_PER_WRITER);
    (group, deletable(group) && rng.gen_bool(0.25))
}

/// Who moves data to the cold tier while the writers and readers run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compactor {
    /// A thread looping `seal` + `compact`.
    Explicit,
    /// Background maintenance with tiny thresholds, so that it runs all the time; the
    /// compactor thread only watches (`Stats::compactions`) and checks the cold tier.
    Background,
}

/// Background runs the test wants to have seen before it ends.
const BACKGROUND_COMPACTIONS_MIN: u64 = 5;

fn background_options() -> Options {
    options().compaction_warm_bytes(16 << 10).compaction_interval_min(std::time::Duration::ZERO).write_stall_bytes(1 << 20, 4 << 20)
}

#[test]
fn readers_see_whole_groups_and_no_stale_values_while_compaction_runs() {
    readers_see_whole_groups_and_no_stale_values(Compactor::Explicit);
}

#[test]
fn readers_see_whole_groups_and_no_stale_values_while_background_maintenance_runs() {
    readers_see_whole_groups_and_no_stale_values(Compactor::Background);
}

fn readers_see_whole_groups_and_no_stale_values(mode: Compactor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_options = if mode == Compactor::Background { background_options() } else { options() };
    let db = Arc::new(Db::open(dir.path(), db_options.clone()).expect("open"));
    let writers_left = Arc::new(AtomicU64::new(WRITERS as u64));
    let all_done = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicU64::new(0));
    // The newest generation handed out per group (readers check gets against it).
    let generations: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS * GROUPS_PER_WRITER).map(|_| AtomicU64::new(0)).collect());

    let mut handles = Vec::new();
    for writer in 0..WRITERS {
        let (db, writers_left, generations) = (db.clone(), writers_left.clone(), generations.clone());
        handles.push(thread::spawn(move || -> BTreeMap<usize, Option<u64>> {
            let mut rng = StdRng::seed_from_u64(1000 + writer as u64);
            let mut model = BTreeMap::new();
            for _ in 0..STEPS_PER_WRITER {
                let (group, delete) = writer_step(&mut rng, writer);
                // Announced before the write, so a reader never sees a generation above it.
                let generation = generations[group].fetch_add(1, Ordering::SeqCst) + 1;
                let mut batch = Batch::new();
                for i in 0..KEYS_PER_GROUP {
                    if delete {
                        batch.delete(&key(group, i));
                    } else {
                        let e = embedding(group, generation, i);
                        batch.put(&key(group, i), &content(group, generation, i), e.as_ref().map(|e| &e[..]));
                    }
                }
                db.write(batch).expect("batch write");
                model.insert(group, (!delete).then_some(generation));
            }
            writers_left.fetch_sub(1, Ordering::SeqCst);
            model
        }));
    }

    let compactor = {
        let (db, writers_left, compactions) = (db.clone(), writers_left.clone(), compactions.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let writing = writers_left.load(Ordering::SeqCst) > 0;
                match mode {
                    Compactor::Explicit if !writing && n >= COMPACTIONS_MIN => break,
                    Compactor::Explicit => {
                        db.seal().expect("seal");
                        db.compact().unwrap_or_else(|e| panic!("compaction {n}: {e}"));
                        n += 1;
                    }
                    Compactor::Background => {
                        if !writing {
                            db.wait_for_compaction().expect("background maintenance");
                        }
                        let stats = db.stats();
                        assert_eq!(stats.last_background_error, None, "background maintenance failed");
                        if !writing && stats.compactions == n {
                            break;
                        }
                        n = stats.compactions;
                        thread::yield_now();
                    }
                }
                compactions.store(n, Ordering::SeqCst);
                // The cold tier itself: disjoint sorted keys, each row a written value.
                let mut previous: Option<Vec<u8>> = None;
                for segment in db.cold_segments() {
                    let c = segment.columns();
                    for r in 0..segment.rows() {
                        let entry = Entry {
                            key: c.keys.value(r).to_vec(),
                            content: c.content.value(r).to_vec(),
                            embedding_bits: c.embedding(r).map(bits),
                            seq: c.seqs[r],
                        };
                        let context = format!("compaction {n}: cold segment {} row {r}", segment.id());
                        parse_checked(&entry, &context);
                        assert!(previous.as_ref().is_none_or(|p| *p < entry.key), "{context}: cold keys overlap or go back");
                        previous = Some(entry.key);
                    }
                }
            }
            n
        })
    };

    let mut readers = Vec::new();
    for reader in 0..READERS {
        let (db, all_done, compactions, generations) = (db.clone(), all_done.clone(), compactions.clone(), generations.clone());
        readers.push(thread::spawn(move || -> u64 {
            let mut rng = StdRng::seed_from_u64(2000 + reader as u64);
            let mut seen_states: BTreeMap<usize, u64> = BTreeMap::new();
            let mut seen_gets: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            // A snapshot held across compactions, with what it read when taken.
            let mut held = db.snapshot();
            let mut held_state = collect(held.iter());
            let mut held_at = compactions.load(Ordering::SeqCst);
            let mut rounds = 0u64;
            while !all_done.load(Ordering::SeqCst) || rounds < READER_ROUNDS_MIN {
                let context = format!("reader {reader} round {rounds}");
                match rounds % 6 {
                    0 => {
                        let snapshot = db.snapshot();
                        let state = collect(snapshot.iter());
                        check_monotonic(&mut seen_states, &check_state(&state, &context), &context);
                        // The snapshot's gets agree with its iteration.
                        for _ in 0..10 {
                            let group = rng.gen_range(0..WRITERS * GROUPS_PER_WRITER);
                            let k = key(group, rng.gen_range(0..KEYS_PER_GROUP));
                            let got = snapshot.get(&k).expect("snapshot get").map(|r| Entry::of(&r));
                            assert_eq!(got.as_ref(), state.iter().find(|e| e.key == k), "{context}: snapshot get vs its iter");
                        }
                    }
                    1 => {
                        let mut state = collect(db.iter().rev());
                        state.reverse();
                        check_monotonic(&mut seen_states, &check_state(&state, &format!("{context} (rev)")), &context);
                    }
                    2 => {
                        // Created now, consumed after (most likely) a compaction or more.
                        let mut iter = db.iter();
                        let mut state: Vec<Entry> = (&mut iter).take(7).map(|r| Entry::of(&r.expect("item"))).collect();
                        let until = compactions.load(Ordering::SeqCst) + 1;
                        for _ in 0..200 {
                            if compactions.load(Ordering::SeqCst) >= until || all_done.load(Ordering::SeqCst) {
                                break;
                            }
                            let group = rng.gen_range(0..WRITERS * GROUPS_PER_WRITER);
                            let _ = db.get(&key(group, 0)).expect("get");
                        }
                        state.extend(collect(iter));
                        check_monotonic(&mut seen_states, &check_state(&state, &format!("{context} (slow iter)")), &context);
                    }
                    3 => {
                        for _ in 0..6 {
                            let group = rng.gen_range(0..WRITERS * GROUPS_PER_WRITER);
                            let state = collect(db.prefix(&group_prefix(group)));
                            let groups = check_state(&state, &format!("{context} (prefix {group})"));
                            assert!(groups.keys().all(|&g| g == group), "{context}: prefix {group} yielded another group");
                        }
                    }
                    4 => {
                        // Search, pinned and unpinned. Dot with [0, 1, 0, 0] scores every
                        // embedding exactly its generation: a snapshot's search must equal
                        // brute force over its own iteration, and any search must see whole
                        // groups (the keys with an embedding) at one generation, never older
                        // than seen — no shadowed, deleted or half-compacted version.
                        let query = [0.0, 1.0, 0.0, 0.0];
                        let search = Search::new(&query).k(WRITERS * GROUPS_PER_WRITER * KEYS_PER_GROUP).metric(Metric::Dot);
                        let snapshot = db.snapshot();
                        let state = collect(snapshot.iter());
                        let mut want: Vec<(Vec<u8>, f32)> = state
                            .iter()
                            .filter(|e| e.embedding_bits.is_some())
                            .map(|e| (e.key.clone(), parse_checked(e, &context).1 as f32))
                            .collect();
                        want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                        let got: Vec<(Vec<u8>, f32)> =
                            snapshot.search(&search).expect("snapshot search").into_iter().map(|h| (h.key, h.score)).collect();
                        assert_eq!(got, want, "{context}: a snapshot's search vs its iteration");
                        let mut groups: BTreeMap<usize, (u64, Vec<usize>)> = BTreeMap::new();
                        for hit in db.search(&search).unwrap_or_else(|e| panic!("{context}: search: {e}")) {
                            let text = String::from_utf8(hit.key).expect("utf-8 key");
                            let (g, k) = text.strip_prefix('g').and_then(|t| t.split_once("/k")).expect("workload key");
                            let (group, i): (usize, usize) = (g.parse().expect("group"), k.parse().expect("index"));
                            let slot = groups.entry(group).or_insert((hit.score as u64, Vec::new()));
                            assert_eq!(slot.0 as f32, hit.score, "{context}: search: group {group} mixes generations");
                            slot.1.push(i);
                        }
                        let with_embedding: Vec<usize> = (0..KEYS_PER_GROUP).filter(|&i| embedding(0, 1, i).is_some()).collect();
                        for (group, (generation, mut keys)) in groups.clone() {
                            keys.sort_unstable();
                            assert_eq!(keys, with_embedding, "{context}: search: group {group} torn at generation {generation}");
                            assert!(
                                generation <= generations[group].load(Ordering::SeqCst),
                                "{context}: search: a generation never written"
                            );
                        }
                        let state: BTreeMap<usize, u64> = groups.into_iter().map(|(g, (generation, _))| (g, generation)).collect();
                        check_monotonic(&mut seen_states, &state, &format!("{context} (search)"));
                    }
                    _ => {
                        // Held snapshot: unchanged by every write and compaction since.
                        assert_eq!(collect(held.iter()), held_state, "{context}: a held snapshot changed");
                        if compactions.load(Ordering::SeqCst) > held_at + 2 {
                            held = db.snapshot();
                            held_state = collect(held.iter());
                            held_at = compactions.load(Ordering::SeqCst);
                            check_monotonic(&mut seen_states, &check_state(&held_state, &context), &context);
                        }
                    }
                }
                // Gets, unpinned: a value written for that key, never older than seen before.
                for _ in 0..40 {
                    let group = rng.gen_range(0..WRITERS * GROUPS_PER_WRITER);
                    let k = key(group, rng.gen_range(0..KEYS_PER_GROUP));
                    let found = db.get(&k).unwrap_or_else(|e| panic!("{context}: get: {e}"));
                    assert!(
                        found.is_some() || deletable(group) || !seen_gets.contains_key(&k),
                        "{context}: get of {k:?} (never deleted) found nothing after it was seen"
                    );
                    if let Some(record) = found {
                        let entry = Entry::of(&record);
                        assert_eq!(entry.key, k, "{context}: get returned another key");
                        let (_, generation, _) = parse_checked(&entry, &context);
                        assert!(generation <= generations[group].load(Ordering::SeqCst), "{context}: a generation never written");
                        let last = seen_gets.entry(k.clone()).or_insert(generation);
                        assert!(generation >= *last, "{context}: get of {k:?} went back from generation {last} to {generation}");
                        *last = generation;
                    }
                }
                rounds += 1;
            }
            assert_eq!(collect(held.iter()), held_state, "reader {reader}: the last held snapshot changed");
            rounds
        }));
    }

    let mut model: BTreeMap<usize, Option<u64>> = BTreeMap::new();
    for handle in handles {
        model.extend(handle.join().expect("writer"));
    }
    let compactions_done = compactor.join().expect("compactor");
    all_done.store(true, Ordering::SeqCst);
    let rounds: Vec<u64> = readers.into_iter().map(|r| r.join().expect("reader")).collect();
    eprintln!("{compactions_done} compactions; reader rounds {rounds:?}");
    if mode == Compactor::Background {
        assert!(compactions_done >= BACKGROUND_COMPACTIONS_MIN, "background maintenance ran {compactions_done} times");
        let stats = db.stats();
        assert!(stats.pending_compaction_bytes < 16 << 10, "idle maintenance leaves the warm tier under its watermark: {stats:?}");
        assert!(stats.cold.records > 0 && stats.bytes_compacted > 0, "{stats:?}");
    }

    let expected: Vec<Entry> = model
        .iter()
        .filter_map(|(&group, generation)| generation.map(|g| (group, g)))
        .flat_map(|(group, generation)| {
            (0..KEYS_PER_GROUP).map(move |i| Entry {
                key: key(group, i),
                content: content(group, generation, i),
                embedding_bits: embedding(group, generation, i).map(|e| bits(&e)),
                seq: 0,
            })
        })
        .collect();
    let without_seq = |entries: Vec<Entry>| -> Vec<Entry> { entries.into_iter().map(|e| Entry { seq: 0, ..e }).collect() };
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(without_seq(collect(db.iter())), sorted, "the final state is the writers' model");
    db.seal().expect("seal");
    db.compact().expect("final compact");
    assert_eq!(without_seq(collect(db.iter())), sorted, "after the final compaction");
    assert_eq!(db.cold_segments().iter().map(|s| s.rows()).sum::<usize>(), sorted.len(), "all of it cold, one row per key");
    db.verify().expect("verify");
    let before_reopen = collect(db.iter());
    drop(db);
    let db = Db::open(dir.path(), db_options).expect("reopen");
    assert_eq!(collect(db.iter()), before_reopen, "after reopen, seqs included");
    assert_eq!(db.stats().orphans_removed, 0, "the clean close left no orphan");
    db.verify().expect("verify after reopen");
}

/// The read path the test above leans on, alone (no compaction needed): an unpinned `get`
/// racing with a writer that overwrites one key, while an old snapshot keeps the key's
/// first version in the index, must never return a version older than one it already
/// returned (in particular not the one kept for the snapshot).
#[test]
fn get_never_goes_back_to_a_version_kept_for_an_old_snapshot() {
    const VERSIONS: u64 = 3_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), Options::new().durability(Durability::None)).expect("open"));
    db.put(b"k", b"0", None).expect("put");
    let old = db.snapshot();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            for version in 1..=VERSIONS {
                db.put(b"k", version.to_string().as_bytes(), None).expect("put");
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut last = 0u64;
    let mut gets = 0u64;
    while !done.load(Ordering::SeqCst) {
        let record = db.get(b"k").expect("get").expect("the key is never deleted");
        let version: u64 = std::str::from_utf8(record.content()).expect("utf-8").parse().expect("a version number");
        assert!(version >= last, "get {gets}: version {version} after version {last}");
        last = version;
        gets += 1;
    }
    writer.join().expect("writer");
    assert_eq!(old.get(b"k").expect("get").map(|r| r.content().to_vec()), Some(b"0".to_vec()), "the old snapshot");
    assert_eq!(db.get(b"k").expect("get").map(|r| r.content().to_vec()), Some(VERSIONS.to_string().into_bytes()));
}
