//! The `MANIFEST`: which segments are live. Replaced atomically (write `MANIFEST.tmp`,
//! fdatasync, rename, fsync the directory) by each compaction; read at open. Layout:
//! `format-spec/manifest.md`.
//!
//! It lists every live cold segment, and the log segments that were live when it was
//! written. Log segment ids grow, so a log segment with an id at or above `log_floor` that
//! the manifest does not list was created after it (by a seal) and is live; a log segment
//! below `log_floor` was compacted away. A cold segment it does not list is an orphan of a
//! compaction cut short.

use std::io::Write;
use std::path::Path;

use crate::format::{crc32, get_u32, get_u64, put_u32, put_u64};
use crate::io::fs;
use crate::io::vfs::Vfs;
use crate::{Error, Result};

pub(crate) const MANIFEST_FILE_NAME: &str = "MANIFEST";
pub(crate) const MANIFEST_TEMP_NAME: &str = "MANIFEST.tmp";
const MAGIC: [u8; 8] = *b"STRATMAN";
/// Newest manifest layout this build writes and reads (3: a compaction's step, with the
/// log segments' seq floor). It writes 2 (with the write totals) for every other manifest,
/// and reads 1 to 3. A database written before the cold tier existed has no manifest: it
/// opens as `Manifest::default()`.
pub(crate) const MANIFEST_FORMAT_VERSION: u32 = 3;
/// The layout of a manifest that is not a compaction's step.
const MANIFEST_FORMAT_VERSION_WHOLE: u32 = 2;
/// The oldest manifest layout this build reads (1: without the write totals).
pub(crate) const MANIFEST_FORMAT_VERSION_READ_MIN: u32 = 1;

const VERSION_AT: usize = 8;
const GENERATION_AT: usize = 12;
const LOG_FLOOR_AT: usize = 20;
const NEXT_COLD_ID_AT: usize = 24;
const SEQ_MAX_AT: usize = 32;
const COLD_COUNT_AT: usize = 40;
const LOG_COUNT_AT: usize = 44;
/// Header length of layout version 1.
const HEADER_V1_LEN: usize = 48;
// Version 2 appends the write totals to version 1's header.
const TOTALS_SEQ_AT: usize = 48;
const TOTALS_LOGICAL_AT: usize = 56;
const TOTALS_DISK_AT: usize = 64;
const TOTALS_LOG_LEN_AT: usize = 72;
const TOTALS_LOG_ID_AT: usize = 80;
const TOTALS_RESERVED_AT: usize = 84;
/// Header length of layout version 2.
const HEADER_V2_LEN: usize = 88;
// Version 3 appends the log segments' seq floor to version 2's header.
const LOG_SEQ_FLOOR_AT: usize = 88;
/// Header length of layout version 3.
const HEADER_V3_LEN: usize = 96;
/// Per cold segment: id u64, rows u64, file length u64.
const COLD_ENTRY_LEN: usize = 24;
/// Per log segment: id u32.
const LOG_ENTRY_LEN: usize = 4;

/// One cold segment as the manifest lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ColdEntry {
    pub(crate) cold_id: u64,
    pub(crate) rows: u64,
    pub(crate) file_len: u64,
}

/// The decoded manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Bumped by every rewrite.
    pub(crate) generation: u64,
    /// Log segments with a smaller id were compacted into the cold tier.
    pub(crate) log_floor: u32,
    /// Next cold segment id to allocate (ids are never reused).
    pub(crate) next_cold_id: u64,
    /// Newest seq stored in the cold tier (0 when empty): the floor for the log's seqs.
    pub(crate) seq_max: u64,
    /// Live cold segments, ascending by key range.
    pub(crate) cold: Vec<ColdEntry>,
    /// Log segments (id >= `log_floor`) that were live when this manifest was written.
    pub(crate) logs: Vec<u32>,
    /// What the database had written when this manifest was written (for
    /// `Stats::write_amplification` across reopens); `None` from a version 1 manifest.
    pub(crate) totals: Option<WriteTotals>,
    /// `Some` in a step of a compaction published in key-range steps (`compact/mod.rs`): the
    /// cold tier's `seq_max` before that compaction. The cold tier already holds the newest
    /// versions of some keys of the listed log segments, so their seqs lie above this floor,
    /// not above `seq_max` (`log_seq_floor`). `None`: the floor is `seq_max`.
    pub(crate) step_seq_floor: Option<u64>,
}

