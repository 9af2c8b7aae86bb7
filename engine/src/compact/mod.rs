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
//! 3. publish (`install`): write the new `MANIFEST` (atomic rename), then, under the writer
//!    lock, a segment table with the new cold set and the compacted log segments marked
//!    retired;
//! 4. retire (`retire.rs`): once no reader can need them, drop the index
//!    entries of the compacted segments, then the segments, then delete the old files.
//!
//! **Key-range steps.** A run that rewrites cold segments does not keep all of them until
//! its end: every `cold_segment_bytes_max` bytes of output or so, at the first key of a
//! rewritten segment the merge has not reached (`merge::Next::Step`), it publishes what it
//! wrote in place of the rewritten segments before that key (steps 3 and 4 for them; a
//! MANIFEST of layout 3, `format-spec/manifest.md`) and lets go of their maps, so their
//! files go while the run goes on: the old and the new cold tier are never both on disk for
//! the whole run. The warm segments stay live and indexed until the last publication, which
//! retires them: keys past the step are still merged from them, and below it their versions
//! shadow the cold rows that now hold the same versions (same seq). A step's MANIFEST
//! therefore keeps the floor the log segments' seqs lie above (`log_seq_floor`), which is
//! below its `seq_max`.
//!
//! A crash before step 3's rename leaves the old manifest: the new files are orphans,
//! removed at open. A crash after it leaves old files the manifest no longer lists (or log
//! segments below its `log_floor`): orphans too. A crash between two key-range steps leaves
//! the last step's manifest, a whole state: the next compaction merges the log segments
//! again. Nothing is lost, nothing duplicated.

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

use merge::{Merge, Next, Runs};
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
    // The table holds the cold segments this run rewrites: let go of it, so that a step can
    // release the ones it replaced.
    drop(table);
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
    let rewrite_paths: Vec<PathBuf> = rewrite.iter().map(|s| s.path.clone()).collect();
    let merge = Merge::new(&warm, versions, rewrite, now, filter, pace.as_ref());

    // Write the new segments, one run at a time: up to `cold_segment_bytes_max` bytes each,
    // cut where a kept segment's key range lies, so that key ranges stay disjoint. Every
    // `cold_segment_bytes_max` bytes or so, at the first key of a rewritten segment, a step
    // publishes what is written in place of the rewritten segments it covers.
    let mut manifest = shared.lock_or_poison(&shared.manifest).clone();
    let log_seq_floor = manifest.log_seq_floor();
    let mut next_cold_id = manifest.next_cold_id;
    let kept: Vec<(ColdEntry, Arc<ColdFile>)> = keep.iter().map(|f| (entry_of(f), f.clone())).collect();
    let mut written: Vec<(ColdEntry, Arc<ColdFile>)> = Vec::new();
    let vfs = shared.options.vfs.as_ref();
    let mut cleanup = NewFiles { vfs, paths: Vec::new() };
    let cuts: Vec<&[u8]> = keep.iter().map(|f| &f.footer.min_key[..]).collect();
    let bytes_max = shared.options.cold_segment_bytes_max;
    let mut runs = Runs::new(merge, cuts, bytes_max, bytes_max, shared.embedding_dim);
    let mut run = Vec::new();
    let mut output_bytes = 0u64;
    let mut replaced = 0; // the rewritten segments before it were replaced by steps
    loop {
        match runs.next_run(&mut run)? {
            Next::Done => break,
            Next::Run => {
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
            Next::Step(upto) => {
                let cold = kept.iter().chain(&written).cloned().chain(runs.rewritten_from(upto).map(|f| (entry_of(f), f.clone())));
                let step = Install { cold: cold.collect(), next_cold_id, log_seq_floor, compacted: None };
                install(shared, &mut manifest, step, &mut cleanup, rewrite_paths[replaced..upto].to_vec())?;
                runs.release_rewritten_before(upto);
                replaced = upto;
            }
        }
    }
    drop(run);
    drop(runs);
    let mut files: Vec<PathBuf> = warm.iter().map(|s| s.path.clone()).collect();
    files.extend(rewrite_paths[replaced..].iter().cloned());
    drop(keep);
    let last = Install { cold: kept.into_iter().chain(written).collect(), next_cold_id, log_seq_floor, compacted: Some(&warm) };
    install(shared, &mut manifest, last, &mut cleanup, files)?;
    drop(warm);
    let counters = &shared.maintenance.counters;
    counters.compactions.fetch_add(1, Ordering::Relaxed);
    counters.bytes_compacted.fetch_add(output_bytes, Ordering::Relaxed);
    counters.bytes_reclaimed.fetch_add(input_bytes.saturating_sub(output_bytes), Ordering::Relaxed);
    shared.finish_retirements();
    Ok(())
}

fn entry_of(file: &Arc<ColdFile>) -> ColdEntry {
    ColdEntry { cold_id: file.cold_id, rows: file.rows() as u64, file_len: file.file_len() }
}

