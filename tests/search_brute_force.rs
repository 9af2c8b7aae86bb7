//! Vector search against brute force over a model, for every metric, across hot, warm and
//! cold records with overwrites, deletes, TTLs, prefixes, filters and min_score.
//!
//! Embeddings have small integer components, so dot products and squared distances are
//! exact in f32 and the brute force (done here with the same f32 operations for cosine)
//! must agree with the engine bit for bit: keys, order and scores.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestClock;
use proptest::prelude::*;
use strata::{Db, Durability, Error, Metric, Options, Search, Tier};

// Long enough for two whole SIMD vectors and a tail on every instruction set.
const DIM: usize = 19;

#[derive(Clone, Debug)]
enum Op {
    Put { key: Vec<u8>, embedding: Option<Vec<f32>>, ttl_ms: Option<u64> },
    Delete { key: Vec<u8> },
    Seal,
    Compact,
    Advance(u64),
}

#[derive(Clone, Debug)]
struct Stored {
    content: Vec<u8>,
    embedding: Option<Vec<f32>>,
    expires_at: Option<u64>,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(vec![&b"a/"[..], b"b/", b"ab", b"\xff"]), 0u8..24).prop_map(|(p, i)| [p, &[i]].concat())
}

fn vector() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-4i8..=4).prop_map(f32::from), DIM)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), prop::option::weighted(0.85, vector()), prop::option::weighted(0.2, 1u64..40))
            .prop_map(|(key, embedding, ttl_ms)| Op::Put { key, embedding, ttl_ms }),
        3 => key().prop_map(|key| Op::Delete { key }),
        2 => Just(Op::Seal),
        2 => Just(Op::Compact),
        2 => (0u64..30).prop_map(Op::Advance),
    ]
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

fn query() -> impl Strategy<Value = Query> {
    let metric = prop::sample::select(vec![Metric::Cosine, Metric::Dot, Metric::L2]);
    let prefix = prop::option::weighted(
        0.3,
        prop::sample::select(vec![b"a".to_vec(), b"a/".to_vec(), b"b/".to_vec(), b"\xff".to_vec(), b"zz".to_vec()]),
    );
    (vector(), 0usize..12, metric, prop::option::weighted(0.3, -20i8..20), prefix, any::<bool>()).prop_map(
        |(mut vector, k, metric, min, prefix, even_filter)| {
            if vector.iter().all(|&v| v == 0.0) {
                vector[0] = 1.0; // cosine needs a non-zero query
            }
            Query { vector, k, metric, min_score: min.map(f32::from), prefix, even_filter }
        },
    )
}

