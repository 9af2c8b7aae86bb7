//! Goal: every read through the public API agrees exactly with an in-memory model, across
//! writes, TTL expiry, seals, segment rolls, snapshots and reopen. Method: proptest drives a
//! random sequence of operations against a `Db` and a `BTreeMap` model and compares key,
//! content, embedding bits, seq and order after every read.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use common::{bits, collect, Entry, TestClock};
use proptest::prelude::*;
use strata::{Batch, Db, Durability, Options, Record, Snapshot, Tier};

const DIM: usize = 4;
/// Held snapshots per case; older ones are dropped first.
const SNAPSHOTS_MAX: usize = 3;
/// Records kept alive across the case to check their slices at the end.
const HELD_RECORDS_MAX: usize = 16;

/// Keys that collide often, sort next to each other, and use 0x00 / 0xFF at both ends.
const FIXED_KEYS: &[&[u8]] =
    &[b"\x00", b"\x00\x00", b"\x00\xff", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"];
const KEY_BYTES: &[u8] = &[0x00, 0x01, b'a', b'b', 0xFE, 0xFF];

/// Keys of `Op::Bulk`: `m` then the index, big-endian, so they sort by index.
fn bulk_key(i: u16) -> Vec<u8> {
    let [hi, lo] = i.to_be_bytes();
    vec![b'm', hi, lo]
}

// ---- the model ---------------------------------------------------------------------

/// One stored version as the model knows it.
#[derive(Clone, Debug)]
struct Stored {
    content: Vec<u8>,
    embedding: Option<Vec<f32>>,
    /// Milliseconds since the epoch; `None` = never expires.
    expires_at_ms: Option<u64>,
    /// Learned right after the commit, then expected forever after.
    seq: u64,
}

impl Stored {
    fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    fn entry(&self, key: &[u8]) -> Entry {
        Entry { key: key.to_vec(), content: self.content.clone(), embedding_bits: self.embedding.as_deref().map(bits), seq: self.seq }
    }
}

type Model = BTreeMap<Vec<u8>, Stored>;

/// The live records of `model` at `now_ms`, ascending.
fn live(model: &Model, now_ms: u64) -> Vec<Entry> {
    model.iter().filter(|(_, s)| s.is_live(now_ms)).map(|(k, s)| s.entry(k)).collect()
}

fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

// ---- operations --------------------------------------------------------------------

/// What one write op does to a key: `None` deletes it, `Some((content, embedding, ttl_ms))` puts it.
type Effect = (Vec<u8>, Option<(Vec<u8>, Option<Vec<f32>>, Option<u64>)>);

#[derive(Clone, Debug)]
enum BatchOp {
    Put { key: Vec<u8>, content: Vec<u8>, embedding: Option<Vec<f32>>, ttl_ms: Option<u64> },
    Delete { key: Vec<u8> },
}

/// Which reader a read op goes to: the `Db`, or held snapshot `n` (modulo the number held).
#[derive(Clone, Copy, Debug)]
enum Target {
    Db,
    Snapshot(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: Vec<u8>,
        content: Vec<u8>,
        embedding: Option<Vec<f32>>,
    },
    PutWithTtl {
        key: Vec<u8>,
        content: Vec<u8>,
        embedding: Option<Vec<f32>>,
        ttl_ms: u64,
    },
    Delete {
        key: Vec<u8>,
    },
    Write(Vec<BatchOp>),
    /// One batch over many `bulk_key`s (every `stride`-th below `count`), so iterators
    /// cross their internal chunk boundaries: puts (some with a TTL) or deletes.
    Bulk {
        count: u16,
        stride: u16,
        delete: bool,
        ttl: bool,
    },
    Get {
        target: Target,
        key: Vec<u8>,
    },
    Iter {
        target: Target,
        rev: bool,
    },
    /// `true` = `next`, `false` = `next_back`, until both ends meet.
    IterBothEnds {
        pattern: Vec<bool>,
    },
    Range {
        target: Target,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        rev: bool,
    },
    Prefix {
        target: Target,
        prefix: Vec<u8>,
        rev: bool,
    },
    Seal,
    /// `compact()`; with `seal_first`, `seal()` before it so everything goes cold.
    Compact {
        seal_first: bool,
    },
    Sync,
    TakeSnapshot,
    DropSnapshot(usize),
    CheckSnapshots,
    /// Even steps only (see `TestClock::START_MS`).
    AdvanceClock(u64),
    Reopen {
        close_first: bool,
    },
    CheckStatsAndTiers,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(FIXED_KEYS).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(prop::sample::select(KEY_BYTES), 1..4),
        1 => (0u16..400).prop_map(bulk_key),
    ]
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![1 => Just(Vec::new()), 6 => prop::collection::vec(any::<u8>(), 0..300)]
}

