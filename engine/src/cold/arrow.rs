//! Feature `arrow`: one cold segment as an Arrow `RecordBatch` whose arrays are the
//! segment's mapped column buffers themselves, not copies of them.
//!
//! The whole map is handed to Arrow once, as a `bytes::Bytes` whose owner holds the
//! `Arc<ColdFile>` (so the batch keeps the map alive, like a `Record` does); every array
//! buffer is a zero-copy slice of it. No `unsafe`: `Bytes::from_owner` and
//! `arrow_buffer::Buffer::from(bytes::Bytes)` take the owner's pointer as it is.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, LargeBinaryArray, RecordBatch, UInt64Array};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::columns::ColdSegment;
use super::layout::Column;
use super::segment::ColdFile;
use crate::{Error, Result};

/// Names of the batch's columns, in order (`embedding` only when the database stores
/// embeddings).
const KEY: &str = "key";
const CONTENT: &str = "content";
const EMBEDDING: &str = "embedding";
const SEQ: &str = "seq";
const EXPIRES_AT_MS: &str = "expires_at_ms";

/// The owner of the bytes Arrow reads: the mapped file. `as_ref` is the whole map, whose
/// address is fixed for the life of the `ColdFile`.
struct MappedFile(Arc<ColdFile>);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl ColdSegment {
    /// The segment as an Arrow [`RecordBatch`](arrow_array::RecordBatch) (feature `arrow`),
    /// without copying: every array's buffers are slices of the segment's map, and the batch
    /// keeps the map alive. One row per stored row, in key order, with the columns
    ///
    /// | column | type | nulls |
    /// | --- | --- | --- |
    /// | `key` | `LargeBinary` | never |
    /// | `content` | `LargeBinary` | never |
    /// | `embedding` | `FixedSizeList<Float32, dim>` (absent when `embedding_dim() == 0`) | rows without one |
    /// | `seq` | `UInt64` | never |
    /// | `expires_at_ms` | `UInt64` (ms since the Unix epoch, 0 = none) | never |
    ///
    /// Like [`columns`](ColdSegment::columns), these are the rows as stored: a newer version
    /// in another tier, a deletion or an expired TTL can make a row stale. The data buffers
    /// are not checksummed here (`Db::verify` reads them all).
    pub fn to_record_batch(&self) -> Result<RecordBatch> {
        let file = &self.file;
        let map = Buffer::from(bytes::Bytes::from_owner(MappedFile(file.clone())));
        let rows = file.rows();
        let dim = file.dim;
        let arrow_error = |error: ArrowError| {
            // Open validated every length and offset these arrays rest on; Arrow refusing
            // them means the file and its directory disagree.
            Error::corruption(&file.path, 0, format!("the cold segment does not form an Arrow record batch: {error}"))
        };

        let mut fields = vec![Field::new(KEY, DataType::LargeBinary, false), Field::new(CONTENT, DataType::LargeBinary, false)];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(large_binary(&map, file, Column::KeyOffsets, Column::KeyData).map_err(arrow_error)?),
            Arc::new(large_binary(&map, file, Column::ContentOffsets, Column::ContentData).map_err(arrow_error)?),
        ];
        if dim > 0 {
            let embeddings = embeddings(&map, file).map_err(arrow_error)?;
            fields.push(Field::new(EMBEDDING, embeddings.data_type().clone(), true));
            columns.push(Arc::new(embeddings));
        }
        for (name, column) in [(SEQ, Column::Seq), (EXPIRES_AT_MS, Column::ExpiresAt)] {
            fields.push(Field::new(name, DataType::UInt64, false));
            columns.push(Arc::new(UInt64Array::new(scalars(&map, file, column), None)));
        }
        debug_assert!(columns.iter().all(|c| c.len() == rows));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_error)
    }
}

/// The bytes of `column`, as a slice of the whole-map buffer (no copy). Open checked that
/// every column lies inside the file.
fn slice(map: &Buffer, file: &ColdFile, column: Column) -> Buffer {
    let range = file.entry(column).range();
    map.slice_with_length(range.start, range.len())
}

/// A fixed-width column. Buffers start 64-aligned in a page-aligned map and open checked
/// their lengths against the row count, so the alignment and length checks of
/// `ScalarBuffer::from` hold.
fn scalars<T: arrow_buffer::ArrowNativeType>(map: &Buffer, file: &ColdFile, column: Column) -> ScalarBuffer<T> {
    ScalarBuffer::from(slice(map, file, column))
}

/// A LargeBinary column from its offsets (u64 on disk, never above the data length, which
/// fits i64; monotonic from 0, as open checked) and data buffers.
fn large_binary(map: &Buffer, file: &ColdFile, offsets: Column, data: Column) -> Result<LargeBinaryArray, ArrowError> {
    LargeBinaryArray::try_new(OffsetBuffer::new(scalars::<i64>(map, file, offsets)), slice(map, file, data), None)
}

/// `FixedSizeList<Float32, dim>` over the row-major value matrix, null where the validity
/// bitmap (LSB first, as Arrow's) has a 0.
fn embeddings(map: &Buffer, file: &ColdFile) -> Result<FixedSizeListArray, ArrowError> {
    let dim =
        i32::try_from(file.dim).map_err(|_| ArrowError::InvalidArgumentError(format!("embedding dimension {} exceeds i32", file.dim)))?;
    let values = Float32Array::new(scalars(map, file, Column::EmbeddingValues), None);
    let validity = NullBuffer::new(BooleanBuffer::new(slice(map, file, Column::EmbeddingValidity), 0, file.rows()));
    let item = Arc::new(Field::new_list_field(DataType::Float32, false));
    FixedSizeListArray::try_new(item, dim, Arc::new(values), Some(validity))
}
