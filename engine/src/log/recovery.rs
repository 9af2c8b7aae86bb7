//! Recovery of the active segment after open: keep every whole commit, cut a torn tail,
//! report anything else as corruption (protocol-aware recovery, DESIGN.md contract 3).
//!
//! The rules, in order, at the first record that does not parse:
//! 1. If any valid record follows it anywhere in the file, the damage is not a tear (a
//!    torn write only ever loses the tail): `Error::Corruption` at its offset.
//! 2. Otherwise it is a torn tail: the file is cut back to the end of the last whole
//!    commit (a commit is whole when its record with the commit-end flag is valid).
//!
//! A clean close appends a close mark, so after a clean close a damaged last record is
//! followed by a valid record (the mark) and rule 1 reports it.

use std::path::Path;

use super::header::SEGMENT_HEADER_LEN;
use super::record::{self, RecordKind, RecordView, RECORD_ALIGN};
use crate::{Error, Result};

/// The outcome of scanning an active segment.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    /// Data records of whole commits, in file order (close marks excluded).
    pub(crate) records: Vec<RecordView>,
    /// End of the last whole commit (or close mark): the file is valid up to here.
    pub(crate) valid_len: usize,
    /// The newest commit's seq (or `seq_floor` when there is none).
    pub(crate) last_seq: u64,
}

/// Scans `bytes` (a whole active segment, header included). `seq_floor` is the highest seq
/// of the sealed segments before it: every commit here must be newer.
pub(crate) fn scan_active(bytes: &[u8], path: &Path, embedding_dim: usize, seq_floor: u64) -> Result<ScannedSegment> {
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
                reject_if_followed_by_valid(bytes, position, last_seq, path, embedding_dim, error.detail())?;
                break; // a torn tail
            }
        };
        let in_order = match (view.kind, commit.first()) {
            (RecordKind::CloseMark, None) => view.seq == last_seq,
            (RecordKind::CloseMark, Some(_)) => false,
            (_, None) => view.seq > last_seq,
            (_, Some(first)) => view.seq == first.seq,
        };
        if !in_order {
            return Err(Error::corruption(path, position as u64, format!("record seq {} out of order after seq {last_seq}", view.seq)));
        }
        position += view.len;
        if view.kind == RecordKind::CloseMark {
            valid_len = position;
            continue;
        }
        let end = view.commit_end();
        let seq = view.seq;
        commit.push(view);
        if end {
            records.append(&mut commit);
            last_seq = seq;
            valid_len = position;
        }
    }
    Ok(ScannedSegment { records, valid_len, last_seq })
}

/// Rule 1: a bad record at `bad_at` followed by a valid record of a later commit (seq newer
/// than `last_seq`, the last whole commit; a close mark after damage qualifies too) is
/// corruption. Older-seq record images are ignored: they can only be content that happens
/// to hold a copy of records (e.g. a stored strata file), not commits written after the damage.
fn reject_if_followed_by_valid(bytes: &[u8], bad_at: usize, last_seq: u64, path: &Path, embedding_dim: usize, detail: &str) -> Result<()> {
    let mut probe = bad_at + RECORD_ALIGN;
    while probe + record::RECORD_HEADER_LEN <= bytes.len() {
        if record::parse(bytes, probe, embedding_dim).is_ok_and(|view| view.seq > last_seq) {
            return Err(Error::corruption(
                path,
                bad_at as u64,
                format!("{detail}; a valid record follows at offset {probe}, so this is damage, not a torn tail"),
            ));
        }
        probe += RECORD_ALIGN;
    }
    Ok(())
}
