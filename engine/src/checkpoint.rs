//! `Db::checkpoint`: a consistent copy of the database in a new directory, taken online.
//! Sealed and cold segments are hard-linked (they never change) or copied, and the copy
//! gets its own `MANIFEST`; the active segment is
//! copied up to the last published commit and closed with a clean-close mark.

use std::io::{Read, Write};
use std::path::Path;

use crate::cold::layout::cold_file_name;
use crate::db::{PublishedState, Shared};
use crate::io::fs;
use crate::io::vfs::{File, Vfs};
use crate::log::record::{self, RecordFields, RecordKind};
use crate::segments::SegmentRef;
use crate::{Error, Result};

pub(crate) fn checkpoint(shared: &Shared, dest: &Path) -> Result<()> {
    let vfs = shared.options.vfs.as_ref();
    if fs::exists(vfs, dest)? {
        return Err(Error::invalid("dest", format!("{} already exists; a checkpoint needs a new directory", dest.display())));
    }
    let PublishedState { table, hot_end, last_seq, mut manifest } = shared.published_state()?;
    fs::create_dir(vfs, dest, false, "create checkpoint directory")?;
    copy_file(vfs, &shared.dir.join(crate::meta::META_FILE_NAME), &dest.join(crate::meta::META_FILE_NAME), None)?;
    for cold in &table.cold.segments {
        let name = cold_file_name(cold.cold_id);
        link_or_copy(vfs, &cold.path, &dest.join(name))?;
    }
    if manifest.generation > 0 {
        // The copy's own manifest: the same cold tier, the log segments copied below.
        manifest.logs = table.segments.keys().copied().filter(|id| !table.retired.contains(id) && *id >= manifest.log_floor).collect();
        manifest.write(vfs, dest)?;
    }
    for (segment_id, segment) in &table.segments {
        if table.retired.contains(segment_id) {
            continue; // compacted into the cold tier copied above
        }
        let name = fs::segment_file_name(*segment_id);
        let (from, to) = (shared.dir.join(&name), dest.join(&name));
        match segment {
            SegmentRef::Sealed(_) => link_or_copy(vfs, &from, &to)?,
            SegmentRef::Hot(_) => {
                let end = hot_end.unwrap_or(crate::log::header::SEGMENT_HEADER_LEN as u64);
                let mut file = copy_file(vfs, &from, &to, Some(end))?;
                let fields = RecordFields { kind: RecordKind::CloseMark, key: &[], content: &[], embedding: None, expires_at_ms: 0 };
                let mark = record::encode_one(&fields, last_seq, true);
                file.write_all(mark.bytes()).map_err(|e| Error::io_at(&to, "write", e))?;
                fs::sync_data(&file, &to)?;
            }
        }
    }
    fs::sync_dir(vfs, dest)?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::sync_dir(vfs, parent)?;
    }
    Ok(())
}

/// Hard-links an immutable file into the checkpoint, or copies it across file systems.
fn link_or_copy(vfs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    if vfs.hard_link(from, to).is_err() {
        copy_file(vfs, from, to, None)?;
    }
    Ok(())
}

/// Copies `from` (its first `limit` bytes, or all of it) into a new file `to`, fsynced.
fn copy_file(vfs: &dyn Vfs, from: &Path, to: &Path, limit: Option<u64>) -> Result<File> {
    let source = fs::open_read(vfs, from)?;
    let mut target = fs::create_new(vfs, to)?;
    let mut reader = source.take(limit.unwrap_or(u64::MAX));
    let copied = std::io::copy(&mut reader, &mut target).map_err(|e| Error::io_at(to, "copy into", e))?;
    if limit.is_some_and(|l| l != copied) {
        return Err(Error::corruption(from, copied, "file is shorter than its published length"));
    }
    fs::sync_data(&target, to)?;
    Ok(target)
}
