//! The `api_sequence` target: the input is decoded into at most `OPS_MAX` operations on a
//! database (puts, TTL puts, deletes, batches, invalid writes, gets, scans, snapshots,
//! seal, compact, checkpoint, close + reopen, read-only reopen, vector search, clock
//! moves), applied to a `Db` and to a `BTreeMap` model. After every operation every read
//! is compared with the model: key, content, embedding bits, seq, order. A mismatch, an
//! `Err` from a valid call or a panic is a crash. The coverage-guided cousin of
//! `tests/model_proptest.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::{Batch, Db, Durability, Error, Metric, Options, Record, Search, Snapshot, Tier};

use super::{bits, fuzz_dir, Entry, DIM};

/// Operations decoded per input, at most: keeps each input's work small.
const OPS_MAX: usize = 64;
/// Snapshots held at once; the oldest is dropped first.
const SNAPSHOTS_MAX: usize = 3;
/// An even start (as `TestClock::START_MS`): even clock steps and odd TTLs never land
/// exactly on an expiry instant.
const START_MS: u64 = 1_700_000_000_000;

/// A small key space: keys collide often, sort next to each other, use 0x00 and 0xFF.
const KEYS: &[&[u8]] = &[b"\x00", b"\x00\xff", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"b/1", b"b/2", b"\xff", b"\xff\x00", b"\xff\xff"];
const PREFIXES: &[&[u8]] = &[b"", b"\x00", b"a", b"a\xff", b"b", b"b/", b"\xff", b"\xff\xff", b"z"];

/// The fuzz input, read a byte at a time; past its end every byte reads 0.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn key(&mut self) -> Vec<u8> {
        KEYS[usize::from(self.byte()) % KEYS.len()].to_vec()
    }

    fn prefix(&mut self) -> Vec<u8> {
        PREFIXES[usize::from(self.byte()) % PREFIXES.len()].to_vec()
    }

    /// Short contents come from the input; long ones (up to 4 KiB) are a pattern.
    fn content(&mut self) -> Vec<u8> {
        let n = self.byte();
        if n < 128 {
            (0..n).map(|_| self.byte()).collect()
        } else {
            let seed = self.byte();
            (0..usize::from(n - 127) * 32).map(|i| seed.wrapping_add(i as u8)).collect()
        }
    }

    /// Mostly small multiples of 0.25 (dot products and norms are exact in f32), sometimes
    /// the awkward values (-0.0, subnormals, extremes).
    fn component(&mut self) -> f32 {
        let b = self.byte();
        const ODD: [f32; 8] = [-0.0, f32::MIN_POSITIVE, 1.0e-45, f32::MAX, f32::MIN, 1.0e30, -3.3e-7, 0.1];
        match b {
            0..=239 => f32::from(b % 33) * 0.25 - 4.0,
            _ => ODD[usize::from(b - 240) % ODD.len()],
        }
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.component()).collect()
    }

    fn embedding(&mut self) -> Option<Vec<f32>> {
        (!self.byte().is_multiple_of(4)).then(|| self.vector())
    }

    /// Odd milliseconds: never exactly on an (even) clock instant.
    fn ttl_ms(&mut self) -> u64 {
        2 * u64::from(self.byte() % 32) + 1
    }
}

/// A stored version as the model knows it.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    content: Vec<u8>,
    embedding: Option<Vec<f32>>,
    expires_at_ms: Option<u64>,
    seq: u64,
}

fn collect(iter: impl Iterator<Item = strata::Result<Record>>) -> Vec<Entry> {
    iter.map(|r| Entry::of(&r.expect("iterator item"))).collect()
}

/// One write of a commit: `None` deletes, `Some((content, embedding, ttl_ms))` puts.
type Effect = (Vec<u8>, Option<(Vec<u8>, Option<Vec<f32>>, Option<u64>)>);

/// Which reader a read goes to.
#[derive(Clone, Copy, Debug)]
enum Reader {
    Db,
    Snapshot(usize),
}

