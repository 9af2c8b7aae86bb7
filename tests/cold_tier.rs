//! Goal: the cold tier keeps `API.md`'s promises. Every byte comes back exactly after
//! seal + compact + reopen. Reads that mix tiers (cold rows overwritten in warm, deleted in
//! hot, expired) agree with a model. Snapshots and iterators taken before a compaction keep
//! their view. Compaction drops what is dead and nothing else. The Arrow-layout columns agree
//! with the records. Checkpoints, read-only and closed handles behave as documented.
//!
//! Method: a model that knows the newest version of every key *in each tier*
//! (hot, warm, cold), so it predicts the live view and also exactly which rows each
//! compaction writes (stale ones included). TTLs use an injected clock; the random choices
//! follow a printed seed (`STRATA_TEST_SEED` replays one).

mod common;
mod crash_support;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use common::{bits, collect, listing, Entry, TestClock};
use crash_support::{assert_only_live_files, random_bytes, rng_for, test_seed};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use strata::{limits, Batch, ColdSegment, Db, Durability, Error, Iter, Options, Record, Snapshot, Tier};

const DIM: usize = 8;

// ---- the model ------------------------------------------------------------------------------

/// One version of a key: a put (with its record as read back right after the write, and
/// its expiry) or a deletion.
#[derive(Clone, Debug)]
enum Version {
    Put { entry: Entry, expires_at_ms: u64 },
    Delete,
}

impl Version {
    fn live_entry(&self, now_ms: u64) -> Option<&Entry> {
        match self {
            Version::Put { entry, expires_at_ms } if *expires_at_ms == 0 || *expires_at_ms > now_ms => Some(entry),
            _ => None,
        }
    }
}

/// The newest version of one key in each tier. The newest overall is hot, else warm, else cold.
#[derive(Clone, Debug, Default)]
struct Tiers {
    hot: Option<Version>,
    warm: Option<Version>,
    cold: Option<Version>,
}

impl Tiers {
    fn newest(&self) -> Option<(Tier, &Version)> {
        if let Some(v) = &self.hot {
            return Some((Tier::Hot, v));
        }
        if let Some(v) = &self.warm {
            return Some((Tier::Warm, v));
        }
        self.cold.as_ref().map(|v| (Tier::Cold, v))
    }
}

/// A database under test, its clock, and the model of what it holds.
struct Fixture {
    clock: TestClock,
    dir: std::path::PathBuf,
    options: Options,
    db: Option<Db>,
    keys: BTreeMap<Vec<u8>, Tiers>,
}

impl Fixture {
    fn new(dir: &Path, options: Options) -> Fixture {
        let clock = TestClock::new();
        let options = clock.install(options);
        let db = Db::open(dir, options.clone()).expect("open");
        Fixture { clock, dir: dir.to_path_buf(), options, db: Some(db), keys: BTreeMap::new() }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("open handle")
    }

    fn record_put(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>, expires_at_ms: u64) {
        let record = self.db().get(key).expect("get after put").expect("a put is visible at once");
        let entry = Entry::of(&record);
        assert_eq!(entry.content, content, "content of {key:?} read back right after the put");
        assert_eq!(entry.embedding_bits, embedding.map(bits), "embedding of {key:?} read back right after the put");
        self.keys.entry(key.to_vec()).or_default().hot = Some(Version::Put { entry, expires_at_ms });
    }

    fn put(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>) {
        self.db().put(key, content, embedding).expect("put");
        self.record_put(key, content, embedding, 0);
    }

    fn put_ttl(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>, ttl_ms: u64) {
        self.db().put_with_ttl(key, content, embedding, Duration::from_millis(ttl_ms)).expect("put_with_ttl");
        let expires = self.clock.now() + ttl_ms;
        self.record_put(key, content, embedding, expires);
    }

    fn delete(&mut self, key: &[u8]) {
        self.db().delete(key).expect("delete");
        self.keys.entry(key.to_vec()).or_default().hot = Some(Version::Delete);
    }

    fn seal(&mut self) {
        self.db().seal().expect("seal");
        for tiers in self.keys.values_mut() {
            if let Some(v) = tiers.hot.take() {
                tiers.warm = Some(v);
            }
        }
    }

    /// Compaction seals first (hot becomes warm); then, per key, the newest of warm and cold
    /// becomes the cold row unless it is a deletion or expired.
    fn compact(&mut self) {
        self.db().compact().expect("compact");
        let now = self.clock.now();
        for tiers in self.keys.values_mut() {
            let candidate = tiers.hot.take().or_else(|| tiers.warm.take()).or_else(|| tiers.cold.take());
            tiers.warm = None;
            tiers.cold = candidate.filter(|v| v.live_entry(now).is_some());
        }
        self.keys.retain(|_, t| t.hot.is_some() || t.cold.is_some());
    }

    fn reopen(&mut self) {
        let db = self.db.take().expect("open handle");
        db.close().expect("close");
        drop(db);
        self.db = Some(Db::open(&self.dir, self.options.clone()).expect("reopen"));
    }

    /// The live records, ascending by key, with the tier each lives in.
    fn live(&self) -> Vec<(Tier, Entry)> {
        let now = self.clock.now();
        self.keys.values().filter_map(|t| t.newest()).filter_map(|(tier, v)| v.live_entry(now).map(|e| (tier, e.clone()))).collect()
    }

    fn live_entries(&self) -> Vec<Entry> {
        self.live().into_iter().map(|(_, e)| e).collect()
    }

    /// The rows the cold tier holds (stale ones included): (entry, expiry), by key.
    fn cold_rows(&self) -> Vec<(Entry, u64)> {
        self.keys
            .values()
            .filter_map(|t| match &t.cold {
                Some(Version::Put { entry, expires_at_ms }) => Some((entry.clone(), *expires_at_ms)),
                _ => None,
            })
            .collect()
    }

    /// Every key the model ever saw, plus keys next to them that were never written.
    fn probe_keys(&self) -> Vec<Vec<u8>> {
        let mut probes: Vec<Vec<u8>> = Vec::new();
        for key in self.keys.keys() {
            probes.push(key.clone());
            let mut after = key.clone();
            after.push(0);
            probes.push(after);
            if key.len() > 1 {
                probes.push(key[..key.len() - 1].to_vec());
            }
        }
        probes.extend([b"\x00".to_vec(), b"\xff\xff\xff\xff".to_vec(), b"zzz-never".to_vec()]);
        probes.sort();
        probes.dedup();
        probes
    }
}

// ---- reading through Db and Snapshot alike ------------------------------------------------

