//! Golden files of format v1 (`format-spec/golden/v1/`) stay readable forever and mean what
//! `format-spec/` says. Method: the committed database is opened through the public API and
//! must hold exactly the expected records; an independent reader written from the spec pages
//! alone decodes every byte to known values; `examples/make_golden.rs` regenerates every file
//! byte for byte; each damaged copy fails (or recovers) exactly as `format-spec/recovery.md`
//! says; a version-2 file is `UnsupportedVersion`. Every database is copied to a temporary
//! directory first (a writable open changes files), and the TTL clock is injected
//! (`test-hooks`) so that expiry does not depend on today's date.

#[allow(dead_code)] // the generator's `main` and some constants are not used here
#[path = "../examples/make_golden.rs"]
mod make_golden;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata::{Db, Error, Options, Tier};
use tempfile::TempDir;

// ---- the golden content ------------------------------------------------------------------

/// The clock every reading test runs at unless it says otherwise (2027-01-15): `ttl/past`
/// has expired, `ttl/far` has not.
const READ_CLOCK_MS: u64 = 1_800_000_000_000;
const TTL_FAR_EXPIRES_MS: u64 = 4_700_000_000_000;
const TTL_PAST_EXPIRES_MS: u64 = 1_700_000_000_001;

const ODD_KEY: &[u8] = &[0x00, 0xFF, b'k', 0x00, 0xFF];
const ODD_CONTENT: &[u8] = &[0xFF, 0x00, 0x7F, 0x80];
const ODD_EMBEDDING: [f32; 4] = [-0.0, f32::from_bits(1), f32::MAX, f32::MIN];
const DELTA_CONTENT: [u8; 100] = {
    let mut bytes = [0u8; 100];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

/// One live record as the public API must return it: key, content, embedding, seq.
type Live = (&'static [u8], &'static [u8], Option<[f32; 4]>, u64);

/// Every live record at `READ_CLOCK_MS`, in ascending key order.
const LIVE: &[Live] = &[
    (ODD_KEY, ODD_CONTENT, Some(ODD_EMBEDDING), 4),
    (b"alpha", b"second version of alpha", Some([4.0, 3.0, 2.0, 1.0]), 8),
    (b"batch/1", b"first in batch", None, 10),
    (b"batch/2", b"second in batch", Some([0.125, 0.25, 0.375, 0.5]), 10),
    (b"beta", b"", Some([0.5, -0.5, 0.25, -0.25]), 2),
    (b"delta", &DELTA_CONTENT, None, 11),
    (b"epsilon", b"first record of the active segment", Some([-1.0, -2.0, -3.0, -4.0]), 12),
    (b"omega/1", b"last commit, part 1", Some([9.0, 8.0, 7.0, 6.0]), 14),
    (b"omega/2", b"last commit, part 2", None, 14),
    (b"ttl/far", b"expires in the year 2118", None, 5),
    (b"zeta", b"the middle record", Some([1.5, 2.5, 3.5, 4.5]), 13),
];
/// Keys that are stored but not live at `READ_CLOCK_MS`: deleted, deleted, expired.
const NOT_LIVE: &[&[u8]] = &[b"gamma", b"doomed", b"ttl/past"];
/// Keys whose newest version is in a sealed segment (the warm tier); the rest are hot.
const WARM_KEYS: &[&[u8]] = &[ODD_KEY, b"alpha", b"batch/1", b"batch/2", b"beta", b"delta", b"ttl/far"];
/// Keys of the last commit (seq 14, a two-record batch).
const LAST_COMMIT_KEYS: &[&[u8]] = &[b"omega/1", b"omega/2"];
/// Keys stored only in the active segment.
const ACTIVE_KEYS: &[&[u8]] = &[b"epsilon", b"zeta", b"omega/1", b"omega/2"];

const SEGMENT_1: &str = "0000000000000001.log";
const SEGMENT_2: &str = "0000000000000002.log";
const SEGMENT_3: &str = "0000000000000003.log";

// Record kinds and flags as `format-spec/log-segment.md` defines them.
const PUT: u8 = 1;
const DELETE: u8 = 2;
const CLOSE_MARK: u8 = 3;
/// Format 2: the first record of a commit group that follows an fdatasync.
const GROUP_MARK: u8 = 4;
const EMB: u8 = 1 << 0;
const TTL: u8 = 1 << 1;
const END: u8 = 1 << 2;

/// One record of a segment file as the spec decodes it.
#[derive(Clone, Debug, PartialEq)]
struct DecodedRecord {
    offset: usize,
    kind: u8,
    flags: u8,
    seq: u64,
    expires_at_ms: u64,
    key: Vec<u8>,
    content: Vec<u8>,
    /// Bit patterns, so that -0.0 and subnormals compare exactly.
    embedding: Option<Vec<u32>>,
}

#[allow(clippy::too_many_arguments)]
fn rec(
    offset: usize,
    kind: u8,
    flags: u8,
    seq: u64,
    expires_at_ms: u64,
    key: &[u8],
    content: &[u8],
    embedding: Option<[f32; 4]>,
) -> DecodedRecord {
    DecodedRecord {
        offset,
        kind,
        flags,
        seq,
        expires_at_ms,
        key: key.to_vec(),
        content: content.to_vec(),
        embedding: embedding.map(|e| e.iter().map(|v| v.to_bits()).collect()),
    }
}

/// Every record of segment 1, in file order; the close mark of session 1 sits between seq 7
/// and seq 8.
fn segment_1_records() -> Vec<DecodedRecord> {
    vec![
        rec(64, PUT, EMB | END, 1, 0, b"alpha", b"first version of alpha", Some([1.0, 2.0, 3.0, 4.0])),
        rec(144, PUT, EMB | END, 2, 0, b"beta", b"", Some([0.5, -0.5, 0.25, -0.25])),
        rec(200, PUT, END, 3, 0, b"gamma", b"no embedding; deleted later in a batch", None),
        rec(280, PUT, EMB | END, 4, 0, ODD_KEY, ODD_CONTENT, Some(ODD_EMBEDDING)),
        rec(344, PUT, TTL | END, 5, TTL_FAR_EXPIRES_MS, b"ttl/far", b"expires in the year 2118", None),
        rec(408, PUT, EMB | TTL | END, 6, TTL_PAST_EXPIRES_MS, b"ttl/past", b"expired long ago", Some([0.0, 0.0, 0.0, 1.0])),
        rec(480, PUT, END, 7, 0, b"doomed", b"to be deleted", None),
        rec(536, CLOSE_MARK, END, 7, 0, b"", b"", None),
        rec(568, PUT, EMB | END, 8, 0, b"alpha", b"second version of alpha", Some([4.0, 3.0, 2.0, 1.0])),
        rec(648, DELETE, END, 9, 0, b"doomed", b"", None),
    ]
}

/// Segment 2: the batch of seq 10 (its superseded first put of `batch/1` is not written),
/// then seq 11.
fn segment_2_records() -> Vec<DecodedRecord> {
    vec![
        rec(64, PUT, EMB, 10, 0, b"batch/2", b"second in batch", Some([0.125, 0.25, 0.375, 0.5])),
        rec(136, DELETE, 0, 10, 0, b"gamma", b"", None),
        rec(176, PUT, END, 10, 0, b"batch/1", b"first in batch", None),
        rec(232, PUT, END, 11, 0, b"delta", &DELTA_CONTENT, None),
    ]
}

/// Segment 3, the active one, ended by the close mark of session 2.
fn segment_3_records() -> Vec<DecodedRecord> {
    vec![
        rec(64, PUT, EMB | END, 12, 0, b"epsilon", b"first record of the active segment", Some([-1.0, -2.0, -3.0, -4.0])),
        rec(160, PUT, EMB | END, 13, 0, b"zeta", b"the middle record", Some([1.5, 2.5, 3.5, 4.5])),
        rec(232, PUT, EMB, 14, 0, b"omega/1", b"last commit, part 1", Some([9.0, 8.0, 7.0, 6.0])),
        rec(312, PUT, END, 14, 0, b"omega/2", b"last commit, part 2", None),
        rec(376, CLOSE_MARK, END, 14, 0, b"", b"", None),
    ]
}

// ---- helpers ---------------------------------------------------------------------------

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1")
}

