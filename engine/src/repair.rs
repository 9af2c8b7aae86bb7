//! `strata::repair`: offline salvage of every intact record of every tier into a rebuilt
//! database (DESIGN.md contracts 3 and 9; the steps: `format-spec/recovery.md`, "Repair").
//!
//! 1. Take the writer lock, finish an interrupted repair, drop a stale staging directory.
//! 2. A database that opens (read-only) and verifies is left as it is.
//! 3. Salvage: every log segment the database still needs is scanned for whole commits of
//!    checksummed records (by its hint block when that survived, else at every 8-aligned
//!    offset); every cold segment yields the rows whose row checksum holds. Per key the
//!    newest salvaged version (by seq) wins; a tombstone as the newest version deletes it.
//! 4. Build the new database in `repair-<n>.tmp/new/` (cold segments with the original seqs
//!    and expiries, a MANIFEST, META), fsync, check it opens and verifies.
//! 5. Swap, crash-safe: rename `repair-<n>.tmp` to `repair-<n>` (the commit point), move the
//!    originals into `repair-<n>/`, rename `new/` to `incoming/`, move its files into the
//!    database directory, remove `incoming/`. Every step fsyncs the directories it changed;
//!    a later `repair` or writable open rolls an interrupted swap forward.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cold::layout::{self, cold_file_name, parse_cold_file_name, Column, Footer};
use crate::cold::writer::{row_crc, write_segment, RowData, RowSource};
use crate::format::crc32;
use crate::io::fs::{self, DirLock};
use crate::io::vfs::Vfs;
use crate::log::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::record::{self, RecordKind, RecordView, RECORD_ALIGN, RECORD_HEADER_LEN};
use crate::log::trailer::{HintEntry, Trailer, TRAILER_LEN};
use crate::manifest::{ColdEntry, Manifest, MANIFEST_FILE_NAME, MANIFEST_TEMP_NAME};
use crate::meta::{Meta, META_FILE_NAME};
use crate::stats::{DamagedFile, LostRange, RepairReport};
use crate::{Db, Error, Options, Result};

/// Prefix of the directories a repair keeps the originals in: `repair-<n>`.
const ASIDE_PREFIX: &str = "repair-";
/// Suffix of a repair's staging directory, before its commit point.
const STAGING_SUFFIX: &str = ".tmp";
/// The rebuilt files, inside the aside directory, before the originals were moved.
const NEW_DIR: &str = "new";
/// The rebuilt files, once the originals were moved: being moved into the database.
const INCOMING_DIR: &str = "incoming";

