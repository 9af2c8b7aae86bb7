//! bench_search: exact vector search over the cold tier, each figure a ratio to a baseline
//! measured in the same run, interleaved with it (baseline-engine-baseline per round), as
//! `bench_core` and `bench_cold` do.
//!
//! Run: `cargo build --release --example bench_search && target/release/examples/bench_search --records 1000000`
//! Flags: `--records N` (1000000), `--dim D` (768), `--content-bytes C` (64), `--rounds R` (3),
//! `--batch B` (64 queries in figure 3), `--batch-metric dot|l2|cosine` (dot),
//! `--warm-records W` (100000, figure 4), `--k K` (10), `--seed S` (42), `--dir PATH` (a
//! temporary directory is made in it; default /tmp), `--phases single,first,ceiling,batch,warm,shadow`
//! (default all).
//!
//! Figures (summarised in BENCHMARKS.md, "Vector search"; each explained in benches/HISTORY.md):
//! 1. one `search(Search::new(q).k(10).metric(m))` (= `nearest(q, 10)` under metric `m`) over
//!    the N cold rows, for Dot, L2 and Cosine (cosine after its first query, which computes
//!    and caches the rows' norms), on a handle with `threads(1)` and one with the default
//!    (every core): embedding bytes scanned per second / memory read bandwidth of as many
//!    threads summing a `Vec<u64>` of the same size (the 2-thread baseline is measured here:
//!    the harness has a 1-thread one only); figure 1' is the first cosine query of a freshly
//!    opened handle (norms computed), measured the same way, and its time / the second's;
//! 2. the ceiling: the same Dot top-k as a plain loop over an in-RAM copy of the embedding
//!    matrix (`Vec<f32>` copied from `cold_segments()`'s columns; a dot product of 8 partial
//!    sums per row, the best 10 kept in a `BinaryHeap`), on 1 and on all cores: strata's time /
//!    the ceiling's (lower is better; 1.0 = as fast as the plain loop). A naive
//!    `iter().zip().map().sum()` dot product (which the compiler cannot vectorise) is timed
//!    too, for information;
//! 3. `search_batch` of B queries against the same B queries as B `search` calls, in turn
//!    (which goes first alternates per round), on both handles: queries per second, batch /
//!    singles;
//! 4. one Dot search over W records left warm (sealed log segments, never compacted) against
//!    the same search over the same W records compacted into the cold tier, on one thread and on every core,
//!    interleaved per round: warm time / cold time; 4', the same for `search_batch` of the B
//!    queries;
//! 5. one Dot search over W compacted records plus W / 5 overwrites of them without an
//!    embedding (live index keys that shadow cold rows and score nothing) against the same
//!    search without the overwrites, one thread: with / without (the per-index-key cost).
//!
//! Order within a round: each timed search follows an untimed search on the same handle (the
//! first search on a handle after searches on the other handle ran 5-25 % slower, whichever
//! metric it was), and the metrics' order rotates from round to round.
//!
//! Workload: keys `doc/{i:08}` (12 B), `--content-bytes` of content and a `--dim`-value f32
//! embedding per record (values in [-1, 1), made from (seed, index) as in `bench_cold`), put in
//! key order with `Durability::None`, then `seal()`, `compact()`, `close()`: every row is cold.
//! The search handles are opened read-only afterwards and warmed up (one query each) so that
//! the files are in the page cache and mapped. Queries: random vectors of the same
//! distribution, from the seed. Progress and diagnostics go to stderr, the table to stdout.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Durability, Hit, Metric, Options, Search};

mod harness;
#[path = "../benches/support.rs"]
mod support;
use harness::*;
use support::*;

struct Config {
    records_count: usize,
    dim: usize,
    content_len: usize,
    rounds: usize,
    batch: usize,
    /// The metric of figure 3's queries.
    batch_metric: Metric,
    k: usize,
    seed: u64,
    dir: Option<PathBuf>,
    /// Records of figures 4 and 5's databases.
    warm_records: usize,
    /// Which figures to measure: `single` (1), `first` (1'), `ceiling` (2), `batch` (3),
    /// `warm` (4, 4'), `shadow` (5).
    phases: Vec<String>,
}

