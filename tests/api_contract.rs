//! Goal: each rule of `API.md` holds as written. Method: one test per rule, each asserting
//! both the documented result and its absence of side effects (contents, seqs and files on
//! disk compared before and after, and again after reopen); TTLs use an injected clock.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::{collect, listing, Entry, TestClock};
use strata::{limits, Batch, Db, Durability, Error, Options, Tier};

const DIM: usize = 4;
const E1: [f32; DIM] = [0.5, -1.25, 3.0, -0.0];
const E2: [f32; DIM] = [f32::MIN_POSITIVE, 1e-45, -7.5, 1e30];

/// Background maintenance off: these tests check tiers and files one call at a time.
fn dim_options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Sync).auto_compact(false)
}

fn get(db: &Db, key: &[u8]) -> Option<Entry> {
    db.get(key).expect("get").as_ref().map(Entry::of)
}

fn keys(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.key.clone()).collect()
}

/// Records in the hot and the warm tier, with and without embedding, one with a TTL.
fn seed(db: &Db, with_embeddings: bool) {
    let e = |v: &'static [f32; DIM]| with_embeddings.then_some(&v[..]);
    db.put(b"a", b"alpha", e(&E1)).expect("put");
    db.put(b"b", b"", None).expect("put");
    db.put_with_ttl(b"t", b"expires later", e(&E2), Duration::from_secs(3600)).expect("put_with_ttl");
    db.seal().expect("seal");
    let mut batch = Batch::new();
    batch.put(b"c", b"gamma", e(&E2)).delete(b"b").put(b"d", b"delta", None);
    db.write(batch).expect("batch");
}

/// Everything observable about a database: its records (with seqs), its live count, and
/// the files in its directory with their sizes.
fn observe(db: &Db, dir: &Path) -> (Vec<Entry>, u64, Vec<(String, u64)>) {
    (collect(db.iter()), db.stats().live_records, listing(dir))
}

type Attempt = (String, Box<dyn Fn(&Db) -> strata::Result<()>>);

/// The same bad put through `put`, `put_with_ttl` and a batch holding valid ops around it.
fn put_forms(label: &str, key: Vec<u8>, content: Vec<u8>, embedding: Option<Vec<f32>>) -> Vec<Attempt> {
    let (k1, c1, e1) = (key.clone(), content.clone(), embedding.clone());
    let (k2, c2, e2) = (key.clone(), content.clone(), embedding.clone());
    vec![
        (format!("{label} via put"), Box::new(move |db: &Db| db.put(&k1, &c1, e1.as_deref()))),
        (format!("{label} via put_with_ttl"), Box::new(move |db: &Db| db.put_with_ttl(&k2, &c2, e2.as_deref(), Duration::from_secs(9)))),
        (
            format!("{label} inside a batch"),
            Box::new(move |db: &Db| {
                let mut batch = Batch::new();
                batch.put(b"new-valid", b"would be written", None).delete(b"a");
                batch.put(&key, &content, embedding.as_deref());
                batch.put(b"c", b"overwrite", None);
                db.write(batch)
            }),
        ),
    ]
}

/// Each attempt returns `InvalidArgument` and leaves contents, seqs and files unchanged;
/// the handle keeps working and the state is the same after reopen.
fn assert_rejected_without_change(options: impl Fn() -> Options, with_embeddings: bool, attempts: Vec<Attempt>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    seed(&db, with_embeddings);
    let before = observe(&db, dir.path());
    for (name, attempt) in &attempts {
        let result = attempt(&db);
        assert!(matches!(result, Err(Error::InvalidArgument { .. })), "{name}: expected InvalidArgument, got {result:?}");
        assert_eq!(observe(&db, dir.path()), before, "{name}: a rejected call changed the database");
    }
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen");
    assert_eq!(collect(db.iter()), before.0, "after reopen the rejected calls left no trace");
    db.put(b"after", b"the handle still writes", None).expect("a valid write after rejected ones");
    let after = get(&db, b"after").expect("written");
    assert!(before.0.iter().all(|e| e.seq < after.seq), "the next commit's seq is above every earlier one");
}

