//! `Db::compact`: seals the active segment, moves every sealed warm segment into the cold tier and merges the cold
//! tier, keeping only the newest version of each key and dropping tombstones and expired
//! records (every older version is in the merge, so nothing they shadow survives).
//!
//! Steps, each crash-safe:
//! 1. merge the inputs in memory (positions only) and check every source checksum — a
//!    damaged source stops compaction with `Corruption`, it is never re-checksummed;
//! 2. write the new cold segments (fdatasynced; orphans until a manifest lists them);
//! 3. publish: write the new `MANIFEST` (atomic rename), then, under the writer lock, a
//!    segment table with the new cold set and the compacted log segments marked retired;
//! 4. retire (`Shared::finish_retirements`): once no reader can need them, drop the index
//!    entries of the compacted segments, then the segments, then delete the old files.
//!
//! A crash before step 3's rename leaves the old manifest: the new files are orphans,
//! removed at open. A crash after it leaves old files the manifest no longer lists (or log
//! segments below its `log_floor`): orphans too. Nothing is lost, nothing duplicated.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cold::layout::cold_file_name;
use crate::cold::segment::ColdFile;
use crate::cold::set::ColdSet;
use crate::cold::writer::{self, RowData, RowSource};
use crate::db::Shared;
use crate::io::fs;
use crate::io::pace::Pace;
use crate::log::record::RecordKind;
use crate::log::segment::SealedSegment;
use crate::manifest::{ColdEntry, Manifest};
use crate::options::Decision;
use crate::record::{Backing, Record};
use crate::{Error, Result};

/// A compaction whose old segments are waiting for readers to let go of them.
pub(crate) struct Retirement {
    /// The cold set the compaction replaced: while a table holding it is alive, a reader
    /// may rely on the index entries of the compacted log segments.
    pub(crate) replaced_cold: Arc<ColdSet>,
    /// Newest seq in the compacted log segments: a reader pinned below it may need a
    /// version compaction dropped, which only the index entries still reach.
    pub(crate) seq_max: u64,
    pub(crate) log_ids: Vec<u32>,
    pub(crate) files: Vec<PathBuf>,
}

/// One output row: where its bytes are, and its fields.
struct MergedRow {
    /// Index into `Sources::bytes`.
    source: u32,
    key: Range<usize>,
    content: Range<usize>,
    embedding: Option<Range<usize>>,
    seq: u64,
    expires_at_ms: u64,
    crc: u32,
}

/// The maps the merged rows point into.
struct Merged<'a> {
    bytes: Vec<&'a [u8]>,
    rows: Vec<MergedRow>,
}

/// A contiguous run of merged rows: one output segment.
struct Run<'a, 'm> {
    merged: &'m Merged<'a>,
    rows: &'m [MergedRow],
}

impl RowSource for Run<'_, '_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn row(&self, index: usize) -> RowData<'_> {
        let r = &self.rows[index];
        let bytes = self.merged.bytes[r.source as usize];
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

/// A warm version: (key, seq) order decides which one survives.
struct WarmVersion<'a> {
    key: &'a [u8],
    seq: u64,
    segment: u32,
    offset: u32,
    kind: RecordKind,
    expires_at_ms: u64,
}

/// Who asked for a compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// `Db::compact`: seals the active segment first, never rate-limited or stopped.
    Explicit,
    /// The maintenance worker: what is sealed, paced by `compaction_bytes_per_sec`, stopped
    /// by `close`, and only when the file system has room for its output.
    Background,
    /// The maintenance worker after `compaction_idle` without a write: as `Background`, and
    /// it seals the active segment first, as `Explicit` does.
    Idle,
}

/// Rows merged between two checks of the stop signal.
const STOP_CHECK_ROWS: usize = 4096;

