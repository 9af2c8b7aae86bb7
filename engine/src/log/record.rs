//! One log record: a 32-byte header, the key, the embedding (4-byte aligned so it can be
//! read in place as `&[f32]`), the content, zero padding to 8 bytes.
//! Layout and checksum coverage: `format-spec/log-segment.md`, "Record".

use std::ops::Range;

use crate::format::{align_up, get_u16, get_u32, get_u64, put_u32, put_u64};
use crate::io::aligned::AlignedVec;
use crate::limits;

// Header field offsets, chained.
const CRC_AT: usize = 0;
const KIND_AT: usize = CRC_AT + 4;
const FLAGS_AT: usize = KIND_AT + 1;
const RESERVED_AT: usize = FLAGS_AT + 1;
const KEY_LEN_AT: usize = RESERVED_AT + 2;
const CONTENT_LEN_AT: usize = KEY_LEN_AT + 4;
const SEQ_AT: usize = CONTENT_LEN_AT + 4;
const EXPIRES_AT: usize = SEQ_AT + 8;
/// Size of a record header; the key starts right after it.
pub(crate) const RECORD_HEADER_LEN: usize = EXPIRES_AT + 8;
/// Every record starts at a multiple of this within its segment.
pub(crate) const RECORD_ALIGN: usize = 8;

const _: () = assert!(RECORD_HEADER_LEN == 32);
const _: () = assert!(RECORD_HEADER_LEN.is_multiple_of(RECORD_ALIGN));

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A key with content and maybe an embedding.
    Put = 1,
    /// A tombstone: the key is deleted as of this record's seq.
    Delete = 2,
    /// Written by a clean close; carries no data. In format v2 its 8-byte content is its
    /// own offset in the segment (so a copy of one stored in content is never taken for a
    /// real one); in format v1 it has no content.
    CloseMark = 3,
    /// Written at the start of every commit group (segment format v2): its 8-byte content is
    /// the segment offset up to which the file was known durable (fdatasynced) when the
    /// group was written. Recovery uses it to tell an unsynced tail from durable data.
    GroupMark = 4,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::CloseMark),
            4 => Some(RecordKind::GroupMark),
            _ => None,
        }
    }
}

pub(crate) const FLAG_HAS_EMBEDDING: u8 = 1 << 0;
pub(crate) const FLAG_HAS_TTL: u8 = 1 << 1;
/// Set on the last record of a commit (a single write or a whole batch).
pub(crate) const FLAG_COMMIT_END: u8 = 1 << 2;
const FLAGS_KNOWN: u8 = FLAG_HAS_EMBEDDING | FLAG_HAS_TTL | FLAG_COMMIT_END;

/// The fields of a record to encode.
pub(crate) struct RecordFields<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) key: &'a [u8],
    pub(crate) content: &'a [u8],
    pub(crate) embedding: Option<&'a [f32]>,
    /// Milliseconds since the Unix epoch; 0 = no TTL.
    pub(crate) expires_at_ms: u64,
}

/// Byte offsets of the parts of a record body, relative to the record start.
struct BodyLayout {
    key: Range<usize>,
    embedding: Range<usize>,
    content: Range<usize>,
    total: usize,
}

fn body_layout(key_len: usize, embedding_bytes: usize, content_len: usize) -> BodyLayout {
    let key = RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len;
    let embedding_start = align_up(key.end, 4);
    let embedding = embedding_start..embedding_start + embedding_bytes;
    let content = embedding.end..embedding.end + content_len;
    let total = align_up(content.end, RECORD_ALIGN);
    BodyLayout { key, embedding, content, total }
}

/// Where the embedding of a record with a key of `key_len` bytes lies, relative to the
/// record's start (the layout of every record that has one).
pub(crate) fn embedding_range(key_len: usize, embedding_dim: usize) -> Range<usize> {
    body_layout(key_len, embedding_dim * 4, 0).embedding
}

/// Encoded size of a record, padding included.
pub(crate) fn encoded_len(key_len: usize, embedding_dim: usize, content_len: usize) -> usize {
    body_layout(key_len, embedding_dim * 4, content_len).total
}

