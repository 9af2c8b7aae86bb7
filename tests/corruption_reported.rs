//! Damage outside a torn tail is reported, never skipped or served (DESIGN.md contracts 3,
//! 4, 7): bytes of a sealed segment's header, records, hint block and trailer and of META
//! are flipped one at a time in a database image, and each open, `get`, iteration and
//! `verify` must return `Error::Corruption` naming the damaged file and a plausible offset
//! (or `UnsupportedVersion` for a newer format version), while proptest feeds open random
//! garbage and randomly mutated images, which may fail but must never panic or serve a
//! record that was never written.

mod crash_support;

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crash_support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::Rng;
use strata::{Db, Durability, Error, Options};

const DIM: usize = 4;

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Sync)
}

/// One version ever written: key, content, embedding bits.
type Written = (Vec<u8>, Vec<u8>, Option<Vec<u32>>);

/// A record the test wrote into a sealed segment.
struct PlacedRecord {
    key: Vec<u8>,
    range: Range<u64>,
}

/// A sealed segment of the image: its file name and the layout of its parts.
struct SealedLayout {
    name: String,
    records: Vec<PlacedRecord>,
    records_end: u64,
    hint_end: u64,
    len: u64,
}

/// A closed database of three sealed segments and an active one, with the model of its
/// contents and every (key, value) ever written.
struct Fixture {
    image: DirImage,
    sealed: Vec<SealedLayout>,
    model: Model,
    versions: BTreeSet<Written>,
}

impl Fixture {
    /// The middle sealed segment: neither the oldest nor the newest file.
    fn middle(&self) -> &SealedLayout {
        &self.sealed[1]
    }

    fn lay_down(&self, root: &Path) -> PathBuf {
        let dir = root.join("db");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
        self.image.write_to(&dir);
        dir
    }
}

fn version_of(key: &[u8], value: &Value) -> Written {
    (key.to_vec(), value.content.clone(), value.embedding.as_ref().map(|e| e.iter().map(|x| x.to_bits()).collect()))
}

fn build(seed: u64) -> Fixture {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("source");
    let db = Db::open(&dir, options().durability(Durability::None)).expect("open");
    let mut rng = rng_for(seed, &[1]);
    let mut model = Model::new();
    let mut versions = BTreeSet::new();
    let mut sealed = Vec::new();
    for segment in 1..=4u32 {
        let mut records = Vec::new();
        let mut at = SEGMENT_HEADER_LEN;
        for i in 0..10 {
            let key = format!("s{segment}/{i:02}").into_bytes();
            let len = rng.gen_range(0..150);
            let embedding = (i % 3 != 0).then(|| random_embedding(&mut rng, DIM));
            let mut commit = vec![Op::Put { key: key.clone(), content: random_bytes(&mut rng, len), embedding }];
            if segment > 1 && i == 5 {
                // An overwrite and a delete of keys stored in the previous segment, as a batch.
                let old = |n: u32| format!("s{}/{n:02}", segment - 1).into_bytes();
                commit.push(Op::Put { key: old(1), content: b"overwritten".to_vec(), embedding: None });
                commit.push(Op::Delete { key: old(7) });
            }
            write_commit(&db, &commit).expect("write");
            apply(&mut model, &commit);
            for (op, range) in commit.iter().zip(record_ranges(&commit, at)) {
                at = range.end;
                if let Op::Put { key, content, embedding } = op {
                    versions.insert(version_of(key, &Value { content: content.clone(), embedding: embedding.clone() }));
                }
                records.push(PlacedRecord { key: op.key().to_vec(), range });
            }
        }
        if segment < 4 {
            db.seal().expect("seal");
            let name = segment_file_name(segment);
            let bytes = std::fs::read(dir.join(&name)).expect("read sealed segment");
            let len = bytes.len() as u64;
            let trailer = &bytes[(len - TRAILER_LEN) as usize..];
            let records_end = read_u64(trailer, TRAILER_RECORDS_END_AT);
            assert_eq!(records_end, at, "the record layout computed by the test matches the trailer");
            let hint_end = records_end + read_u64(trailer, TRAILER_HINT_LEN_AT);
            assert_eq!(hint_end, len - TRAILER_LEN);
            sealed.push(SealedLayout { name, records, records_end, hint_end, len });
        }
    }
    db.close().expect("close");
    drop(db);
    Fixture { image: DirImage::capture(&dir), sealed, model, versions }
}

