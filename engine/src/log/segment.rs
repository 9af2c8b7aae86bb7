//! A sealed log segment (the warm tier): a read-only map of a file that is never written
//! again, with the hint block that lets open rebuild the index without reading records.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::dead_rows::DeadRows;
use super::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::record::{self, RecordView};
use super::trailer::{HintEntry, Trailer};
use crate::io::fs;
use crate::io::maps::ReadOnlyMap;
use crate::io::vfs::Vfs;
use crate::{Error, Result};

/// A put with an embedding in a sealed segment: its hint entry's position in the hint
/// block and its record's offset (a search checks `DeadRows` by offset before it decodes
/// the entry).
#[derive(Clone, Copy)]
pub(crate) struct EmbeddedPut {
    pub(crate) at: u32,
    pub(crate) offset: u32,
}

/// A sealed segment, a.k.a. a warm segment or a sealed log file.
pub(crate) struct SealedSegment {
    pub(crate) path: PathBuf,
    pub(crate) segment_id: u32,
    pub(crate) embedding_dim: usize,
    pub(crate) trailer: Trailer,
    map: ReadOnlyMap,
    /// The hint-block positions (`Trailer::entry_at`) of the puts that carry an embedding,
    /// in file order: what a search scans (`vector::log_rows`). 4 bytes per such record,
    /// computed on the first search.
    embedded_puts: OnceLock<Box<[EmbeddedPut]>>,
    /// Records no reader can read again (`DeadRows`), shared with the hot segment this was.
    pub(crate) dead: Arc<DeadRows>,
    /// One bit per `VERIFIED_GRANULE` bytes of the file: set once the record starting there
    /// passed its checksum (`record_checked_once`). Allocated on the first checked read.
    verified: OnceLock<Box<[AtomicU64]>>,
}

/// Bytes per bit of `SealedSegment::verified`: no record is shorter (a header and a key
/// byte, aligned), so no two records share a bit.
const VERIFIED_GRANULE: usize = 32;
const _: () = assert!(VERIFIED_GRANULE <= super::record::RECORD_HEADER_LEN + super::record::RECORD_ALIGN);

impl SealedSegment {
    /// Maps and validates the header and trailer of a sealed segment.
    pub(crate) fn open(vfs: &dyn Vfs, path: &Path, segment_id: u32, embedding_dim: usize) -> Result<SealedSegment> {
        let map = fs::map(vfs, path)?;
        let bytes = map.bytes();
        if bytes.len() as u64 > crate::limits::SEGMENT_FILE_BYTES_MAX {
            return Err(Error::corruption(path, 0, "segment file larger than SEGMENT_FILE_BYTES_MAX"));
        }
        let header = SegmentHeader::decode(bytes, path)?;
        if header.segment_id != segment_id {
            return Err(Error::corruption(
                path,
                0,
                format!("header says segment {} but the file name says {segment_id}", header.segment_id),
            ));
        }
        if header.embedding_dim as usize != embedding_dim {
            return Err(Error::corruption(
                path,
                0,
                format!("segment embedding dimension {} differs from the database's {embedding_dim}", header.embedding_dim),
            ));
        }
        let trailer = Trailer::decode(bytes, path)?;
        if trailer.version != header.version {
            return Err(Error::corruption(
                path,
                0,
                format!("segment header says format {} but its trailer says {}", header.version, trailer.version),
            ));
        }
        Ok(SealedSegment {
            path: path.to_path_buf(),
            segment_id,
            embedding_dim,
            trailer,
            map,
            embedded_puts: OnceLock::new(),
            dead: Arc::default(),
            verified: OnceLock::new(),
        })
    }

    /// This segment, its dead records marked in `dead` (the hot segment's, when sealing).
    pub(crate) fn sharing_dead_rows(self, dead: Arc<DeadRows>) -> SealedSegment {
        SealedSegment { dead, ..self }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    pub(crate) fn hint_entries(&self) -> Result<Vec<HintEntry<'_>>> {
        self.trailer.hint_entries(self.bytes(), &self.path)
    }

    /// Reads the record at `offset`, verifying its checksum when `verify_checksum`.
    pub(crate) fn record(&self, offset: u32, verify_checksum: bool) -> Result<RecordView> {
        let records = &self.bytes()[..self.trailer.records_end as usize];
        if (offset as usize) < SEGMENT_HEADER_LEN {
            return Err(Error::corruption(&self.path, offset as u64, "record offset inside the segment header"));
        }
        record::parse_with(records, offset as usize, self.embedding_dim, verify_checksum)
            .map_err(|e| Error::corruption(&self.path, offset as u64, e.detail().to_string()))
    }

    /// Reads the record at `offset`, verifying its checksum the first time this handle reads
    /// it (as cold rows are, `ColdFile::check_row_once`): the file is never written again, so
    /// a record that held once holds for the life of the map. `Db::verify` re-reads every
    /// byte regardless.
    pub(crate) fn record_checked_once(&self, offset: u32) -> Result<RecordView> {
        let granule = offset as usize / VERIFIED_GRANULE;
        let (word, bit) = (granule / 64, 1u64 << (granule % 64));
        let verified =
            self.verified.get_or_init(|| (0..(self.bytes().len() / VERIFIED_GRANULE).div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        let seen = verified.get(word).is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0);
        let view = self.record(offset, !seen)?;
        if !seen {
            if let Some(w) = verified.get(word) {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
        Ok(view)
    }

    /// This segment's puts with an embedding, in file order: hint-block positions and record
    /// offsets (see `embedded_puts`); the hint block's checksum and entries are verified on the
    /// first call.
    pub(crate) fn embedded_puts(&self) -> Result<&[EmbeddedPut]> {
        if let Some(positions) = self.embedded_puts.get() {
            return Ok(positions);
        }
        let mut positions = Vec::new();
        self.trailer.for_each_hint_entry(self.bytes(), &self.path, |at, entry| {
            if entry.kind == record::RecordKind::Put && entry.has_embedding {
                positions.push(EmbeddedPut { at, offset: entry.offset });
            }
        })?;
        Ok(self.embedded_puts.get_or_init(|| positions.into_boxed_slice()))
    }

    /// The hint entry at `at` (a position `embedded_puts` gave) and its record's embedding,
    /// read in place from the map. A hint entry whose embedding would lie outside the
    /// records is corruption (the hint block's checksum held, so a bug or a forged file).
    pub(crate) fn embedded_put(&self, at: u32) -> Result<(HintEntry<'_>, &[f32])> {
        let bytes = self.bytes();
        let entry = self.trailer.entry_at(bytes, at, &self.path)?;
        let range = record::embedding_range(entry.key.len(), self.embedding_dim);
        let start = entry.offset as usize;
        let values = bytes[..self.trailer.records_end as usize]
            .get(start + range.start..start + range.end)
            .ok_or_else(|| Error::corruption(&self.path, u64::from(entry.offset), "hint entry's embedding extends past the records"))?;
        // Aligned: the map starts page-aligned, records 8-aligned, embeddings 4-aligned in them.
        Ok((entry, bytemuck::cast_slice(values)))
    }

    pub(crate) fn advise_sequential(&self) {
        self.map.advise_sequential();
    }
}
