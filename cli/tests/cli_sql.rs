//! `strata sql` (feature `datafusion`): query results compared with what the API reads from
//! the same database, key filters pushed down or not; and the library's `SnapshotTable`
//! keeps answering from its snapshot while the database changes.

mod common;

use std::sync::Arc;

use common::{json_lines, path_arg, strata};
use strata::{Db, Options};

/// Records in every tier (cold 0..30, warm 30..40, hot 40..50), some without an embedding,
/// one overwritten, one deleted, one with a TTL, one with a non-UTF-8 key.
fn database(path: &std::path::Path) {
    let db = Db::open(path, Options::new().embedding_dim(2).auto_compact(false)).unwrap();
    for i in 0..50u32 {
        if i == 30 {
            db.compact().unwrap();
        }
        if i == 40 {
            db.seal().unwrap();
        }
        let embedding = [i as f32, 1.0];
        db.put(format!("k{i:03}").as_bytes(), format!("content {i}").as_bytes(), (i % 4 != 0).then_some(&embedding[..])).unwrap();
    }
    db.put(b"k007", b"overwritten", None).unwrap();
    db.delete(b"k008").unwrap();
    db.put_with_ttl(b"k009", b"expires later", None, std::time::Duration::from_secs(3600)).unwrap();
    db.close().unwrap();
}

fn sql(dir: &str, query: &str) -> Vec<serde_json::Value> {
    json_lines(&strata(["sql", dir, query, "--json"]).ok())
}

fn keys(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter().map(|r| r["key"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sql_results_equal_the_apis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database(&path);
    let d = path_arg(&path);
    let db = Db::open(&path, Options::new().read_only(true)).unwrap();
    let api_keys = |iter: strata::Iter| -> Vec<String> { iter.map(|r| String::from_utf8(r.unwrap().key().to_vec()).unwrap()).collect() };

    let count = sql(&d, "SELECT count(*) AS n FROM records");
    assert_eq!(count[0]["n"], db.iter().count());
    assert_eq!(keys(&sql(&d, "SELECT key FROM records ORDER BY key")), api_keys(db.iter()));
    // Pushed-down key filters: range, equality, prefix, between; and one on another column.
    assert_eq!(
        keys(&sql(&d, "SELECT key FROM records WHERE key >= 'k010' AND key < 'k035' ORDER BY key")),
        api_keys(db.range(&b"k010"[..]..&b"k035"[..]))
    );
    assert_eq!(keys(&sql(&d, "SELECT key FROM records WHERE key LIKE 'k04%' ORDER BY key")), api_keys(db.prefix(b"k04")));
    assert_eq!(keys(&sql(&d, "SELECT key FROM records WHERE key = 'k042'")), ["k042"]);
    assert_eq!(
        keys(&sql(&d, "SELECT key FROM records WHERE key BETWEEN 'k005' AND 'k009' ORDER BY key")),
        ["k005", "k006", "k007", "k009"]
    );
    assert_eq!(keys(&sql(&d, "SELECT key FROM records WHERE key > 'k048' OR key < 'k001' ORDER BY key")), ["k000", "k049"]);
    let without: Vec<String> =
        db.iter().map(Result::unwrap).filter(|r| r.embedding().is_none()).map(|r| String::from_utf8(r.key().to_vec()).unwrap()).collect();
    assert_eq!(keys(&sql(&d, "SELECT key FROM records WHERE embedding IS NULL ORDER BY key")), without);

    // Every column of every row.
    let rows = sql(&d, "SELECT key, content, seq, expires_at_ms, embedding FROM records ORDER BY key");
    for (row, record) in rows.iter().zip(db.iter()) {
        let record = record.unwrap();
        assert_eq!(row["key"].as_str().unwrap().as_bytes(), record.key());
        assert_eq!(row["content"].as_str().unwrap().as_bytes(), record.content());
        assert_eq!(row["seq"], record.seq());
        assert_eq!(row["expires_at_ms"], record.expires_at_ms());
        let embedding: Option<Vec<f32>> = row
            .get("embedding")
            .filter(|e| !e.is_null())
            .map(|e| e.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect());
        assert_eq!(embedding.as_deref(), record.embedding());
    }
    let total: u64 = db.iter().map(|r| r.unwrap().content().len() as u64).sum();
    assert_eq!(sql(&d, "SELECT sum(octet_length(CAST(content AS VARCHAR))) AS bytes FROM records")[0]["bytes"], total);

    let table = strata(["sql", &d, "SELECT key, seq FROM records WHERE key = 'k042'"]).ok();
    assert!(table.contains("| key ") && table.contains("k042"), "{table}");
    strata(["sql", &d, "SELECT nope FROM records"]).fails_with("SQL: ");
    strata(["sql", &d, "SELEC"]).fails_with("SQL: ");
}

#[test]
fn a_non_utf8_key_comes_out_as_base64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, Options::new()).unwrap();
    db.put(&[0xff, 0x01], b"binary key", None).unwrap();
    db.close().unwrap();
    let rows = sql(&path_arg(&path), "SELECT key, content FROM records");
    assert_eq!(rows[0]["key_b64"], "/wE=");
    assert_eq!(rows[0]["content"], "binary key");
}

#[test]
fn a_snapshot_table_answers_from_its_snapshot_while_the_database_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database(&path);
    let db = Db::open(&path, Options::new().auto_compact(false)).unwrap();
    let table = Arc::new(strata::SnapshotTable::new(&db));
    let before = db.iter().count();
    for i in 100..120u32 {
        db.put(format!("k{i:03}").as_bytes(), b"later", None).unwrap();
    }
    db.delete(b"k000").unwrap();
    db.compact().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let count = runtime.block_on(async {
        let context = strata::datafusion::prelude::SessionContext::new();
        context.register_table("records", table).unwrap();
        let batches = context.sql("SELECT count(*) AS n FROM records").await.unwrap().collect().await.unwrap();
        use strata::datafusion::arrow::array::AsArray;
        batches[0].column(0).as_primitive::<strata::datafusion::arrow::datatypes::Int64Type>().value(0)
    });
    assert_eq!(count as usize, before);
    db.close().unwrap();
}
