//! Byte layout of a cold segment file, `{id:016x}.cold` (`format-spec/cold-segment.md`):
//!
//! ```text
//! header (64 B) | buffer 0 | pad | buffer 1 | pad | ... | buffer 10 | pad | footer body | tail (24 B)
//! ```
//!
//! Every buffer starts at a multiple of 64 bytes (Arrow's recommended alignment) and the
//! gaps are zero. The footer body holds the column directory (offset, length, CRC of each
//! buffer), the counts and the min/max key; the tail holds the footer length, the format
//! version, the footer's CRC and a magic. All integers are little-endian.

use std::ops::Range;
use std::path::Path;

use crate::format::{crc32, get_u32, get_u64, put_u32, put_u64};
use crate::{Error, Result};

pub(crate) const HEADER_MAGIC: [u8; 8] = *b"STRATCOL";
pub(crate) const TAIL_MAGIC: [u8; 8] = *b"STRATCND";
/// Version of the cold segment layout this build writes (2: fences after the segment's
/// common key prefix). It reads every version from `COLD_FORMAT_VERSION_READ_MIN` on.
pub(crate) const COLD_FORMAT_VERSION: u32 = 2;
/// The oldest cold segment layout this build reads (1: fences of the keys' first 8 bytes).
pub(crate) const COLD_FORMAT_VERSION_READ_MIN: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const TAIL_LEN: usize = 24;
/// Alignment of every column buffer.
pub(crate) const BUFFER_ALIGN: usize = 64;
/// Rows per fence: the fence column holds `fence_of` the key of every `FENCE_ROWS`-th row.
pub(crate) const FENCE_ROWS: usize = 64;
/// Bytes of one column directory entry: offset u64, length u64, CRC u32, reserved u32.
pub(crate) const DIRECTORY_ENTRY_LEN: usize = 24;
/// Extension of cold segment files.
pub(crate) const COLD_EXTENSION: &str = "cold";

// Header fields.
const H_VERSION_AT: usize = 8;
const H_DIM_AT: usize = 12;
const H_ID_AT: usize = 16;
const H_ROWS_AT: usize = 24;
const H_CRC_AT: usize = 60;

/// The column buffers, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    /// `u64 × (rows + 1)`: Arrow LargeBinary offsets of the keys (start at 0).
    KeyOffsets,
    /// The keys back to back.
    KeyData,
    /// `u64 × (rows + 1)`: LargeBinary offsets of the contents.
    ContentOffsets,
    /// The contents back to back.
    ContentData,
    /// `ceil(rows / 8)` bytes, bit `i % 8` of byte `i / 8` set when row `i` has an embedding.
    EmbeddingValidity,
    /// `f32 × rows × dim`, row-major (Arrow FixedSizeList<f32, dim> child values); rows
    /// without an embedding hold zeros.
    EmbeddingValues,
    /// `u64 × rows`: the commit seq of each row.
    Seq,
    /// `u64 × rows`: expiry in ms since the Unix epoch, 0 = none.
    ExpiresAt,
    /// `u32 × rows`: CRC-32 of each row (key, content, embedding if any, seq, expiry).
    RowCrc,
    /// The blocked Bloom filter over the keys (`cold::filter`).
    Filter,
    /// `u64 × ceil(rows / FENCE_ROWS)`: big-endian value of the first 8 key bytes (zero
    /// padded) of rows 0, FENCE_ROWS, 2·FENCE_ROWS, ...
    Fences,
}

pub(crate) const COLUMN_COUNT: usize = 11;