struct Held {
    snapshot: Snapshot,
    /// The live records when it was taken: what it shows forever.
    expected: Vec<Entry>,
}

struct Run {
    dir: PathBuf,
    clock: Arc<AtomicU64>,
    durability: Durability,
    segment_bytes_max: u64,
    cold_segment_bytes_max: u64,
    metric: Metric,
    db: Option<Db>,
    model: BTreeMap<Vec<u8>, Stored>,
    seq_floor: u64,
    snapshots: Vec<Held>,
    checkpoints: u32,
}

impl Run {
    fn options(&self) -> Options {
        let clock = self.clock.clone();
        Options::new()
            .embedding_dim(DIM)
            .metric(self.metric)
            .durability(self.durability)
            .segment_bytes_max(self.segment_bytes_max)
            .cold_segment_bytes_max(self.cold_segment_bytes_max)
            .threads(1)
            // No background maintenance: an input must replay the same way every time, and the
            // tier checks compare separate reads (a background run between them moves records).
            .auto_compact(false)
            .clock(move || clock.load(Ordering::SeqCst))
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("db is open")
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn live(&self) -> Vec<Entry> {
        let now = self.now();
        self.model
            .iter()
            .filter(|(_, s)| s.expires_at_ms.is_none_or(|at| at > now))
            .map(|(k, s)| Entry {
                key: k.clone(),
                content: s.content.clone(),
                embedding_bits: s.embedding.as_deref().map(bits),
                seq: s.seq,
            })
            .collect()
    }

    /// Applies one commit's effects (the later write to a key wins), then learns the seq
    /// of every record it put: above every earlier commit's, and read back exactly.
    fn after_commit(&mut self, effects: Vec<Effect>) {
        let now = self.now();
        let mut last: BTreeMap<Vec<u8>, Option<Stored>> = BTreeMap::new();
        for (key, effect) in effects {
            let stored = effect.map(|(content, embedding, ttl)| Stored { content, embedding, expires_at_ms: ttl.map(|t| now + t), seq: 0 });
            last.insert(key, stored);
        }
        let mut seq_max = self.seq_floor;
        for (key, stored) in last {
            match stored {
                None => {
                    self.model.remove(&key);
                }
                Some(mut stored) => {
                    let record = self.db().get(&key).expect("get after write").expect("a record just written is live");
                    assert!(record.seq() > self.seq_floor, "seq {} of a new commit is not above {}", record.seq(), self.seq_floor);
                    seq_max = seq_max.max(record.seq());
                    stored.seq = record.seq();
                    let want = Entry {
                        key: key.clone(),
                        content: stored.content.clone(),
                        embedding_bits: stored.embedding.as_deref().map(bits),
                        seq: stored.seq,
                    };
                    assert_eq!(Entry::of(&record), want, "a record read back right after its write");
                    self.model.insert(key, stored);
                }
            }
        }
        self.seq_floor = seq_max;
    }

    /// Every read of the database against the model: iteration both ways, a get of every
    /// key of the key space.
    fn check(&self) {
        let want = self.live();
        assert_eq!(collect(self.db().iter()), want, "iter");
        let mut rev = collect(self.db().iter().rev());
        rev.reverse();
        assert_eq!(rev, want, "iter().rev()");
        for key in KEYS {
            let got = self.db().get(key).expect("get").map(|r| Entry::of(&r));
            assert_eq!(got.as_ref(), want.iter().find(|e| e.key == *key), "get {key:?}");
        }
    }

    fn check_db(&self, db: &Db, what: &str) {
        let want = self.live();
        assert_eq!(collect(db.iter()), want, "{what}: iter");
        for key in KEYS {
            let got = db.get(key).expect("get").map(|r| Entry::of(&r));
            assert_eq!(got.as_ref(), want.iter().find(|e| e.key == *key), "{what}: get {key:?}");
        }
        db.verify().unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    }

    fn check_snapshots(&self) {
        for (n, held) in self.snapshots.iter().enumerate() {
            assert_eq!(collect(held.snapshot.iter()), held.expected, "snapshot {n} iter");
            for key in KEYS {
                let got = held.snapshot.get(key).expect("snapshot get").map(|r| Entry::of(&r));
                assert_eq!(got.as_ref(), held.expected.iter().find(|e| e.key == *key), "snapshot {n} get {key:?}");
            }
        }
    }

    fn expected(&self, reader: Reader) -> (Vec<Entry>, Option<&Snapshot>) {
        match reader {
            Reader::Snapshot(n) if !self.snapshots.is_empty() => {
                let held = &self.snapshots[n % self.snapshots.len()];
                (held.expected.clone(), Some(&held.snapshot))
            }
            _ => (self.live(), None),
        }
    }

    fn check_prefix(&self, reader: Reader, prefix: &[u8], rev: bool) {
        let (expected, snapshot) = self.expected(reader);
        let mut want: Vec<Entry> = expected.into_iter().filter(|e| e.key.starts_with(prefix)).collect();
        let iter = match snapshot {
            Some(s) => s.prefix(prefix),
            None => self.db().prefix(prefix),
        };
        let got = if rev { collect(iter.rev()) } else { collect(iter) };
        if rev {
            want.reverse();
        }
        assert_eq!(got, want, "{reader:?} prefix {prefix:?} rev {rev}");
    }

    fn check_get(&self, reader: Reader, key: &[u8]) {
        let (expected, snapshot) = self.expected(reader);
        let got = match snapshot {
            Some(s) => s.get(key),
            None => self.db().get(key),
        }
        .expect("get");
        assert_eq!(got.as_ref().map(Entry::of).as_ref(), expected.iter().find(|e| e.key == key), "{reader:?} get {key:?}");
    }

    fn check_search(&self, reader: Reader, q: &Query) {
        let (expected, snapshot) = self.expected(reader);
        let search = q.search();
        let hits = match snapshot {
            Some(s) => s.search(&search),
            None => self.db().search(&search),
        };
        check_result(&expected, q, hits);
        if q.min_score.is_none() && q.prefix.is_none() && !q.even_filter {
            // nearest: the same search with the database's metric.
            let nearest = match snapshot {
                Some(s) => s.nearest(&q.vector, q.k),
                None => self.db().nearest(&q.vector, q.k),
            };
            check_result(&expected, &Query { metric: self.metric, ..q.clone() }, nearest);
        }
    }

    fn write(&mut self, ops: Vec<Effect>) {
        let mut batch = Batch::new();
        for (key, effect) in &ops {
            match effect {
                None => batch.delete(key),
                Some((content, embedding, None)) => batch.put(key, content, embedding.as_deref()),
                Some((content, embedding, Some(ttl))) => {
                    batch.put_with_ttl(key, content, embedding.as_deref(), Duration::from_millis(*ttl))
                }
            };
        }
        self.db().write(batch).expect("write batch");
        self.after_commit(ops);
    }

    /// Writes the API rejects whole (`InvalidArgument`); the model must not change.
    fn invalid(&mut self, kind: u8, key: Vec<u8>) {
        let db = self.db();
        let result = match kind % 5 {
            0 => db.put(b"", b"x", None),
            1 => db.put(&key, b"x", Some(&[1.0; DIM - 1])),
            2 => db.put(&key, b"x", Some(&[1.0, f32::NAN, 0.0, 0.0])),
            3 => db.put(&key, b"x", Some(&[f32::INFINITY, 0.0, 0.0, 0.0])),
            _ => {
                let mut batch = Batch::new();
                batch.put(&key, b"fine", None).delete(b"a").put(b"", b"empty key", None);
                db.write(batch)
            }
        };
        assert!(matches!(result, Err(Error::InvalidArgument { .. })), "an invalid write is InvalidArgument, got {result:?}");
        let query = [1.0; DIM + 1];
        let result = db.search(&Search::new(&query));
        assert!(matches!(result, Err(Error::InvalidArgument { .. })), "a query of the wrong dimension, got {result:?}");
    }

    fn take_snapshot(&mut self) {
        if self.snapshots.len() == SNAPSHOTS_MAX {
            self.snapshots.remove(0);
        }
        let snapshot = self.db().snapshot();
        let expected = self.live();
        self.snapshots.push(Held { snapshot, expected });
    }

    fn reopen(&mut self, close: bool) {
        let db = self.db.take().expect("db is open");
        if close {
            db.close().expect("close");
        }
        drop(db);
        self.db = Some(Db::open(&self.dir, self.options()).expect("reopen"));
    }

    fn read_only_reopen(&mut self) {
        self.db.take().expect("db is open").close().expect("close");
        let ro = Db::open(&self.dir, self.options().read_only(true)).expect("read-only open");
        self.check_db(&ro, "read-only");
        assert!(matches!(ro.put(b"a", b"x", None), Err(Error::ReadOnly)), "a write on a read-only handle");
        drop(ro);
        self.db = Some(Db::open(&self.dir, self.options()).expect("reopen after read-only"));
    }

    fn checkpoint(&mut self) {
        self.checkpoints += 1;
        let dest = self.dir.with_extension(format!("checkpoint-{}", self.checkpoints));
        let _ = std::fs::remove_dir_all(&dest);
        self.db().checkpoint(&dest).expect("checkpoint");
        {
            let copy = Db::open(&dest, self.options()).expect("the checkpoint opens");
            self.check_db(&copy, "checkpoint");
            copy.close().expect("close the checkpoint");
        }
        let _ = std::fs::remove_dir_all(&dest);
    }

    fn check_stats(&self) {
        let want = self.live();
        let stats = self.db().stats();
        assert_eq!(stats.live_records, want.len() as u64, "stats.live_records");
        let mut union: Vec<Entry> =
            [Tier::Hot, Tier::Warm, Tier::Cold].into_iter().flat_map(|tier| collect(self.db().iter_tier(tier))).collect();
        union.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(union, want, "the tiers partition the live records");
        self.db().verify().expect("verify a healthy database");
    }
}

#[derive(Clone, Debug)]
struct Query {
    vector: Vec<f32>,
    k: usize,
    metric: Metric,
    min_score: Option<f32>,
    prefix: Option<Vec<u8>>,
    /// Keep only keys whose last byte is even.
    even_filter: bool,
}

impl Query {
    fn decode(input: &mut Input<'_>) -> Query {
        let mut vector = input.vector();
        if vector.iter().all(|&v| v == 0.0) {
            vector[0] = 1.0;
        }
        let flags = input.byte();
        let metric = [Metric::Cosine, Metric::Dot, Metric::L2][usize::from(flags % 3)];
        let min_score = (flags & 0x10 != 0).then(|| f32::from(input.byte() as i8) * 0.25);
        let prefix = (flags & 0x20 != 0).then(|| input.prefix());
        Query { vector, k: usize::from(input.byte() % 14), metric, min_score, prefix, even_filter: flags & 0x40 != 0 }
    }