#[test]
fn wrong_embedding_dimension_is_invalid_argument_and_changes_nothing() {
    let mut attempts = Vec::new();
    for len in [0usize, 1, DIM - 1, DIM + 1, 768] {
        attempts.extend(put_forms(&format!("embedding of {len} values"), b"a".to_vec(), b"x".to_vec(), Some(vec![0.5; len])));
    }
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn non_finite_embedding_values_are_invalid_argument_and_change_nothing() {
    let mut attempts = Vec::new();
    for (i, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x7fc0_0001)].into_iter().enumerate() {
        let mut embedding = E1.to_vec();
        embedding[i % DIM] = bad;
        attempts.extend(put_forms(&format!("{bad} at index {}", i % DIM), b"a".to_vec(), b"x".to_vec(), Some(embedding)));
    }
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn empty_key_is_invalid_argument_and_changes_nothing() {
    let mut attempts = put_forms("empty key", Vec::new(), b"x".to_vec(), None);
    attempts.push(("delete of the empty key".into(), Box::new(|db: &Db| db.delete(b""))));
    attempts.push((
        "batch delete of the empty key".into(),
        Box::new(|db: &Db| {
            let mut batch = Batch::new();
            batch.delete(b"a").delete(b"");
            db.write(batch)
        }),
    ));
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn key_longer_than_max_key_len_is_invalid_argument_and_changes_nothing() {
    let long = vec![b'k'; limits::MAX_KEY_LEN + 1];
    let mut attempts = put_forms("key of MAX_KEY_LEN + 1 bytes", long.clone(), b"x".to_vec(), None);
    attempts.push(("delete of a too-long key".into(), Box::new(move |db: &Db| db.delete(&long))));
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn content_longer_than_max_content_len_is_invalid_argument_and_changes_nothing() {
    let attempts = put_forms("content of MAX_CONTENT_LEN + 1 bytes", b"a".to_vec(), vec![7; limits::MAX_CONTENT_LEN + 1], None);
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn keys_and_contents_at_exactly_their_limits_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM).durability(Durability::None)).expect("open");
    let key = vec![0xAB; limits::MAX_KEY_LEN];
    let content: Vec<u8> = (0..limits::MAX_CONTENT_LEN).map(|i| (i % 251) as u8).collect();
    db.put(&key, &content, Some(&E1)).expect("a key of MAX_KEY_LEN and content of MAX_CONTENT_LEN are valid");
    let record = db.get(&key).expect("get").expect("stored");
    assert!(record.content() == content.as_slice(), "content round trip");
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM)).expect("reopen");
    let record = db.get(&key).expect("get").expect("stored after reopen");
    assert!(record.key() == key.as_slice() && record.content() == content.as_slice(), "round trip after reopen");
}

#[test]
fn embedding_on_a_database_without_dimension_is_invalid_argument_and_changes_nothing() {
    let options = || Options::new().durability(Durability::Sync);
    let mut attempts = Vec::new();
    for len in [1usize, DIM] {
        attempts.extend(put_forms(&format!("embedding of {len} values"), b"a".to_vec(), b"x".to_vec(), Some(vec![1.0; len])));
    }
    assert_rejected_without_change(options, false, attempts);
}

#[test]
fn batch_with_one_invalid_operation_is_rejected_whole() {
    let mut attempts: Vec<Attempt> = Vec::new();
    type BadOp = (&'static str, fn(&mut Batch));
    let bad_ops: Vec<BadOp> = vec![
        ("NaN embedding", |b| {
            b.put(b"bad", b"x", Some(&[f32::NAN, 0.0, 0.0, 0.0]));
        }),
        ("wrong dimension", |b| {
            b.put_with_ttl(b"bad", b"x", Some(&[1.0; 3]), Duration::from_secs(1));
        }),
        ("empty key", |b| {
            b.delete(b"");
        }),
    ];
    for (label, bad) in bad_ops {
        for position in [0usize, 2, 5] {
            attempts.push((
                format!("{label} at position {position} of 6"),
                Box::new(move |db: &Db| {
                    let mut batch = Batch::new();
                    for i in 0..6usize {
                        if i == position {
                            bad(&mut batch);
                        } else {
                            match i % 3 {
                                0 => batch.put(format!("new-{i}").as_bytes(), b"valid", Some(&E2)),
                                1 => batch.delete(b"a"),
                                _ => batch.put(b"c", b"valid overwrite", None),
                            };
                        }
                    }
                    db.write(batch)
                }),
            ));
        }
    }
    assert_rejected_without_change(dim_options, true, attempts);
}

#[test]
fn deleting_a_missing_key_is_ok_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    seed(&db, true);
    let before = collect(db.iter());
    db.delete(b"never-written").expect("deleting a missing key is Ok");
    db.delete(b"b").expect("deleting an already deleted key is Ok");
    let mut batch = Batch::new();
    batch.delete(b"also-missing").delete(b"\xff\xff");
    db.write(batch).expect("a batch of deletes of missing keys is Ok");
    assert_eq!(collect(db.iter()), before, "contents and seqs unchanged");
    assert_eq!(get(&db, b"never-written"), None);
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), dim_options()).expect("reopen");
    assert_eq!(collect(db.iter()), before, "unchanged after reopen");
}

