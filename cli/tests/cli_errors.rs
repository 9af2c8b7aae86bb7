//! Every error a user can run into: one line on stderr (`strata: error: ...`), exit 1,
//! nothing on stdout, never a panic; bad usage exits 2; read commands never create a
//! database.

mod common;

use common::{path_arg, strata};
use strata::{Db, Options};

#[test]
fn bad_usage_exits_2() {
    strata(Vec::<&str>::new()).usage_error();
    strata(["scan"]).usage_error();
    strata(["get", "dir"]).usage_error();
    strata(["no-such-command"]).usage_error();
    strata(["scan", "dir", "--tier", "lukewarm"]).usage_error();
    strata(["search", "dir"]).usage_error(); // neither --vector nor --like
    strata(["put", "dir", "key"]).usage_error(); // no content
    strata(["put", "dir", "key", "--content", "a", "--content-file", "f"]).usage_error();
    strata(["scan", "dir", "--limit", "many"]).usage_error();
    strata(["export", "dir", "f", "--format", "csv"]).usage_error();
    assert_eq!(strata(["--help"]).code, 0);
}

#[test]
fn a_missing_database_is_an_error_for_every_read_command_and_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let m = path_arg(&missing);
    let out = path_arg(&dir.path().join("out.jsonl"));
    let dest = path_arg(&dir.path().join("dest"));
    let commands: Vec<Vec<&str>> = vec![
        vec!["get", &m, "k"],
        vec!["scan", &m],
        vec!["search", &m, "--vector", "[1]"],
        vec!["stats", &m],
        vec!["verify", &m],
        vec!["inspect", &m],
        vec!["export", &m, &out],
        vec!["checkpoint", &m, &dest],
        vec!["sql", &m, "select 1"],
        vec!["delete", &m, "k"],
        vec!["compact", &m],
        vec!["repair", &m],
    ];
    for command in commands {
        let run = strata(&command);
        run.fails_with("");
        assert!(run.stderr.contains("missing") || run.stderr.contains("without the `datafusion`"), "{command:?}: {}", run.stderr);
        assert!(!missing.exists(), "{command:?} created the directory");
    }
    // A directory that is not a database: read-only open refuses it and writes nothing.
    std::fs::create_dir(&missing).unwrap();
    strata(["stats", &m]).fails_with("");
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
}

#[test]
fn a_missing_key_prints_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "present", "--content", "x"]).ok();
    strata(["get", &d, "absent"]).fails_with("not found: absent");
    strata(["get", &d, "absent", "--json"]).fails_with("not found: absent");
    strata(["search", &d, "--like", "absent"]).fails_with("not found: absent");
}

#[test]
fn a_locked_database_refuses_writers_and_still_serves_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let d = path_arg(&path);
    strata(["put", &d, "k", "--content", "before"]).ok();
    let writer = Db::open(&path, Options::new()).unwrap();
    strata(["put", &d, "k2", "--content", "x"]).fails_with("locked");
    strata(["delete", &d, "k"]).fails_with("locked");
    strata(["compact", &d]).fails_with("locked");
    let file = dir.path().join("one.jsonl");
    std::fs::write(&file, "{\"key\": \"j\", \"content\": \"x\"}\n").unwrap();
    strata(["import", &d, &path_arg(&file)]).fails_with("locked");
    strata(["repair", &d]).fails_with("locked");
    // Readers open read-only: no lock needed.
    assert_eq!(strata(["get", &d, "k"]).ok(), "before\n");
    writer.close().unwrap();
    strata(["put", &d, "k2", "--content", "x"]).ok();
}