/// A temporary copy of `format-spec/golden/v1/<relative>`; the copy is `<temp>/db`.
fn copy_of(relative: &str) -> (TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    make_golden::copy_dir(&golden_root().join(relative), &dir).unwrap();
    (temp, dir)
}

/// Background maintenance off: the files must be exactly what the steps wrote.
fn options_at(now_ms: u64) -> Options {
    Options::new().auto_compact(false).clock(move || now_ms)
}

fn open_at(dir: &Path, now_ms: u64) -> strata::Result<Db> {
    Db::open(dir, options_at(now_ms))
}

fn embedding_bits(embedding: Option<&[f32]>) -> Option<Vec<u32>> {
    embedding.map(|e| e.iter().map(|v| v.to_bits()).collect())
}

/// A record as compared in tests: key, content, embedding bits, seq.
type OwnedRecord = (Vec<u8>, Vec<u8>, Option<Vec<u32>>, u64);

fn owned(record: strata::Result<strata::Record>) -> OwnedRecord {
    let r = record.unwrap();
    (r.key().to_vec(), r.content().to_vec(), embedding_bits(r.embedding()), r.seq())
}

/// Every record `iter()` yields, in order.
fn live_records(db: &Db) -> Vec<OwnedRecord> {
    db.iter().map(owned).collect()
}

fn expected_live(keep: impl Fn(&[u8]) -> bool) -> Vec<OwnedRecord> {
    LIVE.iter()
        .filter(|(key, ..)| keep(key))
        .map(|(key, content, embedding, seq)| {
            (key.to_vec(), content.to_vec(), embedding.map(|e| e.iter().map(|v| v.to_bits()).collect()), *seq)
        })
        .collect()
}

fn keys_in_tier(db: &Db, tier: Tier) -> Vec<Vec<u8>> {
    db.iter_tier(tier).map(|r| r.unwrap().key().to_vec()).collect()
}

#[track_caller]
fn assert_corruption(error: Error, file: &str, offset: u64) {
    match error {
        Error::Corruption { path, offset: found, detail } => {
            assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(file), "wrong file in Corruption ({detail})");
            assert_eq!(found, offset, "wrong offset in Corruption ({detail})");
        }
        other => panic!("expected Corruption in {file} at {offset}, got {other:?}"),
    }
}