/// Finite f32s, including the awkward ones (-0.0, subnormals, extremes).
fn component() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => any::<u32>().prop_map(|b| { let v = f32::from_bits(b); if v.is_finite() { v } else { 0.5 } }),
        1 => prop::sample::select(vec![0.0f32, -0.0, 1.0, f32::MIN_POSITIVE, f32::from_bits(1), f32::MAX, f32::MIN]),
    ]
}

fn embedding() -> impl Strategy<Value = Option<Vec<f32>>> {
    prop::option::weighted(0.7, prop::collection::vec(component(), DIM))
}

/// Odd TTLs against an even clock: never exactly on an expiry instant.
fn ttl_ms() -> impl Strategy<Value = u64> {
    (0u64..30).prop_map(|k| 2 * k + 1)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![1 => Just(Bound::Unbounded), 2 => key().prop_map(Bound::Included), 2 => key().prop_map(Bound::Excluded)]
}

fn prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::sample::select(vec![&b""[..], b"\x00", b"a", b"a\xff", b"b", b"m", b"m\x00", b"\xff", b"\xff\xff"]).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(prop::sample::select(KEY_BYTES), 0..3),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![3 => Just(Target::Db), 1 => (0usize..SNAPSHOTS_MAX).prop_map(Target::Snapshot)]
}