fn exact_score(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    let dot: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
    match metric {
        Metric::Dot => dot,
        Metric::L2 => q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::Cosine => {
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

fn brute_force(model: &BTreeMap<Vec<u8>, Stored>, now: u64, q: &Query) -> Vec<(Vec<u8>, f32)> {
    let mut hits: Vec<(Vec<u8>, f32)> = model
        .iter()
        .filter(|(_, s)| s.expires_at.is_none_or(|e| e > now))
        .filter(|(k, _)| q.prefix.as_ref().is_none_or(|p| k.starts_with(p)))
        .filter(|(k, _)| !q.even_filter || k.last().is_some_and(|b| b % 2 == 0))
        .filter_map(|(k, s)| s.embedding.as_ref().map(|e| (k.clone(), exact_score(q.metric, &q.vector, e))))
        .filter(|(_, score)| match (q.min_score, q.metric) {
            (None, _) => true,
            (Some(m), Metric::L2) => *score <= m,
            (Some(m), _) => *score >= m,
        })
        .collect();
    let closer = |a: &(Vec<u8>, f32), b: &(Vec<u8>, f32)| {
        let by_score = if q.metric == Metric::L2 { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) };
        by_score.then_with(|| a.0.cmp(&b.0))
    };
    hits.sort_by(closer);
    hits.truncate(q.k);
    hits
}

fn search_of(q: &Query) -> Search<'_> {
    let mut s = Search::new(&q.vector).k(q.k).metric(q.metric);
    if let Some(m) = q.min_score {
        s = s.min_score(m);
    }
    if let Some(p) = &q.prefix {
        s = s.prefix(p);
    }
    if q.even_filter {
        s = s.filter(|r| r.key().last().is_some_and(|b| b % 2 == 0));
    }
    s
}

fn run(ops: &[Op], queries: &[Query], threads: usize) {
    run_with_segments_of(ops, queries, threads, 4096);
}

/// `run` with log and cold segments of at most `segment_bytes`. A snapshot is taken halfway
/// through `ops`: after the rest (overwrites, deletes, seals, compactions), it still answers
/// as the model did then — versions superseded since are found, newer ones are not — while
/// the database answers as the final model does, before and after a reopen (which rebuilds
/// the hot segment's mirror from the file).
fn run_with_segments_of(ops: &[Op], queries: &[Query], threads: usize, segment_bytes: u64) {
    run_with(ops, queries, threads, segment_bytes, 0);
}

/// `run_with_segments_of` with each put's content padded to at least `content_bytes`; gets
/// of every key in the model are checked too, before and after the reopen.
fn run_with(ops: &[Op], queries: &[Query], threads: usize, segment_bytes: u64, content_bytes: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let options = || {
        clock.install(
            Options::new()
                .embedding_dim(DIM)
                .durability(Durability::None)
                .threads(threads)
                .segment_bytes_max(segment_bytes)
                .cold_segment_bytes_max(segment_bytes)
                .auto_compact(false),
        )
    };
    let db = Db::open(dir.path(), options()).expect("open");
    let mut model: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
    let halfway = ops.len() / 2;
    let mut snapshot = None;
    for (i, op) in ops.iter().enumerate() {
        if i == halfway {
            snapshot = Some((db.snapshot(), model.clone(), clock.now()));
        }
        match op {
            Op::Put { key, embedding, ttl_ms } => {
                let mut content = format!("content {i}").into_bytes();
                content.resize(content.len().max(content_bytes), i as u8);
                match ttl_ms {
                    Some(ms) => db.put_with_ttl(key, &content, embedding.as_deref(), Duration::from_millis(*ms)),
                    None => db.put(key, &content, embedding.as_deref()),
                }
                .expect("put");
                let expires_at = ttl_ms.map(|ms| clock.now() + ms);
                model.insert(key.clone(), Stored { content, embedding: embedding.clone(), expires_at });
            }
            Op::Delete { key } => {
                db.delete(key).expect("delete");
                model.remove(key);
            }
            Op::Seal => db.seal().expect("seal"),
            Op::Compact => db.compact().expect("compact"),
            Op::Advance(ms) => clock.advance(2 * ms),
        }
    }
    let now = clock.now();
    // A snapshot judges TTLs at the time it was taken.
    let (snapshot, snapshot_model, snapshot_now) = snapshot.unwrap_or_else(|| (db.snapshot(), model.clone(), now));
    let hits_of = |hits: Vec<strata::Hit>| -> Vec<(Vec<u8>, f32)> { hits.into_iter().map(|h| (h.key, h.score)).collect() };
    for q in queries {
        assert_eq!(hits_of(db.search(&search_of(q)).expect("search")), brute_force(&model, now, q), "search {q:?}");
        let from_snapshot = hits_of(snapshot.search(&search_of(q)).expect("search"));
        assert_eq!(from_snapshot, brute_force(&snapshot_model, snapshot_now, q), "snapshot search {q:?}");
    }
    let batch: Vec<Search<'_>> = queries.iter().map(search_of).collect();
    let got = db.search_batch(&batch).expect("search_batch");
    for (q, hits) in queries.iter().zip(got) {
        assert_eq!(hits_of(hits), brute_force(&model, now, q), "batch member {q:?}");
    }
    drop(snapshot);
    check_gets(&db, &model, now, "before the reopen");
    db.close().expect("close");
    let db = Db::open(dir.path(), options()).expect("reopen");
    let got = db.search_batch(&batch).expect("search_batch after reopen");
    for (q, hits) in queries.iter().zip(got) {
        assert_eq!(hits_of(hits), brute_force(&model, now, q), "after reopen, batch member {q:?}");
    }
    check_gets(&db, &model, now, "after the reopen");
}

/// Every key of the model reads back as stored (content and embedding), or as absent once
/// its TTL has passed at `now`.
fn check_gets(db: &Db, model: &BTreeMap<Vec<u8>, Stored>, now: u64, when: &str) {
    for (key, stored) in model {
        let got = db.get(key).expect("get");
        if stored.expires_at.is_some_and(|at| at <= now) {
            assert!(got.is_none(), "{when}: expired key {key:?} is still read");
            continue;
        }
        let record = got.unwrap_or_else(|| panic!("{when}: key {key:?} is missing"));
        assert!(record.content() == &stored.content[..], "{when}: content of {key:?}");
        assert_eq!(record.embedding(), stored.embedding.as_deref(), "{when}: embedding of {key:?}");
    }
}

type StdRng = rand::rngs::StdRng;

/// A vector of small integers (exact sums, so ties are real ties).
fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    use rand::Rng;
    (0..DIM).map(|_| f32::from(rng.gen_range(-4i8..=4))).collect()
}