impl Config {
    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        records_count: 1_000_000,
        dim: 768,
        content_len: 64,
        rounds: 3,
        batch: 64,
        batch_metric: Metric::Dot,
        warm_records: 100_000,
        k: 10,
        seed: 42,
        dir: None,
        phases: ["single", "first", "ceiling", "batch", "warm", "shadow"].map(String::from).to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => config.records_count = value()?.parse()?,
            "--dim" => config.dim = value()?.parse()?,
            "--content-bytes" => config.content_len = value()?.parse()?,
            "--rounds" => config.rounds = value()?.parse()?,
            "--batch" => config.batch = value()?.parse()?,
            "--batch-metric" => {
                config.batch_metric = match value()?.as_str() {
                    "dot" => Metric::Dot,
                    "l2" => Metric::L2,
                    "cosine" => Metric::Cosine,
                    other => return Err(format!("--batch-metric {other}: expected dot, l2 or cosine").into()),
                }
            }
            "--k" => config.k = value()?.parse()?,
            "--seed" => config.seed = value()?.parse()?,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--phases" => config.phases = value()?.split(',').map(str::to_string).collect(),
            "--warm-records" => config.warm_records = value()?.parse()?,
            other => return Err(format!("unknown flag {other}; see the header of examples/bench_search.rs").into()),
        }
    }
    if config.records_count == 0 || config.dim == 0 || config.rounds == 0 || config.batch == 0 || config.k == 0 {
        return Err("every count must be at least 1".into());
    }
    if config.records_count > 100_000_000 {
        return Err("at most 100000000 records (keys have 8 digits)".into());
    }
    Ok(config)
}

// ---- the workload ----------------------------------------------------------------------

/// splitmix64: a fast, well-mixed stream from any seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Record `index`'s content and embedding (values in [-1, 1)), as `bench_cold` makes them.
fn fill(seed: u64, index: usize, content: &mut [u8], embedding: &mut [f32]) {
    let mut state = seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for chunk in content.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes()[..chunk.len()]);
    }
    for value in embedding {
        *value = (splitmix(&mut state) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    }
}

/// Loads the data set into a new database at `dir`, seals, compacts and closes it.
fn build(dir: &Path, config: &Config) -> Result<()> {
    build_records(dir, config, config.records_count, true)
}

/// `records` records put in key order and sealed, then compacted into the cold tier when
/// `cold` (else they stay warm).
fn build_records(dir: &Path, config: &Config, records: usize, cold: bool) -> Result<()> {
    let start = Instant::now();
    let db = Db::open(dir, Options::new().embedding_dim(config.dim).durability(Durability::None).auto_compact(false))?;
    let (mut content, mut embedding) = (vec![0u8; config.content_len], vec![0f32; config.dim]);
    for index in 0..records {
        fill(config.seed, index, &mut content, &mut embedding);
        db.put(&key_of(index), &content, Some(&embedding[..]))?;
    }
    db.sync()?;
    db.seal()?;
    let loaded = start.elapsed().as_secs_f64();
    if !cold {
        let stats = db.stats();
        if stats.warm.records != records as u64 {
            return Err(format!("expected every record warm after seal: {stats:?}").into());
        }
        db.close()?;
        eprintln!(
            "  built: {records} warm records, {:.1} MiB of log segments; load + seal {loaded:.1} s",
            mib(stats.warm.disk_bytes as f64)
        );
        return Ok(());
    }
    db.compact()?;
    let stats = db.stats();
    if stats.cold.records != records as u64 || stats.index_entries != 0 {
        return Err(format!("expected every record cold and an empty index after compact: {stats:?}").into());
    }
    db.close()?;
    eprintln!(
        "  built: {records} records, {:.1} MiB of cold segments ({} segments); load + seal {loaded:.1} s, compact {:.1} s",
        mib(stats.cold.disk_bytes as f64),
        stats.cold.segments,
        start.elapsed().as_secs_f64() - loaded
    );
    Ok(())
}

/// A read-only handle on the built database whose searches use `threads` threads (0 = all).
fn open(dir: &Path, config: &Config, threads: usize) -> Result<Db> {
    Ok(Db::open(dir, Options::new().embedding_dim(config.dim).read_only(true).threads(threads))?)
}

fn threads_label(threads: usize) -> String {
    match threads {
        0 => format!("threads(default = {})", cores()),
        n => format!("threads({n})"),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Dot => "Dot",
        Metric::L2 => "L2",
        Metric::Cosine => "Cosine",
    }
}

// ---- baselines -------------------------------------------------------------------------

