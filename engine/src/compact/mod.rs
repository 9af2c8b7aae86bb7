//! Compaction (`Db::compact` and the maintenance worker's runs): moves every sealed warm
//! segment into the cold tier and merges the cold segments it touches, keeping only the
//! newest version of each key and dropping tombstones, expired records and what the
//! compaction filter drops (every older version is in the merge, so nothing they shadow
//! survives). `compact()` and idle runs seal the active segment first.
//!
//! Steps, each crash-safe:
//! 1. plan (`plan.rs`): the warm segments, and which cold segments to rewrite or keep;
//! 2. merge and write (`merge.rs`), one output segment at a time: the merge streams the
//!    newest version of each key and checks every source checksum as it goes — a damaged
//!    source stops compaction with `Corruption` (its new files are removed), it is never
//!    re-checksummed; each new cold segment is fdatasynced (an orphan until a manifest
//!    lists it);
//! 3. publish: write the new `MANIFEST` (atomic rename), then, under the writer lock, a
//!    segment table with the new cold set and the compacted log segments marked retired;
//! 4. retire (`retire.rs`): once no reader can need them, drop the index
//!    entries of the compacted segments, then the segments, then delete the old files.
//!
//! A crash before step 3's rename leaves the old manifest: the new files are orphans,
//! removed at open. A crash after it leaves old files the manifest no longer lists (or log
//! segments below its `log_floor`): orphans too. Nothing is lost, nothing duplicated.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cold::layout::cold_file_name;
use crate::cold::segment::ColdFile;
use crate::cold::set::ColdSet;
use crate::cold::writer;
use crate::db::Shared;
use crate::io::fs;
use crate::io::pace::Pace;
use crate::log::segment::SealedSegment;
use crate::manifest::{ColdEntry, Manifest, WriteTotals};
use crate::{Error, Result};

mod merge;
mod plan;
pub(crate) mod retire;

use merge::{Merge, Runs};
use retire::Retirement;

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
    let versions = plan::newest_warm_versions(&warm)?;
    let (rewrite, keep) = plan::choose(&table.cold.segments, &versions, now);
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
    let merge = Merge::new(&warm, versions, &rewrite, now, filter, pace.as_ref());

    // Write the new segments, one run at a time: up to `cold_segment_bytes_max` bytes each,
    // cut where a kept segment's key range lies, so that key ranges stay disjoint.
    let mut manifest = shared.lock_or_poison(&shared.manifest).clone();
    let mut next_cold_id = manifest.next_cold_id;
    let mut written: Vec<(ColdEntry, Arc<ColdFile>)> =
        keep.iter().map(|f| (ColdEntry { cold_id: f.cold_id, rows: f.rows() as u64, file_len: f.file_len() }, f.clone())).collect();
    let vfs = shared.options.vfs.as_ref();
    let mut cleanup = NewFiles { vfs, paths: Vec::new() };
    let cuts: Vec<&[u8]> = keep.iter().map(|f| &f.footer.min_key[..]).collect();
    let mut runs = Runs::new(merge, cuts, shared.options.cold_segment_bytes_max, shared.embedding_dim);
    let mut run = Vec::new();
    let mut output_bytes = 0u64;
    while runs.next_run(&mut run)? {
        let cold_id = next_cold_id;
        next_cold_id += 1;
        let path = shared.dir.join(cold_file_name(cold_id));
        cleanup.paths.push(path.clone());
        let summary = writer::write_segment(vfs, &path, cold_id, shared.embedding_dim, &runs.rows(&run), pace.as_ref())?;
        shared.writer.disk_bytes_written.fetch_add(summary.file_len, Ordering::Relaxed);
        output_bytes += summary.file_len;
        let file = Arc::new(ColdFile::open(vfs, &path, cold_id, shared.embedding_dim)?);
        written.push((ColdEntry { cold_id, rows: summary.rows, file_len: summary.file_len }, file));
    }
    drop(run);
    drop(runs);
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
        let writer = shared.writer.slot();
        let current = shared.segments.load_full();
        // Under the writer lock no commit is half counted: the totals, the visible seq and
        // the active segment's length agree.
        manifest.totals = Some(WriteTotals {
            seq: shared.visible_seq.load(Ordering::Acquire),
            logical_bytes: shared.writer.logical_bytes_written.load(Ordering::Relaxed),
            disk_bytes: shared.writer.disk_bytes_written.load(Ordering::Relaxed),
            log_id: writer.as_ref().map_or(0, |w| w.segment_id),
            log_len: writer.as_ref().map_or(0, |w| w.len()),
        });
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
            shared.writer.refuse_writes(format!("compaction could not install its MANIFEST: {e}"));
            return Err(e);
        }
        let mut next = (*current).clone();
        next.retired.extend(warm_ids.iter().copied());
        next.cold = new_cold;
        shared.segments.publish(&writer, next);
        *shared.lock_or_poison(&shared.manifest) = manifest;
    }
    let mut files: Vec<PathBuf> = warm.iter().map(|s| s.path.clone()).collect();
    files.extend(rewrite.iter().map(|s| s.path.clone()));
    drop(rewrite);
    drop(keep);
    let retirement = Retirement { replaced_cold: table.cold.clone(), seq_max, log_ids: warm_ids, files };
    drop(table);
    drop(warm);
    shared.retirements.push(shared, retirement);
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