/// What one publication of a compaction installs.
struct Install<'w> {
    /// The cold tier after it, in any order (sorted by key range here).
    cold: Vec<(ColdEntry, Arc<ColdFile>)>,
    next_cold_id: u64,
    /// The log segments' seq floor before the compaction (`Manifest::log_seq_floor`).
    log_seq_floor: u64,
    /// The last publication: the warm segments the compaction moved, now retired. `None`
    /// for a step: they stay live (and in the index) until the last one, since keys past
    /// the step are still merged from them; below it the cold tier holds the same versions.
    compacted: Option<&'w [Arc<SealedSegment>]>,
}

/// Publishes `install`: the new `MANIFEST` (atomic rename: the commit point; its totals and
/// log list are a snapshot taken under the writer lock, its write and fsyncs are not), then,
/// under the writer lock, a segment table with the new cold set (and, for the last
/// publication, the compacted log segments marked retired); then queues the retirement of
/// what it replaced, `files` deleted once no reader needs them.
fn install(shared: &Shared, manifest: &mut Manifest, install: Install<'_>, cleanup: &mut NewFiles<'_>, files: Vec<PathBuf>) -> Result<()> {
    let Install { mut cold, next_cold_id, log_seq_floor, compacted } = install;
    let vfs = shared.options.vfs.as_ref();
    fs::sync_dir(vfs, &shared.dir)?; // the new segments' directory entries, before a manifest names them
    cold.sort_by(|a, b| a.1.footer.min_key.cmp(&b.1.footer.min_key));
    let compacted = compacted.unwrap_or_default();
    let warm_ids: Vec<u32> = compacted.iter().map(|s| s.segment_id).collect();
    let seq_max = compacted
        .iter()
        .map(|s| s.trailer.seq_max)
        .chain(cold.iter().map(|(_, f)| f.footer.seq_max))
        .chain([manifest.seq_max])
        .max()
        .unwrap_or(0);
    let new_cold = Arc::new(ColdSet::new(cold.iter().map(|(_, f)| f.clone()).collect(), seq_max));
    let mut next_manifest = manifest.clone();
    {
        // Under the writer lock no commit is half counted: the totals, the visible seq, the
        // active segment's length and the log segments listed agree. Only this snapshot is
        // taken under it: the MANIFEST's write and fsyncs are not, so commits do not wait on
        // them (a seal meanwhile starts a log segment the MANIFEST does not list: at or above
        // its `log_floor`, it is live all the same).
        let writer = shared.writer.slot();
        next_manifest.totals = Some(WriteTotals {
            seq: shared.visible_seq.load(Ordering::Acquire),
            logical_bytes: shared.writer.logical_bytes_written.load(Ordering::Relaxed),
            disk_bytes: shared.writer.disk_bytes_written.load(Ordering::Relaxed),
            log_id: writer.as_ref().map_or(0, |w| w.segment_id),
            log_len: writer.as_ref().map_or(0, |w| w.len()),
        });
        if let Some(&last) = warm_ids.last() {
            next_manifest.log_floor = last + 1;
        }
        let log_floor = next_manifest.log_floor;
        next_manifest.logs = shared.segments.load().segments.keys().copied().filter(|&id| id >= log_floor).collect();
    }
    next_manifest.generation += 1;
    next_manifest.next_cold_id = next_cold_id;
    next_manifest.seq_max = seq_max;
    // A step's manifest keeps the floor the listed log segments' seqs lie above.
    next_manifest.step_seq_floor = compacted.is_empty().then_some(log_seq_floor).filter(|&floor| floor < seq_max);
    next_manifest.cold = cold.iter().map(|(entry, _)| *entry).collect();
    next_manifest.stage(vfs, &shared.dir)?; // on error the new files are removed: nothing changed
    cleanup.paths.clear();
    if let Err(e) = Manifest::install(vfs, &shared.dir) {
        // The rename may or may not have reached the disk: either manifest is a whole state,
        // and the next open removes whichever files it does not list. This handle no longer
        // knows which one holds, so it stops writing.
        shared.writer.refuse_writes(format!("compaction could not install its MANIFEST: {e}"));
        return Err(e);
    }
    let replaced_cold = {
        // The table of the moment (a seal or a retirement may have published since the
        // snapshot), with the new cold set; under the writer lock, so no seal publishes in
        // between, and with the handle's copy of the MANIFEST, so that the two agree for
        // `published_state`.
        let writer = shared.writer.slot();
        let current = shared.segments.load_full();
        let mut next = (*current).clone();
        next.retired.extend(warm_ids.iter().copied());
        next.cold = new_cold;
        shared.segments.publish(&writer, next);
        *shared.lock_or_poison(&shared.manifest) = next_manifest.clone();
        *manifest = next_manifest;
        current.cold.clone()
    };
    // A step retires no log segment: no reader's pin holds it up, only the tables that
    // still list the cold segments it replaced.
    let pinned_below = if warm_ids.is_empty() { 0 } else { seq_max };
    shared.retirements.push(shared, Retirement { replaced_cold, seq_max: pinned_below, log_ids: warm_ids, files });
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