#[test]
fn later_operation_on_a_key_within_a_batch_wins() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || clock.install(dim_options());
    let db = Db::open(dir.path(), options()).expect("open");
    db.put(b"deleted-then-put", b"old", None).expect("put");
    db.put(b"put-then-deleted", b"old", None).expect("put");
    let mut batch = Batch::new();
    batch.put(b"twice", b"first", Some(&E1)).put(b"twice", b"second", None);
    batch.delete(b"deleted-then-put").put(b"deleted-then-put", b"new", Some(&E2));
    batch.put(b"put-then-deleted", b"new", None).delete(b"put-then-deleted");
    batch.put_with_ttl(b"ttl-then-plain", b"first", None, Duration::from_millis(5)).put(b"ttl-then-plain", b"plain", None);
    batch.put(b"plain-then-ttl", b"first", None).put_with_ttl(b"plain-then-ttl", b"ttl", None, Duration::from_millis(5));
    db.write(batch).expect("batch");
    let check = |db: &Db, after_expiry: bool| {
        let twice = get(db, b"twice").expect("twice");
        assert_eq!((twice.content.as_slice(), twice.embedding_bits), (&b"second"[..], None), "the later put wins, embedding too");
        let dtp = get(db, b"deleted-then-put").expect("put after delete wins");
        assert_eq!((dtp.content.as_slice(), dtp.embedding_bits), (&b"new"[..], Some(common::bits(&E2))));
        assert_eq!(get(db, b"put-then-deleted"), None, "delete after put wins");
        assert_eq!(get(db, b"ttl-then-plain").map(|e| e.content), Some(b"plain".to_vec()), "the later put's (absent) TTL wins");
        let ttl = get(db, b"plain-then-ttl").map(|e| e.content);
        assert_eq!(ttl, (!after_expiry).then(|| b"ttl".to_vec()), "the later put's TTL wins");
    };
    check(&db, false);
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen");
    check(&db, false);
    clock.advance(6);
    check(&db, true);
}

#[test]
fn overwriting_without_ttl_clears_the_ttl() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || clock.install(dim_options());
    let db = Db::open(dir.path(), options()).expect("open");
    db.put_with_ttl(b"by-put", b"v1", None, Duration::from_millis(11)).expect("put_with_ttl");
    db.put(b"by-put", b"v2", Some(&E1)).expect("overwrite by put");
    db.put_with_ttl(b"by-batch", b"v1", None, Duration::from_millis(11)).expect("put_with_ttl");
    let mut batch = Batch::new();
    batch.put(b"by-batch", b"v2", None);
    db.write(batch).expect("overwrite in a batch");
    db.put_with_ttl(b"across-reopen", b"v1", None, Duration::from_millis(11)).expect("put_with_ttl");
    db.put_with_ttl(b"control", b"v1", None, Duration::from_millis(11)).expect("put_with_ttl");
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen");
    db.put(b"across-reopen", b"v2", None).expect("overwrite after reopen");
    clock.advance(1_000);
    assert_eq!(get(&db, b"control"), None, "the control record with a TTL expired");
    for key in [&b"by-put"[..], b"by-batch", b"across-reopen"] {
        assert_eq!(get(&db, key).map(|e| e.content), Some(b"v2".to_vec()), "{key:?} kept its TTL after a plain overwrite");
    }
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen");
    assert_eq!(keys(&collect(db.iter())), vec![b"across-reopen".to_vec(), b"by-batch".to_vec(), b"by-put".to_vec()]);
}

#[test]
fn ttl_survives_reopen_from_warm_and_hot_segments() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || clock.install(dim_options());
    let db = Db::open(dir.path(), options()).expect("open");
    db.put_with_ttl(b"warm-ttl", b"w", Some(&E1), Duration::from_millis(1_001)).expect("put_with_ttl");
    db.seal().expect("seal");
    db.put_with_ttl(b"hot-ttl", b"h", None, Duration::from_millis(1_001)).expect("put_with_ttl");
    db.put(b"plain", b"p", None).expect("put");
    db.close().expect("close");
    drop(db);

    let db = Db::open(dir.path(), options()).expect("reopen before expiry");
    clock.advance(1_000);
    assert_eq!(keys(&collect(db.iter())), vec![b"hot-ttl".to_vec(), b"plain".to_vec(), b"warm-ttl".to_vec()], "not yet expired");
    db.close().expect("close");
    drop(db);

    let db = Db::open(dir.path(), options()).expect("reopen");
    clock.advance(2);
    assert_eq!(get(&db, b"warm-ttl"), None, "the TTL of a sealed record survived reopen");
    assert_eq!(get(&db, b"hot-ttl"), None, "the TTL of an active-segment record survived reopen");
    assert_eq!(keys(&collect(db.iter())), vec![b"plain".to_vec()]);
    assert_eq!(db.stats().live_records, 1, "expired records are not live");
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen after expiry");
    assert_eq!(keys(&collect(db.iter())), vec![b"plain".to_vec()], "expired records stay expired after reopen");
}