pub(crate) fn repair(vfs_handle: &Arc<dyn Vfs>, dir: &Path) -> Result<RepairReport> {
    let vfs = vfs_handle.as_ref();
    // Not a database (no file of one, no repair of one): an error, and no LOCK file left.
    if !is_dir(vfs, dir) || (!has_database_files(vfs, dir)? && aside_dirs(vfs, dir)?.is_empty()) {
        return Err(Error::io_at(dir, "repair: no strata database at", std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let _lock = DirLock::acquire(vfs, dir)?;
    finish_interrupted(vfs, dir, false)?;
    remove_stale_staging(vfs, dir)?;
    match Db::open(dir, read_only_options(vfs_handle)).and_then(|db| db.verify()) {
        Ok(verified) => return Ok(RepairReport { records_salvaged: verified.records_checked, ..RepairReport::default() }),
        Err(Error::Corruption { .. }) => {}
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !has_database_files(vfs, dir)? => {
            return Err(Error::Io(e)); // not a database at all: nothing to salvage, nothing changed
        }
        Err(Error::Io(e)) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io(e)),
        Err(Error::Io(_)) => {}          // META missing beside other files: salvage
        Err(other) => return Err(other), // a newer format, say: never rebuilt by this build
    }
    let mut salvage = Salvage::default();
    let embedding_dim = embedding_dim(vfs, dir, &mut salvage.report)?;
    let sources = sources(vfs, dir, &mut salvage.report)?;
    for (i, path) in sources.logs.iter().enumerate() {
        salvage_log(vfs, path, embedding_dim, i + 1 == sources.logs.len(), &mut salvage)?;
    }
    for path in &sources.colds {
        salvage_cold(vfs, path, embedding_dim, &mut salvage)?;
    }
    let number = next_aside_number(vfs, dir)?;
    let staging = dir.join(format!("{ASIDE_PREFIX}{number}{STAGING_SUFFIX}"));
    build(vfs_handle, &staging, embedding_dim, &mut salvage)?;
    let aside = dir.join(format!("{ASIDE_PREFIX}{number}"));
    vfs.rename(&staging, &aside).map_err(|e| Error::io_at(&aside, "rename staged repair into", e))?;
    fs::sync_dir(vfs, dir)?; // the commit point: from here on the swap is rolled forward
    finish_swap(vfs, dir, &aside)?;
    let mut report = salvage.report;
    report.rebuilt = true;
    report.originals_dir = Some(aside);
    report.bytes_lost = report.damaged_files.iter().map(|f| covered_bytes(&f.lost_ranges)).sum();
    report.records_lost = report.damaged_files.iter().map(|f| f.records_lost).sum();
    Ok(report)
}

/// Bytes covered by `ranges` (sorted by start), each byte counted once: a damaged record and
/// the commit dropped around it overlap.
fn covered_bytes(ranges: &[LostRange]) -> u64 {
    debug_assert!(ranges.windows(2).all(|w| w[0].start <= w[1].start), "lost ranges are sorted");
    let (mut total, mut reached) = (0u64, 0u64);
    for range in ranges {
        let start = range.start.max(reached);
        if range.end > start {
            total += range.end - start;
            reached = range.end;
        }
    }
    total
}

/// What salvage found so far: the newest version of every key, and the report.
#[derive(Default)]
struct Salvage {
    versions: BTreeMap<Vec<u8>, Salvaged>,
    /// Newest seq of any salvaged version, tombstones included: the rebuilt database's
    /// `seq_max`, so that new commits stay above every seq ever stored.
    seq_max: u64,
    report: RepairReport,
}

/// One salvaged version of a key.
struct Salvaged {
    seq: u64,
    expires_at_ms: u64,
    /// `None`: a tombstone.
    content: Option<Vec<u8>>,
    embedding: Option<Vec<f32>>,
}

impl Salvage {
    /// Keeps `version` if it is newer than what `key` has. Equal seqs are copies of one
    /// version (a log record and the cold row compaction made of it).
    fn offer(&mut self, key: &[u8], version: Salvaged) {
        self.report.records_salvaged += 1;
        self.seq_max = self.seq_max.max(version.seq);
        match self.versions.get_mut(key) {
            Some(held) if held.seq >= version.seq => {}
            Some(held) => *held = version,
            None => {
                self.versions.insert(key.to_vec(), version);
            }
        }
    }
}

/// The database's embedding dimension: from META, else from the first log or cold header
/// that decodes (a damaged or missing META is reported).
fn embedding_dim(vfs: &dyn Vfs, dir: &Path, report: &mut RepairReport) -> Result<usize> {
    let path = dir.join(META_FILE_NAME);
    let problem = match Meta::read(vfs, dir) {
        Ok(Some(meta)) => return usize::try_from(meta.embedding_dim).map_err(|_| Error::corruption(&path, 0, "dimension beyond usize")),
        Ok(None) => None,
        Err(Error::Corruption { detail, .. }) => Some(detail),
        Err(other) => return Err(other),
    };
    let len = vfs.metadata(&path).map_or(0, |m| m.len);
    let lost_ranges = problem.into_iter().map(|detail| LostRange { start: 0, end: len, detail }).collect();
    report.damaged_files.push(DamagedFile { path, missing: len == 0, lost_ranges, ..DamagedFile::default() });
    for (_, log) in fs::list_segments(vfs, dir)? {
        let head = read_prefix(vfs, &log, SEGMENT_HEADER_LEN)?;
        if let Ok(header) = SegmentHeader::decode(&head, &log) {
            return usize::try_from(header.embedding_dim).map_err(|_| Error::corruption(&log, 0, "dimension beyond usize"));
        }
    }
    for (_, cold) in crate::open::list_cold(vfs, dir)? {
        let head = read_prefix(vfs, &cold, layout::HEADER_LEN + layout::TAIL_LEN)?;
        if let Ok(header) = layout::header_decode(&head, &cold) {
            return usize::try_from(header.dim).map_err(|_| Error::corruption(&cold, 0, "dimension beyond usize"));
        }
    }
    Ok(0)
}

fn read_prefix(vfs: &dyn Vfs, path: &Path, len: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(len);
    fs::open_read(vfs, path)?.take(len as u64).read_to_end(&mut bytes).map_err(|e| Error::io_at(path, "read", e))?;
    Ok(bytes)
}

/// Missing log segments of one gap listed one by one in a repair report; the rest of a longer
/// gap is one entry.
const GAP_FILES_LISTED: usize = 16;

/// The files salvage reads.
struct Sources {
    logs: Vec<PathBuf>,
    colds: Vec<PathBuf>,
}

/// Chooses the files to salvage from. With a readable MANIFEST only the live ones: a log
/// segment below its `log_floor` or a cold segment it does not list was superseded by a
/// compaction that dropped tombstones, so its versions could bring deleted keys back.
/// Without one, every file (an interrupted compaction's leftovers hold copies of live
/// versions, same seqs). Missing files are reported.
fn sources(vfs: &dyn Vfs, dir: &Path, report: &mut RepairReport) -> Result<Sources> {
    let manifest_path = dir.join(MANIFEST_FILE_NAME);
    let manifest = match Manifest::read(vfs, dir) {
        Ok(manifest) => manifest,
        Err(Error::Corruption { detail, .. }) => {
            let end = vfs.metadata(&manifest_path).map_or(0, |m| m.len);
            let lost_ranges = vec![LostRange { start: 0, end, detail }];
            report.damaged_files.push(DamagedFile { path: manifest_path.clone(), lost_ranges, ..DamagedFile::default() });
            None
        }
        Err(other) => return Err(other),
    };
    let floor = manifest.as_ref().map_or(1, |m| m.log_floor.max(1));
    let logs: Vec<(u32, PathBuf)> = fs::list_segments(vfs, dir)?.into_iter().filter(|(id, _)| manifest.is_none() || *id >= floor).collect();
    let all_colds = crate::open::list_cold(vfs, dir)?;
    let colds: Vec<PathBuf> = match &manifest {
        Some(m) => all_colds.iter().filter(|(id, _)| m.cold.iter().any(|e| e.cold_id == *id)).map(|(_, p)| p.clone()).collect(),
        None => all_colds.iter().map(|(_, p)| p.clone()).collect(),
    };
    let mut missing: Vec<PathBuf> = Vec::new();
    if let Some(m) = &manifest {
        let newest = logs.last().map_or(0, |(id, _)| *id);
        missing.extend(m.logs.iter().filter(|&&id| id > newest).map(|&id| dir.join(fs::segment_file_name(id))));
        missing.extend(
            m.cold.iter().filter(|e| !all_colds.iter().any(|(id, _)| *id == e.cold_id)).map(|e| dir.join(cold_file_name(e.cold_id))),
        );
    } else if !all_colds.is_empty() && logs.first().is_some_and(|(id, _)| *id != 1) && !fs::exists(vfs, &manifest_path)? {
        missing.push(manifest_path.clone());
    }
    // Gaps: from the floor (or, without a MANIFEST, from the oldest segment) to the newest.
    // A gap is listed file by file up to `GAP_FILES_LISTED`; a longer one (a crafted or
    // damaged file name such as segment 2^32 - 1) by its first files and one entry for the rest,
    // so the report stays bounded whatever the names say.
    let mut expected = if manifest.is_some() { floor } else { logs.first().map_or(1, |(id, _)| *id) };
    let mut summaries = Vec::new();
    for (id, _) in &logs {
        let gap = u64::from(id.saturating_sub(expected));
        missing.extend((expected..*id).take(GAP_FILES_LISTED).map(|gap| dir.join(fs::segment_file_name(gap))));
        if gap > GAP_FILES_LISTED as u64 {
            let first_unlisted = expected + GAP_FILES_LISTED as u32;
            let detail = format!(
                "{} more log segments are missing, {} to {}",
                gap - GAP_FILES_LISTED as u64,
                fs::segment_file_name(first_unlisted),
                fs::segment_file_name(id - 1)
            );
            let path = dir.join(fs::segment_file_name(first_unlisted));
            summaries.push(DamagedFile {
                path,
                missing: true,
                lost_ranges: vec![LostRange { start: 0, end: 0, detail }],
                ..DamagedFile::default()
            });
        }
        expected = id.saturating_add(1);
    }
    report.damaged_files.extend(missing.into_iter().map(|path| DamagedFile { path, missing: true, ..DamagedFile::default() }));
    report.damaged_files.extend(summaries);
    Ok(Sources { logs: logs.into_iter().map(|(_, p)| p).collect(), colds })
}

/// What one log segment gave up: its lost ranges and lost records.
#[derive(Default)]
struct FileLoss {
    ranges: Vec<LostRange>,
    records_lost: u64,
    exact: bool,
}

impl FileLoss {
    fn lose(&mut self, start: usize, end: usize, detail: impl Into<String>) {
        debug_assert!(start <= end);
        if start < end {
            self.ranges.push(LostRange { start: start as u64, end: end as u64, detail: detail.into() });
        }
    }

    /// The file ends at `at` where more must follow (a sealed segment without its trailer, an
    /// empty cold segment): an empty range there, so the file is named even when no byte
    /// of it is known to be lost.
    fn ends_early(&mut self, at: usize, detail: impl Into<String>) {
        if !self.ranges.iter().any(|r| r.end == at as u64) {
            self.ranges.push(LostRange { start: at as u64, end: at as u64, detail: detail.into() });
        }
    }

    fn record(self, path: &Path, report: &mut RepairReport) {
        if !self.ranges.is_empty() || self.records_lost > 0 {
            let mut ranges = self.ranges;
            ranges.sort_by_key(|r| (r.start, r.end));
            report.damaged_files.push(DamagedFile {
                path: path.to_path_buf(),
                missing: false,
                lost_ranges: ranges,
                records_lost: self.records_lost,
                records_lost_is_exact: self.exact,
            });
        }
    }
}

/// Salvages the whole commits of one log segment. A sealed segment whose trailer and hint
/// block survived is read by its hints (exact: every record of every commit is listed);
/// otherwise the records are found by scanning (`scan_commits`). Every segment but the
/// `newest` was sealed: without a valid trailer it was cut short or damaged.
fn salvage_log(vfs: &dyn Vfs, path: &Path, embedding_dim: usize, newest: bool, salvage: &mut Salvage) -> Result<()> {
    let map = fs::map(vfs, path)?;
    let bytes = map.bytes();
    let mut loss = FileLoss::default();
    match SegmentHeader::decode(bytes, path) {
        Ok(header) if usize::try_from(header.embedding_dim).ok() == Some(embedding_dim) => {}
        Ok(_) => loss.lose(0, SEGMENT_HEADER_LEN.min(bytes.len()), "segment header: dimension differs from the database's"),
        Err(error @ Error::UnsupportedVersion { .. }) => return Err(error),
        Err(error) => loss.lose(0, SEGMENT_HEADER_LEN.min(bytes.len()), error_detail(&error)),
    }
    let trailer = match Trailer::decode(bytes, path) {
        Ok(trailer) => Some(trailer),
        Err(error @ Error::UnsupportedVersion { .. }) => return Err(error),
        Err(_) => None, // an active segment has none; a damaged one is scanned like it
    };
    let records_end = trailer.and_then(|t| usize::try_from(t.records_end).ok()).unwrap_or(bytes.len());
    let hints = trailer.map(|t| (t, t.hint_entries(bytes, path)));
    match hints {
        Some((trailer, Ok(entries))) => {
            let kept = salvage_by_hints(&bytes[..records_end], &entries, embedding_dim, &mut loss, salvage);
            loss.records_lost = trailer.records_count.saturating_sub(kept);
            loss.exact = true;
        }
        Some((_, Err(error))) => {
            loss.lose(records_end, bytes.len() - TRAILER_LEN, format!("hint block: {}; records found by scanning", error_detail(&error)));
            scan_commits(&bytes[..records_end], embedding_dim, &mut loss, salvage);
        }
        None => {
            scan_commits(bytes, embedding_dim, &mut loss, salvage);
            if !newest {
                let detail = "no valid trailer, though a newer segment follows: cut short or damaged; what followed is lost";
                loss.ends_early(bytes.len(), detail);
            }
        }
    }
    loss.record(path, &mut salvage.report);
    Ok(())
}

fn error_detail(error: &Error) -> String {
    match error {
        Error::Corruption { offset, detail, .. } => format!("{detail} (at byte {offset})"),
        other => other.to_string(),
    }
}

/// The version a checksummed Put or Delete record holds.
fn version_of(bytes: &[u8], view: &RecordView) -> Salvaged {
    let content = (view.kind == RecordKind::Put).then(|| bytes[view.content.clone()].to_vec());
    let embedding = view.embedding.clone().map(|range| {
        bytes[range]
            .chunks_exact(4)
            .map(|c| {
                let mut le = [0u8; 4];
                le.copy_from_slice(c);
                f32::from_le_bytes(le)
            })
            .collect()
    });
    Salvaged { seq: view.seq, expires_at_ms: view.expires_at_ms, content, embedding }
}

/// Reads every record its hint entry lists; a commit (the entries of one seq) is kept only
/// if every one of its records is intact and the last one ends the commit. Returns the
/// records kept.
fn salvage_by_hints(records: &[u8], entries: &[HintEntry<'_>], embedding_dim: usize, loss: &mut FileLoss, salvage: &mut Salvage) -> u64 {
    let mut kept = 0u64;
    let mut first = 0usize;
    while first < entries.len() {
        let seq = entries[first].seq;
        let end = first + entries[first..].iter().take_while(|e| e.seq == seq).count();
        debug_assert!(end > first);
        let mut views = Vec::with_capacity(end - first);
        for (i, entry) in entries.iter().enumerate().take(end).skip(first) {
            let extent_end = entries.get(i + 1).map_or(records.len(), |next| next.offset as usize);
            match record::parse(records, entry.offset as usize, embedding_dim) {
                Ok(view) if &records[view.key.clone()] == entry.key && view.seq == seq && view.kind == entry.kind => views.push(view),
                Ok(_) => loss.lose(entry.offset as usize, extent_end, "record differs from its hint entry"),
                Err(error) => loss.lose(entry.offset as usize, extent_end, error.detail()),
            }
        }
        if views.len() == end - first && views.last().is_some_and(RecordView::commit_end) {
            for view in &views {
                salvage.offer(&records[view.key.clone()], version_of(records, view));
            }
            kept += views.len() as u64;
        } else if let (false, Some(a), Some(b)) = (views.is_empty(), entries.get(first), entries.get(end - 1)) {
            let extent_end = entries.get(end).map_or(records.len(), |next| next.offset as usize);
            let detail = format!("commit of seq {seq}: {} of its {} records intact, dropped whole", views.len(), end - first);
            loss.lose(a.offset as usize, extent_end.max(b.offset as usize), detail);
        }
        first = end;
    }
    kept
}

/// A commit being collected by `scan_commits`.
struct OpenCommit {
    views: Vec<RecordView>,
    /// It started right after the header, a commit end or a mark: no record of it can be
    /// hidden in damaged bytes before it.
    clean_start: bool,
}

/// Finds records at every 8-aligned offset after the header (skipping over each valid one)
/// and keeps whole commits: consecutive records of one seq, the last one ending the commit,
/// that start at a clean boundary (the header's end, or right after a commit end or a mark).
/// A commit right after damaged bytes is dropped: records of it may be in those bytes (a
/// batch is all or nothing). Record kinds other than Put and Delete (close marks, and marks
/// newer builds write) are stepped over.
fn scan_commits(bytes: &[u8], embedding_dim: usize, loss: &mut FileLoss, salvage: &mut Salvage) {
    let mut position = SEGMENT_HEADER_LEN;
    let mut expected = SEGMENT_HEADER_LEN; // where the next record starts if nothing is damaged
    let mut clean = true;
    let mut newest_kept = 0u64;
    let mut commit: Option<OpenCommit> = None;
    // Bounded: each step advances `position` by 8 bytes or by a whole record.
    while position + RECORD_HEADER_LEN <= bytes.len() {
        let Ok(view) = record::parse(bytes, position, embedding_dim) else {
            position += RECORD_ALIGN;
            continue;
        };
        if view.start() != expected {
            loss.lose(expected, view.start(), "bytes that are not a valid record (damage or a torn tail)");
            drop_commit(commit.take(), loss, "its next record is damaged");
            clean = false;
        }
        position = view.start() + view.len;
        expected = position;
        if !matches!(view.kind, RecordKind::Put | RecordKind::Delete) {
            drop_commit(commit.take(), loss, "a mark interrupts it");
            clean = true;
            continue;
        }
        if commit.as_ref().is_some_and(|c| c.views.first().is_some_and(|f| f.seq != view.seq)) {
            drop_commit(commit.take(), loss, "it has no commit end");
            clean = false;
        }
        let open = commit.get_or_insert_with(|| OpenCommit { views: Vec::new(), clean_start: clean });
        let end = view.commit_end();
        open.views.push(view);
        if end {
            if let Some(done) = commit.take() {
                keep_commit(done, bytes, loss, salvage, &mut newest_kept);
            }
            clean = true;
        }
    }
    drop_commit(commit.take(), loss, "it has no commit end");
    // `expected` lies past the end of a file shorter than the header (whose loss
    // `salvage_log` already reported).
    loss.lose(expected.min(bytes.len()), bytes.len(), "bytes that are not a valid record (damage or a torn tail)");
}

/// Keeps a whole commit found by the scan. Commits reach a segment in seq order, so one
/// whose seq is not above the last one kept is not a commit of this segment: a record image
/// that damaged bytes (content holding a copy of strata records) happened to expose.
fn keep_commit(commit: OpenCommit, bytes: &[u8], loss: &mut FileLoss, salvage: &mut Salvage, newest_kept: &mut u64) {
    let seq = commit.views.first().map_or(0, |v| v.seq);
    if !commit.clean_start {
        drop_commit(Some(commit), loss, "it follows damaged bytes that may hold its first records");
        return;
    }
    if seq <= *newest_kept {
        drop_commit(Some(commit), loss, "its seq is not above the previous commit's (a record image, not a commit)");
        return;
    }
    *newest_kept = seq;
    for view in &commit.views {
        salvage.offer(&bytes[view.key.clone()], version_of(bytes, view));
    }
}

/// A commit that cannot be proven whole: its intact records are lost too (and counted).
fn drop_commit(commit: Option<OpenCommit>, loss: &mut FileLoss, why: &str) {
    let Some(commit) = commit else { return };
    let (Some(first), Some(last)) = (commit.views.first(), commit.views.last()) else { return };
    let detail = format!("commit of seq {} ({} intact records) dropped whole: {why}", first.seq, commit.views.len());
    loss.lose(first.start(), last.start() + last.len, detail);
    loss.records_lost += commit.views.len() as u64;
}

/// Salvages the rows of one cold segment whose row checksum holds. Needs the footer (the
/// column directory); buffers are read with bounds checks only, whatever their checksums say.
/// One path for intact and damaged files, not `ColdFile`: `ColdFile::open` refuses a file
/// whose small columns fail their checksums, and the row checksum decides a row either way.
fn salvage_cold(vfs: &dyn Vfs, path: &Path, embedding_dim: usize, salvage: &mut Salvage) -> Result<()> {
    let map = fs::map(vfs, path)?;
    let bytes = map.bytes();
    let mut loss = FileLoss::default();
    let header_rows = match layout::header_decode(bytes, path) {
        Ok(header) => Some(header.rows),
        Err(error @ Error::UnsupportedVersion { .. }) => return Err(error),
        Err(error) => {
            loss.lose(0, layout::HEADER_LEN.min(bytes.len()), error_detail(&error));
            None
        }
    };
    let (footer, footer_at) = match Footer::decode(bytes, path) {
        Ok(decoded) => decoded,
        Err(error @ Error::UnsupportedVersion { .. }) => return Err(error),
        Err(error) => {
            loss.lose(0, bytes.len(), format!("footer unreadable, no row can be located: {}", error_detail(&error)));
            loss.ends_early(bytes.len(), "the file ends before its footer: every row is lost");
            loss.records_lost = header_rows.unwrap_or(0);
            loss.exact = header_rows.is_some();
            loss.record(path, &mut salvage.report);
            return Ok(());
        }
    };
    for column in Column::ALL {
        let entry = footer.columns[column as usize];
        let buffer = column_bytes(bytes, &footer, column);
        if buffer.is_none_or(|b| crc32(b) != entry.crc) {
            let start = usize::try_from(entry.offset).unwrap_or(usize::MAX).min(bytes.len());
            let end = usize::try_from(entry.offset.saturating_add(entry.len)).unwrap_or(usize::MAX).min(bytes.len());
            loss.lose(start, end, format!("{} buffer checksum mismatch; rows salvaged by their row checksums", column.name()));
        }
    }
    lose_nonzero_padding(bytes, &footer, footer_at, &mut loss);
    let rows = footer.rows;
    // A row needs two key offsets: whatever the footer claims, the walk is bounded by the file.
    let locatable = column_bytes(bytes, &footer, Column::KeyOffsets).map_or(0, |b| (b.len() / 8).saturating_sub(1));
    let mut kept = 0u64;
    for row in 0..usize::try_from(rows).unwrap_or(usize::MAX).min(locatable) {
        if let Some((key, version)) = cold_row(bytes, &footer, row, embedding_dim) {
            salvage.offer(&key, version);
            kept += 1;
        }
    }
    loss.records_lost = rows.saturating_sub(kept);
    loss.exact = true;
    loss.record(path, &mut salvage.report);
    Ok(())
}

/// The alignment padding before each buffer and before the footer must be zero: non-zero
/// bytes there are damage. No row lies in them, so no row is lost, but the file is named
/// with the range that was wrong (a rebuild is never reported with no damaged file).
fn lose_nonzero_padding(bytes: &[u8], footer: &Footer, footer_at: usize, loss: &mut FileLoss) {
    let buffers = Column::ALL.iter().map(|&c| footer.columns[c as usize]).map(|e| (e.offset, e.offset.saturating_add(e.len)));
    let mut previous_end = layout::HEADER_LEN as u64;
    for (start, end) in buffers.chain([(footer_at as u64, footer_at as u64)]) {
        let to = usize::try_from(start).unwrap_or(usize::MAX).min(footer_at);
        let from = usize::try_from(previous_end).unwrap_or(usize::MAX).min(to);
        let gap = &bytes[from..to];
        if let (Some(first), Some(last)) = (gap.iter().position(|&b| b != 0), gap.iter().rposition(|&b| b != 0)) {
            loss.lose(from + first, from + last + 1, "alignment padding is not zero (no row lies there)");
        }
        previous_end = previous_end.max(end);
    }
}

/// The bytes of `column`'s buffer, if the directory entry lies inside the file.
fn column_bytes<'a>(bytes: &'a [u8], footer: &Footer, column: Column) -> Option<&'a [u8]> {
    let entry = footer.columns[column as usize];
    let start = usize::try_from(entry.offset).ok()?;
    bytes.get(start..start.checked_add(usize::try_from(entry.len).ok()?)?)
}

fn u64_at(buffer: &[u8], index: usize) -> Option<u64> {
    let start = index.checked_mul(8)?;
    Some(u64::from_le_bytes(buffer.get(start..start.checked_add(8)?)?.try_into().ok()?))
}

/// Entry `row` of a LargeBinary column.
fn binary_at<'a>(bytes: &'a [u8], footer: &Footer, offsets: Column, data: Column, row: usize) -> Option<&'a [u8]> {
    let offsets = column_bytes(bytes, footer, offsets)?;
    let (start, end) = (usize::try_from(u64_at(offsets, row)?).ok()?, usize::try_from(u64_at(offsets, row.checked_add(1)?)?).ok()?);
    column_bytes(bytes, footer, data)?.get(start..end)
}

