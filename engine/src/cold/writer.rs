//! Builds a cold segment file from rows sorted by key. The file is written front to back
//! (one pass over the rows per column), fdatasynced, and never opened for writing again.
//! It becomes part of the database only when a manifest lists it (`manifest.rs`).

use std::io::{BufWriter, Write};
use std::path::Path;

use super::filter;
use super::layout::{self, BufferEntry, Column, Footer, BUFFER_ALIGN, FENCE_ROWS, HEADER_LEN};
use crate::io::fs;
use crate::io::pace::{Pace, Paced};
use crate::io::vfs::{File, Vfs};
use crate::{Error, Result};

/// One row as the writer reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowData<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) content: &'a [u8],
    pub(crate) embedding: Option<&'a [f32]>,
    pub(crate) seq: u64,
    pub(crate) expires_at_ms: u64,
}

impl RowData<'_> {
    pub(crate) fn logical_bytes(&self) -> u64 {
        (self.key.len() + self.content.len() + self.embedding.map_or(0, |e| e.len() * 4)) as u64
    }

    /// The row checksum stored in `Column::RowCrc`.
    pub(crate) fn crc(&self) -> u32 {
        row_crc(self.key, self.content, self.embedding.map(bytemuck::cast_slice), self.seq, self.expires_at_ms)
    }
}

/// CRC-32 of key ‖ content ‖ embedding bytes (when present) ‖ seq (u64 LE) ‖ expiry (u64 LE).
pub(crate) fn row_crc(key: &[u8], content: &[u8], embedding: Option<&[u8]>, seq: u64, expires_at_ms: u64) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    hasher.update(content);
    if let Some(bytes) = embedding {
        hasher.update(bytes);
    }
    hasher.update(&seq.to_le_bytes());
    hasher.update(&expires_at_ms.to_le_bytes());
    hasher.finalize()
}

/// Rows to write, sorted by key ascending, keys unique. Random access, read once per column.
pub(crate) trait RowSource {
    fn rows(&self) -> usize;
    fn row(&self, index: usize) -> RowData<'_>;
    /// The row's checksum (`RowData::crc`); a source that already verified it may cache it.
    fn crc(&self, index: usize) -> u32 {
        self.row(index).crc()
    }
}

/// What a written segment holds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WrittenSegment {
    pub(crate) file_len: u64,
    pub(crate) rows: u64,
}

/// Writes the buffers one after another, 64-aligned, with a CRC of each.
struct BufferWriter<'p> {
    out: BufWriter<Paced<'p, File>>,
    position: u64,
    hasher: crc32fast::Hasher,
    start: u64,
}

impl BufferWriter<'_> {
    fn begin(&mut self) -> std::io::Result<()> {
        let padded = crate::format::align_up(self.position as usize, BUFFER_ALIGN) as u64;
        let zeros = [0u8; BUFFER_ALIGN];
        self.out.write_all(&zeros[..(padded - self.position) as usize])?;
        self.position = padded;
        self.start = padded;
        self.hasher = crc32fast::Hasher::new();
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.position += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn end(&mut self) -> BufferEntry {
        let hasher = std::mem::take(&mut self.hasher);
        BufferEntry { offset: self.start, len: self.position - self.start, crc: hasher.finalize() }
    }
}