trait Reads {
    fn get_(&self, key: &[u8]) -> strata::Result<Option<Record>>;
    fn iter_(&self) -> Iter;
    fn range_(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter;
    fn prefix_(&self, prefix: &[u8]) -> Iter;
}

impl Reads for Db {
    fn get_(&self, key: &[u8]) -> strata::Result<Option<Record>> {
        self.get(key)
    }
    fn iter_(&self) -> Iter {
        self.iter()
    }
    fn range_(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter {
        self.range((lower, upper))
    }
    fn prefix_(&self, prefix: &[u8]) -> Iter {
        self.prefix(prefix)
    }
}

impl Reads for Snapshot {
    fn get_(&self, key: &[u8]) -> strata::Result<Option<Record>> {
        self.get(key)
    }
    fn iter_(&self) -> Iter {
        self.iter()
    }
    fn range_(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter {
        self.range((lower, upper))
    }
    fn prefix_(&self, prefix: &[u8]) -> Iter {
        self.prefix(prefix)
    }
}

fn in_bounds(key: &[u8], lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u,
        Bound::Excluded(u) => key < u,
        Bound::Unbounded => true,
    };
    above && below
}

/// Walks `iter` with a random mix of `next` and `next_back` and compares each item with the
/// matching end of `expected`; then both ends stay exhausted.
fn check_mixed(mut iter: Iter, expected: &[Entry], rng: &mut StdRng, context: &str) {
    let mut want: VecDeque<&Entry> = expected.iter().collect();
    let mut step = 0;
    loop {
        let front = rng.gen_bool(0.5);
        let got = if front { iter.next() } else { iter.next_back() };
        let got = got.map(|r| Entry::of(&r.unwrap_or_else(|e| panic!("{context}: mixed walk step {step}: {e}"))));
        let expect = if front { want.pop_front() } else { want.pop_back() };
        assert_eq!(got.as_ref(), expect, "{context}: mixed walk step {step} ({})", if front { "next" } else { "next_back" });
        if expect.is_none() {
            break;
        }
        step += 1;
    }
    assert!(iter.next().is_none() && iter.next_back().is_none(), "{context}: an exhausted iterator yields nothing more");
}

/// The reader holds exactly `expected` (ascending, live): get of every probe key,
/// forward/backward/mixed full walks, random ranges and prefixes.
fn check_reads(reads: &impl Reads, expected: &[Entry], probes: &[Vec<u8>], rng: &mut StdRng, context: &str) {
    let by_key: BTreeMap<&[u8], &Entry> = expected.iter().map(|e| (e.key.as_slice(), e)).collect();
    for key in probes {
        let got = reads.get_(key).unwrap_or_else(|e| panic!("{context}: get({key:?}): {e}")).as_ref().map(Entry::of);
        assert_eq!(got.as_ref(), by_key.get(key.as_slice()).copied(), "{context}: get({key:?})");
    }
    assert_eq!(collect(reads.iter_()), expected, "{context}: forward iteration");
    let mut backward = collect(reads.iter_().rev());
    backward.reverse();
    assert_eq!(backward, expected, "{context}: backward iteration");
    check_mixed(reads.iter_(), expected, rng, &format!("{context}: full mixed walk"));

    let bound = |rng: &mut StdRng| -> Bound<Vec<u8>> {
        let key = probes.choose(rng).expect("probe keys").clone();
        match rng.gen_range(0..5) {
            0 => Bound::Unbounded,
            1 | 2 => Bound::Included(key),
            _ => Bound::Excluded(key),
        }
    };
    for round in 0..24 {
        let (lower, upper) = (bound(rng), bound(rng));
        let (l, u) = (lower.as_ref().map(Vec::as_slice), upper.as_ref().map(Vec::as_slice));
        let want: Vec<Entry> = expected.iter().filter(|e| in_bounds(&e.key, l, u)).cloned().collect();
        let ctx = format!("{context}: range {round} ({l:?}, {u:?})");
        assert_eq!(collect(reads.range_(l, u)), want, "{ctx}: forward");
        let mut backward = collect(reads.range_(l, u).rev());
        backward.reverse();
        assert_eq!(backward, want, "{ctx}: backward");
        check_mixed(reads.range_(l, u), &want, rng, &ctx);
    }

    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new(), b"\x00".to_vec(), b"\xff".to_vec(), b"\xff\xff".to_vec()];
    for _ in 0..16 {
        let key = probes.choose(rng).expect("probe keys");
        prefixes.push(key[..rng.gen_range(1..=key.len())].to_vec());
    }
    for prefix in &prefixes {
        let want: Vec<Entry> = expected.iter().filter(|e| e.key.starts_with(prefix)).cloned().collect();
        let ctx = format!("{context}: prefix {prefix:?}");
        assert_eq!(collect(reads.prefix_(prefix)), want, "{ctx}: forward");
        let mut backward = collect(reads.prefix_(prefix).rev());
        backward.reverse();
        assert_eq!(backward, want, "{ctx}: backward");
        check_mixed(reads.prefix_(prefix), &want, rng, &ctx);
    }
}

/// The database holds what the model says, through every read path, the tier walks and
/// the counters.
fn check_fixture(f: &Fixture, rng: &mut StdRng, context: &str) {
    let live = f.live();
    let expected: Vec<Entry> = live.iter().map(|(_, e)| e.clone()).collect();
    let probes = f.probe_keys();
    check_reads(f.db(), &expected, &probes, rng, &format!("{context} (Db)"));
    let snapshot = f.db().snapshot();
    check_reads(&snapshot, &expected, &probes, rng, &format!("{context} (Snapshot)"));
    check_tiers(f.db(), &live, context);
}

/// `iter_tier` partitions the live records exactly as the model places them; `Stats`
/// counts them the same way.
fn check_tiers(db: &Db, live: &[(Tier, Entry)], context: &str) {
    let stats = db.stats();
    let mut union = Vec::new();
    for tier in [Tier::Hot, Tier::Warm, Tier::Cold] {
        let want: Vec<Entry> = live.iter().filter(|(t, _)| *t == tier).map(|(_, e)| e.clone()).collect();
        let got = collect(db.iter_tier(tier));
        assert_eq!(got, want, "{context}: iter_tier({tier:?})");
        let mut backward = collect(db.iter_tier(tier).rev());
        backward.reverse();
        assert_eq!(backward, want, "{context}: iter_tier({tier:?}).rev()");
        assert_eq!(stats.tier(tier).records, want.len() as u64, "{context}: stats records of {tier:?}");
        let bytes: u64 = want.iter().map(logical_bytes).sum();
        assert_eq!(stats.tier(tier).bytes, bytes, "{context}: stats bytes of {tier:?}");
        union.extend(got);
    }
    union.sort();
    let mut all: Vec<Entry> = live.iter().map(|(_, e)| e.clone()).collect();
    all.sort();
    assert_eq!(union, all, "{context}: the three tiers together hold every live record once");
    assert_eq!(stats.live_records, live.len() as u64, "{context}: stats live_records");
    assert_eq!(stats.live_bytes, live.iter().map(|(_, e)| logical_bytes(e)).sum::<u64>(), "{context}: stats live_bytes");
}

fn logical_bytes(e: &Entry) -> u64 {
    (e.key.len() + e.content.len() + e.embedding_bits.as_ref().map_or(0, |b| b.len() * 4)) as u64
}

// ---- the cold columns -----------------------------------------------------------------------

/// Every row of `segments`, as (entry, expiry), checking the columns' layout on the way:
/// Arrow offsets, validity bitmap, zero-filled embeddings for rows without one, sorted
/// keys within and across segments, file names.
fn cold_rows_of(segments: &[ColdSegment], dim: usize, context: &str) -> Vec<(Entry, u64)> {
    let mut rows = Vec::new();
    for segment in segments {
        let ctx = format!("{context}: cold segment {}", segment.id());
        let name = segment.path().file_name().and_then(|n| n.to_str()).expect("file name");
        assert_eq!(name, format!("{:016x}.cold", segment.id()), "{ctx}: file name");
        let c = segment.columns();
        let n = segment.rows();
        assert!(n > 0, "{ctx}: a cold segment holds at least one row");
        assert_eq!(c.rows(), n, "{ctx}: columns().rows()");
        assert_eq!(segment.embedding_dim(), dim, "{ctx}: embedding_dim()");
        assert_eq!(c.embedding_dim, dim, "{ctx}: columns embedding_dim");
        for (what, col) in [("keys", c.keys), ("content", c.content)] {
            assert_eq!(col.offsets.len(), n + 1, "{ctx}: {what} offsets count");
            assert_eq!(col.offsets[0], 0, "{ctx}: {what} offsets start at 0");
            assert!(col.offsets.windows(2).all(|w| w[0] <= w[1]), "{ctx}: {what} offsets ascend");
            assert_eq!(col.offsets[n] as usize, col.data.len(), "{ctx}: {what} offsets end at the data's end");
            assert_eq!(col.len(), n, "{ctx}: {what} len()");
        }
        assert_eq!(c.embeddings.len(), n * dim, "{ctx}: embeddings are rows x dim values");
        assert_eq!(c.embedding_validity.len(), n.div_ceil(8), "{ctx}: validity bitmap length");
        assert_eq!(c.seqs.len(), n, "{ctx}: seqs");
        assert_eq!(c.expires_at_ms.len(), n, "{ctx}: expires_at_ms");
        for i in 0..n {
            let valid = c.embedding_validity[i / 8] & (1 << (i % 8)) != 0;
            let slot = &c.embeddings[i * dim..(i + 1) * dim];
            let embedding = c.embedding(i);
            if valid && dim > 0 {
                assert_eq!(embedding.map(bits), Some(bits(slot)), "{ctx}: row {i}: embedding(i) is its slot");
            } else {
                assert_eq!(embedding, None, "{ctx}: row {i} has no embedding");
                assert!(slot.iter().all(|v| v.to_bits() == 0), "{ctx}: row {i}: a row without embedding holds zeros");
            }
            let entry = Entry {
                key: c.keys.value(i).to_vec(),
                content: c.content.value(i).to_vec(),
                embedding_bits: embedding.map(bits),
                seq: c.seqs[i],
            };
            rows.push((entry, c.expires_at_ms[i]));
        }
    }
    for pair in rows.windows(2) {
        assert!(pair[0].0.key < pair[1].0.key, "{context}: cold keys ascend strictly within and across segments");
    }
    rows
}

/// An owned copy of every column of a segment, bit for bit.
#[derive(Debug, PartialEq, Eq)]
struct ColumnImage {
    key_offsets: Vec<i64>,
    keys: Vec<u8>,
    content_offsets: Vec<i64>,
    contents: Vec<u8>,
    embedding_bits: Vec<u32>,
    validity: Vec<u8>,
    seqs: Vec<u64>,
    expires_at_ms: Vec<u64>,
}

fn column_image(segment: &ColdSegment) -> ColumnImage {
    let c = segment.columns();
    ColumnImage {
        key_offsets: c.keys.offsets.to_vec(),
        keys: c.keys.data.to_vec(),
        content_offsets: c.content.offsets.to_vec(),
        contents: c.content.data.to_vec(),
        embedding_bits: bits(c.embeddings),
        validity: c.embedding_validity.to_vec(),
        seqs: c.seqs.to_vec(),
        expires_at_ms: c.expires_at_ms.to_vec(),
    }
}

fn cold_file_names(dir: &Path) -> Vec<String> {
    listing(dir).into_iter().map(|(name, _)| name).filter(|n| n.ends_with(".cold")).collect()
}

fn log_file_names(dir: &Path) -> Vec<String> {
    listing(dir).into_iter().map(|(name, _)| name).filter(|n| n.ends_with(".log")).collect()
}

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Flush).auto_compact(false)
}