impl Column {
    pub(crate) const ALL: [Column; COLUMN_COUNT] = [
        Column::KeyOffsets,
        Column::KeyData,
        Column::ContentOffsets,
        Column::ContentData,
        Column::EmbeddingValidity,
        Column::EmbeddingValues,
        Column::Seq,
        Column::ExpiresAt,
        Column::RowCrc,
        Column::Filter,
        Column::Fences,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Column::KeyOffsets => "key offsets",
            Column::KeyData => "key data",
            Column::ContentOffsets => "content offsets",
            Column::ContentData => "content data",
            Column::EmbeddingValidity => "embedding validity",
            Column::EmbeddingValues => "embedding values",
            Column::Seq => "seq",
            Column::ExpiresAt => "expires_at",
            Column::RowCrc => "row checksums",
            Column::Filter => "key filter",
            Column::Fences => "fences",
        }
    }

    /// The byte length this column must have, when it is fixed by the row count.
    pub(crate) fn fixed_len(self, rows: usize, dim: usize) -> Option<usize> {
        match self {
            Column::KeyOffsets | Column::ContentOffsets => Some(8 * (rows + 1)),
            Column::EmbeddingValidity => Some(rows.div_ceil(8)),
            Column::EmbeddingValues => Some(4 * rows * dim),
            Column::Seq | Column::ExpiresAt => Some(8 * rows),
            Column::RowCrc => Some(4 * rows),
            Column::Filter => Some(super::filter::filter_len(rows)),
            Column::Fences => Some(8 * rows.div_ceil(FENCE_ROWS)),
            Column::KeyData | Column::ContentData => None,
        }
    }

    /// Every column but the contents and embeddings is checksummed at open — the keys
    /// included, because lookups, scans and search trust key order before they reach a
    /// row checksum. Contents and embeddings are covered per row by `RowCrc` on every read
    /// and as a whole by `Db::verify`.
    pub(crate) fn checked_at_open(self) -> bool {
        !matches!(self, Column::ContentData | Column::EmbeddingValues)
    }
}

/// The big-endian value of the first 8 bytes of `key`, zero padded: comparing two of them
/// orders keys like comparing the keys (ties aside).
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

/// Bytes every key of a segment shares, which its fences skip: none in layout 1; in layout 2
/// the common prefix of the first and the last key (every key between two keys that share a
/// prefix shares it too). Skipping it keeps fences apart for keys like `user/0042/...`,
/// whose first 8 bytes tie over thousands of rows.
pub(crate) fn fence_skip(version: u32, min_key: &[u8], max_key: &[u8]) -> usize {
    if version < 2 {
        return 0;
    }
    min_key.iter().zip(max_key).take_while(|(a, b)| a == b).count()
}

/// The fence of `key` in a segment whose fences skip `skip` bytes: `key_prefix` of the bytes
/// after them. For keys that all share those bytes it orders like the keys (ties aside).
pub(crate) fn fence_of(key: &[u8], skip: usize) -> u64 {
    key_prefix(&key[skip.min(key.len())..])
}

pub(crate) fn header_encode(cold_id: u64, rows: u64, dim: u32) -> [u8; HEADER_LEN] {
    let mut buf = [0u8; HEADER_LEN];
    buf[..8].copy_from_slice(&HEADER_MAGIC);
    put_u32(&mut buf, H_VERSION_AT, COLD_FORMAT_VERSION);
    put_u32(&mut buf, H_DIM_AT, dim);
    put_u64(&mut buf, H_ID_AT, cold_id);
    put_u64(&mut buf, H_ROWS_AT, rows);
    let crc = crc32(&buf[..H_CRC_AT]);
    put_u32(&mut buf, H_CRC_AT, crc);
    buf
}

/// A decoded cold segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) cold_id: u64,
    pub(crate) rows: u64,
    pub(crate) dim: u32,
    /// The layout version (`COLD_FORMAT_VERSION_READ_MIN..=COLD_FORMAT_VERSION`).
    pub(crate) version: u32,
}

/// The decoded header.
pub(crate) fn header_decode(file: &[u8], path: &Path) -> Result<Header> {
    if file.len() < HEADER_LEN + TAIL_LEN {
        return Err(Error::corruption(path, 0, format!("cold segment of {} bytes is shorter than its header and tail", file.len())));
    }
    let buf = &file[..HEADER_LEN];
    if buf[..8] != HEADER_MAGIC {
        return Err(Error::corruption(path, 0, "bad magic: not a strata cold segment"));
    }
    if crc32(&buf[..H_CRC_AT]) != get_u32(buf, H_CRC_AT) {
        return Err(Error::corruption(path, H_CRC_AT as u64, "cold segment header checksum mismatch"));
    }
    let version = get_u32(buf, H_VERSION_AT);
    check_cold_version(path, H_VERSION_AT as u64, version)?;
    if buf[32..H_CRC_AT].iter().any(|&b| b != 0) {
        return Err(Error::corruption(path, 32, "reserved cold segment header bytes are not zero"));
    }
    Ok(Header { cold_id: get_u64(buf, H_ID_AT), rows: get_u64(buf, H_ROWS_AT), dim: get_u32(buf, H_DIM_AT), version })
}

