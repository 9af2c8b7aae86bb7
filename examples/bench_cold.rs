//! bench_cold: the cold tier's figures, each a ratio to a baseline measured in the same run
//! (interleaved with it where the two can alternate), as `bench_core` does for the hot and
//! warm tiers.
//!
//! Run: `cargo run --release --example bench_cold -- --records 1000000`
//! Flags: `--records N` (1000000), `--dim D` (768), `--content-bytes C` (64), `--rounds R` (3),
//! `--gets G` (200000 per round), `--small-records M` (the small-record data set of figure 4b;
//! default N), `--seed S` (42), `--dir PATH` (a temporary directory is made in it; default /tmp),
//! `--phases scan,gets,compact,space,ram` (default all).
//!
//! Figures (summarised in BENCHMARKS.md, "Cold tier"; each explained in benches/HISTORY.md):
//! 1. scans of N cold records touching every key, content and embedding byte — `iter_tier(Cold)`,
//!    `iter()`, `iter()` with `verify_checksums(false)`, and a pass over `cold_segments()`'s
//!    columns — in bytes/s / the memory read bandwidth of one thread summing a `Vec<u64>` of the
//!    same size (baseline-engine-baseline per pass, every kind of pass once per round); the
//!    files are paged in first (a warm-up pass per handle), so reads come from the page cache;
//!    primed lines (1a') give the same ratio per on-CPU second of the scanning thread;
//! 2. point gets of the same random keys in a cold database and a warm one (the same records,
//!    sealed, not compacted), alternating in slices: ns per get, cold / warm (also per on-CPU
//!    second, and with `verify_checksums(false)` on both);
//! 3. `compact()` of N sealed records: cold bytes written per second / a raw sequential write
//!    + fdatasync of a file of the same size (before and after it);
//! 4. space after compaction, `stats.disk_bytes / stats.live_bytes`, for this data set and for
//!    small records (16 B keys, 100 B content, no embedding);
//! 5. resident memory of a fresh process opening the cold database (after compact + close)
//!    and iterating it, against the same records held warm: RssAnon, RssFile, VmRSS per
//!    million records.
//!
//! Workload: keys `doc/{i:08}` (12 B), `--content-bytes` of content and a `--dim`-value f32
//! embedding per record, made on the fly from (seed, index) so that nothing is held in RAM,
//! put in key order with `Durability::None`, then `seal()`. Logical bytes = key + content +
//! embedding. Progress and diagnostics go to stderr, the table to stdout.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{ColdSegment, Db, Durability, Iter, Options, Stats, Tier};

mod harness;
#[path = "../benches/support.rs"]
mod support;
use harness::*;
use support::*;

/// Gets alternate between the warm and the cold database in this many slices per round.
const GET_SLICES: usize = 10;
/// The kernel accounts a running thread's CPU time at scheduler ticks (a few ms), so an
/// on-CPU figure is given only for passes that took at least this long (NaN otherwise).
const CPU_SECONDS_MIN: f64 = 0.1;
/// The small-record data set of figure 4b.
const SMALL_KEY_LEN: usize = 16;
const SMALL_CONTENT_LEN: usize = 100;

struct Config {
    records_count: usize,
    small_records_count: Option<usize>,
    dim: usize,
    content_len: usize,
    rounds: usize,
    gets: usize,
    seed: u64,
    dir: Option<PathBuf>,
    /// Which figures to measure: `scan` (1), `gets` (2), `compact` (3), `space` (4), `ram` (5).
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
        small_records_count: None,
        dim: 768,
        content_len: 64,
        rounds: 3,
        gets: 200_000,
        seed: 42,
        dir: None,
        phases: ["scan", "gets", "compact", "space", "ram"].map(String::from).to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => config.records_count = value()?.parse()?,
            "--small-records" => config.small_records_count = Some(value()?.parse()?),
            "--dim" => config.dim = value()?.parse()?,
            "--content-bytes" => config.content_len = value()?.parse()?,
            "--rounds" => config.rounds = value()?.parse()?,
            "--gets" => config.gets = value()?.parse()?,
            "--seed" => config.seed = value()?.parse()?,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--phases" => config.phases = value()?.split(',').map(str::to_string).collect(),
            other => return Err(format!("unknown flag {other}; see the header of examples/bench_cold.rs").into()),
        }
    }
    if config.records_count == 0 || config.rounds == 0 || config.gets == 0 || config.small_records_count == Some(0) {
        return Err("every count must be at least 1".into());
    }
    if config.records_count.max(config.small_records_count.unwrap_or(0)) > 100_000_000 {
        return Err("at most 100000000 records (keys have 8 digits)".into());
    }
    Ok(config)
}