/// One pass summing `words` on `threads` threads (contiguous parts, one per thread);
/// seconds. With 1 thread this is the harness's `memory_scan`.
fn memory_pass(words: &[u64], threads: usize) -> f64 {
    if threads <= 1 {
        return memory_scan(words).as_secs_f64();
    }
    let start = Instant::now();
    std::thread::scope(|scope| {
        for part in words.chunks(words.len().div_ceil(threads)) {
            scope.spawn(move || black_box(part.iter().fold(0u64, |s, &w| s.wrapping_add(w))));
        }
    });
    start.elapsed().as_secs_f64()
}

/// A kept row of the ceiling's top-k: higher score first, then lower row.
#[derive(Clone, Copy, Debug)]
struct Scored {
    score: f32,
    row: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Greater = better: a higher score, then a lower row (the lower key).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.row.cmp(&self.row))
    }
}

/// The dot product as anyone would write it: one running sum (not vectorisable: the
/// compiler may not reorder float additions).
#[inline(always)]
fn dot_naive(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The dot product with 8 partial sums: the compiler vectorises it (two SSE registers on the
/// x86-64 baseline, one AVX register with `target-cpu=native`).
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The best `k` rows of `rows` (row-major, `dim` values each) by `dot(query, row)`; rows are
/// numbered from `first_row`.
#[inline(always)]
fn top_rows(rows: &[f32], dim: usize, first_row: usize, query: &[f32], k: usize, dot: impl Fn(&[f32], &[f32]) -> f32) -> Vec<Scored> {
    let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let candidate = Scored { score: dot(query, row), row: first_row + i };
        if heap.len() < k {
            heap.push(Reverse(candidate));
        } else if heap.peek().is_some_and(|worst| candidate > worst.0) {
            heap.pop();
            heap.push(Reverse(candidate));
        }
    }
    heap.into_iter().map(|r| r.0).collect()
}

/// The ceiling: top-k by dot product over the in-RAM matrix on `threads` threads (row
/// ranges, merged); best first.
#[inline(never)]
fn ceiling(matrix: &[f32], dim: usize, query: &[f32], k: usize, threads: usize, naive: bool) -> Vec<Scored> {
    let scan = |rows: &[f32], first: usize| {
        if naive {
            top_rows(rows, dim, first, query, k, dot_naive)
        } else {
            top_rows(rows, dim, first, query, k, dot_lanes)
        }
    };
    let mut all = if threads <= 1 {
        scan(matrix, 0)
    } else {
        let rows_per = (matrix.len() / dim).div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = matrix
                .chunks(rows_per * dim)
                .enumerate()
                .map(|(i, part)| {
                    let scan = &scan;
                    scope.spawn(move || scan(part, i * rows_per))
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("a ceiling thread panicked")).collect()
        })
    };
    all.sort_by(|a, b| b.cmp(a));
    all.truncate(k);
    all
}

// ---- measuring -------------------------------------------------------------------------

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

fn gib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / (1u64 << 30) as f64
}

fn keys_of(hits: &[Hit]) -> Vec<Vec<u8>> {
    hits.iter().map(|h| h.key.clone()).collect()
}

/// Checks that a search found `k` hits; returns them.
fn expect_hits(hits: Vec<Hit>, k: usize, what: &str) -> Result<Vec<Hit>> {
    if hits.len() != k {
        return Err(format!("{what}: {} hits, expected {k}", hits.len()).into());
    }
    Ok(hits)
}

