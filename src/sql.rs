//! Feature `datafusion`: a strata database as an Apache DataFusion table.
//!
//! [`SnapshotTable`] is a `TableProvider` over one [`Snapshot`]: every query (and every scan
//! of one query) reads the same consistent state, whatever writers do meanwhile. One row
//! per live record, with the columns of `ColdSegment::to_record_batch` and of `strata
//! export`: `key`, `content` (`LargeBinary`), `embedding` (`FixedSizeList<Float32, dim>`,
//! null without one; absent when the database has no dimension), `seq`, `expires_at_ms`
//! (`UInt64`, 0 = no TTL). Rows stream in key order in bounded batches: runs of a cold
//! segment's rows go out as slices of its zero-copy batch (`ColdSegment::to_record_batch`,
//! the buffers are the mapped file's), hot and warm records in batches built as they are read. Filters on `key` (`=`, `<`, `<=`, `>`, `>=`,
//! `BETWEEN`, `LIKE 'prefix%'`, and `AND`s of them) narrow the scan to a key range; DataFusion
//! still applies every filter itself (`Inexact`), so the narrowing only saves work.
//!
//! DataFusion 55 (the newest release) is built on Arrow 59, one major version behind the
//! Arrow 60 of the `arrow` feature; the batches here are of `strata::datafusion::arrow`, the
//! cold ones bridged from Arrow 60 buffer by buffer without a copy (`bridge`).

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, LargeBinaryArray, RecordBatch, UInt64Array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{Between, BinaryExpr, Cast, Like, TryCast};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use strata_engine::{ColdSegment, Db, Record, Snapshot};

/// Rows per batch, and the content bytes at which a batch is cut early.
const BATCH_ROWS: usize = 4096;
const BATCH_BYTES: usize = 16 << 20;

/// A strata database (one consistent snapshot of it) as a DataFusion table.
///
/// ```ignore
/// let ctx = datafusion::prelude::SessionContext::new();
/// ctx.register_table("records", Arc::new(strata::SnapshotTable::new(&db)))?;
/// let batches = ctx.sql("SELECT count(*) FROM records WHERE key LIKE 'user/42/%'").await?.collect().await?;
/// ```
pub struct SnapshotTable {
    snapshot: Arc<Snapshot>,
    embedding_dim: usize,
    schema: SchemaRef,
}

impl fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotTable").field("seq", &self.snapshot.seq()).field("embedding_dim", &self.embedding_dim).finish()
    }
}

impl SnapshotTable {
    /// The table of a snapshot of `db` taken now.
    pub fn new(db: &Db) -> SnapshotTable {
        SnapshotTable::from_snapshot(db.snapshot(), db.embedding_dim())
    }

    /// The table of `snapshot`, of a database whose embedding dimension is `embedding_dim`
    /// (0 = none: no `embedding` column).
    pub fn from_snapshot(snapshot: Snapshot, embedding_dim: usize) -> SnapshotTable {
        SnapshotTable { snapshot: Arc::new(snapshot), embedding_dim, schema: table_schema(embedding_dim) }
    }
}

/// The columns, as `ColdSegment::to_record_batch` has them.
fn table_schema(embedding_dim: usize) -> SchemaRef {
    let mut fields = vec![Field::new("key", DataType::LargeBinary, false), Field::new("content", DataType::LargeBinary, false)];
    if embedding_dim > 0 {
        // MAX_EMBEDDING_DIM fits i32 (checked at compile time below).
        let size = embedding_dim as i32;
        fields.push(Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, false)), size),
            true,
        ));
    }
    fields.push(Field::new("seq", DataType::UInt64, false));
    fields.push(Field::new("expires_at_ms", DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

const _: () = assert!(strata_engine::limits::MAX_EMBEDDING_DIM <= i32::MAX as usize);

#[async_trait::async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if key_range(f).is_some() { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let range = filters.iter().filter_map(key_range).fold(KeyRange::all(), |a, b| a.intersect(&b));
        let partition = Arc::new(SnapshotPartition {
            snapshot: self.snapshot.clone(),
            embedding_dim: self.embedding_dim,
            schema: self.schema.clone(),
            range,
        });
        Ok(Arc::new(StreamingTableExec::try_new(self.schema.clone(), vec![partition], projection, Vec::new(), false, limit)?))
    }
}

/// A key range `[lower, upper]` with either end open, closed or unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyRange {
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
}

impl KeyRange {
    fn all() -> KeyRange {
        KeyRange { lower: Bound::Unbounded, upper: Bound::Unbounded }
    }

