//! The measuring harness shared by `bench_core` and `bench_cold`: result lines with targets,
//! per-round ratios, the machine baselines (raw sequential write, memory read bandwidth) and
//! readers of `/proc` (CPU split of a thread, resident memory of the process).
//! (How a benchmark touches a record is in `benches/support.rs`, shared with the criterion benches.)
#![allow(dead_code)] // each includer uses its own subset

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The raw sequential-write baseline writes in chunks of this size.
pub const RAW_WRITE_CHUNK_BYTES: usize = 1 << 20;

// ---- results ---------------------------------------------------------------------------

pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// Reported for information; no target was set.
    Informative,
}

/// One line of the result table.
pub struct Figure {
    pub name: String,
    pub engine: String,
    pub baseline: String,
    pub ratio: f64,
    pub target: Target,
}

impl Figure {
    pub fn verdict(&self) -> &'static str {
        match self.target {
            Target::AtLeast(t) if self.ratio >= t => "met",
            Target::AtMost(t) if self.ratio <= t => "met",
            Target::Informative => "",
            _ => "MISSED",
        }
    }

    pub fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast(t) => format!(">= {t:.2}"),
            Target::AtMost(t) => format!("<= {t:.2}"),
            Target::Informative => "-".into(),
        }
    }
}

pub fn print_table(figures: &[Figure]) {
    println!("{:<58} {:>20} {:>34} {:>7} {:>8} {:>7}", "figure", "engine", "baseline", "ratio", "target", "");
    for f in figures {
        println!("{:<58} {:>20} {:>34} {:>7.3} {:>8} {:>7}", f.name, f.engine, f.baseline, f.ratio, f.target_text(), f.verdict());
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Per-round (engine, baseline) pairs of one figure.
#[derive(Default)]
pub struct Rounds {
    pub engine: Vec<f64>,
    pub baseline: Vec<f64>,
    /// The ratio of each round: engine / baseline, or a more robust estimate of it.
    pub ratios: Vec<f64>,
}

impl Rounds {
    pub fn push(&mut self, engine: f64, baseline: f64) {
        self.push_with_ratio(engine, baseline, engine / baseline);
    }

    pub fn push_with_ratio(&mut self, engine: f64, baseline: f64, ratio: f64) {
        self.engine.push(engine);
        self.baseline.push(baseline);
        self.ratios.push(ratio);
    }

    /// Median over rounds of each round's ratio (engine and baseline measured together).
    pub fn ratio(&self) -> f64 {
        median(self.ratios.clone())
    }

    pub fn engine_median(&self) -> f64 {
        median(self.engine.clone())
    }

    pub fn baseline_median(&self) -> f64 {
        median(self.baseline.clone())
    }

    pub fn rounds_text(&self) -> String {
        let ratios: Vec<String> = self.ratios.iter().map(|r| format!("{r:.3}")).collect();
        ratios.join(", ")
    }
}

pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / (1024.0 * 1024.0)
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

// ---- time ------------------------------------------------------------------------------

pub fn flush_os_caches() {
    // Write back every dirty page of the system, so that a timed phase does not pay for
    // the previous phase's writeback. (Dropping the page cache would need privileges.)
    let _ = std::process::Command::new("sync").status();
}

/// (seconds on a CPU, seconds runnable but waiting for one) of the calling thread so far,
/// from `/proc/thread-self/schedstat`. Wall time minus both is time blocked (I/O, fsync).
pub fn thread_schedstat() -> Result<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let mut next = || -> Result<f64> { Ok(fields.next().ok_or("malformed schedstat")?? as f64 / 1e9) };
    Ok((next()?, next()?))
}

/// Where a timed phase's wall time went.
pub struct TimeSplit {
    pub wall: f64,
    pub on_cpu: f64,
    pub runqueue: f64,
}

impl TimeSplit {
    pub fn measure<T>(phase: impl FnOnce() -> Result<T>) -> Result<(T, TimeSplit)> {
        let (cpu_start, wait_start) = thread_schedstat()?;
        let start = Instant::now();
        let value = phase()?;
        let wall = start.elapsed().as_secs_f64();
        let (cpu_end, wait_end) = thread_schedstat()?;
        Ok((value, TimeSplit { wall, on_cpu: cpu_end - cpu_start, runqueue: wait_end - wait_start }))
    }

    pub fn text(&self) -> String {
        let blocked = (self.wall - self.on_cpu - self.runqueue).max(0.0);
        format!("{:.2} s = CPU {:.2} + run queue {:.2} + blocked {blocked:.2}", self.wall, self.on_cpu, self.runqueue)
    }
}

// ---- machine baselines -----------------------------------------------------------------

/// A chunk of random bytes for [`raw_sequential_write`].
pub fn raw_write_chunk(seed: u64) -> Vec<u8> {
    let mut chunk = vec![0u8; RAW_WRITE_CHUNK_BYTES];
    StdRng::seed_from_u64(seed).fill(&mut chunk[..]);
    chunk
}

/// Writes `bytes` bytes to a new file in `dir` in `chunk`-sized writes, then one
/// `sync_data()` (fdatasync); returns the time from create to the end of the fdatasync.
/// The file is removed afterwards, untimed.
pub fn raw_sequential_write(dir: &Path, bytes: u64, chunk: &[u8]) -> Result<Duration> {
    let path = dir.join("raw-sequential-write.bin");
    let start = Instant::now();
    let mut file = File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_data()?;
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(elapsed)
}

/// A `Vec<u64>` of `bytes / 8` random words: the memory-bandwidth baseline's buffer.
pub fn memory_words(bytes: u64, seed: u64) -> Vec<u64> {
    let mut words = vec![0u64; (bytes / 8) as usize];
    StdRng::seed_from_u64(seed).fill(&mut words[..]);
    words
}

/// One single-threaded pass summing `words`: memory read bandwidth when they exceed the caches.
pub fn memory_scan(words: &[u64]) -> Duration {
    let start = Instant::now();
    black_box(words.iter().fold(0u64, |s, &w| s.wrapping_add(w)));
    start.elapsed()
}

// ---- memory ----------------------------------------------------------------------------

/// Resident memory of this process, from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resident {
    /// VmRSS: everything resident (RssAnon + RssFile + RssShmem).
    pub total: u64,
    /// RssAnon: heap, stacks, anonymous maps.
    pub anon: u64,
    /// RssFile: resident pages of file maps (the page cache seen through the maps).
    pub file: u64,
}

impl Resident {
    pub fn now() -> Result<Resident> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| -> Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| format!("no {name} in /proc/self/status"))?;
            let kib: u64 = line.split_whitespace().nth(1).ok_or("malformed status line")?.parse()?;
            Ok(kib * 1024)
        };
        Ok(Resident { total: field("VmRSS:")?, anon: field("RssAnon:")?, file: field("RssFile:")? })
    }
}
