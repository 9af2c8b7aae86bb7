//! Recovery of the active segment, byte by byte (DESIGN.md contract 3): a crash image (the
//! database files copied while it is open, after `sync`, so the active segment has no close
//! mark) is cut, or has a bit flipped, at every byte of its last three commits, and every
//! open is checked against a model of the commits: whole commits kept and nothing else, the
//! file cut back to the last whole commit, damage followed by a valid record reported as
//! corruption at the damaged record; after a clean close, damage is never taken for a tear.

mod crash_support;

use std::ops::Range;
use std::path::{Path, PathBuf};

use crash_support::*;
use strata::{Db, Durability, Error, Options};

const DIM: usize = 4;

fn options() -> Options {
    Options::new().embedding_dim(DIM).durability(Durability::Sync)
}

/// Which kind of commit ends the image.
#[derive(Clone, Copy, Debug)]
enum Tail {
    /// ..., batch, batch, single put.
    Single,
    /// ..., single put, single delete, batch.
    Batch,
}

/// One of the last commits of an image: where its group starts (its group mark, when the
/// group follows an fdatasync — format 2), where its records lie, and the state after it.
struct Commit {
    group_start: u64,
    mark: Option<Range<u64>>,
    records: Vec<Range<u64>>,
    model_after: Model,
}

impl Commit {
    fn end(&self) -> u64 {
        self.records[self.records.len() - 1].end
    }
}

/// A database image: a sealed segment, then an active segment whose last three commits
/// are known record by record.
struct CrashImage {
    image: DirImage,
    active: String,
    model_before: Model,
    commits: Vec<Commit>,
    /// Length of the active segment file in the image.
    len: u64,
}

impl CrashImage {
    /// Where the first of the last commits' groups starts (the end of the commit before).
    fn start(&self) -> u64 {
        self.commits[0].group_start
    }

    /// What recovery must keep when the active segment is cut at `cut`: the state after the
    /// last commit that ends at or before it, and that commit's end (the new file length).
    fn whole_before(&self, cut: u64) -> (&Model, u64) {
        let mut kept = (&self.model_before, self.start());
        for commit in self.commits.iter().filter(|c| c.end() <= cut) {
            kept = (&commit.model_after, commit.end());
        }
        kept
    }

    /// The commit and record that hold byte `at`.
    fn record_at(&self, at: u64) -> (usize, Range<u64>) {
        for (i, commit) in self.commits.iter().enumerate() {
            if let Some(record) = commit.records.iter().chain(&commit.mark).find(|r| r.contains(&at)) {
                return (i, record.clone());
            }
        }
        panic!("byte {at} is in none of the last commits");
    }

    fn last_record(&self) -> Range<u64> {
        let last = &self.commits[self.commits.len() - 1];
        last.records[last.records.len() - 1].clone()
    }

    /// A copy of the image in a new directory `root/name`; returns the directory and the
    /// path of its active segment.
    fn lay_down(&self, root: &Path, name: &str) -> (PathBuf, PathBuf) {
        let dir = root.join(name);
        self.image.write_to(&dir);
        let active = dir.join(&self.active);
        (dir, active)
    }

    /// Puts the image's active segment back into `dir` after a case changed it (recovery
    /// only ever touches the active segment, and the cases write to it alone).
    fn reset(&self, dir: &Path) {
        std::fs::write(dir.join(&self.active), self.image.file(&self.active)).expect("restore the active segment");
        let names: Vec<String> = segment_files(dir).iter().filter_map(|(_, p)| Some(p.file_name()?.to_str()?.to_string())).collect();
        let expected: Vec<&String> = self.image.files.iter().map(|(n, _)| n).filter(|n| n.ends_with(".log")).collect();
        assert!(names.iter().eq(expected), "a case left segment files {names:?} behind");
    }
}

fn put(key: &str, content: Vec<u8>, embedding: Option<Vec<f32>>) -> Op {
    Op::Put { key: key.as_bytes().to_vec(), content, embedding }
}

fn delete(key: &str) -> Op {
    Op::Delete { key: key.as_bytes().to_vec() }
}