#[test]
fn empty_content_is_a_valid_record_in_every_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    db.put(b"warm", b"", Some(&E1)).expect("empty content is valid");
    db.seal().expect("seal");
    db.put(b"hot", b"", None).expect("empty content is valid");
    let check = |db: &Db| {
        let warm = get(db, b"warm").expect("an empty record is present, not absent");
        assert_eq!((warm.content.len(), warm.embedding_bits), (0, Some(common::bits(&E1))));
        let hot = get(db, b"hot").expect("an empty record is present, not absent");
        assert_eq!((hot.content.len(), hot.embedding_bits), (0, None));
        assert_eq!(keys(&collect(db.iter())), vec![b"hot".to_vec(), b"warm".to_vec()]);
        assert_eq!(db.stats().live_records, 2);
    };
    check(&db);
    db.close().expect("close");
    drop(db);
    check(&Db::open(dir.path(), dim_options()).expect("reopen"));
}

#[test]
fn record_without_embedding_is_valid_in_a_database_with_a_dimension() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    db.put(b"none-warm", b"no vector", None).expect("no embedding is valid");
    db.seal().expect("seal");
    db.put(b"none-hot", b"no vector", None).expect("no embedding is valid");
    db.put(b"with", b"vector", Some(&E2)).expect("put");
    let check = |db: &Db| {
        for key in [&b"none-warm"[..], b"none-hot"] {
            let entry = get(db, key).expect("present");
            assert_eq!((entry.content.as_slice(), entry.embedding_bits), (&b"no vector"[..], None), "{key:?}");
        }
        assert_eq!(get(db, b"with").and_then(|e| e.embedding_bits), Some(common::bits(&E2)));
    };
    check(&db);
    db.close().expect("close");
    drop(db);
    check(&Db::open(dir.path(), dim_options()).expect("reopen"));
}

#[test]
fn seq_grows_strictly_across_commits_and_never_changes_for_a_stored_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options().segment_bytes_max(4096)).expect("open");
    db.put(b"one", b"1", None).expect("put");
    let mut batch = Batch::new();
    batch.put(b"two", b"2", None).put(b"three", b"3", Some(&E1)).put(b"four", b"4", None);
    db.write(batch).expect("batch");
    db.delete(b"nothing").expect("delete");
    db.put(b"five", &[5; 3000], None).expect("put");
    db.put(b"six", &[6; 3000], None).expect("put, rolling the segment");
    let seq = |db: &Db, key: &[u8]| get(db, key).expect("present").seq;
    let one = seq(&db, b"one");
    let batch_seqs = [seq(&db, b"two"), seq(&db, b"three"), seq(&db, b"four")];
    let (five, six) = (seq(&db, b"five"), seq(&db, b"six"));
    assert!(batch_seqs.iter().all(|&s| s > one), "a batch's seqs exceed the previous commit's");
    assert!(batch_seqs.iter().all(|&s| s < five) && five < six, "seqs grow from one commit to the next");
    let before = collect(db.iter());
    db.seal().expect("seal");
    assert_eq!(collect(db.iter()), before, "seal changes no seq");
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), dim_options()).expect("reopen");
    assert_eq!(collect(db.iter()), before, "reopen changes no seq");
    db.put(b"seven", b"7", None).expect("put after reopen");
    assert!(seq(&db, b"seven") > six, "seqs keep growing after reopen");
}

#[test]
fn opening_with_a_different_embedding_dimension_is_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    seed(&db, true);
    let before = collect(db.iter());
    db.close().expect("close");
    drop(db);
    for other in [DIM - 1, DIM + 1, 768] {
        let result = Db::open(dir.path(), Options::new().embedding_dim(other));
        assert!(matches!(result, Err(Error::InvalidArgument { .. })), "dimension {other}: {result:?}");
        let read_only = Db::open(dir.path(), Options::new().embedding_dim(other).read_only(true));
        assert!(matches!(read_only, Err(Error::InvalidArgument { .. })), "read-only, dimension {other}: {read_only:?}");
    }
    let db = Db::open(dir.path(), dim_options()).expect("the failed opens released the lock and changed nothing");
    assert_eq!(collect(db.iter()), before);
}