/// The write counters as of one moment (a compaction's install, under the writer lock):
/// every byte written to the database's files, every logical byte put, and where the log
/// stood, so that open can add what was written after it (`open::write_totals`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteTotals {
    /// Every commit with a seq <= this one is counted in `logical_bytes`.
    pub(crate) seq: u64,
    /// key + content + embedding bytes of every put (and key bytes of every delete).
    pub(crate) logical_bytes: u64,
    /// Bytes written to log and cold segment files.
    pub(crate) disk_bytes: u64,
    /// The active log segment then (0: none counted) and its length then: bytes of it past
    /// `log_len`, and every log segment after it, were written later.
    pub(crate) log_id: u32,
    pub(crate) log_len: u64,
}

impl Manifest {
    /// The layout a decoded manifest was read from: 3 for a compaction's step, 2 with the
    /// write totals, 1 without them (`encode` writes layout 3 for a step, else layout 2, with
    /// zero totals when there are none).
    pub(crate) fn layout_version(&self) -> u32 {
        if self.step_seq_floor.is_some() {
            MANIFEST_FORMAT_VERSION
        } else if self.totals.is_some() {
            MANIFEST_FORMAT_VERSION_WHOLE
        } else {
            MANIFEST_FORMAT_VERSION_READ_MIN
        }
    }

