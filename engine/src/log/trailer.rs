//! What sealing appends to a segment: the hint block (one entry per record, so open can
//! rebuild the index without reading records) and the 64-byte trailer that locates it.
//! Layout: `format-spec/log-segment.md`, "Hint block" and "Trailer".

use std::path::Path;

use super::header::SEGMENT_HEADER_LEN;
use super::record::{RecordKind, RecordView, FLAG_HAS_EMBEDDING, RECORD_ALIGN};
use crate::format::{align_up, check_version, crc32, get_u32, get_u64, put_u32, put_u64};
use crate::limits;
use crate::{Error, Result};

pub(crate) const TRAILER_MAGIC: [u8; 8] = *b"STRATSEG";

// Trailer field offsets, chained.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const RESERVED_A_AT: usize = VERSION_AT + 4;
const RECORDS_END_AT: usize = RESERVED_A_AT + 4;
const HINT_LEN_AT: usize = RECORDS_END_AT + 8;
const RECORDS_COUNT_AT: usize = HINT_LEN_AT + 8;
const SEQ_MAX_AT: usize = RECORDS_COUNT_AT + 8;
const HINT_CRC_AT: usize = SEQ_MAX_AT + 8;
const RESERVED_B_AT: usize = HINT_CRC_AT + 4;
const CRC_AT: usize = RESERVED_B_AT + 8;
pub(crate) const TRAILER_LEN: usize = CRC_AT + 4;
const _: () = assert!(TRAILER_LEN == 64);

// Hint entry field offsets, chained.
const ENTRY_OFFSET_AT: usize = 0;
const ENTRY_KEY_LEN_AT: usize = ENTRY_OFFSET_AT + 4;
const ENTRY_CONTENT_LEN_AT: usize = ENTRY_KEY_LEN_AT + 4;
const ENTRY_KIND_AT: usize = ENTRY_CONTENT_LEN_AT + 4;
const ENTRY_FLAGS_AT: usize = ENTRY_KIND_AT + 1;
const ENTRY_RESERVED_AT: usize = ENTRY_FLAGS_AT + 1;
const ENTRY_SEQ_AT: usize = ENTRY_RESERVED_AT + 2;
const ENTRY_EXPIRES_AT: usize = ENTRY_SEQ_AT + 8;
const HINT_ENTRY_HEADER_LEN: usize = ENTRY_EXPIRES_AT + 8;
const _: () = assert!(HINT_ENTRY_HEADER_LEN == 32);

/// One record as the index needs it, without its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HintEntry<'a> {
    pub(crate) offset: u32,
    pub(crate) key: &'a [u8],
    pub(crate) kind: RecordKind,
    pub(crate) seq: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) content_len: u32,
    pub(crate) has_embedding: bool,
}

impl HintEntry<'_> {
    /// key + content + embedding bytes, for a segment of dimension `embedding_dim`.
    pub(crate) fn logical_bytes(&self, embedding_dim: usize) -> usize {
        self.key.len() + self.content_len as usize + if self.has_embedding { embedding_dim * 4 } else { 0 }
    }
}

/// Builds the hint block while records are appended to the active segment.
#[derive(Default)]
pub(crate) struct HintBuilder {
    bytes: Vec<u8>,
    records_count: u64,
    seq_max: u64,
}

impl HintBuilder {
    /// Adds the record `view`, whose key is `key`, found at segment offset `offset`.
    pub(crate) fn add(&mut self, offset: u32, key: &[u8], view: &RecordView) {
        debug_assert!(matches!(view.kind, RecordKind::Put | RecordKind::Delete), "marks have no hint entry");
        debug_assert_eq!(key.len(), view.key.len());
        let start = self.bytes.len();
        self.bytes.resize(start + align_up(HINT_ENTRY_HEADER_LEN + key.len(), 8), 0);
        let entry = &mut self.bytes[start..];
        put_u32(entry, ENTRY_OFFSET_AT, offset);
        put_u32(entry, ENTRY_KEY_LEN_AT, u32::try_from(key.len()).expect("key length bounded by MAX_KEY_LEN"));
        put_u32(entry, ENTRY_CONTENT_LEN_AT, u32::try_from(view.content.len()).expect("content length bounded by MAX_CONTENT_LEN"));
        entry[ENTRY_KIND_AT] = view.kind as u8;
        entry[ENTRY_FLAGS_AT] = view.flags & FLAG_HAS_EMBEDDING;
        put_u64(entry, ENTRY_SEQ_AT, view.seq);
        put_u64(entry, ENTRY_EXPIRES_AT, view.expires_at_ms);
        entry[HINT_ENTRY_HEADER_LEN..HINT_ENTRY_HEADER_LEN + key.len()].copy_from_slice(key);
        self.records_count += 1;
        self.seq_max = self.seq_max.max(view.seq);
    }

