//! The public, zero-copy view of one cold segment as Arrow-layout columns: the basis for
//! handing the cold tier to Arrow-based engines (`arrow`, Polars, DataFusion) without a copy.

use std::path::Path;
use std::sync::Arc;

use super::layout::Column;
use super::segment::ColdFile;

/// One cold segment of the database, as it is stored: rows sorted by key, one version per
/// key. Rows are what the segment holds: a newer version in the hot or warm tier, a later
/// deletion, or an expired TTL can make a row stale; `Db::iter_tier(Tier::Cold)` gives the
/// live view. Cheap to clone; keeps the file's map alive (also across a compaction that
/// replaces it).
#[derive(Clone)]
pub struct ColdSegment {
    pub(crate) file: Arc<ColdFile>,
}

impl ColdSegment {
    pub(crate) fn new(file: Arc<ColdFile>) -> ColdSegment {
        ColdSegment { file }
    }

    /// The segment's id (its file is `{id:016x}.cold`).
    pub fn id(&self) -> u64 {
        self.file.cold_id
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn rows(&self) -> usize {
        self.file.rows()
    }

    /// Values per embedding (0: the database stores none).
    pub fn embedding_dim(&self) -> usize {
        self.file.dim
    }

    /// The columns, borrowed straight from the map.
    pub fn columns(&self) -> ColdColumns<'_> {
        let f = &*self.file;
        ColdColumns {
            keys: BinaryColumn { offsets: bytemuck::cast_slice(f.buffer(Column::KeyOffsets)), data: f.buffer(Column::KeyData) },
            content: BinaryColumn { offsets: bytemuck::cast_slice(f.buffer(Column::ContentOffsets)), data: f.buffer(Column::ContentData) },
            embedding_dim: f.dim,
            embeddings: f.embedding_values(),
            embedding_validity: &f.buffer(Column::EmbeddingValidity)[..f.rows().div_ceil(8)],
            seqs: f.u64s(Column::Seq),
            expires_at_ms: f.u64s(Column::ExpiresAt),
        }
    }
}

impl std::fmt::Debug for ColdSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdSegment").field("id", &self.id()).field("rows", &self.rows()).field("path", &self.path()).finish()
    }
}

/// A variable-length binary column in Arrow's LargeBinary layout: `offsets` has
/// `len() + 1` entries starting at 0; value `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Copy, Debug)]
pub struct BinaryColumn<'a> {
    pub offsets: &'a [i64],
    pub data: &'a [u8],
}

impl<'a> BinaryColumn<'a> {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`; panics when `i >= len()` (like slice indexing).
    pub fn value(&self, i: usize) -> &'a [u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// The columns of one cold segment, each a slice of the segment's map (64-byte aligned
/// buffers, as Arrow lays out arrays). Row `i` of every column is the same record.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ColdColumns<'a> {
    pub keys: BinaryColumn<'a>,
    pub content: BinaryColumn<'a>,
    pub embedding_dim: usize,
    /// `rows × embedding_dim` values, row-major (Arrow `FixedSizeList<f32>` child values);
    /// rows without an embedding hold zeros there.
    pub embeddings: &'a [f32],
    /// Arrow validity bitmap of the embeddings: bit `i % 8` of byte `i / 8` is set when row
    /// `i` has one.
    pub embedding_validity: &'a [u8],
    pub seqs: &'a [u64],
    /// Expiry in ms since the Unix epoch; 0 = none.
    pub expires_at_ms: &'a [u64],
}

impl<'a> ColdColumns<'a> {
    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    /// Row `i`'s embedding, `None` when it has none.
    pub fn embedding(&self, i: usize) -> Option<&'a [f32]> {
        let valid = self.embedding_validity[i / 8] & (1 << (i % 8)) != 0;
        (valid && self.embedding_dim > 0).then(|| &self.embeddings[i * self.embedding_dim..(i + 1) * self.embedding_dim])
    }
}
