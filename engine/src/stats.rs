//! `Stats`, `TierStats`, `Tier`, `VerifyReport`, `RepairReport`: what the database reports
//! about itself.

/// Where a record is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The active log segment (and its in-memory mirror).
    Hot,
    /// Sealed log segments, memory-mapped.
    Warm,
    /// Columnar segments written by compaction.
    Cold,
}

/// Counters of one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Live records stored in this tier (their newest version lives here).
    pub records: u64,
    /// Logical bytes (key + content + embedding) of those records.
    pub bytes: u64,
    /// Segment files of this tier.
    pub segments: u64,
    /// Bytes on disk of this tier's segment files.
    pub disk_bytes: u64,
}

/// A snapshot of the database's counters.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Live records: not deleted, not overwritten, not expired.
    pub live_records: u64,
    /// Logical bytes (key + content + embedding) of the live records.
    pub live_bytes: u64,
    /// Bytes of every file of the database on disk.
    pub disk_bytes: u64,
    /// `disk_bytes / live_bytes` (0 when nothing is live).
    pub space_amplification: f64,
    /// Bytes written to the database's log and cold segment files / logical bytes (key +
    /// content + embedding) it was asked to write, over its whole history: kept across
    /// reopens (the `MANIFEST`'s write totals plus what the log holds after them), counted
    /// afresh from a repair, or from the first open by this version of a database whose
    /// `MANIFEST` predates the totals (layout version 1). 0 before any write.
    pub write_amplification: f64,
    /// Versions held by the in-memory index (live, superseded-but-pinned, tombstones).
    /// Cold keys are not in it.
    pub index_entries: u64,
    /// Files left by an interrupted compaction (not listed by the `MANIFEST`) that the
    /// last open of this handle removed.
    pub orphans_removed: u64,
    pub hot: TierStats,
    pub warm: TierStats,
    pub cold: TierStats,
    /// Compactions this handle completed (explicit and background).
    pub compactions: u64,
    /// Bytes those compactions wrote (new cold segments).
    pub bytes_compacted: u64,
    /// Disk bytes those compactions freed: their inputs' bytes minus their output's.
    pub bytes_reclaimed: u64,
    /// Milliseconds writers of this handle spent in write stalls.
    pub stall_ms: u64,
    /// Sealed (warm) bytes awaiting compaction.
    pub pending_compaction_bytes: u64,
    /// The last failed background run's error, until a later run succeeds.
    pub last_background_error: Option<String>,
}

impl Stats {
    pub fn tier(&self, tier: Tier) -> TierStats {
        match tier {
            Tier::Hot => self.hot,
            Tier::Warm => self.warm,
            Tier::Cold => self.cold,
        }
    }

    pub(crate) fn tier_mut(&mut self, tier: Tier) -> &mut TierStats {
        match tier {
            Tier::Hot => &mut self.hot,
            Tier::Warm => &mut self.warm,
            Tier::Cold => &mut self.cold,
        }
    }
}

/// What `Db::verify` checked; every checksum held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    pub files_checked: u64,
    pub records_checked: u64,
    pub bytes_checked: u64,
}

/// What `strata::repair` salvaged and lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Intact record versions found (log records of whole commits, cold rows whose row
    /// checksum held); for a database that verified, the records `Db::verify` checked.
    pub records_salvaged: u64,
    /// Records known to be lost: a sealed segment's or cold segment's record count minus
    /// those salvaged, plus intact records of commits that could not be proven whole. Records
    /// in bytes no count covers (a damaged active segment, a missing file) are not knowable
    /// and not counted: see `damaged_files`.
    pub records_lost: u64,
    /// Bytes of the damaged files that could not be salvaged (sum of the lost ranges).
    pub bytes_lost: u64,
    /// Live records (newest salvaged version of each key, not deleted) in the rebuilt database.
    pub records_written: u64,
    /// `false` when the database opened and verified: repair changed nothing.
    pub rebuilt: bool,
    /// Where the original files were moved (inside the database directory), when rebuilt.
    pub originals_dir: Option<std::path::PathBuf>,
    /// Every file that was damaged or missing, with what was lost.
    pub damaged_files: Vec<DamagedFile>,
}