/// Row `row` of a cold segment, if every part of it is in bounds and its checksum holds.
fn cold_row(bytes: &[u8], footer: &Footer, row: usize, embedding_dim: usize) -> Option<(Vec<u8>, Salvaged)> {
    let key = binary_at(bytes, footer, Column::KeyOffsets, Column::KeyData, row)?;
    let content = binary_at(bytes, footer, Column::ContentOffsets, Column::ContentData, row)?;
    let has_embedding = column_bytes(bytes, footer, Column::EmbeddingValidity)?.get(row / 8)? & (1 << (row % 8)) != 0;
    let embedding = match (has_embedding, embedding_dim) {
        (true, dim) if dim > 0 => {
            let width = dim.checked_mul(4)?;
            let start = row.checked_mul(width)?;
            Some(column_bytes(bytes, footer, Column::EmbeddingValues)?.get(start..start.checked_add(width)?)?)
        }
        _ => None,
    };
    let seq = u64_at(column_bytes(bytes, footer, Column::Seq)?, row)?;
    let expires_at_ms = u64_at(column_bytes(bytes, footer, Column::ExpiresAt)?, row)?;
    let crc_at = row.checked_mul(4)?;
    let stored = u32::from_le_bytes(column_bytes(bytes, footer, Column::RowCrc)?.get(crc_at..crc_at.checked_add(4)?)?.try_into().ok()?);
    let valid = key.len() <= crate::limits::MAX_KEY_LEN && content.len() <= crate::limits::MAX_CONTENT_LEN;
    if key.is_empty() || !valid || row_crc(key, content, embedding, seq, expires_at_ms) != stored {
        return None;
    }
    let embedding = embedding.map(|b| {
        b.chunks_exact(4)
            .map(|c| {
                let mut le = [0u8; 4];
                le.copy_from_slice(c);
                f32::from_le_bytes(le)
            })
            .collect()
    });
    Some((key.to_vec(), Salvaged { seq, expires_at_ms, content: Some(content.to_vec()), embedding }))
}