fn emb(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

// ---- round trip at the edges ----------------------------------------------------------------

/// Embeddings whose bits a lossy path would change: signed zero, subnormals, extremes.
fn edge_embeddings() -> Vec<Vec<f32>> {
    let tiny = f32::from_bits(1); // the smallest subnormal
    vec![
        vec![-0.0, 0.0, tiny, -tiny, f32::MAX, f32::MIN, f32::MIN_POSITIVE, f32::EPSILON],
        vec![f32::from_bits(0x007f_ffff), -f32::from_bits(0x0000_0100), 1e-40, -1e-42, 3.4e38, -3.4e38, 1.0, -0.0],
    ]
}

#[test]
fn every_byte_round_trips_through_seal_compact_and_reopen_at_the_edges() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options());
    let mut rng = rng_for(7, &[1]);
    let [e1, e2] = <[Vec<f32>; 2]>::try_from(edge_embeddings()).expect("two edge embeddings");
    let long_key: Vec<u8> = (0..limits::MAX_KEY_LEN).map(|i| (i * 7 % 256) as u8).collect();
    f.put(b"empty-content", b"", Some(&e1));
    f.put(b"empty-content-no-embedding", b"", None);
    f.put(b"no-embedding", b"some content", None);
    f.put(b"\x00", b"a key of one zero byte", Some(&e2));
    f.put(b"\x00\x00", b"\x00\x00\x00", None);
    f.put(b"a\x00b", b"zero inside", Some(&e1));
    f.put(b"\xff", b"\xff\xfe\xfd", Some(&e2));
    f.put(b"\xff\xff\xff", b"the largest key", None);
    f.put(b"\xff\x00", b"ff then zero", Some(&e1));
    f.put(&long_key, b"the longest key", Some(&e2));
    f.put(b"long-content", &random_bytes(&mut rng, 70_000), Some(&e1));
    let mut batch = Batch::new();
    batch.put(b"batch-1", b"one", Some(&e2)).put(b"batch-2", b"", None);
    f.db().write(batch).expect("batch");
    f.record_put(b"batch-1", b"one", Some(&e2), 0);
    f.record_put(b"batch-2", b"", None, 0);
    let expected_all = f.live_entries();
    assert_eq!(expected_all.len(), 13);

    f.seal();
    f.compact();
    assert_eq!(f.live().iter().filter(|(t, _)| *t == Tier::Cold).count(), 13, "the model puts every record in the cold tier");
    let segments = f.db().cold_segments();
    let rows = cold_rows_of(&segments, DIM, "after compact");
    assert_eq!(rows, f.cold_rows(), "the cold columns hold exactly the records");
    check_fixture(&f, &mut rng, "after seal + compact");
    assert_eq!(f.live_entries(), expected_all, "compaction changed no byte and no seq");
    assert!(log_file_names(temp.path()).len() == 1, "only the active log segment is left: {:?}", listing(temp.path()));

    f.reopen();
    assert_eq!(f.db().cold_segments().len(), segments.len(), "the cold tier is back after reopen");
    check_fixture(&f, &mut rng, "after reopen");
    f.db().verify().expect("verify");
    let read_only = Db::open(temp.path(), f.options.clone().read_only(true)).expect("read-only open");
    assert_eq!(collect(read_only.iter()), expected_all, "a read-only handle reads the cold tier");
    drop(read_only);

    // The next commit after reopen gets a seq above every stored one, and seqs never change.
    let seq_max = expected_all.iter().map(|e| e.seq).max().expect("records");
    f.put(b"after-reopen", b"next", None);
    let after = f.db().get(b"after-reopen").expect("get").expect("present");
    assert!(after.seq() > seq_max, "seq {} after reopen is above every compacted seq {seq_max}", after.seq());
}

