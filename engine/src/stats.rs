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
    /// Bytes this handle wrote to disk / logical bytes it was asked to write (0 before any write).
    pub write_amplification: f64,
    /// Versions held by the in-memory index (live, superseded-but-pinned, tombstones).
    pub index_entries: u64,
    pub hot: TierStats,
    pub warm: TierStats,
    pub cold: TierStats,
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
    pub records_salvaged: u64,
    pub records_lost: u64,
    pub bytes_lost: u64,
}

/// Walks the index at the visible seq: exact live counts, TTLs judged at the current time.
pub(crate) fn collect(shared: &crate::db::Shared) -> Stats {
    use std::sync::atomic::Ordering;
    let seq = shared.visible_seq.load(Ordering::Acquire);
    let table = shared.segments.load_full();
    let now = shared.now_ms();
    let mut stats = Stats { index_entries: shared.index.entries_count() as u64, ..Stats::default() };
    shared.index.for_each_at(seq, |_, _, version| {
        if !version.is_live(now) {
            return;
        }
        stats.live_records += 1;
        stats.live_bytes += u64::from(version.logical_bytes);
        if let Some(segment) = table.get(version.segment_id) {
            let tier = stats.tier_mut(segment.tier());
            tier.records += 1;
            tier.bytes += u64::from(version.logical_bytes);
        }
    });
    for (segment_id, segment) in &table.segments {
        let path = shared.dir.join(crate::io::fs::segment_file_name(*segment_id));
        let disk = std::fs::metadata(&path).map_or(0, |m| m.len());
        let tier = stats.tier_mut(segment.tier());
        tier.segments += 1;
        tier.disk_bytes += disk;
        stats.disk_bytes += disk;
    }
    stats.disk_bytes += std::fs::metadata(shared.dir.join(crate::meta::META_FILE_NAME)).map_or(0, |m| m.len());
    if stats.live_bytes > 0 {
        stats.space_amplification = stats.disk_bytes as f64 / stats.live_bytes as f64;
    }
    let logical = shared.logical_bytes_written.load(Ordering::Relaxed);
    if logical > 0 {
        stats.write_amplification = shared.disk_bytes_written.load(Ordering::Relaxed) as f64 / logical as f64;
    }
    stats
}