/// The last three commits of an image ending in `tail`.
fn tail_commits(tail: Tail, rng: &mut rand::rngs::StdRng) -> Vec<Vec<Op>> {
    use rand::Rng;
    let content = |rng: &mut rand::rngs::StdRng| {
        let len = rng.gen_range(0..90);
        random_bytes(rng, len)
    };
    match tail {
        Tail::Single => vec![
            vec![put("tail/a", content(rng), Some(random_embedding(rng, DIM))), delete("warm/07"), put("tail/b", Vec::new(), None)],
            vec![put("tail/c", content(rng), None), put("warm/01", content(rng), Some(random_embedding(rng, DIM)))],
            vec![put("tail/d", content(rng), Some(random_embedding(rng, DIM)))],
        ],
        Tail::Batch => vec![
            vec![put("tail/a", content(rng), Some(random_embedding(rng, DIM)))],
            vec![delete("hot/2")],
            vec![put("tail/b", content(rng), Some(random_embedding(rng, DIM))), delete("warm/08"), put("tail/c", content(rng), None)],
        ],
    }
}

fn commit(db: &Db, model: &mut Model, ops: Vec<Op>) {
    write_commit(db, &ops).expect("write");
    apply(model, &ops);
}

/// Writes a sealed segment, a hot prefix and the three tail commits, syncing after each
/// commit to learn where it ends. The image is taken while the database is open (a crash
/// image) or after `close` (a clean close, with its close mark).
fn build(tail: Tail, seed: u64, clean_close: bool) -> CrashImage {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("source");
    let db = Db::open(&dir, options().durability(Durability::None)).expect("open source database");
    let mut rng = rng_for(seed, &[tail as u64]);
    let mut model = Model::new();
    for i in 0..12 {
        let content = random_bytes(&mut rng, 20 + i * 7);
        commit(&db, &mut model, vec![put(&format!("warm/{i:02}"), content, Some(random_embedding(&mut rng, DIM)))]);
    }
    db.seal().expect("seal");
    for i in 0..6 {
        commit(&db, &mut model, vec![put(&format!("hot/{i}"), random_bytes(&mut rng, 10 * i), None)]);
    }
    commit(&db, &mut model, vec![put("warm/03", b"overwritten in the hot tier".to_vec(), Some(random_embedding(&mut rng, DIM)))]);
    commit(&db, &mut model, vec![delete("warm/05")]);
    db.sync().expect("sync");
    let (_, active_path) = segment_files(&dir).pop().expect("an active segment");
    let active = active_path.file_name().and_then(|n| n.to_str()).expect("name").to_string();

    let model_before = model.clone();
    let mut commits = Vec::new();
    for ops in tail_commits(tail, &mut rng) {
        let group_start = file_len(&active_path);
        commit(&db, &mut model, ops.clone());
        db.sync().expect("sync");
        let end = file_len(&active_path);
        let records_len = record_ranges(&ops, 0).last().map_or(0, |r| r.end);
        let records = record_ranges(&ops, end - records_len);
        let mark = (records[0].start > group_start).then(|| group_start..records[0].start);
        assert!(mark.as_ref().is_none_or(|m| m.end - m.start == GROUP_MARK_LEN), "the record layout computed by the test matches the file");
        assert!(mark.is_some(), "every tail commit follows an fdatasync, so its group starts with a group mark");
        commits.push(Commit { group_start, mark, records, model_after: model.clone() });
    }
    if clean_close {
        db.close().expect("close");
    }
    let image = DirImage::capture(&dir);
    drop(db);
    let len = image.file(&active).len() as u64;
    let expected_len = commits[2].end() + if clean_close { CLOSE_MARK_LEN } else { 0 };
    assert_eq!(len, expected_len, "a crash image ends with the last commit, a clean close with one close mark");
    CrashImage { image, active, model_before, commits, len }
}

#[test]
fn every_cut_in_the_last_commits_keeps_exactly_the_whole_commits() {
    let seed = test_seed("every_cut_in_the_last_commits_keeps_exactly_the_whole_commits");
    let temp = tempfile::tempdir().expect("temp dir");
    for tail in [Tail::Single, Tail::Batch] {
        let image = build(tail, seed, false);
        let (dir, active) = image.lay_down(temp.path(), &format!("{tail:?}"));
        for cut in image.start()..=image.len {
            let context = format!("seed {seed}, {tail:?} tail, active segment cut at {cut} of {}", image.len);
            image.reset(&dir);
            truncate_file(&active, cut);
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
            let (expected, expected_len) = image.whole_before(cut);
            assert_eq!(file_len(&active), expected_len, "{context}: the file is cut back to the last whole commit");
            check_db(&db, expected).unwrap_or_else(|e| panic!("{context}: {e}"));
            db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
            if !resume_after(&image, cut) {
                continue;
            }
            // Writing after recovery appends right after the kept commits, and both survive.
            db.put(b"after/recovery", b"written after the cut", Some(&[1.0, 2.0, 3.0, 4.0])).expect("put after recovery");
            db.close().expect("close");
            drop(db);
            let mut expected = expected.clone();
            apply(&mut expected, &[put("after/recovery", b"written after the cut".to_vec(), Some(vec![1.0, 2.0, 3.0, 4.0]))]);
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            check_db(&db, &expected).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
        }
    }
}