/// The live versions to write, in key order, as a cold segment's rows.
struct Rows<'a>(Vec<(&'a [u8], &'a Salvaged)>);

impl RowSource for Rows<'_> {
    fn rows(&self) -> usize {
        self.0.len()
    }
    fn row(&self, index: usize) -> RowData<'_> {
        let (key, version) = self.0[index];
        RowData {
            key,
            content: version.content.as_deref().unwrap_or_default(),
            embedding: version.embedding.as_deref(),
            seq: version.seq,
            expires_at_ms: version.expires_at_ms,
        }
    }
}

/// Writes the rebuilt database into `staging/new/`: the live versions as cold segments (the
/// original seqs and expiries), a MANIFEST whose `seq_max` is the newest seq salvaged, META;
/// all fsynced. Then opens and verifies it, before anything of the original is touched.
fn build(vfs_handle: &Arc<dyn Vfs>, staging: &Path, embedding_dim: usize, salvage: &mut Salvage) -> Result<()> {
    let new = staging.join(NEW_DIR);
    let vfs = vfs_handle.as_ref();
    fs::create_dir(vfs, &new, true, "create")?;
    let live: Vec<(&[u8], &Salvaged)> =
        salvage.versions.iter().filter(|(_, v)| v.content.is_some()).map(|(k, v)| (k.as_slice(), v)).collect();
    let written = live.len() as u64;
    let mut entries = Vec::new();
    let mut run: Vec<(&[u8], &Salvaged)> = Vec::new();
    let mut run_bytes = 0u64;
    let flush = |run: &mut Vec<(&[u8], &Salvaged)>, entries: &mut Vec<ColdEntry>| -> Result<()> {
        let cold_id = entries.len() as u64 + 1;
        let rows = Rows(std::mem::take(run));
        let summary = write_segment(vfs, &new.join(cold_file_name(cold_id)), cold_id, embedding_dim, &rows, None)?;
        entries.push(ColdEntry { cold_id, rows: summary.rows, file_len: summary.file_len });
        Ok(())
    };
    for (key, version) in live {
        let bytes = (key.len() + version.content.as_ref().map_or(0, Vec::len) + embedding_dim * 4) as u64;
        if !run.is_empty() && run_bytes + bytes > crate::limits::COLD_SEGMENT_BYTES_DEFAULT {
            flush(&mut run, &mut entries)?;
            run_bytes = 0;
        }
        run.push((key, version));
        run_bytes += bytes;
    }
    if !run.is_empty() {
        flush(&mut run, &mut entries)?;
    }
    let manifest = Manifest {
        generation: 1,
        log_floor: 1,
        next_cold_id: entries.len() as u64 + 1,
        seq_max: salvage.seq_max,
        cold: entries,
        logs: Vec::new(),
        // The repaired database's history starts here (its cold files are not counted).
        totals: None,
        step_seq_floor: None,
    };
    manifest.write(vfs, &new)?;
    Meta {
        version: crate::format::FORMAT_VERSION_LATEST,
        embedding_dim: u32::try_from(embedding_dim).map_err(|_| Error::invalid("embedding_dim", "beyond u32"))?,
    }
    .write(vfs, &new)?;
    fs::sync_dir(vfs, &new)?;
    fs::sync_dir(vfs, staging)?;
    // The rebuilt database has no log segment: verify checks exactly its cold rows.
    let verified = Db::open(&new, read_only_options(vfs_handle))?.verify()?;
    if verified.records_checked != written {
        return Err(Error::corruption(
            &new,
            0,
            format!(
                "the rebuilt database holds {} records, {written} were salvaged; nothing of the original was changed",
                verified.records_checked
            ),
        ));
    }
    salvage.report.records_written = written;
    Ok(())
}