/// A record at both limits at once (the longest key, the longest content): few reads, as
/// each checks a 16 MiB checksum.
#[test]
fn the_longest_key_and_content_round_trip_through_the_cold_tier() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut rng = rng_for(7, &[9]);
    let mut f = Fixture::new(temp.path(), options());
    let long_key: Vec<u8> = (0..limits::MAX_KEY_LEN).map(|i| (i * 13 % 256) as u8).collect();
    let long_content = random_bytes(&mut rng, limits::MAX_CONTENT_LEN);
    let e = edge_embeddings()[1].clone();
    f.put(b"before", b"small", None);
    f.put(&long_key, &long_content, Some(&e));
    f.put(b"\xff after", b"small", Some(&e));
    let expected = f.live_entries();
    f.seal();
    f.compact();
    let segments = f.db().cold_segments();
    assert_eq!(cold_rows_of(&segments, DIM, "limits"), f.cold_rows(), "the cold columns hold the records exactly");
    let check = |db: &Db, context: &str| {
        let got = db.get(&long_key).expect("get").map(|r| Entry::of(&r));
        assert!(got.as_ref() == expected.iter().find(|x| x.key == long_key), "{context}: get of the longest record");
        assert!(collect(db.iter()) == expected, "{context}: iter");
        assert!(collect(db.iter_tier(Tier::Cold)) == expected, "{context}: all of it in the cold tier");
    };
    check(f.db(), "after compact");
    f.reopen();
    check(f.db(), "after reopen");
    f.db().verify().expect("verify");
}

#[test]
fn a_single_record_and_a_database_without_dimension_round_trip_through_the_cold_tier() {
    // One record.
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options());
    let mut rng = rng_for(7, &[2]);
    f.put(b"only", b"the single record", Some(&edge_embeddings()[0]));
    f.seal();
    f.compact();
    let segments = f.db().cold_segments();
    assert_eq!(segments.len(), 1, "one record, one cold segment");
    assert_eq!(segments[0].rows(), 1);
    assert_eq!(cold_rows_of(&segments, DIM, "single record"), f.cold_rows());
    f.reopen();
    check_fixture(&f, &mut rng, "single record after reopen");

    // No embedding dimension: the cold tier stores none.
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), Options::new().durability(Durability::Flush).auto_compact(false));
    for i in 0..20u8 {
        f.put(&[b'k', i], &vec![i; i as usize * 3], None);
    }
    f.seal();
    f.compact();
    let segments = f.db().cold_segments();
    assert_eq!(cold_rows_of(&segments, 0, "no dimension"), f.cold_rows());
    assert!(segments.iter().all(|s| s.embedding_dim() == 0 && s.columns().embeddings.is_empty()));
    f.reopen();
    check_fixture(&f, &mut rng, "no dimension, after reopen");
    f.db().verify().expect("verify");
}

// ---- reads across tiers --------------------------------------------------------------------

/// Keys of several shapes: decimal, with 0x00 and 0xFF bytes, of varying length.
fn key_for(i: u32) -> Vec<u8> {
    match i % 5 {
        0 => format!("k{i:05}").into_bytes(),
        1 => format!("k{i:05}/sub").into_bytes(),
        2 => {
            let mut k = vec![0x00, (i >> 8) as u8, i as u8];
            k.extend(b"\x00z");
            k
        }
        3 => vec![0xff, (i >> 8) as u8, i as u8, 0xff],
        _ => format!("user/{:03}/item/{i:05}", i % 7).into_bytes(),
    }
}

/// One random write: put (sometimes with a short TTL that will expire, sometimes a long
/// one), or delete.
fn random_write(f: &mut Fixture, rng: &mut StdRng, key: &[u8], delete_chance: f64) {
    if rng.gen_bool(delete_chance) {
        f.delete(key);
        return;
    }
    let mut content = format!("v{}:", rng.gen::<u32>()).into_bytes();
    let len = rng.gen_range(0..160);
    content.extend(random_bytes(rng, len));
    let embedding = rng.gen_bool(0.8).then(|| emb(rng));
    match rng.gen_range(0..10) {
        0 => f.put_ttl(key, &content, embedding.as_deref(), rng.gen_range(1..2_000) * 2 + 1),
        1 => f.put_ttl(key, &content, embedding.as_deref(), 1 << 40),
        _ => f.put(key, &content, embedding.as_deref()),
    }
}

