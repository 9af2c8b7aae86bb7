//! bench_maintenance: a host that never calls `compact()` (issue 11's speed figures), each a
//! ratio to a baseline measured in the same run.
//!
//! Run: `cargo run --release --example bench_maintenance -- --keys 100000`
//! Flags: `--keys K` (100000), `--rewrites R` (5), `--content-bytes C` (1024), `--dim D` (128),
//! `--gets G` (100000), `--queries Q` (20), `--seed S` (42), `--dir PATH` (a temporary directory
//! is made in it; default /tmp), `--warm-bytes B` (the background watermark; default the
//! engine's, 256 MiB), `--cold-segment-bytes B` (`Options::cold_segment_bytes_max`; default
//! the engine's).
//!
//! Workload: K keys `key/{i:08}`, each written R times in a random order (C bytes of content
//! and a D-value embedding per put, `Durability::None`), then 30 % of them deleted, then idle
//! (`wait_for_compaction`). The same workload runs twice, in fresh directories: with
//! `auto_compact(false)` (the baseline: nothing but the log) and with background maintenance.
//! Figures:
//! 1. space amplification (`disk_bytes / live_bytes`) during the write phase (the largest
//!    sample, taken every 5 % of the puts; `disk_bytes` counts the files of the published
//!    state, not a compaction's output before it is published nor replaced files before
//!    they are deleted); beside it the directory's own peak (the blocks its files hold,
//!    what `du` reports, sampled every 100 ms, over the live bytes of the keys written so
//!    far); when the writes end (after `wait_for_compaction`)
//!    and after idle (`compaction_idle` set to 3 s here, longer than any measured phase after it), with maintenance;
//! 2. write amplification (`Stats::write_amplification`: every byte written, log and
//!    compaction output, per logical byte put);
//! 3. p99 put latency with maintenance / without (same puts, same order), and beside it the
//!    p99.9 and the slowest put (a seal's fdatasync, a compaction's burst of dirty pages);
//! 4. point gets (random live keys, one thread) while an explicit `compact()` runs on another
//!    thread (after 20 % of the keys were overwritten once more) / the same gets before it;
//! 5. exact top-10 search over the database as background maintenance left it when the writes
//!    ended / over the same database fully compacted, queries per second.
//!
//! 6. anonymous resident memory (RssAnon) that a fresh process (this program again, with
//!    `--rss-probe DIR`) grows by when it opens the maintained database after idle (every
//!    record cold) and runs 10 000 gets and the searches, per byte of the cold tier: it
//!    should not grow with the cold data (cold rows live in the page cache through maps, not
//!    on the heap). The process's own RssAnon during the run is printed to stderr.
//!
//! Progress goes to stderr, the table to stdout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use strata::{Db, Durability, Options};

mod harness;
use harness::*;

struct Config {
    keys: usize,
    rewrites: usize,
    content_bytes: usize,
    dim: usize,
    gets: usize,
    queries: usize,
    seed: u64,
    dir: PathBuf,
    warm_bytes: Option<u64>,
    cold_segment_bytes: Option<u64>,
}

fn parse_args() -> Result<Config> {
    parse_args_from(std::env::args().skip(1).collect())
}