/// Is `name` a file of the database (what a swap moves aside)?
fn is_database_file(name: &str) -> bool {
    matches!(name, META_FILE_NAME | "META.tmp" | MANIFEST_FILE_NAME | MANIFEST_TEMP_NAME)
        || fs::parse_segment_file_name(name).is_some()
        || parse_cold_file_name(name).is_some()
}

fn has_database_files(vfs: &dyn Vfs, dir: &Path) -> Result<bool> {
    Ok(file_names(vfs, dir)?.iter().any(|n| is_database_file(n)))
}

/// The names of the plain files in `dir` (symlinks followed, as every open does), sorted.
fn file_names(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in vfs.list_dir(dir).map_err(|e| Error::io_at(dir, "list", e))? {
        let Some(name) = name.to_str() else { continue };
        let path = dir.join(name);
        match vfs.metadata(&path) {
            Ok(info) if !info.is_dir => names.push(name.to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // a dangling link
            Err(e) => return Err(Error::io_at(&path, "stat", e)),
        }
    }
    names.sort();
    Ok(names)
}

/// Renames `from` to `to`, refusing with `Corruption` (`refusal`) when `to` exists: the swap
/// never replaces a file it did not put there.
fn move_without_overwrite(vfs: &dyn Vfs, from: &Path, to: &Path, refusal: &str, action: &str) -> Result<()> {
    if fs::exists(vfs, to)? {
        return Err(Error::corruption(to, 0, refusal));
    }
    vfs.rename(from, to).map_err(|e| Error::io_at(to, action, e))
}

/// The names of every entry in `dir` (files, links, directories), sorted.
fn entry_names(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> =
        vfs.list_dir(dir).map_err(|e| Error::io_at(dir, "list", e))?.into_iter().filter_map(|n| n.into_string().ok()).collect();
    names.sort();
    Ok(names)
}

/// Is `path` a directory? (A missing or unreadable path is not.)
fn is_dir(vfs: &dyn Vfs, path: &Path) -> bool {
    vfs.metadata(path).is_ok_and(|info| info.is_dir)
}

/// Options of the read-only opens repair makes (of the original, then of the rebuilt copy).
fn read_only_options(vfs: &Arc<dyn Vfs>) -> Options {
    let mut options = Options::new().read_only(true);
    options.vfs = vfs.clone();
    options
}

/// The `repair-<n>` directories (and staging `repair-<n>.tmp`) in `dir`: (n, staging, path).
fn aside_dirs(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, bool, PathBuf)>> {
    let mut found = Vec::new();
    for name in vfs.list_dir(dir).map_err(|e| Error::io_at(dir, "list", e))? {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ASIDE_PREFIX) else { continue };
        let (digits, staging) = match rest.strip_suffix(STAGING_SUFFIX) {
            Some(digits) => (digits, true),
            None => (rest, false),
        };
        let path = dir.join(name);
        if let (Ok(n), true) = (digits.parse::<u64>(), is_dir(vfs, &path)) {
            found.push((n, staging, path));
        }
    }
    found.sort();
    Ok(found)
}