/// Figure 1: every (handle, metric) side, one search per round between two memory passes of
/// as many threads as the handle searches with.
fn single_queries(handles: &[(usize, &Db)], words: &[u64], queries: &[Vec<f32>], config: &Config) -> Result<Vec<Figure>> {
    let emb_bytes = (config.records_count * config.dim * 4) as u64;
    let memory_bytes = words.len() as u64 * 8;
    let metrics = [Metric::Dot, Metric::L2, Metric::Cosine];
    // Cosine's first query on each handle computes the norms: done here, untimed (figure 1').
    for &(threads, db) in handles {
        let (hits, seconds) = timed(|| Ok(db.search(&Search::new(&queries[0]).k(config.k).metric(Metric::Cosine))?))?;
        expect_hits(hits, config.k, "cosine")?;
        eprintln!("  {}: first cosine query (norms computed) {seconds:.3} s, untimed for figure 1", threads_label(threads));
    }
    let mut sides: Vec<(usize, Metric, Rounds)> = Vec::new();
    for &(threads, _) in handles {
        for metric in metrics {
            sides.push((threads, metric, Rounds::default()));
        }
    }
    for round in 0..config.rounds {
        let query = &queries[round % queries.len()];
        // Each round starts with the next metric, so that no metric always comes first.
        let per_handle = metrics.len();
        let mut order: Vec<usize> = (0..sides.len()).collect();
        for group in order.chunks_mut(per_handle) {
            group.rotate_left(round % per_handle);
        }
        for &i in &order {
            let (threads, metric, rounds) = &mut sides[i];
            let db = handles.iter().find(|h| h.0 == *threads).ok_or("no handle")?.1;
            let memory_threads = if *threads == 0 { cores() } else { *threads };
            // Untimed: the first search on a handle after searches on the other one ran
            // 5-25 % slower (whichever metric came first), so every timed search follows one.
            db.search(&Search::new(&queries[queries.len() - 1]).k(config.k).metric(*metric))?;
            let before = memory_pass(words, memory_threads);
            let (hits, seconds) = timed(|| Ok(db.search(&Search::new(query).k(config.k).metric(*metric))?))?;
            let after = memory_pass(words, memory_threads);
            expect_hits(hits, config.k, metric_name(*metric))?;
            let (engine, baseline) = (gib_per_s(emb_bytes, seconds), gib_per_s(memory_bytes, (before + after) / 2.0));
            eprintln!(
                "  single round {round}, {}, {}: {:.1} ms = {engine:.2} GiB/s; memory ({memory_threads} thread(s)) {baseline:.2} GiB/s \
                 ({:.1} / {:.1} ms) -> {:.3}",
                threads_label(*threads),
                metric_name(*metric),
                seconds * 1e3,
                before * 1e3,
                after * 1e3,
                engine / baseline
            );
            rounds.push(engine, baseline);
        }
    }
    let mut figures = Vec::new();
    for (threads, metric, rounds) in &sides {
        let memory_threads = if *threads == 0 { cores() } else { *threads };
        let name = match threads {
            1 => format!("1. search {}, threads(1) / 1-thread memory bw", metric_name(*metric)),
            _ => format!("1. search {}, {} / {memory_threads}-thread memory bw", metric_name(*metric), threads_label(*threads)),
        };
        eprintln!("  {name}: per-round ratios {}", rounds.rounds_text());
        figures.push(Figure {
            name,
            engine: format!("{:.2} GiB/s", rounds.engine_median()),
            baseline: format!("{:.2} GiB/s", rounds.baseline_median()),
            ratio: rounds.ratio(),
            target: if *threads == 1 { Target::AtLeast(0.70) } else { Target::Informative },
        });
    }
    Ok(figures)
}

/// Figure 1': the first cosine query of a fresh handle (its norms computed) per round,
/// between two memory passes, and the second query's time.
fn first_cosine(dir: &Path, words: &[u64], queries: &[Vec<f32>], config: &Config) -> Result<Vec<Figure>> {
    let emb_bytes = (config.records_count * config.dim * 4) as u64;
    let memory_bytes = words.len() as u64 * 8;
    let mut sides: Vec<(usize, Rounds, Rounds)> = [1, 0].into_iter().map(|t| (t, Rounds::default(), Rounds::default())).collect();
    for round in 0..config.rounds {
        let query = &queries[(round + 1) % queries.len()];
        for (threads, first, second) in sides.iter_mut() {
            let db = open(dir, config, *threads)?;
            // Maps every page of this handle (Dot computes no norms).
            db.search(&Search::new(query).k(config.k).metric(Metric::Dot))?;
            let memory_threads = if *threads == 0 { cores() } else { *threads };
            let search = Search::new(query).k(config.k).metric(Metric::Cosine);
            let before = memory_pass(words, memory_threads);
            let (hits, first_s) = timed(|| Ok(db.search(&search)?))?;
            let after = memory_pass(words, memory_threads);
            let (again, second_s) = timed(|| Ok(db.search(&search)?))?;
            if keys_of(&hits) != keys_of(&again) {
                return Err("the first and second cosine queries disagree".into());
            }
            let baseline = gib_per_s(memory_bytes, (before + after) / 2.0);
            eprintln!(
                "  first cosine round {round}, {}: first {:.1} ms ({:.2} GiB/s), second {:.1} ms; memory {baseline:.2} GiB/s",
                threads_label(*threads),
                first_s * 1e3,
                gib_per_s(emb_bytes, first_s),
                second_s * 1e3
            );
            first.push(gib_per_s(emb_bytes, first_s), baseline);
            second.push_with_ratio(first_s * 1e3, second_s * 1e3, first_s / second_s);
            db.close()?;
        }
    }
    let mut figures = Vec::new();
    for (threads, first, second) in &sides {
        let memory_threads = if *threads == 0 { cores() } else { *threads };
        eprintln!(
            "  first cosine, {}: per-round ratios {}; first/second {}",
            threads_label(*threads),
            first.rounds_text(),
            second.rounds_text()
        );
        figures.push(Figure {
            name: format!("1'. first Cosine query, {} / {memory_threads}-thr. bw", threads_label(*threads)),
            engine: format!("{:.2} GiB/s", first.engine_median()),
            baseline: format!("{:.2} GiB/s", first.baseline_median()),
            ratio: first.ratio(),
            target: Target::Informative,
        });
        figures.push(Figure {
            name: format!("1'. first Cosine query time / second, {}", threads_label(*threads)),
            engine: format!("{:.1} ms", second.engine_median()),
            baseline: format!("{:.1} ms", second.baseline_median()),
            ratio: second.ratio(),
            target: Target::Informative,
        });
    }
    Ok(figures)
}