// ---- the workload ----------------------------------------------------------------------

/// The records of a data set, made on the fly from (seed, index): nothing is held in RAM.
#[derive(Clone, Copy, Debug)]
struct DataSet {
    records_count: usize,
    key_len: usize,
    content_len: usize,
    dim: usize,
    seed: u64,
}

/// splitmix64: a fast, well-mixed stream from any seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DataSet {
    /// `doc/` and the index in decimal, zero padded to `key_len` bytes (12: `key_of`'s keys).
    fn key(&self, index: usize) -> Vec<u8> {
        let digits = self.key_len - 4;
        format!("doc/{index:0digits$}").into_bytes()
    }

    /// Record `index`'s content and embedding (values in [-1, 1)).
    fn fill(&self, index: usize, content: &mut [u8], embedding: &mut [f32]) {
        let mut state = self.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        for chunk in content.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes()[..chunk.len()]);
        }
        for value in embedding {
            *value = (splitmix(&mut state) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
    }

    fn record_logical_bytes(&self) -> u64 {
        (self.key_len + self.content_len + self.dim * 4) as u64
    }

    fn logical_bytes(&self) -> u64 {
        self.records_count as u64 * self.record_logical_bytes()
    }

    /// Options naming the data set's dimension (none when it has no embeddings).
    fn options(&self) -> Options {
        // Background maintenance off: each figure is of one tier (bench_maintenance measures it).
        if self.dim == 0 {
            Options::new().auto_compact(false)
        } else {
            Options::new().embedding_dim(self.dim).auto_compact(false)
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} records of {} B key + {} B content + {}-dim embedding = {:.1} MiB logical",
            self.records_count,
            self.key_len,
            self.content_len,
            self.dim,
            mib(self.logical_bytes() as f64)
        )
    }
}

/// A new database at `dir` holding every record of `data`, put in key order with
/// `Durability::None`, then `sync()` and `seal()`: all warm.
fn load(dir: &Path, data: &DataSet) -> Result<Db> {
    let start = Instant::now();
    let db = Db::open(dir, data.options().durability(Durability::None))?;
    let (mut content, mut embedding) = (vec![0u8; data.content_len], vec![0f32; data.dim]);
    for index in 0..data.records_count {
        data.fill(index, &mut content, &mut embedding);
        db.put(&data.key(index), &content, (data.dim > 0).then_some(&embedding[..]))?;
    }
    db.sync()?;
    db.seal()?;
    eprintln!("  loaded {} in {:.1} s", data.describe(), start.elapsed().as_secs_f64());
    Ok(db)
}

// ---- 3. compaction, 4. space -----------------------------------------------------------

/// The cold database every other figure reads: `data` compacted, closed.
struct ColdBuild {
    dir: PathBuf,
    /// `stats()` after the load and seal, before `compact()`.
    warm_stats: Stats,
    /// `stats()` right after `compact()`.
    cold_stats: Stats,
}

/// Loads `data` into `dir` (replacing what is there), seals, and compacts. When `chunk` is
/// given, `compact()` is timed between two raw sequential writes; returns (compact MiB/s,
/// raw MiB/s) then.
fn load_and_compact(root: &Path, dir: &Path, data: &DataSet, chunk: Option<&[u8]>) -> Result<(ColdBuild, Option<(f64, f64)>)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let db = load(dir, data)?;
    let warm_stats = db.stats();
    let rates = match chunk {
        None => {
            db.compact()?;
            None
        }
        Some(chunk) => {
            // Raw write before and after compact() (A-B-A), each after `sync(1)` so that no
            // earlier writeback is charged to it; the baseline is the mean of their rates.
            flush_os_caches();
            let (before, raw_before) = TimeSplit::measure(|| raw_sequential_write(root, warm_stats.warm.disk_bytes, chunk))?;
            flush_os_caches();
            let ((), compact) = TimeSplit::measure(|| Ok(db.compact()?))?;
            let written = db.stats().cold.disk_bytes;
            flush_os_caches();
            let (after, raw_after) = TimeSplit::measure(|| raw_sequential_write(root, written, chunk))?;
            let raw = (mib_per_s(warm_stats.warm.disk_bytes, before.as_secs_f64()) + mib_per_s(written, after.as_secs_f64())) / 2.0;
            eprintln!("  compact(): {} ({:.1} MiB of cold segments)", compact.text(), mib(written as f64));
            eprintln!("    raw write {} / {}", raw_before.text(), raw_after.text());
            Some((mib_per_s(written, compact.wall), raw))
        }
    };
    let cold_stats = db.stats();
    db.close()?;
    Ok((ColdBuild { dir: dir.to_path_buf(), warm_stats, cold_stats }, rates))
}