pub(crate) fn compact(shared: &Shared, trigger: Trigger) -> Result<()> {
    let _one_at_a_time = shared.lock_or_poison(&shared.compaction);
    shared.check_writable()?;
    if trigger != Trigger::Background {
        shared.seal_active()?; // everything written before the call takes part
    }
    shared.finish_retirements();
    let table = shared.segments.load_full();
    let warm: Vec<Arc<SealedSegment>> = table.warm().cloned().collect();
    let now = shared.now_ms();
    let versions = newest_warm_versions(&warm)?;
    // A cold segment is rewritten only if a warm key falls in its key range or it holds an
    // expired row; the others stay as they are (appends of ever-growing keys, the common
    // case for time-ordered ids, never rewrite the cold tier).
    let (rewrite, keep): (Vec<Arc<ColdFile>>, Vec<Arc<ColdFile>>) = table.cold.segments.iter().cloned().partition(|s| {
        let first = versions.partition_point(|v| v.key < &s.footer.min_key[..]);
        let touched = versions.get(first).is_some_and(|v| v.key <= &s.footer.max_key[..]);
        touched || s.has_expired_rows(now)
    });
    if warm.is_empty() && rewrite.is_empty() {
        return Ok(()); // nothing to move, merge or drop
    }
    let input_bytes: u64 = warm.iter().map(|s| s.file_len()).chain(rewrite.iter().map(|s| s.file_len())).sum();
    let pace = match trigger {
        Trigger::Explicit => None,
        Trigger::Background | Trigger::Idle => {
            check_free_space(shared, input_bytes)?;
            Some(Pace::new(shared.options.maintenance.bytes_per_sec, shared.maintenance.stop_flag()))
        }
    };
    let filter = shared.options.compaction_filter.as_deref();
    let merged = merge(&warm, versions, &rewrite, now, filter, pace.as_ref())?;

    // Write the new segments: runs of rows up to `cold_segment_bytes_max` bytes each, cut
    // where a kept segment's key range lies, so that key ranges stay disjoint.
    let mut manifest = shared.lock_or_poison(&shared.manifest).clone();
    let mut next_cold_id = manifest.next_cold_id;
    let mut written: Vec<(ColdEntry, Arc<ColdFile>)> =
        keep.iter().map(|f| (ColdEntry { cold_id: f.cold_id, rows: f.rows() as u64, file_len: f.file_len() }, f.clone())).collect();
    let vfs = shared.options.vfs.as_ref();
    let mut cleanup = NewFiles { vfs, paths: Vec::new() };
    let cuts: Vec<&[u8]> = keep.iter().map(|f| &f.footer.min_key[..]).collect();
    let mut output_bytes = 0u64;
    for run in runs(&merged, &cuts, shared.options.cold_segment_bytes_max, shared.embedding_dim) {
        let cold_id = next_cold_id;
        next_cold_id += 1;
        let path = shared.dir.join(cold_file_name(cold_id));
        cleanup.paths.push(path.clone());
        let summary = writer::write_segment(vfs, &path, cold_id, shared.embedding_dim, &Run { merged: &merged, rows: run }, pace.as_ref())?;
        shared.disk_bytes_written.fetch_add(summary.file_len, Ordering::Relaxed);
        output_bytes += summary.file_len;
        let file = Arc::new(ColdFile::open(vfs, &path, cold_id, shared.embedding_dim)?);
        written.push((ColdEntry { cold_id, rows: summary.rows, file_len: summary.file_len }, file));
    }
    written.sort_by(|a, b| a.1.footer.min_key.cmp(&b.1.footer.min_key));
    fs::sync_dir(vfs, &shared.dir)?;

    // Publish: manifest first (the commit point), then the table, under the writer lock so
    // that no seal publishes a table in between.
    let warm_ids: Vec<u32> = warm.iter().map(|s| s.segment_id).collect();
    let seq_max = warm
        .iter()
        .map(|s| s.trailer.seq_max)
        .chain(written.iter().map(|(_, f)| f.footer.seq_max))
        .chain([manifest.seq_max])
        .max()
        .unwrap_or(0);
    let new_cold = Arc::new(ColdSet::new(written.iter().map(|(_, f)| f.clone()).collect(), seq_max));
    {
        let _writer = shared.writer();
        let current = shared.segments.load_full();
        manifest.generation += 1;
        if let Some(&last) = warm_ids.last() {
            manifest.log_floor = last + 1;
        }
        manifest.next_cold_id = next_cold_id;
        manifest.seq_max = seq_max;
        manifest.cold = written.iter().map(|(entry, _)| *entry).collect();
        manifest.logs = current.segments.keys().copied().filter(|&id| id >= manifest.log_floor).collect();
        manifest.stage(vfs, &shared.dir)?; // on error the new files are removed: nothing changed
        cleanup.paths.clear();
        if let Err(e) = Manifest::install(vfs, &shared.dir) {
            // The rename may or may not have reached the disk: either manifest is a whole
            // state, and the next open removes whichever files it does not list. This handle
            // no longer knows which one holds, so it stops writing.
            shared.queue.poison(format!("compaction could not install its MANIFEST: {e}"));
            return Err(e);
        }
        let mut next = (*current).clone();
        next.retired.extend(warm_ids.iter().copied());
        next.cold = new_cold;
        shared.segments.store(Arc::new(next));
        *shared.lock_or_poison(&shared.manifest) = manifest;
    }
    let mut files: Vec<PathBuf> = warm.iter().map(|s| s.path.clone()).collect();
    files.extend(rewrite.iter().map(|s| s.path.clone()));
    drop(rewrite);
    drop(keep);
    let retirement = Retirement { replaced_cold: table.cold.clone(), seq_max, log_ids: warm_ids, files };
    drop(table);
    drop(warm);
    shared.lock_or_poison(&shared.retirements).push(retirement);
    shared.retirement_pending.store(true, Ordering::Release);
    let counters = &shared.maintenance.counters;
    counters.compactions.fetch_add(1, Ordering::Relaxed);
    counters.bytes_compacted.fetch_add(output_bytes, Ordering::Relaxed);
    counters.bytes_reclaimed.fetch_add(input_bytes.saturating_sub(output_bytes), Ordering::Relaxed);
    shared.finish_retirements();
    Ok(())
}