fn next_aside_number(vfs: &dyn Vfs, dir: &Path) -> Result<u64> {
    Ok(aside_dirs(vfs, dir)?.iter().map(|(n, _, _)| n + 1).max().unwrap_or(1))
}

/// A staging directory is a repair that crashed before its commit point: the database is
/// the original, and the staging holds only files that repair built. Removed.
fn remove_stale_staging(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    for (_, staging, path) in aside_dirs(vfs, dir)? {
        if staging {
            fs::remove_tree(vfs, &path, "remove stale repair staging")?;
            fs::sync_dir(vfs, dir)?;
        }
    }
    Ok(())
}

/// Rolls forward a repair that passed its commit point but did not finish its swap (a crash).
/// Called by `repair` and by every open: a read-only open cannot finish it and says so.
pub(crate) fn finish_interrupted(vfs: &dyn Vfs, dir: &Path, read_only: bool) -> Result<()> {
    if !is_dir(vfs, dir) {
        return Ok(());
    }
    for (_, staging, aside) in aside_dirs(vfs, dir)? {
        let unfinished = is_dir(vfs, &aside.join(NEW_DIR)) || is_dir(vfs, &aside.join(INCOMING_DIR));
        if staging || !unfinished {
            continue;
        }
        if read_only {
            return Err(Error::corruption(
                &aside,
                0,
                "a repair was interrupted while swapping in the rebuilt files; open the database for writing or run strata::repair to finish it",
            ));
        }
        finish_swap(vfs, dir, &aside)?;
    }
    Ok(())
}

