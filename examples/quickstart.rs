//! The main job until the CLI lands: write records, read them back, reopen, read again,
//! compact into the cold tier, search by embedding.
//! Run: `cargo run --release --example quickstart`
use strata::{Batch, Db, Durability, Metric, Options, Search, Tier};

fn main() -> strata::Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-quickstart-{}", std::process::id()));
    let options = || Options::new().embedding_dim(4).durability(Durability::Sync);

    let db = Db::open(&dir, options())?;
    db.put(b"memory/1", b"The user prefers tea over coffee.", Some(&[0.9, 0.1, 0.0, 0.2]))?;
    db.put(b"memory/2", b"Meeting moved to Thursday.", Some(&[0.1, 0.8, 0.3, 0.0]))?;
    let mut batch = Batch::new();
    batch.put(b"memory/3", b"", None).delete(b"memory/2");
    db.write(batch)?;
    println!("wrote 3 records and deleted 1 in {}", dir.display());

    let record = db.get(b"memory/1")?.expect("memory/1 was just written");
    println!("get memory/1 -> {:?} (seq {}, embedding {:?})", String::from_utf8_lossy(record.content()), record.seq(), record.embedding());
    db.seal()?;
    println!("sealed: {} live records in the warm tier", db.iter_tier(Tier::Warm).count());
    db.close()?;

    let db = Db::open(&dir, options())?;
    for record in db.iter() {
        let record = record?;
        println!("after reopen: {} -> {:?}", String::from_utf8_lossy(record.key()), String::from_utf8_lossy(record.content()));
    }
    db.put(b"memory/4", b"Allergic to peanuts.", Some(&[0.7, 0.0, 0.1, 0.6]))?;
    db.compact()?;
    println!("compacted: {} records cold, {} hot", db.iter_tier(Tier::Cold).count(), db.iter_tier(Tier::Hot).count());
    for hit in db.nearest(&[1.0, 0.0, 0.0, 0.3], 2)? {
        println!("nearest (cosine): {} score {:.3}", String::from_utf8_lossy(&hit.key), hit.score);
    }
    for hit in db.search(&Search::new(&[1.0, 0.0, 0.0, 0.3]).k(5).metric(Metric::L2).prefix(b"memory/").min_score(1.0))? {
        println!("within L2 distance 1.0: {} ({:.3})", String::from_utf8_lossy(&hit.key), hit.score);
    }
    let report = db.verify()?;
    println!("verify: {} files, {} records, {} bytes checked", report.files_checked, report.records_checked, report.bytes_checked);
    let stats = db.stats();
    println!("stats: {} live records, {} live bytes, {} disk bytes", stats.live_records, stats.live_bytes, stats.disk_bytes);
    db.close()?;
    std::fs::remove_dir_all(&dir).map_err(strata::Error::Io)?;
    Ok(())
}
