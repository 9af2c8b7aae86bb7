//! Goal: a database left idle costs no CPU. Once the idle period has passed with nothing to
//! do, the maintenance worker sleeps a whole period at a time; it used to look again every
//! 10 ms for as long as the handle stayed open (100 wake-ups a second).
//!
//! Method: the worker thread's voluntary context switches (`/proc/self/task/*/status`, Linux
//! only) over one second of an idle handle whose idle period is 200 ms. Its own process (a
//! test file of its own), so the only `strata-maintenance` thread is this test's. Sleeping
//! longer on a loaded machine only lowers the count, so the bound cannot fail spuriously.

#![cfg(target_os = "linux")]

use std::time::Duration;

use strata::{Db, Options};

/// The voluntary context switches of the threads named `name` in this process (the kernel
/// keeps the first 15 bytes of a thread's name).
fn switches(name: &str) -> Vec<u64> {
    let name = &name[..name.len().min(15)];
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("list tasks") {
        let dir = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).expect("the field");
        out.push(line.split_whitespace().nth(1).expect("a value").parse().expect("a number"));
    }
    out
}

#[test]
fn an_idle_handle_wakes_its_worker_about_once_per_idle_period() {
    let temp = tempfile::tempdir().expect("tempdir");
    let idle = Duration::from_millis(200);
    let db = Db::open(temp.path(), Options::new().embedding_dim(4).compaction_idle(idle)).expect("open");
    db.put(b"k", b"v", Some(&[1.0, 2.0, 3.0, 4.0])).expect("put"); // under the idle run's 1 MiB
    std::thread::sleep(idle * 2); // the idle period has passed, with nothing to compact
    let before = switches("strata-maintenance");
    assert_eq!(before.len(), 1, "one worker thread: {before:?}");
    std::thread::sleep(Duration::from_secs(1));
    let after = switches("strata-maintenance");
    let woken = after[0] - before[0];
    // About 5 looks in a second (one per period); a 10 ms poll makes about 100.
    assert!(woken <= 20, "the idle worker woke {woken} times in a second");
    assert_eq!(db.get(b"k").expect("get").expect("found").content(), b"v");
}
