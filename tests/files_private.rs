//! Contract 10, private by default: every file strata creates is 0600 and every directory
//! 0700 whatever the umask (checkpoints too); a symlink planted in the database directory is
//! refused, not followed; deleting `LOCK` does not let a second process write. Method: the
//! umask and the second writer are child processes (this test binary run again, filtered to
//! one test), since a umask and a `flock` are per process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use strata::{Db, Error, Options};

/// Set in a child process: the directory it works in.
const CHILD_DIR_ENV: &str = "STRATA_FILES_PRIVATE_CHILD_DIR";

/// Runs `test` of this binary again as a child, with `dir` in its environment, under
/// `umask`; returns its stdout, asserting that it exited successfully.
fn run_child(test: &str, dir: &Path, umask: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Every entry under `root` (itself included): (path, mode bits, is a directory).
fn walk(root: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("stat");
        out.push((path.display().to_string(), metadata.permissions().mode() & 0o777, metadata.is_dir()));
        if metadata.is_dir() {
            pending.extend(std::fs::read_dir(&path).expect("list").map(|e| e.expect("entry").path()));
        }
    }
    out
}

/// The child's part: a database in a new nested directory with every kind of file (log
/// segments sealed and active, a cold segment, META, MANIFEST, LOCK) and a checkpoint.
fn make_every_kind_of_file(dir: &Path) {
    let db = Db::open(dir.join("nested/db"), Options::new().embedding_dim(2)).expect("open");
    db.put(b"a", b"one", Some(&[1.0, 2.0])).expect("put");
    db.seal().expect("seal");
    db.compact().expect("compact");
    db.put(b"b", b"two", None).expect("put");
    db.seal().expect("seal");
    db.put(b"c", b"three", None).expect("put");
    db.checkpoint(&dir.join("nested/checkpoint")).expect("checkpoint");
    db.close().expect("close");
}

#[test]
fn files_are_0600_and_directories_0700_whatever_the_umask() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        make_every_kind_of_file(Path::new(&dir));
        return;
    }
    for umask in ["022", "000"] {
        let root = tempfile::tempdir().expect("tempdir");
        run_child("files_are_0600_and_directories_0700_whatever_the_umask", root.path(), umask);
        let entries = walk(&root.path().join("nested"));
        let files = entries.iter().filter(|(_, _, is_dir)| !is_dir).count();
        assert!(files >= 10, "umask {umask}: expected every kind of file in both directories, found {entries:?}");
        assert!(entries.iter().any(|(p, _, _)| p.ends_with("MANIFEST")), "a cold tier was written: {entries:?}");
        for (path, mode, is_dir) in &entries {
            let expected = if *is_dir { 0o700 } else { 0o600 };
            assert_eq!(*mode, expected, "umask {umask}: {path} has mode {mode:o}");
        }
    }
}

/// A database with a sealed and an active segment, closed.
fn closed_database(path: &Path) {
    let db = Db::open(path, Options::new()).expect("open");
    db.put(b"a", b"one", None).expect("put");
    db.seal().expect("seal");
    db.put(b"b", b"two", None).expect("put");
    db.close().expect("close");
}

/// Replaces `dir/name` by a symlink to a copy of itself.
fn plant_symlink(dir: &Path, name: &str) {
    let (file, copy) = (dir.join(name), dir.join(format!("../{name}.copy")));
    std::fs::rename(&file, &copy).expect("move aside");
    std::os::unix::fs::symlink(&copy, &file).expect("symlink");
}

#[test]
fn a_symlinked_meta_or_segment_is_refused_not_followed() {
    for name in ["META", "0000000000000001.log", "0000000000000002.log"] {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("db");
        closed_database(&path);
        plant_symlink(&path, name);
        for options in [Options::new(), Options::new().read_only(true)] {
            let error = Db::open(&path, options).err().unwrap_or_else(|| panic!("{name}: a symlink was followed"));
            let message = error.to_string();
            assert!(matches!(error, Error::Io(_)), "{name}: {message}");
            assert!(message.contains(name) && message.contains("symbolic link"), "{name}: unclear error: {message}");
        }
    }
}

#[test]
fn deleting_lock_does_not_let_a_second_process_write() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        let outcome = match Db::open(&dir, Options::new()) {
            Ok(_) => "opened".to_owned(),
            Err(Error::Locked { .. }) => "locked".to_owned(),
            Err(e) => format!("error {e}"),
        };
        println!("child-open: {outcome}");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("db");
    let db = Db::open(&path, Options::new()).expect("open");
    db.put(b"k", b"v", None).expect("put");
    std::fs::remove_file(path.join("LOCK")).expect("rm LOCK");
    let stdout = run_child("deleting_lock_does_not_let_a_second_process_write", &path, "022");
    let outcome =
        stdout.lines().find_map(|l| l.split_once("child-open: ")).map(|(_, o)| o).unwrap_or_else(|| panic!("no outcome in {stdout}"));
    assert_eq!(outcome, "locked", "a second writer after rm LOCK");
    db.put(b"k2", b"v", None).expect("the first writer is unaffected");
    db.close().expect("close");
    // Once the first writer is gone, the second process gets in.
    let stdout = run_child("deleting_lock_does_not_let_a_second_process_write", &path, "022");
    assert!(stdout.contains("child-open: opened"), "after close: {stdout}");
}
