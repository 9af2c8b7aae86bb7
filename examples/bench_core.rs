//! bench_core: the core engine's figures, each a ratio to a baseline measured in the same
//! run, interleaved with it, so that a noisy shared machine moves both sides together.
//!
//! Run: `cargo build --release --example bench_core && target/release/examples/bench_core --records 100000`
//! Flags: `--records N` (100000), `--rounds R` (3), `--sync-ops M` (4000 durable puts per round
//! for 1 thread; T threads put 4x as many), `--threads T` (8), `--gets G` (200000 per round),
//! `--seed S` (42), `--dir PATH` (a temporary directory is made in it; default /tmp),
//! `--phases bulk,sync,reads` (default all; `bulk` = figures 1, 5, 6 and space, `sync` = 2,
//! `reads` = 3 and 4).
//!
//! Each round measures the engine and its baseline next to each other: bulk loads and scans as
//! baseline-engine-baseline (the baseline is the mean of the two), gets in 10 alternating
//! slices, durable puts in 8 slices whose order rotates (a round's ratio is the median of its
//! slices' ratios). The ratio of a figure is the median over rounds of each round's engine /
//! baseline; open time is open / bulk-load time (lower is better). Progress and diagnostics go to stderr, the table to stdout. `BENCHMARKS.md` summarises
//! the figures and `benches/HISTORY.md` explains each.
//!
//! Workload (DESIGN.md): keys `doc/{i:08}`, content 64 B..32 KiB log-uniform, 768-dim f32
//! embeddings, from a seeded RNG, put in key order. Logical bytes = key + content + embedding.

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Durability, Options, Tier};

mod harness;
#[path = "../benches/support.rs"]
mod support;
use harness::*;
use support::*;

const EMBEDDING_DIM: usize = 768;
const CONTENT_LEN_MIN: usize = 64;
const CONTENT_LEN_MAX: usize = 32 * 1024;
/// Content length of the durable-put figures (small records: the fsync is the cost).
const SYNC_PUT_CONTENT_LEN: usize = 64;
/// Size of a log record header in the engine's format; the raw fsync baseline appends as
/// many bytes per write as the engine does (header + key + embedding + content, 8-aligned).
const RECORD_HEADER_LEN: usize = 32;

struct Config {
    records_count: usize,
    rounds: usize,
    sync_ops: usize,
    threads: usize,
    gets: usize,
    seed: u64,
    dir: Option<PathBuf>,
    /// Which groups of figures to run: `bulk` (1, 5, 6 and space), `sync` (2), `reads` (3, 4).
    phases: Vec<String>,
}

impl Config {
    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        records_count: 100_000,
        rounds: 3,
        sync_ops: 4_000,
        threads: 8,
        gets: 200_000,
        seed: 42,
        dir: None,
        phases: vec!["bulk".into(), "sync".into(), "reads".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => config.records_count = value()?.parse()?,
            "--rounds" => config.rounds = value()?.parse()?,
            "--sync-ops" => config.sync_ops = value()?.parse()?,
            "--threads" => config.threads = value()?.parse()?,
            "--gets" => config.gets = value()?.parse()?,
            "--seed" => config.seed = value()?.parse()?,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--phases" => config.phases = value()?.split(',').map(str::to_string).collect(),
            other => return Err(format!("unknown flag {other}; see the header of examples/bench_core.rs").into()),
        }
    }
    if config.records_count == 0 || config.rounds == 0 || config.sync_ops == 0 || config.threads == 0 || config.gets == 0 {
        return Err("every count must be at least 1".into());
    }
    Ok(config)
}

// ---- the workload ----------------------------------------------------------------------

/// The records every figure writes and reads, generated once from a seeded RNG.
struct Workload {
    keys: Vec<Vec<u8>>,
    contents: Vec<Vec<u8>>,
    /// Row-major, `EMBEDDING_DIM` floats per record.
    embeddings: Vec<f32>,
}