#[test]
fn reads_across_cold_warm_and_hot_tiers_agree_with_the_model() {
    let seed = test_seed("reads_across_cold_warm_and_hot_tiers_agree_with_the_model");
    let mut rng = rng_for(seed, &[0]);
    let temp = tempfile::tempdir().expect("tempdir");
    // Small cold segments: several of them, so walks and lookups cross their boundaries.
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(4096));
    let keys: Vec<Vec<u8>> = (0..500).map(key_for).collect();

    // Round 1: everything, then into the cold tier.
    for key in &keys {
        random_write(&mut f, &mut rng, key, 0.0);
    }
    f.seal();
    f.compact();
    assert!(f.db().cold_segments().len() >= 3, "several cold segments: {}", f.db().cold_segments().len());
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "round 1"), f.cold_rows(), "round 1 cold rows");
    check_fixture(&f, &mut rng, "round 1: all cold");

    // Round 2: overwrite and delete some, compact again: cold merges with warm.
    for key in keys.choose_multiple(&mut rng, 150).cloned().collect::<Vec<_>>() {
        random_write(&mut f, &mut rng, &key, 0.3);
    }
    f.seal();
    f.compact();
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "round 2"), f.cold_rows(), "round 2 cold rows");

    // Round 3: warm overwrites and deletions of cold keys (in several sealed segments);
    // round 4: hot ones, and new keys.
    for (n, key) in keys.choose_multiple(&mut rng, 120).cloned().collect::<Vec<_>>().into_iter().enumerate() {
        random_write(&mut f, &mut rng, &key, 0.3);
        if n % 40 == 39 {
            f.seal();
        }
    }
    for i in 500..540 {
        random_write(&mut f, &mut rng, &key_for(i), 0.0);
    }
    f.seal();
    for key in keys.choose_multiple(&mut rng, 120).cloned().collect::<Vec<_>>() {
        random_write(&mut f, &mut rng, &key, 0.4);
    }
    for i in 540..560 {
        random_write(&mut f, &mut rng, &key_for(i), 0.0);
    }
    let live = f.live();
    for tier in [Tier::Hot, Tier::Warm, Tier::Cold] {
        assert!(live.iter().filter(|(t, _)| *t == tier).count() > 20, "live records in {tier:?}");
    }
    check_fixture(&f, &mut rng, "cold + warm + hot");

    // Time passes: short TTLs expire in every tier.
    let before = f.live().len();
    f.clock.advance(5_000);
    assert!(f.live().len() < before, "some records expired");
    check_fixture(&f, &mut rng, "after expiry");

    // Compact without sealing: warm moves, hot stays; expired cold rows go.
    f.compact();
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "round 3"), f.cold_rows(), "cold rows after compacting warm");
    assert!(f.cold_rows().iter().all(|(_, exp)| *exp == 0 || *exp > f.clock.now()), "no expired row survives compaction");
    check_fixture(&f, &mut rng, "compacted with a hot tier left");

    f.reopen();
    check_fixture(&f, &mut rng, "after reopen");
    f.db().verify().expect("verify");

    f.seal();
    f.compact();
    check_fixture(&f, &mut rng, "everything cold");
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "final"), f.cold_rows());
    assert_eq!(f.live().len(), f.cold_rows().len(), "all live, all cold: stale rows are gone");
}

#[test]
fn lookups_and_walks_at_cold_segment_boundaries() {
    let mut rng = rng_for(7, &[3]);
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(4096));
    // Even numbers only: every odd number is a key that lies between two stored ones.
    for i in (0..800u32).step_by(2) {
        let embedding = emb(&mut rng);
        f.put(format!("key{i:05}").as_bytes(), &vec![(i % 251) as u8; (i % 90) as usize], Some(&embedding));
    }
    f.seal();
    f.compact();
    let segments = f.db().cold_segments();
    assert!(segments.len() >= 4, "several cold segments: {}", segments.len());
    let rows = cold_rows_of(&segments, DIM, "boundaries");
    assert_eq!(rows, f.cold_rows());
    let expected = f.live_entries();
    let db = f.db();
    for pair in segments.windows(2) {
        let (a, b) = (pair[0].columns(), pair[1].columns());
        let last = a.keys.value(a.rows() - 1).to_vec();
        let first = b.keys.value(0).to_vec();
        for key in [&last, &first] {
            let got = db.get(key).expect("get").map(|r| Entry::of(&r));
            assert_eq!(got.as_ref(), expected.iter().find(|e| &e.key == key), "get of a boundary key {key:?}");
        }
        let mut between = last.clone();
        between.push(b'~'); // after `last`, before `first`
        assert!(between < first);
        assert!(db.get(&between).expect("get").is_none(), "nothing between two segments");
        let bounds = [
            (Bound::Included(&last[..]), Bound::Included(&first[..])),
            (Bound::Excluded(&last[..]), Bound::Included(&first[..])),
            (Bound::Included(&last[..]), Bound::Excluded(&first[..])),
            (Bound::Excluded(&last[..]), Bound::Excluded(&first[..])),
            (Bound::Included(&between[..]), Bound::Unbounded),
            (Bound::Unbounded, Bound::Included(&between[..])),
        ];
        for (l, u) in bounds {
            let want: Vec<Entry> = expected.iter().filter(|e| in_bounds(&e.key, l, u)).cloned().collect();
            assert_eq!(collect(db.range((l, u))), want, "range ({l:?}, {u:?})");
            let mut backward = collect(db.range((l, u)).rev());
            backward.reverse();
            assert_eq!(backward, want, "range ({l:?}, {u:?}) backwards");
            check_mixed(db.range((l, u)), &want, &mut rng, "boundary range");
        }
        // One whole segment through a range, and a prefix that crosses the boundary.
        let seg_keys: Vec<Vec<u8>> = (0..a.rows()).map(|i| a.keys.value(i).to_vec()).collect();
        let whole = collect(db.range(&seg_keys[0][..]..=&seg_keys[seg_keys.len() - 1][..]));
        assert_eq!(whole.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), seg_keys, "a range of exactly one segment");
        let common = last.iter().zip(&first).take_while(|(x, y)| x == y).count();
        let prefix = &last[..common];
        let want: Vec<Entry> = expected.iter().filter(|e| e.key.starts_with(prefix)).cloned().collect();
        assert_eq!(collect(db.prefix(prefix)), want, "prefix {prefix:?} across the boundary");
    }
    check_fixture(&f, &mut rng, "boundaries");
}