    fn intersect(&self, other: &KeyRange) -> KeyRange {
        // The larger lower bound (excluded wins a tie) and the smaller upper bound.
        let lower = match (&self.lower, &other.lower) {
            (Bound::Unbounded, b) | (b, Bound::Unbounded) => b.clone(),
            (a, b) => {
                let (ka, kb) = (bound_key(a), bound_key(b));
                if ka > kb || (ka == kb && matches!(a, Bound::Excluded(_))) {
                    a.clone()
                } else {
                    b.clone()
                }
            }
        };
        let upper = match (&self.upper, &other.upper) {
            (Bound::Unbounded, b) | (b, Bound::Unbounded) => b.clone(),
            (a, b) => {
                let (ka, kb) = (bound_key(a), bound_key(b));
                if ka < kb || (ka == kb && matches!(a, Bound::Excluded(_))) {
                    a.clone()
                } else {
                    b.clone()
                }
            }
        };
        KeyRange { lower, upper }
    }

    /// Does the range hold no key at all? (The snapshot's range scan wants `lower <= upper`.)
    fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (a, b) => bound_key(a) >= bound_key(b),
        }
    }
}

fn bound_key(bound: &Bound<Vec<u8>>) -> &[u8] {
    match bound {
        Bound::Included(k) | Bound::Excluded(k) => k,
        Bound::Unbounded => &[],
    }
}

/// The key range a filter implies, when it is a comparison of `key` with a literal (or an
/// `AND` of such); `None` when it constrains `key` in no way this can use.
fn key_range(expr: &Expr) -> Option<KeyRange> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => match (key_range(left), key_range(right)) {
            (Some(a), Some(b)) => Some(a.intersect(&b)),
            (a, b) => a.or(b),
        },
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_key(left) {
                (*op, literal_bytes(right)?)
            } else if is_key(right) {
                (op.swap()?, literal_bytes(left)?)
            } else {
                return None;
            };
            let (lower, upper) = match op {
                Operator::Eq => (Bound::Included(value.clone()), Bound::Included(value)),
                Operator::Lt => (Bound::Unbounded, Bound::Excluded(value)),
                Operator::LtEq => (Bound::Unbounded, Bound::Included(value)),
                Operator::Gt => (Bound::Excluded(value), Bound::Unbounded),
                Operator::GtEq => (Bound::Included(value), Bound::Unbounded),
                _ => return None,
            };
            Some(KeyRange { lower, upper })
        }
        Expr::Between(Between { expr, negated: false, low, high }) if is_key(expr) => {
            Some(KeyRange { lower: Bound::Included(literal_bytes(low)?), upper: Bound::Included(literal_bytes(high)?) })
        }
        Expr::Like(Like { negated: false, expr, pattern, escape_char: None, case_insensitive: false }) if is_key(expr) => {
            let pattern = literal_bytes(pattern)?;
            let prefix = pattern.strip_suffix(b"%")?;
            if prefix.iter().any(|&b| b == b'%' || b == b'_' || b == b'\\') {
                return None;
            }
            Some(KeyRange { lower: Bound::Included(prefix.to_vec()), upper: prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded) })
        }
        _ => None,
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The `key` column, possibly cast to a string or binary type (which keeps byte order).
fn is_key(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == "key",
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => byte_ordered(field.data_type()) && is_key(expr),
        _ => false,
    }
}

fn byte_ordered(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// The bytes of a string or binary literal (possibly cast to one).
fn literal_bytes(expr: &Expr) -> Option<Vec<u8>> {
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.as_bytes().to_vec()),
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b))
            | ScalarValue::FixedSizeBinary(_, Some(b)) => Some(b.clone()),
            _ => None,
        },
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) if byte_ordered(field.data_type()) => literal_bytes(expr),
        _ => None,
    }
}

/// The one partition of a scan: the snapshot's records in a key range.
struct SnapshotPartition {
    snapshot: Arc<Snapshot>,
    embedding_dim: usize,
    schema: SchemaRef,
    range: KeyRange,
}

impl fmt::Debug for SnapshotPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotPartition").field("seq", &self.snapshot.seq()).field("range", &self.range).finish()
    }
}

impl PartitionStream for SnapshotPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let records: Box<dyn Iterator<Item = strata_engine::Result<Record>> + Send> = if self.range.is_empty() {
            Box::new(std::iter::empty())
        } else {
            let bounds = (self.range.lower.as_ref().map(Vec::as_slice), self.range.upper.as_ref().map(Vec::as_slice));
            Box::new(self.snapshot.range(bounds))
        };
        let batches = Batches::new(records, self);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter(batches)))
    }
}