/// One random write to `key`, in `one_in` draws each: a delete, a put without an embedding,
/// a put with a TTL; otherwise a put with an embedding.
fn random_op(rng: &mut StdRng, key: Vec<u8>, one_in: u32) -> Op {
    use rand::Rng;
    match rng.gen_range(0..one_in) {
        0 => Op::Delete { key },
        1 => Op::Put { key, embedding: None, ttl_ms: None },
        2 => Op::Put { key, embedding: Some(random_vector(rng)), ttl_ms: Some(rng.gen_range(1..40)) },
        _ => Op::Put { key, embedding: Some(random_vector(rng)), ttl_ms: None },
    }
}

/// A hot segment far past `REGION_BYTES` (4 MiB: 3 000 puts of 4 KiB content, never
/// sealed), so that most hot records are read from the writer's maps of the file rather
/// than from their commit buffers — by gets, by searches (file order) and by a snapshot
/// taken halfway, with overwrites, deletes and TTLs — and then from the mirror that
/// recovery rebuilds at the reopen.
#[test]
fn a_hot_segment_of_several_regions_agrees_with_brute_force() {
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(11);
    let mut ops = Vec::new();
    for n in 0..3_000u32 {
        let key = format!("k{:04}", rng.gen_range(0..1_200)).into_bytes();
        ops.push(random_op(&mut rng, key, 12));
        if n % 1_000 == 999 {
            ops.push(Op::Advance(10));
        }
    }
    let queries: Vec<Query> = [Metric::Dot, Metric::L2, Metric::Cosine]
        .into_iter()
        .enumerate()
        .map(|(i, metric)| {
            let mut v = random_vector(&mut rng);
            v[0] = 5.0;
            Query { vector: v, k: if i == 0 { 2_000 } else { 10 }, metric, min_score: None, prefix: None, even_filter: i == 2 }
        })
        .collect();
    for threads in [1, 2] {
        run_with(&ops, &queries, threads, 64 << 20, 4096);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn search_agrees_with_brute_force(ops in prop::collection::vec(op(), 0..120), queries in prop::collection::vec(query(), 1..6), threads in 1usize..4) {
        run(&ops, &queries, threads);
    }
}

/// Many sealed segments (each cut into several units of work) and a hot one over a cold
/// tier, with cold rows shadowed by later versions, many superseded versions of a key in
/// the log, deletes and TTLs, and keys spread over the query prefixes: every thread count
/// gives brute force's answer (a key offered from a superseded version, or from a cold row
/// a newer version shadows, would show as a duplicate or a stale hit; one wrongly hidden as
/// a missing hit).
#[test]
fn a_search_split_among_threads_over_a_large_index_agrees_with_brute_force() {
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(7);
    let prefixes: [&[u8]; 4] = [b"a/", b"b/", b"ab", b"\xff"];
    let key_of = |i: u32| [prefixes[i as usize % 4], &i.to_be_bytes()[..]].concat();
    let mut ops = Vec::new();
    // 8 000 keys compacted into cold rows.
    for i in 0..8_000 {
        ops.push(Op::Put { key: key_of(i), embedding: Some(random_vector(&mut rng)), ttl_ms: None });
    }
    ops.push(Op::Compact);
    // About 22 000 index keys over them: overwrites (some dropping the embedding), deletes,
    // TTLs, new keys, sealed in several segments, the last ones left hot.
    for n in 0..30_000u32 {
        let key = key_of(rng.gen_range(0..48_000));
        ops.push(random_op(&mut rng, key, 10));
        if n % 5_000 == 4_999 {
            ops.push(Op::Seal);
            ops.push(Op::Advance(10));
        }
    }
    let mut queries: Vec<Query> = Vec::new();
    for (i, metric) in [Metric::Dot, Metric::L2, Metric::Cosine].into_iter().cycle().take(9).enumerate() {
        let mut v = random_vector(&mut rng);
        v[0] = 5.0; // non-zero for cosine
        let prefix = match i % 3 {
            0 => None,
            1 => Some(b"a".to_vec()),
            _ => Some(b"b/".to_vec()),
        };
        // Some lists hold every live record in range: a key decided twice or not at all
        // shows whether or not it would rank among the closest.
        let k = if i % 2 == 0 { 40_000 } else { 1 + 7 * i };
        queries.push(Query { vector: v, k, metric, min_score: None, prefix, even_filter: i % 4 == 3 });
    }
    for threads in [1, 2, 3] {
        run_with_segments_of(&ops, &queries, threads, 256 * 1024);
    }
}

#[test]
fn arguments_are_checked_and_edges_behave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::new().embedding_dim(3)).expect("open");
    assert_eq!(db.nearest(&[1.0, 0.0, 0.0], 5).expect("empty database"), Vec::new());
    db.put(b"x", b"", Some(&[1.0, 2.0, 3.0])).expect("put");
    db.put(b"no-embedding", b"", None).expect("put");
    assert!(matches!(db.nearest(&[1.0, 0.0], 5), Err(Error::InvalidArgument { .. })), "dimension mismatch");
    assert!(matches!(db.nearest(&[f32::NAN, 0.0, 0.0], 5), Err(Error::InvalidArgument { .. })), "non-finite query");
    assert!(matches!(db.nearest(&[0.0, 0.0, 0.0], 5), Err(Error::InvalidArgument { .. })), "cosine of a zero query");
    assert_eq!(db.search(&Search::new(&[0.0, 0.0, 0.0]).metric(Metric::L2)).expect("L2 of a zero query").len(), 1);
    assert_eq!(db.nearest(&[1.0, 0.0, 0.0], 0).expect("k = 0"), Vec::new());
    let hits = db.nearest(&[1.0, 2.0, 3.0], 100).expect("k larger than the data");
    assert_eq!(hits.len(), 1, "a record without an embedding is never a hit");
    assert_eq!(hits[0].key, b"x");
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    let batch = db.search_batch(&[Search::new(&[1.0, 0.0, 0.0]), Search::new(&[1.0])]);
    assert!(matches!(batch, Err(Error::InvalidArgument { .. })), "one bad query fails the batch");
    let no_dim = tempfile::tempdir().expect("tempdir");
    let plain = Db::open(no_dim.path(), Options::new()).expect("open");
    assert!(matches!(plain.nearest(&[1.0], 1), Err(Error::InvalidArgument { .. })), "no embeddings stored");
}

