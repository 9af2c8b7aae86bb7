//! Reads from disk are bounded: a `META` or `MANIFEST` larger than its limit is `Corruption`
//! naming the file, found from its size before it is read (a sparse file of several GiB
//! costs nothing to make and would take long to read whole), and a symlink to an endless
//! device is refused. Method: plant the oversized files in a closed database and reopen.

use std::path::Path;

use strata::limits::{MANIFEST_FILE_BYTES_MAX, META_FILE_BYTES_MAX};
use strata::{Db, Error, Options};

/// A closed database with a cold tier (so it has a MANIFEST).
fn closed_database(path: &Path) {
    let db = Db::open(path, Options::new()).expect("open");
    db.put(b"a", b"one", None).expect("put");
    db.seal().expect("seal");
    db.compact().expect("compact");
    db.close().expect("close");
}

/// Grows `path` (sparsely) to `len` bytes.
fn grow(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).expect("open").set_len(len).expect("set_len");
}

fn assert_corruption_naming(result: strata::Result<Db>, name: &str) {
    match result {
        Err(Error::Corruption { path, detail, .. }) => {
            assert!(path.ends_with(name), "the error names {}, not {name}", path.display());
            assert!(detail.contains("limit"), "the detail says why: {detail}");
        }
        Err(other) => panic!("{name}: expected Corruption, got {other}"),
        Ok(_) => panic!("{name}: an oversized file was accepted"),
    }
}

#[test]
fn an_oversized_meta_or_manifest_is_corruption_naming_the_file() {
    for (name, len) in [("META", META_FILE_BYTES_MAX + 1), ("MANIFEST", MANIFEST_FILE_BYTES_MAX + 1), ("MANIFEST", 1 << 40)] {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("db");
        closed_database(&path);
        grow(&path.join(name), len);
        assert_corruption_naming(Db::open(&path, Options::new()), name);
        assert_corruption_naming(Db::open(&path, Options::new().read_only(true)), name);
    }
}

#[test]
fn meta_linked_to_an_endless_device_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("db");
    closed_database(&path);
    std::fs::remove_file(path.join("META")).expect("rm META");
    std::os::unix::fs::symlink("/dev/zero", path.join("META")).expect("symlink");
    let error = Db::open(&path, Options::new()).expect_err("a META linked to /dev/zero must not open");
    assert!(error.to_string().contains("symbolic link"), "{error}");
}