/// Cuts a record iterator into Arrow batches of at most `BATCH_ROWS` rows. A run of records
/// that are consecutive rows of one cold segment (the newest version of each key, in key
/// order) goes out as a slice of that segment's zero-copy batch; other records (hot, warm,
/// or cold rows between shadowed, deleted or expired ones) are copied into new batches.
struct Batches {
    records: Box<dyn Iterator<Item = strata_engine::Result<Record>> + Send>,
    schema: SchemaRef,
    embedding_dim: usize,
    done: bool,
    /// The snapshot's cold segments in key order, with their batches once made.
    cold: Vec<(ColdSegment, Option<RecordBatch>)>,
    /// Where the cold-row search stands: a segment and a row in it (both only grow).
    cursor: (usize, usize),
    pending: Pending,
    /// A record read but not yet placed (it ended the pending run).
    carry: Option<Record>,
}

enum Pending {
    Empty,
    Copied { records: Vec<Record>, bytes: usize },
    Cold { segment: usize, start: usize, end: usize },
}

impl Batches {
    fn new(records: Box<dyn Iterator<Item = strata_engine::Result<Record>> + Send>, partition: &SnapshotPartition) -> Batches {
        let mut cold: Vec<(ColdSegment, Option<RecordBatch>)> =
            partition.snapshot.cold_segments().into_iter().filter(|s| s.rows() > 0).map(|s| (s, None)).collect();
        cold.sort_by(|a, b| a.0.columns().keys.value(0).cmp(b.0.columns().keys.value(0)));
        Batches {
            records,
            schema: partition.schema.clone(),
            embedding_dim: partition.embedding_dim,
            done: false,
            cold,
            cursor: (0, 0),
            pending: Pending::Empty,
            carry: None,
        }
    }

    /// The cold row `record` was read from, if it is one: same key and seq.
    fn cold_row(&mut self, record: &Record) -> Option<(usize, usize)> {
        let key = record.key();
        while let Some((segment, _)) = self.cold.get(self.cursor.0) {
            let columns = segment.columns();
            let rows = columns.rows();
            if columns.keys.value(rows - 1) < key {
                self.cursor = (self.cursor.0 + 1, 0);
                continue;
            }
            // The first row at or after the cursor whose key is not below `key` (bounded:
            // the interval halves every step).
            let (mut low, mut high) = (self.cursor.1, rows);
            while low < high {
                let middle = low + (high - low) / 2;
                if columns.keys.value(middle) < key {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            self.cursor.1 = low;
            let found = low < rows && columns.keys.value(low) == key && columns.seqs[low] == record.seq();
            return found.then_some((self.cursor.0, low));
        }
        None
    }

    fn flush(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        match std::mem::replace(&mut self.pending, Pending::Empty) {
            Pending::Empty => None,
            Pending::Copied { records, .. } => Some(records_batch(&self.schema, self.embedding_dim, &records)),
            Pending::Cold { segment, start, end } => Some(self.cold_batch(segment).map(|batch| batch.slice(start, end - start))),
        }
    }

    /// The whole segment as a batch of DataFusion's Arrow, sharing the segment's map.
    fn cold_batch(&mut self, segment: usize) -> datafusion::common::Result<RecordBatch> {
        let (cold, batch) = &mut self.cold[segment];
        if batch.is_none() {
            let engine_batch = cold.to_record_batch().map_err(|e| DataFusionError::External(Box::new(e)))?;
            *batch = Some(bridge::batch(&engine_batch, &self.schema)?);
        }
        Ok(batch.clone().expect("made above"))
    }

    fn next_record(&mut self) -> Option<strata_engine::Result<Record>> {
        if let Some(record) = self.carry.take() {
            return Some(Ok(record));
        }
        if self.done {
            return None;
        }
        let next = self.records.next();
        self.done = next.is_none();
        next
    }
}

impl Iterator for Batches {
    type Item = datafusion::common::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let record = match self.next_record() {
                None => return self.flush(),
                Some(Err(error)) => {
                    self.done = true;
                    return Some(Err(DataFusionError::External(Box::new(error))));
                }
                Some(Ok(record)) => record,
            };
            let cold = self.cold_row(&record);
            match (&mut self.pending, cold) {
                (Pending::Cold { segment, start, end }, Some((s, row))) if *segment == s && *end == row && *end - *start < BATCH_ROWS => {
                    *end += 1;
                }
                (Pending::Copied { records, bytes }, None) if records.len() < BATCH_ROWS && *bytes < BATCH_BYTES => {
                    *bytes += record.key().len() + record.content().len();
                    records.push(record);
                }
                (Pending::Empty, Some((segment, row))) => self.pending = Pending::Cold { segment, start: row, end: row + 1 },
                (Pending::Empty, None) => {
                    let bytes = record.key().len() + record.content().len();
                    self.pending = Pending::Copied { records: vec![record], bytes };
                }
                _ => {
                    self.carry = Some(record);
                    return self.flush();
                }
            }
        }
    }
}

