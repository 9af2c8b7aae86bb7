//! The record and maintenance commands: put, get, delete, scan, search, stats, verify,
//! repair, compact, checkpoint, inspect.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use strata::{Db, Metric, Options, Record, Search, Stats, Tier, TierStats};

use crate::args::{CheckpointArgs, DeleteArgs, DirArgs, GetArgs, MetricArg, PutArgs, ReadArgs, ScanArgs, SearchArgs, TierArg};
use crate::failure::{Failure, IoContext};
use crate::output::{self, record_json, show_bytes, show_size, Table};

/// Opens `dir` read-only: never creates it, takes no write lock.
pub fn open_read(dir: &Path) -> Result<Db, Failure> {
    if !dir.exists() {
        return Err(Failure::new(format!("no database at {}: the directory does not exist", dir.display())));
    }
    Ok(Db::open(dir, Options::new().read_only(true))?)
}

/// Does `dir` hold a database already (its `META`)?
pub fn exists(dir: &Path) -> bool {
    dir.join("META").exists()
}

/// Opens `dir` for writing, creating it if missing. `dim` sets the dimension of a new
/// database; an existing one with another dimension is an error (the engine's check).
pub fn open_write(dir: &Path, dim: Option<usize>) -> Result<Db, Failure> {
    let mut options = Options::new();
    if let Some(dim) = dim {
        options = options.embedding_dim(dim);
    }
    Ok(Db::open(dir, options)?)
}

/// A failed write to stdout. A reader that went away (`strata scan ... | head`) is not an
/// error: the tool stops quietly, as `cat` does.
pub fn stdout_failure(error: std::io::Error) -> Failure {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Failure::new(format!("writing to stdout: {error}"))
}

pub fn stdout_line(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(stdout_failure)
}

pub fn put(args: PutArgs) -> Result<(), Failure> {
    let content = match (&args.content, &args.content_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path).at("read", path)?,
        (None, None) => unreachable!("clap requires --content or --content-file"),
    };
    let embedding = args.embedding.as_deref().map(|text| output::parse_vector(text, "--embedding")).transpose()?;
    // A new database takes its dimension from --dim, or else from the first embedding.
    let dim = args.dim.or_else(|| (!exists(&args.dir)).then(|| embedding.as_ref().map(Vec::len)).flatten());
    let db = open_write(&args.dir, dim)?;
    match args.ttl {
        Some(seconds) => db.put_with_ttl(args.key.as_bytes(), &content, embedding.as_deref(), Duration::from_secs(seconds))?,
        None => db.put(args.key.as_bytes(), &content, embedding.as_deref())?,
    }
    db.close()?;
    Ok(())
}