/// Appends `fields` as a record with seq 0 and no checksum; `stamp` fills those in once
/// the commit's seq is known. Returns the record's view (seq 0, ranges relative to `buf`)
/// and the body checksum state for `stamp`.
pub(crate) fn append(buf: &mut AlignedVec, fields: &RecordFields<'_>) -> (RecordView, crc32fast::Hasher) {
    debug_assert_eq!(buf.len() % RECORD_ALIGN, 0, "records start 8-aligned");
    let embedding_bytes: &[u8] = fields.embedding.map_or(&[], |e| bytemuck::cast_slice(e));
    let layout = body_layout(fields.key.len(), embedding_bytes.len(), fields.content.len());
    let start = buf.len();
    let at = |r: &Range<usize>| start + r.start..start + r.end;
    let view = RecordView {
        kind: fields.kind,
        flags: 0,
        seq: 0,
        expires_at_ms: fields.expires_at_ms,
        key: at(&layout.key),
        embedding: fields.embedding.is_some().then(|| at(&layout.embedding)),
        content: at(&layout.content),
        len: layout.total,
    };
    // Every byte is written below (a pooled buffer holds an older commit's bytes): the
    // header (zero, then its fields), the key, the padding before the embedding, the
    // embedding, the content, the padding to the next record.
    debug_assert!(layout.key.start == RECORD_HEADER_LEN && layout.embedding.end == layout.content.start);
    let record = buf.extend_for_overwrite(layout.total);
    record[..RECORD_HEADER_LEN].fill(0);
    record[layout.key.end..layout.embedding.start].fill(0);
    record[layout.content.end..].fill(0);
    record[KIND_AT] = fields.kind as u8;
    let mut flags = 0;
    if fields.embedding.is_some() {
        flags |= FLAG_HAS_EMBEDDING;
    }
    if fields.expires_at_ms != 0 {
        flags |= FLAG_HAS_TTL;
    }
    record[FLAGS_AT] = flags;
    let view = RecordView { flags, ..view };
    put_u32(record, KEY_LEN_AT, u32::try_from(fields.key.len()).expect("key length checked against MAX_KEY_LEN"));
    put_u32(record, CONTENT_LEN_AT, u32::try_from(fields.content.len()).expect("content length checked against MAX_CONTENT_LEN"));
    put_u64(record, EXPIRES_AT, fields.expires_at_ms);
    record[layout.key].copy_from_slice(fields.key);
    record[layout.embedding].copy_from_slice(embedding_bytes);
    record[layout.content].copy_from_slice(fields.content);
    let mut body = crc32fast::Hasher::new();
    body.update(&record[RECORD_HEADER_LEN..]);
    (view, body)
}

/// Writes the commit's `seq` (and the commit-end flag) into an encoded record and its
/// view, then its checksum, which covers every byte of the record after the checksum field.
pub(crate) fn stamp(record: &mut [u8], view: &mut RecordView, seq: u64, commit_end: bool, body: &crc32fast::Hasher) {
    debug_assert_eq!(record.len(), view.len);
    put_u64(record, SEQ_AT, seq);
    view.seq = seq;
    if commit_end {
        record[FLAGS_AT] |= FLAG_COMMIT_END;
        view.flags |= FLAG_COMMIT_END;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record[KIND_AT..RECORD_HEADER_LEN]);
    crc.combine(body);
    put_u32(record, CRC_AT, crc.finalize());
}

/// Encodes a whole record (seq and checksum included) into a fresh buffer.
pub(crate) fn encode_one(fields: &RecordFields<'_>, seq: u64, commit_end: bool) -> AlignedVec {
    let mut buf = AlignedVec::with_capacity(RECORD_HEADER_LEN);
    let (mut view, body) = append(&mut buf, fields);
    stamp(buf.bytes_mut(), &mut view, seq, commit_end, &body);
    buf
}

/// Content length of a group mark and of a format 2 close mark: one little-endian u64, an
/// offset in the segment (the durable end; the close mark's own offset).
pub(crate) const MARK_CONTENT_LEN: usize = 8;
/// Encoded size of a group mark (header + 8 bytes of content).
pub(crate) const GROUP_MARK_LEN: usize = RECORD_HEADER_LEN + MARK_CONTENT_LEN;
const _: () = assert!(GROUP_MARK_LEN.is_multiple_of(RECORD_ALIGN));

