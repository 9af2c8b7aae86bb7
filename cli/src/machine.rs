//! This machine's raw limits, measured in the same run as the figures they stand beside:
//! sequential write + fdatasync to the database's file system, and memory read bandwidth.

use std::io::{Seek, Write};
use std::path::Path;
use std::time::Instant;

use crate::failure::{Failure, IoContext};

/// The raw figures of this machine.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    /// Sequential write of a new file, then one fdatasync, in MB/s (10^6 bytes).
    pub disk_write_mb_s: f64,
    /// fdatasyncs per second of a 4 KiB write each (the ceiling of durable single writes).
    pub fsyncs_per_s: f64,
    /// Reading a buffer larger than the caches on one thread, in GB/s (10^9 bytes).
    pub memory_read_gb_s: f64,
}

/// Measures in `dir` (a file there, removed afterwards): `disk_bytes` written sequentially
/// and fsynced, 128 fsynced 4 KiB writes in place, and `memory_bytes` read three times.
pub fn measure(dir: &Path, disk_bytes: usize, memory_bytes: usize) -> Result<Machine, Failure> {
    std::fs::create_dir_all(dir).at("create", dir)?;
    let path = dir.join(".strata-disk-probe");
    let chunk = vec![0x5au8; 1 << 20];
    let mut file = std::fs::File::create(&path).at("create", &path)?;
    let start = Instant::now();
    let mut written = 0;
    while written < disk_bytes {
        let n = chunk.len().min(disk_bytes - written);
        file.write_all(&chunk[..n]).at("write", &path)?;
        written += n;
    }
    file.sync_data().at("fdatasync", &path)?;
    let disk_write_mb_s = written as f64 / start.elapsed().as_secs_f64() / 1e6;

    // Overwrites in place (the file's size does not change), as a log segment's appends
    // into its preallocated length do.
    let syncs: u32 = 128;
    let start = Instant::now();
    for i in 0..syncs {
        file.seek(std::io::SeekFrom::Start(u64::from(i) * 4096)).at("seek", &path)?;
        file.write_all(&chunk[..4096]).at("write", &path)?;
        file.sync_data().at("fdatasync", &path)?;
    }
    let fsyncs_per_s = f64::from(syncs) / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).at("remove", &path)?;

    Ok(Machine { disk_write_mb_s, fsyncs_per_s, memory_read_gb_s: memory_read_gb_s(memory_bytes) })
}

/// Sums a buffer of `bytes` (u64 words, four independent accumulators so the loop is bound
/// by loads, not by the add chain); best of three passes after a warm-up that faults the
/// pages in.
fn memory_read_gb_s(bytes: usize) -> f64 {
    let words = vec![1u64; bytes / 8];
    let mut best = f64::MAX;
    let mut total = 0u64;
    for pass in 0..4 {
        let start = Instant::now();
        let mut sums = [0u64; 4];
        for quad in words.chunks_exact(4) {
            for (sum, word) in sums.iter_mut().zip(quad) {
                *sum = sum.wrapping_add(*word);
            }
        }
        total = total.wrapping_add(sums.iter().copied().fold(0, u64::wrapping_add));
        if pass > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(total);
    (words.len() * 8) as f64 / best / 1e9
}