#[track_caller]
fn assert_unsupported_version(error: Error, file: &str, version: u32) {
    match error {
        Error::UnsupportedVersion { path, found, read_min, latest } => {
            assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(file));
            assert_eq!((found, read_min, latest), (version, strata::FORMAT_VERSION_READ_MIN, strata::FORMAT_VERSION_LATEST));
        }
        other => panic!("expected UnsupportedVersion of {file}, got {other:?}"),
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

fn golden_file(file: &str) -> Vec<u8> {
    read(&golden_root().join("db"), file)
}

// ---- the golden database through the public API ----------------------------------------

#[test]
fn golden_db_holds_exactly_the_expected_live_records() {
    assert_eq!((strata::FORMAT_VERSION_LATEST, strata::FORMAT_VERSION_READ_MIN), (2, 1), "v1 is read, v2 is written");
    let (_temp, dir) = copy_of("db");
    let db = open_at(&dir, READ_CLOCK_MS).unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true), "iter() in key order");
    let mut reversed = expected_live(|_| true);
    reversed.reverse();
    assert_eq!(db.iter().rev().map(owned).collect::<Vec<_>>(), reversed, "iter().rev()");
    for (key, content, embedding, seq) in expected_live(|_| true) {
        let record = db.get(&key).unwrap().unwrap_or_else(|| panic!("{key:?} is live"));
        assert_eq!(
            (record.key(), record.content(), embedding_bits(record.embedding()), record.seq()),
            (&key[..], &content[..], embedding, seq)
        );
    }
    for key in NOT_LIVE {
        assert!(db.get(key).unwrap().is_none(), "{key:?} is deleted or expired");
    }
    assert_eq!(db.stats().live_records, LIVE.len() as u64);
}

#[test]
fn golden_db_keeps_sealed_records_warm_and_active_records_hot() {
    let (_temp, dir) = copy_of("db");
    let db = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap();
    assert_eq!(keys_in_tier(&db, Tier::Warm), expected_live(|k| WARM_KEYS.contains(&k)).into_iter().map(|r| r.0).collect::<Vec<_>>());
    assert_eq!(keys_in_tier(&db, Tier::Hot), expected_live(|k| !WARM_KEYS.contains(&k)).into_iter().map(|r| r.0).collect::<Vec<_>>());
    let stats = db.stats();
    assert_eq!((stats.tier(Tier::Warm).segments, stats.tier(Tier::Hot).segments), (2, 1));
}

#[test]
fn golden_db_passes_verify_with_every_file_and_record_counted() {
    let (_temp, dir) = copy_of("db");
    let db = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap();
    let report = db.verify().unwrap();
    assert_eq!(report.files_checked, 4, "META and three segments");
    assert_eq!(report.records_checked, 9 + 4 + 4, "data records; close marks are not counted");
    let bytes: u64 = ["META", SEGMENT_1, SEGMENT_2, SEGMENT_3].iter().map(|f| golden_file(f).len() as u64).sum();
    assert_eq!(report.bytes_checked, bytes);
}

#[test]
fn ttl_expiry_is_exactly_the_stored_absolute_time() {
    let (_temp, dir) = copy_of("db");
    let cases = [
        (TTL_PAST_EXPIRES_MS - 1, true, true),
        (TTL_PAST_EXPIRES_MS, false, true),
        (TTL_FAR_EXPIRES_MS - 1, false, true),
        (TTL_FAR_EXPIRES_MS, false, false),
    ];
    for (now_ms, past_live, far_live) in cases {
        let db = Db::open(&dir, options_at(now_ms).read_only(true)).unwrap();
        assert_eq!(db.get(b"ttl/past").unwrap().is_some(), past_live, "ttl/past at {now_ms}");
        assert_eq!(db.get(b"ttl/far").unwrap().is_some(), far_live, "ttl/far at {now_ms}");
    }
}

#[test]
fn far_future_ttl_record_is_live_by_the_wall_clock() {
    let (_temp, dir) = copy_of("db");
    let db = Db::open(&dir, Options::new().read_only(true)).unwrap();
    assert_eq!(db.get(b"ttl/far").unwrap().map(|r| r.seq()), Some(5), "expires in 2118");
    assert!(db.get(b"ttl/past").unwrap().is_none(), "expired in 2023");
}

#[test]
fn read_only_open_changes_no_byte() {
    let (_temp, dir) = copy_of("db");
    let db = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap();
    assert_eq!(live_records(&db).len(), LIVE.len());
    drop(db);
    assert_eq!(files_under(&dir), files_under(&golden_root().join("db")));
}

/// A writable open upgrades a format 1 database before it writes anything of format 2:
/// `META` says version 2 (so builds that know only format 1 refuse it), the format 1 active
/// segment is sealed as it is (its bytes kept, a hint block and a format 1 trailer appended),
/// and new commits go to a format 2 segment. No record changes.
#[test]
fn writable_open_upgrades_a_v1_database_and_changes_no_record() {
    let (_temp, dir) = copy_of("db");
    let db = open_at(&dir, READ_CLOCK_MS).unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    db.close().unwrap();
    drop(db);
    let meta = read(&dir, "META");
    assert_eq!(decode_meta(&meta), 4, "dimension kept");
    assert_eq!(u32_at(&meta, 8), 2, "META now says format 2");
    assert_eq!(meta[..8], golden_file("META")[..8]);
    for file in [SEGMENT_1, SEGMENT_2] {
        assert_eq!(read(&dir, file), golden_file(file), "{file} is never written again");
    }
    let golden = golden_file(SEGMENT_3);
    let sealed = read(&dir, SEGMENT_3);
    assert_eq!(sealed[..golden.len()], golden[..], "the v1 active segment keeps every byte");
    let (records, trailer) = decode_segment(&sealed, 3, 4);
    assert_eq!(records, segment_3_records());
    let trailer = trailer.expect("sealed at the upgrade");
    assert_eq!((trailer.records_end, u32_at(&sealed, sealed.len() - 64 + 8)), (golden.len() as u64, 1), "records end, trailer v1");
    let next = read(&dir, "0000000000000004.log");
    assert_eq!((u32_at(&next, 8), next.len()), (2, 64 + 40), "a v2 segment with only a close mark");
    let db = open_at(&dir, READ_CLOCK_MS).unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    db.verify().unwrap();
}

