//! `strata::inspect`: a read-only report on every file of a database directory, one entry
//! per file (like `sqlite3_analyzer`): what kind of file it is, its format version, tier,
//! record count, size and key range. It reads the files through the same decoders open
//! uses (`Meta`, `Manifest`, `SealedSegment`, the active-segment scan, `ColdFile`) and
//! takes no lock, so it also describes a database another process has open for writing,
//! or one that does not open at all: a file that fails to decode gets its error (naming the
//! file and the byte offset) in its entry instead of stopping the report.

use std::path::Path;

use crate::cold::layout::{cold_file_name, parse_cold_file_name};
use crate::cold::segment::ColdFile;
use crate::io::fs;
use crate::io::vfs::{OsVfs, Vfs};
use crate::log::header::SegmentHeader;
use crate::log::recovery;
use crate::log::segment::SealedSegment;
use crate::manifest::{Manifest, MANIFEST_FILE_NAME};
use crate::meta::{Meta, META_FILE_NAME};
use crate::{Error, Result, Tier};

/// What a file of a database directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// `META`: format version and embedding dimension.
    Meta,
    /// `MANIFEST`: the live cold segments and the log floor.
    Manifest,
    /// `LOCK`: the file a writer holds an exclusive lock on.
    Lock,
    /// The newest log segment, the one appended to (hot tier).
    LogActive,
    /// A sealed log segment (warm tier).
    LogSealed,
    /// A log segment below the MANIFEST's log floor: compacted, awaiting deletion.
    LogCompacted,
    /// A cold segment the MANIFEST lists (cold tier).
    Cold,
    /// A cold segment the MANIFEST does not list: left by an interrupted compaction.
    ColdOrphan,
    /// A directory (e.g. `repair-<n>/`, the originals a repair moved aside).
    Directory,
    /// Any other file (temp files, files strata does not know).
    Other,
}

impl FileKind {
    /// A short lower-case name: `meta`, `manifest`, `lock`, `log-active`, `log-sealed`,
    /// `log-compacted`, `cold`, `cold-orphan`, `directory`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Meta => "meta",
            FileKind::Manifest => "manifest",
            FileKind::Lock => "lock",
            FileKind::LogActive => "log-active",
            FileKind::LogSealed => "log-sealed",
            FileKind::LogCompacted => "log-compacted",
            FileKind::Cold => "cold",
            FileKind::ColdOrphan => "cold-orphan",
            FileKind::Directory => "directory",
            FileKind::Other => "other",
        }
    }
}

/// One file of a database directory, as [`inspect`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileReport {
    /// The file's name inside the directory.
    pub name: String,
    pub kind: FileKind,
    /// The format version its header states (`None` where the file has none or it did not decode).
    pub format_version: Option<u32>,
    /// The tier whose records it stores (log and cold segments only).
    pub tier: Option<Tier>,
    /// Records it stores (every stored version: puts and deletes of a log segment, rows of
    /// a cold segment); `None` where it stores none or it did not decode.
    pub records_count: Option<u64>,
    /// Its size on disk.
    pub bytes: u64,
    /// The smallest and largest key it stores (`None` without records).
    pub key_min: Option<Vec<u8>>,
    pub key_max: Option<Vec<u8>>,
    /// Kind-specific facts, as text (the embedding dimension, the manifest's generation ...).
    pub detail: String,
    /// Why the file did not decode (the `Display` of the error: file and byte offset).
    pub error: Option<String>,
}

impl FileReport {
    fn new(name: String, kind: FileKind, bytes: u64) -> FileReport {
        FileReport {
            name,
            kind,
            format_version: None,
            tier: None,
            records_count: None,
            bytes,
            key_min: None,
            key_max: None,
            detail: String::new(),
            error: None,
        }
    }

    fn keys<'k>(&mut self, keys: impl Iterator<Item = &'k [u8]>) {
        for key in keys {
            if self.key_min.as_deref().is_none_or(|min| key < min) {
                self.key_min = Some(key.to_vec());
            }
            if self.key_max.as_deref().is_none_or(|max| key > max) {
                self.key_max = Some(key.to_vec());
            }
        }
    }
}

/// Reports on every entry of the database directory `path`, sorted by name. Read-only: takes
/// no lock, changes nothing. `Err` only when the directory cannot be listed (missing, not a
/// directory, no permission); a damaged file is an entry with [`FileReport::error`] set.
pub fn inspect(path: &Path) -> Result<Vec<FileReport>> {
    inspect_with(&OsVfs, path)
}