/// A cold segment of several norms-cache chunks (8192 rows each), with a tenant's key range
/// straddling a chunk boundary: cosine searches compute norms inline (a prefix scan covers
/// chunks only in part), fill the cache (a full scan), then read it — each time equal to
/// brute force, and a batch equal to its members searched alone.
#[test]
fn cosine_norms_cached_per_chunk_agree_with_brute_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM).threads(2).durability(Durability::None)).expect("open");
    let mut model: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
    let vector_of = |i: usize, salt: usize| -> Vec<f32> { (0..DIM).map(|j| ((i * 7 + j * 3 + salt) % 9) as f32 - 4.0).collect() };
    let key_of = |i: usize| format!("t{}/{i:05}", i / 7000).into_bytes();
    for i in 0..21_000 {
        let embedding = match i {
            _ if i % 13 == 0 => None,
            _ if i % 17 == 0 => Some(vec![0.0; DIM]),
            _ => Some(vector_of(i, 0)),
        };
        db.put(&key_of(i), b"c", embedding.as_deref()).expect("put");
        model.insert(key_of(i), Stored { content: b"c".to_vec(), embedding, expires_at: None });
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    assert_eq!(db.iter_tier(Tier::Cold).count(), 21_000, "every record is cold");
    for i in (0..21_000).step_by(29) {
        let embedding = Some(vector_of(i, 5));
        db.put(&key_of(i), b"new", embedding.as_deref()).expect("overwrite");
        model.insert(key_of(i), Stored { content: b"new".to_vec(), embedding, expires_at: None });
    }
    for i in (3..21_000).step_by(31) {
        db.delete(&key_of(i)).expect("delete");
        model.remove(&key_of(i));
    }
    let query = |metric: Metric, prefix: Option<&[u8]>, salt: usize| Query {
        vector: vector_of(1, salt).iter().map(|v| v + 0.5).collect(),
        k: 25,
        metric,
        min_score: None,
        prefix: prefix.map(<[u8]>::to_vec),
        even_filter: false,
    };
    let tenant = query(Metric::Cosine, Some(b"t1/"), 1);
    let everyone = query(Metric::Cosine, None, 2);
    let check = |q: &Query, what: &str| {
        let got: Vec<(Vec<u8>, f32)> = db.search(&search_of(q)).expect("search").into_iter().map(|h| (h.key, h.score)).collect();
        assert_eq!(got, brute_force(&model, 0, q), "{what}");
        got
    };
    check(&tenant, "prefix scan, norms computed inline");
    check(&everyone, "full scan, norms cached as they are computed");
    check(&everyone, "full scan from the cache");
    check(&tenant, "prefix scan from the cache");
    let members = [
        tenant.clone(),
        everyone.clone(),
        query(Metric::L2, None, 3),
        query(Metric::Dot, Some(b"t2/"), 4),
        query(Metric::Cosine, Some(b"t0/"), 6),
    ];
    let batch: Vec<Search<'_>> = members.iter().map(search_of).collect();
    for (q, hits) in members.iter().zip(db.search_batch(&batch).expect("search_batch")) {
        let hits: Vec<(Vec<u8>, f32)> = hits.into_iter().map(|h| (h.key, h.score)).collect();
        assert_eq!(hits, check(q, "batch member alone"), "batch member {q:?}");
    }
}