fn compaction(root: &Path, data: &DataSet, config: &Config) -> Result<(ColdBuild, Figure)> {
    let chunk = raw_write_chunk(config.seed ^ 1);
    let mut rounds = Rounds::default();
    let mut last = None;
    for round in 0..config.rounds {
        let (build, rates) = load_and_compact(root, &root.join("cold"), data, Some(&chunk))?;
        let (engine, raw) = rates.ok_or("a timed compaction returns its rates")?;
        eprintln!("  compaction round {round}: compact {engine:.0} MiB/s, raw write + fdatasync {raw:.0} MiB/s");
        rounds.push(engine, raw);
        last = Some(build);
    }
    eprintln!("  compaction per-round ratios: {}", rounds.rounds_text());
    let figure = Figure {
        name: "3. compact(): cold bytes written / raw seq write+fdatasync".into(),
        engine: format!("{:.0} MiB/s", rounds.engine_median()),
        baseline: format!("{:.0} MiB/s", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target: Target::AtLeast(0.50),
    };
    Ok((last.ok_or("at least one round")?, figure))
}

fn space_figure(name: &str, build: &ColdBuild, rows: usize) -> Figure {
    let (warm, cold) = (&build.warm_stats, &build.cold_stats);
    eprintln!(
        "  space, {name}: before compact {:.1} MiB on disk / {:.1} MiB live = {:.3}; after: {:.1} MiB / {:.1} MiB = {:.3} \
         ({:.1} B per row over the logical bytes; {} cold segments, {:.1} MiB)",
        mib(warm.disk_bytes as f64),
        mib(warm.live_bytes as f64),
        warm.space_amplification,
        mib(cold.disk_bytes as f64),
        mib(cold.live_bytes as f64),
        cold.space_amplification,
        (cold.disk_bytes as f64 - cold.live_bytes as f64) / rows as f64,
        cold.cold.segments,
        mib(cold.cold.disk_bytes as f64)
    );
    Figure {
        name: format!("4{name}"),
        engine: format!("{:.1} MiB on disk", mib(cold.disk_bytes as f64)),
        baseline: format!("{:.1} MiB live", mib(cold.live_bytes as f64)),
        ratio: cold.space_amplification,
        target: Target::AtMost(1.15),
    }
}

/// Figure 4b: the small-record data set, loaded, compacted and removed.
fn small_space(root: &Path, config: &Config) -> Result<Figure> {
    let small = DataSet {
        records_count: config.small_records_count.unwrap_or(config.records_count),
        key_len: SMALL_KEY_LEN,
        content_len: SMALL_CONTENT_LEN,
        dim: 0,
        seed: config.seed ^ 5,
    };
    let dir = root.join("small");
    let (build, _) = load_and_compact(root, &dir, &small, None)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(space_figure(
        &format!("b. space after compact: disk / live ({SMALL_KEY_LEN} B key, {SMALL_CONTENT_LEN} B, no emb.)"),
        &build,
        small.records_count,
    ))
}

// ---- 1. scans --------------------------------------------------------------------------

/// What one pass touched.
struct Pass {
    elapsed: Duration,
    bytes: u64,
    records: u64,
}

impl Pass {
    fn mib_per_s(&self) -> f64 {
        mib_per_s(self.bytes, self.elapsed.as_secs_f64())
    }
}

/// Walks `iter`, reading every key, content and embedding byte (summed, so nothing is
/// optimised away). Not inlined: every kind of pass runs the same machine code.
#[inline(never)]
fn touch_records(iter: Iter) -> Result<Pass> {
    let start = Instant::now();
    let (mut sum, mut bytes, mut records) = (0u64, 0u64, 0u64);
    for record in iter {
        let record = record?;
        let embedding = record.embedding().unwrap_or(&[]);
        sum = sum.wrapping_add(sum_bytes(record.key())).wrapping_add(sum_bytes(record.content())).wrapping_add(sum_floats(embedding));
        bytes += (record.key().len() + record.content().len() + embedding.len() * 4) as u64;
        records += 1;
    }
    black_box(sum);
    Ok(Pass { elapsed: start.elapsed(), bytes, records })
}

/// The same touch, row by row, straight over the columns of `cold_segments()` (the zero-copy
/// handoff: no liveness filter, no row checksum).
#[inline(never)]
fn touch_columns(segments: &[ColdSegment]) -> Pass {
    let start = Instant::now();
    let (mut sum, mut bytes, mut records) = (0u64, 0u64, 0u64);
    for segment in segments {
        let columns = segment.columns();
        for row in 0..columns.rows() {
            let (key, content) = (columns.keys.value(row), columns.content.value(row));
            let embedding = columns.embedding(row).unwrap_or(&[]);
            sum = sum.wrapping_add(sum_bytes(key)).wrapping_add(sum_bytes(content)).wrapping_add(sum_floats(embedding));
            bytes += (key.len() + content.len() + embedding.len() * 4) as u64;
        }
        records += columns.rows() as u64;
    }
    black_box(sum);
    Pass { elapsed: start.elapsed(), bytes, records }
}

/// Column at a time: each data buffer summed whole (what an Arrow consumer's kernel does).
#[inline(never)]
fn touch_buffers(segments: &[ColdSegment]) -> Pass {
    let start = Instant::now();
    let (mut sum, mut bytes, mut records) = (0u64, 0u64, 0u64);
    for segment in segments {
        let columns = segment.columns();
        sum = sum.wrapping_add(sum_bytes(columns.keys.data)).wrapping_add(sum_bytes(columns.content.data));
        sum = sum.wrapping_add(sum_floats(columns.embeddings));
        bytes += (columns.keys.data.len() + columns.content.data.len() + columns.embeddings.len() * 4) as u64;
        records += columns.rows() as u64;
    }
    black_box(sum);
    Pass { elapsed: start.elapsed(), bytes, records }
}

/// MiB per on-CPU second; NaN for a pass too short for the kernel's CPU accounting.
fn per_cpu_second(bytes: u64, on_cpu: f64) -> f64 {
    if on_cpu >= CPU_SECONDS_MIN {
        mib_per_s(bytes, on_cpu)
    } else {
        f64::NAN
    }
}

/// One kind of pass of figure 1 and its rounds.
struct ScanSide<'a> {
    label: &'static str,
    pass: Box<dyn FnMut() -> Result<Pass> + 'a>,
    /// Bytes per second of wall time: the figure.
    rounds: Rounds,
    /// Bytes per second of on-CPU time of the scanning thread (time the scheduler gave to
    /// other processes left out): a check of the figure on a shared machine.
    cpu_rounds: Rounds,
}

