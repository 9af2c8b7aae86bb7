//! `strata bench`: quick versions of the benchmark workloads (bulk load, point gets, prefix
//! scans, a full scan, exact searches, durable puts) on a temporary database of the demo's
//! records, each next to this machine's raw figure measured in the same run. The numbers
//! that go into BENCHMARKS.md come from `benches/` and `examples/bench_*.rs`; this is the
//! five-second look.

use std::time::Instant;

use serde_json::json;
use strata::{Db, Durability, Options};

use crate::args::BenchArgs;
use crate::demo::{self, Limit, Measured};
use crate::failure::Failure;
use crate::machine;

const DIM: usize = 384;

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.records == 0 {
        return Err(Failure::new("--records must be at least 1"));
    }
    let dir = tempfile::Builder::new().prefix("strata-bench-").tempdir().map_err(|e| Failure::new(format!("temp dir: {e}")))?;
    let probe = (args.records << 12).clamp(8 << 20, 64 << 20);
    let machine = machine::measure(dir.path(), probe, (probe * 4).max(32 << 20))?;
    let path = dir.path().join("bench.strata");
    let db = Db::open(&path, Options::new().embedding_dim(DIM).durability(Durability::None).auto_compact(false))?;
    let quiet = true;
    let mut measured = vec![demo::load(&db, args.records, DIM, quiet)?];
    measured.push(demo::point_gets(&db, args.records, quiet)?);
    measured.push(demo::prefix_scans(&db, args.records, quiet)?);
    measured.push(full_scan(&db)?);
    measured.push(demo::timed_searches(&db, DIM, quiet)?);
    db.compact()?;
    measured.push(demo::point_gets(&db, args.records, quiet)?);
    measured.push(full_scan(&db)?);
    measured.push(demo::timed_searches(&db, DIM, quiet)?);
    db.close()?;
    measured.push(demo::durable_puts(dir.path())?);

    if args.json {
        let workloads: Vec<_> = measured
            .iter()
            .map(|m| {
                let seconds = m.elapsed.as_secs_f64().max(1e-9);
                let limit = match m.limit {
                    Limit::Disk => "disk_write_mb_s",
                    Limit::Memory => "memory_read_gb_s",
                    Limit::Fsync => "fsyncs_per_s",
                };
                json!({
                    "operation": m.operation,
                    "count": m.count,
                    "seconds": seconds,
                    "per_second": m.count as f64 / seconds,
                    "mb_per_second": m.bytes as f64 / seconds / 1e6,
                    "limit": limit,
                })
            })
            .collect();
        let value = json!({
            "records": args.records,
            "dim": DIM,
            "machine": {
                "disk_write_mb_s": machine.disk_write_mb_s,
                "fsyncs_per_s": machine.fsyncs_per_s,
                "memory_read_gb_s": machine.memory_read_gb_s,
            },
            "workloads": workloads,
        });
        println!("{value}");
        return Ok(());
    }
    println!(
        "strata bench: {} records of the demo's memories, {DIM}-dim embeddings; this machine: disk {:.0} MB/s (write + fdatasync), {:.0} fdatasyncs/s, memory {:.1} GB/s\n",
        args.records, machine.disk_write_mb_s, machine.fsyncs_per_s, machine.memory_read_gb_s
    );
    print!("{}", demo::operations_table(&machine, &measured).render());
    Ok(())
}

fn full_scan(db: &Db) -> Result<Measured, Failure> {
    let tier = if db.stats().cold.records > 0 { "cold" } else { "hot/warm" };
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    for record in db.iter() {
        let record = record?;
        count += 1;
        bytes += (record.key().len() + record.content().len() + record.embedding().map_or(0, |e| e.len() * 4)) as u64;
    }
    Ok(Measured { operation: format!("full scan ({tier})"), count, elapsed: start.elapsed(), bytes, limit: Limit::Memory })
}