#[test]
fn second_writable_open_in_the_same_process_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Db::open(dir.path(), dim_options()).expect("open");
    first.put(b"k", b"v", None).expect("put");
    let second = Db::open(dir.path(), dim_options());
    assert!(matches!(second, Err(Error::Locked { .. })), "second writable open: {second:?}");
    first.put(b"k2", b"v2", None).expect("the first handle is unaffected");
    drop(first);
    let reopened = Db::open(dir.path(), dim_options()).expect("the lock is released on drop");
    assert_eq!(keys(&collect(reopened.iter())), vec![b"k".to_vec(), b"k2".to_vec()]);
}

/// Set in the child process of the cross-process lock test: the directory to open.
const LOCK_CHILD_ENV: &str = "STRATA_API_CONTRACT_LOCK_CHILD_DIR";

/// Runs this test binary again, filtered to this one test, as a child that opens `dir`
/// for writing and prints what happened.
fn child_open_outcome(dir: &Path) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let output = std::process::Command::new(exe)
        .args(["second_writable_open_in_another_process_is_locked", "--exact", "--nocapture", "--test-threads=1"])
        .env(LOCK_CHILD_ENV, dir)
        .output()
        .expect("run child");
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("child-open: "))
        .map(|(_, outcome)| outcome.to_owned())
        .unwrap_or_else(|| panic!("no outcome in {stdout}"))
}

#[test]
fn second_writable_open_in_another_process_is_locked() {
    if let Some(dir) = std::env::var_os(LOCK_CHILD_ENV) {
        let outcome = match Db::open(&dir, dim_options()) {
            Err(Error::Locked { .. }) => "locked".to_owned(),
            Ok(db) => {
                let count = db.iter().count();
                format!("opened with {count} records")
            }
            Err(other) => format!("error {other}"),
        };
        println!("child-open: {outcome}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    db.put(b"k", b"v", None).expect("put");
    assert_eq!(child_open_outcome(dir.path()), "locked", "another process must not open a held database for writing");
    db.close().expect("close releases the lock");
    assert_eq!(child_open_outcome(dir.path()), "opened with 1 records", "after close another process can open it");
}

#[test]
fn read_only_open_coexists_with_a_writer_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = Db::open(dir.path(), dim_options()).expect("open");
    seed(&writer, true);
    let expected = collect(writer.iter());
    let reader = Db::open(dir.path(), Options::new().read_only(true)).expect("read-only open beside a writer");
    let reader2 = Db::open(dir.path(), Options::new().embedding_dim(DIM).read_only(true)).expect("a second read-only open");
    assert_eq!(collect(reader.iter()), expected, "the read-only handle reads what was written");
    assert_eq!(collect(reader2.iter()), expected);
    let attempts: Vec<(&str, strata::Result<()>)> = vec![
        ("put", reader.put(b"x", b"y", None)),
        ("put_with_ttl", reader.put_with_ttl(b"x", b"y", Some(&E1), Duration::from_secs(1))),
        ("delete", reader.delete(b"a")),
        (
            "write",
            reader.write({
                let mut batch = Batch::new();
                batch.put(b"x", b"y", None);
                batch
            }),
        ),
        ("seal", reader.seal()),
        ("compact", reader.compact()),
    ];
    for (name, result) in attempts {
        assert!(matches!(result, Err(Error::ReadOnly)), "{name} on a read-only handle: {result:?}");
    }
    assert_eq!(collect(reader.iter()), expected, "refused writes changed nothing");
    writer.put(b"z", b"the writer keeps writing", None).expect("writer unaffected by readers");
    assert_eq!(get(&writer, b"a"), expected.iter().find(|e| e.key == b"a").cloned(), "the refused delete did not reach the writer");
    writer.close().expect("close");
    assert_eq!(collect(reader.iter()), expected, "the read-only handle still reads after the writer closed");
}

#[test]
fn read_only_open_of_a_missing_directory_fails_and_creates_nothing() {
    let parent = tempfile::tempdir().expect("tempdir");
    let missing = parent.path().join("no-such-db");
    let result = Db::open(&missing, Options::new().read_only(true));
    assert!(result.is_err(), "read-only open of a missing directory: {result:?}");
    assert!(!missing.exists(), "a read-only open must not create the directory");
}

#[test]
fn after_close_writes_fail_and_records_and_reads_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::new().embedding_dim(DIM).durability(Durability::None)).expect("open");
    seed(&db, true);
    let held = db.get(b"a").expect("get").expect("a");
    let expected = collect(db.iter());
    db.close().expect("close");
    let attempts: Vec<(&str, strata::Result<()>)> = vec![
        ("put", db.put(b"x", b"y", None)),
        ("put_with_ttl", db.put_with_ttl(b"x", b"y", None, Duration::from_secs(1))),
        ("delete", db.delete(b"a")),
        (
            "write",
            db.write({
                let mut batch = Batch::new();
                batch.put(b"x", b"y", None);
                batch
            }),
        ),
        ("seal", db.seal()),
    ];
    for (name, result) in attempts {
        assert!(result.is_err(), "{name} after close must fail, got {result:?}");
        assert!(!matches!(result, Err(Error::InvalidArgument { .. })), "{name} after close is not an argument error");
    }
    assert_eq!(Entry::of(&held), expected[0], "a record obtained before close still reads");
    assert_eq!(collect(db.iter()), expected, "reads keep working after close");
    let other = Db::open(dir.path(), dim_options()).expect("close released the lock, with the closed handle still alive");
    assert_eq!(collect(other.iter()), expected, "close made the buffered writes durable");
}

