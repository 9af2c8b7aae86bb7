//! The `META` file: what is fixed for the life of a database (format version, embedding
//! dimension). Written once, atomically (temp file, fsync, rename, fsync directory).
//! Layout: `format-spec/meta.md`.

use std::io::Write;
use std::path::Path;

#[cfg(test)]
use crate::format::FORMAT_VERSION_LATEST;
use crate::format::{check_version, crc32, get_u32, put_u32};
use crate::io::fs;
use crate::io::vfs::Vfs;
use crate::{Error, Result};

pub(crate) const META_FILE_NAME: &str = "META";
const META_TEMP_NAME: &str = "META.tmp";
pub(crate) const MAGIC: [u8; 8] = *b"STRATADB";

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const EMBEDDING_DIM_AT: usize = VERSION_AT + 4;
const RESERVED_AT: usize = EMBEDDING_DIM_AT + 4;
const CRC_AT: usize = 60;
pub(crate) const META_LEN: usize = CRC_AT + 4;
const _: () = assert!(RESERVED_AT <= CRC_AT);
const _: () = assert!(crate::limits::META_FILE_BYTES_MAX == META_LEN as u64);

/// The decoded `META` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The database's format version: the newest format any of its files may use. A build
    /// whose `FORMAT_VERSION_LATEST` is older refuses the whole database (`UnsupportedVersion`)
    /// instead of ignoring what it does not know. A writable open raises it to this build's
    /// latest before it writes any file of that format.
    pub(crate) version: u32,
    /// 0 = records carry no embedding.
    pub(crate) embedding_dim: u32,
}

impl Meta {
    pub(crate) fn encode(&self) -> [u8; META_LEN] {
        let mut buf = [0u8; META_LEN];
        buf[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC);
        put_u32(&mut buf, VERSION_AT, self.version);
        put_u32(&mut buf, EMBEDDING_DIM_AT, self.embedding_dim);
        let crc = crc32(&buf[..CRC_AT]);
        put_u32(&mut buf, CRC_AT, crc);
        buf
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Meta> {
        if bytes.len() != META_LEN {
            return Err(Error::corruption(path, 0, format!("META is {} bytes, expected {META_LEN}", bytes.len())));
        }
        if bytes[MAGIC_AT..MAGIC_AT + 8] != MAGIC {
            return Err(Error::corruption(path, 0, "bad magic: not a strata database"));
        }
        if crc32(&bytes[..CRC_AT]) != get_u32(bytes, CRC_AT) {
            return Err(Error::corruption(path, CRC_AT as u64, "META checksum mismatch"));
        }
        let version = get_u32(bytes, VERSION_AT);
        check_version(path, version)?;
        if bytes[RESERVED_AT..CRC_AT].iter().any(|&b| b != 0) {
            return Err(Error::corruption(path, RESERVED_AT as u64, "reserved META bytes are not zero"));
        }
        let embedding_dim = get_u32(bytes, EMBEDDING_DIM_AT);
        if embedding_dim as usize > crate::limits::MAX_EMBEDDING_DIM {
            return Err(Error::corruption(path, EMBEDDING_DIM_AT as u64, "embedding dimension beyond MAX_EMBEDDING_DIM"));
        }
        Ok(Meta { version, embedding_dim })
    }

    /// Reads `dir/META`; `Ok(None)` when it does not exist.
    /// At most `META_FILE_BYTES_MAX + 1` bytes are read (a bounded read).
    pub(crate) fn read(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META_FILE_NAME);
        match fs::read_bounded(vfs, &path, crate::limits::META_FILE_BYTES_MAX, "META")? {
            Some(bytes) => Meta::decode(&bytes, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `dir/META` atomically and durably.
    pub(crate) fn write(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let temp = dir.join(META_TEMP_NAME);
        let _ = vfs.remove_file(&temp);
        let mut file = fs::create_new(vfs, &temp)?;
        file.write_all(&self.encode()).map_err(|e| Error::io_at(&temp, "write", e))?;
        fs::sync_data(file.as_ref(), &temp)?;
        drop(file);
        let path = dir.join(META_FILE_NAME);
        fs::rename(vfs, &temp, &path)?;
        fs::sync_dir(vfs, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_every_flipped_bit() {
        let meta = Meta { version: FORMAT_VERSION_LATEST, embedding_dim: 768 };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes, Path::new("META")).unwrap(), meta);
        for bit in 0..META_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&damaged, Path::new("META")).is_err(), "bit {bit}");
        }
    }
}
