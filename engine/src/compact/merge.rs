//! The streaming merge of a compaction: the newest version of every key across the warm
//! versions and the cold segments it rewrites, ascending by key, cut into output runs (one
//! cold segment each) one run at a time — so a compaction holds the positions of one output
//! segment's rows, never of the whole output.
//!
//! Every row's source checksum is verified as it is merged (a damaged source stops the
//! compaction with `Corruption`; it is never re-checksummed into a valid-looking row).
//! Tombstones, expired rows and rows the compaction filter drops are left out.

use std::iter::Peekable;
use std::ops::Range;
use std::sync::Arc;

use super::plan::WarmVersion;
use crate::cold::segment::ColdFile;
use crate::cold::writer::{self, RowData, RowSource};
use crate::io::pace::Pace;
use crate::log::record::RecordKind;
use crate::log::segment::SealedSegment;
use crate::options::Decision;
use crate::record::{Backing, Record};
use crate::{Error, Result};

/// Rows merged between two checks of the stop signal.
const STOP_CHECK_ROWS: usize = 4096;

/// The retention rule of `Options::compaction_filter`.
pub(crate) type Filter<'f> = Option<&'f (dyn Fn(&Record) -> Decision + Send + Sync)>;

/// One output row: which source map its bytes are in, where, and its fields.
pub(crate) struct MergedRow {
    /// Index into `Merge::sources`.
    source: u32,
    key: Range<usize>,
    content: Range<usize>,
    embedding: Option<Range<usize>>,
    seq: u64,
    expires_at_ms: u64,
    crc: u32,
}

impl MergedRow {
    /// Bytes the row takes in a cold segment: key + content + the embedding slot + offsets,
    /// seq, expiry, checksum.
    fn stored_bytes(&self, dim: usize) -> u64 {
        (self.key.len() + self.content.len() + dim * 4 + 8 + 8 + 8 + 8 + 4) as u64
    }
}

/// The merge cursor.
pub(crate) struct Merge<'a> {
    /// The warm segments' maps, then the cold segments'.
    sources: Vec<&'a [u8]>,
    warm: &'a [Arc<SealedSegment>],
    cold: &'a [Arc<ColdFile>],
    versions: Peekable<std::vec::IntoIter<WarmVersion<'a>>>,
    /// The next cold row: (segment, row).
    cold_at: (usize, usize),
    now_ms: u64,
    filter: Filter<'a>,
    pace: Option<&'a Pace>,
    steps: usize,
}

impl<'a> Merge<'a> {
    pub(crate) fn new(
        warm: &'a [Arc<SealedSegment>],
        versions: Vec<WarmVersion<'a>>,
        cold: &'a [Arc<ColdFile>],
        now_ms: u64,
        filter: Filter<'a>,
        pace: Option<&'a Pace>,
    ) -> Merge<'a> {
        let sources = warm.iter().map(|s| s.bytes()).chain(cold.iter().map(|s| s.bytes())).collect();
        Merge { sources, warm, cold, versions: versions.into_iter().peekable(), cold_at: (0, 0), now_ms, filter, pace, steps: 0 }
    }

    fn peek_cold(&mut self) -> Option<(usize, usize)> {
        while let Some(segment) = self.cold.get(self.cold_at.0) {
            if self.cold_at.1 < segment.rows() {
                return Some(self.cold_at);
            }
            self.cold_at = (self.cold_at.0 + 1, 0);
        }
        None
    }

    /// The next row of the output, ascending by key; `None` at the end.
    pub(crate) fn next_row(&mut self) -> Result<Option<MergedRow>> {
        loop {
            self.steps += 1;
            if self.steps.is_multiple_of(STOP_CHECK_ROWS) {
                if let Some(pace) = self.pace {
                    pace.check_stop().map_err(Error::Io)?;
                }
            }
            let cold_next = self.peek_cold();
            let next_cold_key = cold_next.map(|(s, r)| self.cold[s].key(r));
            let take_warm = match (self.versions.peek(), next_cold_key) {
                (None, None) => return Ok(None),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(w), Some(c)) => w.key <= c,
            };
            if take_warm {
                let Some(version) = self.versions.next() else { return Ok(None) };
                if next_cold_key == Some(version.key) {
                    self.cold_at.1 += 1; // shadowed: warm versions are newer than every cold row
                }
                if let Some(row) = self.warm_row(&version)? {
                    return Ok(Some(row));
                }
            } else {
                let Some((s, r)) = cold_next else { return Ok(None) };
                self.cold_at.1 += 1;
                if let Some(row) = self.cold_row(s, r)? {
                    return Ok(Some(row));
                }
            }
        }
    }

    fn warm_row(&self, version: &WarmVersion<'a>) -> Result<Option<MergedRow>> {
        if version.kind != RecordKind::Put || (version.expires_at_ms != 0 && version.expires_at_ms <= self.now_ms) {
            return Ok(None);
        }
        let segment = &self.warm[version.segment as usize];
        let view = segment.record(version.offset, true)?;
        if view.seq != version.seq || &segment.bytes()[view.key.clone()] != version.key {
            return Err(Error::corruption(&segment.path, u64::from(version.offset), "hint entry disagrees with its record"));
        }
        if !filter_keeps(self.filter, || Record::new(Backing::Sealed(segment.clone()), &view))? {
            return Ok(None);
        }
        let bytes = segment.bytes();
        let embedding = view.embedding.clone().map(|e| &bytes[e]);
        let crc = writer::row_crc(&bytes[view.key.clone()], &bytes[view.content.clone()], embedding, view.seq, view.expires_at_ms);
        Ok(Some(MergedRow {
            source: version.segment,
            key: view.key,
            content: view.content,
            embedding: view.embedding,
            seq: view.seq,
            expires_at_ms: view.expires_at_ms,
            crc,
        }))
    }

    fn cold_row(&self, s: usize, r: usize) -> Result<Option<MergedRow>> {
        let file = &self.cold[s];
        if !file.is_live(r, self.now_ms) {
            return Ok(None);
        }
        file.check_row(r)?;
        if !filter_keeps(self.filter, || Record::from_cold(file, r))? {
            return Ok(None);
        }
        Ok(Some(MergedRow {
            source: (self.warm.len() + s) as u32,
            key: file.key_range(r),
            content: file.content_range(r),
            embedding: file.embedding_range(r),
            seq: file.seq(r),
            expires_at_ms: file.expires_at_ms(r),
            crc: file.row_crcs()[r],
        }))
    }

    fn key_of(&self, row: &MergedRow) -> &'a [u8] {
        &self.sources[row.source as usize][row.key.clone()]
    }
}