/// Encodes a close mark repeating `last_seq`. `at`: its offset in the segment, recorded as
/// its content in format v2; `None` for a format v1 segment (no content).
pub(crate) fn encode_close_mark(last_seq: u64, at: Option<u64>) -> AlignedVec {
    let content = at.map(u64::to_le_bytes);
    let fields = RecordFields {
        kind: RecordKind::CloseMark,
        key: &[],
        content: content.as_ref().map_or(&[][..], |c| &c[..]),
        embedding: None,
        expires_at_ms: 0,
    };
    encode_one(&fields, last_seq, true)
}

/// Encodes a group mark: `last_seq` is the seq of the last commit before the group (the
/// mark carries no data of its own), `durable_end` the offset known durable.
pub(crate) fn encode_group_mark(last_seq: u64, durable_end: u64) -> AlignedVec {
    let content = durable_end.to_le_bytes();
    let fields = RecordFields { kind: RecordKind::GroupMark, key: &[], content: &content, embedding: None, expires_at_ms: 0 };
    let buf = encode_one(&fields, last_seq, false);
    debug_assert_eq!(buf.len(), GROUP_MARK_LEN);
    buf
}

/// The offset a parsed mark records as its content: a group mark's durable end, a format v2
/// close mark's own offset. `None` for a mark without content (a format v1 close mark).
pub(crate) fn mark_offset(bytes: &[u8], view: &RecordView) -> Option<u64> {
    debug_assert!(matches!(view.kind, RecordKind::GroupMark | RecordKind::CloseMark));
    (view.content.len() == MARK_CONTENT_LEN).then(|| get_u64(bytes, view.content.start))
}

/// A decoded, checksum-verified record: header fields and absolute byte ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordView {
    pub(crate) kind: RecordKind,
    pub(crate) flags: u8,
    pub(crate) seq: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) key: Range<usize>,
    pub(crate) embedding: Option<Range<usize>>,
    pub(crate) content: Range<usize>,
    /// Encoded length, padding included: the next record starts at `start + len`.
    pub(crate) len: usize,
}

impl RecordView {
    /// Where the record starts (its header), in the same coordinates as the ranges.
    pub(crate) fn start(&self) -> usize {
        self.key.start - RECORD_HEADER_LEN
    }

    pub(crate) fn commit_end(&self) -> bool {
        self.flags & FLAG_COMMIT_END != 0
    }

    /// key + content + embedding bytes.
    pub(crate) fn logical_bytes(&self) -> usize {
        self.key.len() + self.content.len() + self.embedding.as_ref().map_or(0, |e| e.len())
    }
}

/// Why bytes at an offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The record would extend past the end of the bytes (a torn tail, or a bad length).
    Truncated(String),
    /// The bytes are there but wrong (checksum, kind, flags, lengths).
    Invalid(String),
}

impl ParseError {
    pub(crate) fn detail(&self) -> &str {
        match self {
            ParseError::Truncated(d) | ParseError::Invalid(d) => d,
        }
    }
}

/// Decodes and verifies the record starting at `start` in `bytes`. Never panics, whatever
/// the bytes; `embedding_dim` is the segment's (0 = none).
pub(crate) fn parse(bytes: &[u8], start: usize, embedding_dim: usize) -> Result<RecordView, ParseError> {
    parse_with(bytes, start, embedding_dim, true)
}

/// As [`parse`], without the checksum: only for bytes this process encoded itself (the hot
/// tier's buffers), where the checksum is still checked in debug builds.
pub(crate) fn parse_trusted(bytes: &[u8], start: usize, embedding_dim: usize) -> Result<RecordView, ParseError> {
    parse_with(bytes, start, embedding_dim, cfg!(debug_assertions))
}

