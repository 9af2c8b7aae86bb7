//! A power cut reorders page writes (DESIGN.md contract 3): crash images of the active
//! segment in which the pages of the last, unsynced commit group are lost, kept, or kept
//! with holes in any order must open with every write acknowledged before that group and
//! none of the group; damage to pages that were durable before later groups were written
//! must be `Corruption` naming the file and the damaged record. Method: a real workload
//! writes the database; the image of its files is taken while it is open (as a power cut
//! would leave them if the last group's fdatasync never returned); pages of that image are
//! zeroed (a 4 KiB page whose write never reached the disk reads back as zeros on the
//! file systems we target, extended regions included) and the result is opened and compared
//! with a model.

mod crash_support;

use crash_support::*;
use rand::Rng;
use strata::{Db, Durability, Options};

const DIM: usize = 4;
const PAGE: u64 = 4096;

fn options(durability: Durability) -> Options {
    Options::new().embedding_dim(DIM).durability(durability)
}

/// A crash image: the files, the active segment's name, where the last group starts and
/// ends in it, and the model before and after that group.
struct Image {
    image: DirImage,
    active: String,
    group_start: u64,
    len: u64,
    before: Model,
    /// Offsets where each earlier synced commit group ends, with the model after it.
    synced: Vec<(u64, Model)>,
}

/// Writes `commits_before` acknowledged commits of about 1.5 KiB, then one batch of five
/// 3 KiB records (a group spanning several pages), and captures the image before close.
fn build(seed: u64, durability: Durability, commits_before: usize) -> (tempfile::TempDir, Image) {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("source");
    let db = Db::open(&dir, options(durability)).expect("open");
    let mut rng = rng_for(seed, &[durability as u64, commits_before as u64]);
    let (_, active_path) = segment_files(&dir).pop().expect("active segment");
    let active = active_path.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    let mut model = Model::new();
    let mut synced = Vec::new();
    for i in 0..commits_before {
        let len = rng.gen_range(1000..2000);
        let ops = vec![Op::Put {
            key: format!("before/{i:03}").into_bytes(),
            content: random_bytes(&mut rng, len),
            embedding: Some(random_embedding(&mut rng, DIM)),
        }];
        write_commit(&db, &ops).expect("acknowledged write");
        apply(&mut model, &ops);
        if durability != Durability::Sync {
            db.sync().expect("sync");
        }
        synced.push((file_len(&active_path), model.clone()));
    }
    let before = model.clone();
    let group_start = file_len(&active_path);
    let ops: Vec<Op> = (0..5)
        .map(|i| Op::Put {
            key: format!("last/{i}").into_bytes(),
            content: random_bytes(&mut rng, 3000),
            embedding: Some(random_embedding(&mut rng, DIM)),
        })
        .collect();
    write_commit(&db, &ops).expect("write the last group");
    db.sync().expect("sync");
    let image = DirImage::capture(&dir);
    drop(db);
    let len = image.file(&active).len() as u64;
    assert!(len - group_start > 3 * PAGE, "the last group spans several pages");
    (temp, Image { image, active, group_start, len, before, synced })
}

/// The pages that lie wholly inside the last group (the page holding its start also holds
/// durable bytes of the commit before, which a lost write leaves as they were).
fn group_pages(image: &Image) -> Vec<u64> {
    let first = image.group_start.div_ceil(PAGE) * PAGE;
    (first..image.len).step_by(PAGE as usize).collect()
}

fn zero_pages(bytes: &mut [u8], pages: &[u64]) {
    for &page in pages {
        let start = page as usize;
        let end = (start + PAGE as usize).min(bytes.len());
        bytes[start..end].fill(0);
    }
}

