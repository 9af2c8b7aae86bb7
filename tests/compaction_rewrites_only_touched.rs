//! Compaction rewrites a cold segment only when a warm key falls in its key range or it
//! holds an expired row: appending ever-larger keys leaves the existing cold files alone.

use strata::{Db, Options};

fn key(i: u32) -> Vec<u8> {
    format!("doc/{i:08}").into_bytes()
}

fn cold_ids(db: &Db) -> Vec<u64> {
    db.cold_segments().iter().map(|s| s.id()).collect()
}

#[test]
fn appends_of_larger_keys_keep_every_cold_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::new().embedding_dim(2).cold_segment_bytes_max(4096).segment_bytes_max(8192).auto_compact(false);
    let db = Db::open(dir.path(), options.clone()).expect("open");
    for i in 0..200 {
        db.put(&key(i), &[i as u8; 40], Some(&[i as f32, 1.0])).expect("put");
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    let first = cold_ids(&db);
    assert!(first.len() > 2, "small cold segments: several files ({first:?})");

    for i in 200..260 {
        db.put(&key(i), &[i as u8; 40], None).expect("put");
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    let second = cold_ids(&db);
    assert_eq!(&second[..first.len()], &first[..], "segments below the new keys are kept, not rewritten");
    assert!(second.len() > first.len(), "the new keys went into new segments");

    // An overwrite inside the first segment's range rewrites that segment (and only the
    // segments it touches).
    db.put(&key(3), b"rewritten", None).expect("overwrite");
    db.seal().expect("seal");
    db.compact().expect("compact");
    let third = cold_ids(&db);
    assert!(!third.contains(&first[0]), "the touched segment was replaced");
    assert!(third.contains(&first[first.len() - 1]), "an untouched segment stays");

    let all: Vec<Vec<u8>> = db.iter().map(|r| r.expect("read").key().to_vec()).collect();
    assert_eq!(all, (0..260).map(key).collect::<Vec<_>>(), "every key once, in order");
    assert_eq!(db.get(&key(3)).expect("get").expect("live").content(), b"rewritten");
    assert_eq!(db.get(&key(2)).expect("get").expect("live").content(), &[2u8; 40][..]);
    let rows: usize = db.cold_segments().iter().map(|s| s.rows()).sum();
    assert_eq!(rows, 260, "one row per key in the cold tier");
    db.verify().expect("verify");
    drop(db);
    let db = Db::open(dir.path(), options).expect("reopen");
    assert_eq!(cold_ids(&db), third, "the manifest lists exactly the published segments");
    assert_eq!(db.stats().orphans_removed, 0, "a clean history leaves no orphan");
}
