//! The 64-byte segment header at offset 0 of every log segment.

use crate::format::{check_version, crc32, get_u32, put_u32, FORMAT_VERSION_LATEST};
use crate::{Error, Result};
use std::path::Path;

pub(crate) const MAGIC: [u8; 8] = *b"STRATLOG";

// Field offsets, chained.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const HEADER_LEN_AT: usize = VERSION_AT + 4;
const SEGMENT_ID_AT: usize = HEADER_LEN_AT + 4;
const EMBEDDING_DIM_AT: usize = SEGMENT_ID_AT + 4;
const RESERVED_AT: usize = EMBEDDING_DIM_AT + 4;
const CRC_AT: usize = 60;
/// Size of the segment header; records start here.
pub(crate) const SEGMENT_HEADER_LEN: usize = CRC_AT + 4;

const _: () = assert!(RESERVED_AT <= CRC_AT);
const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(8));

/// The first segment format whose commit groups start with a group mark.
pub(crate) const VERSION_GROUP_MARKS: u32 = 2;

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment_id: u32,
    /// 0 = the database stores no embeddings.
    pub(crate) embedding_dim: u32,
    /// The segment's format version: 1 (no group marks) or 2. New segments are always
    /// `FORMAT_VERSION_LATEST`.
    pub(crate) version: u32,
}

impl SegmentHeader {
    /// The header of a new segment, in the latest format.
    pub(crate) fn latest(segment_id: u32, embedding_dim: u32) -> SegmentHeader {
        SegmentHeader { segment_id, embedding_dim, version: FORMAT_VERSION_LATEST }
    }

    /// Does this segment's format write a group mark before every commit group?
    pub(crate) fn has_group_marks(&self) -> bool {
        self.version >= VERSION_GROUP_MARKS
    }

    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        buf[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC);
        put_u32(&mut buf, VERSION_AT, self.version);
        put_u32(&mut buf, HEADER_LEN_AT, SEGMENT_HEADER_LEN as u32);
        put_u32(&mut buf, SEGMENT_ID_AT, self.segment_id);
        put_u32(&mut buf, EMBEDDING_DIM_AT, self.embedding_dim);
        let crc = crc32(&buf[..CRC_AT]);
        put_u32(&mut buf, CRC_AT, crc);
        buf
    }

    /// Decodes and validates a header; `path` is for error messages.
    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<SegmentHeader> {
        if bytes.len() < SEGMENT_HEADER_LEN {
            return Err(Error::corruption(path, 0, format!("segment header is {} bytes, need {SEGMENT_HEADER_LEN}", bytes.len())));
        }
        let bytes = &bytes[..SEGMENT_HEADER_LEN];
        if bytes[MAGIC_AT..MAGIC_AT + 8] != MAGIC {
            return Err(Error::corruption(path, 0, "bad magic: not a strata log segment"));
        }
        let stored = get_u32(bytes, CRC_AT);
        if crc32(&bytes[..CRC_AT]) != stored {
            return Err(Error::corruption(path, CRC_AT as u64, "segment header checksum mismatch"));
        }
        let version = get_u32(bytes, VERSION_AT);
        check_version(path, version)?;
        if get_u32(bytes, HEADER_LEN_AT) as usize != SEGMENT_HEADER_LEN {
            return Err(Error::corruption(path, HEADER_LEN_AT as u64, "unexpected segment header length"));
        }
        if bytes[RESERVED_AT..CRC_AT].iter().any(|&b| b != 0) {
            return Err(Error::corruption(path, RESERVED_AT as u64, "reserved header bytes are not zero"));
        }
        let header = SegmentHeader { segment_id: get_u32(bytes, SEGMENT_ID_AT), embedding_dim: get_u32(bytes, EMBEDDING_DIM_AT), version };
        if header.embedding_dim as usize > crate::limits::MAX_EMBEDDING_DIM {
            return Err(Error::corruption(path, EMBEDDING_DIM_AT as u64, "embedding dimension beyond MAX_EMBEDDING_DIM"));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_every_flipped_bit_is_caught() {
        let header = SegmentHeader::latest(7, 768);
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes, Path::new("x")).unwrap(), header);
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged, Path::new("x")).is_err(), "bit {bit}");
        }
    }
}