/// Opens `image` with `pages` of its active segment zeroed (and cut at `cut`, if given) and
/// checks the outcome: open succeeds, holds exactly the state before the last group, the
/// file is cut back to the end of the last whole commit, verify passes, and a write after it
/// survives a reopen.
fn check_unsynced_loss(image: &Image, root: &std::path::Path, case: &str, pages: &[u64], cut: Option<u64>) {
    let dir = root.join(case);
    image.image.write_to(&dir);
    let path = dir.join(&image.active);
    let mut bytes = image.image.file(&image.active).to_vec();
    zero_pages(&mut bytes, pages);
    if let Some(cut) = cut {
        bytes.truncate(cut as usize);
    }
    std::fs::write(&path, &bytes).expect("write damaged segment");
    let db = Db::open(&dir, options(Durability::Sync)).unwrap_or_else(|e| panic!("{case}: a power cut must not brick the database: {e}"));
    check_db(&db, &image.before).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(file_len(&path), image.group_start, "{case}: cut back to the end of the last whole commit");
    db.verify().unwrap_or_else(|e| panic!("{case}: verify: {e}"));
    db.put(b"after", b"written after recovery", None).expect("write after recovery");
    db.close().expect("close");
    drop(db);
    let mut expected = image.before.clone();
    apply(&mut expected, &[Op::Put { key: b"after".to_vec(), content: b"written after recovery".to_vec(), embedding: None }]);
    let db = Db::open(&dir, options(Durability::Sync)).unwrap_or_else(|e| panic!("{case}: reopen: {e}"));
    check_db(&db, &expected).unwrap_or_else(|e| panic!("{case}: after reopen: {e}"));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The case: one page inside the last group lost, the group's later pages intact
/// (the old rule called this damage: "a valid record follows"). Then every single page, every
/// prefix at a page boundary, and random subsets of pages.
#[test]
fn a_power_cut_inside_the_last_sync_group_opens_without_it() {
    let seed = test_seed("a_power_cut_inside_the_last_sync_group_opens_without_it");
    let (temp, image) = build(seed, Durability::Sync, 40);
    let pages = group_pages(&image);
    assert!(pages.len() >= 3);
    for (i, page) in pages.iter().enumerate() {
        check_unsynced_loss(&image, temp.path(), &format!("seed {seed}: page {i} of the group zeroed"), &[*page], None);
        check_unsynced_loss(&image, temp.path(), &format!("seed {seed}: cut at page {i}"), &[], Some(*page));
    }
    let mut rng = rng_for(seed, &[7]);
    for round in 0..20 {
        let lost: Vec<u64> = pages.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
        if lost.is_empty() {
            continue;
        }
        check_unsynced_loss(&image, temp.path(), &format!("seed {seed}: round {round}, pages {lost:?} zeroed"), &lost, None);
    }
}

/// Under `Durability::Flush` everything since the last `sync` is unsynced too; with a sync
/// after every earlier commit, only the last group may go.
#[test]
fn a_power_cut_after_a_sync_under_flush_keeps_everything_synced() {
    let seed = test_seed("a_power_cut_after_a_sync_under_flush_keeps_everything_synced");
    let (temp, image) = build(seed, Durability::Flush, 12);
    for (i, page) in group_pages(&image).iter().enumerate() {
        check_unsynced_loss(&image, temp.path(), &format!("seed {seed}: Flush, page {i} of the group zeroed"), &[*page], None);
    }
}

/// A page of data that was fdatasynced before later groups were written is lost: that is
/// damage, never cut silently. Open refuses with Corruption naming the active segment and
/// the first damaged record, and changes no byte.
#[test]
fn a_lost_page_of_durable_data_is_corruption_not_a_tail() {
    let seed = test_seed("a_lost_page_of_durable_data_is_corruption_not_a_tail");
    let (temp, image) = build(seed, Durability::Sync, 40);
    let first_durable_page = 64u64.div_ceil(PAGE) * PAGE;
    for page in (first_durable_page..image.group_start.saturating_sub(PAGE)).step_by(PAGE as usize) {
        let case = format!("seed {seed}: durable page at {page} zeroed");
        let dir = temp.path().join(format!("durable-{page}"));
        image.image.write_to(&dir);
        let path = dir.join(&image.active);
        let mut bytes = image.image.file(&image.active).to_vec();
        zero_pages(&mut bytes, &[page]);
        std::fs::write(&path, &bytes).expect("write");
        // The first damaged record starts at or before the page, after the last commit
        // that ends before it.
        let record_start = image.synced.iter().map(|(end, _)| *end).filter(|end| *end <= page).max().unwrap_or(64);
        let offset = expect_corruption(Db::open(&dir, options(Durability::Sync)), &image.active, record_start..page + 1, &case);
        assert!(offset >= record_start, "{case}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "{case}: nothing is cut or rewritten");
        expect_corruption(Db::open(&dir, options(Durability::Sync).read_only(true)), &image.active, offset..offset + 1, &case);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
