//! A cold segment as readers see it: a read-only map whose structure was validated at
//! open, read in place. A key lookup is: filter → fence search → binary search in one
//! fence block of the key column. Rows are slices of the map; nothing is decoded or copied.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::filter;
use super::layout::{self, BufferEntry, Column, Footer, BUFFER_ALIGN, COLUMN_COUNT, FENCE_ROWS, HEADER_LEN};
use super::writer::row_crc;
use crate::format::crc32;
use crate::io::fs;
use crate::io::maps::ReadOnlyMap;
use crate::io::vfs::Vfs;
use crate::{Error, Result};

/// Rows per entry of a segment's norms cache; also the unit of work of a search's scan.
pub(crate) const NORM_CHUNK_ROWS: usize = 8192;

/// A mapped, validated cold segment file.
pub(crate) struct ColdFile {
    pub(crate) path: PathBuf,
    pub(crate) cold_id: u64,
    pub(crate) dim: usize,
    pub(crate) footer: Footer,
    rows: usize,
    /// Leading bytes the fences skip (`layout::fence_skip` of the layout version and the
    /// footer's key bounds): every key of the segment shares them.
    fence_skip: usize,
    map: ReadOnlyMap,
    /// ‖embedding‖ of the rows (0 for rows without one), per chunk of `NORM_CHUNK_ROWS`
    /// rows: computed by the first cosine search that scans the whole chunk, while it reads
    /// the rows anyway, and kept for the life of the map (4 bytes per row). Not stored on
    /// disk (format-spec/cold-segment.md, "Norms").
    norms: Box<[std::sync::OnceLock<Box<[f32]>>]>,
    /// One bit per row: its checksum held when this handle last read it from the map.
    /// Reads check a row once per open handle, not on every read (like a block cache that
    /// verifies a block when it loads it); `Db::verify` and compaction always re-check.
    verified: Box<[std::sync::atomic::AtomicU64]>,
    /// The earliest expiry of any row (0: no row has a TTL), read once at open.
    earliest_expiry_ms: u64,
}

