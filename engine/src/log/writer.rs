//! The active segment (the hot tier on disk): appends whole commits, flushes, fsyncs, and
//! seals itself into a warm segment.
//!
//! **Invariant:** the file holds only whole records of whole commits up to `len`, once
//! flushed; a sealed file is never opened for writing again.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::header::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::hot::HotSegment;
use super::record::{self, RecordFields, RecordKind, RecordView};
use super::segment::SealedSegment;
use super::trailer::HintBuilder;
use crate::io::aligned::AlignedBytes;
use crate::io::fs;
use crate::io::vfs::{File, Vfs};
use crate::{Error, Result};

const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The segment being appended to, a.k.a. the active log file.
pub(crate) struct ActiveSegment {
    path: PathBuf,
    pub(crate) segment_id: u32,
    embedding_dim: usize,
    file: BufWriter<File>,
    /// Bytes appended so far (written or still buffered).
    len: u64,
    records_count: u64,
    hint: HintBuilder,
    pub(crate) hot: Arc<HotSegment>,
}

/// What recovery found in an active segment that is resumed.
pub(crate) struct ResumedSegment {
    /// The valid prefix of the file (whole commits only).
    pub(crate) bytes: Arc<AlignedBytes>,
    /// Every data record in it (close marks excluded), in file order.
    pub(crate) records: Vec<RecordView>,
}

impl ActiveSegment {
    /// Creates a new, empty segment file durably (file and directory fsynced).
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, segment_id: u32, embedding_dim: usize) -> Result<ActiveSegment> {
        let path = dir.join(fs::segment_file_name(segment_id));
        let mut file = fs::create_new(vfs, &path)?;
        let header = SegmentHeader { segment_id, embedding_dim: embedding_dim as u32 }.encode();
        file.write_all(&header).map_err(|e| Error::io_at(&path, "write", e))?;
        fs::sync_data(&file, &path)?;
        fs::sync_dir(vfs, dir)?;
        Ok(ActiveSegment {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            path,
            segment_id,
            embedding_dim,
            len: SEGMENT_HEADER_LEN as u64,
            records_count: 0,
            hint: HintBuilder::default(),
            hot: Arc::new(HotSegment::new(embedding_dim)),
        })
    }

    /// Reopens an active segment for appending after recovery: the file is cut to the
    /// recovered prefix (a torn tail is dropped) and the hot mirror and hint are rebuilt.
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
            fs::sync_data(&file, &path)?;
        }
        file.seek(SeekFrom::Start(len)).map_err(|e| Error::io_at(&path, "seek", e))?;
        let hot = Arc::new(HotSegment::new(embedding_dim));
        let mut hint = HintBuilder::default();
        for view in &resumed.records {
            hint.add(view.start() as u32, &resumed.bytes.bytes()[view.key.clone()], view);
        }
        let records_count = resumed.records.len() as u64;
        hot.add(0, resumed.bytes);
        Ok(ActiveSegment {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            path,
            segment_id,
            embedding_dim,
            len,
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

    /// Appends one stamped commit; `views` are its records, relative to `bytes`. Returns the
    /// segment offset of the commit's first byte. The bytes become readable through the hot
    /// mirror at once; the caller publishes them in the index after the durability step.
    pub(crate) fn append_commit(&mut self, bytes: Arc<AlignedBytes>, views: &[RecordView]) -> Result<u32> {
        let base = u32::try_from(self.len).map_err(|_| Error::corruption(&self.path, self.len, "segment grew past u32 offsets"))?;
        self.file.write_all(bytes.bytes()).map_err(|e| Error::io_at(&self.path, "append to", e))?;
        for view in views {
            let key = &bytes.bytes()[view.key.clone()];
            self.hint.add(base + view.start() as u32, key, view);
        }
        self.len += bytes.bytes().len() as u64;
        self.records_count += views.len() as u64;
        self.hot.add(base, bytes);
        Ok(base)
    }

    /// Hands buffered bytes to the OS.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io_at(&self.path, "write", e))
    }

    /// Flushes and fdatasyncs: everything appended so far is durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.flush()?;
        fs::sync_data(self.file.get_ref(), &self.path)
    }

    /// Appends a close mark (a clean close) and makes the whole file durable.
    pub(crate) fn write_close_mark(&mut self, last_seq: u64) -> Result<()> {
        let fields = RecordFields { kind: RecordKind::CloseMark, key: &[], content: &[], embedding: None, expires_at_ms: 0 };
        let mark = record::encode_one(&fields, last_seq, true);
        self.file.write_all(mark.bytes()).map_err(|e| Error::io_at(&self.path, "append to", e))?;
        self.len += mark.len() as u64;
        self.sync()
    }

    /// Writes the hint block and trailer, fsyncs, and reopens the file as a sealed segment.
    pub(crate) fn seal(mut self, vfs: &dyn Vfs) -> Result<SealedSegment> {
        let tail = self.hint.finish(self.len);
        self.file.write_all(&tail).map_err(|e| Error::io_at(&self.path, "append trailer to", e))?;
        self.sync()?;
        drop(self.file);
        SealedSegment::open(vfs, &self.path, self.segment_id, self.embedding_dim)
    }
}
