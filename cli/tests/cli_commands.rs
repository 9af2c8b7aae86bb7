//! Every command of the `strata` binary, run as a user would (a child process per command),
//! its output (`--json` parsed with serde_json) compared with what the API says about the
//! same database.

mod common;

use common::{bits, json_lines, line_embedding, path_arg, strata};
use strata::{Db, Metric, Options, Search, Tier};

fn read_only(path: &std::path::Path) -> Db {
    Db::open(path, Options::new().read_only(true)).unwrap()
}

#[test]
fn put_get_delete_round_trip_text_bytes_embedding_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let d = path_arg(&db);
    strata(["put", &d, "note/1", "--content", "The user prefers tea.", "--embedding", "[0.1, -0.0, 3e-39]"]).ok();
    // A new database took its dimension from the first embedding.
    assert_eq!(read_only(&db).embedding_dim(), 3);

    let bytes_file = dir.path().join("content.bin");
    std::fs::write(&bytes_file, [0xff, 0x00, 0xfe, b'\n']).unwrap();
    strata(["put", &d, "note/2", "--content-file", &path_arg(&bytes_file), "--ttl", "3600"]).ok();

    assert_eq!(strata(["get", &d, "note/1"]).ok(), "The user prefers tea.\n");
    let line = strata(["get", &d, "note/1", "--json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let record = read_only(&db).get(b"note/1").unwrap().unwrap();
    assert_eq!(value["key"], "note/1");
    assert_eq!(value["content"], "The user prefers tea.");
    assert_eq!(value["seq"], record.seq());
    assert_eq!(value["expires_at_ms"], 0);
    assert_eq!(line_embedding(&line), Some(bits(&[0.1, -0.0, 3e-39])));

    let line = strata(["get", &d, "note/2", "--json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let record = read_only(&db).get(b"note/2").unwrap().unwrap();
    assert_eq!(value["content_b64"], "/wD+Cg==");
    assert!(value.get("content").is_none());
    assert_eq!(value["embedding"], serde_json::Value::Null);
    assert_eq!(value["expires_at_ms"], record.expires_at_ms());
    assert!(record.expires_at_ms() > 0);
    // Human `get` writes the content bytes as they are.
    assert_eq!(strata(["get", &d, "note/2"]).stdout, [0xff, 0x00, 0xfe, b'\n', b'\n']);

    strata(["delete", &d, "note/1"]).ok();
    strata(["get", &d, "note/1"]).fails_with("not found: note/1");
    strata(["delete", &d, "never-there"]).ok();
    assert!(read_only(&db).get(b"note/1").unwrap().is_none());
}

/// A database with records in every tier: 0..30 cold, 30..40 warm, 40..50 hot, and some
/// overwrites and deletes across tiers.
fn every_tier(path: &std::path::Path) {
    let db = Db::open(path, Options::new().embedding_dim(4).auto_compact(false)).unwrap();
    let vector = |i: usize| [i as f32, (i % 7) as f32, 1.0, -(i as f32) / 3.0];
    for i in 0..50 {
        if i == 30 {
            db.compact().unwrap();
        }
        if i == 40 {
            db.seal().unwrap();
        }
        let embedding = vector(i);
        db.put(format!("k{i:03}").as_bytes(), format!("content {i}").as_bytes(), (i % 5 != 0).then_some(&embedding[..])).unwrap();
    }
    db.put(b"k005", b"overwritten in hot", Some(&[1.0, 1.0, 1.0, 1.0])).unwrap();
    db.delete(b"k006").unwrap();
    db.close().unwrap();
}

#[test]
fn scan_selects_like_the_api_in_every_combination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    every_tier(&path);
    let d = path_arg(&path);
    let db = read_only(&path);
    let keys = |iter: &mut dyn Iterator<Item = strata::Result<strata::Record>>| -> Vec<String> {
        iter.map(|r| String::from_utf8(r.unwrap().key().to_vec()).unwrap()).collect()
    };
    let scanned = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["scan", &d, "--json"];
        full.extend_from_slice(args);
        json_lines(&strata(full).ok()).iter().map(|v| v["key"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(scanned(&[]), keys(&mut db.iter()));
    assert_eq!(scanned(&["--prefix", "k01"]), keys(&mut db.prefix(b"k01")));
    assert_eq!(scanned(&["--start", "k010", "--end", "k020"]), keys(&mut db.range(&b"k010"[..]..&b"k020"[..])));
    assert_eq!(scanned(&["--start", "k045"]), keys(&mut db.range(&b"k045"[..]..)));
    assert_eq!(scanned(&["--reverse", "--limit", "3"]), keys(&mut db.iter().rev().take(3)));
    for (tier, name) in [(Tier::Hot, "hot"), (Tier::Warm, "warm"), (Tier::Cold, "cold")] {
        let expected = keys(&mut db.iter_tier(tier));
        assert!(!expected.is_empty());
        assert_eq!(scanned(&["--tier", name]), expected, "tier {name}");
    }
    assert_eq!(
        scanned(&["--tier", "cold", "--prefix", "k00"]),
        keys(&mut db.iter_tier(Tier::Cold).filter(|r| r.as_ref().unwrap().key().starts_with(b"k00")))
    );

    // Every field of every line, against the API.
    let text = strata(["scan", &d, "--json"]).ok();
    for (line, record) in text.lines().zip(db.iter()) {
        let record = record.unwrap();
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["key"].as_str().unwrap().as_bytes(), record.key());
        assert_eq!(value["content"].as_str().unwrap().as_bytes(), record.content());
        assert_eq!(value["seq"], record.seq());
        assert_eq!(line_embedding(line), record.embedding().map(bits));
    }
    // The human table lists every key.
    let table = strata(["scan", &d]).ok();
    assert_eq!(table.lines().count(), 2 + db.iter().count());
    assert!(table.lines().next().unwrap().starts_with("key"));
}

#[test]
fn search_returns_the_apis_hits_for_every_metric_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    every_tier(&path);
    let d = path_arg(&path);
    let db = read_only(&path);
    let hits = |args: &[&str]| -> Vec<(String, f32)> {
        let mut full = vec!["search", &d, "--json"];
        full.extend_from_slice(args);
        let value: serde_json::Value = serde_json::from_str(&strata(full).ok()).unwrap();
        value.as_array().unwrap().iter().map(|h| (h["key"].as_str().unwrap().to_string(), h["score"].as_f64().unwrap() as f32)).collect()
    };
    let api = |search: Search<'_>| -> Vec<(String, f32)> {
        db.search(&search).unwrap().into_iter().map(|h| (String::from_utf8(h.key).unwrap(), h.score)).collect()
    };
    let query = [3.0f32, 1.0, 0.5, -1.0];
    let same = |cli: Vec<(String, f32)>, api: Vec<(String, f32)>| {
        assert_eq!(cli.iter().map(|h| &h.0).collect::<Vec<_>>(), api.iter().map(|h| &h.0).collect::<Vec<_>>());
        for (c, a) in cli.iter().zip(&api) {
            assert!((c.1 - a.1).abs() <= 1e-6 * a.1.abs().max(1.0), "{c:?} vs {a:?}");
        }
    };
    same(hits(&["--vector", "[3, 1, 0.5, -1]"]), api(Search::new(&query).k(10)));
    same(hits(&["--vector", "[3, 1, 0.5, -1]", "-k", "4", "--metric", "l2"]), api(Search::new(&query).k(4).metric(Metric::L2)));
    same(
        hits(&["--vector", "[3, 1, 0.5, -1]", "--metric", "dot", "--prefix", "k03"]),
        api(Search::new(&query).metric(Metric::Dot).prefix(b"k03")),
    );
    same(hits(&["--vector", "[3, 1, 0.5, -1]", "--min-score", "0.9", "-k", "50"]), api(Search::new(&query).k(50).min_score(0.9)));
    let like = db.get(b"k033").unwrap().unwrap().embedding().unwrap().to_vec();
    let by_like = hits(&["--like", "k033", "-k", "3"]);
    same(by_like.clone(), api(Search::new(&like).k(3)));
    assert_eq!(by_like[0].0, "k033");
    // The human table: a header, a rule, one row per hit with its content.
    let table = strata(["search", &d, "--like", "k033", "-k", "3"]).ok();
    assert_eq!(table.lines().count(), 5);
    assert!(table.contains("content 33"));
}

#[test]
fn stats_verify_compact_inspect_checkpoint_and_repair_agree_with_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    every_tier(&path);
    let d = path_arg(&path);

    let value: serde_json::Value = serde_json::from_str(&strata(["stats", &d, "--json"]).ok()).unwrap();
    let stats = read_only(&path).stats();
    assert_eq!(value["live_records"], stats.live_records);
    assert_eq!(value["live_bytes"], stats.live_bytes);
    assert_eq!(value["disk_bytes"], stats.disk_bytes);
    for (name, tier) in [("hot", stats.hot), ("warm", stats.warm), ("cold", stats.cold)] {
        assert_eq!(value[name]["records"], tier.records, "{name}");
        assert_eq!(value[name]["bytes"], tier.bytes, "{name}");
        assert_eq!(value[name]["segments"], tier.segments, "{name}");
    }
    assert!(value["space_amplification"].is_number() && value["write_amplification"].is_number());
    assert!(strata(["stats", &d]).ok().contains("cold"));

    let value: serde_json::Value = serde_json::from_str(&strata(["verify", &d, "--json"]).ok()).unwrap();
    let report = read_only(&path).verify().unwrap();
    assert_eq!(value["files_checked"], report.files_checked);
    assert_eq!(value["records_checked"], report.records_checked);
    assert!(strata(["verify", &d]).ok().starts_with("ok: "));

    // inspect: one entry per file, each kind where the API puts records.
    let inspect: serde_json::Value = serde_json::from_str(&strata(["inspect", &d, "--json"]).ok()).unwrap();
    let files = inspect.as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    let mut listed: Vec<String> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    assert_eq!(names, listed);
    let kinds = |kind: &str| files.iter().filter(|f| f["kind"] == kind).count();
    assert_eq!((kinds("meta"), kinds("manifest"), kinds("cold"), kinds("log-sealed"), kinds("log-active")), (1, 1, 1, 1, 1));
    let cold = files.iter().find(|f| f["kind"] == "cold").unwrap();
    assert_eq!((cold["records"].as_u64(), cold["key_min"].as_str(), cold["key_max"].as_str()), (Some(30), Some("k000"), Some("k029")));
    assert_eq!(cold["tier"], "cold");
    assert!(files.iter().all(|f| f["error"].is_null()));
    assert!(strata(["inspect", &d]).ok().contains("log-sealed"));

    let copy = dir.path().join("copy");
    strata(["checkpoint", &d, &path_arg(&copy)]).ok();
    let original: Vec<_> = read_only(&path).iter().map(|r| r.unwrap().content().to_vec()).collect();
    let copied: Vec<_> = read_only(&copy).iter().map(|r| r.unwrap().content().to_vec()).collect();
    assert_eq!(original, copied);

    let before: Vec<_> = read_only(&path).iter().map(|r| r.unwrap().key().to_vec()).collect();
    strata(["compact", &d]).ok();
    let stats = read_only(&path).stats();
    assert_eq!((stats.cold.records, stats.hot.records, stats.warm.records), (stats.live_records, 0, 0));
    assert_eq!(read_only(&path).iter().map(|r| r.unwrap().key().to_vec()).collect::<Vec<_>>(), before);

    let value: serde_json::Value = serde_json::from_str(&strata(["repair", &d, "--json"]).ok()).unwrap();
    assert_eq!(value["rebuilt"], false);
    assert!(strata(["repair", &d]).ok().contains("nothing to repair"));
}

