//! The `open_directory` target: the input is decoded into a directory, an arbitrary set of
//! files with arbitrary contents, named as strata names its files (META, MANIFEST, LOCK,
//! log and cold segments, temp files, repair's aside and staging directories) or not;
//! optionally on top of the files of a real database. Then: open read-only and read-write;
//! when an open succeeds, iterate, get, search, verify, and put + close + reopen; and
//! `strata::repair` on a copy, whose `Ok` must leave a database that opens and verifies and
//! keeps every original file's bytes. A panic, a hang, an `Ok` open that serves
//! inconsistent records after `verify()` held, or such a repair is a crash.
//!
//! Input: a flags byte (which database to start from), then entries until the input ends:
//! `kind` byte, `param` byte, and for a write a little-endian u16 length and that many bytes
//! (cut at the input's end). `kind & 0x0f` picks the name (see `name`), `0x10` removes the
//! name instead, `0x20` makes it an empty directory; kind 14 patches a file of the start
//! database in place (`param` picks it, then a u16 offset, then the bytes).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use strata::{Db, Options, Record, Search};

use super::{cold_template_files, fuzz_dir, Entry, DIM};

/// Files written per input, at most.
const ENTRIES_MAX: usize = 24;
/// Records read per pass, at most: a damaged length must not make a pass unbounded.
const READ_MAX: usize = 10_000;

/// Names that are not strata's but look like them, or sit where it looks.
const OTHER_NAMES: &[&str] = &[
    "x",
    "1.log",
    "0000000000000001.LOG",
    "00000000000000001.log",
    "ffffffffffffffff.log",
    "00000000ffffffff.log",
    "0000000100000000.log",
    "ffffffffffffffff.cold",
    "0000000000000001.cold.tmp",
    "META.bak",
    "LOCK.tmp",
    "repair-",
    "repair-x",
    "repair-0",
    ".hidden",
    "new",
];

/// The files of a small, cleanly closed database with warm and hot segments and no cold
/// tier (the cold template is `cold_template_files`).
fn warm_template_files() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = fuzz_dir("warm-template");
        let db = Db::open(&dir, Options::new().embedding_dim(DIM)).expect("template opens");
        db.put(b"a", b"first", Some(&[1.0, 2.0, 3.0, 4.0])).expect("template write");
        db.put(b"b", b"", None).expect("template write");
        db.delete(b"a").expect("template write");
        db.seal().expect("template seals");
        db.put(b"a", b"again", Some(&[0.0, -1.0, 0.5, 2.0])).expect("template write");
        db.put_with_ttl(b"t", b"far", None, std::time::Duration::from_secs(1 << 32)).expect("template write");
        db.close().expect("template closes");
        drop(db);
        let files = read_tree(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        files
    })
}

/// Every file under `dir` (relative names, `/` between parts), sorted; LOCK left out.
fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            let name = format!("{rel}{}", entry.file_name().to_string_lossy());
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push((entry.path(), format!("{name}/")));
            } else if kind.is_file() && name != "LOCK" {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    files.push((name, bytes));
                }
            }
        }
    }
    files.sort();
    files
}

fn start_files(flags: u8) -> &'static [(String, Vec<u8>)] {
    match flags % 3 {
        0 => &[],
        1 => cold_template_files(),
        _ => warm_template_files(),
    }
}

/// The name an entry's `kind` and `param` pick.
fn name(kind: u8, param: u8) -> String {
    let inner = ["META", "MANIFEST", "0000000000000000.log", "0000000000000001.log", "0000000000000000.cold"][usize::from(param / 16) % 5];
    match kind & 0x0f {
        0 => "META".into(),
        1 => "MANIFEST".into(),
        2 => "LOCK".into(),
        3 => "META.tmp".into(),
        4 => "MANIFEST.tmp".into(),
        5..=7 => format!("{:016x}.log", param % 4),
        8 | 9 => format!("{:016x}.cold", param % 3),
        10 => format!("repair-{}/{inner}", param % 2),
        11 => format!("repair-{}.tmp/{inner}", param % 2),
        12 => format!("repair-0/{}/{inner}", ["new", "incoming"][usize::from(param % 2)]),
        _ => OTHER_NAMES[usize::from(param) % OTHER_NAMES.len()].into(),
    }
}

