//! Opening a database: lock, `META`, the sealed segments' hints, recovery of the active
//! segment, and the index rebuilt newest-first.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cold::layout::{cold_file_name, parse_cold_file_name};
use crate::cold::segment::ColdFile;
use crate::cold::set::ColdSet;
use crate::db::{Db, Shared, SharedParts};
use crate::format::FORMAT_VERSION_LATEST;
use crate::index::{Index, Version};
use crate::io::aligned::{AlignedBytes, AlignedVec};
use crate::io::fs::{self, DirLock};
use crate::io::vfs::Vfs;
use crate::log::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::hot::HotSegment;
use crate::log::recovery::{self, ScannedSegment};
use crate::log::segment::SealedSegment;
use crate::log::trailer::{Trailer, TRAILER_LEN};
use crate::log::writer::{ActiveSegment, ResumedSegment};
use crate::manifest::{Manifest, WriteTotals};
use crate::meta::Meta;
use crate::segments::{SegmentRef, SegmentTable};
use crate::{Error, Options, Result};

pub(crate) fn open(dir: &Path, options: Options) -> Result<Db> {
    options.validate()?;
    let vfs_handle = options.vfs.clone();
    let vfs = vfs_handle.as_ref();
    if options.read_only {
        // Before the META check: an unfinished repair swap may have moved META.
        crate::repair::finish_interrupted(vfs, dir, true)?;
    }
    prepare_dir(vfs, dir, options.read_only)?;
    let lock = if options.read_only { None } else { Some(DirLock::acquire(vfs, dir)?) };
    if !options.read_only {
        crate::repair::finish_interrupted(vfs, dir, false)?;
    }
    let stored_manifest = Manifest::read(vfs, dir)?;
    let is_new = stored_manifest.is_none() && fs::list_segments(vfs, dir)?.is_empty();
    let meta = read_or_create_meta(vfs, dir, &options, is_new)?;
    let has_manifest = stored_manifest.is_some();
    let manifest = stored_manifest.unwrap_or_default();
    let live = live_files(vfs, dir, &manifest)?;
    check_log_sequence(dir, has_manifest, &manifest, &live)?;
    let segment_files = live.logs;
    let embedding_dim = meta.embedding_dim as usize;
    if let Some(wanted) = options.embedding_dim.filter(|&d| d != embedding_dim) {
        return Err(Error::invalid(
            "embedding_dim",
            format!("the database at {} has dimension {embedding_dim}, not {wanted}", dir.display()),
        ));
    }
    let cold = load_cold(vfs, dir, &manifest, embedding_dim)?;
    let loaded = load_segments(vfs, &segment_files, embedding_dim, manifest.log_seq_floor(), !options.read_only)?;
    let counted = match (has_manifest, manifest.totals) {
        (_, Some(totals)) => Some(totals),
        (false, None) => Some(WriteTotals::default()), // never compacted: the log is the whole history
        (true, None) => None,                          // a version 1 MANIFEST: counting starts now
    };
    let BuiltIndex { index, mut last_seq, logical_after, active_dead } =
        build_index(&loaded, cold.segments.iter().map(|s| s.rows()).sum(), embedding_dim, counted.map_or(u64::MAX, |t| t.seq))?;
    let active_id = loaded.active.as_ref().map(|active| active.segment_id);
    let mut written = counted.map_or((0, 0), |totals| write_totals(&totals, &loaded, logical_after));
    last_seq = last_seq.max(manifest.seq_max);
    if !has_manifest {
        check_cold_orphans_superseded(vfs, dir, &live.orphans, last_seq)?;
    }
    // Only once everything live has been validated: a failing open changes nothing.
    let orphans_removed = if options.read_only { 0 } else { remove_orphans(vfs, dir, &live.orphans)? };
    if !options.read_only && meta.version < FORMAT_VERSION_LATEST {
        // Before this build writes a file of its format: older builds must refuse from now on.
        Meta { version: FORMAT_VERSION_LATEST, ..meta }.write(vfs, dir)?;
    }

    let mut table = SegmentTable { cold: Arc::new(cold), ..SegmentTable::default() };
    for segment in &loaded.sealed {
        table.segments.insert(segment.segment_id, SegmentRef::Sealed(segment.clone()));
    }
    let mut next_id = match segment_files.last() {
        None => first_log_id(&manifest),
        Some((id, _)) => id.checked_add(1).ok_or_else(|| Error::invalid("segment id", "segment ids are exhausted (u32::MAX reached)"))?,
    };
    if let (Some(segment_id), false) = (loaded.torn_creation, options.read_only) {
        let path = dir.join(fs::segment_file_name(segment_id));
        fs::remove_file(vfs, &path, "remove torn segment")?;
        fs::sync_dir(vfs, dir)?;
        next_id = segment_id;
    }
    let writer = match (options.read_only, loaded.active) {
        (true, None) => None,
        (true, Some(active)) => {
            let hot = HotSegment::new(embedding_dim);
            hot.add(0, Arc::new(truncated(active.bytes, active.scan.valid_len)));
            table.segments.insert(active.segment_id, SegmentRef::Hot(Arc::new(hot)));
            None
        }
        (false, Some(active)) => {
            let header = active.header;
            let resumed =
                ResumedSegment { bytes: Arc::new(truncated(active.bytes, active.scan.valid_len)), records: active.scan.records, header };
            let writer = ActiveSegment::resume(vfs, dir, active.segment_id, embedding_dim, resumed)?;
            if header.has_group_marks() {
                Some(writer)
            } else {
                // A format 1 active segment cannot tell an unsynced tail from damage: seal
                // it now, so that every later commit goes to a segment with group marks.
                let before = writer.len();
                let sealed = Arc::new(writer.seal(vfs)?);
                written.1 += sealed.file_len() - before;
                table.segments.insert(active.segment_id, SegmentRef::Sealed(sealed));
                let next = active.segment_id.checked_add(1).ok_or_else(|| Error::invalid("segment id", "segment ids exhausted"))?;
                let created = ActiveSegment::create(vfs, dir, next, embedding_dim)?;
                written.1 += created.len();
                Some(created)
            }
        }
        (false, None) => {
            let created = ActiveSegment::create(vfs, dir, next_id, embedding_dim)?;
            written.1 += created.len(); // its header
            Some(created)
        }
    };
    if let Some(writer) = &writer {
        table.segments.insert(writer.segment_id, SegmentRef::Hot(writer.hot.clone()));
    }
    // The active segment's superseded records, wherever it went (hot, or sealed above).
    if let Some(segment) = active_id.and_then(|id| table.get(id)) {
        active_dead.iter().for_each(|&offset| segment.dead_rows().mark(offset));
    }
    let parts = SharedParts { index, table, last_seq, writer, lock, manifest, orphans_removed, written };
    let shared = Arc::new(Shared::new(dir.to_path_buf(), options, embedding_dim, parts));
    crate::maintenance::Maintenance::start(&shared)?;
    Ok(Db { shared })
}