pub(crate) fn parse_with(bytes: &[u8], start: usize, embedding_dim: usize, verify: bool) -> Result<RecordView, ParseError> {
    let (header, layout) = decode_header(bytes, start, embedding_dim)?;
    let Some(record) = bytes.get(start..).and_then(|rest| rest.get(..layout.total)) else {
        return Err(ParseError::Truncated(format!("record of {} bytes extends past the end of the segment", layout.total)));
    };
    if verify {
        let stored = get_u32(record, CRC_AT);
        let actual = crate::format::crc32(&record[KIND_AT..]);
        if stored != actual {
            return Err(ParseError::Invalid(format!("record checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")));
        }
    }
    let HeaderFields { kind, flags, key_len, content_len, has_embedding, seq, expires_at_ms } = header;
    if seq > limits::SEQ_MAX {
        return Err(ParseError::Invalid(format!("record seq {seq} beyond SEQ_MAX")));
    }
    let shape_ok = match kind {
        RecordKind::Put => key_len > 0,
        RecordKind::Delete => key_len > 0 && content_len == 0 && !has_embedding && expires_at_ms == 0,
        RecordKind::CloseMark => {
            key_len == 0 && (content_len == 0 || content_len == MARK_CONTENT_LEN) && !has_embedding && expires_at_ms == 0
        }
        RecordKind::GroupMark => key_len == 0 && content_len == MARK_CONTENT_LEN && !has_embedding && expires_at_ms == 0 && flags == 0,
    };
    if !shape_ok || (flags & FLAG_HAS_TTL != 0) != (expires_at_ms != 0) {
        return Err(ParseError::Invalid(format!("record fields are inconsistent for a {kind:?} record")));
    }
    let at = |r: Range<usize>| start + r.start..start + r.end;
    Ok(RecordView {
        kind,
        flags,
        seq,
        expires_at_ms,
        key: at(layout.key),
        embedding: has_embedding.then(|| at(layout.embedding)),
        content: at(layout.content),
        len: layout.total,
    })
}

/// The fields of a record header, before its checksum is known to hold.
struct HeaderFields {
    kind: RecordKind,
    flags: u8,
    key_len: usize,
    content_len: usize,
    has_embedding: bool,
    seq: u64,
    expires_at_ms: u64,
}

/// Decodes the header at `start` and the body layout it claims: every check that needs no
/// checksum (alignment, kind, flags, reserved bytes, lengths within limits).
fn decode_header(bytes: &[u8], start: usize, embedding_dim: usize) -> Result<(HeaderFields, BodyLayout), ParseError> {
    if !start.is_multiple_of(RECORD_ALIGN) {
        return Err(ParseError::Invalid(format!("record offset {start} is not {RECORD_ALIGN}-aligned")));
    }
    let Some(header) = bytes.get(start..).and_then(|rest| rest.get(..RECORD_HEADER_LEN)) else {
        return Err(ParseError::Truncated("record header extends past the end of the segment".into()));
    };
    let kind =
        RecordKind::from_byte(header[KIND_AT]).ok_or_else(|| ParseError::Invalid(format!("unknown record kind {}", header[KIND_AT])))?;
    let flags = header[FLAGS_AT];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(ParseError::Invalid(format!("unknown record flags {flags:#04x}")));
    }
    if get_u16(header, RESERVED_AT) != 0 {
        return Err(ParseError::Invalid("reserved record bytes are not zero".into()));
    }
    let key_len = get_u32(header, KEY_LEN_AT) as usize;
    let content_len = get_u32(header, CONTENT_LEN_AT) as usize;
    if key_len > limits::MAX_KEY_LEN || content_len > limits::MAX_CONTENT_LEN {
        return Err(ParseError::Invalid(format!("record lengths beyond limits (key {key_len}, content {content_len})")));
    }
    let has_embedding = flags & FLAG_HAS_EMBEDDING != 0;
    if has_embedding && embedding_dim == 0 {
        return Err(ParseError::Invalid("record has an embedding in a segment without a dimension".into()));
    }
    let embedding_bytes = if has_embedding { embedding_dim * 4 } else { 0 };
    let layout = body_layout(key_len, embedding_bytes, content_len);
    let fields = HeaderFields {
        kind,
        flags,
        key_len,
        content_len,
        has_embedding,
        seq: get_u64(header, SEQ_AT),
        expires_at_ms: get_u64(header, EXPIRES_AT),
    };
    Ok((fields, layout))
}

/// The length a record-like header at `start` claims, if it is plausible and fits in
/// `bytes` (its checksum not checked): what a probe would have to checksum.
pub(crate) fn claimed_len(bytes: &[u8], start: usize, embedding_dim: usize) -> Option<usize> {
    let (_, layout) = decode_header(bytes, start, embedding_dim).ok()?;
    (start + layout.total <= bytes.len()).then_some(layout.total)
}