/// Writes `rows` as a new cold segment file at `path` (which must not exist) and fdatasyncs
/// it. With a `pace` (background compaction), every write is admitted by it first.
pub(crate) fn write_segment(
    vfs: &dyn Vfs,
    path: &Path,
    cold_id: u64,
    dim: usize,
    rows: &dyn RowSource,
    pace: Option<&Pace>,
) -> Result<WrittenSegment> {
    let n = rows.rows();
    for i in 1..n {
        if rows.row(i - 1).key >= rows.row(i).key {
            return Err(Error::invalid("rows", format!("cold segment rows must be sorted by unique key (row {i})")));
        }
    }
    let file = fs::create_new(vfs, path)?;
    let out = BufWriter::with_capacity(1 << 20, Paced { inner: file, pace });
    let mut w = BufferWriter { out, position: 0, hasher: crc32fast::Hasher::new(), start: 0 };
    let io = |e: std::io::Error| Error::io_at(path, "write cold segment", e);
    w.put(&layout::header_encode(cold_id, n as u64, dim as u32)).map_err(io)?;
    debug_assert_eq!(w.position, HEADER_LEN as u64);

    let mut footer = Footer { rows: n as u64, seq_min: u64::MAX, seq_max: 0, version: layout::COLD_FORMAT_VERSION, ..Footer::default() };
    if n > 0 {
        footer.min_key = rows.row(0).key.to_vec();
        footer.max_key = rows.row(n - 1).key.to_vec();
    }
    let fence_skip = layout::fence_skip(footer.version, &footer.min_key, &footer.max_key);
    let zero_embedding = vec![0u8; dim * 4];
    for column in Column::ALL {
        w.begin().map_err(io)?;
        match column {
            Column::KeyOffsets | Column::ContentOffsets => {
                let mut offset = 0u64;
                w.put(&offset.to_le_bytes()).map_err(io)?;
                for i in 0..n {
                    let row = rows.row(i);
                    offset += if column == Column::KeyOffsets { row.key.len() } else { row.content.len() } as u64;
                    w.put(&offset.to_le_bytes()).map_err(io)?;
                }
            }
            Column::KeyData => (0..n).try_for_each(|i| w.put(rows.row(i).key)).map_err(io)?,
            Column::ContentData => (0..n).try_for_each(|i| w.put(rows.row(i).content)).map_err(io)?,
            Column::EmbeddingValidity => {
                let mut bits = vec![0u8; n.div_ceil(8)];
                for (i, byte) in (0..n).map(|i| (i, i / 8)) {
                    if rows.row(i).embedding.is_some() {
                        bits[byte] |= 1 << (i % 8);
                    }
                }
                w.put(&bits).map_err(io)?;
            }
            Column::EmbeddingValues if dim > 0 => {
                for i in 0..n {
                    match rows.row(i).embedding {
                        Some(values) if values.len() == dim => w.put(bytemuck::cast_slice(values)).map_err(io)?,
                        Some(values) => {
                            return Err(Error::invalid("rows", format!("row {i} has {} embedding values, not {dim}", values.len())));
                        }
                        None => w.put(&zero_embedding).map_err(io)?,
                    }
                }
            }
            Column::EmbeddingValues => {}
            Column::Seq | Column::ExpiresAt => {
                for i in 0..n {
                    let row = rows.row(i);
                    let value = if column == Column::Seq { row.seq } else { row.expires_at_ms };
                    w.put(&value.to_le_bytes()).map_err(io)?;
                }
            }
            Column::RowCrc => {
                for i in 0..n {
                    let row = rows.row(i);
                    footer.seq_min = footer.seq_min.min(row.seq);
                    footer.seq_max = footer.seq_max.max(row.seq);
                    footer.logical_bytes += row.logical_bytes();
                    w.put(&rows.crc(i).to_le_bytes()).map_err(io)?;
                }
            }
            Column::Filter => {
                let mut bits = vec![0u8; filter::filter_len(n)];
                (0..n).for_each(|i| filter::insert(&mut bits, filter::key_hash(rows.row(i).key)));
                w.put(&bits).map_err(io)?;
            }
            Column::Fences => {
                for i in (0..n).step_by(FENCE_ROWS) {
                    w.put(&layout::fence_of(rows.row(i).key, fence_skip).to_le_bytes()).map_err(io)?;
                }
            }
        }
        let entry = w.end();
        debug_assert!(column.fixed_len(n, dim).is_none_or(|len| len as u64 == entry.len), "{column:?}");
        footer.columns[column as usize] = entry;
    }
    if n == 0 {
        footer.seq_min = 0;
    }
    w.begin().map_err(io)?; // the footer starts 64-aligned too
    w.put(&footer.encode()).map_err(io)?;
    let file_len = w.position;
    let file = w.out.into_inner().map_err(|e| io(e.into_error()))?.inner;
    fs::sync_data(file.as_ref(), path)?;
    Ok(WrittenSegment { file_len, rows: n as u64 })
}

/// Rows held in memory, for tests.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnedRows(pub(crate) Vec<OwnedRow>);

#[cfg(test)]
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OwnedRow {
    pub(crate) key: Vec<u8>,
    pub(crate) content: Vec<u8>,
    pub(crate) embedding: Option<Vec<f32>>,
    pub(crate) seq: u64,
    pub(crate) expires_at_ms: u64,
}

#[cfg(test)]
impl RowSource for OwnedRows {
    fn rows(&self) -> usize {
        self.0.len()
    }
    fn row(&self, index: usize) -> RowData<'_> {
        let r = &self.0[index];
        RowData { key: &r.key, content: &r.content, embedding: r.embedding.as_deref(), seq: r.seq, expires_at_ms: r.expires_at_ms }
    }
}
