//! `export` → `import` round trips exactly in every format (keys and content bytes including
//! non-UTF-8, embeddings bit for bit, TTLs as expiry times), and the Parquet and Arrow IPC
//! files read back through the parquet and arrow-ipc readers hold exactly the database's
//! records, as the API reads them.

mod common;

use std::path::Path;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use common::{bits, line_embedding, path_arg, strata};
use strata::{Db, Options};

/// What a record must keep across a round trip (its seq is new after an import).
#[derive(Debug, PartialEq, Eq)]
struct Kept {
    key: Vec<u8>,
    content: Vec<u8>,
    embedding: Option<Vec<u32>>,
    expires_at_ms: u64,
}

fn kept(path: &Path) -> Vec<Kept> {
    let db = Db::open(path, Options::new().read_only(true)).unwrap();
    db.iter()
        .map(|r| {
            let r = r.unwrap();
            Kept {
                key: r.key().to_vec(),
                content: r.content().to_vec(),
                embedding: r.embedding().map(bits),
                expires_at_ms: r.expires_at_ms(),
            }
        })
        .collect()
}

/// Records in every tier, with non-UTF-8 keys and content, awkward floats, no embedding,
/// empty content and TTLs; some overwritten and deleted.
fn awkward_database(path: &Path) {
    let db = Db::open(path, Options::new().embedding_dim(3).auto_compact(false)).unwrap();
    let floats = [[0.1f32, -0.0, 1e-45], [f32::MAX, f32::MIN_POSITIVE, -3.5e-39], [1.0 / 3.0, -2.0, 7e30]];
    for i in 0..40u32 {
        if i == 15 {
            db.compact().unwrap();
        }
        if i == 30 {
            db.seal().unwrap();
        }
        let key = format!("rec/{i:03}");
        let content = format!("text {i} — ünïcödé");
        let embedding = floats[i as usize % 3];
        match i % 6 {
            0 => db.put(key.as_bytes(), content.as_bytes(), None).unwrap(),
            1 => db.put_with_ttl(key.as_bytes(), content.as_bytes(), Some(&embedding), Duration::from_secs(3600 + u64::from(i))).unwrap(),
            2 => db.put(key.as_bytes(), b"", Some(&embedding)).unwrap(),
            _ => db.put(key.as_bytes(), content.as_bytes(), Some(&embedding)).unwrap(),
        }
    }
    db.put(&[0xff, 0xfe, b'k'], &[0x00, 0xc3, 0x28, 0xff], Some(&floats[1])).unwrap();
    db.put(b"rec/004", &[0x80; 300], None).unwrap();
    db.delete(b"rec/005").unwrap();
    db.put_with_ttl(b"rec/expiring", b"soon gone", None, Duration::from_secs(86_400)).unwrap();
    db.close().unwrap();
}

#[test]
fn export_then_import_is_exact_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    awkward_database(&source);
    let expected = kept(&source);
    assert!(expected.iter().any(|k| k.expires_at_ms > 0) && expected.iter().any(|k| std::str::from_utf8(&k.key).is_err()));
    for (format, file) in [("jsonl", "out.jsonl"), ("parquet", "out.parquet"), ("arrow", "out.arrow")] {
        let file = dir.path().join(file);
        strata(["export", &path_arg(&source), &path_arg(&file), "--format", format]).ok();
        let target = dir.path().join(format!("imported-{format}"));
        // The format from the file's extension; the dimension from the file.
        strata(["import", &path_arg(&target), &path_arg(&file)]).ok();
        assert_eq!(kept(&target), expected, "{format}");
        let db = Db::open(&target, Options::new().read_only(true)).unwrap();
        assert_eq!(db.embedding_dim(), 3, "{format}");
    }
    // Exported again, the JSON Lines match but for the seqs.
    let again = dir.path().join("again.jsonl");
    strata(["export", &path_arg(&dir.path().join("imported-parquet")), &path_arg(&again)]).ok();
    let strip = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seq");
                v
            })
            .collect()
    };
    assert_eq!(strip(&again), strip(&dir.path().join("out.jsonl")));
}

#[test]
fn export_with_a_prefix_and_import_into_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    awkward_database(&source);
    let file = dir.path().join("part.parquet");
    strata(["export", &path_arg(&source), &path_arg(&file), "--prefix", "rec/01"]).ok();
    let target = dir.path().join("target");
    strata(["put", &path_arg(&target), "other", "--content", "already here", "--dim", "3"]).ok();
    strata(["import", &path_arg(&target), &path_arg(&file), "--format", "parquet"]).ok();
    let got = kept(&target);
    let mut expected = vec![Kept { key: b"other".to_vec(), content: b"already here".to_vec(), embedding: None, expires_at_ms: 0 }];
    expected.extend(kept(&source).into_iter().filter(|k| k.key.starts_with(b"rec/01")));
    assert_eq!(expected.len(), 11);
    assert_eq!(got, expected);
}