#[test]
fn record_slices_stay_valid_after_seal_rolls_and_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db =
        Db::open(dir.path(), Options::new().embedding_dim(DIM).durability(Durability::None).segment_bytes_max(4096).auto_compact(false))
            .expect("open");
    db.put(b"hot-then-sealed", &[1; 500], Some(&E1)).expect("put");
    let from_hot = db.get(b"hot-then-sealed").expect("get").expect("present");
    db.seal().expect("seal");
    let from_warm = db.get(b"hot-then-sealed").expect("get").expect("present");
    db.put(b"hot", b"still hot", Some(&E2)).expect("put");
    let from_iter: Vec<strata::Record> = db.iter().map(|r| r.expect("item")).collect();
    let expected = vec![Entry::of(&from_hot), Entry::of(&from_warm)];
    let expected_iter: Vec<Entry> = from_iter.iter().map(Entry::of).collect();
    for i in 0..40u8 {
        db.put(b"hot-then-sealed", &[i; 700], None).expect("overwrite, rolling segments");
    }
    db.delete(b"hot").expect("delete");
    db.close().expect("close");
    drop(db);
    assert_eq!(vec![Entry::of(&from_hot), Entry::of(&from_warm)], expected, "records outlive seals, overwrites and the Db");
    assert_eq!(from_iter.iter().map(Entry::of).collect::<Vec<_>>(), expected_iter, "iterator records outlive the Db");
    assert_eq!(from_hot.content(), &[1u8; 500][..]);
    assert_eq!(from_warm.embedding(), Some(&E1[..]));
}

#[test]
fn checkpoint_holds_exactly_the_writes_before_the_call() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let options =
        || clock.install(Options::new().embedding_dim(DIM).durability(Durability::None).segment_bytes_max(4096).auto_compact(false));
    let db = Db::open(dir.path(), options()).expect("open");
    for i in 0..30u32 {
        db.put(format!("k{i:02}").as_bytes(), &vec![i as u8; 300], (i % 2 == 0).then_some(&E1[..])).expect("put");
    }
    db.delete(b"k03").expect("delete");
    db.put_with_ttl(b"ttl", b"expires", None, Duration::from_millis(101)).expect("put_with_ttl");
    db.put(b"k05", b"overwritten", Some(&E2)).expect("overwrite");
    let expected = collect(db.iter());
    let dest_parent = tempfile::tempdir().expect("tempdir");
    let dest = dest_parent.path().join("checkpoint");
    db.checkpoint(&dest).expect("checkpoint");
    db.put(b"k99", b"after the checkpoint", None).expect("put");
    db.delete(b"k00").expect("delete");
    db.seal().expect("seal");

    let copy = Db::open(&dest, options()).expect("the checkpoint opens");
    assert_eq!(collect(copy.iter()), expected, "exactly the writes before the call, seqs included");
    copy.verify().expect("the checkpoint verifies");
    clock.advance(102);
    assert_eq!(get(&copy, b"ttl"), None, "the checkpoint kept the TTL");
    copy.put(b"own", b"writes", None).expect("the checkpoint is an independent, writable database");
    assert_eq!(get(&db, b"own"), None, "writes to the copy do not reach the source");
}

#[test]
fn checkpoint_into_an_existing_destination_is_an_error_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    seed(&db, true);
    let dest = tempfile::tempdir().expect("tempdir");
    std::fs::write(dest.path().join("keep.txt"), b"user data").expect("write");
    let before = listing(dest.path());
    assert!(db.checkpoint(dest.path()).is_err(), "an existing destination directory is refused");
    assert_eq!(listing(dest.path()), before, "the existing destination is untouched");
    let file = dest.path().join("keep.txt");
    assert!(db.checkpoint(&file).is_err(), "an existing destination file is refused");
    assert_eq!(std::fs::read(&file).expect("read"), b"user data");
}

