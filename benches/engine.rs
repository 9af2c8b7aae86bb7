//! Criterion benches of the core engine: put (None, Sync), get (hot, warm), iter — each next
//! to an in-RAM baseline in the same group, so the report can be read as a ratio.
//! Small sizes, so `cargo bench --bench engine` takes a few minutes. The main tool for the
//! figures in `BENCHMARKS.md` is `examples/bench_core.rs`; this is the secondary one.
//!
//! Workload (DESIGN.md): keys `doc/{i:08}`, content 64 B..32 KiB log-uniform, 768-dim f32
//! embeddings, seeded RNG.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Durability, Options};

#[path = "support.rs"]
mod support;
use support::*;

const EMBEDDING_DIM: usize = 768;
const RECORDS_COUNT: usize = 2_000;
const SYNC_PUT_CONTENT_LEN: usize = 64;

struct Workload {
    keys: Vec<Vec<u8>>,
    contents: Vec<Vec<u8>>,
    embeddings: Vec<f32>,
}

impl Workload {
    fn generate(records_count: usize) -> Workload {
        let mut rng = StdRng::seed_from_u64(42);
        let (ln_min, ln_max) = (64f64.ln(), (32.0 * 1024.0f64).ln());
        let contents = (0..records_count)
            .map(|_| {
                let mut content = vec![0u8; (rng.gen_range(ln_min..=ln_max).exp() as usize).clamp(64, 32 * 1024)];
                rng.fill(&mut content[..]);
                content
            })
            .collect();
        let embeddings = (0..records_count * EMBEDDING_DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        Workload { keys: (0..records_count).map(|i| format!("doc/{i:08}").into_bytes()).collect(), contents, embeddings }
    }

    fn embedding(&self, index: usize) -> &[f32] {
        &self.embeddings[index * EMBEDDING_DIM..(index + 1) * EMBEDDING_DIM]
    }

    fn logical_bytes(&self) -> u64 {
        (0..self.keys.len()).map(|i| (self.keys[i].len() + self.contents[i].len() + EMBEDDING_DIM * 4) as u64).sum()
    }

    fn load(&self, dir: &Path, options: Options) -> Db {
        let db = Db::open(dir, options).expect("open");
        for i in 0..self.keys.len() {
            db.put(&self.keys[i], &self.contents[i], Some(self.embedding(i))).expect("put");
        }
        db
    }
}

fn options(durability: Durability) -> Options {
    Options::new().embedding_dim(EMBEDDING_DIM).durability(durability).auto_compact(false)
}

/// Times `iters` puts into a fresh database per sample (so disk use stays bounded), with
/// `content` chosen per record by `content_of`.
fn timed_puts(workload: &Workload, durability: Durability, iters: u64, content_of: impl Fn(usize) -> usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(durability)).expect("open");
    let start = Instant::now();
    for n in 0..iters as usize {
        let i = n % workload.keys.len();
        let key = format!("doc/{n:08}");
        db.put(key.as_bytes(), &workload.contents[i][..content_of(i)], Some(workload.embedding(i))).expect("put");
    }
    if durability == Durability::None {
        db.sync().expect("sync");
    }
    let elapsed = start.elapsed();
    db.close().expect("close");
    elapsed
}

fn puts(c: &mut Criterion, workload: &Workload) {
    let mut group = c.benchmark_group("put");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    group.bench_function("none_workload_record", |b| {
        b.iter_custom(|iters| timed_puts(workload, Durability::None, iters, |i| workload.contents[i].len()))
    });
    group.bench_function("sync_64B_record", |b| {
        b.iter_custom(|iters| timed_puts(workload, Durability::Sync, iters, |_| SYNC_PUT_CONTENT_LEN))
    });
    group.finish();
}

fn gets(c: &mut Criterion, workload: &Workload) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = workload.load(dir.path(), options(Durability::None));
    let map: HashMap<Vec<u8>, (Vec<u8>, Vec<f32>)> = (0..workload.keys.len())
        .map(|i| (workload.keys[i].clone(), (workload.contents[i].clone(), workload.embedding(i).to_vec())))
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let lookups: Vec<usize> = (0..1 << 16).map(|_| rng.gen_range(0..workload.keys.len())).collect();
    let mut group = c.benchmark_group("get");
    group.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    let mut out = (Vec::with_capacity(32 * 1024), Vec::with_capacity(EMBEDDING_DIM));
    let mut n = 0usize;
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            n = (n + 1) % lookups.len();
            let (content, embedding) = &map[&workload.keys[lookups[n]]];
            copy_out(content, embedding, &mut out);
        })
    });
    let mut engine_get = |name: &str, group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>| {
        group.bench_function(name, |b| {
            b.iter(|| {
                n = (n + 1) % lookups.len();
                let record = db.get(&workload.keys[lookups[n]]).expect("get").expect("present");
                copy_out(record.content(), record.embedding().expect("embedding"), &mut out);
            })
        });
    };
    engine_get("hot", &mut group);
    db.seal().expect("seal");
    engine_get("warm", &mut group);
    group.finish();
    db.close().expect("close");
}

fn scans(c: &mut Criterion, workload: &Workload) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = workload.load(dir.path(), options(Durability::None));
    db.seal().expect("seal");
    let logical = workload.logical_bytes();
    let words: Vec<u64> = (0..logical / 8).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let mut group = c.benchmark_group("iter");
    group.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Bytes(logical));
    group.bench_function("memory_baseline", |b| b.iter(|| black_box(words.iter().fold(0u64, |s, &w| s.wrapping_add(w)))));
    group.bench_function("warm", |b| {
        b.iter_batched(
            || db.iter(),
            |iter| {
                let mut sum = 0u64;
                for record in iter {
                    let record = record.expect("record");
                    sum = sum
                        .wrapping_add(sum_bytes(record.key()))
                        .wrapping_add(sum_bytes(record.content()))
                        .wrapping_add(sum_floats(record.embedding().expect("embedding")));
                }
                black_box(sum)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    db.close().expect("close");
}

fn engine(c: &mut Criterion) {
    let workload = Workload::generate(RECORDS_COUNT);
    puts(c, &workload);
    gets(c, &workload);
    scans(c, &workload);
}

criterion_group!(benches, engine);
criterion_main!(benches);