// ---- snapshots across compaction ---------------------------------------------------------------

#[test]
fn snapshots_and_iterators_taken_before_compact_keep_their_view() {
    let mut rng = rng_for(7, &[4]);
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(8 << 10));
    let keys: Vec<Vec<u8>> = (0..300).map(key_for).collect();
    for key in &keys {
        random_write(&mut f, &mut rng, key, 0.0);
    }
    f.seal();
    f.compact(); // a cold tier to start from
    for key in keys.choose_multiple(&mut rng, 100).cloned().collect::<Vec<_>>() {
        random_write(&mut f, &mut rng, &key, 0.3);
    }
    f.seal();
    for key in keys.choose_multiple(&mut rng, 60).cloned().collect::<Vec<_>>() {
        random_write(&mut f, &mut rng, &key, 0.3);
    }

    // The old state: cold, warm and hot records.
    let old = f.live_entries();
    let old_probes = f.probe_keys();
    let old_snapshot = f.db().snapshot();
    let old_cold_names = cold_file_names(temp.path());
    let old_logs = log_file_names(temp.path());
    let old_segments: Vec<u64> = old_snapshot.cold_segments().iter().map(ColdSegment::id).collect();
    let mut old_iter = f.db().iter();
    let first_three: Vec<Entry> = (&mut old_iter).take(3).map(|r| Entry::of(&r.expect("item"))).collect();
    let mut old_back = f.db().iter().rev();
    let last_two: Vec<Entry> = (&mut old_back).take(2).map(|r| Entry::of(&r.expect("item"))).collect();

    // Overwrite and delete every cold key the snapshot sees, then compact twice: the
    // versions the snapshot reads are dropped from the new cold tier.
    for key in keys.iter().step_by(2) {
        random_write(&mut f, &mut rng, key, 0.5);
    }
    f.seal();
    f.compact();
    for key in keys.iter().step_by(3) {
        random_write(&mut f, &mut rng, key, 0.5);
    }
    f.seal();
    f.compact();
    let new = f.live_entries();
    assert_ne!(old, new);

    // The old snapshot and the iterators created before still read exactly the old state.
    check_reads(&old_snapshot, &old, &old_probes, &mut rng, "old snapshot after compact");
    assert_eq!(old_snapshot.cold_segments().iter().map(ColdSegment::id).collect::<Vec<_>>(), old_segments, "its cold segments");
    let mut walked = first_three;
    walked.extend(collect(old_iter));
    assert_eq!(walked, old, "an iterator created before compact, consumed after");
    let mut walked_back = last_two;
    walked_back.extend(collect(old_back));
    walked_back.reverse();
    assert_eq!(walked_back, old, "a reverse iterator created before compact, consumed after");
    // While the old snapshot lives, its files do too.
    for name in old_cold_names.iter().chain(&old_logs) {
        assert!(temp.path().join(name).exists(), "{name} is kept while a snapshot reads it");
    }

    // A snapshot taken after sees the new state.
    let new_snapshot = f.db().snapshot();
    check_reads(&new_snapshot, &new, &f.probe_keys(), &mut rng, "new snapshot");
    check_fixture(&f, &mut rng, "after compact, old snapshot alive");

    // Once the old readers are gone, the next write retires their files.
    drop(old_snapshot);
    drop(new_snapshot);
    f.put(b"trigger", b"a write after the readers left", None);
    assert_only_live_files(f.db(), temp.path(), "after the old readers left");
    for name in old_cold_names.iter().chain(&old_logs) {
        let path = temp.path().join(name);
        let live = f.db().cold_segments().iter().any(|s| s.path() == path);
        assert!(live || name.ends_with(".log") || !path.exists(), "{name} is deleted once no reader needs it");
    }
    check_fixture(&f, &mut rng, "after the old readers left");
    f.reopen();
    assert_eq!(f.db().stats().orphans_removed, 0, "nothing was left behind for open to remove");
    check_fixture(&f, &mut rng, "after reopen");
}

/// Two compactions whose retirements finish out of order: the first waits for a snapshot
/// that still reads the old table, the second does not. Neither the database nor that
/// snapshot may then read a version older than the newest one (the newer cold row must not
/// be shadowed by an index entry the first retirement has not removed yet).
#[test]
fn a_newer_version_stays_visible_when_retirements_finish_out_of_order() {
    let temp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(temp.path(), options()).expect("open");
    db.put(b"k", b"v1", None).expect("put");
    db.seal().expect("seal"); // v1 is warm
    let early = db.snapshot(); // keeps v1 in the index when v2 supersedes it
    db.put(b"k", b"v2", None).expect("put"); // v2 is hot
    let late = db.snapshot(); // sees v2; holds the table from before the first compaction
    db.compact().expect("compact"); // v1 goes cold; its retirement waits for `late`
    drop(early);
    db.seal().expect("seal"); // v2 is warm
    db.compact().expect("compact"); // v2 goes cold; this retirement finishes at once
    let content = |r: strata::Result<Option<Record>>| r.expect("get").map(|r| r.content().to_vec());
    let contents = |it: Iter| it.map(|r| r.expect("item").content().to_vec()).collect::<Vec<_>>();
    assert_eq!(content(late.get(b"k")), Some(b"v2".to_vec()), "the snapshot reads what it read when taken");
    assert_eq!(contents(late.iter()), vec![b"v2".to_vec()], "the snapshot's iteration");
    assert_eq!(content(db.get(b"k")), Some(b"v2".to_vec()), "the database reads the newest version");
    assert_eq!(contents(db.iter()), vec![b"v2".to_vec()], "the database's iteration");
    drop(late);
    db.put(b"other", b"x", None).expect("put");
    assert_eq!(content(db.get(b"k")), Some(b"v2".to_vec()), "after the retirements finished");
}

// ---- what compaction drops ---------------------------------------------------------------------

const DIM32: usize = 32;