pub(crate) fn inspect_with(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<FileReport>> {
    let info = vfs.metadata(dir).map_err(|e| Error::io_at(dir, "open database directory", e))?;
    if !info.is_dir {
        return Err(Error::io_at(dir, "open database directory", std::io::Error::other("not a directory")));
    }
    let mut names: Vec<String> =
        vfs.list_dir(dir).map_err(|e| Error::io_at(dir, "list", e))?.into_iter().map(|n| n.to_string_lossy().into_owned()).collect();
    names.sort();
    // Facts later files are read with: the dimension (META) and the live sets (MANIFEST).
    let meta = Meta::read(vfs, dir).ok().flatten();
    let manifest = Manifest::read(vfs, dir).ok().flatten();
    let dim = meta.map_or(0, |m| m.embedding_dim as usize);
    let newest_log = names.iter().filter_map(|n| fs::parse_segment_file_name(n)).max();
    // The floor of the active segment's seqs, as open computes it: the MANIFEST's seq_max,
    // raised by every sealed segment (names sort by segment id, so they come first).
    let mut seq_floor = manifest.as_ref().map_or(0, |m| m.seq_max);
    let mut reports = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let bytes = vfs.metadata(&path).map(|m| if m.is_dir { 0 } else { m.len }).unwrap_or(0);
        let mut report = FileReport::new(name.clone(), FileKind::Other, bytes);
        let outcome = if vfs.metadata(&path).is_ok_and(|m| m.is_dir) {
            report.kind = FileKind::Directory;
            Ok(())
        } else if name == META_FILE_NAME {
            report.kind = FileKind::Meta;
            meta_report(vfs, dir, &mut report)
        } else if name == MANIFEST_FILE_NAME {
            report.kind = FileKind::Manifest;
            manifest_report(vfs, dir, &mut report)
        } else if name == fs::LOCK_FILE_NAME {
            report.kind = FileKind::Lock;
            Ok(())
        } else if let Some(segment_id) = fs::parse_segment_file_name(&name) {
            let floor = manifest.as_ref().map_or(0, |m| m.log_floor);
            let segment = LogSegment { segment_id, dim, log_floor: floor, newest: newest_log == Some(segment_id) };
            log_report(vfs, &path, segment, &mut seq_floor, &mut report)
        } else if let Some(cold_id) = parse_cold_file_name(&name).filter(|&id| name == cold_file_name(id)) {
            let listed = manifest.as_ref().is_some_and(|m| m.cold.iter().any(|e| e.cold_id == cold_id));
            report.kind = if listed { FileKind::Cold } else { FileKind::ColdOrphan };
            cold_report(vfs, &path, cold_id, dim, &mut report)
        } else {
            Ok(())
        };
        if let Err(error) = outcome {
            report.error = Some(error.to_string());
        }
        reports.push(report);
    }
    Ok(reports)
}

fn meta_report(vfs: &dyn Vfs, dir: &Path, report: &mut FileReport) -> Result<()> {
    let meta = Meta::read(vfs, dir)?.ok_or_else(|| missing(&dir.join(META_FILE_NAME)))?;
    report.format_version = Some(meta.version);
    report.detail = match meta.embedding_dim {
        0 => "no embedding dimension".to_string(),
        dim => format!("embedding dimension {dim}"),
    };
    Ok(())
}

fn manifest_report(vfs: &dyn Vfs, dir: &Path, report: &mut FileReport) -> Result<()> {
    let manifest = Manifest::read(vfs, dir)?.ok_or_else(|| missing(&dir.join(MANIFEST_FILE_NAME)))?;
    report.format_version = Some(manifest.layout_version());
    report.detail = format!(
        "generation {}, {} cold segments, log floor {}, seq max {}",
        manifest.generation,
        manifest.cold.len(),
        manifest.log_floor,
        manifest.seq_max
    );
    if let Some(totals) = manifest.totals {
        report.detail +=
            &format!(", write totals {} B logical / {} B on disk as of seq {}", totals.logical_bytes, totals.disk_bytes, totals.seq);
    }
    Ok(())
}

/// What decides how a log segment is read.
struct LogSegment {
    segment_id: u32,
    dim: usize,
    log_floor: u32,
    /// The newest log segment: the active one.
    newest: bool,
}

fn log_report(vfs: &dyn Vfs, path: &Path, segment: LogSegment, seq_floor: &mut u64, report: &mut FileReport) -> Result<()> {
    let LogSegment { segment_id, dim, log_floor, newest } = segment;
    report.kind = match (segment_id < log_floor, newest) {
        (true, _) => FileKind::LogCompacted,
        (false, true) => FileKind::LogActive,
        (false, false) => FileKind::LogSealed,
    };
    report.detail = format!("segment {segment_id}");
    if report.kind == FileKind::LogActive {
        report.tier = Some(Tier::Hot);
        let bytes = fs::read_bounded(vfs, path, crate::limits::SEGMENT_FILE_BYTES_MAX, "active segment")?.ok_or_else(|| missing(path))?;
        let header = SegmentHeader::decode(&bytes, path)?;
        report.format_version = Some(header.version);
        let scan = recovery::scan_active(&bytes, path, dim, *seq_floor, header.has_group_marks())?;
        report.records_count = Some(scan.records.len() as u64);
        report.keys(scan.records.iter().map(|r| &bytes[r.key.clone()]));
        if scan.valid_len != bytes.len() {
            report.detail.push_str(&format!(", {} bytes of unsynced tail after the last whole commit", bytes.len() - scan.valid_len));
        }
        return Ok(());
    }
    report.tier = Some(Tier::Warm);
    let segment = SealedSegment::open(vfs, path, segment_id, dim)?;
    report.format_version = Some(segment.trailer.version);
    report.records_count = Some(segment.trailer.records_count);
    let entries = segment.hint_entries()?;
    report.keys(entries.iter().map(|e| e.key));
    report.detail.push_str(&format!(", seq max {}", segment.trailer.seq_max));
    *seq_floor = (*seq_floor).max(segment.trailer.seq_max);
    Ok(())
}