fn parse_args_from(args: Vec<String>) -> Result<Config> {
    let mut config = Config {
        keys: 100_000,
        rewrites: 5,
        content_bytes: 1024,
        dim: 128,
        gets: 100_000,
        queries: 20,
        seed: 42,
        dir: std::env::temp_dir(),
        warm_bytes: None,
        cold_segment_bytes: None,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => config.keys = value()?.parse()?,
            "--rewrites" => config.rewrites = value()?.parse()?,
            "--content-bytes" => config.content_bytes = value()?.parse()?,
            "--dim" => config.dim = value()?.parse()?,
            "--gets" => config.gets = value()?.parse()?,
            "--queries" => config.queries = value()?.parse()?,
            "--seed" => config.seed = value()?.parse()?,
            "--dir" => config.dir = PathBuf::from(value()?),
            "--warm-bytes" => config.warm_bytes = Some(value()?.parse()?),
            "--cold-segment-bytes" => config.cold_segment_bytes = Some(value()?.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(config)
}

fn key(i: usize) -> Vec<u8> {
    format!("key/{i:08}").into_bytes()
}

fn embedding(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// What one run of the workload measured.
struct Run {
    put_latencies_ns: Vec<u64>,
    space_amp_peak: f64,
    /// The directory's allocated bytes at most during the writes / the live bytes then.
    dir_amp_peak: f64,
    /// Right after the writes (and `wait_for_compaction`).
    space_amp_steady: f64,
    /// Once idle maintenance has run.
    space_amp_idle: f64,
    write_amp: f64,
    /// Search right after the writes, before the idle run.
    qps_steady: f64,
    compactions: u64,
    write_seconds: f64,
    /// RssAnon of the process when the run opened its database, at most during the write
    /// phase (sampled with the space), and after idle.
    anon_start: u64,
    anon_peak: u64,
    anon_idle: u64,
}

/// The idle period of the maintained run (the engine's default is 10 s).
const IDLE: Duration = Duration::from_secs(3);

fn options(config: &Config, auto: bool) -> Options {
    let options = Options::new().embedding_dim(config.dim).durability(Durability::None).auto_compact(auto).compaction_idle(IDLE);
    let options = match config.cold_segment_bytes {
        Some(bytes) => options.cold_segment_bytes_max(bytes),
        None => options,
    };
    match config.warm_bytes {
        Some(bytes) => options.compaction_warm_bytes(bytes).write_stall_bytes(4 * bytes, 8 * bytes),
        None => options,
    }
}

/// Bytes the files in `dir` hold on disk (`du`): allocated blocks, not lengths.
fn dir_allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.blocks() * 512).sum()
}

/// Samples `dir`'s allocated bytes every 100 ms until `done`, over the live bytes of the
/// `distinct` keys written so far (`record_bytes` each); the largest ratio once a tenth of
/// `keys` exist (before that a 64 MiB segment dwarfs the data).
fn sample_dir_peak(dir: &Path, distinct: &AtomicU64, keys: u64, record_bytes: u64, done: &AtomicBool) -> f64 {
    let mut peak: f64 = 0.0;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let live = distinct.load(Ordering::Relaxed);
        if live * 10 >= keys {
            peak = peak.max(dir_allocated_bytes(dir) as f64 / (live * record_bytes) as f64);
        }
    }
    peak
}

