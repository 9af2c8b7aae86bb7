//! Recovery of the active segment after open: keep every whole commit, cut an unsynced
//! tail, report damage to durable data as corruption (DESIGN.md contract 3). The rules are
//! written out in `format-spec/recovery.md`, "Scan rules".
//!
//! At the first record that does not parse, at offset `bad_at`:
//! - **Format v2** (group marks): if a valid group mark after `bad_at` records a durable end
//!   past `bad_at`, or a valid close mark follows, the bytes at `bad_at` had been fdatasynced
//!   before later data was written: that is damage, `Error::Corruption`. Otherwise the
//!   damage lies in bytes that were never known durable — the in-flight group of a power cut,
//!   whose pages may reach the disk in any order, with holes — and the file is cut back to
//!   the end of the last whole commit.
//! - **Format v1** (no group marks; files written before them): any valid later record makes
//!   it corruption; otherwise it is a torn tail and is cut. Such a file cannot tell an
//!   unsynced tail with holes from damage, so it refuses rather than guess.
//!
//! Both probes are linear in the file: v2 checks only mark-sized records (40 bytes at most
//! per 8-byte step), v1 checks at most `V1_PROBE_BUDGET_FACTOR` × the file's bytes of
//! record checksums, and says Corruption ("cannot rule out damage") past that.

use std::path::Path;

use super::header::SEGMENT_HEADER_LEN;
use super::record::{self, RecordKind, RecordView, RECORD_ALIGN};
use crate::{Error, Result};

/// The v1 probe may checksum at most this many times the file's bytes (plus one record's
/// worth) before it gives up and reports corruption: a crafted file with a record-like
/// header every 8 bytes would otherwise take quadratic time.
const V1_PROBE_BUDGET_FACTOR: usize = 4;

/// The outcome of scanning an active segment.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    /// Data records of whole commits, in file order (close and group marks excluded).
    pub(crate) records: Vec<RecordView>,
    /// End of the last whole commit (or close mark): the file is valid up to here.
    pub(crate) valid_len: usize,
    /// The newest commit's seq (or `seq_floor` when there is none).
    pub(crate) last_seq: u64,
}

/// Scans `bytes` (a whole active segment, header included). `seq_floor` is the highest seq
/// of the sealed segments before it: every commit here must be newer. `group_marks`: the
/// segment's format writes group marks (v2 and later).
pub(crate) fn scan_active(bytes: &[u8], path: &Path, embedding_dim: usize, seq_floor: u64, group_marks: bool) -> Result<ScannedSegment> {
    let mut records = Vec::new();
    let mut commit: Vec<RecordView> = Vec::new();
    let mut position = SEGMENT_HEADER_LEN;
    let mut valid_len = SEGMENT_HEADER_LEN;
    let mut last_seq = seq_floor;
    // Bounded: every iteration advances `position` by a record's length (>= 32 bytes).
    while position < bytes.len() {
        let view = match record::parse(bytes, position, embedding_dim) {
            Ok(view) => view,
            Err(error) => {
                let probe = Probe { bytes, path, embedding_dim, bad_at: position, last_seq, detail: error.detail() };
                if group_marks {
                    probe.reject_if_durable()?;
                } else {
                    probe.reject_if_followed_by_valid()?;
                }
                break; // an unsynced (or torn) tail
            }
        };
        check_order(&view, commit.first(), last_seq, group_marks, bytes, position)
            .map_err(|detail| Error::corruption(path, position as u64, detail))?;
        position += view.len;
        match view.kind {
            RecordKind::CloseMark => valid_len = position,
            RecordKind::GroupMark => {}
            RecordKind::Put | RecordKind::Delete => {
                let end = view.commit_end();
                let seq = view.seq;
                commit.push(view);
                if end {
                    records.append(&mut commit);
                    last_seq = seq;
                    valid_len = position;
                }
            }
        }
    }
    debug_assert!(valid_len <= bytes.len() && valid_len.is_multiple_of(RECORD_ALIGN));
    Ok(ScannedSegment { records, valid_len, last_seq })
}