/// Figure 2: strata's Dot search against the plain in-RAM loop (ceiling-strata-ceiling).
fn ceilings(handles: &[(usize, &Db)], queries: &[Vec<f32>], config: &Config) -> Result<Vec<Figure>> {
    let db = handles[0].1;
    let segments = db.cold_segments();
    let mut matrix: Vec<f32> = Vec::with_capacity(config.records_count * config.dim);
    for segment in &segments {
        let columns = segment.columns();
        if columns.embedding_validity.iter().take(columns.rows() / 8).any(|&b| b != 0xff) {
            return Err("every row was put with an embedding".into());
        }
        matrix.extend_from_slice(columns.embeddings);
    }
    drop(segments);
    if matrix.len() != config.records_count * config.dim {
        return Err(format!("the cold embeddings hold {} values, expected {}", matrix.len(), config.records_count * config.dim).into());
    }
    let (dim, k) = (config.dim, config.k);
    let emb_bytes = (config.records_count * config.dim * 4) as u64;
    // Untimed first passes: the copy is resident, the code warm.
    black_box(ceiling(&matrix, dim, &queries[0], k, 1, false));
    let mut sides: Vec<(usize, Rounds)> = handles.iter().map(|&(t, _)| (t, Rounds::default())).collect();
    let mut naive = Rounds::default();
    for round in 0..config.rounds {
        let query = &queries[(round + 2) % queries.len()];
        for (threads, rounds) in sides.iter_mut() {
            let db = handles.iter().find(|h| h.0 == *threads).ok_or("no handle")?.1;
            let ceiling_threads = if *threads == 0 { cores() } else { *threads };
            db.search(&Search::new(&queries[queries.len() - 1]).k(k).metric(Metric::Dot))?; // untimed, as in figure 1
            let (want, before) = timed(|| Ok(ceiling(&matrix, dim, query, k, ceiling_threads, false)))?;
            let (hits, engine) = timed(|| Ok(db.search(&Search::new(query).k(k).metric(Metric::Dot))?))?;
            let (_, after) = timed(|| Ok(black_box(ceiling(&matrix, dim, query, k, ceiling_threads, false))))?;
            let want_keys: Vec<Vec<u8>> = want.iter().map(|s| key_of(s.row)).collect();
            if keys_of(&hits) != want_keys {
                eprintln!("  WARNING: strata's top {k} differs from the ceiling's: {:?} vs {:?}", keys_of(&hits), want_keys);
            }
            let baseline = (before + after) / 2.0;
            eprintln!(
                "  ceiling round {round}, {}: strata {:.1} ms, plain loop {:.1} / {:.1} ms ({:.2} GiB/s) -> {:.3}",
                threads_label(*threads),
                engine * 1e3,
                before * 1e3,
                after * 1e3,
                gib_per_s(emb_bytes, baseline),
                engine / baseline
            );
            rounds.push(engine * 1e3, baseline * 1e3);
        }
        let (_, naive_s) = timed(|| Ok(black_box(ceiling(&matrix, dim, query, k, 1, true))))?;
        let (_, lanes_s) = timed(|| Ok(black_box(ceiling(&matrix, dim, query, k, 1, false))))?;
        eprintln!("  ceiling round {round}: naive running-sum dot {:.1} ms, 8-lane dot {:.1} ms (1 thread)", naive_s * 1e3, lanes_s * 1e3);
        naive.push(naive_s * 1e3, lanes_s * 1e3);
    }
    let mut figures = Vec::new();
    for (threads, rounds) in &sides {
        eprintln!("  ceiling, {}: per-round ratios {}", threads_label(*threads), rounds.rounds_text());
        figures.push(Figure {
            name: format!("2. search Dot time / plain in-RAM loop, {}", threads_label(*threads)),
            engine: format!("{:.1} ms", rounds.engine_median()),
            baseline: format!("{:.1} ms", rounds.baseline_median()),
            ratio: rounds.ratio(),
            target: Target::Informative,
        });
    }
    figures.push(Figure {
        name: "2'. naive running-sum loop / 8-lane loop, 1 thread".into(),
        engine: format!("{:.1} ms", naive.engine_median()),
        baseline: format!("{:.1} ms", naive.baseline_median()),
        ratio: naive.ratio(),
        target: Target::Informative,
    });
    Ok(figures)
}