/// Asks the compaction filter about `record`; a panic in it fails the compaction.
fn filter_keeps(filter: Filter<'_>, record: impl FnOnce() -> Record) -> Result<bool> {
    let Some(filter) = filter else { return Ok(true) };
    let record = record();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filter(&record))) {
        Ok(decision) => Ok(decision == Decision::Keep),
        Err(_) => Err(Error::invalid("compaction_filter", "the filter panicked; the compaction changed nothing")),
    }
}

/// Cuts the merge into output runs of about `bytes_max` stored bytes each (at least one row
/// each), also cutting before the first row at or above each of `cuts` (the first keys of the
/// cold segments the compaction keeps, ascending), so that key ranges stay disjoint.
pub(crate) struct Runs<'a> {
    merge: Merge<'a>,
    cuts: Vec<&'a [u8]>,
    next_cut: usize,
    bytes_max: u64,
    dim: usize,
    /// A row that starts the next run (a cut lay before it).
    pending: Option<MergedRow>,
}

impl<'a> Runs<'a> {
    pub(crate) fn new(merge: Merge<'a>, cuts: Vec<&'a [u8]>, bytes_max: u64, dim: usize) -> Runs<'a> {
        debug_assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        Runs { merge, cuts, next_cut: 0, bytes_max, dim, pending: None }
    }

    /// Fills `run` (emptied first) with the next run's rows; `false` when the merge is done.
    pub(crate) fn next_run(&mut self, run: &mut Vec<MergedRow>) -> Result<bool> {
        run.clear();
        let mut bytes = 0u64;
        loop {
            let row = match self.pending.take() {
                Some(row) => row,
                None => {
                    let Some(row) = self.merge.next_row()? else { break };
                    let key = self.merge.key_of(&row);
                    let mut crossed = false;
                    while self.cuts.get(self.next_cut).is_some_and(|cut| key >= *cut) {
                        self.next_cut += 1;
                        crossed = true;
                    }
                    if crossed && !run.is_empty() {
                        self.pending = Some(row);
                        return Ok(true);
                    }
                    row
                }
            };
            debug_assert!(run.last().is_none_or(|last| self.merge.key_of(last) < self.merge.key_of(&row)), "rows ascend by key");
            bytes += row.stored_bytes(self.dim);
            run.push(row);
            if bytes >= self.bytes_max {
                return Ok(true);
            }
        }
        Ok(!run.is_empty())
    }

    /// A run's rows as the cold writer reads them.
    pub(crate) fn rows<'r>(&'r self, run: &'r [MergedRow]) -> RunRows<'r> {
        RunRows { sources: &self.merge.sources, rows: run }
    }
}

/// One run of merged rows: the rows of one output segment.
pub(crate) struct RunRows<'r> {
    sources: &'r [&'r [u8]],
    rows: &'r [MergedRow],
}

impl RowSource for RunRows<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn row(&self, index: usize) -> RowData<'_> {
        let r = &self.rows[index];
        let bytes = self.sources[r.source as usize];
        RowData {
            key: &bytes[r.key.clone()],
            content: &bytes[r.content.clone()],
            embedding: r.embedding.clone().map(|e| bytemuck::cast_slice(&bytes[e])),
            seq: r.seq,
            expires_at_ms: r.expires_at_ms,
        }
    }
    fn crc(&self, index: usize) -> u32 {
        self.rows[index].crc
    }
}