fn check_cold_version(path: &Path, at: u64, found: u32) -> Result<()> {
    match found {
        COLD_FORMAT_VERSION_READ_MIN..=COLD_FORMAT_VERSION => Ok(()),
        0 => Err(Error::corruption(path, at, "cold segment format version 0 was never written by strata")),
        _ => Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            read_min: COLD_FORMAT_VERSION_READ_MIN,
            latest: COLD_FORMAT_VERSION,
        }),
    }
}

/// One column directory entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BufferEntry {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

impl BufferEntry {
    pub(crate) fn range(&self) -> Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// The footer: column directory, counts, key bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) columns: [BufferEntry; COLUMN_COUNT],
    pub(crate) rows: u64,
    pub(crate) seq_min: u64,
    pub(crate) seq_max: u64,
    /// Key + content + embedding bytes of all rows.
    pub(crate) logical_bytes: u64,
    pub(crate) min_key: Vec<u8>,
    pub(crate) max_key: Vec<u8>,
    /// The layout version in the tail (the writer writes `COLD_FORMAT_VERSION`).
    pub(crate) version: u32,
}

/// Fixed part of the footer body after the directory: rows, seq_min, seq_max,
/// logical_bytes (u64 each), min_key_len, max_key_len (u32 each).
const FOOTER_FIXED_LEN: usize = 4 * 8 + 2 * 4;

impl Footer {
    /// Footer body and tail, to be written at the end of the file.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let body_len = COLUMN_COUNT * DIRECTORY_ENTRY_LEN + FOOTER_FIXED_LEN + self.min_key.len() + self.max_key.len();
        let mut buf = vec![0u8; body_len + TAIL_LEN];
        for (i, entry) in self.columns.iter().enumerate() {
            let at = i * DIRECTORY_ENTRY_LEN;
            put_u64(&mut buf, at, entry.offset);
            put_u64(&mut buf, at + 8, entry.len);
            put_u32(&mut buf, at + 16, entry.crc);
        }
        let mut at = COLUMN_COUNT * DIRECTORY_ENTRY_LEN;
        for value in [self.rows, self.seq_min, self.seq_max, self.logical_bytes] {
            put_u64(&mut buf, at, value);
            at += 8;
        }
        put_u32(&mut buf, at, self.min_key.len() as u32);
        put_u32(&mut buf, at + 4, self.max_key.len() as u32);
        at += 8;
        buf[at..at + self.min_key.len()].copy_from_slice(&self.min_key);
        at += self.min_key.len();
        buf[at..at + self.max_key.len()].copy_from_slice(&self.max_key);
        at += self.max_key.len();
        debug_assert_eq!(at, body_len);
        put_u64(&mut buf, at, body_len as u64);
        put_u32(&mut buf, at + 8, self.version);
        let crc = crc32(&buf[..at + 12]);
        put_u32(&mut buf, at + 12, crc);
        buf[at + 16..at + 24].copy_from_slice(&TAIL_MAGIC);
        buf
    }

    /// Decodes the footer at the end of `file`; returns it and the offset where its body starts.
    pub(crate) fn decode(file: &[u8], path: &Path) -> Result<(Footer, usize)> {
        let len = file.len();
        if len < HEADER_LEN + TAIL_LEN {
            return Err(Error::corruption(path, 0, "cold segment shorter than its header and tail"));
        }
        let tail_at = len - TAIL_LEN;
        let tail = &file[tail_at..];
        if tail[16..24] != TAIL_MAGIC {
            return Err(Error::corruption(path, (tail_at + 16) as u64, "bad tail magic: the cold segment is truncated or damaged"));
        }
        let body_len = get_u64(tail, 0);
        let min_body = (COLUMN_COUNT * DIRECTORY_ENTRY_LEN + FOOTER_FIXED_LEN) as u64;
        if body_len < min_body || body_len > (tail_at - HEADER_LEN) as u64 {
            return Err(Error::corruption(path, tail_at as u64, format!("footer length {body_len} does not fit the file")));
        }
        let body_at = tail_at - body_len as usize;
        if crc32(&file[body_at..tail_at + 12]) != get_u32(tail, 12) {
            return Err(Error::corruption(path, body_at as u64, "cold segment footer checksum mismatch"));
        }
        let version = get_u32(tail, 8);
        check_cold_version(path, (tail_at + 8) as u64, version)?;
        let body = &file[body_at..tail_at];
        let mut footer = Footer { version, ..Footer::default() };
        for (i, entry) in footer.columns.iter_mut().enumerate() {
            let at = i * DIRECTORY_ENTRY_LEN;
            *entry = BufferEntry { offset: get_u64(body, at), len: get_u64(body, at + 8), crc: get_u32(body, at + 16) };
            if get_u32(body, at + 20) != 0 {
                return Err(Error::corruption(path, (body_at + at + 20) as u64, "reserved directory bytes are not zero"));
            }
        }
        let mut at = COLUMN_COUNT * DIRECTORY_ENTRY_LEN;
        footer.rows = get_u64(body, at);
        footer.seq_min = get_u64(body, at + 8);
        footer.seq_max = get_u64(body, at + 16);
        footer.logical_bytes = get_u64(body, at + 24);
        let min_len = get_u32(body, at + 32) as usize;
        let max_len = get_u32(body, at + 36) as usize;
        at += FOOTER_FIXED_LEN;
        if at + min_len + max_len != body.len() {
            return Err(Error::corruption(path, (body_at + at) as u64, "min/max key lengths do not match the footer length"));
        }
        footer.min_key = body[at..at + min_len].to_vec();
        footer.max_key = body[at + min_len..].to_vec();
        Ok((footer, body_at))
    }
}