/// Whether the cut at `cut` also gets a write after recovery and a reopen (the slow part):
/// every cut at or next to a record boundary, and every fifth byte.
fn resume_after(image: &CrashImage, cut: u64) -> bool {
    let near_boundary = image.commits.iter().flat_map(|c| c.records.iter()).any(|r| r.start.abs_diff(cut) <= 1 || r.end.abs_diff(cut) <= 1);
    near_boundary || (cut - image.start()).is_multiple_of(5)
}

/// The bits flipped at byte `at`: all eight at record headers (where lengths, kinds and
/// flags live), three seeded ones elsewhere.
fn bits_to_flip(seed: u64, at: u64, in_header: bool) -> Vec<u8> {
    if in_header {
        return (0..8).collect();
    }
    let mut rng = rng_for(seed, &[at]);
    let mut bits: Vec<u8> = (0..8).collect();
    rand::seq::SliceRandom::shuffle(&mut bits[..], &mut rng);
    bits.truncate(3);
    bits
}

#[test]
fn a_flipped_bit_is_an_unsynced_tail_only_in_the_last_group_and_corruption_elsewhere() {
    let seed = test_seed("a_flipped_bit_is_an_unsynced_tail_only_in_the_last_group_and_corruption_elsewhere");
    let temp = tempfile::tempdir().expect("temp dir");
    for tail in [Tail::Single, Tail::Batch] {
        let image = build(tail, seed, false);
        let last_group = image.commits.len() - 1;
        let (dir, active) = image.lay_down(temp.path(), &format!("{tail:?}"));
        for at in image.start()..image.len {
            let (commit_index, record) = image.record_at(at);
            for bit in bits_to_flip(seed, at, at < record.start + RECORD_HEADER_LEN as u64) {
                let context = format!("seed {seed}, {tail:?} tail, bit {bit} of byte {at} flipped (record {record:?})");
                image.reset(&dir);
                xor_byte(&active, at, 1 << bit);
                let damaged = std::fs::read(&active).expect("read");
                let result = Db::open(&dir, options());
                if commit_index == last_group {
                    // No later group mark says these bytes were durable: the in-flight group of
                    // a crash, cut. Its commit goes, whole.
                    let db = result.unwrap_or_else(|e| panic!("{context}: damage in the last group must read as an unsynced tail: {e}"));
                    let commit = &image.commits[commit_index];
                    let expected = if commit_index == 0 { &image.model_before } else { &image.commits[commit_index - 1].model_after };
                    assert_eq!(file_len(&active), commit.group_start, "{context}: cut back to the last whole commit");
                    check_db(&db, expected).unwrap_or_else(|e| panic!("{context}: {e}"));
                    db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
                } else {
                    expect_corruption(result, &image.active, record.start..record.start + 1, &context);
                    assert_eq!(std::fs::read(&active).expect("read"), damaged, "{context}: a reported file is left as it was");
                }
            }
        }
    }
}

#[test]
fn after_a_clean_close_damage_in_the_last_record_is_corruption_not_a_tear() {
    let seed = test_seed("after_a_clean_close_damage_in_the_last_record_is_corruption_not_a_tear");
    let temp = tempfile::tempdir().expect("temp dir");
    for tail in [Tail::Single, Tail::Batch] {
        let image = build(tail, seed, true);
        let last = image.last_record();
        let close_mark = last.end..image.len;
        let (dir, active) = image.lay_down(temp.path(), &format!("{tail:?}"));
        // Every bit of the last data record: the close mark after it is a valid record.
        for at in last.clone() {
            for bit in 0..8 {
                let context = format!("seed {seed}, {tail:?} tail, clean close, bit {bit} of byte {at} flipped");
                image.reset(&dir);
                xor_byte(&active, at, 1 << bit);
                expect_corruption(Db::open(&dir, options()), &image.active, last.start..last.start + 1, &context);
                assert_eq!(file_len(&active), image.len, "{context}: never truncated");
            }
        }
        // The close mark itself is the last record: damage there is a tear that loses no data.
        for at in close_mark.clone() {
            let context = format!("seed {seed}, {tail:?} tail, clean close, byte {at} of the close mark flipped");
            image.reset(&dir);
            xor_byte(&active, at, 1 << (at % 8));
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(file_len(&active), close_mark.start, "{context}");
            check_db(&db, &image.commits[2].model_after).unwrap_or_else(|e| panic!("{context}: {e}"));
        }
    }
}