impl Workload {
    fn generate(records_count: usize, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let (ln_min, ln_max) = ((CONTENT_LEN_MIN as f64).ln(), (CONTENT_LEN_MAX as f64).ln());
        let mut contents = Vec::with_capacity(records_count);
        for _ in 0..records_count {
            let len = (rng.gen_range(ln_min..=ln_max).exp() as usize).clamp(CONTENT_LEN_MIN, CONTENT_LEN_MAX);
            let mut content = vec![0u8; len];
            rng.fill(&mut content[..]);
            contents.push(content);
        }
        let embeddings = (0..records_count * EMBEDDING_DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        Workload { keys: (0..records_count).map(key_of).collect(), contents, embeddings }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn embedding(&self, index: usize) -> &[f32] {
        &self.embeddings[index * EMBEDDING_DIM..(index + 1) * EMBEDDING_DIM]
    }

    /// key + content + embedding bytes of every record.
    fn logical_bytes(&self) -> u64 {
        let per_record = |i: usize| self.keys[i].len() + self.contents[i].len() + EMBEDDING_DIM * 4;
        (0..self.len()).map(|i| per_record(i) as u64).sum()
    }
}

// ---- 1. bulk load ----------------------------------------------------------------------

/// Background maintenance off: each figure is of one tier (bench_maintenance measures it).
fn bulk_options() -> Options {
    Options::new().embedding_dim(EMBEDDING_DIM).durability(Durability::None).auto_compact(false)
}

/// Opens a new database, puts every record with `Durability::None`, then one `sync()`.
fn engine_bulk_load(dir: &Path, workload: &Workload, options: Options) -> Result<(Duration, Db)> {
    let start = Instant::now();
    let db = Db::open(dir, options)?;
    for i in 0..workload.len() {
        db.put(&workload.keys[i], &workload.contents[i], Some(workload.embedding(i)))?;
    }
    db.sync()?;
    Ok((start.elapsed(), db))
}

struct BulkLoad {
    /// The last round's database, sealed and closed, for the open and RAM figures.
    dir: PathBuf,
    load_seconds: f64,
}

fn bulk_load(root: &Path, workload: &Workload, config: &Config) -> Result<(BulkLoad, Vec<Figure>)> {
    let logical = workload.logical_bytes();
    let chunk = raw_write_chunk(config.seed ^ 1);
    let mut rounds = Rounds::default();
    let mut load_seconds = Vec::new();
    let mut space = (0.0, 0.0, 0u64);
    let dir = root.join("bulk");
    for round in 0..config.rounds {
        // Raw write before and after the engine's load (A-B-A): the baseline is their mean,
        // so a drift in the disk's speed during the round does not favour either side.
        flush_os_caches();
        let (_, raw_before) = TimeSplit::measure(|| raw_sequential_write(root, logical, &chunk))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let resident_before = Resident::now()?;
        flush_os_caches();
        let (db, engine) = TimeSplit::measure(|| Ok(engine_bulk_load(&dir, workload, bulk_options())?.1))?;
        db.seal()?;
        if round == 0 {
            // Diagnostic: the loading process itself, after seal(): the index plus whatever
            // the allocator kept of the freed hot-tier buffers.
            let grown = Resident::now()?.anon.saturating_sub(resident_before.anon);
            eprintln!(
                "  RAM in the loading process after seal(): RssAnon +{:.1} MiB ({:.0} B/key)",
                grown as f64 / 1048576.0,
                grown as f64 / workload.len() as f64
            );
        }
        if round + 1 == config.rounds {
            let stats = db.stats();
            space = (stats.space_amplification, stats.write_amplification, stats.disk_bytes);
        }
        db.close()?;
        flush_os_caches();
        let (_, raw_after) = TimeSplit::measure(|| raw_sequential_write(root, logical, &chunk))?;
        let raw = (raw_before.wall + raw_after.wall) / 2.0;
        rounds.push(mib_per_s(logical, engine.wall), mib_per_s(logical, raw));
        load_seconds.push(engine.wall);
        eprintln!("  bulk load round {round}: engine {}", engine.text());
        eprintln!("                         raw write {} / {}", raw_before.text(), raw_after.text());
    }
    let figures = vec![
        Figure {
            name: "1. bulk load (None + sync) / raw seq write".into(),
            engine: format!("{:.0} MiB/s", rounds.engine_median()),
            baseline: format!("{:.0} MiB/s", rounds.baseline_median()),
            ratio: rounds.ratio(),
            target: Target::AtLeast(0.70),
        },
        Figure {
            name: "   space: disk bytes / logical bytes".into(),
            engine: format!("{:.1} MiB on disk", space.2 as f64 / (1024.0 * 1024.0)),
            baseline: format!("{:.1} MiB logical", logical as f64 / (1024.0 * 1024.0)),
            ratio: space.0,
            target: Target::Informative,
        },
    ];
    eprintln!("  bulk load per-round ratios: {}; write amplification {:.3}", rounds.rounds_text(), space.1);
    Ok((BulkLoad { dir, load_seconds: median(load_seconds) }, figures))
}

// ---- 2. durable puts -------------------------------------------------------------------

/// The durable-put figures alternate raw appends, 1 engine writer and T engine writers in
/// this many slices per round, so that a neighbour's burst of I/O hits all three alike; the
/// round's ratio is the median of the slices' ratios.
const SYNC_SLICES: usize = 8;

fn encoded_record_len(key_len: usize, content_len: usize) -> usize {
    (RECORD_HEADER_LEN + key_len).next_multiple_of(4).saturating_add(EMBEDDING_DIM * 4 + content_len).next_multiple_of(8)
}

/// Appends one record and fdatasyncs, `ops` times: the rate at which this disk makes small
/// appends durable.
fn raw_fsync_appends(file: &mut File, ops: usize, record: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..ops {
        file.write_all(record)?;
        file.sync_data()?;
    }
    Ok(start.elapsed())
}

/// What the writer threads of one [`SyncWriters`] share besides the database.
struct WriterControl {
    start: Barrier,
    done: Barrier,
    stop: AtomicBool,
    errors: Mutex<Vec<String>>,
    /// On-CPU time of all writer threads during slices, in nanoseconds (diagnostic).
    cpu_ns: AtomicU64,
    content: Vec<u8>,
    embedding: Vec<f32>,
    threads: usize,
    ops_per_thread: usize,
}

/// Writer threads sharing one `Arc<Db>` opened with `Durability::Sync`. They live for the
/// whole figure and put `ops_per_thread` small records each per slice, between two barriers.
struct SyncWriters {
    db: Arc<Db>,
    control: Arc<WriterControl>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// One writer thread: a slice of unique keys per `start`, until `stop`.
fn writer_loop(db: &Db, control: &WriterControl, thread: usize) {
    for slice in 0.. {
        control.start.wait();
        if control.stop.load(Ordering::Acquire) {
            break;
        }
        let cpu_before = thread_schedstat().map_or(0.0, |(cpu, _)| cpu);
        let first = (slice * control.threads + thread) * control.ops_per_thread;
        for index in first..first + control.ops_per_thread {
            if let Err(e) = db.put(&key_of(index), &control.content, Some(&control.embedding)) {
                control.errors.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
                break;
            }
        }
        let cpu = thread_schedstat().map_or(0.0, |(cpu, _)| cpu) - cpu_before;
        control.cpu_ns.fetch_add((cpu * 1e9) as u64, Ordering::Relaxed);
        control.done.wait();
    }
}

impl SyncWriters {
    fn spawn(dir: &Path, workload: &Workload, threads: usize, ops_per_thread: usize) -> Result<SyncWriters> {
        let db = Arc::new(Db::open(dir, Options::new().embedding_dim(EMBEDDING_DIM).durability(Durability::Sync).auto_compact(false))?);
        let control = Arc::new(WriterControl {
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            stop: AtomicBool::new(false),
            errors: Mutex::new(Vec::new()),
            cpu_ns: AtomicU64::new(0),
            content: workload.contents[0][..SYNC_PUT_CONTENT_LEN].to_vec(),
            embedding: workload.embedding(0).to_vec(),
            threads,
            ops_per_thread,
        });
        let handles = (0..threads)
            .map(|thread| {
                let (db, control) = (db.clone(), control.clone());
                std::thread::spawn(move || writer_loop(&db, &control, thread))
            })
            .collect();
        Ok(SyncWriters { db, control, handles })
    }

    /// Runs one slice on every thread; returns its wall time.
    fn run_slice(&self) -> Result<Duration> {
        self.control.start.wait();
        let start = Instant::now();
        self.control.done.wait();
        let elapsed = start.elapsed();
        match self.control.errors.lock().unwrap_or_else(|p| p.into_inner()).first() {
            Some(error) => Err(format!("a durable put failed: {error}").into()),
            None => Ok(elapsed),
        }
    }

    /// On-CPU seconds of the writer threads over every slice so far.
    fn cpu_seconds(&self) -> f64 {
        self.control.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    fn finish(self) -> Result<()> {
        self.control.stop.store(true, Ordering::Release);
        self.control.start.wait();
        for handle in self.handles {
            handle.join().map_err(|_| "a writer thread panicked")?;
        }
        Ok(self.db.close()?)
    }
}

/// The four sides of the durable-put figures, measured slice by slice.
struct DurableBench {
    raw_file: File,
    /// One engine-sized record (header + key + embedding + 64 B content).
    record: Vec<u8>,
    /// `cohort` records back to back (diagnostic: the disk's rate for bigger groups).
    cohort_record: Vec<u8>,
    single: SyncWriters,
    many: SyncWriters,
    ops_per_slice: usize,
    many_ops_per_slice: usize,
    raw_cpu_seconds: f64,
}

/// One round: seconds per side [raw, 1 thread, T threads, raw cohort appends], and the
/// medians of the per-slice ratios of the two engine sides.
struct DurableRound {
    seconds: [f64; 4],
    one_ratio: f64,
    many_ratio: f64,
}

impl DurableBench {
    fn run_side(&mut self, which: usize) -> Result<f64> {
        Ok(match which {
            0 => {
                let (file, record, ops) = (&mut self.raw_file, &self.record, self.ops_per_slice);
                let (elapsed, split) = TimeSplit::measure(|| raw_fsync_appends(file, ops, record))?;
                self.raw_cpu_seconds += split.on_cpu;
                elapsed
            }
            1 => self.single.run_slice()?,
            2 => self.many.run_slice()?,
            _ => raw_fsync_appends(&mut self.raw_file, self.ops_per_slice, &self.cohort_record)?,
        }
        .as_secs_f64())
    }

    fn run_round(&mut self) -> Result<DurableRound> {
        let mut seconds = [0.0f64; 4];
        let (mut one_ratios, mut many_ratios) = (Vec::new(), Vec::new());
        let many_per_single = self.many_ops_per_slice as f64 / self.ops_per_slice as f64;
        for slice in 0..SYNC_SLICES {
            let mut slice_seconds = [0.0f64; 4];
            for step in 0..4 {
                // Rotate the order every slice, so that no side always follows the same one.
                let which = (step + slice) % 4;
                slice_seconds[which] = self.run_side(which)?;
                seconds[which] += slice_seconds[which];
            }
            // Per-slice ratios: a burst of a neighbour's I/O spoils one slice, not the round.
            one_ratios.push(slice_seconds[0] / slice_seconds[1]);
            many_ratios.push(slice_seconds[0] / slice_seconds[2] * many_per_single);
        }
        Ok(DurableRound { seconds, one_ratio: median(one_ratios), many_ratio: median(many_ratios) })
    }
}

fn durable_puts(root: &Path, workload: &Workload, config: &Config) -> Result<Vec<Figure>> {
    let record = vec![0x5au8; encoded_record_len(key_of(0).len(), SYNC_PUT_CONTENT_LEN)];
    // Diagnostic only: the disk's rate for appends of half the writers' records at once,
    // the group a leader/follower queue with two alternating cohorts can reach.
    let cohort = (config.threads / 2).max(1);
    let raw_path = root.join("raw-fsync.bin");
    let ops_per_slice = config.sync_ops.div_ceil(SYNC_SLICES);
    let many_ops_per_thread = (ops_per_slice * 4).div_ceil(config.threads);
    let mut bench = DurableBench {
        raw_file: File::create(&raw_path)?,
        cohort_record: record.repeat(cohort),
        record,
        single: SyncWriters::spawn(&root.join("sync-1"), workload, 1, ops_per_slice)?,
        many: SyncWriters::spawn(&root.join("sync-many"), workload, config.threads, many_ops_per_thread)?,
        ops_per_slice,
        many_ops_per_slice: many_ops_per_thread * config.threads,
        raw_cpu_seconds: 0.0,
    };
    flush_os_caches();
    for which in 0..3 {
        bench.run_side(which)?; // untimed: a fresh file's first fsyncs are slower
    }
    let (mut one_thread, mut threaded, mut cohort_rates) = (Rounds::default(), Rounds::default(), Vec::new());
    let (single_cpu_start, many_cpu_start) = (bench.single.cpu_seconds(), bench.many.cpu_seconds());
    bench.raw_cpu_seconds = 0.0;
    for round in 0..config.rounds {
        let result = bench.run_round()?;
        let rate = |ops: usize, seconds: f64| (ops * SYNC_SLICES) as f64 / seconds;
        let (raw, one) = (rate(ops_per_slice, result.seconds[0]), rate(ops_per_slice, result.seconds[1]));
        let (all, cohort_fsyncs) = (rate(bench.many_ops_per_slice, result.seconds[2]), rate(ops_per_slice, result.seconds[3]));
        one_thread.push_with_ratio(one, raw, result.one_ratio);
        threaded.push_with_ratio(all, raw, result.many_ratio);
        cohort_rates.push(cohort_fsyncs);
        eprintln!(
            "  durable puts round {round}: raw {raw:.0} fsyncs/s, engine 1 thread {one:.0}/s, {} threads {all:.0}/s; \
             raw appends of {cohort} records: {cohort_fsyncs:.0} fsyncs/s = {:.0} records/s",
            config.threads,
            cohort_fsyncs * cohort as f64
        );
    }
    let timed_ops = (ops_per_slice * SYNC_SLICES * config.rounds) as f64;
    let many_timed_ops = timed_ops * bench.many_ops_per_slice as f64 / ops_per_slice as f64;
    eprintln!(
        "  durable puts CPU per op: raw append+fdatasync {:.1} us, engine 1 thread {:.1} us, {} threads {:.1} us",
        bench.raw_cpu_seconds / timed_ops * 1e6,
        (bench.single.cpu_seconds() - single_cpu_start) / timed_ops * 1e6,
        config.threads,
        (bench.many.cpu_seconds() - many_cpu_start) / many_timed_ops * 1e6
    );
    let record_len = bench.record.len();
    bench.single.finish()?;
    bench.many.finish()?;
    std::fs::remove_file(&raw_path)?;
    eprintln!(
        "  durable puts per-round ratios: 1 thread {}; {} threads {}; ceiling with groups of {cohort}: {:.2} x raw",
        one_thread.rounds_text(),
        config.threads,
        threaded.rounds_text(),
        median(cohort_rates) * cohort as f64 / threaded.baseline_median()
    );
    Ok(durable_figures(&one_thread, &threaded, record_len, config.threads))
}

fn durable_figures(one_thread: &Rounds, threaded: &Rounds, record_len: usize, threads: usize) -> Vec<Figure> {
    vec![
        Figure {
            name: format!("2a. Sync puts, 1 thread / raw fsync rate ({record_len} B appends)"),
            engine: format!("{:.0} puts/s", one_thread.engine_median()),
            baseline: format!("{:.0} fsyncs/s", one_thread.baseline_median()),
            ratio: one_thread.ratio(),
            target: Target::AtLeast(0.90),
        },
        Figure {
            name: format!("2b. Sync puts, {threads} threads / raw 1-thread fsync rate"),
            engine: format!("{:.0} puts/s", threaded.engine_median()),
            baseline: format!("{:.0} fsyncs/s", threaded.baseline_median()),
            ratio: threaded.ratio(),
            target: Target::AtLeast(3.0),
        },
    ]
}

// ---- 3. point gets, 4. scans -----------------------------------------------------------

type InRamMap = HashMap<Vec<u8>, (Vec<u8>, Vec<f32>)>;

/// Gets alternate between the HashMap and the engine in this many slices per round.
const GET_SLICES: usize = 10;

fn hashmap_gets(map: &InRamMap, keys: &[&[u8]]) -> Duration {
    let mut out = (Vec::with_capacity(CONTENT_LEN_MAX), Vec::with_capacity(EMBEDDING_DIM));
    let start = Instant::now();
    for key in keys {
        let (content, embedding) = map.get(*key).expect("every looked-up key is in the map");
        copy_out(content, embedding, &mut out);
    }
    start.elapsed()
}

fn engine_gets(db: &Db, keys: &[&[u8]]) -> Result<Duration> {
    let mut out = (Vec::with_capacity(CONTENT_LEN_MAX), Vec::with_capacity(EMBEDDING_DIM));
    let start = Instant::now();
    for key in keys {
        let record = db.get(key)?.ok_or("a key that was put is missing")?;
        copy_out(record.content(), record.embedding().ok_or("an embedding is missing")?, &mut out);
    }
    Ok(start.elapsed())
}

/// Gets per second of the engine and of the HashMap over the same random keys, per round.
fn point_gets(db: &Db, map: &InRamMap, keys: &[&[u8]], rounds: usize, label: &str) -> Result<Rounds> {
    hashmap_gets(map, keys); // warm-up: maps pages, fills caches, for both sides alike
    engine_gets(db, keys)?;
    let mut result = Rounds::default();
    for round in 0..rounds {
        // Alternate the two sides slice by slice, so that CPU stolen by a neighbour hits both.
        let (mut baseline_seconds, mut engine_seconds) = (0.0, 0.0);
        for slice in keys.chunks(keys.len().div_ceil(GET_SLICES)) {
            baseline_seconds += hashmap_gets(map, slice).as_secs_f64();
            engine_seconds += engine_gets(db, slice)?.as_secs_f64();
        }
        let (baseline, engine) = (keys.len() as f64 / baseline_seconds, keys.len() as f64 / engine_seconds);
        eprintln!("  {label} gets round {round}: engine {engine:.0}/s, HashMap {baseline:.0}/s");
        result.push(engine, baseline);
    }
    Ok(result)
}

/// `db.iter()` touching every key, content and embedding byte; returns (time, bytes read).
fn engine_scan(db: &Db) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let (mut sum, mut bytes) = (0u64, 0u64);
    for record in db.iter() {
        let record = record?;
        let embedding = record.embedding().ok_or("an embedding is missing")?;
        sum = sum.wrapping_add(sum_bytes(record.key())).wrapping_add(sum_bytes(record.content())).wrapping_add(sum_floats(embedding));
        bytes += (record.key().len() + record.content().len() + embedding.len() * 4) as u64;
    }
    black_box(sum);
    Ok((start.elapsed(), bytes))
}

/// The same walk and touch over the in-RAM workload (a Vec per record): how far the touch
/// itself is from memory bandwidth, for the diagnosis.
fn workload_scan(workload: &Workload) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..workload.len() {
        sum = sum
            .wrapping_add(sum_bytes(&workload.keys[i]))
            .wrapping_add(sum_bytes(&workload.contents[i]))
            .wrapping_add(sum_floats(workload.embedding(i)));
    }
    black_box(sum);
    start.elapsed()
}

/// Scan bandwidth of the engine and of a plain in-RAM `Vec<u64>` of the same size, per round.
fn scans(db: &Db, workload: &Workload, words: &[u64], rounds: usize, label: &str) -> Result<(Rounds, f64)> {
    engine_scan(db)?; // warm-up, as for gets
    memory_scan(words);
    let bytes = words.len() as u64 * 8;
    let mut result = Rounds::default();
    let mut touch = Vec::new();
    for round in 0..rounds {
        let before = memory_scan(words).as_secs_f64();
        let (elapsed, scanned) = engine_scan(db)?;
        let baseline = mib_per_s(bytes, (before + memory_scan(words).as_secs_f64()) / 2.0); // A-B-A
        let engine = mib_per_s(scanned, elapsed.as_secs_f64());
        touch.push(mib_per_s(workload.logical_bytes(), workload_scan(workload).as_secs_f64()));
        eprintln!("  {label} scan round {round}: engine {engine:.0} MiB/s, memory {baseline:.0} MiB/s");
        result.push(engine, baseline);
    }
    Ok((result, median(touch)))
}

fn get_figure(name: &str, rounds: &Rounds) -> Figure {
    Figure {
        name: name.into(),
        engine: format!("{:.0} gets/s", rounds.engine_median()),
        baseline: format!("{:.0} gets/s", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target: Target::AtLeast(0.50),
    }
}

fn scan_figure(name: &str, rounds: &Rounds) -> Figure {
    Figure {
        name: name.into(),
        engine: format!("{:.0} MiB/s", rounds.engine_median()),
        baseline: format!("{:.0} MiB/s", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target: Target::AtLeast(0.50),
    }
}

/// Loads the workload into one large active segment (so that it is all hot), measures gets
/// and scans, seals (all warm), and measures again.
fn reads(root: &Path, workload: &Workload, config: &Config) -> Result<Vec<Figure>> {
    let options = bulk_options().segment_bytes_max(strata::limits::SEGMENT_BYTES_MAX);
    let (_, db) = engine_bulk_load(&root.join("reads"), workload, options)?;
    let map: InRamMap =
        (0..workload.len()).map(|i| (workload.keys[i].clone(), (workload.contents[i].clone(), workload.embedding(i).to_vec()))).collect();
    let words = memory_words(workload.logical_bytes(), config.seed ^ 2);
    let hot_keys: Vec<Vec<u8>> = db.iter_tier(Tier::Hot).map(|r| r.map(|r| r.key().to_vec())).collect::<strata::Result<_>>()?;
    if hot_keys.len() < workload.len() {
        eprintln!("  note: only {} of {} records fit in the hot tier; hot gets use those", hot_keys.len(), workload.len());
    }
    let mut rng = StdRng::seed_from_u64(config.seed ^ 3);
    let hot_lookups: Vec<&[u8]> = (0..config.gets).map(|_| hot_keys[rng.gen_range(0..hot_keys.len())].as_slice()).collect();
    let all_lookups: Vec<&[u8]> = (0..config.gets).map(|_| workload.keys[rng.gen_range(0..workload.len())].as_slice()).collect();

    let hot_gets = point_gets(&db, &map, &hot_lookups, config.rounds, "hot")?;
    let (hot_scan, _) = scans(&db, workload, &words, config.rounds, "hot")?;
    db.seal()?;
    let warm_gets = point_gets(&db, &map, &all_lookups, config.rounds, "warm")?;
    // The same warm reads through a read-only handle that skips per-read checksums
    // (`Options::verify_checksums(false)`): what the default's integrity check costs.
    let unverified = Db::open(root.join("reads"), bulk_options().read_only(true).verify_checksums(false))?;
    let unverified_gets = point_gets(&unverified, &map, &all_lookups, config.rounds, "warm, no checksum")?;
    drop(map);
    let (unverified_scan, _) = scans(&unverified, workload, &words, config.rounds, "warm, no checksum")?;
    drop(unverified);
    let (warm_scan, touch) = scans(&db, workload, &words, config.rounds, "warm")?;
    eprintln!(
        "  per-round ratios: hot gets {}; warm gets {}; hot scan {}; warm scan {}",
        hot_gets.rounds_text(),
        warm_gets.rounds_text(),
        hot_scan.rounds_text(),
        warm_scan.rounds_text()
    );
    eprintln!("  the same touch over the in-RAM workload: {touch:.0} MiB/s ({:.2} of memory)", touch / warm_scan.baseline_median());
    db.close()?;
    Ok(vec![
        get_figure("3a. get, hot tier / HashMap get+copy", &hot_gets),
        get_figure("3b. get, warm tier (after seal) / HashMap", &warm_gets),
        scan_figure("4a. iter(), hot tier / memory read bandwidth", &hot_scan),
        scan_figure("4b. iter(), warm tier / memory read bandwidth", &warm_scan),
        get_figure("3c. get, warm, verify_checksums(false) / HashMap", &unverified_gets),
        scan_figure("4c. iter(), warm, verify_checksums(false) / memory", &unverified_scan),
    ])
}

// ---- 5. open time, 6. RAM per key -------------------------------------------------------

fn open_time(bulk: &BulkLoad, rounds: usize) -> Result<Figure> {
    let mut open_seconds = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let db = Db::open(&bulk.dir, bulk_options())?;
        open_seconds.push(start.elapsed().as_secs_f64());
        db.close()?;
    }
    let seconds = median(open_seconds);
    eprintln!("  open: {:.1} ms vs bulk load {:.2} s", seconds * 1e3, bulk.load_seconds);
    Ok(Figure {
        name: "5. reopen (sealed, hints) / bulk-load time".into(),
        engine: format!("{:.1} ms", seconds * 1e3),
        baseline: format!("{:.0} ms", bulk.load_seconds * 1e3),
        ratio: seconds / bulk.load_seconds,
        target: Target::AtMost(0.10),
    })
}

/// Child mode: open the database at `dir` in this fresh process and print what it cost in
/// resident memory. A fresh process keeps the loader's freed-but-unreturned heap out of it.
fn rss_child(dir: &Path) -> Result<()> {
    let before = Resident::now()?;
    let start = Instant::now();
    let db = Db::open(dir, bulk_options().read_only(true))?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after = Resident::now()?;
    let stats = db.stats();
    println!("{} {} {} {} {} {} {open_ms}", before.total, after.total, before.anon, after.anon, stats.index_entries, stats.live_records);
    Ok(())
}

fn ram_per_key(bulk: &BulkLoad, key_len: usize) -> Result<Vec<Figure>> {
    let output = std::process::Command::new(std::env::current_exe()?).arg("--rss-child").arg(&bulk.dir).output()?;
    if !output.status.success() {
        return Err(format!("the RSS child failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<f64> = text.split_whitespace().map(str::parse).collect::<std::result::Result<_, _>>()?;
    let [rss_before, rss_after, anon_before, anon_after, index_entries, live, open_ms] = fields[..] else {
        return Err(format!("unexpected RSS child output {text:?}").into());
    };
    let anon_per_key = (anon_after - anon_before) / live;
    let rss_per_key = (rss_after - rss_before) / live;
    eprintln!(
        "  RAM: {live} live keys, index_entries {index_entries}, RssAnon +{:.1} MiB ({anon_per_key:.1} B/key), \
         VmRSS +{:.1} MiB ({rss_per_key:.1} B/key), open in a fresh process {open_ms:.1} ms",
        (anon_after - anon_before) / 1048576.0,
        (rss_after - rss_before) / 1048576.0
    );
    let limit = (key_len + 64) as f64;
    Ok(vec![
        Figure {
            name: format!("6a. heap (RssAnon) per warm key / (key {key_len} B + 64 B)"),
            engine: format!("{anon_per_key:.1} B/key"),
            baseline: format!("{limit:.0} B/key"),
            ratio: anon_per_key / limit,
            target: Target::AtMost(1.0),
        },
        Figure {
            name: "6b. whole RSS (VmRSS, maps incl.) per warm key / limit".into(),
            engine: format!("{rss_per_key:.1} B/key"),
            baseline: format!("{limit:.0} B/key; {index_entries:.0} index entries"),
            ratio: rss_per_key / limit,
            target: Target::AtMost(1.0),
        },
    ])
}

// ---- main ------------------------------------------------------------------------------

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--rss-child") {
        return rss_child(Path::new(&args.next().ok_or("--rss-child needs a directory")?));
    }
    let config = parse_args()?;
    let root = match &config.dir {
        Some(dir) => tempfile::Builder::new().prefix("strata-bench-").tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("strata-bench-").tempdir()?,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_at_start = load_average();
    let workload = Workload::generate(config.records_count, config.seed);
    let logical = workload.logical_bytes();
    eprintln!(
        "bench_core: {} records, {:.1} MiB logical, {} rounds, {cores} cores, load average {load_at_start}, data in {}",
        workload.len(),
        logical as f64 / 1048576.0,
        config.rounds,
        root.path().display()
    );
    let mut figures = Vec::new();
    if config.runs("bulk") {
        let (bulk, bulk_figures) = bulk_load(root.path(), &workload, &config)?;
        figures.extend(bulk_figures);
        figures.push(open_time(&bulk, config.rounds)?);
        figures.extend(ram_per_key(&bulk, workload.keys[0].len())?);
        std::fs::remove_dir_all(&bulk.dir)?;
    }
    if config.runs("sync") {
        figures.extend(durable_puts(root.path(), &workload, &config)?);
    }
    if config.runs("reads") {
        figures.extend(reads(root.path(), &workload, &config)?);
    }
    println!(
        "bench_core --records {} --rounds {} --sync-ops {} --threads {} --gets {} --seed {} --phases {}: \
         {cores} cores, load average {load_at_start} -> {}",
        config.records_count,
        config.rounds,
        config.sync_ops,
        config.threads,
        config.gets,
        config.seed,
        config.phases.join(","),
        load_average()
    );
    print_table(&figures);
    Ok(())
}
