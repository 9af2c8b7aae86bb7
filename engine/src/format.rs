//! Format versions and the little-endian field helpers every on-disk structure uses.
//! The byte layouts themselves live next to their encoders (`log/record.rs`,
//! `log/trailer.rs`, `meta.rs`) and are specified in `format-spec/`.

/// The format version this build writes: the database version in `META` and the version of
/// every log segment it creates. Version 2 added the group mark to log segments (recovery
/// tells an unsynced tail from durable data) and made `META` the database's version, so a
/// build that does not know a feature refuses the whole database instead of ignoring it.
pub const FORMAT_VERSION_LATEST: u32 = 2;
/// The oldest format version this build reads.
pub const FORMAT_VERSION_READ_MIN: u32 = 1;

const _: () = assert!(FORMAT_VERSION_READ_MIN <= FORMAT_VERSION_LATEST);

pub(crate) fn align_up(value: usize, alignment: usize) -> usize {
    debug_assert!(alignment.is_power_of_two());
    (value + alignment - 1) & !(alignment - 1)
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
pub(crate) fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
/// Reads a little-endian u16; the caller has checked `at + 2 <= buf.len()`.
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(buf[at..at + 2].try_into().expect("2-byte slice"))
}
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4-byte slice"))
}
pub(crate) fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8-byte slice"))
}

/// CRC-32 (IEEE, as zlib) of `bytes`.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Checks a version read from disk against what this build reads (`META`, log segment headers).
pub(crate) fn check_version(path: &std::path::Path, found: u32) -> crate::Result<()> {
    if (FORMAT_VERSION_READ_MIN..=FORMAT_VERSION_LATEST).contains(&found) {
        Ok(())
    } else if found > FORMAT_VERSION_LATEST {
        Err(crate::Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            read_min: FORMAT_VERSION_READ_MIN,
            latest: FORMAT_VERSION_LATEST,
        })
    } else {
        Err(crate::Error::corruption(path, 0, format!("format version {found} was never written by strata")))
    }
}
