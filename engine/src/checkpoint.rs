//! `Db::checkpoint`: a consistent copy of the database in a new directory, taken online.
//! Sealed and cold segments are hard-linked (they never change) or copied, and the copy
//! gets its own `MANIFEST`; the active segment is
//! copied up to the last published commit and closed with a clean-close mark.
//!
//! The copy is built in a temporary sibling directory (`.{name}.checkpoint-{pid}-{n}`) and
//! renamed to `dest` only once every file and the directory are durable: a checkpoint that
//! fails, or a crash during one, never leaves anything at `dest` that opens as a database.
//! A failed checkpoint removes its temporary directory (it holds only copies and links).

use std::io::{Read, Write};
use std::path::Path;

use crate::cold::layout::cold_file_name;
use crate::db::{PublishedState, Shared};
use crate::io::fs;
use crate::io::vfs::{File, Vfs};
use crate::log::header::SegmentHeader;
use crate::log::record;
use crate::segments::SegmentRef;
use crate::{Error, Result};

pub(crate) fn checkpoint(shared: &Shared, dest: &Path) -> Result<()> {
    let vfs = shared.options.vfs.as_ref();
    if fs::exists(vfs, dest)? {
        return Err(Error::invalid("dest", format!("{} already exists; a checkpoint needs a new directory", dest.display())));
    }
    let name = dest.file_name().ok_or_else(|| Error::invalid("dest", format!("{} has no file name", dest.display())))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let state = shared.published_state()?;
    let temp = parent.join(temp_name(name));
    fs::create_dir(vfs, &temp, false, "create checkpoint directory")?;
    if let Err(e) = build(vfs, state, &shared.dir, &temp).and_then(|()| fs::rename(vfs, &temp, dest)) {
        remove_partial(vfs, &temp);
        return Err(e);
    }
    if let Err(e) = fs::sync_dir(vfs, parent) {
        // The rename may not be durable: take the copy back rather than report a failure
        // beside a directory that opens.
        if vfs.rename(dest, &temp).is_ok() {
            remove_partial(vfs, &temp);
        }
        return Err(e);
    }
    Ok(())
}

/// A name for the temporary directory, unique within this process and across processes.
fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".checkpoint-{}-{n}", std::process::id()));
    temp
}

/// Fills `dest` (an empty directory) with the copy, every file and the directory fsynced.
fn build(vfs: &dyn Vfs, state: PublishedState, source: &Path, dest: &Path) -> Result<()> {
    let PublishedState { table, hot_end, last_seq, mut manifest } = state;
    copy_file(vfs, &source.join(crate::meta::META_FILE_NAME), &dest.join(crate::meta::META_FILE_NAME), None)?;
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
        let (from, to) = (source.join(&name), dest.join(&name));
        match segment {
            SegmentRef::Sealed(_) => link_or_copy(vfs, &from, &to)?,
            SegmentRef::Hot(_) => {
                let end = hot_end.unwrap_or(crate::log::header::SEGMENT_HEADER_LEN as u64);
                let mut file = copy_file(vfs, &from, &to, Some(end))?;
                let mut header = [0u8; crate::log::header::SEGMENT_HEADER_LEN];
                let read = fs::open_read(vfs, &to)?.read_exact(&mut header).map_err(|e| Error::io_at(&to, "read the header of", e));
                let header = read.and_then(|()| SegmentHeader::decode(&header, &to))?;
                let mark = record::encode_close_mark(last_seq, header.has_group_marks().then_some(end));
                file.write_all(mark.bytes()).map_err(|e| Error::io_at(&to, "write", e))?;
                fs::sync_data(&file, &to)?;
            }
        }
    }
    fs::sync_dir(vfs, dest)
}

/// Best effort: removes a failed checkpoint's temporary directory. It holds only copies and
/// hard links of immutable files, so removing it loses nothing; what cannot be removed is
/// left under its temporary name, which is never `dest`.
fn remove_partial(vfs: &dyn Vfs, temp: &Path) {
    if let Ok(names) = vfs.list_dir(temp) {
        for name in names {
            let _ = vfs.remove_file(&temp.join(name));
        }
    }
    let _ = vfs.remove_dir(temp);
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