/// The swap after the commit point; every step can be repeated after a crash. Phase 1
/// (`new/` exists): move every original database file into `aside`, then rename `new/` to
/// `incoming/`. Phase 2 (`incoming/` exists): move its files into `dir`, remove it.
fn finish_swap(vfs: &dyn Vfs, dir: &Path, aside: &Path) -> Result<()> {
    let (new, incoming) = (aside.join(NEW_DIR), aside.join(INCOMING_DIR));
    if is_dir(vfs, &new) {
        // Every entry under a database file's name goes aside, a directory too: left in place
        // it would stand where the rebuilt database expects a file (found by the
        // `open_directory` fuzz target: a directory named like log segment 1).
        for name in entry_names(vfs, dir)?.into_iter().filter(|n| is_database_file(n)) {
            // Never over an original: something other than this swap changed the files.
            let refusal = "an interrupted repair finds this file both aside and in the database; resolve by hand";
            move_without_overwrite(vfs, &dir.join(&name), &aside.join(&name), refusal, "move original aside to")?;
        }
        fs::sync_dir(vfs, aside)?;
        fs::sync_dir(vfs, dir)?;
        vfs.rename(&new, &incoming).map_err(|e| Error::io_at(&incoming, "rename", e))?;
        fs::sync_dir(vfs, aside)?;
    }
    if is_dir(vfs, &incoming) {
        for name in file_names(vfs, &incoming)? {
            // Phase 1 moved every original aside, and each move takes its file out of
            // `incoming/`: a file already in place was put by something other than this swap
            // (found by the `open_directory` fuzz target).
            let refusal = "an interrupted repair would move a rebuilt file over this one; resolve by hand";
            move_without_overwrite(vfs, &incoming.join(&name), &dir.join(&name), refusal, "move rebuilt file to")?;
        }
        fs::sync_dir(vfs, dir)?;
        vfs.remove_dir(&incoming).map_err(|e| Error::io_at(&incoming, "remove", e))?;
        fs::sync_dir(vfs, aside)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> LostRange {
        LostRange { start, end, detail: String::from("x") }
    }

    /// A segment image: the header, then `records` (kind, key, seq, commit end) in order.
    fn segment(records: &[(RecordKind, &[u8], u64, bool)]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = SegmentHeader::latest(1, 0).encode().to_vec();
        let mut starts = Vec::new();
        for &(kind, key, seq, end) in records {
            let content: &[u8] = if kind == RecordKind::Put { b"some content" } else { b"" };
            let fields = record::RecordFields { kind, key, content, embedding: None, expires_at_ms: 0 };
            starts.push(bytes.len());
            bytes.extend_from_slice(record::encode_one(&fields, seq, end).bytes());
        }
        (bytes, starts)
    }

    fn scanned(bytes: &[u8]) -> (BTreeMap<Vec<u8>, u64>, FileLoss) {
        let (mut loss, mut salvage) = (FileLoss::default(), Salvage::default());
        scan_commits(bytes, 0, &mut loss, &mut salvage);
        (salvage.versions.into_iter().map(|(k, v)| (k, v.seq)).collect(), loss)
    }

    #[test]
    fn the_scan_keeps_whole_commits_and_drops_what_damage_may_have_split() {
        use RecordKind::{CloseMark, Delete, Put};
        let records: [(RecordKind, &[u8], u64, bool); 7] = [
            (Put, b"a", 5, true),
            (Put, b"b", 6, false),
            (Delete, b"c", 6, true),
            (CloseMark, b"", 6, true),
            (Put, b"d", 7, true),
            (Put, b"e", 8, true),
            (Put, b"f", 9, true),
        ];
        let (bytes, starts) = segment(&records);
        let (kept, loss) = scanned(&bytes);
        assert_eq!(kept.keys().map(|k| k.as_slice()).collect::<Vec<_>>(), [b"a", b"b", b"c", b"d", b"e", b"f"]);
        assert!(loss.ranges.is_empty(), "an intact segment loses nothing");

        // Damage in the batch's second record: the batch goes whole; the mark after it is a
        // boundary, so `d` is kept.
        let mut damaged = bytes.clone();
        damaged[starts[2] + 20] ^= 1;
        let (kept, loss) = scanned(&damaged);
        assert_eq!(kept.keys().map(|k| k.as_slice()).collect::<Vec<_>>(), [b"a", b"d", b"e", b"f"]);
        assert_eq!(loss.records_lost, 1, "the intact `b` of the broken batch is counted");

        // Damage in `d`: `e` follows damaged bytes and cannot be proven whole; `f` can.
        let mut damaged = bytes.clone();
        damaged[starts[4] + 33] ^= 1;
        let (kept, _) = scanned(&damaged);
        assert_eq!(kept.keys().map(|k| k.as_slice()).collect::<Vec<_>>(), [b"a", b"b", b"c", b"f"]);
    }

    #[test]
    fn the_scan_of_a_segment_shorter_than_its_header_loses_nothing_more() {
        // Found by the `open_directory` fuzz target: an empty or torn-in-the-header log
        // segment tripped `lose`'s start <= end (the header's end lies past the file's).
        for len in [0, 1, SEGMENT_HEADER_LEN - 1, SEGMENT_HEADER_LEN] {
            let (kept, loss) = scanned(&vec![0u8; len]);
            assert!(kept.is_empty() && loss.ranges.is_empty(), "{len} bytes: the header's own loss is reported by salvage_log");
        }
    }

    #[test]
    fn the_scan_drops_a_commit_whose_seq_goes_back() {
        use RecordKind::Put;
        let (bytes, _) = segment(&[(Put, b"a", 5, true), (Put, b"old-image", 3, true), (Put, b"b", 6, true)]);
        let (kept, loss) = scanned(&bytes);
        assert_eq!(kept, BTreeMap::from([(b"a".to_vec(), 5), (b"b".to_vec(), 6)]));
        assert_eq!(loss.records_lost, 1);
    }

    #[test]
    fn overlapping_lost_ranges_count_each_byte_once() {
        assert_eq!(covered_bytes(&[]), 0);
        assert_eq!(covered_bytes(&[range(0, 64), range(0, 64)]), 64);
        assert_eq!(covered_bytes(&[range(10, 20), range(15, 30), range(40, 50)]), 30);
        assert_eq!(covered_bytes(&[range(0, 100), range(10, 20)]), 100);
    }

    #[test]
    fn database_file_names_are_recognised_and_nothing_else() {
        for name in ["META", "MANIFEST", "MANIFEST.tmp", "META.tmp", "0000000000000001.log", "00000000000000ab.cold"] {
            assert!(is_database_file(name), "{name}");
        }
        for name in ["LOCK", "repair-1", "notes.txt", "1.log", "MANIFEST.bak"] {
            assert!(!is_database_file(name), "{name}");
        }
    }
}