/// Does `view`, at `position`, fit the commit structure? `open` is the first record of the
/// commit in progress, `last_seq` the last whole commit's seq.
fn check_order(
    view: &RecordView,
    open: Option<&RecordView>,
    last_seq: u64,
    group_marks: bool,
    bytes: &[u8],
    position: usize,
) -> std::result::Result<(), String> {
    let in_order = match (view.kind, open) {
        (RecordKind::CloseMark | RecordKind::GroupMark, Some(_)) => false,
        (RecordKind::CloseMark | RecordKind::GroupMark, None) => view.seq == last_seq,
        (_, None) => view.seq > last_seq,
        (_, Some(first)) => view.seq == first.seq,
    };
    if !in_order {
        return Err(format!("record seq {} out of order after seq {last_seq}", view.seq));
    }
    let is_mark = matches!(view.kind, RecordKind::GroupMark | RecordKind::CloseMark);
    match (view.kind, is_mark.then(|| record::mark_offset(bytes, view)).flatten(), group_marks) {
        (RecordKind::GroupMark, _, false) => Err("group mark in a format 1 segment".into()),
        (RecordKind::GroupMark, Some(durable_end), true) if durable_end <= SEGMENT_HEADER_LEN as u64 || durable_end > position as u64 => {
            Err(format!("group mark records durable end {durable_end}, outside 65..={position}"))
        }
        (RecordKind::CloseMark, at, true) if at != Some(position as u64) => {
            Err(format!("close mark does not record its offset {position}"))
        }
        (RecordKind::CloseMark, Some(_), false) => Err("close mark with content in a format 1 segment".into()),
        _ => Ok(()),
    }
}

/// The search for evidence after a record that does not parse.
struct Probe<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    embedding_dim: usize,
    bad_at: usize,
    /// The last whole commit before the damage.
    last_seq: u64,
    detail: &'a str,
}