#[test]
fn repair_rebuilds_a_damaged_database_that_then_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    every_tier(&path);
    let d = path_arg(&path);
    let sealed =
        std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "log")).min().unwrap();
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[80] ^= 0x40; // inside the first record of the sealed segment
    std::fs::write(&sealed, &bytes).unwrap();
    strata(["verify", &d]).fails_with("corruption in");

    let value: serde_json::Value = serde_json::from_str(&strata(["repair", &d, "--json"]).ok()).unwrap();
    assert_eq!(value["rebuilt"], true);
    assert!(value["damaged_files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with(sealed.file_name().unwrap().to_str().unwrap())));
    strata(["verify", &d]).ok();
}

#[test]
fn demo_builds_compacts_and_verifies_a_small_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo");
    let out = strata(["demo", &path_arg(&path), "--records", "400", "--dim", "8"]).ok();
    for expected in ["similarity search", "compacted", "reopened", "verified", "summary", "bulk load", "exact searches", "disk", "memory"] {
        assert!(out.contains(expected), "{expected:?} missing from the demo's output:\n{out}");
    }
    let db = read_only(&path);
    assert_eq!(db.stats().live_records, 400);
    assert_eq!(db.stats().cold.records, 400);
    db.verify().unwrap();
    assert_eq!(db.embedding_dim(), 8);
    // The demo refuses to overwrite a database.
    strata(["demo", &path_arg(&path), "--records", "10"]).fails_with("not empty");
}

