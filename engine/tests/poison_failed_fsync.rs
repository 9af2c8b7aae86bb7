//! A failed fsync poisons the handle: the failing write reports an error, no later write
//! reports success, nothing unacknowledged is served, and a reopen recovers. Method: the
//! `test-hooks` fault injector behind the I/O seam (`FaultVfs`) makes every fsync fail.
#![cfg(feature = "test-hooks")]

use strata_engine::test_hooks::FaultVfs;
use strata_engine::{Db, Durability, Error, Options};

#[test]
fn failed_fsync_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let faults = FaultVfs::counting();
    let db = Db::open(&path, Options::new().durability(Durability::Sync).vfs(faults.as_vfs())).unwrap();
    db.put(b"before", b"kept", None).unwrap();

    faults.fail_syncs(true);
    let failed = db.put(b"during", b"not acknowledged", None);
    assert!(failed.is_err(), "a write whose fsync failed must not report success");
    assert!(db.get(b"during").unwrap().is_none(), "an unacknowledged write is never served");
    faults.fail_syncs(false);

    // Even with a healthy disk again, the handle refuses writes until reopened.
    assert!(matches!(db.put(b"after", b"x", None), Err(Error::Poisoned { .. })), "later writes are refused");
    assert!(matches!(db.sync(), Err(Error::Poisoned { .. })), "sync is refused too");
    assert_eq!(db.get(b"before").unwrap().unwrap().content(), b"kept", "reads keep working");
    drop(db);

    let db = Db::open(&path, Options::new()).unwrap();
    assert_eq!(db.get(b"before").unwrap().unwrap().content(), b"kept");
    db.put(b"after", b"works again", None).unwrap();
    assert_eq!(db.get(b"after").unwrap().unwrap().content(), b"works again");
}

#[test]
fn failed_sync_call_poisons_a_none_durability_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let faults = FaultVfs::counting();
    let db = Db::open(&path, Options::new().durability(Durability::None).vfs(faults.as_vfs())).unwrap();
    db.put(b"k", b"v", None).unwrap();
    faults.fail_syncs(true);
    assert!(db.sync().is_err(), "sync must report the failed fsync");
    faults.fail_syncs(false);
    assert!(matches!(db.put(b"k2", b"v", None), Err(Error::Poisoned { .. })));
    assert!(matches!(db.sync(), Err(Error::Poisoned { .. })), "a later sync must not report success");
}