/// A nonzero XOR mask for byte `at`, from the seed.
fn mask(seed: u64, at: u64) -> u8 {
    rng_for(seed, &[2, at]).gen_range(1..=255)
}

/// Damages byte `at` of `name`, opens, and expects `Error::Corruption` in `name` at an
/// offset in `offsets`; the files must be left exactly as they were.
fn expect_open_reports(fixture: &Fixture, root: &Path, name: &str, at: u64, mask: u8, offsets: Range<u64>, context: &str) {
    let dir = fixture.lay_down(root);
    xor_byte(&dir.join(name), at, mask);
    let damaged = DirImage::capture(&dir);
    expect_corruption(Db::open(&dir, options()), name, offsets, context);
    assert!(damaged.matches(&dir), "{context}: a failed open changed the files");
}

#[test]
fn damage_to_a_sealed_segment_header_is_reported_at_open() {
    let seed = test_seed("damage_to_a_sealed_segment_header_is_reported_at_open");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    for segment in &fixture.sealed {
        for at in 0..SEGMENT_HEADER_LEN {
            let mask = mask(seed, at);
            let context = format!("seed {seed}: byte {at} of the header of {} xor {mask:#04x}", segment.name);
            expect_open_reports(&fixture, temp.path(), &segment.name, at, mask, 0..SEGMENT_HEADER_LEN, &context);
        }
    }
}

#[test]
fn damage_to_a_hint_block_is_reported_at_open() {
    let seed = test_seed("damage_to_a_hint_block_is_reported_at_open");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let segment = fixture.middle();
    for at in segment.records_end..segment.hint_end {
        let mask = mask(seed, at);
        let context = format!("seed {seed}: byte {at} of the hint block of {} xor {mask:#04x}", segment.name);
        expect_open_reports(&fixture, temp.path(), &segment.name, at, mask, segment.records_end..segment.hint_end, &context);
    }
}

#[test]
fn damage_to_a_trailer_is_reported_at_open() {
    let seed = test_seed("damage_to_a_trailer_is_reported_at_open");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    // The middle segment, and the newest sealed one (right before the active segment).
    for segment in &fixture.sealed[1..] {
        for at in segment.hint_end..segment.len {
            let mask = mask(seed, at);
            let context = format!("seed {seed}: byte {at} of the trailer of {} xor {mask:#04x}", segment.name);
            expect_open_reports(&fixture, temp.path(), &segment.name, at, mask, segment.hint_end..segment.len, &context);
        }
    }
}

/// Every record `iter` (or `iter().rev()`) yields before the error matches the model, the
/// error is the expected corruption, and nothing follows it.
fn check_iteration_stops_at_damage(db: &Db, fixture: &Fixture, name: &str, record: &PlacedRecord, backward: bool, context: &str) {
    let items: Vec<_> = if backward { db.iter().rev().collect() } else { db.iter().collect() };
    let error_at = items.iter().position(Result::is_err).unwrap_or_else(|| panic!("{context}: iteration never reached the damage"));
    assert_eq!(error_at + 1, items.len(), "{context}: iteration yielded records after an error");
    let mut yielded = Vec::new();
    for item in &items[..error_at] {
        let record = item.as_ref().expect("checked above");
        assert_eq!(fixture.model.get(record.key()), Some(&Value::of(record)), "{context}: iteration served a wrong record");
        yielded.push(record.key().to_vec());
    }
    let expected: Vec<Vec<u8>> = if backward {
        fixture.model.keys().rev().take_while(|k| **k > record.key).cloned().collect()
    } else {
        fixture.model.keys().take_while(|k| **k < record.key).cloned().collect()
    };
    assert_eq!(yielded, expected, "{context}: iteration skipped or invented keys before the damage");
    let mut items = items;
    let error = items.pop().expect("an error");
    expect_corruption(error, name, record.range.start..record.range.start + 1, context);
}

