//! Replays every fuzz corpus file (fuzz/corpus/<target>/*) through the fuzz harness, so
//! inputs that once crashed strata stay fixed. Method: the same harness functions the
//! cargo-fuzz targets call; a panic fails the test.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        run(&data);
    }
    files.len()
}

#[test]
fn active_segment_corpus_never_panics() {
    assert!(replay("open_active_segment", harness::open_active_segment) > 0, "the corpus must not be empty");
}

#[test]
fn sealed_segment_corpus_never_panics() {
    assert!(replay("open_sealed_segment", harness::open_sealed_segment) > 0, "the corpus must not be empty");
}

#[test]
fn meta_corpus_never_panics() {
    assert!(replay("open_meta", harness::open_meta) > 0, "the corpus must not be empty");
}

#[test]
fn cold_segment_corpus_never_panics() {
    assert!(replay("open_cold_segment", harness::open_cold_segment) > 0, "the corpus must not be empty");
}

#[test]
fn manifest_corpus_never_panics() {
    assert!(replay("open_manifest", harness::open_manifest) > 0, "the corpus must not be empty");
}

#[test]
fn api_sequence_corpus_agrees_with_the_model() {
    assert!(replay("api_sequence", harness::api_sequence) > 0, "the corpus must not be empty");
}

#[test]
fn open_directory_corpus_never_panics() {
    assert!(replay("open_directory", harness::open_directory) > 0, "the corpus must not be empty");
}

/// The seeds of `open_directory`, made from the harness's template databases: run here
/// as they are today (the committed `seed-*` files were made by the ignored test below).
#[test]
fn open_directory_seeds_never_panic() {
    for (_, seed) in harness::open_directory_seeds() {
        harness::open_directory(&seed);
    }
}

/// Writes the `open_directory` seeds into its corpus when asked to (a tool, not a check):
/// `STRATA_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus_replay write_open_directory_seeds`.
/// Without the variable it does nothing.
#[test]
fn write_open_directory_seeds() {
    if std::env::var_os("STRATA_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/open_directory");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed) in harness::open_directory_seeds() {
        std::fs::write(dir.join(name), seed).unwrap();
    }
}