/// A read-only open needs an existing database; a writable one creates the directory.
/// Directories it creates are mode 0700.
fn prepare_dir(vfs: &dyn Vfs, dir: &Path, read_only: bool) -> Result<()> {
    if read_only {
        if !fs::exists(vfs, &dir.join(crate::meta::META_FILE_NAME))? {
            return Err(Error::io_at(dir, "open read-only", std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
    } else if !fs::exists(vfs, dir)? {
        fs::create_dir(vfs, dir, true, "create directory")?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::sync_dir(vfs, parent)?;
        }
    }
    Ok(())
}

/// The active segment as recovery found it.
struct LoadedActive {
    segment_id: u32,
    header: SegmentHeader,
    bytes: AlignedBytes,
    scan: ScannedSegment,
}

/// Every segment file, classified: sealed ones (all but possibly the newest), the active one.
struct LoadedSegments {
    sealed: Vec<Arc<SealedSegment>>,
    active: Option<LoadedActive>,
    /// The newest file was a creation cut short by a crash (no header): no data.
    torn_creation: Option<u32>,
}

/// The files the manifest makes live, and the orphans of an interrupted compaction.
struct LiveFiles {
    logs: Vec<(u32, PathBuf)>,
    orphans: Vec<PathBuf>,
    /// Any `.cold` file is in the directory, listed or not.
    has_cold: bool,
}

/// The id the oldest live log segment must have: a new database starts at 1, and only a
/// compaction deletes log segments, all of them below the `log_floor` it installs.
fn first_log_id(manifest: &Manifest) -> u32 {
    manifest.log_floor.max(1)
}

/// Contract 9: a log segment that should exist and does not is corruption, never a license
/// to drop what it held (its tombstones, above all). Log ids are allocated one after another
/// (a torn creation's id is reused, never skipped) and deleted only below the MANIFEST's
/// `log_floor`, so the live ids must be exactly `first_log_id ..= newest`. Without a MANIFEST,
/// segments that do not start at 1 mean a compaction moved the first ones into a cold tier
/// whose MANIFEST is lost.
fn check_log_sequence(dir: &Path, has_manifest: bool, manifest: &Manifest, live: &LiveFiles) -> Result<()> {
    let first = first_log_id(manifest);
    let Some(&(oldest, _)) = live.logs.first() else { return Ok(()) };
    debug_assert!(live.logs.windows(2).all(|w| w[0].0 < w[1].0), "segments are listed in ascending id order");
    let repair_hint = "; run strata::repair to salvage";
    if !has_manifest && oldest != first && live.has_cold {
        return Err(Error::corruption(
            dir.join(crate::manifest::MANIFEST_FILE_NAME),
            0,
            format!(
                "MANIFEST is missing, but cold segments exist and the log segments start at {} (segment {} and after were \
                 compacted into a cold tier only the MANIFEST describes); nothing was deleted{repair_hint}",
                fs::segment_file_name(oldest),
                fs::segment_file_name(first),
            ),
        ));
    }
    let mut expected = first;
    for &(id, _) in &live.logs {
        if id != expected {
            let why = if has_manifest { "below the next live segment, above the MANIFEST's log_floor" } else { "and there is no MANIFEST" };
            return Err(Error::corruption(
                dir.join(fs::segment_file_name(expected)),
                0,
                format!(
                    "log segment {} is missing ({why}): the segments after it may depend on it (its deletes){repair_hint}",
                    fs::segment_file_name(expected)
                ),
            ));
        }
        expected = id.saturating_add(1);
    }
    Ok(())
}

/// Without a MANIFEST, an unlisted cold segment is an orphan of a first compaction cut short
/// before its MANIFEST was installed: every row it holds is still in the log segments, which
/// `check_log_sequence` proved whole from id 1. A cold segment holding a seq newer than the
/// log's newest proves otherwise (the MANIFEST and the log's tail are both gone): corruption.
/// A segment whose footer does not decode was never finished (a compaction fdatasyncs a
/// segment before any MANIFEST lists it).
fn check_cold_orphans_superseded(vfs: &dyn Vfs, dir: &Path, orphans: &[PathBuf], last_seq: u64) -> Result<()> {
    for path in orphans.iter().filter(|p| p.extension().is_some_and(|e| e == crate::cold::layout::COLD_EXTENSION)) {
        let map = fs::map(vfs, path)?;
        let Ok((footer, _)) = crate::cold::layout::Footer::decode(map.bytes(), path) else { continue };
        if footer.rows > 0 && footer.seq_max > last_seq {
            return Err(Error::corruption(
                dir.join(crate::manifest::MANIFEST_FILE_NAME),
                0,
                format!(
                    "MANIFEST is missing, and cold segment {} holds seq {} while the log ends at seq {last_seq}: \
                     it is not an orphan; nothing was deleted; run strata::repair to salvage",
                    path.display(),
                    footer.seq_max
                ),
            ));
        }
    }
    Ok(())
}

/// Classifies the directory's files against the manifest: log segments below its
/// `log_floor` and cold segments it does not list are orphans, as is a `MANIFEST.tmp`.
/// A file the manifest lists that is missing is corruption.
fn live_files(vfs: &dyn Vfs, dir: &Path, manifest: &Manifest) -> Result<LiveFiles> {
    let manifest_path = dir.join(crate::manifest::MANIFEST_FILE_NAME);
    let mut live = LiveFiles { logs: Vec::new(), orphans: Vec::new(), has_cold: false };
    for (id, path) in fs::list_segments(vfs, dir)? {
        if id < manifest.log_floor {
            live.orphans.push(path);
        } else {
            live.logs.push((id, path));
        }
    }
    for id in &manifest.logs {
        if !live.logs.iter().any(|(live_id, _)| live_id == id) {
            return Err(Error::corruption(
                &manifest_path,
                0,
                format!("MANIFEST lists log segment {}, which is missing", fs::segment_file_name(*id)),
            ));
        }
    }
    for (id, path) in fs::list_parsed(vfs, dir, parse_cold_file_name)? {
        live.has_cold = true;
        if !manifest.cold.iter().any(|entry| entry.cold_id == id) {
            live.orphans.push(path);
        }
    }
    let temp = dir.join(crate::manifest::MANIFEST_TEMP_NAME);
    if fs::exists(vfs, &temp)? {
        live.orphans.push(temp);
    }
    Ok(live)
}

/// The cold segment files in `dir`, by id.
pub(crate) fn list_cold(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    fs::list_parsed(vfs, dir, parse_cold_file_name)
}

/// Deletes the orphans (durably); returns how many there were.
fn remove_orphans(vfs: &dyn Vfs, dir: &Path, orphans: &[PathBuf]) -> Result<u64> {
    let mut removed = 0;
    for path in orphans {
        // A directory under an orphan's name was not made by strata: left alone (an open
        // that failed on it would leave a database that verifies but never opens for writing).
        if vfs.metadata(path).is_ok_and(|info| info.is_dir) {
            continue;
        }
        fs::remove_file(vfs, path, "remove orphan")?;
        removed += 1;
    }
    if removed > 0 {
        fs::sync_dir(vfs, dir)?;
    }
    Ok(removed)
}

/// Maps every cold segment the manifest lists, checking each against its entry and the
/// key order of the set.
fn load_cold(vfs: &dyn Vfs, dir: &Path, manifest: &Manifest, embedding_dim: usize) -> Result<ColdSet> {
    let manifest_path = dir.join(crate::manifest::MANIFEST_FILE_NAME);
    let mut segments: Vec<Arc<ColdFile>> = Vec::with_capacity(manifest.cold.len());
    for entry in &manifest.cold {
        let path = dir.join(cold_file_name(entry.cold_id));
        if !fs::exists(vfs, &path)? {
            return Err(Error::corruption(&manifest_path, 0, format!("MANIFEST lists cold segment {}, which is missing", path.display())));
        }
        let file = ColdFile::open(vfs, &path, entry.cold_id, embedding_dim)?;
        if file.rows() as u64 != entry.rows || file.file_len() != entry.file_len {
            return Err(Error::corruption(&path, 0, "cold segment's rows or length differ from what the MANIFEST recorded"));
        }
        if file.footer.seq_max > manifest.seq_max {
            return Err(Error::corruption(&path, 0, "cold segment holds a seq newer than the MANIFEST's seq_max"));
        }
        if let Some(previous) = segments.last() {
            if file.rows() > 0 && previous.footer.max_key >= file.footer.min_key {
                return Err(Error::corruption(&path, 0, "cold segment key range overlaps or precedes the previous segment's"));
            }
        }
        if file.rows() > 0 {
            segments.push(Arc::new(file));
        }
    }
    Ok(ColdSet::new(segments, manifest.seq_max))
}

/// `map_active`: a writable handle (it holds the writer lock) maps the active segment
/// instead of reading it (`load_active`).
fn load_segments(
    vfs: &dyn Vfs,
    segment_files: &[(u32, PathBuf)],
    embedding_dim: usize,
    log_seq_floor: u64,
    map_active: bool,
) -> Result<LoadedSegments> {
    let mut loaded = LoadedSegments { sealed: Vec::new(), active: None, torn_creation: None };
    for (i, (segment_id, path)) in segment_files.iter().enumerate() {
        let is_last = i + 1 == segment_files.len();
        if is_last && !ends_with_valid_trailer(vfs, path)? {
            let floor = loaded.sealed.last().map_or(log_seq_floor, |s| s.trailer.seq_max);
            match load_active(vfs, path, *segment_id, embedding_dim, floor, map_active)? {
                Some((header, bytes, scan)) => loaded.active = Some(LoadedActive { segment_id: *segment_id, header, bytes, scan }),
                None => loaded.torn_creation = Some(*segment_id),
            }
            break;
        }
        let segment = SealedSegment::open(vfs, path, *segment_id, embedding_dim)?;
        let previous_seq_max = loaded.sealed.last().map_or(log_seq_floor, |p| p.trailer.seq_max);
        if segment.trailer.records_count > 0 && segment.trailer.seq_max <= previous_seq_max {
            return Err(Error::corruption(path, 0, "segment's newest seq is not newer than the previous segment's or the cold tier's"));
        }
        loaded.sealed.push(Arc::new(segment));
    }
    Ok(loaded)
}

/// Builds the index: only the newest version of each key, the latest in the log, is
/// inserted (nothing is pinned at open); the older ones are marked dead in their sealed
/// segment (`DeadRows`), or listed for the active one (`BuiltIndex::active_dead`).
fn build_index(loaded: &LoadedSegments, cold_rows: usize, embedding_dim: usize, counted_seq: u64) -> Result<BuiltIndex> {
    // The point cache, which gets fill in as they miss, is sized for the records the log
    // holds, an upper bound on its keys, and for the cold rows, up to a bound: anonymous
    // memory does not grow with the cold tier past it (`point_cache::COLD_ROWS_SIZED_MAX`).
    // Both sized by the records read, not by the trailers' counts.
    let hints = loaded.sealed.iter().map(|segment| segment.hint_entries()).collect::<Result<Vec<_>>>()?;
    let read = hints.iter().map(Vec::len).sum::<usize>() + loaded.active.as_ref().map_or(0, |a| a.scan.records.len());
    let index = Index::for_keys(read.saturating_add(cold_rows.min(crate::point_cache::COLD_ROWS_SIZED_MAX)));
    let mut logical_after = 0u64;
    let mut last_seq = loaded.sealed.iter().map(|s| s.trailer.seq_max).max().unwrap_or(0);
    // Every record the log holds, then sorted by key, the newest first: the first of each
    // key goes into the index (in key order, so each insert finds its place along the path
    // the previous one warmed), the rest are dead. One sort instead of a seek per record.
    let mut log_records = Vec::with_capacity(read);
    let active_rank = loaded.sealed.len() as u32;
    if let Some(active) = &loaded.active {
        last_seq = last_seq.max(active.scan.last_seq);
        logical_after += active.scan.records.iter().filter(|v| v.seq > counted_seq).map(|v| v.logical_bytes() as u64).sum::<u64>();
        for view in &active.scan.records {
            let version = Version::of_record(active.segment_id, view.start() as u32, view);
            log_records.push(LogRecord { key: &active.bytes.bytes()[view.key.clone()], seq: view.seq, version, rank: active_rank });
        }
    }
    for ((rank, segment), entries) in loaded.sealed.iter().enumerate().zip(&hints) {
        logical_after += entries.iter().filter(|e| e.seq > counted_seq).map(|e| e.logical_bytes(embedding_dim) as u64).sum::<u64>();
        for entry in entries {
            let version = Version {
                segment_id: segment.segment_id,
                offset: entry.offset,
                logical_bytes: entry.logical_bytes(embedding_dim) as u32,
                kind: entry.kind.into(),
                expires_at_ms: entry.expires_at_ms,
            };
            log_records.push(LogRecord { key: entry.key, seq: entry.seq, version, rank: rank as u32 });
        }
    }
    // Newest = latest in the log: a later segment (the active one last), then a later offset.
    // Stable and run-adaptive: a segment written in key order is one sorted run.
    log_records.sort_by(|a, b| a.key.cmp(b.key).then_with(|| (b.rank, b.version.offset).cmp(&(a.rank, a.version.offset))));
    let mut active_dead = Vec::new();
    let mut previous: Option<&[u8]> = None;
    for record in &log_records {
        if previous == Some(record.key) {
            match loaded.sealed.get(record.rank as usize) {
                Some(segment) => segment.dead.mark(record.version.offset),
                None => active_dead.push(record.version.offset),
            }
        } else {
            index.insert_at_open(record.key, record.seq, record.version);
            previous = Some(record.key);
        }
    }
    Ok(BuiltIndex { index, last_seq, logical_after, active_dead })
}

/// A record of the log as `build_index` sorts them: `rank` is its segment's place in
/// `LoadedSegments::sealed`, the active segment's being one past the last.
struct LogRecord<'a> {
    key: &'a [u8],
    seq: u64,
    version: Version,
    rank: u32,
}

/// What `build_index` gives.
struct BuiltIndex {
    index: Index,
    /// The newest seq of the log.
    last_seq: u64,
    /// Logical bytes of every record newer than the `counted_seq` asked for (`write_totals`).
    logical_after: u64,
    /// Offsets of the active segment's records that an index version supersedes.
    active_dead: Vec<u32>,
}

/// `Stats`' write counters (logical, disk) at open: the MANIFEST's `totals`, plus what the
/// log holds that was written after them — the logical bytes of its newer records
/// (`logical_after`), and every log byte past `totals.log_len` of segment `totals.log_id`
/// and of every later segment. Exact for logical bytes; for disk bytes, a torn tail cut at
/// open or files written by a crashed compaction are not counted.
fn write_totals(totals: &WriteTotals, loaded: &LoadedSegments, logical_after: u64) -> (u64, u64) {
    let written_after = |segment_id: u32, len: u64| match segment_id.cmp(&totals.log_id) {
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Equal => len.saturating_sub(totals.log_len),
        std::cmp::Ordering::Greater => len,
    };
    let mut disk = totals.disk_bytes;
    disk += loaded.sealed.iter().map(|s| written_after(s.segment_id, s.file_len())).sum::<u64>();
    if let Some(active) = &loaded.active {
        disk += written_after(active.segment_id, active.scan.valid_len as u64);
    }
    (totals.logical_bytes.saturating_add(logical_after), disk)
}

fn read_or_create_meta(vfs: &dyn Vfs, dir: &Path, options: &Options, no_segments: bool) -> Result<Meta> {
    match Meta::read(vfs, dir)? {
        Some(meta) => Ok(meta),
        None if no_segments && !options.read_only => {
            let meta = Meta { version: FORMAT_VERSION_LATEST, embedding_dim: options.embedding_dim.unwrap_or(0) as u32 };
            meta.write(vfs, dir)?;
            Ok(meta)
        }
        None => Err(Error::corruption(dir.join(crate::meta::META_FILE_NAME), 0, "META is missing but log segments exist")),
    }
}

/// Does the file end with a valid trailer (a sealed segment)? The newest segment is
/// judged by the whole trailer — magic, checksum and a layout matching the file size — not by
/// the magic alone, which content could contain: a torn or damaged trailer on the newest
/// segment leaves it to recovery, which keeps every whole commit and cuts the rest.
fn ends_with_valid_trailer(vfs: &dyn Vfs, path: &Path) -> Result<bool> {
    let mut file = fs::open_read(vfs, path)?;
    let len = fs::file_len(file.as_ref(), path)?;
    if len < (SEGMENT_HEADER_LEN + TRAILER_LEN) as u64 {
        return Ok(false);
    }
    let mut tail = vec![0u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(len - TRAILER_LEN as u64)).map_err(|e| Error::io_at(path, "seek", e))?;
    file.read_exact(&mut tail).map_err(|e| Error::io_at(path, "read", e))?;
    match Trailer::decode_tail(&tail, len, path) {
        Ok(_) => Ok(true),
        // A whole trailer of a newer format: never mistake it for a torn tail and cut it.
        Err(error @ Error::UnsupportedVersion { .. }) => Err(error),
        Err(_) => Ok(false),
    }
}

/// Reads and scans the active segment. `None` when the file is a torn creation (shorter
/// than its header, e.g. a crash right after creating it): it is removed.
///
/// With `map_file` (a writable handle, which holds the writer lock) the file is mapped, not
/// read: when the scan finds every byte valid, that map serves the hot tier as it is (no
/// copy in this process's heap); when it finds a torn tail, the caller copies the valid
/// prefix (`truncated`) and drops the map before recovery cuts the file (io/maps.rs,
/// invariant 1). A failed map falls back to reading.
fn load_active(
    vfs: &dyn Vfs,
    path: &Path,
    segment_id: u32,
    embedding_dim: usize,
    seq_floor: u64,
    map_file: bool,
) -> Result<Option<(SegmentHeader, AlignedBytes, ScannedSegment)>> {
    let mut file = fs::open_read(vfs, path)?;
    let len = fs::file_len(file.as_ref(), path)?;
    let too_large = || Error::corruption(path, 0, "active segment larger than SEGMENT_FILE_BYTES_MAX");
    if len > crate::limits::SEGMENT_FILE_BYTES_MAX {
        return Err(too_large());
    }
    let len = usize::try_from(len).map_err(|_| too_large())?;
    let mapped = if map_file { fs::map(vfs, path).ok().filter(|map| map.bytes().len() == len) } else { None };
    let bytes = match mapped {
        Some(map) => AlignedBytes::from_map(map),
        None => {
            let mut buffer = AlignedVec::with_capacity(len);
            file.read_exact(buffer.extend_zeroed(len)).map_err(|e| Error::io_at(path, "read", e))?;
            buffer.freeze()
        }
    };
    if bytes.bytes().len() < SEGMENT_HEADER_LEN || bytes.bytes().iter().all(|&b| b == 0) {
        // The header is written and fsynced before any record is appended: a file shorter
        // than a header, or all zeros (the size reached the disk, the bytes did not), is a
        // creation cut short by a crash and holds no data.
        return Ok(None);
    }
    let header = SegmentHeader::decode(bytes.bytes(), path)?;
    if header.segment_id != segment_id || header.embedding_dim as usize != embedding_dim {
        return Err(Error::corruption(path, 0, "segment header does not match its file name or the database's dimension"));
    }
    let scan = recovery::scan_active(bytes.bytes(), path, embedding_dim, seq_floor, header.has_group_marks())?;
    Ok(Some((header, bytes, scan)))
}

/// The first `len` bytes of `bytes`, as a new aligned buffer when it must shrink.
fn truncated(bytes: AlignedBytes, len: usize) -> AlignedBytes {
    if bytes.bytes().len() == len {
        return bytes;
    }
    let mut shorter = AlignedVec::with_capacity(len);
    shorter.extend_from_slice(&bytes.bytes()[..len]);
    shorter.freeze()
}