#[test]
fn checkpoint_during_concurrent_writes_holds_a_whole_prefix_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || Options::new().durability(Durability::None).segment_bytes_max(4096).auto_compact(false);
    let db = Arc::new(Db::open(dir.path(), options()).expect("open"));
    let (acked_tx, acked_rx) = mpsc::channel::<usize>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while stop_rx.try_recv().is_err() {
                db.put(format!("w{i:06}").as_bytes(), format!("content {i}").as_bytes(), None).expect("put");
                acked_tx.send(i).expect("main listens");
                i += 1;
            }
            i
        })
    };
    let mut acked = 0usize;
    while acked < 200 {
        acked = acked_rx.recv().expect("ack") + 1;
    }
    acked = acked.max(acked_rx.try_iter().last().map_or(0, |i| i + 1));
    let dest_parent = tempfile::tempdir().expect("tempdir");
    let dest = dest_parent.path().join("checkpoint");
    db.checkpoint(&dest).expect("checkpoint under writes");
    stop_tx.send(()).expect("stop");
    let written = writer.join().expect("writer");

    let copy = Db::open(&dest, options()).expect("open the checkpoint");
    let entries = collect(copy.iter());
    let m = entries.len();
    assert!(m >= acked, "the checkpoint lost writes that returned before the call: {m} < {acked}");
    assert!(m <= written, "the checkpoint holds writes that were never made");
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.key, format!("w{i:06}").into_bytes(), "the checkpoint is a whole prefix of the writes");
        assert_eq!(entry.content, format!("content {i}").into_bytes());
    }
}

#[test]
fn stats_live_records_and_bytes_follow_puts_overwrites_deletes_and_expiry() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || clock.install(dim_options().segment_bytes_max(4096));
    let db = Db::open(dir.path(), options()).expect("open");
    let logical = |key: &[u8], content: usize, embedded: bool| (key.len() + content + if embedded { DIM * 4 } else { 0 }) as u64;
    let assert_stats = |db: &Db, records: u64, bytes: u64, context: &str| {
        let stats = db.stats();
        assert_eq!((stats.live_records, stats.live_bytes), (records, bytes), "{context}: (live_records, live_bytes)");
        let tiers = [Tier::Hot, Tier::Warm, Tier::Cold].map(|t| stats.tier(t));
        assert_eq!(tiers.iter().map(|t| t.records).sum::<u64>(), records, "{context}: tiers' records add up");
        assert_eq!(tiers.iter().map(|t| t.bytes).sum::<u64>(), bytes, "{context}: tiers' bytes add up");
    };
    assert_stats(&db, 0, 0, "empty");
    db.put(b"a", &[1; 100], Some(&E1)).expect("put");
    db.put(b"bb", &[2; 50], None).expect("put");
    db.put(b"ccc", b"", None).expect("put");
    assert_stats(&db, 3, logical(b"a", 100, true) + logical(b"bb", 50, false) + logical(b"ccc", 0, false), "three puts");
    db.put(b"a", &[9; 10], None).expect("overwrite, smaller and without embedding");
    db.delete(b"bb").expect("delete");
    db.delete(b"missing").expect("delete missing");
    assert_stats(&db, 2, logical(b"a", 10, false) + logical(b"ccc", 0, false), "overwrite and delete");
    db.put_with_ttl(b"ttl", &[3; 30], Some(&E2), Duration::from_millis(5)).expect("put_with_ttl");
    let with_ttl = logical(b"a", 10, false) + logical(b"ccc", 0, false) + logical(b"ttl", 30, true);
    assert_stats(&db, 3, with_ttl, "with a TTL record");
    db.seal().expect("seal");
    assert_stats(&db, 3, with_ttl, "after seal");
    clock.advance(6);
    let after_expiry = logical(b"a", 10, false) + logical(b"ccc", 0, false);
    assert_stats(&db, 2, after_expiry, "after expiry");
    db.close().expect("close");
    drop(db);
    assert_stats(&Db::open(dir.path(), options()).expect("reopen"), 2, after_expiry, "after reopen");
}

#[test]
fn stats_tier_counts_move_from_hot_to_warm_on_seal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    for i in 0..5u8 {
        db.put(&[b'k', i], &[i; 40], Some(&E1)).expect("put");
    }
    let records = |db: &Db| {
        let s = db.stats();
        (s.hot.records, s.warm.records, s.cold.records)
    };
    assert_eq!(records(&db), (5, 0, 0), "new records are hot");
    let hot_bytes = db.stats().hot.bytes;
    db.seal().expect("seal");
    let stats = db.stats();
    assert_eq!(records(&db), (0, 5, 0), "sealed records are warm");
    assert_eq!((stats.hot.bytes, stats.warm.bytes), (0, hot_bytes), "their bytes moved with them");
    assert!(stats.warm.segments >= 1 && stats.warm.disk_bytes > 0, "the sealed segment is counted: {stats:?}");
    db.put(&[b'k', 0], b"new", None).expect("overwrite a warm record");
    db.put(&[b'k', 1], b"new", None).expect("overwrite a warm record");
    db.put(b"fresh", b"new", None).expect("put");
    assert_eq!(records(&db), (3, 3, 0), "overwritten records count in the tier of their newest version");
    db.delete(&[b'k', 4]).expect("delete a warm record");
    assert_eq!(records(&db), (3, 2, 0), "a deleted record counts nowhere");
    assert!(db.stats().disk_bytes > 0);
}