/// Refuses a background run the file system has no room for: it writes at most as many
/// bytes as its inputs hold before it deletes any of them.
fn check_free_space(shared: &Shared, needed: u64) -> Result<()> {
    let free = shared.options.vfs.free_space(&shared.dir).map_err(|e| Error::io_at(&shared.dir, "statvfs", e))?;
    if free < needed {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{} has {free} bytes free; this compaction may write up to {needed}", shared.dir.display()),
        )));
    }
    Ok(())
}

/// Files written by a compaction that has not published them: removed if it fails.
struct NewFiles<'a> {
    vfs: &'a dyn crate::io::vfs::Vfs,
    paths: Vec<PathBuf>,
}

impl Drop for NewFiles<'_> {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = self.vfs.remove_file(path);
        }
    }
}

/// The newest version of every key in `warm`, ascending by key.
fn newest_warm_versions(warm: &[Arc<SealedSegment>]) -> Result<Vec<WarmVersion<'_>>> {
    let mut versions: Vec<WarmVersion<'_>> = Vec::new();
    for (i, segment) in warm.iter().enumerate() {
        for entry in segment.hint_entries()? {
            versions.push(WarmVersion {
                key: entry.key,
                seq: entry.seq,
                segment: i as u32,
                offset: entry.offset,
                kind: entry.kind,
                expires_at_ms: entry.expires_at_ms,
            });
        }
    }
    versions.sort_unstable_by(|a, b| a.key.cmp(b.key).then(b.seq.cmp(&a.seq)));
    versions.dedup_by(|later, first| later.key == first.key); // keeps the newest of each key
    Ok(versions)
}

/// Asks the compaction filter about `record`; a panic in it fails the compaction.
fn filter_keeps(filter: Option<&(dyn Fn(&Record) -> Decision + Send + Sync)>, record: impl FnOnce() -> Record) -> Result<bool> {
    let Some(filter) = filter else { return Ok(true) };
    let record = record();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filter(&record))) {
        Ok(decision) => Ok(decision == Decision::Keep),
        Err(_) => Err(Error::invalid("compaction_filter", "the filter panicked; the compaction changed nothing")),
    }
}

