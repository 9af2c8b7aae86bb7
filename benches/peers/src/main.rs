//! strata side by side with LMDB (heed), redb, fjall and sled (issue 12), and RocksDB behind
//! `--features rocksdb`, each engine in its own child process so that its resident memory is
//! its own, with this machine's physical limits measured in the same run.
//!
//! Run: `cd benches/peers && cargo run --release -- --records 100000`
//! With RocksDB (built from C++ source by librocksdb-sys: a C++ compiler, and libclang for
//! bindgen, e.g. `pip install libclang` and its `clang/native` directory; that libclang has
//! no headers of its own, so point bindgen at the compiler's, e.g. GCC 12's):
//! `LIBCLANG_PATH=/path/to/site-packages/clang/native BINDGEN_EXTRA_CLANG_ARGS=-I/usr/lib/gcc/x86_64-linux-gnu/12/include
//! cargo run --release --features rocksdb -- --records 100000` (`NUM_JOBS=1` limits the C++ build's parallelism).
//! Flags: `--records N` (100000), `--rounds R` (3, medians), `--engines a,b` (all built in:
//! strata, lmdb, redb, fjall, sled, and rocksdb with the feature),
//! `--dir PATH` (a temporary directory is made in it; default /tmp), `--out FILE` (the
//! markdown table is also written there), `--content-max B` (32768).
//!
//! Workload: keys `doc/{i:08}` in key order, content 64 B..`--content-max` log-uniform and a
//! 768-dim f32 embedding per record, all from a seed (`data.rs`). Per engine, in a fresh
//! directory and its own process:
//! 1. bulk load: batches of 1000 records per transaction, then a durable sync; logical MB/s
//!    over the time spent in the engine's calls (the runner's making of the records between
//!    batches is not counted), and RssAnon right after it, before the handle is dropped (what
//!    the writer holds);
//! 2. close and reopen: open time;
//! 3. every record read back (`get` of each key, then a full scan) and compared byte for byte
//!    with the generated data — a mismatch fails the run;
//! 4. point gets of random keys, 1 thread and every core (value copied out), gets/s;
//! 5. full scan, GB/s of logical bytes;
//! 6. durable puts of 4 KB records, 1, 4 and 8 threads, puts/s;
//! 7. space: bytes in the directory / logical bytes after the load, and again right after
//!    an overwrite phase (every record written once more, in key order, as in the load,
//!    then a durable sync; the read-back of step 3 repeated); RssAnon and VmHWM at the end;
//! 8. strata only: exact top-10 cosine search, one query at a time and batches of 64, as
//!    loaded and after `compact()`, with every core and with one search thread (a read-only
//!    handle on the same files), beside a plain in-RAM loop over the same matrix (one
//!    thread, measured in the parent), whose top-10 lists strata's are compared with.
//!
//! Baselines (this process, before the engines): sequential write + fdatasync MB/s,
//! fdatasync/s of 4 KiB appends, `HashMap<Vec<u8>, Vec<u8>>` get + copy of the same
//! records, one thread's memory read bandwidth.

mod data;
mod engines;
mod search;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engines::{Engine, Item, Result};

const DIM: usize = 768;
const LOAD_BATCH: usize = 1000;
const GETS: usize = 200_000;
const DURABLE_PUTS: usize = 1000;

struct Config {
    records: usize,
    rounds: usize,
    engines: Vec<String>,
    dir: PathBuf,
    out: Option<PathBuf>,
    content_max: usize,
}

fn parse_args(args: &[String]) -> Result<Config> {
    let mut config = Config {
        records: 100_000,
        rounds: 3,
        engines: engines::ENGINES.iter().map(|s| s.to_string()).collect(),
        dir: std::env::temp_dir(),
        out: None,
        content_max: 32 * 1024,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => config.records = value()?.parse()?,
            "--rounds" => config.rounds = value()?.parse()?,
            "--engines" => config.engines = value()?.split(',').map(str::to_string).collect(),
            "--dir" => config.dir = PathBuf::from(value()?),
            "--out" => config.out = Some(PathBuf::from(value()?)),
            "--content-max" => config.content_max = value()?.parse()?,
            "--child" | "--path" => {
                value()?;
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(config)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
        }
    }
    total
}

// ---- the child: one engine -------------------------------------------------------------

