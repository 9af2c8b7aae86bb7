//! `Record`: one stored record as a reader gets it — zero-copy views into the segment map
//! (warm), the column buffers (cold) or the commit buffer (hot) it lives in, which it keeps alive.

use std::ops::Range;
use std::sync::Arc;

use crate::cold::segment::ColdFile;
use crate::io::aligned::AlignedBytes;
use crate::log::record::RecordView;
use crate::log::segment::SealedSegment;

/// What a record's bytes live in.
#[derive(Clone)]
pub(crate) enum Backing {
    Hot(Arc<AlignedBytes>),
    Sealed(Arc<SealedSegment>),
    Cold(Arc<ColdFile>),
}

impl Backing {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Backing::Hot(buffer) => buffer.bytes(),
            Backing::Sealed(segment) => segment.bytes(),
            Backing::Cold(segment) => segment.bytes(),
        }
    }
}

/// A record read from the database: key, content, optional embedding, commit seq.
///
/// It borrows nothing from the caller and keeps the mapping or buffer it points into
/// alive, so its slices stay valid for as long as it lives, across compaction too.
#[derive(Clone)]
pub struct Record {
    backing: Backing,
    key: Range<usize>,
    content: Range<usize>,
    embedding: Option<Range<usize>>,
    seq: u64,
    expires_at_ms: u64,
}

impl Record {
    /// Builds a record from a parsed view. The view's ranges lie inside `backing` and the
    /// embedding range starts 4-byte aligned (both established by `log::record::parse`).
    pub(crate) fn new(backing: Backing, view: &RecordView) -> Record {
        debug_assert!(view.content.end <= backing.bytes().len());
        debug_assert!(view.embedding.as_ref().is_none_or(|e| e.start % 4 == 0 && e.len() % 4 == 0));
        Record {
            backing,
            key: view.key.clone(),
            content: view.content.clone(),
            embedding: view.embedding.clone(),
            seq: view.seq,
            expires_at_ms: view.expires_at_ms,
        }
    }

    /// Row `row` of a cold segment, its slices pointing into the map.
    pub(crate) fn from_cold(segment: &Arc<ColdFile>, row: usize) -> Record {
        Record {
            key: segment.key_range(row),
            content: segment.content_range(row),
            embedding: segment.embedding_range(row),
            seq: segment.seq(row),
            expires_at_ms: segment.expires_at_ms(row),
            backing: Backing::Cold(segment.clone()),
        }
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.backing.bytes()[self.key.clone()]
    }

    /// The content, byte for byte as written.
    pub fn content(&self) -> &[u8] {
        &self.backing.bytes()[self.content.clone()]
    }

    /// The embedding, read in place (no copy); `None` when the record was written without one.
    pub fn embedding(&self) -> Option<&[f32]> {
        let range = self.embedding.clone()?;
        // Aligned by construction: buffers and maps start 8-aligned, records are 8-aligned
        // in them, and the embedding starts at a 4-aligned offset in its record.
        Some(bytemuck::cast_slice(&self.backing.bytes()[range]))
    }

    /// The commit sequence number of this version; never changes for a stored version.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When this version expires, in milliseconds since the Unix epoch; 0 = no TTL. A read
    /// never returns an expired record, so a non-zero value lies in the reader's future.
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("content_len", &self.content().len())
            .field("embedding_dim", &self.embedding().map(<[f32]>::len))
            .field("seq", &self.seq)
            .finish()
    }
}