#[test]
fn bench_json_lists_every_workload_and_the_machine() {
    let value: serde_json::Value = serde_json::from_str(&strata(["bench", "--records", "300", "--json"]).ok()).unwrap();
    for figure in ["disk_write_mb_s", "fsyncs_per_s", "memory_read_gb_s"] {
        assert!(value["machine"][figure].as_f64().unwrap() > 0.0, "{figure}");
    }
    let operations: Vec<&str> = value["workloads"].as_array().unwrap().iter().map(|w| w["operation"].as_str().unwrap()).collect();
    for expected in ["bulk load", "point gets", "prefix scans", "full scan", "exact searches", "durable puts"] {
        assert!(operations.iter().any(|o| o.starts_with(expected)), "{expected} missing: {operations:?}");
    }
    assert!(value["workloads"].as_array().unwrap().iter().all(|w| w["count"].as_u64().unwrap() > 0));
}

#[test]
fn search_json_scores_are_f32_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "note/1", "--content", "tea", "--embedding", "[0.9, 0.1, 0.0]"]).ok();
    let out = strata(["search", &d, "--vector", "[1, 0, 0]", "--metric", "dot", "--json"]).ok();
    assert_eq!(out, "[{\"key\":\"note/1\",\"score\":0.9}]\n");
}