// ---- the golden files through an independent reader of the spec -------------------------

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn align(value: usize, to: usize) -> usize {
    value.div_ceil(to) * to
}
#[track_caller]
fn assert_zero(bytes: &[u8], what: &str) {
    assert!(bytes.iter().all(|&b| b == 0), "{what} must be zero: {bytes:02x?}");
}

/// `format-spec/meta.md`: returns the embedding dimension.
fn decode_meta(b: &[u8]) -> u32 {
    assert_eq!(b.len(), 64);
    assert_eq!(&b[0..8], b"STRATADB");
    assert!([1, 2].contains(&u32_at(b, 8)), "format version");
    assert_zero(&b[16..60], "META reserved bytes");
    assert_eq!(u32_at(b, 60), crc32fast::hash(&b[..60]), "META crc");
    u32_at(b, 12)
}

/// The trailer fields of a sealed segment (`format-spec/log-segment.md`, "Trailer").
#[derive(Debug, PartialEq)]
struct TrailerFields {
    records_end: u64,
    hint_len: u64,
    records_count: u64,
    seq_max: u64,
}

/// One hint entry (`format-spec/log-segment.md`, "Hint block").
#[derive(Debug, PartialEq)]
struct HintEntry {
    offset: u32,
    key: Vec<u8>,
    content_len: u32,
    kind: u8,
    flags: u8,
    seq: u64,
    expires_at_ms: u64,
}

/// Decodes a segment file as `format-spec/log-segment.md` describes it, asserting every
/// rule on the way: header, records with checksums and zero padding, commit structure,
/// and for a sealed segment the hint block and trailer.
fn decode_segment(b: &[u8], segment_id: u32, dim: usize) -> (Vec<DecodedRecord>, Option<TrailerFields>) {
    assert_eq!(&b[0..8], b"STRATLOG");
    let version = u32_at(b, 8);
    assert!([1, 2].contains(&version), "segment format version {version}");
    assert_eq!((u32_at(b, 12), u32_at(b, 16), u32_at(b, 20)), (64, segment_id, dim as u32), "header fields");
    assert_zero(&b[24..60], "header reserved bytes");
    assert_eq!(u32_at(b, 60), crc32fast::hash(&b[..60]), "header crc");

    let trailer = (b.len() >= 128 && &b[b.len() - 64..b.len() - 56] == b"STRATSEG").then(|| decode_trailer(b, version));
    let records_end = trailer.as_ref().map_or(b.len(), |t| t.records_end as usize);
    let mut records = Vec::new();
    let mut at = 64;
    while at < records_end {
        let record = decode_record(b, at, dim);
        assert!(record.kind != GROUP_MARK || version == 2, "group marks exist from format 2 on");
        at += record_len(&record, dim);
        records.push(record);
    }
    assert_eq!(at, records_end, "records end exactly at records_end");
    assert_commits(&records);
    if let Some(t) = &trailer {
        let hints = decode_hints(&b[records_end..records_end + t.hint_len as usize]);
        let data: Vec<&DecodedRecord> = records.iter().filter(|r| [PUT, DELETE].contains(&r.kind)).collect();
        assert_eq!(hints.len(), data.len());
        assert_eq!(t.records_count, data.len() as u64);
        assert_eq!(t.seq_max, data.iter().map(|r| r.seq).max().unwrap_or(0));
        for (hint, r) in hints.iter().zip(data) {
            let expected = HintEntry {
                offset: r.offset as u32,
                key: r.key.clone(),
                content_len: r.content.len() as u32,
                kind: r.kind,
                flags: r.flags & EMB,
                seq: r.seq,
                expires_at_ms: r.expires_at_ms,
            };
            assert_eq!(hint, &expected);
        }
    }
    (records, trailer)
}

fn record_len(r: &DecodedRecord, dim: usize) -> usize {
    let embedding_bytes = if r.embedding.is_some() { dim * 4 } else { 0 };
    align(align(32 + r.key.len(), 4) + embedding_bytes + r.content.len(), 8)
}