/// The directory the input describes, as (relative name, contents or `None` for an empty
/// directory).
fn decode(data: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let flags = data.first().copied().unwrap_or(0);
    let base = start_files(flags);
    let mut files: Vec<(String, Option<Vec<u8>>)> = base.iter().map(|(n, b)| (n.clone(), Some(b.clone()))).collect();
    let mut at = 1;
    let take = |n: usize, at: &mut usize| {
        let end = (*at).saturating_add(n).min(data.len());
        let bytes = data.get(*at..end).unwrap_or(&[]).to_vec();
        *at = end;
        bytes
    };
    let u16_at =
        |bytes: Vec<u8>| usize::from(u16::from_le_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]));
    for _ in 0..ENTRIES_MAX {
        if at >= data.len() {
            break;
        }
        let head = take(2, &mut at);
        let (kind, param) = (head[0], head.get(1).copied().unwrap_or(0));
        if kind & 0x0f == 14 {
            let offset = u16_at(take(2, &mut at));
            let len = u16_at(take(2, &mut at));
            let patch = take(len, &mut at);
            let count = files.len();
            if let Some((_, Some(bytes))) = files.get_mut(usize::from(param) % count.max(1)) {
                for (i, b) in patch.into_iter().enumerate() {
                    match bytes.get_mut(offset + i) {
                        Some(slot) => *slot = b,
                        None => bytes.push(b),
                    }
                }
            }
            continue;
        }
        let name = name(kind, param);
        files.retain(|(n, _)| *n != name);
        if kind & 0x10 != 0 {
            continue;
        }
        if kind & 0x20 != 0 {
            files.push((name, None));
        } else {
            let len = u16_at(take(2, &mut at));
            files.push((name, Some(take(len, &mut at))));
        }
    }
    files
}

/// Writes the decoded directory under `dir` (a name that cannot be made is skipped).
fn materialise(dir: &Path, files: &[(String, Option<Vec<u8>>)]) {
    std::fs::create_dir_all(dir).expect("fuzz dir");
    for (name, contents) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = match contents {
            Some(bytes) => std::fs::write(&path, bytes),
            None => std::fs::create_dir_all(&path),
        };
    }
}

/// A fixed clock: expiry cannot move between two reads of one check.
fn options() -> Options {
    static NOW: AtomicU64 = AtomicU64::new(1_800_000_000_000);
    Options::new().threads(1).clock(|| NOW.load(Ordering::Relaxed))
}

/// Reads everything an open handle serves. Returns the records when `verify()` held and
/// then checks what a verified database must give: every read succeeds, iteration is
/// strictly ascending and the same both ways, a get of each key returns the same record.
fn read_all(db: &Db) -> Option<Vec<Entry>> {
    let forward: Vec<strata::Result<Record>> = db.iter().take(READ_MAX).collect();
    let backward: Vec<strata::Result<Record>> = db.iter().rev().take(READ_MAX).collect();
    for record in forward.iter().flatten() {
        let _ = db.get(record.key());
    }
    let query = [1.0, 0.5, -0.5, 0.25];
    let _ = db.nearest(&query, 3);
    let _ = db.search(&Search::new(&query).k(5).metric(strata::Metric::L2).prefix(b"a"));
    let _ = db.stats();
    db.verify().ok()?;
    // verify() held: every checksum of every file is good, so every read must succeed.
    let forward: Vec<Entry> = forward.iter().map(|r| Entry::of(r.as_ref().expect("a verified database fails an iteration"))).collect();
    let mut backward: Vec<Entry> =
        backward.iter().map(|r| Entry::of(r.as_ref().expect("a verified database fails a reverse iteration"))).collect();
    backward.reverse();
    if forward.len() < READ_MAX {
        assert_eq!(forward, backward, "iteration forward and backward disagree");
        for pair in forward.windows(2) {
            assert!(pair[0].key < pair[1].key, "iteration is not strictly ascending: {:?} then {:?}", pair[0].key, pair[1].key);
        }
    }
    for entry in &forward {
        let got = db.get(&entry.key).expect("a verified database fails a get").map(|r| Entry::of(&r));
        assert_eq!(got.as_ref(), Some(entry), "get disagrees with iteration");
    }
    Some(forward)
}