#[test]
fn damage_to_a_sealed_record_is_reported_by_get_iter_and_verify() {
    let seed = test_seed("damage_to_a_sealed_record_is_reported_by_get_iter_and_verify");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let segment = fixture.middle();
    // A record in the middle of the segment whose version is the live one.
    let record = segment.records.iter().find(|r| r.key == b"s2/04").expect("s2/04 is in the middle segment");
    assert!(fixture.model.contains_key(&record.key), "the damaged record is live");
    for at in record.range.clone() {
        let mask = mask(seed, at);
        let context = format!("seed {seed}: byte {at} of record {:?} in {} xor {mask:#04x}", record.range, segment.name);
        let dir = fixture.lay_down(temp.path());
        xor_byte(&dir.join(&segment.name), at, mask);
        // Open reads hints only, so it cannot see this damage; every read of the record must.
        let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
        let offsets = record.range.start..record.range.start + 1;
        expect_corruption(db.get(&record.key), &segment.name, offsets.clone(), &format!("{context}: get"));
        expect_corruption(db.verify(), &segment.name, offsets, &format!("{context}: verify"));
        check_iteration_stops_at_damage(&db, &fixture, &segment.name, record, false, &format!("{context}: iter"));
        check_iteration_stops_at_damage(&db, &fixture, &segment.name, record, true, &format!("{context}: iter().rev()"));
        for (key, value) in fixture.model.iter().filter(|(k, _)| **k != record.key) {
            let found = db.get(key).unwrap_or_else(|e| panic!("{context}: get of an undamaged key: {e}"));
            assert_eq!(found.as_ref().map(Value::of).as_ref(), Some(value), "{context}: get of an undamaged key");
        }
    }
}

#[test]
fn a_hint_entry_naming_another_key_is_reported_not_served() {
    // The hint block and trailer checksums are recomputed after the change: only the
    // cross-check of the index key against the record's key can catch it.
    let seed = test_seed("a_hint_entry_naming_another_key_is_reported_not_served");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let segment = fixture.middle();
    let mut image = fixture.image.clone();
    let bytes = image.file_mut(&segment.name);
    let (hint_start, hint_end) = (segment.records_end as usize, segment.hint_end as usize);
    let mut at = hint_start;
    while &bytes[at + HINT_ENTRY_HEADER_LEN..at + HINT_ENTRY_HEADER_LEN + 5] != b"s2/04" {
        let key_len = u32::from_le_bytes(bytes[at + HINT_ENTRY_KEY_LEN_AT..][..4].try_into().expect("4 bytes")) as usize;
        at += (HINT_ENTRY_HEADER_LEN + key_len).div_ceil(8) * 8;
        assert!(at < hint_end, "no hint entry for s2/04");
    }
    bytes[at + HINT_ENTRY_HEADER_LEN..][..5].copy_from_slice(b"s2/99");
    let hint_crc = crc32fast::hash(&bytes[hint_start..hint_end]);
    bytes[hint_end + TRAILER_HINT_CRC_AT..][..4].copy_from_slice(&hint_crc.to_le_bytes());
    fix_block_crc(bytes, hint_end);
    let dir = temp.path().join("db");
    image.write_to(&dir);

    let db = Db::open(&dir, options()).expect("open reads checksum-valid hints");
    let record = segment.records.iter().find(|r| r.key == b"s2/04").expect("s2/04");
    let offsets = record.range.start..record.range.start + 1;
    expect_corruption(db.get(b"s2/99"), &segment.name, offsets.clone(), "get of the key the hint names");
    expect_corruption(db.verify(), &segment.name, offsets.clone(), "verify");
    for backward in [false, true] {
        let items: Vec<_> = if backward { db.iter().rev().collect() } else { db.iter().collect() };
        let mut served = Vec::new();
        for item in items {
            match item {
                Ok(record) => served.push(record.key().to_vec()),
                Err(e) => {
                    expect_corruption::<()>(Err(e), &segment.name, offsets.clone(), "iter");
                    break;
                }
            }
        }
        let in_order = served.windows(2).all(|w| if backward { w[0] > w[1] } else { w[0] < w[1] });
        assert!(
            in_order && served.iter().all(|k| k.as_slice() != b"s2/04"),
            "iteration (backward: {backward}) served the record of s2/04 in the place of s2/99"
        );
    }
}