fn decode_record(b: &[u8], at: usize, dim: usize) -> DecodedRecord {
    assert_eq!(at % 8, 0, "records are 8-aligned");
    let h = &b[at..at + 32];
    let (kind, flags) = (h[4], h[5]);
    assert!([PUT, DELETE, CLOSE_MARK, GROUP_MARK].contains(&kind), "kind {kind} at {at}");
    assert_eq!(flags & !(EMB | TTL | END), 0, "unknown flags at {at}");
    assert_eq!(u16_at(h, 6), 0, "record reserved bytes at {at}");
    let (key_len, content_len) = (u32_at(h, 8) as usize, u32_at(h, 12) as usize);
    let (seq, expires_at_ms) = (u64_at(h, 16), u64_at(h, 24));
    assert_eq!(flags & TTL != 0, expires_at_ms != 0, "HAS_TTL iff expires_at_ms != 0 at {at}");
    let key_end = at + 32 + key_len;
    let embedding_start = at + align(32 + key_len, 4);
    assert_zero(&b[key_end..embedding_start], "padding after the key");
    let embedding_end = embedding_start + if flags & EMB != 0 { dim * 4 } else { 0 };
    let content_end = embedding_end + content_len;
    let end = at + align(content_end - at, 8);
    assert_zero(&b[content_end..end], "padding after the content");
    assert_eq!(u32_at(h, 0), crc32fast::hash(&b[at + 4..end]), "record crc covers bytes 4..end at {at}");
    let embedding = (flags & EMB != 0).then(|| (embedding_start..embedding_end).step_by(4).map(|i| u32_at(b, i)).collect());
    let record = DecodedRecord {
        offset: at,
        kind,
        flags,
        seq,
        expires_at_ms,
        key: b[at + 32..key_end].to_vec(),
        content: b[embedding_end..content_end].to_vec(),
        embedding,
    };
    match kind {
        PUT => assert!(!record.key.is_empty()),
        DELETE => assert!(!record.key.is_empty() && record.content.is_empty() && record.embedding.is_none() && expires_at_ms == 0),
        GROUP_MARK => {
            assert!(record.key.is_empty() && record.content.len() == 8 && flags == 0 && expires_at_ms == 0, "group mark at {at}");
            let durable_end = u64_at(&record.content, 0);
            assert!(64 < durable_end && durable_end <= at as u64, "a group mark's durable end lies before it, at {at}");
        }
        _ => {
            // A close mark: no content in format 1, its own offset (8 bytes) in format 2.
            assert!(record.key.is_empty() && record.embedding.is_none() && expires_at_ms == 0, "close mark at {at}");
            assert!(record.content.is_empty() || record.content == (at as u64).to_le_bytes(), "close mark content at {at}");
        }
    }
    record
}

/// A commit is a run of data records sharing a seq, the last one flagged COMMIT_END; seqs
/// grow from commit to commit; a close mark sits between commits and repeats the last seq.
fn assert_commits(records: &[DecodedRecord]) {
    let mut last_seq: Option<u64> = None;
    let mut open: Option<u64> = None;
    for r in records {
        if r.kind == CLOSE_MARK || r.kind == GROUP_MARK {
            assert!(open.is_none(), "close or group mark inside a commit");
            assert_eq!(r.seq, last_seq.unwrap_or(r.seq), "a close or group mark repeats the last seq");
            continue;
        }
        match open {
            Some(seq) => assert_eq!(r.seq, seq, "records of one commit share its seq"),
            None => assert!(last_seq.is_none_or(|last| r.seq > last), "seq grows between commits"),
        }
        open = if r.flags & END != 0 { None } else { Some(r.seq) };
        last_seq = Some(r.seq);
    }
    assert!(open.is_none(), "every commit is closed by a COMMIT_END record");
}

fn decode_trailer(b: &[u8], version: u32) -> TrailerFields {
    let t = &b[b.len() - 64..];
    assert_eq!(&t[0..8], b"STRATSEG");
    assert_eq!(u32_at(t, 8), version, "the trailer repeats the header's format version");
    assert_eq!(u32_at(t, 12), 0, "trailer reserved bytes 12..16");
    assert_eq!(u64_at(t, 52), 0, "trailer reserved bytes 52..60");
    assert_eq!(u32_at(t, 60), crc32fast::hash(&t[..60]), "trailer crc");
    let fields =
        TrailerFields { records_end: u64_at(t, 16), hint_len: u64_at(t, 24), records_count: u64_at(t, 32), seq_max: u64_at(t, 40) };
    assert_eq!(fields.records_end % 8, 0);
    assert_eq!(fields.records_end + fields.hint_len + 64, b.len() as u64, "records, hint block and trailer fill the file");
    let hint = &b[fields.records_end as usize..(fields.records_end + fields.hint_len) as usize];
    assert_eq!(u32_at(t, 48), crc32fast::hash(hint), "hint block crc");
    fields
}

fn decode_hints(hint: &[u8]) -> Vec<HintEntry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < hint.len() {
        let h = &hint[at..at + 32];
        let key_len = u32_at(h, 4) as usize;
        assert_eq!(u16_at(h, 14), 0, "hint entry reserved bytes");
        let end = at + align(32 + key_len, 8);
        assert_zero(&hint[at + 32 + key_len..end], "hint entry padding");
        entries.push(HintEntry {
            offset: u32_at(h, 0),
            key: hint[at + 32..at + 32 + key_len].to_vec(),
            content_len: u32_at(h, 8),
            kind: h[12],
            flags: h[13],
            seq: u64_at(h, 16),
            expires_at_ms: u64_at(h, 24),
        });
        at = end;
    }
    entries
}