#[test]
fn cutting_off_the_close_mark_keeps_every_commit() {
    let seed = test_seed("cutting_off_the_close_mark_keeps_every_commit");
    let temp = tempfile::tempdir().expect("temp dir");
    for tail in [Tail::Single, Tail::Batch] {
        let image = build(tail, seed, true);
        let mark_start = image.len - CLOSE_MARK_LEN;
        let (dir, active) = image.lay_down(temp.path(), &format!("{tail:?}"));
        for cut in mark_start..=image.len {
            let context = format!("seed {seed}, {tail:?} tail, clean close, cut at {cut} of {}", image.len);
            image.reset(&dir);
            truncate_file(&active, cut);
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: {e}"));
            let expected_len = if cut == image.len { image.len } else { mark_start };
            assert_eq!(file_len(&active), expected_len, "{context}");
            check_db(&db, &image.commits[2].model_after).unwrap_or_else(|e| panic!("{context}: {e}"));
            db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
        }
    }
}

#[test]
fn a_newest_segment_cut_short_at_creation_is_dropped_and_every_record_kept() {
    let seed = test_seed("a_newest_segment_cut_short_at_creation_is_dropped_and_every_record_kept");
    let temp = tempfile::tempdir().expect("temp dir");
    let source = temp.path().join("source");
    let mut rng = rng_for(seed, &[7]);
    let mut model = Model::new();

    // An empty database: its first segment is the one cut short.
    let db = Db::open(&source, options()).expect("open");
    let empty = DirImage::capture(&source);
    // Records, then a seal: the new active segment holds only its 64-byte header.
    for i in 0..10 {
        let ops = vec![put(&format!("k/{i}"), random_bytes(&mut rng, 30 + i), Some(random_embedding(&mut rng, DIM)))];
        write_commit(&db, &ops).expect("put");
        apply(&mut model, &ops);
    }
    db.seal().expect("seal");
    let sealed = DirImage::capture(&source);
    drop(db);

    for (image, expected) in [(&empty, &Model::new()), (&sealed, &model)] {
        let newest = image.files.iter().filter(|(n, _)| n.ends_with(".log")).map(|(n, _)| n.clone()).max().expect("a segment");
        assert_eq!(image.file(&newest).len() as u64, SEGMENT_HEADER_LEN, "the newest segment holds only its header");
        // Shorter than a header, or the size on disk but zeros for bytes (the size reached
        // the disk, the data did not).
        let cases = (0..SEGMENT_HEADER_LEN).map(|len| (len, false)).chain([(SEGMENT_HEADER_LEN, true), (4096, true)]);
        for (len, zeros) in cases {
            let context = format!("seed {seed}, {newest} cut to {len} bytes{}", if zeros { " of zeros" } else { "" });
            let dir = temp.path().join("torn");
            image.write_to(&dir);
            if zeros {
                std::fs::write(dir.join(&newest), vec![0u8; len as usize]).expect("write zeros");
            }
            truncate_file(&dir.join(&newest), len);
            let read_only = Db::open(&dir, options().read_only(true)).unwrap_or_else(|e| panic!("{context}: read-only open: {e}"));
            check_db(&read_only, expected).unwrap_or_else(|e| panic!("{context}: read-only: {e}"));
            drop(read_only);
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
            check_db(&db, expected).unwrap_or_else(|e| panic!("{context}: {e}"));
            db.put(b"after/torn-creation", b"x", None).unwrap_or_else(|e| panic!("{context}: put: {e}"));
            db.close().expect("close");
            drop(db);
            let mut expected = expected.clone();
            apply(&mut expected, &[put("after/torn-creation", b"x".to_vec(), None)]);
            let db = Db::open(&dir, options()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
            check_db(&db, &expected).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
            db.verify().unwrap_or_else(|e| panic!("{context}: verify: {e}"));
            drop(db);
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }
}

/// Content bytes that put `STRATSEG` (the trailer magic) exactly 64 bytes before the end of
/// the active segment, both in a crash image (the record ends the file) and after a clean
/// close (a 32-byte close mark follows it).
fn trailer_lookalike_content(record_start: u64, key_len: usize, content_len: usize) -> Vec<u8> {
    let content_start = record_start + (RECORD_HEADER_LEN + key_len).div_ceil(4) as u64 * 4;
    let record_end = record_start + record_len(key_len, 0, content_len);
    let mut content = vec![b'.'; content_len];
    for file_end in [record_end, record_end + CLOSE_MARK_LEN] {
        let at = (file_end - TRAILER_LEN - content_start) as usize;
        content[at..at + 8].copy_from_slice(b"STRATSEG");
    }
    content
}

#[test]
fn content_that_looks_like_a_trailer_is_still_read_as_content() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("db");
    // The first record of a fresh database starts right after the segment header.
    let (key, content_len) = (b"note", 120);
    let content = trailer_lookalike_content(SEGMENT_HEADER_LEN, key.len(), content_len);
    let expected = Model::from([(key.to_vec(), Value { content: content.clone(), embedding: None })]);
    let db = Db::open(&dir, options()).expect("open");
    db.put(key, &content, None).expect("put");
    let crash_image = DirImage::capture(&dir);
    db.close().expect("close");
    drop(db);

    let reopened = Db::open(&dir, options()).unwrap_or_else(|e| panic!("reopen after a clean close: {e}"));
    check_db(&reopened, &expected).unwrap_or_else(|e| panic!("after a clean close: {e}"));
    drop(reopened);

    let crashed = temp.path().join("crashed");
    crash_image.write_to(&crashed);
    let recovered = Db::open(&crashed, options()).unwrap_or_else(|e| panic!("open after a crash: {e}"));
    check_db(&recovered, &expected).unwrap_or_else(|e| panic!("after a crash: {e}"));
}

#[test]
/// DESIGN.md contract 3: after a crash, a bad record followed by valid ones is corruption,
/// not a tear. Content that holds encoded records of newer seqs is indistinguishable from
/// later commits written after damage, so recovery takes the safe side: it reports
/// `Corruption` and cuts nothing, rather than trust a length field that may itself be
/// damaged and cut acknowledged commits (format-spec/recovery.md, "Known gaps").
fn a_torn_record_whose_content_holds_newer_encoded_records_is_reported_never_cut() {
    let temp = tempfile::tempdir().expect("temp dir");
    // The content to store: the records of another strata database (a user archiving a
    // small database inside a bigger one), i.e. bytes that parse as valid records.
    let inner_dir = temp.path().join("inner");
    let inner = Db::open(&inner_dir, options()).expect("open inner");
    for i in 0..4u8 {
        inner.put(&[b'i', i], &[i; 40], None).expect("put inner");
    }
    inner.close().expect("close inner");
    drop(inner);
    let (_, inner_segment) = segment_files(&inner_dir).pop().expect("inner segment");
    let archived = std::fs::read(&inner_segment).expect("read inner segment")[SEGMENT_HEADER_LEN as usize..].to_vec();

    let dir = temp.path().join("db");
    let db = Db::open(&dir, options()).expect("open");
    db.put(b"first", b"a whole commit before the torn one", None).expect("put");
    // An 8-byte key and no embedding: the content starts 8-aligned in the file, like records.
    db.put(b"archive1", &archived, None).expect("put archive");
    let image = DirImage::capture(&dir);
    drop(db);
    let (_, active) = segment_files(&dir).pop().expect("active segment");
    let active_name = active.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    let archive_end = image.file(&active_name).len() as u64;
    let archive_start = archive_end - record_len(8, 0, archived.len());
    for cut in [archive_end - 8, archive_end - 1, archive_start + 40 + archived.len() as u64 / 2] {
        let crashed = temp.path().join(format!("crashed-{cut}"));
        image.write_to(&crashed);
        let segment = crashed.join(&active_name);
        truncate_file(&segment, cut);
        for read_only in [true, false] {
            match Db::open(&crashed, options().read_only(read_only)) {
                Err(Error::Corruption { path, offset, .. }) => {
                    assert!(path.ends_with(&active_name), "cut at {cut}: corruption names {}", path.display());
                    assert_eq!(offset, archive_start, "cut at {cut}: the damaged record's offset");
                }
                Err(other) => panic!("cut at {cut}: expected Corruption, got {other}"),
                Ok(_) => panic!("cut at {cut}: valid newer records follow the damage; open must report it"),
            }
            let len = std::fs::metadata(&segment).expect("stat").len();
            assert_eq!(len, cut, "cut at {cut}: nothing may be truncated when corruption is reported");
        }
    }
}