    fn search(&self) -> Search<'_> {
        let mut s = Search::new(&self.vector).k(self.k).metric(self.metric);
        if let Some(m) = self.min_score {
            s = s.min_score(m);
        }
        if let Some(p) = &self.prefix {
            s = s.prefix(p);
        }
        if self.even_filter {
            s = s.filter(|r| r.key().last().is_some_and(|b| b % 2 == 0));
        }
        s
    }
}

fn norm_is_usable(v: &[f32]) -> bool {
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    norm.is_finite() && norm > 0.0
}

/// Small multiples of 0.25: every product and sum of `DIM` of them is exact in f32.
fn exact(v: &[f32]) -> bool {
    v.iter().all(|&x| x.abs() <= 8.0 && (x * 4.0).fract() == 0.0)
}

fn score(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    let dot: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
    match metric {
        Metric::Dot => dot,
        Metric::L2 => q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
        _ => {
            let qn = q.iter().map(|a| a * a).sum::<f32>().sqrt();
            let vn = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            if qn * vn == 0.0 {
                0.0
            } else {
                dot / (qn * vn)
            }
        }
    }
}

/// A search's result: hits (see `check_hits`), or, only for a cosine query whose norm is
/// not finite and non-zero in f32 (components near `f32::MAX`, or so small that their
/// squares underflow), `InvalidArgument`.
fn check_result(live: &[Entry], q: &Query, result: strata::Result<Vec<strata::Hit>>) {
    match result {
        Ok(hits) => check_hits(live, q, &hits),
        Err(Error::InvalidArgument { .. }) if q.metric == Metric::Cosine && !norm_is_usable(&q.vector) => {}
        Err(e) => panic!("search {q:?}: {e}"),
    }
}