pub fn get(args: GetArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    let record = db.get(args.key.as_bytes())?.ok_or_else(|| Failure::new(format!("not found: {}", args.key)))?;
    if args.json {
        return stdout_line(&record_json(&record));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(record.content()).and_then(|_| out.write_all(b"\n")).map_err(stdout_failure)
}

pub fn delete(args: DeleteArgs) -> Result<(), Failure> {
    if !exists(&args.dir) {
        return Err(Failure::new(format!("no database at {}", args.dir.display())));
    }
    let db = open_write(&args.dir, None)?;
    db.delete(args.key.as_bytes())?;
    db.close()?;
    Ok(())
}

fn tier(arg: TierArg) -> Tier {
    match arg {
        TierArg::Hot => Tier::Hot,
        TierArg::Warm => Tier::Warm,
        TierArg::Cold => Tier::Cold,
    }
}

/// The records a scan selects, in order: a tier, a prefix and a `[start, end)` range
/// combine (all must hold).
fn scan_records<'a>(db: &'a Db, args: &'a ScanArgs) -> Box<dyn Iterator<Item = strata::Result<Record>> + 'a> {
    let start = args.start.as_deref().map(str::as_bytes);
    let end = args.end.as_deref().map(str::as_bytes);
    let iter = match (args.tier, &args.prefix) {
        (Some(t), _) => db.iter_tier(tier(t)),
        (None, Some(prefix)) => db.prefix(prefix.as_bytes()),
        (None, None) => match (start, end) {
            (Some(s), Some(e)) if s < e => db.range(s..e),
            (Some(_), Some(_)) => db.range(&b""[..]..&b""[..]),
            (Some(s), None) => db.range(s..),
            (None, Some(e)) => db.range(..e),
            (None, None) => db.iter(),
        },
    };
    let iter: Box<dyn Iterator<Item = strata::Result<Record>>> = if args.reverse { Box::new(iter.rev()) } else { Box::new(iter) };
    let prefix = args.prefix.as_deref().map(str::as_bytes);
    Box::new(iter.filter(move |r| match r {
        Ok(r) => prefix.is_none_or(|p| r.key().starts_with(p)) && start.is_none_or(|s| r.key() >= s) && end.is_none_or(|e| r.key() < e),
        Err(_) => true,
    }))
}

pub fn scan(args: ScanArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut table = Table::new(&["key", "seq", "expires_at_ms", "dim", "bytes", "content"]).right_aligned(&[1, 2, 3, 4]);
    let mut widths = Vec::new();
    let mut printed = 0;
    for record in scan_records(&db, &args).take(limit) {
        let record = record?;
        if args.json {
            writeln!(out, "{}", record_json(&record)).map_err(stdout_failure)?;
        } else {
            if table.len() == 1024 {
                write!(out, "{}", table.render_part(&mut widths, printed == 0)).map_err(stdout_failure)?;
                printed += table.len();
                table.clear();
            }
            table.row(vec![
                show_bytes(record.key(), 40),
                record.seq().to_string(),
                if record.expires_at_ms() == 0 { "-".into() } else { record.expires_at_ms().to_string() },
                record.embedding().map_or("-".into(), |e| e.len().to_string()),
                record.content().len().to_string(),
                show_bytes(record.content(), 60),
            ]);
        }
    }
    if !args.json {
        write!(out, "{}", table.render_part(&mut widths, printed == 0)).map_err(stdout_failure)?;
    }
    out.flush().map_err(stdout_failure)
}

fn metric(arg: MetricArg) -> Metric {
    match arg {
        MetricArg::Cosine => Metric::Cosine,
        MetricArg::Dot => Metric::Dot,
        MetricArg::L2 => Metric::L2,
    }
}

pub fn search(args: SearchArgs) -> Result<(), Failure> {
    // The query's syntax is checked before the database is opened.
    let vector = args.vector.as_deref().map(|text| output::parse_vector(text, "--vector")).transpose()?;
    let db = open_read(&args.dir)?;
    let snapshot = db.snapshot();
    let query = match (vector, &args.like) {
        (Some(vector), _) => vector,
        (None, Some(key)) => {
            let record = snapshot.get(key.as_bytes())?.ok_or_else(|| Failure::new(format!("not found: {key}")))?;
            record.embedding().ok_or_else(|| Failure::new(format!("record {key} has no embedding")))?.to_vec()
        }
        (None, None) => unreachable!("clap requires --vector or --like"),
    };
    let mut search = Search::new(&query).k(args.k).metric(metric(args.metric));
    if let Some(min) = args.min_score {
        search = search.min_score(min);
    }
    if let Some(prefix) = &args.prefix {
        search = search.prefix(prefix.as_bytes());
    }
    let hits = snapshot.search(&search)?;
    if args.json {
        // Scores as f32 text (the shortest that reads back as the same f32), not widened to f64.
        let hits: Vec<String> = hits
            .iter()
            .map(|h| {
                let mut hit = format!("{{{},\"score\":", output::key_field(&h.key));
                output::push_f32(&mut hit, h.score);
                hit + "}"
            })
            .collect();
        return stdout_line(&format!("[{}]", hits.join(",")));
    }
    let mut table = Table::new(&["rank", "score", "key", "content"]).right_aligned(&[0, 1]);
    for (rank, hit) in hits.iter().enumerate() {
        let content = snapshot.get(&hit.key)?.map(|r| show_bytes(r.content(), 70)).unwrap_or_default();
        table.row(vec![(rank + 1).to_string(), format!("{:.4}", hit.score), show_bytes(&hit.key, 40), content]);
    }
    print!("{}", table.render());
    Ok(())
}

fn tier_json(t: &TierStats) -> serde_json::Value {
    json!({"records": t.records, "bytes": t.bytes, "segments": t.segments, "disk_bytes": t.disk_bytes})
}

pub fn stats_json(stats: &Stats) -> serde_json::Value {
    json!({
        "live_records": stats.live_records,
        "live_bytes": stats.live_bytes,
        "disk_bytes": stats.disk_bytes,
        "space_amplification": stats.space_amplification,
        "write_amplification": stats.write_amplification,
        "index_entries": stats.index_entries,
        "orphans_removed": stats.orphans_removed,
        "hot": tier_json(&stats.hot),
        "warm": tier_json(&stats.warm),
        "cold": tier_json(&stats.cold),
        "compactions": stats.compactions,
        "bytes_compacted": stats.bytes_compacted,
        "bytes_reclaimed": stats.bytes_reclaimed,
        "stall_ms": stats.stall_ms,
        "pending_compaction_bytes": stats.pending_compaction_bytes,
        "last_background_error": stats.last_background_error,
    })
}

pub fn tier_table(stats: &Stats) -> Table {
    let mut table = Table::new(&["tier", "records", "logical", "segments", "on disk"]).right_aligned(&[1, 2, 3, 4]);
    for (name, t) in [("hot", &stats.hot), ("warm", &stats.warm), ("cold", &stats.cold)] {
        table.row(vec![name.into(), t.records.to_string(), show_size(t.bytes), t.segments.to_string(), show_size(t.disk_bytes)]);
    }
    table.row(vec![
        "total".into(),
        stats.live_records.to_string(),
        show_size(stats.live_bytes),
        (stats.hot.segments + stats.warm.segments + stats.cold.segments).to_string(),
        show_size(stats.disk_bytes),
    ]);
    table
}

pub fn stats(args: ReadArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    let stats = db.stats();
    if args.json {
        return stdout_line(&stats_json(&stats).to_string());
    }
    print!("{}", tier_table(&stats).render());
    println!("space amplification {:.2} (disk bytes / live logical bytes)", stats.space_amplification);
    Ok(())
}

pub fn verify(args: ReadArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    let spinner = output::spinner("verifying");
    let report = db.verify();
    spinner.finish_and_clear();
    let report = report?;
    if args.json {
        let value = json!({"ok": true, "files_checked": report.files_checked, "records_checked": report.records_checked, "bytes_checked": report.bytes_checked});
        return stdout_line(&value.to_string());
    }
    println!(
        "ok: {} files, {} records, {} checked; every checksum held",
        report.files_checked,
        report.records_checked,
        show_size(report.bytes_checked)
    );
    Ok(())
}

pub fn repair(args: ReadArgs) -> Result<(), Failure> {
    if !args.dir.exists() {
        return Err(Failure::new(format!("no database at {}: the directory does not exist", args.dir.display())));
    }
    let spinner = output::spinner("repairing");
    let report = strata::repair(&args.dir);
    spinner.finish_and_clear();
    let report = report?;
    if args.json {
        let damaged: Vec<_> = report
            .damaged_files
            .iter()
            .map(|d| {
                json!({
                    "path": d.path.display().to_string(),
                    "missing": d.missing,
                    "records_lost": d.records_lost,
                    "records_lost_is_exact": d.records_lost_is_exact,
                    "lost_ranges": d.lost_ranges.iter().map(|r| json!({"start": r.start, "end": r.end})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = json!({
            "rebuilt": report.rebuilt,
            "records_salvaged": report.records_salvaged,
            "records_lost": report.records_lost,
            "bytes_lost": report.bytes_lost,
            "records_written": report.records_written,
            "originals_dir": report.originals_dir.as_ref().map(|p| p.display().to_string()),
            "damaged_files": damaged,
        });
        return stdout_line(&value.to_string());
    }
    if !report.rebuilt {
        println!("the database opens and verifies: nothing to repair ({} records checked)", report.records_salvaged);
        return Ok(());
    }
    println!(
        "rebuilt: {} record versions salvaged, {} live records written, {} records and {} lost",
        report.records_salvaged,
        report.records_written,
        report.records_lost,
        show_size(report.bytes_lost)
    );
    if let Some(dir) = &report.originals_dir {
        println!("originals kept in {}", dir.display());
    }
    for damaged in &report.damaged_files {
        let what = if damaged.missing { "missing".to_string() } else { format!("{} byte ranges lost", damaged.lost_ranges.len()) };
        println!("  {}: {what}, {} records lost", damaged.path.display(), damaged.records_lost);
    }
    Ok(())
}

pub fn compact(args: DirArgs) -> Result<(), Failure> {
    if !exists(&args.dir) {
        return Err(Failure::new(format!("no database at {}", args.dir.display())));
    }
    let db = open_write(&args.dir, None)?;
    let before = db.stats().disk_bytes;
    let spinner = output::spinner("compacting");
    let outcome = db.compact();
    spinner.finish_and_clear();
    outcome?;
    let stats = db.stats();
    db.close()?;
    println!(
        "compacted: {} live records in {} cold segments; disk {} -> {}",
        stats.live_records,
        stats.cold.segments,
        show_size(before),
        show_size(stats.disk_bytes)
    );
    Ok(())
}

pub fn checkpoint(args: CheckpointArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    db.checkpoint(&args.dest)?;
    println!("checkpoint written to {}", args.dest.display());
    Ok(())
}

pub fn inspect(args: ReadArgs) -> Result<(), Failure> {
    if !args.dir.exists() {
        return Err(Failure::new(format!("no database at {}: the directory does not exist", args.dir.display())));
    }
    let reports = strata::inspect(&args.dir)?;
    let key = |k: &Option<Vec<u8>>| k.as_deref().map(|k| String::from_utf8_lossy(k).into_owned());
    if args.json {
        let files: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "file": r.name,
                    "kind": r.kind.name(),
                    "format_version": r.format_version,
                    "tier": r.tier.map(tier_name),
                    "records": r.records_count,
                    "bytes": r.bytes,
                    "key_min": key(&r.key_min),
                    "key_max": key(&r.key_max),
                    "detail": r.detail,
                    "error": r.error,
                })
            })
            .collect();
        return stdout_line(&serde_json::Value::from(files).to_string());
    }
    let mut table = Table::new(&["file", "kind", "version", "tier", "records", "bytes", "key range", "detail"]).right_aligned(&[2, 4, 5]);
    let dash = || "-".to_string();
    for r in &reports {
        let range = match (&r.key_min, &r.key_max) {
            (Some(min), Some(max)) => format!("{} .. {}", show_bytes(min, 24), show_bytes(max, 24)),
            _ => dash(),
        };
        let detail = match &r.error {
            Some(error) => format!("DAMAGED: {error}"),
            None => r.detail.clone(),
        };
        table.row(vec![
            r.name.clone(),
            r.kind.name().into(),
            r.format_version.map_or_else(dash, |v| v.to_string()),
            r.tier.map_or_else(dash, |t| tier_name(t).to_string()),
            r.records_count.map_or_else(dash, |n| n.to_string()),
            r.bytes.to_string(),
            range,
            detail,
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

pub fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Hot => "hot",
        Tier::Warm => "warm",
        Tier::Cold => "cold",
    }
}