impl ColdFile {
    /// Maps `path` and validates everything but the data buffers: header, footer, the column
    /// directory against the row count, the checksums of the small columns, and the offset
    /// columns (monotonic, inside their data buffer) so that no later read can go out of bounds.
    pub(crate) fn open(vfs: &dyn Vfs, path: &Path, cold_id: u64, dim: usize) -> Result<ColdFile> {
        let map = fs::map(vfs, path)?;
        let bytes = map.bytes();
        let header = layout::header_decode(bytes, path)?;
        if header.cold_id != cold_id {
            let message = format!("header says cold segment {}, the file name says {cold_id}", header.cold_id);
            return Err(Error::corruption(path, 16, message));
        }
        if header.dim as usize != dim {
            let message = format!("embedding dimension {} differs from the database's {dim}", header.dim);
            return Err(Error::corruption(path, 12, message));
        }
        let (footer, footer_at) = Footer::decode(bytes, path)?;
        if footer.version != header.version {
            let message = format!("layout version {} in the tail, {} in the header", footer.version, header.version);
            return Err(Error::corruption(path, 8, message));
        }
        if footer.rows != header.rows || footer.rows > u64::from(u32::MAX) {
            return Err(Error::corruption(path, footer_at as u64, "footer row count disagrees with the header or exceeds u32"));
        }
        let rows = footer.rows as usize;
        let mut previous_end = HEADER_LEN as u64;
        for column in Column::ALL {
            let entry = footer.columns[column as usize];
            let bad = |what: String| Error::corruption(path, entry.offset, format!("{} buffer: {what}", column.name()));
            if entry.offset % BUFFER_ALIGN as u64 != 0 || entry.offset < previous_end {
                return Err(bad(format!("offset {} is not 64-aligned after the previous buffer", entry.offset)));
            }
            let end = entry.offset.checked_add(entry.len).filter(|&end| end <= footer_at as u64);
            let Some(end) = end else { return Err(bad(format!("{} bytes at {} run past the footer", entry.len, entry.offset))) };
            if column.fixed_len(rows, dim).is_some_and(|len| len as u64 != entry.len) {
                return Err(bad(format!("length {} does not match {rows} rows", entry.len)));
            }
            if column.checked_at_open() && crc32(&bytes[entry.range()]) != entry.crc {
                return Err(bad("checksum mismatch".into()));
            }
            check_zero_gap(bytes, previous_end as usize, entry.offset as usize, path)?;
            previous_end = end;
        }
        if footer_at - previous_end as usize >= BUFFER_ALIGN {
            return Err(Error::corruption(path, previous_end, "gap of 64 bytes or more before the footer"));
        }
        check_zero_gap(bytes, previous_end as usize, footer_at, path)?;
        let verified = (0..rows.div_ceil(64)).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        let cold = ColdFile {
            path: path.to_path_buf(),
            cold_id,
            dim,
            fence_skip: layout::fence_skip(footer.version, &footer.min_key, &footer.max_key),
            footer,
            rows,
            map,
            norms: (0..rows.div_ceil(NORM_CHUNK_ROWS)).map(|_| std::sync::OnceLock::new()).collect(),
            verified,
            earliest_expiry_ms: 0,
        };
        for (offsets, data) in [(Column::KeyOffsets, Column::KeyData), (Column::ContentOffsets, Column::ContentData)] {
            cold.check_offsets(offsets, data)?;
        }
        if rows > 0 && (cold.key(0) != cold.footer.min_key || cold.key(rows - 1) != cold.footer.max_key) {
            return Err(Error::corruption(path, footer_at as u64, "footer min/max key differ from the first/last key"));
        }
        cold.check_key_order()?;
        let seq_column = Column::Seq;
        if let Some(i) = cold.u64s(seq_column).iter().position(|&q| q < cold.footer.seq_min || q > cold.footer.seq_max) {
            let at = cold.entry(seq_column).offset + 8 * i as u64;
            return Err(Error::corruption(path, at, format!("seq of row {i} lies outside the footer's seq range")));
        }
        let earliest_expiry_ms = cold.u64s(Column::ExpiresAt).iter().copied().filter(|&e| e != 0).min().unwrap_or(0);
        Ok(ColdFile { earliest_expiry_ms, ..cold })
    }

    /// Keys strictly ascending and the fences matching them: what every lookup relies on.
    fn check_key_order(&self) -> Result<()> {
        let fences = self.u64s(Column::Fences);
        for row in 0..self.rows {
            let key = self.key(row);
            if row > 0 && self.key(row - 1) >= key {
                let at = self.key_range(row).start as u64;
                return Err(Error::corruption(&self.path, at, format!("cold row {row}'s key is not above the previous key")));
            }
            if row % FENCE_ROWS == 0 && fences[row / FENCE_ROWS] != layout::fence_of(key, self.fence_skip) {
                let at = self.entry(Column::Fences).offset + 8 * (row / FENCE_ROWS) as u64;
                return Err(Error::corruption(&self.path, at, format!("fence of row {row} differs from its key")));
            }
        }
        Ok(())
    }