/// Figure 3: `search_batch` of the queries against as many `search` calls.
fn batches(handles: &[(usize, &Db)], queries: &[Vec<f32>], config: &Config) -> Result<Vec<Figure>> {
    let searches: Vec<Search<'_>> = queries.iter().map(|q| Search::new(q).k(config.k).metric(config.batch_metric)).collect();
    let n = searches.len() as f64;
    let multiply_adds = n * config.records_count as f64 * config.dim as f64;
    let mut figures = Vec::new();
    for &(threads, db) in handles {
        let mut rounds = Rounds::default();
        for round in 0..config.rounds {
            let singles = || -> Result<Vec<Vec<Hit>>> { searches.iter().map(|s| Ok(db.search(s)?)).collect() };
            let batch = || -> Result<Vec<Vec<Hit>>> { Ok(db.search_batch(&searches)?) };
            let ((one_by_one, singles_s), (together, batch_s)) = if round % 2 == 0 {
                let a = timed(singles)?;
                (a, timed(batch)?)
            } else {
                let b = timed(batch)?;
                (timed(singles)?, b)
            };
            if one_by_one != together {
                return Err("search_batch and single searches disagree".into());
            }
            eprintln!(
                "  batch round {round}, {}: {} singles {:.2} s ({:.1} queries/s), search_batch {:.2} s ({:.1} queries/s, \
                 {:.2} G multiply-adds/s) -> {:.2}x",
                threads_label(threads),
                searches.len(),
                singles_s,
                n / singles_s,
                batch_s,
                n / batch_s,
                multiply_adds / batch_s / 1e9,
                singles_s / batch_s
            );
            rounds.push(n / batch_s, n / singles_s);
        }
        eprintln!("  batch, {}: per-round ratios {}", threads_label(threads), rounds.rounds_text());
        figures.push(Figure {
            name: format!(
                "3. search_batch({}) / {} searches, {}, {}",
                searches.len(),
                searches.len(),
                metric_name(config.batch_metric),
                threads_label(threads)
            ),
            engine: format!("{:.1} queries/s", rounds.engine_median()),
            baseline: format!("{:.1} queries/s", rounds.baseline_median()),
            ratio: rounds.ratio(),
            target: Target::AtLeast(10.0),
        });
    }
    Ok(figures)
}

// ---- main ------------------------------------------------------------------------------