/// `{id:016x}.cold`.
pub(crate) fn cold_file_name(cold_id: u64) -> String {
    format!("{cold_id:016x}.{COLD_EXTENSION}")
}

/// Parses `{id:016x}.cold`; any other name is not a cold segment.
pub(crate) fn parse_cold_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".cold")?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_rejects_damage() {
        let mut footer = Footer {
            rows: 3,
            seq_min: 4,
            seq_max: 9,
            logical_bytes: 77,
            min_key: b"a".to_vec(),
            max_key: b"zz".to_vec(),
            version: COLD_FORMAT_VERSION,
            ..Footer::default()
        };
        footer.columns[2] = BufferEntry { offset: 128, len: 40, crc: 7 };
        let mut file = vec![0u8; HEADER_LEN];
        file.extend_from_slice(&footer.encode());
        let (decoded, body_at) = Footer::decode(&file, Path::new("x")).unwrap();
        assert_eq!((decoded, body_at), (footer, HEADER_LEN));
        for i in HEADER_LEN..file.len() {
            let mut damaged = file.clone();
            damaged[i] ^= 0x10;
            assert!(Footer::decode(&damaged, Path::new("x")).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn key_prefix_orders_like_keys() {
        let keys: [&[u8]; 6] = [b"", b"\0", b"a", b"abcdefgh", b"abcdefgi", b"\xff"];
        for w in keys.windows(2) {
            assert!(key_prefix(w[0]) <= key_prefix(w[1]));
        }
        assert_eq!(parse_cold_file_name(&cold_file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_cold_file_name("0000000000000abc.log"), None);
    }

    #[test]
    fn fences_skip_the_common_prefix_from_layout_2_on() {
        assert_eq!(fence_skip(1, b"user/0042/a", b"user/0049/z"), 0);
        assert_eq!(fence_skip(2, b"user/0042/a", b"user/0049/z"), 8);
        assert_eq!(fence_skip(2, b"abc", b"abcd"), 3);
        assert_eq!(fence_skip(2, b"", b"zz"), 0);
        // Keys that share the skipped bytes keep their order in their fences.
        let keys: [&[u8]; 5] = [b"doc/0000", b"doc/00000001", b"doc/00000002", b"doc/00012345", b"doc/00099999"];
        let skip = fence_skip(2, keys[0], keys[4]);
        assert_eq!(skip, 7);
        for w in keys.windows(2) {
            assert!(fence_of(w[0], skip) < fence_of(w[1], skip), "{w:?}");
        }
        assert_eq!(key_prefix(keys[1]), key_prefix(keys[2]), "the first 8 bytes tie where the fences do not");
    }
}