fn batch_op() -> impl Strategy<Value = BatchOp> {
    // Few keys, so one batch often touches a key twice.
    let batch_key = prop::sample::select(&FIXED_KEYS[..5]).prop_map(<[u8]>::to_vec);
    prop_oneof![
        3 => (batch_key.clone(), content(), embedding(), prop::option::weighted(0.3, ttl_ms()))
            .prop_map(|(key, content, embedding, ttl_ms)| BatchOp::Put { key, content, embedding, ttl_ms }),
        1 => batch_key.prop_map(|key| BatchOp::Delete { key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (key(), content(), embedding()).prop_map(|(key, content, embedding)| Op::Put { key, content, embedding }),
        6 => (key(), content(), embedding(), ttl_ms())
            .prop_map(|(key, content, embedding, ttl_ms)| Op::PutWithTtl { key, content, embedding, ttl_ms }),
        8 => key().prop_map(|key| Op::Delete { key }),
        6 => prop::collection::vec(batch_op(), 0..8).prop_map(Op::Write),
        2 => (100u16..400, 1u16..5, prop::bool::weighted(0.3), prop::bool::weighted(0.2))
            .prop_map(|(count, stride, delete, ttl)| Op::Bulk { count, stride, delete, ttl }),
        8 => (target(), key()).prop_map(|(target, key)| Op::Get { target, key }),
        4 => (target(), any::<bool>()).prop_map(|(target, rev)| Op::Iter { target, rev }),
        2 => prop::collection::vec(any::<bool>(), 0..24).prop_map(|pattern| Op::IterBothEnds { pattern }),
        6 => (target(), bound(), bound(), any::<bool>()).prop_map(|(target, lower, upper, rev)| Op::Range { target, lower, upper, rev }),
        4 => (target(), prefix(), any::<bool>()).prop_map(|(target, prefix, rev)| Op::Prefix { target, prefix, rev }),
        3 => Just(Op::Seal),
        3 => any::<bool>().prop_map(|seal_first| Op::Compact { seal_first }),
        1 => Just(Op::Sync),
        2 => Just(Op::TakeSnapshot),
        1 => (0usize..SNAPSHOTS_MAX).prop_map(Op::DropSnapshot),
        2 => Just(Op::CheckSnapshots),
        4 => (0u64..=20).prop_map(|k| Op::AdvanceClock(2 * k)),
        2 => any::<bool>().prop_map(|close_first| Op::Reopen { close_first }),
        1 => Just(Op::CheckStatsAndTiers),
    ]
}

#[derive(Clone, Debug)]
struct Setup {
    durability: Durability,
    segment_bytes_max: u64,
    cold_segment_bytes_max: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    let durability = prop_oneof![8 => Just(Durability::None), 1 => Just(Durability::Flush), 1 => Just(Durability::Sync)];
    let segment_bytes_max = prop_oneof![4 => 4096u64..=16384, 1 => Just(64 * 1024 * 1024)];
    // Small cold segments: compaction's output spans several files with disjoint key ranges.
    let cold_segment_bytes_max = prop_oneof![1 => 4096u64..=8192, 1 => Just(1 << 30)];
    (durability, segment_bytes_max, cold_segment_bytes_max).prop_map(|(durability, segment_bytes_max, cold_segment_bytes_max)| Setup {
        durability,
        segment_bytes_max,
        cold_segment_bytes_max,
    })
}

// ---- the harness -------------------------------------------------------------------

/// A held snapshot and what it must show forever: the live records when it was taken.
struct HeldSnapshot {
    snapshot: Snapshot,
    expected: Vec<Entry>,
}

struct Harness {
    setup: Setup,
    clock: TestClock,
    db: Option<Db>,
    model: Model,
    /// The highest seq of any commit so far: the next commit's records must exceed it.
    seq_floor: u64,
    snapshots: Vec<HeldSnapshot>,
    held_records: Vec<(Record, Entry)>,
    /// Last, so the directory outlives everything above when a failing case unwinds.
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(setup: Setup) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = TestClock::new();
        let db = Db::open(dir.path(), options(&setup, &clock)).expect("open");
        Harness { dir, setup, clock, db: Some(db), model: Model::new(), seq_floor: 0, snapshots: Vec::new(), held_records: Vec::new() }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("db is open")
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { key, content, embedding } => {
                self.db().put(key, content, embedding.as_deref()).expect("put");
                self.after_commit(&[(key.clone(), Some((content.clone(), embedding.clone(), None)))]);
            }
            Op::PutWithTtl { key, content, embedding, ttl_ms } => {
                self.db().put_with_ttl(key, content, embedding.as_deref(), Duration::from_millis(*ttl_ms)).expect("put_with_ttl");
                self.after_commit(&[(key.clone(), Some((content.clone(), embedding.clone(), Some(*ttl_ms))))]);
            }
            Op::Delete { key } => {
                self.db().delete(key).expect("delete");
                self.after_commit(&[(key.clone(), None)]);
            }
            Op::Write(ops) => self.write(ops),
            Op::Bulk { count, stride, delete, ttl } => self.write(&bulk_ops(*count, *stride, *delete, *ttl)),
            Op::Get { target, key } => self.check_get(*target, key),
            Op::Iter { target, rev } => self.check_range(*target, Bound::Unbounded, Bound::Unbounded, None, *rev),
            Op::IterBothEnds { pattern } => self.check_both_ends(pattern),
            Op::Range { target, lower, upper, rev } => self.check_range(*target, lower.clone(), upper.clone(), None, *rev),
            Op::Prefix { target, prefix, rev } => self.check_range(*target, Bound::Unbounded, Bound::Unbounded, Some(prefix), *rev),
            Op::Seal => self.seal(),
            Op::Compact { seal_first } => self.compact(*seal_first),
            Op::Sync => self.db().sync().expect("sync"),
            Op::TakeSnapshot => self.take_snapshot(),
            Op::DropSnapshot(n) => {
                if !self.snapshots.is_empty() {
                    let n = n % self.snapshots.len();
                    self.snapshots.remove(n);
                }
            }
            Op::CheckSnapshots => self.check_snapshots(),
            Op::AdvanceClock(ms) => self.clock.advance(*ms),
            Op::Reopen { close_first } => self.reopen(*close_first),
            Op::CheckStatsAndTiers => self.check_stats_and_tiers(),
        }
    }

    fn write(&mut self, ops: &[BatchOp]) {
        let mut batch = Batch::new();
        let mut effects = Vec::new();
        for op in ops {
            match op {
                BatchOp::Put { key, content, embedding, ttl_ms: None } => {
                    batch.put(key, content, embedding.as_deref());
                    effects.push((key.clone(), Some((content.clone(), embedding.clone(), None))));
                }
                BatchOp::Put { key, content, embedding, ttl_ms: Some(ttl) } => {
                    batch.put_with_ttl(key, content, embedding.as_deref(), Duration::from_millis(*ttl));
                    effects.push((key.clone(), Some((content.clone(), embedding.clone(), Some(*ttl)))));
                }
                BatchOp::Delete { key } => {
                    batch.delete(key);
                    effects.push((key.clone(), None));
                }
            }
        }
        self.db().write(batch).expect("write batch");
        self.after_commit(&effects);
    }

    /// Applies one commit's effects (in order: the later op on a key wins) to the model,
    /// then learns the seq of every record it put and checks it exceeds every earlier
    /// commit's seq.
    fn after_commit(&mut self, effects: &[Effect]) {
        let now = self.now();
        let mut final_state: BTreeMap<Vec<u8>, Option<Stored>> = BTreeMap::new();
        for (key, effect) in effects {
            let stored = effect.as_ref().map(|(content, embedding, ttl)| Stored {
                content: content.clone(),
                embedding: embedding.clone(),
                expires_at_ms: ttl.map(|t| now + t),
                seq: 0,
            });
            final_state.insert(key.clone(), stored);
        }
        let mut commit_seq_max = self.seq_floor;
        for (key, stored) in final_state {
            match stored {
                None => {
                    self.model.remove(&key);
                }
                Some(mut stored) => {
                    let record = self.db().get(&key).expect("get after write").expect("a record just written is live");
                    assert!(
                        record.seq() > self.seq_floor,
                        "seq {} of a new commit is not above the previous commit's {}",
                        record.seq(),
                        self.seq_floor
                    );
                    commit_seq_max = commit_seq_max.max(record.seq());
                    stored.seq = record.seq();
                    assert_eq!(Entry::of(&record), stored.entry(&key), "record read back right after its write");
                    self.model.insert(key, stored);
                }
            }
        }
        self.seq_floor = commit_seq_max;
    }

    fn expected_for(&self, target: Target) -> (Vec<Entry>, Option<usize>) {
        match target {
            Target::Snapshot(n) if !self.snapshots.is_empty() => {
                let n = n % self.snapshots.len();
                (self.snapshots[n].expected.clone(), Some(n))
            }
            _ => (live(&self.model, self.now()), None),
        }
    }

    fn check_get(&mut self, target: Target, key: &[u8]) {
        let (expected, snapshot) = self.expected_for(target);
        let want = expected.iter().find(|e| e.key == key).cloned();
        let got = match snapshot {
            Some(n) => self.snapshots[n].snapshot.get(key),
            None => self.db().get(key),
        }
        .expect("get");
        assert_eq!(got.as_ref().map(Entry::of), want, "get {key:?} on {target:?}");
        if let (Some(record), Some(want)) = (got, want) {
            if self.held_records.len() < HELD_RECORDS_MAX {
                self.held_records.push((record, want));
            }
        }
    }

    fn check_range(&self, target: Target, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, prefix: Option<&Vec<u8>>, rev: bool) {
        let (expected, snapshot) = self.expected_for(target);
        let mut want: Vec<Entry> =
            expected.into_iter().filter(|e| in_bounds(&e.key, &lower, &upper) && prefix.is_none_or(|p| e.key.starts_with(p))).collect();
        let bounds = (lower.as_ref().map(Vec::as_slice), upper.as_ref().map(Vec::as_slice));
        let iter = match (snapshot, prefix) {
            (Some(n), Some(p)) => self.snapshots[n].snapshot.prefix(p),
            (Some(n), None) => self.snapshots[n].snapshot.range(bounds),
            (None, Some(p)) => self.db().prefix(p),
            (None, None) => self.db().range(bounds),
        };
        let got = if rev { collect(iter.rev()) } else { collect(iter) };
        if rev {
            want.reverse();
        }
        assert_eq!(got, want, "{target:?} range {lower:?}..{upper:?} prefix {prefix:?} rev {rev}");
    }

    /// `next` and `next_back` interleaved: the front part ascends, the back part descends,
    /// and together they are the whole iteration with no key twice.
    fn check_both_ends(&self, pattern: &[bool]) {
        let want = live(&self.model, self.now());
        let mut iter = self.db().iter();
        let (mut front, mut back) = (Vec::new(), Vec::new());
        let mut step = 0usize;
        loop {
            let forward = pattern.get(step % pattern.len().max(1)).copied().unwrap_or(true);
            step += 1;
            let item = if forward { iter.next() } else { iter.next_back() };
            let Some(item) = item else { break };
            let entry = Entry::of(&item.expect("iter item"));
            if forward {
                front.push(entry);
            } else {
                back.push(entry);
            }
        }
        assert!(iter.next().is_none() && iter.next_back().is_none(), "an exhausted iterator stays exhausted");
        back.reverse();
        front.extend(back);
        assert_eq!(front, want, "iteration from both ends with pattern {pattern:?}");
    }

    fn seal(&mut self) {
        self.db().seal().expect("seal");
        assert_eq!(self.db().iter_tier(Tier::Hot).count(), 0, "after seal no live record is in the hot tier");
        assert_eq!(self.db().stats().hot.records, 0, "after seal stats count no hot record");
    }

    fn compact(&mut self, seal_first: bool) {
        if seal_first {
            self.db().seal().expect("seal");
        }
        self.db().compact().expect("compact");
        assert_eq!(self.db().iter_tier(Tier::Warm).count(), 0, "after compact no live record is in the warm tier");
        let stats = self.db().stats();
        assert_eq!(stats.warm.records, 0, "after compact stats count no warm record");
        if seal_first {
            let want = live(&self.model, self.now());
            assert_eq!(stats.cold.records, want.len() as u64, "seal + compact moves every live record to the cold tier");
            let cold_rows: usize = self.db().cold_segments().iter().map(|s| s.rows()).sum();
            assert_eq!(cold_rows, want.len(), "the cold tier holds one row per live key, nothing dropped or shadowed");
        }
        self.check_range(Target::Db, Bound::Unbounded, Bound::Unbounded, None, true);
    }

    fn take_snapshot(&mut self) {
        if self.snapshots.len() == SNAPSHOTS_MAX {
            self.snapshots.remove(0);
        }
        let snapshot = self.db().snapshot();
        let expected = live(&self.model, self.now());
        self.snapshots.push(HeldSnapshot { snapshot, expected });
    }

    fn check_snapshots(&self) {
        for (n, held) in self.snapshots.iter().enumerate() {
            assert_eq!(collect(held.snapshot.iter()), held.expected, "snapshot {n} iter");
            let mut rev = collect(held.snapshot.iter().rev());
            rev.reverse();
            assert_eq!(rev, held.expected, "snapshot {n} iter().rev()");
            for key in self.model.keys().chain(held.expected.iter().map(|e| &e.key)) {
                let want = held.expected.iter().find(|e| &e.key == key);
                let got = held.snapshot.get(key).expect("snapshot get");
                assert_eq!(got.as_ref().map(Entry::of).as_ref(), want, "snapshot {n} get {key:?}");
            }
        }
    }

    fn reopen(&mut self, close_first: bool) {
        let db = self.db.take().expect("db is open");
        if close_first {
            db.close().expect("close");
        }
        drop(db);
        self.db = Some(Db::open(self.dir.path(), options(&self.setup, &self.clock)).expect("reopen"));
        self.check_range(Target::Db, Bound::Unbounded, Bound::Unbounded, None, false);
    }

    fn check_stats_and_tiers(&self) {
        let now = self.now();
        let want = live(&self.model, now);
        let stats = self.db().stats();
        assert_eq!(stats.live_records, want.len() as u64, "stats.live_records");
        let live_bytes: u64 =
            want.iter().map(|e| (e.key.len() + e.content.len() + e.embedding_bits.as_ref().map_or(0, |b| b.len() * 4)) as u64).sum();
        assert_eq!(stats.live_bytes, live_bytes, "stats.live_bytes = key + content + embedding bytes");
        let hot = collect(self.db().iter_tier(Tier::Hot));
        let warm = collect(self.db().iter_tier(Tier::Warm));
        let cold = collect(self.db().iter_tier(Tier::Cold));
        common::assert_strictly_ordered(&hot, false, "iter_tier(Hot)");
        common::assert_strictly_ordered(&warm, false, "iter_tier(Warm)");
        common::assert_strictly_ordered(&cold, false, "iter_tier(Cold)");
        assert_eq!(
            (stats.hot.records, stats.warm.records, stats.cold.records),
            (hot.len() as u64, warm.len() as u64, cold.len() as u64),
            "stats per tier agree with iter_tier"
        );
        let mut union: Vec<Entry> = hot.into_iter().chain(warm).chain(cold).collect();
        union.sort();
        assert_eq!(union, want, "the tiers partition the live records");
        self.db().verify().expect("verify a healthy database");
    }

    /// The end of a case: a full comparison, then close, reopen, compare again, and check
    /// every record and snapshot kept along the way.
    fn finish(mut self) {
        self.check_stats_and_tiers();
        self.check_snapshots();
        self.reopen(true);
        self.check_stats_and_tiers();
        self.check_snapshots();
        for (record, want) in &self.held_records {
            assert_eq!(&Entry::of(record), want, "a Record kept across seals and reopens still reads the same bytes");
        }
        self.db.take().expect("db").close().expect("close");
    }
}