    fn check_offsets(&self, offsets_column: Column, data_column: Column) -> Result<()> {
        let entry = self.entry(offsets_column);
        let offsets = self.u64s(offsets_column);
        let data_len = self.entry(data_column).len;
        let mut previous = 0u64;
        for (i, &offset) in offsets.iter().enumerate() {
            let valid = if i == 0 { offset == 0 } else { offset >= previous };
            if !valid || offset > data_len || (i == offsets.len() - 1 && offset != data_len) {
                let at = entry.offset + 8 * i as u64;
                return Err(Error::corruption(
                    &self.path,
                    at,
                    format!("{} entry {i} = {offset} is out of order or bounds", offsets_column.name()),
                ));
            }
            previous = offset;
        }
        Ok(())
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    pub(crate) fn entry(&self, column: Column) -> BufferEntry {
        self.footer.columns[column as usize]
    }

    pub(crate) fn buffer(&self, column: Column) -> &[u8] {
        &self.map.bytes()[self.entry(column).range()]
    }

    /// A u64 column. Buffers are 64-aligned in a page-aligned map and their lengths were
    /// checked against the row count at open, so the cast cannot fail.
    pub(crate) fn u64s(&self, column: Column) -> &[u64] {
        bytemuck::cast_slice(self.buffer(column))
    }

    pub(crate) fn row_crcs(&self) -> &[u32] {
        bytemuck::cast_slice(self.buffer(Column::RowCrc))
    }

    pub(crate) fn embedding_values(&self) -> &[f32] {
        bytemuck::cast_slice(self.buffer(Column::EmbeddingValues))
    }

    /// The cached norms of the rows of chunk `chunk` (rows from `chunk * NORM_CHUNK_ROWS`),
    /// if a search has computed them.
    pub(crate) fn cached_norms(&self, chunk: usize) -> Option<&[f32]> {
        self.norms.get(chunk)?.get().map(|n| &n[..])
    }

    /// Caches the norms of every row of chunk `chunk`. Racing searches compute the same
    /// values; the first one stays.
    pub(crate) fn cache_norms(&self, chunk: usize, norms: Box<[f32]>) {
        debug_assert_eq!(norms.len(), self.chunk_rows(chunk).len());
        if let Some(cell) = self.norms.get(chunk) {
            let _ = cell.set(norms);
        }
    }

    /// The rows of norms chunk `chunk`.
    pub(crate) fn chunk_rows(&self, chunk: usize) -> Range<usize> {
        let start = (chunk * NORM_CHUNK_ROWS).min(self.rows);
        start..(start + NORM_CHUNK_ROWS).min(self.rows)
    }

    /// Byte range in the map of row `row`'s entry in a LargeBinary column.
    fn binary_range(&self, offsets: Column, data: Column, row: usize) -> Range<usize> {
        let o = self.u64s(offsets);
        let base = self.entry(data).offset as usize;
        base + o[row] as usize..base + o[row + 1] as usize
    }

    pub(crate) fn key_range(&self, row: usize) -> Range<usize> {
        self.binary_range(Column::KeyOffsets, Column::KeyData, row)
    }

    pub(crate) fn content_range(&self, row: usize) -> Range<usize> {
        self.binary_range(Column::ContentOffsets, Column::ContentData, row)
    }

    /// Byte range in the map of row `row`'s embedding; `None` when the row has none.
    pub(crate) fn embedding_range(&self, row: usize) -> Option<Range<usize>> {
        let valid = self.buffer(Column::EmbeddingValidity)[row / 8] & (1 << (row % 8)) != 0;
        (valid && self.dim > 0).then(|| {
            let start = self.entry(Column::EmbeddingValues).offset as usize + row * self.dim * 4;
            start..start + self.dim * 4
        })
    }

    pub(crate) fn key(&self, row: usize) -> &[u8] {
        &self.map.bytes()[self.key_range(row)]
    }

    pub(crate) fn seq(&self, row: usize) -> u64 {
        self.u64s(Column::Seq)[row]
    }

    pub(crate) fn expires_at_ms(&self, row: usize) -> u64 {
        self.u64s(Column::ExpiresAt)[row]
    }

    /// Is row `row` live at `now_ms` (not expired)?
    pub(crate) fn is_live(&self, row: usize, now_ms: u64) -> bool {
        let expires = self.expires_at_ms(row);
        expires == 0 || expires > now_ms
    }

    /// Does any row expire at or before `now_ms`?
    pub(crate) fn has_expired_rows(&self, now_ms: u64) -> bool {
        self.earliest_expiry_ms != 0 && self.earliest_expiry_ms <= now_ms
    }

    /// Checks row `row` against its stored checksum.
    pub(crate) fn check_row(&self, row: usize) -> Result<()> {
        let bytes = self.map.bytes();
        let embedding = self.embedding_range(row).map(|r| &bytes[r]);
        let key_range = self.key_range(row);
        let crc = row_crc(&bytes[key_range.clone()], &bytes[self.content_range(row)], embedding, self.seq(row), self.expires_at_ms(row));
        if crc != self.row_crcs()[row] {
            return Err(Error::corruption(&self.path, key_range.start as u64, format!("cold row {row} fails its checksum")));
        }
        Ok(())
    }

    /// `check_row`, skipped when this handle already checked the row (see `verified`).
    pub(crate) fn check_row_once(&self, row: usize) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let (word, bit) = (&self.verified[row / 64], 1u64 << (row % 64));
        if word.load(Relaxed) & bit != 0 {
            return Ok(());
        }
        self.check_row(row)?;
        word.fetch_or(bit, Relaxed);
        Ok(())
    }