fn run_workload(config: &Config, dir: &Path, auto: bool) -> Result<(Db, Run)> {
    let anon_start = Resident::now()?.anon;
    let mut anon_peak = anon_start;
    let db = Db::open(dir, options(config, auto))?;
    let record_bytes = (key(0).len() + config.content_bytes + config.dim * 4) as u64;
    let (distinct, done) = (AtomicU64::new(0), AtomicBool::new(false));
    let mut seen = vec![false; config.keys];
    std::thread::scope(|scope| -> Result<(Db, Run)> {
        let sampler = scope.spawn(|| sample_dir_peak(dir, &distinct, config.keys as u64, record_bytes, &done));
        let mut order: Vec<usize> = (0..config.keys).flat_map(|k| std::iter::repeat_n(k, config.rewrites)).collect();
        order.shuffle(&mut StdRng::seed_from_u64(config.seed));
        let mut rng = StdRng::seed_from_u64(config.seed ^ 1);
        let mut content = vec![0u8; config.content_bytes];
        let mut latencies = Vec::with_capacity(order.len());
        let mut space_amp_peak: f64 = 0.0;
        let sample_every = (order.len() / 20).max(1);
        let start = Instant::now();
        for (n, &k) in order.iter().enumerate() {
            rng.fill(&mut content[..]);
            let e = embedding(&mut rng, config.dim);
            let t = Instant::now();
            db.put(&key(k), &content, Some(&e))?;
            latencies.push(t.elapsed().as_nanos() as u64);
            if !std::mem::replace(&mut seen[k], true) {
                distinct.fetch_add(1, Ordering::Relaxed);
            }
            if n % sample_every == sample_every - 1 {
                let stats = db.stats();
                space_amp_peak = space_amp_peak.max(stats.space_amplification);
                anon_peak = anon_peak.max(Resident::now()?.anon);
                eprintln!(
                    "  {}: {:>3} % of puts, space amp {:.2}, {} compactions, pending {:.0} MiB, stalled {} ms",
                    if auto { "maintained" } else { "log only  " },
                    (n + 1) * 100 / order.len(),
                    stats.space_amplification,
                    stats.compactions,
                    mib(stats.pending_compaction_bytes as f64),
                    stats.stall_ms
                );
            }
        }
        for k in (0..config.keys).filter(|k| k % 10 < 3) {
            db.delete(&key(k))?;
        }
        let write_seconds = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let dir_amp_peak = sampler.join().map_err(|_| "the directory sampler panicked")?;
        db.wait_for_compaction()?;
        let stats = db.stats();
        if let Some(error) = &stats.last_background_error {
            return Err(format!("background maintenance failed: {error}").into());
        }
        eprintln!(
            "  {}: writes ended: records hot {} / warm {} / cold {}, index entries {}",
            if auto { "maintained" } else { "log only  " },
            stats.hot.records,
            stats.warm.records,
            stats.cold.records,
            stats.index_entries
        );
        let space_amp_peak = space_amp_peak.max(stats.space_amplification);
        let space_amp_steady = stats.space_amplification;
        let write_amp = stats.write_amplification;
        let qps_steady = queries_per_second(&db, config)?;
        // Then idle: the maintenance worker compacts everything once nothing was written for IDLE.
        if auto {
            let deadline = Instant::now() + Duration::from_secs(600);
            // Until everything is cold and the compacted segments are retired (files deleted).
            while {
                let s = db.stats();
                s.hot.records + s.warm.records > 0 || s.index_entries > 0
            } {
                if Instant::now() > deadline {
                    return Err("no idle compaction within 10 minutes".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let stats = db.stats();
        let run = Run {
            put_latencies_ns: latencies,
            space_amp_peak,
            dir_amp_peak,
            space_amp_steady,
            space_amp_idle: stats.space_amplification,
            write_amp,
            qps_steady,
            compactions: stats.compactions,
            write_seconds,
            anon_start,
            anon_peak,
            anon_idle: Resident::now()?.anon,
        };
        Ok((db, run))
    })
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    values.sort_unstable();
    values[((values.len() as f64 - 1.0) * p) as usize]
}

/// Gets of `count` random live keys; ns per get.
fn gets(db: &Db, config: &Config, count: usize, seed: u64) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut found = 0usize;
    for _ in 0..count {
        let k = loop {
            let k = rng.gen_range(0..config.keys);
            if k % 10 >= 3 {
                break k;
            }
        };
        found += usize::from(db.get(&key(k))?.is_some());
    }
    let ns = start.elapsed().as_nanos() as f64 / count as f64;
    if found != count {
        return Err(format!("{} of {count} live keys not found", count - found).into());
    }
    Ok(ns)
}

fn queries_per_second(db: &Db, config: &Config) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 7);
    let queries: Vec<Vec<f32>> = (0..config.queries).map(|_| embedding(&mut rng, config.dim)).collect();
    let start = Instant::now();
    for q in &queries {
        let hits = db.nearest(q, 10)?;
        if hits.len() != 10 {
            return Err("a search found fewer than 10 hits".into());
        }
    }
    Ok(config.queries as f64 / start.elapsed().as_secs_f64())
}

/// Figure 6: this program again, as a child process (`--rss-probe DIR`), so that the heap
/// it measures is the engine's alone: its RssAnon growth over opening the database in DIR,
/// 10 000 gets and `--queries` searches, and the database's cold bytes.
fn rss_probe(dir: &Path, config: &Config) -> Result<(u64, u64)> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--rss-probe", &dir.display().to_string(), "--keys", &config.keys.to_string(), "--dim", &config.dim.to_string()])
        .output()?;
    if !output.status.success() {
        return Err(format!("the RSS probe failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8(output.stdout)?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(growth)), Some(Ok(cold))) => Ok((growth, cold)),
        _ => Err(format!("the RSS probe printed {text:?}").into()),
    }
}

/// The child side of `rss_probe`: prints "<RssAnon growth bytes> <cold disk bytes>".
fn rss_probe_child(dir: &Path, config: &Config) -> Result<()> {
    let before = Resident::now()?.anon;
    let db = Db::open(dir, Options::new().embedding_dim(config.dim))?;
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..10_000 {
        db.get(&key(rng.gen_range(0..config.keys)))?;
    }
    queries_per_second(&db, config)?;
    let after = Resident::now()?.anon;
    println!("{} {}", after.saturating_sub(before), db.stats().cold.disk_bytes);
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--rss-probe") {
        let dir = PathBuf::from(std::env::args().nth(2).ok_or("--rss-probe DIR")?);
        let rest: Vec<String> = std::env::args().skip(3).collect();
        let config = parse_args_from(rest)?;
        return rss_probe_child(&dir, &config);
    }
    let config = parse_args()?;
    let temp = tempfile::Builder::new().prefix("bench_maintenance").tempdir_in(&config.dir)?;
    eprintln!(
        "bench_maintenance --keys {} --rewrites {} --content-bytes {} --dim {} --gets {} --queries {} --seed {}{}; load {}",
        config.keys,
        config.rewrites,
        config.content_bytes,
        config.dim,
        config.gets,
        config.queries,
        config.seed,
        config.warm_bytes.map_or(String::new(), |b| format!(" --warm-bytes {b}"))
            + &config.cold_segment_bytes.map_or(String::new(), |b| format!(" --cold-segment-bytes {b}")),
        load_average()
    );
    let (baseline_db, mut baseline) = run_workload(&config, &temp.path().join("log-only"), false)?;
    drop(baseline_db);
    let (db, mut maintained) = run_workload(&config, &temp.path().join("maintained"), true)?;
    eprintln!(
        "  writes: {:.1} s log only, {:.1} s maintained ({} background compactions)",
        baseline.write_seconds, maintained.write_seconds, maintained.compactions
    );

    // Gets idle, then while an explicit compaction runs (over fresh overwrites of 20 % of
    // the keys, so that it has work), then search over the fully compacted database.
    let mut rng = StdRng::seed_from_u64(config.seed ^ 9);
    let mut content = vec![0u8; config.content_bytes];
    for k in (0..config.keys).filter(|k| k % 5 == 0) {
        rng.fill(&mut content[..]);
        db.put(&key(k), &content, Some(&embedding(&mut rng, config.dim)))?;
    }
    let idle_ns = gets(&db, &config, config.gets, 3)?;
    let busy_ns = std::thread::scope(|scope| -> Result<f64> {
        let compaction = scope.spawn(|| db.compact());
        let mut per_get = Vec::new();
        while !compaction.is_finished() {
            per_get.push(gets(&db, &config, 2_000, per_get.len() as u64)?);
        }
        compaction.join().map_err(|_| "compaction panicked")??;
        if per_get.is_empty() {
            return Err("the compaction ended before any get ran".into());
        }
        Ok(median(per_get))
    })?;
    let compacted_qps = queries_per_second(&db, &config)?;
    let maintained_qps = maintained.qps_steady;
    drop(db);

    let p99_log = percentile(&mut baseline.put_latencies_ns, 0.99);
    let p99_maintained = percentile(&mut maintained.put_latencies_ns, 0.99);
    let p999_log = percentile(&mut baseline.put_latencies_ns, 0.999);
    let p999_maintained = percentile(&mut maintained.put_latencies_ns, 0.999);
    let max_log = percentile(&mut baseline.put_latencies_ns, 1.0);
    let max_maintained = percentile(&mut maintained.put_latencies_ns, 1.0);
    let latency = |name: &str, maintained: u64, log_only: u64, target: Target| Figure {
        name: name.into(),
        engine: format!("{:.1} us", maintained as f64 / 1e3),
        baseline: format!("{:.1} us", log_only as f64 / 1e3),
        ratio: maintained as f64 / log_only as f64,
        target,
    };
    // An amplification figure: the maintained run's value is the ratio, the log-only run beside it.
    let amplification = |name: &str, maintained: f64, log_only: f64, at_most: f64| Figure {
        name: name.into(),
        engine: format!("{maintained:.2}"),
        baseline: format!("log only {log_only:.2}"),
        ratio: maintained,
        target: Target::AtMost(at_most),
    };
    let figures = vec![
        amplification("space amplification while writing, maintained (peak)", maintained.space_amp_peak, baseline.space_amp_peak, 1.25),
        amplification("directory (du) peak while writing / live bytes, maintained", maintained.dir_amp_peak, baseline.dir_amp_peak, 1.25),
        amplification("space amplification when the writes end, maintained", maintained.space_amp_steady, baseline.space_amp_steady, 1.25),
        amplification("space amplification after idle, maintained", maintained.space_amp_idle, baseline.space_amp_idle, 1.1),
        amplification("write amplification, maintained", maintained.write_amp, baseline.write_amp, 5.0),
        latency("p99 put latency, maintained / log only", p99_maintained, p99_log, Target::AtMost(3.0)),
        latency("p99.9 put latency, maintained / log only", p999_maintained, p999_log, Target::Informative),
        latency("slowest put, maintained / log only", max_maintained, max_log, Target::Informative),
        Figure {
            name: "gets during a compaction / idle (throughput)".into(),
            engine: format!("{:.0} ns/get", busy_ns),
            baseline: format!("{:.0} ns/get", idle_ns),
            ratio: idle_ns / busy_ns,
            target: Target::AtLeast(0.8),
        },
        Figure {
            name: "search q/s when the writes end, maintained / fully compacted".into(),
            engine: format!("{maintained_qps:.1} q/s"),
            baseline: format!("{compacted_qps:.1} q/s"),
            ratio: maintained_qps / compacted_qps,
            target: Target::AtLeast(0.8),
        },
    ];
    let mut figures = figures;
    eprintln!(
        "  RssAnon of this process, maintained run: {:.1} MiB at open, {:.1} MiB peak while writing, {:.1} MiB after idle \
         (freed heap the allocator keeps counts here; figure 6 is measured in a fresh process)",
        mib(maintained.anon_start as f64),
        mib(maintained.anon_peak as f64),
        mib(maintained.anon_idle as f64),
    );
    let (anon_growth, cold_bytes) = rss_probe(&temp.path().join("maintained"), &config)?;
    figures.push(Figure {
        name: "6. RssAnon of a fresh process over the maintained database / its cold bytes".into(),
        engine: format!("+{:.1} MiB", mib(anon_growth as f64)),
        baseline: format!("{:.1} MiB cold", mib(cold_bytes as f64)),
        ratio: anon_growth as f64 / cold_bytes.max(1) as f64,
        target: Target::Informative,
    });
    print_table(&figures);
    Ok(())
}