    /// Every listed log segment's seqs lie above this (open and verify check it).
    pub(crate) fn log_seq_floor(&self) -> u64 {
        self.step_seq_floor.unwrap_or(self.seq_max)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let (version, header_len) = match self.step_seq_floor {
            Some(_) => (MANIFEST_FORMAT_VERSION, HEADER_V3_LEN),
            None => (MANIFEST_FORMAT_VERSION_WHOLE, HEADER_V2_LEN),
        };
        let len = header_len + self.cold.len() * COLD_ENTRY_LEN + self.logs.len() * LOG_ENTRY_LEN + 4;
        let mut buf = vec![0u8; len];
        buf[..8].copy_from_slice(&MAGIC);
        put_u32(&mut buf, VERSION_AT, version);
        put_u64(&mut buf, GENERATION_AT, self.generation);
        put_u32(&mut buf, LOG_FLOOR_AT, self.log_floor);
        put_u64(&mut buf, NEXT_COLD_ID_AT, self.next_cold_id);
        put_u64(&mut buf, SEQ_MAX_AT, self.seq_max);
        put_u32(&mut buf, COLD_COUNT_AT, self.cold.len() as u32);
        put_u32(&mut buf, LOG_COUNT_AT, self.logs.len() as u32);
        let totals = self.totals.unwrap_or_default();
        put_u64(&mut buf, TOTALS_SEQ_AT, totals.seq);
        put_u64(&mut buf, TOTALS_LOGICAL_AT, totals.logical_bytes);
        put_u64(&mut buf, TOTALS_DISK_AT, totals.disk_bytes);
        put_u64(&mut buf, TOTALS_LOG_LEN_AT, totals.log_len);
        put_u32(&mut buf, TOTALS_LOG_ID_AT, totals.log_id);
        put_u32(&mut buf, TOTALS_RESERVED_AT, 0);
        if let Some(floor) = self.step_seq_floor {
            put_u64(&mut buf, LOG_SEQ_FLOOR_AT, floor);
        }
        let mut at = header_len;
        for entry in &self.cold {
            put_u64(&mut buf, at, entry.cold_id);
            put_u64(&mut buf, at + 8, entry.rows);
            put_u64(&mut buf, at + 16, entry.file_len);
            at += COLD_ENTRY_LEN;
        }
        for &id in &self.logs {
            put_u32(&mut buf, at, id);
            at += LOG_ENTRY_LEN;
        }
        let crc = crc32(&buf[..at]);
        put_u32(&mut buf, at, crc);
        buf
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        if bytes.len() < HEADER_V1_LEN + 4 {
            return Err(Error::corruption(path, 0, format!("MANIFEST of {} bytes is shorter than its header", bytes.len())));
        }
        if bytes[..8] != MAGIC {
            return Err(Error::corruption(path, 0, "bad magic: not a strata MANIFEST"));
        }
        let version = get_u32(bytes, VERSION_AT);
        // Before the layout checks: a newer layout may differ in everything but the magic, the
        // version and the trailing CRC-32 of the bytes before it (every version keeps those).
        // A newer version whose checksum fails is a damaged version field, not a newer file:
        // Corruption, so that `repair` rebuilds it (one flipped bit must not block repair).
        if version > MANIFEST_FORMAT_VERSION {
            let crc_at = bytes.len() - 4;
            if crc32(&bytes[..crc_at]) != get_u32(bytes, crc_at) {
                return Err(Error::corruption(
                    path,
                    VERSION_AT as u64,
                    format!(
                        "MANIFEST version field reads {version} but the checksum fails: damaged (a newer MANIFEST has a valid checksum)"
                    ),
                ));
            }
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                read_min: MANIFEST_FORMAT_VERSION_READ_MIN,
                latest: MANIFEST_FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(Error::corruption(path, VERSION_AT as u64, "MANIFEST format version 0 was never written by strata"));
        }
        let header_len = match version {
            1 => HEADER_V1_LEN,
            2 => HEADER_V2_LEN,
            _ => HEADER_V3_LEN,
        };
        let cold_count = get_u32(bytes, COLD_COUNT_AT) as usize;
        let log_count = get_u32(bytes, LOG_COUNT_AT) as usize;
        let expected = header_len as u64 + cold_count as u64 * COLD_ENTRY_LEN as u64 + log_count as u64 * LOG_ENTRY_LEN as u64 + 4;
        if bytes.len() as u64 != expected {
            return Err(Error::corruption(
                path,
                COLD_COUNT_AT as u64,
                format!("MANIFEST is {} bytes, its counts say {expected}", bytes.len()),
            ));
        }
        let crc_at = bytes.len() - 4;
        if crc32(&bytes[..crc_at]) != get_u32(bytes, crc_at) {
            return Err(Error::corruption(path, crc_at as u64, "MANIFEST checksum mismatch"));
        }
        let mut manifest = Manifest {
            generation: get_u64(bytes, GENERATION_AT),
            log_floor: get_u32(bytes, LOG_FLOOR_AT),
            next_cold_id: get_u64(bytes, NEXT_COLD_ID_AT),
            seq_max: get_u64(bytes, SEQ_MAX_AT),
            cold: Vec::with_capacity(cold_count),
            logs: Vec::with_capacity(log_count),
            totals: (version >= 2).then(|| WriteTotals {
                seq: get_u64(bytes, TOTALS_SEQ_AT),
                logical_bytes: get_u64(bytes, TOTALS_LOGICAL_AT),
                disk_bytes: get_u64(bytes, TOTALS_DISK_AT),
                log_id: get_u32(bytes, TOTALS_LOG_ID_AT),
                log_len: get_u64(bytes, TOTALS_LOG_LEN_AT),
            }),
            step_seq_floor: (version >= 3).then(|| get_u64(bytes, LOG_SEQ_FLOOR_AT)),
        };
        if manifest.seq_max > crate::limits::SEQ_MAX {
            return Err(Error::corruption(path, SEQ_MAX_AT as u64, "MANIFEST seq_max beyond SEQ_MAX"));
        }
        if manifest.step_seq_floor.is_some_and(|floor| floor > manifest.seq_max) {
            return Err(Error::corruption(path, LOG_SEQ_FLOOR_AT as u64, "MANIFEST log seq floor above its seq_max"));
        }
        if version >= 2 {
            if get_u32(bytes, TOTALS_RESERVED_AT) != 0 {
                return Err(Error::corruption(path, TOTALS_RESERVED_AT as u64, "MANIFEST reserved field is not zero"));
            }
            if manifest.totals.is_some_and(|t| t.seq > crate::limits::SEQ_MAX) {
                return Err(Error::corruption(path, TOTALS_SEQ_AT as u64, "MANIFEST totals seq beyond SEQ_MAX"));
            }
        }
        let mut at = header_len;
        for _ in 0..cold_count {
            let entry = ColdEntry { cold_id: get_u64(bytes, at), rows: get_u64(bytes, at + 8), file_len: get_u64(bytes, at + 16) };
            if entry.cold_id >= manifest.next_cold_id {
                return Err(Error::corruption(path, at as u64, "cold segment id not below next_cold_id"));
            }
            manifest.cold.push(entry);
            at += COLD_ENTRY_LEN;
        }
        for _ in 0..log_count {
            let id = get_u32(bytes, at);
            if id < manifest.log_floor || manifest.logs.last().is_some_and(|&last| last >= id) {
                return Err(Error::corruption(path, at as u64, "log segment ids are below log_floor or not ascending"));
            }
            manifest.logs.push(id);
            at += LOG_ENTRY_LEN;
        }
        Ok(manifest)
    }

