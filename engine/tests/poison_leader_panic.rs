//! A panic in the group-commit leader (a bug in strata) must not leave other writers waiting
//! forever: the handle is poisoned, every waiting writer returns `Error::Poisoned`, reads go
//! on, nothing half-written is served, and a reopen recovers every acknowledged write.
//! Method: the `test-hooks` injector makes the next leader of one database panic while it
//! holds the writer; writer threads report through a channel, so a hang shows as a missing
//! report (the receive has a generous deadline only to turn a hang into a failure).
#![cfg(feature = "test-hooks")]

use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use strata_engine::test_hooks::panic_next_leader_in;
use strata_engine::{Db, Durability, Error, Options};

const WRITERS: usize = 4;
const PUTS_PER_WRITER: usize = 50;

#[test]
fn a_panicking_leader_poisons_the_handle_and_wakes_every_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Arc::new(Db::open(&path, Options::new().durability(Durability::Sync)).unwrap());
    db.put(b"before", b"acknowledged before the panic", None).unwrap();

    panic_next_leader_in(&path);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let (report, reports) = mpsc::channel();
    for w in 0..WRITERS {
        let (db, barrier, report) = (db.clone(), barrier.clone(), report.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let mut acknowledged = Vec::new();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for i in 0..PUTS_PER_WRITER {
                    let key = format!("w{w}/{i}");
                    match db.put(key.as_bytes(), key.as_bytes(), None) {
                        Ok(()) => acknowledged.push(key),
                        Err(Error::Poisoned { .. }) => return "poisoned",
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                "finished"
            }));
            let _ = report.send((outcome.unwrap_or("panicked"), acknowledged));
        });
    }
    drop(report);
    let mut outcomes = Vec::new();
    let mut acknowledged = Vec::new();
    for _ in 0..WRITERS {
        let (outcome, keys) = reports.recv_timeout(Duration::from_secs(120)).expect("a writer hung after the leader panicked");
        outcomes.push(outcome);
        acknowledged.extend(keys);
    }
    assert!(outcomes.contains(&"panicked"), "the leader's own call panicked: {outcomes:?}");
    assert!(!outcomes.contains(&"finished"), "no writer goes on writing through a poisoned handle: {outcomes:?}");

    assert!(matches!(db.put(b"later", b"x", None), Err(Error::Poisoned { .. })), "later writes are refused");
    assert_eq!(db.get(b"before").unwrap().unwrap().content(), b"acknowledged before the panic", "reads go on");
    for key in &acknowledged {
        assert_eq!(db.get(key.as_bytes()).unwrap().unwrap().content(), key.as_bytes());
    }
    let _ = db.close(); // writes nothing more: the writer was dropped
    drop(db);

    let db = Db::open(&path, Options::new()).unwrap();
    assert_eq!(db.get(b"before").unwrap().unwrap().content(), b"acknowledged before the panic");
    for key in &acknowledged {
        assert_eq!(db.get(key.as_bytes()).unwrap().map(|r| r.content().to_vec()), Some(key.clone().into_bytes()), "{key} was acknowledged");
    }
    db.verify().unwrap();
    db.put(b"after", b"works again", None).unwrap();
}