impl<'a> ScanSide<'a> {
    fn new(label: &'static str, pass: impl FnMut() -> Result<Pass> + 'a) -> ScanSide<'a> {
        ScanSide { label, pass: Box::new(pass), rounds: Rounds::default(), cpu_rounds: Rounds::default() }
    }
}

/// Each round runs every side once, in turn, each between two memory scans (A-B-A; the
/// baseline is their mean), so that a neighbour's burst of load hits every side alike.
fn scan_rounds(words: &[u64], data: &DataSet, rounds: usize, sides: &mut [ScanSide<'_>]) -> Result<()> {
    let memory_bytes = words.len() as u64 * 8;
    let memory_pass = || TimeSplit::measure(|| Ok(memory_scan(words))).map(|(_, split)| split);
    for round in 0..rounds {
        for side in sides.iter_mut() {
            let before = memory_pass()?;
            let (engine, split) = TimeSplit::measure(|| (side.pass)())?;
            let after = memory_pass()?;
            if engine.records != data.records_count as u64 || engine.bytes != data.logical_bytes() {
                let expected = (data.records_count, data.logical_bytes());
                return Err(format!("{}: {} records, {} bytes; expected {expected:?}", side.label, engine.records, engine.bytes).into());
            }
            let baseline = mib_per_s(memory_bytes, (before.wall + after.wall) / 2.0);
            let (engine_cpu, baseline_cpu) =
                (per_cpu_second(engine.bytes, split.on_cpu), per_cpu_second(memory_bytes, (before.on_cpu + after.on_cpu) / 2.0));
            eprintln!(
                "  scan round {round}, {}: {:.0} MiB/s, memory {baseline:.0} MiB/s; per on-CPU second {engine_cpu:.0} vs {baseline_cpu:.0} \
                 (on CPU {:.0} % of the pass, {:.0} % / {:.0} % of the memory scans)",
                side.label,
                engine.mib_per_s(),
                100.0 * split.on_cpu / split.wall,
                100.0 * before.on_cpu / before.wall,
                100.0 * after.on_cpu / after.wall
            );
            side.rounds.push(engine.mib_per_s(), baseline);
            side.cpu_rounds.push(engine_cpu, baseline_cpu);
        }
    }
    for side in sides.iter() {
        eprintln!("  {} per-round ratios: {}; per on-CPU time: {}", side.label, side.rounds.rounds_text(), side.cpu_rounds.rounds_text());
    }
    Ok(())
}

fn scan_figure(name: &str, rounds: &Rounds, target: Target) -> Figure {
    Figure {
        name: name.into(),
        engine: format!("{:.0} MiB/s", rounds.engine_median()),
        baseline: format!("{:.0} MiB/s", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target,
    }
}

/// Page-cache residency of the cold segment files (util-linux `fincore`), for the record.
fn report_residency(dir: &Path, when: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "cold")).collect();
    match std::process::Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES,SIZE"]).args(&files).output() {
        Ok(out) if out.status.success() => {
            let (mut resident, mut size) = (0u64, 0u64);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut fields = line.split_whitespace().map(str::parse::<u64>);
                if let (Some(Ok(r)), Some(Ok(s))) = (fields.next(), fields.next()) {
                    (resident, size) = (resident + r, size + s);
                }
            }
            eprintln!(
                "  page cache {when}: {:.1} of {:.1} MiB of cold segment files resident (fincore)",
                mib(resident as f64),
                mib(size as f64)
            );
        }
        _ => eprintln!("  page cache {when}: fincore unavailable"),
    }
}

