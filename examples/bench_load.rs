//! bench_load: a bulk load as the side-by-side runner does it (`benches/peers`), with the
//! latency of every write call, background maintenance on against off in the same run.
//!
//! Run: `cargo run --release --example bench_load -- --records 100000`
//! Flags: `--records N` (100000), `--batch B` (records per `Db::write`, 10), `--rounds R` (3),
//! `--dir PATH` (a temporary directory is made in it; default /tmp).
//!
//! Workload: keys `doc/{i:08}` in key order, content 64 B..32 KiB log-uniform and a 768-dim
//! f32 embedding per record (all from a seed), written in batches of B with
//! `Durability::None`, then one `sync()`. Each round loads a fresh directory twice, with
//! `auto_compact(false)` (the baseline: nothing but the log) and with it on (the engine's
//! default: compactions run while the load goes on). Figures, medians over the rounds:
//! 1. bulk load MB/s (logical bytes, until `sync()` returns), maintained / log only;
//! 2. p99, p99.9 and slowest batch latency, maintained / log only: what a seal's fdatasync,
//!    a compaction's writes and the CPU it takes cost the writer.
//!
//! Progress goes to stderr, the table to stdout.

use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Batch, Db, Durability, Options};

mod harness;
use harness::*;

const DIM: usize = 768;
const CONTENT_MIN: f64 = 64.0;
const CONTENT_MAX: f64 = 32_768.0;

struct Config {
    records: usize,
    batch: usize,
    rounds: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Config> {
    let mut config = Config { records: 100_000, batch: 10, rounds: 3, dir: std::env::temp_dir() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => config.records = value()?.parse()?,
            "--batch" => config.batch = value()?.parse()?,
            "--rounds" => config.rounds = value()?.parse()?,
            "--dir" => config.dir = PathBuf::from(value()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if config.batch == 0 || config.rounds == 0 {
        return Err("--batch and --rounds must be at least 1".into());
    }
    Ok(config)
}

/// One load: MB/s and every batch's latency in ns, sorted.
struct Load {
    mb_per_s: f64,
    latencies_ns: Vec<u64>,
}

impl Load {
    fn percentile(&self, p: f64) -> f64 {
        self.latencies_ns[((self.latencies_ns.len() - 1) as f64 * p) as usize] as f64
    }
}

fn load(config: &Config, lens: &[usize], content: &[u8], embedding: &[f32], auto: bool) -> Result<Load> {
    let dir = tempfile::tempdir_in(&config.dir)?;
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM).durability(Durability::None).auto_compact(auto))?;
    let logical: usize = lens.iter().map(|len| 12 + len + DIM * 4).sum();
    let mut latencies_ns = Vec::with_capacity(lens.len() / config.batch + 1);
    let start = Instant::now();
    for first in (0..lens.len()).step_by(config.batch) {
        let keys: Vec<String> = (first..(first + config.batch).min(lens.len())).map(|i| format!("doc/{i:08}")).collect();
        let mut batch = Batch::new();
        for (key, len) in keys.iter().zip(&lens[first..]) {
            batch.put(key.as_bytes(), &content[..*len], Some(embedding));
        }
        let t = Instant::now();
        db.write(batch)?;
        latencies_ns.push(t.elapsed().as_nanos() as u64);
    }
    db.sync()?;
    let seconds = start.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    Ok(Load { mb_per_s: logical as f64 / 1e6 / seconds, latencies_ns })
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let mut rng = StdRng::seed_from_u64(7);
    let lens: Vec<usize> =
        (0..config.records).map(|_| (CONTENT_MIN * (CONTENT_MAX / CONTENT_MIN).powf(rng.gen::<f64>())) as usize).collect();
    let content: Vec<u8> = (0..CONTENT_MAX as usize).map(|_| rng.gen()).collect();
    let embedding: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (mut rate, mut p99, mut p999, mut slowest) = (Rounds::default(), Rounds::default(), Rounds::default(), Rounds::default());
    for round in 0..config.rounds {
        let log_only = load(&config, &lens, &content, &embedding, false)?;
        let maintained = load(&config, &lens, &content, &embedding, true)?;
        eprintln!(
            "round {round}: {:.0} / {:.0} MB/s, p99 {:.0} / {:.0} us, p99.9 {:.0} / {:.0} us, slowest {:.0} / {:.0} us (maintained / log only; load {})",
            maintained.mb_per_s,
            log_only.mb_per_s,
            maintained.percentile(0.99) / 1e3,
            log_only.percentile(0.99) / 1e3,
            maintained.percentile(0.999) / 1e3,
            log_only.percentile(0.999) / 1e3,
            maintained.percentile(1.0) / 1e3,
            log_only.percentile(1.0) / 1e3,
            load_average(),
        );
        rate.push(maintained.mb_per_s, log_only.mb_per_s);
        p99.push(maintained.percentile(0.99), log_only.percentile(0.99));
        p999.push(maintained.percentile(0.999), log_only.percentile(0.999));
        slowest.push(maintained.percentile(1.0), log_only.percentile(1.0));
    }
    let micros = |rounds: &Rounds, name: &str, target: Target| Figure {
        name: name.into(),
        engine: format!("{:.0} us", rounds.engine_median() / 1e3),
        baseline: format!("log only {:.0} us", rounds.baseline_median() / 1e3),
        ratio: rounds.ratio(),
        target,
    };
    print_table(&[
        Figure {
            name: "bulk load MB/s, maintained / log only".into(),
            engine: format!("{:.0} MB/s", rate.engine_median()),
            baseline: format!("log only {:.0} MB/s", rate.baseline_median()),
            ratio: rate.ratio(),
            target: Target::Informative,
        },
        micros(&p99, "p99 batch latency, maintained / log only", Target::AtMost(3.0)),
        micros(&p999, "p99.9 batch latency, maintained / log only", Target::Informative),
        micros(&slowest, "slowest batch, maintained / log only", Target::Informative),
    ]);
    Ok(())
}