fn options(setup: &Setup, clock: &TestClock) -> Options {
    clock.install(
        Options::new()
            .embedding_dim(DIM)
            .durability(setup.durability)
            .segment_bytes_max(setup.segment_bytes_max)
            .cold_segment_bytes_max(setup.cold_segment_bytes_max)
            .auto_compact(false),
    )
}

fn bulk_ops(count: u16, stride: u16, delete: bool, ttl: bool) -> Vec<BatchOp> {
    (0..count)
        .step_by(usize::from(stride))
        .map(|i| match delete {
            true => BatchOp::Delete { key: bulk_key(i) },
            false => BatchOp::Put {
                key: bulk_key(i),
                content: vec![i as u8; usize::from(i % 40)],
                embedding: (i % 3 == 0).then(|| vec![f32::from(i), -0.0, 1.5, f32::from(count)]),
                ttl_ms: (ttl && i % 2 == 1).then_some(u64::from(i % 20) * 2 + 1),
            },
        })
        .collect()
}

fn run_case(setup: Setup, ops: &[Op]) {
    let mut harness = Harness::new(setup);
    for op in ops {
        harness.apply(op);
    }
    harness.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(256) })]

    #[test]
    fn public_api_agrees_with_a_btreemap_model(setup in setup(), ops in prop::collection::vec(op(), 1..160)) {
        run_case(setup, &ops);
    }
}

