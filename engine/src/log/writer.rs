//! The active segment (the hot tier on disk): appends whole commits, flushes, fsyncs, and
//! seals itself into a warm segment.
//!
//! **Invariant:** the file holds only whole records of whole commits up to `len`, once
//! flushed; a sealed file is never opened for writing again.
//!
//! **Invariant:** after any failed write or fdatasync the segment is *broken*: it writes
//! nothing more, ever — not at close, not on drop. Bytes that were buffered are discarded,
//! never written again behind a torn write (the handle is poisoned; the next open cuts the
//! torn tail back to the last whole commit). That is why this type keeps its own buffer
//! instead of a `BufWriter`, which writes its buffer again when dropped.
//!
//! **Invariant (format v2):** every commit group that follows an fdatasync starts with a
//! group mark recording `durable_len`, the offset up to which the file is known durable.
//! `durable_len` only moves forward after a successful fdatasync of everything before it.
//!
//! **Writeback ahead of the seal.** Under `Durability::None` and `Flush` nothing fsyncs the
//! file until the seal, which then waits for a whole segment of dirty pages (64 MiB: tens
//! of milliseconds on the writer's thread, while every writer waits). Once
//! `WRITEBACK_BYTES` handed to the OS are not yet durable, a background thread fdatasyncs
//! them through a second file description (RocksDB's `bytes_per_sync`), so the disk writes
//! overlap the appends and the seal's own fdatasync finds little left. One writeback runs at
//! a time. Its success moves `durable_len` up to where the file ended when it started (the
//! next group mark then records it); its failure breaks the segment exactly as the
//! writer's own failed fdatasync does, and every later fdatasync of the writer waits for the
//! one in flight first, so no sync reports success after a failed one.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::hot::HotSegment;
use super::record::{self, RecordView};
use super::segment::SealedSegment;
use super::trailer::{HintBuilder, TRAILER_LEN};
use crate::io::aligned::AlignedBytes;
use crate::io::fs;
use crate::io::vfs::{File, Vfs};
use crate::io::writeback::Writeback;
use crate::{Error, Result};

/// Appends smaller than this are gathered in memory and written together.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Bytes handed to the OS and not yet durable past which a background writeback starts.
pub(crate) const WRITEBACK_BYTES: u64 = 8 << 20;

/// The segment being appended to, a.k.a. the active log file.
pub(crate) struct ActiveSegment {
    path: PathBuf,
    pub(crate) segment_id: u32,
    embedding_dim: usize,
    file: File,
    /// Appended bytes not yet handed to the OS.
    buffer: Vec<u8>,
    /// Bytes appended so far (written or still buffered).
    len: u64,
    /// Every byte before this offset has been fdatasynced.
    durable_len: u64,
    /// `durable_len` as recorded by the last group mark (the header's end before any).
    marked_durable_len: u64,
    /// The segment's header: its format version decides whether commit groups start with
    /// a group mark (v2 and later) and is repeated in the trailer.
    header: SegmentHeader,
    /// Set by the first failed write or fdatasync; nothing is written after it.
    broken: bool,
    records_count: u64,
    hint: HintBuilder,
    pub(crate) hot: Arc<HotSegment>,
    /// Background fdatasyncs of the file (module doc).
    writeback: Writeback,
}

/// What recovery found in an active segment that is resumed.
pub(crate) struct ResumedSegment {
    /// The valid prefix of the file (whole commits only).
    pub(crate) bytes: Arc<AlignedBytes>,
    /// Every data record in it (close marks excluded), in file order.
    pub(crate) records: Vec<RecordView>,
    /// The segment's header (its format version decides whether groups get marks).
    pub(crate) header: SegmentHeader,
}