#[test]
fn golden_files_decode_per_the_spec_to_the_known_records() {
    let dir = golden_root().join("db");
    assert_eq!(
        files_under(&dir).keys().cloned().collect::<Vec<_>>(),
        ["0000000000000001.log", "0000000000000002.log", "0000000000000003.log", "META"]
    );
    assert_eq!(decode_meta(&golden_file("META")), 4);

    let (records, trailer) = decode_segment(&golden_file(SEGMENT_1), 1, 4);
    assert_eq!(records, segment_1_records());
    assert_eq!(trailer, Some(TrailerFields { records_end: 688, hint_len: 360, records_count: 9, seq_max: 9 }));

    let (records, trailer) = decode_segment(&golden_file(SEGMENT_2), 2, 4);
    assert_eq!(records, segment_2_records());
    assert_eq!(trailer, Some(TrailerFields { records_end: 376, hint_len: 160, records_count: 4, seq_max: 11 }));

    let (records, trailer) = decode_segment(&golden_file(SEGMENT_3), 3, 4);
    assert_eq!(records, segment_3_records());
    assert_eq!(trailer, None, "the highest segment without a trailer is the active one");
}

#[test]
fn live_records_are_the_newest_version_of_each_key_per_the_spec() {
    // The spec's reading rule applied to the decoded files: the newest seq of a key wins,
    // a Delete hides it, an expiry at or before now hides it.
    let mut newest: BTreeMap<Vec<u8>, DecodedRecord> = BTreeMap::new();
    for r in segment_1_records().into_iter().chain(segment_2_records()).chain(segment_3_records()) {
        if [PUT, DELETE].contains(&r.kind) && newest.get(&r.key).is_none_or(|old| old.seq <= r.seq) {
            newest.insert(r.key.clone(), r);
        }
    }
    let live: Vec<_> = newest
        .into_values()
        .filter(|r| r.kind == PUT && (r.expires_at_ms == 0 || r.expires_at_ms > READ_CLOCK_MS))
        .map(|r| (r.key, r.content, r.embedding, r.seq))
        .collect();
    assert_eq!(live, expected_live(|_| true));
}

// ---- reproducibility -----------------------------------------------------------------------

/// Every plain file under `dir`, by path relative to it, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn make_golden_reproduces_every_v2_golden_file_byte_for_byte() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("db");
    make_golden::write_db(&db).unwrap();
    make_golden::write_variants(&db, &temp.path().join("corrupt")).unwrap();
    for part in ["db", "corrupt"] {
        let fresh = files_under(&temp.path().join(part));
        let golden = files_under(&golden_root().with_file_name("v2").join(part));
        assert_eq!(fresh.keys().collect::<Vec<_>>(), golden.keys().collect::<Vec<_>>(), "file names under {part}/");
        for (name, bytes) in &golden {
            assert!(fresh[name] == *bytes, "{part}/{name} differs from what today's code writes");
        }
    }
}

// ---- damaged copies --------------------------------------------------------------------

fn open_variant(name: &str) -> (TempDir, PathBuf, strata::Result<Db>) {
    let (temp, dir) = copy_of(&format!("corrupt/{name}"));
    let opened = open_at(&dir, READ_CLOCK_MS);
    (temp, dir, opened)
}

#[test]
fn meta_with_a_flipped_byte_is_corruption_at_its_checksum() {
    let (_temp, _dir, opened) = open_variant("meta-flip");
    assert_corruption(opened.unwrap_err(), "META", 60);
}

#[test]
fn missing_meta_beside_segments_is_corruption() {
    let (_temp, _dir, opened) = open_variant("meta-missing");
    assert_corruption(opened.unwrap_err(), "META", 0);
}

#[test]
fn flipped_byte_in_a_sealed_record_is_reported_by_get_and_verify() {
    // Open reads sealed segments' hint blocks, not their records: the damage surfaces when
    // the record is read, never as wrong content.
    let (_temp, _dir, opened) = open_variant("sealed-record-flip");
    let db = opened.unwrap();
    assert_corruption(db.get(b"ttl/far").unwrap_err(), SEGMENT_1, 344);
    assert_corruption(db.verify().unwrap_err(), SEGMENT_1, 344);
    assert_eq!(db.get(b"alpha").unwrap().map(|r| r.content().to_vec()), Some(b"second version of alpha".to_vec()));
}

