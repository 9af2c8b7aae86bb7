//! Feature `arrow`: every cold segment read back through Arrow (`ColdSegment::to_record_batch`)
//! equals what `Db::get` returns, row by row, and its arrays are the segment's mapped
//! buffers themselves (the same addresses as `ColdSegment::columns`), not copies.
//! Method: write records covering the edge cases (no embedding, empty content, 0x00 and 0xFF
//! keys, a TTL, an overwrite, a deletion), seal, compact into several small cold segments,
//! then check schema, rows, values and pointers of each segment's batch; once more for a
//! database without embeddings.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bits, TestClock};
use strata::arrow_array::{Array, FixedSizeListArray, Float32Array, LargeBinaryArray, RecordBatch, UInt64Array};
use strata::arrow_schema::{DataType, Field, Schema};
use strata::{ColdSegment, Db, Options};

const DIM: usize = 4;
const TTL: Duration = Duration::from_secs(3600);

/// What a key was written with: content, embedding and expiry (ms, 0 = none).
type Expected = BTreeMap<Vec<u8>, (Vec<u8>, Option<Vec<f32>>, u64)>;

fn schema(dim: usize) -> Schema {
    let mut fields = vec![Field::new("key", DataType::LargeBinary, false), Field::new("content", DataType::LargeBinary, false)];
    if dim > 0 {
        let item = Arc::new(Field::new_list_field(DataType::Float32, false));
        fields.push(Field::new("embedding", DataType::FixedSizeList(item, dim as i32), true));
    }
    fields.push(Field::new("seq", DataType::UInt64, false));
    fields.push(Field::new("expires_at_ms", DataType::UInt64, false));
    Schema::new(fields)
}

fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> &'b T {
    let array = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    array.as_any().downcast_ref::<T>().unwrap_or_else(|| panic!("column {name} has type {}", array.data_type()))
}