/// Arrow 60 (the engine's zero-copy cold batches) to Arrow 59 (DataFusion's) without a
/// copy: each buffer of the one is wrapped as a buffer of the other (`bytes::Bytes` owning
/// the Arrow 60 buffer, which owns the segment's map), so the batch still points into the
/// mapped file and keeps it alive. No `unsafe`: both sides take the owner's pointer as it is.
mod bridge {
    use std::sync::Arc;

    use arrow_buffer as b60;
    use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, LargeBinaryArray, RecordBatch, UInt64Array};
    use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
    use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
    use datafusion::common::{DataFusionError, Result};
    use strata_engine::arrow_array as a60;
    use strata_engine::arrow_array::Array as _;

    struct Owner(b60::Buffer);

    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_slice()
        }
    }

    fn buffer(buffer: &b60::Buffer) -> Buffer {
        Buffer::from(bytes::Bytes::from_owner(Owner(buffer.clone())))
    }

    fn mismatch(what: &str) -> DataFusionError {
        DataFusionError::Internal(format!("a cold segment's batch does not have the table's columns: {what}"))
    }

    fn downcast<'a, T: 'static>(column: &'a a60::ArrayRef, what: &str) -> Result<&'a T> {
        column.as_any().downcast_ref::<T>().ok_or_else(|| mismatch(what))
    }

    pub(super) fn batch(batch: &a60::RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        if batch.num_columns() != schema.fields().len() {
            return Err(mismatch("column count"));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (column, field) in batch.columns().iter().zip(schema.fields()) {
            columns.push(match field.data_type() {
                DataType::LargeBinary => {
                    let array = downcast::<a60::LargeBinaryArray>(column, field.name())?;
                    let offsets = OffsetBuffer::new(ScalarBuffer::<i64>::from(buffer(array.offsets().inner().inner())));
                    Arc::new(LargeBinaryArray::try_new(offsets, buffer(array.values()), None)?)
                }
                DataType::UInt64 => {
                    let array = downcast::<a60::UInt64Array>(column, field.name())?;
                    Arc::new(UInt64Array::new(ScalarBuffer::from(buffer(array.values().inner())), None))
                }
                DataType::FixedSizeList(item, size) => {
                    let array = downcast::<a60::FixedSizeListArray>(column, field.name())?;
                    let values = downcast::<a60::Float32Array>(array.values(), "embedding values")?;
                    let values = Float32Array::new(ScalarBuffer::from(buffer(values.values().inner())), None);
                    let nulls = array.nulls().map(|n| NullBuffer::new(BooleanBuffer::new(buffer(n.inner().inner()), n.offset(), n.len())));
                    let item = Arc::new(Field::new(item.name(), item.data_type().clone(), item.is_nullable()));
                    Arc::new(FixedSizeListArray::try_new(item, *size, Arc::new(values), nulls)?)
                }
                other => return Err(mismatch(&format!("column type {other}"))),
            });
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// One batch of `records`, their bytes copied into the batch's buffers.
fn records_batch(schema: &SchemaRef, embedding_dim: usize, records: &[Record]) -> datafusion::common::Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(LargeBinaryArray::from_iter_values(records.iter().map(Record::key))),
        Arc::new(LargeBinaryArray::from_iter_values(records.iter().map(Record::content))),
    ];
    if embedding_dim > 0 {
        let mut values = Vec::with_capacity(records.len() * embedding_dim);
        let mut valid = Vec::with_capacity(records.len());
        for record in records {
            match record.embedding() {
                Some(e) => values.extend_from_slice(e),
                None => values.resize(values.len() + embedding_dim, 0.0),
            }
            valid.push(record.embedding().is_some());
        }
        let item = Arc::new(Field::new_list_field(DataType::Float32, false));
        let nulls = NullBuffer::new(BooleanBuffer::from(valid));
        let list = FixedSizeListArray::try_new(item, embedding_dim as i32, Arc::new(Float32Array::from(values)), Some(nulls))?;
        columns.push(Arc::new(list));
    }
    columns.push(Arc::new(UInt64Array::from_iter_values(records.iter().map(Record::seq))));
    columns.push(Arc::new(UInt64Array::from_iter_values(records.iter().map(Record::expires_at_ms))));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn range(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Option<KeyRange> {
        Some(KeyRange { lower: lower.map(<[u8]>::to_vec), upper: upper.map(<[u8]>::to_vec) })
    }

    #[test]
    fn key_filters_become_ranges_and_others_do_not() {
        assert_eq!(key_range(&col("key").eq(lit("b"))), range(Bound::Included(b"b"), Bound::Included(b"b")));
        assert_eq!(key_range(&lit("b").lt(col("key"))), range(Bound::Excluded(b"b"), Bound::Unbounded));
        assert_eq!(key_range(&col("key").lt_eq(lit("m"))), range(Bound::Unbounded, Bound::Included(b"m")));
        assert_eq!(
            key_range(&col("key").gt_eq(lit("c")).and(col("key").lt(lit("f")))),
            range(Bound::Included(b"c"), Bound::Excluded(b"f"))
        );
        assert_eq!(key_range(&col("key").like(lit("user/4%"))), range(Bound::Included(b"user/4"), Bound::Excluded(b"user/5")));
        assert_eq!(key_range(&col("key").like(lit("a_b%"))), None);
        assert_eq!(key_range(&col("key").between(lit("a"), lit("c"))), range(Bound::Included(b"a"), Bound::Included(b"c")));
        assert_eq!(key_range(&col("content").eq(lit("b"))), None);
        assert_eq!(key_range(&col("key").not_eq(lit("b"))), None);
        assert_eq!(key_range(&col("key").eq(lit("b")).or(col("key").eq(lit("c")))), None);
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(vec![b'b']));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn cold_rows_go_out_without_a_copy_and_every_record_once() {
        use datafusion::arrow::array::AsArray;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("db"), strata_engine::Options::new().embedding_dim(2).auto_compact(false)).unwrap();
        for i in 0..100u32 {
            db.put(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes(), (i % 3 != 0).then_some(&[i as f32, 1.0][..])).unwrap();
        }
        db.compact().unwrap();
        db.put(b"k050", b"newer", None).unwrap(); // shadows a cold row: the run splits there
        db.delete(b"k060").unwrap();
        let table = SnapshotTable::new(&db);
        let partition =
            SnapshotPartition { snapshot: table.snapshot.clone(), embedding_dim: 2, schema: table.schema.clone(), range: KeyRange::all() };
        let batches: Vec<RecordBatch> = Batches::new(Box::new(table.snapshot.iter()), &partition).map(Result::unwrap).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = batches
            .iter()
            .flat_map(|b| {
                let (k, c) = (b.column(0).as_binary::<i64>(), b.column(1).as_binary::<i64>());
                (0..b.num_rows()).map(|i| (k.value(i).to_vec(), c.value(i).to_vec())).collect::<Vec<_>>()
            })
            .collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = db.iter().map(|r| r.unwrap()).map(|r| (r.key().to_vec(), r.content().to_vec())).collect();
        assert_eq!(rows, expected);
        // Batches: cold k000..k049, the hot k050, cold k051..k059, cold k061..k099.
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [50, 1, 9, 39]);
        let cold = db.cold_segments();
        let map = cold[0].columns().keys.data.as_ptr_range();
        for i in [0, 2, 3] {
            let keys = batches[i].column(0).as_binary::<i64>().values().as_ptr();
            assert!(map.contains(&keys), "batch {i} copied its keys");
        }
        let hot = batches[1].column(0).as_binary::<i64>().values().as_ptr();
        assert!(!map.contains(&hot));
    }

    #[test]
    fn ranges_intersect_and_know_when_they_are_empty() {
        let a = KeyRange { lower: Bound::Included(b"c".to_vec()), upper: Bound::Excluded(b"f".to_vec()) };
        let b = KeyRange { lower: Bound::Excluded(b"c".to_vec()), upper: Bound::Included(b"k".to_vec()) };
        assert_eq!(a.intersect(&b), KeyRange { lower: Bound::Excluded(b"c".to_vec()), upper: Bound::Excluded(b"f".to_vec()) });
        let disjoint = KeyRange { lower: Bound::Included(b"g".to_vec()), upper: Bound::Unbounded };
        assert!(a.intersect(&disjoint).is_empty());
        assert!(!KeyRange::all().is_empty());
        let point = KeyRange { lower: Bound::Included(b"c".to_vec()), upper: Bound::Included(b"c".to_vec()) };
        assert!(!point.is_empty());
    }
}
