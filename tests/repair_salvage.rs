//! Goal: `strata::repair` salvages every intact record of every tier, exactly (key, content,
//! embedding bits, seq, TTL), serves nothing damaged, keeps the damaged originals aside
//! byte-identical, names the damaged files and byte ranges, is idempotent, leaves a healthy
//! database unchanged, refuses a locked one, and finishes an interrupted swap.
//!
//! Method: one database with every tier (cold after seal + compact, two sealed warm
//! segments, a hot active segment with batches, deletes and TTLs), built through the public
//! API with an injected clock. A model keeps every version ever written with its commit and
//! file; a record's bytes are found in its file by its unique key (a record's key follows its
//! 32-byte header; a cold row's content is found in the content buffer). Each case damages
//! byte ranges (one file kind at a time, then several together), derives from the format's
//! rules which commits are lost (every commit a damaged record belongs to; in a segment read
//! by scanning, also the commit right after the damage, which cannot be proven whole), and
//! compares the repaired database with the newest surviving version of every key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{bits, collect, listing, Entry, TestClock};
use strata::{Batch, Db, Durability, Error, Options, RepairReport};

const DIM: usize = 4;
const HOUR_MS: u64 = 3_600_000;

/// One version ever written: the key, the commit it belongs to (commits are numbered in
/// write order, so a higher number is a newer seq), the file holding it, the put or `None`
/// (a delete), its expiry.
#[derive(Clone, Debug)]
struct Version {
    key: Vec<u8>,
    commit: usize,
    file: String,
    put: Option<(Entry, u64)>,
}

/// The database as built, and every version written.
struct Built {
    _temp: tempfile::TempDir,
    pristine: PathBuf,
    versions: Vec<Version>,
    cold_file: String,
    /// Sealed segments, oldest first, then the active one.
    warm_files: [String; 2],
    hot_file: String,
}

struct Writer<'a> {
    db: &'a Db,
    clock: &'a TestClock,
    versions: Vec<Version>,
    commit: usize,
    file: String,
}

impl Writer<'_> {
    fn put(&mut self, key: &str, content: &[u8], embedding: Option<&[f32]>, ttl_ms: u64) {
        match ttl_ms {
            0 => self.db.put(key.as_bytes(), content, embedding).expect("put"),
            ttl => self.db.put_with_ttl(key.as_bytes(), content, embedding, Duration::from_millis(ttl)).expect("put"),
        }
        self.record_put(key, ttl_ms);
        self.commit += 1;
    }

    fn record_put(&mut self, key: &str, ttl_ms: u64) {
        let record = self.db.get(key.as_bytes()).expect("get").expect("just written");
        let expires = if ttl_ms == 0 { 0 } else { self.clock.now() + ttl_ms };
        let version = Version {
            key: key.as_bytes().to_vec(),
            commit: self.commit,
            file: self.file.clone(),
            put: Some((Entry::of(&record), expires)),
        };
        self.versions.push(version);
    }

    fn delete(&mut self, key: &str) {
        self.db.delete(key.as_bytes()).expect("delete");
        self.versions.push(Version { key: key.as_bytes().to_vec(), commit: self.commit, file: self.file.clone(), put: None });
        self.commit += 1;
    }

    /// A batch of puts (key, ttl) and deletes (`None` ttl).
    fn batch(&mut self, operations: &[(&str, Option<u64>)]) {
        let mut batch = Batch::new();
        for (i, (key, ttl)) in operations.iter().enumerate() {
            match ttl {
                Some(0) => batch.put(key.as_bytes(), &content(key), Some(&embedding(i as u32))),
                Some(ttl) => batch.put_with_ttl(key.as_bytes(), &content(key), Some(&embedding(i as u32)), Duration::from_millis(*ttl)),
                None => batch.delete(key.as_bytes()),
            };
        }
        self.db.write(batch).expect("write batch");
        for (key, ttl) in operations {
            match ttl {
                Some(ttl) => self.record_put(key, *ttl),
                None => {
                    self.versions.push(Version { key: key.as_bytes().to_vec(), commit: self.commit, file: self.file.clone(), put: None })
                }
            }
        }
        self.commit += 1;
    }
}

/// Content unique to a key (it contains no other key, so a key is found only where it is).
fn content(key: &str) -> Vec<u8> {
    let mut bytes = format!("<{}>", key.replace('/', "_")).into_bytes();
    bytes.extend(std::iter::repeat_n(b'.', key.len() % 7));
    bytes
}