impl Probe<'_> {
    /// Format v2: corruption when a later group mark says the bad bytes were durable, or a
    /// close mark follows (a clean close made the whole file durable). Only marks that fit
    /// where they stand count: a group mark whose durable end lies after the bad bytes and
    /// before the mark itself, a close mark recording its own offset, either with a seq newer
    /// than the last whole commit. Copies of marks stored in content (a database kept
    /// inside another) record other offsets and are ignored.
    fn reject_if_durable(&self) -> Result<()> {
        let mut probe = self.bad_at + RECORD_ALIGN;
        while probe + record::RECORD_HEADER_LEN <= self.bytes.len() {
            if let Some(kind) = record::mark_kind_at(self.bytes, probe) {
                if let Ok(view) = record::parse(self.bytes, probe, self.embedding_dim) {
                    let recorded = record::mark_offset(self.bytes, &view);
                    let fits = match kind {
                        RecordKind::CloseMark => recorded == Some(probe as u64),
                        _ => recorded.is_some_and(|end| end > self.bad_at as u64 && end <= probe as u64),
                    };
                    // The damaged record belongs to a commit after `last_seq` (or is the mark that
                    // precedes one): any real mark after it repeats a newer seq.
                    let durable = fits && view.seq > self.last_seq;
                    if durable {
                        return Err(self.corruption(format!(
                            "a {} at offset {probe} shows these bytes were durable, so this is damage, not an unsynced tail",
                            if kind == RecordKind::CloseMark { "close mark" } else { "group mark" }
                        )));
                    }
                }
            }
            probe += RECORD_ALIGN;
        }
        Ok(())
    }

    /// Format v1: a valid record of a later commit (seq newer than `last_seq`; a close mark
    /// after damage qualifies too) after the bad one is corruption.
    fn reject_if_followed_by_valid(&self) -> Result<()> {
        let mut budget = V1_PROBE_BUDGET_FACTOR * self.bytes.len() + crate::limits::MAX_COMMIT_BYTES.min(self.bytes.len());
        let mut probe = self.bad_at + RECORD_ALIGN;
        while probe + record::RECORD_HEADER_LEN <= self.bytes.len() {
            let Some(claimed) = record::claimed_len(self.bytes, probe, self.embedding_dim) else {
                probe += RECORD_ALIGN;
                continue;
            };
            if claimed > budget {
                return Err(
                    self.corruption(format!("too many record-like headers after it to rule out damage (probe stopped at offset {probe})"))
                );
            }
            budget -= claimed;
            if record::parse(self.bytes, probe, self.embedding_dim).is_ok_and(|view| view.seq > self.last_seq) {
                return Err(self.corruption(format!("a valid record follows at offset {probe}, so this is damage, not a torn tail")));
            }
            probe += RECORD_ALIGN;
        }
        Ok(())
    }

    fn corruption(&self, why: String) -> Error {
        Error::corruption(self.path, self.bad_at as u64, format!("{}; {why}", self.detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::header::SegmentHeader;
    use crate::log::record::{encode_one, RecordFields};

    /// A segment: header, one whole commit (seq 1), then `junk`.
    fn segment(version: u32, junk: &[u8]) -> Vec<u8> {
        let mut bytes = SegmentHeader { segment_id: 1, embedding_dim: 0, version }.encode().to_vec();
        let fields = RecordFields { kind: RecordKind::Put, key: b"k", content: b"v", embedding: None, expires_at_ms: 0 };
        bytes.extend_from_slice(encode_one(&fields, 1, true).bytes());
        bytes.extend_from_slice(junk);
        bytes
    }

    /// A crafted tail with a record-like header every 16 bytes, each claiming content up to
    /// the end of the file: checking every candidate's checksum would hash ~n²/32 bytes (hours for a few
    /// MiB). Both formats finish: v1 stops at its budget with Corruption, v2 checks only
    /// mark-sized records and cuts the tail.
    #[test]
    fn a_tail_of_record_like_headers_is_judged_in_linear_time() {
        let mut junk = vec![0u8; 8 << 20];
        for at in (8..junk.len() - 32).step_by(16) {
            junk[at + 4] = RecordKind::Put as u8;
            junk[at + 8..at + 12].copy_from_slice(&1u32.to_le_bytes());
            let fits = (junk.len() - at - 40).min(crate::limits::MAX_CONTENT_LEN) as u32;
            junk[at + 12..at + 16].copy_from_slice(&fits.to_le_bytes());
        }
        let v1 = segment(1, &junk);
        match scan_active(&v1, Path::new("seg"), 0, 0, false) {
            Err(Error::Corruption { detail, .. }) => assert!(detail.contains("too many record-like headers"), "{detail}"),
            other => panic!("expected the v1 probe to give up with Corruption, got {other:?}"),
        }
        let v2 = segment(2, &junk);
        let scanned = scan_active(&v2, Path::new("seg"), 0, 0, true).expect("no mark claims the tail durable: cut");
        assert_eq!((scanned.records.len(), scanned.last_seq), (1, 1));
    }

    /// A checksum-valid record with a seq beyond SEQ_MAX is corruption, not an overflow of
    /// `last_seq + 1` later.
    #[test]
    fn a_seq_beyond_seq_max_is_rejected() {
        let fields = RecordFields { kind: RecordKind::Put, key: b"k", content: b"", embedding: None, expires_at_ms: 0 };
        for seq in [crate::limits::SEQ_MAX + 1, u64::MAX] {
            let record = encode_one(&fields, seq, true);
            assert!(record::parse(record.bytes(), 0, 0).is_err(), "seq {seq}");
        }
        let record = encode_one(&fields, crate::limits::SEQ_MAX, true);
        assert_eq!(record::parse(record.bytes(), 0, 0).map(|v| v.seq), Ok(crate::limits::SEQ_MAX));
        let mut bytes = SegmentHeader { segment_id: 1, embedding_dim: 0, version: 2 }.encode().to_vec();
        bytes.extend_from_slice(encode_one(&fields, u64::MAX, true).bytes());
        let scanned = scan_active(&bytes, Path::new("seg"), 0, 0, true).expect("an unparseable last record is a tail");
        assert_eq!(scanned.last_seq, 0);
    }
}