/// Writes records `0..records` in key order, `LOAD_BATCH` per transaction, then a durable
/// sync. Returns the time spent in the engine's calls: making the records (most of a load's
/// time on a fast disk) is not counted. Background work (strata's compaction, the kernel's
/// writeback) goes on meanwhile, as it would while a host prepares its next batch.
fn load_all(engine: &dyn Engine, data: &data::Data, records: usize, scratch: &mut data::Scratch) -> Result<std::time::Duration> {
    let mut batch: Vec<(Vec<u8>, Vec<u8>, Vec<f32>)> = Vec::with_capacity(LOAD_BATCH);
    let mut in_engine = std::time::Duration::ZERO;
    for i in 0..records {
        data.record(i, scratch);
        batch.push((scratch.key.clone(), scratch.content.clone(), scratch.embedding.clone()));
        if batch.len() == LOAD_BATCH || i + 1 == records {
            let items: Vec<Item<'_>> = batch.iter().map(|(k, c, e)| Item { key: k, content: c, embedding: e }).collect();
            let start = Instant::now();
            engine.load(&items)?;
            in_engine += start.elapsed();
            batch.clear();
        }
    }
    let start = Instant::now();
    engine.sync()?;
    Ok(in_engine + start.elapsed())
}

fn child(engine_name: &str, dir: &Path, config: &Config) -> Result<serde_json::Value> {
    let data = data::Data::new(config.records, DIM, config.content_max);
    let logical = data.logical_bytes();
    // 1. bulk load.
    let engine = engines::open(engine_name, dir, DIM, false)?;
    let mut scratch = data::Scratch::default();
    let load_s = load_all(engine.as_ref(), &data, config.records, &mut scratch)?.as_secs_f64();
    let rss_anon_after_load_kib = status_kib("RssAnon:");
    drop(engine);
    let space_after_load = dir_bytes(dir) as f64 / logical as f64;

    // 2. reopen.
    let start = Instant::now();
    let engine = engines::open(engine_name, dir, DIM, false)?;
    let open_s = start.elapsed().as_secs_f64();

    // 3. read back everything, byte for byte (untimed).
    let mut got = Vec::new();
    for i in 0..config.records {
        data.record(i, &mut scratch);
        if !engine.get(&scratch.key, &mut got)? || got != scratch.value() {
            return Err(format!("{engine_name}: record {i} read back differs").into());
        }
    }
    let mut scanned = 0usize;
    let mut scan_error = None;
    engine.scan(&mut |key, content, embedding| {
        if scan_error.is_none() {
            data.record(scanned, &mut scratch);
            let same = if embedding.is_empty() {
                content == scratch.value().as_slice()
            } else {
                content == scratch.content.as_slice()
                    && embedding.iter().map(|v| v.to_bits()).eq(scratch.embedding.iter().map(|v| v.to_bits()))
            };
            if key != scratch.key.as_slice() || !same {
                scan_error = Some(format!("{engine_name}: scan entry {scanned} differs"));
            }
        }
        scanned += 1;
    })?;
    if let Some(error) = scan_error {
        return Err(error.into());
    }
    if scanned != config.records {
        return Err(format!("{engine_name}: scan returned {scanned} of {} records", config.records).into());
    }

    // 4. point gets, 1 thread and every core.
    let keys: Vec<Vec<u8>> = data::random_indices(GETS, config.records, 7).into_iter().map(data::key_of).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut gets_1 = Vec::new();
    let mut gets_all = Vec::new();
    for _ in 0..config.rounds {
        gets_1.push(gets_per_s(engine.as_ref(), &keys, 1)?);
        gets_all.push(gets_per_s(engine.as_ref(), &keys, threads)?);
    }

    // 5. full scan.
    let mut scans = Vec::new();
    for _ in 0..config.rounds {
        // Every byte is read (summed as words), as a caller that uses the records would.
        let start = Instant::now();
        let (mut bytes, mut sum) = (0usize, 0u64);
        engine.scan(&mut |key, content, embedding| {
            bytes += key.len() + content.len() + embedding.len() * 4;
            let words = content.chunks_exact(8);
            let tail = words.remainder().iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
            sum = words.fold(sum, |s, w| s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or_default()))).wrapping_add(tail);
            sum = embedding.iter().fold(sum, |s, v| s.wrapping_add(u64::from(v.to_bits())));
        })?;
        std::hint::black_box(sum);
        scans.push(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    let rss_anon_kib = status_kib("RssAnon:");

    // 8. strata: search as loaded, then compacted.
    let mut search = serde_json::Value::Null;
    if engine_name == "strata" {
        drop(engine);
        let db = strata::Db::open(dir, strata::Options::new().embedding_dim(DIM))?;
        let (loaded, loaded_batch, loaded_top) = search::strata(&db, DIM)?;
        drop(db);
        // The same files with one search thread (read-only: no background work moves data
        // between the two measurements).
        let one_thread = || strata::Options::new().embedding_dim(DIM).read_only(true).threads(1);
        let (loaded_1, loaded_batch_1, _) = search::strata(&strata::Db::open(dir, one_thread())?, DIM)?;
        let db = strata::Db::open(dir, strata::Options::new().embedding_dim(DIM))?;
        db.compact()?;
        let (compacted, compacted_batch, compacted_top) = search::strata(&db, DIM)?;
        drop(db);
        let (compacted_1, compacted_batch_1, _) = search::strata(&strata::Db::open(dir, one_thread())?, DIM)?;
        search = serde_json::json!({
            "loaded_qps": loaded, "loaded_batch_qps": loaded_batch, "loaded_top": loaded_top,
            "compacted_qps": compacted, "compacted_batch_qps": compacted_batch, "compacted_top": compacted_top,
            "loaded_1_qps": loaded_1, "loaded_1_batch_qps": loaded_batch_1,
            "compacted_1_qps": compacted_1, "compacted_1_batch_qps": compacted_batch_1,
        });
    } else {
        drop(engine);
    }

    // 7'. overwrite every record once (the same bytes: the logical size stays), then space
    // at once — what a host that rewrites its data sees before any background work catches
    // up — and the read-back again.
    let engine = engines::open(engine_name, dir, DIM, false)?;
    load_all(engine.as_ref(), &data, config.records, &mut scratch)?;
    let space_after_overwrite = dir_bytes(dir) as f64 / logical as f64;
    for i in 0..config.records {
        data.record(i, &mut scratch);
        if !engine.get(&scratch.key, &mut got)? || got != scratch.value() {
            return Err(format!("{engine_name}: record {i} read back after the overwrite differs").into());
        }
    }
    drop(engine);

    // 6. durable puts of 4 KB records (new keys), 1, 4 and 8 threads.
    let engine = engines::open(engine_name, dir, DIM, true)?;
    let put_1 = durable_puts(engine.as_ref(), 1, 0)?;
    let put_4 = durable_puts(engine.as_ref(), 4, 1)?;
    let put_8 = durable_puts(engine.as_ref(), 8, 2)?;
    drop(engine);

    Ok(serde_json::json!({
        "engine": engine_name,
        "load_mb_s": logical as f64 / load_s / 1e6,
        "open_s": open_s,
        "gets_1": median(gets_1),
        "gets_all": median(gets_all),
        "threads": threads,
        "scan_gb_s": median(scans),
        "put_1": put_1,
        "put_4": put_4,
        "put_8": put_8,
        "space": space_after_load,
        "space_overwrite": space_after_overwrite,
        "rss_anon_mib": rss_anon_kib as f64 / 1024.0,
        "rss_anon_after_load_mib": rss_anon_after_load_kib as f64 / 1024.0,
        "hwm_mib": status_kib("VmHWM:") as f64 / 1024.0,
        "search": search,
    }))
}