/// 600 keys with 64-byte content and 32-dimension embeddings, each written three times
/// (sealed in between, so versions lie in different segments); one in seven deleted, some
/// third versions expired. Returns the fixture, not yet compacted, and the live records.
fn garbage_dataset(dir: &Path, rng: &mut StdRng) -> (Fixture, Vec<Entry>) {
    let opts = Options::new().embedding_dim(DIM32).durability(Durability::None).segment_bytes_max(64 << 10).auto_compact(false);
    let mut f = Fixture::new(dir, opts);
    let vector = |rng: &mut StdRng| -> Vec<f32> { (0..DIM32).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    let key = |i: u32| format!("memory/agent-{:02}/note-{i:06}", i % 13).into_bytes();
    for round in 0..3 {
        for i in 0..600 {
            let content = random_bytes(rng, 64);
            let embedding = vector(rng);
            if round == 2 && i % 10 == 0 {
                f.put_ttl(&key(i), &content, Some(&embedding), 1001);
            } else {
                f.put(&key(i), &content, Some(&embedding));
            }
        }
        f.seal();
    }
    for i in (0..600).filter(|i| i % 7 == 3) {
        f.delete(&key(i));
    }
    f.seal();
    f.clock.advance(2_000); // the TTL'd records expire
    let expected = f.live_entries();
    (f, expected)
}

#[test]
fn compact_drops_overwritten_versions_tombstones_and_expired_records() {
    let mut rng = rng_for(7, &[5]);
    let temp = tempfile::tempdir().expect("tempdir");
    let (mut f, expected) = garbage_dataset(temp.path(), &mut rng);
    let before = f.db().stats();
    assert!(before.disk_bytes > 3 * before.live_bytes, "the log holds three versions of everything: {before:?}");

    f.compact();
    let stats = f.db().stats();
    let segments = f.db().cold_segments();
    let total_rows: usize = segments.iter().map(ColdSegment::rows).sum();
    assert_eq!(total_rows, expected.len(), "one cold row per live key: no old version, tombstone or expired record");
    assert_eq!(cold_rows_of(&segments, DIM32, "dropped").into_iter().map(|(e, _)| e).collect::<Vec<_>>(), expected);
    assert_eq!(stats.live_records, expected.len() as u64);
    assert_eq!(stats.live_bytes, before.live_bytes, "compaction changed no live byte");
    assert_eq!(stats.cold.records, expected.len() as u64);
    assert_eq!((stats.warm.records, stats.warm.segments, stats.hot.records), (0, 0, 0), "{stats:?}");
    assert_eq!(stats.cold.segments, segments.len() as u64);
    let cold_disk: u64 = segments.iter().map(|s| std::fs::metadata(s.path()).expect("cold file").len()).sum();
    assert_eq!(stats.cold.disk_bytes, cold_disk, "cold disk bytes are the files' sizes");
    let dir_bytes: u64 = listing(temp.path()).iter().filter(|(n, _)| n != "LOCK").map(|(_, len)| len).sum();
    assert_eq!(stats.disk_bytes, dir_bytes, "disk_bytes counts every file left, and only those: {:?}", listing(temp.path()));
    assert_only_live_files(f.db(), temp.path(), "after dropping");
    // What is left is the live data plus the columns' fixed cost per row (two 8-byte
    // offsets, seq, expiry, a 4-byte row checksum, filter and fence bits: under 40 bytes)
    // and per file (header, padding, footer: under 2 KiB): no dropped version survives.
    let bound = stats.live_bytes + 40 * expected.len() as u64 + 2048 * (segments.len() as u64 + 2);
    assert!(stats.disk_bytes <= bound, "disk {} > live {} + fixed costs = {bound}: {stats:?}", stats.disk_bytes, stats.live_bytes);
    check_fixture(&f, &mut rng, "after dropping");
    f.reopen();
    check_fixture(&f, &mut rng, "after dropping and reopen");
}

/// The space target for a small-record workload (64-byte content, 32 dimensions): after a
/// full compaction, disk bytes are at most 1.15 x the live bytes.
#[test]
fn space_after_compact_is_at_most_1_15_times_the_live_bytes() {
    // The record shape: 64-byte content, 768-dim embeddings; with overwrites and
    // deletions, so that compaction has dead versions to drop.
    let temp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(temp.path(), Options::new().embedding_dim(768).durability(Durability::None)).expect("open");
    let mut rng = rng_for(7, &[5]);
    let mut live = 0usize;
    for round in 0..3u32 {
        for i in 0..300u32 {
            let embedding: Vec<f32> = (0..768).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let content = random_bytes(&mut rng, 64);
            db.put(format!("doc/{i:08}").as_bytes(), &content, Some(&embedding)).expect("put");
            if round == 2 && i % 5 == 0 {
                db.delete(format!("doc/{i:08}").as_bytes()).expect("delete");
            }
        }
        db.seal().expect("seal");
    }
    live += (0..300u32).filter(|i| i % 5 != 0).count();
    db.compact().expect("compact");
    let stats = db.stats();
    assert_eq!(stats.live_records, live as u64);
    let ratio = stats.disk_bytes as f64 / stats.live_bytes as f64;
    assert!(ratio <= 1.15, "disk bytes after compact are {ratio:.3} x the live bytes, at most 1.15 wanted: {stats:?}");
}

// ---- the columns hold no copy ------------------------------------------------------------------

#[test]
fn cold_segments_and_records_outlive_the_compaction_that_deletes_their_files() {
    let mut rng = rng_for(7, &[6]);
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(4096));
    for i in 0..200u32 {
        let embedding = (i % 3 != 0).then(|| emb(&mut rng));
        let content = random_bytes(&mut rng, (i % 70) as usize);
        if i % 11 == 0 {
            f.put_ttl(&key_for(i), &content, embedding.as_deref(), 1 << 40);
        } else {
            f.put(&key_for(i), &content, embedding.as_deref());
        }
    }
    f.seal();
    f.compact();
    let kept = f.db().cold_segments();
    assert!(kept.len() >= 2);
    let rows = cold_rows_of(&kept, DIM, "kept");
    assert_eq!(rows, f.cold_rows(), "columns agree with the records (seqs and expiries included)");
    // Column values agree with what get returns for each row.
    for (entry, _) in &rows {
        let record = f.db().get(&entry.key).expect("get").expect("live");
        assert_eq!(&Entry::of(&record), entry, "get agrees with the cold row");
    }
    let images: Vec<_> = kept.iter().map(column_image).collect();
    let cold_records: Vec<Record> = f.db().iter().map(|r| r.expect("item")).collect();
    let record_images: Vec<Entry> = cold_records.iter().map(Entry::of).collect();
    let kept_paths: Vec<std::path::PathBuf> = kept.iter().map(|s| s.path().to_path_buf()).collect();

    // Replace every record and compact: the kept segments' files are deleted.
    for i in 0..200u32 {
        f.put(&key_for(i), b"replaced", None);
    }
    f.seal();
    f.compact();
    f.put(b"trigger", b"retire", None);
    for path in &kept_paths {
        assert!(!path.exists(), "{} was deleted by the compaction that replaced it", path.display());
    }
    for (segment, image) in kept.iter().zip(&images) {
        assert_eq!(&column_image(segment), image, "cold segment {} reads the same bytes after its file is gone", segment.id());
    }
    assert_eq!(cold_records.iter().map(Entry::of).collect::<Vec<_>>(), record_images, "cold records outlive their file");
    assert_eq!(cold_rows_of(&kept, DIM, "kept after deletion"), rows);
    check_fixture(&f, &mut rng, "after replacing");
    drop(kept);
    drop(cold_records);
}