#[test]
fn a_sealed_segment_cut_short_is_corruption_and_never_truncated() {
    let seed = test_seed("a_sealed_segment_cut_short_is_corruption_and_never_truncated");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let segment = fixture.middle();
    let middle_of_a_record = segment.records[3].range.start + 13;
    let cuts = [
        ("trailer removed", segment.hint_end),
        ("hint block and trailer removed", segment.records_end),
        ("cut inside the trailer", segment.len - 9),
        ("cut inside the hint block", segment.records_end + 17),
        ("cut inside a record", middle_of_a_record),
        ("cut inside the header", 40),
        ("emptied", 0),
    ];
    for (what, cut) in cuts {
        let context = format!("seed {seed}: {} {what} (cut to {cut} of {})", segment.name, segment.len);
        let dir = fixture.lay_down(temp.path());
        truncate_file(&dir.join(&segment.name), cut);
        let damaged = DirImage::capture(&dir);
        expect_corruption(Db::open(&dir, options()), &segment.name, 0..segment.len, &context);
        expect_corruption(Db::open(&dir, options().read_only(true)), &segment.name, 0..segment.len, &context);
        assert!(damaged.matches(&dir), "{context}: the files changed");
    }
}

#[test]
fn damage_to_meta_is_reported_naming_meta() {
    let seed = test_seed("damage_to_meta_is_reported_naming_meta");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    for at in 0..64 {
        let mask = mask(seed, at);
        let context = format!("seed {seed}: byte {at} of META xor {mask:#04x}");
        expect_open_reports(&fixture, temp.path(), "META", at, mask, 0..64, &context);
    }
    for (what, len) in [("cut to 0 bytes", 0), ("cut to 63 bytes", 63), ("grown to 65 bytes", 65)] {
        let dir = fixture.lay_down(temp.path());
        let mut bytes = fixture.image.file("META").to_vec();
        bytes.resize(len, 0);
        std::fs::write(dir.join("META"), bytes).expect("write META");
        expect_corruption(Db::open(&dir, options()), "META", 0..65, &format!("META {what}"));
    }
    let dir = fixture.lay_down(temp.path());
    std::fs::remove_file(dir.join("META")).expect("remove META");
    expect_corruption(Db::open(&dir, options()), "META", 0..1, "META missing beside log segments");
    assert!(!dir.join("META").exists(), "a missing META is reported, not recreated");
}

#[test]
fn a_newer_format_version_is_unsupported_not_corruption() {
    let seed = test_seed("a_newer_format_version_is_unsupported_not_corruption");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let middle = fixture.middle();
    let active = segment_file_name(4);
    let blocks = [
        ("META", "META".to_string(), 0usize),
        ("a sealed segment's header", middle.name.clone(), 0),
        ("a sealed segment's trailer", middle.name.clone(), (middle.len - TRAILER_LEN) as usize),
        ("the active segment's header", active, 0),
    ];
    for (what, name, block_at) in blocks {
        for read_only in [false, true] {
            let dir = fixture.lay_down(temp.path());
            let mut image = fixture.image.clone();
            set_block_version(image.file_mut(&name), block_at, strata::FORMAT_VERSION_LATEST + 1);
            image.write_to(&dir);
            match Db::open(&dir, options().read_only(read_only)) {
                Err(Error::UnsupportedVersion { path, found, .. }) => {
                    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(name.as_str()), "{what}: the error names the file");
                    assert_eq!(found, strata::FORMAT_VERSION_LATEST + 1, "{what}");
                }
                other => panic!("{what} (read_only {read_only}) says version 2 with a valid checksum: got {other:?}"),
            }
            assert!(image.matches(&dir), "{what}: the files changed");
        }
    }
}