/// Writes `expected` (plus an overwritten and a deleted key that must not show), seals and
/// compacts into cold segments of at most `SEGMENT_BYTES_MIN` bytes.
fn cold_db(dir: &std::path::Path, dim: usize, clock: &TestClock, expected: &Expected) -> Db {
    let mut options = Options::new().cold_segment_bytes_max(strata::limits::SEGMENT_BYTES_MIN).auto_compact(false);
    if dim > 0 {
        options = options.embedding_dim(dim);
    }
    let db = Db::open(dir, clock.install(options)).expect("open");
    db.put(b"overwritten", b"old version", None).expect("put");
    db.put(b"deleted", b"gone", None).expect("put");
    db.delete(b"deleted").expect("delete");
    for (key, (content, embedding, expires_at_ms)) in expected {
        if *expires_at_ms == 0 {
            db.put(key, content, embedding.as_deref()).expect("put");
        } else {
            db.put_with_ttl(key, content, embedding.as_deref(), TTL).expect("put with ttl");
        }
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    db
}

fn expected_records(dim: usize, clock: &TestClock) -> Expected {
    let embedding = |i: usize| (dim > 0).then(|| (0..dim).map(|j| i as f32 * 0.5 - j as f32).collect::<Vec<f32>>());
    let mut expected = Expected::new();
    expected.insert(vec![0x00], (b"the 0x00 key".to_vec(), embedding(1), 0));
    expected.insert(vec![0xFF], (Vec::new(), embedding(2), 0)); // empty content
    expected.insert(vec![0xFF; 300], (b"longest key, last row".to_vec(), embedding(3), 0));
    expected.insert(b"no-embedding".to_vec(), (b"a record without an embedding".to_vec(), None, 0));
    expected.insert(b"overwritten".to_vec(), (b"new version".to_vec(), embedding(4), 0));
    expected.insert(b"ttl".to_vec(), (b"expires in an hour".to_vec(), embedding(5), clock.now() + TTL.as_millis() as u64));
    if dim > 0 {
        expected.insert(
            b"odd floats".to_vec(),
            (b"-0.0, a subnormal, extremes".to_vec(), Some([-0.0, 1e-45, f32::MAX, f32::MIN_POSITIVE].to_vec()), 0),
        );
    }
    // Enough rows for several cold segments and more than one fence block in some.
    for i in 0..400 {
        let content = format!("record {i} ").repeat(i % 7);
        let embedding = if i.is_multiple_of(5) { None } else { embedding(i) };
        expected.insert(format!("row/{i:04}").into_bytes(), (content.into_bytes(), embedding, 0));
    }
    expected
}

/// Schema, row count, every value against `db.get` and `expected`, and that every array
/// buffer is the segment's own column slice.
fn check_segment(db: &Db, segment: &ColdSegment, batch: &RecordBatch, dim: usize, expected: &Expected) {
    assert_eq!(*batch.schema(), schema(dim));
    assert_eq!(batch.num_rows(), segment.rows());
    let keys: &LargeBinaryArray = column(batch, "key");
    let contents: &LargeBinaryArray = column(batch, "content");
    let seqs: &UInt64Array = column(batch, "seq");
    let expires: &UInt64Array = column(batch, "expires_at_ms");
    let embeddings = (dim > 0).then(|| column::<FixedSizeListArray>(batch, "embedding"));
    assert!(batch.column_by_name("embedding").is_some() == (dim > 0));
    for array in [keys as &dyn Array, contents, seqs, expires] {
        assert_eq!(array.null_count(), 0);
    }

    for row in 0..batch.num_rows() {
        let key = keys.value(row);
        let record = db.get(key).expect("get").unwrap_or_else(|| panic!("cold key {key:?} not found"));
        let (content, embedding, expires_at_ms) = &expected[key];
        assert_eq!(contents.value(row), record.content());
        assert_eq!(contents.value(row), &content[..]);
        assert_eq!(seqs.value(row), record.seq());
        assert_eq!(expires.value(row), *expires_at_ms);
        if let Some(embeddings) = embeddings {
            let arrow_embedding = embeddings.is_valid(row).then(|| {
                let values = embeddings.value(row);
                bits(values.as_any().downcast_ref::<Float32Array>().expect("f32 values").values())
            });
            assert_eq!(arrow_embedding, record.embedding().map(bits), "row {row}");
            assert_eq!(arrow_embedding, embedding.as_deref().map(bits), "row {row}");
        } else {
            assert_eq!(record.embedding(), None);
        }
    }

    // Zero-copy: the arrays' buffers start where the segment's mapped columns start.
    let columns = segment.columns();
    assert_eq!(keys.values().as_ptr(), columns.keys.data.as_ptr());
    assert_eq!(keys.value_offsets().as_ptr(), columns.keys.offsets.as_ptr());
    assert_eq!(contents.values().as_ptr(), columns.content.data.as_ptr());
    assert_eq!(contents.value_offsets().as_ptr(), columns.content.offsets.as_ptr());
    assert_eq!(seqs.values().as_ptr(), columns.seqs.as_ptr());
    assert_eq!(expires.values().as_ptr(), columns.expires_at_ms.as_ptr());
    if let Some(embeddings) = embeddings {
        let values = embeddings.values().as_any().downcast_ref::<Float32Array>().expect("f32 values");
        assert_eq!(values.values().as_ptr(), columns.embeddings.as_ptr());
        assert_eq!(values.len(), columns.embeddings.len());
        let validity = embeddings.nulls().expect("validity bitmap");
        assert_eq!(validity.buffer().as_ptr(), columns.embedding_validity.as_ptr());
        assert_eq!(validity.null_count(), (0..segment.rows()).filter(|&i| columns.embedding(i).is_none()).count());
    }
}

/// All rows of all batches, in order, as owned values.
fn rows_of(batches: &[RecordBatch]) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut rows = Vec::new();
    for batch in batches {
        let (keys, contents): (&LargeBinaryArray, &LargeBinaryArray) = (column(batch, "key"), column(batch, "content"));
        let seqs: &UInt64Array = column(batch, "seq");
        rows.extend((0..batch.num_rows()).map(|i| (keys.value(i).to_vec(), contents.value(i).to_vec(), seqs.value(i))));
    }
    rows
}

fn export_and_check(dim: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let expected = expected_records(dim, &clock);
    let db = cold_db(dir.path(), dim, &clock, &expected);
    let segments = db.cold_segments();
    assert!(segments.len() > 1, "expected several cold segments, got {}", segments.len());

    let mut batches = Vec::new();
    for segment in &segments {
        assert_eq!(segment.embedding_dim(), dim);
        let batch = segment.to_record_batch().expect("record batch");
        check_segment(&db, segment, &batch, dim, &expected);
        batches.push(batch);
    }
    // Together the segments hold exactly the live keys, in key order.
    let rows = rows_of(&batches);
    let keys: Vec<&[u8]> = rows.iter().map(|(k, _, _)| &k[..]).collect();
    assert_eq!(keys, expected.keys().map(|k| &k[..]).collect::<Vec<_>>());

    // A batch keeps the map alive: still readable after the segments and the database are gone.
    drop(segments);
    db.close().expect("close");
    drop(db);
    assert_eq!(rows_of(&batches), rows);
}

#[test]
fn cold_segments_export_to_arrow_without_copy() {
    export_and_check(DIM);
}

#[test]
fn without_embeddings_there_is_no_embedding_column() {
    export_and_check(0);
}