fn scans(build: &ColdBuild, data: &DataSet, config: &Config) -> Result<Vec<Figure>> {
    // The baseline's buffer first, so that every warm-up below comes after its allocation.
    let words = memory_words(data.logical_bytes(), config.seed ^ 2);
    report_residency(&build.dir, "before the warm-up");
    let db = Db::open(&build.dir, data.options())?;
    // Warm-up: pages every row into the page cache and into this handle's maps.
    let first = touch_records(db.iter_tier(Tier::Cold))?;
    eprintln!("  first iter_tier(Cold) after open (warm-up, untimed for the figures): {:.0} MiB/s", first.mib_per_s());
    report_residency(&build.dir, "after the warm-up");
    // A second, read-only handle that skips row checksums; its maps are warmed up too.
    let unverified = Db::open(&build.dir, Options::new().read_only(true).verify_checksums(false))?;
    touch_records(unverified.iter())?;
    let segments = db.cold_segments();
    eprintln!("  {} cold segments", segments.len());
    memory_scan(&words);
    let mut sides = [
        ScanSide::new("iter_tier(Cold)", || touch_records(db.iter_tier(Tier::Cold))),
        ScanSide::new("iter()", || touch_records(db.iter())),
        ScanSide::new("iter(), no checksums", || touch_records(unverified.iter())),
        ScanSide::new("iter_tier(Cold), no checksums", || touch_records(unverified.iter_tier(Tier::Cold))),
        ScanSide::new("columns, row by row", || Ok(touch_columns(&segments))),
        ScanSide::new("columns, whole buffers", || Ok(touch_buffers(&segments))),
    ];
    scan_rounds(&words, data, config.rounds, &mut sides)?;
    let names = [
        ("1a. iter_tier(Cold) / memory read bandwidth", Target::AtLeast(0.50)),
        ("1b. iter() (all cold) / memory read bandwidth", Target::AtLeast(0.50)),
        ("1c. iter(), verify_checksums(false) / memory", Target::AtLeast(0.50)),
        ("1d. iter_tier(Cold), verify_checksums(false) / memory", Target::AtLeast(0.50)),
        ("1e. cold_segments() columns, row by row / memory", Target::Informative),
        ("1f. cold_segments() columns, whole buffers / memory", Target::Informative),
    ];
    let mut figures: Vec<Figure> =
        names.into_iter().zip(&sides).map(|((name, target), side)| scan_figure(name, &side.rounds, target)).collect();
    for (letter, side) in ["a", "b", "c", "d"].into_iter().zip(&sides) {
        let name = format!("1{letter}'. {}, per on-CPU second", side.label);
        figures.push(scan_figure(&name, &side.cpu_rounds, Target::Informative));
    }
    drop(sides);
    drop(segments);
    drop(unverified);
    db.close()?;
    Ok(figures)
}