#[test]
fn flipped_byte_in_a_hint_block_is_corruption_at_the_hint_block() {
    let (_temp, _dir, opened) = open_variant("sealed-hint-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_2, 376);
}

#[test]
fn flipped_byte_in_a_trailer_is_corruption_at_the_trailer_checksum() {
    let (_temp, _dir, opened) = open_variant("sealed-trailer-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_1, 1048 + 60);
}

#[test]
fn flipped_byte_in_the_middle_of_the_active_segment_is_corruption() {
    let (_temp, dir, opened) = open_variant("active-middle-record-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_3, 160);
    assert_eq!(read(&dir, SEGMENT_3).len(), golden_file(SEGMENT_3).len(), "nothing is truncated");
}

#[test]
fn flipped_last_record_before_a_close_mark_is_corruption_not_a_tear() {
    let (_temp, dir, opened) = open_variant("active-last-record-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_3, 312);
    assert_eq!(read(&dir, SEGMENT_3).len(), golden_file(SEGMENT_3).len(), "nothing is truncated");
}

#[test]
fn damaged_close_mark_is_cut_as_a_torn_tail_and_loses_no_record() {
    let (_temp, dir, opened) = open_variant("active-close-mark-flip");
    let db = opened.unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    let upgraded = read(&dir, SEGMENT_3);
    assert_eq!(upgraded[..376], golden_file(SEGMENT_3)[..376], "the damaged mark is cut off");
    assert_eq!(decode_segment(&upgraded, 3, 4).1.map(|t| t.records_end), Some(376), "then the v1 segment is sealed");
    db.close().unwrap();
}

#[test]
fn torn_tail_loses_the_whole_last_batch_and_nothing_else() {
    let (_temp, dir, opened) = open_variant("active-torn-tail");
    let db = opened.unwrap();
    assert_eq!(live_records(&db), expected_live(|k| !LAST_COMMIT_KEYS.contains(&k)));
    for key in LAST_COMMIT_KEYS {
        assert!(db.get(key).unwrap().is_none(), "{key:?} belonged to the torn batch");
    }
    let upgraded = read(&dir, SEGMENT_3);
    assert_eq!(upgraded[..232], golden_file(SEGMENT_3)[..232], "cut back to the end of the last whole commit");
    assert_eq!(decode_segment(&upgraded, 3, 4).1.map(|t| t.records_end), Some(232), "then the v1 segment is sealed");
    db.verify().unwrap();
    db.close().unwrap();
    drop(db);
    let reopened = open_at(&dir, READ_CLOCK_MS).unwrap();
    assert_eq!(live_records(&reopened), expected_live(|k| !LAST_COMMIT_KEYS.contains(&k)));
}

#[test]
fn torn_segment_creation_is_removed_and_the_segment_recreated() {
    let (_temp, dir, opened) = open_variant("torn-creation");
    let db = opened.unwrap();
    assert_eq!(live_records(&db), expected_live(|k| !ACTIVE_KEYS.contains(&k)));
    let fresh = read(&dir, SEGMENT_3);
    assert_eq!((fresh.len(), u32_at(&fresh, 8), u32_at(&fresh, 16)), (64, 2, 3), "a fresh v2 segment 3 holding only its header");
    db.verify().unwrap();
}

#[test]
fn torn_segment_creation_is_left_alone_by_a_read_only_open() {
    let (_temp, dir) = copy_of("corrupt/torn-creation");
    let db = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap();
    assert_eq!(live_records(&db), expected_live(|k| !ACTIVE_KEYS.contains(&k)));
    drop(db);
    assert_eq!(read(&dir, SEGMENT_3).len(), 10);
}

// ---- format versions -------------------------------------------------------------------

/// Writes `version` into the 64-byte block at the start of `file` (META, a segment header)
/// or, with `from_end`, at its end (a trailer). Each block has its version at +8 and a
/// CRC-32 of its first 60 bytes at +60; the CRC is recomputed, so only the version is wrong.
fn set_version(dir: &Path, file: &str, from_end: bool, version: u32) {
    let path = dir.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let start = if from_end { bytes.len() - 64 } else { 0 };
    let block = &mut bytes[start..start + 64];
    block[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&block[..60]);
    block[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn newer_format_version_in_any_file_is_unsupported_version() {
    for (file, from_end) in [("META", false), (SEGMENT_1, false), (SEGMENT_1, true), (SEGMENT_2, true), (SEGMENT_3, false)] {
        let (_temp, dir) = copy_of("db");
        set_version(&dir, file, from_end, strata::FORMAT_VERSION_LATEST + 1);
        let error = open_at(&dir, READ_CLOCK_MS).unwrap_err();
        assert_unsupported_version(error, file, strata::FORMAT_VERSION_LATEST + 1);
        let error = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap_err();
        assert_unsupported_version(error, file, strata::FORMAT_VERSION_LATEST + 1);
    }
}

#[test]
fn format_version_zero_is_corruption_not_a_guess() {
    for (file, from_end) in [("META", false), (SEGMENT_1, false), (SEGMENT_1, true), (SEGMENT_3, false)] {
        let (_temp, dir) = copy_of("db");
        set_version(&dir, file, from_end, 0);
        // Only the file is asserted: the engine reports offset 0 for a bad version wherever
        // the structure sits (see format-spec/README.md, "Versioning").
        match open_at(&dir, READ_CLOCK_MS).unwrap_err() {
            Error::Corruption { path, .. } => assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(file)),
            other => panic!("expected Corruption in {file}, got {other:?}"),
        }
    }
}

// ---- format 2: the same database written by today's code (`golden/v2/`) -----------------

fn golden_v2_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v2")
}

fn golden_v2_file(file: &str) -> Vec<u8> {
    read(&golden_v2_root().join("db"), file)
}

/// A temporary copy of `format-spec/golden/v2/<relative>`.
fn copy_of_v2(relative: &str) -> (TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    make_golden::copy_dir(&golden_v2_root().join(relative), &dir).unwrap();
    (temp, dir)
}

/// The data records without their offsets (format 2 moves them), for comparing with v1's.
fn without_offsets(records: &[DecodedRecord]) -> Vec<DecodedRecord> {
    records.iter().filter(|r| [PUT, DELETE].contains(&r.kind)).map(|r| DecodedRecord { offset: 0, ..r.clone() }).collect()
}

/// Offset of the data record with `key` and `seq` in a decoded segment.
fn offset_of(records: &[DecodedRecord], key: &[u8], seq: u64) -> u64 {
    records.iter().find(|r| r.key == key && r.seq == seq).map(|r| r.offset as u64).expect("record present")
}

/// The v2 golden database holds exactly the records of v1, and every commit group that
/// followed an fdatasync starts with a group mark whose durable end is the mark's own offset
/// (under `Durability::Sync` the previous group was synced just before). A commit without a
/// mark is the first of its segment since that segment was created.
#[test]
fn golden_v2_files_decode_per_the_spec_to_the_records_of_v1() {
    assert_eq!(u32_at(&golden_v2_file("META"), 8), 2, "META format 2");
    assert_eq!(decode_meta(&golden_v2_file("META")), 4);
    let expected = [segment_1_records(), segment_2_records(), segment_3_records()];
    for (i, (file, v1)) in [SEGMENT_1, SEGMENT_2, SEGMENT_3].into_iter().zip(expected).enumerate() {
        let bytes = golden_v2_file(file);
        assert_eq!(u32_at(&bytes, 8), 2, "{file}: format 2");
        let (records, trailer) = decode_segment(&bytes, i as u32 + 1, 4);
        assert_eq!(without_offsets(&records), without_offsets(&v1), "{file}: the same data records as v1");
        assert_eq!(trailer.is_some(), i < 2, "{file}: segments 1 and 2 sealed, 3 active");
        let mut seen_commit = false;
        for (j, r) in records.iter().enumerate() {
            if r.kind == GROUP_MARK {
                assert_eq!(u64_at(&r.content, 0), r.offset as u64, "{file}: mark at {} says everything before it is durable", r.offset);
            }
            let starts_commit = [PUT, DELETE].contains(&r.kind)
                && (j == 0 || records[j - 1].flags & END != 0 || records[j - 1].kind != PUT && records[j - 1].kind != DELETE);
            if starts_commit {
                let marked = j > 0 && records[j - 1].kind == GROUP_MARK;
                assert_eq!(marked, seen_commit, "{file}: commit at {} has a mark iff a synced group precedes it", r.offset);
                seen_commit = true;
            }
            if r.kind == CLOSE_MARK {
                seen_commit = true; // the next session's first group follows a synced close
            }
        }
    }
}

#[test]
fn golden_v2_db_opens_verifies_and_holds_the_expected_records() {
    let (_temp, dir) = copy_of_v2("db");
    let db = Db::open(&dir, options_at(READ_CLOCK_MS).read_only(true)).unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    assert_eq!(keys_in_tier(&db, Tier::Hot), expected_live(|k| !WARM_KEYS.contains(&k)).into_iter().map(|r| r.0).collect::<Vec<_>>());
    db.verify().unwrap();
    drop(db);
    let db = open_at(&dir, READ_CLOCK_MS).unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    assert_eq!(u32_at(&read(&dir, SEGMENT_3), 8), 2, "a v2 active segment is resumed, not sealed");
    assert_eq!(db.stats().tier(Tier::Hot).segments, 1);
}

/// The damaged copies of v2 fail (or recover) as those of v1 do, at v2's offsets.
#[test]
fn golden_v2_damaged_copies_fail_or_recover_as_documented() {
    let segment_1 = decode_segment(&golden_v2_file(SEGMENT_1), 1, 4).0;
    let (segment_3, _) = decode_segment(&golden_v2_file(SEGMENT_3), 3, 4);
    let open_v2 = |name: &str| {
        let (temp, dir) = copy_of_v2(&format!("corrupt/{name}"));
        let opened = open_at(&dir, READ_CLOCK_MS);
        (temp, dir, opened)
    };
    assert_corruption(open_v2("meta-flip").2.unwrap_err(), "META", 60);
    assert_corruption(open_v2("meta-missing").2.unwrap_err(), "META", 0);
    let db = open_v2("sealed-record-flip").2.unwrap();
    assert_corruption(db.get(b"ttl/far").unwrap_err(), SEGMENT_1, offset_of(&segment_1, b"ttl/far", 5));
    let segment_2_records_end = decode_segment(&golden_v2_file(SEGMENT_2), 2, 4).1.unwrap().records_end;
    assert_corruption(open_v2("sealed-hint-flip").2.unwrap_err(), SEGMENT_2, segment_2_records_end);
    let segment_1_len = golden_v2_file(SEGMENT_1).len() as u64;
    assert_corruption(open_v2("sealed-trailer-flip").2.unwrap_err(), SEGMENT_1, segment_1_len - 64 + 60);
    let (_t, dir, opened) = open_v2("active-middle-record-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_3, offset_of(&segment_3, b"zeta", 13));
    assert_eq!(read(&dir, SEGMENT_3).len(), golden_v2_file(SEGMENT_3).len(), "nothing is truncated");
    let (_t, _dir, opened) = open_v2("active-last-record-flip");
    assert_corruption(opened.unwrap_err(), SEGMENT_3, offset_of(&segment_3, b"omega/2", 14));

    let close_at = segment_3.iter().find(|r| r.kind == CLOSE_MARK).unwrap().offset;
    let (_t, dir, opened) = open_v2("active-close-mark-flip");
    let db = opened.unwrap();
    assert_eq!(live_records(&db), expected_live(|_| true));
    assert_eq!(read(&dir, SEGMENT_3).len(), close_at, "the damaged mark is cut off");
    drop(db);

    let last_group_at = segment_3.iter().rev().find(|r| r.kind == GROUP_MARK).unwrap().offset;
    let (_t, dir, opened) = open_v2("active-torn-tail");
    let db = opened.unwrap();
    assert_eq!(live_records(&db), expected_live(|k| !LAST_COMMIT_KEYS.contains(&k)));
    assert_eq!(read(&dir, SEGMENT_3), golden_v2_file(SEGMENT_3)[..last_group_at], "cut back to the end of the last whole commit");
    drop(db);

    let (_t, _dir, opened) = open_v2("torn-creation");
    assert_eq!(live_records(&opened.unwrap()), expected_live(|k| !ACTIVE_KEYS.contains(&k)));
}