fn measure(root: &Path, config: &Config) -> Result<Vec<Figure>> {
    let dir = root.join("db");
    build(&dir, config)?;
    let mut rng = StdRng::seed_from_u64(config.seed ^ 7);
    let count = config.batch.max(config.rounds + 2);
    let queries: Vec<Vec<f32>> = (0..count).map(|_| (0..config.dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).collect();
    let (one, all) = (open(&dir, config, 1)?, open(&dir, config, 0)?);
    let handles = [(1usize, &one), (0usize, &all)];
    // Warm-up: pages every embedding into the page cache and into both handles' maps.
    for &(threads, db) in &handles {
        let (hits, seconds) = timed(|| Ok(db.search(&Search::new(&queries[0]).k(config.k).metric(Metric::Dot))?))?;
        expect_hits(hits, config.k, "warm-up")?;
        eprintln!("  warm-up Dot query, {}: {seconds:.3} s", threads_label(threads));
    }
    let mut figures = Vec::new();
    if config.runs("ceiling") {
        eprintln!("ceiling (load average {})", load_average());
        figures.extend(ceilings(&handles, &queries, config)?);
    }
    if config.runs("single") || config.runs("first") {
        let words = memory_words((config.records_count * config.dim * 4) as u64, config.seed ^ 2);
        memory_pass(&words, 1);
        memory_pass(&words, cores());
        if config.runs("single") {
            eprintln!("single queries (load average {})", load_average());
            figures.extend(single_queries(&handles, &words, &queries, config)?);
        }
        if config.runs("first") {
            eprintln!("first cosine queries (load average {})", load_average());
            figures.extend(first_cosine(&dir, &words, &queries, config)?);
        }
    }
    if config.runs("batch") {
        eprintln!("batches (load average {})", load_average());
        figures.extend(batches(&handles, &queries[..config.batch], config)?);
    }
    drop(one);
    drop(all);
    std::fs::remove_dir_all(&dir)?;
    if config.runs("warm") {
        eprintln!("warm tier (load average {})", load_average());
        for threads in [1, 0] {
            figures.extend(warm_vs_cold(root, &queries, config, threads)?);
        }
    }
    if config.runs("shadow") {
        eprintln!("shadowed cold rows (load average {})", load_average());
        figures.push(shadowed(root, &queries, config)?);
    }
    Ok(figures)
}

/// Figure 5: what index keys over a cold tier cost a search. `--warm-records` records are
/// compacted, and a second handle's database is the same plus one overwrite *without an
/// embedding* for every fifth cold key (so those rows are shadowed, and the index holds
/// W / 5 live keys that score nothing): one Dot search each per round, one thread,
/// interleaved: with / without the overwrites. The extra time is the index walk, one cold
/// lookup per index key to mark the row it shadows, and resolving each record.
fn shadowed(root: &Path, queries: &[Vec<f32>], config: &Config) -> Result<Figure> {
    let (plain_dir, shadowed_dir) = (root.join("plain"), root.join("shadowed"));
    build_records(&plain_dir, config, config.warm_records, true)?;
    build_records(&shadowed_dir, config, config.warm_records, true)?;
    let overwrites = config.warm_records / 5;
    {
        let db = Db::open(&shadowed_dir, Options::new().embedding_dim(config.dim).durability(Durability::None).auto_compact(false))?;
        for index in (0..config.warm_records).step_by(5) {
            db.put(&key_of(index), b"overwritten, no embedding", None)?;
        }
        db.sync()?;
        db.seal()?;
        db.close()?;
    }
    let (plain, with_index) = (open(&plain_dir, config, 1)?, open(&shadowed_dir, config, 1)?);
    let mut rounds = Rounds::default();
    for round in 0..config.rounds {
        let search = Search::new(&queries[round % queries.len()]).k(config.k).metric(Metric::Dot);
        with_index.search(&search)?; // untimed, as in figure 1
        let (_, with_s) = timed(|| Ok(with_index.search(&search)?))?;
        plain.search(&search)?;
        let (_, plain_s) = timed(|| Ok(plain.search(&search)?))?;
        eprintln!(
            "  shadow round {round}: {overwrites} index keys over {} cold rows {:.1} ms, none {:.1} ms -> {:.2} ({:.2} us per index key)",
            config.warm_records,
            with_s * 1e3,
            plain_s * 1e3,
            with_s / plain_s,
            (with_s - plain_s) / overwrites as f64 * 1e6
        );
        rounds.push(with_s * 1e3, plain_s * 1e3);
    }
    drop(plain);
    drop(with_index);
    std::fs::remove_dir_all(&plain_dir)?;
    std::fs::remove_dir_all(&shadowed_dir)?;
    eprintln!("  shadowed / plain: per-round ratios {}", rounds.rounds_text());
    Ok(Figure {
        name: format!("5. search Dot, {} cold + {overwrites} index keys / cold only, threads(1)", config.warm_records),
        engine: format!("{:.1} ms", rounds.engine_median()),
        baseline: format!("{:.1} ms", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target: Target::Informative,
    })
}

/// Figure 4: one Dot search over `--warm-records` records in sealed log segments (never
/// compacted: the index walk resolves each record and checks its CRC) against the same
/// search over the same records compacted into the cold tier, interleaved per round, one
/// thread (`threads` = 1) or every core (0): warm time / cold time.
fn warm_vs_cold(root: &Path, queries: &[Vec<f32>], config: &Config, threads: usize) -> Result<Vec<Figure>> {
    let (warm_dir, cold_dir) = (root.join("warm"), root.join("cold"));
    build_records(&warm_dir, config, config.warm_records, false)?;
    build_records(&cold_dir, config, config.warm_records, true)?;
    let (warm, cold) = (open(&warm_dir, config, threads)?, open(&cold_dir, config, threads)?);
    let bytes = (config.warm_records * config.dim * 4) as u64;
    let mut rounds = Rounds::default();
    let mut batch_rounds = Rounds::default();
    let batch: Vec<Search<'_>> = queries[..config.batch].iter().map(|q| Search::new(q).k(config.k).metric(Metric::Dot)).collect();
    for round in 0..config.rounds {
        let query = &queries[round % queries.len()];
        let search = Search::new(query).k(config.k).metric(Metric::Dot);
        warm.search(&search)?; // untimed, as in figure 1
        let (warm_hits, warm_s) = timed(|| Ok(warm.search(&search)?))?;
        cold.search(&search)?;
        let (cold_hits, cold_s) = timed(|| Ok(cold.search(&search)?))?;
        if keys_of(&warm_hits) != keys_of(&cold_hits) {
            return Err("warm and cold searches disagree".into());
        }
        eprintln!(
            "  warm round {round} ({}): warm {:.1} ms ({:.2} GiB/s), cold {:.1} ms ({:.2} GiB/s) -> {:.2}",
            threads_label(threads),
            warm_s * 1e3,
            gib_per_s(bytes, warm_s),
            cold_s * 1e3,
            gib_per_s(bytes, cold_s),
            warm_s / cold_s
        );
        rounds.push(warm_s * 1e3, cold_s * 1e3);
        let (warm_hits, warm_s) = timed(|| Ok(warm.search_batch(&batch)?))?;
        let (cold_hits, cold_s) = timed(|| Ok(cold.search_batch(&batch)?))?;
        if warm_hits.iter().map(|h| keys_of(h)).ne(cold_hits.iter().map(|h| keys_of(h))) {
            return Err("warm and cold batches disagree".into());
        }
        eprintln!(
            "  warm round {round}, search_batch({}): warm {:.1} ms, cold {:.1} ms -> {:.2}",
            batch.len(),
            warm_s * 1e3,
            cold_s * 1e3,
            warm_s / cold_s
        );
        batch_rounds.push(warm_s * 1e3, cold_s * 1e3);
    }
    drop(warm);
    drop(cold);
    std::fs::remove_dir_all(&warm_dir)?;
    std::fs::remove_dir_all(&cold_dir)?;
    eprintln!("  warm / cold: per-round ratios {}", rounds.rounds_text());
    eprintln!("  warm / cold, search_batch({}): per-round ratios {}", batch.len(), batch_rounds.rounds_text());
    Ok(vec![
        Figure {
            name: format!("4. search Dot over {} warm records / the same cold, {}", config.warm_records, threads_label(threads)),
            engine: format!("{:.1} ms", rounds.engine_median()),
            baseline: format!("{:.1} ms", rounds.baseline_median()),
            ratio: rounds.ratio(),
            target: Target::Informative,
        },
        Figure {
            name: format!("4'. search_batch({}) over the warm records / cold, {}", batch.len(), threads_label(threads)),
            engine: format!("{:.1} ms", batch_rounds.engine_median()),
            baseline: format!("{:.1} ms", batch_rounds.baseline_median()),
            ratio: batch_rounds.ratio(),
            target: Target::Informative,
        },
    ])
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let root = match &config.dir {
        Some(dir) => tempfile::Builder::new().prefix("strata-bench-search-").tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("strata-bench-search-").tempdir()?,
    };
    let load_at_start = load_average();
    eprintln!(
        "bench_search: {} records of {} B content + {}-dim embedding ({:.1} MiB of embeddings), {} rounds, {} cores, \
         load average {load_at_start}, data in {}",
        config.records_count,
        config.content_len,
        config.dim,
        mib((config.records_count * config.dim * 4) as f64),
        config.rounds,
        cores(),
        root.path().display()
    );
    let mut figures = measure(root.path(), &config)?;
    // By figure number (1, 1', 2, 2', 3), in measuring order within one.
    figures.sort_by_key(|f| f.name.split(' ').next().unwrap_or("").replace('\'', "~"));
    println!(
        "bench_search --records {} --dim {} --content-bytes {} --rounds {} --batch {} --k {} --seed {} --phases {}: \
         {} cores, load average {load_at_start} -> {}",
        config.records_count,
        config.dim,
        config.content_len,
        config.rounds,
        config.batch,
        config.k,
        config.seed,
        config.phases.join(","),
        cores(),
        load_average()
    );
    print_table(&figures);
    Ok(())
}