/// The hits against brute force over `live`: exactly (keys, order, scores) when every
/// candidate's embedding and the query are exact in f32; otherwise only what rounding
/// cannot change (hits are distinct candidates, at most `k`).
fn check_hits(live: &[Entry], q: &Query, hits: &[strata::Hit]) {
    let candidates: Vec<(Vec<u8>, Vec<f32>)> = live
        .iter()
        .filter(|e| q.prefix.as_ref().is_none_or(|p| e.key.starts_with(p)))
        .filter(|e| !q.even_filter || e.key.last().is_some_and(|b| b % 2 == 0))
        .filter_map(|e| e.embedding().map(|v| (e.key.clone(), v)))
        .collect();
    assert!(hits.len() <= q.k, "more than k hits");
    for (i, hit) in hits.iter().enumerate() {
        assert!(candidates.iter().any(|(k, _)| *k == hit.key), "hit {:?} is not a live candidate of {q:?}", hit.key);
        assert!(!hits[..i].iter().any(|h| h.key == hit.key), "hit {:?} twice", hit.key);
    }
    if !exact(&q.vector) || !candidates.iter().all(|(_, v)| exact(v)) {
        return;
    }
    let mut want: Vec<(Vec<u8>, f32)> = candidates
        .into_iter()
        .map(|(k, v)| (k, score(q.metric, &q.vector, &v) + 0.0)) // + 0.0: -0.0 sorts as the tie it is
        .filter(|(_, s)| match (q.min_score, q.metric) {
            (None, _) => true,
            (Some(m), Metric::L2) => *s <= m,
            (Some(m), _) => *s >= m,
        })
        .collect();
    want.sort_by(|a, b| {
        let by_score = if q.metric == Metric::L2 { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) };
        by_score.then_with(|| a.0.cmp(&b.0))
    });
    want.truncate(q.k);
    // Scores compare as f32 values: -0.0 (a zero vector's cosine, say) is the score 0.0.
    let same = |s: f32| if s == 0.0 { 0u32 } else { s.to_bits() };
    let got: Vec<(Vec<u8>, u32)> = hits.iter().map(|h| (h.key.clone(), same(h.score))).collect();
    let want: Vec<(Vec<u8>, u32)> = want.into_iter().map(|(k, s)| (k, same(s))).collect();
    assert_eq!(got, want, "search {q:?} against brute force");
}