    /// Could `key` be in this segment (filter and key bounds)?
    pub(crate) fn may_contain(&self, key: &[u8], hash: u64) -> bool {
        self.rows > 0
            && key >= &self.footer.min_key[..]
            && key <= &self.footer.max_key[..]
            && filter::may_contain(self.buffer(Column::Filter), hash)
    }

    /// The row holding `key`, if any: filter, then `lower_bound`.
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        if !self.may_contain(key, filter::key_hash(key)) {
            return None;
        }
        let row = self.lower_bound_inside(key); // may_contain checked the key bounds
        (row < self.rows && self.key(row) == key).then_some(row)
    }

    /// The first row whose key is >= `key` (`rows()` when none). The fences narrow the
    /// search to the fence blocks whose first fence can bracket `key`; a binary search over
    /// the key column finishes it. A key inside the segment's key bounds shares the bytes
    /// the fences skip; one outside them is answered by the bounds.
    pub(crate) fn lower_bound(&self, key: &[u8]) -> usize {
        if self.rows == 0 || key <= &self.footer.min_key[..] {
            return 0;
        }
        if key > &self.footer.max_key[..] {
            return self.rows;
        }
        self.lower_bound_inside(key)
    }

    /// `lower_bound` of a key within the segment's key bounds (`min_key <= key <= max_key`,
    /// so it shares the bytes the fences skip).
    fn lower_bound_inside(&self, key: &[u8]) -> usize {
        debug_assert!(self.rows > 0 && key >= &self.footer.min_key[..] && key <= &self.footer.max_key[..]);
        let fences = self.u64s(Column::Fences);
        let prefix = layout::fence_of(key, self.fence_skip);
        // Blocks before the last one starting with a smaller prefix hold only smaller keys;
        // a block starting with a greater prefix starts with a greater key.
        let first_block = fences.partition_point(|&f| f < prefix).saturating_sub(1);
        let end_block = fences.partition_point(|&f| f <= prefix);
        self.lower_bound_in(key, first_block * FENCE_ROWS, (end_block * FENCE_ROWS).min(self.rows))
    }

    /// The first row in `[lo, hi)` whose key is >= `key` (`hi` when none), given that every
    /// row before `lo` is below `key` and every row from `hi` on is not.
    pub(crate) fn lower_bound_in(&self, key: &[u8], mut lo: usize, mut hi: usize) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The first row whose key is > `key`.
    pub(crate) fn upper_bound(&self, key: &[u8]) -> usize {
        let row = self.lower_bound(key);
        if row < self.rows && self.key(row) == key {
            row + 1
        } else {
            row
        }
    }

    /// Re-reads every byte: every column checksum, every row checksum, the key order, the
    /// fences and the filter. Returns (rows, bytes) checked.
    pub(crate) fn verify(&self) -> Result<(u64, u64)> {
        self.map.advise_sequential();
        for column in Column::ALL {
            let entry = self.entry(column);
            if crc32(self.buffer(column)) != entry.crc {
                return Err(Error::corruption(&self.path, entry.offset, format!("{} buffer checksum mismatch", column.name())));
            }
        }
        let fences = self.u64s(Column::Fences);
        for row in 0..self.rows {
            self.check_row(row)?;
            let key = self.key(row);
            let at = self.key_range(row).start as u64;
            if row > 0 && self.key(row - 1) >= key {
                return Err(Error::corruption(&self.path, at, format!("cold row {row}'s key is not above the previous key")));
            }
            if row % FENCE_ROWS == 0 && fences[row / FENCE_ROWS] != layout::fence_of(key, self.fence_skip) {
                return Err(Error::corruption(
                    &self.path,
                    self.entry(Column::Fences).offset,
                    format!("fence of row {row} differs from its key"),
                ));
            }
            if !filter::may_contain(self.buffer(Column::Filter), filter::key_hash(key)) {
                return Err(Error::corruption(&self.path, self.entry(Column::Filter).offset, format!("key filter misses row {row}'s key")));
            }
        }
        Ok((self.rows as u64, self.file_len()))
    }
}