// ---- checkpoint, edge calls ----------------------------------------------------------------------

#[test]
fn checkpoint_of_a_database_with_a_cold_tier_opens_with_the_same_records() {
    let mut rng = rng_for(7, &[7]);
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(4096));
    for i in 0..300 {
        random_write(&mut f, &mut rng, &key_for(i), 0.0);
    }
    f.seal();
    f.compact();
    for i in (0..300).step_by(4) {
        random_write(&mut f, &mut rng, &key_for(i), 0.3);
    }
    f.seal();
    for i in (1..300).step_by(5) {
        random_write(&mut f, &mut rng, &key_for(i), 0.3);
    }
    let expected = f.live_entries();
    let expected_cold = collect(f.db().iter_tier(Tier::Cold));
    let parent = tempfile::tempdir().expect("tempdir");
    let dest = parent.path().join("copy");
    f.db().checkpoint(&dest).expect("checkpoint");
    // Changes after the checkpoint do not reach it, and compacting the source leaves it intact.
    f.put(b"after", b"not in the copy", None);
    f.seal();
    f.compact();

    let copy = Db::open(&dest, f.options.clone()).expect("the checkpoint opens");
    assert_eq!(collect(copy.iter()), expected, "the checkpoint holds the same records, seqs included");
    assert_eq!(collect(copy.iter_tier(Tier::Cold)), expected_cold, "with the same cold tier");
    assert_eq!(copy.stats().orphans_removed, 0, "a checkpoint leaves no orphan");
    copy.verify().expect("the checkpoint verifies");
    copy.seal().expect("seal in the copy");
    copy.compact().expect("compact in the copy");
    assert_eq!(collect(copy.iter()), expected, "compacting the copy keeps its records");
    copy.close().expect("close");
    drop(copy);
    let copy = Db::open(&dest, f.options.clone().read_only(true)).expect("reopen the copy");
    assert_eq!(collect(copy.iter()), expected);
    // The source is untouched by what happened in the copy (hard links are never written).
    check_fixture(&f, &mut rng, "source after the copy compacted");
    f.db().verify().expect("the source verifies");
}

#[test]
fn compact_on_empty_repeated_or_nothing_sealed_keeps_every_record() {
    let mut rng = rng_for(7, &[8]);
    let temp = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::new(temp.path(), options().cold_segment_bytes_max(4096));

    // Empty database.
    f.compact();
    f.compact();
    assert!(f.db().cold_segments().is_empty(), "nothing to compact, no cold segment");
    assert!(cold_file_names(temp.path()).is_empty());
    check_fixture(&f, &mut rng, "empty");
    f.reopen();
    check_fixture(&f, &mut rng, "empty, reopened");

    // Nothing sealed: compact seals first, so the hot records go cold too.
    for i in 0..100 {
        random_write(&mut f, &mut rng, &key_for(i), 0.0);
    }
    f.compact();
    assert_eq!(f.db().stats().hot.records, 0, "compact seals the active segment first");
    assert_eq!(f.db().stats().cold.records, f.live().len() as u64, "every live record is cold");
    check_fixture(&f, &mut rng, "nothing sealed");

    // Compacted twice in a row: the second finds nothing new.
    let rows = cold_rows_of(&f.db().cold_segments(), DIM, "first compact");
    assert_eq!(rows, f.cold_rows());
    f.compact();
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "second compact"), rows, "a second compact changes no row");
    check_fixture(&f, &mut rng, "compacted twice");
    // A seal with nothing hot, then compact: still the same.
    f.seal();
    f.compact();
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "third compact"), rows);
    // Hot writes on top, compact without seal: they are merged into the cold tier.
    for i in 50..80 {
        random_write(&mut f, &mut rng, &key_for(i), 0.3);
    }
    f.compact();
    assert_eq!(cold_rows_of(&f.db().cold_segments(), DIM, "compact with only hot"), f.cold_rows());
    assert_eq!(f.db().stats().hot.records + f.db().stats().warm.records, 0, "nothing left hot or warm");
    check_fixture(&f, &mut rng, "cold + hot, compacted");
    f.reopen();
    check_fixture(&f, &mut rng, "reopened");
    assert_eq!(f.db().stats().orphans_removed, 0);
    f.db().verify().expect("verify");
}

#[test]
fn compact_on_a_read_only_handle_is_read_only_and_on_a_closed_one_an_error() {
    let temp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(temp.path(), options()).expect("open");
    for i in 0..50u32 {
        db.put(&key_for(i), b"content", None).expect("put");
    }
    db.seal().expect("seal");
    db.put(b"hot", b"hot", None).expect("put");
    db.close().expect("close");
    let before_records = collect(db.iter());
    let before_files = listing(temp.path());
    let result = db.compact();
    assert!(result.is_err(), "compact on a closed handle: {result:?}");
    assert_eq!(listing(temp.path()), before_files, "a refused compact changes no file");
    assert_eq!(collect(db.iter()), before_records, "reads keep working after close");
    drop(db);

    let before_files = listing(temp.path());
    let read_only = Db::open(temp.path(), options().read_only(true)).expect("read-only open");
    let result = read_only.compact();
    assert!(matches!(result, Err(Error::ReadOnly)), "compact on a read-only handle: {result:?}");
    assert_eq!(listing(temp.path()), before_files, "a read-only compact changes no file");
    assert_eq!(collect(read_only.iter()), before_records);
    assert!(read_only.cold_segments().is_empty());
    drop(read_only);

    // The database still compacts when opened for writing.
    let db = Db::open(temp.path(), options()).expect("open");
    db.compact().expect("compact");
    assert_eq!(collect(db.iter()), before_records);
    assert_eq!(db.cold_segments().iter().map(ColdSegment::rows).sum::<usize>(), 51, "the 50 sealed and the hot one");
}