#[test]
fn verify_on_a_healthy_database_is_ok_with_nonzero_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options().segment_bytes_max(4096)).expect("open");
    seed(&db, true);
    for i in 0..20u8 {
        db.put(&[b'v', i], &[i; 300], Some(&E2)).expect("put");
    }
    let report = db.verify().expect("verify a healthy database");
    assert!(report.files_checked >= 2, "META and at least one segment: {report:?}");
    assert!(report.records_checked >= 20 + 4, "every written record is checked: {report:?}");
    assert!(report.bytes_checked >= 20 * 300, "the bytes written are checked: {report:?}");
    db.close().expect("close");
    drop(db);
    let db = Db::open(dir.path(), Options::new().read_only(true)).expect("read-only open");
    let again = db.verify().expect("verify after reopen, read-only");
    assert!(again.records_checked >= report.records_checked && again.files_checked >= 2, "{again:?}");
}

#[test]
fn iter_tier_returns_exactly_the_live_records_whose_newest_version_is_in_that_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    for key in [&b"a"[..], b"b", b"c", b"d"] {
        db.put(key, key, Some(&E1)).expect("put");
    }
    db.seal().expect("seal");
    db.put(b"b", b"b2", None).expect("overwrite a warm record");
    db.put(b"e", b"e", None).expect("put");
    db.delete(b"d").expect("delete a warm record");
    db.put_with_ttl(b"f", b"f", None, Duration::from_secs(3600)).expect("put_with_ttl");
    db.delete(b"f").expect("delete a hot record");
    let tier = |t: Tier| collect(db.iter_tier(t));
    let current = |ks: &[&[u8]]| ks.iter().map(|k| get(&db, k).expect("live")).collect::<Vec<_>>();
    assert_eq!(tier(Tier::Hot), current(&[b"b", b"e"]), "hot: the newest versions written since the seal");
    assert_eq!(tier(Tier::Warm), current(&[b"a", b"c"]), "warm: sealed records not overwritten or deleted since");
    assert_eq!(tier(Tier::Cold), Vec::new(), "nothing is cold without compaction");
    let mut hot_rev = collect(db.iter_tier(Tier::Hot).rev());
    hot_rev.reverse();
    assert_eq!(hot_rev, current(&[b"b", b"e"]), "iter_tier is double-ended");
}

#[test]
fn errors_display_as_readable_sentences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), dim_options()).expect("open");
    let mut errors: Vec<Error> = Vec::new();
    errors.push(db.put(b"", b"x", None).expect_err("empty key"));
    errors.push(db.put(b"k", b"x", Some(&[1.0; 3])).expect_err("wrong dimension"));
    errors.push(Db::open(dir.path(), dim_options()).expect_err("locked"));
    let reader = Db::open(dir.path(), Options::new().read_only(true)).expect("read-only");
    errors.push(reader.put(b"k", b"x", None).expect_err("read-only"));
    errors.push(Db::open(dir.path().join("missing"), Options::new().read_only(true)).expect_err("missing"));
    db.close().expect("close");
    errors.push(db.put(b"k", b"x", None).expect_err("closed"));
    for error in &errors {
        let display = error.to_string();
        let debug = format!("{error:?}");
        let as_std: &dyn std::error::Error = error;
        assert_eq!(as_std.to_string(), display);
        assert_ne!(display, debug, "Display is not Debug");
        assert!(display.split_whitespace().count() >= 3, "a sentence, not a code: {display:?}");
        assert!(!display.contains('{') && !display.contains("InvalidArgument") && !display.contains("Locked {"), "{display:?}");
        assert!(display.chars().next().is_some_and(char::is_alphabetic), "{display:?}");
    }
    let locked = errors[2].to_string();
    assert!(locked.contains(&*dir.path().to_string_lossy()), "Locked names the database: {locked:?}");
    let invalid = errors[1].to_string();
    assert!(invalid.contains('3') && invalid.contains('4'), "InvalidArgument says what was wrong: {invalid:?}");
}