    /// The hint block followed by the trailer, for a segment whose records end at `records_end`.
    /// The hint block and trailer of a segment whose records end at `records_end`;
    /// `version` is the segment's (its header's) format version.
    pub(crate) fn finish(&self, records_end: u64, version: u32) -> Vec<u8> {
        debug_assert_eq!(records_end % RECORD_ALIGN as u64, 0);
        let mut out = Vec::with_capacity(self.bytes.len() + TRAILER_LEN);
        out.extend_from_slice(&self.bytes);
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&TRAILER_MAGIC);
        put_u32(&mut trailer, VERSION_AT, version);
        put_u64(&mut trailer, RECORDS_END_AT, records_end);
        put_u64(&mut trailer, HINT_LEN_AT, self.bytes.len() as u64);
        put_u64(&mut trailer, RECORDS_COUNT_AT, self.records_count);
        put_u64(&mut trailer, SEQ_MAX_AT, self.seq_max);
        put_u32(&mut trailer, HINT_CRC_AT, crc32(&self.bytes));
        let crc = crc32(&trailer[..CRC_AT]);
        put_u32(&mut trailer, CRC_AT, crc);
        out.extend_from_slice(&trailer);
        out
    }
}

/// The decoded trailer of a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trailer {
    /// The segment's format version; equal to its header's.
    pub(crate) version: u32,
    pub(crate) records_end: u64,
    pub(crate) hint_len: u64,
    pub(crate) records_count: u64,
    pub(crate) seq_max: u64,
    hint_crc: u32,
}

impl Trailer {
    /// Decodes and validates the trailer at the end of `file`.
    pub(crate) fn decode(file: &[u8], path: &Path) -> Result<Trailer> {
        if file.len() < SEGMENT_HEADER_LEN + TRAILER_LEN {
            return Err(Error::corruption(path, 0, "segment too short for a trailer"));
        }
        Self::decode_tail(&file[file.len() - TRAILER_LEN..], file.len() as u64, path)
    }

    /// Decodes and validates `bytes`, the last `TRAILER_LEN` bytes of a file of `file_len`
    /// bytes: magic, checksum, version, reserved bytes, and a layout that adds up to the size.
    pub(crate) fn decode_tail(bytes: &[u8], file_len: u64, path: &Path) -> Result<Trailer> {
        debug_assert_eq!(bytes.len(), TRAILER_LEN);
        let at = file_len.saturating_sub(TRAILER_LEN as u64) as usize;
        let fail = |field: usize, detail: &str| Error::corruption(path, (at + field) as u64, format!("segment trailer: {detail}"));
        if bytes[MAGIC_AT..MAGIC_AT + 8] != TRAILER_MAGIC {
            return Err(fail(MAGIC_AT, "bad magic"));
        }
        if crc32(&bytes[..CRC_AT]) != get_u32(bytes, CRC_AT) {
            return Err(fail(CRC_AT, "checksum mismatch"));
        }
        let version = get_u32(bytes, VERSION_AT);
        check_version(path, version)?;
        if get_u32(bytes, RESERVED_A_AT) != 0 || get_u64(bytes, RESERVED_B_AT) != 0 {
            return Err(fail(RESERVED_A_AT, "reserved bytes are not zero"));
        }
        let trailer = Trailer {
            version,
            records_end: get_u64(bytes, RECORDS_END_AT),
            hint_len: get_u64(bytes, HINT_LEN_AT),
            records_count: get_u64(bytes, RECORDS_COUNT_AT),
            seq_max: get_u64(bytes, SEQ_MAX_AT),
            hint_crc: get_u32(bytes, HINT_CRC_AT),
        };
        let laid_out = trailer.records_end.checked_add(trailer.hint_len).and_then(|n| n.checked_add(TRAILER_LEN as u64));
        if trailer.records_end < SEGMENT_HEADER_LEN as u64
            || !trailer.records_end.is_multiple_of(RECORD_ALIGN as u64)
            || laid_out != Some(file_len)
        {
            return Err(fail(RECORDS_END_AT, "records end and hint length do not match the file size"));
        }
        if trailer.seq_max > crate::limits::SEQ_MAX {
            return Err(fail(SEQ_MAX_AT, "seq_max beyond SEQ_MAX"));
        }
        Ok(trailer)
    }