/// One damaged or missing file, as `strata::repair` found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedFile {
    /// Where the file was (or should have been) in the database directory.
    pub path: std::path::PathBuf,
    /// The file should exist and does not.
    pub missing: bool,
    /// Byte ranges that could not be salvaged, in file order.
    pub lost_ranges: Vec<LostRange>,
    /// Records of this file known to be lost (at least this many).
    pub records_lost: u64,
    /// `records_lost` is exact: the file's own count (a sealed segment's hint block, a cold
    /// segment's footer) survived.
    pub records_lost_is_exact: bool,
}

/// A byte range of a damaged file that could not be salvaged. Empty (`start == end`) where
/// the file ends early (a sealed segment cut short, an empty cold segment): what followed
/// is lost, and its length is not known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostRange {
    pub start: u64,
    pub end: u64,
    /// What was wrong there.
    pub detail: String,
}

/// Walks every live key (index and cold tier, merged) at the visible seq: exact live
/// counts, TTLs judged at the current time. O(live keys); reads no record.
pub(crate) fn collect(shared: &std::sync::Arc<crate::db::Shared>) -> Stats {
    use std::sync::atomic::Ordering;
    let mut stats =
        Stats { index_entries: shared.index.entries_count() as u64, orphans_removed: shared.orphans_removed, ..Stats::default() };
    let (pin, view) = shared.pinned_view();
    let table = view.table.clone();
    let range = crate::iter::KeyRange { lower: std::ops::Bound::Unbounded, upper: std::ops::Bound::Unbounded };
    let mut walk = crate::iter::Iter::new(shared.clone(), pin, view, range, None);
    while let Some((tier, bytes)) = walk.next_meta() {
        stats.live_records += 1;
        stats.live_bytes += bytes;
        let tier = stats.tier_mut(tier);
        tier.records += 1;
        tier.bytes += bytes;
    }
    for (segment_id, segment) in &table.segments {
        let path = shared.dir.join(crate::io::fs::segment_file_name(*segment_id));
        let disk = shared.options.vfs.metadata(&path).map_or(0, |m| m.len);
        stats.disk_bytes += disk;
        if table.retired.contains(segment_id) {
            continue; // compacted, deleted once no reader needs it: counted in no tier
        }
        let tier = stats.tier_mut(match segment {
            crate::segments::SegmentRef::Hot(_) => Tier::Hot,
            crate::segments::SegmentRef::Sealed(_) => Tier::Warm,
        });
        tier.segments += 1;
        tier.disk_bytes += disk;
    }
    for segment in &table.cold.segments {
        stats.cold.segments += 1;
        stats.cold.disk_bytes += segment.file_len();
        stats.disk_bytes += segment.file_len();
    }
    for name in [crate::meta::META_FILE_NAME, crate::manifest::MANIFEST_FILE_NAME] {
        stats.disk_bytes += shared.options.vfs.metadata(&shared.dir.join(name)).map_or(0, |m| m.len);
    }
    if stats.live_bytes > 0 {
        stats.space_amplification = stats.disk_bytes as f64 / stats.live_bytes as f64;
    }
    let logical = shared.writer.logical_bytes_written.load(Ordering::Relaxed);
    if logical > 0 {
        stats.write_amplification = shared.writer.disk_bytes_written.load(Ordering::Relaxed) as f64 / logical as f64;
    }
    let maintenance = &shared.maintenance;
    stats.compactions = maintenance.counters.compactions.load(Ordering::Relaxed);
    stats.bytes_compacted = maintenance.counters.bytes_compacted.load(Ordering::Relaxed);
    stats.bytes_reclaimed = maintenance.counters.bytes_reclaimed.load(Ordering::Relaxed);
    stats.stall_ms = maintenance.counters.stall_us.load(Ordering::Relaxed) / 1000;
    stats.pending_compaction_bytes = crate::maintenance::warm_bytes(shared);
    stats.last_background_error = maintenance.last_error();
    stats
}