fn cold_report(vfs: &dyn Vfs, path: &Path, cold_id: u64, dim: usize, report: &mut FileReport) -> Result<()> {
    report.tier = Some(Tier::Cold);
    let file = ColdFile::open(vfs, path, cold_id, dim)?;
    report.format_version = Some(file.footer.version);
    report.records_count = Some(file.rows() as u64);
    if file.rows() > 0 {
        report.key_min = Some(file.footer.min_key.clone());
        report.key_max = Some(file.footer.max_key.clone());
    }
    report.detail = format!(
        "cold segment {cold_id}, seqs {}..={}, {} logical bytes",
        file.footer.seq_min, file.footer.seq_max, file.footer.logical_bytes
    );
    Ok(())
}

fn missing(path: &Path) -> Error {
    Error::io_at(path, "read", std::io::Error::from(std::io::ErrorKind::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Options};

    #[test]
    fn every_file_of_a_database_with_every_tier_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Db::open(&path, Options::new().embedding_dim(2).auto_compact(false)).unwrap();
        db.put(b"c", b"cold", Some(&[1.0, 2.0])).unwrap();
        db.put(b"a", b"cold too", None).unwrap();
        db.compact().unwrap();
        db.put(b"m", b"warm", None).unwrap();
        db.seal().unwrap();
        db.put(b"z", b"hot", None).unwrap();
        db.put(b"b", b"hot", None).unwrap();
        db.sync().unwrap();
        std::fs::write(path.join("notes.txt"), b"x").unwrap();

        let reports = inspect(&path).unwrap();
        let of = |kind: FileKind| reports.iter().filter(|r| r.kind == kind).collect::<Vec<_>>();
        assert!(reports.iter().all(|r| r.error.is_none()), "{reports:#?}");
        assert_eq!(of(FileKind::Meta).len(), 1);
        assert_eq!(of(FileKind::Meta)[0].detail, "embedding dimension 2");
        assert_eq!(of(FileKind::Manifest).len(), 1);
        let cold = of(FileKind::Cold);
        assert_eq!(cold.len(), 1);
        assert_eq!((cold[0].records_count, cold[0].tier), (Some(2), Some(Tier::Cold)));
        assert_eq!((cold[0].key_min.as_deref(), cold[0].key_max.as_deref()), (Some(&b"a"[..]), Some(&b"c"[..])));
        let sealed = of(FileKind::LogSealed);
        assert_eq!(sealed.len(), 1);
        assert_eq!((sealed[0].records_count, sealed[0].key_min.as_deref()), (Some(1), Some(&b"m"[..])));
        let active = of(FileKind::LogActive);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].records_count, Some(2));
        assert_eq!((active[0].key_min.as_deref(), active[0].key_max.as_deref()), (Some(&b"b"[..]), Some(&b"z"[..])));
        assert_eq!(of(FileKind::Other).iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["notes.txt"]);
        assert!(reports.iter().all(|r| r.bytes == std::fs::metadata(path.join(&r.name)).unwrap().len()));
        db.close().unwrap();

        // After a clean close, and after a compaction and a clean close (the active segment
        // then holds only its close mark).
        let closed = inspect(&path).unwrap();
        assert!(closed.iter().all(|r| r.error.is_none()), "{closed:#?}");
        assert_eq!(closed.iter().find(|r| r.kind == FileKind::LogActive).unwrap().records_count, Some(2));
        let db = Db::open(&path, Options::new().auto_compact(false)).unwrap();
        db.compact().unwrap();
        db.close().unwrap();
        let compacted = inspect(&path).unwrap();
        assert!(compacted.iter().all(|r| r.error.is_none()), "{compacted:#?}");
        assert_eq!(compacted.iter().filter(|r| r.kind == FileKind::Cold).map(|r| r.records_count.unwrap()).sum::<u64>(), 5);
        assert_eq!(compacted.iter().find(|r| r.kind == FileKind::LogActive).unwrap().records_count, Some(0));
    }

    #[test]
    fn a_damaged_file_is_an_entry_with_its_error_and_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Db::open(&path, Options::new().auto_compact(false)).unwrap();
        db.put(b"k", b"v", None).unwrap();
        db.compact().unwrap();
        db.close().unwrap();
        let cold = inspect(&path).unwrap().into_iter().find(|r| r.kind == FileKind::Cold).unwrap();
        let cold_path = path.join(&cold.name);
        let mut bytes = std::fs::read(&cold_path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&cold_path, &bytes).unwrap();
        let damaged = inspect(&path).unwrap().into_iter().find(|r| r.name == cold.name).unwrap();
        let error = damaged.error.expect("damage reported");
        assert!(error.contains(&cold.name) && error.contains("offset 0"), "{error}");
        assert!(inspect(&dir.path().join("missing")).is_err());
    }
}