    /// Reads `dir/MANIFEST`; `Ok(None)` when there is none (a database without a cold tier).
    /// At most `MANIFEST_FILE_BYTES_MAX + 1` bytes are read (a bounded read).
    pub(crate) fn read(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE_NAME);
        match fs::read_bounded(vfs, &path, crate::limits::MANIFEST_FILE_BYTES_MAX, "MANIFEST")? {
            Some(bytes) => Manifest::decode(&bytes, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces `dir/MANIFEST` atomically and durably: `stage`, then `install`.
    pub(crate) fn write(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        self.stage(vfs, dir)?;
        Manifest::install(vfs, dir)
    }

    /// Writes and fdatasyncs `MANIFEST.tmp`. Until `install` renames it, the database is
    /// unchanged (open removes a left-over temp file).
    pub(crate) fn stage(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let temp = dir.join(MANIFEST_TEMP_NAME);
        if fs::exists(vfs, &temp)? {
            fs::remove_file(vfs, &temp, "remove stale")?;
        }
        let mut file = fs::create_new(vfs, &temp)?;
        file.write_all(&self.encode()).map_err(|e| Error::io_at(&temp, "write", e))?;
        fs::sync_data(file.as_ref(), &temp)
    }

    /// Renames the staged `MANIFEST.tmp` over `MANIFEST` and fsyncs the directory: the
    /// commit point. After an error here the new manifest may or may not be in effect.
    pub(crate) fn install(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let (temp, path) = (dir.join(MANIFEST_TEMP_NAME), dir.join(MANIFEST_FILE_NAME));
        fs::rename(vfs, &temp, &path)?;
        fs::sync_dir(vfs, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_flipped_byte() {
        let manifest = Manifest {
            generation: 3,
            log_floor: 7,
            next_cold_id: 12,
            seq_max: 99,
            cold: vec![ColdEntry { cold_id: 10, rows: 5, file_len: 4096 }, ColdEntry { cold_id: 11, rows: 1, file_len: 640 }],
            logs: vec![7, 9],
            totals: Some(WriteTotals { seq: 98, logical_bytes: 1 << 40, disk_bytes: 3 << 40, log_id: 9, log_len: 4096 }),
            step_seq_floor: None,
        };
        // A whole manifest (layout 2), and a compaction's step (layout 3).
        for manifest in [manifest.clone(), Manifest { step_seq_floor: Some(60), ..manifest }] {
            let bytes = manifest.encode();
            assert_eq!(get_u32(&bytes, VERSION_AT), manifest.layout_version());
            assert_eq!(Manifest::decode(&bytes, Path::new("M")).unwrap(), manifest);
            for i in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[i] ^= 0x04;
                assert!(Manifest::decode(&damaged, Path::new("M")).is_err(), "flip at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn a_step_manifest_gives_the_log_its_own_seq_floor_never_above_seq_max() {
        let whole = Manifest { seq_max: 99, next_cold_id: 1, ..Manifest::default() };
        assert_eq!(whole.log_seq_floor(), 99);
        let step = Manifest { step_seq_floor: Some(60), ..whole.clone() };
        assert_eq!(step.log_seq_floor(), 60);
        let mut bytes = Manifest { step_seq_floor: Some(100), ..whole }.encode();
        assert!(matches!(Manifest::decode(&bytes, Path::new("M")), Err(Error::Corruption { offset: 88, .. })));
        put_u64(&mut bytes, LOG_SEQ_FLOOR_AT, 99);
        let crc_at = bytes.len() - 4;
        let crc = crc32(&bytes[..crc_at]);
        put_u32(&mut bytes, crc_at, crc);
        assert_eq!(Manifest::decode(&bytes, Path::new("M")).unwrap().log_seq_floor(), 99);
    }

    #[test]
    fn a_newer_version_is_unsupported_and_a_damaged_version_field_corrupt() {
        let mut bytes = Manifest::default().encode();
        put_u32(&mut bytes, VERSION_AT, MANIFEST_FORMAT_VERSION + 1);
        // Without a matching checksum the field was damaged (a flipped bit), not written newer.
        assert!(matches!(Manifest::decode(&bytes, Path::new("M")), Err(Error::Corruption { offset: 8, .. })));
        let crc_at = bytes.len() - 4;
        let crc = crc32(&bytes[..crc_at]);
        put_u32(&mut bytes, crc_at, crc);
        assert!(matches!(
            Manifest::decode(&bytes, Path::new("M")),
            Err(Error::UnsupportedVersion { found: 4, read_min: 1, latest: 3, .. })
        ));
    }

    /// Layout version 1 (no totals) as an older build wrote it: 48-byte header, entries,
    /// checksum. It still decodes, with `totals: None`, and a flipped byte is still caught.
    #[test]
    fn a_version_1_manifest_decodes_without_totals() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(&MAGIC);
        for field in [1u32.to_le_bytes().to_vec(), 3u64.to_le_bytes().to_vec(), 7u32.to_le_bytes().to_vec()] {
            v1.extend_from_slice(&field);
        }
        v1.extend_from_slice(&12u64.to_le_bytes()); // next_cold_id
        v1.extend_from_slice(&99u64.to_le_bytes()); // seq_max
        v1.extend_from_slice(&1u32.to_le_bytes()); // cold_count
        v1.extend_from_slice(&1u32.to_le_bytes()); // log_count
        for field in [10u64, 5, 4096] {
            v1.extend_from_slice(&field.to_le_bytes());
        }
        v1.extend_from_slice(&7u32.to_le_bytes());
        let crc = crc32(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let expected = Manifest {
            generation: 3,
            log_floor: 7,
            next_cold_id: 12,
            seq_max: 99,
            cold: vec![ColdEntry { cold_id: 10, rows: 5, file_len: 4096 }],
            logs: vec![7],
            totals: None,
            step_seq_floor: None,
        };
        assert_eq!(Manifest::decode(&v1, Path::new("M")).unwrap(), expected);
        for i in 0..v1.len() {
            let mut damaged = v1.clone();
            damaged[i] ^= 0x10;
            assert!(Manifest::decode(&damaged, Path::new("M")).is_err(), "flip at byte {i} went unnoticed");
        }
        // Rewritten by this build, it is version 2 with zero totals.
        let rewritten = Manifest::decode(&expected.encode(), Path::new("M")).unwrap();
        assert_eq!(rewritten, Manifest { totals: Some(WriteTotals::default()), ..expected });
    }
}