/// The alignment padding in `[from, to)` must be zero: then every byte of the file is
/// covered by a check.
fn check_zero_gap(bytes: &[u8], from: usize, to: usize, path: &Path) -> Result<()> {
    match bytes[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(Error::corruption(path, (from + i) as u64, "alignment padding is not zero")),
        None => Ok(()),
    }
}

const _: () = assert!(COLUMN_COUNT == Column::ALL.len());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cold::writer::{write_segment, OwnedRow, OwnedRows};
    use crate::io::vfs::{OpenMode, OsVfs};

    /// The whole file, read through the seam.
    fn read_all(path: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut OsVfs.open(path, OpenMode::Read).unwrap(), &mut bytes).unwrap();
        bytes
    }

    fn row(key: &[u8], content: &[u8], embedding: Option<Vec<f32>>, seq: u64) -> OwnedRow {
        OwnedRow { key: key.to_vec(), content: content.to_vec(), embedding, seq, expires_at_ms: seq * 7 % 3 }
    }

    fn write_and_open(rows: &OwnedRows, dim: usize) -> (tempfile::TempDir, ColdFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(layout::cold_file_name(5));
        write_segment(&OsVfs, &path, 5, dim, rows, None).unwrap();
        let file = ColdFile::open(&OsVfs, &path, 5, dim).unwrap();
        (dir, file)
    }

    fn assert_round_trip(rows: &OwnedRows, file: &ColdFile) {
        assert_eq!(file.rows(), rows.0.len());
        for (i, expected) in rows.0.iter().enumerate() {
            let record = crate::Record::from_cold(&std::sync::Arc::new(ColdFile::open(&OsVfs, &file.path, 5, file.dim).unwrap()), i);
            assert_eq!(record.key(), &expected.key[..], "row {i}");
            assert_eq!(record.content(), &expected.content[..], "row {i}");
            assert_eq!(record.embedding(), expected.embedding.as_deref(), "row {i}");
            assert_eq!(record.seq(), expected.seq);
            assert_eq!(file.expires_at_ms(i), expected.expires_at_ms);
            assert_eq!(file.find(&expected.key), Some(i), "lookup of row {i}");
            file.check_row(i).unwrap();
        }
        file.verify().unwrap();
    }

    #[test]
    fn edge_rows_round_trip_and_are_found() {
        let max_key = vec![0xFFu8; crate::limits::MAX_KEY_LEN];
        let big_content = vec![0xA5u8; crate::limits::MAX_CONTENT_LEN];
        let rows = OwnedRows(vec![
            row(b"\x00", b"", None, 1),
            row(b"\x00\x00", b"", Some(vec![0.0, -0.0, f32::MIN_POSITIVE]), 2),
            row(b"a", &big_content, Some(vec![1.5, -2.5, 3.25]), 3),
            row(b"a\x00", b"x", None, 4),
            row(b"\xff", b"y", Some(vec![f32::MAX, f32::MIN, 1e-30]), 5),
            row(&max_key, b"last", None, 6),
        ]);
        let (_dir, file) = write_and_open(&rows, 3);
        assert_round_trip(&rows, &file);
        for absent in [&b""[..], b"\x00\x01", b"a\x00\x00", b"b", b"\xff\x00"] {
            assert_eq!(file.find(absent), None, "{absent:?}");
        }
    }

    #[test]
    fn one_row_and_no_dimension() {
        let rows = OwnedRows(vec![row(b"only", b"content", None, 9)]);
        let (_dir, file) = write_and_open(&rows, 0);
        assert_round_trip(&rows, &file);
        let (_dir, empty) = write_and_open(&OwnedRows::default(), 4);
        assert_eq!((empty.rows(), empty.find(b"x"), empty.lower_bound(b"x")), (0, None, 0));
        empty.verify().unwrap();
    }

    #[test]
    fn lower_bound_matches_a_linear_search_across_fence_blocks() {
        // Many keys share their first 8 bytes, so fences tie across blocks.
        let mut keys: Vec<Vec<u8>> = (0..1000u32).map(|i| format!("tenant-7/{:05}", i * 3).into_bytes()).collect();
        keys.extend((0..300u32).map(|i| vec![b'z', (i / 256) as u8, (i % 256) as u8]));
        keys.sort();
        let rows = OwnedRows(keys.iter().enumerate().map(|(i, k)| row(k, b"", None, i as u64 + 1)).collect());
        let (_dir, file) = write_and_open(&rows, 0);
        let mut probes: Vec<Vec<u8>> = keys.clone();
        probes.extend((0..3000u32).map(|i| format!("tenant-7/{:05}", i).into_bytes()));
        probes.extend([b"".to_vec(), b"tenant-7".to_vec(), b"tenant-7/".to_vec(), b"tenant-8".to_vec(), b"zz".to_vec(), vec![0xFF; 9]]);
        for probe in &probes {
            let expected = keys.partition_point(|k| k < probe);
            assert_eq!(file.lower_bound(probe), expected, "{:?}", String::from_utf8_lossy(probe));
            assert_eq!(file.find(probe).is_some(), keys.binary_search(probe).is_ok());
        }
    }

    #[test]
    fn every_flipped_byte_is_an_error_or_a_failed_row_never_a_wrong_row() {
        let rows = OwnedRows(
            (0..40u8).map(|i| row(&[b'k', i], &[i; 5], (i % 3 != 0).then(|| vec![f32::from(i), 0.5]), u64::from(i) + 1)).collect(),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(layout::cold_file_name(5));
        write_segment(&OsVfs, &path, 5, 2, &rows, None).unwrap();
        let good = read_all(&path);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            let mut file = OsVfs.open(&path, OpenMode::ReadWrite).unwrap();
            std::io::Write::write_all(&mut file, &bad).unwrap();
            drop(file);
            let Ok(file) = ColdFile::open(&OsVfs, &path, 5, 2) else { continue };
            assert!(file.verify().is_err(), "flip at {at} passed open and verify");
            // Whatever opened: a row either fails its check or is exactly what was written.
            for (i, expected) in rows.0.iter().enumerate() {
                if file.check_row(i).is_ok() {
                    let record = crate::Record::from_cold(&std::sync::Arc::new(ColdFile::open(&OsVfs, &path, 5, 2).unwrap()), i);
                    assert_eq!(
                        (record.key(), record.content(), record.embedding()),
                        (&expected.key[..], &expected.content[..], expected.embedding.as_deref()),
                        "flip at {at}, row {i}"
                    );
                }
            }
        }
    }
}
