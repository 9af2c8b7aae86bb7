//! The streaming merge of a compaction: the newest version of every key across the warm
//! versions and the cold segments it rewrites, ascending by key, cut into output runs (one
//! cold segment each) one run at a time — so a compaction holds the positions of one output
//! segment's rows, never of the whole output.
//!
//! Every row's source checksum is verified as it is merged (a damaged source stops the
//! compaction with `Corruption`; it is never re-checksummed into a valid-looking row).
//! Tombstones, expired rows and rows the compaction filter drops are left out.

use std::collections::VecDeque;
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
    warm: &'a [Arc<SealedSegment>],
    /// The cold segments it rewrites, from segment `cold_base` on: those before it were
    /// merged whole and released (`release_cold_before`), so that their maps, and the disk
    /// space of their files once deleted, are not held to the end of the compaction.
    cold: VecDeque<Arc<ColdFile>>,
    cold_base: usize,
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
        cold: Vec<Arc<ColdFile>>,
        now_ms: u64,
        filter: Filter<'a>,
        pace: Option<&'a Pace>,
    ) -> Merge<'a> {
        let cold = cold.into();
        Merge { warm, cold, cold_base: 0, versions: versions.into_iter().peekable(), cold_at: (0, 0), now_ms, filter, pace, steps: 0 }
    }

    /// Cold segment `s` of the rewritten ones (not released).
    fn cold(&self, s: usize) -> &Arc<ColdFile> {
        &self.cold[s - self.cold_base]
    }

    /// The rewritten cold segments from `s` on (none released).
    pub(crate) fn cold_from(&self, s: usize) -> impl Iterator<Item = &Arc<ColdFile>> {
        self.cold.iter().skip(s - self.cold_base)
    }

    /// Lets go of the rewritten cold segments before `s`, which the merge has passed.
    pub(crate) fn release_cold_before(&mut self, s: usize) {
        debug_assert!(s <= self.cold_at.0, "only segments the merge has passed are released");
        while self.cold_base < s {
            self.cold.pop_front();
            self.cold_base += 1;
        }
    }

    /// The map source `source` (`MergedRow::source`) indexes: a warm segment's, then a cold one's.
    fn source(&self, source: u32) -> &[u8] {
        let source = source as usize;
        match source.checked_sub(self.warm.len()) {
            None => self.warm[source].bytes(),
            Some(s) => self.cold(s).bytes(),
        }
    }

    fn peek_cold(&mut self) -> Option<(usize, usize)> {
        while let Some(segment) = self.cold.get(self.cold_at.0 - self.cold_base) {
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
            // Field by field: the key stays borrowed while the warm versions advance.
            let (cold, cold_base) = (&self.cold, self.cold_base);
            let next_cold_key = cold_next.map(|(s, r)| cold[s - cold_base].key(r));
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
        let file = self.cold(s);
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

    fn key_of(&self, row: &MergedRow) -> &[u8] {
        &self.source(row.source)[row.key.clone()]
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

/// What `Runs::next_run` produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// The next output run's rows.
    Run,
    /// A step ends here: every row below the first key of rewritten cold segment `.0` is in
    /// the runs so far, and none of that segment's or a later one's rows is (the rewritten
    /// segments before it are merged whole). The compaction publishes what it wrote so far
    /// in place of those segments.
    Step(usize),
    /// The merge is done.
    Done,
}

/// Cuts the merge into output runs of about `bytes_max` stored bytes each (at least one row
/// each), also cutting before the first row at or above each of `cuts` (the first keys of the
/// cold segments the compaction keeps, ascending), so that key ranges stay disjoint; and
/// into steps of at least `step_bytes` stored bytes, each ending before the first key of a
/// rewritten cold segment (`Next::Step`).
pub(crate) struct Runs<'a> {
    merge: Merge<'a>,
    cuts: Vec<&'a [u8]>,
    next_cut: usize,
    bytes_max: u64,
    dim: usize,
    /// The first key of every rewritten cold segment, ascending: where a step may end.
    step_keys: Vec<Vec<u8>>,
    /// The first of `step_keys` above every row emitted so far.
    next_step_key: usize,
    step_bytes: u64,
    bytes_in_step: u64,
    /// A step ended after the run just returned.
    step_due: Option<usize>,
    /// A row that starts the next run (a cut or a step lay before it).
    pending: Option<MergedRow>,
}

impl<'a> Runs<'a> {
    pub(crate) fn new(merge: Merge<'a>, cuts: Vec<&'a [u8]>, bytes_max: u64, step_bytes: u64, dim: usize) -> Runs<'a> {
        debug_assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        let step_keys: Vec<Vec<u8>> = merge.cold_from(0).map(|f| f.footer.min_key.clone()).collect();
        Runs {
            merge,
            cuts,
            next_cut: 0,
            bytes_max,
            dim,
            step_keys,
            next_step_key: 0,
            step_bytes,
            bytes_in_step: 0,
            step_due: None,
            pending: None,
        }
    }

    /// Fills `run` (emptied first) with the next run's rows (`Next::Run`), or says where a
    /// step ends (`run` left empty).
    pub(crate) fn next_run(&mut self, run: &mut Vec<MergedRow>) -> Result<Next> {
        run.clear();
        if let Some(step) = self.step_due.take() {
            return Ok(Next::Step(step));
        }
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
                    let step_ends = self.bytes_in_step >= self.step_bytes
                        && self.step_keys.get(self.next_step_key).is_some_and(|first| key >= first.as_slice());
                    if step_ends {
                        self.bytes_in_step = 0;
                        self.pending = Some(row);
                        if run.is_empty() {
                            return Ok(Next::Step(self.next_step_key));
                        }
                        self.step_due = Some(self.next_step_key);
                        return Ok(Next::Run);
                    }
                    if crossed && !run.is_empty() {
                        self.pending = Some(row);
                        return Ok(Next::Run);
                    }
                    row
                }
            };
            debug_assert!(run.last().is_none_or(|last| self.merge.key_of(last) < self.merge.key_of(&row)), "rows ascend by key");
            let key = self.merge.key_of(&row);
            while self.step_keys.get(self.next_step_key).is_some_and(|first| key >= first.as_slice()) {
                self.next_step_key += 1;
            }
            let stored = row.stored_bytes(self.dim);
            bytes += stored;
            self.bytes_in_step += stored;
            run.push(row);
            if bytes >= self.bytes_max {
                return Ok(Next::Run);
            }
        }
        Ok(if run.is_empty() { Next::Done } else { Next::Run })
    }

    /// The rewritten cold segments from `s` on: those a step keeps.
    pub(crate) fn rewritten_from(&self, s: usize) -> impl Iterator<Item = &Arc<ColdFile>> {
        self.merge.cold_from(s)
    }

    /// Lets go of the rewritten cold segments before `s` (a step replaced them).
    pub(crate) fn release_rewritten_before(&mut self, s: usize) {
        self.merge.release_cold_before(s);
    }

    /// A run's rows as the cold writer reads them.
    pub(crate) fn rows<'r>(&'r self, run: &'r [MergedRow]) -> RunRows<'r, 'a> {
        RunRows { merge: &self.merge, rows: run }
    }
}

/// One run of merged rows: the rows of one output segment.
pub(crate) struct RunRows<'r, 'a> {
    merge: &'r Merge<'a>,
    rows: &'r [MergedRow],
}

impl RowSource for RunRows<'_, '_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn row(&self, index: usize) -> RowData<'_> {
        let r = &self.rows[index];
        let bytes = self.merge.source(r.source);
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