/// L2 over real-valued vectors of mixed magnitudes, many of them near-copies of a query
/// (where `‖q‖² + ‖r‖² − 2q·r` cancels): the cold scan ranks by a lower bound from the dot
/// product and computes the exact distance only for rows that may be kept, so it must
/// return exactly the best rows by the exact distance. Each record's exact distance is
/// taken from the engine itself, by a search restricted to that one key.
#[test]
fn l2_pruned_by_lower_bounds_returns_the_exact_best() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM).threads(2).durability(Durability::None)).expect("open");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let queries: Vec<Vec<f32>> = (0..4).map(|_| (0..DIM).map(|_| next()).collect()).collect();
    let mut keys = Vec::new();
    for i in 0..1500usize {
        let scale = [1.0f32, 1e-3, 1e3][i % 3];
        let embedding: Vec<f32> = if i % 4 == 0 {
            let near = 10f32.powi(-((i % 7) as i32));
            queries[i / 4 % queries.len()].iter().map(|&v| v + next() * near).collect()
        } else {
            (0..DIM).map(|_| next() * scale).collect()
        };
        let key = format!("r{i:05}").into_bytes();
        db.put(&key, b"", Some(&embedding)).expect("put");
        keys.push(key);
        if i == 1300 {
            db.seal().expect("seal");
            db.compact().expect("compact"); // the rest stays hot: both paths are checked
            assert_eq!(db.iter_tier(Tier::Cold).count(), 1301);
        }
    }
    for (qi, q) in queries.iter().enumerate() {
        let exact = |key: &[u8]| db.search(&Search::new(q).k(1).metric(Metric::L2).prefix(key)).expect("one-key search")[0].score;
        let mut want: Vec<(Vec<u8>, f32)> = keys.iter().map(|k| (k.clone(), exact(k))).collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let got: Vec<(Vec<u8>, f32)> =
            db.search(&Search::new(q).k(10).metric(Metric::L2)).expect("search").into_iter().map(|h| (h.key, h.score)).collect();
        assert_eq!(got, want[..10], "query {qi}: top 10");
        let limit = want[40].1;
        let within: Vec<(Vec<u8>, f32)> = db
            .search(&Search::new(q).k(1000).metric(Metric::L2).min_score(limit))
            .expect("search")
            .into_iter()
            .map(|h| (h.key, h.score))
            .collect();
        let want_within: Vec<(Vec<u8>, f32)> = want.iter().filter(|(_, d)| *d <= limit).cloned().collect();
        assert_eq!(within, want_within, "query {qi}: every row within L2 distance {limit}");
    }
    let batch: Vec<Search<'_>> = queries.iter().map(|q| Search::new(q).k(10).metric(Metric::L2)).collect();
    for (q, hits) in queries.iter().zip(db.search_batch(&batch).expect("batch")) {
        assert_eq!(hits, db.search(&Search::new(q).k(10).metric(Metric::L2)).expect("search"), "batch member alone");
    }
}