fn embedding(i: u32) -> Vec<f32> {
    vec![i as f32 + 0.25, -0.0, f32::from_bits(0x0000_0001 + i), 1e-3 * i as f32]
}

fn options(clock: &TestClock) -> Options {
    clock.install(Options::new().embedding_dim(DIM).durability(Durability::Flush))
}

fn newest_log(dir: &Path) -> String {
    listing(dir).into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".log")).max().expect("a log segment")
}

/// Cold: 60 single puts, sealed and compacted. Warm: two sealed segments of overwrites,
/// deletes, new keys and a batch each. Hot: more of the same, batches with deletes, TTLs.
/// Within one file every key is written at most once, so its key finds its record.
fn build() -> Built {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("pristine");
    let clock = TestClock::new();
    let db = Db::open(&dir, options(&clock)).expect("open");
    let mut w = Writer { db: &db, clock: &clock, versions: Vec::new(), commit: 0, file: "cold".into() };
    for i in 0..60u32 {
        let key = format!("cold/{i:03}");
        let ttl = [HOUR_MS, 3 * HOUR_MS, 0, 0, 0][i as usize % 5];
        w.put(&key, &content(&key), (i % 3 != 0).then(|| embedding(i)).as_deref(), ttl);
    }
    db.seal().expect("seal");
    db.compact().expect("compact");
    let cold_file = listing(&dir).into_iter().map(|(n, _)| n).find(|n| n.ends_with(".cold")).expect("cold segment");
    for v in &mut w.versions {
        v.file = cold_file.clone();
    }
    let mut warm_files = Vec::new();
    for (phase, overwritten) in [("warmA", 0..10u32), ("warmB", 20..30u32)] {
        w.file = newest_log(&dir);
        for i in overwritten {
            let key = format!("cold/{i:03}");
            w.put(&key, &content(&format!("{phase}-{key}")), Some(&embedding(i + 100)), 0);
        }
        for i in 0..20u32 {
            let key = format!("{phase}/{i:03}");
            w.put(&key, &content(&key), (i % 2 == 0).then(|| embedding(i)).as_deref(), if i % 4 == 1 { HOUR_MS } else { 0 });
        }
        if phase == "warmA" {
            (10..15).for_each(|i| w.delete(&format!("cold/{i:03}")));
            w.batch(&[("warmA/b0", Some(0)), ("warmA/b1", Some(3 * HOUR_MS)), ("cold/015", None), ("warmA/b2", Some(0))]);
        } else {
            (0..5).for_each(|i| w.delete(&format!("warmA/{i:03}")));
            w.batch(&[("warmB/b0", Some(0)), ("cold/016", None), ("warmB/b1", Some(HOUR_MS))]);
        }
        warm_files.push(w.file.clone());
        db.seal().expect("seal warm");
    }
    w.file = newest_log(&dir);
    (30..35).for_each(|i| w.put(&format!("cold/{i:03}"), &content(&format!("hot-cold/{i:03}")), None, 3 * HOUR_MS));
    (10..15).for_each(|i| w.put(&format!("warmA/{i:03}"), &content(&format!("hot-warmA/{i:03}")), Some(&embedding(i)), 0));
    (0..5).for_each(|i| w.put(&format!("warmB/{i:03}"), &content(&format!("hot-warmB/{i:03}")), None, 0));
    (40..45).for_each(|i| w.delete(&format!("cold/{i:03}")));
    (10..13).for_each(|i| w.delete(&format!("warmB/{i:03}")));
    for i in 0..20u32 {
        let key = format!("hot/{i:03}");
        w.put(&key, &content(&key), (i % 3 == 0).then(|| embedding(i)).as_deref(), if i % 3 == 1 { HOUR_MS } else { 0 });
    }
    w.batch(&[("hot/b0", Some(0)), ("hot/b1", Some(HOUR_MS)), ("cold/045", None), ("hot/b2", Some(0))]);
    w.batch(&[("hot/c0", Some(3 * HOUR_MS)), ("warmB/015", None), ("hot/c1", Some(0))]);
    (20..25).for_each(|i| w.put(&format!("hot/{i:03}"), &content(&format!("hot/{i:03}")), None, 0));
    let hot_file = w.file.clone();
    let versions = w.versions;
    db.close().expect("close");
    drop(db);
    let warm_files = [warm_files[0].clone(), warm_files[1].clone()];
    Built { _temp: temp, pristine: dir, versions, cold_file, warm_files, hot_file }
}