/// A fixed sequence that exercises each op kind at least once, so a regression in the
/// harness itself (not only in the engine) shows up without relying on random cases.
#[test]
fn every_op_kind_runs_against_the_model() {
    let setup = Setup { durability: Durability::Sync, segment_bytes_max: 4096, cold_segment_bytes_max: 4096 };
    let e = |x: f32| Some(vec![x, -0.0, f32::MIN_POSITIVE, f32::MAX]);
    let mut ops = vec![
        Op::Put { key: b"\x00".to_vec(), content: b"zero".to_vec(), embedding: e(1.0) },
        Op::Put { key: b"\xff\xff".to_vec(), content: Vec::new(), embedding: None },
        Op::PutWithTtl { key: b"a".to_vec(), content: vec![7; 299], embedding: e(2.0), ttl_ms: 5 },
        Op::TakeSnapshot,
        Op::Write(vec![
            BatchOp::Put { key: b"b".to_vec(), content: b"first".to_vec(), embedding: None, ttl_ms: None },
            BatchOp::Delete { key: b"\x00".to_vec() },
            BatchOp::Put { key: b"b".to_vec(), content: b"second".to_vec(), embedding: e(3.0), ttl_ms: Some(3) },
            BatchOp::Put { key: b"b".to_vec(), content: b"third".to_vec(), embedding: e(4.0), ttl_ms: None },
        ]),
        Op::Delete { key: b"never-written".to_vec() },
        Op::AdvanceClock(6),
        Op::Get { target: Target::Db, key: b"a".to_vec() },
        Op::Get { target: Target::Snapshot(0), key: b"a".to_vec() },
        Op::Seal,
        Op::IterBothEnds { pattern: vec![true, false, false] },
        Op::Range { target: Target::Db, lower: Bound::Included(b"b".to_vec()), upper: Bound::Excluded(b"a".to_vec()), rev: false },
        Op::Range { target: Target::Db, lower: Bound::Excluded(b"b".to_vec()), upper: Bound::Excluded(b"b".to_vec()), rev: true },
        Op::Prefix { target: Target::Snapshot(0), prefix: b"\xff".to_vec(), rev: true },
        Op::Sync,
        Op::CheckStatsAndTiers,
        Op::Compact { seal_first: false },
        Op::CheckSnapshots,
        Op::Get { target: Target::Snapshot(0), key: b"b".to_vec() },
        Op::Reopen { close_first: false },
        Op::CheckSnapshots,
        Op::Put { key: b"b".to_vec(), content: b"fourth, over a cold version".to_vec(), embedding: None },
        Op::Delete { key: b"\xff\xff".to_vec() },
        Op::Compact { seal_first: true },
        Op::CheckStatsAndTiers,
        Op::DropSnapshot(0),
        Op::Iter { target: Target::Db, rev: true },
    ];
    // Enough writes to roll 4 KiB segments several times.
    for i in 0..40u8 {
        ops.push(Op::Put { key: vec![b'k', i % 7], content: vec![i; 200], embedding: e(f32::from(i)) });
    }
    ops.extend([
        Op::Bulk { count: 399, stride: 1, delete: false, ttl: true },
        Op::TakeSnapshot,
        Op::Bulk { count: 399, stride: 3, delete: true, ttl: false },
        Op::AdvanceClock(20),
        Op::IterBothEnds { pattern: vec![true; 130].into_iter().chain([false; 140]).collect() },
        Op::Prefix { target: Target::Snapshot(0), prefix: b"m".to_vec(), rev: true },
        Op::Range { target: Target::Db, lower: Bound::Excluded(bulk_key(7)), upper: Bound::Included(bulk_key(300)), rev: true },
        Op::CheckStatsAndTiers,
        Op::Reopen { close_first: true },
        Op::CheckSnapshots,
    ]);
    run_case(setup, &ops);
}