#[test]
fn a_newer_trailer_version_on_the_newest_segment_is_unsupported_not_cut_away() {
    // A crash between sealing a segment and creating the next one leaves a sealed segment
    // as the newest file. Its trailer saying version 2 (valid checksum) is a newer format,
    // not a torn tail: open must say so and leave the file alone.
    let seed = test_seed("a_newer_trailer_version_on_the_newest_segment_is_unsupported_not_cut_away");
    let fixture = build(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let newest = &fixture.sealed[2];
    let mut image = fixture.image.clone();
    image.files.retain(|(name, _)| *name != segment_file_name(4));
    let dir = temp.path().join("sealed-newest");
    image.write_to(&dir);
    drop(Db::open(&dir, options().read_only(true)).expect("a sealed newest segment opens"));
    let dir = temp.path().join("newer-trailer");
    set_block_version(image.file_mut(&newest.name), (newest.len - TRAILER_LEN) as usize, strata::FORMAT_VERSION_LATEST + 1);
    image.write_to(&dir);
    for read_only in [true, false] {
        match Db::open(&dir, options().read_only(read_only)) {
            Err(Error::UnsupportedVersion { path, found, .. }) => {
                assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(newest.name.as_str()));
                assert_eq!(found, strata::FORMAT_VERSION_LATEST + 1);
            }
            other => panic!("read_only {read_only}: a version-2 trailer on the newest segment gave {other:?}"),
        }
        assert!(
            image.matches(&dir),
            "read_only {read_only}: the newest segment was changed (length now {})",
            file_len(&dir.join(&newest.name))
        );
    }
}

// ---- garbage and mutations: errors are fine, panics and wrong records are not --------------