/// What a case damages.
#[derive(Clone, Debug)]
enum Damage {
    /// Bytes of a cold row's content.
    ColdRow(&'static str),
    /// The cold segment's footer: no row can be located.
    ColdFooter,
    /// Bytes inside a log record's content or key; `bool`: the segment is read by scanning.
    LogRecord(&'static str, &'static str, bool),
    /// A log segment's header.
    LogHeader(&'static str),
    /// A sealed segment's hint block.
    Hint(&'static str),
    /// A sealed segment's trailer (the segment is then read by scanning).
    Trailer(&'static str),
    /// `META` or `MANIFEST`: salvage goes on without them (every file is read).
    Small(&'static str),
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn align_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

/// Encoded length of a log record (format-spec/log-segment.md): header, key, embedding
/// 4-aligned, content, padding to 8.
fn record_len(key_len: usize, has_embedding: bool, content_len: usize) -> usize {
    align_up(align_up(32 + key_len, 4) + if has_embedding { 4 * DIM } else { 0 } + content_len, 8)
}

impl Built {
    fn file_name(&self, symbolic: &str) -> String {
        match symbolic {
            "warm0" => self.warm_files[0].clone(),
            "warm1" => self.warm_files[1].clone(),
            "hot" => self.hot_file.clone(),
            other => other.to_string(),
        }
    }

    fn version_in(&self, file: &str, key: &str) -> &Version {
        self.versions.iter().find(|v| v.file == file && v.key == key.as_bytes()).expect("the version is in that file")
    }

    /// Where `version`'s record lies in its log file's bytes.
    fn record_range(&self, bytes: &[u8], version: &Version) -> std::ops::Range<usize> {
        let at = find(bytes, &version.key, 64).expect("the key is in its file") - 32;
        let (has_embedding, content_len) = match &version.put {
            Some((entry, _)) => (entry.embedding_bits.is_some(), entry.content.len()),
            None => (false, 0),
        };
        at..at + record_len(version.key.len(), has_embedding, content_len)
    }

    /// (file, offset) to flip, and the versions the damage loses.
    fn resolve(&self, damage: &Damage) -> (String, usize, BTreeSet<usize>) {
        let commit_of = |file: &str, key: &str| self.version_in(file, key).commit;
        let versions_of = |commits: &BTreeSet<usize>| -> BTreeSet<usize> {
            self.versions.iter().enumerate().filter(|(_, v)| commits.contains(&v.commit)).map(|(i, _)| i).collect()
        };
        match damage {
            Damage::ColdRow(key) => {
                let bytes = std::fs::read(self.pristine.join(&self.cold_file)).expect("read cold");
                let at = find(&bytes, &content(key), 0).expect("content in the cold segment") + 2;
                (self.cold_file.clone(), at, versions_of(&[commit_of(&self.cold_file, key)].into()))
            }
            Damage::ColdFooter => {
                let len = std::fs::metadata(self.pristine.join(&self.cold_file)).expect("stat").len() as usize;
                let all: BTreeSet<usize> = self.versions.iter().filter(|v| v.file == self.cold_file).map(|v| v.commit).collect();
                (self.cold_file.clone(), len - 30, versions_of(&all))
            }
            Damage::LogRecord(file, key, scanned) => {
                let file = self.file_name(file);
                let bytes = std::fs::read(self.pristine.join(&file)).expect("read log");
                let damaged = self.version_in(&file, key);
                let range = self.record_range(&bytes, damaged);
                let mut lost: BTreeSet<usize> = [damaged.commit].into();
                if *scanned {
                    // The first record after the damaged one: its commit starts after damage.
                    let next = self.versions.iter().filter(|v| v.file == file).find(|v| self.record_range(&bytes, v).start == range.end);
                    lost.extend(next.map(|v| v.commit));
                }
                (file, range.end - 3, versions_of(&lost))
            }
            Damage::LogHeader(file) => (self.file_name(file), 20, BTreeSet::new()),
            Damage::Small(file) => (file.to_string(), 20, BTreeSet::new()),
            Damage::Hint(file) | Damage::Trailer(file) => {
                let file = self.file_name(file);
                let bytes = std::fs::read(self.pristine.join(&file)).expect("read log");
                let trailer = bytes.len() - 64;
                let records_end = u64::from_le_bytes(bytes[trailer + 16..trailer + 24].try_into().expect("8 bytes")) as usize;
                let at = if matches!(damage, Damage::Hint(_)) { records_end + 5 } else { trailer + 20 };
                (file, at, BTreeSet::new())
            }
        }
    }

    /// The newest surviving version of every key, live at `now_ms`.
    fn expected(&self, lost: &BTreeSet<usize>, now_ms: u64) -> Vec<Entry> {
        let mut newest: BTreeMap<&[u8], &Version> = BTreeMap::new();
        for (_, v) in self.versions.iter().enumerate().filter(|(i, _)| !lost.contains(i)) {
            let slot = newest.entry(&v.key).or_insert(v);
            if v.commit > slot.commit {
                *slot = v;
            }
        }
        newest
            .values()
            .filter_map(|v| v.put.as_ref())
            .filter(|(_, expires)| *expires == 0 || *expires > now_ms)
            .map(|(entry, _)| entry.clone())
            .collect()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Every file of `dir` (not LOCK) with its bytes.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    listing(dir)
        .into_iter()
        .filter(|(n, _)| n != "LOCK" && dir.join(n).is_file())
        .map(|(n, _)| (n.clone(), std::fs::read(dir.join(&n)).expect("read")))
        .collect()
}

/// Opens `dir` at `now_ms` and checks it verifies and reads exactly `expected`.
fn check_reads(dir: &Path, built: &Built, lost: &BTreeSet<usize>, context: &str) {
    for (now, label) in [(TestClock::START_MS, "before any TTL"), (TestClock::START_MS + 2 * HOUR_MS, "after the 1 h TTLs")] {
        let clock = TestClock::new();
        clock.advance(now - TestClock::START_MS);
        let db = Db::open(dir, options(&clock)).unwrap_or_else(|e| panic!("{context}: open after repair: {e}"));
        db.verify().unwrap_or_else(|e| panic!("{context}: verify after repair: {e}"));
        assert_eq!(collect(db.iter()), built.expected(lost, now), "{context}, {label}: the newest surviving version of every key");
        db.close().expect("close");
    }
}

fn assert_reported(report: &RepairReport, dir: &Path, file: &str, offset: usize, context: &str) {
    let damaged = report.damaged_files.iter().find(|f| f.path == dir.join(file));
    let damaged = damaged.unwrap_or_else(|| panic!("{context}: {file} is not named in {report:#?}"));
    let covered = damaged.lost_ranges.iter().any(|r| r.start <= offset as u64 && (offset as u64) < r.end && !r.detail.is_empty());
    assert!(covered, "{context}: no lost range of {file} covers byte {offset}: {damaged:#?}");
}

/// Copies the pristine database, applies `damages`, repairs, checks everything the goal
/// lists; returns the repaired directory and what was lost.
fn repair_case(built: &Built, name: &str, damages: &[Damage]) -> (PathBuf, BTreeSet<usize>) {
    let dir = built._temp.path().join(name);
    copy_tree(&built.pristine, &dir);
    let mut lost = BTreeSet::new();
    let mut flips = Vec::new();
    for damage in damages {
        let (file, at, loses) = built.resolve(damage);
        let path = dir.join(&file);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[at] ^= 0x5a;
        bytes[at + 1] ^= 0xa5;
        std::fs::write(&path, &bytes).expect("write damage");
        lost.extend(loses);
        flips.push((file, at));
    }
    let originals = contents(&dir);
    let report = strata::repair(&dir).unwrap_or_else(|e| panic!("{name}: repair: {e}"));
    assert!(report.rebuilt, "{name}: {report:?}");
    for (file, at) in &flips {
        assert_reported(&report, &dir, file, *at, name);
    }
    assert!(report.bytes_lost > 0 && report.records_written > 0, "{name}: {report:?}");
    let aside = report.originals_dir.clone().expect("originals dir");
    assert!(aside.starts_with(&dir), "{name}: the originals stay inside the database directory");
    assert_eq!(contents(&aside), originals, "{name}: every original kept aside, byte for byte");
    check_reads(&dir, built, &lost, name);

    let before = contents(&dir);
    let again = strata::repair(&dir).expect("second repair");
    assert!(!again.rebuilt && again.damaged_files.is_empty() && again.records_lost == 0, "{name}: idempotent: {again:?}");
    assert_eq!(contents(&dir), before, "{name}: a second repair changes nothing");
    (dir, lost)
}

#[test]
fn damage_in_each_file_kind_alone_and_together_loses_only_what_it_hit() {
    let built = build();
    let cases: Vec<(&str, Vec<Damage>)> = vec![
        ("cold-row", vec![Damage::ColdRow("cold/050")]),
        ("cold-footer", vec![Damage::ColdFooter]),
        ("warm-record", vec![Damage::LogRecord("warm0", "warmA/007", false)]),
        ("warm-overwrite", vec![Damage::LogRecord("warm1", "cold/022", false)]),
        ("warm-batch-member", vec![Damage::LogRecord("warm0", "warmA/b1", false)]),
        ("warm-hint", vec![Damage::Hint("warm1")]),
        ("warm-trailer", vec![Damage::Trailer("warm0")]),
        ("log-header", vec![Damage::LogHeader("warm1")]),
        ("meta", vec![Damage::Small("META")]),
        ("manifest", vec![Damage::Small("MANIFEST")]),
        ("hot-record", vec![Damage::LogRecord("hot", "hot/005", true)]),
        ("hot-batch-member", vec![Damage::LogRecord("hot", "hot/b1", true)]),
        (
            "together",
            vec![
                Damage::ColdRow("cold/051"),
                Damage::LogRecord("warm0", "warmA/012", false),
                Damage::Hint("warm1"),
                Damage::LogRecord("hot", "cold/045", true),
            ],
        ),
    ];
    for (name, damages) in &cases {
        let (_, lost) = repair_case(&built, name, damages);
        let harmless = |d: &Damage| matches!(d, Damage::Hint(_) | Damage::Trailer(_) | Damage::LogHeader(_) | Damage::Small(_));
        assert!(!lost.is_empty() || damages.iter().all(harmless), "{name}: the case loses something");
    }
}

#[test]
fn a_cold_row_lost_is_counted_exactly_and_an_older_version_resurfaces_only_when_newer_ones_are_lost() {
    let built = build();
    let (dir, lost) = repair_case(&built, "counted", &[Damage::ColdRow("cold/052"), Damage::LogRecord("warm1", "cold/025", false)]);
    assert_eq!(lost.len(), 2);
    let clock = TestClock::new();
    let db = Db::open(&dir, options(&clock)).expect("open");
    assert!(db.get(b"cold/052").expect("get").is_none(), "its only version was damaged: gone, never served damaged");
    let cold_025 = db.get(b"cold/025").expect("get").expect("the cold version comes back");
    assert_eq!(cold_025.content(), content("cold/025"), "the newest intact version: the cold row");
    assert_eq!(cold_025.embedding().map(bits), Some(bits(&embedding(25))));
}

#[test]
fn repair_of_a_healthy_database_changes_nothing() {
    let built = build();
    let dir = built._temp.path().join("healthy");
    copy_tree(&built.pristine, &dir);
    let before = contents(&dir);
    let report = strata::repair(&dir).expect("repair");
    assert!(!report.rebuilt && report.damaged_files.is_empty() && report.originals_dir.is_none(), "{report:?}");
    assert!(report.records_salvaged > 0);
    assert_eq!(contents(&dir), before, "nothing changed");
    check_reads(&dir, &built, &BTreeSet::new(), "healthy");
}

#[test]
fn repair_while_another_handle_holds_the_lock_is_locked() {
    let built = build();
    let clock = TestClock::new();
    let db = Db::open(&built.pristine, options(&clock)).expect("open");
    assert!(matches!(strata::repair(&built.pristine), Err(Error::Locked { .. })));
    drop(db);
    assert!(strata::repair(&built.pristine).is_ok_and(|r| !r.rebuilt));
}

/// The states a crash can leave during the swap, rebuilt by hand from a finished repair:
/// before the commit point (a staging directory), after it with some originals moved, and
/// with some rebuilt files moved in. Each ends in the repaired database, through repair or a
/// writable open; a read-only open refuses an unfinished swap.
#[test]
fn an_interrupted_swap_is_rolled_forward_by_repair_or_open() {
    let built = build();
    let damages = [Damage::LogRecord("warm0", "warmA/003", false)];
    let (repaired, lost) = repair_case(&built, "swap", &damages);
    let aside = repaired.join("repair-1");
    let rebuilt: Vec<String> = contents(&repaired).into_keys().collect();
    let originals: Vec<String> = contents(&aside).into_keys().collect();

    // After the commit point, some originals moved aside: `new/` holds the rebuilt files.
    let crashed = built._temp.path().join("crash-moving-originals");
    copy_tree(&repaired, &crashed);
    let (aside_c, new) = (crashed.join("repair-1"), crashed.join("repair-1/new"));
    std::fs::create_dir(&new).expect("mkdir new");
    for name in &rebuilt {
        std::fs::rename(crashed.join(name), new.join(name)).expect("back into new/");
    }
    for name in originals.iter().step_by(2) {
        std::fs::rename(aside_c.join(name), crashed.join(name)).expect("not yet moved aside");
    }
    let clock = TestClock::new();
    assert!(matches!(Db::open(&crashed, options(&clock).read_only(true)), Err(Error::Corruption { .. })));
    drop(Db::open(&crashed, options(&clock)).expect("a writable open finishes the swap"));
    check_reads(&crashed, &built, &lost, "crash while moving originals");
    assert_eq!(contents(&aside_c).into_keys().collect::<Vec<_>>(), originals, "every original aside");

    // Rebuilt files half moved in from `incoming/`.
    let crashed = built._temp.path().join("crash-moving-in");
    copy_tree(&repaired, &crashed);
    let incoming = crashed.join("repair-1/incoming");
    std::fs::create_dir(&incoming).expect("mkdir incoming");
    for name in rebuilt.iter().step_by(2) {
        std::fs::rename(crashed.join(name), incoming.join(name)).expect("not yet moved in");
    }
    let report = strata::repair(&crashed).expect("repair finishes the swap");
    assert!(!report.rebuilt, "then finds the database healthy: {report:?}");
    check_reads(&crashed, &built, &lost, "crash while moving in");

    // Before the commit point: a staging directory beside the untouched damaged original.
    let crashed = built._temp.path().join("crash-staging");
    copy_tree(&aside, &crashed);
    std::fs::create_dir_all(crashed.join("repair-1.tmp/new")).expect("mkdir staging");
    std::fs::write(crashed.join("repair-1.tmp/new/0000000000000001.cold"), b"half written").expect("junk");
    let report = strata::repair(&crashed).expect("repair");
    assert!(report.rebuilt && !crashed.join("repair-1.tmp").exists(), "{report:?}");
    check_reads(&crashed, &built, &lost, "crash before the commit point");
}

#[test]
fn a_missing_meta_is_rebuilt_from_the_segment_headers() {
    let built = build();
    let dir = built._temp.path().join("no-meta");
    copy_tree(&built.pristine, &dir);
    std::fs::remove_file(dir.join("META")).expect("remove META");
    let report = strata::repair(&dir).expect("repair");
    assert!(report.rebuilt && report.damaged_files.iter().any(|f| f.missing && f.path == dir.join("META")), "{report:?}");
    check_reads(&dir, &built, &BTreeSet::new(), "no META");

    let empty = built._temp.path().join("not-a-database");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(matches!(strata::repair(&empty), Err(Error::Io(_))), "nothing to salvage is an error");
    assert!(listing(&empty).is_empty(), "and leaves nothing behind");
    assert!(matches!(strata::repair(&built._temp.path().join("absent")), Err(Error::Io(_))));
}

/// A log segment named with a huge id (damage, or a crafted file) leaves a gap of billions of
/// ids: repair reports it in bounded space — the first missing files, then one entry for the
/// rest — and still salvages what is there (found by the open_directory fuzz target: repair
/// listed every id of the gap and ran out of memory).
#[test]
fn a_huge_gap_in_the_segment_ids_is_reported_in_bounded_space() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("db");
    let db = Db::open(&dir, Options::new().embedding_dim(DIM).durability(Durability::Flush)).expect("open");
    db.put(b"kept", b"content", None).expect("put");
    db.close().expect("close");
    drop(db);
    let first = listing(&dir).into_iter().map(|(n, _)| n).find(|n| n.ends_with(".log")).expect("a segment");
    std::fs::copy(dir.join(&first), dir.join("00000000fffffff0.log")).expect("plant a far segment");
    assert!(matches!(Db::open(&dir, Options::new().read_only(true)), Err(Error::Corruption { .. })), "the gap is Corruption at open");
    let report = strata::repair(&dir).expect("repair");
    let missing: Vec<_> = report.damaged_files.iter().filter(|f| f.missing).collect();
    assert!(missing.len() <= 20, "{} entries for one gap", missing.len());
    assert!(missing.iter().any(|f| f.lost_ranges.iter().any(|r| r.detail.contains("more log segments are missing"))), "{missing:?}");
    let db = Db::open(&dir, Options::new()).expect("opens after repair");
    assert_eq!(db.get(b"kept").expect("get").map(|r| r.content().to_vec()), Some(b"content".to_vec()));
}