#[test]
fn a_corrupt_file_names_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, Options::new().embedding_dim(2).auto_compact(false)).unwrap();
    for i in 0..20u8 {
        db.put(&[b'k', i], b"some content", Some(&[1.0, f32::from(i)])).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let cold = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "cold")).unwrap();
    let name = cold.file_name().unwrap().to_str().unwrap().to_string();
    let d = path_arg(&path);

    // A damaged header: open fails, naming the file and the offset.
    let mut bytes = std::fs::read(&cold).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&cold, &bytes).unwrap();
    let run = strata(["scan", &d]);
    run.fails_with("corruption in");
    assert!(run.stderr.contains(&name) && run.stderr.contains("offset 0"), "{}", run.stderr);
    // inspect still reports every file, the damaged one with its error.
    let inspect: serde_json::Value = serde_json::from_str(&strata(["inspect", &d, "--json"]).ok()).unwrap();
    let entry = inspect.as_array().unwrap().iter().find(|f| f["file"] == name.as_str()).unwrap();
    assert!(entry["error"].as_str().unwrap().contains("offset 0"));

    // A damaged row in the data: open works, verify finds it.
    bytes[0] ^= 0xff;
    let last_data = bytes.len() / 2;
    bytes[last_data] ^= 0x01;
    std::fs::write(&cold, &bytes).unwrap();
    let run = strata(["verify", &d]);
    run.fails_with("corruption in");
    assert!(run.stderr.contains(&name) && run.stderr.contains("byte offset"), "{}", run.stderr);
}

#[test]
fn a_wrong_vector_dimension_or_a_different_dim_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "a", "--content", "x", "--dim", "3", "--embedding", "[1, 2, 3]"]).ok();
    strata(["put", &d, "b", "--content", "x", "--embedding", "[1, 2]"]).fails_with("dimension 2 does not match the database's 3");
    strata(["put", &d, "b", "--content", "x", "--dim", "4"]).fails_with("has dimension 3, not 4");
    strata(["search", &d, "--vector", "[1, 2]"]).fails_with("dimension is 3");
    strata(["get", &d, "b"]).fails_with("not found: b"); // nothing was written
    strata(["import", &d, &path_arg(&dir.path().join("x.jsonl")), "--dim", "5"]).fails_with("no such file");
}

#[test]
fn bad_json_is_an_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "a", "--content", "x", "--embedding", "[1, 2,"]).fails_with("--embedding is not a JSON array");
    strata(["put", &d, "a", "--content", "x", "--embedding", "[1, \"two\"]"]).fails_with("`\"two\"`, which is not a number");
    strata(["search", &d, "--vector", "{\"x\": 1}"]).fails_with("--vector is not a JSON array");

    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, "{\"key\": \"a\", \"content\": \"fine\"}\n{\"key\": \"b\", \"content\": \n").unwrap();
    let run = strata(["import", &d, &path_arg(&file)]);
    run.fails_with("bad.jsonl:2: bad JSON");
    std::fs::write(&file, "{\"content\": \"no key\"}\n").unwrap();
    strata(["import", &d, &path_arg(&file)]).fails_with("bad.jsonl:1: no `key`");
    std::fs::write(&file, "{\"key_b64\": \"***\", \"content\": \"x\"}\n").unwrap();
    strata(["import", &d, &path_arg(&file)]).fails_with("not valid base64");
    // A Parquet file that is not one.
    let parquet = dir.path().join("bad.parquet");
    std::fs::write(&parquet, b"not parquet at all").unwrap();
    strata(["import", &d, &path_arg(&parquet)]).fails_with("Parquet");
}

#[test]
fn writes_that_break_a_limit_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "a", "--content", "x", "--dim", "1"]).ok();
    strata(["put", &d, "", "--content", "x"]).fails_with("keys must not be empty");
    strata(["put", &d, "b", "--content", "x", "--embedding", "[1e39]"]).fails_with("not finite");
    strata(["get", &d, "b"]).fails_with("not found: b");
    strata(["checkpoint", &d, &d]).fails_with("");
}

#[cfg(not(feature = "datafusion"))]
#[test]
fn sql_without_the_datafusion_feature_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(&dir.path().join("db"));
    strata(["put", &d, "a", "--content", "x"]).ok();
    strata(["sql", &d, "SELECT 1"]).fails_with("built without the `datafusion` feature");
}