#[test]
fn jsonl_lines_hold_exactly_the_apis_records() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    awkward_database(&source);
    let file = dir.path().join("out.jsonl");
    strata(["export", &path_arg(&source), &path_arg(&file)]).ok();
    let text = std::fs::read_to_string(&file).unwrap();
    let db = Db::open(&source, Options::new().read_only(true)).unwrap();
    let records: Vec<_> = db.iter().map(Result::unwrap).collect();
    assert_eq!(text.lines().count(), records.len());
    for (line, record) in text.lines().zip(&records) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = |name: &str| -> Vec<u8> {
            use base64::Engine as _;
            match (value.get(name), value.get(format!("{name}_b64"))) {
                (Some(text), None) => text.as_str().unwrap().as_bytes().to_vec(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap(),
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(bytes("key"), record.key());
        assert_eq!(bytes("content"), record.content());
        assert_eq!(std::str::from_utf8(record.key()).is_ok(), value.get("key").is_some());
        assert_eq!(line_embedding(line), record.embedding().map(bits));
        assert_eq!(value["seq"], record.seq());
        assert_eq!(value["expires_at_ms"], record.expires_at_ms());
    }
}

/// One row: key, content, embedding bits, seq, expires_at_ms.
type Row = (Vec<u8>, Vec<u8>, Option<Vec<u32>>, u64, u64);

/// The rows of Arrow batches, with the schema checked against CLI.md's columns.
fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["key", "content", "embedding", "seq", "expires_at_ms"]);
        assert_eq!(schema.field(0).data_type(), &DataType::LargeBinary);
        assert_eq!(schema.field(1).data_type(), &DataType::LargeBinary);
        assert!(matches!(schema.field(2).data_type(), DataType::FixedSizeList(item, 3) if item.data_type() == &DataType::Float32));
        assert!(schema.field(2).is_nullable());
        assert_eq!(schema.field(3).data_type(), &DataType::UInt64);
        assert_eq!(schema.field(4).data_type(), &DataType::UInt64);
        let keys = batch.column(0).as_binary::<i64>();
        let contents = batch.column(1).as_binary::<i64>();
        let embeddings = batch.column(2).as_fixed_size_list();
        let seqs = batch.column(3).as_primitive::<UInt64Type>();
        let expires = batch.column(4).as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let embedding = embeddings.is_valid(i).then(|| bits(embeddings.value(i).as_primitive::<Float32Type>().values()));
            rows.push((keys.value(i).to_vec(), contents.value(i).to_vec(), embedding, seqs.value(i), expires.value(i)));
        }
    }
    rows
}

#[test]
fn parquet_and_arrow_files_read_back_through_their_readers_equal_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    awkward_database(&source);
    let db = Db::open(&source, Options::new().read_only(true)).unwrap();
    let expected: Vec<_> = db
        .iter()
        .map(|r| {
            let r = r.unwrap();
            (r.key().to_vec(), r.content().to_vec(), r.embedding().map(bits), r.seq(), r.expires_at_ms())
        })
        .collect();

    let parquet_file = dir.path().join("out.parquet");
    strata(["export", &path_arg(&source), &path_arg(&parquet_file)]).ok();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&parquet_file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(rows_of(&batches), expected);

    let arrow_file = dir.path().join("out.arrow");
    strata(["export", &path_arg(&source), &path_arg(&arrow_file)]).ok();
    let reader = arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&arrow_file).unwrap(), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(rows_of(&batches), expected);
}

#[test]
fn a_database_without_a_dimension_exports_no_embedding_column() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    strata(["put", &path_arg(&source), "a", "--content", "no vectors here"]).ok();
    let file = dir.path().join("out.arrow");
    strata(["export", &path_arg(&source), &path_arg(&file)]).ok();
    let reader = arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&file).unwrap(), None).unwrap();
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["key", "content", "seq", "expires_at_ms"]);
    let target = dir.path().join("target");
    strata(["import", &path_arg(&target), &path_arg(&file)]).ok();
    assert_eq!(kept(&target), kept(&source));
}

#[test]
fn an_already_expired_record_is_skipped_on_import() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"key\": \"old\", \"content\": \"expired\", \"embedding\": null, \"seq\": 1, \"expires_at_ms\": 1}\n\
         \n\
         {\"key\": \"new\", \"content\": \"kept\", \"embedding\": [1, 2], \"seq\": 9, \"expires_at_ms\": 99999999999999}\n\
         {\"key_b64\": \"/w==\", \"content_b64\": \"AP8=\"}\n",
    )
    .unwrap();
    let target = dir.path().join("db");
    let run = strata(["import", &path_arg(&target), &path_arg(&file)]);
    run.ok();
    assert!(run.stderr.contains("imported 2 records") && run.stderr.contains("1 already expired"), "{}", run.stderr);
    assert_eq!(
        kept(&target),
        [
            Kept { key: b"new".to_vec(), content: b"kept".to_vec(), embedding: Some(bits(&[1.0, 2.0])), expires_at_ms: 99_999_999_999_999 },
            Kept { key: vec![0xff], content: vec![0x00, 0xff], embedding: None, expires_at_ms: 0 },
        ]
    );
}