/// Scoring reads every embedding without its checksum; the hits' checksums are checked
/// before they are returned. A flipped bit in the embedding of what would be the best hit,
/// in a warm (sealed log) record and then in a cold row, makes the search fail with
/// `Corruption` naming the file, never return the damaged record.
#[test]
fn a_damaged_embedding_in_a_hit_is_reported_not_returned() {
    const D: usize = 8;
    let target: Vec<f32> = (0..D).map(|i| 1000.0 + i as f32 * 1.25).collect();
    let target_bytes: Vec<u8> = target.iter().flat_map(|v| v.to_le_bytes()).collect();
    for cold in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Db::open(dir.path(), Options::new().embedding_dim(D)).expect("open");
            for i in 0..50u32 {
                let other: Vec<f32> = (0..D).map(|j| ((i as usize * 7 + j) % 5) as f32).collect();
                db.put(format!("k{i:02}").as_bytes(), b"c", Some(&other)).expect("put");
            }
            db.put(b"target", b"c", Some(&target)).expect("put");
            db.seal().expect("seal");
            if cold {
                db.compact().expect("compact");
            }
            db.close().expect("close");
        }
        let extension = if cold { "cold" } else { "log" };
        let mut damaged = None;
        for entry in std::fs::read_dir(dir.path()).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == extension) {
                let mut bytes = std::fs::read(&path).expect("read");
                if let Some(at) = bytes.windows(target_bytes.len()).position(|w| w == target_bytes) {
                    bytes[at] ^= 0x01; // lowest mantissa bit of the first value: still the best hit
                    std::fs::write(&path, &bytes).expect("write");
                    damaged = Some(path);
                }
            }
        }
        let damaged = damaged.expect("the target embedding is in a file");
        let db = Db::open(dir.path(), Options::new().embedding_dim(D)).expect("reopen: embeddings are not checked at open");
        match db.search(&Search::new(&target).k(3).metric(Metric::L2)) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, damaged, "cold={cold}"),
            other => panic!("cold={cold}: expected Corruption naming {}, got {other:?}", damaged.display()),
        }
        let far: Vec<f32> = vec![-5.0; D];
        let hits = db.search(&Search::new(&far).k(3).metric(Metric::L2)).expect("a search whose hits are intact succeeds");
        assert!(hits.iter().all(|h| h.key != b"target"), "cold={cold}");
    }
}