fn gets_per_s(engine: &dyn Engine, keys: &[Vec<u8>], threads: usize) -> Result<f64> {
    let start = Instant::now();
    let found: usize = std::thread::scope(|scope| -> Result<usize> {
        let handles: Vec<_> = keys
            .chunks(keys.len().div_ceil(threads))
            .map(|part| {
                scope.spawn(move || -> Result<usize> {
                    let mut out = Vec::new();
                    let mut found = 0;
                    for key in part {
                        found += usize::from(engine.get(key, &mut out)?);
                    }
                    Ok(found)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| "a get thread panicked")?).sum()
    })?;
    if found != keys.len() {
        return Err(format!("{} of {} gets missed", keys.len() - found, keys.len()).into());
    }
    Ok(keys.len() as f64 / start.elapsed().as_secs_f64())
}

fn durable_puts(engine: &dyn Engine, threads: usize, tag: u8) -> Result<f64> {
    let content = vec![0x5Au8; 1024];
    let embedding = data::embedding_of(42, DIM);
    let per_thread = DURABLE_PUTS / threads.max(1);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (content, embedding) = (&content, &embedding);
                scope.spawn(move || -> Result<()> {
                    for i in 0..per_thread {
                        let key = format!("put/{tag}/{t:02}/{i:06}").into_bytes();
                        engine.put_durable(&Item { key: &key, content, embedding })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "a put thread panicked")?)
    })?;
    Ok((per_thread * threads) as f64 / start.elapsed().as_secs_f64())
}

// ---- the parent: baselines, children, table ---------------------------------------------

struct Baselines {
    write_mb_s: f64,
    fsync_per_s: f64,
    hashmap_gets: f64,
    memory_gb_s: f64,
}

fn baselines(dir: &Path, config: &Config) -> Result<Baselines> {
    // Sequential write + fdatasync: 256 MiB in 1 MiB writes.
    let path = dir.join("baseline.bin");
    let chunk = vec![0xA5u8; 1 << 20];
    let start = Instant::now();
    {
        let mut file = std::fs::File::create(&path)?;
        for _ in 0..256 {
            file.write_all(&chunk)?;
        }
        file.sync_data()?;
    }
    let write_mb_s = 256.0 * 1048576.0 / start.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(&path)?;
    // fdatasync rate of 4 KiB appends.
    let mut file = std::fs::File::create(&path)?;
    let page = vec![1u8; 4096];
    let start = Instant::now();
    for _ in 0..300 {
        file.write_all(&page)?;
        file.sync_data()?;
    }
    let fsync_per_s = 300.0 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    // HashMap get + copy over the same records (1 thread).
    let data = data::Data::new(config.records, DIM, config.content_max);
    let mut scratch = data::Scratch::default();
    let map: HashMap<Vec<u8>, Vec<u8>> = (0..config.records)
        .map(|i| {
            data.record(i, &mut scratch);
            (scratch.key.clone(), scratch.value())
        })
        .collect();
    let keys: Vec<Vec<u8>> = data::random_indices(GETS, config.records, 7).into_iter().map(data::key_of).collect();
    let mut out = Vec::new();
    let start = Instant::now();
    for key in &keys {
        let value = map.get(key).ok_or("hashmap miss")?;
        out.clear();
        out.extend_from_slice(value);
    }
    let hashmap_gets = keys.len() as f64 / start.elapsed().as_secs_f64();
    drop(map);
    // Memory read bandwidth: one thread summing 1 GiB.
    let words = vec![1u64; 1 << 27];
    let start = Instant::now();
    let sum = std::hint::black_box(&words).iter().fold(0u64, |s, &w| s.wrapping_add(w));
    let memory_gb_s = (words.len() * 8) as f64 / start.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(sum);
    Ok(Baselines { write_mb_s, fsync_per_s, hashmap_gets, memory_gb_s })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = parse_args(&args)?;
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let name = args.get(at + 1).ok_or("--child ENGINE")?;
        let path = args.iter().position(|a| a == "--path").and_then(|p| args.get(p + 1)).ok_or("--path DIR")?;
        let result = child(name, Path::new(path), &config)?;
        println!("{result}");
        return Ok(());
    }
    let root = tempfile_dir(&config.dir)?;
    eprintln!("peers: {} records, content 64..{} B, {DIM}-dim embeddings, {} rounds", config.records, config.content_max, config.rounds);
    let base = baselines(&root, &config)?;
    eprintln!(
        "  baselines: write+fdatasync {:.0} MB/s, fdatasync {:.0}/s, HashMap get+copy {:.0}/s, memory {:.1} GB/s",
        base.write_mb_s, base.fsync_per_s, base.hashmap_gets, base.memory_gb_s
    );
    let in_ram = config.engines.iter().any(|e| e == "strata").then(|| search::in_ram_loop(config.records, DIM));
    if let Some(in_ram) = &in_ram {
        eprintln!("  in-RAM top-10 loop: {:.1} q/s", in_ram.qps);
    }
    let mut results = Vec::new();
    for name in &config.engines {
        let dir = root.join(name);
        eprintln!("  {name} ...");
        let output = std::process::Command::new(std::env::current_exe()?)
            .args(&args)
            .args(["--child", name, "--path", &dir.display().to_string()])
            .output()?;
        let _ = std::fs::remove_dir_all(&dir);
        if !output.status.success() {
            return Err(format!("{name} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        let line = String::from_utf8(output.stdout)?;
        let value: serde_json::Value = serde_json::from_str(line.trim())?;
        eprintln!("    {value}");
        results.push(value);
    }
    let _ = std::fs::remove_dir_all(&root);
    let table = table(&results, &base, in_ram.as_ref(), &config);
    println!("{table}");
    if let Some(out) = &config.out {
        std::fs::write(out, &table)?;
    }
    Ok(())
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!("strata-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn table(results: &[serde_json::Value], base: &Baselines, in_ram: Option<&search::LoopResult>, config: &Config) -> String {
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let names: Vec<String> = results.iter().map(|r| r["engine"].as_str().unwrap_or("?").to_string()).collect();
    let mut out = String::new();
    out += &format!(
        "N = {} records (content 64 B-{} B log-uniform + {DIM}-dim f32), medians of {} rounds; baselines: write+fdatasync {:.0} MB/s, \
         fdatasync {:.0}/s, HashMap get+copy {:.0}/s, memory read {:.1} GB/s\n\n",
        config.records, config.content_max, config.rounds, base.write_mb_s, base.fsync_per_s, base.hashmap_gets, base.memory_gb_s
    );
    out += &format!("| workload | {} |\n|---|{}\n", names.join(" | "), "---:|".repeat(names.len()));
    let row = |label: &str, cell: &dyn Fn(&serde_json::Value) -> String| {
        format!("| {label} | {} |\n", results.iter().map(cell).collect::<Vec<_>>().join(" | "))
    };
    out +=
        &row("bulk load MB/s (/ write+fdatasync)", &|r| format!("{:.0} ({:.2})", f(r, "load_mb_s"), f(r, "load_mb_s") / base.write_mb_s));
    out += &row("point gets/s, 1 thread (/ HashMap)", &|r| {
        format!("{:.0}k ({:.2})", f(r, "gets_1") / 1e3, f(r, "gets_1") / base.hashmap_gets)
    });
    out += &row("point gets/s, all threads", &|r| format!("{:.0}k", f(r, "gets_all") / 1e3));
    out +=
        &row("durable puts/s, 1 thread (/ fdatasync rate)", &|r| format!("{:.0} ({:.2})", f(r, "put_1"), f(r, "put_1") / base.fsync_per_s));
    for (label, field) in
        [("durable puts/s, 4 threads (/ fdatasync rate)", "put_4"), ("durable puts/s, 8 threads (/ fdatasync rate)", "put_8")]
    {
        out += &row(label, &|r| format!("{:.0} ({:.2})", f(r, field), f(r, field) / base.fsync_per_s));
    }
    out += &row("full scan GB/s (/ memory)", &|r| format!("{:.2} ({:.2})", f(r, "scan_gb_s"), f(r, "scan_gb_s") / base.memory_gb_s));
    out += &row("open after load, ms", &|r| format!("{:.1}", f(r, "open_s") * 1e3));
    out += &row("space: directory / logical bytes", &|r| format!("{:.2}", f(r, "space")));
    out += &row("space right after overwriting every record once", &|r| format!("{:.2}", f(r, "space_overwrite")));
    out += &row("RssAnon after gets and scans, MiB", &|r| format!("{:.0}", f(r, "rss_anon_mib")));
    out += &row("RssAnon right after the bulk load (handle open), MiB", &|r| format!("{:.0}", f(r, "rss_anon_after_load_mib")));
    out += &row("peak RSS (VmHWM), MiB", &|r| format!("{:.0}", f(r, "hwm_mib")));
    if let (Some(strata), Some(in_ram)) = (results.iter().find(|r| r["engine"] == "strata"), in_ram) {
        let s = &strata["search"];
        let same = |field: &str| -> usize {
            let lists: Vec<Vec<usize>> = serde_json::from_value(s[field].clone()).unwrap_or_default();
            lists.iter().zip(&in_ram.top).filter(|(a, b)| a == b).count()
        };
        out += &format!(
            "\nexact top-10 cosine, queries/s (strata with `Options::threads` = all cores, and 1; the plain in-RAM loop over the \
             same matrix, one thread: {:.1} q/s):\n\n| strata | 1 query (/ loop) | batch of {} | 1 thread: 1 query (/ loop) | 1 thread: batch | lists identical to the loop's |\n|---|---:|---:|---:|---:|---:|\n",
            in_ram.qps,
            search::BATCH
        );
        for (label, key) in [("as loaded (auto_compact on)", "loaded"), ("after compact()", "compacted")] {
            let single = f(s, &format!("{key}_qps"));
            let single_1 = f(s, &format!("{key}_1_qps"));
            out += &format!(
                "| {label} | {single:.1} ({:.2}) | {:.1} | {single_1:.1} ({:.2}) | {:.1} | {} of {} |\n",
                single / in_ram.qps,
                f(s, &format!("{key}_batch_qps")),
                single_1 / in_ram.qps,
                f(s, &format!("{key}_1_batch_qps")),
                same(&format!("{key}_top")),
                search::QUERIES
            );
        }
    }
    out
}