/// The kind of the close mark or group mark whose header plausibly starts at `start`
/// (kind byte and lengths only; the caller parses it to check its checksum).
pub(crate) fn mark_kind_at(bytes: &[u8], start: usize) -> Option<RecordKind> {
    let header = bytes.get(start..)?.get(..RECORD_HEADER_LEN)?;
    let kind = RecordKind::from_byte(header[KIND_AT])?;
    let content_len = get_u32(header, CONTENT_LEN_AT) as usize;
    let plausible = get_u32(header, KEY_LEN_AT) == 0
        && match kind {
            RecordKind::CloseMark => content_len == 0 || content_len == MARK_CONTENT_LEN,
            RecordKind::GroupMark => content_len == MARK_CONTENT_LEN,
            RecordKind::Put | RecordKind::Delete => false,
        };
    plausible.then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(embedding: Option<&[f32]>) -> AlignedVec {
        let fields = RecordFields { kind: RecordKind::Put, key: b"key-1", content: b"hello content", embedding, expires_at_ms: 0 };
        encode_one(&fields, 42, true)
    }

    #[test]
    fn record_round_trips_with_aligned_embedding() {
        let vector = [1.0f32, -2.5, 3.25];
        let buf = sample(Some(&vector));
        let view = parse(buf.bytes(), 0, 3).unwrap();
        assert_eq!(view.kind, RecordKind::Put);
        assert_eq!(view.seq, 42);
        assert!(view.commit_end());
        assert_eq!(&buf.bytes()[view.key.clone()], b"key-1");
        assert_eq!(&buf.bytes()[view.content.clone()], b"hello content");
        let emb = view.embedding.clone().unwrap();
        assert_eq!(emb.start % 4, 0);
        assert_eq!(bytemuck::cast_slice::<u8, f32>(&buf.bytes()[emb]), &vector);
        assert_eq!(view.len, buf.len());
        assert_eq!(view.len % RECORD_ALIGN, 0);
        let mut fresh = AlignedVec::default();
        let (mut appended, body) = append(
            &mut fresh,
            &RecordFields { kind: RecordKind::Put, key: b"key-1", content: b"hello content", embedding: Some(&vector), expires_at_ms: 0 },
        );
        stamp(fresh.bytes_mut(), &mut appended, 42, true, &body);
        assert_eq!(appended, view, "the view built while encoding equals the parsed one");
    }

    /// `append` writes every byte of a record: into a reused map still holding an older
    /// commit's bytes (all 0xFF here) it encodes exactly what it encodes into a fresh
    /// buffer, for keys of every length mod 8 (the padding before the embedding and after
    /// the content), with and without embedding and TTL.
    #[test]
    fn a_record_appended_over_old_bytes_equals_one_appended_to_fresh_zeros() {
        use crate::io::aligned::{BufferPool, MAPPED_BUFFER_BYTES};
        let pool = std::sync::Arc::new(BufferPool::default());
        let mut old = pool.buffer(MAPPED_BUFFER_BYTES);
        old.extend_zeroed(MAPPED_BUFFER_BYTES).fill(0xFF);
        drop(old);
        let mut reused = pool.buffer(MAPPED_BUFFER_BYTES);
        let mut fresh = AlignedVec::default();
        let vector = [1.0f32, -2.5, 3.25];
        for key_len in 1..=9 {
            for (embedding, expires_at_ms, content_len) in [(Some(&vector[..]), 0, 13), (None, 7, 0), (Some(&vector[..]), 99, 1)] {
                let key = vec![b'k'; key_len];
                let content = vec![b'c'; content_len];
                let fields = RecordFields { kind: RecordKind::Put, key: &key, content: &content, embedding, expires_at_ms };
                let (mut a, body_a) = append(&mut reused, &fields);
                let (mut b, body_b) = append(&mut fresh, &fields);
                let (ra, rb) = (a.start()..a.start() + a.len, b.start()..b.start() + b.len);
                stamp(&mut reused.bytes_mut()[ra], &mut a, 5, true, &body_a);
                stamp(&mut fresh.bytes_mut()[rb], &mut b, 5, true, &body_b);
            }
        }
        assert_eq!(reused.bytes(), fresh.bytes());
        assert!(parse(reused.bytes(), 0, 3).is_ok());
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_an_error() {
        let buf = sample(Some(&[0.5, 0.25]));
        let bytes = buf.bytes().to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(parse(&damaged, 0, 2).is_err(), "bit {bit} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(matches!(parse(&bytes[..cut], 0, 2), Err(ParseError::Truncated(_))), "cut {cut}");
        }
    }
}