/// A 64-byte block (META or segment header) with a valid checksum.
fn valid_block(magic: &[u8; 8], fields: &[(usize, u32)]) -> Vec<u8> {
    let mut block = vec![0u8; 64];
    block[..8].copy_from_slice(magic);
    for &(at, value) in fields {
        block[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    set_block_version(&mut block, 0, strata::FORMAT_VERSION_LATEST);
    block
}

fn valid_meta(dim: u32) -> Vec<u8> {
    valid_block(b"STRATADB", &[(12, dim)])
}

fn valid_segment_header(segment_id: u32, dim: u32) -> Vec<u8> {
    valid_block(b"STRATLOG", &[(12, 64), (16, segment_id), (20, dim)])
}

/// Opens whatever is in `dir`; if that succeeds, reads everything every way, verifies and
/// writes. Any `Err` is fine; every record served must be one of `versions`.
fn exercise(dir: &Path, versions: Option<&BTreeSet<Written>>) -> Result<(), TestCaseError> {
    for read_only in [true, false] {
        let Ok(db) = Db::open(dir, Options::new().read_only(read_only).durability(Durability::None)) else { continue };
        let mut keys = Vec::new();
        for record in db.iter().chain(db.iter().rev()).flatten() {
            if let Some(versions) = versions {
                let served = version_of(record.key(), &Value::of(&record));
                prop_assert!(versions.contains(&served), "served a record never written: {:?}", record);
            }
            keys.push(record.key().to_vec());
        }
        for key in keys {
            let _ = db.get(&key);
        }
        let _ = db.verify();
        let _ = db.stats();
        if !read_only {
            let _ = db.put(b"after/garbage", b"x", None);
            let _ = db.seal();
            let _ = db.close();
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Garbage {
    Random(Vec<u8>),
    /// A valid segment header (for this file's id, dimension 0) followed by random bytes,
    /// maybe ending in something that starts like a trailer.
    Headed {
        body: Vec<u8>,
        trailer_like: Option<Vec<u8>>,
    },
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Garbage::Random),
        (prop::collection::vec(any::<u8>(), 0..300), prop::option::of(prop::collection::vec(any::<u8>(), 56)))
            .prop_map(|(body, trailer_like)| Garbage::Headed { body, trailer_like }),
    ]
}

fn garbage_bytes(garbage: &Garbage, segment_id: u32) -> Vec<u8> {
    match garbage {
        Garbage::Random(bytes) => bytes.clone(),
        Garbage::Headed { body, trailer_like } => {
            let mut bytes = valid_segment_header(segment_id, 0);
            bytes.extend_from_slice(body);
            if let Some(rest) = trailer_like {
                bytes.extend_from_slice(b"STRATSEG");
                bytes.extend_from_slice(rest);
            }
            bytes
        }
    }
}

/// One change to one file of a valid image.
#[derive(Clone, Debug)]
enum Mutation {
    Xor { file: prop::sample::Index, at: prop::sample::Index, mask: u8 },
    Overwrite { file: prop::sample::Index, at: prop::sample::Index, bytes: Vec<u8> },
    Truncate { file: prop::sample::Index, at: prop::sample::Index },
    Append { file: prop::sample::Index, bytes: Vec<u8> },
    Remove { file: prop::sample::Index },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        4 => (index(), index(), 1u8..).prop_map(|(file, at, mask)| Mutation::Xor { file, at, mask }),
        2 => (index(), index(), prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(file, at, bytes)| Mutation::Overwrite { file, at, bytes }),
        2 => (index(), index()).prop_map(|(file, at)| Mutation::Truncate { file, at }),
        1 => (index(), prop::collection::vec(any::<u8>(), 1..80)).prop_map(|(file, bytes)| Mutation::Append { file, bytes }),
        1 => index().prop_map(|file| Mutation::Remove { file }),
    ]
}

fn mutate(image: &mut DirImage, mutation: &Mutation) {
    let files = image.files.len();
    match mutation {
        Mutation::Xor { file, at, mask } => {
            let bytes = &mut image.files[file.index(files)].1;
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
        }
        Mutation::Overwrite { file, at, bytes: new } => {
            let bytes = &mut image.files[file.index(files)].1;
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                let end = (at + new.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&new[..end - at]);
            }
        }
        Mutation::Truncate { file, at } => {
            let bytes = &mut image.files[file.index(files)].1;
            let len = at.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        Mutation::Append { file, bytes } => image.files[file.index(files)].1.extend_from_slice(bytes),
        Mutation::Remove { file } => {
            if files > 1 {
                image.files.remove(file.index(files));
            }
        }
    }
}

fn proptest_config(test: &str, cases: u32) -> Config {
    Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(test_seed(test)), ..Config::default() }
}

proptest! {
    #![proptest_config(proptest_config("garbage_named_like_database_files_never_panics_open", 256))]
    #[test]
    fn garbage_named_like_database_files_never_panics_open(
        meta in prop_oneof![
            Just(None),
            Just(Some(valid_meta(0))),
            Just(Some(valid_meta(DIM as u32))),
            prop::collection::vec(any::<u8>(), 0..130).prop_map(Some),
        ],
        segments in prop::collection::btree_map(prop_oneof![0u32..6, Just(u32::MAX - 1), Just(u32::MAX)], garbage(), 0..4),
    ) {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("db");
        std::fs::create_dir(&dir).expect("create dir");
        if let Some(meta) = &meta {
            std::fs::write(dir.join("META"), meta).expect("write META");
        }
        for (segment_id, garbage) in &segments {
            std::fs::write(dir.join(segment_file_name(*segment_id)), garbage_bytes(garbage, *segment_id)).expect("write segment");
        }
        exercise(&dir, None)?;
    }
}

thread_local! {
    static FIXTURE: Fixture = build(1);
}

proptest! {
    #![proptest_config(proptest_config("a_randomly_damaged_image_never_panics_or_serves_a_wrong_record", 256))]
    #[test]
    fn a_randomly_damaged_image_never_panics_or_serves_a_wrong_record(mutations in prop::collection::vec(mutation(), 1..5)) {
        FIXTURE.with(|fixture| {
            let mut image = fixture.image.clone();
            for mutation in &mutations {
                mutate(&mut image, mutation);
            }
            let temp = tempfile::tempdir().expect("temp dir");
            let dir = temp.path().join("db");
            image.write_to(&dir);
            exercise(&dir, Some(&fixture.versions))
        })?;
    }
}

#[test]
fn a_torn_segment_with_the_largest_id_is_an_error_not_a_panic() {
    // A file named like the last possible segment id, cut short at creation (0 bytes).
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("db");
    std::fs::create_dir(&dir).expect("create dir");
    std::fs::write(dir.join("META"), valid_meta(0)).expect("write META");
    std::fs::write(dir.join(segment_file_name(u32::MAX)), b"").expect("write segment");
    let outcome = std::panic::catch_unwind(|| Db::open(&dir, Options::new()).map(drop));
    assert!(outcome.is_ok(), "Db::open panicked on a 0-byte file named {}", segment_file_name(u32::MAX));
}