/// The `open_directory` fuzz target (see the module doc).
pub fn open_directory(data: &[u8]) {
    let files = decode(data);
    let dir = fuzz_dir("dir");
    materialise(&dir, &files);
    if let Ok(db) = Db::open(&dir, options().read_only(true)) {
        read_all(&db);
    }
    if let Ok(db) = Db::open(&dir, options()) {
        let before = read_all(&db);
        let written = db.put(b"fuzz/new", b"written by the harness", None).is_ok();
        let closed = db.close().is_ok();
        drop(db);
        let reopened = Db::open(&dir, options());
        if let (Some(before), true, true) = (before, written, closed) {
            // A verified database, a write and a clean close: it must open again with the
            // write and every record it had.
            let db = reopened.unwrap_or_else(|e| panic!("a verified database that took a write and closed cleanly does not reopen: {e}"));
            let after = read_all(&db).expect("a verified database that took a write no longer verifies");
            for entry in &before {
                if entry.key.as_slice() != b"fuzz/new" {
                    assert!(after.contains(entry), "record {:?} lost by a write and a reopen", entry.key);
                }
            }
            assert!(after.iter().any(|e| e.key == b"fuzz/new"), "the write is lost by close and reopen");
        } else if let Ok(db) = reopened {
            read_all(&db);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    check_repair(&files);
}

/// `strata::repair` on the input's directory: when it says `Ok`, the database opens
/// read-write and verifies, a second repair is `Ok` too, and the bytes of every original
/// database file are still somewhere in the directory (moved aside, never deleted).
fn check_repair(files: &[(String, Option<Vec<u8>>)]) {
    let dir = fuzz_dir("repair");
    materialise(&dir, files);
    if let Ok(report) = strata::repair(&dir) {
        let kept: BTreeSet<Vec<u8>> = read_tree(&dir).into_iter().map(|(_, b)| b).collect();
        for (name, bytes) in files {
            let top_level_database_file = !name.contains('/')
                && (name == "META" || name == "MANIFEST" || is_segment_name(name, ".log") || is_segment_name(name, ".cold"));
            if let (true, Some(bytes)) = (top_level_database_file, bytes) {
                assert!(kept.contains(bytes), "repair ({report:?}) deleted the bytes of {name}");
            }
        }
        let db = match Db::open(&dir, options()) {
            Ok(db) => db,
            Err(e) => panic!("repair returned Ok ({report:?}) but the database does not open: {e}"),
        };
        read_all(&db).unwrap_or_else(|| panic!("repair returned Ok ({report:?}) but the database does not verify: {:?}", db.verify()));
        db.close().expect("close a repaired database");
        drop(db);
        strata::repair(&dir).unwrap_or_else(|e| panic!("a second repair after an Ok one fails: {e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The id of a top-level log segment name, as strata parses it (16 lowercase hex digits
/// of a u32).
fn segment_id(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log").filter(|_| is_segment_name(name, ".log"))?;
    u64::from_str_radix(stem, 16).ok().filter(|&id| id <= u64::from(u32::MAX))
}

fn is_segment_name(name: &str, extension: &str) -> bool {
    name.strip_suffix(extension).is_some_and(|stem| stem.len() == 16 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Inputs made from the start databases: their files written one by one onto an empty
/// directory, and a few damaged variants (for the corpus; see the replay test).
pub fn open_directory_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = vec![("seed-empty".to_string(), vec![0]), ("seed-cold".into(), vec![1]), ("seed-warm".into(), vec![2])];
    for (label, files) in [("cold", cold_template_files()), ("warm", warm_template_files())] {
        let mut explicit = vec![0u8];
        for (name, bytes) in files {
            let (kind, param) = match name.as_str() {
                "META" => (0, 0),
                "MANIFEST" => (1, 0),
                n if n.ends_with(".log") => (5, u8::from_str_radix(&n[..16], 16).unwrap_or(0)),
                n => (8, u8::from_str_radix(&n[..16], 16).unwrap_or(0)),
            };
            explicit.extend([kind, param]);
            explicit.extend((bytes.len() as u16).to_le_bytes());
            explicit.extend(bytes);
        }
        seeds.push((format!("seed-{label}-files"), explicit));
        let base = if label == "cold" { 1 } else { 2 };
        seeds.push((format!("seed-{label}-no-meta"), vec![base, 0x10, 0]));
        seeds.push((format!("seed-{label}-no-manifest"), vec![base, 0x11, 0]));
        seeds.push((format!("seed-{label}-no-segment-1"), vec![base, 0x15, 1]));
        seeds.push((format!("seed-{label}-meta-dir"), vec![base, 0x20, 0]));
        seeds.push((format!("seed-{label}-flip"), vec![base, 14, 1, 40, 0, 1, 0, 0xff]));
        seeds.push((format!("seed-{label}-aside"), vec![base, 10, 0x10, 4, 0, b'j', b'u', b'n', b'k']));
        seeds.push((format!("seed-{label}-staging"), vec![base, 11, 0x00, 2, 0, 0, 0]));
        seeds.push((format!("seed-{label}-gap"), vec![base, 7, 3, 0, 0]));
    }
    seeds
}
