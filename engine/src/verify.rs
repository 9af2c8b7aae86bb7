//! `Db::verify`: re-read every file and check every checksum and every cross-reference
//! (hint entries against records, commit order; cold columns, rows, key order, fences,
//! filter), stopping at the first damage.

use std::path::Path;
use std::sync::Arc;

use crate::db::{PublishedState, Shared};
use crate::io::fs;
use crate::io::vfs::Vfs;
use crate::log::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::record::{self, RecordKind};
use crate::log::recovery;
use crate::log::segment::SealedSegment;
use crate::meta::Meta;
use crate::segments::SegmentRef;
use crate::{Error, Result, VerifyReport};

pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let meta_path = shared.dir.join(crate::meta::META_FILE_NAME);
    let vfs = shared.options.vfs.as_ref();
    let missing = || Error::io_at(&meta_path, "read", std::io::Error::from(std::io::ErrorKind::NotFound));
    let meta_bytes = fs::read_bounded(vfs, &meta_path, crate::limits::META_FILE_BYTES_MAX, "META")?.ok_or_else(missing)?;
    Meta::decode(&meta_bytes, &meta_path)?;
    report.files_checked += 1;
    report.bytes_checked += meta_bytes.len() as u64;

    let PublishedState { table, hot_end, manifest, .. } = shared.published_state()?;
    // The cold tier: every column checksum, every row checksum, key order, fences, filter.
    for cold in &table.cold.segments {
        let (rows, bytes) = cold.verify()?;
        if cold.footer.seq_max > manifest.seq_max {
            return Err(Error::corruption(&cold.path, 0, "cold segment holds a seq newer than the MANIFEST's seq_max"));
        }
        report.files_checked += 1;
        report.records_checked += rows;
        report.bytes_checked += bytes;
    }
    let mut seq_floor = manifest.log_seq_floor();
    for (segment_id, segment) in &table.segments {
        if table.retired.contains(segment_id) {
            continue; // compacted: its records are checked in the cold tier
        }
        match segment {
            SegmentRef::Sealed(sealed) => {
                verify_sealed(sealed, &mut report)?;
                seq_floor = seq_floor.max(sealed.trailer.seq_max);
            }
            SegmentRef::Hot(_) => {
                let path = shared.dir.join(fs::segment_file_name(*segment_id));
                let end = hot_end.unwrap_or(SEGMENT_HEADER_LEN as u64);
                verify_active(vfs, &path, shared.embedding_dim, end, seq_floor, &mut report)?;
            }
        }
    }
    Ok(report)
}

/// Every record's checksum, the hint block against the records, the commit order.
fn verify_sealed(segment: &Arc<SealedSegment>, report: &mut VerifyReport) -> Result<()> {
    let path = &segment.path;
    segment.advise_sequential();
    let entries = segment.hint_entries()?;
    let records_end = segment.trailer.records_end as usize;
    let bytes = &segment.bytes()[..records_end];
    let mut position = SEGMENT_HEADER_LEN;
    let mut next_entry = 0usize;
    let mut commits = CommitOrder::default();
    while position < records_end {
        let view =
            record::parse(bytes, position, segment.embedding_dim).map_err(|e| Error::corruption(path, position as u64, e.detail()))?;
        commits.check(view.kind, view.seq, view.commit_end()).map_err(|detail| Error::corruption(path, position as u64, detail))?;
        if matches!(view.kind, RecordKind::Put | RecordKind::Delete) {
            let mismatch =
                |what: &str| Error::corruption(path, position as u64, format!("hint entry {next_entry} disagrees with the record: {what}"));
            let entry = entries.get(next_entry).ok_or_else(|| mismatch("no hint entry for this record"))?;
            if entry.offset as usize != position || entry.key != &bytes[view.key.clone()] || entry.seq != view.seq {
                return Err(mismatch("offset, key or seq"));
            }
            if entry.kind != view.kind
                || entry.expires_at_ms != view.expires_at_ms
                || entry.content_len as usize != view.content.len()
                || entry.has_embedding != view.embedding.is_some()
            {
                return Err(mismatch("kind, expiry, content length or embedding flag"));
            }
            next_entry += 1;
            report.records_checked += 1;
        }
        position += view.len;
    }
    if commits.open.is_some() {
        return Err(Error::corruption(path, records_end as u64, "the last commit of a sealed segment has no commit-end record"));
    }
    if position != records_end || next_entry != entries.len() {
        return Err(Error::corruption(
            path,
            records_end as u64,
            "records do not end where the trailer says, or hint entries are left over",
        ));
    }
    report.files_checked += 1;
    report.bytes_checked += segment.file_len();
    Ok(())
}

/// The active segment's published prefix `[0, end)`: whole commits only, every checksum.
fn verify_active(vfs: &dyn Vfs, path: &Path, embedding_dim: usize, end: u64, seq_floor: u64, report: &mut VerifyReport) -> Result<()> {
    let missing = || Error::io_at(path, "read", std::io::Error::from(std::io::ErrorKind::NotFound));
    let mut bytes = fs::read_bounded(vfs, path, crate::limits::SEGMENT_FILE_BYTES_MAX, "active segment")?.ok_or_else(missing)?;
    if (bytes.len() as u64) < end {
        return Err(Error::corruption(
            path,
            bytes.len() as u64,
            format!("active segment is shorter than the {end} bytes already published"),
        ));
    }
    bytes.truncate(end as usize);
    let header = SegmentHeader::decode(&bytes, path)?;
    let scan = recovery::scan_active(&bytes, path, embedding_dim, seq_floor, header.has_group_marks())?;
    if scan.valid_len != bytes.len() {
        return Err(Error::corruption(path, scan.valid_len as u64, "published bytes of the active segment do not parse as whole commits"));
    }
    report.files_checked += 1;
    report.records_checked += scan.records.len() as u64;
    report.bytes_checked += end;
    Ok(())
}

/// Commit structure: records of one commit share a seq and end with the commit-end flag;
/// each commit is newer than the last; a close mark sits between commits.
#[derive(Default)]
struct CommitOrder {
    last_seq: u64,
    open: Option<u64>,
}

impl CommitOrder {
    fn check(&mut self, kind: RecordKind, seq: u64, commit_end: bool) -> std::result::Result<(), String> {
        match (kind, self.open) {
            (RecordKind::CloseMark | RecordKind::GroupMark, Some(open)) => return Err(format!("{kind:?} inside commit {open}")),
            (RecordKind::CloseMark | RecordKind::GroupMark, None) => return Ok(()),
            (_, Some(open)) if seq != open => return Err(format!("record of seq {seq} inside commit {open}")),
            (_, None) if seq <= self.last_seq => return Err(format!("commit seq {seq} is not newer than {}", self.last_seq)),
            _ => {}
        }
        if commit_end {
            self.open = None;
            self.last_seq = seq;
        } else {
            self.open = Some(seq);
        }
        Ok(())
    }
}