    /// Verifies the hint block's checksum and decodes every entry, in file order.
    pub(crate) fn hint_entries<'f>(&self, file: &'f [u8], path: &Path) -> Result<Vec<HintEntry<'f>>> {
        let mut entries =
            Vec::with_capacity(usize::try_from(self.records_count).unwrap_or(0).min(self.hint_len as usize / HINT_ENTRY_HEADER_LEN));
        self.for_each_hint_entry(file, path, |_, entry| entries.push(entry))?;
        Ok(entries)
    }

    /// Verifies the hint block's checksum and hands every entry, in file order, to `each`
    /// with its position in the hint block (for `entry_at`).
    pub(crate) fn for_each_hint_entry<'f>(&self, file: &'f [u8], path: &Path, mut each: impl FnMut(u32, HintEntry<'f>)) -> Result<()> {
        let start = self.records_end as usize;
        let hint = &file[start..start + self.hint_len as usize];
        if crc32(hint) != self.hint_crc {
            return Err(Error::corruption(path, start as u64, "hint block checksum mismatch"));
        }
        let mut at = 0usize;
        let mut count = 0u64;
        let mut previous_offset: Option<u32> = None;
        while at < hint.len() {
            let (entry, entry_len) = self.decode_entry(hint, at).map_err(|detail| Error::corruption(path, (start + at) as u64, detail))?;
            if previous_offset.is_some_and(|p| p >= entry.offset) {
                return Err(Error::corruption(
                    path,
                    (start + at) as u64,
                    format!("hint entry: record offset {} out of order or out of range", entry.offset),
                ));
            }
            previous_offset = Some(entry.offset);
            each(u32::try_from(at).expect("hint blocks are smaller than a segment file"), entry);
            count += 1;
            at += entry_len;
        }
        if count != self.records_count {
            return Err(Error::corruption(path, start as u64, "hint block entry count does not match the trailer"));
        }
        Ok(())
    }

    /// The hint entry at position `at` of the hint block of `file` (a position
    /// `for_each_hint_entry` gave, so the block's checksum has been verified once), decoded
    /// and checked again as that pass did — except the order of offsets.
    pub(crate) fn entry_at<'f>(&self, file: &'f [u8], at: u32, path: &Path) -> Result<HintEntry<'f>> {
        let start = self.records_end as usize;
        let hint = &file[start..start + self.hint_len as usize];
        self.decode_entry(hint, at as usize)
            .map(|(entry, _)| entry)
            .map_err(|detail| Error::corruption(path, start as u64 + u64::from(at), detail))
    }

    /// Decodes and checks the entry at `at` of `hint`: the entry and its length (padding
    /// included), or what is wrong with it.
    fn decode_entry<'f>(&self, hint: &'f [u8], at: usize) -> std::result::Result<(HintEntry<'f>, usize), String> {
        let fail = |detail: String| format!("hint entry: {detail}");
        let Some(header) = hint.get(at..at + HINT_ENTRY_HEADER_LEN) else {
            return Err(fail("truncated".into()));
        };
        let key_len = get_u32(header, ENTRY_KEY_LEN_AT) as usize;
        let content_len = get_u32(header, ENTRY_CONTENT_LEN_AT) as usize;
        let offset = get_u32(header, ENTRY_OFFSET_AT);
        let kind = match header[ENTRY_KIND_AT] {
            1 => RecordKind::Put,
            2 => RecordKind::Delete,
            other => return Err(fail(format!("bad kind {other}"))),
        };
        if key_len == 0 || key_len > limits::MAX_KEY_LEN || content_len > limits::MAX_CONTENT_LEN {
            return Err(fail(format!("lengths beyond limits (key {key_len}, content {content_len})")));
        }
        if (offset as u64) < SEGMENT_HEADER_LEN as u64 || offset as u64 >= self.records_end {
            return Err(fail(format!("record offset {offset} out of order or out of range")));
        }
        let entry_len = align_up(HINT_ENTRY_HEADER_LEN + key_len, 8);
        let Some(key) = hint.get(at + HINT_ENTRY_HEADER_LEN..at + HINT_ENTRY_HEADER_LEN + key_len) else {
            return Err(fail("key extends past the hint block".into()));
        };
        let flags = header[ENTRY_FLAGS_AT];
        let seq = get_u64(header, ENTRY_SEQ_AT);
        if flags & !FLAG_HAS_EMBEDDING != 0 || header[ENTRY_RESERVED_AT..ENTRY_SEQ_AT] != [0, 0] || seq > self.seq_max {
            return Err(fail("bad flags, reserved bytes or seq".into()));
        }
        let entry = HintEntry {
            offset,
            key,
            kind,
            seq,
            expires_at_ms: get_u64(header, ENTRY_EXPIRES_AT),
            content_len: u32::try_from(content_len).expect("checked against MAX_CONTENT_LEN above"),
            has_embedding: flags & FLAG_HAS_EMBEDDING != 0,
        };
        Ok((entry, entry_len))
    }
}