// ---- 2. point gets ---------------------------------------------------------------------

fn timed_gets(db: &Db, keys: &[Vec<u8>]) -> Result<Duration> {
    let mut out = (Vec::new(), Vec::new());
    let start = Instant::now();
    for key in keys {
        let record = db.get(key)?.ok_or("a key that was put is missing")?;
        copy_out(record.content(), record.embedding().unwrap_or(&[]), &mut out);
    }
    Ok(start.elapsed())
}

/// ns per get of `cold` and of `warm` over the same keys, alternating in slices, per round;
/// the ratio is cold / warm (lower is better).
fn get_rounds(warm: &Db, cold: &Db, keys: &[Vec<u8>], rounds: usize, label: &str) -> Result<(Rounds, Rounds)> {
    timed_gets(warm, keys)?; // warm-up: maps pages, fills caches, for both sides alike
    timed_gets(cold, keys)?;
    let (mut result, mut cpu_result) = (Rounds::default(), Rounds::default());
    for round in 0..rounds {
        // [warm, cold] x [wall, on-CPU] seconds.
        let mut seconds = [[0.0f64; 2]; 2];
        for (i, slice) in keys.chunks(keys.len().div_ceil(GET_SLICES)).enumerate() {
            // Alternate which side goes first, so that neither always follows the other.
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let (_, split) = TimeSplit::measure(|| timed_gets(if side == 0 { warm } else { cold }, slice))?;
                seconds[side][0] += split.wall;
                seconds[side][1] += split.on_cpu;
            }
        }
        let ns = |s: f64| s * 1e9 / keys.len() as f64;
        let cpu_ns = |s: f64| if s >= CPU_SECONDS_MIN { ns(s) } else { f64::NAN };
        let (warm_ns, cold_ns) = (ns(seconds[0][0]), ns(seconds[1][0]));
        let (warm_cpu_ns, cold_cpu_ns) = (cpu_ns(seconds[0][1]), cpu_ns(seconds[1][1]));
        eprintln!(
            "  {label} gets round {round}: cold {cold_ns:.0} ns/get, warm {warm_ns:.0} ns/get; on-CPU cold {cold_cpu_ns:.0}, warm {warm_cpu_ns:.0}"
        );
        result.push(cold_ns, warm_ns);
        cpu_result.push(cold_cpu_ns, warm_cpu_ns);
    }
    eprintln!("  {label} gets per-round ratios (cold / warm): {}; per on-CPU time: {}", result.rounds_text(), cpu_result.rounds_text());
    Ok((result, cpu_result))
}

fn get_figure(name: &str, rounds: &Rounds, target: Target) -> Figure {
    Figure {
        name: name.into(),
        engine: format!("cold {:.0} ns/get", rounds.engine_median()),
        baseline: format!("warm {:.0} ns/get", rounds.baseline_median()),
        ratio: rounds.ratio(),
        target,
    }
}