/// The `api_sequence` fuzz target (see the module doc).
pub fn api_sequence(data: &[u8]) {
    let mut input = Input { data, at: 0 };
    let setup = input.byte();
    let dir = fuzz_dir("api");
    let mut run = Run {
        dir: dir.clone(),
        clock: Arc::new(AtomicU64::new(START_MS)),
        durability: [Durability::None, Durability::Flush, Durability::Sync][usize::from(setup % 3)],
        segment_bytes_max: if setup & 0x04 != 0 { strata::limits::SEGMENT_BYTES_MIN } else { 1 << 20 },
        cold_segment_bytes_max: if setup & 0x08 != 0 { strata::limits::SEGMENT_BYTES_MIN } else { 1 << 20 },
        metric: [Metric::Cosine, Metric::Dot, Metric::L2][usize::from((setup >> 4) % 3)],
        db: None,
        model: BTreeMap::new(),
        seq_floor: 0,
        snapshots: Vec::new(),
        checkpoints: 0,
    };
    run.db = Some(Db::open(&dir, run.options()).expect("open a new database"));
    for _ in 0..OPS_MAX {
        if input.done() {
            break;
        }
        step(&mut run, &mut input);
        run.check();
    }
    run.check_snapshots();
    run.check_stats();
    run.reopen(true);
    run.check();
    run.check_snapshots();
    run.db.take().expect("db is open").close().expect("close");
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

fn reader(input: &mut Input<'_>) -> Reader {
    match input.byte() {
        b if b % 2 == 0 => Reader::Db,
        b => Reader::Snapshot(usize::from(b / 2)),
    }
}

fn effect(input: &mut Input<'_>) -> Effect {
    let kind = input.byte() % 5;
    let key = input.key();
    match kind {
        0 => (key, None),
        1 => {
            let (content, embedding, ttl) = (input.content(), input.embedding(), input.ttl_ms());
            (key, Some((content, embedding, Some(ttl))))
        }
        _ => (key, Some((input.content(), input.embedding(), None))),
    }
}

fn step(run: &mut Run, input: &mut Input<'_>) {
    match input.byte() % 24 {
        0..=3 => {
            let key = input.key();
            let (content, embedding) = (input.content(), input.embedding());
            run.db().put(&key, &content, embedding.as_deref()).expect("put");
            run.after_commit(vec![(key, Some((content, embedding, None)))]);
        }
        4 => {
            let key = input.key();
            let (content, embedding, ttl) = (input.content(), input.embedding(), input.ttl_ms());
            run.db().put_with_ttl(&key, &content, embedding.as_deref(), Duration::from_millis(ttl)).expect("put_with_ttl");
            run.after_commit(vec![(key, Some((content, embedding, Some(ttl))))]);
        }
        5 | 6 => {
            let key = input.key();
            run.db().delete(&key).expect("delete");
            run.after_commit(vec![(key, None)]);
        }
        7 | 8 => {
            let n = 1 + input.byte() % 6;
            let ops = (0..n).map(|_| effect(input)).collect();
            run.write(ops);
        }
        9 => {
            let (reader, key) = (reader(input), input.key());
            run.check_get(reader, &key);
        }
        10 => {
            let (reader, prefix, rev) = (reader(input), input.prefix(), input.byte() % 2 == 1);
            run.check_prefix(reader, &prefix, rev);
        }
        11 => run.take_snapshot(),
        12 => run.check_snapshots(),
        13 => {
            run.db().seal().expect("seal");
            assert_eq!(run.db().iter_tier(Tier::Hot).count(), 0, "after seal no live record is in the hot tier");
        }
        14 => {
            run.db().compact().expect("compact");
            assert_eq!(run.db().iter_tier(Tier::Warm).count(), 0, "after compact no live record is in the warm tier");
        }
        15 => run.checkpoint(),
        16 => {
            let close = !input.byte().is_multiple_of(4); // sometimes Drop alone, without close()
            run.reopen(close);
        }
        17 => run.read_only_reopen(),
        18 | 19 => {
            let (reader, query) = (reader(input), Query::decode(input));
            run.check_search(reader, &query);
        }
        20 => {
            run.clock.fetch_add(2 * u64::from(input.byte() % 32), Ordering::SeqCst);
        }
        21 => {
            let (kind, key) = (input.byte(), input.key());
            run.invalid(kind, key);
        }
        22 => run.check_stats(),
        _ => run.db().sync().expect("sync"),
    };
}