impl ActiveSegment {
    /// Creates a new, empty segment file durably (file and directory fsynced), in the
    /// latest format.
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, segment_id: u32, embedding_dim: usize) -> Result<ActiveSegment> {
        let path = dir.join(fs::segment_file_name(segment_id));
        let mut file = fs::create_new(vfs, &path)?;
        let embedding_dim_u32 = u32::try_from(embedding_dim).map_err(|_| Error::invalid("embedding_dim", "beyond u32"))?;
        let header = SegmentHeader::latest(segment_id, embedding_dim_u32);
        file.write_all(&header.encode()).map_err(|e| Error::io_at(&path, "write", e))?;
        fs::sync_data(&file, &path)?;
        fs::sync_dir(vfs, dir)?;
        let len = SEGMENT_HEADER_LEN as u64;
        Ok(ActiveSegment {
            writeback: Writeback::new(path.clone()),
            file,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            path,
            segment_id,
            embedding_dim,
            len,
            durable_len: len,
            marked_durable_len: len,
            header,
            broken: false,
            records_count: 0,
            hint: HintBuilder::default(),
            hot: Arc::new(HotSegment::new(embedding_dim)),
        })
    }

    /// Reopens an active segment for appending after recovery: the file is cut to the
    /// recovered prefix (a torn tail is dropped) and fdatasynced — the prefix may have been
    /// only in the page cache (a `kill -9` under `Durability::Flush`), and the next group
    /// mark will claim it durable — and the hot mirror and hint are rebuilt.
    pub(crate) fn resume(
        vfs: &dyn Vfs,
        dir: &Path,
        segment_id: u32,
        embedding_dim: usize,
        resumed: ResumedSegment,
    ) -> Result<ActiveSegment> {
        let path = dir.join(fs::segment_file_name(segment_id));
        let mut file = fs::open_append(vfs, &path)?;
        let len = resumed.bytes.bytes().len() as u64;
        let on_disk = fs::file_len(file.as_ref(), &path)?;
        if on_disk != len {
            debug_assert!(on_disk > len, "recovery only cuts");
            file.set_len(len).map_err(|e| Error::io_at(&path, "truncate torn tail of", e))?;
        }
        fs::sync_data(&file, &path)?;
        file.seek(SeekFrom::Start(len)).map_err(|e| Error::io_at(&path, "seek", e))?;
        let hot = Arc::new(HotSegment::new(embedding_dim));
        let mut hint = HintBuilder::default();
        for view in &resumed.records {
            hint.add(view.start() as u32, &resumed.bytes.bytes()[view.key.clone()], view);
        }
        let records_count = resumed.records.len() as u64;
        // The recovered prefix is served from a map of the file, which the writer only
        // appends after (io/maps.rs, invariant 1): page cache, not this process's heap, so
        // reopening costs no RssAnon for it. A failed map keeps the copy read at open.
        let bytes = if resumed.bytes.is_file_map() {
            resumed.bytes // mapped at open, and not cut
        } else {
            match fs::map(vfs, &path) {
                Ok(map) if map.bytes().len() as u64 == len => Arc::new(AlignedBytes::from_map(map)),
                _ => resumed.bytes,
            }
        };
        hot.add(0, bytes);
        Ok(ActiveSegment {
            writeback: Writeback::new(path.clone()),
            file,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            path,
            segment_id,
            embedding_dim,
            len,
            durable_len: len,
            marked_durable_len: SEGMENT_HEADER_LEN as u64,
            header: resumed.header,
            broken: false,
            records_count,
            hint,
            hot,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn has_records(&self) -> bool {
        self.records_count > 0
    }

    /// Starts a commit group whose first commit follows `last_seq`. In format v2, when
    /// the file became more durable since the last mark (an fdatasync ran), writes a group
    /// mark recording how far: recovery then knows every byte before it is durable data,
    /// not an unsynced tail. Without a new fdatasync a mark would say nothing new.
    pub(crate) fn begin_group(&mut self, last_seq: u64) -> Result<()> {
        if !self.header.has_group_marks() || self.durable_len == self.marked_durable_len {
            return Ok(());
        }
        debug_assert!(self.durable_len > self.marked_durable_len && self.durable_len <= self.len);
        let mark = record::encode_group_mark(last_seq, self.durable_len);
        self.write_out(mark.bytes())?;
        self.marked_durable_len = self.durable_len;
        Ok(())
    }

    /// Appends one stamped commit; `views` are its records, relative to `bytes`. Returns the
    /// segment offset of the commit's first byte. The bytes become readable through the hot
    /// mirror at once; the caller publishes them in the index after the durability step.
    pub(crate) fn append_commit(&mut self, bytes: Arc<AlignedBytes>, views: &[RecordView]) -> Result<u32> {
        let base = u32::try_from(self.len).map_err(|_| Error::corruption(&self.path, self.len, "segment grew past u32 offsets"))?;
        self.write_out(bytes.bytes())?;
        for view in views {
            let key = &bytes.bytes()[view.key.clone()];
            self.hint.add(base + view.start() as u32, key, view);
        }
        self.records_count += views.len() as u64;
        self.hot.add(base, bytes);
        Ok(base)
    }

    /// Once `REGION_BYTES` or more have been handed to the OS past the hot mirror's last
    /// region, maps them as the next region (`HotSegment::add_region`): readers and searches
    /// then find those records in file order, in the page cache, instead of one buffer per
    /// commit. The bytes were written by successful writes and are only appended after
    /// (`io/maps.rs`, invariant 1). A failed map changes nothing: the commit buffers still
    /// serve every record.
    pub(crate) fn map_written(&mut self, vfs: &dyn Vfs) {
        if self.broken {
            return;
        }
        let written = self.len - self.buffer.len() as u64;
        let mapped = self.hot.mapped_end();
        if written < mapped + super::hot::REGION_BYTES {
            return;
        }
        if let Ok(map) = vfs.map_range(&self.path, mapped, written - mapped) {
            if map.bytes().len() as u64 == written - mapped {
                self.hot.add_region(Arc::new(AlignedBytes::from_map(map)));
            }
        }
    }

    /// Starts a background fdatasync once `WRITEBACK_BYTES` handed to the OS are not yet
    /// durable and none is running (module doc). An error is that of the previous
    /// writeback, which broke the segment.
    pub(crate) fn start_writeback(&mut self, vfs: &dyn Vfs) -> Result<()> {
        self.refuse_if_broken()?;
        let written = self.len - self.buffer.len() as u64;
        let from = self.durable_len.max(self.writeback.started_upto());
        if written < from + WRITEBACK_BYTES || self.writeback.is_running() {
            return Ok(());
        }
        self.finish_writeback()?;
        self.writeback.start(vfs, written);
        Ok(())
    }

    /// Waits for the writeback in flight, if any. Success makes its bytes durable; a
    /// failure breaks the segment: the kernel may have dropped the pages it failed to write.
    fn finish_writeback(&mut self) -> Result<()> {
        match self.writeback.finish() {
            Ok(Some(upto)) => {
                debug_assert!(upto <= self.len);
                self.durable_len = self.durable_len.max(upto);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.broken = true;
                self.buffer.clear();
                Err(e)
            }
        }
    }

    /// Appends `bytes` to the file, through the buffer when they are small.
    fn write_out(&mut self, bytes: &[u8]) -> Result<()> {
        self.refuse_if_broken()?;
        if self.buffer.len() + bytes.len() > WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        if bytes.len() >= WRITE_BUFFER_BYTES {
            self.write_file(bytes)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes `bytes` at the end of the file; any failure breaks the segment for good.
    fn write_file(&mut self, bytes: &[u8]) -> Result<()> {
        let written = self.file.write_all(bytes);
        self.check_written(written)
    }

    /// A failed write breaks the segment for good and discards what is buffered.
    fn check_written(&mut self, written: std::io::Result<()>) -> Result<()> {
        if let Err(e) = written {
            self.broken = true;
            self.buffer.clear();
            return Err(Error::io_at(&self.path, "append to", e));
        }
        Ok(())
    }

    fn refuse_if_broken(&self) -> Result<()> {
        if self.broken {
            return Err(Error::Poisoned { cause: format!("an earlier write or fdatasync of {} failed", self.path.display()) });
        }
        Ok(())
    }

    /// Hands buffered bytes to the OS.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.refuse_if_broken()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buffer);
        self.buffer.clear();
        self.check_written(written)
    }

    /// Flushes and fdatasyncs: everything appended so far is durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.finish_writeback()?;
        if let Err(e) = fs::sync_data(&self.file, &self.path) {
            // The kernel may have dropped the dirty pages it failed to write: never retry
            // into a false success.
            self.broken = true;
            return Err(e);
        }
        self.durable_len = self.len;
        Ok(())
    }

    /// Appends a close mark (a clean close) and makes the whole file durable.
    pub(crate) fn write_close_mark(&mut self, last_seq: u64) -> Result<()> {
        let at = self.header.has_group_marks().then_some(self.len);
        let mark = record::encode_close_mark(last_seq, at);
        self.write_out(mark.bytes())?;
        self.sync()
    }

    /// Writes the hint block and trailer, fsyncs, and reopens the file as a sealed segment.
    ///
    /// Three parts, each made durable before the next is written: the records, the hint
    /// block, the trailer. A valid trailer makes open trust the segment as sealed — its
    /// records are not scanned, its hint block must check — and a power cut may keep any
    /// page written since the last fdatasync and lose another. With one fdatasync for all
    /// three, an image could keep the trailer and lose a page of the last commit (served
    /// later as `Corruption`) or of the hint block (open fails). Written in this order, a
    /// valid trailer implies everything before it is durable; a crash before the trailer
    /// is durable leaves an active segment whose hint bytes are cut as a torn tail.
    pub(crate) fn seal(mut self, vfs: &dyn Vfs) -> Result<SealedSegment> {
        let tail = self.hint.finish(self.len, self.header.version);
        let (hint, trailer) = tail.split_at(tail.len() - TRAILER_LEN);
        if self.durable_len != self.len {
            self.sync()?;
        }
        if !hint.is_empty() {
            self.write_out(hint)?;
            self.sync()?;
        }
        self.write_out(trailer)?;
        self.sync()?;
        let sealed = SealedSegment::open(vfs, &self.path, self.segment_id, self.embedding_dim)?;
        Ok(sealed.sharing_dead_rows(self.hot.dead.clone()))
    }
}