/// The newest version of every key across the warm `versions` and the `cold` segments,
/// dropping tombstones, expired records and what `filter` drops, ascending by key; every
/// row's source checksum verified (a damaged source stops compaction: it is never
/// re-checksummed). With a `pace`, stops when it says so.
fn merge<'a>(
    warm: &'a [Arc<SealedSegment>],
    versions: Vec<WarmVersion<'a>>,
    cold: &'a [Arc<ColdFile>],
    now_ms: u64,
    filter: Option<&(dyn Fn(&Record) -> Decision + Send + Sync)>,
    pace: Option<&Pace>,
) -> Result<Merged<'a>> {
    let mut merged = Merged { bytes: warm.iter().map(|s| s.bytes()).collect(), rows: Vec::new() };
    let cold_base = merged.bytes.len() as u32;
    merged.bytes.extend(cold.iter().map(|s| s.bytes()));
    let mut cold_rows = cold.iter().enumerate().flat_map(|(s, seg)| (0..seg.rows()).map(move |r| (s, r))).peekable();
    let mut warm_versions = versions.into_iter().peekable();
    for step in 0usize.. {
        if step % STOP_CHECK_ROWS == 0 {
            if let Some(pace) = pace {
                pace.check_stop().map_err(Error::Io)?;
            }
        }
        let next_cold_key = cold_rows.peek().map(|&(s, r)| cold[s].key(r));
        let take_warm = match (warm_versions.peek(), next_cold_key) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(w), Some(c)) => w.key <= c,
        };
        if take_warm {
            let Some(version) = warm_versions.next() else { break };
            if next_cold_key == Some(version.key) {
                cold_rows.next(); // shadowed: warm versions are newer than every cold row
            }
            if version.kind != RecordKind::Put || (version.expires_at_ms != 0 && version.expires_at_ms <= now_ms) {
                continue;
            }
            let segment = &warm[version.segment as usize];
            let view = segment.record(version.offset, true)?;
            if view.seq != version.seq || &segment.bytes()[view.key.clone()] != version.key {
                return Err(Error::corruption(&segment.path, u64::from(version.offset), "hint entry disagrees with its record"));
            }
            if !filter_keeps(filter, || Record::new(Backing::Sealed(segment.clone()), &view))? {
                continue;
            }
            let bytes = segment.bytes();
            let embedding = view.embedding.clone().map(|e| &bytes[e]);
            let crc = writer::row_crc(&bytes[view.key.clone()], &bytes[view.content.clone()], embedding, view.seq, view.expires_at_ms);
            merged.rows.push(MergedRow {
                source: version.segment,
                key: view.key,
                content: view.content,
                embedding: view.embedding,
                seq: view.seq,
                expires_at_ms: view.expires_at_ms,
                crc,
            });
        } else {
            let Some((s, r)) = cold_rows.next() else { break };
            let file = &cold[s];
            if !file.is_live(r, now_ms) {
                continue;
            }
            file.check_row(r)?;
            if !filter_keeps(filter, || Record::from_cold(file, r))? {
                continue;
            }
            merged.rows.push(MergedRow {
                source: cold_base + s as u32,
                key: file.key_range(r),
                content: file.content_range(r),
                embedding: file.embedding_range(r),
                seq: file.seq(r),
                expires_at_ms: file.expires_at_ms(r),
                crc: file.row_crcs()[r],
            });
        }
    }
    debug_assert!(merged
        .rows
        .windows(2)
        .all(|w| merged.bytes[w[0].source as usize][w[0].key.clone()] < merged.bytes[w[1].source as usize][w[1].key.clone()]));
    Ok(merged)
}

/// Splits the merged rows into runs of about `bytes_max` stored bytes each (at least one
/// row each), also cutting before the first row at or above each of `cuts` (ascending).
fn runs<'m>(merged: &'m Merged<'_>, cuts: &[&[u8]], bytes_max: u64, dim: usize) -> Vec<&'m [MergedRow]> {
    let rows = &merged.rows[..];
    let key = |r: &MergedRow| &merged.bytes[r.source as usize][r.key.clone()];
    let mut runs = Vec::new();
    let (mut start, mut bytes, mut next_cut) = (0, 0u64, 0);
    for (i, row) in rows.iter().enumerate() {
        let mut crossed = false;
        while next_cut < cuts.len() && key(row) >= cuts[next_cut] {
            next_cut += 1;
            crossed = true;
        }
        if crossed && start < i {
            runs.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        // Per row: key + content + the embedding slot + offsets, seq, expiry, checksum.
        bytes += (row.key.len() + row.content.len() + dim * 4 + 8 + 8 + 8 + 8 + 4) as u64;
        if bytes >= bytes_max {
            runs.push(&rows[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < rows.len() {
        runs.push(&rows[start..]);
    }
    runs
}