fn gets(warm_dir: &Path, build: &ColdBuild, data: &DataSet, config: &Config) -> Result<Vec<Figure>> {
    let options = data.options();
    let (warm, cold) = (Db::open(warm_dir, options.clone())?, Db::open(&build.dir, options)?);
    let (warm_stats, cold_stats) = (warm.stats(), cold.stats());
    if warm_stats.warm.records != data.records_count as u64 || cold_stats.cold.records != data.records_count as u64 {
        return Err(format!("expected all records warm in one and cold in the other: {warm_stats:?} {cold_stats:?}").into());
    }
    let mut rng = StdRng::seed_from_u64(config.seed ^ 3);
    let keys: Vec<Vec<u8>> = (0..config.gets).map(|_| data.key(rng.gen_range(0..data.records_count))).collect();
    let (verified, verified_cpu) = get_rounds(&warm, &cold, &keys, config.rounds, "checksummed")?;
    warm.close()?;
    cold.close()?;
    let options = Options::new().read_only(true).verify_checksums(false);
    let (warm, cold) = (Db::open(warm_dir, options.clone())?, Db::open(&build.dir, options)?);
    let (unverified, _) = get_rounds(&warm, &cold, &keys, config.rounds, "verify_checksums(false)")?;
    Ok(vec![
        get_figure("2a. get, cold / get, warm (ns per get, same keys)", &verified, Target::AtMost(3.0)),
        get_figure("2b. the same, on-CPU time (scheduler noise left out)", &verified_cpu, Target::Informative),
        get_figure("2c. the same, verify_checksums(false) on both", &unverified, Target::Informative),
    ])
}

// ---- 5. RAM ----------------------------------------------------------------------------

/// Child mode: open the database at `dir` in this fresh process (read-only), walk it with
/// `iter()`, and print resident memory before open, after open and after the walk.
fn rss_child(dir: &Path) -> Result<()> {
    let before = Resident::now()?;
    let start = Instant::now();
    let db = Db::open(dir, Options::new().read_only(true))?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let opened = Resident::now()?;
    let pass = touch_records(db.iter())?;
    let walked = Resident::now()?;
    let stats = db.stats();
    let mut fields = Vec::new();
    for r in [before, opened, walked] {
        fields.extend([r.total, r.anon, r.file]);
    }
    fields.extend([stats.index_entries, stats.live_records, stats.cold.records, pass.records]);
    let fields: Vec<String> = fields.iter().map(u64::to_string).collect();
    println!("{} {open_ms:.1}", fields.join(" "));
    Ok(())
}

/// What the child measured: resident memory at three points, and the database's counts.
struct ChildRss {
    before: Resident,
    opened: Resident,
    walked: Resident,
    index_entries: u64,
    live_records: u64,
    cold_records: u64,
    open_ms: f64,
}

fn run_rss_child(dir: &Path) -> Result<ChildRss> {
    let output = std::process::Command::new(std::env::current_exe()?).arg("--rss-child").arg(dir).output()?;
    if !output.status.success() {
        return Err(format!("the RSS child failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<f64> = text.split_whitespace().map(str::parse).collect::<std::result::Result<_, _>>()?;
    let [b_total, b_anon, b_file, o_total, o_anon, o_file, w_total, w_anon, w_file, index_entries, live, cold, walked, open_ms] =
        fields[..]
    else {
        return Err(format!("unexpected RSS child output {text:?}").into());
    };
    if walked != live {
        return Err(format!("the RSS child walked {walked} records of {live}").into());
    }
    let resident = |total: f64, anon: f64, file: f64| Resident { total: total as u64, anon: anon as u64, file: file as u64 };
    Ok(ChildRss {
        before: resident(b_total, b_anon, b_file),
        opened: resident(o_total, o_anon, o_file),
        walked: resident(w_total, w_anon, w_file),
        index_entries: index_entries as u64,
        live_records: live as u64,
        cold_records: cold as u64,
        open_ms,
    })
}

/// MiB per million records that `field` grew by from before open to `at`.
fn per_million(child: &ChildRss, at: Resident, field: fn(&Resident) -> u64) -> f64 {
    mib(field(&at) as f64 - field(&child.before) as f64) / child.live_records as f64 * 1e6
}

fn ram(warm_dir: &Path, build: &ColdBuild) -> Result<Vec<Figure>> {
    let (warm, cold) = (run_rss_child(warm_dir)?, run_rss_child(&build.dir)?);
    for (label, c) in [("warm", &warm), ("cold", &cold)] {
        eprintln!(
            "  RAM, {label} database ({} live, {} cold, {} index entries; open {:.1} ms): \
             before open VmRSS {:.1} / RssAnon {:.1} / RssFile {:.1} MiB; after open {:.1} / {:.1} / {:.1}; \
             after iter() {:.1} / {:.1} / {:.1}",
            c.live_records,
            c.cold_records,
            c.index_entries,
            c.open_ms,
            mib(c.before.total as f64),
            mib(c.before.anon as f64),
            mib(c.before.file as f64),
            mib(c.opened.total as f64),
            mib(c.opened.anon as f64),
            mib(c.opened.file as f64),
            mib(c.walked.total as f64),
            mib(c.walked.anon as f64),
            mib(c.walked.file as f64)
        );
    }
    let figure = |name: &str, after_walk: bool, field: fn(&Resident) -> u64| {
        let at = |c: &ChildRss| if after_walk { c.walked } else { c.opened };
        let (cold_mib, warm_mib) = (per_million(&cold, at(&cold), field), per_million(&warm, at(&warm), field));
        Figure {
            name: name.into(),
            engine: format!("cold {cold_mib:.2} MiB/1M"),
            baseline: format!("warm {warm_mib:.2} MiB/1M"),
            ratio: cold_mib / warm_mib,
            target: Target::Informative,
        }
    };
    let anon = |r: &Resident| r.anon;
    let file = |r: &Resident| r.file;
    let total = |r: &Resident| r.total;
    Ok(vec![
        figure("5a. RssAnon growth after open, per 1M records", false, anon),
        figure("5b. RssAnon growth after open + iter(), per 1M records", true, anon),
        figure("5c. RssFile (mapped page cache) after open, per 1M", false, file),
        figure("5d. RssFile after open + iter(), per 1M records", true, file),
        figure("5e. VmRSS growth after open, per 1M records", false, total),
        figure("5f. VmRSS growth after open + iter(), per 1M records", true, total),
    ])
}

// ---- main ------------------------------------------------------------------------------

/// The warm twin of the cold database: the same records, sealed, not compacted, closed.
fn build_warm(root: &Path, data: &DataSet) -> Result<PathBuf> {
    let dir = root.join("warm");
    load(&dir, data)?.close()?;
    Ok(dir)
}

fn measure(root: &Path, data: &DataSet, config: &Config) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let cold = if config.runs("compact") {
        let (build, figure) = compaction(root, data, config)?;
        figures.push(figure);
        build
    } else {
        load_and_compact(root, &root.join("cold"), data, None)?.0
    };
    if config.runs("space") {
        figures.push(space_figure(
            &format!("a. space after compact: disk / live ({} B, {}-dim)", data.content_len, data.dim),
            &cold,
            data.records_count,
        ));
        figures.push(small_space(root, config)?);
    }
    if config.runs("scan") {
        figures.extend(scans(&cold, data, config)?);
    }
    if config.runs("gets") || config.runs("ram") {
        let warm_dir = build_warm(root, data)?;
        if config.runs("ram") {
            figures.extend(ram(&warm_dir, &cold)?);
        }
        if config.runs("gets") {
            figures.extend(gets(&warm_dir, &cold, data, config)?);
        }
        std::fs::remove_dir_all(&warm_dir)?;
    }
    std::fs::remove_dir_all(&cold.dir)?;
    // By figure number; a primed line (1a') after its figure.
    figures.sort_by_key(|f| f.name.replace('\'', "~"));
    Ok(figures)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--rss-child") {
        return rss_child(Path::new(&args.next().ok_or("--rss-child needs a directory")?));
    }
    let config = parse_args()?;
    let root = match &config.dir {
        Some(dir) => tempfile::Builder::new().prefix("strata-bench-cold-").tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("strata-bench-cold-").tempdir()?,
    };
    let data = DataSet {
        records_count: config.records_count,
        key_len: key_of(0).len(),
        content_len: config.content_len,
        dim: config.dim,
        seed: config.seed,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_at_start = load_average();
    eprintln!(
        "bench_cold: {}, {} rounds, {cores} cores, load average {load_at_start}, data in {}",
        data.describe(),
        config.rounds,
        root.path().display()
    );
    let figures = measure(root.path(), &data, &config)?;
    println!(
        "bench_cold --records {} --dim {} --content-bytes {} --rounds {} --gets {} --small-records {} --seed {} --phases {}: \
         {cores} cores, load average {load_at_start} -> {}",
        config.records_count,
        config.dim,
        config.content_len,
        config.rounds,
        config.gets,
        config.small_records_count.unwrap_or(config.records_count),
        config.seed,
        config.phases.join(","),
        load_average()
    );
    print_table(&figures);
    Ok(())
}
